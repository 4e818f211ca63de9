"""Time bayesgmm's EM against scikit-learn's GaussianMixture, iteration for iteration.

Both start from the same weights, means and precisions and run a fixed number of iterations
(``tol=0``), so seconds per iteration compare the same arithmetic. Usage::

    nice -n 0 python scripts/bench_em.py                      # every size and type
    python scripts/bench_em.py --sizes small --types full,diag
    python scripts/bench_em.py --sizes large --sk-iter-large 5 --float32 --split
    python scripts/bench_em.py --devices 2 --float32   # also rows sharded over 2 devices

Reported per (size, type):

- ``sklearn s/it``: scikit-learn's time per iteration, ``(t(1 + m) - t(1)) / m`` for ``m``
  iterations, so its validation, initialisation and final E-step cancel out. ``m`` is smaller
  for the large size (``--sk-iter-large``); time per iteration is what is compared.
- ``ours s/it``: steady-state time of the jitted :func:`bayesgmm.em.fit_em` over ``max_iter``
  iterations, divided by ``max_iter`` (median over ``--repeats`` runs).
- ``ratio``: sklearn s/it over ours, measured in the same run.
- ``compile s``: ``fit_em.lower(...).compile()`` for the shape (trace + XLA compile).
- ``GFLOP/s``: for ``full`` only, ``4 N K d^2`` flops per iteration over our time per iteration.
- ``kernels``: ``expanded`` (float64 at these sizes: E-step distances and M-step statistics as
  matrix products of shifted features, guarded; see :mod:`bayesgmm.em`) or ``centred``.
- ``lb diff``: largest relative difference between our per-iteration objective and
  scikit-learn's ``lower_bounds_`` over the iterations both ran (same start: rounding only).
- ``f32 s/it`` (``--float32``): ours on the same data in float32.
- ``--devices N``: ours with the rows sharded over N devices (``fit_em(devices=N)``; on a CPU
  the script asks XLA for N host devices before JAX starts): ``N-dev s/it``, its speed-up
  over one device (``vs 1-dev``) and its ratio to scikit-learn (``sk/N-dev``), and with
  ``--float32`` the float32 figure on N devices. ``ours s/it`` stays the one-device time.

Afterwards a second ``GaussianMixture.fit`` with the same shapes and settings is run under a
JAX compilation listener, and the number of XLA compilations it triggered is printed (want 0).
``--split`` also times our E-step and M-step separately (jitted, per iteration).

The machine is shared: run with ``nice -n 0``, and read ratios (measured in the same run) rather
than absolute times when the load is high; the load average is printed with the table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings


def _requested_devices(argv) -> int:
    """``--devices N`` read before JAX starts: host CPU devices must be requested then."""
    for i, a in enumerate(argv):
        if a == "--devices" and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith("--devices="):
            return int(a.split("=", 1)[1])
    return 1


if _requested_devices(sys.argv) > 1:
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + f" --xla_force_host_platform_device_count={_requested_devices(sys.argv)}"
    )

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import bayesgmm  # noqa: F401, E402  (enables x64)
from bayesgmm import GaussianMixture, em  # noqa: E402
from bayesgmm.covariance import get_covariance_type  # noqa: E402
from bayesgmm.em import fit_em, to_blocks  # noqa: E402
from bayesgmm.params import GMMParams  # noqa: E402

SIZES = {
    "small": (10_000, 2, 5),
    "medium": (100_000, 10, 10),
    "large": (200_000, 50, 20),
}
TYPES = ("full", "tied", "diag", "spherical")


def make_problem(n, d, k, seed=0):
    """Data from a random K-component mixture, and a shared starting point for both fits."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(k, d))
    labels = rng.integers(k, size=n)
    scales = rng.uniform(0.5, 1.5, size=(k, d))
    rot = np.linalg.qr(rng.normal(size=(k, d, d)))[0]
    z = rng.normal(size=(n, d)) * scales[labels]
    X = centres[labels] + np.einsum("nij,nj->ni", rot[labels], z)
    # Starting point: distinct data points as means, uniform weights, data covariance.
    means0 = X[rng.choice(n, size=k, replace=False)]
    weights0 = np.full(k, 1.0 / k)
    cov_full = np.cov(X, rowvar=False) + 1e-6 * np.eye(d)
    return X, weights0, means0, cov_full


def initial_covariances(cov_full, k, covariance_type):
    """Starting covariances in the compact shape of ``covariance_type``."""
    full = np.broadcast_to(cov_full, (k,) + cov_full.shape)
    if covariance_type == "full":
        return np.array(full)
    if covariance_type == "tied":
        return np.array(cov_full)
    if covariance_type == "diag":
        return np.array(np.diagonal(full, axis1=-2, axis2=-1))
    return np.full(k, np.mean(np.diag(cov_full)))


def precisions_from(cov, covariance_type):
    ct = get_covariance_type(covariance_type)
    return np.asarray(ct.precisions(jnp.asarray(cov)))


class CompileCounter:
    """Counts XLA backend compilations through JAX's monitoring events."""

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __init__(self):
        self.count = 0
        self.active = False
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, event, duration, **kwargs):
        if self.active and event == self.EVENT:
            self.count += 1

    def __enter__(self):
        self.count = 0
        self.active = True
        return self

    def __exit__(self, *exc):
        self.active = False


def time_sklearn(X, k, covariance_type, w0, m0, p0, n_iter, repeats, blas_threads=None):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture as SKGaussianMixture

    def run(max_iter):
        gm = SKGaussianMixture(
            k,
            covariance_type=covariance_type,
            tol=0.0,
            max_iter=max_iter,
            weights_init=w0,
            means_init=m0,
            precisions_init=p0,
            init_params="random_from_data",
            random_state=0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            t0 = time.perf_counter()
            gm.fit(X)
            return time.perf_counter() - t0, gm

    from threadpoolctl import threadpool_limits

    per_iter = []
    with threadpool_limits(limits=blas_threads, user_api="blas"):
        for _ in range(repeats):
            t_one, _ = run(1)
            t_many, gm = run(1 + n_iter)
            per_iter.append(max(t_many - t_one, 0.0) / n_iter)
    return statistics.median(per_iter), gm


def time_ours(X, k, covariance_type, w0, m0, cov0, max_iter, repeats, devices=1):
    X = jnp.asarray(X)
    dtype = X.dtype
    w0, m0, cov0 = (jnp.asarray(a, dtype) for a in (w0, m0, cov0))
    key = jax.random.key(0)

    args = (key, X, k, covariance_type)
    kwargs = dict(
        max_iter=max_iter,
        tol=0.0,
        reg_covar=1e-6,
        weights_init=w0,
        means_init=m0,
        covariances_init=cov0,
        devices=devices,
    )

    def run():
        t0 = time.perf_counter()
        res = jax.block_until_ready(fit_em(*args, **kwargs))
        return time.perf_counter() - t0, res

    # Compile time measured directly (trace, lower, XLA compile), not as a difference of
    # two timed runs, which the load of a shared machine makes noisy.
    t0 = time.perf_counter()
    fit_em.lower(*args, **kwargs).compile()
    compile_s = time.perf_counter() - t0
    _, res = run()
    times = [run()[0] for _ in range(repeats)]
    steady = statistics.median(times)
    n_iter = int(res.n_iter[0])
    if n_iter != max_iter or bool(res.failed[0]):
        print(
            f"  warning: ours stopped after {n_iter} of {max_iter} iterations "
            f"(failed={bool(res.failed[0])})",
            file=sys.stderr,
        )
    return steady / max_iter, compile_s, res


def time_missing(X, k, covariance_type, w0, m0, cov0, max_iter, repeats, frac):
    """Seconds per iteration of EM with ``frac`` of the values missing completely at random
    (the same rows and start as :func:`time_ours`), and the number of missingness patterns."""
    from bayesgmm.em import fit_em_missing

    Xm = np.array(X, copy=True)
    Xm[np.random.default_rng(1).random(Xm.shape) < frac] = np.nan
    kwargs = dict(
        max_iter=max_iter, tol=0.0, reg_covar=1e-6, weights_init=w0, means_init=m0,
        covariances_init=cov0,
    )  # fmt: skip

    def run():
        t0 = time.perf_counter()
        jax.block_until_ready(fit_em_missing(jax.random.key(0), Xm, k, covariance_type, **kwargs))
        return time.perf_counter() - t0

    run()  # compiles
    steady = statistics.median(run() for _ in range(repeats))
    n_patterns = len(np.unique(np.isnan(Xm), axis=0))
    return steady / max_iter, n_patterns


def _median_time(fn, repeats):
    jax.block_until_ready(fn())
    ts = []
    for _ in range(max(repeats, 5)):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def time_split(X, k, covariance_type, w0, m0, cov0, repeats):
    """Our E-step and M-step timed separately, seconds per call (median), with the internal
    functions the EM loop runs. Centred kernels: the E pass (with nk and sum r x), then the
    M-step (a scatter pass and the updates). Expanded kernels: the single pass that gives
    the E-step and every statistic, then a whole iteration minus that pass."""
    X = jnp.asarray(X)
    params = GMMParams.tree_unflatten(
        covariance_type, tuple(jnp.asarray(a, X.dtype) for a in (w0, m0, cov0))
    )
    ct = em.kernels_for(covariance_type)
    reg = jnp.asarray(1e-6, X.dtype)
    if em.expanded.use_expanded(X.dtype, *X.shape[:1], k, X.shape[1]):
        Xb, wb = to_blocks(X, k, em.EXPANDED_BLOCK_ROWS)
        XbT = jnp.swapaxes(Xb, 1, 2)
        shift = jnp.mean(X, axis=0)
        one_pass = jax.jit(em.expanded._expanded_pass)
        step = jax.jit(lambda p: em.expanded.expanded_step(Xb, wb, None, reg, ct.name)(p))
        e = _median_time(lambda: one_pass(XbT, wb, params, shift), repeats)
        return e, _median_time(lambda: step(params), repeats) - e
    Xb, wb = to_blocks(X, k)
    XbT = jnp.swapaxes(Xb, 1, 2)
    e = jax.jit(em.centred._e_pass)
    m = jax.jit(
        lambda XbT, RbT, nk, sx: em.reference._m_step_t(
            XbT, RbT, em.SufficientStats(nk, sx), ct, reg, None
        )
    )
    _, nk, sx, RbT = jax.block_until_ready(e(XbT, wb, params))
    return (
        _median_time(lambda: e(XbT, wb, params), repeats),
        _median_time(lambda: m(XbT, RbT, nk, sx), repeats),
    )


def lower_bound_difference(res, gm):
    """Largest relative difference between our objective and scikit-learn's over the
    iterations both ran (the same arithmetic from the same start, so rounding only)."""
    ours = np.asarray(res.lower_bounds[0])
    theirs = np.asarray(gm.lower_bounds_)
    m = min(int(res.n_iter[0]), len(theirs))
    return float(np.max(np.abs(ours[:m] - theirs[:m]) / np.abs(theirs[:m])))


def second_fit_compiles(X, k, covariance_type, w0, m0, p0, counter):
    """XLA compilations triggered by a second estimator fit with the same shapes."""

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            GaussianMixture(
                k,
                covariance_type=covariance_type,
                tol=0.0,
                max_iter=3,
                weights_init=w0,
                means_init=m0,
                precisions_init=p0,
            ).fit(X)

    fit()
    with counter:
        fit()
    return counter.count


def parse_list(text, allowed, what):
    if text == "all":
        return list(allowed)
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad:
        raise SystemExit(f"unknown {what}: {bad}; choose from {list(allowed)} or 'all'")
    return items


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="all", help="comma list of small,medium,large or all")
    ap.add_argument("--types", default="all", help="comma list of full,tied,diag,spherical")
    ap.add_argument("--max-iter", type=int, default=100, help="our iterations per fit")
    ap.add_argument("--sk-iter", type=int, default=100, help="sklearn iterations (small/medium)")
    ap.add_argument("--sk-iter-large", type=int, default=10, help="sklearn iterations (large)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of ours (median)")
    ap.add_argument("--sk-repeats", type=int, default=1, help="timed runs of sklearn (median)")
    ap.add_argument("--no-sklearn", action="store_true", help="time ours only")
    ap.add_argument(
        "--sk-blas-threads",
        type=int,
        default=None,
        help="limit scikit-learn's BLAS threads (threadpoolctl); default: library default",
    )
    ap.add_argument("--float32", action="store_true", help="add a float32 column for ours")
    ap.add_argument("--split", action="store_true", help="time our E-step and M-step apart")
    ap.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    ap.add_argument(
        "--missing",
        type=float,
        default=0.0,
        metavar="FRAC",
        help="add a column: ours with FRAC of the values missing at random (EM on the observed "
        "values, missing='marginalize'), seconds per iteration",
    )
    ap.add_argument(
        "--devices",
        type=int,
        default=1,
        metavar="N",
        help="add columns: ours with the rows sharded over N devices (host CPU devices are "
        "requested from XLA before JAX starts)",
    )
    args = ap.parse_args(argv)
    if args.devices > jax.local_device_count():
        raise SystemExit(f"--devices {args.devices}: only {jax.local_device_count()} devices")

    sizes = parse_list(args.sizes, SIZES, "sizes")
    types = parse_list(args.types, TYPES, "types")
    counter = CompileCounter()

    print(
        f"bayesgmm EM vs scikit-learn, float64, tol=0; ours {args.max_iter} iterations x "
        f"{args.repeats} runs (median); sklearn {args.sk_iter} iterations "
        f"({args.sk_iter_large} at the large size) x {args.sk_repeats} runs, BLAS threads "
        f"{args.sk_blas_threads or 'default'}: "
        "seconds per iteration is what is compared"
    )
    print(
        f"jax {jax.__version__}, {os.cpu_count()} CPUs, load average at start "
        f"{os.getloadavg()[0]:.2f}, {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}"
    )
    header = (
        f"{'size (N, d, K)':<22}{'type':<10}{'sklearn s/it':>13}{'ours s/it':>11}"
        f"{'ratio':>8}{'compile s':>10}{'GFLOP/s':>9}{'kernels':>10}{'lb diff':>9}"
    )
    if args.float32:
        header += f"{'f32 s/it':>10}"
    if args.split:
        header += f"{'E s':>9}{'M s':>9}"
    if args.missing:
        header += f"{'missing s/it':>13}{'vs complete':>12}{'patterns':>9}"
    nd = args.devices
    if nd > 1:
        header += f"{f'{nd}-dev s/it':>12}{'vs 1-dev':>9}{f'sk/{nd}-dev':>9}"
        if args.float32:
            header += f"{f'f32 {nd}-dev':>11}"
    header += f"{'2nd-fit compiles':>18}"
    print(header)
    rows = []
    for size in sizes:
        n, d, k = SIZES[size]
        X, w0, m0, cov_full = make_problem(n, d, k)
        sk_iter = args.sk_iter_large if size == "large" else args.sk_iter
        for ct in types:
            cov0 = initial_covariances(cov_full, k, ct)
            p0 = precisions_from(cov0, ct)
            ours, compile_s, res = time_ours(X, k, ct, w0, m0, cov0, args.max_iter, args.repeats)
            kernels = "expanded" if em.expanded.use_expanded(X.dtype, n, k, d) else "centred"
            if args.no_sklearn:
                sk, lb_diff = float("nan"), float("nan")
            else:
                sk, gm = time_sklearn(
                    X, k, ct, w0, m0, p0, sk_iter, args.sk_repeats, args.sk_blas_threads
                )
                lb_diff = lower_bound_difference(res, gm)
            gflops = 4 * n * k * d * d / ours / 1e9 if ct == "full" else float("nan")
            line = (
                f"{str((n, d, k)):<22}{ct:<10}{sk:>13.4g}{ours:>11.4g}{sk / ours:>8.1f}"
                f"{compile_s:>10.2f}{gflops:>9.1f}{kernels:>10}{lb_diff:>9.1e}"
            )
            row = dict(
                size=(n, d, k), type=ct, sk=sk, ours=ours, compile=compile_s, gflops=gflops,
                kernels=kernels, lb_diff=lb_diff,
            )  # fmt: skip
            if args.float32:
                f32, _, _ = time_ours(
                    X.astype(np.float32), k, ct, w0, m0, cov0, args.max_iter, args.repeats
                )
                line += f"{f32:>10.4g}"
                row["f32"] = f32
            if nd > 1:
                multi, _, _ = time_ours(
                    X, k, ct, w0, m0, cov0, args.max_iter, args.repeats, devices=nd
                )
                line += f"{multi:>12.4g}{ours / multi:>8.2f}x{sk / multi:>8.1f}x"
                row.update(multi=multi)
                if args.float32:
                    f32m, _, _ = time_ours(
                        X.astype(np.float32), k, ct, w0, m0, cov0, args.max_iter, args.repeats,
                        devices=nd,
                    )  # fmt: skip
                    line += f"{f32m:>11.4g}"
                    row.update(f32_multi=f32m)
            if args.split:
                es, ms = time_split(X, k, ct, w0, m0, cov0, args.repeats)
                line += f"{es:>9.4f}{ms:>9.4f}"
            if args.missing:
                miss, n_pat = time_missing(
                    X, k, ct, w0, m0, cov0, args.max_iter, args.repeats, args.missing
                )
                line += f"{miss:>13.4g}{miss / ours:>11.1f}x{n_pat:>9d}"
                row.update(missing=miss, patterns=n_pat)
            compiles = second_fit_compiles(X, k, ct, w0, m0, p0, counter)
            line += f"{compiles:>18d}"
            row["compiles"] = compiles
            print(line, flush=True)
            rows.append(row)
    print(f"load average at end {os.getloadavg()[0]:.2f}")

    if args.markdown:
        cols = (
            "| (N, d, K) | type | sklearn s/iter | ours s/iter | ratio | compile s | GFLOP/s "
            "| kernels | lb diff |"
        )
        if args.float32:
            cols += " ours float32 s/iter |"
        if nd > 1:
            cols += f" ours {nd} devices s/iter | vs 1 device | sklearn / {nd} devices |"
            if args.float32:
                cols += f" float32 {nd} devices s/iter |"
        print()
        print(cols)
        print("|" + "---|" * (cols.count("|") - 1))
        for r in rows:
            g = f"{r['gflops']:.1f}" if r["type"] == "full" else ""
            line = (
                f"| {r['size']} | {r['type']} | {r['sk']:.4g} | {r['ours']:.4g} | "
                f"{r['sk'] / r['ours']:.1f}x | {r['compile']:.2f} | {g} | {r['kernels']} | "
                f"{r['lb_diff']:.0e} |"
            )
            if args.float32:
                line += f" {r['f32']:.4g} |"
            if nd > 1:
                line += (
                    f" {r['multi']:.4g} | {r['ours'] / r['multi']:.2f}x | "
                    f"{r['sk'] / r['multi']:.1f}x |"
                )
                if args.float32:
                    line += f" {r['f32_multi']:.4g} |"
            print(line)


if __name__ == "__main__":
    main()
