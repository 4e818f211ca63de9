"""``fit_em``: the EM loops of every restart together, and the fallback between the kernels."""

from __future__ import annotations

import inspect
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from .._compile import SizedJit, is_small
from .._devices import ROWS, resolve_devices, row_mesh
from .._validation import check_sample_weight
from ..params import GMMParams
from ..prior import Prior
from . import expanded
from .centred import centred_step
from .expanded import EXPANDED_BLOCK_ROWS, _data_mean, _maha_ok, expanded_step
from .init import _starts
from .reference import EMResult, _all_finite, to_blocks

__all__ = ["fit_em"]


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


def _advance(st: _LoopState, lb, new: GMMParams, ok, tol) -> _LoopState:
    """The loop state after one step that returned ``(lb, new, ok)``: the one bookkeeping of
    an EM iteration (the in-memory loop and the out-of-core one both use it). A step with
    ``ok`` false is discarded and sets ``stopped``; a non-finite objective or parameter sets
    ``failed`` and keeps the previous parameters."""
    failed = ok & ~(jnp.isfinite(lb) & _all_finite(new))
    take = ok & ~failed
    params = jax.tree_util.tree_map(lambda a, b: jnp.where(take, b, a), st.params, new)
    return _LoopState(
        params,
        jnp.where(ok, lb, st.lower_bound),
        jnp.where(ok, st.lower_bounds.at[st.n_iter].set(lb), st.lower_bounds),
        st.n_iter + ok.astype(jnp.int32),
        take & (jnp.abs(lb - st.lower_bound) < tol),
        failed,
        ~ok,
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
        st = _advance(st, *step(st.params), tol)
        if stop_when is not None:
            st = st._replace(stopped=st.stopped | stop_when(st))
        return st

    return jax.lax.while_loop(cond, body, state)


def _result(st: _LoopState) -> EMResult:
    return EMResult(st.params, st.lower_bound, st.lower_bounds, st.n_iter, st.converged, st.failed)


def _em_impl(
    X,
    sample_weight,
    states: _LoopState,
    prior,
    tol,
    reg_covar,
    until,
    max_iter: int,
    mode: str,
    mesh: Mesh | None = None,
):
    """EM iterations of every run of the batch ``states`` (leading axis: restarts), together.

    ``sample_weight`` (n_samples,) or None (every row weight 1: the program unweighted fits
    always ran, unchanged).

    ``mode`` is ``"centred"`` (the exact kernels), ``"expanded"`` (the fast kernels; a run
    whose step is refused stops with ``stopped`` set) or ``"resume"`` (the centred kernels for
    stopped runs, which stop again once they have reached ``until`` iterations and the
    expanded kernels' bound holds, so the fast kernels can take over). Returns the batched
    loop states.

    ``mesh`` (a one-axis :func:`~bayesgmm._devices.row_mesh`, or None for one device): the
    row blocks are split evenly over its devices inside ``shard_map``; each device runs the
    passes on its share, every statistic is summed over devices (``psum``) before the M-step,
    and the M-step, the loop's decisions and the returned states are the same on every
    device. Only the summation order differs from one device.
    """
    n_components = states.params.means.shape[-2]
    covariance_type = states.params.covariance_type
    n_shards = 1 if mesh is None else mesh.size
    rows = EXPANDED_BLOCK_ROWS if mode == "expanded" else None
    Xb, wb = to_blocks(X, n_components, rows, sample_weight, n_shards)
    axis = None if mesh is None else ROWS

    def run(Xb, wb, replicated):
        states, prior, tol, reg_covar, until = replicated
        stop_when = None
        if mode == "expanded":
            step = expanded_step(Xb, wb, prior, reg_covar, covariance_type, axis)
        else:
            step = centred_step(Xb, wb, prior, reg_covar, covariance_type, axis)
            if mode == "resume":
                shift = _data_mean(jnp.swapaxes(Xb, 1, 2), wb, axis)

                def stop_when(st, until):
                    return (st.n_iter >= until) & _maha_ok(st.params, shift)

        def one(st, until):
            stop = None if stop_when is None else (lambda st: stop_when(st, until))
            return _loop(step, st, tol, max_iter, stop)

        return jax.vmap(one)(states, until)

    replicated = (states, prior, tol, reg_covar, until)
    if mesh is None:
        return run(Xb, wb, replicated)
    sharded = jax.shard_map(
        run, mesh=mesh, in_specs=(P(ROWS), P(ROWS), P()), out_specs=P(), check_vma=False
    )
    return sharded(Xb, wb, replicated)


# One compiled program per mode; "resume" is compiled only when a fit needs it.
_em_program = SizedJit(_em_impl, static_argnames=("max_iter", "mode", "mesh"))


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
    X, sw, states, prior, tol, reg_covar, until = args
    max_iter, mode = static["max_iter"], static["mode"]
    resume, expand = {**static, "mode": "resume"}, {**static, "mode": "expanded"}
    program = _em_program.pick(*_problem_size(args), data=X)
    if max_iter == 0 and not isinstance(X, jax.core.Tracer):
        return states  # plotting.em_path and step-by-step warm starts ask for the start alone
    states = program(*args, **static)
    if mode != "expanded":
        return states
    if isinstance(X, jax.core.Tracer):
        # Inside another jit there is no host to decide: finish stopped runs centred.
        never = jnp.full(states.n_iter.shape, max_iter + 1, jnp.int32)
        return program(X, sw, states, prior, tol, reg_covar, never, **resume)
    centred_iters = 1
    while _pending(states, max_iter):
        until = jnp.asarray(np.asarray(states.n_iter) + centred_iters, jnp.int32)
        states = program(X, sw, states, prior, tol, reg_covar, until, **resume)
        if not _pending(states, max_iter):
            break
        states = program(X, sw, states, prior, tol, reg_covar, until, **expand)
        centred_iters *= 2
    return states


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
    sample_weight=None,
    devices=None,
    init_data=None,
):
    """``fit_em``'s arguments as the EM program's ``(args, static)``. ``init_data``
    (default ``X``) is what the initialisation runs on: the missing-data path passes its
    column-mean-imputed rows."""
    X = jnp.asarray(X)
    dtype = X.dtype
    # Resolved first: a bad ``devices`` is refused before the initialisation runs.
    mesh = em_mesh(devices, X.shape[0], int(n_components), X.shape[1])
    if sample_weight is not None:
        if not isinstance(sample_weight, jax.core.Tracer):
            sample_weight = check_sample_weight(
                sample_weight, X.shape[0], dtype, min_positive=int(n_components)
            )
        if sample_weight is not None:
            sample_weight = jnp.asarray(sample_weight, dtype)
    if prior is not None:
        prior = prior.astype(dtype)
    # Strongly typed scalars of the data's dtype: a Python float and a NumPy float then share
    # one compiled program (weak and strong types would each compile their own).
    tol = jnp.asarray(tol, dtype)
    reg_covar = jnp.asarray(reg_covar, dtype)
    lower_bound_init = jnp.asarray(lower_bound_init, dtype)
    starts = _starts(
        key,
        X if init_data is None else jnp.asarray(init_data, dtype),
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
        sample_weight,
    )
    # Looked up on the module at every call, so that tests can force either kernel family by
    # patching ``bayesgmm.em.expanded.use_expanded``.
    fast = expanded.use_expanded(dtype, X.shape[0], int(n_components), X.shape[1])
    static = {
        "max_iter": int(max_iter),
        "mode": "expanded" if fast else "centred",
        "mesh": mesh,
    }
    states = _start_states(starts, lower_bound_init, int(max_iter))
    # ``until`` matters in "resume" mode only; passed always so every mode has one signature.
    until = np.zeros(int(n_init), np.int32)
    return (X, sample_weight, states, prior, tol, reg_covar, until), static


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
    sample_weight=None,
    devices=None,
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
    sample_weight : array (n_samples,), optional
        Non-negative row multiplicities (scikit-learn's ``sample_weight``): every statistic,
        the objective (the weighted mean log-likelihood, divided by ``sum(sample_weight)``)
        and the initialisation are weighted, so integer weights give exactly the fit of the
        data with rows repeated, and a zero weight is a row that is absent.

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


def em_mesh(devices, n_samples: int, n_components: int, n_features: int):
    """The mesh EM shards rows over (None: one device, the unsharded program).

    ``devices=None`` shards over every local device when there are several, except on small
    problems (:func:`~bayesgmm._compile.is_small`), where a fit costs milliseconds and a
    sharded program would only add compile time and collectives; an explicit ``devices``
    (see :func:`~bayesgmm._devices.resolve_devices`) is always honoured.
    """
    if devices is None and is_small(n_samples, n_components, n_features):
        return None
    return row_mesh(resolve_devices(devices))


def _problem_size(args):
    X, states = args[0], args[2]
    return X.shape[0], states.params.means.shape[-2], X.shape[1]


def prepare_em(key, X, n_components, covariance_type="full", *, init_data=None, **kwargs):
    """:func:`fit_em`'s arguments (defaults filled in) as ``(args, static)`` of its program:
    ``args = (X, sample_weight, states, prior, tol, reg_covar, until)`` with the starting
    states of every restart (the initialisation runs on ``init_data``, default ``X``)."""
    bound = inspect.signature(fit_em).bind(key, X, n_components, covariance_type, **kwargs)
    bound.apply_defaults()
    return _prepare(**bound.arguments, init_data=init_data)


def _lower(key, X, n_components, covariance_type="full", **kwargs):
    args, static = prepare_em(key, X, n_components, covariance_type, **kwargs)
    return _em_program.pick(*_problem_size(args)).lower(*args, **static)


fit_em.lower = _lower
