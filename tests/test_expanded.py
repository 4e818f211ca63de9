"""The expanded float64 EM kernels (bayesgmm.em.expanded, EMKernels.features_t) and their guards.

The expanded kernels write every squared Mahalanobis distance and every M-step statistic as a
matrix product of features of ``u = x - shift``; that is exact up to cancellation, so each
iteration bounds the rounding and refuses the step when the bound is not small, and the
centred kernels redo it. Checked here: the two kernels agree iteration for iteration where the
bound holds, each guard refuses the case it exists for, and a refused fit still ends where the
centred kernels alone end.
"""

from typing import NamedTuple

import _suite
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from bayesgmm import em
from bayesgmm.covariance import get_covariance_type
from bayesgmm.params import GMMParams, Prior

# Expanded and centred kernels differ by rounding only (each ~1e-13 relative per iteration on
# these well-scaled data, not amplified by EM's contraction): 1e-9 leaves four digits of margin
# and is still far below any difference a wrong statistic would make.
RTOL = 1e-9


def _offset_blobs(n=900, d=3, seed=0, offset=100.0):
    """Three elongated clusters far from the origin (the expansion is around the data mean,
    so the offset must not matter)."""
    rng = np.random.default_rng(seed)
    parts = [
        rng.normal(size=(n // 3, d)) @ rng.normal(size=(d, d)) + 4.0 * rng.normal(size=d)
        for _ in range(3)
    ]
    return np.concatenate(parts) + offset


def _start(X, n_components, covariance_type, prior=None, n_init=2):
    """The starting parameters of ``n_init`` k-means restarts (``fit_em`` with no iteration)."""
    res = em.fit_em(
        jax.random.key(1), X, n_components, covariance_type, n_init=n_init, max_iter=0,
        tol=0.0, reg_covar=1e-6, prior=prior,
    )  # fmt: skip
    return res.params


class _Run(NamedTuple):
    lower_bounds: np.ndarray  # (n_init, max_iter)
    params: GMMParams  # batched over restarts
    ok: np.ndarray  # (n_init, max_iter): whether each step passed its bounds
    n_iter: np.ndarray


def _steps(X, n_components, covariance_type, kind, prior=None, max_iter=30, n_init=2):
    """``max_iter`` EM iterations of every restart through the public step seam
    (``em.centred.centred_step`` or ``em.expanded.expanded_step``, blocked as ``fit_em``
    blocks for them), every step taken whether or not it passed its bounds."""
    X = jnp.asarray(X)
    if kind == "expanded":
        Xb, wb = em.to_blocks(X, n_components, em.EXPANDED_BLOCK_ROWS)
        make = em.expanded.expanded_step
    else:
        Xb, wb = em.to_blocks(X, n_components)
        make = em.centred.centred_step
    step = jax.jit(make(Xb, wb, prior, jnp.asarray(1e-6), covariance_type))
    starts = _start(X, n_components, covariance_type, prior, n_init)
    lbs, oks, finals = [], [], []
    for i in range(n_init):
        params = jax.tree_util.tree_map(lambda a, i=i: a[i], starts)
        run_lb, run_ok = [], []
        for _ in range(max_iter):
            lb, params, ok = step(params)
            run_lb.append(float(lb))
            run_ok.append(bool(ok))
        lbs.append(run_lb)
        oks.append(run_ok)
        finals.append(params)
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *finals)
    return _Run(np.array(lbs), stacked, np.array(oks), np.full(n_init, max_iter))


def _assert_same_run(a, b, rtol=RTOL):
    assert_array_equal(np.asarray(a.n_iter), np.asarray(b.n_iter))
    assert_allclose(np.asarray(a.lower_bounds), np.asarray(b.lower_bounds), rtol=rtol)
    for x, y in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)):
        assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=1e-300)


# Every type also runs both kernel families against em.reference_em (test_em.py).
@pytest.mark.parametrize("covariance_type", _suite.types("full", "tied"))
@pytest.mark.parametrize("with_prior", [False, True], ids=["ml", "map"])
def test_expanded_iterations_equal_centred(covariance_type, with_prior):
    X = _offset_blobs()
    prior = Prior.default(X, 3, covariance_type) if with_prior else None
    centred = _steps(X, 3, covariance_type, "centred", prior)
    expanded = _steps(X, 3, covariance_type, "expanded", prior)
    assert np.all(expanded.ok)  # every step passed the bounds
    _assert_same_run(centred, expanded)


def _count_reg(kern, nk, reg_covar=1e-6):
    # tied adds reg_covar once to the pooled covariance: the count is the total
    return (jnp.sum(nk) if kern.needs_data_scatter else nk) * reg_covar


def test_features_reproduce_the_distances_and_moments(covariance_type):
    """``W @ phi + c`` equals the centred squared distances, and the moments give the scatter
    around any centres (exact algebra, checked in float64 against NumPy)."""
    rng = np.random.default_rng(3)
    k, d, n = 3, 4, 50
    X = rng.normal(size=(n, d)) + 2.0
    means = rng.normal(size=(k, d)) + 2.0
    ct = get_covariance_type(covariance_type)
    full = np.stack([np.cov(rng.normal(size=(20, d)), rowvar=False) + np.eye(d) for _ in range(k)])
    cov = ct.from_full(jnp.asarray(full if covariance_type != "tied" else full[:1]))
    if covariance_type == "tied":
        cov = cov[0] if cov.ndim == 3 else cov
    prec_chol = ct.precision_cholesky(cov)
    kern = em.kernels_for(ct)
    shift = jnp.asarray(X.mean(axis=0))
    UT = jnp.asarray(X.T) - shift[:, None]
    phi = kern.features_t(UT)
    assert_allclose(np.asarray(phi[:d]), np.asarray(UT))  # first d features are u itself
    terms, far = kern.expanded_terms(jnp.asarray(means), prec_chol, shift)
    maha = kern.expanded_maha_t(UT, phi, terms)
    want = ct.sq_mahalanobis(jnp.asarray(X), jnp.asarray(means), prec_chol).T
    assert_allclose(np.asarray(maha), np.asarray(want), rtol=1e-10)
    assert np.all(np.asarray(far) > 0)

    resp = rng.dirichlet(np.ones(k), n)
    moments = jnp.asarray(resp.T) @ phi.T
    nk = jnp.asarray(resp.sum(axis=0))
    centres = jnp.asarray(means) - shift
    data_scatter = UT @ UT.T
    scatter, ratio = kern.scatter_from_moments(
        moments[:, :d], moments[:, d:], nk, centres, data_scatter, _count_reg(kern, nk)
    )
    direct = kern.scatter(jnp.asarray(X), jnp.asarray(resp), jnp.asarray(means))
    assert_allclose(np.asarray(scatter), np.asarray(direct), rtol=1e-10)
    assert 0 < float(ratio) < 1e3  # well-scaled data: nothing near the refusal threshold


def _tight_far_component(n=600):
    """A broad cluster at the origin and a tight one (sd 1e-3) 1e3 away: the expanded
    distances of the tight component would lose ~6 digits."""
    rng = np.random.default_rng(5)
    return np.concatenate([rng.normal(size=(n, 2)), 1e3 + 1e-3 * rng.normal(size=(n // 3, 2))])


def _cancelling():
    """1-D: a broad cluster at 0 and a tight one (sd 1e-3) at 4. Around the data mean (~2)
    the tight component's second moment (~4 per point) is ~2e6 times its regularised
    variance: the scatter guard (limit ~1.1e6) refuses, while the distance bound
    (``far`` ~ 4 / 2e-6 = 2e6, limit ~2e7 for F=2) holds."""
    rng = np.random.default_rng(8)
    return np.concatenate([rng.normal(0.0, 1.0, (500, 1)), rng.normal(4.0, 1e-3, (500, 1))])


def _fitted_params(X, k, covariance_type):
    # 1000 rows: a small problem, which fit_em runs with the centred kernels only.
    assert not em.expanded.use_expanded(np.float64, len(X), k, X.shape[1])
    res = em.fit_em(jax.random.key(1), X, k, covariance_type, max_iter=50, tol=0.0)
    return jax.tree_util.tree_map(lambda a: a[0], res.params)


def test_distance_guard_refuses_a_far_tight_component():
    X = jnp.asarray(_tight_far_component())
    params = _fitted_params(X, 2, "full")
    shift = jnp.mean(X, axis=0)
    assert not bool(em.expanded._maha_ok(params, shift))
    Xb, wb = em.to_blocks(X, 2, em.EXPANDED_BLOCK_ROWS)
    _, _, ok = em.expanded.expanded_step(Xb, wb, None, jnp.asarray(1e-6), "full")(params)
    assert not bool(ok)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_scatter_guard_refuses_cancelling_moments(covariance_type):
    X = jnp.asarray(_cancelling())
    params = _fitted_params(X, 2, covariance_type)
    var = np.sort(np.asarray(params.covariances).ravel())
    assert var[0] < 1e-5 < var[-1]  # the fit found the tight component
    assert bool(em.expanded._maha_ok(params, jnp.mean(X, axis=0)))  # the distance bound alone holds
    Xb, wb = em.to_blocks(X, 2, em.EXPANDED_BLOCK_ROWS)
    _, new, ok = em.expanded.expanded_step(Xb, wb, None, jnp.asarray(1e-6), covariance_type)(params)
    assert not bool(ok)


@pytest.mark.parametrize("make", [_tight_far_component, _cancelling], ids=["far", "cancel"])
def test_refused_fits_end_where_the_centred_kernels_end(make, covariance_type, monkeypatch):
    X = make()

    def fit():
        return em.fit_em(jax.random.key(1), X, 2, covariance_type, n_init=2, max_iter=40, tol=0.0)

    monkeypatch.setattr(em.expanded, "use_expanded", lambda dtype, *shape: False)
    centred = fit()
    monkeypatch.setattr(em.expanded, "use_expanded", lambda dtype, *shape: True)
    result = fit()
    _assert_same_run(centred, result, rtol=1e-7)


def test_point_seeded_start_hands_back_to_the_expanded_kernels(monkeypatch):
    """k-means++ seeds give every component the variance reg_covar: the first expanded step
    is refused, one centred step gives real covariances, and the expanded kernels finish."""
    X = _offset_blobs(n=1500)
    modes = []
    pick = em.driver._em_program.pick

    def recording_pick(*a, **kw):
        program = pick(*a, **kw)

        def run(*args, **static):
            modes.append(static["mode"])
            return program(*args, **static)

        return run

    monkeypatch.setattr(em.driver._em_program, "pick", recording_pick)
    monkeypatch.setattr(em.expanded, "use_expanded", lambda dtype, *shape: True)
    res = em.fit_em(jax.random.key(2), X, 3, "full", init_params="k-means++", max_iter=40, tol=0)
    assert modes[:3] == ["expanded", "resume", "expanded"]
    assert int(res.n_iter[0]) == 40 and not bool(res.failed[0])
    monkeypatch.setattr(em.expanded, "use_expanded", lambda dtype, *shape: False)
    ref = em.fit_em(jax.random.key(2), X, 3, "full", init_params="k-means++", max_iter=40, tol=0)
    _assert_same_run(ref, res)


def test_expanded_fit_inside_jit_matches(monkeypatch):
    """Under an outer jit there is no host to hand runs back and forth: a refused run is
    finished by the centred kernels in the same program."""
    monkeypatch.setattr(em.expanded, "use_expanded", lambda dtype, *shape: True)
    X = jnp.asarray(_tight_far_component(300))

    def fit(X):
        return em.fit_em(jax.random.key(0), X, 2, "diag", max_iter=25, tol=0.0)

    inside = jax.jit(fit)(X)
    outside = fit(X)
    _assert_same_run(outside, inside, rtol=1e-7)
    assert int(inside.n_iter[0]) == 25


def test_float32_and_small_problems_keep_the_centred_kernels():
    assert not em.expanded.use_expanded(np.float32, 10**6, 10, 10)
    assert not em.expanded.use_expanded(
        np.float64, 600, 4, 2
    )  # compile-dominated: one program only
    assert em.expanded.use_expanded(np.float64, 10**5, 10, 10)


def test_blocks_are_evened_out():
    X = jnp.zeros((2 * 1024 + 1, 2))
    Xb, wb = em.to_blocks(X, 2, 1024)
    # Three blocks of 683 rows (2049 = 3 x 683: no padding), where blocks at the cap of 1024
    # rows would pad 1023.
    assert Xb.shape == (3, 683, 2)
    assert float(wb.sum()) == 2 * 1024 + 1 and float(wb.size - wb.sum()) < Xb.shape[1]


def test_params_from_is_the_m_step(covariance_type):
    """The shared M-step tail gives the same parameters from either kernel's statistics."""
    X = jnp.asarray(_offset_blobs(n=300))
    rng = np.random.default_rng(0)
    resp = jnp.asarray(rng.dirichlet(np.ones(3), X.shape[0]))
    Xb, wb = em.to_blocks(X, 3)
    direct = em.m_step(Xb, em.init._resp_blocks(resp, Xb), covariance_type, 1e-6)
    assert isinstance(direct, GMMParams)
    kern = em.kernels_for(covariance_type)
    shift = jnp.mean(X, axis=0)
    UT = X.T - shift[:, None]
    phi = kern.features_t(UT)
    moments = resp.T @ phi.T
    nk = jnp.sum(resp, axis=0)
    d = X.shape[1]
    sx = moments[:, :d] + nk[:, None] * shift
    centres = sx / em.reference._regularised_count(nk)[:, None] - shift
    scatter, _ = kern.scatter_from_moments(
        moments[:, :d], moments[:, d:], nk, centres, UT @ UT.T, _count_reg(kern, nk)
    )
    via = em.reference._params_from(em.SufficientStats(nk, sx), scatter, kern, 1e-6, None)
    for a, b in zip(jax.tree_util.tree_leaves(direct), jax.tree_util.tree_leaves(via)):
        assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10)
