"""Shared test set-up: a headless matplotlib backend and small fixed data sets."""

import os
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# A persistent JAX compilation cache would let both xdist workers and the subprocesses the
# tests start (CLI runs, notebook kernels) reuse each other's programs, but it is off unless
# BAYESGMM_TEST_JAX_CACHE=1: in a fresh-clone run of the suite with jaxlib 0.10.2 two workers
# died inside jax's cache write, in executable.serialize() ("Fatal Python error: Aborted" in
# kmeans_fit's program, "Segmentation fault" in EM's), on programs that compile and run
# correctly; no cache write, no serialize, no crash. The keys are hashes of the compiled
# program, so a warm cache never serves a stale entry.
# The command line keeps its own cache (cli._enable_compile_cache), switched on for the whole
# process by tests that call cli.main in-process; it is off here too unless asked for.
if os.environ.get("BAYESGMM_TEST_JAX_CACHE") != "1":
    os.environ.setdefault("BAYESGMM_JAX_CACHE", "0")
else:
    os.environ.setdefault(
        "JAX_COMPILATION_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".jax_cache")
    )
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import bayesgmm._jax  # noqa: E402,F401  (float64 on before any test builds arrays)

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


@pytest.fixture(params=COVARIANCE_TYPES)
def covariance_type(request):
    return request.param


@pytest.fixture
def three_blobs():
    """Three well-separated 2-D Gaussian clusters, 750 points, fixed seed."""
    rng = np.random.default_rng(0)
    return np.concatenate(
        [
            rng.normal([0.0, 0.0], [1.0, 0.5], (300, 2)),
            rng.normal([5.0, 5.0], [0.5, 1.5], (200, 2)),
            rng.normal([0.0, 6.0], 1.0, (250, 2)),
        ]
    )


@pytest.fixture(params=("centred", "expanded"))
def em_kernels(request, monkeypatch):
    """Run EM with the centred or the expanded float64 kernels whatever the problem size
    (by default small problems take the centred ones; see ``bayesgmm.em.expanded.use_expanded``)."""
    from bayesgmm import em

    if request.param == "expanded":
        monkeypatch.setattr(em.expanded, "use_expanded", lambda dtype, *shape: dtype == np.float64)
    else:
        monkeypatch.setattr(em.expanded, "use_expanded", lambda dtype, *shape: False)
    return request.param


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs once a worker holds many of them
    (:func:`bayesgmm._compile.release_compiled_programs`, above 20000 memory mappings).

    In a full run of the suite on the 2-core machine both workers died compiling ("Fatal
    Python error: Aborted" in backend_compile_and_load, reported by xdist as "node down: Not
    properly terminated") when they reached the kernel's ``vm.max_map_count`` (65530; a
    survivor stood at 64395). Clearing only above the threshold keeps programs that later
    modules share (the same data shapes recur across modules).
    """
    yield
    from bayesgmm._compile import release_compiled_programs

    release_compiled_programs(20_000)


@pytest.fixture(autouse=True, scope="module")
def _close_figures():
    """Figures a module's tests left open would otherwise live until the worker ends."""
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
