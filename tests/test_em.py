"""EM: one iteration against a NumPy transcription of the textbook updates, the M-step as the
maximiser of its objective, and the structural identities between covariance types."""

import warnings

import _suite
import jax
import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import stats
from scipy.special import logsumexp

from bayesgmm import ConvergenceWarning, GaussianMixture, GMMParams, Prior, em

# Jitted once per covariance type, so the M-step tests compile one program each instead of
# dispatching (and compiling) hundreds of small operations eagerly.
_m_step = jax.jit(em.m_step, static_argnums=(2,))
_log_prior = jax.jit(em.log_prior)

# --- one EM iteration, by hand -------------------------------------------------------------


def _three_1d_gaussians():
    rng = np.random.default_rng(0)
    return np.concatenate(
        [rng.normal(-4.0, 1.0, 60), rng.normal(0.5, 0.6, 50), rng.normal(5.0, 1.5, 40)]
    )


def _textbook_em_iteration(x, w, mu, var, pooled=False):
    """One EM iteration for a 1-D mixture written straight from the textbook."""
    # E-step, Bayes' rule: r_nk = w_k N(x_n | mu_k, var_k) / sum_j w_j N(x_n | mu_j, var_j).
    dens = w * np.exp(-0.5 * (x[:, None] - mu) ** 2 / var) / np.sqrt(2 * np.pi * var)
    loglik = np.mean(np.log(dens.sum(axis=1)))
    r = dens / dens.sum(axis=1, keepdims=True)
    # M-step: weight = mean responsibility; mean and variance = responsibility-weighted
    # averages (the variance around the new mean).
    nk = r.sum(axis=0)
    w_new = nk / len(x)
    mu_new = (r * x[:, None]).sum(axis=0) / nk
    sq = r * (x[:, None] - mu_new) ** 2
    var_new = np.full(3, sq.sum() / len(x)) if pooled else sq.sum(axis=0) / nk
    return w_new, mu_new, var_new, loglik


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_one_em_iteration_equals_textbook_updates(covariance_type):
    x = _three_1d_gaussians()
    w0 = np.array([0.2, 0.5, 0.3])
    mu0 = np.array([-3.0, 0.0, 3.0])
    var0 = np.array([2.0, 1.0, 3.0])
    pooled = covariance_type == "tied"
    if pooled:
        var0 = np.full(3, 1.5)
    compact = {
        "full": var0[:, None, None],
        "tied": np.array([[var0[0]]]),
        "diag": var0[:, None],
        "spherical": var0,
    }[covariance_type]
    res = em.fit_em(
        jax.random.key(0),
        x[:, None],
        3,
        covariance_type,
        max_iter=1,
        tol=0.0,
        reg_covar=0.0,
        weights_init=w0,
        means_init=mu0[:, None],
        covariances_init=compact,
    )
    w, mu, var, loglik = _textbook_em_iteration(x, w0, mu0, var0, pooled=pooled)
    p = res.params
    assert_allclose(np.asarray(p.weights[0]), w, rtol=1e-12)
    assert_allclose(np.asarray(p.means[0, :, 0]), mu, rtol=1e-12)
    got_var = np.asarray(p.covariance_matrices()[0, :, 0, 0])
    assert_allclose(got_var, var, rtol=1e-12)
    assert int(res.n_iter[0]) == 1
    # The recorded objective is the mean log-likelihood at the parameters before the M-step.
    assert_allclose(float(res.lower_bound[0]), loglik, rtol=1e-12)


# --- the M-step maximises its objective ----------------------------------------------------


def _blocks(X, resp, n_components):
    """Data and responsibilities in em's block layout (padding rows get zero weight)."""
    Xb, _ = em.to_blocks(X, n_components)
    nb, b, _ = Xb.shape
    pad = nb * b - resp.shape[0]
    resp = np.concatenate([resp, np.zeros((pad, n_components))])
    return Xb, resp.reshape(nb, b, n_components)


def _expected_complete_loglik(X, resp, p):
    covs = np.asarray(p.covariance_matrices())
    w, means = np.asarray(p.weights), np.asarray(p.means)
    comp = np.stack(
        [stats.multivariate_normal(means[k], covs[k]).logpdf(X) for k in range(len(w))], axis=1
    )
    return float(np.sum(resp * (comp + np.log(w))))


def _perturbed(p, rng, eps):
    w = np.asarray(p.weights)
    u = rng.normal(size=w.shape)
    w = w + eps * (u - u.mean())
    m = np.asarray(p.means) + eps * rng.normal(size=p.means.shape)
    c = np.asarray(p.covariances)
    if c.ndim >= 2 and c.shape[-1] == c.shape[-2] and p.covariance_type in ("full", "tied"):
        a = rng.normal(size=c.shape)
        c = c + eps * (a + np.swapaxes(a, -1, -2))
    else:
        c = c * (1 + eps * rng.normal(size=c.shape))
    return GMMParams(w, m, c, p.covariance_type)


@pytest.fixture
def data_and_resp():
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(0, 1, (50, 2)), rng.normal([3, 1], [0.5, 2], (40, 2))])
    resp = rng.dirichlet(np.ones(3), size=len(X))
    return X, resp


@pytest.mark.parametrize("map_", [False, True], ids=["ML", "MAP"])
def test_m_step_is_the_maximiser(data_and_resp, covariance_type, map_):
    """ML: the expected complete log-likelihood; MAP: that plus ``em.log_prior`` (the same
    prior the NumPyro model uses). Every small perturbation of the M-step's answer, within
    the type's structure, must lower the objective."""
    X, resp = data_and_resp
    prior = Prior.default(X, 3, covariance_type) if map_ else None
    p = _m_step(*_blocks(X, resp, 3), covariance_type, 0.0, prior)

    def objective(q):
        value = _expected_complete_loglik(X, resp, q)
        if prior is not None:
            value += float(_log_prior(q, prior))
        return value

    best = objective(p)
    rng = np.random.default_rng(2)
    for _ in range(5):
        q = _perturbed(p, rng, 1e-3)
        # A maximum drops by O(eps^2) ~ 1e-6 relative; rounding is ~1e-13.
        assert objective(q) < best


# --- identities between covariance types within one M-step -----------------------------


def _m_step_all_types(X, resp, reg_covar):
    Xb, rb = _blocks(X, resp, resp.shape[1])
    return {ct: _m_step(Xb, rb, ct, reg_covar) for ct in ("full", "tied", "diag", "spherical")}


def test_tied_is_nk_weighted_mean_of_full(data_and_resp):
    X, resp = data_and_resp
    reg = 1e-4
    p = _m_step_all_types(X, resp, reg)
    nk = resp.sum(axis=0)
    full = np.asarray(p["full"].covariances)
    want = np.einsum("k,kij->ij", nk / nk.sum(), full)  # reg_covar survives: weights sum to 1
    assert_allclose(np.asarray(p["tied"].covariances), want, rtol=1e-12)
    # Means and weights do not depend on the covariance type.
    for ct in ("tied", "diag", "spherical"):
        assert_allclose(np.asarray(p[ct].means), np.asarray(p["full"].means), rtol=1e-12)
        assert_allclose(np.asarray(p[ct].weights), np.asarray(p["full"].weights), rtol=1e-12)


def test_diag_is_full_restricted_to_the_diagonal(data_and_resp):
    X, resp = data_and_resp
    p = _m_step_all_types(X, resp, 1e-4)
    full_diag = np.diagonal(np.asarray(p["full"].covariances), axis1=1, axis2=2)
    assert_allclose(np.asarray(p["diag"].covariances), full_diag, rtol=1e-12)
    # And spherical is the feature average of diag (scikit-learn's definition).
    assert_allclose(np.asarray(p["spherical"].covariances), full_diag.mean(axis=1), rtol=1e-12)


def test_m_step_matches_weighted_averages(data_and_resp):
    X, resp = data_and_resp
    p = _m_step(*_blocks(X, resp, 3), "full", 0.0)
    nk = resp.sum(axis=0)
    means = resp.T @ X / nk[:, None]
    covs = np.stack(
        [(resp[:, k, None] * (X - means[k])).T @ (X - means[k]) / nk[k] for k in range(3)]
    )
    assert_allclose(np.asarray(p.weights), nk / len(X), rtol=1e-12)
    assert_allclose(np.asarray(p.means), means, rtol=1e-12)
    assert_allclose(np.asarray(p.covariances), covs, rtol=1e-12)


def test_sufficient_stats_add_over_row_blocks(data_and_resp):
    """Statistics of two halves add up to those of the whole (what chunked EM relies on)."""
    X, resp = data_and_resp
    whole = em.sufficient_stats(*(a[None] for a in (X, resp)))
    a = em.sufficient_stats(X[None, :45], resp[None, :45])
    b = em.sufficient_stats(X[None, 45:], resp[None, 45:])
    assert_allclose(np.asarray(a.nk + b.nk), np.asarray(whole.nk), rtol=1e-12)
    assert_allclose(np.asarray(a.sx + b.sx), np.asarray(whole.sx), rtol=1e-12)


# --- one component -----------------------------------------------------------------------


def test_one_component_gives_sample_mean_and_covariance_in_one_step(covariance_type):
    rng = np.random.default_rng(3)
    X = rng.multivariate_normal([1.0, -2.0, 0.5], [[2, 0.5, 0], [0.5, 1, 0.3], [0, 0.3, 0.5]], 80)
    reg = 1e-3
    gm = GaussianMixture(
        1,
        covariance_type=covariance_type,
        reg_covar=reg,
        max_iter=1,
        weights_init=[1.0],
        means_init=[[10.0, 10.0, 10.0]],  # far from the answer: one step must get there
        precisions_init={
            "full": np.eye(3)[None] * 4.0,
            "tied": np.eye(3) * 4.0,
            "diag": np.full((1, 3), 4.0),
            "spherical": np.array([4.0]),
        }[covariance_type],
        random_state=0,
    )
    with pytest.warns(ConvergenceWarning):
        gm.fit(X)
    sample_cov = np.cov(X, rowvar=False, bias=True)
    want = {
        "full": sample_cov[None] + reg * np.eye(3),
        "tied": sample_cov + reg * np.eye(3),
        "diag": np.diag(sample_cov)[None] + reg,
        "spherical": np.array([np.diag(sample_cov).mean() + reg]),
    }[covariance_type]
    assert_allclose(gm.weights_, [1.0])
    assert_allclose(gm.means_[0], X.mean(axis=0), rtol=1e-12)
    assert_allclose(gm.covariances_, want, rtol=1e-12)


# --- the objective never decreases -------------------------------------------------------


def _overlapping_data():
    rng = np.random.default_rng(4)
    return np.concatenate(
        [
            rng.normal([0, 0], [1.0, 0.6], (150, 2)),
            rng.normal([1.5, 1.0], [0.7, 1.2], (100, 2)),
            rng.normal([-1.0, 2.0], 0.5, (50, 2)),
        ]
    )


@pytest.mark.parametrize("prior", [None, "default"], ids=["ML", "MAP"])
def test_objective_never_decreases(covariance_type, prior):
    """EM's monotonicity: mean log-likelihood (ML) or log posterior per sample (MAP) never
    decreases. reg_covar=0 so every M-step is the exact maximiser; the slack 1e-12 (relative)
    covers rounding only. A poor start (all means near one corner) gives many increasing
    steps to check; the shapes match the parity tests' so the program is compiled once."""
    X = _overlapping_data()
    k, d = 3, 2
    precisions = {
        "full": np.stack([np.eye(d)] * k),
        "tied": np.eye(d),
        "diag": np.ones((k, d)),
        "spherical": np.ones(k),
    }[covariance_type]
    gm = GaussianMixture(
        k,
        covariance_type=covariance_type,
        reg_covar=0.0,
        tol=0.0,
        max_iter=200,
        weights_init=np.full(k, 1 / k),
        means_init=np.array([[-2.0, -2.0], [-1.8, -2.0], [-2.0, -1.8]]),
        precisions_init=precisions,
        random_state=0,
        prior=prior,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(X)
    lbs = gm.lower_bounds_
    assert len(lbs) == 200 and np.all(np.isfinite(lbs))
    assert np.all(np.diff(lbs) >= -1e-12 * np.abs(lbs[1:]))
    assert lbs[-1] > lbs[0]  # and it does move
    assert gm.lower_bound_ == lbs[-1]


def test_map_objective_is_log_posterior_per_sample():
    """The recorded MAP objective equals (log-likelihood + log prior) / n, computed with
    scipy's mixture density and em.log_prior, at the parameters the iteration starts from."""
    X = _overlapping_data()
    prior = Prior.default(X, 3, "full")
    rng = np.random.default_rng(5)
    p = GMMParams(
        rng.dirichlet(np.ones(3)), rng.normal(size=(3, 2)), np.stack([np.eye(2)] * 3), "full"
    )
    res = em.fit_em(
        jax.random.key(0),
        X,
        3,
        "full",
        max_iter=1,
        tol=0.0,
        reg_covar=0.0,
        prior=prior,
        params_init=p,
    )
    comp = np.stack(
        [stats.multivariate_normal(p.means[k], np.eye(2)).logpdf(X) for k in range(3)], 1
    )
    loglik = logsumexp(comp + np.log(np.asarray(p.weights)), axis=1).sum()
    want = (loglik + float(_log_prior(p, prior))) / len(X)
    assert_allclose(float(res.lower_bound[0]), want, rtol=1e-12)
    # And log_prior is the Dirichlet plus Normal-Inverse-Wishart density, by scipy.
    by_scipy = stats.dirichlet(np.asarray(prior.weight_concentration)).logpdf(p.weights)
    for k in range(3):
        by_scipy += stats.invwishart(float(prior.dof), np.asarray(prior.scale)).logpdf(np.eye(2))
        by_scipy += stats.multivariate_normal(
            np.asarray(prior.mean), np.eye(2) / float(prior.mean_precision)
        ).logpdf(np.asarray(p.means[k]))
    assert_allclose(float(_log_prior(p, prior)), by_scipy, rtol=1e-10)


# --- the loop's bookkeeping --------------------------------------------------------------


def test_fit_em_restarts_bookkeeping():
    X = _overlapping_data()
    res = em.fit_em(
        jax.random.key(0), X, 3, "diag", n_init=3, init_params="random", max_iter=50, tol=1e-4
    )
    n_iter = np.asarray(res.n_iter)
    lbs = np.asarray(res.lower_bounds)
    assert lbs.shape == (3, 50) and n_iter.shape == (3,)
    for i in range(3):
        n = n_iter[i]
        assert np.all(np.isfinite(lbs[i, :n])) and np.all(np.isnan(lbs[i, n:]))
        assert float(res.lower_bound[i]) == lbs[i, n - 1]
        converged = bool(res.converged[i])
        assert converged == (n >= 2 and abs(lbs[i, n - 1] - lbs[i, n - 2]) < 1e-4)
        assert converged or n == 50
    assert not np.any(np.asarray(res.failed))
    assert res.params.weights.shape == (3, 3)
    # Restarts start from different random draws, so they are not all identical runs.
    assert len({round(float(v), 9) for v in np.asarray(res.params.means[:, 0, 0])}) > 1


# --- the best of n_init runs (em.fit_best: what GaussianMixture and fit_posterior call) ------


def test_fit_best_is_the_best_sound_run_of_fit_em():
    X = _overlapping_data()
    kwargs = dict(n_init=4, init_params="random", max_iter=300, tol=1e-6)
    res = em.fit_em(jax.random.key(3), X, 3, "full", **kwargs)
    fit = em.fit_best(jax.random.key(3), X, 3, "full", **kwargs)
    best = int(np.argmax(np.asarray(res.lower_bound)))
    assert fit.best == best and not fit.failed.any()
    assert fit.lower_bound == float(res.lower_bound[best])
    assert fit.n_iter == int(res.n_iter[best]) and fit.lower_bounds.shape == (fit.n_iter,)
    assert_allclose(np.asarray(fit.params.means), np.asarray(res.params.means[best]))
    # Precisions from the chosen covariances (scikit-learn's precisions_ convention).
    covs = np.asarray(fit.params.covariances)
    assert_allclose(fit.precisions, np.linalg.inv(covs), rtol=1e-10)
    assert_allclose(
        fit.precisions_cholesky @ np.swapaxes(fit.precisions_cholesky, -1, -2),
        fit.precisions,
        rtol=1e-10,
    )
    # GaussianMixture stores exactly the run fit_best chooses from the same key.
    from bayesgmm._random import as_key

    gm = GaussianMixture(3, random_state=7, **kwargs).fit(X)
    seven = em.fit_best(as_key(7), X, 3, "full", **kwargs)
    assert gm.lower_bound_ == seven.lower_bound and gm.n_iter_ == seven.n_iter
    assert_allclose(gm.means_, np.asarray(seven.params.means), rtol=0, atol=0)


def test_fit_best_discards_failed_runs_and_raises_when_none_is_left():
    # Two identical points and one component each: with reg_covar=0 every full covariance is
    # singular, so no run can be returned.
    X = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [5.0, 5.0]])
    with pytest.raises(ValueError, match="ill-defined empirical covariance"):
        em.fit_best(jax.random.key(0), X, 2, "full", n_init=2, reg_covar=0.0)


def test_from_params_serves_given_parameters_like_a_fit():
    X = _overlapping_data()
    gm = GaussianMixture(3, covariance_type="tied", random_state=0).fit(X)
    rebuilt = GaussianMixture.from_params(
        gm.params_, lower_bound=gm.lower_bound_, n_iter=gm.n_iter_, converged=gm.converged_
    )
    assert rebuilt.covariance_type == "tied" and rebuilt.n_components == 3
    assert_allclose(rebuilt.score_samples(X), gm.score_samples(X), rtol=1e-12)
    assert_allclose(rebuilt.precisions_cholesky_, gm.precisions_cholesky_, rtol=1e-12)
    assert rebuilt.lower_bound_ == gm.lower_bound_ and rebuilt.bic(X) == gm.bic(X)
    with pytest.raises(TypeError, match="without batch axes"):
        GaussianMixture.from_params(em.fit_em(jax.random.key(0), X, 2, n_init=2).params)


# --- fit_em against the reference iteration (em.reference_em), on both sides of its seams ----


def _reference_case(n, d, k, dtype, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (k, d))
    X = centres[rng.integers(0, k, n)] + rng.normal(size=(n, d)) * rng.uniform(0.5, 2, d)
    return X.astype(dtype)


_TYPES = ("full", "tied", "diag", "spherical")


@pytest.mark.parametrize(
    "n, d, k, dtype, with_prior, covariance_type",
    # Small: one block, XLA optimisation level 0, the centred kernels (default path).
    [(200, 2, 3, np.float64, False, ct) for ct in _TYPES]
    + [(200, 2, 3, np.float64, True, ct) for ct in ("full", "diag")]
    + _suite.extended(*[(200, 2, 3, np.float64, True, ct) for ct in ("tied", "spherical")])
    # Two row blocks (density.block_rows(4, 8) = 4096) and n K d^2 above SMALL_WORK: the
    # default optimisation level and, in float64, the expanded kernels with their rounding
    # guards; under a prior and in float32 (each case compiles two programs).
    + [(5000, 8, 4, np.float64, False, ct) for ct in ("full", "tied")]
    + _suite.extended(*[(5000, 8, 4, np.float64, False, ct) for ct in ("diag", "spherical")])
    + [(5000, 8, 4, np.float64, True, "full"), (5000, 8, 4, np.float32, False, "tied")]
    + _suite.extended(
        (5000, 8, 4, np.float64, True, "diag"), (5000, 8, 4, np.float32, False, "spherical")
    ),
)
def test_fit_em_repeats_the_reference_iteration(n, d, k, dtype, with_prior, covariance_type):
    X = _reference_case(n, d, k, dtype)
    prior = Prior.default(X, k, covariance_type) if with_prior else None
    start = em.fit_em(jax.random.key(1), X, k, covariance_type, max_iter=0, prior=prior).params
    start = jax.tree_util.tree_map(lambda a: a[0], start)
    # tol=0: neither run converges, so both make all 25 iterations.
    ref = em.reference_em(X, start, prior=prior, reg_covar=1e-6, tol=0.0, max_iter=25)
    fast = em.fit_em(
        jax.random.key(1),
        X,
        k,
        covariance_type,
        params_init=start,
        prior=prior,
        tol=0.0,
        max_iter=25,
    )
    assert int(ref.n_iter) == int(fast.n_iter[0]) == 25
    assert not bool(ref.failed) and not bool(fast.failed[0])
    # float64: the two differ by the order of summation only (and the expanded kernels'
    # guarded rounding, bounded at 1e-7 on a squared distance), ~1e-12 after 25 iterations.
    # float32: eps 1.2e-7 amplified by 25 iterations of a well-separated mixture.
    rtol = 1e-9 if dtype == np.float64 else 2e-4
    assert_allclose(np.asarray(fast.lower_bounds[0]), np.asarray(ref.lower_bounds), rtol=rtol)
    for a, b in zip(fast.params.tree_flatten()[0], ref.params.tree_flatten()[0]):
        assert np.asarray(a).dtype == dtype
        assert_allclose(np.asarray(a)[0], np.asarray(b), rtol=rtol * 100, atol=rtol * 100)
