"""Property-based tests (hypothesis) of EM over generated mixtures and data.

Every example uses the same shapes (300 points, 2 features, 3 components, 60 iterations from
given parameters), so each covariance type's program is compiled once for the whole file.
Examples are derandomized (fixed), so the statistical tolerances below are fixed-seed checks
whose failure probability is stated where they are not exact identities.

Properties:
- the EM objective never decreases, maximum likelihood and MAP;
- permuting the components of the start permutes the result and leaves the objective unchanged;
- an affine map x -> A x + b of the data, with the start mapped the same way, maps the fitted
  means (A m + b) and covariances (A S A^T) and shifts the mean log-likelihood by -log|det A|
  (A general for full/tied, diagonal for diag, a scaled rotation for spherical);
- diag versus full when the truth is diagonal (what holds is stated at that test);
- sampling from a mixture with our sampler and refitting with many points recovers it.
"""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from scipy.optimize import linear_sum_assignment

from bayesgmm import GMMParams, Prior, density, em
from bayesgmm.covariance import get_covariance_type

N, D, K, ITERS = 300, 2, 3, 60
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

SETTINGS = settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- generated mixtures ------------------------------------------------------------------


def _rotation(theta):
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]])


@st.composite
def mixtures(draw, separation=(3.0, 8.0)):
    """A 2-D, 3-component mixture as full covariance matrices and a data seed.

    Means on a random triangle with the given side lengths (in units of the largest scale);
    weights at least 0.15 so every component has ~45 of the 300 points (no collapse);
    covariances R diag(s^2) R^T with scales in [0.4, 1.5] and any rotation.
    """
    raw_w = np.array(draw(st.lists(st.floats(0.3, 1.0), min_size=K, max_size=K)))
    weights = 0.15 + 0.55 * raw_w / raw_w.sum()
    weights = weights / weights.sum()
    sep = draw(st.floats(*separation))
    angle0 = draw(st.floats(0, 2 * np.pi))
    angles = angle0 + np.array([0.0, 2.0, 4.0]) * np.pi / 3
    means = 1.5 * sep / np.sqrt(3) * np.c_[np.cos(angles), np.sin(angles)]
    means = means + np.array(draw(st.lists(st.floats(-5, 5), min_size=2, max_size=2)))
    scales = np.array(draw(st.lists(st.floats(0.4, 1.5), min_size=2 * K, max_size=2 * K)))
    thetas = draw(st.lists(st.floats(0, np.pi), min_size=K, max_size=K))
    covs = np.stack(
        [
            _rotation(t) @ np.diag(scales[2 * k : 2 * k + 2] ** 2) @ _rotation(t).T
            for k, t in enumerate(thetas)
        ]
    )
    seed = draw(st.integers(0, 2**31 - 1))
    return weights, means, covs, seed


def _draw(weights, means, covs, n, seed):
    rng = np.random.default_rng(seed)
    z = rng.choice(len(weights), size=n, p=weights)
    chol = np.linalg.cholesky(covs)
    return means[z] + np.einsum("nij,nj->ni", chol[z], rng.standard_normal((n, means.shape[1])))


def _start(X, covariance_type, seed):
    """A deliberately rough start: means at 3 random data points, unit covariances."""
    rng = np.random.default_rng(seed + 1)
    ct = get_covariance_type(covariance_type)
    means = X[rng.choice(len(X), K, replace=False)]
    cov = np.asarray(ct.from_full(np.stack([np.eye(D)] * K)))
    return GMMParams(np.full(K, 1.0 / K), means, cov, covariance_type)


def _fit(X, start, *, prior=None, reg_covar=0.0, max_iter=ITERS, kernels="auto"):
    # kernels: "auto" (what the size selects: centred at this size), or force "expanded".
    use_expanded = em.expanded.use_expanded
    if kernels == "expanded":
        em.expanded.use_expanded = lambda dtype, *shape: dtype == np.float64
    try:
        res = _fit_em(X, start, prior, reg_covar, max_iter)
    finally:
        em.expanded.use_expanded = use_expanded
    res = jax.tree_util.tree_map(lambda a: np.asarray(a[0]), res)
    assert not res.failed, "EM failed on a well-conditioned generated mixture"
    return res


def _fit_em(X, start, prior, reg_covar, max_iter):
    return em.fit_em(
        jax.random.key(0),
        np.asarray(X),
        K,
        start.covariance_type,
        max_iter=max_iter,
        tol=0.0,
        reg_covar=reg_covar,
        prior=prior,
        params_init=start,
    )


# --- the objective never decreases -------------------------------------------------------


@pytest.mark.parametrize("kernels", ["auto", "expanded"])
@pytest.mark.parametrize(
    "covariance_type, use_prior",
    [(ct, False) for ct in COVARIANCE_TYPES] + [("full", True), ("diag", True)],
    ids=[f"{ct}-ML" for ct in COVARIANCE_TYPES] + ["full-MAP", "diag-MAP"],
)
@SETTINGS
@given(mix=mixtures(separation=(1.5, 4.0)))
def test_objective_never_decreases(covariance_type, use_prior, kernels, mix):
    """With reg_covar=0 every M-step is the exact maximiser (ML) or posterior mode (MAP), so the
    mean log-likelihood, or log posterior per sample, cannot decrease; 1e-12 relative covers
    rounding. Overlapping components (separation 1.5-4) give many moving steps. Checked with
    the centred kernels this size selects and with the expanded ones forced."""
    weights, means, covs, seed = mix
    X = _draw(weights, means, covs, N, seed)
    prior = Prior.default(X, K, covariance_type) if use_prior else None
    res = _fit(X, _start(X, covariance_type, seed), prior=prior, kernels=kernels)
    lbs = res.lower_bounds
    assert np.all(np.isfinite(lbs))
    assert np.all(np.diff(lbs) >= -1e-12 * np.abs(lbs[1:]))


# --- permutation ---------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@SETTINGS
@given(mix=mixtures(), perm=st.permutations(range(K)))
def test_permuting_the_start_permutes_the_result(covariance_type, mix, perm):
    weights, means, covs, seed = mix
    X = _draw(weights, means, covs, N, seed)
    start = _start(X, covariance_type, seed)
    perm = np.array(perm)
    ct = get_covariance_type(covariance_type)
    permuted = GMMParams(
        np.asarray(start.weights)[perm],
        np.asarray(start.means)[perm],
        np.asarray(ct.permute_components(start.covariances, perm)),
        covariance_type,
    )
    a = _fit(X, start)
    b = _fit(X, permuted)
    # Only the order of a K-term logsumexp and of sums over components changes: rounding.
    assert_allclose(b.lower_bounds, a.lower_bounds, rtol=1e-10)
    assert_allclose(b.params.weights, a.params.weights[perm], rtol=1e-7, atol=1e-10)
    assert_allclose(b.params.means, a.params.means[perm], rtol=1e-7, atol=1e-8)
    want = np.asarray(ct.permute_components(a.params.covariances, perm))
    assert_allclose(b.params.covariances, want, rtol=1e-7, atol=1e-10)


# --- affine equivariance ------------------------------------------------------------------


def _affine_matrix(covariance_type, raw, angle):
    """A map the covariance type is closed under: any invertible A for full/tied, a diagonal
    A for diag, a scaled rotation for spherical (with a reflection when raw[0] < 0)."""
    if covariance_type in ("full", "tied"):
        A = raw.reshape(2, 2) + 2.0 * np.eye(2) * np.sign(raw[0])
        return A
    if covariance_type == "diag":
        return np.diag(raw[:2])
    return raw[0] * _rotation(angle)


def _map_start(start, A, b):
    ct = start.cov
    full = np.asarray(start.covariance_matrices())
    mapped = A @ full @ A.T
    cov = np.asarray(ct.from_full(mapped))
    return GMMParams(
        np.asarray(start.weights), np.asarray(start.means) @ A.T + b, cov, start.covariance_type
    )


def _nonzero():
    return st.one_of(st.floats(-3.0, -0.3), st.floats(0.3, 3.0))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@SETTINGS
@given(
    mix=mixtures(),
    raw=st.lists(_nonzero(), min_size=4, max_size=4),
    angle=st.floats(0, 2 * np.pi),
    shift=st.lists(st.floats(-100, 100), min_size=2, max_size=2),
)
def test_affine_map_of_data_maps_the_fit(covariance_type, mix, raw, angle, shift):
    weights, means, covs, seed = mix
    X = _draw(weights, means, covs, N, seed)
    A = _affine_matrix(covariance_type, np.array(raw), angle)
    b = np.array(shift)
    start = _start(X, covariance_type, seed)
    a = _fit(X, start)
    # reg_covar=0: the regulariser is absolute, so it is the one thing not equivariant.
    y = _fit(X @ A.T + b, _map_start(start, A, b))
    log_det = np.log(abs(np.linalg.det(A)))
    assert_allclose(y.lower_bounds, a.lower_bounds - log_det, rtol=1e-8, atol=1e-8)
    fa = GMMParams(*(a.params.weights, a.params.means, a.params.covariances), covariance_type)
    fy = GMMParams(*(y.params.weights, y.params.means, y.params.covariances), covariance_type)
    assert_allclose(fy.weights, fa.weights, rtol=1e-6, atol=1e-9)
    scale = np.abs(A).max()
    assert_allclose(fy.means, np.asarray(fa.means) @ A.T + b, rtol=1e-6, atol=1e-6 * scale)
    want = A @ np.asarray(fa.covariance_matrices()) @ A.T
    assert_allclose(fy.covariance_matrices(), want, rtol=1e-6, atol=1e-6 * scale**2)


# --- diag versus full -----------------------------------------------------------------------


@SETTINGS
@given(mix=mixtures(separation=(12.0, 20.0)))
def test_diag_fit_is_full_fit_with_zero_correlation_when_truth_is_diagonal(mix):
    """What holds, precisely. The two fits are *not* equal in general: full estimates the
    correlations, which are never exactly zero in a sample, and that changes the responsibilities
    and so every later step. What is exact (tested in test_em.py) is that one M-step from the
    same responsibilities gives diag = the diagonal of full. Hence, when the truth is diagonal:

    - full's fitted correlations are sampling noise: |r| < 4.5 / sqrt(n_k) (the standard error of
      a correlation of independent normals is 1/sqrt(n_k); 4.5 SE fails with probability < 1e-5
      per component);
    - with well-separated components (>= 12 scales apart; responsibilities are 0/1 to ~1e-15)
      the responsibilities of both fits coincide, so diag's means and variances equal full's
      means and diagonal to 1e-8 relative.
    """
    weights, means, _, seed = mix
    rng = np.random.default_rng(seed)
    covs = np.stack([np.diag(rng.uniform(0.4, 1.5, D) ** 2) for _ in range(K)])
    X = _draw(weights, means, covs, N, seed)
    # Start both at the true means (shared), unit covariances: no label switching to undo.
    start_full = GMMParams(np.full(K, 1 / K), means, np.stack([np.eye(D)] * K), "full")
    start_diag = GMMParams(np.full(K, 1 / K), means, np.ones((K, D)), "diag")
    full = _fit(X, start_full)
    diag = _fit(X, start_diag)
    nk = full.params.weights * N
    cov = full.params.covariances
    sd = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    corr = cov[:, 0, 1] / (sd[:, 0] * sd[:, 1])
    assert np.all(np.abs(corr) < 4.5 / np.sqrt(nk)), (corr, nk)
    assert_allclose(diag.params.means, full.params.means, rtol=1e-8, atol=1e-8)
    assert_allclose(diag.params.covariances, np.diagonal(cov, axis1=1, axis2=2), rtol=1e-8)
    assert_allclose(diag.params.weights, full.params.weights, rtol=1e-8)


# --- sample, refit, recover ---------------------------------------------------------------

N_BIG = 20_000


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
@settings(max_examples=4, deadline=None, derandomize=True)
@given(mix=mixtures(separation=(16.0, 24.0)))
def test_sample_then_refit_recovers_the_parameters(covariance_type, mix):
    """Draw 20 000 points with bayesgmm.density.sample from a generated mixture, refit by EM
    from a rough start (means moved by up to 2 scales, unit covariances, equal weights), and
    compare with the truth. Components are >= 16 scales apart, so the MLE differs from the
    truth by sampling error only: tolerances are 5 standard errors of the weight
    (sqrt(w(1-w)/n)), the means (sqrt(S_jj/n_k)) and the covariance entries
    (sqrt((S_ii S_jj + S_ij^2)/n_k)); each holds with probability > 1 - 6e-7."""
    weights, means, covs, seed = mix
    ct = get_covariance_type(covariance_type)
    if covariance_type == "diag":
        covs = np.stack([np.diag(np.diagonal(c)) for c in covs])
    truth = GMMParams(weights, means, np.asarray(ct.from_full(covs)), covariance_type)
    X, _ = density.sample(jax.random.key(seed), truth, N_BIG)
    X = np.asarray(X)
    rng = np.random.default_rng(seed)
    rough = GMMParams(
        np.full(K, 1 / K),
        means + rng.uniform(-2, 2, means.shape),
        np.asarray(ct.from_full(np.stack([np.eye(D)] * K))),
        covariance_type,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = _fit(X, rough, reg_covar=1e-6, max_iter=100)
    fitted = GMMParams(*(fit.params.weights, fit.params.means, fit.params.covariances), ct.name)
    # The rough start keeps the labels (each mean starts nearest its own truth); check it.
    cost = ((fitted.means[:, None, :] - means[None]) ** 2).sum(-1)
    assert np.array_equal(linear_sum_assignment(cost)[1], np.arange(K))
    n = N_BIG
    nk = weights * n
    assert np.all(np.abs(fitted.weights - weights) < 5 * np.sqrt(weights * (1 - weights) / n))
    var = np.diagonal(covs, axis1=1, axis2=2)
    assert np.all(np.abs(fitted.means - means) < 5 * np.sqrt(var / nk[:, None]))
    se_cov = np.sqrt((var[:, :, None] * var[:, None, :] + covs**2) / nk[:, None, None])
    err = np.abs(np.asarray(fitted.covariance_matrices()) - covs)
    if covariance_type == "diag":  # off-diagonals are structurally zero
        err = np.diagonal(err, axis1=1, axis2=2)
        se_cov = np.diagonal(se_cov, axis1=1, axis2=2)
    assert np.all(err < 5 * se_cov + 1e-6), (err / se_cov).max()
