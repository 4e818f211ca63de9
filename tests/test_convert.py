"""ArviZ conversion: groups, dims, coordinates, and the netCDF round trip, for every type.

Posteriors here are built from synthetic draws (no sampling), so these tests are fast; the
ones that need real NUTS output (LOO, convergence) are in test_posterior.py.
"""

import arviz as az
import numpy as np
import pytest

from bayesgmm import GMMParams, Posterior, Prior, density
from bayesgmm.covariance import get_covariance_type

C, T, K, D, N = 2, 6, 3, 2, 25


def synthetic_posterior(ct, seed=0, feature_names=None, relabeled=False):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, D)) + np.repeat(np.arange(K), [9, 8, 8])[:, None] * 3
    w = rng.dirichlet(np.ones(K) * 5, size=(C, T))
    m = rng.normal(size=(C, T, K, D)) + np.arange(K)[:, None] * 3
    a = rng.normal(size=(C, T, K, D, D)) * 0.3
    full = a @ np.swapaxes(a, -1, -2) + np.eye(D)
    cov = {
        "full": full,
        "tied": full[:, :, 0],
        "diag": np.diagonal(full, axis1=-2, axis2=-1),
        "spherical": full[..., 0, 0],
    }[ct]
    draws = GMMParams(w, m, cov, ct)
    stats = {
        "diverging": rng.random((C, T)) < 0.2,
        "energy": rng.normal(size=(C, T)),
        "lp": rng.normal(size=(C, T)),
        "n_steps": rng.integers(1, 16, (C, T)),
        "tree_depth": rng.integers(1, 5, (C, T)),
        "step_size": np.repeat(rng.random((C, 1)), T, axis=1),
        "acceptance_rate": rng.random((C, T)),
    }
    return Posterior(
        draws,
        X=X,
        prior=Prior.default(X, K, ct),
        map_params=draws[0, 0],
        sample_stats=stats,
        relabeled=relabeled,
        feature_names=feature_names,
        settings={"num_warmup": 10, "num_samples": T, "num_chains": C, "dense_mass": False},
    )


def test_groups_dims_and_coords(covariance_type):
    post = synthetic_posterior(covariance_type)
    idata = post.to_inference_data()
    assert set(idata.groups()) == {
        "posterior",
        "sample_stats",
        "log_likelihood",
        "observed_data",
        "constant_data",
    }
    pos = idata.posterior
    assert pos["weights"].dims == ("chain", "draw", "component")
    assert pos["means"].dims == ("chain", "draw", "component", "feature")
    cov_dims = ("chain", "draw") + get_covariance_type(covariance_type).dims
    assert pos["covariances"].dims == cov_dims
    np.testing.assert_array_equal(pos.coords["component"].values, np.arange(K))
    assert list(pos.coords["feature"].values) == ["x0", "x1"]
    if "feature_bis" in cov_dims:
        assert list(pos.coords["feature_bis"].values) == ["x0", "x1"]
    np.testing.assert_array_equal(pos["means"].values, np.asarray(post.draws.means))
    ss = idata.sample_stats
    for name in ("diverging", "energy", "tree_depth", "step_size", "lp"):
        assert ss[name].dims == ("chain", "draw"), name
    assert ss["diverging"].dtype == bool
    ll = idata.log_likelihood["obs"]
    assert ll.dims == ("chain", "draw", "obs_id")
    np.testing.assert_allclose(ll.values, density.log_prob(post.X, post.draws), rtol=1e-12)
    obs = idata.observed_data["obs"]
    assert obs.dims == ("obs_id", "feature")
    np.testing.assert_array_equal(obs.values, post.X)
    assert pos.attrs["bayesgmm_covariance_type"] == covariance_type


def test_posterior_predictive_on_request():
    post = synthetic_posterior("full")
    idata = post.to_inference_data(posterior_predictive=True, seed=1)
    pp = idata.posterior_predictive["obs"]
    assert pp.dims == ("chain", "draw", "obs_id", "feature")
    assert pp.shape == (C, T, N, D)
    assert np.all(np.isfinite(pp.values))
    again = post.to_inference_data(posterior_predictive=True, seed=1)
    np.testing.assert_array_equal(pp.values, again.posterior_predictive["obs"].values)
    assert "log_likelihood" not in post.to_inference_data(log_likelihood=False).groups()


def test_feature_names_become_coordinates():
    post = synthetic_posterior("diag", feature_names=["height", "weight"])
    idata = post.to_inference_data()
    assert list(idata.posterior.coords["feature"].values) == ["height", "weight"]
    assert Posterior.from_inference_data(idata).feature_names == ["height", "weight"]


def test_netcdf_round_trip(tmp_path, covariance_type):
    post = synthetic_posterior(covariance_type, relabeled=True)
    path = tmp_path / "posterior.nc"
    post.to_inference_data().to_netcdf(str(path))
    back = Posterior.from_inference_data(az.from_netcdf(str(path)))
    assert back.covariance_type == covariance_type
    assert back.relabeled
    for a, b in zip(back.draws.tree_flatten()[0], post.draws.tree_flatten()[0]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for f in Prior._fields:
        np.testing.assert_array_equal(
            np.asarray(getattr(back.prior, f)), np.asarray(getattr(post.prior, f))
        )
    for a, b in zip(back.map_params.tree_flatten()[0], post.map_params.tree_flatten()[0]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(back.X, post.X)
    assert back.sample_stats.keys() == post.sample_stats.keys()
    for k, v in post.sample_stats.items():
        np.testing.assert_array_equal(back.sample_stats[k], v)
    assert back.num_divergences == post.num_divergences
    assert back.settings["dense_mass"] is False and back.settings["num_samples"] == T
    # The rebuilt MAP estimator predicts with the stored MAP parameters.
    np.testing.assert_allclose(
        back.map_estimator.predict_proba(post.X),
        density.predict_proba(post.X, post.map_params),
        rtol=1e-12,
    )
    np.testing.assert_allclose(back.score_samples(post.X), post.score_samples(post.X))


def test_arviz_summary_and_plot_trace_work_directly():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idata = synthetic_posterior("full").to_inference_data()
    table = az.summary(idata, var_names=["weights", "means"])
    assert "weights[0]" in table.index and "means[2, x1]" in table.index
    axes = az.plot_trace(idata, var_names=["weights", "means"])
    assert axes.shape == (2, 2)
    plt.close("all")


def test_foreign_inference_data_is_rejected():
    idata = az.from_dict(posterior={"a": np.zeros((2, 5))})
    with pytest.raises(ValueError, match="not written by bayesgmm"):
        Posterior.from_inference_data(idata)
