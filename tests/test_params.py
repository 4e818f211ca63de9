"""``GMMParams`` and ``Prior``: validation, pytree behaviour, batches and conversions."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from bayesgmm import GMMParams, Prior

K, D = 3, 2


def _valid(covariance_type, batch=()):
    rng = np.random.default_rng(0)
    weights = np.broadcast_to(np.array([0.2, 0.3, 0.5]), batch + (K,))
    means = rng.normal(size=batch + (K, D))
    cov = {
        "full": np.broadcast_to(np.array([[2.0, 0.5], [0.5, 1.0]]), batch + (K, D, D)),
        "tied": np.broadcast_to(np.array([[2.0, 0.5], [0.5, 1.0]]), batch + (D, D)),
        "diag": np.broadcast_to(np.array([2.0, 1.0]), batch + (K, D)),
        "spherical": np.broadcast_to(np.array([0.5, 1.0, 2.0]), batch + (K,)),
    }[covariance_type]
    return weights, means, cov


def test_shapes_and_properties(covariance_type):
    p = GMMParams(*_valid(covariance_type), covariance_type)
    assert (p.n_components, p.n_features, p.batch_shape) == (K, D, ())
    assert p.dtype == np.float64
    assert p.covariance_matrices().shape == (K, D, D)
    assert p.precision_matrices().shape == (K, D, D)
    assert p.scale_tril().shape == (K, D, D)
    assert covariance_type in repr(p)


def test_conversions_are_consistent(covariance_type):
    p = GMMParams(*_valid(covariance_type), covariance_type)
    cov = np.asarray(p.covariance_matrices())
    prec = np.asarray(p.precision_matrices())
    assert_allclose(prec, np.linalg.inv(cov), rtol=1e-12)
    tril = np.asarray(p.scale_tril())
    assert_allclose(tril @ np.swapaxes(tril, -1, -2), cov, rtol=1e-12)
    assert_allclose(np.triu(tril, 1), 0.0)
    # precisions() is the compact form of the precision matrices.
    compact = np.asarray(p.precisions())
    assert_allclose(np.asarray(p.cov.to_full(jnp.asarray(compact), K, D)), prec, rtol=1e-12)


def test_batch_axes_and_indexing(covariance_type):
    p = GMMParams(*_valid(covariance_type, batch=(4, 5)), covariance_type)
    assert p.batch_shape == (4, 5)
    assert p.covariance_matrices().shape == (4, 5, K, D, D)
    one = p[1, 2]
    assert one.batch_shape == ()
    assert_array_equal(np.asarray(one.means), np.asarray(p.means)[1, 2])
    with pytest.raises(IndexError, match="no batch axes"):
        GMMParams(*_valid(covariance_type), covariance_type)[0]


def test_is_a_pytree_through_jit_and_vmap(covariance_type):
    p = GMMParams(*_valid(covariance_type, batch=(3,)), covariance_type)
    leaves, treedef = jax.tree_util.tree_flatten(p)
    assert len(leaves) == 3
    back = jax.tree_util.tree_unflatten(treedef, leaves)
    assert back.covariance_type == covariance_type

    @jax.jit
    def total_weight(q):
        return jnp.sum(q.weights, axis=-1)

    assert_allclose(np.asarray(total_weight(p)), np.ones(3))
    means_sum = jax.vmap(lambda q: jnp.sum(q.means))(p)
    assert_allclose(np.asarray(means_sum), np.asarray(p.means).sum(axis=(1, 2)))


def test_immutable_replace_astype_and_pickle():
    p = GMMParams(*_valid("full"), "full")
    with pytest.raises(AttributeError, match="immutable"):
        p.weights = np.ones(3) / 3
    q = p.replace(means=np.zeros((K, D)))
    assert_array_equal(np.asarray(q.means), 0.0)
    assert_array_equal(np.asarray(p.weights), np.asarray(q.weights))
    assert p.astype(np.float32).dtype == np.float32
    back = pickle.loads(pickle.dumps(p))
    assert back.covariance_type == "full"
    for a, b in zip(jax.tree_util.tree_leaves(p), jax.tree_util.tree_leaves(back)):
        assert_array_equal(np.asarray(a), np.asarray(b))


def test_float32_arrays_stay_float32():
    w, m, c = _valid("diag")
    p = GMMParams(w.astype(np.float32), m.astype(np.float32), c.astype(np.float32), "diag")
    assert p.dtype == np.float32 and p.weights.dtype == np.float32


@pytest.mark.parametrize(
    "covariance_type, change, exc, pattern",
    [
        ("full", dict(weights=np.array([0.2, 0.3, 0.6])), ValueError, "weights must sum to 1"),
        ("full", dict(weights=np.array([-0.2, 0.7, 0.5])), ValueError, "weights must be non-neg"),
        ("full", dict(weights=np.array([0.5, 0.5])), ValueError, "means must have shape"),
        ("full", dict(weights=np.float64(1.0)), ValueError, "weights must have shape"),
        ("full", dict(means=np.zeros((K, D, 1))), ValueError, "means must have shape"),
        ("full", dict(means=np.full((K, D), np.nan)), ValueError, "means contains NaN"),
        ("full", dict(covariances=np.ones((K, D))), ValueError, "covariances .* shape"),
        (
            "full",
            dict(covariances=np.stack([np.eye(2), np.eye(2), -np.eye(2)])),
            ValueError,
            "covariances must be positive definite",
        ),
        (
            "full",
            dict(covariances=np.stack([[[1.0, 0.9], [0.0, 1.0]]] * 3)),
            ValueError,
            "covariances must be symmetric",
        ),
        ("tied", dict(covariances=-np.eye(2)), ValueError, "covariances must be positive def"),
        ("diag", dict(covariances=np.zeros((K, D))), ValueError, "covariances must be positive"),
        ("spherical", dict(covariances=np.ones(4)), ValueError, r"covariances .* shape \(3,\)"),
        ("full", dict(weights=np.array(["a", "b", "c"])), TypeError, "weights must be an array"),
        ("fulll", {}, ValueError, "covariance_type must be one of"),
    ],
)
def test_bad_arrays_raise_naming_the_argument(covariance_type, change, exc, pattern):
    w, m, c = _valid(
        covariance_type if covariance_type in ("tied", "diag", "spherical") else "full"
    )
    args = dict(weights=w, means=m, covariances=c)
    args.update(change)
    with pytest.raises(exc, match=pattern):
        GMMParams(args["weights"], args["means"], args["covariances"], covariance_type)


def test_validate_false_skips_checks():
    w, m, c = _valid("full")
    p = GMMParams(w * 2, m, c, "full", validate=False)  # weights off the simplex, on purpose
    assert_allclose(np.asarray(p.weights).sum(), 2.0)


# --- Prior -------------------------------------------------------------------------------


def test_default_prior_is_mclusts(covariance_type):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(100, 3)) * [1.0, 2.0, 3.0]
    prior = Prior.default(X, 4, covariance_type)
    assert prior.covariance_type == covariance_type
    assert (prior.n_components, prior.n_features) == (4, 3)
    assert_allclose(np.asarray(prior.mean), X.mean(axis=0))
    assert float(prior.mean_precision) == 0.01
    assert float(prior.dof) == 3 + 2
    assert_allclose(np.asarray(prior.weight_concentration), np.ones(4))
    shrink = 4 ** (-2 / 3)
    cov = np.cov(X, rowvar=False)
    want = {
        "full": cov * shrink,
        "tied": cov * shrink,
        "diag": np.diag(cov) * shrink,
        "spherical": np.mean(np.diag(cov)) * shrink,
    }[covariance_type]
    assert_allclose(np.asarray(prior.scale), want, rtol=1e-12)
    back = pickle.loads(pickle.dumps(prior))
    assert_allclose(np.asarray(back.scale), np.asarray(prior.scale))


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(mean=np.zeros((2, 2))), "mean must have shape"),
        (dict(weight_concentration=np.array([1.0, -1.0])), "weight_concentration must be pos"),
        (dict(mean_precision=0.0), "mean_precision must be positive"),
        (dict(dof=0.5), "dof must be a scalar > 1"),
        (dict(scale=np.eye(3)), "scale .* shape"),
        (dict(scale=-np.eye(2)), "scale must be positive definite"),
    ],
)
def test_bad_prior_raises(kwargs, pattern):
    args = dict(
        weight_concentration=np.ones(3),
        mean=np.zeros(2),
        mean_precision=0.01,
        dof=4.0,
        scale=np.eye(2),
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=pattern):
        Prior(**args, covariance_type="full")
