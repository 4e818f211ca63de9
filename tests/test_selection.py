"""Model selection: BIC/AIC/ICL over (n_components, covariance_type), collapsed fits refused."""

import numpy as np
import pytest

from bayesgmm import GaussianMixture, select
from bayesgmm.selection import information_criteria, is_collapsed

# The compile of one EM shape dominates these tests, so the grids stay small and k-means++
# seeding (cheaper to compile than a full k-means initialisation) with 3 restarts is used.
FIT = {"init_params": "k-means++", "n_init": 3}


@pytest.fixture(scope="module")
def diag_data():
    """Three axis-aligned clusters with unequal variances per feature: 'diag' is the truth
    (spherical cannot fit the unequal variances, full spends parameters on zero correlation)."""
    rng = np.random.default_rng(0)
    return np.concatenate(
        [
            rng.normal([0.0, 0.0], [1.0, 0.3], (200, 2)),
            rng.normal([6.0, 0.0], [0.3, 1.2], (200, 2)),
            rng.normal([0.0, 6.0], [0.8, 0.4], (200, 2)),
        ]
    )


def _sklearn_twin(model):
    """scikit-learn's GaussianMixture holding our fitted parameters (an independent BIC/AIC)."""
    from sklearn.mixture import GaussianMixture as SkGM

    sk = SkGM(model.n_components, covariance_type=model.covariance_type)
    sk.weights_ = model.weights_
    sk.means_ = model.means_
    sk.covariances_ = model.covariances_
    sk.precisions_cholesky_ = model.precisions_cholesky_
    sk.n_features_in_ = model.n_features_in_
    return sk


def test_select_picks_true_number_of_components(diag_data):
    table, best = select(diag_data, n_components=[2, 3, 4], covariance_types=["diag"], **FIT)
    assert best.n_components == 3 and best.covariance_type == "diag"
    assert table["best"].tolist() == [False, True, False]
    assert len(table) == 3 and not table["collapsed"].any()


def test_select_picks_true_covariance_type_and_matches_bic_aic(diag_data):
    types = ["full", "tied", "diag", "spherical"]
    table, best = select(diag_data, n_components=[3], covariance_types=types, **FIT)
    assert best.covariance_type == "diag" and best.n_components == 3
    assert table.best["covariance_type"] == "diag"
    for row in table:
        model = table.models[(row["n_components"], row["covariance_type"])]
        # Our estimator's own bic/aic, and scikit-learn's at the same parameters.
        assert row["bic"] == pytest.approx(model.bic(diag_data), rel=1e-10)
        assert row["aic"] == pytest.approx(model.aic(diag_data), rel=1e-10)
        sk = _sklearn_twin(model)
        assert row["bic"] == pytest.approx(sk.bic(diag_data), rel=1e-10)
        assert row["aic"] == pytest.approx(sk.aic(diag_data), rel=1e-10)
        resp = sk.predict_proba(diag_data)
        entropy = -np.sum(resp * np.log(np.clip(resp, 1e-300, None)))
        assert row["entropy"] == pytest.approx(entropy, rel=1e-6, abs=1e-8)
        assert row["icl"] == pytest.approx(row["bic"] + 2 * entropy, rel=1e-10)
        assert row["log_likelihood"] == pytest.approx(model.score(diag_data) * 600, rel=1e-10)
    # The BIC of the chosen model is the smallest in the table.
    assert table.best["bic"] == np.nanmin(table["bic"])
    assert best.bic(diag_data) == pytest.approx(table.best["bic"], rel=1e-12)


def test_mclust_convention_flips_signs_not_the_choice(diag_data):
    kw = {"n_components": [2, 3], "covariance_types": ["diag"], **FIT}
    t_sk, b_sk = select(diag_data, **kw)
    t_mc, b_mc = select(diag_data, convention="mclust", **kw)
    for c in ("bic", "aic", "icl"):
        np.testing.assert_allclose(t_mc[c], -t_sk[c], rtol=1e-12)
    assert b_mc.n_components == b_sk.n_components == 3
    # mclust's BIC is 2 loglik - npar log n.
    row = t_mc.best
    assert row["bic"] == pytest.approx(
        2 * row["log_likelihood"] - row["n_parameters"] * np.log(600), rel=1e-12
    )


def test_icl_criterion_prefers_fewer_overlapping_components():
    # Two heavily overlapping Gaussians with different spreads: BIC counts density and takes
    # 2 components, ICL's entropy penalty for the overlap sends it back to 1.
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(0, 1, (1500, 1)), rng.normal(0, 4, (1500, 1))])
    grid = {"n_components": [1, 2], "covariance_types": ["spherical"], **FIT}
    _, by_bic = select(X, criterion="bic", **grid)
    _, by_icl = select(X, criterion="icl", **grid)
    assert by_bic.n_components == 2
    assert by_icl.n_components == 1


def test_collapsed_component_is_flagged_and_never_chosen():
    # 300 normal points plus 30 copies of one value far away: a second component sits on the
    # copies with variance at the reg_covar floor, an unbounded likelihood spike.
    rng = np.random.default_rng(2)
    X = np.concatenate([rng.normal(0, 1, (300, 1)), np.full((30, 1), 10.0)])
    table, best = select(X, n_components=[1, 2], covariance_types=["spherical"], **FIT)
    k1, k2 = table[0], table[1]
    assert not k1["collapsed"] and k2["collapsed"]
    # Without the flag the spike would have won BIC by a wide margin ...
    assert k2["bic"] < k1["bic"] - 100
    # ... and it is refused.
    assert best.n_components == 1 and table.best_index == 0
    model = table.models[(2, "spherical")]
    assert np.min(model.covariances_) <= 10 * model.reg_covar


def test_is_collapsed_on_a_component_with_too_few_points():
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(0, 1, (200, 2)), [[30.0, 30.0], [30.5, 29.0]]])
    gm = GaussianMixture(2, covariance_type="diag", init_params="k-means++", random_state=0)
    gm.fit(X)
    # 2 points carry the far component: fewer than n_features + 1 = 3.
    assert np.sort(gm.weights_ * len(X))[0] == pytest.approx(2, abs=1e-6)
    assert is_collapsed(gm, len(X))
    assert not is_collapsed(gm, len(X), min_count=1, collapse_factor=0.0)


def test_table_printing_pandas_and_columns(diag_data):
    table, _ = select(diag_data, n_components=[2, 3], covariance_types=["diag"], **FIT)
    text = str(table)
    assert "lower is better" in text and text.count("*") >= 1
    assert "bic" in repr(table) and "K=3" in repr(table)
    df = table.to_pandas()
    assert list(df.columns) == list(table.columns)
    np.testing.assert_allclose(df["bic"].to_numpy(), table["bic"])
    assert table.pivot("bic").shape == (2, 1)
    assert table.n_components == [2, 3] and table.covariance_types == ["diag"]
    with pytest.raises(KeyError, match="no column"):
        table["nope"]
    info = information_criteria(table.models[(3, "diag")], diag_data)
    assert info["bic"] == pytest.approx(table[1]["bic"])


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"criterion": "dic"}, ValueError, "criterion"),
        ({"convention": "r"}, ValueError, "convention"),
        ({"n_components": [0]}, ValueError, "n_components"),
        ({"n_components": []}, ValueError, "n_components"),
        ({"covariance_types": ["round"]}, ValueError, "covariance_types"),
        ({"covariance_type": "full"}, TypeError, "covariance_types"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    X = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(exc, match=match):
        select(X, **kwargs)
