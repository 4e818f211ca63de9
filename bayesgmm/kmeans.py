"""k-means in JAX: k-means++ seeding, Lloyd iterations, restarts as a ``vmap``.

Used to initialise EM (``init_params="kmeans"``/``"k-means++"``) and, as :class:`KMeans`, to
compare hard-assignment clustering with the mixture side by side.
"""

from __future__ import annotations

import math
import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._compile import SizedJit
from ._exceptions import ConvergenceWarning, NotFittedError, sklearn_compatible
from ._random import as_key
from ._validation import (
    check_data,
    check_nonnegative_float,
    check_positive_int,
    check_sample_weight,
)

__all__ = ["KMeans", "kmeans_plusplus", "kmeans_fit", "KMeansResult"]


class KMeansResult(NamedTuple):
    """Result of one k-means run (or a batch of runs along a leading axis)."""

    centers: jax.Array  # (K, d)
    labels: jax.Array  # (n,)
    inertia: jax.Array  # ()
    n_iter: jax.Array  # ()


def _sq_dist(X, centers):
    """Squared Euclidean distances, shape (n, K), clipped at zero against rounding."""
    d2 = (
        jnp.sum(X * X, axis=1)[:, None]
        - 2.0 * X @ centers.T
        + jnp.sum(centers * centers, axis=1)[None, :]
    )
    return jnp.maximum(d2, 0.0)


@partial(jax.jit, static_argnames=("n_clusters",))
def kmeans_plusplus(key, X, n_clusters: int, sample_weight=None):
    """Greedy k-means++ seeding (Arthur and Vassilvitskii 2007, with 2 + log K local trials).

    Parameters
    ----------
    key : jax.random key
    X : array of shape (n_samples, n_features)
    n_clusters : int
    sample_weight : array of shape (n_samples,), optional
        Row multiplicities (scikit-learn's convention): the first centre is drawn with
        probability proportional to the weight, the next ones to weight times squared
        distance, and candidates are compared by their weighted potential. A row of weight
        zero is never chosen.

    Returns
    -------
    centers : array of shape (n_clusters, n_features)
    indices : int array of shape (n_clusters,), rows of ``X`` chosen as centres
    """
    n = X.shape[0]
    n_trials = 2 + int(math.log(n_clusters))
    key, k0 = jax.random.split(key)
    if sample_weight is None:
        # Unweighted: kept as it was, so unweighted seeds do not change with weights' arrival.
        first = jax.random.randint(k0, (), 0, n)
        uniform = jnp.full((n,), 1.0 / n, X.dtype)

        def weighted(d2):
            return d2

    else:
        w = jnp.asarray(sample_weight, X.dtype)
        uniform = w / jnp.sum(w)
        first = jax.random.choice(k0, n, (), p=uniform)

        def weighted(d2):
            return d2 * w

    closest = _sq_dist(X, X[first][None])[:, 0]
    indices = jnp.zeros(n_clusters, dtype=first.dtype).at[0].set(first)

    def body(i, state):
        key, closest, indices = state
        key, sub = jax.random.split(key)
        pot = weighted(closest)
        total = jnp.sum(pot)
        # Degenerate data (all points equal) gives total 0: fall back to the first draw's law.
        p = jnp.where(total > 0, pot / jnp.where(total > 0, total, 1.0), uniform)
        cand = jax.random.choice(sub, n, (n_trials,), p=p)
        d_cand = jnp.minimum(closest[None, :], _sq_dist(X, X[cand]).T)  # (trials, n)
        best = jnp.argmin(jnp.sum(weighted(d_cand), axis=1))
        return key, d_cand[best], indices.at[i].set(cand[best])

    _, _, indices = jax.lax.fori_loop(1, n_clusters, body, (key, closest, indices))
    return X[indices], indices


def _lloyd(X, centers, max_iter, tol, sample_weight=None):
    # Weighted rows (``sample_weight``) count as that many copies in the centres and inertia.
    def assign(centers):
        d2 = _sq_dist(X, centers)
        labels = jnp.argmin(d2, axis=1)
        nearest = jnp.min(d2, axis=1)
        if sample_weight is not None:
            nearest = nearest * sample_weight
        return labels, jnp.sum(nearest)

    def update(labels, centers):
        one_hot = jax.nn.one_hot(labels, centers.shape[0], dtype=X.dtype)
        if sample_weight is not None:
            one_hot = one_hot * sample_weight[:, None]
        counts = one_hot.sum(0)
        sums = one_hot.T @ X
        # An empty cluster keeps its previous centre instead of becoming NaN.
        return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1)[:, None], centers)

    def cond(state):
        it, _, shift, changed = state
        return (it < max_iter) & (shift > tol) & changed

    def body(state):
        it, centers, _, _ = state
        labels, _ = assign(centers)
        new = update(labels, centers)
        new_labels, _ = assign(new)
        shift = jnp.sum((new - centers) ** 2)
        return it + 1, new, shift, jnp.any(new_labels != labels)

    init = (jnp.asarray(0), centers, jnp.asarray(jnp.inf, X.dtype), jnp.asarray(True))
    n_iter, centers, _, _ = jax.lax.while_loop(cond, body, init)
    labels, inertia = assign(centers)
    return KMeansResult(centers, labels, inertia, n_iter)


def _kmeans_fit_impl(key, X, n_clusters, n_init, init, max_iter, tol, sample_weight=None):
    if sample_weight is None:
        abs_tol = tol * jnp.mean(jnp.var(X, axis=0))
        p = None
    else:
        # The weighted variance: integer weights then behave exactly as repeated rows.
        p = sample_weight / jnp.sum(sample_weight)
        mean = p @ X
        abs_tol = tol * jnp.mean(p @ (X - mean) ** 2)

    def one(key):
        if init == "k-means++":
            centers, _ = kmeans_plusplus(key, X, n_clusters, sample_weight)
        else:
            idx = jax.random.choice(key, X.shape[0], (n_clusters,), replace=False, p=p)
            centers = X[idx]
        return _lloyd(X, centers, max_iter, abs_tol, sample_weight)

    runs = jax.vmap(one)(jax.random.split(key, n_init))
    best = jnp.argmin(runs.inertia)
    return jax.tree_util.tree_map(lambda a: a[best], runs)


# Small problems compile at XLA's optimisation level 0 (see bayesgmm._compile): k-means
# compiled in 2-3 s, over 1000 times its run time on a few hundred points.
_kmeans_fit = SizedJit(
    _kmeans_fit_impl, static_argnames=("n_clusters", "n_init", "init", "max_iter")
)


def kmeans_fit(
    key,
    X,
    n_clusters: int,
    n_init: int = 1,
    init: str = "k-means++",
    max_iter: int = 300,
    tol=1e-4,
    sample_weight=None,
):
    """Run k-means ``n_init`` times (vectorised) and keep the lowest inertia.

    Parameters
    ----------
    key : jax.random key
    X : array of shape (n_samples, n_features)
    n_clusters, n_init, max_iter : int
    init : {'k-means++', 'random'}
    tol : float
        Relative tolerance: iterations stop when the squared centre shift falls below
        ``tol`` times the mean feature variance (scikit-learn's convention).
    sample_weight : array of shape (n_samples,), optional
        Non-negative row multiplicities (validated by the caller): seeding, centres, inertia
        and the tolerance's variance are weighted, so integer weights give the run of the
        data with rows repeated; rows of weight zero are never seeds.

    Returns
    -------
    KMeansResult of the best run
    """
    X = jnp.asarray(X)
    if sample_weight is not None:
        sample_weight = jnp.asarray(sample_weight, X.dtype)
    fit = _kmeans_fit.pick(X.shape[0], n_clusters, X.shape[1], data=X)
    return fit(key, X, n_clusters, n_init, init, max_iter, tol, sample_weight)


class KMeans:
    """k-means clustering with scikit-learn's interface, computed in JAX.

    Parameters
    ----------
    n_clusters : int, default 8
    init : {'k-means++', 'random'}, default 'k-means++'
    n_init : int or 'auto', default 'auto' (1 for k-means++, 10 for random)
    max_iter : int, default 300
    tol : float, default 1e-4
    random_state : int, numpy Generator/RandomState, jax key or None

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
    labels_ : ndarray of shape (n_samples,)
    inertia_ : float
        Sum of squared distances of samples to their closest centre.
    n_iter_ : int
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm import KMeans
    >>> X = np.array([[0.0], [0.1], [10.0], [10.1]])
    >>> km = KMeans(2, random_state=0).fit(X)
    >>> sorted(np.round(km.cluster_centers_.ravel(), 2).tolist())
    [0.05, 10.05]
    """

    def __init__(
        self,
        n_clusters=8,
        *,
        init="k-means++",
        n_init="auto",
        max_iter=300,
        tol=1e-4,
        random_state=None,
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def get_params(self, deep=True):
        return {
            k: getattr(self, k)
            for k in ("n_clusters", "init", "n_init", "max_iter", "tol", "random_state")
        }

    def set_params(self, **params):
        for k, v in params.items():
            if k not in self.get_params():
                raise ValueError(f"invalid parameter {k!r} for KMeans")
            setattr(self, k, v)
        return self

    def fit(self, X, y=None, sample_weight=None):
        """Compute k-means clustering of ``X`` (n_samples, n_features); returns ``self``.

        ``sample_weight`` (n_samples,), optional: non-negative row multiplicities, as in
        scikit-learn (seeding, centres and inertia weighted; integer weights give the
        clustering of the data with rows repeated, zero weights rows that are absent).
        """
        k = check_positive_int(self.n_clusters, "n_clusters")
        if self.init not in ("k-means++", "random"):
            raise ValueError(f"init must be 'k-means++' or 'random'; got {self.init!r}")
        n_init = self.n_init
        if n_init == "auto":
            n_init = 1 if self.init == "k-means++" else 10
        n_init = check_positive_int(n_init, "n_init")
        max_iter = check_positive_int(self.max_iter, "max_iter")
        tol = check_nonnegative_float(self.tol, "tol")
        X = check_data(X, min_samples=k)
        w = check_sample_weight(sample_weight, X.shape[0], X.dtype, min_positive=k)
        res = kmeans_fit(
            as_key(self.random_state), jnp.asarray(X), k, n_init, self.init, max_iter, tol, w
        )
        self.cluster_centers_ = np.asarray(res.centers)
        self.labels_ = np.asarray(res.labels)
        self.inertia_ = float(res.inertia)
        self.n_iter_ = int(res.n_iter)
        self.n_features_in_ = X.shape[1]
        n_distinct = len(np.unique(self.cluster_centers_, axis=0))
        if n_distinct < k:
            # As scikit-learn: fewer distinct points than clusters leaves duplicate centres.
            warnings.warn(
                f"Number of distinct clusters ({n_distinct}) found smaller than n_clusters ({k}); "
                "X has fewer distinct points than n_clusters: decrease n_clusters",
                sklearn_compatible(ConvergenceWarning),
                stacklevel=2,
            )
        return self

    def _check_fitted(self, X):
        if not hasattr(self, "cluster_centers_"):
            raise sklearn_compatible(NotFittedError)(
                "this KMeans instance is not fitted yet; call fit first"
            )
        return check_data(
            X,
            n_features=self.n_features_in_,
            dtype=self.cluster_centers_.dtype,
            fitted_by=type(self).__name__,
        )

    def predict(self, X):
        """Index of the closest centre for each row of ``X``; shape (n_samples,)."""
        X = self._check_fitted(X)
        return np.asarray(jnp.argmin(_sq_dist(jnp.asarray(X), self.cluster_centers_), axis=1))

    def fit_predict(self, X, y=None, sample_weight=None):
        """:meth:`fit`, then the labels of the training rows; shape (n_samples,)."""
        return self.fit(X, sample_weight=sample_weight).labels_

    def transform(self, X):
        """Euclidean distances to each centre; shape (n_samples, n_clusters)."""
        X = self._check_fitted(X)
        return np.sqrt(np.asarray(_sq_dist(jnp.asarray(X), self.cluster_centers_)))

    def score(self, X, y=None, sample_weight=None):
        """Opposite of the (weighted) inertia of ``X`` under the fitted centres (higher is
        better)."""
        d2 = np.min(self.transform(X), axis=1) ** 2
        w = check_sample_weight(sample_weight, d2.shape[0], d2.dtype)
        return -float(np.sum(d2 if w is None else d2 * w))

    def radii(self, X=None):
        """Distance from each centre to its farthest member (the circles the articles draw)."""
        if X is None:
            raise ValueError("radii needs the data X the clusters were fitted on")
        X = self._check_fitted(X)
        labels = self.predict(X)
        dist = np.linalg.norm(X - self.cluster_centers_[labels], axis=1)
        k = len(self.cluster_centers_)
        return np.array([dist[labels == j].max(initial=0.0) for j in range(k)])

    def __repr__(self):
        return f"KMeans(n_clusters={self.n_clusters})"
