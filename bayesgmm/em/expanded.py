"""The expanded kernels' EM step (float64): one pass of matrix products per iteration.

The E-step's distances and the M-step's statistics are matrix products of features of
``x - shift`` (:mod:`bayesgmm.em.kernels`). Every iteration bounds the rounding the expansion
can cause and refuses the step when the bound is not small; the run then continues with the
centred kernels from the same parameters (the policy is :func:`bayesgmm.em.driver._run_program`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._compile import is_small
from ..density import log_offset
from ..params import GMMParams
from .centred import _normalise
from .kernels import kernels_for
from .reference import (
    SufficientStats,
    _all_finite,
    _allsum,
    _objective,
    _params_from,
    _regularised_count,
)

__all__ = [
    "prepare_expanded",
    "weighted_log_prob_expanded_t",
    "expanded_step",
    "use_expanded",
    "MAHA_ERROR_LIMIT",
    "SCATTER_ERROR_LIMIT",
    "EXPANDED_BLOCK_ROWS",
]


# --- the expanded kernels (float64) --------------------------------------------------------
# See CovarianceType.features_t: the E-step and the M-step's statistics become one matrix
# product each per block, in a single pass over the data. Every iteration bounds the rounding
# the expansion can cause and refuses the step when the bound is not small; the run then
# continues with the centred kernels from the same parameters (mode "resume" of
# ``_em_program``, driven by ``_run_program``).


def prepare_expanded(params: GMMParams, shift):
    """Per-parameter-set quantities of the expanded form, for one shift ``s`` (d,).

    Returns ``((offset, terms), far)``. ``offset`` (K,) is as in
    :func:`bayesgmm.density.prepare`, ``terms`` is what
    :meth:`~bayesgmm.em.kernels.EMKernels.expanded_maha_t` takes, and ``far`` (K,) is
    ``|mu_k - s|^T |Lambda_k| |mu_k - s|``, which bounds the rounding of component k's
    expanded distances. Unbatched parameters.
    """
    offset, prec_chol = log_offset(params)
    terms, far = kernels_for(params.covariance_type).expanded_terms(params.means, prec_chol, shift)
    return (offset, terms), far


def weighted_log_prob_expanded_t(UT, phi, prepared, covariance_type):
    """``log w_k + log N(x_n | mu_k, Sigma_k)`` (K, rows) in the expanded form.

    ``UT`` (d, rows) holds ``x - shift`` for the shift given to :func:`prepare_expanded`, and
    ``phi`` is ``EMKernels.features_t(UT)`` (F, rows). EM computes ``phi`` itself because it
    reuses the features for the M-step's statistics.
    """
    offset, terms = prepared
    maha = kernels_for(covariance_type).expanded_maha_t(UT, phi, terms)
    return offset[:, None] - 0.5 * maha


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


def _n_expanded(kern, n_features: int) -> int:
    return jax.eval_shape(
        kern.features_t, jax.ShapeDtypeStruct((n_features, 1), jnp.float64)
    ).shape[0]


def _data_mean(XbT, wb, axis_name=None):
    """The mean of the real rows of blocks stored transposed (over the devices of
    ``axis_name``): the expansion's shift, (d,)."""
    total, count = _allsum((jnp.einsum("bdn,bn->d", XbT, wb), jnp.sum(wb)), axis_name)
    return total / count


def _data_summary(XbT, wb, kern, axis_name=None):
    """The shift (the data mean, (d,)) and, for types that need it, ``sum u u^T`` (d, d)."""
    shift = _data_mean(XbT, wb, axis_name)
    if not kern.needs_data_scatter:
        return shift, None

    def body(acc, blk):
        xt, w = blk
        ut = xt - shift[:, None]
        return acc + (ut * w) @ ut.T, None

    d = XbT.shape[1]
    return shift, _allsum(jax.lax.scan(body, jnp.zeros((d, d), XbT.dtype), (XbT, wb))[0], axis_name)


def _expanded_pass(XbT, wb, params: GMMParams, shift):
    """E-step and every M-step statistic in one pass: ``(loglik, nk, moments, far)`` with
    ``moments = sum_n r_kn phi(u_n)`` (K, F)."""
    kern = kernels_for(params.covariance_type)
    prepared, far = prepare_expanded(params, shift)
    dtype = XbT.dtype

    def body(carry, blk):
        total, nk, moments = carry
        xt, w = blk
        ut = xt - shift[:, None]
        phi = kern.features_t(ut)
        wlp = weighted_log_prob_expanded_t(ut, phi, prepared, kern.name)
        log_norm, resp = _normalise(wlp, w)
        total = total + jnp.sum(log_norm * w)
        return (total, nk + jnp.sum(resp, axis=1), moments + resp @ phi.T), None

    k = params.n_components
    n_exp = _n_expanded(kern, params.n_features)
    zero = (jnp.zeros((), dtype), jnp.zeros((k,), dtype), jnp.zeros((k, n_exp), dtype))
    (loglik, nk, moments), _ = jax.lax.scan(body, zero, (XbT, wb))
    return loglik, nk, moments, far


def _maha_ok(params: GMMParams, shift):
    """Whether the expanded distances at ``params`` meet :data:`MAHA_ERROR_LIMIT` (no data
    pass: the bound depends on the parameters and the shift only)."""
    _, far = prepare_expanded(params, shift)
    return _maha_within_limit(
        far, _n_expanded(kernels_for(params.covariance_type), params.n_features), params.dtype
    )


def expanded_step(Xb, wb, prior, reg_covar, covariance_type, axis_name=None):
    """One EM iteration with the expanded kernels, and whether its error bounds hold.

    The signature of :func:`bayesgmm.em.centred.centred_step`: ``step(params) -> (objective,
    new_params, ok)``, where ``ok`` is false when the distance bound
    (:data:`MAHA_ERROR_LIMIT`) or the moment bound (:data:`SCATTER_ERROR_LIMIT`) fails or a
    value is not finite; the caller then discards the step and redoes it centred.
    ``axis_name`` as there: the statistics are summed over the mesh axis's devices.
    """
    n_samples = _allsum(jnp.sum(wb), axis_name)
    XbT = jnp.swapaxes(Xb, 1, 2)
    kern = kernels_for(covariance_type)
    shift, data_scatter = _data_summary(XbT, wb, kern, axis_name)
    d = Xb.shape[-1]
    n_exp = _n_expanded(kern, d)
    eps = jnp.finfo(Xb.dtype).eps

    def step(params):
        loglik, nk, moments, far = _expanded_pass(XbT, wb, params, shift)
        loglik, nk, moments = _allsum((loglik, nk, moments), axis_name)
        s1 = moments[:, :d]
        count = _regularised_count(nk)
        sx = s1 + nk[:, None] * shift
        centres = sx / count[:, None] - shift
        count_reg = (jnp.sum(count) if kern.needs_data_scatter else count) * reg_covar
        scatter, ratio = kern.scatter_from_moments(
            s1, moments[:, d:], nk, centres, data_scatter, count_reg
        )
        new = _params_from(SufficientStats(nk, sx), scatter, kern, reg_covar, prior)
        lb = _objective(loglik, params, prior, n_samples)
        ok = (
            _maha_within_limit(far, n_exp, Xb.dtype)
            & (4.0 * eps * ratio <= SCATTER_ERROR_LIMIT)
            & jnp.isfinite(lb)
            & _all_finite(new)
            # A covariance that lost positive definiteness to rounding is refused here, so the
            # centred kernels decide whether the fit really failed.
            & _all_finite(new.cov.precision_cholesky(new.covariances))
        )
        return lb, new, ok

    return step


def use_expanded(dtype, n_samples: int, n_components: int, n_features: int) -> bool:
    """Whether EM runs the expanded kernels: float64 only (in float32 the cancellation they
    bound would refuse most steps) and not on small problems, where the run costs milliseconds
    and a second compiled loop (for a refused step) would only add compile time."""
    return jnp.dtype(dtype) == jnp.float64 and not is_small(n_samples, n_components, n_features)
