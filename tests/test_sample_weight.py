"""Sample weights through every path: EM (ML and MAP), k-means and the initialisations, the
NumPyro model and NUTS, model selection, the criteria and the command line.

The reference throughout is the defining property of a frequency weight: integer weights give
exactly the fit of the data with every row repeated that many times (from the same start),
and a zero weight is a row that is absent. Both sides of each comparison run bayesgmm, on two
different data sets (weighted rows against repeated rows), so a weight dropped anywhere (a
statistic, the objective, the prior, a count) shows as an O(1) difference; the tolerances are
rounding of sums in a different order (float64 ~1e-15 relative, amplified by the EM
iterations to ~1e-12).
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import _suite
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesgmm import GaussianMixture, GMMParams, KMeans, Prior, fit_posterior, gmm_model, select
from bayesgmm.kmeans import kmeans_plusplus
from bayesgmm.selection import information_criteria

TYPES = ("full", "tied", "diag", "spherical")


def _data(n, d, seed=0):
    rng = np.random.default_rng(seed)
    half = n // 2
    X = np.concatenate([rng.normal(0, 1, (half, d)), rng.normal(4, 1.5, (n - half, d))])
    w = rng.integers(0, 4, n).astype(float)  # zeros included: absent rows
    return X, w, np.repeat(X, w.astype(int), axis=0)


def _start(covariance_type, X, d):
    """A fixed start (every initial value given): no initialisation runs, so the weighted and
    the repeated fit start from the same point."""
    precisions = {
        "full": np.stack([np.eye(d)] * 2),
        "tied": np.eye(d),
        "diag": np.ones((2, d)),
        "spherical": np.ones(2),
    }[covariance_type]
    means = np.stack([X[: len(X) // 2].mean(0) + 0.5, X[len(X) // 2 :].mean(0) - 0.5])
    return dict(weights_init=[0.4, 0.6], means_init=means, precisions_init=precisions)


def _fit_both(covariance_type, X, w, Xr, prior=None, **kw):
    start = _start(covariance_type, X, X.shape[1])
    args = dict(covariance_type=covariance_type, prior=prior, tol=0.0, max_iter=15, **start, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter reached on purpose (tol=0)
        a = GaussianMixture(2, **args).fit(X, sample_weight=w)
        b = GaussianMixture(2, **args).fit(Xr)
    return a, b


def _assert_same_fit(a, b, rtol=1e-10):
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_, rtol=rtol)
    assert a.n_iter_ == b.n_iter_


# (n, d): 600 x 3 runs the centred kernels; 6001 x 5 (n K d^2 = 3e5 > 1e5) the expanded
# float64 kernels with several 1024-row blocks and a padded last one. The default suite runs
# every type on both kernel families, ML and MAP split between them; the rest is extended.
_WEIGHT_CASES = [
    (ct, prior, shape)
    for ct in TYPES
    for prior in (None, "default")
    for shape in ((600, 3), (6001, 5))
]


def _in_suite(ct, prior, shape):
    return (prior is None) == (shape == (600, 3)) or ct == "full"


@pytest.mark.parametrize(
    "covariance_type, prior, shape",
    [c if _in_suite(*c) else pytest.param(*c, marks=pytest.mark.extended) for c in _WEIGHT_CASES],
)
def test_integer_weights_are_repeated_rows(covariance_type, prior, shape):
    X, w, Xr = _data(*shape)
    a, b = _fit_both(covariance_type, X, w, Xr, prior=prior)
    _assert_same_fit(a, b)
    # The criteria and the score weighted as the log-likelihood is (bic: n = sum(w)).
    np.testing.assert_allclose(a.bic(X, sample_weight=w), b.bic(Xr), rtol=1e-12)
    np.testing.assert_allclose(a.aic(X, sample_weight=w), b.aic(Xr), rtol=1e-12)
    np.testing.assert_allclose(a.score(X, sample_weight=w), b.score(Xr), rtol=1e-12)
    if prior == "default":
        pa = Prior.default(X, 2, covariance_type, sample_weight=w)
        pb = Prior.default(Xr, 2, covariance_type)
        for f in ("mean", "scale", "dof", "mean_precision"):
            np.testing.assert_allclose(getattr(pa, f), getattr(pb, f), rtol=1e-12)


def test_float32_weights_are_computed_in_float32():
    # float32 in, float32 out; against the float64 repeated-rows fit to float32's accuracy
    # (eps 1.2e-7 times the conditioning of 15 EM iterations on well-separated data: 1e-4).
    X, w, Xr = _data(2000, 3)
    a, _ = _fit_both("full", X.astype(np.float32), w.astype(np.float32), Xr.astype(np.float32))
    _, b = _fit_both("full", X, w, Xr)
    assert a.means_.dtype == np.float32
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a.lower_bound_, b.lower_bound_, rtol=1e-4)


def test_zero_weight_is_an_absent_row():
    X, w, _ = _data(600, 3, seed=1)
    keep = w > 0
    # Rows of weight zero moved far away: were they counted anywhere, the fit would move.
    X = X.copy()
    X[~keep] += 1e3
    start = _start("full", X[keep], 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = GaussianMixture(2, tol=0, max_iter=10, **start).fit(X, sample_weight=w)
        b = GaussianMixture(2, tol=0, max_iter=10, **start).fit(X[keep], sample_weight=w[keep])
    _assert_same_fit(a, b)


def test_all_ones_is_the_unweighted_fit_bit_for_bit():
    # The default k-means initialisation included: all-ones weights are the unweighted problem.
    X, _, _ = _data(500, 2)
    a = GaussianMixture(3, random_state=0).fit(X)
    b = GaussianMixture(3, random_state=0).fit(X, sample_weight=np.ones(len(X)))
    assert np.array_equal(a.means_, b.means_) and a.lower_bound_ == b.lower_bound_


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_centred_and_expanded_kernels_agree_weighted(covariance_type, monkeypatch):
    import bayesgmm.em.expanded as expanded

    X, w, Xr = _data(6001, 5, seed=2)
    a, _ = _fit_both(covariance_type, X, w, Xr)
    monkeypatch.setattr(expanded, "use_expanded", lambda *args: False)
    b, _ = _fit_both(covariance_type, X, w, Xr)
    _assert_same_fit(a, b, rtol=1e-9)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random_from_data"])
def test_initialisation_honours_the_weights(init_params):
    # Three clusters; the third carries weight zero. A 2-component fit from a weighted
    # initialisation must never start (and so never end) at the absent one.
    rng = np.random.default_rng(3)
    X = np.concatenate(
        [rng.normal(0, 0.5, (200, 2)), rng.normal(5, 0.5, (200, 2)), rng.normal(40, 0.5, (200, 2))]
    )
    w = np.r_[np.ones(400), np.zeros(200)]
    for seed in range(3):
        gm = GaussianMixture(2, init_params=init_params, random_state=seed)
        gm.fit(X, sample_weight=w)
        # No component at the absent cluster (unweighted, its 200 points would take one).
        assert np.all(gm.means_ < 20), gm.means_
        if init_params == "kmeans":  # weighted Lloyd iterations find the two clusters
            np.testing.assert_allclose(np.sort(gm.means_[:, 0]), [0, 5], atol=0.2)


def test_kmeans_plusplus_never_seeds_on_a_zero_weight_row():
    X, w, _ = _data(300, 2, seed=4)
    for seed in range(20):
        _, idx = kmeans_plusplus(jax.random.key(seed), jnp.asarray(X), 6, jnp.asarray(w))
        assert np.all(w[np.asarray(idx)] > 0)


def test_weighted_kmeans_is_kmeans_of_repeated_rows():
    # Well separated clusters: from any seeding Lloyd's iterations end at the same partition,
    # whose centres and inertia the weights must give exactly.
    rng = np.random.default_rng(5)
    X = np.concatenate([rng.normal(0, 0.3, (50, 2)), rng.normal(6, 0.3, (50, 2))])
    w = rng.integers(0, 4, 100).astype(float)
    Xr = np.repeat(X, w.astype(int), axis=0)
    a = KMeans(2, random_state=0).fit(X, sample_weight=w)
    b = KMeans(2, random_state=1).fit(Xr)
    order_a, order_b = np.argsort(a.cluster_centers_[:, 0]), np.argsort(b.cluster_centers_[:, 0])
    np.testing.assert_allclose(a.cluster_centers_[order_a], b.cluster_centers_[order_b], rtol=1e-12)
    np.testing.assert_allclose(a.inertia_, b.inertia_, rtol=1e-12)
    np.testing.assert_allclose(-a.score(X, sample_weight=w), b.inertia_, rtol=1e-12)


BAD_WEIGHTS = [
    (lambda n: np.ones(n - 1), ValueError, r"sample_weight must have shape \(\d+,\)"),
    (lambda n: np.ones((n, 1)), ValueError, "sample_weight must have shape"),
    (lambda n: -np.ones(n), ValueError, "sample_weight must be non-negative"),
    (lambda n: np.r_[np.nan, np.ones(n - 1)], ValueError, "sample_weight must be finite"),
    (lambda n: np.r_[np.inf, np.ones(n - 1)], ValueError, "sample_weight must be finite"),
    (lambda n: np.zeros(n), ValueError, "sample_weight must give at least 2 rows"),
    (lambda n: np.r_[1.0, np.zeros(n - 1)], ValueError, "only 1 positive"),
    (lambda n: np.array(["a"] * n), TypeError, "sample_weight must be a 1-D array of numbers"),
]


@pytest.mark.parametrize("make, exc, match", BAD_WEIGHTS)
def test_bad_weights_get_a_clear_error(make, exc, match):
    X, _, _ = _data(50, 2)
    with pytest.raises(exc, match=match):
        GaussianMixture(2).fit(X, sample_weight=make(len(X)))
    with pytest.raises(exc, match=match):
        KMeans(2).fit(X, sample_weight=make(len(X)))


def test_hc_refuses_weights():
    X, w, _ = _data(50, 2)
    with pytest.raises(ValueError, match="init_params='hc' does not take sample_weight"):
        GaussianMixture(2, init_params="hc").fit(X, sample_weight=w)


def _params(covariance_type, d=2):
    cov = {
        "full": np.stack([np.eye(d), 2 * np.eye(d)]),
        "tied": np.eye(d),
        "diag": np.ones((2, d)),
        "spherical": np.array([1.0, 2.0]),
    }[covariance_type]
    return GMMParams([0.4, 0.6], [[-1.0] * d, [2.0] * d], cov, covariance_type)


@pytest.mark.parametrize("covariance_type", _suite.types("full", "diag"))
def test_weighted_model_log_density_is_the_repeated_rows(covariance_type):
    # The NumPyro model's log joint (prior + weighted likelihood) at fixed parameters equals
    # the unweighted model's on the repeated rows: the same posterior, exactly.
    from numpyro.infer.util import log_density

    X, w, Xr = _data(80, 2, seed=6)
    prior = Prior.default(Xr, 2, covariance_type)
    p = _params(covariance_type)
    values = {"weights": p.weights, "means": p.means, "covariances": p.covariances}
    kw = dict(n_components=2, covariance_type=covariance_type, prior=prior)
    # Jitted: op by op the model's log density dispatches hundreds of small programs.
    a = jax.jit(lambda v: log_density(gmm_model, (jnp.asarray(X), jnp.asarray(w)), kw, v)[0])
    b = jax.jit(lambda v: log_density(gmm_model, (jnp.asarray(Xr),), kw, v)[0])
    a, b = a(values), b(values)
    np.testing.assert_allclose(float(a), float(b), rtol=1e-12)


def test_weighted_nuts_samples_the_repeated_rows_posterior():
    # Two NUTS runs: weighted rows and repeated rows (same posterior, different data arrays,
    # so different trajectories). Posterior means agree within Monte-Carlo error: with ~300
    # effective draws per run, each mean's Monte-Carlo SE is ~sd/17 and their difference's
    # ~sd/12; 0.35 sd is four of those. The MAP starts agree to rounding.
    X, w, Xr = _data(60, 1, seed=7)
    kw = dict(covariance_type="spherical", num_warmup=200, num_samples=200, num_chains=2)
    a = fit_posterior(X, 2, progress_bar=False, sample_weight=w, **kw)
    b = fit_posterior(Xr, 2, progress_bar=False, **kw)
    order = lambda p: np.argsort(np.asarray(p.means)[:, 0])  # noqa: E731
    ma, mb = a.map_params, b.map_params
    np.testing.assert_allclose(
        np.asarray(ma.means)[order(ma)], np.asarray(mb.means)[order(mb)], rtol=1e-8
    )
    ra, _ = a.relabel()
    rb, _ = b.relabel()
    means_a, means_b = np.asarray(ra.draws.means), np.asarray(rb.draws.means)
    sd = means_b.reshape(-1, 2).std(axis=0)
    diff = np.abs(means_a.reshape(-1, 2).mean(0) - means_b.reshape(-1, 2).mean(0))
    assert np.all(diff < 0.35 * sd), (diff, sd)
    np.testing.assert_array_equal(a.sample_weight, w)


def test_posterior_keeps_its_weights_through_arviz_and_files(tmp_path):
    from bayesgmm import Posterior

    X, w, _ = _data(40, 1, seed=8)
    post = fit_posterior(
        X,
        2,
        covariance_type="spherical",
        num_warmup=50,
        num_samples=20,
        num_chains=1,
        progress_bar=False,
        sample_weight=w,
    )
    idata = post.to_inference_data()
    np.testing.assert_array_equal(idata.constant_data["sample_weight"].values, w)
    back = Posterior.from_inference_data(idata)
    np.testing.assert_array_equal(back.sample_weight, w)
    post.save(tmp_path / "p.nc")
    np.testing.assert_array_equal(Posterior.load(tmp_path / "p.nc").sample_weight, w)
    unweighted = post._replace(sample_weight=None).to_inference_data()
    assert "sample_weight" not in unweighted.constant_data
    assert Posterior.from_inference_data(unweighted).sample_weight is None


def test_select_with_weights_is_select_on_repeated_rows():
    # The robust search (every start, the consistency check) on weighted rows against the
    # repeated rows: log-likelihoods and criteria agree where both converge to tol=1e-6
    # (starts that differ, e.g. k-means seeds, still reach the same optimum on these
    # well-separated clusters), and the same model is chosen.
    from bayesgmm import datasets

    X, _ = datasets.blobs(300, centers=[[0, 0], [8, 8], [0, 8]], seed=0)
    w = np.random.default_rng(9).integers(0, 3, 300).astype(float)
    Xr = np.repeat(X, w.astype(int), axis=0)
    t1, b1 = select(X, [1, 2, 3], ["diag"], sample_weight=w)
    t2, b2 = select(Xr, [1, 2, 3], ["diag"])
    np.testing.assert_allclose(t1["log_likelihood"], t2["log_likelihood"], rtol=1e-6)
    np.testing.assert_allclose(t1["bic"], t2["bic"], rtol=1e-6)
    np.testing.assert_allclose(t1["icl"], t2["icl"], rtol=1e-6)
    assert (b1.n_components, b1.covariance_type) == (b2.n_components, b2.covariance_type)
    crit = information_criteria(b1, X, sample_weight=w)
    np.testing.assert_allclose(crit["bic"], b2.bic(Xr), rtol=1e-6)


def test_command_line_weights_column(tmp_path):
    X, w, Xr = _data(200, 2, seed=10)
    weighted = tmp_path / "w.csv"
    repeated = tmp_path / "r.csv"
    np.savetxt(weighted, np.column_stack([X, w]), delimiter=",", header="a,b,count", comments="")
    np.savetxt(repeated, Xr, delimiter=",", header="a,b", comments="")

    def run(*args):
        proc = subprocess.run(
            [sys.executable, "-m", "bayesgmm", *args], capture_output=True, text=True
        )
        return proc.returncode, proc.stdout + proc.stderr

    rc, out_w = run(
        "fit", str(weighted), "-k", "2", "--weights", "count", "--covariance-type", "diag"
    )
    assert rc == 0, out_w
    rc, out_r = run("fit", str(repeated), "-k", "2", "--covariance-type", "diag")
    assert rc == 0, out_r

    def bic_line(text):
        return next(line for line in text.splitlines() if "BIC" in line).split("(")[0]

    # The printed log-likelihood, BIC and AIC are the repeated rows' (to the 6 digits shown).
    assert bic_line(out_w) == bic_line(out_r)
    assert "all weighted" in out_w
    rc, out = run("fit", str(weighted), "-k", "2", "--weights", "count", "--columns", "a,count")
    assert rc != 0 and "both as data (--columns) and as weights (--weights)" in out
    bad = tmp_path / "bad.csv"
    np.savetxt(bad, np.column_stack([X, -w]), delimiter=",", header="a,b,count", comments="")
    rc, out = run("fit", str(bad), "-k", "2", "--weights", "count")
    assert rc != 0 and "sample_weight must be non-negative" in out
