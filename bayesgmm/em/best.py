"""The best of ``n_init`` runs with its diagnostics: what ``GaussianMixture.fit`` and
``fit_posterior``'s MAP start both call."""

from __future__ import annotations

import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._compile import LOW_OPT
from .._sources import as_source, is_out_of_core
from .._validation import collapsed_runs
from ..params import GMMParams
from .driver import fit_em
from .missing import fit_em_missing
from .reference import EMResult
from .stream import fit_em_stream

__all__ = ["BestFit", "fit_best", "fit_summary", "FIT_FAILED_MESSAGE"]


# --------------------------------------------------------------------------------------------
# The best of n_init runs: what GaussianMixture.fit and fit_posterior's MAP start both use
# --------------------------------------------------------------------------------------------

FIT_FAILED_MESSAGE = (
    "Fitting the mixture model failed because some components have ill-defined empirical "
    "covariance (for instance caused by singleton or collapsed samples). Try to decrease the "
    "number of components, increase reg_covar, or scale the input data."
)


class BestFit(NamedTuple):
    """The run :func:`fit_best` chose among ``n_init`` EM runs, with its diagnostics.

    Attributes
    ----------
    params : GMMParams
        The chosen run's parameters, no batch axis.
    precisions, precisions_cholesky : ndarray
        Its precision matrices and their Cholesky factors in the compact shape of the
        covariance type (scikit-learn's ``precisions_`` and ``precisions_cholesky_``).
    best : int
        Index of the chosen run.
    n_iter : int
    converged : bool
    lower_bound : float
        Objective at the last iteration (mean log-likelihood, or log posterior per sample
        under a prior).
    lower_bounds : ndarray (n_iter,)
        Objective at every iteration of the chosen run.
    failed : ndarray of bool (n_init,)
        Runs discarded because a covariance broke or a component collapsed onto identical
        points.
    runs : EMResult
        Every run, with a leading ``n_init`` axis (for verbose output and diagnostics).
    """

    params: GMMParams
    precisions: np.ndarray
    precisions_cholesky: np.ndarray
    best: int
    n_iter: int
    converged: bool
    lower_bound: float
    lower_bounds: np.ndarray
    failed: np.ndarray
    runs: EMResult


@partial(jax.jit, compiler_options=LOW_OPT)
def _precision_arrays(params: GMMParams):
    """Precisions and their Cholesky factors in one compiled program per model shape
    (computed op by op they compiled several small programs each). It runs once per fit on
    (K, d, d) arrays, so it is compiled at XLA's optimisation level 0."""
    return params.precisions(), params.precisions_cholesky()


def _finite_and_positive(params: GMMParams, arrays) -> bool:
    """Whether a run's arrays are all finite and its covariances positive definite (float64
    eigenvalues), so that a degenerate run can be returned without NaN or a singular matrix."""
    if not all(np.isfinite(a).all() for a in arrays):
        return False
    cov = np.asarray(params.covariance_matrices(), dtype=np.float64)
    return bool(np.linalg.eigvalsh(cov).min() > 0)


def _pick_run(res: EMResult, best: int):
    """Run ``best``'s GMMParams and its five arrays as NumPy. The run is picked in NumPy:
    indexing JAX arrays would compile small programs for every model shape."""
    w, m, c = (np.asarray(a)[best] for a in res.params.tree_flatten()[0])
    p = GMMParams.tree_unflatten(res.params.covariance_type, tuple(map(jnp.asarray, (w, m, c))))
    prec, prec_chol = _precision_arrays(p)
    return p, (w, m, c, np.asarray(prec), np.asarray(prec_chol))


def fit_summary(params: GMMParams, lower_bound, n_iter: int, converged: bool) -> BestFit:
    """A :class:`BestFit` for parameters that did not come from :func:`fit_best` (one run,
    ``lower_bounds`` repeating ``lower_bound``), so every consumer reads one container."""
    prec, prec_chol = (np.asarray(a) for a in _precision_arrays(params))
    n_iter = int(n_iter)
    lb = float(lower_bound)
    runs = EMResult(
        jax.tree_util.tree_map(lambda a: a[None], params),
        np.asarray([lb]),
        np.full((1, max(n_iter, 1)), lb),
        np.asarray([n_iter]),
        np.asarray([bool(converged)]),
        np.asarray([False]),
    )
    return BestFit(
        params,
        prec,
        prec_chol,
        0,
        n_iter,
        bool(converged),
        lb,
        runs.lower_bounds[0, :n_iter],
        np.zeros(1, bool),
        runs,
    )


def fit_best(
    key,
    X,
    n_components: int,
    covariance_type: str = "full",
    *,
    stacklevel: int = 2,
    **em_kwargs,
) -> BestFit:
    """Run :func:`fit_em` and return the best of its ``n_init`` runs, as scikit-learn picks it.

    The best run is the one with the highest final objective among the runs that did not
    fail. A run fails when a covariance stopped being positive definite (EM flags it) or a
    component collapsed onto identical points (:func:`bayesgmm._validation.collapsed_runs`).
    As in scikit-learn, when every run failed, one that EM stopped at ``max_iter`` while a
    component was collapsing (collapsed, not broken, not converged) is still returned, with
    a ``RuntimeWarning``, provided all its parameters and precisions are finite; otherwise
    a ``ValueError`` is raised. Failed runs among good ones are discarded with a
    ``RuntimeWarning``.

    Parameters
    ----------
    key : jax.random key
    X : array of shape (n_samples, n_features)
        NaN marks a missing value: rows with NaN run :func:`~bayesgmm.em.fit_em_missing`.
        Data that is not one array in memory (a Dask array, a ``numpy.memmap``, an h5py or
        zarr dataset: :func:`~bayesgmm._sources.is_out_of_core`) runs
        :func:`~bayesgmm.em.stream.fit_em_stream`, chunk by chunk.
    n_components : int
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    stacklevel : int, default 2
        Of the warnings, counted from this function's caller (2 points at the caller).
    **em_kwargs
        :func:`fit_em`'s keyword arguments (``n_init``, ``init_params``, ``max_iter``, ``tol``,
        ``reg_covar``, ``prior``, starting values).

    Returns
    -------
    BestFit

    Raises
    ------
    ValueError
        Every run failed and none can be returned.

    Examples
    --------
    >>> import jax, numpy as np
    >>> from bayesgmm.em import fit_best
    >>> X = np.concatenate([np.zeros((50, 1)), np.ones((50, 1)) * 5])
    >>> X = X + np.random.default_rng(0).normal(size=X.shape)
    >>> fit = fit_best(jax.random.key(0), X, 2, "spherical", n_init=3)
    >>> fit.failed.shape, fit.converged
    ((3,), True)
    >>> np.round(np.sort(np.asarray(fit.params.means).ravel()))
    array([0., 5.])
    """
    if is_out_of_core(X):
        # Data read in chunks (a memmap, an h5py/zarr dataset, a Dask array): never whole.
        source = as_source(X)
        res, max_abs = fit_em_stream(key, source, n_components, covariance_type, **em_kwargs)
        X = np.full((1, 1), max_abs, source.dtype)  # what the collapse check reads of X
    elif np.isnan(X := np.asarray(X)).any():
        # Values missing at random (NaN; the estimator's missing="marginalize").
        res = fit_em_missing(key, X, n_components, covariance_type, **em_kwargs)
        X = np.where(np.isnan(X), 0, X)  # for the collapse check: the observed values' scale
    else:
        res = fit_em(key, jnp.asarray(X), n_components, covariance_type, **em_kwargs)
    n_init = int(np.asarray(res.n_iter).shape[0])
    max_iter = int(em_kwargs.get("max_iter", 100))
    broken = np.asarray(res.failed)
    collapsed = collapsed_runs(res.params, X, float(em_kwargs.get("reg_covar", 1e-6)))
    failed = broken | collapsed
    usable = collapsed & ~broken & ~np.asarray(res.converged) if failed.all() else ~failed
    lb = np.where(usable, np.asarray(res.lower_bound), -np.inf)
    best = int(np.argmax(lb)) if max_iter > 0 else n_init - 1
    params, (w, m, c, prec, prec_chol) = _pick_run(res, best)
    if failed.all() and not (usable[best] and _finite_and_positive(params, (w, m, c, prec))):
        msg = FIT_FAILED_MESSAGE
        if X.dtype == np.float32:
            msg += (
                " The numerical accuracy can also be improved by passing float64 data "
                "instead of float32."
            )
        raise ValueError(msg)
    if failed.all():
        warnings.warn(
            f"EM stopped at max_iter={max_iter} with a component collapsing onto identical "
            "points (its covariance is at the rounding level of X); the returned parameters "
            "are degenerate. Increase reg_covar.",
            RuntimeWarning,
            stacklevel=stacklevel,
        )
    elif failed.any():
        warnings.warn(
            f"{int(failed.sum())} of {n_init} initialisations failed (a covariance became "
            "singular) and were discarded; increase reg_covar if this persists",
            RuntimeWarning,
            stacklevel=stacklevel,
        )
    n_iter = int(res.n_iter[best])
    return BestFit(
        params,
        prec,
        prec_chol,
        best,
        n_iter,
        bool(res.converged[best]),
        float(res.lower_bound[best]),
        np.asarray(res.lower_bounds[best])[:n_iter],
        failed,
        res,
    )
