"""Brute-force reference for ``bayesgmm.select``: scikit-learn with dozens of restarts per cell.

For every (n_components, covariance_type) of a grid, scikit-learn's ``GaussianMixture`` is fitted
from many single starts (each of its four ``init_params`` with several seeds, ``n_init=1`` so
that a degenerate restart cannot hide a sound one), degenerate fits are dropped by the rule of
``bayesgmm.selection.is_collapsed`` (a covariance eigenvalue at or below ``10 * reg_covar`` plus
``1e-10`` times the largest, or a component carrying fewer than ``n_features + 1`` points), and
the best few restarts are polished to ``tol=1e-8`` from where they stopped. The lowest BIC over
the grid is what ``select`` should choose. ``tests/test_selection.py`` recomputes it on smaller
grids with the same functions.

Usage::

    python scripts/select_reference.py [NAME ...] [--k 1-6] [--seeds 10] [--compare]

prints, per data set, the reference's best cells and, with ``--compare``, ``select``'s table
with both strategies and their times.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

#: Real data sets (scikit-learn ships all but Old Faithful, which bayesgmm ships), each as a
#: function returning ``X``. Standardised where the columns' units differ by orders of magnitude.


def _iris():
    from sklearn.datasets import load_iris

    return load_iris().data


def _wine():
    from sklearn.datasets import load_wine

    X = load_wine().data
    return (X - X.mean(0)) / X.std(0)


def _breast_cancer_shape():
    """The four mean 'shape' features that are not functions of the cells' size (texture,
    smoothness, symmetry, fractal dimension). Radius, perimeter and area are nearly collinear,
    and with them full covariances keep gaining likelihood up to any K one tries."""
    from sklearn.datasets import load_breast_cancer

    X = load_breast_cancer().data[:, [1, 4, 8, 9]]
    return (X - X.mean(0)) / X.std(0)


def _faithful():
    from bayesgmm import datasets

    return datasets.faithful()


DATASETS = {
    "faithful": _faithful,
    "iris": _iris,
    "wine": _wine,
    "breast_cancer_shape": _breast_cancer_shape,
}
TYPES = ("full", "tied", "diag", "spherical")
INITS = ("kmeans", "k-means++", "random_from_data", "random")


def _full_covariances(gm) -> np.ndarray:
    c, (k, d) = gm.covariances_, gm.means_.shape
    if gm.covariance_type == "full":
        return c
    if gm.covariance_type == "tied":
        return np.broadcast_to(c, (k, d, d))
    if gm.covariance_type == "diag":
        return np.einsum("ki,ij->kij", c, np.eye(d))
    return c[:, None, None] * np.eye(d)


def degenerate(gm, n_samples: int, collapse_factor: float = 10.0) -> bool:
    """``bayesgmm.selection.is_collapsed``'s rule, written for scikit-learn's attributes."""
    eig = np.linalg.eigvalsh(_full_covariances(gm))
    floor = collapse_factor * gm.reg_covar + 1e-10 * eig.max()
    return bool(np.any(eig <= floor) or np.any(gm.weights_ * n_samples < gm.means_.shape[1] + 1))


def sklearn_cell(X, k, covariance_type, *, seeds=range(10), inits=INITS, polish=3):
    """Best non-degenerate log-likelihood of scikit-learn over ``len(inits) * len(seeds)``
    single starts (to ``tol=1e-4``), the ``polish`` best of them continued to ``tol=1e-8``;
    returns ``(log_likelihood, bic)`` or None when every start failed or degenerated."""
    from sklearn.mixture import GaussianMixture as SkGM

    n = X.shape[0]
    fits = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for init in inits:
            for seed in seeds:
                gm = SkGM(
                    k,
                    covariance_type=covariance_type,
                    init_params=init,
                    random_state=seed,
                    tol=1e-4,
                    max_iter=500,
                )
                try:
                    gm.fit(X)
                except ValueError:  # a covariance lost positive definiteness
                    continue
                if not degenerate(gm, n):
                    fits.append((gm.score(X) * n, gm))
        fits.sort(key=lambda f: -f[0])
        best = None
        for _, gm in fits[:polish]:
            # scikit-learn's warm start continues from the fitted parameters.
            gm.set_params(warm_start=True, tol=1e-8, max_iter=5000)
            try:
                gm.fit(X)
            except ValueError:
                continue
            if degenerate(gm, n):
                continue
            loglik = gm.score(X) * n
            if best is None or loglik > best[0]:
                best = (loglik, gm.bic(X))
    return best


def sklearn_reference(X, n_components, covariance_types=TYPES, **kwargs):
    """``{(k, covariance_type): (log_likelihood, bic) or None}`` over the grid."""
    return {
        (k, ct): sklearn_cell(X, k, ct, **kwargs) for k in n_components for ct in covariance_types
    }


def best_cell(reference):
    """The grid cell of lowest BIC in a reference: ``((k, covariance_type), (loglik, bic))``."""
    cells = [(key, v) for key, v in reference.items() if v is not None]
    return min(cells, key=lambda kv: kv[1][1])


def _parse_k(text):
    a, _, b = text.partition("-")
    return list(range(int(a), int(b or a) + 1))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--k", default="1-6", help="numbers of components, e.g. 1-6")
    parser.add_argument("--seeds", type=int, default=10, help="seeds per scikit-learn init")
    parser.add_argument("--compare", action="store_true", help="also run bayesgmm.select")
    args = parser.parse_args(argv)
    ks = _parse_k(args.k)
    for name in args.names:
        X = DATASETS[name]()
        t0 = time.perf_counter()
        ref = sklearn_reference(X, ks, seeds=range(args.seeds))
        took = time.perf_counter() - t0
        print(f"== {name} {X.shape}: scikit-learn, {len(INITS) * args.seeds} starts per cell, ")
        print(f"   {took:.1f} s")
        print(f"   {'K':>2}  {'type':<9}  {'loglik':>10}  {'BIC':>10}")
        ranked = sorted((kv for kv in ref.items() if kv[1]), key=lambda kv: kv[1][1])
        for (k, ct), (loglik, bic) in ranked:
            print(f"   {k:>2}  {ct:<9}  {loglik:>10.3f}  {bic:>10.3f}")
        if args.compare:
            from bayesgmm import select

            tables = {}
            for strategy in ("robust", "fast"):
                t0 = time.perf_counter()
                tables[strategy], _ = select(X, n_components=ks, strategy=strategy)
                took = time.perf_counter() - t0
                row = tables[strategy].best
                print(
                    f"   select strategy={strategy!r}: K={row['n_components']} "
                    f"{row['covariance_type']}, loglik {row['log_likelihood']:.3f}, "
                    f"BIC {row['bic']:.3f} ({took:.1f} s, first call compiles)"
                )
            print(tables["robust"])


if __name__ == "__main__":
    main()
