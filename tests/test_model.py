"""The NumPyro model and MAP-EM are one model: same log joint, and EM finds its mode."""

from functools import partial

import _suite
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st
from numpyro.distributions import biject_to
from numpyro.infer import Predictive, log_likelihood
from numpyro.infer.util import log_density

from bayesgmm import GaussianMixture, GMMParams, Prior, density, gmm_model
from bayesgmm.em import fit_em
from bayesgmm.model import SITE_NAMES

K = 3


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    return np.concatenate(
        [
            rng.normal([0.0, 0.0], [1.0, 0.6], (40, 2)),
            rng.normal([4.0, 4.0], [0.7, 1.2], (35, 2)),
            rng.normal([0.0, 5.0], 0.9, (45, 2)),
        ]
    )


def kwargs(ct, prior):
    return {"n_components": K, "covariance_type": ct, "prior": prior}


# Jitted wrappers: one compiled program per covariance type instead of hundreds of eagerly
# dispatched small operations (which dominate the run time of these tests otherwise).
@partial(jax.jit, static_argnames=("ct", "n", "n_samples"))
def _predictive(key, prior, ct, n, n_samples=None):
    return Predictive(gmm_model, num_samples=n)(key, **kwargs(ct, prior), n_samples=n_samples)


@partial(jax.jit, static_argnames=("ct",))
def _log_joint(X, prior, values, ct):
    return log_density(gmm_model, (X,), kwargs(ct, prior), values)[0]


def prior_draws(ct, prior, n, seed=0):
    # Always 4 draws from one program per type (sampling gamma variates compiles slowly).
    out = _predictive(jax.random.key(seed), prior, ct, 4)
    return [{name: out[name][i] for name in SITE_NAMES} for i in range(n)]


def as_params(values, ct):
    return GMMParams.tree_unflatten(ct, tuple(values[name] for name in SITE_NAMES))


def log_joint(X, ct, prior, values):
    return float(_log_joint(jnp.asarray(X), prior, values, ct))


def em_objective(X, ct, prior, params):
    """The objective MAP-EM records, evaluated at ``params`` (first entry of one iteration
    started there: it is computed before the M-step moves the parameters)."""
    res = fit_em(
        jax.random.key(0),
        jnp.asarray(X),
        K,
        ct,
        max_iter=1,
        prior=prior,
        params_init=params,
        reg_covar=0.0,
    )
    return float(res.lower_bounds[0, 0])


def test_log_joint_equals_n_times_em_objective(data, covariance_type):
    # At arbitrary parameters (prior draws), log joint = n * objective + C with C = 0: both
    # are fully normalised and use the same distributions. Tolerance: float64 rounding of sums
    # of ~1e3-1e4 magnitude.
    prior = Prior.default(data, K, covariance_type)
    n = data.shape[0]
    constants = []
    for values in prior_draws(covariance_type, prior, 4, seed=1):
        lj = log_joint(data, covariance_type, prior, values)
        obj = em_objective(data, covariance_type, prior, as_params(values, covariance_type))
        constants.append(lj - n * obj)
    np.testing.assert_allclose(constants, 0.0, atol=1e-8 * n)


def _scipy_log_prior(values, prior, ct):
    """The conjugate prior written with scipy.stats, independently of NumPyro."""
    p = {f: np.asarray(getattr(prior, f)) for f in Prior._fields}
    w, m, c = (np.asarray(values[s]) for s in SITE_NAMES)
    out = st.dirichlet(p["weight_concentration"]).logpdf(w)
    kappa, nu, scale, mu0 = float(p["mean_precision"]), float(p["dof"]), p["scale"], p["mean"]
    if ct == "full":
        for k in range(K):
            out += st.invwishart(df=nu, scale=scale).logpdf(c[k])
            out += st.multivariate_normal(mu0, c[k] / kappa).logpdf(m[k])
    elif ct == "tied":
        out += st.invwishart(df=nu, scale=scale).logpdf(c)
        out += st.multivariate_normal(mu0, c / kappa).logpdf(m).sum()
    elif ct == "diag":
        out += st.invgamma(a=nu / 2, scale=scale / 2).logpdf(c).sum()
        out += st.norm(mu0, np.sqrt(c / kappa)).logpdf(m).sum()
    else:
        out += st.invgamma(a=nu / 2, scale=scale / 2).logpdf(c).sum()
        out += st.norm(mu0, np.sqrt(c / kappa)[:, None]).logpdf(m).sum()
    return out


def _scipy_log_lik(X, values, ct):
    params = as_params(values, ct)
    covs = np.asarray(params.covariance_matrices())
    w, m = np.asarray(params.weights), np.asarray(params.means)
    comp = np.stack(
        [np.log(w[k]) + st.multivariate_normal(m[k], covs[k]).logpdf(X) for k in range(K)]
    )
    return np.logaddexp.reduce(comp, axis=0)


def test_log_joint_matches_scipy(data, covariance_type):
    # An implementation nobody here wrote: scipy's Dirichlet, inverse-Wishart, inverse-gamma
    # and normal densities, and the mixture density summed with logaddexp.
    prior = Prior.default(data, K, covariance_type)
    for values in prior_draws(covariance_type, prior, 3, seed=2):
        expected = (
            _scipy_log_prior(values, prior, covariance_type)
            + _scipy_log_lik(data, values, covariance_type).sum()
        )
        got = log_joint(data, covariance_type, prior, values)
        np.testing.assert_allclose(got, expected, rtol=1e-10)


# The log joint matches scipy for every type (test_log_joint_matches_scipy); the pointwise
# split and the prior predictive run for a dense and a diagonal type in the default suite.
@pytest.mark.parametrize("covariance_type", _suite.types("full", "diag"))
def test_pointwise_log_likelihood_is_density_log_prob(data, covariance_type):
    prior = Prior.default(data, K, covariance_type)
    values = prior_draws(covariance_type, prior, 1, seed=4)[0]
    samples = {k: v[None] for k, v in values.items()}
    ll = log_likelihood(gmm_model, samples, jnp.asarray(data), **kwargs(covariance_type, prior))
    assert ll["obs"].shape == (1, data.shape[0])
    np.testing.assert_allclose(
        ll["obs"][0], density.log_prob(data, as_params(values, covariance_type)), rtol=1e-12
    )
    np.testing.assert_allclose(
        ll["obs"][0], _scipy_log_lik(data, values, covariance_type), rtol=1e-10
    )


def _unconstrained_log_joint(X, ct, prior, map_values):
    """The constrained-space log joint as a function of unconstrained coordinates (no
    Jacobian): a feasible move in these coordinates keeps weights on the simplex and
    covariances positive definite, and a local maximum is one in both parameterisations."""
    transforms = {}
    for name in SITE_NAMES:
        site = _site(ct, prior, name)
        transforms[name] = biject_to(site["fn"].support)
    u0 = {name: transforms[name].inv(map_values[name]) for name in SITE_NAMES}
    flat0, unravel = jax.flatten_util.ravel_pytree(u0)

    @jax.jit
    def f(flat):
        u = unravel(flat)
        values = {name: transforms[name](u[name]) for name in SITE_NAMES}
        return _log_joint(jnp.asarray(X), prior, values, ct)

    return f, flat0


def _site(ct, prior, name):
    from numpyro import handlers

    tr = handlers.trace(handlers.seed(gmm_model, 0)).get_trace(**kwargs(ct, prior))
    return tr[name]


# full and diag by default (tied and spherical under -m extended): the mode's check is the same
# code for every type, and each case costs ~12 s of tracing 400 perturbed log joints.
@pytest.mark.parametrize("covariance_type", _suite.types("full", "diag"))
def test_map_em_is_a_local_maximum_of_the_log_joint(data, covariance_type):
    prior = Prior.default(data, K, covariance_type)
    gm = GaussianMixture(
        K,
        covariance_type=covariance_type,
        prior=prior,
        reg_covar=0.0,
        tol=1e-14,
        max_iter=5000,
        random_state=0,
    ).fit(data)
    p = gm.params_
    values = dict(zip(SITE_NAMES, (p.weights, p.means, p.covariances)))
    f, u0 = _unconstrained_log_joint(data, covariance_type, prior, values)
    # Stationary, and no small feasible move in any of 200 random directions raises it.
    _suite.assert_local_maximum(f, u0)


@pytest.mark.parametrize("covariance_type", _suite.types("full"))
def test_prior_predictive_runs_without_data(covariance_type):
    X = np.random.default_rng(0).normal(size=(30, 2))
    prior = Prior.default(X, K, covariance_type)
    out = _predictive(jax.random.key(0), prior, covariance_type, 4, n_samples=7)
    assert out["obs"].shape == (4, 7, 2)
    assert out["weights"].shape == (4, K)
    assert out["means"].shape == (4, K, 2)
    assert np.all(np.isfinite(out["obs"]))
    no_obs = _predictive(jax.random.key(0), prior, covariance_type, 4)
    assert "obs" not in no_obs


def test_prior_predictive_moments():
    # 4000 prior draws: the Dirichlet mean alpha/sum(alpha) and the inverse-Wishart mean
    # scale/(dof - d - 1). Tolerances are about 4 Monte Carlo standard errors.
    X = np.random.default_rng(0).normal(size=(30, 2))
    prior = Prior.default(X, K, "full", weight_concentration=np.array([1.0, 2.0, 5.0]), dof=8.0)
    out = _predictive(jax.random.key(1), prior, "full", 4000)
    w = np.asarray(out["weights"])
    np.testing.assert_allclose(w.mean(0), np.array([1, 2, 5]) / 8, atol=4 * w.std(0).max() / 63)
    cov = np.asarray(out["covariances"]).reshape(-1, 2, 2)
    expected = np.asarray(prior.scale) / (8.0 - 2 - 1)
    se = cov.std(0) / np.sqrt(cov.shape[0])
    assert np.all(np.abs(cov.mean(0) - expected) < 4 * se + 1e-12)
    # Means: centred on the prior mean.
    m = np.asarray(out["means"]).reshape(-1, 2)
    se_m = m.std(0) / np.sqrt(m.shape[0])
    assert np.all(np.abs(m.mean(0) - np.asarray(prior.mean)) < 4 * se_m)


def test_model_rejects_mismatched_prior_and_data():
    X = np.random.default_rng(0).normal(size=(30, 2))
    prior = Prior.default(X, K, "full")
    with pytest.raises(ValueError, match="covariance_type"):
        log_density(gmm_model, (X,), kwargs("diag", prior), {})
    with pytest.raises(ValueError, match="n_components"):
        log_density(gmm_model, (X,), {"n_components": 2, "prior": prior}, {})
    with pytest.raises(ValueError, match=r"X must have shape \(n_samples, 2\)"):
        log_density(gmm_model, (X[:, :1],), kwargs("full", prior), {})
    with pytest.raises(TypeError, match="prior must be a bayesgmm.Prior"):
        log_density(gmm_model, (X,), {"n_components": K, "prior": "default"}, {})
    with pytest.raises(ValueError, match="n_samples=5"):
        log_density(gmm_model, (X,), {**kwargs("full", prior), "n_samples": 5}, {})
