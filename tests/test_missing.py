"""Missing values (NaN, missing at random) through EM, the density utilities and imputation.

The reference is a plain NumPy transcription of Ghahramani and Jordan's (1994) EM updates,
written from the formulas (pattern by pattern with ``np.linalg``; ``scipy.stats`` for the
marginal densities), iteration for iteration. Tolerances: float64 rounding of sums in another
order, amplified over a few EM iterations (observed ~1e-15; 1e-10 fails only on a different
update).
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import _suite
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from bayesgmm import GaussianMixture, GMMParams, Prior
from bayesgmm.marginal import component_log_prob_missing

TYPES = ("full", "tied", "diag", "spherical")
LOG_2PI = np.log(2 * np.pi)


def reference_em(X, w, m, S, covariance_type, reg, n_iter, prior=None):
    """Ghahramani-Jordan EM transcribed: per missingness pattern, per component.

    ``S`` full covariance matrices (K, d, d). Returns weights, means, full covariances and
    the objective (mean observed-data log-likelihood, plus log prior / n under ``prior``,
    computed by the caller) at each iteration's start.
    """
    n, d = X.shape
    K = len(w)
    obs = ~np.isnan(X)
    patterns = np.unique(obs, axis=0)
    lls = []
    for _ in range(n_iter):
        logp = np.zeros((n, K))
        xhat = np.zeros((n, K, d))
        ccov = np.zeros((n, K, d, d))
        for pat in patterns:
            rows = np.flatnonzero((obs == pat).all(axis=1))
            o, mi = pat, ~pat
            xo = X[np.ix_(rows, np.flatnonzero(o))]
            for k in range(K):
                logp[rows, k] = np.log(w[k])
                if o.any():
                    Soo = S[k][np.ix_(o, o)]
                    logp[rows, k] += multivariate_normal(m[k][o], Soo).logpdf(xo).reshape(-1)
                full = np.where(obs[rows], X[rows], 0.0)
                if mi.any():
                    if o.any():
                        B = S[k][np.ix_(mi, o)] @ np.linalg.inv(Soo)
                        full[:, mi] = m[k][mi] + (xo - m[k][o]) @ B.T
                        cond = S[k][np.ix_(mi, mi)] - B @ S[k][np.ix_(o, mi)]
                    else:
                        full[:, mi] = m[k][mi]
                        cond = S[k]
                    block = np.zeros((d, d))
                    block[np.ix_(mi, mi)] = cond
                    ccov[rows, k] = block
                xhat[rows, k] = full
        top = logp.max(axis=1, keepdims=True)
        lse = top[:, 0] + np.log(np.exp(logp - top).sum(axis=1))
        lls.append(lse.sum() / n)
        R = np.exp(logp - lse[:, None])
        nk = R.sum(axis=0) + 10 * np.finfo(float).eps
        sx = np.einsum("nk,nkd->kd", R, xhat)
        m_ml = sx / nk[:, None]
        Sk = np.zeros((K, d, d))
        for k in range(K):
            dev = xhat[:, k] - m_ml[k]
            Sk[k] = np.einsum("n,nij->ij", R[:, k], dev[:, :, None] * dev[:, None, :] + ccov[:, k])
        eye = np.eye(d)
        if prior is None:
            m = m_ml
            if covariance_type == "full":
                S = Sk / nk[:, None, None] + reg * eye
            elif covariance_type == "tied":
                S = np.broadcast_to(Sk.sum(0) / nk.sum() + reg * eye, (K, d, d)).copy()
            elif covariance_type == "diag":
                S = np.stack([np.diag(np.diag(Sk[k]) / nk[k] + reg) for k in range(K)])
            else:
                S = np.stack([eye * (np.trace(Sk[k]) / (nk[k] * d) + reg) for k in range(K)])
            w = nk / nk.sum()
        else:  # mclust's conjugate MAP updates (Fraley and Raftery 2007, table 2)
            kappa, mu0, nu, scale = prior.mean_precision, prior.mean, prior.dof, prior.scale
            m = (sx + kappa * mu0) / (nk + kappa)[:, None]
            delta = m_ml - mu0
            shrink = kappa * nk / (kappa + nk)
            outer = shrink[:, None, None] * delta[:, :, None] * delta[:, None, :]
            if covariance_type == "full":
                S = (scale + Sk + outer) / (nu + nk + d + 2)[:, None, None] + reg * eye
            elif covariance_type == "tied":
                tied = (scale + Sk.sum(0) + outer.sum(0)) / (nu + nk.sum() + d + 1 + K)
                S = np.broadcast_to(tied + reg * eye, (K, d, d)).copy()
            elif covariance_type == "diag":
                var = scale + np.diagonal(Sk, axis1=1, axis2=2) + shrink[:, None] * delta**2
                S = np.stack([np.diag(v) for v in var / (nu + nk + 3)[:, None] + reg])
            else:
                tr = np.trace(Sk, axis1=1, axis2=2) + shrink * np.sum(delta**2, axis=1)
                v = (scale + tr) / (nu + (nk + 1) * d + 2) + reg
                S = v[:, None, None] * eye
            alpha = prior.weight_concentration
            w = (nk + alpha - 1) / (nk + alpha - 1).sum()
    return w, m, S, np.array(lls)


def _data(n=120, d=3, frac=0.25, seed=0):
    rng = np.random.default_rng(seed)
    cov = [[1, 0.5, 0.2], [0.5, 1, 0.3], [0.2, 0.3, 1]]
    half = n // 2
    X = np.concatenate(
        [rng.multivariate_normal(np.zeros(d), cov, half), rng.normal(3, 1, (n - half, d))]
    )
    Xm = X.copy()
    Xm[rng.random(X.shape) < frac] = np.nan
    Xm[5] = np.nan  # a row with nothing observed
    Xm[7, :] = X[7, :]  # and one complete
    return X, Xm


def _csv_with_holes(X, path):
    """``X`` written as CSV with a header, missing values as empty fields; returns ``path``."""
    with open(path, "w") as f:
        f.write(",".join("abcdefghij"[: X.shape[1]]) + "\n")
        for row in X:
            f.write(",".join("" if np.isnan(v) else repr(float(v)) for v in row) + "\n")
    return path


def _run_cli(*args):
    """``(exit status, stdout + stderr)`` of ``python -m bayesgmm ARGS`` in a subprocess."""
    proc = subprocess.run([sys.executable, "-m", "bayesgmm", *args], capture_output=True, text=True)
    return proc.returncode, proc.stdout + proc.stderr


def _start(covariance_type, d=3):
    cov = {
        "full": np.stack([np.eye(d)] * 2),
        "tied": np.eye(d),
        "diag": np.ones((2, d)),
        "spherical": np.ones(2),
    }[covariance_type]
    return np.array([0.45, 0.55]), np.array([[0.5, 0, 0], [2.5, 3, 3]]), cov


def _fit(Xm, covariance_type, n_iter, prior=None, reg=1e-6):
    w0, m0, c0 = _start(covariance_type)
    prec0 = GMMParams(w0, m0, c0, covariance_type).precisions()
    gm = GaussianMixture(
        2,
        covariance_type=covariance_type,
        missing="marginalize",
        weights_init=w0,
        means_init=m0,
        precisions_init=np.asarray(prec0),
        max_iter=n_iter,
        tol=0.0,
        reg_covar=reg,
        prior=prior,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged after n_iter, on purpose
        return gm.fit(Xm)


# n = 120 is one row block; 9001 rows (block 4096 at K = 2, d = 3) are three with a padded one.
@pytest.mark.parametrize("n", [120, 9001])
@pytest.mark.parametrize("covariance_type", TYPES)
def test_em_with_missing_values_is_the_textbook_iteration(covariance_type, n):
    _, Xm = _data(n)
    gm = _fit(Xm, covariance_type, 4)
    w0, m0, c0 = _start(covariance_type)
    S0 = np.asarray(GMMParams(w0, m0, c0, covariance_type).covariance_matrices())
    w, m, S, lls = reference_em(Xm, w0, m0, S0, covariance_type, 1e-6, 4)
    np.testing.assert_allclose(gm.weights_, w, rtol=1e-10)
    np.testing.assert_allclose(gm.means_, m, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(gm.params_.covariance_matrices()), S, rtol=1e-10)
    np.testing.assert_allclose(gm.lower_bounds_, lls, rtol=1e-10)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_map_em_with_missing_values_is_the_textbook_iteration(covariance_type):
    _, Xm = _data()
    prior = Prior.default(np.where(np.isnan(Xm), 0, Xm), 2, covariance_type)
    gm = _fit(Xm, covariance_type, 4, prior=prior, reg=0.0)
    w0, m0, c0 = _start(covariance_type)
    S0 = np.asarray(GMMParams(w0, m0, c0, covariance_type).covariance_matrices())
    plain = type("P", (), {f: np.asarray(getattr(prior, f)) for f in prior._fields})
    w, m, S, _ = reference_em(Xm, w0, m0, S0, covariance_type, 0.0, 4, prior=plain)
    np.testing.assert_allclose(gm.weights_, w, rtol=1e-10)
    np.testing.assert_allclose(gm.means_, m, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(gm.params_.covariance_matrices()), S, rtol=1e-10)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_objective_never_decreases(covariance_type):
    _, Xm = _data(400, frac=0.35, seed=1)
    gm = GaussianMixture(
        2,
        covariance_type=covariance_type,
        missing="marginalize",
        tol=0.0,
        max_iter=40,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(Xm)
    steps = np.diff(gm.lower_bounds_)
    # EM's ascent property, up to float64 rounding of a mean log-likelihood (~1e-15 |L|).
    assert np.all(steps >= -1e-12 * np.abs(gm.lower_bounds_[1:])), steps.min()


@pytest.mark.parametrize("covariance_type", TYPES)
def test_complete_data_is_the_complete_data_fit_bit_for_bit(covariance_type):
    X, _ = _data(300)
    a = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
    b = GaussianMixture(
        2, covariance_type=covariance_type, random_state=0, missing="marginalize"
    ).fit(X)
    assert np.array_equal(a.means_, b.means_) and np.array_equal(a.covariances_, b.covariances_)
    assert a.lower_bound_ == b.lower_bound_
    assert np.array_equal(a.score_samples(X), b.score_samples(X))


def test_recovers_parameters_from_mcar_data_where_mean_imputation_is_biased():
    # 30% of values missing completely at random from two well-separated correlated
    # Gaussians, n = 6000: the standard error of a covariance entry is ~sqrt(2/3000) ~ 0.03
    # (inflated ~1.5x by the missingness), so 0.1 is three of them; mean imputation shrinks
    # the correlations (and inflates the pooled variances) by far more.
    rng = np.random.default_rng(2)
    cov = np.array([[1.0, 0.8, 0.5], [0.8, 1.0, 0.6], [0.5, 0.6, 1.0]])
    X = np.concatenate(
        [
            rng.multivariate_normal([0, 0, 0], cov, 3000),
            rng.multivariate_normal([6, 6, 6], cov, 3000),
        ]
    )
    Xm = X.copy()
    Xm[rng.random(X.shape) < 0.3] = np.nan
    gm = GaussianMixture(2, missing="marginalize", random_state=0).fit(Xm)
    order = np.argsort(gm.means_[:, 0])
    np.testing.assert_allclose(gm.means_[order], [[0] * 3, [6] * 3], atol=0.1)
    np.testing.assert_allclose(gm.covariances_[order], [cov, cov], atol=0.1)
    imputed = np.where(np.isnan(Xm), np.nanmean(Xm, axis=0), Xm)
    mi = GaussianMixture(2, random_state=0).fit(imputed)
    assert np.abs(mi.covariances_ - cov).max() > 0.3  # the bias the marginalisation removes


@pytest.mark.parametrize("covariance_type", TYPES)
def test_marginal_densities_against_scipy(covariance_type):
    # Rows with NaN: log N(x_o | mu_o, Sigma_oo) per component from scipy; the mixture log
    # density and responsibilities follow. Complete rows equal the ordinary density.
    _, Xm = _data(200, seed=3)
    gm = _fit(Xm, covariance_type, 3)
    S = np.asarray(gm.params_.covariance_matrices())
    want = np.zeros((len(Xm), 2))
    for i, x in enumerate(Xm):
        o = ~np.isnan(x)
        for k in range(2):
            if o.any():
                want[i, k] = multivariate_normal(gm.means_[k][o], S[k][np.ix_(o, o)]).logpdf(x[o])
    got = component_log_prob_missing(Xm, gm.params_)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    wlp = want + np.log(gm.weights_)
    lse = np.logaddexp(wlp[:, 0], wlp[:, 1])
    np.testing.assert_allclose(gm.score_samples(Xm), lse, rtol=1e-12)
    np.testing.assert_allclose(gm.predict_proba(Xm), np.exp(wlp - lse[:, None]), atol=1e-12)
    np.testing.assert_array_equal(gm.predict(Xm), np.argmax(wlp, axis=1))
    # The row with nothing observed: no information, responsibilities are the weights.
    np.testing.assert_allclose(gm.predict_proba(Xm[5:6])[0], gm.weights_, rtol=1e-12)
    # log of the weights' sum: 0 up to rounding.
    assert abs(gm.score_samples(Xm[5:6])[0]) < 1e-12
    # BIC and AIC are those of the observed-data log-likelihood.
    n = len(Xm)
    p = gm._n_parameters()
    np.testing.assert_allclose(gm.bic(Xm), -2 * lse.sum() + p * np.log(n), rtol=1e-12)


def test_impute_is_the_conditional_expectation():
    # One component: E[x_m | x_o] = mu_m + S_mo S_oo^-1 (x_o - mu_o), in closed form.
    rng = np.random.default_rng(4)
    cov = np.array([[1.0, 0.9, 0.3], [0.9, 1.0, 0.4], [0.3, 0.4, 1.0]])
    X = rng.multivariate_normal([1, 2, 3], cov, 500)
    gm = GaussianMixture(1, missing="marginalize").fit(X)
    m, S = gm.means_[0], gm.covariances_[0]
    rows = np.array([[0.5, np.nan, np.nan], [np.nan, 2.5, 2.0], [np.nan] * 3, [1.0, 2.0, 3.0]])
    got = gm.impute(rows)
    want = rows.copy()
    for i, x in enumerate(rows):
        o, mi = ~np.isnan(x), np.isnan(x)
        if mi.all():
            want[i] = m
        elif mi.any():
            want[i, mi] = m[mi] + S[np.ix_(mi, o)] @ np.linalg.solve(S[np.ix_(o, o)], x[o] - m[o])
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_multiple_imputations_have_the_conditional_moments():
    # 20000 draws of row [0.5, nan, nan] under one component: their mean and covariance are
    # the conditional ones within Monte-Carlo error (SE of a mean ~ sd / 141; 5 SE = 0.035 sd;
    # of a covariance entry ~ sqrt(2/20000) sd^2 ~ 0.01; 0.05 allowed).
    rng = np.random.default_rng(5)
    cov = np.array([[1.0, 0.9, 0.3], [0.9, 1.0, 0.4], [0.3, 0.4, 1.0]])
    gm = GaussianMixture(1, missing="marginalize").fit(rng.multivariate_normal([0, 0, 0], cov, 800))
    m, S = gm.means_[0], gm.covariances_[0]
    row = np.array([[0.5, np.nan, np.nan]])
    draws = gm.sample_missing(row, 20000, random_state=0)[:, 0]
    assert draws.shape == (20000, 3) and np.all(draws[:, 0] == 0.5)
    B = S[1:, :1] / S[0, 0]
    mean = m[1:] + B[:, 0] * (0.5 - m[0])
    cond = S[1:, 1:] - B @ S[:1, 1:]
    sd = np.sqrt(np.diag(cond))
    assert np.all(np.abs(draws[:, 1:].mean(0) - mean) < 0.035 * sd)
    np.testing.assert_allclose(np.cov(draws[:, 1:], rowvar=False), cond, atol=0.05)


def test_weights_with_missing_values_are_repeated_rows():
    _, Xm = _data(150, seed=6)
    w = np.random.default_rng(6).integers(0, 3, len(Xm)).astype(float)
    w[5] = 1  # keep the empty row
    Xr = np.repeat(Xm, w.astype(int), axis=0)
    w0, m0, c0 = _start("full")
    kw = dict(
        missing="marginalize",
        weights_init=w0,
        means_init=m0,
        tol=0.0,
        max_iter=6,
        precisions_init=np.linalg.inv(c0),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = GaussianMixture(2, **kw).fit(Xm, sample_weight=w)
        b = GaussianMixture(2, **kw).fit(Xr)
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-10)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=1e-10)
    np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_, rtol=1e-10)


def test_float32_with_missing_values_stays_float32():
    # float32 rounding (eps 1.2e-7) over a few iterations on well-conditioned data: 1e-4.
    _, Xm = _data(300, seed=7)
    a = _fit(Xm.astype(np.float32), "full", 5)
    b = _fit(Xm, "full", 5)
    assert a.means_.dtype == np.float32 and a.impute(Xm.astype(np.float32)).dtype == np.float32
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-4, atol=1e-4)


def test_clear_errors_and_saving(tmp_path):
    _, Xm = _data(60)
    with pytest.raises(ValueError, match="missing='marginalize'"):
        GaussianMixture(2).fit(Xm)
    with pytest.raises(ValueError, match="missing must be 'error' or 'marginalize'"):
        GaussianMixture(2, missing="drop").fit(Xm)
    bad = Xm.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        GaussianMixture(2, missing="marginalize").fit(bad)
    import jax

    from bayesgmm.em import fit_em_missing

    with pytest.raises(ValueError, match=r"sample_weight must have shape \(60,\)"):
        fit_em_missing(jax.random.key(0), Xm, 2, sample_weight=np.ones(59))
    gm = GaussianMixture(2, missing="marginalize", random_state=0).fit(Xm)
    with pytest.raises(ValueError, match="NaN"):
        GaussianMixture(2, random_state=0).fit(np.nan_to_num(Xm)).predict(Xm)
    gm.save(tmp_path / "m.bgmm")
    from bayesgmm import load

    back = load(tmp_path / "m.bgmm")
    assert back.missing == "marginalize"
    np.testing.assert_array_equal(back.predict_proba(Xm), gm.predict_proba(Xm))


@pytest.mark.extended
def test_command_line_missing_values(tmp_path):
    _, Xm = _data(200, seed=8)
    data = _csv_with_holes(Xm, tmp_path / "m.csv")

    rc, out = _run_cli("fit", str(data), "-k", "2")
    assert rc == 2 and "--missing marginalize" in out
    model = tmp_path / "m.bgmm"
    rc, out = _run_cli("fit", str(data), "-k", "2", "--missing", "marginalize", "-o", str(model))
    assert rc == 0, out
    gm = GaussianMixture(2, missing="marginalize", random_state=0).fit(Xm)
    rc, out = _run_cli("predict", str(model), str(data), "-o", str(tmp_path / "p.csv"))
    assert rc == 0, out
    proba = np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1)[:, 1:]
    np.testing.assert_allclose(proba, gm.predict_proba(Xm), atol=1e-9)
    rc, out = _run_cli("impute", str(model), str(data), "-o", str(tmp_path / "i.csv"))
    assert rc == 0, out
    filled = np.loadtxt(tmp_path / "i.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(filled, gm.impute(Xm), rtol=1e-9, atol=1e-12)
    rc, out = _run_cli(
        "impute", str(model), str(data), "--draws", "3", "-o", str(tmp_path / "d.csv")
    )
    assert rc == 0, out
    draws = np.loadtxt(tmp_path / "d.csv", delimiter=",", skiprows=1)
    assert draws.shape == (3 * len(Xm), 4) and not np.isnan(draws).any()
    observed = ~np.isnan(Xm)
    for s in range(3):
        np.testing.assert_array_equal(draws[draws[:, 0] == s, 1:][observed], Xm[observed])


@pytest.mark.extended
def test_command_line_posterior_with_missing_values(tmp_path):
    # A posterior fitted with missing values marginalised, then imputations from its draws
    # (extended: NUTS in subprocesses; the default suite covers Posterior.impute in-process).
    _, Xm = _data(200, seed=8)
    observed = ~np.isnan(Xm)
    data = _csv_with_holes(Xm, tmp_path / "m.csv")

    post = tmp_path / "p.nc"
    rc, out = _run_cli(
        "fit",
        str(data),
        "-k",
        "2",
        "--missing",
        "marginalize",
        "--method",
        "nuts",
        "--num-warmup",
        "50",
        "--num-samples",
        "20",
        "--num-chains",
        "1",
        "-o",
        str(post),
    )
    assert rc == 0, out
    rc, out = _run_cli(
        "impute", str(post), str(data), "--draws", "2", "-o", str(tmp_path / "q.csv")
    )
    assert rc == 0, out
    draws = np.loadtxt(tmp_path / "q.csv", delimiter=",", skiprows=1)
    assert draws.shape == (2 * len(Xm), 4) and np.isfinite(draws).all()
    np.testing.assert_array_equal(draws[draws[:, 0] == 1, 1:][observed], Xm[observed])


# --- the NumPyro model: the same likelihood, MAP-EM its mode --------------------------------


def _model_args(Xm):
    from bayesgmm.marginal import missing_patterns

    pat = missing_patterns(Xm)
    return (pat.filled, None, (pat.observed, pat.index, pat.patterns))


@pytest.mark.parametrize("covariance_type", _suite.types("full", "diag"))
def test_model_log_joint_is_n_times_the_map_em_objective(covariance_type):
    # The NumPyro model's log joint with missing values marginalised equals n times the
    # objective MAP-EM records at the same parameters (the missing-data E-step's marginal
    # log-likelihood plus the log prior): one model, both paths, no constant between them.
    import jax
    from numpyro.infer.util import log_density

    from bayesgmm import gmm_model
    from bayesgmm.em import fit_em_missing

    _, Xm = _data(150, seed=9)
    prior = Prior.default(np.where(np.isnan(Xm), 0, Xm), 2, covariance_type)
    p = _fit(Xm, covariance_type, 3).params_
    values = {"weights": p.weights, "means": p.means, "covariances": p.covariances}
    kw = dict(n_components=2, covariance_type=covariance_type, prior=prior)
    # Jitted: op by op the model's log density dispatches hundreds of small programs.
    joint = jax.jit(lambda v: log_density(gmm_model, _model_args(Xm), kw, v)[0])(values)
    res = fit_em_missing(
        jax.random.key(0),
        Xm,
        2,
        covariance_type,
        max_iter=1,
        prior=prior,
        params_init=p,
        reg_covar=0.0,
    )
    np.testing.assert_allclose(float(joint), len(Xm) * float(res.lower_bounds[0, 0]), rtol=1e-10)


@pytest.mark.parametrize("covariance_type", ["full", *_suite.extended("diag")])
def test_map_em_is_the_posterior_mode_with_missing_values(covariance_type):
    import jax
    import jax.flatten_util
    from numpyro import handlers
    from numpyro.distributions import biject_to
    from numpyro.infer.util import log_density

    from bayesgmm import gmm_model
    from bayesgmm.model import SITE_NAMES

    _, Xm = _data(150, seed=10)
    prior = Prior.default(np.where(np.isnan(Xm), 0, Xm), 2, covariance_type)
    gm = GaussianMixture(
        2,
        covariance_type=covariance_type,
        prior=prior,
        reg_covar=0.0,
        tol=1e-14,
        max_iter=5000,
        random_state=0,
        missing="marginalize",
    ).fit(Xm)
    p = gm.params_
    kw = dict(n_components=2, covariance_type=covariance_type, prior=prior)
    args = _model_args(Xm)
    trace = handlers.trace(handlers.seed(gmm_model, 0)).get_trace(**kw)
    transforms = {name: biject_to(trace[name]["fn"].support) for name in SITE_NAMES}
    map_values = dict(zip(SITE_NAMES, (p.weights, p.means, p.covariances)))
    u0 = {name: transforms[name].inv(map_values[name]) for name in SITE_NAMES}
    flat0, unravel = jax.flatten_util.ravel_pytree(u0)

    @jax.jit
    def f(flat):
        u = unravel(flat)
        values = {name: transforms[name](u[name]) for name in SITE_NAMES}
        return log_density(gmm_model, args, kw, values)[0]

    # Stationary, and no small feasible move in any of 200 random directions raises it.
    _suite.assert_local_maximum(f, flat0)


def test_nuts_with_missing_values_and_multiple_imputation():
    # A short NUTS run on data with 20% missing: the chains stay around the MAP-EM start
    # (posterior means within 0.3 of it on clusters 5 apart, their posterior sd ~0.15), the
    # pointwise log-likelihood is the marginal one (finite everywhere), and Posterior.impute
    # draws imputations with the observed values kept.
    from bayesgmm import Posterior, fit_posterior

    rng = np.random.default_rng(11)
    X = np.concatenate(
        [rng.multivariate_normal([0, 0], [[1, 0.8], [0.8, 1]], 60), rng.normal(5, 1, (60, 2))]
    )
    Xm = X.copy()
    Xm[rng.random(X.shape) < 0.2] = np.nan
    post = fit_posterior(
        Xm,
        2,
        num_warmup=150,
        num_samples=100,
        num_chains=2,
        progress_bar=False,
        missing="marginalize",
    )
    rel, _ = post.relabel()
    np.testing.assert_allclose(rel.mean_params().means, post.map_params.means, atol=0.3)
    ll = post.log_likelihood()
    assert ll.shape == (2, 100, 120) and np.isfinite(ll).all()
    imps = post.impute(n_draws=4, seed=1)
    observed = ~np.isnan(Xm)
    assert imps.shape == (4, 120, 2) and np.isfinite(imps).all()
    assert all(np.array_equal(i[observed], Xm[observed]) for i in imps)
    # Different draws (parameters and noise) give different imputations.
    assert not np.allclose(imps[0][~observed], imps[1][~observed])
    back = Posterior.from_inference_data(post.to_inference_data())
    assert back.missing == "marginalize"
    np.testing.assert_allclose(back.predict_proba(Xm), post.predict_proba(Xm), rtol=1e-12)
    with pytest.raises(ValueError, match="missing='marginalize'"):
        fit_posterior(Xm, 2, num_warmup=5, num_samples=5, num_chains=1, progress_bar=False)


def test_command_line_fit_and_impute_with_missing_values(tmp_path):
    # The default suite's command-line check (predict and multiple imputation run in the
    # extended test above): a CSV with empty fields fitted with --missing marginalize, then
    # imputed, equals the library's impute.
    _, Xm = _data(200, seed=8)
    data = _csv_with_holes(Xm, tmp_path / "m.csv")
    model = tmp_path / "m.bgmm"
    script = (
        "import sys; from bayesgmm.cli import main; "
        f"a = main(['fit', {str(data)!r}, '-k', '2', '--missing', 'marginalize', '-o', "
        f"{str(model)!r}]); "
        f"b = main(['impute', {str(model)!r}, {str(data)!r}, '-o', {str(tmp_path / 'i.csv')!r}]); "
        "sys.exit(a or b)"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    gm = GaussianMixture(2, missing="marginalize", random_state=0).fit(Xm)
    filled = np.loadtxt(tmp_path / "i.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(filled, gm.impute(Xm), rtol=1e-9, atol=1e-12)
