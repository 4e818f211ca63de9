"""The ``bayesgmm`` command: fit, compare, save, reload and sample Gaussian mixtures.

Subcommands (each has ``--help``)::

    bayesgmm demo [--out DIR] [--quick] [--force]
    bayesgmm fit DATA -k K [--covariance-type T] [--method em|map|nuts] [-o MODEL]
    bayesgmm select DATA [--k 1-9] [--covariance-type all] [--plot FILE] [-o MODEL]
    bayesgmm sample MODEL -n N [--seed S] [-o FILE]
    bayesgmm predict MODEL DATA [-o FILE]
    bayesgmm diagnose POSTERIOR

Errors a user can act on (a missing file, bad data, an existing output, a bad option) exit with
status 2 and one line on stderr; ``--debug`` shows the traceback. Files are written atomically
and never replace an existing file unless ``--force`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

from ._validation import COVARIANCE_TYPE_NAMES as COVARIANCE_TYPES

__all__ = ["main"]

EXIT_USAGE = 2


class UsageError(Exception):
    """Something the user can fix: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line raises instead of printing usage and exiting."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


# --- small helpers ----------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, KeyError | IndexError) or not text:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text


def _log(message: str, *, end="\n") -> None:
    print(message, end=end, flush=True)


def _enable_compile_cache() -> None:
    """Keep JAX's compiled programs on disk so later runs of the command skip compilation.

    ``BAYESGMM_JAX_CACHE`` names the directory (default ``~/.cache/bayesgmm/jax``); ``0``
    turns the cache off.
    """
    where = os.environ.get("BAYESGMM_JAX_CACHE")
    if where == "0":
        return
    if not where:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        where = os.path.join(base, "bayesgmm", "jax")
    try:
        os.makedirs(where, exist_ok=True)
        import jax

        jax.config.update("jax_compilation_cache_dir", where)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    except Exception:  # a read-only home or an older JAX: run without the cache
        pass


def _show_warning(message, category, filename, lineno, file=None, line=None):
    # One plain line per warning (Python's default adds the source line).
    print(f"bayesgmm: warning: {' '.join(str(message).split())}", file=sys.stderr)


def _check_output(path, force: bool) -> Path | None:
    """Refuse early (before any work) to replace an existing output file."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a directory; give a file name")
    if path.exists() and not force:
        raise UsageError(f"{path} already exists; pass --force to replace it")
    if not path.parent.is_dir():
        raise UsageError(f"cannot write {path}: directory {path.parent} does not exist")
    return path


def _read(args, *, n_features=None, allow_nan=False):
    """``(X, names, weights)`` of the DATA argument (weights None without ``--weights``);
    ``allow_nan`` keeps missing values as NaN."""
    from .io import read_data

    X, names, info = read_data(
        args.data,
        columns=args.columns,
        drop_nan=args.drop_nan,
        weights=getattr(args, "weights", None),
        allow_nan=allow_nan and not args.drop_nan,
    )
    if info["dropped"]:
        shown = ", ".join(info["dropped"][:5]) + (" ..." if len(info["dropped"]) > 5 else "")
        _log(f"dropped {len(info['dropped'])} row(s) with missing values ({shown})")
    if n_features is not None and X.shape[1] != n_features:
        raise UsageError(
            f"the model has {n_features} features but {args.data} gives {X.shape[1]} columns; "
            "choose the model's columns with --columns"
        )
    if info["weights"] is not None:
        w = info["weights"]
        _log(f"row weights from column {args.weights!r}: total {w.sum():.6g}")
    return X, names, info["weights"]


def _check_rows(X, k: int, source) -> None:
    if X.shape[0] < max(k, 2):
        raise UsageError(
            f"{source} has {X.shape[0]} rows, too few for {k} components; use a smaller -k or "
            "more data"
        )


def _fmt(v: float) -> str:
    return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.4e}"


def _vector(names, values) -> str:
    return ", ".join(f"{n}={_fmt(float(v))}" for n, v in zip(names, values))


def _write_csv(path, header, rows, *, force: bool) -> None:
    """Rows to ``path`` (atomically) or to stdout; floats in shortest round-trip form."""

    def cell(v):
        return repr(v) if isinstance(v, float) else str(v)

    def write(f):
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for row in rows:
            w.writerow([cell(v) for v in row])

    if path is None:
        write(sys.stdout)
        sys.stdout.flush()
    else:
        from .io import atomic_write

        atomic_write(path, write, overwrite=force, binary=False)


def _load_model(path):
    from . import load

    return load(path)


def _is_posterior(model) -> bool:
    return hasattr(model, "draws") and hasattr(model, "to_inference_data")


def _model_names(model):
    if _is_posterior(model):
        names = getattr(model, "feature_names", None)
        d = model.n_features
    else:
        names = getattr(model, "feature_names_in_", None)
        d = model.n_features_in_
    return [str(n) for n in names] if names is not None else [f"x{i}" for i in range(d)]


# --- fit -------------------------------------------------------------------------------------
def _cmd_fit(args) -> int:
    import numpy as np

    from .estimator import GaussianMixture

    out = _check_output(args.output, args.force)
    marginalize = args.missing == "marginalize"
    X, names, weights = _read(args, allow_nan=marginalize)
    k = args.n_components
    if k < 1:
        raise UsageError(f"-k must be at least 1; got {k}")
    _check_rows(X, k, args.data)
    prior = args.prior
    what = {"em": "EM (maximum likelihood)", "map": "MAP-EM", "nuts": "NUTS"}[args.method]
    _log(
        f"fitting {k} component(s), covariance '{args.covariance_type}', by {what} to "
        f"{X.shape[0]} rows x {X.shape[1]} features of {args.data} ({', '.join(names)})"
    )
    if args.method == "nuts":
        from .posterior import fit_posterior

        post = fit_posterior(
            X,
            k,
            covariance_type=args.covariance_type,
            prior=prior,
            num_warmup=args.num_warmup,
            num_samples=args.num_samples,
            num_chains=args.num_chains,
            seed=args.seed,
            sample_weight=weights,
            missing=args.missing,
        )
        post.feature_names = list(names)
        post, _ = post.relabel()
        _print_posterior_summary(post, names)
        if out is not None:
            from .io import save_posterior

            save_posterior(post, out, overwrite=args.force)
            _log(f"saved the posterior to {out}")
        return 0
    gm = GaussianMixture(
        k,
        covariance_type=args.covariance_type,
        prior=prior if args.method == "map" else None,
        random_state=args.seed,
        n_init=args.n_init,
        init_params=args.init,
        max_iter=args.max_iter,
        tol=args.tol,
        missing=args.missing,
    ).fit(X, sample_weight=weights)
    gm.feature_names_in_ = np.asarray(names, dtype=object)
    n = X.shape[0] if weights is None else weights.sum()
    _log(
        f"converged: {'yes' if gm.converged_ else 'no'} after {gm.n_iter_} iterations; "
        f"objective per sample {gm.lower_bound_:.6g}"
    )
    loglik = gm.score(X, sample_weight=weights) * n
    bic, aic = gm.bic(X, sample_weight=weights), gm.aic(X, sample_weight=weights)
    _log(
        f"log-likelihood {loglik:.6g}  BIC {bic:.6g}  AIC {aic:.6g}  (lower BIC/AIC is better)"
        + ("" if weights is None else "; all weighted")
    )
    _log("component  weight   mean")
    for j in range(k):
        _log(f"{j:>9}  {gm.weights_[j]:.4f}   {_vector(names, gm.means_[j])}")
    if out is not None:
        gm.save(out, overwrite=args.force)
        _log(f"saved the model to {out}")
    return 0


def _interval_table(post, names, em_params=None, *, prob=0.9):
    """Rows (name, EM, posterior mean, lo, hi, R-hat, ESS) for each weight and mean."""
    import numpy as np

    from .io import _quiet_arviz

    az = _quiet_arviz()
    d = post.draws
    w = np.asarray(d.weights)  # (chain, draw, K)
    m = np.asarray(d.means)  # (chain, draw, K, d)
    lo_q, hi_q = (1 - prob) / 2, 1 - (1 - prob) / 2
    rows = []

    def add(label, series, em_value):
        series = np.asarray(series, dtype=float)
        lo, hi = np.quantile(series, [lo_q, hi_q])
        rhat = float(az.rhat(series)) if series.shape[0] > 1 else float("nan")
        ess = float(az.ess(series))
        rows.append((label, em_value, float(series.mean()), lo, hi, rhat, ess))

    for j in range(post.n_components):
        em_w = None if em_params is None else float(np.asarray(em_params.weights)[j])
        add(f"weight[{j}]", w[..., j], em_w)
    for j in range(post.n_components):
        for f, name in enumerate(names):
            em_m = None if em_params is None else float(np.asarray(em_params.means)[j, f])
            add(f"mean[{j}, {name}]", m[..., j, f], em_m)
    return rows


def _print_interval_table(rows, *, em_label="EM") -> None:
    head = ("parameter", em_label, "posterior mean", "90% interval", "R-hat", "ESS")
    cells = [head]
    for label, em, mean, lo, hi, rhat, ess in rows:
        cells.append(
            (
                label,
                "" if em is None else f"{em:.4f}",
                f"{mean:.4f}",
                f"[{lo:.4f}, {hi:.4f}]",
                "n/a" if rhat != rhat else f"{rhat:.3f}",
                f"{ess:.0f}",
            )
        )
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    for r in cells:
        _log(
            "  ".join(
                c.ljust(wd) if i in (0, 3) else c.rjust(wd)
                for i, (c, wd) in enumerate(zip(r, widths))
            ).rstrip()
        )


def _print_posterior_summary(post, names) -> None:
    _log(
        f"{post.num_chains} chain(s) x {post.num_draws} draws; divergences: {post.num_divergences}"
    )
    rows = _interval_table(post, names, post.map_params)
    _print_interval_table(rows, em_label="MAP-EM")


# --- select ----------------------------------------------------------------------------------
def _parse_k(text: str) -> list[int]:
    ks = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                a, b = part.split("-", 1)
                ks.extend(range(int(a), int(b) + 1))
            elif part:
                ks.append(int(part))
    except ValueError:
        raise UsageError(f"--k must look like 1-9 or 2,3,5; got {text!r}") from None
    if not ks or min(ks) < 1:
        raise UsageError(f"--k must give numbers of components >= 1; got {text!r}")
    return sorted(set(ks))


def _parse_types(text: str) -> list[str]:
    if text == "all":
        return list(COVARIANCE_TYPES)
    types = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in types if t not in COVARIANCE_TYPES]
    if bad or not types:
        raise UsageError(
            f"--covariance-type must be 'all' or among {', '.join(COVARIANCE_TYPES)}; got {text!r}"
        )
    return types


def _select(X, ks, types, criterion, seed, **fit_kwargs):
    from .selection import select

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return select(
            X,
            n_components=ks,
            covariance_types=types,
            criterion=criterion,
            random_state=seed,
            **fit_kwargs,
        )


def _save_figure(fig, path, *, force: bool) -> None:
    from .io import atomic_write

    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    atomic_write(
        path, lambda f: fig.savefig(f, format=fmt, dpi=110, bbox_inches="tight"), overwrite=force
    )
    import matplotlib.pyplot as plt

    plt.close(fig)


def _cmd_select(args) -> int:
    import numpy as np

    out = _check_output(args.output, args.force)
    plot = _check_output(args.plot, args.force)
    ks = _parse_k(args.k)
    types = _parse_types(args.covariance_type)
    X, names, weights = _read(args)
    _check_rows(X, min(ks), args.data)
    usable = [k for k in ks if k <= X.shape[0]]
    if len(usable) < len(ks):
        _log(f"skipping K > {X.shape[0]} (more components than rows)")
    _log(
        f"fitting {len(usable) * len(types)} mixtures (K = {', '.join(map(str, usable))}; "
        f"{', '.join(types)}) to {X.shape[0]} rows x {X.shape[1]} features"
    )
    table, best = _select(
        X,
        usable,
        types,
        args.criterion,
        args.seed,
        strategy=args.strategy,
        n_init=args.n_init,
        init_params=args.init,
        sample_weight=weights,
    )
    _log(str(table))
    _log(
        f"best by {args.criterion.upper()}: {best.n_components} component(s), covariance "
        f"'{best.covariance_type}'"
    )
    if plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        from .plotting import plot_selection

        ax = plot_selection(table, args.criterion)
        _save_figure(ax.figure, plot, force=args.force)
        _log(f"saved the plot to {plot}")
    if out is not None:
        best.feature_names_in_ = np.asarray(names, dtype=object)
        best.save(out, overwrite=args.force)
        _log(f"saved the best model to {out}")
    return 0


# --- sample / predict / diagnose ----------------------------------------------------------------
def _cmd_sample(args) -> int:
    out = _check_output(args.output, args.force)
    if args.n_samples < 1:
        raise UsageError(f"-n must be at least 1; got {args.n_samples}")
    model = _load_model(args.model)
    if _is_posterior(model):
        X, labels = model.sample(args.n_samples, seed=args.seed)
    else:
        X, labels = model.sample(args.n_samples, random_state=args.seed)
    names = _model_names(model)
    rows = ([*x, int(lab)] for x, lab in zip(X.tolist(), labels.tolist()))
    _write_csv(out, [*names, "label"], rows, force=args.force)
    if out is not None:
        kind = "posterior predictive" if _is_posterior(model) else "fitted mixture"
        _log(f"wrote {args.n_samples} rows drawn from the {kind} to {out}")
    return 0


def _cmd_predict(args) -> int:
    import numpy as np

    out = _check_output(args.output, args.force)
    model = _load_model(args.model)
    n_features = model.n_features if _is_posterior(model) else model.n_features_in_
    marginalize = getattr(model, "missing", "error") == "marginalize"
    X, _, _ = _read(args, n_features=n_features, allow_nan=marginalize)
    proba = np.asarray(model.predict_proba(X))
    labels = np.argmax(proba, axis=1)
    header = ["label", *(f"p{j}" for j in range(proba.shape[1]))]
    rows = ([int(lab), *p] for lab, p in zip(labels.tolist(), proba.tolist()))
    _write_csv(out, header, rows, force=args.force)
    if out is not None:
        counts = np.bincount(labels, minlength=proba.shape[1])
        _log(
            f"wrote labels and responsibilities of {X.shape[0]} rows to {out}; "
            f"rows per component: {', '.join(map(str, counts.tolist()))}"
        )
    return 0


def _cmd_impute(args) -> int:
    import numpy as np

    out = _check_output(args.output, args.force)
    model = _load_model(args.model)
    posterior = _is_posterior(model)
    n_features = model.n_features if posterior else model.n_features_in_
    X, names, _ = _read(args, n_features=n_features, allow_nan=True)
    n_missing = int(np.isnan(X).sum())
    if args.draws < 0:
        raise UsageError(f"--draws must be >= 0; got {args.draws}")
    if posterior and args.draws == 0:
        raise UsageError(
            f"{args.model} is a posterior: give --draws N for N imputations from its draws"
        )
    if posterior:
        draws = model.impute(X, n_draws=args.draws, seed=args.seed)
        header = ["draw", *names]
        rows = ([s, *r] for s in range(args.draws) for r in draws[s].tolist())
        what = f"{args.draws} imputation(s), each under one posterior draw"
    elif args.draws == 0:
        filled = model.impute(X)
        header, rows = list(names), (list(r) for r in filled.tolist())
        what = "conditional expectations"
    else:
        draws = model.sample_missing(X, args.draws, random_state=args.seed)
        header = ["draw", *names]
        rows = ([s, *r] for s in range(args.draws) for r in draws[s].tolist())
        what = f"{args.draws} imputation(s) drawn from the conditional distributions"
    _write_csv(out, header, rows, force=args.force)
    if out is not None:
        _log(f"filled {n_missing} missing value(s) of {X.shape[0]} rows by {what}; wrote {out}")
    return 0


def _cmd_diagnose(args) -> int:
    from .io import file_kind

    if file_kind(args.posterior) != "posterior":
        raise UsageError(
            f"{args.posterior} is an EM model; diagnose needs a posterior saved by "
            "'bayesgmm fit --method nuts'"
        )
    post = _load_model(args.posterior)
    if not post.relabeled:
        post, _ = post.relabel()
    import pandas as pd

    with pd.option_context("display.width", 120, "display.max_rows", 500):
        _log(post.summary().to_string())
    _log(
        f"{post.num_chains} chain(s) x {post.num_draws} draws, covariance "
        f"'{post.covariance_type}', {post.n_components} component(s); divergences: "
        f"{post.num_divergences}"
    )
    return 0


# --- demo ------------------------------------------------------------------------------------
DEMO_FILES = (
    "data.csv",
    "bic.png",
    "ellipses.png",
    "posterior_ellipses.png",
    "trace.png",
    "posterior.nc",
    "em_model.bgmm",
    "synthetic.csv",
)


def _demo_data(quick: bool, seed: int):
    """Three elongated, tilted clusters (k-means cuts them wrongly; a full mixture does not)."""
    import numpy as np

    try:
        from .datasets import stretched_blobs

        X, _ = stretched_blobs(
            150 if quick else 400,
            centers=[[-4.0, -1.0], [0.0, 4.0], [4.0, 0.0]],
            transform=[[1.0, 0.4], [-0.3, 0.6]],
            seed=seed,
        )
    except ImportError:  # before bayesgmm.datasets existed
        rng = np.random.default_rng(seed)
        n = 50 if quick else 133
        X = np.concatenate([rng.normal(c, 1.0, (n, 2)) for c in ([-4, -1], [0, 4], [4, 0])])
        X = X @ np.array([[1.0, 0.4], [-0.3, 0.6]])
    return np.asarray(X)


class _Step:
    """Progress: ``[i/n] what ... done in t s``."""

    def __init__(self, total: int):
        self.total, self.i = total, 0

    @contextlib.contextmanager
    def __call__(self, what: str):
        self.i += 1
        _log(f"[{self.i}/{self.total}] {what} ...")
        t = time.perf_counter()
        yield
        _log(f"      done in {time.perf_counter() - t:.1f} s")


def _cmd_demo(args) -> int:
    import numpy as np

    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir} exists and is not a directory")
    existing = [f for f in DEMO_FILES if (out_dir / f).exists()]
    if existing and not args.force:
        raise UsageError(
            f"{out_dir} already holds {', '.join(existing)}; pass --force to replace them or "
            "--out to choose another directory"
        )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import plotting
    from .io import _quiet_arviz, save_estimator, save_posterior
    from .posterior import fit_posterior

    quick = args.quick
    step = _Step(6)
    t0 = time.perf_counter()
    X = _demo_data(quick, args.seed)
    names = ["x", "y"]
    # Each (K, covariance type) compiles its own EM program (about 2.5 s of CPU each), which
    # is what the demo's time goes to: the grid is kept to what shows the choice.
    ks = [1, 2, 3] if quick else [1, 2, 3, 4]
    # --quick (for the test suite) keeps every step but compiles fewer shapes.
    types = ["full"] if quick else list(COVARIANCE_TYPES)
    _log(
        f"bayesgmm demo: {X.shape[0]} points from three elongated clusters; results go to "
        f"{out_dir}/"
    )
    n_fits = len(ks) * len(types)
    with step(f"choosing the number of components and covariance type by BIC ({n_fits} EM fits)"):
        # Random starts from the data compile fastest; three of them run together (vmap). The
        # demo's clusters are well apart, so one fit per grid point finds them ('fast'); the
        # robust search's extra starts (select's docstring) would only add EM runs here.
        table, best = _select(
            X,
            ks,
            types,
            "bic",
            args.seed,
            strategy="fast",
            init_params="random_from_data",
            n_init=3,
        )
    k, ct = best.n_components, best.covariance_type
    _log(f"      BIC picks {k} component(s) with '{ct}' covariances")

    num_chains = 2 if quick else 4
    num_draws = 100 if quick else 500
    with step(
        f"MAP-EM, then NUTS from it ({num_chains} chains x {num_draws} warm-up + {num_draws} draws)"
    ):
        post = fit_posterior(
            X,
            k,
            covariance_type=ct,
            prior="default",
            num_warmup=num_draws,
            num_samples=num_draws,
            num_chains=num_chains,
            seed=args.seed,
            progress_bar=None if sys.stderr.isatty() else False,
        )
        post.feature_names = names
    em = post.map_estimator
    with step("relabeling the draws to the MAP-EM solution (undoing label switching)"):
        post, _ = post.relabel()
    rows = _interval_table(post, names, post.map_params)
    _log("")
    _log(
        f"MAP-EM estimate against the posterior ({k} component(s), '{ct}'; "
        f"{post.num_chains} chains x {post.num_draws} draws, {post.num_divergences} divergences):"
    )
    _print_interval_table(rows, em_label="MAP-EM")
    _log("")

    out_dir.mkdir(parents=True, exist_ok=True)
    force = args.force
    with step("writing the data, the MAP-EM model, the posterior and synthetic data"):
        _write_csv(out_dir / "data.csv", names, X.tolist(), force=force)
        save_estimator(em, out_dir / "em_model.bgmm", overwrite=force)
        save_posterior(post, out_dir / "posterior.nc", overwrite=force)
        Xs, ys = post.sample(X.shape[0], seed=args.seed)
        _write_csv(
            out_dir / "synthetic.csv",
            [*names, "label"],
            ([*x, int(y)] for x, y in zip(Xs.tolist(), ys.tolist())),
            force=force,
        )
    with step("drawing the figures"):
        ax = plotting.plot_selection(table, "bic")
        _save_figure(ax.figure, out_dir / "bic.png", force=force)
        ax = plotting.plot_ellipses(em, X, title=f"MAP-EM: {k} component(s), '{ct}'")
        _save_figure(ax.figure, out_dir / "ellipses.png", force=force)
        ax = plotting.plot_posterior_ellipses(post, X, title="posterior draws (faint) and MAP-EM")
        _save_figure(ax.figure, out_dir / "posterior_ellipses.png", force=force)
        az = _quiet_arviz()
        idata = post.to_inference_data(log_likelihood=False)
        axes = az.plot_trace(idata, var_names=["weights", "means"], compact=True)
        fig = np.asarray(axes).ravel()[0].figure
        fig.tight_layout()
        _save_figure(fig, out_dir / "trace.png", force=force)
        plt.close("all")
    with step("checking the saved files load back"):
        from . import load

        em2 = load(out_dir / "em_model.bgmm")
        if not np.array_equal(em2.predict_proba(X), em.predict_proba(X)):
            raise RuntimeError("the saved MAP-EM model does not reproduce its predictions")
        post2 = load(out_dir / "posterior.nc")
        if not np.array_equal(np.asarray(post2.draws.means), np.asarray(post.draws.means)):
            raise RuntimeError("the saved posterior does not reproduce its draws")
    _log(f"wrote {', '.join(DEMO_FILES)} to {out_dir}/ in {time.perf_counter() - t0:.0f} s")
    _log(
        f"next: bayesgmm diagnose {out_dir}/posterior.nc;  bayesgmm sample "
        f"{out_dir}/em_model.bgmm -n 5;  bayesgmm fit {out_dir}/data.csv -k {k} --method map"
    )
    return 0


# --- the parser --------------------------------------------------------------------------------
def _data_options(p) -> None:
    p.add_argument(
        "--columns",
        metavar="COLS",
        help="comma-separated column names (from the header) or 0-based indices to use",
    )
    p.add_argument(
        "--drop-nan", action="store_true", help="drop rows with missing values instead of refusing"
    )


def _weights_option(p) -> None:
    p.add_argument(
        "--weights",
        metavar="COLUMN",
        help="a column (name or 0-based index) of non-negative row weights (counts, survey "
        "or importance weights); the data are the other columns unless --columns says",
    )


def _init_option(p) -> None:
    from ._validation import INIT_METHODS

    p.add_argument(
        "--init",
        choices=tuple(INIT_METHODS),
        default="kmeans",
        help="EM initialisation (random_from_data compiles fastest)",
    )


def _output_options(p, metavar: str, help: str, files: str = "an existing output file") -> None:
    """``-o/--output`` and ``--force``: nothing a user saved is replaced without ``--force``."""
    p.add_argument("-o", "--output", metavar=metavar, help=help)
    p.add_argument("--force", action="store_true", help=f"replace {files}")


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser = _Parser(
        prog="bayesgmm",
        description="Gaussian mixtures fitted by JAX EM (ML or MAP) and NumPyro NUTS.",
        epilog="Run 'bayesgmm COMMAND --help' for a command's options.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser(
        "demo",
        parents=[common],
        help="the whole library on built-in data: BIC, MAP-EM, NUTS, figures and files",
        description=(
            "Pick K and the covariance type by BIC on built-in data, fit MAP-EM, run NUTS from "
            "it, relabel, print EM against the posterior, and write figures, the posterior "
            "(netCDF), the EM model and synthetic data into a directory."
        ),
    )
    p.add_argument("--out", default="bayesgmm-demo", metavar="DIR", help="output directory")
    p.add_argument("--quick", action="store_true", help="a reduced-size run (fewer fits and draws)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="replace files from an earlier run")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "fit",
        parents=[common],
        help="fit a mixture to a data file and save it",
        description="Fit a mixture to DATA (CSV with or without header, .npy or .npz).",
    )
    p.add_argument("data", metavar="DATA")
    p.add_argument("-k", "--n-components", type=int, required=True, metavar="K")
    p.add_argument("--covariance-type", choices=COVARIANCE_TYPES, default="full")
    p.add_argument(
        "--method",
        choices=("em", "map", "nuts"),
        default="em",
        help="em: maximum likelihood; map: MAP-EM under the prior; nuts: full posterior",
    )
    p.add_argument(
        "--prior",
        choices=("default",),
        default="default",
        help="prior for map and nuts: mclust's data-dependent conjugate prior",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-init", type=int, default=1, help="EM restarts (em/map)")
    _init_option(p)
    p.add_argument("--max-iter", type=int, default=100)
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--num-warmup", type=int, default=1000, help="NUTS warm-up steps per chain")
    p.add_argument("--num-samples", type=int, default=1000, help="NUTS draws per chain")
    p.add_argument("--num-chains", type=int, default=4)
    p.add_argument(
        "--missing",
        choices=("error", "marginalize"),
        default="error",
        help="what missing values (empty, NA, nan) mean: refuse them, or fit every row on its "
        "observed values (missing at random)",
    )
    _output_options(p, "MODEL", "save to this file (EM: a .bgmm zip; NUTS: ArviZ netCDF, .nc)")
    _data_options(p)
    _weights_option(p)
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser(
        "select",
        parents=[common],
        help="BIC/AIC/ICL over numbers of components and covariance types",
        description="Fit every (K, covariance type) pair; print BIC, AIC and ICL and the best.",
    )
    p.add_argument("data", metavar="DATA")
    p.add_argument("--k", default="1-9", help="numbers of components: 1-9, or 2,3,5")
    p.add_argument(
        "--covariance-type", default="all", help="'all' or a comma-separated list of types"
    )
    p.add_argument("--criterion", choices=("bic", "aic", "icl"), default="bic")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-init", type=int, default=1)
    _init_option(p)
    p.add_argument(
        "--strategy",
        choices=("robust", "fast"),
        default="robust",
        help="robust: k-means, hierarchical-clustering and nested starts per grid point, the "
        "best kept (default); fast: one fit per grid point",
    )
    p.add_argument("--plot", metavar="FILE", help="save the criterion curves (png, pdf, svg)")
    _output_options(p, "MODEL", "save the best model to this file", "existing output files")
    _data_options(p)
    _weights_option(p)
    p.set_defaults(func=_cmd_select)

    p = sub.add_parser(
        "sample",
        parents=[common],
        help="synthetic data (with component labels) from a saved model or posterior",
        description=(
            "Draw N rows from a saved EM model, or from a saved posterior's posterior "
            "predictive (each row from a random draw). CSV with a 'label' column."
        ),
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("-n", "--n-samples", type=int, required=True, metavar="N")
    p.add_argument("--seed", type=int, default=0)
    _output_options(p, "FILE", "CSV file (default: standard output)")
    p.set_defaults(func=_cmd_sample)

    p = sub.add_parser(
        "predict",
        parents=[common],
        help="component labels and responsibilities for data",
        description="Label each row of DATA and give its responsibilities p0..p{K-1}.",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA")
    _output_options(p, "FILE", "CSV file (default: standard output)")
    _data_options(p)
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "impute",
        parents=[common],
        help="fill missing values of data from a saved model",
        description=(
            "Fill the missing values (empty, NA, nan) of DATA with their conditional "
            "expectations under an EM model, or with --draws N multiple imputations drawn from "
            "their conditional distributions (from a posterior: each under one posterior draw, "
            "so they carry the parameters' uncertainty); a 'draw' column numbers them."
        ),
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA")
    p.add_argument("--draws", type=int, default=0, metavar="N", help="multiple imputations")
    p.add_argument("--seed", type=int, default=0)
    _output_options(p, "FILE", "CSV file (default: standard output)")
    _data_options(p)
    p.set_defaults(func=_cmd_impute)

    p = sub.add_parser(
        "diagnose",
        parents=[common],
        help="ArviZ summary (R-hat, ESS) of a saved posterior",
        description="Print the ArviZ summary of the relabeled weights and means.",
    )
    p.add_argument("posterior", metavar="POSTERIOR")
    p.set_defaults(func=_cmd_diagnose)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


USER_ERRORS = (UsageError, OSError, ValueError, TypeError)


def main(argv=None) -> int:
    """Run the command line; returns the exit status (0 success, 2 a user error)."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    debug = "--debug" in argv
    old_showwarning = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # ArviZ's refactor notice
            warnings.showwarning = _show_warning
            parser = build_parser()
            args = parser.parse_args(argv)
            _enable_compile_cache()
            return int(args.func(args) or 0)
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        print("bayesgmm: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        if debug:
            traceback.print_exc()
        print(f"bayesgmm: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        if debug:
            traceback.print_exc()
        print(
            f"bayesgmm: internal error: {_one_line(exc)} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    finally:
        warnings.showwarning = old_showwarning
        with contextlib.suppress(Exception):
            sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
