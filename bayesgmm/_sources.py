"""Rows in chunks, whatever holds them: the data sources of out-of-core EM and prediction.

Every statistic EM and the log density need is a sum over rows, so data that is not one array
in memory is walked chunk by chunk: a NumPy ``memmap``, an HDF5 or Zarr dataset (any object
with ``shape``, ``dtype`` and row slicing), or a Dask array. :class:`RowSource` reads one chunk
at a time (peak memory: a chunk, not the data) and :meth:`RowSource.map_reduce` sums a
function's results over the chunks. For a Dask array each chunk's result is a Dask task,
computed by whatever scheduler is active (threads by default; with a
``dask.distributed.Client``, on the worker that holds the chunk, so that only the small
results travel).

This module imports NumPy only (Dask when a Dask array is given), so it sits at the bottom of
the package.
"""

from __future__ import annotations

import mmap
import sys

import numpy as np

from ._validation import result_dtype

__all__ = ["RowSource", "is_dask", "is_out_of_core", "as_source", "CHUNK_BYTES"]

#: Bytes of X per chunk read from a memmap or an h5py/zarr dataset (64 MiB): large enough that
#: the per-chunk overhead (a compiled call, a read) is negligible, small enough for any machine.
CHUNK_BYTES = 64 * 2**20


def is_dask(X) -> bool:
    """Whether ``X`` is a Dask array (looked up, not imported: Dask is an optional extra)."""
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(X, da.Array)


def is_out_of_core(X) -> bool:
    """Whether ``X`` is data EM walks in chunks rather than reads as one array.

    True for a Dask array, a ``numpy.memmap`` and any object with ``shape``, ``dtype`` and
    ``__getitem__`` that is not an in-memory array (h5py and zarr datasets); False for NumPy
    and JAX arrays, lists and data frames.
    """
    if isinstance(X, RowSource) or isinstance(X, np.memmap) or is_dask(X):
        return True
    if isinstance(X, np.ndarray | list | tuple):
        return False
    module = type(X).__module__ or ""
    if module.startswith(("jax", "jaxlib", "numpy", "pandas", "scipy")):
        return False
    return all(hasattr(X, a) for a in ("shape", "dtype", "__getitem__"))


def _check_dtype(dtype, name):
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        raise ValueError(f"{name} must be real-valued: Complex data not supported (got {dtype})")
    if dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers; got dtype {dtype}")
    return result_dtype(dtype)


def _dask_boundaries(X, name):
    rows = X.chunks[0]
    if any(np.isnan(c) for c in rows) or any(np.isnan(c) for c in X.chunks[1]):
        raise ValueError(
            f"{name} is a Dask array with unknown chunk sizes (chunks={X.chunks}); call "
            f"{name}.compute_chunk_sizes() first (or build it with known chunks)"
        )
    return np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)


class RowSource:
    """A 2-D data set read in chunks of rows.

    Parameters
    ----------
    X : dask.array.Array, numpy.memmap, or an array-like with ``shape``, ``dtype`` and slicing
        The data, shape (n_samples, n_features). A Dask array keeps its own row chunks (any
        chunking, ragged last chunk included; column chunks are joined); other sources are
        read ``chunk_rows`` rows at a time (rounded to their native chunking if they have one).
    name : str
        The argument's name, for error messages.
    chunk_rows : int, optional
        Rows per chunk for non-Dask sources; default :data:`CHUNK_BYTES` worth of rows.

    Attributes
    ----------
    shape : tuple (n_samples, n_features)
    dtype : numpy dtype
        The computation dtype (float32 stays float32, float64 stays float64, integers become
        float64), which every chunk is returned in.
    boundaries : ndarray of int, shape (n_chunks + 1,)
        Row offsets of the chunks.
    """

    def __init__(self, X, name: str = "X", chunk_rows: int | None = None):
        if isinstance(X, RowSource):
            X = X.data
        shape = tuple(int(s) if s == s else s for s in X.shape)
        if len(shape) != 2:
            raise ValueError(
                f"{name} must be a 2-D array of shape (n_samples, n_features); got "
                f"{len(shape)}-D array of shape {shape}"
            )
        self.data = X
        self.name = name
        self.dtype = _check_dtype(X.dtype, name)
        if is_dask(X):
            self.boundaries = _dask_boundaries(X, name)
        n, d = shape
        if d == 0:
            raise ValueError(
                f"{name} has 0 feature(s) (shape={shape}) while a minimum of 1 is required."
            )
        self.shape = (n, d)
        if not is_dask(X):
            if chunk_rows is None:
                chunk_rows = max(1024, CHUNK_BYTES // (d * self.dtype.itemsize))
                native = getattr(X, "chunks", None)
                if isinstance(native, tuple) and native and isinstance(native[0], int):
                    chunk_rows = max(native[0], chunk_rows // native[0] * native[0])
            chunk_rows = int(chunk_rows)
            if chunk_rows < 1:
                raise ValueError(f"chunk_rows must be a positive integer; got {chunk_rows}")
            self.boundaries = np.unique(np.r_[np.arange(0, n, chunk_rows), n]).astype(np.int64)

    @property
    def n_chunks(self) -> int:
        return len(self.boundaries) - 1

    @property
    def chunk_rows(self) -> int:
        """The largest chunk's number of rows."""
        return int(np.max(np.diff(self.boundaries))) if self.n_chunks else 0

    def __repr__(self):
        return (
            f"RowSource({type(self.data).__name__}, shape={self.shape}, dtype={self.dtype}, "
            f"n_chunks={self.n_chunks})"
        )

    # --- reading ---------------------------------------------------------------------------
    def read(self, i: int) -> np.ndarray:
        """Chunk ``i`` as a C-contiguous array of :attr:`dtype`, checked finite."""
        lo, hi = int(self.boundaries[i]), int(self.boundaries[i + 1])
        X = self.data
        if is_dask(X):
            chunk = np.asarray(X[lo:hi].compute())
        elif isinstance(X, np.memmap):
            chunk = _read_memmap(X, lo, hi)
        else:
            chunk = np.asarray(X[lo:hi])
        return check_chunk(chunk, self.dtype, self.name, lo)

    def chunks(self):
        """Yield ``(start_row, chunk)`` for every chunk, in order, one in memory at a time."""
        for i in range(self.n_chunks):
            yield int(self.boundaries[i]), self.read(i)

    def map_reduce(self, fn, *args, weights=None):
        """``sum over chunks of fn(chunk, w_chunk, *args)``, a pytree of NumPy arrays.

        ``weights`` (n_samples,) NumPy or None: the rows' weights, passed sliced to each chunk
        (None passes None). For a Dask array every chunk is a task of one ``dask.compute``
        (the active scheduler runs them: threads, or a distributed cluster's workers, where
        the chunk lives); otherwise the chunks are read and reduced one after another.
        """
        if is_dask(self.data):
            parts = self._dask_parts(fn, args, weights)
        else:
            parts = (
                fn(chunk, _slice(weights, lo, lo + chunk.shape[0]), *args)
                for lo, chunk in self.chunks()
            )
        return _tree_sum(parts)

    def _dask_parts(self, fn, args, weights):
        import dask

        X = self.data.rechunk({1: -1}) if len(self.data.chunks[1]) > 1 else self.data
        blocks = X.to_delayed().ravel()
        b = self.boundaries
        tasks = [
            dask.delayed(_apply_checked)(
                fn, blk, self.dtype, self.name, int(b[i]), _slice(weights, b[i], b[i + 1]), args
            )
            for i, blk in enumerate(blocks)
        ]
        return dask.compute(*tasks)

    def map_rows(self, fn, *args, out_shape=(), out_dtype=None):
        """``fn(chunk, *args)`` for every chunk, concatenated: per-row outputs of shape
        (n_samples, *out_shape). A Dask array gives a Dask array (chunked like ``X``'s rows,
        computed when asked); other sources a NumPy array."""
        out_dtype = self.dtype if out_dtype is None else np.dtype(out_dtype)
        if is_dask(self.data):
            X = self.data.rechunk({1: -1}) if len(self.data.chunks[1]) > 1 else self.data
            kwargs = {"dtype": out_dtype, "meta": np.empty((0,) * (1 + len(out_shape)), out_dtype)}
            if out_shape:
                kwargs["chunks"] = (X.chunks[0], *((s,) for s in out_shape))
            else:
                kwargs["drop_axis"] = 1
            name, dtype = self.name, self.dtype
            return X.map_blocks(
                lambda blk: fn(check_chunk(np.asarray(blk), dtype, name, 0), *args), **kwargs
            )
        out = np.empty((self.shape[0], *out_shape), out_dtype)
        for lo, chunk in self.chunks():
            out[lo : lo + chunk.shape[0]] = fn(chunk, *args)
        return out


def as_source(X, name: str = "X") -> RowSource:
    """``X`` as a :class:`RowSource` (unchanged if it is one)."""
    return X if isinstance(X, RowSource) else RowSource(X, name)


def check_chunk(chunk, dtype, name, start):
    """A chunk as a C-contiguous array of ``dtype``, with ``check_data``'s refusals of
    non-finite and overflowing values (naming the rows)."""
    chunk = np.ascontiguousarray(chunk, dtype=dtype)
    if chunk.ndim != 2:
        raise ValueError(f"{name} yielded a chunk of shape {chunk.shape}; expected 2-D rows")
    finite = np.isfinite(chunk)
    if not finite.all():
        bad = start + np.flatnonzero(~finite.all(axis=1))
        shown = ", ".join(str(i) for i in bad[:10]) + (" ..." if bad.size > 10 else "")
        raise ValueError(
            f"{name} contains NaN or infinity in {bad.size} row(s) (rows {shown}); remove or "
            "impute them (missing='marginalize' needs X in memory)"
        )
    limit = np.sqrt(np.finfo(dtype).max) / 10
    top = float(np.max(np.abs(chunk))) if chunk.size else 0.0
    if top > limit:
        raise ValueError(
            f"{name} has values up to {top:.3g}, too large for {dtype} arithmetic (squared "
            f"distances overflow above {limit:.3g}); rescale it"
        )
    return chunk


def _apply_checked(fn, blk, dtype, name, start, w, args):
    return fn(check_chunk(np.asarray(blk), dtype, name, start), w, *args)


def _slice(weights, lo, hi):
    return None if weights is None else weights[int(lo) : int(hi)]


def _read_memmap(X: np.memmap, lo: int, hi: int) -> np.ndarray:
    """Rows ``lo:hi`` of a C-ordered file-backed memmap read with a plain file read: slicing the
    mapping would leave the pages mapped and resident in the process (its RSS would grow to the
    whole file), a read leaves them to the page cache."""
    # Only a memmap made from its file (its base is the mapping) starts at ``offset``; a view
    # of one (a slice) keeps its parent's attributes, so it is sliced instead.
    if X.filename is None or not isinstance(X.base, mmap.mmap) or not X.flags.c_contiguous:
        return np.array(X[lo:hi])
    row_bytes = X.shape[1] * X.dtype.itemsize
    filename, start = X.filename, X.offset
    with open(filename, "rb") as f:
        f.seek(start + lo * row_bytes)
        out = np.fromfile(f, dtype=X.dtype, count=(hi - lo) * X.shape[1])
    return out.reshape(hi - lo, X.shape[1])


def _tree_sum(parts):
    total = None
    for p in parts:
        if total is None:
            total = tuple(np.array(a, copy=True) for a in p)
        else:
            total = tuple(t + np.asarray(a) for t, a in zip(total, p))
    return total
