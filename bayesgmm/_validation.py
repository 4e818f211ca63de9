"""Input validation shared by every entry point.

Everything a user passes goes through here before it reaches traced JAX code, so errors name
the argument and what was expected instead of surfacing as NaN or a JAX trace.
"""

from __future__ import annotations

import numbers
import sys
import warnings

import numpy as np

from ._exceptions import DataScaleWarning

#: The covariance types (bayesgmm.covariance implements each) and EM's initialisations
#: (bayesgmm.em), named here at the bottom of the package so that validation and the command
#: line can list them without loading JAX.
COVARIANCE_TYPE_NAMES = ("full", "tied", "diag", "spherical")
INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data", "hc")

__all__ = [
    "as_float_array",
    "check_data",
    "check_positive_int",
    "check_nonnegative_float",
    "check_covariance_type",
    "result_dtype",
    "warn_if_reg_covar_dominates",
    "DataScaleWarning",
    "collapsed_runs",
    "check_default_prior_scale",
]


def as_float_array(x, name: str) -> np.ndarray:
    """``x`` as a NumPy array of finite real numbers, or a ``TypeError``/``ValueError`` naming
    ``name``."""
    try:
        arr = np.asarray(x)
    except Exception as exc:
        raise TypeError(f"{name} must be an array of numbers") from exc
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be an array of real numbers; got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinity")
    return arr


def result_dtype(dtype) -> np.dtype:
    """The floating dtype computations run in for data of ``dtype``.

    float64 stays float64 and float32 stays float32 (never downcast); float16 and bfloat16 are
    promoted to float32 (their range is too small for squared distances); integers and booleans
    become float64.
    """
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return np.dtype(np.float32)
    if dtype.kind == "f" and dtype.itemsize < 4:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def check_data(
    X,
    *,
    name: str = "X",
    min_samples: int = 1,
    n_features: int | None = None,
    dtype=None,
    fitted_by: str = "the model",
    allow_nan: bool = False,
) -> np.ndarray:
    """Validate a data matrix and return it as a C-contiguous NumPy float array.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Data. Lists, pandas DataFrames, integer and boolean arrays are accepted.
    name : str
        The argument's name, used in error messages.
    min_samples : int
        Fewest rows accepted.
    n_features : int, optional
        Required number of columns (for data given to an already fitted model).
    dtype : numpy dtype, optional
        Force this floating dtype instead of the one derived from the data.
    fitted_by : str
        What was fitted with ``n_features`` columns (an estimator's class name), for the
        message when the number differs.
    allow_nan : bool, default False
        Accept NaN as a missing value (infinity is still refused).

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float32 or float64

    Notes
    -----
    Where scikit-learn's estimator checks look for particular words, the messages contain them
    (``sparse``, ``Complex data not supported``, ``Reshape your data``, ``0 feature(s) (shape=...)
    while a minimum of 1 is required``, ``X has 1 features, but GaussianMixture is expecting 4
    features as input``), so code written against scikit-learn's messages keeps working.
    """
    # scipy.sparse is looked up, not imported: an object can only be a scipy sparse container
    # once the caller has imported it. np.asarray would make a 0-d object array of it.
    sparse = sys.modules.get("scipy.sparse")
    if sparse is not None and sparse.issparse(X):
        raise TypeError(
            f"{name} is a scipy sparse {type(X).__name__}; sparse input is not supported. "
            f"Pass a dense array, e.g. {name}.toarray()."
        )
    if hasattr(X, "__jax_array__") or type(X).__module__.startswith("jax"):
        X = np.asarray(X)
    if hasattr(X, "to_numpy") and not isinstance(X, np.ndarray):
        X = X.to_numpy()
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be array-like of numbers; got {type(X).__name__}") from exc
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        if arr.dtype.kind == "c":
            raise ValueError(
                f"{name} must be real-valued: Complex data not supported (got dtype "
                f"{arr.dtype}); pass {name}.real if the imaginary parts are zero"
            )
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            # numpy's reason ("float() argument must be a string or a real number, not
            # 'dict'") says which element is not a number.
            raise TypeError(
                f"{name} must contain only numbers; got dtype {arr.dtype} ({exc})"
            ) from exc
    if arr.ndim != 2:
        hint = (
            f" Reshape your data with {name}.reshape(-1, 1) if it has a single feature or "
            f"{name}.reshape(1, -1) if it is a single sample."
            if arr.ndim == 1
            else ""
        )
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_features); "
            f"got {arr.ndim}-D array of shape {arr.shape}.{hint}"
        )
    if arr.shape[1] == 0:
        raise ValueError(
            f"{name} has 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required."
        )
    if arr.shape[0] < min_samples:
        raise ValueError(f"{name} has {arr.shape[0]} sample(s); at least {min_samples} required")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(
            f"{name} has {arr.shape[1]} features, but {fitted_by} is expecting {n_features} "
            "features as input (the number of columns it was fitted with)"
        )
    out_dtype = result_dtype(arr.dtype) if dtype is None else np.dtype(dtype)
    arr = np.ascontiguousarray(arr, dtype=out_dtype)
    finite = np.isfinite(arr) | (np.isnan(arr) if allow_nan else False)
    if not np.all(finite):
        bad = np.flatnonzero(~np.all(finite, axis=1))
        shown = ", ".join(str(i) for i in bad[:10]) + (" ..." if bad.size > 10 else "")
        if allow_nan:
            raise ValueError(f"{name} contains infinity in {bad.size} row(s) (rows {shown})")
        raise ValueError(
            f"{name} contains NaN or infinity in {bad.size} row(s) (rows {shown}); "
            "remove or impute them before fitting, or, for NaN marking missing values, use "
            "GaussianMixture(missing='marginalize')"
        )
    # Squared distances must stay finite in the computation dtype: |x|**2 overflows float32
    # beyond ~1e18 and float64 beyond ~1e153 (EM would then fail with a misleading message).
    limit = np.sqrt(np.finfo(out_dtype).max) / 10
    if np.any(np.abs(arr) > limit):
        hint = "pass float64 data or rescale it" if out_dtype == np.float32 else "rescale it"
        raise ValueError(
            f"{name} has values up to {np.nanmax(np.abs(arr)):.3g}, too large for {out_dtype} "
            f"arithmetic (squared distances overflow above {limit:.3g}); {hint}"
        )
    return arr


def warn_if_reg_covar_dominates(X: np.ndarray, reg_covar: float, *, stacklevel: int = 3) -> bool:
    """Warn when ``reg_covar`` is not small against the spread of ``X``; return whether it did.

    ``reg_covar`` is absolute: it is added to every covariance diagonal whatever the units of
    ``X``. For data on a tiny scale (say ``X * 1e-8``, variances ~1e-16) the default 1e-6 then
    swamps every covariance: EM still returns a correct, finite fit *of the regularised model*,
    but its covariances are essentially ``reg_covar * I`` and say nothing about the data. We keep
    that fit (it is what was asked for) and warn once the regulariser reaches 1% of the largest
    feature variance, advising to standardise ``X`` or scale ``reg_covar`` with it.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    reg_covar : float
    """
    if reg_covar <= 0:
        return False
    spread = float(np.max(np.var(X, axis=0)))
    if reg_covar < 0.01 * spread:
        return False
    warnings.warn(
        f"reg_covar={reg_covar:g} is not small against the data: the largest feature variance "
        f"of X is {spread:.3g}, so the fitted covariances are dominated by reg_covar. "
        "Standardise X (e.g. (X - X.mean(0)) / X.std(0)) or pass a reg_covar scaled to the "
        "data (e.g. 1e-6 * X.var(0).max()).",
        DataScaleWarning,
        stacklevel=stacklevel,
    )
    return True


def check_positive_int(value, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as an int, or raise if it is not an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value}")
    return int(value)


def check_nonnegative_float(value, name: str, *, strictly_positive: bool = False) -> float:
    """Return ``value`` as a float, or raise if it is negative (or zero when strict)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (strictly_positive and value == 0):
        need = "> 0" if strictly_positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {need}; got {value}")
    return value


def check_sample_weight(sample_weight, n_samples: int, dtype, *, min_positive: int = 1):
    """``sample_weight`` as a float array (n_samples,) of ``dtype``, or None for None.

    Weights are scikit-learn's: a non-negative, finite multiplicity per row (an integer
    weight is that many copies of the row; zero is a row that is absent). At least
    ``min_positive`` rows must carry a positive weight (a mixture of K components needs K).
    Weights that are all 1 return None: that is the unweighted problem.

    Raises
    ------
    TypeError
        Not numeric.
    ValueError
        Wrong shape or length, negative, NaN or infinite entries, or too few positive ones.
    """
    if sample_weight is None:
        return None
    try:
        w = np.asarray(sample_weight)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"sample_weight must be a 1-D array of numbers; got {exc}") from None
    if w.dtype == object or not (
        np.issubdtype(w.dtype, np.number) or np.issubdtype(w.dtype, np.bool_)
    ):
        raise TypeError(f"sample_weight must be a 1-D array of numbers; got dtype {w.dtype}")
    if np.iscomplexobj(w):
        raise TypeError("sample_weight must be real; got complex values")
    if w.ndim == 0:
        w = np.full(n_samples, w.item())
    if w.ndim != 1 or w.shape[0] != n_samples:
        raise ValueError(
            f"sample_weight must have shape ({n_samples},), one weight per row of X; "
            f"got shape {w.shape}"
        )
    w = w.astype(dtype)
    if not np.all(np.isfinite(w)):
        raise ValueError(
            f"sample_weight must be finite; got {int(np.sum(~np.isfinite(w)))} NaN or "
            "infinite entries"
        )
    if np.any(w < 0):
        raise ValueError(
            f"sample_weight must be non-negative; got {int(np.sum(w < 0))} negative entries "
            f"(smallest {float(w.min())})"
        )
    if np.all(w == 1):
        # All ones is the unweighted problem: the same programs and random streams run, so
        # fit(X, sample_weight=np.ones(n)) is fit(X) bit for bit.
        return None
    n_positive = int(np.sum(w > 0))
    if n_positive < min_positive:
        what = "all zero" if n_positive == 0 else f"only {n_positive} positive"
        raise ValueError(
            f"sample_weight must give at least {min_positive} rows a positive weight; got {what}"
        )
    return w


def check_covariance_type(value) -> str:
    """Return the covariance type name, or raise listing the valid ones."""
    if not isinstance(value, str) or value not in COVARIANCE_TYPE_NAMES:
        raise ValueError(
            f"covariance_type must be one of {sorted(COVARIANCE_TYPE_NAMES)}; got {value!r}"
        )
    return value


def collapsed_runs(params, X: np.ndarray, reg_covar: float) -> np.ndarray:
    """Which EM runs ended with a component collapsed to the rounding level of the data.

    A component that takes only identical points has zero scatter; its covariance is then
    ``reg_covar`` plus rounding residue of order ``(10 eps |x|)**2`` (the ``10 eps`` that the
    M-step adds to ``nk``). For ``full``/``tied`` the Cholesky factorisation usually fails and
    EM flags the run; for ``diag``/``spherical`` the residue is positive, so without this check
    a run with ``reg_covar=0`` returned a spike of variance ~1e-28 as if it were a fit. A run is
    collapsed when some covariance eigenvalue is at or below that rounding level,
    ``(10 eps max|X|)**2``, *and* ``reg_covar`` is negligible against it (below 1%). A
    component held at ``reg_covar`` by a regulariser the user chose is the documented recovery
    (for instance a lone outlier at 1e12), not a failure.

    Parameters
    ----------
    params : GMMParams with one leading batch axis (n_runs,)
    X : ndarray of shape (n_samples, n_features), the data EM ran on
    reg_covar : float

    Returns
    -------
    ndarray of bool, shape (n_runs,)
    """
    floor = (10 * np.finfo(X.dtype).eps * float(np.max(np.abs(X)))) ** 2
    n_runs = params.weights.shape[0]
    if reg_covar >= 0.01 * floor:
        return np.zeros(n_runs, dtype=bool)
    cov = np.asarray(params.covariance_matrices(), dtype=np.float64)
    eig_min = np.linalg.eigvalsh(np.where(np.isfinite(cov), cov, 0.0))[..., 0]
    eig_min = eig_min.reshape(n_runs, -1).min(axis=1)
    return eig_min <= floor


def check_default_prior_scale(X: np.ndarray, scale: np.ndarray) -> None:
    """Raise a clear error when the data-dependent default prior cannot be built from ``X``.

    mclust's default prior takes its scale from the data covariance (or variances). A constant
    feature, exactly collinear features or identical rows make that scale singular, and the
    Prior constructor's own message (about ``scale``, which the user never passed) would not
    say what to change.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    scale : ndarray, the default scale computed from ``X`` (shape of the covariance type)
    """
    scale = np.asarray(scale, dtype=np.float64)
    if scale.ndim == 2:
        eig = np.linalg.eigvalsh(scale)
        singular = not np.all(np.isfinite(eig)) or eig[0] <= 1e-12 * max(eig[-1], 0.0)
    else:
        singular = not np.all(np.isfinite(scale)) or np.any(scale <= 0)
    if not singular:
        return
    var = np.var(X, axis=0)
    constant = np.flatnonzero(var <= 0)
    what = (
        f"feature(s) {constant.tolist()} of X are constant"
        if constant.size
        else "features of X are collinear (their covariance matrix is singular)"
    )
    raise ValueError(
        f"prior='default' builds its scale from the covariance of X, but {what}. Drop or "
        "combine those features, or pass a Prior with an explicit positive-definite scale "
        "(or prior=None for maximum likelihood)."
    )
