"""EM as the textbook writes it: read this first.

:func:`reference_em` is one ``lax.while_loop`` of the plain iteration (E-step, statistics,
M-step on the exact centred kernels). The rest of the package runs the same iteration faster
and is tested against it, iteration by iteration:

* :mod:`bayesgmm.em.centred` fuses the E-step with the first-order statistics in one pass over
  row blocks;
* :mod:`bayesgmm.em.expanded` is the float64 fast step (matrix products of features, rounding
  bounds, refusal);
* :mod:`bayesgmm.em.driver` runs the loops of every restart together (``fit_em``) and owns the
  one fallback policy between the two kernels;
* :mod:`bayesgmm.em.init` computes the starting parameters, :mod:`bayesgmm.em.best` picks the
  best of ``n_init`` runs (``fit_best``, what ``GaussianMixture`` and ``fit_posterior`` call).

The M-step is written as a function of additive sufficient statistics over row blocks
(``nk = sum r``, ``sx = sum r x`` and the scatter ``sum r (x - m)(x - m)^T`` around the new
means), so the same pieces serve chunked or multi-device EM. Under a
:class:`~bayesgmm.prior.Prior` the M-step is the closed-form posterior mode and the recorded
objective is the log posterior per sample (log-likelihood plus log prior, over ``n_samples``);
without one, it is the mean log-likelihood, exactly as in scikit-learn.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .. import density
from ..density import block_rows
from ..params import GMMParams
from ..prior import Prior, log_prior
from .kernels import kernels_for

__all__ = [
    "reference_em",
    "EMResult",
    "SufficientStats",
    "to_blocks",
    "sufficient_stats",
    "m_step",
    "log_prior",
]


class EMResult(NamedTuple):
    """Outcome of EM runs; every field has a leading ``n_init`` axis from :func:`fit_em`.

    Attributes
    ----------
    params : GMMParams
        Parameters after the last M-step.
    lower_bound : array ()
        Objective at the last iteration (evaluated at the parameters before its M-step,
        as scikit-learn's ``lower_bound_``).
    lower_bounds : array (max_iter,)
        Objective at every iteration; NaN after ``n_iter``.
    n_iter : int array ()
    converged : bool array ()
    failed : bool array ()
        A non-finite value appeared (a covariance lost positive definiteness); ``params``
        then holds the last finite parameters.
    """

    params: GMMParams
    lower_bound: jax.Array
    lower_bounds: jax.Array
    n_iter: jax.Array
    converged: jax.Array
    failed: jax.Array


class SufficientStats(NamedTuple):
    """Additive statistics of one M-step (sum them over row blocks or devices).

    nk : (K,) sum of responsibilities
    sx : (K, d) responsibility-weighted sum of x
    """

    nk: jax.Array
    sx: jax.Array


def to_blocks(X, n_components: int, rows: int | None = None, weights=None, n_shards: int = 1):
    """Pad ``X`` (n, d) to whole blocks: returns ``(Xb (n_blocks, B, d), wb (n_blocks, B))``
    where ``wb`` is the row's weight (``weights`` (n,), the sample weights, or 1) for real
    rows and 0 for padding. ``rows`` (default: the density's
    :func:`~bayesgmm.density.block_rows`) caps ``B``; blocks are then evened out so that the
    padding is less than one block. ``n_blocks`` is a multiple of ``n_shards`` (the devices
    sharded EM splits the blocks over), with the padding then less than one row per block.

    Every pass multiplies each row's responsibilities and log density by its ``wb``, so a
    sample weight enters EM exactly as a padding row's zero does: an integer weight is that
    many copies of the row."""
    n, d = X.shape
    cap = block_rows(n_components, d) if rows is None else rows
    block = min(cap, n)
    n_blocks = -(-n // block)
    block = -(-n // n_blocks)
    n_blocks = -(-n // block)
    if n_shards > 1:
        # Every device gets the same number of blocks; evening the blocks out again keeps the
        # padding below one row per block.
        n_blocks = -(-n_blocks // n_shards) * n_shards
        block = -(-n // n_blocks)
    pad = n_blocks * block - n
    w = jnp.ones((n,), X.dtype) if weights is None else jnp.asarray(weights, X.dtype)
    if pad:
        X = jnp.concatenate([X, jnp.zeros((pad, d), X.dtype)])
        w = jnp.concatenate([w, jnp.zeros((pad,), X.dtype)])
    return X.reshape(n_blocks, block, d), w.reshape(n_blocks, block)


def sufficient_stats(Xb, rb) -> SufficientStats:
    """First-order statistics from blocks of data and responsibilities."""
    nk = jnp.sum(rb, axis=(0, 1))
    sx = jnp.einsum("bnk,bnd->kd", rb, Xb)
    return SufficientStats(nk, sx)


def _allsum(tree, axis_name):
    """``tree`` summed over the devices of the mesh axis ``axis_name`` (sharded EM, inside
    ``shard_map``: every device holds a share of the row blocks); unchanged when None."""
    return tree if axis_name is None else jax.lax.psum(tree, axis_name)


def _scatter_sums(XbT, RbT, centres, shift, kern):
    """``kern.scatter_t``'s additive statistics summed over blocks stored transposed (sum them
    over chunks or devices, then ``kern.scatter_finalize``)."""

    def body(acc, blk):
        part = kern.scatter_t(blk[0], blk[1], centres, shift)
        return jax.tree_util.tree_map(jnp.add, acc, part), None

    zero = jax.tree_util.tree_map(
        jnp.zeros_like, jax.eval_shape(kern.scatter_t, XbT[0], RbT[0], centres, shift)
    )
    return jax.lax.scan(body, zero, (XbT, RbT))[0]


def _scatter(XbT, RbT, centres, shift, kern, axis_name=None):
    """Scatter around ``centres``, accumulated over blocks stored transposed (and over the
    devices of ``axis_name``)."""
    summed = _allsum(_scatter_sums(XbT, RbT, centres, shift, kern), axis_name)
    return kern.scatter_finalize(summed, centres, shift)


def _m_step_t(
    XbT, RbT, stats: SufficientStats, kern, reg_covar, prior: Prior | None, axis_name=None
):
    """The M-step from (device-summed) ``stats`` and this device's blocks."""
    means_ml = stats.sx / _regularised_count(stats.nk)[:, None]
    # The scatter is centred at the new means; the data mean is the shift of its other factor.
    shift = jnp.sum(stats.sx, axis=0) / jnp.sum(stats.nk)
    scatter = _scatter(XbT, RbT, means_ml, shift, kern, axis_name)
    return _params_from(stats, scatter, kern, reg_covar, prior)


def _regularised_count(nk):
    # scikit-learn adds 10 eps to every count so that an empty component divides by non-zero.
    return nk + 10 * jnp.finfo(nk.dtype).eps


def _params_from(stats: SufficientStats, scatter, kern, reg_covar, prior: Prior | None):
    """The M-step's updates from the statistics and the scatter around the ML means (shared
    by the centred and the expanded kernels)."""
    nk = _regularised_count(stats.nk)
    means_ml = stats.sx / nk[:, None]
    if prior is None:
        weights = nk / jnp.sum(nk)
        return GMMParams.tree_unflatten(
            kern.name, (weights, means_ml, kern.ml_covariance(nk, means_ml, scatter, reg_covar))
        )
    alpha = prior.weight_concentration
    weights = nk + alpha - 1.0
    weights = weights / jnp.sum(weights)
    kappa = prior.mean_precision
    means = (stats.sx + kappa * prior.mean) / (nk + kappa)[:, None]
    cov = kern.map_covariance(nk, means_ml, scatter, reg_covar, prior)
    return GMMParams.tree_unflatten(kern.name, (weights, means, cov))


def m_step(Xb, rb, covariance_type: str, reg_covar, prior: Prior | None = None) -> GMMParams:
    """M-step from data and responsibilities in blocks.

    Maximum likelihood (scikit-learn's updates, including its ``10 * eps`` added to ``nk``)
    or, with ``prior``, the closed-form posterior mode.
    """
    kern = kernels_for(covariance_type)
    stats = sufficient_stats(Xb, rb)
    return _m_step_t(jnp.swapaxes(Xb, 1, 2), jnp.swapaxes(rb, 1, 2), stats, kern, reg_covar, prior)


def _objective(loglik, params, prior, n_samples):
    if prior is None:
        return loglik / n_samples
    return (loglik + log_prior(params, prior)) / n_samples


def _all_finite(tree):
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]))


# --- the reference iteration: EM as the textbook writes it ---------------------------------


def reference_em(
    X,
    params: GMMParams,
    *,
    prior: Prior | None = None,
    reg_covar=1e-6,
    tol=1e-3,
    max_iter: int = 100,
) -> EMResult:
    """EM from ``params`` in its plainest form, one ``lax.while_loop``: read this first.

    Each iteration is the textbook's (Bishop, PRML 9.2.2; scikit-learn's
    ``GaussianMixture``):

    1. **E-step.** ``log w_k + log N(x_n | mu_k, Sigma_k)`` for every row and component
       (:func:`bayesgmm.density.component_log_prob`, the centred, exact form);
       ``log p(x_n)`` is their log-sum-exp and the responsibilities are
       ``r_nk = exp(log w_k N(...) - log p(x_n))``.
    2. **Objective.** The mean log-likelihood ``sum_n log p(x_n) / n`` at the parameters the
       E-step used (plus ``log prior / n`` under a prior). It is recorded before the M-step,
       as scikit-learn's ``lower_bound_`` is.
    3. **Statistics and M-step.** ``n_k = sum_n r_nk``, ``s_k = sum_n r_nk x_n`` and the
       scatter around the new means, then the covariance type's estimator
       (:func:`m_step`: weights ``n_k / n``, means ``s_k / n_k``, covariances the weighted
       scatter plus ``reg_covar``; the closed-form posterior mode under ``prior``).
    4. **Stop** when the objective moved by less than ``tol``, at ``max_iter``, or when a
       value stopped being finite (``failed``; the last finite parameters are kept).

    :func:`fit_em` runs the same iterations faster (rows in blocks, one fused pass, the
    expanded float64 kernels with their rounding guards, restarts under ``vmap``); the test
    suite checks it against this function iteration by iteration.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    params : GMMParams
        Starting parameters, no batch axis.
    prior : Prior, optional
    reg_covar, tol : float
    max_iter : int

    Returns
    -------
    EMResult
        Without the leading ``n_init`` axis.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm import GMMParams
    >>> from bayesgmm.em import reference_em
    >>> X = np.array([[-2.1], [-1.9], [-2.0], [1.9], [2.1], [2.0]])
    >>> start = GMMParams([0.5, 0.5], [[-1.0], [1.0]], [1.0, 1.0], "spherical")
    >>> res = reference_em(X, start, max_iter=50)
    >>> np.round(np.asarray(res.params.means).ravel(), 3), bool(res.converged)
    (array([-2.,  2.]), True)
    """
    X = jnp.asarray(X)
    dtype = X.dtype
    n_samples = X.shape[0]
    params = params.astype(dtype)
    prior = None if prior is None else prior.astype(dtype)
    Xb = X[None]  # one block of all rows: the M-step's functions take blocks

    def iteration(params):
        log_wp = density.component_log_prob(X, params) + jnp.log(params.weights)  # (n, K)
        log_px = jax.scipy.special.logsumexp(log_wp, axis=1)
        resp = jnp.exp(log_wp - log_px[:, None])
        objective = _objective(jnp.sum(log_px), params, prior, n_samples)
        new = m_step(Xb, resp[None], params.covariance_type, reg_covar, prior)
        return objective, new

    def cond(st):
        return (st.n_iter < max_iter) & ~st.converged & ~st.failed

    def body(st):
        objective, new = iteration(st.params)
        failed = ~(jnp.isfinite(objective) & _all_finite(new))
        return EMResult(
            jax.tree_util.tree_map(lambda a, b: jnp.where(failed, a, b), st.params, new),
            objective,
            st.lower_bounds.at[st.n_iter].set(objective),
            st.n_iter + 1,
            ~failed & (jnp.abs(objective - st.lower_bound) < tol),
            failed,
        )

    start = EMResult(
        params,
        jnp.asarray(-jnp.inf, dtype),
        jnp.full((max(max_iter, 1),), jnp.nan, dtype),
        jnp.asarray(0, jnp.int32),
        jnp.asarray(False),
        ~_all_finite(params),
    )
    return jax.lax.while_loop(cond, body, start)
