"""The JAX k-means: scikit-learn's attributes and interface, and agreement with its inertia."""

import jax
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.cluster import KMeans as SkKMeans

from bayesgmm import KMeans
from bayesgmm.kmeans import kmeans_fit, kmeans_plusplus


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0], [6.0, 6.0]])
    X = np.concatenate([rng.normal(c, 0.8, (75, 2)) for c in centres])
    return X[rng.permutation(len(X))]


@pytest.fixture(scope="module")
def fitted(X):
    return KMeans(4, random_state=0).fit(X)


def test_attributes(X, fitted):
    assert fitted.cluster_centers_.shape == (4, 2)
    assert fitted.labels_.shape == (300,)
    assert fitted.n_features_in_ == 2
    assert isinstance(fitted.inertia_, float) and fitted.n_iter_ >= 1
    # inertia_ is the sum of squared distances to the assigned centres.
    d2 = np.sum((X - fitted.cluster_centers_[fitted.labels_]) ** 2)
    assert_allclose(fitted.inertia_, d2, rtol=1e-10)
    # Each centre is the mean of its points (Lloyd's fixed point).
    for k in range(4):
        assert_allclose(fitted.cluster_centers_[k], X[fitted.labels_ == k].mean(0), rtol=1e-10)


def test_predict_transform_score(X, fitted):
    assert_array_equal(fitted.predict(X), fitted.labels_)
    dist = fitted.transform(X)
    assert dist.shape == (300, 4)
    assert_array_equal(dist.argmin(axis=1), fitted.labels_)
    assert_allclose(fitted.score(X), -fitted.inertia_, rtol=1e-10)
    assert_array_equal(KMeans(4, random_state=0).fit_predict(X), fitted.labels_)


def test_inertia_agrees_with_sklearn_on_easy_data(X, fitted):
    """Four separated blobs: both find the same partition, so inertia agrees within 1%."""
    sk = SkKMeans(4, n_init=10, random_state=0).fit(X)
    assert abs(fitted.inertia_ - sk.inertia_) <= 0.01 * sk.inertia_
    ours = np.sort(fitted.cluster_centers_, axis=0)
    assert_allclose(ours, np.sort(sk.cluster_centers_, axis=0), atol=1e-6)


def test_n_init_keeps_the_lowest_inertia(X, fitted):
    """With 'random' seeding, single runs often merge two blobs (inertia ~4x the optimum);
    six restarts keep the best, which is the optimum found by k-means++ (``fitted``)."""
    singles = [
        float(kmeans_fit(k, X, 4, n_init=1, init="random").inertia)
        for k in jax.random.split(jax.random.key(2), 6)
    ]
    assert max(singles) > 2 * fitted.inertia_  # restarts are needed on this data
    best = kmeans_fit(jax.random.key(1), X, 4, n_init=6, init="random")
    assert_allclose(float(best.inertia), fitted.inertia_, rtol=1e-9)
    km = KMeans(4, init="random", n_init=6, random_state=1).fit(X)
    assert_allclose(km.inertia_, float(best.inertia), rtol=1e-12)


def test_kmeans_plusplus_picks_distinct_data_rows(X):
    centres, idx = kmeans_plusplus(jax.random.key(0), X, 4)
    idx = np.asarray(idx)
    assert len(set(idx.tolist())) == 4
    assert_array_equal(np.asarray(centres), X[idx])
    # On four separated blobs, greedy k-means++ puts one seed in each blob.
    assert len({(int(x > 3), int(y > 3)) for x, y in X[idx]}) == 4


def test_empty_cluster_keeps_a_finite_centre():
    """Two points, three clusters from 'random' seeds: a centre without points must stay
    finite (no 0/0)."""
    X = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    with pytest.warns(Warning):
        km = KMeans(3, init="random", n_init=1, random_state=0).fit(X)
    assert np.all(np.isfinite(km.cluster_centers_))
    assert_allclose(km.inertia_, 0.0, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, data, exc, pattern",
    [
        (dict(n_clusters=5), np.zeros((4, 2)), ValueError, "X has 4 sample"),
        (dict(n_clusters=0), np.zeros((4, 2)), ValueError, "n_clusters"),
        (dict(init="kmeans"), np.zeros((4, 2)), ValueError, "init must be"),
        (dict(n_init=0), np.zeros((4, 2)), ValueError, "n_init"),
        (dict(), np.array([[0.0, np.nan]] * 10), ValueError, "X contains NaN"),
        (dict(), np.zeros(10), ValueError, "X must be a 2-D array"),
    ],
)
def test_bad_input(kwargs, data, exc, pattern):
    with pytest.raises(exc, match=pattern):
        KMeans(**{"n_clusters": 2, **kwargs}).fit(data)


def test_not_fitted_and_wrong_features(fitted):
    with pytest.raises(ValueError, match="not fitted"):
        KMeans(2).predict(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="X has 3 features"):
        fitted.predict(np.zeros((3, 3)))


def test_get_set_params():
    km = KMeans(3)
    assert km.get_params()["n_clusters"] == 3
    assert km.set_params(n_clusters=5) is km and km.n_clusters == 5
    with pytest.raises(ValueError, match="n_cluster"):
        km.set_params(n_cluster=2)
