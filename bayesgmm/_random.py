"""Turning the ``random_state``/``seed`` arguments users pass into JAX keys."""

from __future__ import annotations

import numbers

import jax
import numpy as np

from . import _jax  # noqa: F401  (64-bit mode on before any array; see _jax)

__all__ = ["as_key"]


def as_key(random_state):
    """A JAX PRNG key from ``random_state``.

    Accepts ``None`` (fresh entropy), an int seed, a ``numpy.random.Generator`` or
    ``RandomState`` (an int is drawn from it, so seeding it seeds us), or a JAX key.
    """
    if random_state is None:
        return jax.random.key(int(np.random.SeedSequence().generate_state(1)[0]))
    if isinstance(random_state, bool):
        raise TypeError("random_state must be None, an int, a NumPy generator or a JAX key")
    if isinstance(random_state, numbers.Integral):
        if random_state < 0:
            raise ValueError(f"random_state must be a non-negative int; got {random_state}")
        return jax.random.key(int(random_state) % (2**63))
    if isinstance(random_state, np.random.RandomState):
        return jax.random.key(int(random_state.randint(0, 2**31 - 1)))
    if isinstance(random_state, np.random.Generator):
        return jax.random.key(int(random_state.integers(0, 2**63 - 1)))
    if isinstance(random_state, jax.Array):
        if jax.dtypes.issubdtype(random_state.dtype, jax.dtypes.prng_key):
            return random_state
        if random_state.shape == (2,) and random_state.dtype == np.uint32:
            return jax.random.wrap_key_data(random_state)
    raise TypeError(
        "random_state must be None, an int, a numpy Generator/RandomState or a JAX key; "
        f"got {type(random_state).__name__}"
    )
