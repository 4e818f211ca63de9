"""NUTS posteriors: recovery, convergence, relabeling, posterior utilities, LOO, errors.

One posterior (3 well-separated 2-D components, 500 points, 4 chains of 500 warm-up and 500
draws) is sampled once per module and shared; NUTS is compiled once per shape, so the tests
that sample again reuse that program.
"""

import os
import subprocess
import sys
import warnings

import arviz as az
import jax
import numpy as np
import pytest
import scipy.stats as st
from scipy.optimize import linear_sum_assignment

from bayesgmm import (
    DivergenceWarning,
    GaussianMixture,
    GMMParams,
    Posterior,
    Prior,
    fit_posterior,
)
from bayesgmm import sampler as posterior_module
from bayesgmm.posterior import permute_draws

TRUE_WEIGHTS = np.array([0.4, 0.3, 0.3])
TRUE_MEANS = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
TRUE_COVS = np.array(
    [
        [[1.0, 0.3], [0.3, 0.5]],
        [[0.6, -0.2], [-0.2, 0.9]],
        [[0.8, 0.0], [0.0, 0.8]],
    ]
)
COUNTS = (200, 150, 150)
SAMPLER = {"num_warmup": 500, "num_samples": 500, "num_chains": 4, "progress_bar": False}


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [rng.multivariate_normal(m, c, size=n) for m, c, n in zip(TRUE_MEANS, TRUE_COVS, COUNTS)]
    )


@pytest.fixture(scope="module")
def X():
    return make_data()


@pytest.fixture(scope="module")
def post(X):
    return fit_posterior(X, 3, seed=0, **SAMPLER)


@pytest.fixture(scope="module")
def relabeled(post):
    return post.relabel()


def match_truth(means):
    """Index of the fitted component matching each true component (nearest means)."""
    cost = ((TRUE_MEANS[:, None, :] - means[None, :, :]) ** 2).sum(-1)
    return linear_sum_assignment(cost)[1]


def test_draw_shapes_and_sample_stats(post):
    assert post.draws.batch_shape == (4, 500)
    assert post.draws.means.shape == (4, 500, 3, 2)
    assert post.draws.covariances.shape == (4, 500, 3, 2, 2)
    for name in ("diverging", "energy", "lp", "tree_depth", "step_size", "n_steps"):
        assert post.sample_stats[name].shape == (4, 500), name
    assert post.num_divergences == int(post.sample_stats["diverging"].sum())
    # Draws lie in the support: weights on the simplex, covariances positive definite.
    np.testing.assert_allclose(np.asarray(post.draws.weights).sum(-1), 1.0, rtol=1e-12)
    assert np.all(np.linalg.eigvalsh(np.asarray(post.draws.covariances)) > 0)
    # The step size is fixed after warm-up; each chain adapted its own.
    step = post.sample_stats["step_size"]
    assert np.all(step == step[:, :1])
    assert post.map_estimator.converged_
    assert post.n_components == 3 and post.n_features == 2 and post.covariance_type == "full"


def test_recovery_of_the_truth(relabeled):
    rel, _ = relabeled
    d = rel.draws
    order = match_truth(np.asarray(d.means).mean((0, 1)))
    means = np.asarray(d.means)[:, :, order].reshape(-1, 3, 2)
    weights = np.asarray(d.weights)[:, :, order].reshape(-1, 3)
    covs = np.asarray(d.covariances)[:, :, order].reshape(-1, 3, 2, 2)
    # Posterior sds: means ~ sqrt(0.5..1/150) ~ 0.06-0.08, weights ~ 0.02, covariance
    # entries ~ 0.05-0.1; tolerances are about 3-4 of those.
    np.testing.assert_allclose(means.mean(0), TRUE_MEANS, atol=0.25)
    np.testing.assert_allclose(weights.mean(0), TRUE_WEIGHTS, atol=0.06)
    np.testing.assert_allclose(covs.mean(0), TRUE_COVS, atol=0.3)
    # Central 90% posterior intervals of the mean coordinates. Each covers the truth with
    # probability 0.9 over data sets, so "all 6 cover" would fail for 47% of seeds; we require
    # at least 4 of 6 (fails for 1.6% of seeds; this seed's data: 5 of 6) ...
    lo, hi = np.quantile(means, [0.05, 0.95], axis=0)
    covered = (lo < TRUE_MEANS) & (TRUE_MEANS < hi)
    assert covered.sum() >= 4, (lo, hi)
    # ... and, deterministically, each interval is the classical one, x_bar +- 1.645 s/sqrt(n_k)
    # from the true labels (the prior is weak): endpoints agree within 0.03 (Monte Carlo error
    # of a 5% quantile from ~2000 effective draws is ~0.005; half-widths are ~0.1).
    X = make_data()
    bounds = np.cumsum((0,) + COUNTS)
    for k in range(3):
        xk = X[bounds[k] : bounds[k + 1]]
        half = 1.645 * xk.std(0, ddof=1) / np.sqrt(len(xk))
        np.testing.assert_allclose(lo[k], xk.mean(0) - half, atol=0.03)
        np.testing.assert_allclose(hi[k], xk.mean(0) + half, atol=0.03)
    # mean_params is the posterior mean of the relabeled draws.
    np.testing.assert_allclose(
        np.asarray(rel.mean_params().means), np.asarray(d.means).mean((0, 1)), rtol=1e-12
    )


def test_convergence_after_relabeling(relabeled):
    rel, _ = relabeled
    idata = rel.to_inference_data(log_likelihood=False)
    rhat = az.rhat(idata, var_names=["weights", "means"])
    ess = az.ess(idata, var_names=["weights", "means"], method="bulk")
    for name in ("weights", "means"):
        assert float(rhat[name].max()) < 1.01, name
        assert float(ess[name].min()) > 400, name
    table = rel.summary()
    assert list(table.index[:3]) == ["weights[0]", "weights[1]", "weights[2]"]
    assert len(table) == 3 + 6


def test_relabel_undoes_a_known_permutation_exactly(relabeled, X):
    rel, _ = relabeled
    rng = np.random.default_rng(1)
    sigma = np.argsort(rng.random(rel.draws.batch_shape + (3,)), axis=-1)
    scrambled = permute_draws(rel.draws, sigma)
    # The scrambling itself, checked by plain NumPy indexing.
    c, t = 1, 7
    np.testing.assert_array_equal(
        np.asarray(scrambled.means)[c, t], np.asarray(rel.draws.means)[c, t][sigma[c, t]]
    )
    np.testing.assert_array_equal(
        np.asarray(scrambled.covariances)[c, t],
        np.asarray(rel.draws.covariances)[c, t][sigma[c, t]],
    )
    scrambled_post = rel._replace(draws=scrambled, relabeled=False)
    for method in ("hungarian", "stephens"):
        back, perms = scrambled_post.relabel(method=method)
        np.testing.assert_array_equal(perms, np.argsort(sigma, axis=-1))
        for a, b in zip(
            (back.draws.weights, back.draws.means, back.draws.covariances),
            (rel.draws.weights, rel.draws.means, rel.draws.covariances),
        ):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_stephens_agrees_with_hungarian(post):
    _, hung = post.relabel(method="hungarian")
    _, steph = post.relabel(method="stephens")
    np.testing.assert_array_equal(hung, steph)


@pytest.mark.parametrize("ct", ["full", "tied", "diag", "spherical"])
def test_permute_draws_every_covariance_type(ct):
    rng = np.random.default_rng(0)
    shapes = {"full": (2, 5, 3, 2, 2), "tied": (2, 5, 2, 2), "diag": (2, 5, 3, 2)}
    cov = rng.random(shapes.get(ct, (2, 5, 3)))
    w = rng.dirichlet(np.ones(3), size=(2, 5))
    draws = GMMParams(w, rng.normal(size=(2, 5, 3, 2)), cov, ct, validate=False)
    perm = np.argsort(rng.random((2, 5, 3)), axis=-1)
    out = permute_draws(draws, perm)
    for c in range(2):
        for t in range(5):
            p = perm[c, t]
            np.testing.assert_array_equal(np.asarray(out.weights)[c, t], w[c, t][p])
            expected = cov[c, t] if ct == "tied" else cov[c, t][p]
            np.testing.assert_array_equal(np.asarray(out.covariances)[c, t], expected)


def test_predict_proba_and_uncertainty(post, X):
    proba = post.predict_proba(X)
    assert proba.shape == (500, 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-12)
    unc = post.assignment_uncertainty(X)
    assert unc.shape == (500,)
    assert np.all((unc >= 0) & (unc <= 1 - 1 / 3 + 1e-12))
    # Separated clusters: the posterior assignments agree with MAP-EM's almost everywhere,
    # and a point midway between two clusters is more uncertain than one at a centre.
    agree = np.mean(post.predict(X) == post.map_estimator.predict(X))
    assert agree > 0.99
    mean = np.asarray(post.mean_params().means)
    centre, between = mean[0], (mean[0] + mean[1]) / 2
    u = post.assignment_uncertainty(np.stack([centre, between]))
    assert u[0] < 1e-3 < u[1]


def test_score_samples_is_log_mean_exp_over_draws(post, X):
    # An independent computation on a thinned posterior: scipy's normal densities.
    thin = post._replace(draws=post.draws[:, ::100])
    pts = X[:5]
    d = thin.draws
    w, m, c = (np.asarray(a).reshape((-1,) + a.shape[2:]) for a in d.tree_flatten()[0])
    dens = np.zeros(5)
    for s in range(w.shape[0]):
        dens += sum(w[s, k] * st.multivariate_normal(m[s, k], c[s, k]).pdf(pts) for k in range(3))
    expected = np.log(dens / w.shape[0])
    np.testing.assert_allclose(thin.score_samples(pts), expected, rtol=1e-10)
    assert np.isclose(thin.score(pts), expected.mean())


def test_posterior_predictive_sample(post, X):
    Xs, labels = post.sample(20000, seed=3)
    assert Xs.shape == (20000, 2) and labels.shape == (20000,)
    assert set(np.unique(labels)) <= {0, 1, 2}
    # The predictive mean is the data mean up to posterior and Monte Carlo error
    # (sd of the sample mean ~ 3/sqrt(20000) ~ 0.02 per coordinate, plus ~0.05 posterior).
    np.testing.assert_allclose(Xs.mean(0), X.mean(0), atol=0.15)
    again, _ = post.sample(20000, seed=3)
    np.testing.assert_array_equal(Xs, again)


def test_same_shapes_compile_once_and_same_seed_repeats(post, X):
    before = posterior_module._run_single_device._cache_size()
    post2 = fit_posterior(X, 3, seed=0, **SAMPLER)
    assert posterior_module._run_single_device._cache_size() == before
    np.testing.assert_array_equal(np.asarray(post2.draws.means), np.asarray(post.draws.means))
    # Other data of the same shape and a different prior reuse the program too.
    other = make_data(seed=5)
    prior = Prior.default(other, 3, "full", mean_precision=0.1)
    fit_posterior(other, 3, prior=prior, seed=1, **{**SAMPLER, "num_chains": 4})
    assert posterior_module._run_single_device._cache_size() == before


def test_loo_prefers_three_components(post, X):
    one = fit_posterior(
        X,
        1,
        num_warmup=300,
        num_samples=300,
        num_chains=2,
        progress_bar=False,
        init=GaussianMixture(1, prior="default", reg_covar=0.0).fit(X),
    )
    three = post.to_inference_data()
    assert three.log_likelihood["obs"].shape == (4, 500, 500)
    loo3, loo1 = az.loo(three), az.loo(one.to_inference_data())
    # 3 vs 1 Gaussian on 3 clusters 6 sds apart: the difference is hundreds of nats.
    assert loo3.elpd_loo - loo1.elpd_loo > 100
    table = az.compare({"three": three, "one": one.to_inference_data()})
    assert table.index[0] == "three"


def test_divergences_are_counted_and_warned(X, monkeypatch):
    # Forcing real divergences needs another compiled program; flipping the sampler's
    # diverging flags tests the counting and the warning with the program already built.
    real = posterior_module._sample_nuts

    def flipped(*args, **kwargs):
        out = real(*args, **kwargs)
        div = np.array(out.diverging)
        div[0, :7] = True
        return out._replace(diverging=div)

    monkeypatch.setattr(posterior_module, "_sample_nuts", flipped)
    with pytest.warns(DivergenceWarning, match="7 of 2000"):
        post = fit_posterior(X, 3, seed=0, **SAMPLER)
    assert post.num_divergences == 7


def test_no_divergences_no_warning(post):
    assert post.num_divergences == 0


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"X": np.full((10, 2), np.nan)}, ValueError, "X contains NaN"),
        ({"X": np.zeros(10)}, ValueError, "X must be a 2-D array"),
        ({"X": np.zeros((2, 2)), "n_components": 3}, ValueError, "n_samples >= n_components"),
        ({"n_components": 0}, ValueError, "n_components"),
        ({"covariance_type": "banana"}, ValueError, "covariance_type"),
        ({"num_chains": 0}, ValueError, "num_chains"),
        ({"num_samples": 2.5}, TypeError, "num_samples"),
        ({"num_warmup": -1}, ValueError, "num_warmup"),
        ({"chain_method": "fast"}, ValueError, "chain_method"),
        ({"target_accept_prob": 1.5}, ValueError, "target_accept_prob"),
        ({"prior": "flat"}, ValueError, "prior must be 'default'"),
        ({"prior": 3}, TypeError, "prior must be"),
        ({"init": "kmeans"}, ValueError, "init must be"),
        ({"init": GaussianMixture(3)}, ValueError, "not fitted"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, exc, match):
    args = {"X": make_data()[:50], "n_components": 3, **kwargs}
    with pytest.raises(exc, match=match):
        fit_posterior(args.pop("X"), args.pop("n_components"), **args)


def test_prior_for_other_model_is_rejected(X):
    with pytest.raises(ValueError, match="prior is for covariance_type='diag'"):
        fit_posterior(X, 3, prior=Prior.default(X, 3, "diag"))
    with pytest.raises(ValueError, match="prior is for 2 components"):
        fit_posterior(X, 3, prior=Prior.default(X, 2))
    with pytest.raises(ValueError, match="init has covariance_type"):
        fit_posterior(X, 3, init=GMMParams(np.ones(1), np.zeros((1, 2)), np.ones(1), "spherical"))


def test_posterior_rejects_bad_input_to_methods(post):
    with pytest.raises(ValueError, match="X has 3 features"):
        post.predict_proba(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        post.score_samples(np.array([[np.nan, 0.0]]))
    with pytest.raises(ValueError, match="method must be"):
        post.relabel(method="greedy")
    with pytest.raises(ValueError, match="pivot must be unbatched"):
        post.relabel(pivot=post.draws[0])
    with pytest.raises(ValueError, match="n_samples"):
        post.sample(0)


@pytest.mark.slow
def test_parallel_chains_on_two_host_devices():
    # pmap needs several devices, which must be requested before JAX starts: a subprocess.
    code = (
        "import numpyro; numpyro.set_host_device_count(2)\n"
        "import numpy as np, jax, bayesgmm\n"
        "assert jax.local_device_count() == 2\n"
        "X = np.random.default_rng(0).normal(size=(60, 1))\n"
        "p = bayesgmm.fit_posterior(X, 1, covariance_type='spherical', num_warmup=100,\n"
        "    num_samples=50, num_chains=2, progress_bar=False)\n"
        "assert p.settings['chain_method'] == 'parallel', p.settings\n"
        "assert p.draws.batch_shape == (2, 50)\n"
        "m = np.asarray(p.draws.means)[..., 0, 0]\n"
        "assert abs(m.mean() - X.mean()) < 0.1 and not np.array_equal(m[0], m[1])\n"
        "print('ok')\n"
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


def test_fit_posterior_from_given_parameters(post, X):
    # A GMMParams start is used as given (no EM run), and sampling still recovers the truth.
    with warnings.catch_warnings():
        warnings.simplefilter("error", DivergenceWarning)
        p = fit_posterior(X, 3, init=post.map_params, seed=2, **SAMPLER)
    assert p.map_estimator is None
    assert p.map_params is post.map_params or np.array_equal(
        np.asarray(p.map_params.means), np.asarray(post.map_params.means)
    )
    order = match_truth(np.asarray(p.mean_params().means))
    np.testing.assert_allclose(np.asarray(p.mean_params().means)[order], TRUE_MEANS, atol=0.25)


def test_fit_posterior_one_start_per_chain(post, X):
    """A GMMParams with batch shape (num_chains,) starts each chain at its own point (with the
    same settings, the compiled sampler is reused). Chains started at permuted MAP solutions
    of well-separated components stay in their own labelling; the first start is the pivot,
    and relabeling brings every chain to it. atol 0.25: several posterior sds of a mean
    (about 0.05 with 150 points) and far below the distance between components (6)."""
    mp = post.map_params
    perms = np.array([[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 2, 1]])
    starts = GMMParams(
        np.stack([np.asarray(mp.weights)[q] for q in perms]),
        np.stack([np.asarray(mp.means)[q] for q in perms]),
        np.stack([np.asarray(mp.cov.permute_components(mp.covariances, q)) for q in perms]),
        "full",
    )
    p = fit_posterior(X, 3, init=starts, seed=3, **SAMPLER)
    np.testing.assert_array_equal(np.asarray(p.map_params.means), np.asarray(mp.means))
    chain_means = np.asarray(p.draws.means).mean(axis=1)  # (chain, K, d)
    for c, q in enumerate(perms):
        np.testing.assert_allclose(chain_means[c], np.asarray(mp.means)[q], atol=0.25)
    fixed, _ = p.relabel()
    np.testing.assert_allclose(
        np.asarray(fixed.draws.means).mean(axis=1),
        np.broadcast_to(np.asarray(mp.means), (4, 3, 2)),
        atol=0.25,
    )
    with pytest.raises(ValueError, match=r"batch shape \(2,\)"):
        fit_posterior(X, 3, init=starts[:2], **SAMPLER)


def test_posterior_needs_chain_and_draw_axes(post):
    with pytest.raises(ValueError, match=r"batch axes \(chain, draw\)"):
        Posterior(post.draws[0], X=post.X, prior=post.prior, map_params=post.map_params)


def test_prior_key_and_numpy_generator_seeds(X):
    # seeds may be JAX keys; fit_posterior validates before compiling anything new
    with pytest.raises(TypeError, match="random_state"):
        fit_posterior(X, 3, seed="zero", **SAMPLER)
    assert jax.random.key(0) is not None


def test_float32_data_gives_float32_draws():
    # NumPyro's NUTS mixes dtypes for float32 positions under x64, so the sampler runs in
    # float64; MAP-EM runs in float32 and the draws come back in the data's dtype.
    X32 = make_data()[::10].astype(np.float32)
    p = fit_posterior(
        X32,
        2,
        covariance_type="diag",
        num_warmup=100,
        num_samples=100,
        num_chains=2,
        progress_bar=False,
    )
    assert p.draws.means.dtype == np.float32 and p.map_params.means.dtype == np.float32
    assert np.all(np.isfinite(np.asarray(p.draws.covariances)))
    assert p.predict_proba(X32).shape == (50, 2)
