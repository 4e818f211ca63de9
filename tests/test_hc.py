"""Model-based hierarchical clustering (bayesgmm.hc) and ``init_params="hc"``."""

import itertools

import numpy as np
import pytest

from bayesgmm import GaussianMixture, datasets
from bayesgmm.hc import hc, transform


def _criterion(points, alpha, beta):
    """mclust's VVV term of one cluster, from its points: n log(det(W/n) [n > p] +
    beta (tr W + alpha) / n)."""
    n, p = points.shape
    dev = points - points.mean(axis=0)
    W = dev.T @ dev
    det = np.linalg.det(W / n) if n > p else 0.0
    return n * np.log(det + beta * (np.trace(W) + alpha) / n)


def _brute_force_merges(Z, alpha_factor=1.0, beta=1.0):
    """The merge sequence by recomputing every pair's cost from its points at every step (a
    plain transcription of the definition, sharing nothing with bayesgmm.hc)."""
    m, p = Z.shape
    alpha = alpha_factor * np.sum((Z - Z.mean(axis=0)) ** 2) / (m * p)
    clusters = {i: [i] for i in range(m)}
    merges, costs = [], []
    while len(clusters) > 1:
        best = None
        for a, b in itertools.combinations(sorted(clusters), 2):
            cost = (
                _criterion(Z[clusters[a] + clusters[b]], alpha, beta)
                - _criterion(Z[clusters[a]], alpha, beta)
                - _criterion(Z[clusters[b]], alpha, beta)
            )
            if best is None or cost < best[0]:  # ties: the first pair in (a, b) order
                best = (cost, a, b)
        cost, a, b = best
        clusters[a] += clusters.pop(b)
        merges.append((a, b))
        costs.append(cost)
    return np.array(merges), np.array(costs)


@pytest.mark.parametrize(("n", "p", "seed"), [(14, 1, 0), (16, 2, 1), (15, 3, 2), (12, 5, 3)])
def test_merge_sequence_equals_brute_force(n, p, seed):
    # Two loose groups, so that clusters grow past p points (where the determinant counts)
    # while others stay small (where only the trace term does).
    rng = np.random.default_rng(seed)
    Z = np.concatenate([rng.normal(0, 1, (n // 2, p)), rng.normal(3, 0.7, (n - n // 2, p))])
    tree = hc(Z, use="VARS")
    merges, costs = _brute_force_merges(Z)
    np.testing.assert_array_equal(tree.merges, merges)
    np.testing.assert_allclose(tree.costs, costs, rtol=1e-9, atol=1e-9)


def test_alpha_and_beta_enter_as_documented():
    rng = np.random.default_rng(4)
    Z = rng.normal(size=(13, 2)) * [1.0, 3.0]
    tree = hc(Z, use="VARS", alpha=0.3, beta=2.0)
    merges, costs = _brute_force_merges(Z, alpha_factor=0.3, beta=2.0)
    np.testing.assert_array_equal(tree.merges, merges)
    np.testing.assert_allclose(tree.costs, costs, rtol=1e-9, atol=1e-9)
    assert tree.alpha == pytest.approx(0.3 * np.sum((Z - Z.mean(0)) ** 2) / (13 * 2))


def test_svd_transform_is_the_square_root_of_the_standardised_gram_matrix():
    # Z = U sqrt(S) for X_std = U S V^T, so Z Z^T = U S U^T, the PSD square root of
    # X_std X_std^T = U S^2 U^T: a check
    # that does not depend on the signs of the singular vectors.
    rng = np.random.default_rng(5)
    X = rng.normal(size=(30, 3)) @ [[2.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.2]] + 7.0
    Xs = (X - X.mean(0)) / X.std(0, ddof=1)
    Z = transform(X, "SVD")
    lam, V = np.linalg.eigh(Xs @ Xs.T)
    lam[lam < 1e-10 * lam.max()] = 0.0  # rank 3: the other 27 eigenvalues are rounding
    root = (V * np.sqrt(lam)) @ V.T
    np.testing.assert_allclose(Z @ Z.T, root, atol=1e-9)
    np.testing.assert_allclose(transform(X, "STD"), Xs, rtol=1e-12)
    np.testing.assert_array_equal(transform(X, "VARS"), X)
    # A constant column carries nothing and is dropped.
    assert transform(np.column_stack([X, np.ones(30)]), "SVD").shape == (30, 3)


def test_the_default_tree_is_built_on_the_svd_scaled_data():
    X = datasets.faithful()[:40]
    np.testing.assert_array_equal(hc(X).merges, hc(transform(X, "SVD"), use="VARS").merges)
    # Rescaling a column changes nothing after the standardisation.
    np.testing.assert_array_equal(hc(X * [60.0, 1.0]).merges, hc(X).merges)


def test_partitions_are_nested_and_labelled_by_first_row():
    X = datasets.faithful()
    tree = hc(X)
    previous = None
    for k in range(1, 12):
        labels = tree.labels(k)
        assert labels.shape == (272,) and labels.dtype == np.int64
        assert sorted(set(labels.tolist())) == list(range(k))
        # Cluster 0 holds row 0, and each new label first appears after the previous one.
        firsts = [int(np.flatnonzero(labels == j)[0]) for j in range(k)]
        assert firsts == sorted(firsts) and firsts[0] == 0
        if previous is not None:
            # Every cluster at k lies inside one cluster at k - 1 (one merge apart).
            for j in range(k):
                assert len(set(previous[labels == j].tolist())) == 1
        previous = labels
    assert tree.labels(272).tolist() == list(range(272))


def test_separated_clusters_are_recovered_exactly():
    rng = np.random.default_rng(6)
    sizes = [60, 45, 30]
    centres = [[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]
    X = np.concatenate([rng.normal(c, 1.0, (s, 2)) for c, s in zip(centres, sizes)])
    truth = np.repeat([0, 1, 2], sizes)
    np.testing.assert_array_equal(hc(X).labels(3), truth)


def test_identical_rows_merge_first():
    # Two identical points merge at -2 log 2 (the trace term falls from alpha to alpha / 2 per
    # point); any other pair costs more.
    X = np.array([[0.0, 0.0], [1.0, 2.0], [0.0, 0.0], [5.0, -1.0], [3.0, 3.0]])
    tree = hc(X)
    assert tree.merges[0].tolist() == [0, 2]
    assert tree.costs[0] == pytest.approx(-2 * np.log(2), rel=1e-12)
    assert np.all(tree.costs[1:] > tree.costs[0])


def test_deterministic():
    X = datasets.faithful()
    a, b = hc(X), hc(X)
    np.testing.assert_array_equal(a.merges, b.merges)
    np.testing.assert_array_equal(a.costs, b.costs)


def test_subsample_above_max_samples():
    rng = np.random.default_rng(7)
    truth = np.repeat([0, 1], [150, 110])
    X = np.concatenate([rng.normal(0, 1, (150, 3)), rng.normal(8, 1, (110, 3))])
    tree = hc(X, max_samples=80, seed=3)
    assert tree.rows.shape == (80,) and np.all(np.diff(tree.rows) > 0)
    assert tree.merges.shape == (79, 2)
    labels = tree.labels(2)
    assert labels.shape == (260,)
    # The other rows go to the cluster they belong to; with separated clusters, all of them.
    assert np.array_equal(labels, truth) or np.array_equal(labels, 1 - truth)
    # The subsample's own labels are its tree's, and another seed draws another subsample.
    sub = hc(X[tree.rows], max_samples=None).labels(2)
    np.testing.assert_array_equal(labels[tree.rows], sub)
    assert not np.array_equal(hc(X, max_samples=80, seed=4).rows, tree.rows)
    assert hc(X, max_samples=None).rows.shape == (260,)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda X: hc(X, use="PCA"), ValueError, "use must be one of"),
        (lambda X: hc(X, alpha=0.0), ValueError, "alpha and beta"),
        (lambda X: hc(X[:, 0]), ValueError, "2-D"),
        (lambda X: hc(X, max_samples=1), ValueError, "max_samples"),
        (lambda X: hc(X, max_samples=2.5), TypeError, "max_samples"),
        (lambda X: hc(X).labels(0), ValueError, "n_clusters"),
        (lambda X: hc(X).labels(21), ValueError, "n_clusters"),
        (lambda X: hc(X, max_samples=10).labels(11), ValueError, "between 1 and 10"),
    ],
)
def test_bad_input(call, exc, match):
    X = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(exc, match=match):
        call(X)


# --- GaussianMixture(init_params="hc") ------------------------------------------------------


def test_hc_start_is_the_m_step_of_the_hc_partition(covariance_type):
    # max_iter=0 returns the start: weights, means and covariances of the hc partition's
    # classes (maximum likelihood, plus reg_covar on the diagonal), computed here in NumPy.
    X = datasets.faithful()
    labels = hc(X).labels(3)
    reg = 1e-6
    gm = GaussianMixture(
        3, covariance_type=covariance_type, init_params="hc", max_iter=0, reg_covar=reg
    ).fit(X)
    counts = np.bincount(labels)
    means = np.array([X[labels == k].mean(0) for k in range(3)])
    full = np.array([np.cov(X[labels == k].T, bias=True) for k in range(3)])
    expected = {
        "full": full + reg * np.eye(2),
        "tied": np.einsum("k,kij->ij", counts, full) / len(X) + reg * np.eye(2),
        "diag": np.diagonal(full, axis1=1, axis2=2) + reg,
        "spherical": np.diagonal(full, axis1=1, axis2=2).mean(1) + reg,
    }[covariance_type]
    np.testing.assert_allclose(gm.weights_, counts / len(X), rtol=1e-12)
    np.testing.assert_allclose(gm.means_, means, rtol=1e-12)
    np.testing.assert_allclose(gm.covariances_, expected, rtol=1e-10)


def test_hc_init_fits_every_type_and_is_deterministic(covariance_type):
    X = datasets.faithful()
    kw = dict(covariance_type=covariance_type, init_params="hc", tol=1e-8, max_iter=1000)
    a = GaussianMixture(3, random_state=0, **kw).fit(X)
    b = GaussianMixture(3, random_state=1, n_init=2, **kw).fit(X)
    assert a.converged_
    # The tree ignores the seed, and its restarts all start alike.
    np.testing.assert_array_equal(a.means_, b.means_)
    if covariance_type == "tied":
        # From the hc start, EM reaches mclust's EEE optimum for these data (-1126.326).
        # mclust stops at its relative tolerance 1e-5, about 0.01 below the optimum that this
        # tol=1e-8 run reaches (-1126.316), hence 0.05; the next optimum EM finds from other
        # starts is -1140.55 (scikit-learn's and bayesgmm's k-means starts).
        assert a.score(X) * len(X) == pytest.approx(-1126.326, abs=0.05)


def test_bad_init_params_lists_the_values():
    X = datasets.faithful()
    with pytest.raises(ValueError, match=r"init_params must be one of .*'kmeans'.*'hc'"):
        GaussianMixture(2, init_params="hclust").fit(X)
