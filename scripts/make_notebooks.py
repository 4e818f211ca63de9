"""Build the notebooks under notebooks/ with nbformat and (optionally) execute them.

    python scripts/make_notebooks.py            # write and execute every notebook
    python scripts/make_notebooks.py --no-execute
    python scripts/make_notebooks.py 02 05      # only notebooks whose name starts so

Executed notebooks keep their outputs (figures inline) so they read on GitHub without running.
Each prints its own wall time in its last cell. With ``BAYESGMM_NOTEBOOK_FAST=1`` in the
environment the notebooks use smaller data and fewer draws (the test suite runs them so); the
saved notebooks are executed at full size.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"

SETUP = """\
import os
import time

_t0 = time.perf_counter()
# The test suite sets BAYESGMM_NOTEBOOK_FAST=1 for smaller data and fewer draws.
FAST = os.environ.get("BAYESGMM_NOTEBOOK_FAST") == "1"

import matplotlib.pyplot as plt
import numpy as np

import bayesgmm
from bayesgmm import GaussianMixture, KMeans, datasets, plotting, select

%matplotlib inline
plt.rcParams["figure.dpi"] = 72
os.makedirs("figures", exist_ok=True)"""

FOOTER = """\
print(f"notebook ran in {time.perf_counter() - _t0:.1f} s (FAST={FAST})")"""


def md(text):
    return new_markdown_cell(text.strip())


def code(text):
    return new_code_cell(text.strip())


# --------------------------------------------------------------------------------------------
def nb_gmm_vs_kmeans():
    return [
        md("""
# Gaussian mixtures against k-means

k-means gives every point to its nearest centre: each cluster is, in effect, a circle around its
centre. A Gaussian mixture gives every cluster a mean, a covariance (an ellipse) and a weight,
and gives every point a *probability* of belonging to each cluster. This notebook draws the
difference with `bayesgmm.plotting`.
"""),
        code(SETUP),
        md("""
## Five round blobs: the two methods agree

`datasets.blobs` draws the five blobs used throughout (seeded; `X` is (n_samples, 2), `y` the
blob of each row). k-means is drawn as circles reaching its farthest member; the mixture as
ellipses at 1, 2 and 3 standard deviations, shaded by weight.
"""),
        code("""
X, y = datasets.blobs(500, cluster_std=0.9, seed=0)
km = KMeans(5, random_state=0).fit(X)
gm = GaussianMixture(5, covariance_type="full", random_state=0).fit(X)

fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), layout="constrained")
plotting.plot_kmeans(km, X, ax=axes[0], title="k-means: circles")
plotting.plot_ellipses(gm, X, ax=axes[1], title="Gaussian mixture: ellipses")
plt.show()
"""),
        md("""
## Stretched blobs: k-means fails, the mixture fits

Multiplying the same points by a random 2x2 matrix shears the blobs into tilted ellipses
(`datasets.stretched_blobs`). k-means still cuts the plane into round regions; a
full-covariance mixture recovers the clusters. The adjusted Rand index (scikit-learn) scores
each labelling against the truth (1 is perfect).
"""),
        code("""
from sklearn.metrics import adjusted_rand_score

Xs, ys = datasets.stretched_blobs(500, cluster_std=0.9, seed=13)
n_init = 1 if FAST else 3   # restarts: the best of several EM runs (vectorised)
km_s = KMeans(5, random_state=0).fit(Xs)
gm_s = GaussianMixture(5, covariance_type="full", n_init=n_init, random_state=0).fit(Xs)
print(f"adjusted Rand index  k-means {adjusted_rand_score(ys, km_s.labels_):.3f}   "
      f"GMM {adjusted_rand_score(ys, gm_s.predict(Xs)):.3f}")

fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), layout="constrained")
plotting.plot_kmeans(km_s, Xs, ax=axes[0], title="k-means on stretched blobs")
plotting.plot_ellipses(gm_s, Xs, ax=axes[1], title="full-covariance GMM")
plt.show()
"""),
        md("""
## The four covariance types side by side

`full`: each component its own ellipse; `tied`: one ellipse shape shared by all; `diag`:
axis-aligned ellipses; `spherical`: circles of different sizes (the closest to k-means).
"""),
        code("""
fig, axes = plt.subplots(1, 4, figsize=(16, 4.2), layout="constrained")
for ax, ct in zip(axes, ["full", "tied", "diag", "spherical"]):
    m = GaussianMixture(5, covariance_type=ct, n_init=n_init, random_state=0).fit(Xs)
    plotting.plot_ellipses(m, Xs, ax=ax, title=f"{ct}   BIC {m.bic(Xs):.0f}")
plt.show()
"""),
        md("""
## Soft assignments

`predict_proba` gives each point's probability of each component (rows sum to one). Points
between two clusters are uncertain. Below, the five blobs drawn with a wider spread so that
they touch; each point is shaded and sized by `1 - max_k p(k | x)`.
"""),
        code("""
Xo, yo = datasets.blobs(500, cluster_std=1.5, seed=0)
gm_o = GaussianMixture(5, covariance_type="full", random_state=0).fit(Xo)
proba = gm_o.predict_proba(Xo)
unc = 1 - proba.max(axis=1)
least_sure = np.argsort(unc)[::-1][:5]
print("responsibilities of the five least certain points:")
print(np.round(proba[least_sure], 3))
print(f"{np.mean(unc > 0.1):.1%} of points have uncertainty above 0.1")
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
plotting.plot_ellipses(gm_o, Xo, ax=axes[0], title="overlapping blobs")
plotting.plot_uncertainty(gm_o, Xo, ax=axes[1], title="assignment uncertainty")
plt.show()
"""),
        code(FOOTER),
    ]


# --------------------------------------------------------------------------------------------
def nb_em_from_scratch():
    return [
        md("""
# EM from scratch in one dimension

Three Gaussians on a line, and the expectation-maximisation updates written out in NumPy next to
`bayesgmm`'s jitted EM started from the same parameters: the numbers agree to rounding error.
"""),
        code(SETUP),
        code("""
X, y = datasets.three_gaussians(600, seed=0)   # X: (600, 1), y: the true component
x = X[:, 0]
plt.hist(x, bins=50, color="0.7")
plt.title("three Gaussians: means -4, 0, 5; sds 1, 0.7, 1.5")
plt.show()
"""),
        md(r"""
## The updates

With weights $w_k$, means $\mu_k$ and variances $\sigma_k^2$:

* **E-step** (Bayes' rule): $r_{nk} = \dfrac{w_k\,\mathcal N(x_n\mid\mu_k,\sigma_k^2)}
  {\sum_j w_j\,\mathcal N(x_n\mid\mu_j,\sigma_j^2)}$
* **M-step**: $N_k = \sum_n r_{nk}$, $w_k = N_k / N$, $\mu_k = \sum_n r_{nk} x_n / N_k$,
  $\sigma_k^2 = \sum_n r_{nk}(x_n-\mu_k)^2 / N_k + \text{reg\_covar}$

The objective is the mean log-likelihood $\frac1N\sum_n \log\sum_k w_k\,\mathcal N(x_n\mid
\mu_k,\sigma_k^2)$, evaluated before each M-step (as scikit-learn's `lower_bounds_`). The
`reg_covar` term and the `10 * eps` added to $N_k$ are scikit-learn's guards, kept here so that
the numbers match exactly.
"""),
        code("""
from scipy.special import logsumexp

w0 = np.array([1 / 3, 1 / 3, 1 / 3])
mu0 = np.array([1.0, 2.0, 3.0])           # a poor start (all on the right), to watch EM move
var0 = np.array([1.0, 1.0, 1.0])
reg_covar, n_iter = 1e-6, 40


def e_step(x, w, mu, var):
    log_p = np.log(w) - 0.5 * np.log(2 * np.pi * var) - 0.5 * (x[:, None] - mu) ** 2 / var
    log_norm = logsumexp(log_p, axis=1)
    return np.exp(log_p - log_norm[:, None]), log_norm.mean()


def m_step(x, r):
    nk = r.sum(axis=0) + 10 * np.finfo(float).eps
    mu = r.T @ x / nk
    var = (r * (x[:, None] - mu) ** 2).sum(axis=0) / nk + reg_covar
    return nk / nk.sum(), mu, var


w, mu, var = w0, mu0, var0
objective, history = [], [(w, mu, var)]
for _ in range(n_iter):
    r, ll = e_step(x, w, mu, var)
    objective.append(ll)
    w, mu, var = m_step(x, r)
    history.append((w, mu, var))
print("NumPy EM after", n_iter, "iterations")
print("  weights ", np.round(w, 6))
print("  means   ", np.round(mu, 6))
print("  variances", np.round(var, 6))
"""),
        md("""
## The same with bayesgmm

`GaussianMixture` with `weights_init`, `means_init` and `precisions_init` given starts exactly
there; `tol=0` makes it run all `max_iter` iterations.
"""),
        code("""
gm = GaussianMixture(
    3, covariance_type="diag", weights_init=w0, means_init=mu0[:, None],
    precisions_init=(1 / var0)[:, None], max_iter=n_iter, tol=0.0,
)
import warnings
with warnings.catch_warnings():
    warnings.simplefilter("ignore")   # "did not converge": tol=0 never converges, by design
    gm.fit(X)

diffs = {
    "weights": np.max(np.abs(gm.weights_ - w)),
    "means": np.max(np.abs(gm.means_[:, 0] - mu)),
    "variances": np.max(np.abs(gm.covariances_[:, 0] - var)),
    "objective per iteration": np.max(np.abs(gm.lower_bounds_ - np.array(objective))),
}
for name, d in diffs.items():
    print(f"largest difference in {name:24s} {d:.2e}")
assert max(diffs.values()) < 1e-10
"""),
        md("""
## Intermediate steps

`plotting.plot_em_steps` refits from the same start and draws chosen iterations: histogram,
each weighted component (dashed) and the mixture (black). The objective never decreases.
"""),
        code("""
start = dict(covariance_type="diag", weights_init=w0, means_init=mu0[:, None],
             precisions_init=(1 / var0)[:, None])
axes = plotting.plot_em_steps(X, 3, iterations=(0, 1, 3, 8, 15, 40), **start)
plt.show()
ax = plotting.plot_em_objective(gm, title="EM objective (mean log-likelihood)")
plt.show()
assert np.all(np.diff(gm.lower_bounds_) >= -1e-12)
"""),
        md("""
## Animations

`plotting.animate_em` draws one frame per iteration and saves a GIF with matplotlib's
`PillowWriter` (it refuses to replace an existing file unless `overwrite=True`). The second
animation runs EM on the stretched blobs from five random data points. Not every random start
ends this well: EM climbs to the nearest local maximum, which is why `n_init` restarts (run
together, vectorised) keep the best of several.
"""),
        code("""
from IPython.display import Image, display

n_frames = 8 if FAST else 25
plotting.animate_em(X, 3, n_frames=n_frames, filename="figures/em_1d.gif", overwrite=True,
                    fps=4, **start)
plt.close("all")
display(Image(filename="figures/em_1d.gif"))
"""),
        code("""
X2, _ = datasets.stretched_blobs(500, cluster_std=0.9, seed=13)
plotting.animate_em(X2, 5, n_frames=n_frames, filename="figures/em_2d.gif", overwrite=True,
                    fps=4, init_params="random_from_data", random_state=8)
plt.close("all")
display(Image(filename="figures/em_2d.gif"))
"""),
        code(FOOTER),
    ]


# --------------------------------------------------------------------------------------------
def nb_choosing_k():
    return [
        md(r"""
# Choosing the number of components: BIC, AIC and ICL

`bayesgmm.select` fits every (number of components, covariance type) pair and tabulates

* BIC $= -2\log L + p\log n$, AIC $= -2\log L + 2p$, and
* ICL $=$ BIC $+ 2E$, with $E = -\sum_{n,k} r_{nk}\log r_{nk}$ the entropy of the soft
  assignments (it penalises overlapping clusters),

with scikit-learn's sign (lower is better; `convention="mclust"` gives mclust's, higher is
better). Fits in which a component collapsed onto repeated values are flagged and never chosen.
"""),
        code(SETUP),
        md("""
Four tilted clusters, made by shearing round blobs with one 2x2 matrix `A`: every cluster then
has the same covariance (`0.8**2 * A.T @ A`), so the true model is 4 components with a `tied`
covariance. `full` fits as well but spends more parameters, which BIC charges for.
"""),
        code("""
centers = [[-5.0, -3.0], [0.0, 4.0], [4.0, -2.0], [7.0, 5.0]]
X, y = datasets.stretched_blobs(600, centers=centers, cluster_std=0.8, seed=3)
grid = [4] if FAST else range(1, 7)
table, best = select(X, n_components=grid, criterion="bic", init_params="k-means++", n_init=3)
print(table)
print("chosen:", best.n_components, best.covariance_type)
"""),
        code("""
df = table.to_pandas()     # needs pandas; the table itself prints without it
df.sort_values("bic").head()
"""),
        code("""
fig, axes = plt.subplots(1, 4, figsize=(17, 4), layout="constrained")
for ax, crit in zip(axes[:3], ["bic", "aic", "icl"]):
    plotting.plot_selection(table, crit, ax=ax, title=crit.upper())
plotting.plot_ellipses(best, X, ax=axes[3], title=f"chosen: K={best.n_components}, "
                       f"{best.covariance_type}")
plt.show()
"""),
        md("""
The chosen model's BIC equals what `GaussianMixture.bic` reports:
"""),
        code("""
print(table.best["bic"], best.bic(X))
assert np.isclose(table.best["bic"], best.bic(X))
"""),
        md("""
## A collapsed component is flagged, not chosen

Real data often hold repeated values (rounding, censoring). Here 10% of the points are exactly
3.0. A component sitting on the copies has a variance held at the `reg_covar` floor and an
unbounded likelihood: its BIC looks excellent and means nothing. `select` marks such fits with
`!` and skips them.
"""),
        code("""
rng = np.random.default_rng(0)
Xr = np.concatenate([rng.normal(0, 1, (450, 1)), np.full((50, 1), 3.0)])
t_r, best_r = select(Xr, n_components=[1, 2, 3], covariance_types=["spherical"],
                     init_params="k-means++", n_init=3)
print(t_r)
print("chosen:", best_r.n_components, "components")
"""),
        code(FOOTER),
    ]


# --------------------------------------------------------------------------------------------
def nb_generating():
    return [
        md("""
# Generating new data

A mixture is a density: with enough components it approximates shapes no single Gaussian
could, and `sample` draws new points from it. First the two moons, then handwritten digits.
"""),
        code(SETUP),
        md("""
## Two moons with many components
"""),
        code("""
Xm, _ = datasets.two_moons(500, noise=0.06, seed=0)
gm16 = GaussianMixture(16, covariance_type="full", n_init=2, random_state=0).fit(Xm)
fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
plotting.plot_ellipses(GaussianMixture(2, random_state=0).fit(Xm), Xm, ax=axes[0],
                       title="2 components: clusters, not a density")
plotting.plot_ellipses(gm16, Xm, ax=axes[1], title="16 components: a density")
plt.show()
"""),
        code("""
axes = plotting.plot_real_vs_synthetic(Xm, gm16, n_samples=500, seed=1)
plt.show()
print(f"mean log-density of the data {gm16.score(Xm):.3f}; "
      f"of 500 new samples {gm16.score(gm16.sample(500, random_state=1)[0]):.3f}")
"""),
        md("""
## Digits

scikit-learn ships 1,797 8x8 images of handwritten digits (no download). Reduced by PCA (an
SVD in NumPy) to the directions holding 95% of the variance, a mixture is fitted in that space;
new points sampled from it, mapped back through the PCA, are new digits.
"""),
        code("""
from sklearn.datasets import load_digits

digits = load_digits().data                  # (1797, 64), pixel values 0..16
mean = digits.mean(axis=0)
U, s, Vt = np.linalg.svd(digits - mean, full_matrices=False)
explained = np.cumsum(s**2) / np.sum(s**2)
n_pc = int(np.searchsorted(explained, 0.95) + 1)
Z = (digits - mean) @ Vt[:n_pc].T            # (1797, n_pc)
print(f"{n_pc} principal components keep 95% of the variance")

n_comp = 8 if FAST else 40
gm_d = GaussianMixture(n_comp, covariance_type="full", reg_covar=1e-2, max_iter=100 if not FAST
                       else 20, random_state=0)
gm_d.fit(Z)
print(f"{n_comp} components, converged: {gm_d.converged_}, iterations: {gm_d.n_iter_}")
"""),
        code("""
Z_new, _ = gm_d.sample(40, random_state=0)
new_digits = np.clip(Z_new @ Vt[:n_pc] + mean, 0, 16)

fig, axes = plt.subplots(2, 20, figsize=(12, 1.6), layout="constrained")
for i in range(20):
    axes[0, i].imshow(digits[i].reshape(8, 8), cmap="binary")
    axes[1, i].imshow(new_digits[i].reshape(8, 8), cmap="binary")
for ax in axes.ravel():
    ax.set_axis_off()
fig.suptitle("top: real digits; bottom: sampled from the mixture")
plt.show()
"""),
        code(FOOTER),
    ]


# --------------------------------------------------------------------------------------------
def nb_em_vs_posterior():
    return [
        md("""
# EM against the full posterior

EM gives one answer: the maximum-likelihood (or MAP) parameters. NUTS (NumPyro) draws from the
whole posterior of the *same* model - same prior, assignments summed out - started at the
MAP-EM answer. This notebook compares the two and cures the label switching that every
mixture posterior suffers.
"""),
        code(SETUP),
        code("""
import arviz as az

from bayesgmm import fit_posterior

X, y = datasets.blobs(300, centers=[[-3.0, 0.0], [1.0, 1.0], [3.5, -2.5]], cluster_std=1.0,
                      seed=4)
num = dict(num_warmup=150, num_samples=150) if FAST else dict(num_warmup=500, num_samples=500)
post = fit_posterior(X, 3, covariance_type="full", num_chains=4, seed=0, progress_bar=False,
                     **num)
post
"""),
        md("""
## Label switching, and its cure

The likelihood does not change when components are renamed, so the posterior has 3! = 6
identical modes. Chains from random starts each settle in one of them: component "0" of one
chain is component "2" of another. To show it, each chain below starts at a *differently
permuted* MAP-EM solution (what random starts do by chance; `init` takes one start per chain).
Trace plots show the chains at different levels and R-hat is far from 1.
"""),
        code("""
mp = post.map_params
perms = np.array([[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 2, 1]])
# One start per chain: a GMMParams with a leading chain axis (the same sampler settings as
# above, so the compiled sampler is reused).
starts = bayesgmm.GMMParams(
    np.stack([np.asarray(mp.weights)[p] for p in perms]),
    np.stack([np.asarray(mp.means)[p] for p in perms]),
    np.stack([np.asarray(mp.cov.permute_components(mp.covariances, p)) for p in perms]),
    "full",
)
switched = fit_posterior(X, 3, covariance_type="full", num_chains=4, seed=1, init=starts,
                         progress_bar=False, **num)

idata_raw = switched.to_inference_data(log_likelihood=False)
az.plot_trace(idata_raw, var_names=["means"], compact=True, figsize=(10, 3))
plt.show()
az.summary(idata_raw, var_names=["means"])
"""),
        md("""
`relabel` permutes each draw's components to best match the MAP-EM solution (a minimum-cost
assignment on the divergence between components). The same draws, relabeled:
"""),
        code("""
fixed, perms_applied = switched.relabel()
idata_fixed = fixed.to_inference_data(log_likelihood=False)
az.plot_trace(idata_fixed, var_names=["means"], compact=True, figsize=(10, 3))
plt.show()
summary = az.summary(idata_fixed, var_names=["weights", "means"])
print("largest R-hat before:", float(az.summary(idata_raw, var_names=["means"])["r_hat"].max()),
      " after:", float(summary["r_hat"].max()))
summary
"""),
        md("""
## Posterior ellipses

Faint: the component ellipses (2 sd) of 40 relabeled posterior draws. Bold: MAP-EM.
"""),
        code("""
post_r, _ = post.relabel()
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
plotting.plot_posterior_ellipses(post_r, ax=axes[0], n_draws=40, title="posterior draws vs MAP-EM")
plotting.plot_ellipses(post_r, X, ax=axes[1], title="posterior-mean parameters")
plt.show()
"""),
        md("""
## Each parameter: posterior density and the EM estimate
"""),
        code("""
axes = plotting.plot_em_vs_posterior(post_r, which=("weights", "means"), ncols=5)
plt.show()
"""),
        md("""
## Assignment uncertainty: EM against the posterior

EM's responsibilities treat the fitted parameters as known; the posterior averages them over
parameter uncertainty, so points between clusters become (slightly) more uncertain.
"""),
        code("""
em = post.map_estimator
u_em = 1 - em.predict_proba(X).max(axis=1)
u_post = post_r.assignment_uncertainty(X)
fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
plotting.plot_uncertainty(em, X, ax=axes[0], title="EM", colorbar=False)
plotting.plot_uncertainty(post_r, X, ax=axes[1], title="posterior")
axes[2].scatter(u_em, u_post, s=8)
axes[2].plot([0, 0.67], [0, 0.67], "k--", lw=1)
axes[2].set_xlabel("EM uncertainty")
axes[2].set_ylabel("posterior uncertainty")
plt.show()
print(f"mean uncertainty  EM {u_em.mean():.4f}   posterior {u_post.mean():.4f}")
"""),
        md("""
## Posterior-predictive data

EM's `sample` draws from one set of parameters; `Posterior.sample` draws each point from a
random posterior draw, so parameter uncertainty is included.
"""),
        code("""
axes = plotting.plot_real_vs_synthetic(X, em, post_r, seed=1)
plt.show()
"""),
        md("""
## How many components? LOO across K

Each posterior's pointwise log-likelihood goes to ArviZ: `az.compare` ranks the models by the
expected log predictive density estimated by Pareto-smoothed leave-one-out (higher is better).
"""),
        code("""
loo_num = dict(num_warmup=100, num_samples=100) if FAST else dict(num_warmup=300,
                                                                  num_samples=300)
fits = {}
for k in ([2, 3] if FAST else [2, 3, 4]):
    p = post if k == 3 else fit_posterior(
        X, k, covariance_type="full", num_chains=2, seed=k, progress_bar=False, **loo_num)
    fits[f"K={k}"] = p.to_inference_data()
comparison = az.compare(fits)
comparison
"""),
        code("""
az.plot_compare(comparison, figsize=(7, 2.5))
plt.show()
"""),
        code(FOOTER),
    ]


NOTEBOOKS = {
    "01_gmm_vs_kmeans": nb_gmm_vs_kmeans,
    "02_em_from_scratch_1d": nb_em_from_scratch,
    "03_choosing_k": nb_choosing_k,
    "04_generating_new_data": nb_generating,
    "05_em_vs_posterior": nb_em_vs_posterior,
}


def build(name: str) -> nbformat.NotebookNode:
    nb = new_notebook(cells=NOTEBOOKS[name]())
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def execute(nb: nbformat.NotebookNode, cwd: Path, timeout: int = 900) -> nbformat.NotebookNode:
    """Run ``nb`` top to bottom in a fresh kernel with working directory ``cwd``."""
    from nbclient import NotebookClient

    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    return nb


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="prefixes of notebook names to build")
    parser.add_argument("--no-execute", action="store_true")
    args = parser.parse_args(argv)
    names = [n for n in NOTEBOOKS if not args.only or any(n.startswith(p) for p in args.only)]
    NOTEBOOK_DIR.mkdir(exist_ok=True)
    for name in names:
        nb = build(name)
        if not args.no_execute:
            t0 = time.perf_counter()
            execute(nb, NOTEBOOK_DIR)
            print(f"{name}: executed in {time.perf_counter() - t0:.1f} s", flush=True)
        path = NOTEBOOK_DIR / f"{name}.ipynb"
        nbformat.write(nb, path)
        print(f"wrote {path.relative_to(ROOT)}", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.exit(main())
