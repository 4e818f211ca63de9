"""Log densities, responsibilities and sampling: the one source of truth.

The EM E-step, the estimator's ``score_samples``/``predict_proba``, the NumPyro likelihood, the
posterior predictive and the plots all call the functions here. Every public function accepts
one set of parameters or a batch (``GMMParams`` with leading axes, such as posterior draws of
shape ``(chain, draw)``); the batch axes lead the output.

Rows are processed in blocks small enough for the per-block ``(rows, n_components,
n_features)`` intermediates to stay in cache, so memory does not grow with that product.

The density here takes differences against every component mean (:func:`prepare`,
:func:`weighted_log_prob_t`), exact at any offset of the data. EM's float64 fast path has a
second, expanded form of the same density (matrix products of features of ``x - shift``, under
rounding guards) in :mod:`bayesgmm.em.expanded`; tests check both against ``scipy.stats``.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from .params import GMMParams

__all__ = [
    "component_log_prob",
    "log_prob",
    "log_responsibilities",
    "predict_proba",
    "predict",
    "sample",
    "block_rows",
]

_LOG_2PI = math.log(2.0 * math.pi)


def block_rows(n_components: int, n_features: int) -> int:
    """Rows per block so that a (rows, K, d) intermediate is about 2**17 numbers (~1 MB)."""
    rows = (1 << 17) // max(1, n_components * n_features)
    return int(min(max(rows, 128), 16384))


def prepare(params: GMMParams, include_weights: bool = True):
    """Per-parameter-set quantities used by every row block: ``(offset, terms)`` where
    ``offset`` (K,) is ``log w_k + log det P_k - d/2 log(2 pi)`` (without ``log w_k`` when
    ``include_weights`` is false) and ``terms`` are the covariance type's Mahalanobis terms.
    Unbatched parameters."""
    offset, prec_chol = log_offset(params, include_weights)
    return offset, params.cov.mahalanobis_terms(params.means, prec_chol)


def log_offset(params: GMMParams, include_weights: bool = True):
    """``(offset, prec_chol)``: the part of every component's weighted log density that does
    not depend on x, (K,), and the precision Cholesky factors it came from. Unbatched."""
    ct = params.cov
    prec_chol = ct.precision_cholesky(params.covariances)
    log_det = ct.log_det_precision_cholesky(prec_chol, params.n_features)
    offset = jnp.broadcast_to(log_det, params.weights.shape) - 0.5 * params.n_features * _LOG_2PI
    if include_weights:
        offset = offset + jnp.log(params.weights)
    return offset, prec_chol


def weighted_log_prob_t(XT, prepared, covariance_type):
    """``log w_k + log N(x_n | mu_k, Sigma_k)`` for a block stored transposed: ``XT`` has shape
    (n_features, rows); returns (K, rows). The E-step calls this directly."""
    from .covariance import get_covariance_type

    offset, terms = prepared
    maha = get_covariance_type(covariance_type).sq_mahalanobis_t(XT, terms)
    return offset[:, None] - 0.5 * maha


def weighted_log_prob_prepared(X, prepared, covariance_type):
    """log w_k + log N(x | mu_k, Sigma_k) for a block of rows, shape (rows, K)."""
    return weighted_log_prob_t(X.T, prepared, covariance_type).T


def _map_rows(fn, X, n_components):
    """Apply ``fn`` (rows -> per-row outputs) to ``X`` in row blocks and stitch the results."""
    n, d = X.shape
    block = block_rows(n_components, d)
    if n <= block:
        return fn(X)
    n_blocks = -(-n // block)
    pad = n_blocks * block - n
    Xp = jnp.concatenate([X, jnp.zeros((pad, d), X.dtype)]) if pad else X
    out = jax.lax.map(fn, Xp.reshape(n_blocks, block, d))
    return jax.tree_util.tree_map(lambda a: a.reshape((n_blocks * block,) + a.shape[2:])[:n], out)


def _unbatched_weighted(X, params, include_weights=True):
    """``log w_k + log N(x_n | k)`` (n, K) for unbatched parameters, in row blocks (without
    ``log w_k`` when ``include_weights`` is false)."""
    prepared = prepare(params, include_weights)
    return _map_rows(
        lambda xb: weighted_log_prob_prepared(xb, prepared, params.covariance_type),
        X,
        params.n_components,
    )


def _over_batch(fn, X, params, *args):
    """Map ``fn(X, single_params, *args)`` over the batch axes of ``params``."""
    batch = params.batch_shape
    if not batch:
        return fn(X, params, *args)
    flat = jax.tree_util.tree_map(lambda a: a.reshape((-1,) + a.shape[len(batch) :]), params)
    out = jax.lax.map(lambda p: fn(X, p, *args), flat)
    return jax.tree_util.tree_map(lambda a: a.reshape(batch + a.shape[1:]), out)


def _common(X, params):
    X = jnp.asarray(X)
    # Shapes are static even under jit, so this check costs nothing at run time and turns a
    # broadcasting error deep in the trace into one that names the argument.
    if X.ndim != 2 or X.shape[1] != params.n_features:
        raise ValueError(
            f"X must have shape (n_samples, {params.n_features}) to match the parameters' "
            f"n_features; got shape {X.shape}"
        )
    dtype = jnp.result_type(X.dtype, params.dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    return X.astype(dtype), params.astype(dtype)


@jax.jit
def component_log_prob(X, params: GMMParams):
    """Per-component log densities ``log N(x_n | mu_k, Sigma_k)``.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    params : GMMParams, optionally with batch axes ``B``

    Returns
    -------
    array of shape (*B, n_samples, n_components)
    """
    X, params = _common(X, params)
    return _over_batch(_unbatched_weighted, X, params, False)


def _log_prob_one(X, p):
    return logsumexp(_unbatched_weighted(X, p), axis=-1)


@jax.jit
def log_prob(X, params: GMMParams):
    """Log density of the mixture, ``log p(x_n) = logsumexp_k(log w_k + log N(x_n | k))``.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    params : GMMParams, optionally with batch axes ``B``

    Returns
    -------
    array of shape (*B, n_samples)

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm import GMMParams, density
    >>> p = GMMParams(np.array([1.0]), np.zeros((1, 1)), np.ones(1), "spherical")
    >>> round(float(density.log_prob(np.zeros((1, 1)), p)[0]), 12)  # log of 1/sqrt(2 pi)
    -0.918938533205
    """
    X, params = _common(X, params)
    return _over_batch(_log_prob_one, X, params)


def _log_resp_one(X, p):
    wlp = _unbatched_weighted(X, p)
    return wlp - logsumexp(wlp, axis=-1, keepdims=True)


@jax.jit
def log_responsibilities(X, params: GMMParams):
    """Log posterior probabilities of each component for each point (log responsibilities).

    Returns
    -------
    array of shape (*B, n_samples, n_components)
    """
    X, params = _common(X, params)
    return _over_batch(_log_resp_one, X, params)


def predict_proba(X, params: GMMParams):
    """Responsibilities ``p(z_n = k | x_n)``; rows sum to one.

    Returns
    -------
    array of shape (*B, n_samples, n_components)
    """
    return jnp.exp(log_responsibilities(X, params))


def predict(X, params: GMMParams):
    """Most probable component of each point.

    Returns
    -------
    int array of shape (*B, n_samples)
    """
    return jnp.argmax(log_responsibilities(X, params), axis=-1)


@partial(jax.jit, static_argnames=("n_samples",))
def _sample(key, params: GMMParams, n_samples: int):
    def one(key, p):
        k_label, k_noise = jax.random.split(key)
        labels = jax.random.categorical(k_label, jnp.log(p.weights), shape=(n_samples,))
        z = jax.random.normal(k_noise, (n_samples, p.n_features), dtype=p.dtype)
        tril = p.scale_tril()
        x = p.means[labels] + jnp.einsum("nij,nj->ni", tril[labels], z)
        return x, labels

    batch = params.batch_shape
    if not batch:
        return one(key, params)
    flat = jax.tree_util.tree_map(lambda a: a.reshape((-1,) + a.shape[len(batch) :]), params)
    keys = jax.random.split(key, flat.weights.shape[0])
    x, labels = jax.vmap(one)(keys, flat)
    return x.reshape(batch + x.shape[1:]), labels.reshape(batch + labels.shape[1:])


def sample(key, params: GMMParams, n_samples: int):
    """Draw new data from the mixture.

    Parameters
    ----------
    key : jax.random key
    params : GMMParams, optionally with batch axes ``B`` (one data set per parameter set)
    n_samples : int

    Returns
    -------
    X : array of shape (*B, n_samples, n_features)
    labels : int array of shape (*B, n_samples), the component of each point

    Examples
    --------
    >>> import jax, numpy as np
    >>> from bayesgmm import GMMParams, density
    >>> p = GMMParams(np.array([0.5, 0.5]), np.array([[0.0], [5.0]]), np.ones(2), "spherical")
    >>> X, z = density.sample(jax.random.key(0), p, 4)
    >>> X.shape, z.shape
    ((4, 1), (4,))
    """
    from ._validation import check_positive_int

    n_samples = check_positive_int(n_samples, "n_samples")
    if isinstance(key, int):
        key = jax.random.key(key)
    return _sample(key, params, n_samples)
