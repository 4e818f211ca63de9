"""Make the README's pictures under docs/ (regenerates them; about a minute on 2 cores).

python scripts/make_figures.py
"""

from __future__ import annotations

import os
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
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4), layout="constrained")
    plotting.plot_kmeans(km, X, ax=axes[0], title="k-means: round clusters cut the data wrongly")
    plotting.plot_ellipses(gm, X, ax=axes[1], title="GaussianMixture: 1, 2, 3 sd ellipses")
    plotting.plot_uncertainty(gm, X, ax=axes[2], title="assignment uncertainty")
    fig.savefig(DOCS / "gmm_vs_kmeans.png", dpi=80)
    plt.close(fig)


def em_animation():
    X, _ = datasets.stretched_blobs(500, cluster_std=0.9, seed=13)
    path = DOCS / "em_2d.gif"
    plotting.animate_em(
        X,
        5,
        n_frames=25,
        filename=path,
        overwrite=True,
        fps=4,
        dpi=70,
        init_params="random_from_data",
        random_state=2,
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


def main():
    DOCS.mkdir(exist_ok=True)
    for make in (gmm_vs_kmeans, em_animation, posterior):
        t0 = time.perf_counter()
        make()
        print(f"{make.__name__}: {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
