"""EM's starting parameters: initial responsibilities and the initial M-step of every restart."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._compile import SizedJit
from .._validation import INIT_METHODS
from ..covariance import get_covariance_type
from ..hc import hc
from ..kmeans import kmeans_fit, kmeans_plusplus
from ..params import GMMParams
from ..prior import Prior
from .reference import m_step, to_blocks

__all__ = ["initial_resp", "INIT_METHODS"]


def initial_resp(key, X, n_components: int, method: str, sample_weight=None):
    """Initial responsibilities (n_samples, K) by one of :data:`INIT_METHODS`
    (scikit-learn's definitions: k-means labels, one-hot on k-means++ seeds, uniform random
    rows normalised, or one-hot on random distinct data points; and ``"hc"``, one-hot on the
    partition of mclust's model-based hierarchical clustering, :func:`bayesgmm.hc.hc`, which
    ignores ``key`` and runs in NumPy, so not inside ``jit``).

    ``sample_weight`` (n_samples,), optional: k-means and k-means++ are weighted
    (:func:`bayesgmm.kmeans.kmeans_fit`), ``random_from_data`` draws rows with probability
    proportional to their weight (never a row of weight zero); ``random``'s rows are
    weighted by the M-step that follows. ``"hc"`` merges unweighted points and refuses
    weights."""
    n = X.shape[0]
    if method == "hc":
        if sample_weight is not None:
            raise ValueError(
                "init_params='hc' does not take sample_weight (mclust's hierarchical "
                "clustering merges unweighted points); use init_params='kmeans' or pass "
                "resp_init"
            )
        return _hc_resp(X, n_components)
    if method == "kmeans":
        res = kmeans_fit(key, X, n_components, 1, "k-means++", sample_weight=sample_weight)
        return jax.nn.one_hot(res.labels, n_components, dtype=X.dtype)
    if method == "k-means++":
        _, idx = kmeans_plusplus(key, X, n_components, sample_weight)
        return jnp.zeros((n, n_components), X.dtype).at[idx, jnp.arange(n_components)].set(1.0)
    if method == "random":
        r = jax.random.uniform(key, (n, n_components), X.dtype)
        return r / jnp.sum(r, axis=1, keepdims=True)
    if method == "random_from_data":
        p = None if sample_weight is None else sample_weight / jnp.sum(sample_weight)
        idx = jax.random.choice(key, n, (n_components,), replace=False, p=p)
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
# * ``_em_program`` (in :mod:`bayesgmm.em.driver`): the EM loop of every restart (``vmap``) from
#   a batch of starting parameters, whatever initialisation produced them (k-means, random,
#   user-given, warm start).
#
# Before this split, k-means and the initial M-step were compiled into the EM program itself:
# once per covariance type, ``n_init`` and ``max_iter``, which more than doubled compile time.
#
# Each is a SizedJit: small problems, where compilation dominates, compile at XLA's optimisation
# level 0 (see bayesgmm._compile); ``.pick(n, K, d)`` chooses the variant from the shapes.
_initial_resp_one = SizedJit(initial_resp, static_argnames=("n_components", "method"))


def _initial_params_impl(
    X, resp, covariance_type: str, reg_covar, prior: Prior | None, sample_weight=None
):
    # The initial M-step is the run's own M-step (maximum likelihood as in scikit-learn, or the
    # posterior mode under a prior, which stays positive definite on collapsed points where the
    # ML covariance is singular), with each row's responsibilities times its weight.
    Xb, _ = to_blocks(X, resp.shape[1])
    if sample_weight is not None:
        resp = resp * sample_weight[:, None]
    return m_step(Xb, _resp_blocks(resp, Xb), covariance_type, reg_covar, prior)


_initial_params_one = SizedJit(_initial_params_impl, static_argnames=("covariance_type",))


def _initial_resp(key, X, n_components: int, method: str, sample_weight=None):
    if method not in INIT_METHODS:
        raise ValueError(f"init_params must be one of {INIT_METHODS}; got {method!r}")
    if method in ("kmeans", "hc"):
        # k-means: the shared k-means program (the same call bayesgmm.KMeans makes), then a
        # one-hot; hc: NumPy, outside jit.
        return initial_resp(key, X, n_components, method, sample_weight)
    return _initial_resp_one.pick(X.shape[0], n_components, X.shape[1], data=X)(
        key, X, n_components, method, sample_weight
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
    sample_weight=None,
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
            resp_init = initial_resp(None, X, n_components, "hc", sample_weight)
        if resp_init is not None:
            resp_init = jnp.asarray(resp_init, dtype)
        # One restart at a time through the shared programs (not a vmap): their compiled form
        # then does not depend on n_init. Same keys as jax.random.split(key, n_init) gave the
        # restarts when initialisation ran inside the EM program.
        for k in jax.random.split(key, n_init):
            if resp_init is None:
                resp = _initial_resp(k, X, n_components, init_params, sample_weight)
            else:
                resp = resp_init
            p = initial_m_step(X, resp, ct.name, reg_covar, prior, sample_weight)
            runs.append(
                [
                    default if override is None else override
                    for default, override in zip((p.weights, p.means, p.covariances), overrides)
                ]
            )
    leaves = [jnp.stack(parts) for parts in zip(*runs)]
    return GMMParams.tree_unflatten(ct.name, tuple(leaves))
