"""Choosing the number of components and the covariance type: BIC, AIC and ICL over a grid.

Formulas (``L`` the maximised log-likelihood, ``p`` the number of free parameters, ``n`` the
number of samples, ``r_nk`` the responsibilities of the fitted model):

=============  ==========================================  =============================
criterion      scikit-learn convention (default)           mclust convention
               lower is better                             higher is better
=============  ==========================================  =============================
BIC            ``-2 L + p log n``                          ``2 L - p log n``
AIC            ``-2 L + 2 p``                              ``2 L - 2 p``
ICL            ``BIC + 2 E``                               ``BIC - 2 E``
=============  ==========================================  =============================

with ``E = -sum_n sum_k r_nk log r_nk`` the entropy of the soft assignments (McLachlan and Peel
2000, sec. 6.10): ICL penalises overlapping components, so it prefers well-separated clusters
where BIC counts density. (mclust's ``icl`` uses the hard MAP assignment,
``-sum_n log max_k r_nk``, in place of ``E``; both are zero for perfectly separated clusters.)
``p`` counts ``K - 1`` weights, ``K d`` means and the covariances' free entries
(:func:`bayesgmm.n_parameters`), the same count as scikit-learn's ``bic``/``aic``.

Collapsed fits. With data that hold repeated values, EM can shrink a component onto a few
identical points; its variance is then held at the ``reg_covar`` floor and its likelihood
grows without bound, so BIC would pick that meaningless spike. Such fits (some eigenvalue of
some covariance at or below ``collapse_factor * reg_covar``, or a component carrying fewer than
``n_features + 1`` points) are flagged ``collapsed`` in the table and never chosen as best - the
same kind of fit mclust refuses as singular.
"""

from __future__ import annotations

import math
import numbers
import warnings

import jax
import numpy as np
from scipy.special import logsumexp

from . import density
from ._compile import LOW_OPT, SizedJit
from ._validation import check_data
from .covariance import COVARIANCE_TYPES
from .estimator import GaussianMixture, n_parameters

__all__ = ["select", "SelectionTable", "information_criteria", "is_collapsed"]

CRITERIA = ("bic", "aic", "icl")
CONVENTIONS = ("sklearn", "mclust")
COLUMNS = (
    "n_components",
    "covariance_type",
    "n_parameters",
    "log_likelihood",
    "bic",
    "aic",
    "icl",
    "entropy",
    "converged",
    "collapsed",
    "failed",
    "best",
)


def information_criteria(model: GaussianMixture, X, convention: str = "sklearn") -> dict:
    """BIC, AIC, ICL, log-likelihood, entropy and parameter count of a fitted model on ``X``.

    Parameters
    ----------
    model : fitted GaussianMixture
    X : array of shape (n_samples, n_features)
    convention : {'sklearn', 'mclust'}
        'sklearn': lower is better (``-2 L + penalty``); 'mclust': the negative, higher is
        better.

    Returns
    -------
    dict with keys ``log_likelihood``, ``n_parameters``, ``entropy``, ``bic``, ``aic``, ``icl``
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}; got {convention!r}")
    X = check_data(X, n_features=model.n_features_in_)
    n = X.shape[0]
    # One pass through the shared density code gives both the log-likelihood and the
    # responsibilities (one compiled function per model shape instead of two).
    params = model.params_
    clp = _component_log_prob.pick(n, params.n_components, params.n_features)
    weighted = np.asarray(clp(X, params)) + np.log(np.asarray(model.weights_))
    log_px = logsumexp(weighted, axis=1)
    log_resp = weighted - log_px[:, None]
    loglik = float(np.sum(log_px))
    # 0 * log 0 is 0: exp(-inf) * -inf would give NaN, so mask the exact zeros.
    resp = np.exp(log_resp)
    entropy = float(-np.sum(np.where(resp > 0, resp * log_resp, 0.0)))
    p = n_parameters(model.params_.n_components, X.shape[1], model.params_.covariance_type)
    bic = -2.0 * loglik + p * math.log(n)
    aic = -2.0 * loglik + 2.0 * p
    icl = bic + 2.0 * entropy
    sign = 1.0 if convention == "sklearn" else -1.0
    return {
        "log_likelihood": loglik,
        "n_parameters": int(p),
        "entropy": entropy,
        "bic": sign * bic,
        "aic": sign * aic,
        "icl": sign * icl,
    }


# The shared density function, compiled at optimisation level 0 for small data (one program
# per grid point of a selection, where compilation dominates; see bayesgmm._compile).
_component_log_prob = SizedJit(lambda X, params: density.component_log_prob(X, params))

# One compiled program per model shape (op by op, the conversion compiled several small ones),
# at XLA's optimisation level 0: it runs once per fit on (K, d, d) arrays.
_covariance_matrices = jax.jit(
    lambda params: params.covariance_matrices(), compiler_options=LOW_OPT
)


def is_collapsed(model: GaussianMixture, n_samples: int, *, collapse_factor=10.0, min_count=None):
    """Whether a fitted mixture has a collapsed component (see the module docstring).

    Parameters
    ----------
    model : fitted GaussianMixture
    n_samples : int
        Rows the model was fitted on (to turn weights into counts).
    collapse_factor : float, default 10
        A covariance eigenvalue at or below ``collapse_factor * reg_covar`` counts as pinned
        at the floor. (A relative floor of 1e-10 times the largest eigenvalue catches
        ``reg_covar=0``.)
    min_count : float, optional
        Fewest points a component may carry, default ``n_features + 1`` (fewer cannot span a
        full-rank covariance).

    Returns
    -------
    bool
    """
    params = model.params_
    eig = np.linalg.eigvalsh(np.asarray(_covariance_matrices(params), dtype=np.float64))
    floor = collapse_factor * float(model.reg_covar) + 1e-10 * float(eig.max())
    if min_count is None:
        min_count = params.n_features + 1
    counts = n_samples * np.asarray(params.weights)
    return bool(np.any(eig <= floor) or np.any(counts < min_count))


class SelectionTable:
    """Result table of :func:`select`: one row per (n_components, covariance_type).

    Rows are dicts with the keys in ``columns``; ``print(table)`` shows them aligned,
    ``table["bic"]`` is a column as an array, ``table[i]`` a row, ``table.to_pandas()`` a
    DataFrame (pandas is optional). ``table.models[(k, covariance_type)]`` holds each fitted
    :class:`~bayesgmm.GaussianMixture` (``None`` where the fit failed).

    Attributes
    ----------
    rows : list of dict
    columns : tuple of str
    criterion : str
    convention : str
        'sklearn' (lower is better) or 'mclust' (higher is better).
    best_index : int or None
        Row of the chosen model.
    models : dict
    """

    columns = COLUMNS

    def __init__(self, rows, criterion, convention, best_index, models):
        self.rows = rows
        self.criterion = criterion
        self.convention = convention
        self.best_index = best_index
        self.models = models

    def __len__(self):
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self.columns:
                raise KeyError(f"no column {key!r}; columns are {self.columns}")
            return np.array([row[key] for row in self.rows])
        return self.rows[key]

    @property
    def best(self) -> dict | None:
        """The chosen row."""
        return None if self.best_index is None else self.rows[self.best_index]

    @property
    def n_components(self) -> list[int]:
        """The numbers of components in the grid, in order."""
        return sorted({row["n_components"] for row in self.rows})

    @property
    def covariance_types(self) -> list[str]:
        """The covariance types in the grid, in order of first appearance."""
        return list(dict.fromkeys(row["covariance_type"] for row in self.rows))

    def pivot(self, value: str = "bic") -> np.ndarray:
        """One column as a grid, shape (len(n_components), len(covariance_types)) (NaN where
        missing)."""
        ks, types = self.n_components, self.covariance_types
        out = np.full((len(ks), len(types)), np.nan)
        for row in self.rows:
            out[ks.index(row["n_components"]), types.index(row["covariance_type"])] = row[value]
        return out

    def to_pandas(self):
        """The table as a ``pandas.DataFrame`` (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas is in the test extra
            raise ImportError("to_pandas needs pandas: pip install pandas") from exc
        return pd.DataFrame(self.rows, columns=list(self.columns))

    def __str__(self):
        better = "lower" if self.convention == "sklearn" else "higher"
        head = (
            f"criterion={self.criterion!r}, convention={self.convention!r} ({better} is better); "
            "* marks the chosen model, ! a collapsed fit, x a failed fit"
        )
        cells = [["K", "type", "params", "loglik", "BIC", "AIC", "ICL", "conv", ""]]
        for i, r in enumerate(self.rows):
            mark = "*" if i == self.best_index else ("x" if r["failed"] else "")
            mark += "!" if r["collapsed"] and not r["failed"] else ""
            cells.append(
                [
                    str(r["n_components"]),
                    r["covariance_type"],
                    str(r["n_parameters"]),
                    f"{r['log_likelihood']:.2f}",
                    f"{r['bic']:.2f}",
                    f"{r['aic']:.2f}",
                    f"{r['icl']:.2f}",
                    "yes" if r["converged"] else "no",
                    mark,
                ]
            )
        widths = [max(len(row[j]) for row in cells) for j in range(len(cells[0]))]
        lines = [
            "  ".join(
                c.rjust(w) if j not in (1, 8) else c.ljust(w)
                for j, (c, w) in enumerate(zip(row, widths))
            ).rstrip()
            for row in cells
        ]
        return head + "\n" + "\n".join(lines)

    def __repr__(self):
        best = self.best
        chosen = f"best K={best['n_components']} {best['covariance_type']!r}" if best else "no best"
        return f"<SelectionTable {len(self)} fits, {self.criterion}, {chosen}>"


def _check_grid(n_components, covariance_types):
    if isinstance(n_components, numbers.Integral):
        n_components = [n_components]
    ks = []
    for k in n_components:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"n_components must hold positive ints; got {k!r}")
        ks.append(int(k))
    if not ks:
        raise ValueError("n_components must hold at least one value")
    if isinstance(covariance_types, str):
        covariance_types = [covariance_types]
    types = list(covariance_types)
    for t in types:
        if t not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_types must be among {tuple(COVARIANCE_TYPES)}; got {t!r}")
    if not types:
        raise ValueError("covariance_types must hold at least one type")
    return ks, types


def select(
    X,
    n_components=range(1, 10),
    covariance_types=("full", "tied", "diag", "spherical"),
    criterion="bic",
    *,
    convention="sklearn",
    collapse_factor=10.0,
    random_state=0,
    **fit_kwargs,
):
    """Fit a mixture for every (number of components, covariance type) and pick the best.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    n_components : iterable of int, default range(1, 10)
    covariance_types : iterable of str, default all four
    criterion : {'bic', 'aic', 'icl'}, default 'bic'
        What chooses the best model.
    convention : {'sklearn', 'mclust'}, default 'sklearn'
        Sign of the criteria in the table: scikit-learn's (lower is better) or mclust's
        (higher is better, e.g. BIC = ``2 L - p log n``). The choice is the same either way.
    collapse_factor : float, default 10
        See :func:`is_collapsed`; collapsed fits are flagged and never chosen.
    random_state : int, default 0
        Seed of every fit (the same initialisation stream for each grid point).
    **fit_kwargs
        Passed to :class:`~bayesgmm.GaussianMixture` (``n_init``, ``max_iter``, ``tol``,
        ``reg_covar``, ``prior``, ``init_params``, ...).

    Returns
    -------
    table : SelectionTable
        Rows in grid order (components outer, types inner) with ``log_likelihood``, ``bic``,
        ``aic``, ``icl``, ``entropy``, ``n_parameters``, ``converged``, ``collapsed``,
        ``failed`` and ``best``.
    best : GaussianMixture
        The fitted model of the best non-collapsed row (ties go to the earlier row).

    Raises
    ------
    ValueError
        On a bad argument, or when every fit collapsed or failed.

    Examples
    --------
    >>> from bayesgmm import datasets, select
    >>> X, _ = datasets.blobs(300, centers=[[0, 0], [8, 8]], seed=0)
    >>> table, best = select(X, n_components=[1, 2, 3], covariance_types=["spherical"])
    >>> best.n_components
    2
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}; got {criterion!r}")
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}; got {convention!r}")
    if "n_components" in fit_kwargs or "covariance_type" in fit_kwargs:
        raise TypeError("pass n_components and covariance_types as select's own arguments")
    X = check_data(X, min_samples=2)
    ks, types = _check_grid(n_components, covariance_types)
    n = X.shape[0]
    rows, models = [], {}
    for k in ks:
        for ct in types:
            row = {"n_components": k, "covariance_type": ct}
            model = None
            if k <= n:
                model = GaussianMixture(
                    k, covariance_type=ct, random_state=random_state, **fit_kwargs
                )
                try:
                    with warnings.catch_warnings():
                        # Unconverged grid points are reported in the table instead.
                        warnings.filterwarnings("ignore", message="Best performing init")
                        model.fit(X)
                except ValueError as exc:
                    if "ill-defined empirical covariance" not in str(exc):
                        raise
                    model = None
            if model is None:
                nan = float("nan")
                row.update(
                    n_parameters=n_parameters(k, X.shape[1], ct),
                    log_likelihood=nan,
                    bic=nan,
                    aic=nan,
                    icl=nan,
                    entropy=nan,
                    converged=False,
                    collapsed=True,
                    failed=True,
                )
            else:
                row.update(information_criteria(model, X, convention))
                row.update(
                    converged=bool(model.converged_),
                    collapsed=is_collapsed(model, n, collapse_factor=collapse_factor),
                    failed=False,
                )
            row["best"] = False
            rows.append({c: row[c] for c in COLUMNS})
            models[(k, ct)] = model
    score = np.array([r[criterion] for r in rows], dtype=float)
    if convention == "mclust":
        score = -score
    usable = np.array([not r["collapsed"] and np.isfinite(r[criterion]) for r in rows])
    if not usable.any():
        raise ValueError(
            "every fit in the grid collapsed or failed; try fewer components, a larger "
            "reg_covar, or prior='default' (MAP-EM)"
        )
    best_index = int(np.argmin(np.where(usable, score, np.inf)))
    rows[best_index]["best"] = True
    table = SelectionTable(rows, criterion, convention, best_index, models)
    best = rows[best_index]
    return table, models[(best["n_components"], best["covariance_type"])]
