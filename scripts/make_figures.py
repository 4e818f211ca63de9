"""Make the README's pictures under docs/ (regenerates them; a few minutes on 2 cores).

python scripts/make_figures.py                  # all
python scripts/make_figures.py posterior        # only the named ones
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bayesgmm import GaussianMixture, KMeans, datasets, fit_posterior, plotting  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs"


def gmm_vs_kmeans():
    X, _ = datasets.stretched_blobs(500, cluster_std=0.9, seed=13)
    km = KMeans(5, random_state=0).fit(X)
    gm = GaussianMixture(5, covariance_type="full", n_init=3, random_state=0).fit(X)
    X1, _ = datasets.three_gaussians(600, seed=0)
    gm1 = GaussianMixture(3, covariance_type="diag", random_state=0).fit(X1)
    fig, axes = plt.subplots(
        1, 3, figsize=(14, 4.4), layout="constrained", gridspec_kw={"width_ratios": [1, 1, 1.2]}
    )
    plotting.plot_kmeans(km, X, ax=axes[0], title="k-means: round clusters cut the data wrongly")
    plotting.plot_ellipses(gm, X, ax=axes[1], title="GaussianMixture: 1, 2, 3 sd ellipses")
    plotting.plot_1d(gm1, X1, ax=axes[2], title="1-D: histogram, weighted components, mixture")
    fig.savefig(DOCS / "gmm_vs_kmeans.png", dpi=80)
    plt.close(fig)


def em_animation():
    X, _ = datasets.stretched_blobs(500, cluster_std=0.9, seed=13)
    path = DOCS / "em_2d.gif"
    # Five wide circles at random data points: EM turns them into the tilted clusters.
    start = np.random.default_rng(2).choice(len(X), 5, replace=False)
    plotting.animate_em(
        X,
        5,
        n_frames=20,
        filename=path,
        overwrite=True,
        fps=3,
        dpi=70,
        figsize=(4.5, 4.5),
        weights_init=np.full(5, 0.2),
        means_init=X[start],
        precisions_init=np.tile(np.eye(2) / 9.0, (5, 1, 1)),
    )
    plt.close("all")


def posterior():
    X, _ = datasets.blobs(
        300, centers=[[-3.0, 0.0], [1.0, 1.0], [3.5, -2.5]], cluster_std=1.0, seed=4
    )
    post = fit_posterior(X, 3, num_warmup=500, num_samples=500, num_chains=4, progress_bar=False)
    post, _ = post.relabel()
    em = post.map_estimator
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4), layout="constrained")
    plotting.plot_posterior_ellipses(
        post, ax=axes[0], n_draws=40, title="NUTS draws (faint) and MAP-EM (bold)"
    )
    plotting.plot_uncertainty(em, X, ax=axes[1], title="EM uncertainty", colorbar=False)
    plotting.plot_uncertainty(post, X, ax=axes[2], title="posterior uncertainty")
    fig.savefig(DOCS / "posterior.png", dpi=80)
    plt.close(fig)


def main(argv):
    DOCS.mkdir(exist_ok=True)
    for make in (gmm_vs_kmeans, em_animation, posterior):
        if argv and make.__name__ not in argv:
            continue
        t0 = time.perf_counter()
        make()
        print(f"{make.__name__}: {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main(sys.argv[1:]))
