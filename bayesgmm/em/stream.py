"""Out-of-core EM: the iteration of :func:`~bayesgmm.em.fit_em` over data read in chunks.

The E-step's log-likelihood and every M-step statistic are sums over rows, so each iteration
streams the chunks of a :class:`~bayesgmm._sources.RowSource` (a memmap, an h5py/zarr dataset,
a Dask array) through one jitted per-chunk kernel and adds the results; the M-step and the
loop's bookkeeping (:func:`~bayesgmm.em.driver._advance`, the in-memory loop's) run on the
summed statistics. Peak memory is one chunk (and its responsibilities), whatever ``n``.

One pass per iteration. The scatter is accumulated around the *current* means ``c`` (known
before the pass) together with ``b = sum r (x - c)``, and moved to the new means ``c + b / n_k``
exactly (:meth:`~bayesgmm.em.kernels.EMKernels.recentre`). The move cancels, amplifying rounding
by the ratio of the scatter around ``c`` to the one around the new means; when ``4 eps`` times
that ratio exceeds :data:`RECENTRE_ERROR_LIMIT` (the means moved by many standard deviations,
typically in the first iterations) a second pass computes the scatter around the new means
directly, as the in-memory centred kernels do. Either way the result is the in-memory fit's up
to summation order.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .._sources import RowSource, as_source
from ..density import block_rows
from ..params import GMMParams
from ..prior import Prior
from .centred import _e_pass
from .driver import _advance, _start_states
from .init import _starts
from .kernels import kernels_for
from .reference import (
    EMResult,
    SufficientStats,
    _objective,
    _params_from,
    _regularised_count,
    _scatter_sums,
)

__all__ = ["fit_em_stream", "sample_rows", "RECENTRE_ERROR_LIMIT", "INIT_ROWS"]

#: Largest accepted relative rounding of the one-pass scatter (per dtype); above it the
#: iteration's scatter is recomputed around the new means in a second pass. float64: the bound
#: of the expanded kernels (``SCATTER_ERROR_LIMIT``); float32: 1e-5, a few hundred times its
#: eps, which the float32 accuracy the suite asks of EM (1e-4 relative on the log-likelihood)
#: absorbs.
RECENTRE_ERROR_LIMIT = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-5}

#: Rows the initialisation (k-means, k-means++, random, ...) runs on: a uniform random subset
#: of this many rows, or every row when there are fewer (then the starting parameters are the
#: in-memory fit's exactly).
INIT_ROWS = 200_000


def _to_blocks_np(chunk, w, rows: int):
    """A chunk (m, d) and its weights as row blocks ``(nb, rows, d)``, ``(nb, rows)``, padded
    with zero-weight rows: every chunk of a source then has one of few shapes (compiles)."""
    m, d = chunk.shape
    nb = max(1, -(-m // rows))
    Xb = np.zeros((nb * rows, d), chunk.dtype)
    Xb[:m] = chunk
    wb = np.zeros(nb * rows, chunk.dtype)
    wb[:m] = 1.0 if w is None else w
    return Xb.reshape(nb, rows, d), wb.reshape(nb, rows)


def _centred_sum(XbT, RbT, centres):
    """``b = sum r (x - c)`` (K, d) over blocks, from centred terms (no cancellation)."""

    def body(acc, blk):
        xt, rt = blk
        return acc + jnp.einsum("kdn,kn->kd", xt[None] - centres[:, :, None], rt), None

    return jax.lax.scan(body, jnp.zeros_like(centres), (XbT, RbT))[0]


@partial(jax.jit, static_argnames=("with_scatter",))
def _chunk_pass(Xb, wb, params: GMMParams, shift, with_scatter: bool = True):
    """One chunk's statistics for every restart (leading axis of ``params``): the E-step's
    ``(loglik, nk, sx)`` and, with ``with_scatter``, the scatter statistics around the current
    means and ``b``."""
    XbT = jnp.swapaxes(Xb, 1, 2)
    kern = kernels_for(params.covariance_type)

    def one(p):
        loglik, nk, sx, RbT = _e_pass(XbT, wb, p)
        if not with_scatter:
            return loglik, nk, sx
        sc = _scatter_sums(XbT, RbT, p.means, shift, kern)
        return loglik, nk, sx, sc, _centred_sum(XbT, RbT, p.means)

    return jax.vmap(one)(params)


@jax.jit
def _chunk_scatter(Xb, wb, params: GMMParams, centres, shift):
    """The second pass: scatter statistics around ``centres`` (the new means) per restart."""
    XbT = jnp.swapaxes(Xb, 1, 2)
    kern = kernels_for(params.covariance_type)

    def one(p, c):
        RbT = _e_pass(XbT, wb, p)[3]
        return _scatter_sums(XbT, RbT, c, shift, kern)

    return jax.vmap(one)(params, centres)


def _as_numpy(tree):
    return tuple(np.asarray(a) for a in jax.tree_util.tree_leaves(tree))


def _host(tree):
    """NumPy copies of a pytree's leaves: what a chunk's task carries (to a Dask worker too)."""
    return jax.tree_util.tree_map(np.asarray, tree)


# The per-chunk functions are module-level, taking everything as arguments: a Dask task then
# refers to them by name (cloudpickle pickles closures by value, and a jitted function
# rebuilt on a worker for every task would recompile every iteration).
def _pass_chunk(chunk, w, rows, params, shift, with_scatter):
    Xb, wb = _to_blocks_np(chunk, w, rows)
    return _as_numpy(_chunk_pass(Xb, wb, params, shift, with_scatter))


def _scatter_chunk(chunk, w, rows, params, centres, shift):
    Xb, wb = _to_blocks_np(chunk, w, rows)
    return _as_numpy(_chunk_scatter(Xb, wb, params, centres, shift))


def _sum_chunk(chunk, w):
    return (chunk.sum(axis=0) if w is None else w @ chunk,)


@partial(jax.jit, static_argnames=("covariance_type",))
def _m_step(
    params: GMMParams, stats, shift, reg_covar, prior, n_samples, limit, covariance_type: str
):
    """Objective at ``params``, new parameters from the one-pass statistics, and whether the
    one-pass scatter is accurate to ``limit`` (per restart)."""
    kern = kernels_for(covariance_type)
    eps = jnp.finfo(shift.dtype).eps

    def one(p, loglik, nk, sx, sc, b):
        count = _regularised_count(nk)
        scatter_c = kern.scatter_finalize(sc, p.means, shift)
        delta = b / count[:, None]
        # What the covariance adds to the scatter: per component, or pooled for a shared one.
        floor = (jnp.sum(count) if kern.needs_data_scatter else count) * reg_covar
        scatter, ratio = kern.recentre(scatter_c, b, delta, nk, floor)
        new = _params_from(SufficientStats(nk, sx), scatter, kern, reg_covar, prior)
        return _objective(loglik, p, prior, n_samples), new, 4.0 * eps * ratio <= limit

    return jax.vmap(one)(params, *stats)


@partial(jax.jit, static_argnames=("covariance_type",))
def _m_step_exact(nk, sx, summed, shift, reg_covar, prior, covariance_type: str):
    """New parameters from the second pass's scatter around the new means (per restart)."""
    kern = kernels_for(covariance_type)

    def one(nk, sx, summed):
        centres = sx / _regularised_count(nk)[:, None]
        scatter = kern.scatter_finalize(summed, centres, shift)
        return _params_from(SufficientStats(nk, sx), scatter, kern, reg_covar, prior)

    return jax.vmap(one)(nk, sx, summed)


_advance_all = jax.jit(jax.vmap(_advance, in_axes=(0, 0, 0, 0, None)))


def sample_rows(source: RowSource, n_rows: int, seed: int, weights=None):
    """A uniform random subset of ``n_rows`` rows (every row, in order, when the source has no
    more), read in one pass: ``(rows (m, d), their weights (m,) or None, max |x|)``. The pass
    also checks every chunk (finite values, range), so bad data is refused before EM starts."""
    n, d = source.shape
    if n <= n_rows:
        keep = None
    else:
        keep = np.sort(np.random.default_rng(seed).choice(n, n_rows, replace=False))
    out, out_w, top = [], [], 0.0
    for lo, chunk in source.chunks():
        hi = lo + chunk.shape[0]
        top = max(top, float(np.max(np.abs(chunk))) if chunk.size else 0.0)
        sel = slice(None) if keep is None else keep[(keep >= lo) & (keep < hi)] - lo
        out.append(chunk[sel])
        if weights is not None:
            out_w.append(np.asarray(weights[lo:hi])[sel])
    rows = np.concatenate(out) if out else np.zeros((0, d), source.dtype)
    return rows, (np.concatenate(out_w) if weights is not None else None), top


def fit_em_stream(
    key,
    X,
    n_components: int,
    covariance_type: str = "full",
    *,
    n_init: int = 1,
    init_params: str = "kmeans",
    max_iter: int = 100,
    tol=1e-3,
    reg_covar=1e-6,
    prior: Prior | None = None,
    weights_init=None,
    means_init=None,
    covariances_init=None,
    params_init: GMMParams | None = None,
    lower_bound_init=-np.inf,
    resp_init=None,
    sample_weight=None,
    devices=None,
    init_rows: int = INIT_ROWS,
):
    """:func:`~bayesgmm.em.fit_em` on data read in chunks; returns ``(EMResult, max |x|)``.

    Parameters
    ----------
    key : jax.random key
    X : RowSource, dask.array.Array, numpy.memmap or h5py/zarr dataset, shape (n_samples, d)
        Walked chunk by chunk every iteration; never read whole.
    n_components, covariance_type, n_init, init_params, max_iter, tol, reg_covar, prior,
    weights_init, means_init, covariances_init, params_init, lower_bound_init, sample_weight
        As :func:`~bayesgmm.em.fit_em`. ``sample_weight`` is an in-memory array (n_samples,).
    resp_init
        Not accepted (responsibilities of every row would be an (n_samples, K) array in
        memory); ``ValueError`` if given.
    devices
        Must be None or one device: the chunks run on the default device.
    init_rows : int
        The initialisation runs on a uniform random subset of this many rows (all rows when
        there are fewer; :data:`INIT_ROWS`).

    Returns
    -------
    EMResult
        With a leading ``n_init`` axis, as :func:`~bayesgmm.em.fit_em`'s.
    max_abs : float
        The largest ``|x|`` in the data (for :func:`~bayesgmm._validation.collapsed_runs`).
    """
    source = as_source(X)
    if resp_init is not None:
        raise ValueError(
            "resp_init is not accepted for out-of-core X (it is an (n_samples, n_components) "
            "array in memory); pass weights_init/means_init/precisions_init or init_params"
        )
    if devices is not None and not (isinstance(devices, int) and devices == 1):
        raise ValueError(
            "devices: out-of-core EM runs its chunks on the default device; pass devices=None "
            "(sharding over devices needs X in memory)"
        )
    dtype = source.dtype
    n, d = source.shape
    k = int(n_components)
    w = None if sample_weight is None else np.asarray(sample_weight, dtype)
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    rows0, w0, max_abs = sample_rows(source, int(init_rows), seed, w)
    prior = None if prior is None else prior.astype(dtype)
    tol_j, reg_j = jnp.asarray(tol, dtype), jnp.asarray(reg_covar, dtype)
    starts = _starts(
        key,
        jnp.asarray(rows0),
        k,
        covariance_type,
        int(n_init),
        init_params,
        reg_j,
        prior,
        weights_init,
        means_init,
        covariances_init,
        params_init,
        None,
        None if w0 is None else jnp.asarray(w0),
    )
    state = _start_states(starts, jnp.asarray(lower_bound_init, dtype), int(max_iter))
    state = jax.tree_util.tree_map(jnp.asarray, state)
    # Row blocks no longer than the largest chunk: small chunks are not padded to a block.
    rows = min(block_rows(k, d), max(source.chunk_rows, 1))
    n_samples = float(n if w is None else np.sum(w))
    n_samples_j = jnp.asarray(n_samples, dtype)
    # The data mean: the fixed shift of the scatter statistics' second factor (one pass).
    total = source.map_reduce(_sum_chunk, weights=w)[0]
    shift = jnp.asarray(total / n_samples, dtype)
    ct = starts.covariance_type
    # Looked up at every call (traced, not compiled in), so tests can force the second pass.
    limit = jnp.asarray(RECENTRE_ERROR_LIMIT[np.dtype(dtype)], dtype)
    for _ in range(int(max_iter)):
        active = ~(np.asarray(state.converged) | np.asarray(state.failed))
        active &= np.asarray(state.n_iter) < int(max_iter)
        if not active.any():
            break
        params = state.params
        stats = source.map_reduce(
            _pass_chunk, rows, _host(params), np.asarray(shift), True, weights=w
        )
        stats = _split_stats(stats, params)
        lb, new, ok = _m_step(params, stats, shift, reg_j, prior, n_samples_j, limit, ct)
        if not np.all(np.asarray(ok)):
            nk, sx = stats[1], stats[2]
            centres = jnp.asarray(sx / np.asarray(_regularised_count(nk))[..., None])
            summed = _second_pass(source, rows, params, centres, shift, w)
            summed = jax.tree_util.tree_unflatten(
                jax.tree_util.tree_structure(stats[3]), [jnp.asarray(a) for a in summed]
            )
            exact = _m_step_exact(jnp.asarray(nk), jnp.asarray(sx), summed, shift, reg_j, prior, ct)
            new = _where_runs(ok, new, exact)
        advanced = _advance_all(state, lb, new, jnp.ones_like(jnp.asarray(ok)), tol_j)
        state = _where_runs(active, advanced, state)
    res = EMResult(
        state.params,
        state.lower_bound,
        state.lower_bounds,
        state.n_iter,
        state.converged,
        state.failed,
    )
    return res, max_abs


def _where_runs(mask, a, b):
    """Per run (leading axis): the leaves of ``a`` where ``mask`` (n_runs,) holds, else ``b``'s."""
    mask = jnp.asarray(mask)
    return jax.tree_util.tree_map(
        lambda x, y: jnp.where(mask.reshape((-1,) + (1,) * (x.ndim - 1)), x, y), a, b
    )


def _second_pass(source, rows, params, centres, shift, w):
    """The scatter statistics around ``centres`` (the new means), summed over the chunks."""
    args = (_host(params), np.asarray(centres), np.asarray(shift))
    return source.map_reduce(_scatter_chunk, rows, *args, weights=w)


def _split_stats(flat, params):
    """The summed leaves of ``_chunk_pass`` back as ``(loglik, nk, sx, scatter_stats, b)``."""
    loglik, nk, sx, *rest = (jnp.asarray(a) for a in flat)
    sc = tuple(rest[:-1]) if len(rest) > 2 else rest[0]
    return loglik, nk, sx, sc, rest[-1]
