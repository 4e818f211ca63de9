"""Model-based agglomerative hierarchical clustering (Fraley 1998), as mclust's ``hc``.

Start with every row as its own cluster and merge, one pair at a time, the two clusters whose
merge increases the *classification* criterion least. For unconstrained Gaussian clusters
(mclust's ``VVV``) the criterion is a sum over clusters of

.. math::

    t(C) = n_C \\log\\Bigl(\\det\\frac{W_C}{n_C} + \\beta\\,\\frac{\\operatorname{tr} W_C
    + \\alpha}{n_C}\\Bigr),

with ``n_C`` the cluster's size and ``W_C`` its scatter matrix ``sum (x - mean)(x - mean)^T``.
The determinant term is minus twice the classification log-likelihood per point (up to
constants); the trace term, with ``alpha`` the data's mean variance per coordinate, keeps the
criterion finite for clusters of at most ``n_features`` points, whose scatter is singular
(their determinant is exactly 0 and only the trace term counts). A singleton costs
``log(alpha * beta)``; merging clusters ``A`` and ``B`` costs ``t(A u B) - t(A) - t(B)``, where
the merged scatter is ``W_A + W_B + n_A n_B / (n_A + n_B) (m_A - m_B)(m_A - m_B)^T``.

The tree is built on transformed data, mclust's ``hcUse`` (default ``"SVD"``, mclust's since
version 5.4): columns standardised, then rotated onto their principal axes and scaled by the
square root of the singular values (``Z = U sqrt(S)`` for ``X_std = U S V^T``), which evens out
the scales without whitening away the cluster structure.

Cost: the pairwise merge costs are held in an ``(m, m)`` float64 matrix (``m`` rows used) and
every merge recomputes one row of it (``m`` determinants of ``(d, d)`` matrices, only for merged
clusters of more than ``d`` points), so time grows as about ``m**2`` and memory as ``8 m**2``
bytes: a few seconds and 32 MB at ``m = 2000``. Above ``max_samples`` rows (default 2000,
mclust's ``subset``) the tree is built on a random subsample (seeded, so still deterministic)
and the other rows join the cluster under which they are most probable (each cluster a Gaussian
with covariance ``(W_C + alpha I) / n_C`` and weight ``n_C / m``).

References
----------
Fraley, C. (1998). Algorithms for model-based Gaussian hierarchical clustering. SIAM Journal
on Scientific Computing 20(1), 270-281.
Scrucca, L., Fop, M., Murphy, T. B. and Raftery, A. E. (2016). mclust 5. The R Journal 8(1).
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np
from scipy.spatial.distance import cdist

__all__ = ["HCTree", "HC_USES", "hc", "transform"]

#: Data transformations the tree can be built on (mclust's ``hcUse`` values of the same names).
HC_USES = ("SVD", "VARS", "STD")


class HCTree(NamedTuple):
    """A merge tree from :func:`hc`.

    Attributes
    ----------
    merges : int ndarray of shape (m - 1, 2)
        Merge ``s`` joins the clusters headed by rows ``merges[s, 0] < merges[s, 1]`` of the
        rows used (``rows``); the merged cluster keeps the first head, so a cluster's head is
        always its smallest row.
    costs : ndarray of shape (m - 1,)
        Increase of the criterion at each merge.
    rows : int ndarray of shape (m,)
        Rows of the data the tree was built on, ascending (all rows unless subsampled).
    Z : ndarray of shape (n_samples, n_dims)
        The transformed data (every row), used to place rows outside ``rows``.
    alpha : float
        The trace regulariser actually used (``alpha`` times the mean variance of ``Z``).
    """

    merges: np.ndarray
    costs: np.ndarray
    rows: np.ndarray
    Z: np.ndarray
    alpha: float

    @property
    def n_samples(self) -> int:
        """Rows of the data the tree labels."""
        return self.Z.shape[0]

    def labels(self, n_clusters: int) -> np.ndarray:
        """The partition into ``n_clusters`` clusters, one label per data row.

        Labels are ``0 .. n_clusters - 1`` in order of the clusters' first rows.

        Parameters
        ----------
        n_clusters : int
            Between 1 and the number of rows used (``len(rows)``).

        Returns
        -------
        int ndarray of shape (n_samples,)
        """
        m = len(self.rows)
        if (
            isinstance(n_clusters, bool)
            or not isinstance(n_clusters, numbers.Integral)
            or not 1 <= n_clusters <= m
        ):
            raise ValueError(
                f"n_clusters must be an int between 1 and {m} (the rows the tree was built "
                f"on); got {n_clusters!r}"
            )
        parent = np.arange(m)
        done = self.merges[: m - int(n_clusters)]
        parent[done[:, 1]] = done[:, 0]
        # Heads point to heads that merged later, so pointer jumping reaches the final heads.
        while True:
            up = parent[parent]
            if np.array_equal(up, parent):
                break
            parent = up
        # np.unique sorts the heads, and a head is its cluster's smallest row.
        _, local = np.unique(parent, return_inverse=True)
        if m == self.n_samples:
            return local.astype(np.int64)
        return _place_other_rows(self, local, int(n_clusters))


def transform(X, use: str = "SVD") -> np.ndarray:
    """The data the tree is built on (mclust's ``hcUse``).

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    use : {'SVD', 'VARS', 'STD'}
        'VARS': the data as given; 'STD': every column centred and divided by its standard
        deviation; 'SVD': standardised, then ``U sqrt(S)`` from the thin SVD ``U S V^T`` (the
        principal-component scores divided by the square root of their singular values).
        Constant columns are dropped by 'STD' and 'SVD', as are directions of zero singular
        value by 'SVD'.

    Returns
    -------
    ndarray of shape (n_samples, n_dims)
    """
    X = np.asarray(X, dtype=np.float64)
    if use not in HC_USES:
        raise ValueError(f"use must be one of {HC_USES}; got {use!r}")
    if use == "VARS":
        return X.copy()
    sd = X.std(axis=0, ddof=1) if X.shape[0] > 1 else np.zeros(X.shape[1])
    keep = sd > 0
    Z = (X[:, keep] - X[:, keep].mean(axis=0)) / sd[keep]
    if use == "STD" or Z.shape[1] == 0:
        return Z
    U, s, _ = np.linalg.svd(Z, full_matrices=False)
    rank = s > s[0] * max(Z.shape) * np.finfo(np.float64).eps
    return U[:, rank] * np.sqrt(s[rank])


def hc(X, *, use: str = "SVD", alpha: float = 1.0, beta: float = 1.0, max_samples=2000, seed=0):
    """Build the model-based hierarchical clustering tree of ``X`` (mclust's ``hc``, ``VVV``).

    Deterministic: the same data give the same tree (ties go to the lower row index).

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    use : {'SVD', 'VARS', 'STD'}, default 'SVD'
        The transformation of the data the tree is built on (see :func:`transform`).
    alpha : float, default 1
        Trace regulariser, as a multiple of the mean variance per coordinate of the
        transformed data (mclust's ``alpha``).
    beta : float, default 1
        Weight of the trace term (mclust's ``beta``).
    max_samples : int or None, default 2000
        Build the tree on at most this many rows, a random subsample drawn with ``seed``
        (``None``: always all rows; memory is ``8 m**2`` bytes for ``m`` rows).
    seed : int, default 0
        Seed of the subsample.

    Returns
    -------
    HCTree
        ``tree.labels(K)`` gives the partition into ``K`` clusters of every row.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm.hc import hc
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(0, 1, (40, 2)), rng.normal(8, 1, (30, 2))])
    >>> np.bincount(hc(X).labels(2)).tolist()
    [40, 30]
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 1 or not np.isfinite(X).all():
        raise ValueError(f"X must be a finite 2-D array with at least one row; got {X.shape}")
    if not (np.isfinite(alpha) and alpha > 0 and np.isfinite(beta) and beta > 0):
        raise ValueError(f"alpha and beta must be positive; got alpha={alpha!r}, beta={beta!r}")
    Z = transform(X, use)
    n = Z.shape[0]
    if Z.shape[1] == 0:  # every column constant: one cluster of identical points
        Z = np.zeros((n, 1))
    rows = np.arange(n)
    if max_samples is not None:
        if isinstance(max_samples, bool) or not isinstance(max_samples, numbers.Integral):
            raise TypeError(f"max_samples must be an int or None; got {max_samples!r}")
        if max_samples < 2:
            raise ValueError(f"max_samples must be >= 2; got {max_samples}")
        if n > max_samples:
            rows = np.sort(np.random.default_rng(seed).choice(n, int(max_samples), replace=False))
    Zm = Z[rows]
    m, p = Zm.shape
    # mclust: alpha * traceW(data / sqrt(n p)), the mean variance per coordinate, >= eps.
    centred = Zm - Zm.mean(axis=0)
    alpha_used = max(float(alpha) * float(np.sum(centred * centred)) / (m * p), np.finfo(float).eps)
    merges, costs = _agglomerate(Zm, alpha_used, float(beta))
    return HCTree(merges, costs, rows, Z, alpha_used)


def _term(count, logdet, trace, alpha, beta):
    """The criterion of clusters: ``n log(det(W / n) + beta (tr W + alpha) / n)`` with
    ``logdet = log det(W / n)`` (``-inf`` where the determinant is zero)."""
    return count * np.logaddexp(logdet, np.log(beta * (trace + alpha) / count))


def _agglomerate(Z, alpha, beta):
    """Greedy merges of the rows of ``Z`` (m, p); returns ``(merges (m-1, 2), costs (m-1,))``.

    ``cost[a, b]`` holds the merge cost of every pair of live clusters (``inf`` elsewhere);
    ``nearest[r]``/``nearest_cost[r]`` the cheapest partner of row ``r``. After a merge of ``b``
    into ``a`` only row ``a`` of ``cost`` changes, so the rows whose partner was ``a`` or ``b`` are
    rescanned and the others compare their partner with ``a``'s new cost.
    """
    m, p = Z.shape
    count = np.ones(m)
    mean = Z.copy()
    scatter = np.zeros((m, p, p))
    trace = np.zeros(m)
    term = np.full(m, np.log(alpha * beta))  # a singleton: log(beta (0 + alpha) / 1)
    merges = np.zeros((max(m - 1, 0), 2), dtype=np.int64)
    costs = np.zeros(max(m - 1, 0))
    if m < 2:
        return merges, costs
    # Pairs of singletons: W = d d^T / 2, tr W = |d|^2 / 2; det(W / 2) = |d|^2 / 4 when p = 1
    # and 0 otherwise (a rank-one matrix).
    sq = cdist(Z, Z, "sqeuclidean")
    with np.errstate(divide="ignore"):  # identical rows: log 0 = -inf, det 0
        logdet = np.log(sq / 4.0) if p == 1 else np.full_like(sq, -np.inf)
        cost = _term(2.0, logdet, sq / 2.0, alpha, beta) - 2.0 * term[0]
    np.fill_diagonal(cost, np.inf)
    nearest = np.argmin(cost, axis=1)
    nearest_cost = cost[np.arange(m), nearest]
    live = np.ones(m, dtype=bool)
    for step in range(m - 1):
        r = int(np.argmin(nearest_cost))
        a, b = sorted((r, int(nearest[r])))
        merges[step] = a, b
        costs[step] = cost[a, b]
        # Merge b into a (the parallel update of mean and scatter).
        na, nb = count[a], count[b]
        d = mean[b] - mean[a]
        w = na * nb / (na + nb)
        scatter[a] += scatter[b] + w * np.outer(d, d)
        trace[a] += trace[b] + w * (d @ d)
        mean[a] += (nb / (na + nb)) * d
        count[a] = na + nb
        term[a] = term[a] + term[b] + cost[a, b]
        live[b] = False
        cost[b, :] = cost[:, b] = np.inf
        nearest_cost[b] = np.inf
        others = np.flatnonzero(live)
        others = others[others != a]
        if others.size == 0:
            break
        new = _merge_costs(a, others, count, mean, scatter, trace, term, alpha, beta, p)
        cost[a, others] = cost[others, a] = new
        stale = others[(nearest[others] == a) | (nearest[others] == b)]
        # Ties go to the lower index, as a rescan (argmin) would choose.
        gain = (new < nearest_cost[others]) | (
            (new == nearest_cost[others]) & (a < nearest[others])
        )
        nearest[others[gain]] = a
        nearest_cost[others[gain]] = new[gain]
        for row in np.concatenate([stale, [a]]):
            j = int(np.argmin(cost[row]))
            nearest[row], nearest_cost[row] = j, cost[row, j]
    return merges, costs


def _merge_costs(a, others, count, mean, scatter, trace, term, alpha, beta, p):
    """Costs of merging cluster ``a`` with each cluster in ``others``; shape (len(others),)."""
    n_ab = count[a] + count[others]
    d = mean[others] - mean[a]
    w = count[a] * count[others] / n_ab
    tr = trace[a] + trace[others] + w * np.einsum("ij,ij->i", d, d)
    logdet = np.full(others.size, -np.inf)
    # Clusters of at most p points have a singular scatter: det is exactly 0 there.
    big = n_ab > p
    if big.any():
        W = scatter[a] + scatter[others[big]] + w[big, None, None] * d[big, :, None] * d[big, None]
        sign, value = np.linalg.slogdet(W / n_ab[big, None, None])
        logdet[big] = np.where(sign > 0, value, -np.inf)
    return _term(n_ab, logdet, tr, alpha, beta) - term[a] - term[others]


def _place_other_rows(tree: HCTree, local: np.ndarray, n_clusters: int) -> np.ndarray:
    """Labels of every row from the subsample's labels ``local``: rows outside the subsample go
    to the cluster under which they are most probable (Gaussian with covariance
    ``(W + alpha I) / n`` and weight ``n / m``, in the transformed space)."""
    Z = tree.Z
    Zm = Z[tree.rows]
    m, p = Zm.shape
    scores = np.empty((Z.shape[0], n_clusters))
    for k in range(n_clusters):
        members = Zm[local == k]
        nk = members.shape[0]
        centre = members.mean(axis=0)
        dev = members - centre
        cov = (dev.T @ dev + tree.alpha * np.eye(p)) / nk
        chol = np.linalg.cholesky(cov)
        maha = np.linalg.solve(chol, (Z - centre).T)
        scores[:, k] = (
            np.log(nk / m) - np.sum(np.log(np.diag(chol))) - 0.5 * np.sum(maha * maha, axis=0)
        )
    labels = np.argmax(scores, axis=1)
    labels[tree.rows] = local
    return labels.astype(np.int64)
