"""The covariance-type objects, method by method, against NumPy and scipy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import stats

from bayesgmm import Prior
from bayesgmm.covariance import COVARIANCE_TYPES, get_covariance_type
from bayesgmm.em.kernels import kernels_for
from bayesgmm.prior import prior_family

K, D = 3, 2


def _compact(name, rng):
    a = rng.normal(size=(K, D, D))
    full = a @ np.swapaxes(a, -1, -2) + 0.5 * np.eye(D)
    return {
        "full": full,
        "tied": full[0],
        "diag": rng.uniform(0.3, 2.0, (K, D)),
        "spherical": rng.uniform(0.3, 2.0, K),
    }[name]


def _full_matrices(name, cov):
    cov = np.asarray(cov)
    if name == "full":
        return cov
    if name == "tied":
        return np.broadcast_to(cov, (K, D, D))
    if name == "diag":
        return np.stack([np.diag(c) for c in cov])
    return cov[:, None, None] * np.eye(D)


def test_registry_and_unknown_name():
    assert set(COVARIANCE_TYPES) == {"full", "tied", "diag", "spherical"}
    ct = get_covariance_type("diag")
    assert get_covariance_type(ct) is ct
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        get_covariance_type("diagonal")


def test_shapes_and_parameter_counts(covariance_type):
    ct = get_covariance_type(covariance_type)
    shape = {"full": (K, D, D), "tied": (D, D), "diag": (K, D), "spherical": (K,)}
    count = {"full": K * D * (D + 1) // 2, "tied": D * (D + 1) // 2, "diag": K * D, "spherical": K}
    assert ct.shape(K, D) == shape[covariance_type]
    assert ct.n_parameters(K, D) == count[covariance_type]


def test_to_full_and_back(covariance_type):
    ct = get_covariance_type(covariance_type)
    cov = _compact(covariance_type, np.random.default_rng(0))
    full = np.asarray(ct.to_full(jnp.asarray(cov), K, D))
    assert_allclose(full, _full_matrices(covariance_type, cov))
    assert_allclose(np.asarray(ct.from_full(jnp.asarray(full))), cov, rtol=1e-12)


def test_precisions_and_their_cholesky_factor(covariance_type):
    ct = get_covariance_type(covariance_type)
    cov = jnp.asarray(_compact(covariance_type, np.random.default_rng(1)))
    full = _full_matrices(covariance_type, cov)
    prec = np.asarray(ct.to_full(ct.precisions(cov), K, D))
    assert_allclose(prec, np.linalg.inv(full), rtol=1e-12)
    pc = np.asarray(ct.precision_cholesky(cov))
    pc_full = np.asarray(ct.to_full(jnp.asarray(pc), K, D))
    # scikit-learn's convention: P with P P^T the precision (upper triangular for full/tied).
    assert_allclose(pc_full @ np.swapaxes(pc_full, -1, -2), np.linalg.inv(full), rtol=1e-12)
    if covariance_type in ("full", "tied"):
        assert_allclose(np.tril(pc, -1), 0.0)
    back = ct.covariance_from_precision(ct.precisions(cov))
    assert_allclose(np.asarray(back), np.asarray(cov), rtol=1e-12)
    # log det of the precision factor is -1/2 log det of the covariance.
    log_det = np.asarray(ct.log_det_precision_cholesky(jnp.asarray(pc), D))
    want = -0.5 * np.linalg.slogdet(full)[1]
    assert_allclose(np.broadcast_to(log_det, want.shape), want, rtol=1e-12)


def test_sq_mahalanobis(covariance_type):
    rng = np.random.default_rng(2)
    ct = get_covariance_type(covariance_type)
    cov = jnp.asarray(_compact(covariance_type, rng))
    X, means = rng.normal(size=(20, D)), rng.normal(size=(K, D))
    got = np.asarray(
        ct.sq_mahalanobis(jnp.asarray(X), jnp.asarray(means), ct.precision_cholesky(cov))
    )
    inv = np.linalg.inv(_full_matrices(covariance_type, cov))
    diff = X[:, None, :] - means[None]
    assert_allclose(got, np.einsum("nki,kij,nkj->nk", diff, inv, diff), rtol=1e-12)


def test_scatter_matches_numpy_and_adds_over_rows(covariance_type):
    rng = np.random.default_rng(3)
    ct = get_covariance_type(covariance_type)
    X, resp, centres = (
        rng.normal(size=(30, D)),
        rng.dirichlet(np.ones(K), 30),
        rng.normal(size=(K, D)),
    )
    kern = kernels_for(ct)
    got = np.asarray(kern.scatter(jnp.asarray(X), jnp.asarray(resp), jnp.asarray(centres)))
    diff = X[:, None, :] - centres[None]
    full = np.einsum("nk,nki,nkj->kij", resp, diff, diff)
    want = {
        "full": full,
        "tied": full.sum(axis=0),
        "diag": np.diagonal(full, axis1=1, axis2=2),
        "spherical": np.trace(full, axis1=1, axis2=2),
    }[covariance_type]
    assert_allclose(got, want, rtol=1e-12)
    halves = [
        kern.scatter(jnp.asarray(X[s]), jnp.asarray(resp[s]), jnp.asarray(centres))
        for s in (slice(0, 13), slice(13, 30))
    ]
    assert_allclose(np.asarray(halves[0] + halves[1]), got, rtol=1e-12)


def test_log_prior_equals_scipy(covariance_type):
    """The conjugate prior densities (used by MAP-EM and the NumPyro model) against scipy."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(50, D))
    prior = Prior.default(X, K, covariance_type)
    cov, means = _compact(covariance_type, rng), rng.normal(size=(K, D))
    m0, kappa, nu = np.asarray(prior.mean), float(prior.mean_precision), float(prior.dof)
    scale = np.asarray(prior.scale)
    if covariance_type == "full":
        want = sum(
            stats.invwishart(nu, scale).logpdf(cov[k])
            + stats.multivariate_normal(m0, cov[k] / kappa).logpdf(means[k])
            for k in range(K)
        )
    elif covariance_type == "tied":
        want = stats.invwishart(nu, scale).logpdf(cov) + sum(
            stats.multivariate_normal(m0, cov / kappa).logpdf(means[k]) for k in range(K)
        )
    elif covariance_type == "diag":
        want = np.sum(stats.invgamma(nu / 2, scale=scale / 2).logpdf(cov)) + np.sum(
            stats.norm(m0, np.sqrt(cov / kappa)).logpdf(means)
        )
    else:
        want = np.sum(stats.invgamma(nu / 2, scale=scale / 2).logpdf(cov)) + np.sum(
            stats.norm(m0, np.sqrt(cov[:, None] / kappa)).logpdf(means)
        )
    # Jitted: one compilation instead of many small eager ones (NumPyro's densities).
    family = prior_family(covariance_type)
    got = float(jax.jit(family.log_prior)(jnp.asarray(means), jnp.asarray(cov), prior))
    assert_allclose(got, want, rtol=1e-10)


def test_ml_covariance_adds_reg_covar_to_the_diagonal(covariance_type):
    rng = np.random.default_rng(5)
    ct = get_covariance_type(covariance_type)
    nk = jnp.asarray(rng.uniform(5, 10, K))
    means = jnp.asarray(rng.normal(size=(K, D)))
    kern = kernels_for(ct)
    scatter = kern.scatter(
        jnp.asarray(rng.normal(size=(40, D))), jnp.asarray(rng.dirichlet(np.ones(K), 40)), means
    )
    base = np.asarray(ct.to_full(kern.ml_covariance(nk, means, scatter, 0.0), K, D))
    reg = np.asarray(ct.to_full(kern.ml_covariance(nk, means, scatter, 0.25), K, D))
    assert_allclose(reg - base, np.broadcast_to(0.25 * np.eye(D), (K, D, D)), atol=1e-12)
