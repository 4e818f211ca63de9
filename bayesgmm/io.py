"""Saving and loading fitted models, and reading data files for the command line.

File formats
------------
Both formats carry a format name and an integer format version; :func:`bayesgmm.load` (through
:func:`read_estimator_file` and :func:`read_posterior_file`) refuses files of another format, of a
newer version than this bayesgmm reads, and truncated or damaged files, with a
:class:`FormatError` that says which it was. This module knows the formats, not the classes:
``GaussianMixture`` and ``Posterior`` are built from what it reads by their own modules.

**Fitted estimators** (:class:`~bayesgmm.GaussianMixture`, maximum likelihood or MAP-EM) are
saved as a zip archive (suggested suffix ``.bgmm``) with two members:

``model.json``
    ``{"format": "bayesgmm-model", "format_version": 1, "bayesgmm_version": ...,
    "class": "GaussianMixture", "params": {...}, "fitted": {...}, "arrays": [...]}``.
    ``params`` holds the constructor arguments that are plain values (``n_components``,
    ``covariance_type``, ``tol``, ``reg_covar``, ``max_iter``, ``n_init``, ``init_params``,
    ``random_state`` (an int or ``null``; other random states are not stored), ``warm_start``,
    ``verbose``, ``verbose_interval``, ``missing``, ``devices`` (an int or ``null``: devices
    belong to one process, so a sequence of them is stored as ``null``)) and ``prior``:
    ``null``, ``"default"`` or ``"arrays"``
    (a :class:`~bayesgmm.Prior` object, stored as the ``prior_*`` arrays). ``fitted`` holds
    ``n_iter_``, ``converged_``, ``n_features_in_``, ``dtype``, ``has_prior`` and optionally
    ``feature_names_in_``.
``arrays.npz``
    NumPy arrays (no pickles), in the model's dtype: ``weights``, ``means``, ``covariances``
    (compact shape of the covariance type), ``precisions``, ``precisions_cholesky``,
    ``lower_bound`` (0-d), ``lower_bounds``; with a prior ``prior_weight_concentration``,
    ``prior_mean``, ``prior_mean_precision``, ``prior_dof``, ``prior_scale``; and any of
    ``weights_init``, ``means_init``, ``precisions_init`` that were given.

**Posteriors** (:class:`~bayesgmm.Posterior`) are saved as ArviZ netCDF (suggested suffix
``.nc``): exactly ``Posterior.to_inference_data()``, with the attributes
``bayesgmm_format = "bayesgmm-posterior"``, ``bayesgmm_format_version = 1`` and
``bayesgmm_version`` added to the ``posterior`` group. Any netCDF reader (``arviz.from_netcdf``,
``xarray``) opens it.

Writes are atomic: the file is written to a temporary file in the destination directory,
flushed to disk (``fsync``) and then moved into place, so a crash mid-write leaves any old file
intact. An existing file is never replaced unless ``overwrite=True``.

Examples
--------
>>> import numpy as np, tempfile, os
>>> from bayesgmm import GaussianMixture, load
>>> X = np.random.default_rng(0).normal(size=(100, 2))
>>> gm = GaussianMixture(2, random_state=0).fit(X)
>>> path = os.path.join(tempfile.mkdtemp(), "model.bgmm")
>>> saved = gm.save(path)  # returns the path written
>>> bool(np.array_equal(load(path).predict(X), gm.predict(X)))
True
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
import os
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ._exceptions import FormatError

__all__ = [
    "FormatError",
    "save",
    "save_estimator",
    "read_estimator_file",
    "save_posterior",
    "read_posterior_file",
    "file_kind",
    "read_data",
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "POSTERIOR_FORMAT",
    "POSTERIOR_FORMAT_VERSION",
]

MODEL_FORMAT = "bayesgmm-model"
MODEL_FORMAT_VERSION = 1
POSTERIOR_FORMAT = "bayesgmm-posterior"
POSTERIOR_FORMAT_VERSION = 1

_ZIP_MAGIC = b"PK\x03\x04"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_NETCDF3_MAGIC = b"CDF"
_PRIOR_FIELDS = ("weight_concentration", "mean", "mean_precision", "dof", "scale")
_SCALAR_PARAMS = (
    "missing",
    "n_components",
    "covariance_type",
    "tol",
    "reg_covar",
    "max_iter",
    "n_init",
    "init_params",
    "warm_start",
    "verbose",
    "verbose_interval",
)
_INIT_ARRAYS = ("weights_init", "means_init", "precisions_init")


# --- atomic writes ---------------------------------------------------------------------------
def _check_destination(path, overwrite: bool) -> Path:
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a file name to save to")
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} already exists; pass overwrite=True (--force on the command line) to "
            "replace it"
        )
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"cannot save to {path}: directory {parent} does not exist")
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _commit(tmp: str, path: Path, overwrite: bool) -> None:
    """Move the finished temporary file into place (no-clobber unless ``overwrite``)."""
    if overwrite:
        os.replace(tmp, path)
    else:
        # A hard link fails if the name appeared meanwhile, so a file created by someone else
        # between our check and now is still never replaced.
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise FileExistsError(
                f"{path} already exists; pass overwrite=True (--force on the command line) to "
                "replace it"
            ) from None
        except OSError:  # file systems without hard links
            if path.exists():
                raise FileExistsError(f"{path} already exists") from None
            os.replace(tmp, path)
        else:
            os.unlink(tmp)
    _fsync_dir(path.parent)


def atomic_write(path, write, *, overwrite: bool = False, binary: bool = True) -> Path:
    """Write a file atomically.

    Parameters
    ----------
    path : path-like
        Destination.
    write : callable
        ``write(fileobj)`` writes the content to an open file object.
    overwrite : bool, default False
        Replace an existing file; otherwise raise ``FileExistsError``.
    binary : bool, default True
        Open the temporary file in binary or text (UTF-8, ``newline=""``) mode.
    """
    mode = "wb" if binary else "w"
    kwargs = {} if binary else {"encoding": "utf-8", "newline": ""}

    def write_to_path(tmp):
        with open(tmp, mode, **kwargs) as f:
            write(f)

    return _atomic_write_path(path, write_to_path, overwrite=overwrite)


def _atomic_write_path(path, write_to_path, *, overwrite: bool) -> Path:
    """Like :func:`atomic_write` for writers that take a file name (netCDF)."""
    path = _check_destination(path, overwrite)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        write_to_path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _commit(tmp, path, overwrite)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


# --- estimators --------------------------------------------------------------------------------
def _version() -> str:
    from ._version import version

    return version


def save_estimator(estimator, path, *, overwrite: bool = False) -> Path:
    """Save a fitted :class:`~bayesgmm.GaussianMixture` (format in the module docstring)."""
    from .prior import Prior

    if not hasattr(estimator, "params_"):
        raise ValueError("this GaussianMixture is not fitted yet; call fit before saving it")
    params = {name: getattr(estimator, name) for name in _SCALAR_PARAMS}
    for name in ("tol", "reg_covar"):
        params[name] = float(params[name])
    for name in ("n_components", "max_iter", "n_init", "verbose", "verbose_interval"):
        params[name] = int(params[name])
    params["warm_start"] = bool(params["warm_start"])
    rs = estimator.random_state
    params["random_state"] = int(rs) if isinstance(rs, int | np.integer) else None
    dv = getattr(estimator, "devices", None)
    params["devices"] = (
        int(dv) if isinstance(dv, int | np.integer) and not isinstance(dv, bool) else None
    )
    prior = estimator.prior
    if prior is None or (isinstance(prior, str) and prior == "default"):
        params["prior"] = prior
    elif isinstance(prior, Prior):
        params["prior"] = "arrays"
    else:
        raise TypeError(f"cannot save a GaussianMixture whose prior is {type(prior).__name__}")

    p = estimator.params_
    arrays = {
        "weights": np.asarray(estimator.weights_),
        "means": np.asarray(estimator.means_),
        "covariances": np.asarray(estimator.covariances_),
        "precisions": np.asarray(estimator.precisions_),
        "precisions_cholesky": np.asarray(estimator.precisions_cholesky_),
        "lower_bound": np.asarray(estimator.lower_bound_, dtype=np.float64),
        "lower_bounds": np.asarray(estimator.lower_bounds_),
    }
    prior_ = getattr(estimator, "prior_", None)
    if prior_ is not None:
        arrays.update({f"prior_{k}": v for k, v in prior_.to_numpy().items()})
    for name in _INIT_ARRAYS:
        value = getattr(estimator, name)
        if value is not None:
            arrays[name] = np.asarray(value)
    fitted = {
        "n_iter_": int(estimator.n_iter_),
        "converged_": bool(estimator.converged_),
        "n_features_in_": int(estimator.n_features_in_),
        "dtype": str(np.dtype(p.dtype)),
        "has_prior": prior_ is not None,
    }
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        fitted["feature_names_in_"] = [str(n) for n in names]
    meta = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "bayesgmm_version": _version(),
        "class": "GaussianMixture",
        "params": params,
        "fitted": fitted,
        "arrays": sorted(arrays),
    }
    buf = _io.BytesIO()
    np.savez(buf, **arrays)

    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("model.json", json.dumps(meta, indent=2))
            zf.writestr("arrays.npz", buf.getvalue())

    return atomic_write(path, write, overwrite=overwrite)


def _check_format(meta, path, expected: str, supported: int, key_format, key_version):
    fmt = meta.get(key_format)
    if fmt != expected:
        raise FormatError(f"{path} is not a {expected} file (its format is {fmt!r})")
    version = meta.get(key_version)
    try:
        version = int(version)
    except (TypeError, ValueError):
        raise FormatError(f"{path} has no valid format version ({version!r})") from None
    if version > supported:
        raise FormatError(
            f"{path} uses {expected} format version {version}, newer than version {supported} "
            f"that this bayesgmm ({_version()}) reads; upgrade bayesgmm to load it"
        )
    if version < 1:
        raise FormatError(f"{path} has an invalid format version {version}")


def read_estimator_file(path):
    """Read and check a file written by :func:`save_estimator`.

    Returns
    -------
    params : dict
        The estimator's constructor arguments (its ``prior`` a :class:`~bayesgmm.Prior`, a
        string or None; its initial arrays or None).
    fitted : dict
        The fitted state: ``params_`` (GMMParams), ``prior_``, the arrays ``weights_``,
        ``means_``, ``covariances_``, ``precisions_``, ``precisions_cholesky_``,
        ``lower_bounds_``, and ``n_iter_``, ``converged_``, ``lower_bound_``,
        ``n_features_in_`` and, if saved, ``feature_names_in_``.

    :func:`bayesgmm.estimator.load_estimator` builds the ``GaussianMixture`` from them (the
    format module knows no estimator class).
    """
    from .params import GMMParams
    from .prior import Prior

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            members = set(zf.namelist())
            if "model.json" not in members or "arrays.npz" not in members:
                raise FormatError(
                    f"{path} is a zip archive but not a bayesgmm model (no model.json/arrays.npz)"
                )
            meta = json.loads(zf.read("model.json").decode("utf-8"))
            raw = zf.read("arrays.npz")
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile, zlib.error) as exc:
        raise FormatError(
            f"{path} is damaged or truncated and cannot be read as a bayesgmm model ({exc})"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise FormatError(f"{path} has an unreadable model.json; the file is damaged") from None
    if not isinstance(meta, dict):
        raise FormatError(f"{path} has an unreadable model.json; the file is damaged")
    _check_format(meta, path, MODEL_FORMAT, MODEL_FORMAT_VERSION, "format", "format_version")
    if meta.get("class") != "GaussianMixture":
        raise FormatError(f"{path} holds a {meta.get('class')!r}, not a GaussianMixture")
    try:
        with np.load(_io.BytesIO(raw), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        params = dict(meta["params"])
        saved = meta["fitted"]
        missing = [k for k in meta["arrays"] if k not in arrays]
    except (KeyError, ValueError, OSError, zipfile.BadZipFile, TypeError) as exc:
        raise FormatError(f"{path} is damaged: {exc}") from None
    if missing:
        raise FormatError(f"{path} is damaged: arrays {missing} are missing")

    prior_ = None
    if saved.get("has_prior"):
        prior_ = Prior(
            *(arrays[f"prior_{k}"] for k in _PRIOR_FIELDS), params["covariance_type"]
        ).astype(np.dtype(saved["dtype"]))
    if params["prior"] == "arrays":
        params["prior"] = prior_
    for name in _INIT_ARRAYS:
        params[name] = arrays.get(name)
    fitted = {
        "params_": GMMParams(
            arrays["weights"], arrays["means"], arrays["covariances"], params["covariance_type"]
        ),
        "prior_": prior_,
        "weights_": arrays["weights"],
        "means_": arrays["means"],
        "covariances_": arrays["covariances"],
        "precisions_": arrays["precisions"],
        "precisions_cholesky_": arrays["precisions_cholesky"],
        "n_iter_": int(saved["n_iter_"]),
        "converged_": bool(saved["converged_"]),
        "lower_bound_": float(arrays["lower_bound"]),
        "lower_bounds_": arrays["lower_bounds"],
        "n_features_in_": int(saved["n_features_in_"]),
    }
    if "feature_names_in_" in saved:
        fitted["feature_names_in_"] = np.asarray(saved["feature_names_in_"], dtype=object)
    return params, fitted


# --- posteriors ----------------------------------------------------------------------------------
def _quiet_arviz():
    import warnings

    with warnings.catch_warnings():
        # ArviZ announces its coming refactor with a FutureWarning on import.
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz


def save_posterior(posterior, path, *, overwrite: bool = False) -> Path:
    """Save a :class:`~bayesgmm.Posterior` as ArviZ netCDF (format in the module docstring)."""
    idata = posterior.to_inference_data()
    post = idata.posterior
    post.attrs["bayesgmm_format"] = POSTERIOR_FORMAT
    post.attrs["bayesgmm_format_version"] = POSTERIOR_FORMAT_VERSION
    post.attrs["bayesgmm_version"] = _version()
    return _atomic_write_path(path, lambda tmp: idata.to_netcdf(tmp), overwrite=overwrite)


def _read_idata(path: Path):
    az = _quiet_arviz()
    try:
        idata = az.from_netcdf(path)
        # Read everything now so the file is closed (and may be replaced) after loading.
        for group in idata.groups():
            getattr(idata, group).load()
    except Exception as exc:  # h5py/netCDF raise several types for damaged files
        raise FormatError(
            f"{path} is damaged or truncated and cannot be read as netCDF "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    return idata


def read_posterior_file(path):
    """Read and check a file written by :func:`save_posterior`; returns its ArviZ
    ``InferenceData``, loaded into memory (the file is closed). :func:`bayesgmm.load` and
    :meth:`bayesgmm.Posterior.load` build the ``Posterior`` from it."""
    path = Path(path)
    idata = _read_idata(path)
    if "posterior" not in idata.groups():
        raise FormatError(f"{path} is netCDF but has no posterior group; not a bayesgmm posterior")
    _check_format(
        dict(idata.posterior.attrs),
        path,
        POSTERIOR_FORMAT,
        POSTERIOR_FORMAT_VERSION,
        "bayesgmm_format",
        "bayesgmm_format_version",
    )
    return idata


# --- dispatch ------------------------------------------------------------------------------------
def save(obj, path, *, overwrite: bool = False) -> Path:
    """Save a fitted ``GaussianMixture`` or a ``Posterior`` to ``path``.

    Parameters
    ----------
    obj : GaussianMixture or Posterior
    path : path-like
        Destination file (suggested suffixes ``.bgmm`` for estimators, ``.nc`` for posteriors).
    overwrite : bool, default False
        Replace an existing file; otherwise ``FileExistsError`` is raised.

    Returns
    -------
    pathlib.Path of the written file.
    """
    # By the class's declared kind, not isinstance: the format layer imports no estimator.
    kind = getattr(type(obj), "_bayesgmm_file_kind", None)
    if kind == "model":
        return save_estimator(obj, path, overwrite=overwrite)
    if kind == "posterior":
        return save_posterior(obj, path, overwrite=overwrite)
    raise TypeError(f"save takes a GaussianMixture or a Posterior; got {type(obj).__name__}")


def file_kind(path) -> str:
    """``'model'`` or ``'posterior'`` from the first bytes of a file; raises for others."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a saved model")
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        raise FormatError(f"{path} is empty; it is not a saved model (was it truncated?)")
    if head.startswith(_ZIP_MAGIC):
        return "model"
    if head.startswith(_HDF5_MAGIC) or head.startswith(_NETCDF3_MAGIC):
        return "posterior"
    raise FormatError(
        f"{path} is not a bayesgmm file (expected a model zip archive or a posterior netCDF)"
    )


# --- reading data for the command line ---------------------------------------------------------
_MISSING = {"", "na", "nan", "n/a", "null", "none", "?"}


def _to_float(value: str) -> float:
    v = value.strip()
    if v.lower() in _MISSING:
        return math.nan
    return float(v)


def _is_number(value: str) -> bool:
    try:
        _to_float(value)
    except ValueError:
        return False
    return True


def _sniff(path: Path):
    """The first data line of a delimited text file (file line number, its fields) and the
    delimiter, sniffed among ``, ; tab | space`` on the first 50 data lines (comments and
    blank lines left out, so they cannot mislead the sniffer)."""
    sample, first = [], None
    with open(path, newline="", encoding="utf-8-sig") as f:
        for number, line in enumerate(f, start=1):
            line = _without_comment(line.rstrip("\r\n"))
            if not line.strip():
                continue
            first = number if first is None else first
            sample.append(line)
            if len(sample) >= 50:
                break
    try:
        delimiter = csv.Sniffer().sniff("\n".join(sample), delimiters=",;\t| ").delimiter
    except csv.Error:
        # The sniffer wants the same count of each candidate on every line; runs of spaces
        # defeat it. Take the first delimiter that splits every line into the same number
        # (> 1) of fields, else one column.
        delimiter = next(
            (
                c
                for c in (",", ";", "\t", "|", " ")
                if len({len(_split(line, c)) for line in sample}) == 1
                and len(_split(sample[0], c)) > 1
            ),
            ",",
        )
    return delimiter, first, None if first is None else _split(sample[0], delimiter)


def _without_comment(line: str) -> str:
    """The line up to its first ``#`` (a comment starts there, as for ``np.loadtxt``)."""
    return line.split("#", 1)[0]


def _data_lines(lines):
    """File line numbers (1-based) of the lines that hold data: not blank once the comment
    is cut."""
    return [number for number, line in enumerate(lines, start=1) if _without_comment(line).strip()]


def _split(line: str, delimiter: str):
    fields = line.split() if delimiter == " " else next(csv.reader([line], delimiter=delimiter))
    return [s.strip() for s in fields]


def _read_csv_fast(path: Path, delimiter: str, first: int, fields):
    """``(X, header)`` by NumPy's C parser, or None where it cannot be used.

    It reads the data rows when every field is a number, which is the common case, at
    ``np.loadtxt`` speed; any other file (missing values, a non-numeric field, ragged rows)
    returns None and is read by ``_read_csv``, which gives the same result or the precise
    error.
    """
    header = None if all(_is_number(s) for s in fields) else fields
    try:
        with warnings.catch_warnings():  # "input contained no data": the slow reader says it
            warnings.simplefilter("ignore", UserWarning)
            X = np.loadtxt(
                path,
                delimiter=None if delimiter == " " else delimiter,
                comments="#",
                quotechar='"',
                skiprows=first if header is not None else first - 1,
                ndmin=2,
                dtype=np.float64,
                encoding="utf-8-sig",
            )
    except ValueError:
        return None
    if X.shape[0] == 0 or X.shape[1] != len(fields):
        return None
    return X, header


def _file_lines(path: Path):
    with open(path, newline="", encoding="utf-8-sig") as f:
        return f.read().splitlines()


def _read_csv(path: Path, delimiter: str):
    """Rows of a delimited text file, its header (or None) and the file line of each row."""
    lines = _file_lines(path)
    rows, line_numbers = [], []
    for number in _data_lines(lines):
        rows.append(_split(_without_comment(lines[number - 1]), delimiter))
        line_numbers.append(number)
    if not rows:
        raise ValueError(f"{path} holds no data rows")
    header = None
    # A first row with any non-numeric field is a header (csv.Sniffer.has_header guesses by
    # column types and misreads all-numeric files).
    if not all(_is_number(s) for s in rows[0]):
        header = rows[0]
        rows, line_numbers = rows[1:], line_numbers[1:]
    if not rows:
        raise ValueError(f"{path} has a header but no data rows")
    width = len(header) if header is not None else len(rows[0])
    for row, number in zip(rows, line_numbers):
        if len(row) != width:
            raise ValueError(
                f"{path} line {number} has {len(row)} fields where {width} were expected"
            )
    return rows, header, line_numbers


def _select_columns(names, columns, n_columns, path):
    """Indices of the requested columns (names or 0-based indices, comma-separated)."""
    if columns is None:
        return list(range(n_columns))
    if isinstance(columns, str):
        columns = [c.strip() for c in columns.split(",") if c.strip()]
    out = []
    for c in columns:
        if names is not None and str(c) in names:
            out.append(names.index(str(c)))
            continue
        try:
            i = int(c)
        except (TypeError, ValueError):
            known = f"; its columns are {', '.join(names)}" if names else " (it has no header)"
            raise ValueError(f"{path} has no column {c!r}{known}") from None
        if not 0 <= i < n_columns:
            raise ValueError(
                f"column index {i} is out of range: {path} has {n_columns} columns (0-based)"
            )
        out.append(i)
    if not out:
        raise ValueError("--columns selects no columns")
    return out


def _with_weights(names, columns, weights, n_columns, path):
    """``(data column indices, the weight column's index or None)``; without ``columns`` the
    data are every column but the weights'."""
    idx = _select_columns(names, columns, n_columns, path)
    if weights is None:
        return idx, None
    (widx,) = _select_columns(names, [weights], n_columns, path)
    if widx in idx:
        if columns is not None:
            raise ValueError(
                f"column {weights!r} of {path} is chosen both as data (--columns) and as "
                "weights (--weights); a column is one or the other"
            )
        idx.remove(widx)
    if not idx:
        raise ValueError(f"{path} has no data columns left beside the weights column {weights!r}")
    return idx, widx


def read_data(path, *, columns=None, drop_nan: bool = False, weights=None, allow_nan: bool = False):
    """Read a data matrix from CSV/TSV text, ``.npy`` or ``.npz``.

    Parameters
    ----------
    path : path-like
        Delimited text (the delimiter is sniffed among ``, ; tab | space``; a first row with any
        non-numeric field is a header; ``#`` starts a comment; empty, ``NA`` and ``nan`` fields
        are missing), ``.npy`` (a 2-D array; 1-D is one feature) or ``.npz`` (the array ``X``,
        or its only array).
    columns : str or sequence, optional
        Columns to keep: header names or 0-based indices (a comma-separated string or a list).
    drop_nan : bool, default False
        Drop rows with missing values instead of refusing them.
    weights : str or int, optional
        A column (header name or 0-based index) of row weights, returned apart from ``X``
        (``info["weights"]``); without ``columns`` the data are every other column. A row
        with a missing weight counts as a row with a missing value.
    allow_nan : bool, default False
        Keep missing values in the data columns as NaN (for models that marginalise them);
        infinite values and missing weights are still refused.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float64 (float32 arrays stay float32)
    names : list of str, the column names (``x0, x1, ...`` without a header)
    info : dict with ``dropped`` (file rows dropped for missing values) and ``weights``
        (ndarray (n_samples,), or None without ``weights``)
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data file {path} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a data file")
    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz"):
        try:
            loaded = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"cannot read {path} as {suffix} ({exc})") from None
        if suffix == ".npz":
            with loaded:
                keys = list(loaded.files)
                if "X" in keys:
                    arr = loaded["X"]
                elif len(keys) == 1:
                    arr = loaded[keys[0]]
                else:
                    raise ValueError(
                        f"{path} holds arrays {keys}; name the data array 'X' or save only one"
                    )
        else:
            arr = loaded
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{path} holds non-numeric data (dtype {arr.dtype})")
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ValueError(f"{path} holds a {arr.ndim}-D array; a 2-D array is needed")
        names = [f"x{i}" for i in range(arr.shape[1])]
        idx, widx = _with_weights(None, columns, weights, arr.shape[1], path)
        X = arr[:, idx + ([] if widx is None else [widx])]
        if X.dtype.kind != "f":
            X = X.astype(np.float64)
        names = [names[i] for i in idx]

        def label(i):
            return f"row {i}"
    else:
        try:
            delimiter, first, fields = _sniff(path)
            fast = None if first is None else _read_csv_fast(path, delimiter, first, fields)
        except UnicodeDecodeError:
            raise ValueError(f"{path} is not a text file; give CSV, .npy or .npz data") from None
        line_numbers = None  # found only if a row must be named (a missing value)
        if fast is not None:
            full, header = fast
            names = header if header is not None else [f"x{i}" for i in range(full.shape[1])]
            idx, widx = _with_weights(header, columns, weights, full.shape[1], path)
            X = full[:, idx + ([] if widx is None else [widx])]
        else:
            rows, header, line_numbers = _read_csv(path, delimiter)
            n_columns = len(rows[0])
            names = header if header is not None else [f"x{i}" for i in range(n_columns)]
            idx, widx = _with_weights(header, columns, weights, n_columns, path)
            cols = idx + ([] if widx is None else [widx])
            X = np.empty((len(rows), len(cols)))
            for j, c in enumerate(cols):
                for i, row in enumerate(rows):
                    try:
                        X[i, j] = _to_float(row[c])
                    except ValueError:
                        raise ValueError(
                            f"column {names[c]!r} of {path} is not numeric (line "
                            f"{line_numbers[i]}: {row[c]!r}); choose numeric columns with "
                            "--columns"
                        ) from None
        names = [names[i] for i in idx]

        def label(i):
            nonlocal line_numbers
            if line_numbers is None:  # the fast path read no line numbers: count them once
                line_numbers = _data_lines(_file_lines(path))[1 if header is not None else 0 :]
            return f"line {line_numbers[i]}"

    finite = np.isfinite(X)
    if allow_nan:
        finite[:, : len(idx)] |= np.isnan(X[:, : len(idx)])
    bad = np.flatnonzero(~finite.all(axis=1))
    dropped = []
    if bad.size:
        if not drop_nan:
            shown = ", ".join(label(i) for i in bad[:8]) + (" ..." if bad.size > 8 else "")
            raise ValueError(
                f"{path} has missing or infinite values in {bad.size} row(s) ({shown}); "
                "remove them or pass --drop-nan (bayesgmm fit --missing marginalize fits rows on "
                "their observed values)"
            )
        dropped = [label(i) for i in bad]
        X = np.delete(X, bad, axis=0)
    if X.shape[0] == 0:
        raise ValueError(f"{path} has no complete rows left")
    w = None
    if widx is not None:
        X, w = X[:, :-1], np.ascontiguousarray(X[:, -1])
    return np.ascontiguousarray(X), names, {"dropped": dropped, "weights": w}
