"""Parity with scikit-learn's ``GaussianMixture`` (an implementation nobody here wrote).

Both estimators start from the same weights, means and precisions and run with the same
``tol``, ``reg_covar`` and ``max_iter`` in float64; every fitted attribute must agree to
``rtol=1e-6`` and ``n_iter_`` must be equal. Data sets differ in shape (d=1, d=2, d=4), number
of components (K=1..5) and difficulty (one unbalanced and overlapping).
"""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from bayesgmm import GaussianMixture

RTOL = 1e-6
TOL = 1e-6
REG_COVAR = 1e-6
MAX_ITER = 200


def _blobs_2d():
    rng = np.random.default_rng(1)
    return np.concatenate(
        [
            rng.normal([0.0, 0.0], [1.0, 0.4], (120, 2)),
            rng.normal([4.0, 3.0], [0.6, 1.2], (100, 2)),
            rng.normal([-1.0, 5.0], 0.8, (80, 2)),
        ]
    )


def _one_d():
    rng = np.random.default_rng(2)
    return np.concatenate([rng.normal(-2.0, 0.7, (130, 1)), rng.normal(1.5, 1.3, (70, 1))])


def _four_d_five():
    rng = np.random.default_rng(3)
    centres = rng.normal(0.0, 4.0, (5, 4))
    return np.concatenate([rng.normal(c, 1.0, (50, 4)) for c in centres])


def _unbalanced_overlapping():
    # 90/10 split, centres 1.5 standard deviations apart: EM is slow and the small
    # component's parameters are sensitive, the hardest case for agreement.
    rng = np.random.default_rng(4)
    big = rng.multivariate_normal([0.0, 0.0, 0.0], np.diag([1.0, 2.0, 0.5]), 270)
    small = rng.normal([1.5, 1.0, -0.5], 0.6, (30, 3))
    return np.concatenate([big, small])


# (name, data maker, n_components)
CASES = [
    ("blobs-2d-k3", _blobs_2d, 3),
    ("blobs-2d-k1", _blobs_2d, 1),
    ("one-d-k2", _one_d, 2),
    ("four-d-k5", _four_d_five, 5),
    ("unbalanced-3d-k2", _unbalanced_overlapping, 2),
]


def _initial_params(X, k, covariance_type):
    """Deterministic, deliberately imperfect starting values (not a fitted answer)."""
    rng = np.random.default_rng(100 + k)
    n, d = X.shape
    idx = np.linspace(0, n - 1, k).astype(int)  # spread over the (cluster-ordered) rows
    means = X[idx] + 0.3 * rng.standard_normal((k, d))
    weights = rng.dirichlet(np.full(k, 5.0))
    cov = np.atleast_2d(np.cov(X, rowvar=False))
    scales = rng.uniform(0.5, 1.5, k)
    if covariance_type == "full":
        precisions = np.stack([np.linalg.inv(cov * s) for s in scales])
    elif covariance_type == "tied":
        precisions = np.linalg.inv(cov)
    elif covariance_type == "diag":
        precisions = 1.0 / (np.diag(cov)[None, :] * scales[:, None])
    else:
        precisions = 1.0 / (np.mean(np.diag(cov)) * scales)
    return weights, means, precisions


def _fit_both(X, k, covariance_type, **kwargs):
    w, m, p = _initial_params(X, k, covariance_type)
    common = dict(
        n_components=k,
        covariance_type=covariance_type,
        tol=TOL,
        reg_covar=REG_COVAR,
        max_iter=MAX_ITER,
        weights_init=w,
        means_init=m,
        precisions_init=p,
    )
    common.update(kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = SkGaussianMixture(random_state=0, **common).fit(X)
        ours = GaussianMixture(random_state=0, **common).fit(X)
    return sk, ours


# The default suite runs the three harder data sets (K = 3 and 5, the unbalanced overlap);
# K = 1 and the 1-D case are marked extended.
@pytest.mark.parametrize(
    "name, make, k",
    [
        c
        if c[0] not in ("blobs-2d-k1", "one-d-k2")
        else pytest.param(*c, marks=pytest.mark.extended)
        for c in CASES
    ],
    ids=[c[0] for c in CASES],
)
def test_fitted_attributes_match_sklearn(name, make, k, covariance_type, em_kernels):
    # Both EM kernels (centred, expanded) must give scikit-learn's fit.
    X = make()
    sk, ours = _fit_both(X, k, covariance_type)

    assert ours.n_iter_ == sk.n_iter_
    assert ours.converged_ == sk.converged_
    for attr in (
        "weights_",
        "means_",
        "covariances_",
        "precisions_",
        "precisions_cholesky_",
    ):
        got, want = getattr(ours, attr), getattr(sk, attr)
        assert got.shape == want.shape, attr
        assert got.dtype == np.float64, attr
        assert_allclose(got, want, rtol=RTOL, err_msg=attr)
    assert_allclose(ours.lower_bound_, sk.lower_bound_, rtol=RTOL)
    assert_allclose(ours.lower_bounds_, np.asarray(sk.lower_bounds_), rtol=RTOL)
    assert ours.n_features_in_ == sk.n_features_in_

    assert_array_equal(ours.predict(X), sk.predict(X))
    # Responsibilities far below 1e-12 are rounding-level in both implementations; relative
    # agreement is demanded everywhere else.
    assert_allclose(ours.predict_proba(X), sk.predict_proba(X), rtol=RTOL, atol=1e-12)
    assert_allclose(ours.score_samples(X), sk.score_samples(X), rtol=RTOL)
    assert_allclose(ours.score(X), sk.score(X), rtol=RTOL)
    assert_allclose(ours.bic(X), sk.bic(X), rtol=RTOL)
    assert_allclose(ours.aic(X), sk.aic(X), rtol=RTOL)


def test_unconverged_runs_and_fit_predict_match_sklearn(covariance_type):
    """Stopped by max_iter (tol=0, so never converged), both keep the same parameters, warn,
    and fit_predict returns the same labels. Same shapes and max_iter as the main parity test,
    so no new program is compiled (tol is a traced argument)."""
    X = _blobs_2d()
    w, m, p = _initial_params(X, 3, covariance_type)
    kw = dict(
        n_components=3,
        covariance_type=covariance_type,
        tol=0.0,
        reg_covar=REG_COVAR,
        max_iter=MAX_ITER,
        weights_init=w,
        means_init=m,
        precisions_init=p,
        random_state=0,
    )
    sk, ours = SkGaussianMixture(**kw), GaussianMixture(**kw)
    with pytest.warns(ConvergenceWarning):
        want = sk.fit_predict(X)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        got = ours.fit_predict(X)
    assert_array_equal(got, want)
    assert ours.n_iter_ == sk.n_iter_ == MAX_ITER
    assert not ours.converged_ and not sk.converged_
    assert_allclose(ours.means_, sk.means_, rtol=RTOL)
    assert_allclose(ours.lower_bounds_, sk.lower_bounds_, rtol=RTOL)


def test_warm_start_matches_sklearn():
    """Warm starts continue from the previous fit in both; and, refitting a converged model,
    both compare the first new objective with the previous ``lower_bound_`` (so they stop
    after one iteration)."""
    X = _unbalanced_overlapping()
    w, m, p = _initial_params(X, 2, "full")
    kw = dict(
        n_components=2,
        tol=0.0,
        reg_covar=REG_COVAR,
        max_iter=MAX_ITER,
        weights_init=w,
        means_init=m,
        precisions_init=p,
        random_state=0,
        warm_start=True,
    )
    sk, ours = SkGaussianMixture(**kw), GaussianMixture(**kw)
    for tol in (0.0, 0.0, TOL, TOL):
        sk.set_params(tol=tol)
        ours.set_params(tol=tol)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            sk.fit(X)
            ours.fit(X)
        assert ours.n_iter_ == sk.n_iter_
        assert ours.converged_ == sk.converged_
        assert_allclose(ours.means_, sk.means_, rtol=RTOL)
        assert_allclose(ours.covariances_, sk.covariances_, rtol=RTOL)
        assert_allclose(ours.lower_bounds_, sk.lower_bounds_, rtol=RTOL)
    assert ours.converged_ and ours.n_iter_ == 1


def _sorted_by_first_coordinate(gm):
    order = np.argsort(gm.means_[:, 0])
    return gm.weights_[order], gm.means_[order], gm.covariances_[order]


def test_kmeans_init_matches_sklearn_on_separated_data():
    """On well-separated clusters both k-means find the same partition, so the initial
    parameters (``max_iter=0``) are identical up to the order of the components."""
    rng = np.random.default_rng(5)
    X = np.concatenate([rng.normal(c, 0.5, (60, 2)) for c in ([0, 0], [8, 0], [0, 8])])
    kw = dict(n_components=3, init_params="kmeans", max_iter=0, random_state=0)
    sk = SkGaussianMixture(**kw).fit(X)
    ours = GaussianMixture(**kw).fit(X)
    assert ours.n_iter_ == sk.n_iter_ == 0
    assert ours.lower_bound_ == sk.lower_bound_ == -np.inf
    assert len(ours.lower_bounds_) == 0
    for got, want in zip(_sorted_by_first_coordinate(ours), _sorted_by_first_coordinate(sk)):
        assert_allclose(got, want, rtol=RTOL)


# Two types keep the compile count down; the covariance types differ only in the M-step,
# which the main parity test covers for all four.
@pytest.mark.parametrize("covariance_type", ["full", "tied"])
@pytest.mark.parametrize("init_params", ["k-means++", "random_from_data"])
def test_point_seeded_inits_have_sklearn_structure(init_params, covariance_type):
    """These inits are random, so compare structure: scikit-learn makes one-hot
    responsibilities on K distinct data points, giving equal weights, means equal to those
    points and covariances equal to ``reg_covar`` on the diagonal."""
    X = _blobs_2d()
    kw = dict(
        n_components=3,
        covariance_type=covariance_type,
        init_params=init_params,
        max_iter=0,
        reg_covar=1e-3,
        random_state=0,
    )
    sk = SkGaussianMixture(**kw).fit(X)
    ours = GaussianMixture(**kw).fit(X)
    # scikit-learn divides nk by n_samples, so its initial weights here are 1/n each and sum
    # to K/n, not 1 (harmless to it: the first responsibilities are unchanged by a common
    # factor). Ours are normalised; they agree after normalisation.
    assert_allclose(ours.weights_, sk.weights_ / sk.weights_.sum(), rtol=RTOL)
    assert_allclose(ours.weights_, np.full(3, 1 / 3), rtol=RTOL)
    # The off-diagonals are rounding noise of zero (~1e-30 in both libraries: each mean is
    # its point divided by 1 + 10 eps), so they are compared absolutely, far below reg_covar.
    if covariance_type == "tied":
        # scikit-learn's tied estimate is X^T X minus the means' outer products over
        # sum(nk): it assumes every row's responsibilities sum to one, false for one-hot
        # rows on only K points (its covariance here is the data's second moment, ~1e2-1e3).
        # Ours is the responsibility-weighted scatter: zero, plus reg_covar.
        assert_allclose(ours.covariances_, 1e-3 * np.eye(2), rtol=RTOL, atol=1e-20)
    else:
        assert_allclose(ours.covariances_, sk.covariances_, rtol=RTOL, atol=1e-20)
    dists = np.linalg.norm(ours.means_[:, None, :] - X[None, :, :], axis=-1)
    assert_allclose(dists.min(axis=1), 0.0, atol=1e-12)  # each mean is a data point
    assert len(set(dists.argmin(axis=1))) == 3  # ... and they are distinct points


def test_random_init_has_sklearn_structure():
    """'random' draws uniform responsibilities: both give weights near 1/K and means near the
    data mean (a mean of n uniform weights is within a few 1/sqrt(n) of its expectation)."""
    X = _blobs_2d()
    kw = dict(n_components=3, init_params="random", max_iter=0, random_state=0)
    sk = SkGaussianMixture(**kw).fit(X)
    ours = GaussianMixture(**kw).fit(X)
    for gm in (sk, ours):
        assert_allclose(gm.weights_, 1 / 3, atol=0.05)
        assert_allclose(gm.means_, np.broadcast_to(X.mean(0), (3, 2)), atol=0.5)
        assert np.all(np.linalg.eigvalsh(gm.covariances_) > 0)
    assert_allclose(np.sort(ours.weights_), np.sort(sk.weights_), atol=0.05)


def test_data_spanning_several_row_blocks_matches_sklearn(covariance_type):
    """EM streams rows in blocks and pads the last one: with more rows than two blocks and a
    ragged end, padding must carry zero weight in every statistic."""
    import jax.numpy as jnp

    from bayesgmm import em
    from bayesgmm.density import block_rows

    k, d = 8, 8
    n = 2 * block_rows(k, d) + 37
    Xb, wb = em.to_blocks(jnp.zeros((n, d)), k)
    assert Xb.shape[0] >= 3 and float(wb.sum()) == n  # several blocks, the last one padded
    # The size takes the expanded kernels by default, in blocks of their own.
    assert em.expanded.use_expanded(np.float64, n, k, d)
    Xb, wb = em.to_blocks(jnp.zeros((n, d)), k, em.EXPANDED_BLOCK_ROWS)
    assert Xb.shape[0] >= 3 and float(wb.sum()) == n
    rng = np.random.default_rng(6)
    centres = rng.normal(0.0, 3.0, (k, d))
    X = centres[rng.integers(0, k, n)] + rng.normal(size=(n, d)) * rng.uniform(0.5, 1.5, d)
    # tol=1e-3 (scikit-learn's default) keeps scikit-learn's share of the time small.
    sk, ours = _fit_both(X, k, covariance_type, tol=1e-3)
    assert ours.n_iter_ == sk.n_iter_
    for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert_allclose(getattr(ours, attr), getattr(sk, attr), rtol=RTOL, err_msg=attr)
    assert_allclose(ours.lower_bounds_, sk.lower_bounds_, rtol=RTOL)
    assert_allclose(ours.score_samples(X), sk.score_samples(X), rtol=RTOL)
