"""The density utilities: checked against scipy.stats, against a loop over batches, and for
the invariants any mixture density must satisfy."""

import jax
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import stats
from scipy.special import logsumexp

from bayesgmm import GMMParams, density
from bayesgmm.em import expanded
from bayesgmm.em.kernels import kernels_for

K, D = 3, 2


def _random_params(rng, covariance_type, k=K, d=D, batch=()):
    """Random valid parameters of the given type, with optional leading batch axes."""
    weights = rng.dirichlet(np.ones(k), size=batch)
    means = rng.normal(0.0, 2.0, batch + (k, d))
    if covariance_type == "full":
        a = rng.normal(size=batch + (k, d, d))
        cov = a @ np.swapaxes(a, -1, -2) + 0.5 * np.eye(d)
    elif covariance_type == "tied":
        a = rng.normal(size=batch + (d, d))
        cov = a @ np.swapaxes(a, -1, -2) + 0.5 * np.eye(d)
    elif covariance_type == "diag":
        cov = rng.uniform(0.3, 2.0, batch + (k, d))
    else:
        cov = rng.uniform(0.3, 2.0, batch + (k,))
    return GMMParams(weights, means, cov, covariance_type)


def _scipy_component_logpdf(X, p):
    covs = np.asarray(p.covariance_matrices())
    means = np.asarray(p.means)
    return np.stack(
        [stats.multivariate_normal(means[k], covs[k]).logpdf(X) for k in range(p.n_components)],
        axis=-1,
    )


@pytest.fixture
def X():
    return np.random.default_rng(0).normal(0.0, 2.0, (40, D))


def test_component_log_prob_equals_scipy(X, covariance_type):
    p = _random_params(np.random.default_rng(1), covariance_type)
    got = np.asarray(density.component_log_prob(X, p))
    assert got.shape == (40, K)
    assert_allclose(got, _scipy_component_logpdf(X, p), rtol=1e-12)


def test_component_log_prob_equals_scipy_in_one_and_five_dimensions():
    rng = np.random.default_rng(2)
    for d in (1, 5):
        X = rng.normal(size=(25, d))
        p = _random_params(rng, "full", k=2, d=d)
        assert_allclose(
            np.asarray(density.component_log_prob(X, p)),
            _scipy_component_logpdf(X, p),
            rtol=1e-12,
        )


@pytest.mark.parametrize("d", [1, 2, 5])
def test_expanded_form_equals_scipy(covariance_type, d):
    """The expanded form EM's float64 fast path uses (features of x - shift, one matrix
    product) gives scipy's weighted log densities. The data sit 50 away from the origin and
    the shift is their mean, as in EM; 1e-10 relative allows the expansion's rounding, which
    is about eps times the squared distance of a component from the shift in its own
    standard deviations (here up to ~10^2)."""
    rng = np.random.default_rng(7 + d)
    X = rng.normal(50.0, 2.0, (60, d))
    p = _random_params(rng, covariance_type, d=d)
    p = GMMParams(p.weights, np.asarray(p.means) + 50.0, p.covariances, covariance_type)
    shift = jax.numpy.asarray(X.mean(axis=0))
    UT = jax.numpy.asarray(X.T) - shift[:, None]
    prepared, far = expanded.prepare_expanded(p, shift)
    phi = kernels_for(covariance_type).features_t(UT)
    got = np.asarray(expanded.weighted_log_prob_expanded_t(UT, phi, prepared, covariance_type)).T
    want = _scipy_component_logpdf(X, p) + np.log(np.asarray(p.weights))
    assert_allclose(got, want, rtol=1e-10)
    assert np.asarray(far).shape == (K,)


def test_log_prob_is_logsumexp_of_weighted_scipy_densities(X, covariance_type):
    p = _random_params(np.random.default_rng(3), covariance_type)
    want = logsumexp(_scipy_component_logpdf(X, p) + np.log(np.asarray(p.weights)), axis=1)
    assert_allclose(np.asarray(density.log_prob(X, p)), want, rtol=1e-12)


def test_batched_params_equal_a_loop(X, covariance_type):
    batch = (2, 3)
    p = _random_params(np.random.default_rng(4), covariance_type, batch=batch)
    assert p.batch_shape == batch
    comp = np.asarray(density.component_log_prob(X, p))
    lp = np.asarray(density.log_prob(X, p))
    resp = np.asarray(density.predict_proba(X, p))
    labels = np.asarray(density.predict(X, p))
    assert comp.shape == batch + (40, K)
    assert lp.shape == batch + (40,)
    assert resp.shape == batch + (40, K)
    assert labels.shape == batch + (40,)
    for i in range(batch[0]):
        for j in range(batch[1]):
            one = p[i, j]
            assert one.batch_shape == ()
            # Each batch element against scipy directly, not only against the unbatched path.
            assert_allclose(comp[i, j], _scipy_component_logpdf(X, one), rtol=1e-12)
            assert_allclose(lp[i, j], np.asarray(density.log_prob(X, one)), rtol=1e-12)
            assert_allclose(resp[i, j], np.asarray(density.predict_proba(X, one)), rtol=1e-12)
            assert_array_equal(labels[i, j], np.asarray(density.predict(X, one)))


def test_responsibilities_sum_to_one_and_follow_bayes_rule(X, covariance_type):
    p = _random_params(np.random.default_rng(5), covariance_type)
    resp = np.asarray(density.predict_proba(X, p))
    assert np.all(resp >= 0)
    assert_allclose(resp.sum(axis=1), 1.0, rtol=1e-12)
    joint = _scipy_component_logpdf(X, p) + np.log(np.asarray(p.weights))
    assert_allclose(resp, np.exp(joint - logsumexp(joint, axis=1, keepdims=True)), rtol=1e-10)
    assert_array_equal(np.asarray(density.predict(X, p)), joint.argmax(axis=1))


def test_responsibilities_stay_finite_far_from_every_component():
    """A point 1e3 standard deviations away underflows every density; log space keeps the
    responsibilities finite and normalised."""
    p = GMMParams(np.array([0.5, 0.5]), np.array([[0.0], [1.0]]), np.ones(2), "spherical")
    X = np.array([[1e3], [-1e3]])
    resp = np.asarray(density.predict_proba(X, p))
    assert np.all(np.isfinite(resp))
    assert_allclose(resp.sum(axis=1), 1.0)
    assert_array_equal(np.asarray(density.predict(X, p)), [1, 0])


def test_permuting_components_leaves_log_prob_unchanged(X, covariance_type):
    p = _random_params(np.random.default_rng(6), covariance_type)
    perm = np.array([2, 0, 1])
    cov = p.covariances if covariance_type == "tied" else np.asarray(p.covariances)[perm]
    q = GMMParams(np.asarray(p.weights)[perm], np.asarray(p.means)[perm], cov, covariance_type)
    assert_allclose(np.asarray(density.log_prob(X, q)), np.asarray(density.log_prob(X, p)))
    assert_allclose(
        np.asarray(density.predict_proba(X, q)),
        np.asarray(density.predict_proba(X, p))[:, perm],
        rtol=1e-12,
    )


def test_many_rows_processed_in_blocks_equal_scipy():
    """More rows than one block holds (blocks of ~2**17/(K d) rows): block stitching and
    padding must not change any value."""
    rng = np.random.default_rng(7)
    p = _random_params(rng, "full", k=8, d=8)
    n = density.block_rows(8, 8) * 2 + 37
    X = rng.normal(size=(n, 8))
    got = np.asarray(density.log_prob(X, p))
    want = logsumexp(_scipy_component_logpdf(X, p) + np.log(np.asarray(p.weights)), axis=1)
    assert got.shape == (n,)
    assert_allclose(got, want, rtol=1e-12)


def test_float32_params_and_data_compute_in_float32(X):
    p = _random_params(np.random.default_rng(8), "full").astype(np.float32)
    lp = density.log_prob(X.astype(np.float32), p)
    assert lp.dtype == np.float32
    want = np.asarray(density.log_prob(X, p.astype(np.float64)))
    assert_allclose(np.asarray(lp), want, rtol=1e-5)


def test_sample_shapes_unbatched_and_batched(covariance_type):
    p = _random_params(np.random.default_rng(9), covariance_type)
    x, z = density.sample(jax.random.key(0), p, 7)
    assert x.shape == (7, D) and z.shape == (7,)
    assert np.all((np.asarray(z) >= 0) & (np.asarray(z) < K))
    pb = _random_params(np.random.default_rng(10), covariance_type, batch=(2, 3))
    xb, zb = density.sample(jax.random.key(0), pb, 7)
    assert xb.shape == (2, 3, 7, D) and zb.shape == (2, 3, 7)


def test_batched_sample_equals_loop_with_split_keys():
    """Batch element i is drawn with the i-th of ``jax.random.split(key, batch size)``."""
    # Same shapes as the test above (n=7, batch (2, 3)), so nothing new is compiled.
    pb = _random_params(np.random.default_rng(11), "full", batch=(2, 3))
    key = jax.random.key(3)
    xb, zb = density.sample(key, pb, 7)
    keys = jax.random.split(key, 6)
    for flat, (i, j) in enumerate(np.ndindex(2, 3)):
        x, z = density.sample(keys[flat], pb[i, j], 7)
        assert_allclose(np.asarray(xb[i, j]), np.asarray(x), rtol=1e-12)
        assert_array_equal(np.asarray(zb[i, j]), np.asarray(z))


def test_sample_moments_for_large_n(covariance_type):
    """Frequencies, means and covariances of 20000 draws match the parameters.

    Tolerances are 5 standard errors of each estimator, so with fixed seeds the test is
    deterministic and a correct sampler would fail with probability well below 1e-5 per
    quantity for a random seed:
    - label frequency of component k: binomial SE sqrt(w (1 - w) / n);
    - mean of component k, feature j: SE sqrt(Sigma_jj / n_k);
    - covariance entry (i, j): SE sqrt((Sigma_ii Sigma_jj + Sigma_ij^2) / n_k) (Gaussian).
    """
    n = 20000
    p = _random_params(np.random.default_rng(12), covariance_type)
    x, z = density.sample(jax.random.key(1), p, n)
    x, z = np.asarray(x), np.asarray(z)
    w = np.asarray(p.weights)
    means = np.asarray(p.means)
    covs = np.asarray(p.covariance_matrices())
    freq = np.bincount(z, minlength=K) / n
    assert np.all(np.abs(freq - w) < 5 * np.sqrt(w * (1 - w) / n))
    for k in range(K):
        xk = x[z == k]
        nk = len(xk)
        sd = np.sqrt(np.diag(covs[k]))
        assert np.all(np.abs(xk.mean(0) - means[k]) < 5 * sd / np.sqrt(nk))
        se_cov = np.sqrt((np.outer(sd**2, sd**2) + covs[k] ** 2) / nk)
        assert np.all(np.abs(np.cov(xk, rowvar=False) - covs[k]) < 5 * se_cov)


def test_sample_rejects_bad_n_samples():
    p = _random_params(np.random.default_rng(13), "diag")
    with pytest.raises(ValueError, match="n_samples"):
        density.sample(jax.random.key(0), p, 0)
    with pytest.raises(TypeError, match="n_samples"):
        density.sample(jax.random.key(0), p, 2.5)


@pytest.mark.parametrize(
    "fn",
    [density.log_prob, density.component_log_prob, density.predict_proba, density.predict],
    ids=["log_prob", "component_log_prob", "predict_proba", "predict"],
)
def test_data_of_the_wrong_shape_raises_naming_X(fn):
    p = _random_params(np.random.default_rng(14), "diag")
    with pytest.raises(ValueError, match=r"X must have shape \(n_samples, 2\)"):
        fn(np.zeros((4, 3)), p)
    with pytest.raises(ValueError, match=r"X must have shape \(n_samples, 2\)"):
        fn(np.zeros(4), p)
