"""Posterior inference by NUTS, the ``Posterior`` container, and relabeling of draws.

The sampler runs :func:`bayesgmm.model.gmm_model` with NumPyro's NUTS kernel
(:func:`numpyro.infer.hmc.hmc`), started at the MAP-EM solution (every chain slightly jittered in
the unconstrained space). The whole run - initialisation, warm-up and sampling of every chain -
is one program jitted at module level with the static settings (number of components,
covariance type, draws, tree depth, ...) as static arguments, so it is traced and compiled once
per data shape and settings and reused by every later call; ``numpyro.infer.MCMC`` traces and
compiles again on every ``run``, which costs more than the sampling itself at small sizes.

Chains are vectorised (``vmap``) on one device, or split across devices with ``pmap`` when
several exist (``numpyro.set_host_device_count`` before JAX starts gives several CPU devices).

Mixture components are exchangeable, so labels switch between and within chains. ``relabel``
permutes each draw's components to match a pivot (the MAP-EM solution by default): by a
minimum-cost assignment (Hungarian algorithm, :func:`scipy.optimize.linear_sum_assignment`) on
the symmetrised Kullback-Leibler divergence between the draw's and the pivot's components, or
by Stephens (2000)'s algorithm on the responsibilities.
"""

from __future__ import annotations

import math
import sys
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from numpyro.infer.hmc import hmc
from numpyro.infer.util import constrain_fn, potential_energy, unconstrain_fn
from scipy.optimize import linear_sum_assignment

from . import density
from ._compile import LOW_OPT
from ._exceptions import DivergenceWarning
from ._random import as_key
from ._validation import check_covariance_type, check_data, check_positive_int
from .covariance import get_covariance_type
from .model import SITE_NAMES, gmm_model
from .params import GMMParams, Prior

__all__ = ["fit_posterior", "Posterior", "DivergenceWarning", "relabel_draws"]


# --------------------------------------------------------------------------------------------
# The sampler: one jitted program per (shapes, settings)
# --------------------------------------------------------------------------------------------


class _Settings(NamedTuple):
    """Static settings of a NUTS run (hashable: they key the compilation cache)."""

    n_components: int
    covariance_type: str
    num_warmup: int
    num_samples: int
    target_accept_prob: float
    max_tree_depth: int
    dense_mass: bool
    progress_every: int  # 0: no progress callbacks compiled in


class _Draws(NamedTuple):
    """What is kept of every post-warm-up NUTS step, with leading (draw, chain) axes."""

    params: dict
    potential_energy: jax.Array
    energy: jax.Array
    num_steps: jax.Array
    accept_prob: jax.Array
    diverging: jax.Array
    step_size: jax.Array


# The progress bar lives on the Python side; the compiled program calls back into it. The
# callback is a module-level function so that a cached program keeps calling the current bar.
_PROGRESS: dict = {"bar": None, "per_chain": 0, "sequential": True}


def _progress_callback(n_done, device, chain):
    bar = _PROGRESS["bar"]
    if bar is None or int(device) != 0:
        return
    if _PROGRESS["sequential"]:
        position = int(chain) * _PROGRESS["per_chain"] + int(n_done)
    elif int(chain) == 0:
        position = int(n_done)
    else:
        return
    bar.update(max(position - bar.n, 0))


def _model_kwargs(prior, settings):
    return {
        "n_components": settings.n_components,
        "covariance_type": settings.covariance_type,
        "prior": prior,
    }


def _run_one(key, X, prior, init_z, chain, settings: _Settings, device):
    """Warm up and sample one chain from the unconstrained start ``init_z``.

    Returns ``_Draws`` with a leading draw axis.
    """
    kwargs = _model_kwargs(prior, settings)

    def potential_fn(z):
        return potential_energy(gmm_model, (X,), kwargs, z)

    init_kernel, sample_kernel = hmc(potential_fn, algo="NUTS")
    state = init_kernel(
        init_z,
        settings.num_warmup,
        target_accept_prob=settings.target_accept_prob,
        max_tree_depth=settings.max_tree_depth,
        dense_mass=settings.dense_mass,
        rng_key=key,
    )
    every = settings.progress_every

    def report(i):
        if every:
            jax.lax.cond(
                (i + 1) % every == 0,
                lambda: jax.debug.callback(_progress_callback, i + 1, device, chain),
                lambda: None,
            )

    def collect(state):
        return _Draws(
            constrain_fn(gmm_model, (X,), kwargs, state.z),
            state.potential_energy,
            state.energy,
            state.num_steps,
            state.accept_prob,
            state.diverging,
            state.adapt_state.step_size,
        )

    # One loop over warm-up and sampling (not two): the NUTS kernel appears once in the
    # program, which halves tracing and compilation. Every step writes its draw to slot
    # max(i - num_warmup, 0) of preallocated buffers, so warm-up writes are overwritten by
    # the first kept draw and memory holds only the kept draws.
    buffers = jax.tree_util.tree_map(
        lambda a: jnp.zeros((settings.num_samples,) + a.shape, a.dtype),
        jax.eval_shape(collect, state),
    )

    def body(i, carry):
        state, buffers = carry
        state = sample_kernel(state)
        report(i)
        slot = jnp.maximum(i - settings.num_warmup, 0)
        buffers = jax.tree_util.tree_map(
            lambda buf, x: jax.lax.dynamic_update_index_in_dim(buf, x, slot, 0),
            buffers,
            collect(state),
        )
        return state, buffers

    total = settings.num_warmup + settings.num_samples
    _, draws = jax.lax.fori_loop(0, total, body, (state, buffers))
    return draws


def _run_chains(keys, X, prior, init_z, settings: _Settings, device, vectorized: bool):
    """All chains of one device: ``vmap`` (vectorized) or ``lax.map`` (one after another)
    over :func:`_run_one`. Returns ``_Draws`` with leading (chain, draw) axes.

    On CPU one chain after another is faster than ``vmap``: a vectorised NUTS step runs until
    the longest trajectory among the chains ends, and the batched loop conditions turn every
    branch into selects over the whole state (measured: 4 vectorised chains cost 6.6 times one
    chain's CPU time, ``lax.map`` 4 times).
    """
    chains = jnp.arange(keys.shape[0])

    def one(args):
        key, z, chain = args
        return _run_one(key, X, prior, z, chain, settings, device)

    if vectorized:
        return jax.vmap(one)((keys, init_z, chains))
    return jax.lax.map(one, (keys, init_z, chains))


_run_single_device = jax.jit(_run_chains, static_argnames=("settings", "vectorized"))


def _run_chains_device(keys, X, prior, init_z, settings, vectorized):
    return _run_chains(keys, X, prior, init_z, settings, jax.lax.axis_index("device"), vectorized)


_run_parallel = jax.pmap(
    _run_chains_device,
    axis_name="device",
    in_axes=(0, None, None, 0, None, None),
    static_broadcasted_argnums=(4, 5),
)


def _sample_nuts(keys, X, prior, init_z, settings, chain_method):
    """Run every chain; returns ``_Draws`` with leading (chain, draw) axes as NumPy arrays.

    ``chain_method``: 'sequential' (one program, chains one after another), 'vectorized'
    (``vmap``) or 'parallel' (``pmap`` over devices, chains one after another on each).
    """
    num_chains = keys.shape[0]
    if chain_method == "parallel":
        n_dev = _n_parallel_devices(num_chains)
        per = num_chains // n_dev
        split = lambda a: jnp.reshape(a, (n_dev, per) + a.shape[1:])  # noqa: E731
        out = _run_parallel(
            split(keys), X, prior, jax.tree_util.tree_map(split, init_z), settings, False
        )
        return jax.tree_util.tree_map(
            lambda a: np.asarray(a).reshape((num_chains,) + a.shape[2:]), out
        )
    out = _run_single_device(
        keys, X, prior, init_z, settings, 0, vectorized=chain_method == "vectorized"
    )
    return jax.tree_util.tree_map(np.asarray, out)


def _n_parallel_devices(num_chains):
    """Largest number of local devices that divides ``num_chains``."""
    n = min(jax.local_device_count(), num_chains)
    while num_chains % n:
        n -= 1
    return n


# --------------------------------------------------------------------------------------------
# fit_posterior
# --------------------------------------------------------------------------------------------

CHAIN_METHODS = ("vectorized", "parallel", "sequential")


def _resolve_prior(prior, X, n_components, covariance_type):
    if isinstance(prior, str):
        if prior != "default":
            raise ValueError(f"prior must be 'default' or a Prior; got {prior!r}")
        return Prior.default(X, n_components, covariance_type)
    if not isinstance(prior, Prior):
        raise TypeError(f"prior must be 'default' or a bayesgmm.Prior; got {type(prior).__name__}")
    if prior.covariance_type != covariance_type:
        raise ValueError(
            f"prior is for covariance_type={prior.covariance_type!r} but covariance_type="
            f"{covariance_type!r}"
        )
    if prior.n_components != n_components or prior.n_features != X.shape[1]:
        raise ValueError(
            f"prior is for {prior.n_components} components and {prior.n_features} features; "
            f"the model has {n_components} components and X has {X.shape[1]} features"
        )
    return prior


def _map_start(X, n_components, covariance_type, prior, seed):
    """MAP-EM fit used as the chains' starting point (and as the default relabeling pivot)."""
    from .estimator import GaussianMixture

    alpha = np.asarray(prior.weight_concentration)
    map_prior = prior
    if np.any(alpha < 1):
        # Below 1 the Dirichlet has no interior mode; start from the mode under a flat one.
        map_prior = Prior(
            np.maximum(alpha, 1.0),
            prior.mean,
            prior.mean_precision,
            prior.dof,
            prior.scale,
            covariance_type,
        )
    est = GaussianMixture(
        n_components,
        covariance_type=covariance_type,
        prior=map_prior,
        reg_covar=0.0,  # the prior regularises; 0 keeps the exact posterior mode
        tol=1e-8,
        max_iter=1000,
        n_init=4,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)  # ConvergenceWarning: still a start
        est.fit(X)
    return est


def _jittered_init_impl(key, X, params: GMMParams, prior, jitter, settings, num_chains):
    batched = params.weights.ndim == 2  # one start per chain

    def unconstrained(p):
        values = dict(zip(SITE_NAMES, (p.weights, p.means, p.covariances)))
        # Without X the model has no likelihood site: the transforms are the parameter
        # sites' own, and the program does not carry the mixture density over X.
        return unconstrain_fn(gmm_model, (), _model_kwargs(prior, settings), values)

    z0 = jax.vmap(unconstrained)(params) if batched else unconstrained(params)
    n = X.shape[0]
    nk = jnp.maximum(params.weights * n, 1.0)
    mean_sd = jnp.sqrt(
        jnp.diagonal(params.covariance_matrices(), axis1=-2, axis2=-1) / nk[..., None]
    )
    keys = jax.random.split(key, len(z0))
    out = {}
    for k, name in zip(keys, sorted(z0)):
        base = z0[name]
        site_shape = base.shape[1:] if batched else base.shape
        noise = jax.random.normal(k, (num_chains,) + site_shape, base.dtype)
        scale = mean_sd if name == "means" else 1.0 / math.sqrt(n)
        out[name] = base + jitter * scale * noise
    return out


# One program per (shapes, settings): op by op, the model's transforms and the three normal
# draws compiled a dozen small programs on every new shape. It runs once per fit, so it is
# compiled at XLA's optimisation level 0 (about half the compile time).
_jittered_init_jit = jax.jit(
    _jittered_init_impl, static_argnames=("settings", "num_chains"), compiler_options=LOW_OPT
)


def _jittered_init(key, X, params: GMMParams, prior, settings, num_chains, jitter):
    """Unconstrained start values, one per chain: the MAP point plus small noise.

    ``params`` is one set of parameters, or one per chain (batch shape ``(num_chains,)``).
    Means move by ``jitter`` times their rough posterior standard deviation
    (sqrt(diag Sigma_k / n_k)); the other (unconstrained: log-scale, stick-breaking) coordinates
    by ``jitter / sqrt(n_samples)``, the order of their posterior spread.
    """
    jitter = jnp.asarray(jitter, X.dtype)
    return _jittered_init_jit(key, X, params, prior, jitter, settings, num_chains)


def fit_posterior(
    X,
    n_components: int,
    *,
    covariance_type: str = "full",
    prior="default",
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    seed=0,
    init="map",
    progress_bar: bool | None = None,
    chain_method: str | None = None,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    dense_mass: bool = False,
    jitter: float = 1.0,
) -> Posterior:
    """Sample the posterior of a Gaussian mixture with NUTS, started at the MAP-EM solution.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_components : int
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default 'full'
    prior : Prior or 'default', default 'default'
        ``'default'`` is mclust's data-dependent conjugate prior (:meth:`Prior.default`).
    num_warmup, num_samples : int, default 1000
        Warm-up (adaptation) steps and kept draws per chain.
    num_chains : int, default 4
    seed : int or jax key, default 0
    init : 'map', GMMParams or fitted GaussianMixture, default 'map'
        Where the chains start: the MAP-EM fit under ``prior`` (4 restarts, no ``reg_covar``),
        or given parameters. Each chain starts slightly jittered around it. A ``GMMParams``
        with batch shape ``(num_chains,)`` gives each chain its own start (the first is then
        ``map_params``, the default relabeling pivot).
    progress_bar : bool, optional
        Default: on when standard output is a terminal.
    chain_method : {'sequential', 'vectorized', 'parallel'}, optional
        How chains share the hardware, all in one compiled program: 'sequential' runs them one
        after another (``lax.map``; the fastest on one CPU device), 'vectorized' together
        (``vmap``; for accelerators), 'parallel' split across devices (``pmap``; CPU devices
        come from ``numpyro.set_host_device_count`` before JAX starts). Default: 'parallel'
        when several devices exist, else 'sequential'.
    target_accept_prob, max_tree_depth, dense_mass
        NUTS settings (NumPyro's meanings).
    jitter : float, default 1
        Size of the start jitter, in rough posterior standard deviations.

    Returns
    -------
    Posterior
        Draws with batch axes (chain, draw), in sampled (not relabeled) order.

    Notes
    -----
    The run is compiled once per (data shape, dtype, settings) and reused: a second call with
    the same shapes and settings does not compile. Divergent transitions are counted and
    warned about (:class:`DivergenceWarning`).

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm import fit_posterior
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-3, 1, (100, 1)), rng.normal(3, 1, (100, 1))])
    >>> post = fit_posterior(X, 2, covariance_type="spherical", num_warmup=200,
    ...                      num_samples=200, num_chains=2, progress_bar=False)
    >>> post.draws.batch_shape
    (2, 200)
    >>> np.round(np.sort(post.mean_params().means.ravel()))
    array([-3.,  3.])
    """
    feature_names = _feature_names(X)
    X = check_data(X, min_samples=2)
    n_components = check_positive_int(n_components, "n_components")
    covariance_type = check_covariance_type(covariance_type)
    num_warmup = check_positive_int(num_warmup, "num_warmup", minimum=0)
    num_samples = check_positive_int(num_samples, "num_samples")
    num_chains = check_positive_int(num_chains, "num_chains")
    max_tree_depth = check_positive_int(max_tree_depth, "max_tree_depth")
    if not (isinstance(target_accept_prob, float | int) and 0 < target_accept_prob < 1):
        raise ValueError(f"target_accept_prob must be in (0, 1); got {target_accept_prob!r}")
    if not (isinstance(jitter, float | int) and jitter >= 0 and math.isfinite(jitter)):
        raise ValueError(f"jitter must be a finite number >= 0; got {jitter!r}")
    if X.shape[0] < n_components:
        raise ValueError(
            f"Expected n_samples >= n_components but got n_components = {n_components}, "
            f"n_samples = {X.shape[0]}"
        )
    if chain_method is None:
        chain_method = (
            "parallel" if jax.local_device_count() > 1 and num_chains > 1 else "sequential"
        )
    if chain_method not in CHAIN_METHODS:
        raise ValueError(f"chain_method must be one of {CHAIN_METHODS}; got {chain_method!r}")
    if chain_method == "parallel" and _n_parallel_devices(num_chains) == 1:
        chain_method = "sequential"
    if progress_bar is None:
        progress_bar = bool(getattr(sys.stdout, "isatty", lambda: False)())
    prior = _resolve_prior(prior, X, n_components, covariance_type).astype(X.dtype)

    key = as_key(seed)
    key_em, key_jitter, key_nuts = jax.random.split(key, 3)
    map_estimator, start = _resolve_init(
        init, X, n_components, covariance_type, prior, key_em, num_chains
    )
    # With one start per chain, the first is the relabeling pivot.
    map_params = start if not start.batch_shape else jax.tree_util.tree_map(lambda a: a[0], start)
    total = num_warmup + num_samples
    settings = _Settings(
        n_components,
        covariance_type,
        num_warmup,
        num_samples,
        float(target_accept_prob),
        max_tree_depth,
        bool(dense_mass),
        max(1, total // 100) if progress_bar else 0,
    )
    # The sampler runs in float64 even for float32 data: NumPyro's NUTS keeps parts of its
    # adaptation state in float64 under x64 and then mixes dtypes inside the trajectory. The
    # model is small next to the data, and the draws are returned in the data's dtype.
    f64 = jnp.float64
    Xj = jnp.asarray(X, f64)
    prior64 = prior.astype(f64)
    init_z = _jittered_init(
        key_jitter, Xj, start.astype(f64), prior64, settings, num_chains, jitter
    )
    keys = jax.random.split(key_nuts, num_chains)
    out = _run_with_progress(keys, Xj, prior64, init_z, settings, chain_method, progress_bar)

    ct = get_covariance_type(covariance_type)
    draws = GMMParams.tree_unflatten(
        ct.name, tuple(jnp.asarray(out.params[name], X.dtype) for name in SITE_NAMES)
    )
    sample_stats = {
        "diverging": np.asarray(out.diverging, bool),
        "energy": np.asarray(out.energy),
        "lp": -np.asarray(out.potential_energy),
        "n_steps": np.asarray(out.num_steps),
        "tree_depth": np.ceil(np.log2(np.asarray(out.num_steps) + 1.0)).astype(np.int64),
        "step_size": np.asarray(out.step_size),
        "acceptance_rate": np.asarray(out.accept_prob),
    }
    post = Posterior(
        draws,
        X=X,
        prior=prior,
        map_params=map_params,
        map_estimator=map_estimator,
        sample_stats=sample_stats,
        feature_names=feature_names,
        settings={
            "num_warmup": num_warmup,
            "num_samples": num_samples,
            "num_chains": num_chains,
            "chain_method": chain_method,
            "target_accept_prob": float(target_accept_prob),
            "max_tree_depth": max_tree_depth,
            "dense_mass": bool(dense_mass),
        },
    )
    if post.num_divergences:
        warnings.warn(
            f"{post.num_divergences} of {num_chains * num_samples} NUTS transitions after "
            "warm-up diverged; the draws may be biased. Try target_accept_prob closer to 1, "
            "a different covariance_type or n_components, or rescaling X.",
            DivergenceWarning,
            stacklevel=2,
        )
    return post


def _feature_names(X):
    cols = getattr(X, "columns", None)
    if cols is None:
        return None
    return [str(c) for c in cols]


def _resolve_init(init, X, n_components, covariance_type, prior, key, num_chains=1):
    from .estimator import GaussianMixture

    if isinstance(init, str):
        if init != "map":
            raise ValueError(
                f"init must be 'map', a GMMParams or a fitted GaussianMixture; got {init!r}"
            )
        seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
        est = _map_start(X, n_components, covariance_type, prior, seed)
        return est, est.params_
    if isinstance(init, GaussianMixture):
        if not hasattr(init, "params_"):
            raise ValueError("init is a GaussianMixture that is not fitted yet; call fit first")
        est, params = init, init.params_
    elif isinstance(init, GMMParams):
        est, params = None, init
    else:
        raise TypeError(
            f"init must be 'map', a GMMParams or a fitted GaussianMixture; got "
            f"{type(init).__name__}"
        )
    if (
        params.covariance_type != covariance_type
        or params.n_components != n_components
        or params.n_features != X.shape[1]
        or params.batch_shape not in ((), (num_chains,))
    ):
        raise ValueError(
            f"init has covariance_type={params.covariance_type!r}, {params.n_components} "
            f"components, {params.n_features} features and batch shape {params.batch_shape}; "
            f"expected {covariance_type!r}, {n_components}, {X.shape[1]} and () or "
            f"(num_chains,) = ({num_chains},)"
        )
    params = params.astype(X.dtype)
    if not np.all(np.asarray(params.weights) > 0):
        raise ValueError("init weights must all be > 0 (the Dirichlet's support)")
    return est, params


def _run_with_progress(keys, X, prior, init_z, settings, chain_method, progress_bar):
    if not progress_bar:
        return _sample_nuts(keys, X, prior, init_z, settings, chain_method)
    from tqdm.auto import tqdm

    total = settings.num_warmup + settings.num_samples
    num_chains = keys.shape[0]
    # Chains that run one after another on the reporting device (device 0).
    if chain_method == "parallel":
        sequential, shown = True, num_chains // _n_parallel_devices(num_chains)
    else:
        sequential = chain_method == "sequential"
        shown = num_chains if sequential else 1
    desc = f"NUTS ({num_chains} chains, {chain_method})"
    bar = tqdm(total=total * shown, desc=desc, unit="it")
    _PROGRESS.update(per_chain=total, sequential=sequential)
    _PROGRESS["bar"] = bar
    try:
        out = _sample_nuts(keys, X, prior, init_z, settings, chain_method)
        bar.update(bar.total - bar.n)
    finally:
        _PROGRESS["bar"] = None
        bar.close()
    return out


# --------------------------------------------------------------------------------------------
# Relabeling
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# The Posterior container
# --------------------------------------------------------------------------------------------


class Posterior:
    """Posterior draws of a Gaussian mixture and the utilities over them.

    Attributes
    ----------
    draws : GMMParams
        Parameters with batch axes (chain, draw).
    X : ndarray (n_samples, n_features)
        The data the posterior conditions on.
    prior : Prior
    map_params : GMMParams
        The MAP-EM solution the chains started from (the default relabeling pivot).
    map_estimator : GaussianMixture or None
        The fitted MAP-EM estimator.
    covariance_type : str
    n_components, n_features : int
    sample_stats : dict of ndarray (chain, draw)
        ``diverging``, ``energy``, ``lp`` (log joint in the unconstrained space, minus NUTS's
        potential energy), ``n_steps``, ``tree_depth``, ``step_size``, ``acceptance_rate``.
    num_divergences : int
    relabeled : bool
        Whether the draws were aligned by :meth:`relabel` (component-wise summaries need it).
    feature_names : list of str or None
    settings : dict
        The sampler settings used.
    """

    #: What :func:`bayesgmm.save` writes a Posterior as (read by bayesgmm.io).
    _bayesgmm_file_kind = "posterior"

    def __init__(
        self,
        draws: GMMParams,
        *,
        X,
        prior: Prior,
        map_params: GMMParams,
        map_estimator=None,
        sample_stats=None,
        relabeled: bool = False,
        feature_names=None,
        settings=None,
    ):
        if len(draws.batch_shape) != 2:
            raise ValueError(
                f"draws must have batch axes (chain, draw); got batch shape {draws.batch_shape}"
            )
        self.draws = draws
        self.X = np.asarray(X)
        self.prior = prior
        self.map_params = map_params
        self.map_estimator = map_estimator
        self.sample_stats = dict(sample_stats or {})
        self.relabeled = bool(relabeled)
        self.feature_names = None if feature_names is None else [str(f) for f in feature_names]
        self.settings = dict(settings or {})

    # --- shapes ---------------------------------------------------------------------------
    @property
    def covariance_type(self) -> str:
        return self.draws.covariance_type

    @property
    def n_components(self) -> int:
        return self.draws.n_components

    @property
    def n_features(self) -> int:
        return self.draws.n_features

    @property
    def num_chains(self) -> int:
        return self.draws.batch_shape[0]

    @property
    def num_draws(self) -> int:
        return self.draws.batch_shape[1]

    @property
    def num_divergences(self) -> int:
        div = self.sample_stats.get("diverging")
        return 0 if div is None else int(np.sum(div))

    def __repr__(self):
        return (
            f"Posterior(covariance_type={self.covariance_type!r}, n_components="
            f"{self.n_components}, n_features={self.n_features}, chains={self.num_chains}, "
            f"draws={self.num_draws}, divergences={self.num_divergences}, "
            f"relabeled={self.relabeled})"
        )

    def _replace(self, **changes) -> Posterior:
        fields = {
            "X": self.X,
            "prior": self.prior,
            "map_params": self.map_params,
            "map_estimator": self.map_estimator,
            "sample_stats": self.sample_stats,
            "relabeled": self.relabeled,
            "feature_names": self.feature_names,
            "settings": self.settings,
        }
        draws = changes.pop("draws", self.draws)
        fields.update(changes)
        return Posterior(draws, **fields)

    # --- relabeling -----------------------------------------------------------------------
    def relabel(self, pivot: GMMParams | None = None, method: str = "hungarian"):
        """Permute each draw's components to match a pivot, undoing label switching.

        Parameters
        ----------
        pivot : GMMParams, optional
            Unbatched parameters to align to; default the MAP-EM solution.
        method : {'hungarian', 'stephens'}
            ``'hungarian'``: per draw, the permutation of minimum total symmetrised KL
            divergence between matched components (means and covariances).
            ``'stephens'``: Stephens (2000)'s algorithm on the responsibilities of the data.

        Returns
        -------
        posterior : Posterior
            With relabeled draws (``relabeled=True``).
        perms : int ndarray of shape (chain, draw, n_components)
            Component ``j`` of a relabeled draw is component ``perms[c, t, j]`` of the original.
        """
        pivot = self.map_params if pivot is None else pivot
        if not isinstance(pivot, GMMParams):
            raise TypeError(f"pivot must be a GMMParams or None; got {type(pivot).__name__}")
        if (
            pivot.batch_shape
            or pivot.n_components != self.n_components
            or pivot.n_features != self.n_features
            or pivot.covariance_type != self.covariance_type
        ):
            raise ValueError(
                "pivot must be unbatched GMMParams with the posterior's covariance_type, "
                "n_components and n_features"
            )
        pivot = pivot.astype(self.draws.dtype)
        perms = relabel_draws(self.draws, pivot, method=method, X=self.X)
        return self._replace(draws=permute_draws(self.draws, perms), relabeled=True), perms

    def _aligned(self) -> Posterior:
        return self if self.relabeled else self.relabel()[0]

    # --- summaries over draws ---------------------------------------------------------------
    def mean_params(self) -> GMMParams:
        """Posterior mean of the (relabeled) weights, means and covariances (unbatched).

        Draws are relabeled to the MAP-EM solution first unless they already were.
        """
        d = self._aligned().draws
        return GMMParams.tree_unflatten(
            d.covariance_type,
            tuple(jnp.mean(a, axis=(0, 1)) for a in (d.weights, d.means, d.covariances)),
        )

    def _checked(self, X):
        return jnp.asarray(check_data(X, n_features=self.n_features, dtype=self.X.dtype))

    def predict_proba(self, X):
        """Posterior probability of each component for each row, averaged over the
        (relabeled) draws; shape (n_samples, n_components), rows summing to one."""
        X = self._checked(X)
        d = self._aligned().draws
        return np.asarray(jnp.mean(density.predict_proba(X, d), axis=(0, 1)))

    def predict(self, X):
        """Most probable component of each row under :meth:`predict_proba`; (n_samples,)."""
        return np.argmax(self.predict_proba(X), axis=-1)

    def assignment_uncertainty(self, X):
        """One minus the largest posterior component probability of each row; (n_samples,).

        0 for a point surely in one component; at most ``1 - 1/n_components``.
        """
        return 1.0 - np.max(self.predict_proba(X), axis=-1)

    def log_likelihood(self, X=None):
        """``log p(x_n | theta)`` for every draw and row; shape (chain, draw, n_samples).

        ``X`` defaults to the data the posterior conditions on.
        """
        X = jnp.asarray(self.X) if X is None else self._checked(X)
        return np.asarray(density.log_prob(X, self.draws))

    def score_samples(self, X):
        """Log posterior-predictive density of each row: log of the mean over draws of
        ``p(x | theta)``; shape (n_samples,)."""
        ll = self.log_likelihood(X)
        s = ll.shape[0] * ll.shape[1]
        return np.asarray(logsumexp(ll.reshape(s, -1), axis=0) - np.log(s))

    def score(self, X):
        """Mean log posterior-predictive density of the rows of ``X``."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples: int = 1, seed=0):
        """Posterior-predictive synthetic data: each point from its own random draw.

        Parameters
        ----------
        n_samples : int
        seed : int or jax key

        Returns
        -------
        X : ndarray (n_samples, n_features)
        labels : ndarray (n_samples,), the component (in the draws' labeling) of each point
        """
        n_samples = check_positive_int(n_samples, "n_samples")
        key_pick, key_sample = jax.random.split(as_key(seed))
        _, flat = _flatten_batch(self.draws)
        idx = jax.random.randint(key_pick, (n_samples,), 0, flat.weights.shape[0])
        x, labels = density.sample(key_sample, flat[idx], 1)
        return np.asarray(x[:, 0]), np.asarray(labels[:, 0])

    def summary(self, var_names=("weights", "means"), **kwargs):
        """``arviz.summary`` of the relabeled draws (relabeled to the MAP-EM solution first
        unless already relabeled): means, sds, HDIs, R-hat and ESS."""
        import arviz as az

        idata = self._aligned().to_inference_data(log_likelihood=False)
        return az.summary(idata, var_names=list(var_names), **kwargs)

    # --- ArviZ ----------------------------------------------------------------------------
    def to_inference_data(self, posterior_predictive=False, *, log_likelihood=True, seed=0):
        """An ``arviz.InferenceData`` (see :func:`bayesgmm.convert.to_inference_data`)."""
        from .convert import to_inference_data

        return to_inference_data(
            self,
            posterior_predictive=posterior_predictive,
            log_likelihood=log_likelihood,
            seed=seed,
        )

    @classmethod
    def from_inference_data(cls, idata) -> Posterior:
        """Rebuild a Posterior from :meth:`to_inference_data`'s output (also after netCDF)."""
        from .convert import read_inference_data

        parts = read_inference_data(idata)
        info = parts.pop("map_info")
        map_estimator = _estimator_from_params(parts["map_params"], parts["prior"], info)
        return cls(parts.pop("draws"), map_estimator=map_estimator, **parts)

    @classmethod
    def load(cls, path) -> Posterior:
        """Load a Posterior saved by :meth:`save` (or :func:`bayesgmm.save`).

        Raises
        ------
        FileNotFoundError, FormatError
            As :func:`bayesgmm.load`.
        """
        from .io import read_posterior_file

        return cls.from_inference_data(read_posterior_file(path))

    def save(self, path, overwrite=False):
        """Save as ArviZ netCDF with bayesgmm's format attributes (:mod:`bayesgmm.io`); never
        replaces an existing file unless ``overwrite=True``. Reload with :func:`bayesgmm.load`."""
        from .io import save_posterior

        return save_posterior(self, path, overwrite=overwrite)


def _estimator_from_params(params: GMMParams, prior: Prior, info: dict | None = None):
    """A fitted GaussianMixture holding ``params`` (for posteriors loaded from files)."""
    from .em import EMResult
    from .estimator import GaussianMixture

    info = info or {}
    est = GaussianMixture(
        params.n_components,
        covariance_type=params.covariance_type,
        prior=prior,
        reg_covar=0.0,
        tol=1e-8,
        max_iter=1000,
        n_init=4,
    )
    lb = float(info.get("lower_bound", np.nan))
    n_iter = int(info.get("n_iter", 0))
    res = EMResult(
        jax.tree_util.tree_map(lambda a: a[None], params),
        jnp.asarray([lb]),
        jnp.full((1, max(n_iter, 1)), lb),
        jnp.asarray([n_iter]),
        jnp.asarray([bool(info.get("converged", True))]),
        jnp.asarray([False]),
    )
    est._store(res, 0, prior, params.n_features)
    return est
