"""Small synthetic data sets of the GMM teaching material, made with NumPy only, and one real
data set shipped with the package.

Every synthetic function is seeded (``seed``: an int or a ``numpy.random.Generator``), so the
same call returns the same arrays, and returns ``(X, y)``: the data and the index of the
component (or moon) each row came from. Nothing here needs scikit-learn.

========================  ===================  =========================================
function                  ``X`` shape          what the material shows with it
========================  ===================  =========================================
:func:`blobs`             (n_samples, 2)       round clusters: k-means and GMM agree
:func:`stretched_blobs`   (n_samples, 2)       the same, sheared: k-means fails, GMM fits
:func:`three_gaussians`   (n_samples, 1)       EM written out by hand in one dimension
:func:`two_moons`         (n_samples, 2)       density estimation with many components
:func:`faithful`          (272, 2)             real data: Old Faithful's eruptions (no labels)
========================  ===================  =========================================
"""

from __future__ import annotations

import numbers
from importlib import resources

import numpy as np

__all__ = [
    "FAITHFUL_COLUMNS",
    "FIVE_CENTERS",
    "blobs",
    "faithful",
    "stretched_blobs",
    "three_gaussians",
    "two_moons",
]

#: Column names of :func:`faithful`, in order.
FAITHFUL_COLUMNS = ("eruptions", "waiting")

#: Centres of the five blobs used throughout the notebooks, shape (5, 2).
FIVE_CENTERS = np.array([[-6.0, -2.0], [-2.0, 5.0], [0.0, -4.0], [4.0, 2.0], [7.0, -3.0]])


def _rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise TypeError(f"seed must be a non-negative int or a numpy Generator; got {seed!r}")
    return np.random.default_rng(int(seed))


def _check_n(n_samples, name="n_samples", minimum=1) -> int:
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {type(n_samples).__name__}")
    if n_samples < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {n_samples}")
    return int(n_samples)


def _split(n_samples: int, n_parts: int, proportions=None) -> np.ndarray:
    """Rows per part: as even as possible, or following ``proportions``; sums to n_samples."""
    if proportions is None:
        p = np.full(n_parts, 1.0 / n_parts)
    else:
        p = np.asarray(proportions, dtype=float)
        if p.shape != (n_parts,) or np.any(p < 0) or not np.isfinite(p).all() or p.sum() <= 0:
            raise ValueError(
                f"proportions must be {n_parts} non-negative numbers with a positive sum; "
                f"got {proportions!r}"
            )
        p = p / p.sum()
    counts = np.floor(p * n_samples).astype(int)
    # Hand the rounding remainder to the parts with the largest fractional parts.
    rest = n_samples - counts.sum()
    counts[np.argsort(-(p * n_samples - counts), kind="stable")[:rest]] += 1
    return counts


def blobs(n_samples=500, centers=None, cluster_std=1.0, *, proportions=None, seed=0):
    """Isotropic Gaussian blobs around given centres.

    Parameters
    ----------
    n_samples : int, default 500
        Total number of rows, shared among the blobs as evenly as possible (or by
        ``proportions``).
    centers : array of shape (n_centers, n_features), or int, default :data:`FIVE_CENTERS`
        The blob centres; an int draws that many 2-D centres uniformly in ``[-10, 10]^2``.
    cluster_std : float or array of shape (n_centers,), default 1.0
        Standard deviation of every coordinate within each blob.
    proportions : array of shape (n_centers,), optional
        Relative sizes of the blobs.
    seed : int or numpy.random.Generator, default 0

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    y : int ndarray of shape (n_samples,), the blob of each row (rows are shuffled)

    Examples
    --------
    >>> from bayesgmm import datasets
    >>> X, y = datasets.blobs(300, seed=1)
    >>> X.shape, y.shape, sorted(set(y.tolist()))
    ((300, 2), (300,), [0, 1, 2, 3, 4])
    """
    rng = _rng(seed)
    n_samples = _check_n(n_samples)
    if centers is None:
        centers = FIVE_CENTERS
    if isinstance(centers, numbers.Integral) and not isinstance(centers, bool):
        centers = rng.uniform(-10.0, 10.0, size=(_check_n(centers, "centers"), 2))
    centers = np.asarray(centers, dtype=float)
    if centers.ndim != 2 or centers.shape[0] < 1 or not np.isfinite(centers).all():
        raise ValueError(
            f"centers must be a finite array of shape (n_centers, n_features); got {centers.shape}"
        )
    k = centers.shape[0]
    std = np.broadcast_to(np.asarray(cluster_std, dtype=float), (k,))
    if np.any(std <= 0) or not np.isfinite(std).all():
        raise ValueError(f"cluster_std must be positive; got {cluster_std!r}")
    counts = _split(n_samples, k, proportions)
    y = np.repeat(np.arange(k), counts)
    X = centers[y] + std[y, None] * rng.standard_normal((n_samples, centers.shape[1]))
    order = rng.permutation(n_samples)
    return X[order], y[order]


def stretched_blobs(n_samples=500, centers=None, cluster_std=1.0, *, transform=None, seed=0):
    """Blobs sheared by one random 2x2 matrix: elongated, tilted clusters.

    ``X = blobs(...) @ transform``, where ``transform`` (2, 2) is drawn with standard normal
    entries from the same seed unless given. k-means, which only knows round clusters,
    cuts these wrongly; a full-covariance mixture recovers them.

    Parameters
    ----------
    n_samples, centers, cluster_std, seed :
        As in :func:`blobs` (``centers`` must be 2-D).
    transform : array of shape (2, 2), optional

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    y : int ndarray of shape (n_samples,)
    """
    rng = _rng(seed)
    X, y = blobs(n_samples, centers, cluster_std, seed=rng)
    if X.shape[1] != 2:
        raise ValueError(f"stretched_blobs needs 2-D centers; got {X.shape[1]} features")
    if transform is None:
        transform = rng.standard_normal((2, 2))
    transform = np.asarray(transform, dtype=float)
    if transform.shape != (2, 2) or not np.isfinite(transform).all():
        raise ValueError(f"transform must be a finite (2, 2) matrix; got shape {transform.shape}")
    return X @ transform, y


def three_gaussians(n_samples=600, means=(-4.0, 0.0, 5.0), stds=(1.0, 0.7, 1.5), *, seed=0):
    """One-dimensional data from three Gaussians (equal shares), for EM written by hand.

    Parameters
    ----------
    n_samples : int, default 600
    means : array of shape (n_components,), default (-4, 0, 5)
    stds : array of shape (n_components,), default (1, 0.7, 1.5)
    seed : int or numpy.random.Generator, default 0

    Returns
    -------
    X : ndarray of shape (n_samples, 1)
    y : int ndarray of shape (n_samples,)
    """
    means = np.asarray(means, dtype=float)
    stds = np.asarray(stds, dtype=float)
    if means.ndim != 1 or stds.shape != means.shape:
        raise ValueError(
            f"means and stds must be 1-D of equal length; got {means.shape} and {stds.shape}"
        )
    return blobs(n_samples, means[:, None], stds, seed=seed)


def two_moons(n_samples=400, noise=0.05, *, seed=0):
    """Two interleaving half circles (the shape scikit-learn's ``make_moons`` draws).

    Parameters
    ----------
    n_samples : int, default 400
        Split between the moons (the lower one gets the odd one, as in scikit-learn).
    noise : float, default 0.05
        Standard deviation of Gaussian noise added to every coordinate.
    seed : int or numpy.random.Generator, default 0

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
    y : int ndarray of shape (n_samples,), 0 for the upper moon, 1 for the lower
    """
    rng = _rng(seed)
    n_samples = _check_n(n_samples, minimum=2)
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a non-negative number; got {noise!r}")
    n_out = n_samples // 2
    n_in = n_samples - n_out
    t_out = np.linspace(0.0, np.pi, n_out)
    t_in = np.linspace(0.0, np.pi, n_in)
    upper = np.column_stack([np.cos(t_out), np.sin(t_out)])
    lower = np.column_stack([1.0 - np.cos(t_in), 0.5 - np.sin(t_in)])
    X = np.concatenate([upper, lower]) + noise * rng.standard_normal((n_samples, 2))
    y = np.repeat([0, 1], [n_out, n_in])
    order = rng.permutation(n_samples)
    return X[order], y[order]


def faithful():
    """Old Faithful geyser (Yellowstone): 272 eruptions, R's ``datasets::faithful``.

    Columns (:data:`FAITHFUL_COLUMNS`): ``eruptions``, the eruption's duration in minutes, and
    ``waiting``, the minutes to the next eruption (Azzalini and Bowman 1990; Haerdle 1991).
    Public domain; shipped as ``bayesgmm/data/faithful.csv``. mclust's ``Mclust`` chooses 3
    components with a common covariance (its ``EEE``, our ``tied``) for these data:
    log-likelihood -1126.326, BIC 2314.316 in scikit-learn's sign (-2314.316 in mclust's).

    Returns
    -------
    X : float64 ndarray of shape (272, 2)
        A new array at every call (changing it changes no later call).

    Examples
    --------
    >>> from bayesgmm import datasets
    >>> X = datasets.faithful()
    >>> X.shape, X.dtype
    ((272, 2), dtype('float64'))
    >>> X[0].tolist(), dict(zip(datasets.FAITHFUL_COLUMNS, X.mean(axis=0).round(2).tolist()))
    ([3.6, 79.0], {'eruptions': 3.49, 'waiting': 70.9})
    """
    source = resources.files(__package__).joinpath("data", "faithful.csv")
    with source.open("r", encoding="ascii") as f:
        header = f.readline().strip().split(",")
        X = np.loadtxt(f, delimiter=",", dtype=np.float64)
    if tuple(header) != FAITHFUL_COLUMNS or X.shape != (272, 2):  # pragma: no cover
        raise RuntimeError(f"bayesgmm/data/faithful.csv is damaged: {header}, {X.shape}")
    return X
