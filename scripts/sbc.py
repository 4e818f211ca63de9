"""Simulation-based calibration (Talts et al. 2018) of bayesgmm's Bayesian path.

For each of ``n_sims`` simulations: draw mixture parameters from a *fixed* prior with the
NumPyro model itself (``numpyro.infer.Predictive`` on ``bayesgmm.gmm_model``), draw a data set
from them in the same call, run ``bayesgmm.fit_posterior`` under that same prior (one chain,
MAP-EM start), thin the draws to ``L`` roughly independent ones, and record for each
label-invariant quantity the rank of the true value among the ``L`` draws (the number of draws
below it, 0..L). If the posterior is computed correctly the ranks are uniform on {0, ..., L}.

The model is 1-D, two components, spherical (one variance per component): components are
exchangeable, so the quantities are functions invariant to relabeling - the sorted means
(``mean_low``, ``mean_high``), and the weight and variance of the component with the lower
mean (``weight_low``, ``var_low``) and of the higher one (``var_high``).

Uniformity is tested by a chi-square test on ``n_bins`` equal bins of ranks per quantity; the
script reports each statistic with its p-value and fails (exit status 1) when any p-value is
below ``alpha / n_quantities`` (Bonferroni, alpha = 0.01 by default).

Note the prior must be the one the data were simulated from: the data-dependent default prior
(``Prior.default``) would break SBC, so a fixed ``Prior`` is passed to both.

Usage::

    python scripts/sbc.py                  # full size: 500 simulations, figure in docs/sbc/
    python scripts/sbc.py --n-sims 100 --out /tmp/sbc.png
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

QUANTITIES = ("mean_low", "mean_high", "weight_low", "var_low", "var_high")
N_COMPONENTS = 2
COVARIANCE_TYPE = "spherical"


def sbc_prior() -> Prior:
    """The fixed prior of the calibration study.

    Dirichlet(5, 5) weights (no near-empty components); sigma^2 ~ InverseGamma(5, 5)
    (mean 1.25); mu | sigma^2 ~ N(0, sigma^2 / 0.05), so means sit ~4.5 sigma from 0 and the two
    components are usually, not always, separated.
    """
    return Prior(np.array([5.0, 5.0]), np.zeros(1), 0.05, 10.0, np.asarray(10.0), COVARIANCE_TYPE)


def label_invariant(weights, means, variances):
    """Quantities invariant to permuting components, for (..., 2) weights, (..., 2, 1) means
    and (..., 2) variances: dict of arrays of shape (...)."""
    mu = np.asarray(means)[..., 0]
    order = np.argsort(mu, axis=-1)
    take = lambda a: np.take_along_axis(np.asarray(a), order, axis=-1)  # noqa: E731
    mu_s, w_s, v_s = take(mu), take(weights), take(variances)
    return {
        "mean_low": mu_s[..., 0],
        "mean_high": mu_s[..., 1],
        "weight_low": w_s[..., 0],
        "var_low": v_s[..., 0],
        "var_high": v_s[..., 1],
    }


def simulate(key, n_sims: int, n_data: int, prior: Prior):
    """Parameters and data sets from the prior predictive of ``gmm_model``."""
    draws = Predictive(gmm_model, num_samples=n_sims)(
        key,
        n_components=N_COMPONENTS,
        covariance_type=COVARIANCE_TYPE,
        prior=prior,
        n_samples=n_data,
    )
    return {k: np.asarray(v) for k, v in draws.items()}


def run_sbc(
    n_sims: int = 500,
    n_data: int = 50,
    num_warmup: int = 500,
    num_samples: int = 990,
    thin: int = 10,
    seed: int = 0,
    verbose: bool = True,
    fit_prior: Prior | None = None,
):
    """Run the calibration study.

    Returns
    -------
    ranks : dict of int arrays of shape (n_sims,), values in 0..L
    L : int, the number of thinned draws per simulation
    info : dict with the number of divergent transitions and the run time

    ``fit_prior`` (default: the simulation prior) is for negative controls only: fitting
    under any other prior must make the ranks non-uniform.
    """
    prior = sbc_prior()
    fit_prior = prior if fit_prior is None else fit_prior
    sims = simulate(jax.random.key(seed), n_sims, n_data, prior)
    truth = label_invariant(sims["weights"], sims["means"], sims["covariances"])
    L = len(range(0, num_samples, thin))
    ranks = {q: np.zeros(n_sims, dtype=np.int64) for q in QUANTITIES}
    n_div = 0
    start = time.perf_counter()
    for i in range(n_sims):
        with warnings.catch_warnings():
            # Divergences are counted below; a few in 500 runs do not bias the ranks visibly.
            warnings.simplefilter("ignore")
            post = fit_posterior(
                sims["obs"][i],
                N_COMPONENTS,
                covariance_type=COVARIANCE_TYPE,
                prior=fit_prior,
                num_warmup=num_warmup,
                num_samples=num_samples,
                num_chains=1,
                seed=seed * 1_000_003 + i,
                progress_bar=False,
            )
        n_div += post.num_divergences
        d = post.draws[0]  # the one chain: (draw, ...)
        q = label_invariant(
            np.asarray(d.weights)[::thin],
            np.asarray(d.means)[::thin],
            np.asarray(d.covariances)[::thin],
        )
        for name in QUANTITIES:
            ranks[name][i] = int(np.sum(q[name] < truth[name][i]))
        if verbose and (i + 1) % max(1, n_sims // 10) == 0:
            el = time.perf_counter() - start
            print(f"  {i + 1}/{n_sims} simulations, {el:.0f} s", flush=True)
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


def plot_ranks(ranks, L, n_bins, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_sims = len(next(iter(ranks.values())))
    fig, axes = plt.subplots(1, len(ranks), figsize=(3.2 * len(ranks), 3.0), sharey=True)
    # 99% band of a bin count under uniformity: Binomial(n_sims, 1/n_bins).
    lo, hi = stats.binom(n_sims, 1 / n_bins).ppf([0.005, 0.995])
    for ax, (name, r) in zip(axes, ranks.items()):
        stat, p, counts = chi_square(r, L, n_bins)
        ax.axhspan(lo, hi, color="0.85", label="99% band (uniform)")
        ax.axhline(n_sims / n_bins, color="0.5", lw=1)
        ax.bar(np.arange(n_bins), counts, width=1.0, color="C0", edgecolor="white")
        ax.set_title(f"{name}\nchi2={stat:.1f}, p={p:.2f}", fontsize=9)
        ax.set_xlabel(f"rank bin (L={L})")
    axes[0].set_ylabel("simulations")
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(
        f"SBC of fit_posterior: 1-D, 2 components, spherical; {n_sims} simulations", fontsize=10
    )
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-sims", type=int, default=500)
    parser.add_argument("--n-data", type=int, default=50)
    parser.add_argument("--num-warmup", type=int, default=500)
    parser.add_argument("--num-samples", type=int, default=990)
    parser.add_argument("--thin", type=int, default=10)
    parser.add_argument("--n-bins", type=int, default=20)
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/sbc/rank_histograms.png")
    parser.add_argument("--force", action="store_true", help="overwrite an existing figure")
    args = parser.parse_args(argv)
    if os.path.exists(args.out) and not args.force:
        parser.error(f"{args.out} exists; pass --force to overwrite it or choose --out")

    print(
        f"SBC: {args.n_sims} simulations of {args.n_data} points; one chain of "
        f"{args.num_warmup} warm-up + {args.num_samples} draws, thinned by {args.thin}"
    )
    ranks, L, info = run_sbc(
        args.n_sims, args.n_data, args.num_warmup, args.num_samples, args.thin, args.seed
    )
    threshold = args.alpha / len(QUANTITIES)
    print(f"L = {L} draws per simulation; {args.n_bins} bins; {info['seconds']:.0f} s; "
          f"{info['divergences']} divergent transitions in total")  # fmt: skip
    print(f"uniformity rejected when p < {args.alpha}/{len(QUANTITIES)} = {threshold:.4f}")
    print(f"{'quantity':<12} {'chi2':>8} {'df':>4} {'p-value':>8}")
    ok = True
    for name, r in ranks.items():
        stat, p, _ = chi_square(r, L, args.n_bins)
        ok &= p >= threshold
        print(f"{name:<12} {stat:8.2f} {args.n_bins - 1:4d} {p:8.4f}")
    plot_ranks(ranks, L, args.n_bins, args.out)
    np.savez(os.path.splitext(args.out)[0] + "_ranks.npz", L=L, **ranks)
    print(f"figure: {args.out}")
    print("calibrated: ranks uniform" if ok else "NOT calibrated: some ranks are not uniform")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
