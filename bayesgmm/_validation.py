"""Input validation shared by every entry point.

Everything a user passes goes through here before it reaches traced JAX code, so errors name
the argument and what was expected instead of surfacing as NaN or a JAX trace.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "check_data",
    "check_positive_int",
    "check_nonnegative_float",
    "check_covariance_type",
    "result_dtype",
]


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

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    """
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
            raise TypeError(f"{name} must be real-valued; got complex dtype {arr.dtype}")
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must contain only numbers; got dtype {arr.dtype}") from exc
    if arr.ndim != 2:
        hint = " Reshape 1-D data with X.reshape(-1, 1)." if arr.ndim == 1 else ""
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_features); "
            f"got {arr.ndim}-D array of shape {arr.shape}.{hint}"
        )
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has 0 features; at least one column is required")
    if arr.shape[0] < min_samples:
        raise ValueError(
            f"{name} has {arr.shape[0]} sample(s); at least {min_samples} are required"
        )
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(
            f"{name} has {arr.shape[1]} features, but the model was fitted with "
            f"{n_features} features"
        )
    out_dtype = result_dtype(arr.dtype) if dtype is None else np.dtype(dtype)
    arr = np.ascontiguousarray(arr, dtype=out_dtype)
    if not np.all(np.isfinite(arr)):
        bad = np.flatnonzero(~np.all(np.isfinite(arr), axis=1))
        shown = ", ".join(str(i) for i in bad[:10]) + (" ..." if bad.size > 10 else "")
        raise ValueError(
            f"{name} contains NaN or infinity in {bad.size} row(s) (rows {shown}); "
            "remove or impute them before fitting"
        )
    if out_dtype == np.float32 and np.any(np.abs(arr) > np.sqrt(np.finfo(np.float32).max) / 10):
        raise ValueError(
            f"{name} has values too large for float32 arithmetic (squared distances overflow); "
            "pass float64 data or rescale it"
        )
    return arr


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


def check_covariance_type(value) -> str:
    """Return the covariance type name, or raise listing the valid ones."""
    from .covariance import COVARIANCE_TYPES

    if not isinstance(value, str) or value not in COVARIANCE_TYPES:
        raise ValueError(
            f"covariance_type must be one of {sorted(COVARIANCE_TYPES)}; got {value!r}"
        )
    return value
