"""Regressions of miscompiled programs: the patterns themselves, as bayesgmm computes them.

jaxlib 0.10.2's XLA:CPU fused the tied density's two matrix products (``means @ P`` and the
per-block ``P^T @ XT``) into one ``__ynn_fusion`` that returned wrong squared distances once
the (n_features, rows) product passed 2**14 elements (d = 10 from 1639 rows, d = 30 from 547):
tied ``score_samples``/``bic``/``predict_proba`` were off by hundreds of nats while the fit
was right. ``bayesgmm.covariance._project_means`` keeps one matrix product per fused pass.
These tests rebuild the pattern from bayesgmm's own pieces in every context a program can
be compiled in (``jit``, ``grad``, ``vmap``, a user's outer ``jit``, NumPyro's potential), on
both sides of that threshold, against NumPy: a jax that reintroduces the fault turns them red.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose
from numpyro.infer.util import log_density

from bayesgmm import GMMParams, Prior, density, gmm_model
from bayesgmm.covariance import get_covariance_type

# (n_features, rows): each side of the 2**14-element threshold, and well past it.
SIZES = [(10, 1638), (10, 1639), (10, 4000), (30, 546), (30, 547), (50, 2000)]
# float64 distances agree to rounding (~1e-14); float32 to ~1e-6 relative. The fault was off
# by 5-50 % of the largest distance.
RTOL = {np.float64: 1e-10, np.float32: 1e-4}


def _problem(d, n, k, dtype, seed=0):
    rng = np.random.default_rng([seed, d, n, k])
    a = rng.normal(size=(d, d))
    cov = a @ a.T / d + 0.1 * np.eye(d)
    XT = rng.normal(size=(d, n))
    means = rng.normal(size=(k, d))
    return cov.astype(dtype), XT.astype(dtype), means.astype(dtype)


def _numpy_maha(cov, XT, means):
    """Squared Mahalanobis distances (K, rows) in float64 NumPy."""
    cov, XT, means = (np.asarray(a, np.float64) for a in (cov, XT, means))
    diff = XT[None, :, :] - means[:, :, None]
    return np.einsum("kin,ij,kjn->kn", diff, np.linalg.inv(cov), diff)


def _tied_maha(cov, XT, means):
    # As density.prepare and weighted_log_prob_t compute it, in one program: the precision
    # factor from the covariance, the per-parameter-set terms, the per-block distances.
    ct = get_covariance_type("tied")
    return ct.sq_mahalanobis_t(XT, ct.mahalanobis_terms(means, ct.precision_cholesky(cov)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("d,n", SIZES)
def test_tied_distances_under_jit_either_side_of_the_fusion_threshold(d, n, dtype):
    cov, XT, means = _problem(d, n, 3, dtype)
    got = jax.jit(_tied_maha)(cov, XT, means)
    want = _numpy_maha(cov, XT, means)
    assert_allclose(np.asarray(got, np.float64), want, rtol=RTOL[dtype])


@pytest.mark.parametrize("d,n", [(10, 4000), (30, 547)])
def test_tied_distance_gradient_past_the_threshold(d, n):
    # d/dm_k sum_n (x_n - m_k)^T L (x_n - m_k) = -2 L sum_n (x_n - m_k), analytically.
    cov, XT, means = _problem(d, n, 3, np.float64)
    grad = jax.jit(jax.grad(lambda m: jnp.sum(_tied_maha(cov, XT, m))))(means)
    lam = np.linalg.inv(cov)
    want = -2.0 * (lam @ (XT.sum(axis=1)[:, None] - n * means.T)).T
    assert_allclose(np.asarray(grad), want, rtol=1e-9)


def test_tied_distances_vmapped_over_parameter_sets_past_the_threshold():
    sets = [_problem(10, 4000, 3, np.float64, seed=s) for s in range(3)]
    XT = sets[0][1]
    covs = np.stack([s[0] for s in sets])
    means = np.stack([s[2] for s in sets])
    got = jax.jit(jax.vmap(_tied_maha, in_axes=(0, None, 0)))(covs, XT, means)
    for i in range(3):
        assert_allclose(np.asarray(got[i]), _numpy_maha(covs[i], XT, means[i]), rtol=1e-10)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_public_log_prob_inside_a_users_jit_past_the_threshold(covariance_type):
    # A user's own jit around the public function, with the parameters built inside it:
    # bayesgmm's compile options do not reach this program, only its formulation does.
    cov, XT, means = _problem(10, 4000, 3, np.float64)
    weights = np.array([0.2, 0.3, 0.5])
    X = XT.T

    @jax.jit
    def user(cov, means):
        c = cov if covariance_type == "tied" else jnp.broadcast_to(cov, (3, 10, 10))
        params = GMMParams.tree_unflatten(covariance_type, (jnp.asarray(weights), means, c))
        return density.log_prob(X, params)

    maha = _numpy_maha(cov, XT, means)
    logdet = np.linalg.slogdet(cov)[1]
    comp = -0.5 * (maha + logdet + 10 * np.log(2 * np.pi)) + np.log(weights)[:, None]
    want = np.logaddexp.reduce(comp, axis=0)
    assert_allclose(np.asarray(user(cov, means)), want, rtol=1e-10)


def test_numpyro_potential_gradient_past_the_threshold():
    # NumPyro differentiates the model's log density in its own programs. The likelihood's
    # gradient in the means is sum_n r_nk Lambda (x_n - m_k), computed here in NumPy.
    cov, XT, means = _problem(10, 4000, 3, np.float64)
    X = XT.T
    weights = np.array([0.2, 0.3, 0.5])
    prior = Prior.default(X, 3, "tied")

    def loglik(m):
        values = {"weights": weights, "means": m, "covariances": cov}
        kwargs = {"n_components": 3, "covariance_type": "tied", "prior": prior}
        full = log_density(gmm_model, (X,), kwargs, values)[0]
        no_obs = log_density(gmm_model, (), kwargs, values)[0]
        return full - no_obs

    grad = jax.jit(jax.grad(loglik))(means)
    maha = _numpy_maha(cov, XT, means)
    comp = -0.5 * maha + np.log(weights)[:, None]
    resp = np.exp(comp - np.logaddexp.reduce(comp, axis=0))  # (K, n)
    lam = np.linalg.inv(cov)
    want = np.stack([lam @ (XT - means[k][:, None]) @ resp[k] for k in range(3)])
    assert_allclose(np.asarray(grad), want, rtol=1e-8)
