"""The shared prior: mclust's default, validation, and the MAP M-step as its exact mode."""

from functools import partial

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers
from numpyro.distributions import biject_to

from bayesgmm import GaussianMixture, GMMParams, Prior, density, gmm_model
from bayesgmm.em import log_prior, m_step, to_blocks
from bayesgmm.model import SITE_NAMES

K = 3


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(7)
    return np.concatenate(
        [rng.normal([0, 0, 0], 1.0, (30, 3)), rng.normal([3, 3, 0], 0.5, (30, 3))]
    ) * np.array([1.0, 2.0, 0.5])


def test_default_is_mclust_default_prior(X, covariance_type):
    # mclust's defaultPrior (Fraley & Raftery 2007; mclust manual): shrinkage 0.01, mean the
    # column means, dof d + 2, scale var(data) / G^(2/d) for full/tied, the diagonal of it
    # for diag, and the mean of the variances for spherical.
    d = X.shape[1]
    p = Prior.default(X, K, covariance_type)
    fac = K ** (-2.0 / d)
    var = np.cov(X, rowvar=False)
    expected_scale = {
        "full": fac * var,
        "tied": fac * var,
        "diag": fac * np.diag(var),
        "spherical": fac * np.trace(var) / d,
    }[covariance_type]
    np.testing.assert_allclose(np.asarray(p.mean), X.mean(0), rtol=1e-12)
    assert float(p.mean_precision) == 0.01
    assert float(p.dof) == d + 2
    np.testing.assert_allclose(np.asarray(p.scale), expected_scale, rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(p.weight_concentration), np.ones(K))
    assert p.covariance_type == covariance_type and p.n_components == K and p.n_features == d


def test_every_hyperparameter_is_settable(X):
    p = Prior.default(X, K, "diag", weight_concentration=[1.0, 2.0, 3.0], mean_precision=0.5, dof=9)
    np.testing.assert_array_equal(np.asarray(p.weight_concentration), [1.0, 2.0, 3.0])
    assert float(p.mean_precision) == 0.5 and float(p.dof) == 9
    q = Prior(np.ones(2), np.zeros(3), 1.0, 4.0, np.eye(3), "full")
    assert q.n_components == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mean_precision": -1.0}, "mean_precision must be positive"),
        ({"mean_precision": 0.0}, "mean_precision must be positive"),
        ({"dof": 1.5}, "dof must be a scalar > 2"),
        ({"dof": np.ones(2) * 5}, "dof must be a scalar"),
        ({"scale": -np.eye(3)}, "scale must be positive definite"),
        ({"scale": np.eye(2)}, r"scale .* must have shape \(3, 3\)"),
        ({"scale": np.array([[1.0, 2.0, 0], [0, 1.0, 0], [0, 0, 1.0]])}, "scale must be symmetric"),
        ({"weight_concentration": np.array([1.0, 0.0])}, "weight_concentration must be positive"),
        ({"weight_concentration": np.ones((2, 2))}, "weight_concentration must have shape"),
        ({"mean": np.zeros((3, 1))}, r"mean must have shape \(n_features,\)"),
        ({"mean": np.array([0.0, np.nan, 0.0])}, "mean contains NaN"),
        ({"covariance_type": "banana"}, "covariance_type must be one of"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, match):
    args = {
        "weight_concentration": np.ones(2),
        "mean": np.zeros(3),
        "mean_precision": 1.0,
        "dof": 5.0,
        "scale": np.eye(3),
        "covariance_type": "full",
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        Prior(**args)


@pytest.mark.parametrize(
    ("ct", "scale", "match"),
    [
        ("diag", -np.ones(3), "scale must be positive"),
        ("diag", np.ones(2), r"must have shape \(3,\)"),
        ("spherical", np.ones(3), r"must have shape \(\)"),
        ("spherical", 0.0, "scale must be positive"),
    ],
)
def test_bad_scale_for_diagonal_types(ct, scale, match):
    with pytest.raises(ValueError, match=match):
        Prior(np.ones(2), np.zeros(3), 1.0, 5.0, scale, ct)


def test_map_em_rejects_concentration_below_one(X):
    p = Prior.default(X, K, "full", weight_concentration=0.5)
    with pytest.raises(ValueError, match="weight_concentration >= 1"):
        GaussianMixture(K, prior=p).fit(X)


def _supports(ct, prior):
    tr = handlers.trace(handlers.seed(gmm_model, 0)).get_trace(
        n_components=K, covariance_type=ct, prior=prior
    )
    return {name: biject_to(tr[name]["fn"].support) for name in SITE_NAMES}


@partial(jax.jit, static_argnames=("ct",))
def _expected_complete_log_posterior(X, resp, prior, values, ct):
    """Q(theta) = sum_nk r_nk (log w_k + log N(x_n | k)) + log prior(theta): what one MAP
    M-step maximises, written from the density and prior functions, not from the M-step."""
    params = GMMParams.tree_unflatten(ct, tuple(values[s] for s in SITE_NAMES))
    comp = density.component_log_prob(X, params)
    return jnp.sum(resp * (comp + jnp.log(params.weights))) + log_prior(params, prior)


def test_map_m_step_is_the_exact_mode(X, covariance_type):
    # Given any responsibilities, the closed-form MAP M-step must maximise Q exactly: zero
    # gradient along every feasible direction (unconstrained coordinates: the simplex for the
    # weights, positive definite / positive covariances), and no small move raises Q.
    ct = covariance_type
    rng = np.random.default_rng(0)
    resp = rng.dirichlet(np.ones(K), size=X.shape[0])
    prior = Prior.default(X, K, ct, weight_concentration=[1.0, 2.0, 3.5], mean_precision=0.3)
    Xj = jnp.asarray(X)
    Xb, wb = to_blocks(Xj, K)
    rb = jnp.asarray(resp)[None]
    assert Xb.shape[0] == 1  # one block, so rb lines up with Xb
    mode = m_step(Xb, rb, ct, 0.0, prior)
    values = dict(zip(SITE_NAMES, (mode.weights, mode.means, mode.covariances)))
    transforms = _supports(ct, prior)
    u0, unravel = jax.flatten_util.ravel_pytree(
        {s: transforms[s].inv(values[s]) for s in SITE_NAMES}
    )

    def q(u):
        v = unravel(u)
        return _expected_complete_log_posterior(
            Xj, jnp.asarray(resp), prior, {s: transforms[s](v[s]) for s in SITE_NAMES}, ct
        )

    # Jitted: op by op, grad and vmap of Q compiled hundreds of small programs (51 s for
    # 'full' on the 2-core machine).
    grad = np.asarray(jax.jit(jax.grad(q))(u0))
    # Q is ~1e2 and curved ~1e1-1e2 per unit; a wrong formula (e.g. a dof offset of one)
    # gives gradients of order 1.
    assert np.max(np.abs(grad)) < 1e-8, grad
    dirs = rng.normal(size=(100, u0.size))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    vals = np.asarray(jax.jit(jax.vmap(q))(np.concatenate([u0[None], u0 + 1e-3 * dirs])))
    assert np.all(vals[1:] < vals[0])


def test_map_em_objective_never_decreases(X, covariance_type):
    gm = GaussianMixture(
        K, covariance_type=covariance_type, prior="default", tol=1e-10, max_iter=200
    ).fit(X)
    lbs = gm.lower_bounds_
    assert len(lbs) > 2
    assert np.all(np.diff(lbs) >= -1e-10 * np.abs(lbs[1:]))
    assert gm.prior_.covariance_type == covariance_type


def test_prior_is_a_pytree_and_casts(X):
    p = Prior.default(X, K, "full")
    leaves, tree = jax.tree_util.tree_flatten(p)
    assert len(leaves) == 5
    back = jax.tree_util.tree_unflatten(tree, leaves)
    assert back.covariance_type == "full"
    assert jax.jit(lambda pr: pr.dof + 1.0)(p) == float(p.dof) + 1
    assert p.astype(np.float32).scale.dtype == np.float32
