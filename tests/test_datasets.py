"""The teaching data sets: seeded, documented shapes, the intended geometry."""

import numpy as np
import pytest

from bayesgmm import datasets

MAKERS = {
    "blobs": (datasets.blobs, 2),
    "stretched_blobs": (datasets.stretched_blobs, 2),
    "three_gaussians": (datasets.three_gaussians, 1),
    "two_moons": (datasets.two_moons, 2),
}


@pytest.mark.parametrize("name", list(MAKERS))
def test_reproducible_from_seed_and_documented_shapes(name):
    make, n_features = MAKERS[name]
    X1, y1 = make(301, seed=3)
    X2, y2 = make(301, seed=3)
    X3, _ = make(301, seed=4)
    assert X1.shape == (301, n_features) and y1.shape == (301,)
    assert y1.dtype.kind == "i"
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.allclose(X1, X3)
    # A Generator seed works too and equals the int seed's stream.
    X4, _ = make(301, seed=np.random.default_rng(3))
    np.testing.assert_array_equal(X1, X4)


def test_blobs_centres_spread_and_sizes():
    X, y = datasets.blobs(5000, cluster_std=0.5, seed=0)
    assert np.bincount(y).tolist() == [1000] * 5
    for k, c in enumerate(datasets.FIVE_CENTERS):
        # 1000 points per blob: the sample mean is within 4 standard errors (4 * 0.5/sqrt(1000)).
        np.testing.assert_allclose(X[y == k].mean(0), c, atol=4 * 0.5 / np.sqrt(1000))
        np.testing.assert_allclose(X[y == k].std(0), 0.5, rtol=0.1)


def test_blobs_proportions_and_random_centres():
    _, y = datasets.blobs(100, centers=[[0, 0], [5, 5]], proportions=[3, 1], seed=0)
    assert np.bincount(y).tolist() == [75, 25]
    X, y = datasets.blobs(90, centers=3, seed=0)
    assert X.shape == (90, 2) and set(y.tolist()) == {0, 1, 2}


def test_stretched_blobs_is_a_linear_map_of_blobs():
    A = np.array([[0.6, -0.6], [-0.4, 0.8]])
    Xs, ys = datasets.stretched_blobs(200, transform=A, seed=5)
    Xb, yb = datasets.blobs(200, seed=5)
    np.testing.assert_allclose(Xs, Xb @ A)
    np.testing.assert_array_equal(ys, yb)


def test_three_gaussians_moments():
    X, y = datasets.three_gaussians(3000, seed=1)
    for k, (m, s) in enumerate(zip((-4.0, 0.0, 5.0), (1.0, 0.7, 1.5))):
        # 1000 points each: mean within 4 standard errors, sd within 10 %.
        assert abs(X[y == k, 0].mean() - m) < 4 * s / np.sqrt(1000)
        assert abs(X[y == k, 0].std() / s - 1) < 0.1


def test_two_moons_matches_scikit_learn_without_noise():
    from sklearn.datasets import make_moons

    X, y = datasets.two_moons(101, noise=0.0, seed=0)
    Xs, ys = make_moons(101, noise=0.0, shuffle=False)
    for label in (0, 1):
        a = X[y == label]
        b = Xs[ys == label]
        assert a.shape == b.shape
        # Same set of points: every point of one has an exact partner in the other.
        gaps = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
        assert gaps.min(axis=1).max() < 1e-12 and gaps.min(axis=0).max() < 1e-12


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: datasets.blobs(0), ValueError, "n_samples"),
        (lambda: datasets.blobs(10.5), TypeError, "n_samples"),
        (lambda: datasets.blobs(10, cluster_std=-1), ValueError, "cluster_std"),
        (lambda: datasets.blobs(10, centers=[1, 2]), ValueError, "centers"),
        (lambda: datasets.blobs(10, proportions=[1, 2]), ValueError, "proportions"),
        (lambda: datasets.blobs(10, seed=-1), TypeError, "seed"),
        (lambda: datasets.stretched_blobs(10, transform=np.eye(3)), ValueError, "transform"),
        (lambda: datasets.two_moons(10, noise=-0.1), ValueError, "noise"),
        (lambda: datasets.three_gaussians(10, means=[0, 1], stds=[1]), ValueError, "stds"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_faithful_is_r_datasets_faithful():
    X = datasets.faithful()
    assert X.shape == (272, 2) and X.dtype == np.float64
    assert datasets.FAITHFUL_COLUMNS == ("eruptions", "waiting")
    # R: head(faithful, 2), tail(faithful, 1) and colMeans(faithful).
    np.testing.assert_array_equal(X[:2], [[3.6, 79.0], [1.8, 54.0]])
    np.testing.assert_array_equal(X[-1], [4.467, 74.0])
    np.testing.assert_allclose(X.mean(axis=0), [3.487783, 70.897059], atol=5e-7)
    # waiting is whole minutes; eruptions has at most three decimals.
    assert np.all(X[:, 1] == np.round(X[:, 1]))
    np.testing.assert_allclose(X[:, 0], np.round(X[:, 0], 3), atol=1e-12)
    # A fresh array each call.
    X[0, 0] = -1.0
    assert datasets.faithful()[0, 0] == 3.6


def test_faithful_csv_is_package_data():
    # The file sits inside the package and pyproject's package-data globs take it into the
    # wheel (setuptools builds the wheel from exactly these globs).
    import fnmatch
    import tomllib
    from pathlib import Path

    import bayesgmm

    package = Path(bayesgmm.__file__).parent
    assert (package / "data" / "faithful.csv").is_file()
    config = tomllib.loads((package.parent / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["bayesgmm"]
    assert any(fnmatch.fnmatch("data/faithful.csv", g) for g in globs)
