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

Finding the optimum. EM climbs to the nearest local optimum of the likelihood, and with
scikit-learn's stopping rule (``tol=1e-3`` on the mean log-likelihood) often stops well short of
it. ``select`` therefore defaults to ``strategy="robust"``: every grid point starts EM from the
estimator's own initialisation, from mclust's model-based hierarchical clustering
(:mod:`bayesgmm.hc`), from each one-component split of the fit with one component fewer, and
(for the constrained types) from the full fit's responsibilities, runs each to ``tol=1e-6`` and
keeps the best; a fit that still ends below a nested fit of its type is refitted from that one.
``strategy="fast"`` is the single fit per grid point of the estimator's settings. The table's
``start`` column says which start won, ``refit_from`` which nested model a fit was refitted from.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import NamedTuple

import jax
import numpy as np
from scipy.special import logsumexp

from . import density
from ._compile import LOW_OPT, SizedJit
from ._random import as_key
from ._sources import RowSource, as_source, is_out_of_core
from ._validation import check_data, check_sample_weight
from .covariance import COVARIANCE_TYPES, MOST_GENERAL, get_covariance_type
from .estimator import GaussianMixture, n_parameters
from .hc import hc

__all__ = ["select", "SelectionTable", "information_criteria", "is_collapsed"]

CRITERIA = ("bic", "aic", "icl")
CONVENTIONS = ("sklearn", "mclust")
STRATEGIES = ("robust", "fast")
#: EM tolerance of the robust strategy's fits unless ``tol`` is given (see :func:`select`).
ROBUST_TOL = 1e-6
#: The robust strategy resumes an unconverged fit up to this many times ``max_iter``.
ROBUST_ROUNDS = 10
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
    "start",
    "refit_from",
    "best",
)


def information_criteria(
    model: GaussianMixture, X, convention: str = "sklearn", sample_weight=None
) -> dict:
    """BIC, AIC, ICL, log-likelihood, entropy and parameter count of a fitted model on ``X``.

    Parameters
    ----------
    model : fitted GaussianMixture
    X : array of shape (n_samples, n_features)
    convention : {'sklearn', 'mclust'}
        'sklearn': lower is better (``-2 L + penalty``); 'mclust': the negative, higher is
        better.
    sample_weight : array of shape (n_samples,), optional
        Row multiplicities: the log-likelihood and the entropy are weighted sums and ``n``
        of BIC's ``p log n`` is ``sum(sample_weight)`` (the criteria of the data with rows
        repeated, for integer weights).

    Returns
    -------
    dict with keys ``log_likelihood``, ``n_parameters``, ``entropy``, ``bic``, ``aic``, ``icl``
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}; got {convention!r}")
    X = _checked(X, n_features=model.n_features_in_)
    w = check_sample_weight(sample_weight, X.shape[0], X.dtype)
    n = X.shape[0] if w is None else float(np.sum(w))
    loglik, entropy, _ = _scores(model, X, w)
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


def _checked(X, **kwargs):
    """``X`` validated: a :class:`~bayesgmm._sources.RowSource` for data read in chunks (a
    Dask array, a memmap, an h5py/zarr dataset), else the NumPy array of ``check_data``."""
    if not is_out_of_core(X):
        return check_data(X, **kwargs)
    source = as_source(X)
    n_features = kwargs.get("n_features")
    if n_features is not None and source.shape[1] != n_features:
        raise ValueError(
            f"X has {source.shape[1]} features, but the model is expecting {n_features} "
            "features as input"
        )
    if source.shape[0] < kwargs.get("min_samples", 1):
        raise ValueError(f"X has {source.shape[0]} sample(s); at least 2 required")
    return source


def _chunk_scores(chunk, w, params, log_weights):
    loglik, entropy, _ = _scores_array(params, log_weights, chunk, w)
    return np.asarray(loglik), np.asarray(entropy)


def _scores(model: GaussianMixture, X, sample_weight=None):
    """``(log-likelihood, entropy, responsibilities (n_samples, K))`` of a fitted model; the
    first two are sums over rows weighted by ``sample_weight`` when given. For data read in
    chunks the sums are accumulated chunk by chunk and the responsibilities are None."""
    log_weights = np.log(np.asarray(model.weights_))
    if isinstance(X, RowSource):
        params = jax.tree_util.tree_map(np.asarray, model.params_)
        loglik, entropy = X.map_reduce(_chunk_scores, params, log_weights, weights=sample_weight)
        return float(loglik), float(entropy), None
    return _scores_array(model.params_, log_weights, X, sample_weight)


def _scores_array(params, log_weights, X: np.ndarray, sample_weight=None):
    # One pass through the shared density code gives both the log-likelihood and the
    # responsibilities (one compiled function per model shape instead of two).
    clp = _component_log_prob.pick(X.shape[0], params.n_components, params.n_features)
    weighted = np.asarray(clp(X, params)) + log_weights
    log_px = logsumexp(weighted, axis=1)
    log_resp = weighted - log_px[:, None]
    # 0 * log 0 is 0: exp(-inf) * -inf would give NaN, so mask the exact zeros.
    resp = np.exp(log_resp)
    plogp = np.where(resp > 0, resp * log_resp, 0.0)
    if sample_weight is None:
        return float(np.sum(log_px)), float(-np.sum(plogp)), resp
    # A zero weight is an absent row, also where its log density is -inf.
    used = sample_weight > 0
    loglik = float(np.sum(sample_weight[used] * log_px[used]))
    return loglik, float(-np.sum(sample_weight @ plogp)), resp


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

    Rows are dicts with the keys in ``columns`` (``start``: the start the kept fit came from,
    e.g. ``'kmeans'``, ``'hc'``, ``'split 2 of K=2'``, ``'full'``; ``refit_from``: the number of
    components of the nested fit it was refitted from, 0 if none; see :func:`select`);
    ``print(table)`` shows them aligned,
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
            "* marks the chosen model, ! a collapsed fit, x a failed fit, r a fit refitted from "
            "a nested one"
        )
        cells = [["K", "type", "params", "loglik", "BIC", "AIC", "ICL", "conv", "start", ""]]
        for i, r in enumerate(self.rows):
            mark = "*" if i == self.best_index else ("x" if r["failed"] else "")
            mark += "!" if r["collapsed"] and not r["failed"] else ""
            mark += "r" if r["refit_from"] else ""
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
                    r["start"],
                    mark,
                ]
            )
        widths = [max(len(row[j]) for row in cells) for j in range(len(cells[0]))]
        lines = [
            "  ".join(
                c.rjust(w) if j not in (1, 8, 9) else c.ljust(w)
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


class _Cell(NamedTuple):
    """The fit kept for one (n_components, covariance_type): the model, its log-likelihood,
    responsibilities on the data and collapse flag, which start it came from and the nested
    model it was refitted from (0: none)."""

    model: GaussianMixture
    log_likelihood: float
    resp: np.ndarray
    collapsed: bool
    start: str
    refit_from: int = 0

    @property
    def rank(self):
        """Sort key of the fits of one cell: non-collapsed first, then the likelihood."""
        return (not self.collapsed, self.log_likelihood)


def select(
    X,
    n_components=range(1, 10),
    covariance_types=("full", "tied", "diag", "spherical"),
    criterion="bic",
    *,
    strategy="robust",
    convention="sklearn",
    collapse_factor=10.0,
    random_state=0,
    sample_weight=None,
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
    strategy : {'robust', 'fast'}, default 'robust'
        How hard each grid point looks for the best optimum of the likelihood.

        'fast': one :class:`~bayesgmm.GaussianMixture` fit per grid point, with the
        estimator's settings (``init_params``, ``n_init``, ``tol`` as given, scikit-learn's
        defaults otherwise). EM then often stops short of an optimum, or in a poor one, and a
        model can end below a nested one: Old Faithful's ``tied`` with 3 components stops at
        log-likelihood -1140.55, below its 2-component fit (-1140.19), on its way to
        -1126.32, and the grid picks ``full`` with 2 components instead of mclust's answer.

        'robust' (mclust's initialisation and more), for each covariance type with the number
        of components ``K`` rising, starts EM from

        * the estimator's own initialisation (``init_params``, ``random_state``), with
          ``n_init`` above 1 as that many starts of their own (independent keys split from
          ``random_state``);
        * the partition into ``K`` clusters of mclust's model-based hierarchical clustering
          (:func:`bayesgmm.hc.hc`, one tree for the whole grid);
        * the ``K - 1`` component fit of the same type with one component split in two by the
          hyperplane through its mean across its principal axis, once for each component
          (when ``K - 1`` is in the grid);
        * for 'tied', 'diag' and 'spherical', the responsibilities of the 'full' fit with ``K``
          components (when 'full' is in the grid);

        runs every start to ``tol=1e-6`` (unless ``tol`` is given; scikit-learn's 1e-3 stops
        EM nats short of slow optima), resuming it for up to 10 times ``max_iter`` iterations,
        and keeps the fit of highest likelihood that is not collapsed. Then a consistency
        check: a maximum-likelihood fit whose log-likelihood is below that of a fit of the same
        type with fewer components (by more than ``n_samples * tol``) is refitted from that
        nested model (splitting its components one at a time, the best split kept at each
        step; failing that, duplicating one, which reaches the nested likelihood exactly) and
        the table's ``refit_from`` names it. The table's ``start`` says which start won.

        Cost: ``K + 1 + n_init`` EM fits per grid point (``K + n_init`` for 'full',
        ``n_init`` at ``K = 1``), each run to the tighter tolerance, against one fit of
        ``n_init`` restarts to ``tol=1e-3`` for 'fast', and one hierarchical clustering of the
        data (a second or two at 2000 rows). Every fit of a grid point runs alone and reuses
        the programs its first fit compiles, so where compilation dominates, on small data,
        the robust grid costs little more. Old Faithful (272 rows) over ``range(1, 10)`` and
        the four types is 236 EM fits against 36; on 2 shared CPU cores, from a fresh Python
        process with JAX's persistent compilation cache filled: 30 s against 24 s, and 5.4 s
        against 0.3 s for a second call in the same process, when nothing is compiled.
    convention : {'sklearn', 'mclust'}, default 'sklearn'
        Sign of the criteria in the table: scikit-learn's (lower is better) or mclust's
        (higher is better, e.g. BIC = ``2 L - p log n``). The choice is the same either way.
    collapse_factor : float, default 10
        See :func:`is_collapsed`; collapsed fits are flagged and never chosen.
    random_state : int, default 0
        Seed of every fit (the same initialisation stream for each grid point).
    sample_weight : array of shape (n_samples,), optional
        Row multiplicities for every fit (:meth:`GaussianMixture.fit`) and every criterion
        (:func:`information_criteria`); counts of the collapse rule and the robust search's
        splits are weighted. The hierarchical-clustering start of ``'robust'`` clusters the
        distinct rows unweighted (it is one start among several; EM from it is weighted).
    **fit_kwargs
        Passed to :class:`~bayesgmm.GaussianMixture` (``n_init``, ``max_iter``, ``tol``,
        ``reg_covar``, ``prior``, ``init_params``, ...).

    Returns
    -------
    table : SelectionTable
        Rows in grid order (components outer, types inner) with ``log_likelihood``, ``bic``,
        ``aic``, ``icl``, ``entropy``, ``n_parameters``, ``converged``, ``collapsed``,
        ``failed``, ``start``, ``refit_from`` and ``best``.
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
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}; got {strategy!r}")
    if "n_components" in fit_kwargs or "covariance_type" in fit_kwargs:
        raise TypeError("pass n_components and covariance_types as select's own arguments")
    X = _checked(X, min_samples=2)
    if isinstance(X, RowSource) and strategy == "robust":
        raise ValueError(
            "strategy='robust' needs X in memory (its hierarchical-clustering and split "
            "starts hold every row's responsibilities); for data read in chunks (a Dask "
            "array, a memmap, an h5py/zarr dataset) use strategy='fast'"
        )
    w = check_sample_weight(sample_weight, X.shape[0], X.dtype)
    if w is not None and fit_kwargs.get("init_params") == "hc":
        raise ValueError(
            "init_params='hc' does not take sample_weight (mclust's hierarchical clustering "
            "merges unweighted points); use init_params='kmeans'"
        )
    ks, types = _check_grid(n_components, covariance_types)
    if w is not None:
        # Every grid point needs as many rows of positive weight as components.
        ks = [k for k in ks if k <= int(np.sum(w > 0))] or ks
    if strategy == "fast":
        cells = _fast_cells(X, ks, types, collapse_factor, random_state, fit_kwargs, w)
    else:
        cells = _RobustSearch(X, collapse_factor, random_state, fit_kwargs, w).run(ks, types)
    rows, models = [], {}
    for k in ks:
        for ct in types:
            cell = cells.get((k, ct))
            row = {"n_components": k, "covariance_type": ct}
            if cell is None:
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
                    start="",
                    refit_from=0,
                )
            else:
                row.update(information_criteria(cell.model, X, convention, w))
                row.update(
                    converged=bool(cell.model.converged_),
                    collapsed=cell.collapsed,
                    failed=False,
                    start=cell.start,
                    refit_from=cell.refit_from,
                )
            row["best"] = False
            rows.append({c: row[c] for c in COLUMNS})
            models[(k, ct)] = None if cell is None else cell.model
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


def _fit_failed(exc: ValueError) -> bool:
    return "ill-defined empirical covariance" in str(exc)


def _cell(model, X, collapse_factor, start, sample_weight=None) -> _Cell:
    loglik, _, resp = _scores(model, X, sample_weight)
    n = X.shape[0] if sample_weight is None else float(np.sum(sample_weight))
    collapsed = is_collapsed(model, n, collapse_factor=collapse_factor)
    return _Cell(model, loglik if np.isfinite(loglik) else -np.inf, resp, collapsed, start)


def _fast_cells(X, ks, types, collapse_factor, random_state, fit_kwargs, sample_weight=None):
    """One fit per grid point with the estimator's settings (``strategy='fast'``)."""
    start = fit_kwargs.get("init_params", "kmeans")
    cells = {}
    for k in ks:
        for ct in types:
            if k > X.shape[0]:
                continue
            model = GaussianMixture(k, covariance_type=ct, random_state=random_state, **fit_kwargs)
            try:
                with warnings.catch_warnings():
                    # Unconverged grid points are reported in the table instead.
                    warnings.filterwarnings("ignore", message="Best performing init")
                    model.fit(X, sample_weight=sample_weight)
            except ValueError as exc:
                if not _fit_failed(exc):
                    raise
                continue
            cells[(k, ct)] = _cell(model, X, collapse_factor, start, sample_weight)
    return cells


class _RobustSearch:
    """``strategy='robust'`` of :func:`select` (see its docstring): every start of every grid
    point, the best kept, then the consistency check against nested fits."""

    def __init__(self, X, collapse_factor, random_state, fit_kwargs, sample_weight=None):
        self.X = X
        self.w = sample_weight
        self.collapse_factor = collapse_factor
        self.random_state = random_state
        self.settings = {"tol": ROBUST_TOL, **fit_kwargs}
        self.max_iter = int(self.settings.get("max_iter", 100))
        name = self.settings.get("init_params", "kmeans")
        # The estimator's restarts become starts of their own (n_init=1 each, so that every
        # fit of a grid point runs the one compiled EM program, and each restart is judged by
        # the collapse rule); n_init=1 keeps random_state itself, the start 'fast' makes.
        n_init = self.settings.pop("n_init", 1)
        if isinstance(n_init, numbers.Integral) and not isinstance(n_init, bool) and n_init > 1:
            keys = jax.random.split(as_key(random_state), int(n_init))
            self.init_starts = [(f"{name} {i + 1}/{n_init}", key) for i, key in enumerate(keys)]
        else:
            self.settings["n_init"] = n_init  # 1, or a bad value the estimator reports
            self.init_starts = [(name, random_state)]
        # A fit below a nested one by less than the convergence tolerance allows is no
        # inconsistency (the objective is the mean log-likelihood, hence the n_samples).
        total = X.shape[0] if sample_weight is None else float(np.sum(sample_weight))
        self.margin = total * float(self.settings["tol"])
        # Under a prior EM maximises the posterior, whose likelihood may fall with K.
        self.check_nested = self.settings.get("prior") is None
        self._tree = None

    def run(self, ks, types):
        cells = {}
        # 'full' first: the constrained types start from its responsibilities at the same K.
        ordered = sorted(types, key=lambda t: t != MOST_GENERAL)
        for k in sorted(set(ks)):
            if k > self.X.shape[0]:
                continue
            for ct in ordered:
                starts = self._starts(k, ct, cells)
                cell = self._best(k, ct, starts)
                if self.check_nested:
                    cell = self._consistent(k, ct, cell, cells)
                if cell is not None:
                    cells[(k, ct)] = cell
        return cells

    # --- starts ---------------------------------------------------------------------------
    def _tree_labels(self, k):
        if self._tree is None:
            self._tree = hc(self.X)
        if k > len(self._tree.rows):
            return None
        return self._tree.labels(k)

    def _starts(self, k, ct, cells):
        """``[(name, resp or random_state)]``: responsibilities to start from, or the random
        state of the estimator's own initialisation."""
        starts = list(self.init_starts)
        if k > 1:
            labels = self._tree_labels(k)
            if labels is not None:
                starts.append(("hc", np.eye(k, dtype=self.X.dtype)[labels]))
            previous = cells.get((k - 1, ct))
            if previous is not None:
                for c in range(k - 1):
                    resp = _split_resp(self.X, previous.resp, c, self.w)
                    if resp is not None:
                        starts.append((f"split {c + 1} of K={k - 1}", resp))
        full = cells.get((k, MOST_GENERAL))
        if k > 1 and ct != MOST_GENERAL and full is not None and not full.collapsed:
            starts.append((MOST_GENERAL, full.resp))
        return starts

    # --- fitting --------------------------------------------------------------------------
    def _fit(self, k, ct, resp=None, init=None, random_state=None):
        """One EM fit from a start (responsibilities, given parameters, or the estimator's
        initialisation from ``random_state``), resumed until converged or ``ROBUST_ROUNDS``
        times ``max_iter`` iterations; None when it failed."""
        kwargs = {**self.settings, **(init or {}), "warm_start": False}
        seed = self.random_state if random_state is None else random_state
        model = GaussianMixture(k, covariance_type=ct, random_state=seed, **kwargs)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Best performing init")
                model._fit(self.X, resp_init=resp, sample_weight=self.w)
                n_iter, bounds = model.n_iter_, [model.lower_bounds_]
                # A warm start continues from the fitted parameters (one run, the same
                # compiled EM program), measuring the first change from the last objective.
                model.warm_start = True
                for _ in range(ROBUST_ROUNDS - 1):
                    if model.converged_ or self.max_iter == 0:
                        break
                    model._fit(self.X, sample_weight=self.w)
                    n_iter += model.n_iter_
                    bounds.append(model.lower_bounds_)
                model.warm_start = False
        except ValueError as exc:
            if not _fit_failed(exc):
                raise
            return None
        model.n_iter_ = n_iter
        model.lower_bounds_ = np.concatenate(bounds)
        return model

    def _best(self, k, ct, starts):
        best = None
        for name, start in starts:
            if isinstance(start, np.ndarray):
                model = self._fit(k, ct, resp=start)
            else:
                model = self._fit(k, ct, random_state=start)
            if model is None:
                continue
            cell = _cell(model, self.X, self.collapse_factor, name, self.w)
            if best is None or cell.rank > best.rank:
                best = cell
        return best

    # --- the consistency check ------------------------------------------------------------
    def _consistent(self, k, ct, cell, cells):
        nested = [
            c
            for (j, t), c in cells.items()
            if t == ct and j < k and not c.collapsed and np.isfinite(c.log_likelihood)
        ]
        if cell is None or cell.collapsed or not nested:
            return cell
        base = max(nested, key=lambda c: c.log_likelihood)
        if cell.log_likelihood >= base.log_likelihood - self.margin:
            return cell
        refit = self._refit(k, ct, base)
        if refit is None or refit.rank <= cell.rank:
            return cell
        return refit._replace(refit_from=base.model.n_components)

    def _refit(self, k, ct, base):
        """A ``k``-component fit from the nested ``base``: components split one at a time
        (each split of the current fit tried, the best kept); if that ends below ``base``,
        ``base`` with its heaviest component duplicated until it has ``k`` (a fixed point of
        EM at exactly ``base``'s likelihood)."""
        current = base
        while current is not None and current.model.n_components < k:
            j = current.model.n_components
            tried = []
            for c in range(j):
                resp = _split_resp(self.X, current.resp, c, self.w)
                if resp is None:
                    continue
                model = self._fit(j + 1, ct, resp)
                if model is not None:
                    start = f"refit: split {c + 1} of K={j}"
                    tried.append(_cell(model, self.X, self.collapse_factor, start, self.w))
            usable = [c for c in tried if not c.collapsed]
            current = max(usable, key=lambda c: c.log_likelihood) if usable else None
        if current is not None and current.log_likelihood >= base.log_likelihood - self.margin:
            return current
        weights, means = base.model.weights_, base.model.means_
        precisions = base.model.precisions_
        ctype = get_covariance_type(ct)
        while len(weights) < k:
            weights, means, precisions = _duplicate(ctype, weights, means, precisions)
        init = {"weights_init": weights, "means_init": means, "precisions_init": precisions}
        model = self._fit(k, ct, init=init)
        if model is None:
            return None
        start = f"refit: copy of K={base.model.n_components}"
        return _cell(model, self.X, self.collapse_factor, start, self.w)


def _split_resp(X, resp, c, sample_weight=None):
    """Responsibilities with component ``c`` cut in two by the hyperplane through its
    (responsibility-weighted, times ``sample_weight``) mean across its principal axis; None
    when the component carries less than two points."""
    r = resp[:, c]
    rw = r if sample_weight is None else r * sample_weight
    total = float(np.sum(rw))
    if total < 2.0:
        return None
    centre = rw @ X / total
    dev = X - centre
    scatter = (dev * rw[:, None]).T @ dev
    axis = np.linalg.eigh(scatter)[1][:, -1]
    side = (dev @ axis) > 0
    if not side.any() or side.all():
        return None
    out = np.column_stack([resp, r * ~side]).astype(X.dtype)
    out[:, c] = r * side
    return out


def _duplicate(ctype, weights, means, precisions):
    """The mixture with its heaviest component in two equal halves (same mean and covariance):
    the same density, one more component."""
    c = int(np.argmax(weights))
    weights = np.append(weights, weights[c] / 2.0)
    weights[c] /= 2.0
    means = np.concatenate([means, means[c : c + 1]])
    if "component" in ctype.dims:  # tied's one matrix is shared by the new component
        axis = ctype.dims.index("component")
        precisions = np.concatenate([precisions, np.take(precisions, [c], axis=axis)], axis)
    return weights, means, precisions
