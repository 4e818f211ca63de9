"""JAX as bayesgmm runs it: 64-bit mode on, so float64 data is computed in float64.

Every bayesgmm module that uses JAX imports one of the bottom modules that import this one
(``_compile``, ``_random``, ``covariance``, ``params``), so the switch happens the first time
bayesgmm loads JAX, before any of its arrays exist. ``import bayesgmm`` alone does not load
JAX (the command line's ``--help`` must answer at once); the first use of an estimator, the
model or a density function does. Why a process-wide switch and not a context manager around
each entry point: bayesgmm's functions also run inside the caller's own traces (a user's
``jax.jit``, NumPyro's MCMC on :func:`bayesgmm.gmm_model`), which a context entered inside
the function cannot change; without x64 there, float64 data would silently become float32.
float32 data still runs in float32.
"""

import jax

jax.config.update("jax_enable_x64", True)

__all__ = ["jax", "is_concrete"]


def is_concrete(x) -> bool:
    """Whether ``x`` is a value (not a tracer inside ``jit``/``grad``/``vmap``), so that its
    contents can be checked in NumPy."""
    return not isinstance(x, jax.core.Tracer)
