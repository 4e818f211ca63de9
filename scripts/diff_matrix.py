"""Differential test matrix: every public function that returns a number, against a reference
that nobody here wrote, at shapes that cross every size threshold of the code and the compiler.

A number checked at one shape says nothing about another: XLA compiles a different program at
different sizes (jaxlib 0.10.2 fused the tied density into one faulty ``__ynn_fusion`` once
the ``(n_features, rows)`` product passed 2**14 elements, see ``bayesgmm.covariance``), and
the code itself switches at several sizes. The shapes below cross all of them:

* ``density.block_rows(K, d)`` (2**17 / (K d), clamped to [128, 16384]): one block, a padded
  last block, several blocks (``lax.map``);
* ``bayesgmm._compile.SMALL_WORK`` (``n K d**2 = 1e5``): XLA optimisation level 0 below, and
  EM's expanded float64 kernels above (``bayesgmm.em.expanded.use_expanded``);
* ``EXPANDED_BLOCK_ROWS`` (1024) of EM's expanded pass, evened-out blocks;
* 2**14 elements of a ``(d, rows)`` or ``(K d, rows)`` product (jaxlib 0.10.2's fusion);
* n = 1 and n = K (the smallest data), d from 1 to 50, K from 1 to 20.

References, all computed in float64 NumPy/SciPy from the same parameters:

==========================  ================================================================
function                    reference
==========================  ================================================================
component_log_prob          ``scipy.stats.multivariate_normal.logpdf`` per component
log_prob                    ``scipy.special.logsumexp`` of the weighted component densities
log_responsibilities,       the same, normalised (Bayes' rule); predict = argmax where the
predict_proba, predict      reference's best two components differ by more than the tolerance
sample                      moments of the mixture (mean, covariance), Monte-Carlo tolerance
GaussianMixture score_*,    the density references at the estimator's parameters;
predict*, bic, aic          ``sklearn.mixture.GaussianMixture.bic/aic`` at the same parameters
fitted attributes           scikit-learn's ``GaussianMixture`` from the same initial weights,
                            means and precisions, 3 iterations with ``tol=0``; where the two
                            disagree beyond the tolerance, a ``longdouble`` transcription of
                            the same iteration (``longdouble_em``) decides, and
                            scikit-learn's distance from it is recorded beside
select's table              scikit-learn's ``score``/``bic``/``aic`` at each row's parameters
Posterior.predict_proba,    NumPy averages over the draws of the density references
score_samples
gmm_model's log density     scipy: mixture log-likelihood + Dirichlet + the type's conjugate
                            prior (``invwishart``, ``multivariate_normal``, ``invgamma``,
                            ``norm``)
==========================  ================================================================

Errors are ``max |ours - ref| / max(1, |ref|)`` (relative on log densities, absolute below 1),
absolute on probabilities. Tolerances: float64 1e-8 (log densities are sums of O(d) terms
of size up to ~1e3 here, so rounding is ~1e-13; 1e-8 leaves five orders of margin while any
wrong program is off by O(1)); float32 2e-3 (eps 1.2e-7 times the same amplification, with
the squared distances of far points reaching ~1e4); fitted attributes 1e-6 (float64; EM
iterations amplify rounding slightly; observed 1e-10) and 1e-4 (float32, against scikit-learn
in float64 on well-posed problems; observed 1e-6); sample moments: 6 standard errors.

Run the full matrix (prints the worst error per function and covariance type; exit status 1
on any failure)::

    python scripts/diff_matrix.py                  # full matrix
    python scripts/diff_matrix.py --subset ci      # the cases the test suite runs
    python scripts/diff_matrix.py --types tied --dtypes float64 --groups density

``tests/test_matrix.py`` runs the ``ci`` subset.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.special import logsumexp

TYPES = ("full", "tied", "diag", "spherical")
DTYPES = ("float64", "float32")
GROUPS = ("density", "estimator", "fit", "select", "posterior", "model", "sample")
TOL = {"float64": 1e-8, "float32": 2e-3}
FIT_TOL = {"float64": 1e-6, "float32": 1e-4}


# --------------------------------------------------------------------------------------------
# Parameters and data (NumPy, float64)
# --------------------------------------------------------------------------------------------


def random_params(rng, covariance_type, k, d):
    """Well-conditioned random parameters: weights, means (K, d), compact covariances."""
    weights = rng.dirichlet(np.full(k, 3.0))
    means = rng.normal(0.0, 3.0, (k, d))

    def spd():
        q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        return (q * rng.uniform(0.3, 3.0, d)) @ q.T

    if covariance_type == "full":
        cov = np.stack([spd() for _ in range(k)])
    elif covariance_type == "tied":
        cov = spd()
    elif covariance_type == "diag":
        cov = rng.uniform(0.3, 3.0, (k, d))
    else:
        cov = rng.uniform(0.3, 3.0, k)
    return weights, means, cov


def full_matrices(covariance_type, cov, k, d):
    if covariance_type == "full":
        return cov
    if covariance_type == "tied":
        return np.broadcast_to(cov, (k, d, d))
    if covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([c * np.eye(d) for c in cov])


def sample_data(rng, weights, means, covfull, n):
    labels = rng.choice(len(weights), size=n, p=weights)
    chol = np.linalg.cholesky(covfull)
    z = rng.standard_normal((n, means.shape[1]))
    return means[labels] + np.einsum("nij,nj->ni", chol[labels], z)


# --------------------------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------------------------


def ref_component_logpdf(X, means, covfull):
    """(n, K) by scipy.stats."""
    X = np.asarray(X, np.float64)
    return np.stack(
        [
            np.atleast_1d(stats.multivariate_normal.logpdf(X, mean=m, cov=c))
            for m, c in zip(means, covfull)
        ],
        axis=1,
    ).reshape(X.shape[0], len(means))


def ref_density(X, weights, means, covfull):
    comp = ref_component_logpdf(X, means, covfull)
    weighted = comp + np.log(weights)
    log_px = logsumexp(weighted, axis=1)
    return {"component": comp, "log_prob": log_px, "log_resp": weighted - log_px[:, None]}


def sklearn_model(covariance_type, weights, means, cov):
    """A scikit-learn GaussianMixture holding exactly these parameters."""
    from sklearn.mixture import GaussianMixture as SkGM
    from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky

    sk = SkGM(len(weights), covariance_type=covariance_type)
    sk.weights_ = np.asarray(weights, np.float64)
    sk.means_ = np.asarray(means, np.float64)
    sk.covariances_ = np.asarray(cov, np.float64)
    sk.precisions_cholesky_ = _compute_precision_cholesky(sk.covariances_, covariance_type)
    sk.n_features_in_ = sk.means_.shape[1]
    return sk


def ref_log_prior(weights, means, cov, prior, covariance_type):
    """scipy's log density of the conjugate prior (Dirichlet + the type's family)."""
    p = {k: np.asarray(v, np.float64) for k, v in prior.to_numpy().items()}
    w = np.asarray(weights, np.float64)
    lp = stats.dirichlet.logpdf(w / w.sum(), p["weight_concentration"])
    kappa, dof, scale, mu0 = float(p["mean_precision"]), float(p["dof"]), p["scale"], p["mean"]
    means = np.asarray(means, np.float64)
    cov = np.asarray(cov, np.float64)
    if covariance_type in ("full", "tied"):
        covs = cov if covariance_type == "full" else cov[None]
        lp += sum(stats.invwishart.logpdf(c, df=dof, scale=scale) for c in covs)
        per_k = (
            cov if covariance_type == "full" else np.broadcast_to(cov, (len(means),) + cov.shape)
        )
        lp += sum(stats.multivariate_normal.logpdf(m, mu0, c / kappa) for m, c in zip(means, per_k))
    elif covariance_type == "diag":
        lp += np.sum(stats.invgamma.logpdf(cov, a=dof / 2, scale=scale / 2))
        lp += np.sum(stats.norm.logpdf(means, mu0, np.sqrt(cov / kappa)))
    else:
        lp += np.sum(stats.invgamma.logpdf(cov, a=dof / 2, scale=scale / 2))
        lp += np.sum(stats.norm.logpdf(means, mu0, np.sqrt(cov / kappa)[:, None]))
    return float(lp)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def rel_err(got, want):
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    if got.shape != want.shape:
        return math.inf
    if got.size == 0:
        return 0.0
    if not np.all(np.isfinite(got)):
        return math.inf
    return float(np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want))))


def abs_err(got, want):
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    if got.shape != want.shape or not np.all(np.isfinite(got)):
        return math.inf
    return float(np.max(np.abs(got - want))) if got.size else 0.0


def label_err(got, log_resp, margin):
    """Fraction of rows whose label differs from the reference's where the reference is
    decided (its best two log responsibilities differ by more than ``margin``)."""
    got = np.asarray(got)
    if got.shape != log_resp.shape[:1]:
        return math.inf
    if log_resp.shape[1] == 1:
        return float(np.mean(got != 0))
    top2 = np.sort(log_resp, axis=1)[:, -2:]
    decided = top2[:, 1] - top2[:, 0] > margin
    wrong = (got != np.argmax(log_resp, axis=1)) & decided
    return float(np.mean(wrong)) if got.size else 0.0


# --------------------------------------------------------------------------------------------
# An extended-precision arbiter for the fitted attributes
# --------------------------------------------------------------------------------------------
#: NumPy's ``longdouble`` (80-bit x87 on x86-64: 64-bit mantissa, eps 1.1e-19): 2**11 times
#: float64's precision, so its rounding is invisible at the fit tolerances.
LD = np.longdouble


def _chol_ld(A):
    """Cholesky factors of ``A`` (..., d, d) in longdouble (numpy.linalg has no longdouble)."""
    A = np.asarray(A, LD)
    d = A.shape[-1]
    L = np.zeros_like(A)
    for j in range(d):
        s = A[..., j, j] - np.sum(L[..., j, :j] ** 2, axis=-1)
        L[..., j, j] = np.sqrt(s)
        if j + 1 < d:
            below = np.einsum("...il,...l->...i", L[..., j + 1 :, :j], L[..., j, :j])
            off = A[..., j + 1 :, j] - below
            L[..., j + 1 :, j] = off / L[..., j, j][..., None]
    return L


def _lower_inv_ld(L):
    """``L^{-1}`` of lower-triangular ``L`` (..., d, d) by forward substitution."""
    d = L.shape[-1]
    eye = np.broadcast_to(np.eye(d, dtype=LD), L.shape)
    inv = np.zeros_like(L)
    for i in range(d):
        acc = eye[..., i, :] - np.einsum("...l,...lj->...j", L[..., i, :i], inv[..., :i, :])
        inv[..., i, :] = acc / L[..., i, i][..., None]
    return inv


def longdouble_em(X, covariance_type, w0, m0, prec0, reg_covar, n_iter):
    """scikit-learn's EM iteration from a given start, transcribed from the textbook in
    ``longdouble`` with every covariance centred (no ``E[x x'] - mu mu'`` cancellation).

    The arbiter where scikit-learn and bayesgmm disagree beyond the fit tolerance: whichever
    is closer to it rounds less. Returns ``{attribute: value}`` in scikit-learn's compact
    shapes, ``lower_bound_`` being the mean log-likelihood of the last E-step (as
    scikit-learn defines it).
    """
    X = np.asarray(X, LD)
    n, d = X.shape
    k = len(w0)
    full_like = covariance_type in ("full", "tied")
    w = np.asarray(w0, LD)
    m = np.asarray(m0, LD)
    p = np.asarray(prec0, LD)
    if full_like:
        Lp = _chol_ld(p)
        Linv = _lower_inv_ld(Lp)
        cov = np.swapaxes(Linv, -1, -2) @ Linv
    else:
        cov = 1 / p
    eps10 = 10 * np.finfo(np.float64).eps  # scikit-learn's guard added to every count

    def covfull(cov):
        if covariance_type == "full":
            return cov
        if covariance_type == "tied":
            return np.broadcast_to(cov, (k, d, d))
        if covariance_type == "diag":
            return np.einsum("kd,de->kde", cov, np.eye(d, dtype=LD))
        return cov[:, None, None] * np.eye(d, dtype=LD)

    def e_step(w, m, cov):
        C = covfull(cov)
        L = _chol_ld(C)
        Li = _lower_inv_ld(L)
        logdet = 2 * np.sum(np.log(np.diagonal(L, axis1=-2, axis2=-1)), axis=-1)
        out = np.empty((n, k), LD)
        for s in range(0, n, 2048):
            diff = X[s : s + 2048, None, :] - m[None]
            z = np.einsum("kij,nkj->nki", Li, diff)
            out[s : s + 2048] = -0.5 * (d * np.log(2 * LD(np.pi)) + logdet + np.sum(z**2, -1))
        lp = out + np.log(w)
        mx = lp.max(axis=1, keepdims=True)
        lse = mx[:, 0] + np.log(np.exp(lp - mx).sum(axis=1))
        return np.exp(lp - lse[:, None]), lse.mean()

    lower_bound = None
    for _ in range(n_iter):
        r, lower_bound = e_step(w, m, cov)
        nk = r.sum(axis=0) + eps10
        m = (r.T @ X) / nk[:, None]
        diff = X[:, None, :] - m[None]
        if covariance_type == "full":
            cov = np.einsum("nk,nki,nkj->kij", r, diff, diff) / nk[:, None, None]
            cov = cov + reg_covar * np.eye(d, dtype=LD)
        elif covariance_type == "tied":
            cov = np.einsum("nk,nki,nkj->ij", r, diff, diff) / nk.sum()
            cov = cov + reg_covar * np.eye(d, dtype=LD)
        elif covariance_type == "diag":
            cov = np.einsum("nk,nki->ki", r, diff**2) / nk[:, None] + reg_covar
        else:
            cov = np.einsum("nk,nki->k", r, diff**2) / nk / d + reg_covar
        w = nk / nk.sum()
    if full_like:
        Li = _lower_inv_ld(_chol_ld(cov))
        prec_chol = np.swapaxes(Li, -1, -2)
        prec = prec_chol @ Li
    else:
        prec_chol = 1 / np.sqrt(cov)
        prec = 1 / cov
    return {
        "weights_": w,
        "means_": m,
        "covariances_": cov,
        "precisions_cholesky_": prec_chol,
        "precisions_": prec,
        "lower_bound_": lower_bound,
    }


# --------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------


def thresholds(d, k):
    """Row counts that cross every size threshold for (d, K) (see the module docstring)."""
    from bayesgmm._compile import SMALL_WORK
    from bayesgmm.density import block_rows
    from bayesgmm.em import EXPANDED_BLOCK_ROWS

    block = block_rows(k, d)
    small = SMALL_WORK // (k * d * d)  # largest n still "small"
    ns = {1, k, block, block + 1, 2 * block + 3, small, small + 1, EXPANDED_BLOCK_ROWS + 1}
    ns |= {2**14 // d, 2**14 // d + 1, 2**14 // (k * d) + 1, 100_000}
    return sorted(n for n in ns if 1 <= n <= 100_000)


#: (d, K) pairs of the full matrix: d from 1 to 50 and K from 1 to 20, each d with a small
#: and a large K (the full product of six d's and six K's would take most of a day).
FULL_DK = (
    (1, 1),
    (1, 20),
    (2, 3),
    (2, 10),
    (5, 2),
    (5, 20),
    (10, 3),
    (10, 10),
    (30, 2),
    (30, 5),
    (50, 1),
    (50, 20),
)


def full_shapes():
    shapes = []
    for d, k in FULL_DK:
        for n in thresholds(d, k):
            if n * k * d > 2e8:  # (n, K, d) cost bound of the reference itself
                continue
            shapes.append((n, d, k))
    return shapes


#: The suite's subset: every threshold crossed at least once, in few compiled programs.
#: (n, d, K): n = 1; n = K; the jaxlib 0.10.2 fusion threshold of the tied type (d = 10:
#: 1638/1639 rows; d = 30: 546/547); a padded last block (block_rows(3, 10) = 4369); the
#: small-problem switch (n K d^2 = 1e5 at (2000, 5, 2): 2000/2001, centred/expanded kernels
#: and optimisation level); several blocks and the expanded kernels at (20000, 10, 3); d = 1
#: with K = 20; d = 50.
CI_SHAPES = (
    (1, 2, 1),
    (3, 2, 3),
    (1638, 10, 3),
    (1639, 10, 3),
    (546, 30, 2),
    (547, 30, 2),
    (4370, 10, 3),
    (2000, 5, 2),
    (2001, 5, 2),
    (20000, 10, 3),
    (3000, 1, 20),
    (600, 50, 5),
)
#: float32 runs the density and estimator groups at the shapes where a size threshold is
#: crossed (the fusion fault broke float32 too), not at every shape.
CI_FLOAT32_SHAPES = (
    (1, 2, 1),
    (1639, 10, 3),
    (547, 30, 2),
    (4370, 10, 3),
    (2001, 5, 2),
    (20000, 10, 3),
)
#: Groups beyond density and estimator run at these (shape, dtype) pairs only in the suite
#: (each group compiles programs of its own per shape, type and dtype).
CI_GROUP_SHAPES = {
    "fit": (
        ((3, 2, 3), "float64"),
        ((2000, 5, 2), "float64"),
        ((2001, 5, 2), "float64"),
        ((20000, 10, 3), "float64"),
        ((20000, 10, 3), "float32"),
    ),
    "select": (((1639, 10, 3), "float64"),),
    "posterior": (((1639, 10, 3), "float64"), ((1639, 10, 3), "float32")),
    "model": (((1639, 10, 3), "float64"), ((547, 30, 2), "float32")),
    "sample": (((3, 2, 3), "float64"), ((600, 50, 5), "float32")),
}
#: Eagerly (``jax.disable_jit``): the same code path op by op, on small data.
CI_EAGER_SHAPES = ((1, 2, 1), (300, 3, 4))


@dataclass
class Case:
    n: int
    d: int
    k: int
    covariance_type: str
    dtype: str
    mode: str = "jit"  # or "eager"

    @property
    def label(self):
        return f"{self.covariance_type}/{self.dtype}/{self.mode} n={self.n} d={self.d} K={self.k}"


def plan(subset, types=TYPES, dtypes=DTYPES, groups=GROUPS):
    """``(case, groups)`` pairs of the full matrix or of the suite's subset (``'ci'``)."""
    if subset == "ci":
        return [(case, tuple(g for g in gs if g in groups)) for case, gs in ci_plan(types, dtypes)]
    shapes = full_shapes()
    out = [Case(*s, t, dt) for s in shapes for t in types for dt in dtypes]
    eager = [s for s in shapes if s[0] * s[2] <= 2_000]
    out += [Case(*s, t, dt, "eager") for s in eager for t in types for dt in dtypes]
    return [(case, groups_for(case, groups)) for case in out]


def ci_plan(types=TYPES, dtypes=DTYPES):
    """The suite's subset as ``(case, groups)`` pairs."""
    plan = []
    for shape, t, dt in itertools.product(CI_SHAPES, types, dtypes):
        extra = [g for g, pairs in CI_GROUP_SHAPES.items() if (shape, dt) in pairs]
        if dt == "float64" or shape in CI_FLOAT32_SHAPES or extra:
            groups = (
                ["density", "estimator"] if dt == "float64" or shape in CI_FLOAT32_SHAPES else []
            )
            plan.append((Case(*shape, t, dt), tuple(groups + extra)))
    for shape, t, dt in itertools.product(CI_EAGER_SHAPES, types, dtypes):
        plan.append((Case(*shape, t, dt, "eager"), ("density", "estimator")))
    return plan


# --------------------------------------------------------------------------------------------
# Checks: each returns {function name: (error, tolerance)}
# --------------------------------------------------------------------------------------------


def _setup(case, seed=0):
    rng = np.random.default_rng([seed, case.n, case.d, case.k, TYPES.index(case.covariance_type)])
    w, m, c = random_params(rng, case.covariance_type, case.k, case.d)
    full = full_matrices(case.covariance_type, c, case.k, case.d)
    X = sample_data(rng, w, m, full, case.n)
    return rng, (w, m, c), full, X


def check_density(case):
    import jax

    from bayesgmm import GMMParams, density

    _, (w, m, c), full, X = _setup(case)
    dt = np.dtype(case.dtype)
    p = GMMParams(w.astype(dt), m.astype(dt), c.astype(dt), case.covariance_type)
    Xd = X.astype(dt)
    ref = ref_density(Xd, w, m, full)
    tol = TOL[case.dtype]
    out = {
        "component_log_prob": (rel_err(density.component_log_prob(Xd, p), ref["component"]), tol),
        "log_prob": (rel_err(density.log_prob(Xd, p), ref["log_prob"]), tol),
        "log_responsibilities": (
            rel_err(density.log_responsibilities(Xd, p), ref["log_resp"]),
            tol,
        ),
        "predict_proba": (abs_err(density.predict_proba(Xd, p), np.exp(ref["log_resp"])), tol),
        "predict": (label_err(density.predict(Xd, p), ref["log_resp"], 10 * tol), 0.0),
    }
    # Batched parameters take lax.map over the batch: a different program.
    pb = jax.tree_util.tree_map(lambda a: np.stack([a, a]), p)
    out["log_prob[batched]"] = (
        rel_err(density.log_prob(Xd, pb), np.stack([ref["log_prob"]] * 2)),
        tol,
    )
    return out


def check_estimator(case):
    from bayesgmm import GaussianMixture

    rng, (w, m, c), full, X = _setup(case)
    dt = np.dtype(case.dtype)
    Xd = X.astype(dt)
    # max_iter=0 keeps the given parameters; fit only validates, and needs n >= max(2, K).
    Xfit = np.concatenate([X, sample_data(rng, w, m, full, max(2, case.k))]).astype(dt)
    tol = TOL[case.dtype]
    sk = sklearn_model(case.covariance_type, w, m, c)
    gm = GaussianMixture(
        case.k,
        covariance_type=case.covariance_type,
        weights_init=w,
        means_init=m,
        precisions_init=_precisions(case.covariance_type, c),
        max_iter=0,
        reg_covar=0.0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(Xfit)
    ref = ref_density(Xd, w, m, full)
    n = case.n
    return {
        "GM.score_samples": (rel_err(gm.score_samples(Xd), ref["log_prob"]), tol),
        "GM.score": (rel_err(gm.score(Xd), ref["log_prob"].mean()), tol),
        "GM.predict_proba": (abs_err(gm.predict_proba(Xd), np.exp(ref["log_resp"])), tol),
        "GM.predict": (label_err(gm.predict(Xd), ref["log_resp"], 10 * tol), 0.0),
        # BIC/AIC are sums over n rows: relative to n (a per-row log density error of tol).
        "GM.bic": (rel_err(gm.bic(Xd) / n, sk.bic(X.astype(np.float64)) / n), tol),
        "GM.aic": (rel_err(gm.aic(Xd) / n, sk.aic(X.astype(np.float64)) / n), tol),
    }


def _precisions(covariance_type, cov):
    """Compact precisions (what ``precisions_init`` takes) of compact covariances."""
    return np.linalg.inv(cov) if covariance_type in ("full", "tied") else 1.0 / cov


def check_fit(case, max_iter=3):
    """Fitted attributes after ``max_iter`` iterations from the same start as scikit-learn.

    The reference is scikit-learn in float64 for both dtypes (its float32 path mixes in
    float64 through the float64 initial values, so it is not a float32 reference either).
    float32 is compared only on well-posed problems: every component of the reference fit
    carries at least 2 (d + 1) points and its covariances have condition number <= 1e4. An
    almost empty component is not determined in float32 (scikit-learn's ``10 eps`` added to
    its count is 1.2e-6 there), and a precision's rounding grows with the condition number;
    float64 is compared at every case.
    """
    from sklearn.mixture import GaussianMixture as SkGM

    from bayesgmm import GaussianMixture

    if case.n < max(2, case.k):
        return {}
    rng, (w, m, c), full, X = _setup(case)
    # A deliberately imperfect start: the truth perturbed, so the iterations move.
    m0 = m + 0.3 * rng.standard_normal(m.shape)
    w0 = rng.dirichlet(np.full(case.k, 5.0))
    prec0 = _precisions(case.covariance_type, c * 1.3)
    kw = dict(
        covariance_type=case.covariance_type,
        weights_init=w0,
        means_init=m0,
        precisions_init=prec0,
        max_iter=max_iter,
        tol=0.0,
        reg_covar=1e-6,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = SkGM(case.k, **kw).fit(X)
        if case.dtype == "float32":
            counts = case.n * ref.weights_
            covs = full_matrices(case.covariance_type, ref.covariances_, case.k, case.d)
            if counts.min() < 2 * (case.d + 1) or np.linalg.cond(covs).max() > 1e4:
                return {}
        ours = GaussianMixture(case.k, **kw).fit(X.astype(case.dtype))
    tol = FIT_TOL[case.dtype]

    def err(a, b):
        a = np.asarray(a, np.float64)
        b = np.asarray(b, np.float64)
        if a.shape != b.shape or not np.all(np.isfinite(a)):
            return math.inf
        return float(np.max(np.abs(a - b)) / max(1e-300, np.max(np.abs(b))))

    names = ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_")

    def errors(want):
        got = {f"fit.{a}": (err(getattr(ours, a), want[a]), tol) for a in names}
        got["fit.lower_bound_"] = (rel_err(ours.lower_bound_, want["lower_bound_"]), tol)
        return got

    sk = {a: getattr(ref, a) for a in (*names, "lower_bound_")}
    out = errors(sk)
    if failures(out):
        # scikit-learn rounds too: its diag/spherical covariances are E[x^2] - mu^2, which
        # cancels when a component collapses onto one point (variance = reg_covar). Where the
        # two disagree beyond the tolerance, an extended-precision transcription decides:
        # bayesgmm is checked against it, and scikit-learn's own distance from it is
        # recorded beside (tolerance inf: information, not a check).
        exact = longdouble_em(X, case.covariance_type, w0, m0, prec0, 1e-6, max_iter)
        out = errors(exact)
        for a in (*names, "lower_bound_"):
            theirs = err(sk[a], np.asarray(exact[a], np.float64))
            out[f"fit.{a} (scikit-learn vs longdouble)"] = (theirs, math.inf)
    out["fit.n_iter_"] = (float(ours.n_iter_ != ref.n_iter_), 0.0)
    return out


def check_select(case):
    from bayesgmm import select

    if case.n < max(2, case.k + 1) or (
        case.covariance_type in ("full", "tied") and case.n <= case.d
    ):
        return {}
    _, _, _, X = _setup(case)
    dt = np.dtype(case.dtype)
    Xd = X.astype(dt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # One fit per grid point: this checks the table's numbers, not the search.
            table, _ = select(
                Xd,
                n_components=[case.k],
                covariance_types=[case.covariance_type],
                strategy="fast",
                max_iter=5,
            )
        except ValueError as exc:  # every fit collapsed: nothing to compare
            if "collapsed or failed" in str(exc):
                return {}
            raise
    row = table[0]
    model = table.models[(case.k, case.covariance_type)]
    if model is None:
        return {}
    sk = sklearn_model(case.covariance_type, model.weights_, model.means_, model.covariances_)
    X64 = Xd.astype(np.float64)
    n = case.n
    tol = TOL[case.dtype]
    return {
        "select.log_likelihood": (rel_err(row["log_likelihood"] / n, sk.score(X64)), tol),
        "select.bic": (rel_err(row["bic"] / n, sk.bic(X64) / n), tol),
        "select.aic": (rel_err(row["aic"] / n, sk.aic(X64) / n), tol),
    }


def check_posterior(case):
    import jax

    from bayesgmm import GMMParams, Prior
    from bayesgmm.posterior import Posterior

    rng, (w, m, c), full, X = _setup(case)
    dt = np.dtype(case.dtype)
    draws_np = [random_params(rng, case.covariance_type, case.k, case.d) for _ in range(4)]
    # Draws near one another (the first is the truth), so relabeling keeps their order.
    draws_np[0] = (w, m, c)
    stacked = [
        np.stack([d[i] for d in draws_np]).reshape((2, 2) + draws_np[0][i].shape) for i in range(3)
    ]
    draws = GMMParams(*(a.astype(dt) for a in stacked), case.covariance_type)
    pivot = jax.tree_util.tree_map(lambda a: a[0, 0], draws)
    # The prior plays no part in these two functions; any valid one will do.
    d = case.d
    scale = {"full": np.eye(d), "tied": np.eye(d), "diag": np.ones(d), "spherical": np.array(1.0)}
    prior = Prior(
        np.ones(case.k),
        np.zeros(d),
        0.01,
        d + 2.0,
        scale[case.covariance_type],
        case.covariance_type,
    )
    post = Posterior(draws, X=X.astype(dt), prior=prior, map_params=pivot, relabeled=True)
    Xd = X.astype(dt)
    refs = [
        ref_density(
            Xd,
            *(np.asarray(a, np.float64) for a in (dw, dm)),
            full_matrices(case.covariance_type, np.asarray(dc, np.float64), case.k, case.d),
        )
        for dw, dm, dc in draws_np
    ]
    proba = np.mean([np.exp(r["log_resp"]) for r in refs], axis=0)
    lp = np.stack([r["log_prob"] for r in refs])
    score = logsumexp(lp, axis=0) - np.log(len(refs))
    tol = TOL[case.dtype]
    return {
        "Posterior.predict_proba": (abs_err(post.predict_proba(Xd), proba), tol),
        "Posterior.score_samples": (rel_err(post.score_samples(Xd), score), tol),
    }


def check_model(case):
    import jax
    import jax.numpy as jnp
    from numpyro.infer.util import log_density

    from bayesgmm import Prior, gmm_model

    if case.n <= case.d + 1:
        return {}
    _, (w, m, c), full, X = _setup(case)
    dt = np.dtype(case.dtype)
    Xd = X.astype(dt)
    prior = Prior.default(Xd, case.k, case.covariance_type)
    values = {"weights": w.astype(dt), "means": m.astype(dt), "covariances": c.astype(dt)}
    kwargs = {"n_components": case.k, "covariance_type": case.covariance_type, "prior": prior}

    def joint(X, values):
        return log_density(gmm_model, (X,), kwargs, values)[0]

    fn = jax.jit(joint) if case.mode == "jit" else joint
    got = float(fn(jnp.asarray(Xd), values))
    want = float(np.sum(ref_density(Xd, w, m, full)["log_prob"])) + ref_log_prior(
        w, m, c, prior, case.covariance_type
    )
    # A sum over n rows: relative to n, as the BIC.
    return {"gmm_model log density": (rel_err(got / case.n, want / case.n), TOL[case.dtype])}


def check_sample(case, n_draws=20_000):
    import jax

    from bayesgmm import GMMParams, density

    _, (w, m, c), full, _ = _setup(case)
    dt = np.dtype(case.dtype)
    p = GMMParams(w.astype(dt), m.astype(dt), c.astype(dt), case.covariance_type)
    x, labels = density.sample(jax.random.key(case.n), p, n_draws)
    x = np.asarray(x, np.float64)
    mean = w @ m
    second = np.einsum("k,kij->ij", w, full + np.einsum("ki,kj->kij", m, m))
    cov = second - np.outer(mean, mean)
    # Standard errors of the sample mean and of each covariance entry (Gaussian fourth moments
    # bound: var(x_i x_j) <= (c_ii c_jj + c_ij^2) for the mixture's overall covariance, inflated
    # by the between-component spread, which the mixture's own second moment covers).
    se_mean = np.sqrt(np.diag(cov) / n_draws)
    var_ij = np.outer(np.diag(second), np.diag(second)) + second**2
    se_cov = np.sqrt(var_ij / n_draws)
    err_mean = float(np.max(np.abs(x.mean(0) - mean) / se_mean))
    err_cov = float(np.max(np.abs(np.cov(x, rowvar=False).reshape(cov.shape) - cov) / se_cov))
    counts = np.bincount(np.asarray(labels), minlength=case.k) / n_draws
    err_w = float(np.max(np.abs(counts - w) / np.sqrt(w * (1 - w) / n_draws + 1e-300)))
    return {
        "sample mean (SE)": (err_mean, 6.0),
        "sample cov (SE)": (err_cov, 6.0),
        "sample labels (SE)": (err_w, 6.0),
    }


CHECKS = {
    "density": check_density,
    "estimator": check_estimator,
    "fit": check_fit,
    "select": check_select,
    "posterior": check_posterior,
    "model": check_model,
    "sample": check_sample,
}


def _switch_rows(d, k):
    """Row counts just past EM's program switches (kernels, optimisation level, 2**14)."""
    from bayesgmm._compile import SMALL_WORK

    return {k, SMALL_WORK // (k * d * d) + 1, 2**14 // d + 1}


def groups_for(case, groups):
    """Which groups run at a case: the fit, select and sample groups are costlier, so they run
    at the jitted cases only (eager runs the same code op by op), fits where scikit-learn is
    quick, sampling at a few shapes (its program depends on n_draws, not on n)."""
    out = []
    for g in groups:
        if g in ("fit", "select") and (case.mode == "eager" or case.n * case.k * case.d**2 > 2e7):
            continue
        # A selection fits k-means and EM: at the rows where EM's programs switch only.
        if g == "select" and case.n not in _switch_rows(case.d, case.k):
            continue
        if g == "sample" and (case.mode == "eager" or case.n not in (1, case.k)):
            continue
        if g in ("posterior", "model") and (case.mode == "eager" or case.n * case.k * case.d > 2e6):
            continue
        out.append(g)
    return out


def run_case(case, groups):
    """The checks of ``groups`` at one case: ``{function: (error, tolerance)}``."""
    import jax

    results = {}
    for g in groups:
        try:
            if case.mode == "eager":
                with jax.disable_jit():
                    results.update(CHECKS[g](case))
            else:
                results.update(CHECKS[g](case))
        except Exception as exc:  # a crash is a failure of the group, reported with its cause
            results[f"{g} raised {type(exc).__name__}: {str(exc)[:200]}"] = (math.inf, 0.0)
    return results


def failures(results):
    return {k: v for k, v in results.items() if not v[0] <= v[1]}


def _read_results(path) -> dict:
    """``{label: record}`` of a --results file (missing file: empty)."""
    out = {}
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                if line.strip():
                    record = json.loads(line)
                    out[record["label"]] = record
    return out


def _add_worst(worst, results, record):
    for name, (err, tol) in results.items():
        key = (name, record["covariance_type"], record["dtype"])
        if key not in worst or err > worst[key][0]:
            worst[key] = (err, tol, record["label"])


def main(argv=None):
    from bayesgmm._compile import release_compiled_programs

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subset", choices=("full", "ci"), default="full")
    parser.add_argument("--types", default=",".join(TYPES))
    parser.add_argument("--dtypes", default=",".join(DTYPES))
    parser.add_argument("--groups", default=",".join(GROUPS))
    parser.add_argument("--modes", default="jit,eager")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument(
        "--results",
        help="append every case's errors to this JSON-lines file as it finishes, and skip the "
        "cases already in it (a long run can stop and resume, in several processes or sessions)",
    )
    parser.add_argument(
        "--shard",
        default="0/1",
        metavar="I/N",
        help="run only every N-th case starting at the I-th (0-based), to split a run over "
        "N processes; merge their --results files by label",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="print the table from --results alone (every finished case), running nothing",
    )
    args = parser.parse_args(argv)

    import bayesgmm  # noqa: F401  (float64)

    types = tuple(args.types.split(","))
    dtypes = tuple(args.dtypes.split(","))
    groups = tuple(args.groups.split(","))
    modes = set(args.modes.split(","))
    todo = [(c, g) for c, g in plan(args.subset, types, dtypes, groups) if c.mode in modes]
    shard, n_shards = (int(v) for v in args.shard.split("/"))
    todo = todo[shard::n_shards]
    done = _read_results(args.results) if args.results else {}
    if args.report:
        todo = []
    worst: dict = {}
    n_fail = 0
    n_checks = 0
    elapsed = 0.0
    for record in done.values():
        if record["covariance_type"] in types and record["dtype"] in dtypes:
            n_checks += len(record["results"])
            n_fail += len(failures(record["results"]))
            elapsed += record["seconds"]
            _add_worst(worst, record["results"], record)
    todo = [(c, g) for c, g in todo if c.label not in done]
    if done:
        print(f"{len(done)} cases already in {args.results}; {len(todo)} to run", flush=True)
    for i, (case, case_groups) in enumerate(todo):
        t0 = time.perf_counter()
        results = run_case(case, case_groups)
        # The full matrix compiles thousands of programs in one process: without this it
        # reached vm.max_map_count and died ("LLVM compilation error: Cannot allocate memory").
        release_compiled_programs()
        seconds = time.perf_counter() - t0
        elapsed += seconds
        n_checks += len(results)
        bad = failures(results)
        n_fail += len(bad)
        record = {
            "label": case.label,
            "covariance_type": case.covariance_type,
            "dtype": case.dtype,
            "seconds": round(seconds, 2),
            "results": {k: [float(e), float(t)] for k, (e, t) in results.items()},
        }
        _add_worst(worst, results, record)
        if args.results:
            with open(args.results, "a") as f:
                f.write(json.dumps(record) + "\n")
        if bad or args.verbose:
            print(
                f"[{i + 1}/{len(todo)}] {case.label} ({seconds:.1f} s)"
                + "".join(f"\n    FAIL {k}: {e:.3g} > {t:g}" for k, (e, t) in bad.items()),
                flush=True,
            )
    n_cases = len({c.label for c, _ in plan(args.subset, types, dtypes, groups) if c.mode in modes})
    n_done = n_cases if not args.results else len(set(_read_results(args.results)))
    print(
        f"\n{n_done} of {n_cases} cases, {n_checks} checks, {n_fail} failures, "
        f"{elapsed:.0f} s of checks\n"
    )
    names = sorted(
        {k[0] for k in worst}, key=lambda s: list(worst).index(next(k for k in worst if k[0] == s))
    )
    header = "| function | " + " | ".join(f"{t} {dt}" for t in types for dt in dtypes) + " |"
    print(header)
    print("|" + "---|" * (1 + len(types) * len(dtypes)))
    for name in names:
        cells = []
        for t in types:
            for dt in dtypes:
                v = worst.get((name, t, dt))
                cells.append("" if v is None else f"{v[0]:.1e}" + ("" if v[0] <= v[1] else " FAIL"))
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
