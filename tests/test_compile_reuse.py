"""Compiled programs are shared where the design says so, and the size-picked variants agree.

Fitting is split into initialisation (k-means or random starts: independent of the covariance
type, ``n_init`` and ``max_iter``), the initial M-step, and the EM program (see
``bayesgmm.em``); small problems compile at XLA's optimisation level 0
(``bayesgmm._compile``). Compile *time* is measured by ``scripts/time_notebooks.py``, not here;
these tests check what compiles and that the results do not depend on the variant.
"""

import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from bayesgmm import GaussianMixture, em, kmeans
from bayesgmm._compile import is_small


def _data(n=240, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    return np.concatenate([rng.normal(c, 1.0, (n // 3, 2)) for c in centres])


def _fit(X, covariance_type, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GaussianMixture(3, covariance_type=covariance_type, random_state=0, **kw).fit(X)


def test_kmeans_initialisation_is_compiled_once_for_every_covariance_type():
    X = _data(241)  # a row count no other test uses, so the first fit compiles here
    _fit(X, "full", n_init=2)
    km = kmeans._kmeans_fit.pick(*X.shape[:1], 3, 2)
    init_m_step = em.init._initial_params_one.pick(*X.shape[:1], 3, 2)
    k_before, m_before = km._cache_size(), init_m_step._cache_size()
    for ct in ("tied", "diag", "spherical"):
        _fit(X, ct, n_init=2)
    _fit(X, "full", n_init=3, max_iter=50)  # other n_init and max_iter: same starts program
    assert km._cache_size() == k_before
    # The initial M-step depends on the covariance type only (one per new type).
    assert init_m_step._cache_size() == m_before + 3


def test_small_and_default_variants_give_the_same_fit():
    """Optimisation level 0 changes rounding only: same iterations, results to 1e-10."""
    X = _data()
    args, static = em.driver._prepare(
        jax.random.key(0), X, 3, "full", 2, "kmeans", 100, 1e-3, 1e-6, None, None, None, None,
        None, -np.inf,
    )  # fmt: skip
    small = em.driver._em_program.small(*args, **static)
    default = em.driver._em_program.default(*args, **static)
    assert_array_equal(np.asarray(small.n_iter), np.asarray(default.n_iter))
    assert_allclose(np.asarray(small.lower_bound), np.asarray(default.lower_bound), rtol=1e-10)
    for a, b in zip(
        jax.tree_util.tree_leaves(small.params), jax.tree_util.tree_leaves(default.params)
    ):
        assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-12)


def test_benchmark_sizes_keep_the_default_optimisation():
    assert is_small(600, 4, 2)
    for n, d, k in [(10_000, 2, 5), (100_000, 10, 10), (200_000, 50, 20)]:  # scripts/bench_em.py
        assert not is_small(n, k, d)


@pytest.mark.parametrize("n_init", [1, 2])
def test_max_iter_zero_returns_the_start_without_the_em_program(n_init):
    X = _data()
    w, m, c = np.full(3, 1 / 3), X[:3], np.ones((3, 2))
    program = em.driver._em_program.pick(len(X), 3, 2)
    before = program._cache_size()
    res = em.fit_em(
        jax.random.key(0), X, 3, "diag", n_init=n_init, max_iter=0, weights_init=w,
        means_init=m, covariances_init=c, lower_bound_init=-2.5,
    )  # fmt: skip
    assert program._cache_size() == before
    assert_array_equal(np.asarray(res.params.means), np.broadcast_to(m, (n_init, 3, 2)))
    assert_array_equal(np.asarray(res.lower_bound), np.full(n_init, -2.5))
    assert np.asarray(res.lower_bounds).shape == (n_init, 1)
    assert np.all(np.isnan(np.asarray(res.lower_bounds)))
    assert_array_equal(np.asarray(res.n_iter), np.zeros(n_init))
    assert not np.any(np.asarray(res.converged)) and not np.any(np.asarray(res.failed))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_release_compiled_programs_returns_their_memory_mappings():
    # The suite and the full matrix rely on this to stay under vm.max_map_count.
    from bayesgmm._compile import memory_mappings, release_compiled_programs

    f = jax.jit(lambda x: jnp.sin(x) * 2 + 1)
    release_compiled_programs(0)
    before = memory_mappings()
    for n in range(1, 101):
        f(jnp.ones(n)).block_until_ready()
    grown = memory_mappings()
    assert grown > before + 100  # each executable holds several mappings
    assert not release_compiled_programs(10**9)  # below the threshold: kept
    assert release_compiled_programs(0)
    assert memory_mappings() < grown - 100
