"""Densities and conditionals of rows with missing values (NaN), missing at random.

For a row ``x`` with observed coordinates ``o`` and missing ``m``, under component ``k``:

* the marginal density is ``N(x_o | mu_o, Sigma_oo)`` (Ghahramani and Jordan 1994);
* the missing part given the observed one is Gaussian with mean
  ``xhat_m = mu_m + Sigma_mo Sigma_oo^{-1} (x_o - mu_o)`` and covariance
  ``C_mm = Sigma_mm - Sigma_mo Sigma_oo^{-1} Sigma_om``.

Rows are grouped by missingness pattern: the factorisations depend on the pattern and the
component only, so they are computed once per (pattern, component) - ``P K`` Cholesky
factorisations of ``(d, d)`` matrices - and every row then costs what a complete row costs
(``O(K d^2)``). The observed block is embedded in a ``(d, d)`` matrix with the identity on the
missing coordinates, ``A = M Sigma M + (I - M)`` for ``M = diag(observed)``: one shape for
every pattern, ``log det A = log det Sigma_oo``, and with the missing coordinates of
``x - mu`` set to zero, ``A^{-1} M (x - mu)`` is ``Sigma_oo^{-1} (x_o - mu_o)`` padded with
zeros. A row with nothing observed has density 1 (log 0) under every component: it carries no
information, its responsibilities are the weights, and its imputation is the mixture mean.

Every covariance type goes through its full matrices (``GMMParams.covariance_matrices``): for
``diag`` and ``spherical`` the conditionals reduce to ``xhat_m = mu_m``, ``C_mm = Sigma_mm``,
which the general form gives exactly (the off-diagonal blocks are zero).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from .params import GMMParams

__all__ = [
    "MissingPatterns",
    "missing_patterns",
    "PatternTerms",
    "pattern_terms",
    "conditional_rows",
    "component_log_prob_missing",
    "log_prob_missing",
    "predict_proba_missing",
    "conditional_mean",
    "sample_missing",
    "marginal_log_prob_rows",
    "weighted_log_prob_missing",
]

_LOG_2PI = math.log(2.0 * math.pi)


class MissingPatterns(NamedTuple):
    """Rows with NaN split into what the jitted code takes.

    Attributes
    ----------
    filled : array (n, d)
        ``X`` with every missing value set to 0.
    observed : array of bool (n, d)
    patterns : array of bool (P, d)
        The distinct rows of ``observed``.
    index : int array (n,)
        Each row's pattern.
    """

    filled: np.ndarray
    observed: np.ndarray
    patterns: np.ndarray
    index: np.ndarray


def missing_patterns(X) -> MissingPatterns:
    """Group the rows of ``X`` (n, d), NaN marking missing values, by missingness pattern."""
    X = np.asarray(X)
    observed = ~np.isnan(X)
    patterns, index = np.unique(observed, axis=0, return_inverse=True)
    return MissingPatterns(
        np.where(observed, X, 0).astype(X.dtype),
        observed,
        patterns,
        np.asarray(index, np.int32).reshape(-1),
    )


class PatternTerms(NamedTuple):
    """Per (pattern, component) factors, leading axes (P, K).

    Attributes
    ----------
    inv_chol : (P, K, d, d)
        ``L^{-1}`` of ``A = M Sigma M + (I - M) = L L^T``.
    log_det : (P, K)
        ``log det Sigma_oo``.
    gain : (P, K, d, d)
        ``(I - M) Sigma M A^{-1}``: maps ``M (x - mu)`` to the conditional mean's shift of the
        missing coordinates (zero rows on the observed ones).
    cond_cov : (P, K, d, d)
        ``C``: the conditional covariance of the missing coordinates, zero elsewhere.
    n_observed : (P,)
    """

    inv_chol: jax.Array
    log_det: jax.Array
    gain: jax.Array
    cond_cov: jax.Array
    n_observed: jax.Array


def pattern_terms(params: GMMParams, patterns) -> PatternTerms:
    """:class:`PatternTerms` of unbatched ``params`` for ``patterns`` (P, d) bool."""
    cov = params.covariance_matrices()  # (K, d, d)
    d = cov.shape[-1]
    m = jnp.asarray(patterns, cov.dtype)  # (P, d): 1 observed
    eye = jnp.eye(d, dtype=cov.dtype)
    mm = m[:, None, :, None] * m[:, None, None, :]  # (P, 1, d, d)
    A = cov[None] * mm + eye * (1 - m)[:, None, None, :]
    L = jnp.linalg.cholesky(A)
    inv_chol = jax.scipy.linalg.solve_triangular(L, jnp.broadcast_to(eye, A.shape), lower=True)
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(L, axis1=-2, axis2=-1)), axis=-1)
    a_inv = jnp.swapaxes(inv_chol, -1, -2) @ inv_chol
    miss = (1 - m)[:, None, :, None]  # rows of the missing coordinates
    cross = cov[None] * miss * m[:, None, None, :]  # (I - M) Sigma M
    gain = cross @ a_inv
    cond_cov = (cov[None] - gain @ jnp.swapaxes(cross, -1, -2)) * miss * (1 - m)[:, None, None, :]
    return PatternTerms(inv_chol, log_det, gain, cond_cov, jnp.sum(m, axis=-1))


def conditional_rows(filled, observed, index, means, terms: PatternTerms):
    """Per row and component: the marginal log density of the observed coordinates and the
    row completed by its conditional mean.

    Parameters
    ----------
    filled : (B, d)
        Rows with missing values set to 0.
    observed : (B, d) bool
    index : (B,) int
        Each row's pattern in ``terms``.
    means : (K, d)
    terms : PatternTerms

    Returns
    -------
    log_dens : (B, K)
        ``log N(x_o | mu_ko, Sigma_koo)``.
    completed : (B, K, d)
        ``x`` with its missing coordinates replaced by ``E[x_m | x_o, k]``.
    """
    obs = observed.astype(filled.dtype)
    u = (filled[:, None, :] - means[None]) * obs[:, None, :]  # M (x - mu), (B, K, d)
    inv_chol = terms.inv_chol[index]  # (B, K, d, d)
    z = jnp.einsum("bkij,bkj->bki", inv_chol, u)
    maha = jnp.sum(z * z, axis=-1)
    n_obs = terms.n_observed[index][:, None]
    log_dens = -0.5 * (n_obs * _LOG_2PI + terms.log_det[index] + maha)
    shift = jnp.einsum("bkij,bkj->bki", terms.gain[index], u)
    completed = filled[:, None, :] + (1 - obs)[:, None, :] * (means[None] + shift)
    return log_dens, completed


def _rows_in_blocks(fn, arrays, n_components, n_features):
    """``fn(*blocks)`` over row blocks of ``arrays`` (leading axis n), outputs stitched."""
    n = arrays[0].shape[0]
    block = int(min(max((1 << 17) // max(1, n_components * n_features * n_features), 8), 4096))
    if n <= block:
        return fn(*arrays)
    n_blocks = -(-n // block)
    pad = n_blocks * block - n

    def padded(a):
        if pad:
            a = jnp.concatenate([a, jnp.zeros((pad,) + a.shape[1:], a.dtype)])
        return a.reshape((n_blocks, block) + a.shape[1:])

    out = jax.lax.map(lambda blk: fn(*blk), tuple(padded(a) for a in arrays))
    return jax.tree_util.tree_map(lambda a: a.reshape((n_blocks * block,) + a.shape[2:])[:n], out)


def _check(X, params, batched=False):
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != params.n_features:
        raise ValueError(
            f"X must have shape (n_samples, {params.n_features}) to match the parameters' "
            f"n_features; got shape {X.shape}"
        )
    if params.batch_shape and not batched:
        raise ValueError("this function takes unbatched parameters (one GMMParams)")
    return missing_patterns(X)


def marginal_log_prob_rows(filled, observed, index, patterns, params: GMMParams):
    """``log sum_k w_k N(x_o | mu_ko, Sigma_koo)`` of rows given as :class:`MissingPatterns`
    arrays, traceable (the NumPyro model's likelihood); unbatched ``params``; (n,)."""
    terms = pattern_terms(params, patterns)
    log_w = jnp.log(params.weights)

    def rows(f, o, i):
        log_dens, _ = conditional_rows(f, o, i, params.means, terms)
        return logsumexp(log_dens + log_w, axis=1)

    return _rows_in_blocks(rows, (filled, observed, index), params.n_components, params.n_features)


@jax.jit
def _weighted_batched(filled, observed, index, patterns, params):
    batch = params.batch_shape
    flat = jax.tree_util.tree_map(lambda a: a.reshape((-1,) + a.shape[len(batch) :]), params)

    def one(p):
        log_dens, _ = _log_dens_completed(filled, observed, index, patterns, p)
        return log_dens + jnp.log(p.weights)

    out = jax.lax.map(one, flat)
    return out.reshape(batch + out.shape[1:])


def weighted_log_prob_missing(X, params: GMMParams):
    """``log w_k + log N(x_o | mu_ko, Sigma_koo)`` for every row with NaN and every set of
    parameters: ``params`` may carry batch axes ``B`` (posterior draws); returns an ndarray
    of shape ``B + (n_samples, n_components)``."""
    pat = _check(X, params, batched=True)
    params = params.astype(pat.filled.dtype)
    if not params.batch_shape:
        wlp, _, _ = _weighted(X, params)
        return np.asarray(wlp)
    return np.asarray(_weighted_batched(pat.filled, pat.observed, pat.index, pat.patterns, params))


@jax.jit
def _log_dens_completed(filled, observed, index, patterns, params):
    terms = pattern_terms(params, patterns)
    return _rows_in_blocks(
        lambda f, o, i: conditional_rows(f, o, i, params.means, terms),
        (filled, observed, index),
        params.n_components,
        params.n_features,
    )


def _weighted(X, params):
    pat = _check(X, params)
    log_dens, completed = _log_dens_completed(
        pat.filled, pat.observed, pat.index, pat.patterns, params.astype(pat.filled.dtype)
    )
    return log_dens + jnp.log(params.weights), completed, pat


def component_log_prob_missing(X, params: GMMParams):
    """Marginal log densities ``log N(x_o | mu_ko, Sigma_koo)`` of the observed coordinates.

    Parameters
    ----------
    X : array (n_samples, n_features), NaN marking missing values
    params : GMMParams, unbatched

    Returns
    -------
    ndarray (n_samples, n_components)
        0 for a row with nothing observed.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm import GMMParams
    >>> from bayesgmm.marginal import component_log_prob_missing
    >>> p = GMMParams([1.0], [[0.0, 0.0]], [[[1.0, 0.5], [0.5, 1.0]]], "full")
    >>> lp = component_log_prob_missing(np.array([[0.0, np.nan]]), p)
    >>> bool(np.isclose(lp[0, 0], -0.5 * np.log(2 * np.pi)))
    True
    """
    pat = _check(X, params)
    log_dens, _ = _log_dens_completed(
        pat.filled, pat.observed, pat.index, pat.patterns, params.astype(pat.filled.dtype)
    )
    return np.asarray(log_dens)


def log_prob_missing(X, params: GMMParams):
    """Marginal mixture log density of each row's observed coordinates; shape (n_samples,)."""
    wlp, _, _ = _weighted(X, params)
    return np.asarray(logsumexp(wlp, axis=1))


def predict_proba_missing(X, params: GMMParams):
    """Responsibilities from the observed coordinates; shape (n_samples, n_components)."""
    wlp, _, _ = _weighted(X, params)
    return np.asarray(jnp.exp(wlp - logsumexp(wlp, axis=1, keepdims=True)))


def conditional_mean(X, params: GMMParams):
    """``X`` with each missing value replaced by its conditional expectation under the mixture,
    ``sum_k p(k | x_o) E[x_m | x_o, k]``; shape (n_samples, n_features). Observed values are
    returned unchanged; a row with nothing observed becomes the mixture mean."""
    wlp, completed, _ = _weighted(X, params)
    resp = jnp.exp(wlp - logsumexp(wlp, axis=1, keepdims=True))
    return np.asarray(jnp.einsum("nk,nkd->nd", resp, completed))


def sample_missing(key, X, params: GMMParams, n_draws: int):
    """Multiple imputations: ``n_draws`` completions of ``X`` drawn from ``p(x_m | x_o)``.

    Each draw picks a component from the row's responsibilities, then the missing
    coordinates from that component's conditional Gaussian.

    Returns
    -------
    ndarray (n_draws, n_samples, n_features)
        Observed values unchanged in every draw.
    """
    wlp, completed, pat = _weighted(X, params)
    terms = pattern_terms(params.astype(pat.filled.dtype), pat.patterns)
    # Conditional covariances are singular (zero on the observed block): factor with a jitter
    # of the matrices' own scale and zero the observed coordinates afterwards.
    cc = terms.cond_cov
    d = cc.shape[-1]
    scale = jnp.maximum(jnp.max(jnp.abs(cc)), 1.0) * jnp.finfo(cc.dtype).eps * d
    chol = jnp.linalg.cholesky(cc + scale * jnp.eye(d, dtype=cc.dtype))
    k_comp, k_noise = jax.random.split(key)
    labels = jax.random.categorical(k_comp, wlp, axis=-1, shape=(n_draws, wlp.shape[0]))
    noise = jax.random.normal(k_noise, (n_draws,) + pat.filled.shape, pat.filled.dtype)
    idx = jnp.asarray(pat.index)
    rows = jnp.arange(wlp.shape[0])
    centre = completed[rows[None], labels]  # (draws, n, d)
    factor = chol[idx[None], labels]  # (draws, n, d, d)
    miss = jnp.asarray(~pat.observed, pat.filled.dtype)
    draws = centre + miss * jnp.einsum("snij,snj->sni", factor, noise)
    return np.asarray(draws)
