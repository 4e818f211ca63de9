"""Adversarial inputs, tried systematically: each gets a correct fit or a clear error.

A *correct fit* means finite parameters, weights on the simplex, positive-definite covariances,
responsibilities that sum to one and finite log densities - and, where the input is a re-encoding
of data we can also fit directly (a list, a DataFrame, a read-only or strided view, integers,
float16), the same answer as for that data. A *clear error* is a ValueError or TypeError whose
message names the argument and says what to change; never NaN, never a JAX trace.

The table ``CASES`` below is the record of what each input gets (it is also printed in the
closing note of issue #6).
"""

from __future__ import annotations

import re
import warnings

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from bayesgmm import GaussianMixture, KMeans, density
from bayesgmm._validation import DataScaleWarning

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

# Compilation dominates this file's run time (a fit_em compile is ~5 s of CPU per shape, dtype
# and covariance type), so the cases share one shape, (200, 2), and the covariance types are
# varied only where they change the answer; re-encodings of the input are a validation concern
# and are checked on one type.


def _base():
    """Two 2-D blobs, 200 rows: every fit-case below is a variation of this data."""
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(0.0, 1.0, (100, 2)), rng.normal(5.0, 1.0, (100, 2))])


BASE = _base()


# --- what a correct fit is -------------------------------------------------------------------


def assert_valid_fit(gm, X):
    """Finite parameters, simplex weights, SPD covariances, normalised responsibilities."""
    X = np.asarray(X, dtype=gm.means_.dtype)
    tol = 1e-5 if gm.means_.dtype == np.float32 else 1e-12
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert np.all(np.isfinite(getattr(gm, name))), name
    assert np.all(gm.weights_ >= 0)
    assert_allclose(gm.weights_.sum(), 1.0, atol=tol)
    cov = np.asarray(gm.params_.covariance_matrices(), dtype=np.float64)
    assert np.all(np.linalg.eigvalsh(cov) > 0), "covariances must be positive definite"
    resp = gm.predict_proba(X)
    assert np.all(np.isfinite(resp)) and np.all(resp >= 0)
    assert_allclose(resp.sum(axis=1), 1.0, atol=10 * tol)
    assert np.all(np.isfinite(gm.score_samples(X)))
    assert np.all(np.isfinite(gm.lower_bounds_))


def assert_clear_error(excinfo, pattern):
    """The message names what went wrong (``pattern``) and is not a JAX trace."""
    msg = str(excinfo.value)
    assert re.search(pattern, msg), msg
    for leak in ("Traceback", "Tracer", "jaxlib", "XlaRuntimeError", "ShapedArray"):
        assert leak not in msg, msg


def _fit(X, covariance_type="full", n_components=2, **kw):
    kw.setdefault("random_state", 0)
    return GaussianMixture(n_components, covariance_type=covariance_type, **kw).fit(X)


def _same_fit(a, b, rtol=1e-12):
    for name in ("weights_", "means_", "covariances_", "lower_bound_"):
        assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, atol=0, err_msg=name)


# --- the table -------------------------------------------------------------------------------


def _with(value, row=3, col=1):
    X = BASE.copy()
    X[row, col] = value
    return X


def _readonly():
    X = BASE.copy()
    X.setflags(write=False)
    return X


def _noncontiguous():
    # A Fortran-ordered array, then every other column: neither C- nor F-contiguous.
    wide = np.asfortranarray(np.repeat(BASE, 2, axis=1))
    X = wide[:, ::2]
    assert not X.flags.c_contiguous and not X.flags.f_contiguous
    return X


# Errors: (id, X, n_components, exception, pattern the message must match).
ERROR_CASES = [
    ("nan", lambda: _with(np.nan), 2, ValueError, r"X contains NaN or infinity.*row.*3.*impute"),
    ("+inf", lambda: _with(np.inf), 2, ValueError, r"X contains NaN or infinity.*rows 3"),
    ("-inf", lambda: _with(-np.inf), 2, ValueError, r"X contains NaN or infinity.*rows 3"),
    ("empty rows", lambda: np.zeros((0, 2)), 1, ValueError, r"X has 0 sample\(s\); at least 2"),
    (
        "empty columns",
        lambda: np.zeros((10, 0)),
        1,
        ValueError,
        r"X has 0 feature\(s\) \(shape=\(10, 0\)\) while a minimum of 1",
    ),
    ("1-D X", lambda: BASE[:, 0], 1, ValueError, r"X must be a 2-D array.*reshape\(-1, 1\)"),
    ("3-D X", lambda: np.zeros((4, 2, 2)), 1, ValueError, r"X must be a 2-D array"),
    ("one sample", lambda: BASE[:1], 1, ValueError, r"X has 1 sample\(s\); at least 2"),
    ("fewer samples than components", lambda: BASE[:2], 3, ValueError, r"n_samples >= n_comp"),
    ("complex", lambda: BASE.astype(complex), 2, ValueError, r"X must be real-valued: Complex"),
    ("strings", lambda: [["a", "b"], ["c", "d"]], 1, TypeError, r"X must contain only numbers"),
    ("ragged list", lambda: [[1.0, 2.0], [3.0]], 1, TypeError, r"X must be array-like"),
    ("None", lambda: None, 1, ValueError, r"X must be a 2-D array"),
    (
        "float16 overflow to inf",
        lambda: np.array([[7e4, 0], [1, 1], [2, 2]], np.float16),
        1,
        ValueError,
        r"X contains NaN or infinity",
    ),  # fmt: skip
    (
        "float32 |x| > 1e18",
        lambda: np.array([[1e19, 0], [1, 1], [2, 2]], np.float32),
        1,
        ValueError,
        r"too large for float32.*float64",
    ),  # fmt: skip
    (
        "float64 |x| > 1e153",
        lambda: np.array([[1e200, 0], [1, 1], [2, 2], [3, 3]]),
        2,
        ValueError,
        r"too large for float64.*rescale",
    ),  # fmt: skip
]


@pytest.mark.parametrize(
    "make, n_components, exc, pattern",
    [c[1:] for c in ERROR_CASES],
    ids=[c[0] for c in ERROR_CASES],
)
def test_bad_data_gets_a_clear_error(make, n_components, exc, pattern):
    with pytest.raises(exc) as excinfo:
        GaussianMixture(n_components, random_state=0).fit(make())
    assert_clear_error(excinfo, pattern)


# Inputs that are a re-encoding of data we can fit directly: (id, X, the equivalent ndarray).
# The fit must be identical (bit for bit: the same float64/float32 values reach the same code).
REENCODED = [
    ("list", lambda: BASE.tolist(), lambda: BASE),
    ("pandas DataFrame", lambda: pd.DataFrame(BASE, columns=["a", "b"]), lambda: BASE),
    ("read-only", _readonly, lambda: BASE),
    ("non-contiguous", _noncontiguous, lambda: BASE),
    ("jax array", lambda: jnp.asarray(BASE), lambda: BASE),
    ("int64", lambda: np.round(BASE).astype(np.int64), lambda: np.round(BASE)),
    ("int32", lambda: np.round(BASE).astype(np.int32), lambda: np.round(BASE)),
    ("bool", lambda: BASE > 2.5, lambda: (BASE > 2.5).astype(np.float64)),
    # float16 has too little range for squared distances: computed in float32, never float16.
    ("float16", lambda: BASE.astype(np.float16), lambda: BASE.astype(np.float16).astype("f4")),
]


@pytest.mark.parametrize(
    "make, make_equiv", [c[1:] for c in REENCODED], ids=[c[0] for c in REENCODED]
)
def test_reencoded_input_fits_like_the_array(make, make_equiv):
    X = make()
    gm = _fit(X)
    equiv = make_equiv()
    ref = _fit(equiv)
    assert gm.means_.dtype == ref.means_.dtype == equiv.dtype
    assert_valid_fit(gm, equiv)
    _same_fit(gm, ref, rtol=0)
    # The input is not modified (read-only arrays would raise if we tried).
    if isinstance(X, np.ndarray):
        assert_array_equal(X, make())


def test_pandas_input_to_predict_and_score():
    df = pd.DataFrame(BASE, columns=["a", "b"])
    gm = _fit(df)
    assert_array_equal(gm.predict(df), gm.predict(BASE))
    assert_allclose(gm.score_samples(df), gm.score_samples(BASE), rtol=0)


# --- degenerate but legitimate data: a correct fit of the regularised model ----------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_constant_feature(covariance_type):
    X = BASE.copy()
    X[:, 1] = 3.0
    gm = _fit(X, covariance_type)
    assert_valid_fit(gm, X)
    # Every component sits on the constant, whatever its responsibilities.
    assert_allclose(gm.means_[:, 1], 3.0, rtol=1e-12)
    cov = np.asarray(gm.params_.covariance_matrices())
    if covariance_type in ("full", "tied", "diag"):
        # That feature's variance is exactly the regulariser (up to rounding of the mean).
        assert_allclose(cov[:, 1, 1], gm.reg_covar, rtol=1e-6)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_duplicated_points(covariance_type):
    # Five distinct points, each repeated 40 times: components may collapse onto single points,
    # where reg_covar keeps their covariance positive definite.
    X = np.repeat(BASE[:5], 40, axis=0)
    gm = _fit(X, covariance_type)
    assert_valid_fit(gm, X)
    assert np.all(np.asarray(gm.params_.covariance_matrices()).diagonal(0, -2, -1) >= 1e-6)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_all_points_identical(covariance_type):
    X = np.full((200, 2), 1.5)
    with pytest.warns(DataScaleWarning, match=r"reg_covar=1e-06.*Standardise X"):
        gm = _fit(X, covariance_type)
    assert_valid_fit(gm, X)
    # k-means puts every point in one cluster, so the other component is empty: weight ~1e-16
    # and an arbitrary mean (0, as in scikit-learn). The mixture is the point at 1.5 blurred by
    # reg_covar: log N(x | x, 1e-6 I) = -log(2 pi) - log(1e-6) at every point.
    used = gm.weights_ > 1e-10
    assert used.sum() >= 1
    assert_allclose(gm.means_[used], 1.5, rtol=1e-12)
    assert gm.weights_[~used].sum() < 1e-10
    cov = np.asarray(gm.params_.covariance_matrices())
    assert_allclose(cov, np.broadcast_to(1e-6 * np.eye(2), cov.shape), atol=1e-15)
    assert_allclose(gm.score_samples(X), -np.log(2 * np.pi) - np.log(1e-6), rtol=1e-10)


def test_as_many_samples_as_components():
    # Each component on one point, its covariance exactly reg_covar.
    X = BASE[[0, 150]]
    gm = _fit(X, "diag")
    assert_valid_fit(gm, X)
    assert_allclose(np.sort(gm.means_, axis=0), np.sort(X, axis=0), rtol=1e-12)
    assert_allclose(gm.covariances_, 1e-6, rtol=1e-6)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_collinear_features(covariance_type):
    # x2 = 2 x1 + 1 exactly: the full/tied sample covariance is singular; reg_covar makes it
    # positive definite with smallest eigenvalue ~reg_covar (the exact direction (2, -1)/sqrt5
    # has zero spread).
    X = np.c_[BASE[:, 0], 2 * BASE[:, 0] + 1]
    gm = _fit(X, covariance_type)
    assert_valid_fit(gm, X)
    if covariance_type in ("full", "tied"):
        eig = np.linalg.eigvalsh(np.asarray(gm.params_.covariance_matrices()))
        assert_allclose(eig[:, 0], gm.reg_covar, rtol=1e-3)
        # ...and the means lie on the line.
        assert_allclose(gm.means_[:, 1], 2 * gm.means_[:, 0] + 1, rtol=1e-10)


# --- scale ------------------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_large_scale_is_equivariant(covariance_type):
    # At scale 1e8 reg_covar=1e-6 is negligible against variances ~1e16, so the fit is the
    # unscaled fit, scaled: means x1e8, covariances x1e16, mean log-likelihood - d log 1e8.
    s = 1e8
    a = _fit(BASE, covariance_type, reg_covar=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataScaleWarning)
        b = _fit(BASE * s, covariance_type)
    assert_valid_fit(b, BASE * s)
    assert_allclose(b.means_ / s, a.means_, rtol=1e-9, atol=1e-9)
    assert_allclose(b.covariances_ / s**2, a.covariances_, rtol=1e-9)
    assert_allclose(b.lower_bound_, a.lower_bound_ - 2 * np.log(s), rtol=1e-10)


@pytest.mark.parametrize(
    "covariance_type, dtype",
    [(ct, np.float64) for ct in COVARIANCE_TYPES] + [("full", np.float32), ("diag", np.float32)],
)
def test_tiny_scale_warns_and_fits_the_regularised_model(covariance_type, dtype):
    """Data x1e-8 has variances ~1e-16, far below the absolute reg_covar=1e-6.

    Documented behaviour: a DataScaleWarning that says to standardise X or scale reg_covar, and
    a correct fit of the model that was asked for (covariances = scatter + reg_covar, which is
    reg_covar to 1e-10 relative); with reg_covar scaled to the data the fit is the unscaled fit,
    scaled.
    """
    s = 1e-8
    X = (BASE * s).astype(dtype)
    with pytest.warns(DataScaleWarning, match=r"reg_covar=1e-06 .*largest feature variance"):
        gm = _fit(X, covariance_type)
    assert_valid_fit(gm, X)
    cov = np.asarray(gm.params_.covariance_matrices(), dtype=np.float64)
    assert_allclose(cov, np.broadcast_to(1e-6 * np.eye(2), cov.shape), rtol=1e-6, atol=1e-14)

    # The remedy the warning gives works: no warning, and the scaled fit.
    ref = _fit(BASE, covariance_type)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataScaleWarning)
        fixed = _fit(X, covariance_type, reg_covar=1e-6 * s**2)
    # float32 carries ~7 digits through 1e-8-sized numbers and 1e-16-sized variances.
    rtol = 1e-9 if dtype == np.float64 else 2e-4
    assert_allclose(fixed.means_ / s, ref.means_, rtol=rtol, atol=rtol)
    assert_allclose(fixed.covariances_ / s**2, ref.covariances_, rtol=rtol, atol=rtol)
    assert_allclose(fixed.lower_bound_, ref.lower_bound_ - 2 * np.log(s), rtol=rtol)


def test_no_scale_warning_for_ordinary_data():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _fit(BASE)


def test_million_points_with_one_outlier_at_1e12():
    """1e6 points and one at (1e12, 1e12): float64, diag, K=2, five EM iterations from a
    given start (so no k-means over 1e6 rows; the test runs in a few seconds)."""
    rng = np.random.default_rng(1)
    n = 1_000_000
    X = np.concatenate([rng.normal(0.0, 1.0, (n // 2, 2)), rng.normal(5.0, 1.0, (n // 2, 2))])
    X[0] = 1e12
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: 5 iterations on purpose
        gm = GaussianMixture(
            2,
            covariance_type="diag",
            max_iter=5,
            tol=0.0,
            weights_init=[0.5, 0.5],
            means_init=[[0.0, 0.0], [5.0, 5.0]],
            precisions_init=np.ones((2, 2)),
        ).fit(X)
    assert_valid_fit(gm, X[:1000])
    assert np.all(np.isfinite(gm.predict_proba(X[:2])))
    # The likelihood-maximising move: one component takes the outlier alone, the other the
    # rest. Both are exact to rounding: the outlier's mean is 1e12 (relative 1e-12; the 10 eps
    # scikit-learn adds to nk shifts it by ~2e-15 relative) with weight 1/n, and the bulk
    # component's mean is the mean of the other rows.
    out = int(np.argmax(gm.means_[:, 0]))
    bulk = 1 - out
    assert_allclose(gm.means_[out], 1e12, rtol=1e-12)
    assert_allclose(gm.weights_[out], 1 / n, rtol=1e-6)
    assert_allclose(gm.means_[bulk], X[1:].mean(axis=0), rtol=1e-9)
    assert_allclose(gm.covariances_[bulk], X[1:].var(axis=0) + 1e-6, rtol=1e-6)
    # Its variance is reg_covar plus the rounding of a 1e12 mean: tiny, not a sample variance.
    assert np.all(gm.covariances_[out] < 1e-4)
    assert gm.predict(X[:1])[0] == out
    assert np.all(gm.predict(X[1:1001]) == bulk)


# --- bad estimator arguments ----------------------------------------------------------------

ARG_CASES = [
    ("n_components float", dict(n_components=2.0), TypeError, r"n_components must be an integer"),
    ("n_components 0", dict(n_components=0), ValueError, r"n_components must be an integer >= 1"),
    ("reg_covar < 0", dict(reg_covar=-1.0), ValueError, r"reg_covar must be a finite number >= 0"),
    ("reg_covar nan", dict(reg_covar=float("nan")), ValueError, r"reg_covar must be a finite"),
    ("tol string", dict(tol="a"), TypeError, r"tol must be a real number"),
    ("max_iter -1", dict(max_iter=-1), ValueError, r"max_iter must be an integer >= 0"),
    ("covariance_type", dict(covariance_type="ful"), ValueError, r"covariance_type must be one"),
    ("init_params", dict(init_params="kmean"), ValueError, r"init_params must be one of"),
    (
        "means_init nan",
        dict(means_init=[[np.nan, 0.0], [1.0, 1.0]]),
        ValueError,
        r"means_init contains NaN",
    ),  # fmt: skip
    (
        "means_init shape",
        dict(means_init=np.zeros((3, 2))),
        ValueError,
        r"means_init must have shape \(n_components, n_features\): The parameter 'means' "
        r"should have the shape of \(2, 2\), but got \(3, 2\)",
    ),  # fmt: skip
    (
        "weights_init negative",
        dict(weights_init=[1.5, -0.5]),
        ValueError,
        r"weights_init must be in the range \[0, 1\]",
    ),  # fmt: skip
    ("weights_init sum", dict(weights_init=[0.5, 0.6]), ValueError, r"weights_init must sum to 1"),
    (
        "precisions_init not PD",
        dict(precisions_init=np.array([[[1.0, 2.0], [2.0, 1.0]]] * 2)),
        ValueError,
        r"precisions_init must be positive definite",
    ),  # fmt: skip
    (
        "precisions_init nan",
        dict(precisions_init=np.full((2, 2, 2), np.nan)),
        ValueError,
        r"precisions_init contains NaN",
    ),  # fmt: skip
]


@pytest.mark.parametrize(
    "kwargs, exc, pattern", [c[1:] for c in ARG_CASES], ids=[c[0] for c in ARG_CASES]
)
def test_bad_arguments_get_a_clear_error(kwargs, exc, pattern):
    kwargs = dict(kwargs)
    k = kwargs.pop("n_components", 2)
    with pytest.raises(exc) as excinfo:
        GaussianMixture(k, random_state=0, **kwargs).fit(BASE)
    assert_clear_error(excinfo, pattern)


@pytest.fixture(scope="module")
def fitted():
    return _fit(BASE)


PREDICT_CASES = [
    ("nan", np.array([[np.nan, 0.0]]), ValueError, r"X contains NaN or infinity"),
    ("inf", np.array([[0.0, np.inf]]), ValueError, r"X contains NaN or infinity"),
    (
        "wrong n_features",
        np.zeros((3, 3)),
        ValueError,
        r"X has 3 features, but GaussianMixture is expecting 2",
    ),
    ("1-D", np.zeros(2), ValueError, r"reshape\(-1, 1\)"),
    ("empty", np.zeros((0, 2)), ValueError, r"X has 0 sample\(s\); at least 1 required"),
]


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score_samples", "score"])
@pytest.mark.parametrize(
    "X, exc, pattern", [c[1:] for c in PREDICT_CASES], ids=[c[0] for c in PREDICT_CASES]
)
def test_bad_data_to_a_fitted_model(fitted, method, X, exc, pattern):
    with pytest.raises(exc) as excinfo:
        getattr(fitted, method)(X)
    assert_clear_error(excinfo, pattern)


def test_bad_sample_size(fitted):
    with pytest.raises(ValueError) as excinfo:
        fitted.sample(0)
    assert_clear_error(excinfo, r"n_samples must be an integer >= 1")
    with pytest.raises(ValueError) as excinfo:
        density.sample(0, fitted.params_, 0)
    assert_clear_error(excinfo, r"n_samples must be an integer >= 1")


# --- KMeans ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "X, k, pattern",
    [
        (_with(np.nan), 2, r"X contains NaN or infinity"),
        (np.zeros((0, 2)), 2, r"X has 0 sample"),
        (BASE[:2], 3, r"X has 2 sample\(s\); at least 3 required"),
        (BASE[:, 0], 2, r"X must be a 2-D array"),
    ],
    ids=["nan", "empty", "fewer samples than clusters", "1-D"],
)
def test_kmeans_bad_data(X, k, pattern):
    with pytest.raises(ValueError) as excinfo:
        KMeans(k, random_state=0).fit(X)
    assert_clear_error(excinfo, pattern)


def test_kmeans_fewer_distinct_points_than_clusters_warns():
    X = np.repeat(BASE[:2], 5, axis=0)
    with pytest.warns(Warning, match=r"Number of distinct clusters \(2\) found smaller"):
        km = KMeans(3, random_state=0).fit(X)
    # Still the best possible clustering: every point on a centre, zero inertia.
    assert km.inertia_ == 0.0
    assert np.all(np.isfinite(km.cluster_centers_))


@pytest.mark.parametrize("scale", [1e-8, 1e8])
def test_kmeans_is_scale_equivariant(scale):
    # k-means has no absolute regulariser and its tol is relative to the data variance.
    a = KMeans(2, random_state=0).fit(BASE)
    b = KMeans(2, random_state=0).fit(BASE * scale)
    assert_array_equal(a.labels_, b.labels_)
    assert_allclose(b.cluster_centers_ / scale, a.cluster_centers_, rtol=1e-9)
    assert_allclose(b.inertia_ / scale**2, a.inertia_, rtol=1e-9)


@pytest.mark.parametrize(
    "make",
    [lambda: BASE.tolist(), lambda: pd.DataFrame(BASE), _readonly, _noncontiguous],
    ids=["list", "DataFrame", "read-only", "non-contiguous"],
)
def test_kmeans_reencoded_input(make):
    a = KMeans(2, random_state=0).fit(BASE)
    b = KMeans(2, random_state=0).fit(make())
    assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    assert_array_equal(a.labels_, b.labels_)


# --- the data-dependent default prior (MAP-EM and fit_posterior) --------------------------

DEFAULT_PRIOR_CASES = [
    ("constant feature", lambda: np.c_[BASE[:, 0], np.full(200, 3.0)], r"feature\(s\) \[1\]"),
    ("collinear features", lambda: np.c_[BASE[:, 0], 2 * BASE[:, 0] + 1], r"collinear"),
    ("identical rows", lambda: np.full((200, 2), 1.5), r"feature\(s\) \[0, 1\]"),
]


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
@pytest.mark.parametrize(
    "make, pattern", [c[1:] for c in DEFAULT_PRIOR_CASES], ids=[c[0] for c in DEFAULT_PRIOR_CASES]
)
def test_default_prior_on_degenerate_data_gets_a_clear_error(make, pattern, covariance_type):
    """mclust's default prior takes its scale from cov(X); degenerate X made it singular and the
    error used to be about ``scale``, an argument the user never passed."""
    from bayesgmm import fit_posterior

    X = make()
    if covariance_type == "diag" and pattern == "collinear":
        # diag's default scale is the per-feature variances: collinearity is no problem.
        gm = _fit(X, "diag", prior="default")
        assert_valid_fit(gm, X)
        return
    with pytest.raises(ValueError) as excinfo:
        _fit(X, covariance_type, prior="default")
    assert_clear_error(excinfo, r"prior='default' builds its scale.*" + pattern)
    assert "Prior with an explicit" in str(excinfo.value)
    with pytest.raises(ValueError) as excinfo:
        fit_posterior(X, 2, covariance_type=covariance_type, num_chains=1, progress_bar=False)
    assert_clear_error(excinfo, r"prior='default' builds its scale")


def test_map_em_on_duplicated_points():
    X = np.repeat(BASE[:5], 40, axis=0)
    gm = _fit(X, "full", prior="default")
    assert_valid_fit(gm, X)
