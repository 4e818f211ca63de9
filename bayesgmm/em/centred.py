"""The centred kernels' EM step: the E-step and the first-order statistics in one pass.

Exact at any offset of the data (every point is differenced against every component mean);
used in float32, on small problems, and whenever the expanded step is refused.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..density import prepare, weighted_log_prob_t
from ..params import GMMParams
from .kernels import kernels_for
from .reference import SufficientStats, _allsum, _m_step_t, _objective

__all__ = ["e_step", "centred_step"]


def _normalise(wlp, w):
    """``(log p(x), responsibilities)`` of a block of weighted log densities (K, rows):
    logsumexp over components, rows on the vectorised minor axis; ``w`` (rows,) zeroes the
    padding rows' responsibilities."""
    top = jnp.max(wlp, axis=0)
    e = jnp.exp(wlp - top)
    norm = jnp.sum(e, axis=0)
    return jnp.log(norm) + top, e * (w / norm)


def _e_pass(XbT, wb, params: GMMParams):
    """E-step and first-order statistics in one pass over blocks stored transposed.

    ``XbT`` (n_blocks, d, B). Returns ``(loglik, nk, sx, RbT)`` with ``RbT`` (n_blocks, K, B)
    the responsibilities (zero on padding rows); ``nk`` and ``sx`` as in
    :class:`SufficientStats`. Every intermediate is (K, B) or (K d, B): small enough to stay
    in cache, so the pass streams ``X`` once.
    """
    prepared = prepare(params)
    dtype = XbT.dtype
    n_components, n_features = params.means.shape

    def body(carry, blk):
        total, nk, sx = carry
        xt, w = blk
        wlp = weighted_log_prob_t(xt, prepared, params.covariance_type)
        log_norm, resp = _normalise(wlp, w)
        return (total + jnp.sum(log_norm * w), nk + jnp.sum(resp, axis=1), sx + resp @ xt.T), resp

    zero = (
        jnp.zeros((), dtype),
        jnp.zeros((n_components,), dtype),
        jnp.zeros((n_components, n_features), dtype),
    )
    (loglik, nk, sx), RbT = jax.lax.scan(body, zero, (XbT, wb))
    return loglik, nk, sx, RbT


def e_step(Xb, wb, params: GMMParams):
    """E-step over row blocks.

    Returns
    -------
    loglik : array ()
        Sum over real rows of ``log p(x_n)``.
    resp : array (n_blocks, B, K)
        Responsibilities (zero on padding rows).
    """
    loglik, _, _, RbT = _e_pass(jnp.swapaxes(Xb, 1, 2), wb, params)
    return loglik, jnp.swapaxes(RbT, 1, 2)


def centred_step(Xb, wb, prior, reg_covar, covariance_type, axis_name=None):
    """One EM iteration with the centred kernels (exact at any offset of the data).

    Parameters
    ----------
    Xb : array (n_blocks, B, d)
        Data in row blocks (:func:`~bayesgmm.em.reference.to_blocks`).
    wb : array (n_blocks, B)
        Row weights (0 on padding rows).
    prior : Prior or None
    reg_covar : array ()
    covariance_type : str
    axis_name : str, optional
        Inside ``shard_map``: the mesh axis the row blocks are split over. Every statistic
        is then summed over its devices (``psum``) before the M-step, which every device
        computes alike.

    Returns
    -------
    step : callable
        ``step(params) -> (objective, new_params, ok)``: the objective at ``params`` (before
        the M-step), the parameters after one iteration, and ``ok`` (always true here; the
        expanded step of :func:`bayesgmm.em.expanded.expanded_step` has the same signature
        and refuses itself with ``ok`` false).
    """
    n_samples = _allsum(jnp.sum(wb), axis_name)
    XbT = jnp.swapaxes(Xb, 1, 2)
    kern = kernels_for(covariance_type)

    def step(params):
        loglik, nk, sx, RbT = _e_pass(XbT, wb, params)
        loglik, nk, sx = _allsum((loglik, nk, sx), axis_name)
        lb = _objective(loglik, params, prior, n_samples)
        new = _m_step_t(XbT, RbT, SufficientStats(nk, sx), kern, reg_covar, prior, axis_name)
        return lb, new, jnp.asarray(True)

    return step
