"""Programs compiled at a lower XLA optimisation level for small problems.

On small data (notebooks, tests, model-selection grids over a few hundred points) a fit's
wall time is almost all compilation: the EM program of 600 points, 2 features and 4 components
compiles in about 1 s and then runs 100 iterations in about 4 ms. XLA's backend optimisation
level 0 roughly halves compile time there (k-means: 2-3 s to 1.5 s) and makes the run a few
times slower, which at that size is a few milliseconds. On large data the run dominates, so
those keep XLA's default optimisation. The choice depends only on shapes, so a given problem
always runs the same program (and gives bit-identical results from the same seed).

Measured with ``scripts/time_notebooks.py`` and the numbers in the docstring above on the
project's 2-core machine; ``SMALL_WORK`` keeps every size of ``scripts/bench_em.py`` (the
smallest is ``n * K * d**2 = 2e5``) at the default level.
"""

from __future__ import annotations

import functools

import jax

from . import _jax  # noqa: F401  (64-bit mode on before any array; see _jax)

__all__ = ["SMALL_WORK", "is_small", "SizedJit", "memory_mappings", "release_compiled_programs"]

#: Largest ``n_samples * n_components * n_features**2`` compiled at optimisation level 0.
SMALL_WORK = 100_000
LOW_OPT = {"xla_backend_optimization_level": 0}


def is_small(n_samples: int, n_components: int, n_features: int) -> bool:
    """Whether a problem is small enough that compilation, not running, dominates."""
    return n_samples * n_components * n_features * n_features <= SMALL_WORK


class SizedJit:
    """``fun`` jitted twice, at XLA's default optimisation and at level 0 for small problems.

    ``pick(n_samples, n_components, n_features, data=X)`` returns the jitted function to call; each
    variant keeps its own compilation cache, and neither compiles until it is first called.
    """

    def __init__(self, fun, **jit_kwargs):
        self.default = jax.jit(fun, **jit_kwargs)
        self.small = jax.jit(fun, compiler_options=LOW_OPT, **jit_kwargs)
        functools.update_wrapper(self, fun)

    def pick(self, n_samples: int, n_components: int, n_features: int, *, data=None):
        """The variant for this problem size; always the default one when ``data`` is a
        tracer (inside another ``jit``, compiler options belong to the outer program)."""
        if isinstance(data, jax.core.Tracer):
            return self.default
        return self.small if is_small(n_samples, n_components, n_features) else self.default


def memory_mappings() -> int | None:
    """How many memory mappings this process holds (Linux), or None where it cannot be read."""
    try:
        with open("/proc/self/maps") as f:
            return sum(1 for _ in f)
    except OSError:
        return None


def release_compiled_programs(max_mappings: int = 20_000) -> bool:
    """Drop JAX's compiled programs once this process holds more than ``max_mappings`` memory
    mappings (always, where the count cannot be read); returns whether it did.

    Every compiled XLA:CPU executable holds about 5 memory mappings until it is released. A
    process that compiles thousands of programs (the test suite's workers, the full
    differential matrix) reaches the kernel's ``vm.max_map_count`` (65530 by default), and
    the next compilation aborts ("LLVM compilation error: Cannot allocate memory", or
    "Fatal Python error: Aborted"). ``jax.clear_caches()`` returns the mappings (measured:
    2007 -> 508 after 300 compiles); programs compile again when next needed.
    """
    import gc

    count = memory_mappings()
    if count is not None and count <= max_mappings:
        return False
    jax.clear_caches()
    gc.collect()
    return True
