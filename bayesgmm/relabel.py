"""Relabeling posterior draws: undoing label switching between exchangeable components.

Mixture components are exchangeable, so labels switch between and within chains.
:func:`relabel_draws` finds, for each draw, the permutation of its components that matches a
pivot (the MAP-EM solution by default): by a minimum-cost assignment (Hungarian algorithm,
:func:`scipy.optimize.linear_sum_assignment`) on the symmetrised Kullback-Leibler divergence
between the draw's and the pivot's components, or by Stephens (2000)'s algorithm on the
responsibilities. :func:`permute_draws` applies the permutations.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

from . import density
from .params import GMMParams

__all__ = ["permute_draws", "relabel_draws"]


def permute_draws(draws: GMMParams, perms) -> GMMParams:
    """Reorder the components of each draw: component ``j`` of the result is component
    ``perms[..., j]`` of ``draws``. ``perms`` has shape ``draws.batch_shape + (K,)``."""
    perms = jnp.asarray(perms)
    w = jnp.take_along_axis(draws.weights, perms, axis=-1)
    m = jnp.take_along_axis(draws.means, perms[..., None], axis=-2)
    c = draws.cov.permute_components(draws.covariances, perms)
    return draws.replace(weights=w, means=m, covariances=c)


@jax.jit
def _sym_kl_cost(draws: GMMParams, pivot: GMMParams):
    """Symmetrised KL divergence between pivot component j and draw component k, (S, K, K).

    KL(a||b) + KL(b||a) = 1/2 [tr(P_b S_a) + tr(P_a S_b) - 2 d + (m_a - m_b)' (P_a + P_b)
    (m_a - m_b)]: it weighs mean differences by both components' spreads and also separates
    components with equal means and different shapes.
    """
    s_d, p_d = draws.covariance_matrices(), draws.precision_matrices()  # (S, K, d, d)
    s_p, p_p = pivot.covariance_matrices(), pivot.precision_matrices()  # (K, d, d)
    d = draws.n_features
    tr1 = jnp.einsum("jab,skba->sjk", p_p, s_d)
    tr2 = jnp.einsum("skab,jba->sjk", p_d, s_p)
    diff = draws.means[:, None, :, :] - pivot.means[None, :, None, :]  # (S, j, k, d)
    psum = p_p[None, :, None] + p_d[:, None, :]
    maha = jnp.einsum("sjka,sjkab,sjkb->sjk", diff, psum, diff)
    return 0.5 * (tr1 + tr2 - 2 * d + maha)


def _assign(costs):
    """Row j of a (K, K) cost matrix gets column perm[j]; vectorised over leading axes."""
    costs = np.asarray(costs)
    flat = costs.reshape((-1,) + costs.shape[-2:])
    perms = np.empty(flat.shape[:2], np.int64)
    for s, c in enumerate(flat):
        perms[s] = linear_sum_assignment(c)[1]
    return perms.reshape(costs.shape[:-1])


def _flatten_batch(draws: GMMParams):
    batch = draws.batch_shape
    return batch, jax.tree_util.tree_map(lambda a: a.reshape((-1,) + a.shape[len(batch) :]), draws)


def _hungarian(draws: GMMParams, pivot: GMMParams, chunk: int = 1000):
    batch, flat = _flatten_batch(draws)
    s = flat.weights.shape[0]
    costs = [np.asarray(_sym_kl_cost(flat[i : i + chunk], pivot)) for i in range(0, s, chunk)]
    return _assign(np.concatenate(costs)).reshape(batch + (draws.n_components,))


def _stephens(
    draws: GMMParams, X, pivot: GMMParams, max_iter: int = 100, max_elements: int = 20_000_000
):
    """Stephens (2000), algorithm 2: choose per-draw permutations and a matrix Q of
    classification probabilities minimising sum_t KL(Q || P_t permuted), alternating the
    assignment step (one linear assignment per draw) and Q = mean of permuted P_t.

    Starts from Q = the pivot's responsibilities. When draws x rows x components exceeds
    ``max_elements``, a fixed random subset of rows is used (the labels are a property of the
    parameters, any set of typical points identifies them).
    """
    batch, flat = _flatten_batch(draws)
    s, k = flat.weights.shape
    n = X.shape[0]
    max_rows = max(1, max_elements // (s * k))
    if n > max_rows:
        idx = np.sort(np.random.default_rng(0).choice(n, max_rows, replace=False))
        X = X[idx]
    log_p = np.asarray(density.log_responsibilities(X, flat))  # (S, n, K)
    q = np.asarray(density.predict_proba(X, pivot))  # (n, K)
    perms = None
    for _ in range(max_iter):
        # cost[t, j, k] = -sum_i q_ij log p_t,ik (the q log q part does not depend on perm)
        cost = -np.einsum("ij,tik->tjk", q, log_p)
        new = _assign(cost)
        if perms is not None and np.array_equal(new, perms):
            break
        perms = new
        q = np.mean(np.exp(np.take_along_axis(log_p, perms[:, None, :], axis=-1)), axis=0)
    return perms.reshape(batch + (k,))


def relabel_draws(draws: GMMParams, pivot: GMMParams, *, method="hungarian", X=None):
    """Permutations that align each draw's components to ``pivot``'s.

    Parameters
    ----------
    draws : GMMParams with batch axes B
    pivot : GMMParams, unbatched
    method : {'hungarian', 'stephens'}
    X : array (n_samples, n_features), needed by 'stephens'

    Returns
    -------
    perms : int ndarray of shape (*B, K); component j of the relabeled draw is component
        ``perms[..., j]`` of the original (apply with :func:`permute_draws`).
    """
    if method == "hungarian":
        return _hungarian(draws, pivot)
    if method == "stephens":
        if X is None:
            raise ValueError("method='stephens' needs the data X")
        return _stephens(draws, jnp.asarray(X), pivot)
    raise ValueError(f"method must be 'hungarian' or 'stephens'; got {method!r}")
