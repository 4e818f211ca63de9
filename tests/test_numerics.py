"""Numerical robustness: float32 against float64, points far in the tails, collapsing
components in both precisions.

Documented behaviour for a component that collapses during EM (its covariance loses positive
definiteness, e.g. onto a single or repeated point with ``reg_covar=0``):

- the run that collapsed stops and is marked failed (its last finite parameters are kept,
  nothing NaN is ever returned);
- if every restart failed, ``fit`` raises a ValueError that names ``reg_covar`` (scikit-learn's
  message; in float32 it also suggests float64 data); except, as in scikit-learn, when EM was
  stopped at ``max_iter`` before converging and the collapsing component's parameters are still
  finite with a positive covariance: that run is returned with the ConvergenceWarning and a
  RuntimeWarning saying it is degenerate;
- if only some restarts failed, they are discarded with a RuntimeWarning naming ``reg_covar``
  and the best of the others is returned;
- with the default ``reg_covar=1e-6`` a collapsing component is the documented recovery: it
  sits on its point(s) with covariance ``reg_covar * I`` and the fit is finite.
"""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import stats

from bayesgmm import ConvergenceWarning, GaussianMixture, GMMParams, density
from bayesgmm._validation import collapsed_runs
from bayesgmm.covariance import get_covariance_type

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


# --- float32 against float64 on 1e6 points --------------------------------------------------


def test_float32_fit_of_a_million_points_matches_float64():
    """Same data (rounded to float32 once, so both precisions see identical values), same
    initial parameters, 10 EM iterations: the float32 mean log-likelihood is within 1e-4
    relative of float64's, as are the per-point log densities on average. The run takes a few
    seconds at this size (a compile per precision plus 20 passes over 1e6 x 2 points)."""
    rng = np.random.default_rng(0)
    n = 1_000_000
    X = np.concatenate(
        [
            rng.normal([0.0, 0.0], [1.0, 0.5], (n // 2, 2)),
            rng.normal([4.0, 3.0], [0.7, 1.5], (3 * n // 10, 2)),
            rng.normal([-3.0, 5.0], 1.0, (n // 5, 2)),
        ]
    ).astype(np.float32)
    init = dict(
        weights_init=[0.3, 0.3, 0.4],
        means_init=[[-1.0, 0.0], [3.0, 3.0], [-2.0, 4.0]],
        precisions_init=np.stack([np.eye(2)] * 3),
        max_iter=10,
        tol=0.0,
    )
    fits = {}
    for dtype in (np.float64, np.float32):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: 10 iterations on purpose
            fits[dtype] = GaussianMixture(3, **init).fit(X.astype(dtype))
    f64, f32 = fits[np.float64], fits[np.float32]
    assert f32.means_.dtype == np.float32 and f64.means_.dtype == np.float64
    rel = abs(f32.lower_bound_ - f64.lower_bound_) / abs(f64.lower_bound_)
    assert rel < 1e-4, rel
    # Every iteration's objective, not only the last.
    assert_allclose(f32.lower_bounds_, f64.lower_bounds_, rtol=1e-4)
    assert_allclose(f32.means_, f64.means_, rtol=1e-3, atol=1e-3)
    # Scoring the same float32 parameters in both precisions.
    p32 = f32.params_
    lp32 = np.asarray(density.log_prob(X[:100_000], p32))
    lp64 = np.asarray(density.log_prob(X[:100_000].astype(np.float64), p32.astype(np.float64)))
    assert abs(lp32.mean() - lp64.mean()) / abs(lp64.mean()) < 1e-4


# --- far in the tails -----------------------------------------------------------------------


def _params(covariance_type, dtype, sd=1.0):
    rng = np.random.default_rng(1)
    k, d = 3, 2
    full = np.stack([np.diag(rng.uniform(0.5, 1.5, d)) * sd**2 for _ in range(k)])
    ct = get_covariance_type(covariance_type)
    cov = np.asarray(ct.from_full(full))
    p = GMMParams(np.array([0.5, 0.3, 0.2]), rng.normal(0, 2 * sd, (k, d)), cov, covariance_type)
    return p.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("sd", [1.0, 1e-3], ids=["unit", "narrow"])
def test_log_densities_finite_1e3_sd_away(covariance_type, dtype, sd):
    """Points 1e3 standard deviations from every component (in several directions): log
    densities are finite, equal scipy's in float64 (relative 1e-12) and float32 (1e-5: the
    Mahalanobis term ~5e5 carries float32's 6e-8 relative rounding), and the responsibilities
    are finite and sum to one - log space throughout, no underflow to log(0)."""
    p = _params(covariance_type, dtype, sd)
    dirs = np.array([[1.0, 0.0], [0.0, -1.0], [0.6, 0.8], [-0.8, 0.6]])
    X = (np.asarray(p.means, np.float64)[0] + 1e3 * sd * dirs).astype(dtype)
    lp = np.asarray(density.log_prob(X, p))
    comp = np.asarray(density.component_log_prob(X, p))
    resp = np.asarray(density.predict_proba(X, p))
    assert lp.dtype == dtype
    assert np.all(np.isfinite(lp)) and np.all(np.isfinite(comp)) and np.all(np.isfinite(resp))
    assert_allclose(resp.sum(axis=1), 1.0, atol=1e-5 if dtype == np.float32 else 1e-12)
    covs = np.asarray(p.covariance_matrices(), np.float64)
    means = np.asarray(p.means, np.float64)
    want = np.stack(
        [
            stats.multivariate_normal(means[k], covs[k]).logpdf(X.astype(np.float64))
            for k in range(3)
        ],
        axis=1,
    )
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    assert_allclose(comp, want, rtol=rtol)
    assert np.all(lp < -1e5)  # really ~1e3 sd away (Mahalanobis >= 4e5), not clipped


def test_log_density_of_a_far_point_matches_the_formula_exactly():
    # One standard normal in 2-D at distance 1e3: -log(2 pi) - 1e6 / 2, in both precisions.
    p = GMMParams(np.ones(1), np.zeros((1, 2)), np.ones(1), "spherical")
    want = -np.log(2 * np.pi) - 0.5e6
    for dtype, rtol in ((np.float64, 1e-15), (np.float32, 1e-7)):
        x = np.array([[1e3, 0.0]], dtype)
        assert_allclose(float(density.log_prob(x, p.astype(dtype))[0]), want, rtol=rtol)


# --- collapsing components ---------------------------------------------------------------


def _collapsing_data(dtype):
    """A 2-D blob of 200 points and one isolated point repeated 3 times far away. Started with
    a mean on the isolated point, a component takes exactly those 3 identical rows: its
    scatter is exactly zero after the first M-step."""
    rng = np.random.default_rng(2)
    X = np.concatenate([rng.normal(0, 1, (200, 2)), np.full((3, 2), 30.0)])
    return X.astype(dtype)


_COLLAPSE_INIT = dict(
    weights_init=[0.9, 0.1],
    means_init=[[0.0, 0.0], [30.0, 30.0]],
    random_state=0,
)


def _prec_init(covariance_type):
    ct = get_covariance_type(covariance_type)
    return np.asarray(ct.from_full(np.stack([np.eye(2)] * 2)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_collapse_without_reg_covar_raises_naming_reg_covar(covariance_type, dtype):
    # tied is absent: its one shared covariance includes the blob's spread and never collapses.
    X = _collapsing_data(dtype)
    gm = GaussianMixture(
        2,
        covariance_type=covariance_type,
        reg_covar=0.0,
        precisions_init=_prec_init(covariance_type),
        **_COLLAPSE_INIT,
    )
    with pytest.raises(ValueError, match=r"increase reg_covar") as excinfo:
        gm.fit(X)
    if dtype == np.float32:
        assert "float64" in str(excinfo.value)
    assert not hasattr(gm, "means_")  # nothing half-fitted is left behind


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_collapse_stopped_at_max_iter_is_returned_as_scikit_learn_does(covariance_type, dtype):
    """max_iter=1, so EM stops while the far component collapses. scikit-learn 1.9.1 fits diag
    and spherical here (with a ConvergenceWarning) and raises for full; so does bayesgmm, and
    what it returns is finite with positive covariances. (With the default max_iter the same
    fits converge onto the collapse and raise, see above.)"""
    X = _collapsing_data(dtype)
    gm = GaussianMixture(
        2,
        covariance_type=covariance_type,
        reg_covar=0.0,
        max_iter=1,
        precisions_init=_prec_init(covariance_type),
        **_COLLAPSE_INIT,
    )
    if covariance_type == "full":  # the rank-one scatter of three identical points
        with pytest.raises(ValueError, match=r"increase reg_covar"):
            gm.fit(X)
        assert not hasattr(gm, "means_")
        return
    with pytest.warns(RuntimeWarning, match=r"max_iter=1 .*degenerate. Increase reg_covar"):
        with pytest.warns(ConvergenceWarning):
            gm.fit(X)
    assert not gm.converged_ and gm.n_iter_ == 1
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert np.all(np.isfinite(getattr(gm, name))), name
    assert np.all(gm.covariances_ > 0)
    # The component sits on the repeated point with a covariance at the rounding level.
    assert_allclose(gm.means_[1], 30.0, rtol=1e-6)
    assert np.all(gm.covariances_[1] < 1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_collapse_with_reg_covar_is_the_documented_recovery(covariance_type, dtype):
    X = _collapsing_data(dtype)
    gm = GaussianMixture(
        2,
        covariance_type=covariance_type,
        precisions_init=_prec_init(covariance_type),
        **_COLLAPSE_INIT,
    ).fit(X)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.all(np.isfinite(getattr(gm, name)))
    # The collapsed component sits on the repeated point with covariance reg_covar * I; in
    # float32 the mean of three 30.0s rounds within a few ulps of 30 (relative 1e-6), so its
    # scatter adds at most ~(3e-5)^2 to the 1e-6.
    cov = np.asarray(gm.params_.covariance_matrices(), np.float64)
    assert_allclose(gm.means_[1], 30.0, rtol=1e-6)
    assert_allclose(gm.weights_[1], 3 / 203, rtol=1e-5)
    atol = 1e-15 if dtype == np.float64 else 2e-8
    assert_allclose(cov[1], 1e-6 * np.eye(2), atol=atol)
    assert np.all(np.linalg.eigvalsh(cov) > 0)
    resp = gm.predict_proba(X)
    assert np.all(np.isfinite(resp))
    assert_allclose(resp.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_failed_restarts_are_discarded_with_a_warning(dtype):
    """n_init restarts where only some collapse: random_from_data starts a component on one of
    the three repeated far points in some restarts; without reg_covar those fail. They are
    dropped with a RuntimeWarning naming reg_covar and the best finite restart is returned."""
    from bayesgmm import em
    from bayesgmm._random import as_key

    X = _collapsing_data(dtype)
    kw = dict(n_init=40, init_params="random_from_data", max_iter=100, tol=1e-3, reg_covar=0.0)
    res = em.fit_em(as_key(0), X, 2, "spherical", **kw)
    # spherical runs collapse to a rounding-level variance rather than a failed Cholesky;
    # collapsed_runs is the estimator's test for both.
    failed = np.asarray(res.failed) | collapsed_runs(res.params, X, 0.0)
    assert 0 < failed.sum() < len(failed)  # the seed gives both kinds of restart
    gm = GaussianMixture(2, covariance_type="spherical", random_state=0, **kw)
    with pytest.warns(RuntimeWarning, match=rf"{failed.sum()} of 40 .*increase reg_covar"):
        gm.fit(X)
    assert_allclose(gm.lower_bound_, np.asarray(res.lower_bound)[~failed].max(), rtol=1e-6)
    assert np.all(np.isfinite(gm.means_)) and np.all(np.isfinite(gm.covariances_))


def test_em_failure_flags_keep_the_last_finite_parameters():
    """At the level of bayesgmm.em: a collapsing run never returns NaN. Either EM flags it
    (a covariance lost positive definiteness: failed=True, the last finite parameters kept) or
    its covariance is left at the rounding level, which collapsed_runs (the estimator's second
    test) flags; one of the two always holds."""
    from bayesgmm import em

    X = _collapsing_data(np.float64)
    start = GMMParams(np.array([0.9, 0.1]), np.array([[0.0, 0.0], [30.0, 30.0]]), np.ones(2),
                      "spherical")  # fmt: skip
    res = em.fit_em(
        jax.random.key(0), X, 2, "spherical", max_iter=20, tol=0.0, reg_covar=0.0,
        params_init=start,
    )  # fmt: skip
    assert bool(res.failed[0]) or bool(collapsed_runs(res.params, X, 0.0)[0])
    for leaf in jax.tree_util.tree_leaves(res.params):
        assert np.all(np.isfinite(np.asarray(leaf)))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_density_with_a_component_1e12_away(covariance_type):
    """A lone far component (an outlier's) must not spoil the others' log densities: an
    expansion of (x - m)^2 around the centre of the means loses the Mahalanobis term to
    cancellation (it made every point's log density equal in float64)."""
    ct = get_covariance_type(covariance_type)
    full = np.stack([np.diag([7.25, 3.0]), np.eye(2) * 1e-6])
    if covariance_type == "tied":
        full = np.stack([np.diag([7.25, 3.0])] * 2)
    p = GMMParams(
        np.array([1 - 1e-6, 1e-6]),
        np.array([[2.5, 2.5], [1e12, 1e12]]),
        np.asarray(ct.from_full(full)),
        covariance_type,
    )
    x = np.array([[0.0, 0.0], [2.5, 2.5], [5.0, 1.0], [-3.0, 7.0]])
    covs = np.asarray(p.covariance_matrices())
    want = np.log(1 - 1e-6) + stats.multivariate_normal([2.5, 2.5], covs[0]).logpdf(x)
    assert_allclose(np.asarray(density.log_prob(x, p)), want, rtol=1e-12)
