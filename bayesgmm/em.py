"""Expectation-maximisation for Gaussian mixtures, jitted once at module level.

The E-step is written as responsibilities per block of rows (from :mod:`bayesgmm.density`),
and the M-step as a function of additive sufficient statistics over those blocks
(``nk = sum r``, ``sx = sum r x``, and the scatter ``sum r (x - m)(x - m)^T`` around the new
means), so the same pieces serve chunked or multi-device EM. The loop is a
``lax.while_loop``; ``n_init`` restarts run together under ``vmap``.

Two sets of kernels compute the same iteration. The *centred* ones difference every point
against every component mean: exact at any offset of the data, used in float32 and on small
problems. The *expanded* ones (float64, larger problems) write the distances and the
statistics as matrix products of features of ``x - shift`` (one pass per iteration), bound
their rounding every iteration, and hand a refused step to the centred ones (see
"the expanded kernels" below and the README's EM benchmark).

Under a :class:`~bayesgmm.params.Prior` the M-step is the closed-form posterior mode and the
recorded objective is the log posterior per sample (log-likelihood plus log prior, over
``n_samples``); without one, it is the mean log-likelihood, exactly as in scikit-learn.
"""

from __future__ import annotations

import inspect
import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from . import density
from ._compile import LOW_OPT, SizedJit, is_small
from ._validation import INIT_METHODS, collapsed_runs
from .covariance import get_covariance_type
from .density import (
    block_rows,
    prepare,
    prepare_expanded,
    weighted_log_prob_expanded_t,
    weighted_log_prob_t,
)
from .hc import hc
from .kmeans import kmeans_fit, kmeans_plusplus
from .params import GMMParams, Prior

__all__ = [
    "reference_em",
    "EMResult",
    "SufficientStats",
    "to_blocks",
    "e_step",
    "sufficient_stats",
    "m_step",
    "log_prior",
    "initial_resp",
    "fit_em",
    "BestFit",
    "fit_best",
    "fit_summary",
    "FIT_FAILED_MESSAGE",
    "INIT_METHODS",
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


def to_blocks(X, n_components: int, rows: int | None = None):
    """Pad ``X`` (n, d) to whole blocks: returns ``(Xb (n_blocks, B, d), wb (n_blocks, B))``
    where ``wb`` is 1 for real rows and 0 for padding. ``rows`` (default: the density's
    :func:`~bayesgmm.density.block_rows`) caps ``B``; blocks are then evened out so that the
    padding is less than one block."""
    n, d = X.shape
    cap = block_rows(n_components, d) if rows is None else rows
    block = min(cap, n)
    n_blocks = -(-n // block)
    block = -(-n // n_blocks)
    n_blocks = -(-n // block)
    pad = n_blocks * block - n
    w = jnp.ones((n,), X.dtype)
    if pad:
        X = jnp.concatenate([X, jnp.zeros((pad, d), X.dtype)])
        w = jnp.concatenate([w, jnp.zeros((pad,), X.dtype)])
    return X.reshape(n_blocks, block, d), w.reshape(n_blocks, block)


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


def sufficient_stats(Xb, rb) -> SufficientStats:
    """First-order statistics from blocks of data and responsibilities."""
    nk = jnp.sum(rb, axis=(0, 1))
    sx = jnp.einsum("bnk,bnd->kd", rb, Xb)
    return SufficientStats(nk, sx)


def _scatter(XbT, RbT, centres, shift, ct):
    """Scatter around ``centres``, accumulated over blocks stored transposed."""

    def body(acc, blk):
        part = ct.scatter_t(blk[0], blk[1], centres, shift)
        return jax.tree_util.tree_map(jnp.add, acc, part), None

    zero = jax.tree_util.tree_map(
        jnp.zeros_like, jax.eval_shape(ct.scatter_t, XbT[0], RbT[0], centres, shift)
    )
    return ct.scatter_finalize(jax.lax.scan(body, zero, (XbT, RbT))[0], centres, shift)


def _m_step_t(XbT, RbT, stats: SufficientStats, ct, reg_covar, prior: Prior | None):
    means_ml = stats.sx / _regularised_count(stats.nk)[:, None]
    # The scatter is centred at the new means; the data mean is the shift of its other factor.
    shift = jnp.sum(stats.sx, axis=0) / jnp.sum(stats.nk)
    scatter = _scatter(XbT, RbT, means_ml, shift, ct)
    return _params_from(stats, scatter, ct, reg_covar, prior)


def _regularised_count(nk):
    # scikit-learn adds 10 eps to every count so that an empty component divides by non-zero.
    return nk + 10 * jnp.finfo(nk.dtype).eps


def _params_from(stats: SufficientStats, scatter, ct, reg_covar, prior: Prior | None):
    """The M-step's updates from the statistics and the scatter around the ML means (shared
    by the centred and the expanded kernels)."""
    nk = _regularised_count(stats.nk)
    means_ml = stats.sx / nk[:, None]
    if prior is None:
        weights = nk / jnp.sum(nk)
        return GMMParams.tree_unflatten(
            ct.name, (weights, means_ml, ct.ml_covariance(nk, means_ml, scatter, reg_covar))
        )
    alpha = prior.weight_concentration
    weights = nk + alpha - 1.0
    weights = weights / jnp.sum(weights)
    kappa = prior.mean_precision
    means = (stats.sx + kappa * prior.mean) / (nk + kappa)[:, None]
    cov = ct.map_covariance(nk, means_ml, scatter, reg_covar, prior)
    return GMMParams.tree_unflatten(ct.name, (weights, means, cov))


def m_step(Xb, rb, covariance_type: str, reg_covar, prior: Prior | None = None) -> GMMParams:
    """M-step from data and responsibilities in blocks.

    Maximum likelihood (scikit-learn's updates, including its ``10 * eps`` added to ``nk``)
    or, with ``prior``, the closed-form posterior mode.
    """
    ct = get_covariance_type(covariance_type)
    stats = sufficient_stats(Xb, rb)
    return _m_step_t(jnp.swapaxes(Xb, 1, 2), jnp.swapaxes(rb, 1, 2), stats, ct, reg_covar, prior)


def log_prior(params: GMMParams, prior: Prior):
    """Log prior density of unbatched parameters: Dirichlet weights plus the components'
    conjugate prior (the same distributions the NumPyro model samples)."""
    lp_w = dist.Dirichlet(prior.weight_concentration).log_prob(params.weights)
    return lp_w + params.cov.log_prior(params.means, params.covariances, prior)


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


# The loop's state: an EMResult's fields plus ``stopped`` (a step of the expanded kernels was
# refused; the centred kernels take over, see _run_program).
_LoopState = NamedTuple("_LoopState", [*EMResult.__annotations__.items(), ("stopped", jax.Array)])


def _start_state(params0, lb_init, max_iter: int, dtype) -> _LoopState:
    return _LoopState(
        params0,
        jnp.asarray(lb_init, dtype),
        # At least one slot: the loop body is traced even when max_iter=0 never runs it.
        jnp.full((max(max_iter, 1),), jnp.nan, dtype),
        jnp.asarray(0, jnp.int32),
        jnp.asarray(False),
        ~_all_finite(params0),
        jnp.asarray(False),
    )


def _loop(step, state: _LoopState, tol, max_iter: int, stop_when=None) -> _LoopState:
    """EM iterations from ``state`` until convergence, failure, ``max_iter`` or a refused step.

    ``step(params) -> (objective, new_params, ok)``. A step with ``ok`` false (the expanded
    kernels' error bound was not met) is discarded: the loop stops with ``stopped`` set, at
    the parameters before it, so that the centred kernels can redo that iteration. The loop
    also stops (``stopped`` set) once ``stop_when(state)`` holds after a step.
    """
    state = state._replace(stopped=jnp.zeros_like(state.stopped))

    def cond(st):
        return (st.n_iter < max_iter) & ~st.converged & ~st.failed & ~st.stopped

    def body(st):
        lb, new, ok = step(st.params)
        failed = ok & ~(jnp.isfinite(lb) & _all_finite(new))
        take = ok & ~failed
        params = jax.tree_util.tree_map(lambda a, b: jnp.where(take, b, a), st.params, new)
        st = _LoopState(
            params,
            jnp.where(ok, lb, st.lower_bound),
            jnp.where(ok, st.lower_bounds.at[st.n_iter].set(lb), st.lower_bounds),
            st.n_iter + ok.astype(jnp.int32),
            take & (jnp.abs(lb - st.lower_bound) < tol),
            failed,
            ~ok,
        )
        if stop_when is not None:
            st = st._replace(stopped=st.stopped | stop_when(st))
        return st

    return jax.lax.while_loop(cond, body, state)


def _result(st: _LoopState) -> EMResult:
    return EMResult(st.params, st.lower_bound, st.lower_bounds, st.n_iter, st.converged, st.failed)


def _centred_step(Xb, wb, prior, reg_covar):
    """One EM iteration with the centred kernels (exact at any offset of the data)."""
    n_samples = jnp.sum(wb)
    XbT = jnp.swapaxes(Xb, 1, 2)

    def step(params):
        cov_type = get_covariance_type(params.covariance_type)
        loglik, nk, sx, RbT = _e_pass(XbT, wb, params)
        lb = _objective(loglik, params, prior, n_samples)
        new = _m_step_t(XbT, RbT, SufficientStats(nk, sx), cov_type, reg_covar, prior)
        return lb, new, jnp.asarray(True)

    return step


# --- the expanded kernels (float64) --------------------------------------------------------
# See CovarianceType.features_t: the E-step and the M-step's statistics become one matrix
# product each per block, in a single pass over the data. Every iteration bounds the rounding
# the expansion can cause and refuses the step when the bound is not small; the run then
# continues with the centred kernels from the same parameters (mode "resume" of
# ``_em_program``, driven by ``_run_program``).

#: Largest bound accepted on the absolute error of a squared Mahalanobis distance. It is
#: ``5e-8`` on a log density, far below what moves a fit (parity with scikit-learn is checked
#: at rtol 1e-6 on every fitted attribute).
MAHA_ERROR_LIMIT = 1e-7
#: Largest accepted relative error of a regularised covariance from the moment cancellation.
SCATTER_ERROR_LIMIT = 1e-9
#: Rows per block of the expanded pass. Sweeps of 512 to 16384 rows on
#: the project's 2-core machine: flat within 5 % at (1e5, 10, 10), 1024 best at (2e5, 50, 20).
EXPANDED_BLOCK_ROWS = 1024


def _maha_within_limit(far, n_expanded: int, dtype):
    """Whether the rounding bound on the expanded distances meets :data:`MAHA_ERROR_LIMIT`:
    ``far_k`` bounds every term of component k's expansion at its own points, ``sqrt(F)`` the
    accumulation of F products (probabilistic, with a factor 16 of margin)."""
    bound = 16.0 * np.sqrt(n_expanded) * jnp.finfo(dtype).eps * jnp.max(far)
    return bound <= MAHA_ERROR_LIMIT


def _n_expanded(ct, n_features: int) -> int:
    return jax.eval_shape(ct.features_t, jax.ShapeDtypeStruct((n_features, 1), jnp.float64)).shape[
        0
    ]


def _data_mean(XbT, wb):
    """The mean of the real rows of blocks stored transposed: the expansion's shift, (d,)."""
    return jnp.einsum("bdn,bn->d", XbT, wb) / jnp.sum(wb)


def _data_summary(XbT, wb, ct):
    """The shift (the data mean, (d,)) and, for types that need it, ``sum u u^T`` (d, d)."""
    shift = _data_mean(XbT, wb)
    if not ct.needs_data_scatter:
        return shift, None

    def body(acc, blk):
        xt, w = blk
        ut = xt - shift[:, None]
        return acc + (ut * w) @ ut.T, None

    d = XbT.shape[1]
    return shift, jax.lax.scan(body, jnp.zeros((d, d), XbT.dtype), (XbT, wb))[0]


def _expanded_pass(XbT, wb, params: GMMParams, shift):
    """E-step and every M-step statistic in one pass: ``(loglik, nk, moments, far)`` with
    ``moments = sum_n r_kn phi(u_n)`` (K, F)."""
    ct = params.cov
    prepared, far = prepare_expanded(params, shift)
    dtype = XbT.dtype

    def body(carry, blk):
        total, nk, moments = carry
        xt, w = blk
        ut = xt - shift[:, None]
        phi = ct.features_t(ut)
        wlp = weighted_log_prob_expanded_t(ut, phi, prepared, ct.name)
        log_norm, resp = _normalise(wlp, w)
        total = total + jnp.sum(log_norm * w)
        return (total, nk + jnp.sum(resp, axis=1), moments + resp @ phi.T), None

    k = params.n_components
    n_exp = _n_expanded(ct, params.n_features)
    zero = (jnp.zeros((), dtype), jnp.zeros((k,), dtype), jnp.zeros((k, n_exp), dtype))
    (loglik, nk, moments), _ = jax.lax.scan(body, zero, (XbT, wb))
    return loglik, nk, moments, far


def _maha_ok(params: GMMParams, shift):
    """Whether the expanded distances at ``params`` meet :data:`MAHA_ERROR_LIMIT` (no data
    pass: the bound depends on the parameters and the shift only)."""
    _, far = prepare_expanded(params, shift)
    return _maha_within_limit(far, _n_expanded(params.cov, params.n_features), params.dtype)


def _expanded_step(Xb, wb, prior, reg_covar, covariance_type):
    """One EM iteration with the expanded kernels, and whether its error bounds hold."""
    n_samples = jnp.sum(wb)
    XbT = jnp.swapaxes(Xb, 1, 2)
    ct = get_covariance_type(covariance_type)
    shift, data_scatter = _data_summary(XbT, wb, ct)
    d = Xb.shape[-1]
    n_exp = _n_expanded(ct, d)
    eps = jnp.finfo(Xb.dtype).eps

    def step(params):
        loglik, nk, moments, far = _expanded_pass(XbT, wb, params, shift)
        s1 = moments[:, :d]
        count = _regularised_count(nk)
        sx = s1 + nk[:, None] * shift
        centres = sx / count[:, None] - shift
        count_reg = (jnp.sum(count) if ct.needs_data_scatter else count) * reg_covar
        scatter, ratio = ct.scatter_from_moments(
            s1, moments[:, d:], nk, centres, data_scatter, count_reg
        )
        new = _params_from(SufficientStats(nk, sx), scatter, ct, reg_covar, prior)
        lb = _objective(loglik, params, prior, n_samples)
        ok = (
            _maha_within_limit(far, n_exp, Xb.dtype)
            & (4.0 * eps * ratio <= SCATTER_ERROR_LIMIT)
            & jnp.isfinite(lb)
            & _all_finite(new)
            # A covariance that lost positive definiteness to rounding is refused here, so the
            # centred kernels decide whether the fit really failed.
            & _all_finite(ct.precision_cholesky(new.covariances))
        )
        return lb, new, ok

    return step


def use_expanded(dtype, n_samples: int, n_components: int, n_features: int) -> bool:
    """Whether EM runs the expanded kernels: float64 only (in float32 the cancellation they
    bound would refuse most steps) and not on small problems, where the run costs milliseconds
    and a second compiled loop (for a refused step) would only add compile time."""
    return jnp.dtype(dtype) == jnp.float64 and not is_small(n_samples, n_components, n_features)


def initial_resp(key, X, n_components: int, method: str):
    """Initial responsibilities (n_samples, K) by one of :data:`INIT_METHODS`
    (scikit-learn's definitions: k-means labels, one-hot on k-means++ seeds, uniform random
    rows normalised, or one-hot on random distinct data points; and ``"hc"``, one-hot on the
    partition of mclust's model-based hierarchical clustering, :func:`bayesgmm.hc.hc`, which
    ignores ``key`` and runs in NumPy, so not inside ``jit``)."""
    n = X.shape[0]
    if method == "hc":
        return _hc_resp(X, n_components)
    if method == "kmeans":
        labels = kmeans_fit(key, X, n_components, 1, "k-means++").labels
        return jax.nn.one_hot(labels, n_components, dtype=X.dtype)
    if method == "k-means++":
        _, idx = kmeans_plusplus(key, X, n_components)
        return jnp.zeros((n, n_components), X.dtype).at[idx, jnp.arange(n_components)].set(1.0)
    if method == "random":
        r = jax.random.uniform(key, (n, n_components), X.dtype)
        return r / jnp.sum(r, axis=1, keepdims=True)
    if method == "random_from_data":
        idx = jax.random.choice(key, n, (n_components,), replace=False)
        return jnp.zeros((n, n_components), X.dtype).at[idx, jnp.arange(n_components)].set(1.0)
    raise ValueError(f"init_params must be one of {INIT_METHODS}; got {method!r}")


def _hc_resp(X, n_components: int):
    """One-hot responsibilities (n_samples, K) of the hierarchical clustering's partition."""
    if isinstance(X, jax.core.Tracer):
        raise TypeError(
            "init_params='hc' builds its tree in NumPy and needs concrete data, not a traced "
            "array inside jit; compute the responsibilities outside (bayesgmm.hc.hc) and pass "
            "resp_init"
        )
    labels = hc(np.asarray(X)).labels(n_components)
    return jnp.asarray(np.eye(n_components, dtype=np.asarray(X).dtype)[labels])


def _resp_blocks(resp, Xb):
    nb, b, _ = Xb.shape
    pad = nb * b - resp.shape[0]
    if pad:
        resp = jnp.concatenate([resp, jnp.zeros((pad, resp.shape[1]), resp.dtype)])
    return resp.reshape(nb, b, -1)


# Compiled programs. Fitting is split into three so that each compiles once and is shared:
#
# * ``_initial_resp_one``: one restart's initial responsibilities. It does not depend on the
#   covariance type, the number of restarts, ``max_iter`` or the prior, so a model-selection
#   grid compiles it once per number of components. k-means (``init_params="kmeans"``) is the
#   module-level ``kmeans_fit`` program, the one ``bayesgmm.KMeans`` runs too.
# * ``_initial_params_one``: the initial M-step of one restart (depends on the covariance type
#   and on the prior, but not on the number of restarts or ``max_iter``).
# * ``_em_program``: the EM loop of every restart (``vmap``) from a batch of starting parameters,
#   whatever initialisation produced them (k-means, random, user-given, warm start).
#
# Before this split, k-means and the initial M-step were compiled into the EM program itself:
# once per covariance type, ``n_init`` and ``max_iter``, which more than doubled compile time.
#
# Each is a SizedJit: small problems, where compilation dominates, compile at XLA's optimisation
# level 0 (see bayesgmm._compile); ``.pick(n, K, d)`` chooses the variant from the shapes.
_initial_resp_one = SizedJit(initial_resp, static_argnames=("n_components", "method"))


def _initial_params_impl(X, resp, covariance_type: str, reg_covar, prior: Prior | None):
    # The initial M-step is the run's own M-step (maximum likelihood as in scikit-learn, or the
    # posterior mode under a prior, which stays positive definite on collapsed points where the
    # ML covariance is singular).
    Xb, _ = to_blocks(X, resp.shape[1])
    return m_step(Xb, _resp_blocks(resp, Xb), covariance_type, reg_covar, prior)


_initial_params_one = SizedJit(_initial_params_impl, static_argnames=("covariance_type",))


def _em_impl(X, states: _LoopState, prior, tol, reg_covar, until, max_iter: int, mode: str):
    """EM iterations of every run of the batch ``states`` (leading axis: restarts), together.

    ``mode`` is ``"centred"`` (the exact kernels), ``"expanded"`` (the fast kernels; a run
    whose step is refused stops with ``stopped`` set) or ``"resume"`` (the centred kernels for
    stopped runs, which stop again once they have reached ``until`` iterations and the
    expanded kernels' bound holds, so the fast kernels can take over). Returns the batched
    loop states.
    """
    n_components = states.params.means.shape[-2]
    stop_when = None
    if mode == "expanded":
        ct = get_covariance_type(states.params.covariance_type)
        Xb, wb = to_blocks(X, n_components, EXPANDED_BLOCK_ROWS)
        step = _expanded_step(Xb, wb, prior, reg_covar, ct.name)
    else:
        Xb, wb = to_blocks(X, n_components)
        step = _centred_step(Xb, wb, prior, reg_covar)
        if mode == "resume":
            shift = _data_mean(jnp.swapaxes(Xb, 1, 2), wb)

            def stop_when(st, until):
                return (st.n_iter >= until) & _maha_ok(st.params, shift)

    def one(st, until):
        stop = None if stop_when is None else (lambda st: stop_when(st, until))
        return _loop(step, st, tol, max_iter, stop)

    return jax.vmap(one)(states, until)


# One compiled program per mode; "resume" is compiled only when a fit needs it.
_em_program = SizedJit(_em_impl, static_argnames=("max_iter", "mode"))


def _start_states(starts: GMMParams, lower_bound_init, max_iter: int) -> _LoopState:
    """Loop states at the start of every restart (leading axis: restarts). Built in NumPy
    outside ``jit``, so that nothing is compiled for them."""
    if isinstance(starts.means, jax.core.Tracer):
        return jax.vmap(lambda p: _start_state(p, lower_bound_init, max_iter, p.dtype))(starts)
    n_init = starts.weights.shape[0]
    dtype = starts.means.dtype
    finite = np.ones(n_init, bool)
    for leaf in jax.tree_util.tree_leaves(starts):
        finite &= np.isfinite(np.asarray(leaf)).reshape(n_init, -1).all(axis=1)
    return _LoopState(
        starts,
        np.full(n_init, lower_bound_init, dtype),
        np.full((n_init, max(max_iter, 1)), np.nan, dtype),
        np.zeros(n_init, np.int32),
        np.zeros(n_init, bool),
        ~finite,
        np.zeros(n_init, bool),
    )


def _pending(states: _LoopState, max_iter: int) -> bool:
    """Whether some run stopped before converging, failing or using ``max_iter``."""
    stopped, converged, failed, n_iter = (
        np.asarray(a) for a in (states.stopped, states.converged, states.failed, states.n_iter)
    )
    return bool(np.any(stopped & ~converged & ~failed & (n_iter < max_iter)))


def _run_program(args, static) -> _LoopState:
    """Run EM from the prepared arguments: the one fallback policy between the two kernels.

    Small problems and float32 run ``"centred"`` only (exact at any offset; one program).
    Otherwise each run moves between two states; every arrow is one compiled call over the
    whole batch of restarts, and runs that are done (converged, failed or at ``max_iter``)
    simply stop iterating inside it::

        start --> EXPANDED --(every step's rounding bound holds)----------> done
                     |   ^
        a step's     |   | after c centred iterations, once the distance bound
        bound fails: |   | holds again at the current parameters (mode "resume")
        the step is  v   |
        discarded   CENTRED (redoes the refused iteration exactly)
                         c = 1, 2, 4, ... doubling at each hand-back

    A run that keeps failing the bound costs at most a few refused steps, and its remaining
    iterations are centred ones, so the result is always an exact EM run. Inside another
    ``jit`` (no host to decide), stopped runs finish centred in the same trace.
    """
    X, states, prior, tol, reg_covar, until = args
    max_iter, mode = static["max_iter"], static["mode"]
    program = _em_program.pick(*_problem_size(args), data=X)
    if max_iter == 0 and not isinstance(X, jax.core.Tracer):
        return states  # plotting.em_path and step-by-step warm starts ask for the start alone
    states = program(*args, **static)
    if mode != "expanded":
        return states
    if isinstance(X, jax.core.Tracer):
        # Inside another jit there is no host to decide: finish stopped runs centred.
        never = jnp.full(states.n_iter.shape, max_iter + 1, jnp.int32)
        return program(X, states, prior, tol, reg_covar, never, max_iter=max_iter, mode="resume")
    centred_iters = 1
    while _pending(states, max_iter):
        until = jnp.asarray(np.asarray(states.n_iter) + centred_iters, jnp.int32)
        states = program(X, states, prior, tol, reg_covar, until, max_iter=max_iter, mode="resume")
        if not _pending(states, max_iter):
            break
        states = program(
            X, states, prior, tol, reg_covar, until, max_iter=max_iter, mode="expanded"
        )
        centred_iters *= 2
    return states


def _initial_resp(key, X, n_components: int, method: str):
    if method not in INIT_METHODS:
        raise ValueError(f"init_params must be one of {INIT_METHODS}; got {method!r}")
    if method == "kmeans":
        # The shared k-means program (the same call bayesgmm.KMeans makes), then a one-hot.
        labels = kmeans_fit(key, X, n_components, 1, "k-means++").labels
        return jax.nn.one_hot(labels, n_components, dtype=X.dtype)
    if method == "hc":
        return _hc_resp(X, n_components)
    return _initial_resp_one.pick(X.shape[0], n_components, X.shape[1], data=X)(
        key, X, n_components, method
    )


def _starts(
    key,
    X,
    n_components,
    covariance_type,
    n_init,
    init_params,
    reg_covar,
    prior,
    weights_init,
    means_init,
    covariances_init,
    params_init,
    resp_init=None,
) -> GMMParams:
    """Starting parameters of every restart, stacked along a leading ``n_init`` axis."""
    ct = get_covariance_type(covariance_type)
    dtype = X.dtype
    initial_m_step = _initial_params_one.pick(X.shape[0], n_components, X.shape[1], data=X)
    if params_init is not None:
        p = params_init.astype(dtype)
        return jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (n_init,) + a.shape), p)
    given = (weights_init, means_init, covariances_init)
    overrides = [None if a is None else jnp.asarray(a, dtype) for a in given]
    if all(a is not None for a in overrides):
        runs = [overrides] * n_init
    else:
        runs = []
        if resp_init is None and init_params == "hc":
            # The tree is deterministic: every restart would build the same one.
            resp_init = _hc_resp(X, n_components)
        if resp_init is not None:
            resp_init = jnp.asarray(resp_init, dtype)
        # One restart at a time through the shared programs (not a vmap): their compiled form
        # then does not depend on n_init. Same keys as jax.random.split(key, n_init) gave the
        # restarts when initialisation ran inside the EM program.
        for k in jax.random.split(key, n_init):
            resp = (
                _initial_resp(k, X, n_components, init_params) if resp_init is None else resp_init
            )
            p = initial_m_step(X, resp, ct.name, reg_covar, prior)
            runs.append(
                [
                    default if override is None else override
                    for default, override in zip((p.weights, p.means, p.covariances), overrides)
                ]
            )
    leaves = [jnp.stack(parts) for parts in zip(*runs)]
    return GMMParams.tree_unflatten(ct.name, tuple(leaves))


def _prepare(
    key,
    X,
    n_components,
    covariance_type,
    n_init,
    init_params,
    max_iter,
    tol,
    reg_covar,
    prior,
    weights_init,
    means_init,
    covariances_init,
    params_init,
    lower_bound_init,
    resp_init=None,
):
    X = jnp.asarray(X)
    dtype = X.dtype
    if prior is not None:
        prior = prior.astype(dtype)
    # Strongly typed scalars of the data's dtype: a Python float and a NumPy float then share
    # one compiled program (weak and strong types would each compile their own).
    tol = jnp.asarray(tol, dtype)
    reg_covar = jnp.asarray(reg_covar, dtype)
    lower_bound_init = jnp.asarray(lower_bound_init, dtype)
    starts = _starts(
        key,
        X,
        int(n_components),
        covariance_type,
        int(n_init),
        init_params,
        reg_covar,
        prior,
        weights_init,
        means_init,
        covariances_init,
        params_init,
        resp_init,
    )
    expanded = use_expanded(dtype, X.shape[0], int(n_components), X.shape[1])
    static = {"max_iter": int(max_iter), "mode": "expanded" if expanded else "centred"}
    states = _start_states(starts, lower_bound_init, int(max_iter))
    # ``until`` matters in "resume" mode only; passed always so every mode has one signature.
    until = np.zeros(int(n_init), np.int32)
    return (X, states, prior, tol, reg_covar, until), static


def fit_em(
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
    lower_bound_init=-jnp.inf,
    resp_init=None,
) -> EMResult:
    """Fit a mixture by EM from ``n_init`` initialisations at once.

    Initialisation (k-means, random, ...) and the initial M-step run as their own compiled
    programs, one restart at a time; the EM loops of all restarts then run together under
    ``vmap`` in one program compiled per (data shape, covariance type, ``n_init``,
    ``max_iter``, prior or not) and shared by every initialisation method.

    Parameters
    ----------
    key : jax.random key
    X : array of shape (n_samples, n_features), float32 or float64 (the computation dtype)
    n_components : int
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    n_init : int
        Restarts, run together under ``vmap``.
    init_params : str
        One of :data:`INIT_METHODS`.
    max_iter : int
    tol, reg_covar : float
        Traced, so changing them does not recompile.
    prior : Prior, optional
        MAP-EM under this prior.
    weights_init : array (K,), optional
    means_init : array (K, d), optional
    covariances_init : array (compact shape), optional
        User-given starting values override the initialisation's; when all three are given
        no initialisation runs.
    params_init : GMMParams, optional
        Start every restart from these parameters (warm start).
    lower_bound_init : float, default -inf
        Objective the first iteration is compared with for convergence; a warm start passes
        the previous fit's ``lower_bound_`` (scikit-learn's convention).
    resp_init : array (n_samples, K), optional
        Start every restart from the M-step of these responsibilities instead of running
        ``init_params`` (``weights_init``/``means_init``/``covariances_init`` still override).

    Returns
    -------
    EMResult
        With a leading axis of length ``n_init`` on every field.

    Notes
    -----
    ``fit_em.lower(...)`` (same arguments) runs the initialisation and returns the lowered EM
    program, for ahead-of-time compilation and for timing compilation.
    """
    # locals() here holds exactly fit_em's parameters, which _prepare takes by name.
    args, static = _prepare(**locals())
    return _result(_run_program(args, static))


def _problem_size(args):
    X, states = args[0], args[1]
    return X.shape[0], states.params.means.shape[-2], X.shape[1]


def _lower(key, X, n_components, covariance_type="full", **kwargs):
    sig = inspect.signature(fit_em)
    bound = sig.bind(key, X, n_components, covariance_type, **kwargs)
    bound.apply_defaults()
    args, static = _prepare(**bound.arguments)
    return _em_program.pick(*_problem_size(args)).lower(*args, **static)


fit_em.lower = _lower


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
    X = np.asarray(X)
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
