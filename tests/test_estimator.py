"""``GaussianMixture``: scikit-learn's estimator conventions, its errors, and its compile reuse.

Most tests fit the same (300, 2) data with 3 components and default settings, so the jitted
EM program is compiled once and reused.
"""

import pickle
import warnings

import jax
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from bayesgmm import ConvergenceWarning, GaussianMixture, GMMParams, density, em, n_parameters
from bayesgmm._random import as_key


def _blobs():
    rng = np.random.default_rng(0)
    X = np.concatenate(
        [
            rng.normal([0.0, 0.0], [1.0, 0.5], (120, 2)),
            rng.normal([6.0, 5.0], [0.5, 1.5], (100, 2)),
            rng.normal([0.0, 7.0], 1.0, (80, 2)),
        ]
    )
    return X[rng.permutation(len(X))]  # shuffled, so every CV fold sees every blob


@pytest.fixture(scope="module")
def X():
    return _blobs()


@pytest.fixture(scope="module")
def fitted(X):
    return GaussianMixture(3, random_state=0).fit(X)


# --- fitting and fitted attributes ---------------------------------------------------------


def test_fit_returns_self_and_sets_attributes(X):
    gm = GaussianMixture(3, random_state=0)
    assert gm.fit(X) is gm
    assert gm.weights_.shape == (3,) and gm.means_.shape == (3, 2)
    assert gm.covariances_.shape == gm.precisions_.shape == gm.precisions_cholesky_.shape
    assert gm.covariances_.shape == (3, 2, 2)
    for attr in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert isinstance(getattr(gm, attr), np.ndarray), attr
    assert isinstance(gm.params_, GMMParams)
    assert gm.converged_ is True and gm.n_iter_ == len(gm.lower_bounds_)
    assert gm.lower_bound_ == gm.lower_bounds_[-1]
    assert gm.n_features_in_ == 2
    assert_allclose(gm.weights_.sum(), 1.0)
    # The three blobs are found: sorted means are near the true centres (0.3 is > 5 standard
    # errors of a mean of 80+ points with unit spread).
    found = gm.means_[np.argsort(gm.means_[:, 0] + 10 * gm.means_[:, 1])]
    assert_allclose(found, [[0, 0], [6, 5], [0, 7]], atol=0.3)
    # precisions are the inverse covariances, and precisions_cholesky_ their factor.
    assert_allclose(
        gm.precisions_ @ gm.covariances_, np.broadcast_to(np.eye(2), (3, 2, 2)), atol=1e-12
    )
    pc = gm.precisions_cholesky_
    assert_allclose(pc @ np.swapaxes(pc, -1, -2), gm.precisions_, rtol=1e-10)


def test_predict_proba_score_and_criteria(X, fitted):
    resp = fitted.predict_proba(X)
    assert_allclose(resp.sum(axis=1), 1.0)
    assert_array_equal(fitted.predict(X), resp.argmax(axis=1))
    assert_allclose(fitted.score(X), fitted.score_samples(X).mean())
    p = n_parameters(3, 2, "full")
    assert p == 3 * 3 + 3 * 2 + 2  # 3 covariances of 3 free entries, 3 means of 2, 2 weights
    n = len(X)
    assert_allclose(fitted.bic(X), -2 * fitted.score(X) * n + p * np.log(n))
    assert_allclose(fitted.aic(X), -2 * fitted.score(X) * n + 2 * p)


@pytest.mark.parametrize(
    "covariance_type, want",
    [
        ("full", 4 * 6 + 4 * 3 + 3),
        ("tied", 6 + 4 * 3 + 3),
        ("diag", 4 * 3 + 4 * 3 + 3),
        ("spherical", 4 + 4 * 3 + 3),
    ],
)
def test_n_parameters(covariance_type, want):
    assert n_parameters(4, 3, covariance_type) == want


def test_sample_shapes_and_reproducibility(fitted):
    x, y = fitted.sample(500)
    assert x.shape == (500, 2) and y.shape == (500,)
    assert set(np.unique(y)) <= {0, 1, 2}
    x2, y2 = fitted.sample(500)  # random_state=0 repeats its draws
    assert_array_equal(x, x2)
    x3, _ = fitted.sample(500, random_state=1)
    assert not np.array_equal(x, x3)


@pytest.mark.parametrize("n", [1, 5, 64, 65, 500])
def test_sample_draws_what_density_sample_draws(fitted, n):
    """sample(n) draws a power of two of points and keeps the first n (one compiled sampler
    serves many n); those are exactly the n points density.sample draws with the same key."""
    x, y = fitted.sample(n, random_state=3)
    want_x, want_y = density.sample(as_key(3), fitted.params_, n)
    assert x.shape == (n, 2) and y.shape == (n,)
    assert_array_equal(x, np.asarray(want_x))
    assert_array_equal(y, np.asarray(want_y))


# --- scikit-learn conventions -------------------------------------------------------------


def test_get_params_set_params():
    gm = GaussianMixture(2, covariance_type="diag", tol=1e-4)
    params = gm.get_params()
    for name in (
        "n_components",
        "covariance_type",
        "tol",
        "reg_covar",
        "max_iter",
        "n_init",
        "init_params",
        "weights_init",
        "means_init",
        "precisions_init",
        "random_state",
        "warm_start",
        "verbose",
    ):
        assert name in params
    assert params["n_components"] == 2 and params["covariance_type"] == "diag"
    assert gm.set_params(n_components=4, reg_covar=1e-3) is gm
    assert gm.n_components == 4 and gm.get_params()["reg_covar"] == 1e-3
    with pytest.raises(ValueError, match="n_component"):
        gm.set_params(n_component=3)


def test_clone(fitted):
    c = clone(fitted)
    assert c.get_params() == fitted.get_params()
    assert not hasattr(c, "params_")
    c2 = clone(GaussianMixture(3, means_init=np.zeros((3, 2))))
    assert_array_equal(c2.means_init, np.zeros((3, 2)))


def test_pickle_round_trip(X, fitted):
    back = pickle.loads(pickle.dumps(fitted))
    assert_array_equal(back.predict(X), fitted.predict(X))
    assert_array_equal(back.score_samples(X), fitted.score_samples(X))
    assert_array_equal(back.means_, fitted.means_)
    assert back.get_params() == fitted.get_params()


def test_pipeline_with_standard_scaler(X):
    pipe = Pipeline([("scale", StandardScaler()), ("gmm", GaussianMixture(3, random_state=0))])
    labels = pipe.fit(X).predict(X)
    Z = StandardScaler().fit_transform(X)
    direct = GaussianMixture(3, random_state=0).fit(Z)
    assert_array_equal(labels, direct.predict(Z))
    assert_allclose(pipe.score(X), direct.score(Z))


def test_grid_search_over_n_components(X):
    """GridSearchCV ranks by .score (held-out mean log-likelihood): three blobs win over
    one or two components."""
    search = GridSearchCV(GaussianMixture(random_state=0), {"n_components": [1, 2, 3]}, cv=3).fit(X)
    assert search.best_params_ == {"n_components": 3}
    assert isinstance(search.best_estimator_, GaussianMixture)
    scores = search.cv_results_["mean_test_score"]
    assert np.all(np.diff(scores) > 0)


def test_fit_predict_equals_fit_then_predict_for_short_runs(X):
    """One iteration: the parameters move after the only E-step, so without a final E-step
    fit_predict would return the stale labels."""
    kw = dict(n_components=3, covariance_type="full", max_iter=1, random_state=0)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        labels = GaussianMixture(**kw).fit_predict(X)
    with pytest.warns(ConvergenceWarning):
        gm = GaussianMixture(**kw).fit(X)
    assert not gm.converged_ and gm.n_iter_ == 1
    assert_array_equal(labels, gm.predict(X))


def test_warm_start_continues_where_the_last_fit_stopped(X):
    """Two warm-started fits of one iteration each are the first two iterations of a cold
    fit (the cold fit uses the default program: tol is traced, so tol=0 compiles nothing)."""
    kw = dict(n_components=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cold = GaussianMixture(tol=0.0, **kw).fit(X)
        warm = GaussianMixture(max_iter=1, warm_start=True, **kw)
        first = warm.fit(X).lower_bounds_.copy()
        second = warm.fit(X).lower_bounds_
    assert len(first) == len(second) == 1
    assert_allclose(np.concatenate([first, second]), cold.lower_bounds_[:2], rtol=1e-12)


def test_n_init_keeps_the_best_restart(X):
    """The kept restart has the highest objective of the n_init runs (recomputed here by
    calling the jitted core with the same key and settings the estimator uses)."""
    gm = GaussianMixture(3, n_init=4, init_params="random", random_state=0).fit(X)
    res = em.fit_em(
        as_key(0),
        X,
        3,
        "full",
        n_init=4,
        init_params="random",
        max_iter=100,
        tol=1e-3,
        reg_covar=1e-6,
    )
    each = np.asarray(res.lower_bound)
    assert len(np.unique(np.round(each, 10))) > 1  # the restarts really differ
    assert np.all(gm.lower_bound_ >= each)
    assert_allclose(gm.lower_bound_, each.max(), rtol=1e-12)
    best = int(np.argmax(each))
    assert_allclose(gm.means_, np.asarray(res.params.means[best]), rtol=1e-12)


def test_verbose_prints(X, capsys):
    GaussianMixture(3, random_state=0, verbose=2, verbose_interval=1).fit(X)
    out = capsys.readouterr().out
    assert "Initialization 0" in out and "converged=True" in out
    assert "Iteration 1" in out and "Iteration 2" in out
    GaussianMixture(3, random_state=0, verbose=True).fit(X)  # as in scikit-learn: level 1
    out = capsys.readouterr().out
    assert "Initialization 0" in out and "Iteration" not in out
    GaussianMixture(3, random_state=0).fit(X)
    assert capsys.readouterr().out == ""


def test_dtype_follows_the_data(X, fitted):
    gm32 = GaussianMixture(3, random_state=0).fit(X.astype(np.float32))
    for attr in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert getattr(gm32, attr).dtype == np.float32, attr
        assert getattr(fitted, attr).dtype == np.float64, attr
    assert gm32.score_samples(X.astype(np.float32)).dtype == np.float32
    assert gm32.predict_proba(X.astype(np.float32)).dtype == np.float32
    # Same data, same start: float32 agrees with float64 to float32 accuracy (means of order
    # 1-7 and a well-conditioned fit: 1e-3 leaves room for ~100 iterations of rounding).
    order32, order64 = np.argsort(gm32.means_[:, 0]), np.argsort(fitted.means_[:, 0])
    assert_allclose(gm32.means_[order32], fitted.means_[order64], rtol=1e-3, atol=1e-3)


def test_second_fit_with_same_shapes_compiles_nothing(X):
    """JAX reports every backend compilation through jax.monitoring; refitting with new data
    of the same shape and new traced settings (tol, reg_covar, seed) must not add any."""
    compiles = []

    def listener(name, *args, **kwargs):
        if name == "/jax/core/compile/backend_compile_duration":
            compiles.append(name)

    def use(gm, data):
        gm.fit(data)
        gm.predict(data), gm.score_samples(data), gm.predict_proba(data)

    use(GaussianMixture(3, random_state=0), X)
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        use(GaussianMixture(3, tol=1e-4, reg_covar=1e-5, random_state=7), X[::-1] + 0.5)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert compiles == []
    # The listener does see compilations (so the empty list above means something).
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        jax.jit(lambda a: a * 3.0 + 1.0)(np.ones(3))
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert len(compiles) >= 1


# --- bad input gets a clear error naming the argument ----------------------------------


@pytest.mark.parametrize(
    "data, pattern",
    [
        (np.array([[0.0, 1.0], [np.nan, 2.0], [3.0, 4.0]]), "X contains NaN or infinity"),
        (np.array([[0.0, 1.0], [np.inf, 2.0], [3.0, 4.0]]), "X contains NaN or infinity"),
        (np.arange(6.0), "X must be a 2-D array"),
        (np.zeros((3, 2, 2)), "X must be a 2-D array"),
    ],
    ids=["nan", "inf", "1-D", "3-D"],
)
def test_bad_data_raises(data, pattern):
    with pytest.raises(ValueError, match=pattern):
        GaussianMixture(2).fit(data)


def test_fewer_samples_than_components():
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        GaussianMixture(5).fit(np.random.default_rng(0).normal(size=(4, 2)))


@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        (dict(covariance_type="ful"), ValueError, "covariance_type must be one of"),
        (dict(init_params="kmeans++"), ValueError, "init_params must be one of"),
        (dict(n_components=0), ValueError, "n_components"),
        (dict(n_components=2.5), TypeError, "n_components"),
        (dict(tol=-1.0), ValueError, "tol"),
        (dict(reg_covar=-1e-6), ValueError, "reg_covar"),
        (dict(max_iter=-1), ValueError, "max_iter"),
        (dict(n_init=0), ValueError, "n_init"),
        (dict(weights_init=[0.5, 0.5]), ValueError, r"weights_init must have shape"),
        (dict(weights_init=[0.5, 0.6, 0.1]), ValueError, "weights_init must sum to 1"),
        (dict(weights_init=[1.2, -0.1, -0.1]), ValueError, "weights_init"),
        (dict(means_init=np.zeros((3, 3))), ValueError, r"means_init must have shape"),
        (dict(means_init=np.full((3, 2), np.nan)), ValueError, "means_init"),
        (dict(precisions_init=np.ones((3, 2))), ValueError, r"precisions_init .* shape"),
        (
            dict(precisions_init=np.stack([np.eye(2), np.eye(2), -np.eye(2)])),
            ValueError,
            "precisions_init must be positive definite",
        ),
        (
            dict(precisions_init=np.stack([[[1.0, 2.0], [0.0, 1.0]]] * 3)),
            ValueError,
            "precisions_init must be symmetric",
        ),
        (
            dict(covariance_type="diag", precisions_init=-np.ones((3, 2))),
            ValueError,
            "precisions_init must be positive",
        ),
        (
            dict(covariance_type="spherical", precisions_init=np.ones((3, 2))),
            ValueError,
            r"precisions_init .* shape \(n_components,\): .* shape of \(3,\)",
        ),
        (dict(prior="flat"), ValueError, "prior must be"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(X, kwargs, exc, pattern):
    kwargs = {"n_components": 3, **kwargs}
    with pytest.raises(exc, match=pattern):
        GaussianMixture(**kwargs).fit(X)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score_samples", "score", "bic"])
def test_predicting_with_a_different_number_of_features(fitted, method):
    msg = "X has 3 features, but GaussianMixture is expecting 2 features as input"
    with pytest.raises(ValueError, match=msg):
        getattr(fitted, method)(np.zeros((5, 3)))


@pytest.mark.parametrize(
    "call",
    [
        lambda gm: gm.predict(np.zeros((3, 2))),
        lambda gm: gm.predict_proba(np.zeros((3, 2))),
        lambda gm: gm.score_samples(np.zeros((3, 2))),
        lambda gm: gm.sample(3),
        lambda gm: gm.bic(np.zeros((3, 2))),
    ],
    ids=["predict", "predict_proba", "score_samples", "sample", "bic"],
)
def test_not_fitted_raises(call):
    with pytest.raises(ValueError, match="not fitted yet"):
        call(GaussianMixture(2))


# --- collapsed components ----------------------------------------------------------------


def _with_duplicates():
    rng = np.random.default_rng(1)
    return np.concatenate([np.tile([[5.0, 5.0]], (60, 1)), rng.normal(0, 1, (140, 2))])


def test_duplicate_points_fit_thanks_to_reg_covar():
    gm = GaussianMixture(2, random_state=0).fit(_with_duplicates())
    for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.all(np.isfinite(getattr(gm, attr))), attr
    # The duplicates' component has covariance exactly reg_covar * I (zero scatter).
    k = int(np.argmin(np.abs(gm.means_[:, 0] - 5.0)))
    assert_allclose(gm.covariances_[k], 1e-6 * np.eye(2), rtol=1e-6)
    assert np.all(np.isfinite(gm.score_samples(_with_duplicates())))


def test_duplicate_points_without_reg_covar_raise_sklearn_message():
    with pytest.raises(ValueError, match="increase reg_covar"):
        GaussianMixture(2, reg_covar=0.0, random_state=0).fit(_with_duplicates())


def test_duplicate_points_without_reg_covar_fit_under_the_prior():
    """The conjugate prior's scale keeps the collapsed component's covariance positive."""
    gm = GaussianMixture(2, reg_covar=0.0, prior="default", random_state=0)
    gm.fit(_with_duplicates())
    assert np.all(np.isfinite(gm.covariances_))
    assert np.all(np.linalg.eigvalsh(gm.covariances_) > 0)
