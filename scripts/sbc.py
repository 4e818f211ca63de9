"""Simulation-based calibration (Talts et al. 2018) of bayesgmm's Bayesian path.

For each covariance type and each of ``n_sims`` simulations: draw mixture parameters from a
*fixed* prior with the NumPyro model itself (``numpyro.infer.Predictive`` on
``bayesgmm.gmm_model``), draw a data set from them in the same call, run
``bayesgmm.fit_posterior`` under that same prior (one chain, MAP-EM start), thin the draws to
``L`` roughly independent ones, and record for each label-invariant quantity the rank of the
true value among the ``L`` draws (the number of draws below it, 0..L). If the posterior is
computed correctly the ranks are uniform on {0, ..., L}.

The study is 2-D with two components, for every covariance type ('full', 'tied', 'diag',
'spherical'); ``--n-features 1`` runs the 1-D version (with ``--types spherical``, the study
of earlier versions: same prior). Components are exchangeable, so the quantities are
functions invariant to relabeling: the components are put in order of their first mean
coordinate ("low" before "high") and the quantities are

- ``mean_low_x``, ``mean_low_y``, ``mean_high_x``, ``mean_high_y``: both means;
- ``weight_low``: the low component's weight;
- covariance summaries: ``var_low_x``, ``var_low_y``, ``var_high_x``, ``var_high_y`` (the
  variance of each feature; 'full' and 'diag'), ``corr_low``, ``corr_high`` (the correlation;
  'full'), ``var_x``, ``var_y``, ``corr`` (the one shared matrix; 'tied', no order needed),
  ``var_low``, ``var_high`` (the one variance of each component; 'spherical').

(In 1-D the ``_x`` suffixes are dropped.) Ordering by the first mean coordinate is a function
of the unordered set of components, so every quantity is a function of the parameters that
does not depend on the labels, and SBC holds for any such function: the rank of the truth is
uniform whatever the function is. When the two means have nearly the same first coordinate,
draws switch order from one to the next, which widens the posterior of the ordered quantities
(less power) but biases no rank. The order never relies on the sampler: each draw is ordered
on its own, so label switching inside a chain is harmless.

Uniformity is tested by a chi-square test on ``n_bins`` equal bins of ranks per quantity; the
script reports each statistic with its p-value and fails (exit status 1) when any p-value is
below ``alpha / n_quantities``, ``n_quantities`` counting every quantity of every type run
(Bonferroni, alpha = 0.01 by default). A negative control shows the test has power: the first
``--control-sims`` simulated data sets of each type are fitted under a deliberately wrong
prior (the means' prior moved by +3 in each coordinate, with strength 1:
``wrong_prior``), and the script also fails when that is *not* rejected for some type.

Note the prior must be the one the data were simulated from: the data-dependent default prior
(``Prior.default``) would break SBC, so a fixed ``Prior`` (``sbc_prior``) is passed to both.

Usage::

    python scripts/sbc.py --force          # full size: 500 simulations per type, docs/sbc/
    python scripts/sbc.py --n-sims 100 --types full,diag --out-dir /tmp/sbc
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import jax
import numpy as np
from numpyro.infer import Predictive
from scipy import stats

import bayesgmm  # noqa: F401  (float64)
from bayesgmm import Prior, fit_posterior, gmm_model

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
N_COMPONENTS = 2
_AXES = ("x", "y")


def _suffixes(n_features: int):
    return ("",) if n_features == 1 else tuple(f"_{a}" for a in _AXES[:n_features])


def quantities(covariance_type: str, n_features: int = 2) -> tuple[str, ...]:
    """Names of the label-invariant quantities of one study, in report order."""
    if n_features not in (1, 2):
        raise ValueError(f"n_features must be 1 or 2; got {n_features}")
    sfx = _suffixes(n_features)
    names = [f"mean_{c}{s}" for c in ("low", "high") for s in sfx] + ["weight_low"]
    corr = n_features == 2
    if covariance_type == "full":
        for c in ("low", "high"):
            names += [f"var_{c}{s}" for s in sfx] + ([f"corr_{c}"] if corr else [])
    elif covariance_type == "tied":
        names += [f"var{s}" if s else "var" for s in sfx] + (["corr"] if corr else [])
    elif covariance_type == "diag":
        names += [f"var_{c}{s}" for c in ("low", "high") for s in sfx]
    elif covariance_type == "spherical":
        names += ["var_low", "var_high"]
    else:
        raise ValueError(f"unknown covariance_type {covariance_type!r}")
    return tuple(names)


def sbc_prior(covariance_type: str, n_features: int = 2) -> Prior:
    """The fixed prior of the calibration study of one covariance type.

    Every type: Dirichlet(5, 5) weights (no near-empty components) and means
    mu_k | Sigma_k ~ N(m, Sigma_k / 0.05), so means sit ~4.5 standard deviations from m and
    the two components are usually, not always, separated. In 2-D m = (1, -1) and the
    covariances' prior mean is C = [[1.25, 0.3], [0.3, 0.8]] (features of different scales,
    correlated), with 10 degrees of freedom:

    - 'full', 'tied': Sigma ~ InverseWishart(10, 7 C), mean 7 C / (10 - 2 - 1) = C;
    - 'diag': sigma2_j ~ InverseGamma(5, 4 C_jj), mean C_jj;
    - 'spherical': sigma2 ~ InverseGamma(5, 4), mean 1.

    In 1-D: m = 0 and sigma2 ~ InverseGamma(5, 5) (mean 1.25) for every type (the 1x1
    InverseWishart(10, 10) of 'full'/'tied' is that same law).
    """
    if n_features == 1:
        mean, cov = np.zeros(1), np.array([[1.25]])
    elif n_features == 2:
        mean, cov = np.array([1.0, -1.0]), np.array([[1.25, 0.3], [0.3, 0.8]])
    else:
        raise ValueError(f"n_features must be 1 or 2; got {n_features}")
    dof = 10.0
    if covariance_type in ("full", "tied"):
        scale = (dof - n_features - 1) * cov
    elif covariance_type == "diag":
        scale = (dof - 2) * np.diag(cov)
    elif covariance_type == "spherical":
        scale = np.asarray((dof - 2) * (1.25 if n_features == 1 else 1.0))
    else:
        raise ValueError(f"unknown covariance_type {covariance_type!r}")
    return Prior(np.array([5.0, 5.0]), mean, 0.05, dof, scale, covariance_type)


def wrong_prior(covariance_type: str, n_features: int = 2) -> Prior:
    """The negative control's prior: ``sbc_prior`` with the means' prior moved by +3 in every
    coordinate and strengthened from 0.05 to 1 observation (covariances' prior unchanged)."""
    p = sbc_prior(covariance_type, n_features)
    return Prior(
        np.asarray(p.weight_concentration),
        np.asarray(p.mean) + 3.0,
        1.0,
        np.asarray(p.dof),
        np.asarray(p.scale),
        covariance_type,
    )


def label_invariant(weights, means, covariances, covariance_type: str = "full"):
    """Quantities invariant to permuting components, for (..., 2) weights, (..., 2, d) means
    and covariances in the compact shape of ``covariance_type`` (with the same leading axes):
    dict of arrays of shape (...), keys ``quantities(covariance_type, d)``."""
    means = np.asarray(means)
    cov = np.asarray(covariances)
    d = means.shape[-1]
    sfx = _suffixes(d)
    # Order of the components by their first mean coordinate: a function of the unordered set.
    order = np.argsort(means[..., 0], axis=-1)

    def take(a):
        index = order.reshape(order.shape + (1,) * (a.ndim - order.ndim))
        return np.take_along_axis(a, index, axis=order.ndim - 1)

    mu, w = take(means), take(np.asarray(weights))
    out = {}
    for i, c in enumerate(("low", "high")):
        for j, s in enumerate(sfx):
            out[f"mean_{c}{s}"] = mu[..., i, j]
    out["weight_low"] = w[..., 0]
    if covariance_type == "tied":
        for j, s in enumerate(sfx):
            out[f"var{s}" if s else "var"] = cov[..., j, j]
        if d == 2:
            out["corr"] = cov[..., 0, 1] / np.sqrt(cov[..., 0, 0] * cov[..., 1, 1])
        return out
    v = take(cov)
    for i, c in enumerate(("low", "high")):
        if covariance_type == "full":
            for j, s in enumerate(sfx):
                out[f"var_{c}{s}"] = v[..., i, j, j]
            if d == 2:
                out[f"corr_{c}"] = v[..., i, 0, 1] / np.sqrt(v[..., i, 0, 0] * v[..., i, 1, 1])
        elif covariance_type == "diag":
            for j, s in enumerate(sfx):
                out[f"var_{c}{s}"] = v[..., i, j]
        elif covariance_type == "spherical":
            out[f"var_{c}"] = v[..., i]
        else:
            raise ValueError(f"unknown covariance_type {covariance_type!r}")
    return {q: out[q] for q in quantities(covariance_type, d)}


def simulate(key, n_sims: int, n_data: int, prior: Prior):
    """Parameters and data sets from the prior predictive of ``gmm_model``."""
    draws = Predictive(gmm_model, num_samples=n_sims)(
        key,
        n_components=N_COMPONENTS,
        covariance_type=prior.covariance_type,
        prior=prior,
        n_samples=n_data,
    )
    return {k: np.asarray(v) for k, v in draws.items()}


def run_sbc(
    covariance_type: str = "full",
    n_sims: int = 500,
    n_data: int = 50,
    num_warmup: int = 500,
    num_samples: int = 990,
    thin: int = 10,
    seed: int = 0,
    verbose: bool = True,
    fit_prior: Prior | None = None,
    n_features: int = 2,
):
    """Run the calibration study of one covariance type.

    Returns
    -------
    ranks : dict of int arrays of shape (n_sims,), values in 0..L
    L : int, the number of thinned draws per simulation
    info : dict with the number of divergent transitions and the run time

    ``fit_prior`` (default: the simulation prior) is for negative controls only: fitting
    under any other prior must make the ranks non-uniform. The simulations depend on
    ``seed``, the covariance type and ``n_features`` only, so a control with the same
    arguments and a smaller ``n_sims`` fits the first ``n_sims`` data sets of the study.
    """
    prior = sbc_prior(covariance_type, n_features)
    fit_prior = prior if fit_prior is None else fit_prior
    key = jax.random.fold_in(jax.random.key(seed), COVARIANCE_TYPES.index(covariance_type))
    # One key per simulation, so that the first n data sets do not depend on n_sims.
    sims = [simulate(k, 1, n_data, prior) for k in jax.random.split(key, n_sims)]
    sims = {name: np.concatenate([s[name] for s in sims]) for name in sims[0]}
    truth = label_invariant(sims["weights"], sims["means"], sims["covariances"], covariance_type)
    L = len(range(0, num_samples, thin))
    ranks = {q: np.zeros(n_sims, dtype=np.int64) for q in truth}
    n_div = 0
    start = time.perf_counter()
    for i in range(n_sims):
        with warnings.catch_warnings():
            # Divergences are counted below; a few in 500 runs do not bias the ranks visibly.
            warnings.simplefilter("ignore")
            post = fit_posterior(
                sims["obs"][i],
                N_COMPONENTS,
                covariance_type=covariance_type,
                prior=fit_prior,
                num_warmup=num_warmup,
                num_samples=num_samples,
                num_chains=1,
                seed=seed * 1_000_003 + i,
                progress_bar=False,
            )
        n_div += post.num_divergences
        dr = post.draws[0]  # the one chain: (draw, ...)
        q = label_invariant(
            np.asarray(dr.weights)[::thin],
            np.asarray(dr.means)[::thin],
            np.asarray(dr.covariances)[::thin],
            covariance_type,
        )
        for name in ranks:
            ranks[name][i] = int(np.sum(q[name] < truth[name][i]))
        if verbose and (i + 1) % max(1, n_sims // 10) == 0:
            el = time.perf_counter() - start
            print(f"  {covariance_type}: {i + 1}/{n_sims} simulations, {el:.0f} s", flush=True)
    info = {"divergences": n_div, "seconds": time.perf_counter() - start}
    return ranks, L, info


def chi_square(ranks: np.ndarray, L: int, n_bins: int):
    """Chi-square statistic and p-value of uniformity of ranks in 0..L over ``n_bins`` bins of
    equal width ((L + 1) must be a multiple of ``n_bins``)."""
    if (L + 1) % n_bins:
        raise ValueError(f"L + 1 = {L + 1} ranks do not split into {n_bins} equal bins")
    counts = np.bincount(ranks // ((L + 1) // n_bins), minlength=n_bins)
    res = stats.chisquare(counts)
    return float(res.statistic), float(res.pvalue), counts


def plot_ranks(ranks, L, n_bins, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_sims = len(next(iter(ranks.values())))
    ncols = min(len(ranks), 6)
    nrows = -(-len(ranks) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(2.6 * ncols, 2.5 * nrows), sharey=True, squeeze=False
    )
    # 99% band of a bin count under uniformity: Binomial(n_sims, 1/n_bins).
    lo, hi = stats.binom(n_sims, 1 / n_bins).ppf([0.005, 0.995])
    for ax, (name, r) in zip(axes.flat, ranks.items()):
        stat, p, counts = chi_square(r, L, n_bins)
        ax.axhspan(lo, hi, color="0.85", label="99% band (uniform)")
        ax.axhline(n_sims / n_bins, color="0.5", lw=1)
        ax.bar(np.arange(n_bins), counts, width=1.0, color="C0", edgecolor="white")
        ax.set_title(f"{name}\nchi2={stat:.1f}, p={p:.3g}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(ranks) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel(f"rank bin (L={L})", fontsize=7)
    for row in axes:
        row[0].set_ylabel("simulations", fontsize=7)
    axes[0, 0].legend(fontsize=6, loc="lower left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _parse_types(text: str) -> tuple[str, ...]:
    types = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in types if t not in COVARIANCE_TYPES]
    if bad or not types:
        raise argparse.ArgumentTypeError(
            f"covariance types must be a comma-separated subset of {','.join(COVARIANCE_TYPES)}"
        )
    return types


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--types", type=_parse_types, default=COVARIANCE_TYPES)
    parser.add_argument("--n-features", type=int, choices=(1, 2), default=2)
    parser.add_argument("--n-sims", type=int, default=500)
    parser.add_argument(
        "--control-sims", type=int, default=100, help="wrong-prior fits per type (0: none)"
    )
    parser.add_argument("--n-data", type=int, default=50)
    parser.add_argument("--num-warmup", type=int, default=500)
    parser.add_argument("--num-samples", type=int, default=990)
    parser.add_argument("--thin", type=int, default=10)
    parser.add_argument("--n-bins", type=int, default=20)
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default="docs/sbc")
    parser.add_argument("--force", action="store_true", help="overwrite existing figures")
    args = parser.parse_args(argv)
    if not 0 <= args.control_sims <= args.n_sims:
        parser.error("--control-sims must be between 0 and --n-sims")
    d = args.n_features
    stems = {ct: os.path.join(args.out_dir, f"rank_histograms_{d}d_{ct}") for ct in args.types}
    existing = [s + ".png" for s in stems.values() if os.path.exists(s + ".png")]
    if existing and not args.force:
        parser.error(f"{', '.join(existing)} exist; pass --force to overwrite or choose --out-dir")

    n_quantities = sum(len(quantities(ct, d)) for ct in args.types)
    threshold = args.alpha / n_quantities
    L = len(range(0, args.num_samples, args.thin))
    print(
        f"SBC: {d}-D, {N_COMPONENTS} components, types {', '.join(args.types)}; "
        f"{args.n_sims} simulations of {args.n_data} points per type; one chain of "
        f"{args.num_warmup} warm-up + {args.num_samples} draws, thinned by {args.thin} "
        f"(L = {L}); {args.n_bins} bins"
    )
    print(f"uniformity rejected when p < {args.alpha}/{n_quantities} = {threshold:.2g}")
    calibrated, detected = True, True
    start = time.perf_counter()
    settings = dict(
        n_data=args.n_data,
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        thin=args.thin,
        seed=args.seed,
        n_features=d,
    )
    for ct in args.types:
        ranks, L, info = run_sbc(ct, args.n_sims, **settings)
        print(f"{ct}: {info['seconds']:.0f} s, {info['divergences']} divergent transitions")
        print(f"  {'quantity':<12} {'chi2':>8} {'df':>4} {'p-value':>9}")
        for name, r in ranks.items():
            stat, p, _ = chi_square(r, L, args.n_bins)
            calibrated &= p >= threshold
            flag = "  REJECTED" if p < threshold else ""
            print(f"  {name:<12} {stat:8.2f} {args.n_bins - 1:4d} {p:9.2g}{flag}")
        title = (
            f"SBC of fit_posterior: {d}-D, {N_COMPONENTS} components, '{ct}'; "
            f"{args.n_sims} simulations of {args.n_data} points"
        )
        plot_ranks(ranks, L, args.n_bins, stems[ct] + ".png", title)
        np.savez(stems[ct] + "_ranks.npz", L=L, **ranks)
        print(f"  figure: {stems[ct]}.png, ranks: {stems[ct]}_ranks.npz")
        if args.control_sims:
            wrong, _, cinfo = run_sbc(
                ct, args.control_sims, fit_prior=wrong_prior(ct, d), verbose=False, **settings
            )
            pvalues = {name: chi_square(r, L, args.n_bins)[1] for name, r in wrong.items()}
            worst = min(pvalues, key=pvalues.get)
            rejected = [name for name, p in pvalues.items() if p < threshold]
            detected &= bool(rejected)
            print(
                f"  negative control (wrong prior, {args.control_sims} simulations, "
                f"{cinfo['seconds']:.0f} s): {len(rejected)}/{len(pvalues)} quantities "
                f"rejected; smallest p = {pvalues[worst]:.2g} ({worst})"
            )
    print(f"total {time.perf_counter() - start:.0f} s")
    print("calibrated: ranks uniform" if calibrated else "NOT calibrated: some ranks not uniform")
    if args.control_sims:
        print("negative controls detected" if detected else "a negative control was NOT detected")
    return 0 if calibrated and detected else 1


if __name__ == "__main__":
    sys.exit(main())
