"""EM with values missing at random (Ghahramani and Jordan 1994): each row's observed
coordinates only.

One iteration, from parameters ``(w, mu, Sigma)``:

1. **E-step.** ``r_nk`` from the marginal densities of the observed coordinates
   (:func:`bayesgmm.marginal.conditional_rows`), and each row completed under each component
   by the conditional mean of its missing part, ``xhat_nk``.
2. **M-step.** The complete-data updates with the expected statistics: ``n_k = sum r_nk``,
   means ``sum r_nk xhat_nk / n_k``, and the scatter around them
   ``S_k = sum_n r_nk [(xhat_nk - mu_k)(xhat_nk - mu_k)^T + C_nk]``, where ``C_nk`` is the
   conditional covariance of the missing coordinates (zero on the observed ones) - the term
   mean imputation leaves out, which biases every covariance towards zero. The covariance type
   reduces ``S_k`` (:meth:`EMKernels.scatter_from_full`) and its ML or MAP estimator follows,
   ``reg_covar`` added where scikit-learn adds it.

The objective is the observed-data mean log-likelihood (plus the log prior per sample), which
EM never decreases. Rows are grouped by missingness pattern (one factorisation per pattern and
component), so an iteration costs about what a complete-data iteration costs plus ``P K d^3``
for ``P`` patterns. Complete data never come here: :func:`bayesgmm.em.fit_em` runs them
unchanged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from .._compile import SizedJit
from .._validation import check_sample_weight
from ..marginal import _LOG_2PI, PatternTerms, missing_patterns, pattern_terms
from ..params import GMMParams
from .driver import _loop, _result, prepare_em
from .kernels import kernels_for
from .reference import EMResult, SufficientStats, _objective, _params_from

__all__ = ["missing_step", "fit_em_missing", "mean_imputed", "pattern_blocks"]


def pattern_blocks(index, n_patterns: int, weights, n_components: int, n_features: int):
    """Rows in blocks of one missingness pattern each (NumPy, once per fit).

    Rows are sorted by pattern and each pattern's rows cut into blocks of ``B`` rows, the last
    one padded (weight 0). A block then shares one set of factors per component, so its
    Mahalanobis terms are ``(B, d) x (d, d)`` matrix products, as for complete data; only
    the padding (at most ``B - 1`` rows per pattern) is extra. ``B`` is the power of two in
    [8, 256] minimising padded rows times a per-block overhead.

    Returns
    -------
    rows : int array (n_blocks, B)
        Row of each slot (0 on padding).
    block_weights : array (n_blocks, B)
        The row's weight, 0 on padding.
    block_pattern : int array (n_blocks,)
    """
    index = np.asarray(index)
    counts = np.bincount(index, minlength=n_patterns)
    used = np.flatnonzero(counts)

    def cost(b):
        padded = int(np.sum(-(-counts[used] // b) * b))
        return padded * (1.0 + 16.0 / b)

    block = min((8, 16, 32, 64, 128, 256), key=cost)
    order = np.argsort(index, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    rows, pats = [], []
    for p in used:
        members = order[starts[p] : starts[p + 1]]
        n_blk = -(-len(members) // block)
        slots = np.full(n_blk * block, -1, np.int64)
        slots[: len(members)] = members
        rows.append(slots.reshape(n_blk, block))
        pats.append(np.full(n_blk, p, np.int32))
    rows = np.concatenate(rows)
    w = np.asarray(weights)
    block_weights = np.where(rows >= 0, w[np.maximum(rows, 0)], 0).astype(w.dtype)
    return np.maximum(rows, 0), block_weights, np.concatenate(pats)


def _block_rows(f, p, means, terms: PatternTerms, patterns):
    """:func:`bayesgmm.marginal.conditional_rows` for a block of rows of one pattern ``p``:
    ``(log_dens (B, K), completed (B, K, d))``."""
    obs = patterns[p].astype(f.dtype)
    u = (f[:, None, :] - means[None]) * obs  # M (x - mu), (B, K, d)
    z = jnp.einsum("kij,bkj->bki", terms.inv_chol[p], u)
    log_dens = -0.5 * (
        terms.n_observed[p] * _LOG_2PI + terms.log_det[p][None] + jnp.sum(z * z, axis=-1)
    )
    shift = jnp.einsum("kij,bkj->bki", terms.gain[p], u)
    completed = f[:, None, :] * obs + (1 - obs) * (means[None] + shift)
    return log_dens, completed


def missing_step(filled_b, weights_b, pattern_b, patterns, prior, reg_covar, covariance_type):
    """One EM iteration on rows with missing values, with the seam of
    :func:`bayesgmm.em.centred.centred_step`.

    Parameters
    ----------
    filled_b : array (n_blocks, B, d)
        Rows in blocks of one missingness pattern (:func:`pattern_blocks`), missing values
        set to 0.
    weights_b : array (n_blocks, B)
        Row weights (sample weights or ones), 0 on padding.
    pattern_b : int array (n_blocks,)
        Each block's pattern.
    patterns : bool array (P, d)
        ``True`` where observed.
    prior : Prior or None
    reg_covar : array ()
    covariance_type : str

    Returns
    -------
    step : callable
        ``step(params) -> (objective, new_params, ok)`` (``ok`` always true).
    """
    kern = kernels_for(covariance_type)
    n_samples = jnp.sum(weights_b)
    n_features = filled_b.shape[-1]
    n_patterns = patterns.shape[0]
    dtype = filled_b.dtype

    def step(params: GMMParams):
        n_components = params.means.shape[0]
        terms = pattern_terms(params, patterns)
        log_w = jnp.log(params.weights)

        def resp(f, w, p):
            log_dens, completed = _block_rows(f, p, params.means, terms, patterns)
            wlp = log_dens + log_w
            lse = logsumexp(wlp, axis=1)
            return lse, jnp.exp(wlp - lse[:, None]) * w[:, None], completed

        def e_block(carry, blk):
            total, nk, sx, per_pattern = carry
            f, w, p = blk
            lse, r, completed = resp(f, w, p)
            return (
                total + jnp.sum(lse * w),
                nk + jnp.sum(r, axis=0),
                sx + jnp.einsum("bk,bkd->kd", r, completed),
                per_pattern.at[p].add(jnp.sum(r, axis=0)),
            ), None

        zero = (
            jnp.zeros((), dtype),
            jnp.zeros((n_components,), dtype),
            jnp.zeros((n_components, n_features), dtype),
            jnp.zeros((n_patterns, n_components), dtype),
        )
        blocks = (filled_b, weights_b, pattern_b)
        (loglik, nk, sx, per_pattern), _ = jax.lax.scan(e_block, zero, blocks)
        centres = sx / (nk + 10 * jnp.finfo(dtype).eps)[:, None]  # the ML means

        def s_block(acc, blk):
            _, r, completed = resp(*blk)
            dev = completed - centres[None]
            return acc + jnp.einsum("bk,bki,bkj->kij", r, dev, dev), None

        zero_s = jnp.zeros((n_components, n_features, n_features), dtype)
        scatter, _ = jax.lax.scan(s_block, zero_s, blocks)
        # The conditional covariances, once per (pattern, component) with the pattern's total
        # responsibility.
        scatter = scatter + jnp.einsum("pk,pkij->kij", per_pattern, terms.cond_cov)
        stats = SufficientStats(nk, sx)
        new = _params_from(stats, kern.scatter_from_full(scatter), kern, reg_covar, prior)
        lb = _objective(loglik, params, prior, n_samples)
        return lb, new, jnp.asarray(True)

    return step


def _missing_impl(
    filled_b, weights_b, pattern_b, patterns, states, prior, tol, reg_covar, max_iter: int
):
    step = missing_step(
        filled_b, weights_b, pattern_b, patterns, prior, reg_covar, states.params.covariance_type
    )
    return jax.vmap(lambda st: _loop(step, st, tol, max_iter))(states)


_missing_program = SizedJit(_missing_impl, static_argnames=("max_iter",))


def mean_imputed(X, sample_weight=None):
    """``X`` with each missing value replaced by its column's (weighted) observed mean: what
    the initialisation (k-means and the others) runs on; EM itself never imputes. A column
    with nothing observed gets 0."""
    X = np.asarray(X)
    observed = ~np.isnan(X)
    w = np.ones(X.shape[0], X.dtype) if sample_weight is None else np.asarray(sample_weight)
    wo = observed * w[:, None]
    total = wo.sum(axis=0)
    means = np.where(total > 0, np.where(observed, X, 0).T @ w / np.where(total > 0, total, 1), 0)
    return np.where(observed, X, means.astype(X.dtype)).astype(X.dtype)


def fit_em_missing(
    key, X, n_components: int, covariance_type: str = "full", **em_kwargs
) -> EMResult:
    """:func:`bayesgmm.em.fit_em` for data with missing values (NaN): the same arguments
    (``em_kwargs``: ``n_init``, ``init_params``, ``max_iter``, ``tol``, ``reg_covar``,
    ``prior``, starting values, ``sample_weight``) and result, the iterations of
    :func:`missing_step`.

    The starts come from the initialisation run on the column-mean-imputed data
    (:func:`mean_imputed`); the EM iterations then use the observed values only.

    Examples
    --------
    >>> import jax, numpy as np
    >>> from bayesgmm.em import fit_em_missing
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-4, 1, (100, 2)), rng.normal(4, 1, (100, 2))])
    >>> X[rng.random(X.shape) < 0.2] = np.nan
    >>> res = fit_em_missing(jax.random.key(0), X, 2, "diag")
    >>> np.round(np.sort(np.asarray(res.params.means)[0, :, 0]))
    array([-4.,  4.])
    """
    X = np.asarray(X)
    # Checked here too: the imputation for the initialisation reads the weights first.
    sample_weight = check_sample_weight(
        em_kwargs.pop("sample_weight", None), X.shape[0], X.dtype, min_positive=n_components
    )
    em_kwargs["sample_weight"] = sample_weight
    (_, sw, states, prior, tol, reg_covar, _), static = prepare_em(
        key,
        X,
        n_components,
        covariance_type,
        init_data=mean_imputed(X, sample_weight),
        **em_kwargs,
    )
    if static["max_iter"] == 0:
        return _result(states)
    pat = missing_patterns(X)
    w = np.ones(X.shape[0], X.dtype) if sw is None else np.asarray(sw)
    rows, weights_b, pattern_b = pattern_blocks(
        pat.index, len(pat.patterns), w, int(n_components), X.shape[1]
    )
    program = _missing_program.pick(X.shape[0], int(n_components), X.shape[1], data=X)
    states = program(
        jnp.asarray(pat.filled[rows]),
        jnp.asarray(weights_b),
        jnp.asarray(pattern_b),
        jnp.asarray(pat.patterns),
        states,
        prior,
        tol,
        reg_covar,
        max_iter=static["max_iter"],
    )
    return _result(states)
