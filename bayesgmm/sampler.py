"""Running NUTS on :func:`bayesgmm.model.gmm_model`: one compiled program per shapes and settings.

:func:`run_nuts` jitters the start in the unconstrained space, then warms up and samples every
chain with NumPyro's NUTS kernel through its functional API (:func:`numpyro.infer.hmc.hmc`
with a potential function, NumPyro's documented alternative to ``MCMC``). The whole run -
warm-up and sampling of every chain - is one program jitted at module level with the static
settings (number of components, covariance type, draws, tree depth, ...) as static arguments,
so it is traced and compiled once per data shape and settings and reused by every later call.
``numpyro.infer.MCMC`` traced and compiled again on every ``run`` at the time of measuring
(``scripts/bench_nuts.py``; README), which cost more than the sampling itself at small sizes.

Chains run one after another (``lax.map``), together (``vmap``), or split across devices with
``pmap`` when several exist (``numpyro.set_host_device_count`` before JAX starts gives several
CPU devices). The optional progress bar is tqdm's, fed by a host callback.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.hmc import hmc
from numpyro.infer.util import constrain_fn, potential_energy, unconstrain_fn

from ._compile import LOW_OPT, is_small
from ._devices import ROWS, resolve_devices, row_mesh
from ._validation import check_positive_int
from .model import SITE_NAMES, gmm_model
from .params import GMMParams
from .prior import Prior

__all__ = [
    "CHAIN_METHODS",
    "NUTSSettings",
    "nuts_settings",
    "resolve_chain_method",
    "resolve_likelihood_mesh",
    "run_nuts",
    "sample_stats",
]


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


def _run_one(key, data, prior, init_z, chain, settings: _Settings, device):
    """Warm up and sample one chain from the unconstrained start ``init_z``.

    ``data`` is the model's positional arguments ``(X, sample_weight, missing)`` (the last
    two None when unused).

    Returns ``_Draws`` with a leading draw axis.
    """
    kwargs = _model_kwargs(prior, settings)

    def potential_fn(z):
        return potential_energy(gmm_model, data, kwargs, z)

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
            constrain_fn(gmm_model, data, kwargs, state.z),
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


def _run_chains(keys, data, prior, init_z, settings: _Settings, device, vectorized: bool):
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
        return _run_one(key, data, prior, z, chain, settings, device)

    if vectorized:
        return jax.vmap(one)((keys, init_z, chains))
    return jax.lax.map(one, (keys, init_z, chains))


_run_single_device = jax.jit(_run_chains, static_argnames=("settings", "vectorized"))


def _run_chains_device(keys, data, prior, init_z, settings, vectorized):
    device = jax.lax.axis_index("device")
    return _run_chains(keys, data, prior, init_z, settings, device, vectorized)


_run_parallel = jax.pmap(
    _run_chains_device,
    axis_name="device",
    in_axes=(0, None, None, 0, None, None),
    static_broadcasted_argnums=(4, 5),
)


def _sample_nuts(keys, data, prior, init_z, settings, chain_method):
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
            split(keys), data, prior, jax.tree_util.tree_map(split, init_z), settings, False
        )
        return jax.tree_util.tree_map(
            lambda a: np.asarray(a).reshape((num_chains,) + a.shape[2:]), out
        )
    out = _run_single_device(
        keys, data, prior, init_z, settings, 0, vectorized=chain_method == "vectorized"
    )
    return jax.tree_util.tree_map(np.asarray, out)


def _n_parallel_devices(num_chains):
    """Largest number of local devices that divides ``num_chains``."""
    n = min(jax.local_device_count(), num_chains)
    while num_chains % n:
        n -= 1
    return n


# --------------------------------------------------------------------------------------------

CHAIN_METHODS = ("vectorized", "parallel", "sequential")


def _jittered_init_impl(key, data, params: GMMParams, prior, jitter, settings, num_chains):
    batched = params.weights.ndim == 2  # one start per chain

    def unconstrained(p):
        values = dict(zip(SITE_NAMES, (p.weights, p.means, p.covariances)))
        # Without X the model has no likelihood site: the transforms are the parameter
        # sites' own, and the program does not carry the mixture density over X.
        return unconstrain_fn(gmm_model, (), _model_kwargs(prior, settings), values)

    z0 = jax.vmap(unconstrained)(params) if batched else unconstrained(params)
    # The number of rows, or the weights' total (rows repeated).
    n = data[0].shape[0] if data[1] is None else jnp.sum(data[1])
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
        # (math.sqrt for the unweighted row count: the start values stay as they were.)
        root_n = math.sqrt(n) if isinstance(n, int) else jnp.sqrt(n)
        scale = mean_sd if name == "means" else 1.0 / root_n
        out[name] = base + jitter * scale * noise
    return out


# One program per (shapes, settings): op by op, the model's transforms and the three normal
# draws compiled a dozen small programs on every new shape. It runs once per fit, so it is
# compiled at XLA's optimisation level 0 (about half the compile time).
_jittered_init_jit = jax.jit(
    _jittered_init_impl, static_argnames=("settings", "num_chains"), compiler_options=LOW_OPT
)


def _jittered_init(key, data, params: GMMParams, prior, settings, num_chains, jitter):
    """Unconstrained start values, one per chain: the MAP point plus small noise.

    ``params`` is one set of parameters, or one per chain (batch shape ``(num_chains,)``).
    Means move by ``jitter`` times their rough posterior standard deviation
    (sqrt(diag Sigma_k / n_k)); the other (unconstrained: log-scale, stick-breaking) coordinates
    by ``jitter / sqrt(n_samples)``, the order of their posterior spread.
    """
    jitter = jnp.asarray(jitter, data[0].dtype)
    return _jittered_init_jit(key, data, params, prior, jitter, settings, num_chains)


def _run_with_progress(keys, data, prior, init_z, settings, chain_method, progress_bar):
    if not progress_bar:
        return _sample_nuts(keys, data, prior, init_z, settings, chain_method)
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
        out = _sample_nuts(keys, data, prior, init_z, settings, chain_method)
        bar.update(bar.total - bar.n)
    finally:
        _PROGRESS["bar"] = None
        bar.close()
    return out


#: Public name of the static settings (the fields of ``_Settings``).
NUTSSettings = _Settings


def nuts_settings(
    n_components: int,
    covariance_type: str,
    num_warmup,
    num_samples,
    target_accept_prob,
    max_tree_depth,
    dense_mass,
    progress_bar: bool,
) -> _Settings:
    """Checked static settings of a run (``ValueError`` naming the bad one); the progress
    bar, when on, is updated every 1% of the steps."""
    num_warmup = check_positive_int(num_warmup, "num_warmup", minimum=0)
    num_samples = check_positive_int(num_samples, "num_samples")
    max_tree_depth = check_positive_int(max_tree_depth, "max_tree_depth")
    if not (isinstance(target_accept_prob, float | int) and 0 < target_accept_prob < 1):
        raise ValueError(f"target_accept_prob must be in (0, 1); got {target_accept_prob!r}")
    total = num_warmup + num_samples
    return _Settings(
        n_components,
        covariance_type,
        num_warmup,
        num_samples,
        float(target_accept_prob),
        max_tree_depth,
        bool(dense_mass),
        max(1, total // 100) if progress_bar else 0,
    )


def resolve_chain_method(chain_method: str | None, num_chains: int) -> str:
    """The chain method a run uses: the default is 'parallel' when several devices exist
    (and there are several chains), else 'sequential'; 'parallel' falls back to
    'sequential' when no device count above one divides ``num_chains``."""
    if chain_method is None:
        chain_method = (
            "parallel" if jax.local_device_count() > 1 and num_chains > 1 else "sequential"
        )
    if chain_method not in CHAIN_METHODS:
        raise ValueError(f"chain_method must be one of {CHAIN_METHODS}; got {chain_method!r}")
    if chain_method == "parallel" and _n_parallel_devices(num_chains) == 1:
        chain_method = "sequential"
    return chain_method


def resolve_likelihood_mesh(
    devices, chain_method: str, n_samples: int, n_components: int, n_features: int
):
    """The mesh the likelihood's rows are sharded over in a NUTS run (None: one device).

    ``devices=None``: every local device when chains do not already spread over them
    (``chain_method`` is not 'parallel') and the problem is not small (:func:`is_small`);
    otherwise an explicit ``devices`` (:func:`~bayesgmm._devices.resolve_devices`), which
    cannot be combined with 'parallel' chains (those place whole chains on devices).
    """
    if devices is None:
        if chain_method == "parallel" or is_small(n_samples, n_components, n_features):
            return None
        return row_mesh(resolve_devices(None))
    mesh = row_mesh(resolve_devices(devices))
    if mesh is not None and chain_method == "parallel":
        raise ValueError(
            "devices shards every chain's likelihood over several devices; chain_method "
            "'parallel' places whole chains on devices instead: pass chain_method='sequential'"
            " or 'vectorized' with devices, or devices=1"
        )
    return mesh


def _shard_rows(data, mesh):
    """``(X, w, missing)`` padded to a whole number of rows per device and placed row-sharded
    on ``mesh``: jit then partitions the likelihood over the devices (each computes its rows'
    log densities and their gradient; XLA adds one all-reduce for the sums).

    Padding rows get weight 0 (masked out of the likelihood, see ``gmm_model``); without
    weights every real row gets weight 1, which multiplies its log density exactly."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    X, w, missing = data
    n = X.shape[0]
    pad = -n % mesh.size
    if w is None:
        w = jnp.ones((n,), X.dtype)

    def padded(a, value):
        if not pad:
            return a
        fill = jnp.full((pad,) + a.shape[1:], value, a.dtype)
        return jnp.concatenate([a, fill])

    X, w = padded(X, 0), padded(w, 0)
    if missing is not None:
        observed, index, patterns = missing
        # Padding rows are complete rows of zeros: finite under the mask, so no NaN reaches
        # the gradient. Pattern 0 is not necessarily complete, so the padding gets its own.
        complete = jnp.ones((1, patterns.shape[1]), patterns.dtype)
        patterns = jnp.concatenate([patterns, complete])
        missing = (padded(observed, True), padded(index, patterns.shape[0] - 1), patterns)
    rows = NamedSharding(mesh, P(ROWS))
    X, w = jax.device_put(X, rows), jax.device_put(w, rows)
    if missing is not None:
        replicated = NamedSharding(mesh, P())
        missing = (
            jax.device_put(missing[0], rows),
            jax.device_put(missing[1], rows),
            jax.device_put(missing[2], replicated),
        )
    return X, w, missing


def run_nuts(
    key,
    X,
    prior: Prior,
    start: GMMParams,
    *,
    num_chains: int,
    settings: _Settings,
    chain_method: str,
    progress_bar: bool,
    jitter: float,
    sample_weight=None,
    missing=None,
    mesh=None,
) -> _Draws:
    """Jitter ``start`` and run every chain; the draws and statistics of every kept step.

    Parameters
    ----------
    key : jax.random key, or a pair of them
        A pair is (the jitter's key, the key split into one per chain); a single key is split
        into such a pair first.
    X : array of shape (n_samples, n_features)
        Sampled in float64 whatever its dtype (see the comment in the body).
    prior : Prior
    start : GMMParams
        One start, or one per chain (batch shape ``(num_chains,)``).
    num_chains : int
    settings : NUTSSettings
    chain_method : {'sequential', 'vectorized', 'parallel'}
    progress_bar : bool
    jitter : float
        Start jitter in rough posterior standard deviations (:func:`_jittered_init`).
    sample_weight : array of shape (n_samples,), optional
        Row multiplicities of the likelihood (:func:`bayesgmm.model.gmm_model`).
    missing : tuple, optional
        ``(observed, index, patterns)`` when ``X`` has missing values (set to 0 in ``X``).
    mesh : jax.sharding.Mesh, optional
        Shard the likelihood's rows over this mesh's devices
        (:func:`resolve_likelihood_mesh`); the jitter and the draws are computed as on one
        device, so the same key gives the same chains up to the summation order.

    Returns
    -------
    _Draws
        NumPy arrays with leading (chain, draw) axes; ``params`` maps the model's site names to
        float64 arrays.
    """
    key_jitter, key_nuts = key if isinstance(key, tuple) else tuple(jax.random.split(key))
    # The sampler runs in float64 even for float32 data: NumPyro's NUTS keeps parts of its
    # adaptation state in float64 under x64 and then mixes dtypes inside the trajectory. The
    # model is small next to the data; the caller returns the draws in the data's dtype.
    f64 = jnp.float64
    data = (
        jnp.asarray(X, f64),
        None if sample_weight is None else jnp.asarray(sample_weight, f64),
        None if missing is None else tuple(jnp.asarray(a) for a in missing),
    )
    prior64 = prior.astype(f64)
    init_z = _jittered_init(
        key_jitter, data, start.astype(f64), prior64, settings, num_chains, jitter
    )
    if mesh is not None:
        data = _shard_rows(data, mesh)
    keys = jax.random.split(key_nuts, num_chains)
    return _run_with_progress(keys, data, prior64, init_z, settings, chain_method, progress_bar)


def sample_stats(out: _Draws) -> dict:
    """ArviZ's sample statistics of a run, NumPy arrays of shape (chain, draw)."""
    return {
        "diverging": np.asarray(out.diverging, bool),
        "energy": np.asarray(out.energy),
        "lp": -np.asarray(out.potential_energy),
        "n_steps": np.asarray(out.num_steps),
        "tree_depth": np.ceil(np.log2(np.asarray(out.num_steps) + 1.0)).astype(np.int64),
        "step_size": np.asarray(out.step_size),
        "acceptance_rate": np.asarray(out.accept_prob),
    }
