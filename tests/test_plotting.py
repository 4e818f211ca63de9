"""Plots run headless (Agg), for every covariance type, and hold the expected artists."""

import matplotlib

matplotlib.use("Agg")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.patches import Circle, Ellipse  # noqa: E402

from bayesgmm import GaussianMixture, GMMParams, KMeans, Prior, datasets, density, plotting  # noqa: E402
from bayesgmm.covariance import get_covariance_type  # noqa: E402
from bayesgmm.selection import SelectionTable  # noqa: E402

K = 3
MEANS = np.array([[0.0, 0.0], [5.0, 1.0], [1.0, 6.0]])
FULL = np.array([[[2.0, 0.8], [0.8, 1.0]], [[0.5, -0.2], [-0.2, 1.5]], [[1.0, 0.0], [0.0, 0.3]]])
WEIGHTS = np.array([0.5, 0.3, 0.2])


@pytest.fixture(autouse=True)
def _draw_and_close_figures():
    yield
    # Render every figure a test made: some matplotlib errors (aspect with shared axes, bad
    # colours) only appear at draw time.
    for num in plt.get_fignums():
        plt.figure(num).canvas.draw()
    plt.close("all")


def params_of(covariance_type):
    """Fixed parameters of each type, from the same full matrices (no fitting: fast)."""
    cov = np.asarray(get_covariance_type(covariance_type).from_full(jnp.asarray(FULL)))
    return GMMParams(WEIGHTS, MEANS, cov, covariance_type)


@pytest.fixture(scope="module")
def data():
    X, _ = density.sample(jax.random.key(0), params_of("full"), 300)
    return np.asarray(X)


@pytest.fixture(scope="module")
def fitted(data):
    # One fitted estimator shared by the tests (each new model shape costs a compilation).
    return GaussianMixture(K, covariance_type="spherical", random_state=0).fit(data)


def ellipses(ax):
    return [p for p in ax.patches if isinstance(p, Ellipse)]


class _MeanOnly:
    """The part of the posterior interface plot_ellipses uses (mean_params)."""

    def __init__(self, params):
        self._p = params

    def mean_params(self):
        return self._p


@pytest.mark.parametrize("levels", [(1, 2, 3), (2,)])
def test_plot_ellipses_every_type_and_object(covariance_type, data, levels):
    params = params_of(covariance_type)
    for model in (params, _MeanOnly(params)):
        ax = plotting.plot_ellipses(model, data, levels=levels)
        assert isinstance(ax, Axes)
        es = ellipses(ax)
        assert len(es) == K * len(levels)
        # Opacity by weight: the heaviest component at max_alpha, the others in proportion.
        face_alpha = np.array([e.get_facecolor()[3] for e in es]).reshape(K, len(levels))
        np.testing.assert_allclose(face_alpha[:, 0], 0.35 * WEIGHTS / WEIGHTS.max())
        # Geometry: the 1-sd ellipse's axes are 2 sqrt(eigenvalues) of the covariance.
        cov = np.asarray(params.covariance_matrices())
        for k in range(K):
            vals = np.linalg.eigvalsh(cov[k])
            e = es[k * len(levels)]
            n = levels[0]
            assert e.width == pytest.approx(2 * n * np.sqrt(vals[1]))
            assert e.height == pytest.approx(2 * n * np.sqrt(vals[0]))
            np.testing.assert_allclose(e.center, MEANS[k])
        # The points, coloured by the most probable component.
        pts = ax.collections[0]
        assert pts.get_offsets().shape == (300, 2)
        labels = np.asarray(density.predict(data, params))
        colors = plotting.component_colors(K)
        np.testing.assert_allclose(pts.get_facecolors()[:, :3], colors[labels][:, :3])


def test_plot_ellipses_on_a_fitted_estimator_and_given_axes(data, fitted):
    gm = fitted
    fig, ax = plt.subplots()
    out = plotting.plot_ellipses(gm, data, ax=ax, labels=np.zeros(300, int), title="t")
    assert out is ax and ax.get_title() == "t"
    assert len(ellipses(ax)) == K * 3
    centres = np.array([e.center for e in ellipses(ax)[::3]])
    np.testing.assert_allclose(centres, gm.means_)


def test_ellipse_angle_follows_the_major_axis():
    p = GMMParams(np.ones(1), np.zeros((1, 2)), np.array([[[1.0, 0.9], [0.9, 1.0]]]), "full")
    e = ellipses(plotting.plot_ellipses(p, levels=[1]))[0]
    assert e.angle % 180 == pytest.approx(45.0)
    assert e.width == pytest.approx(2 * np.sqrt(1.9))


def test_plot_ellipses_projects_higher_dimensions():
    p = GMMParams(
        np.array([0.5, 0.5]), np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]), np.ones((2, 3)), "diag"
    )
    ax = plotting.plot_ellipses(p, levels=[1], dims=(2, 0))
    np.testing.assert_allclose(ellipses(ax)[1].center, [5.0, 3.0])


def test_plot_ellipses_rejects_bad_input(data):
    p = params_of("full")
    batched = jax.tree_util.tree_map(lambda a: jnp.stack([a, a]), p)
    with pytest.raises(ValueError, match="one set of parameters"):
        plotting.plot_ellipses(batched, data)
    with pytest.raises(ValueError, match="not fitted"):
        plotting.plot_ellipses(GaussianMixture(2), data)
    with pytest.raises(TypeError, match="fitted GaussianMixture"):
        plotting.plot_ellipses("model", data)
    with pytest.raises(ValueError, match="dims"):
        plotting.plot_ellipses(p, data, dims=(0, 0))
    with pytest.raises(ValueError, match="levels"):
        plotting.plot_ellipses(p, data, levels=[-1])
    one_d = GMMParams(np.ones(1), np.zeros((1, 1)), np.ones(1), "spherical")
    with pytest.raises(ValueError, match="plot_1d"):
        plotting.plot_ellipses(one_d)


def test_plot_kmeans_circles_reach_the_farthest_member(data):
    km = KMeans(K, random_state=0).fit(data)
    ax = plotting.plot_kmeans(km, data)
    circles = [p for p in ax.patches if isinstance(p, Circle)]
    assert len(circles) == K
    labels = km.predict(data)
    for k, c in enumerate(circles):
        far = np.linalg.norm(data[labels == k] - km.cluster_centers_[k], axis=1).max()
        assert c.radius == pytest.approx(far)
        np.testing.assert_allclose(c.center, km.cluster_centers_[k])


def one_d_params(covariance_type):
    cov = {"full": np.array([[[1.0]], [[0.5]]]), "tied": np.array([[0.8]])}
    cov["diag"] = np.array([[1.0], [0.5]])
    cov["spherical"] = np.array([1.0, 0.5])
    return GMMParams(
        np.array([0.6, 0.4]), np.array([[-2.0], [2.0]]), cov[covariance_type], covariance_type
    )


def test_plot_1d_components_sum_to_the_mixture(covariance_type):
    params = one_d_params(covariance_type)
    X = np.asarray(density.sample(jax.random.key(1), params, 500)[0])
    ax = plotting.plot_1d(params, X[:, 0])
    lines = ax.get_lines()
    assert len(lines) == 2 + 1
    comps = np.array([ln.get_ydata() for ln in lines[:2]])
    grid, mix = lines[2].get_xdata(), lines[2].get_ydata()
    np.testing.assert_allclose(comps.sum(0), mix, rtol=1e-10)
    # The mixture density against scipy, and its area close to one over the data range.
    from scipy.stats import norm

    sd = np.sqrt(np.asarray(params.covariance_matrices())[:, 0, 0])
    want = 0.6 * norm.pdf(grid, -2, sd[0]) + 0.4 * norm.pdf(grid, 2, sd[1])
    np.testing.assert_allclose(mix, want, rtol=1e-8)
    assert len(ax.patches) > 0  # the histogram bars
    assert len(plotting.plot_1d(params, components=False).get_lines()) == 1
    with pytest.raises(ValueError, match="one feature"):
        plotting.plot_1d(params_of("full"))


def test_em_path_matches_a_plain_fit_and_objective_plot():
    X, _ = datasets.three_gaussians(200, seed=0)
    kw = {"covariance_type": "spherical", "random_state": 3}
    path, objective = plotting.em_path(X, 3, [0, 4], **kw)
    gm = GaussianMixture(3, max_iter=4, tol=0.0, **kw)
    with pytest.warns(Warning):  # not converged after 4 iterations
        gm.fit(X)
    for a, b in zip(jax.tree_util.tree_leaves(path[4]), (gm.weights_, gm.means_, gm.covariances_)):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-10)
    np.testing.assert_allclose(objective[:4], gm.lower_bounds_, rtol=1e-10)
    assert np.all(np.diff(objective) >= -1e-12)  # EM never decreases its objective
    ax = plotting.plot_em_objective(gm)
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), gm.lower_bounds_)
    np.testing.assert_allclose(
        plotting.plot_em_objective(objective).get_lines()[0].get_ydata(), objective
    )
    with pytest.raises(TypeError, match="max_iter"):
        plotting.em_path(X, 3, [1], max_iter=3)


def test_plot_em_steps_small_multiples(data):
    axes = plotting.plot_em_steps(data, K, iterations=(0, 2, 1), covariance_type="spherical")
    assert len(axes) == 3
    assert [a.get_title().split()[1] for a in axes] == ["0", "1", "2"]
    for ax in axes:
        assert len(ellipses(ax)) == K * 3
    X1, _ = datasets.three_gaussians(200, seed=0)
    axes = plotting.plot_em_steps(X1, 3, iterations=(0, 1), covariance_type="spherical")
    assert all(len(ax.get_lines()) == 4 for ax in axes)


@pytest.mark.parametrize("n_features", [1, 2])
def test_animate_em_writes_a_gif_and_never_overwrites(tmp_path, n_features, data):
    from PIL import Image

    X = data if n_features == 2 else datasets.three_gaussians(200, seed=0)[0]
    path = tmp_path / "em.gif"
    anim = plotting.animate_em(X, K, n_frames=4, filename=path, covariance_type="spherical")
    assert path.exists()
    with Image.open(path) as im:
        assert im.n_frames == 4
    assert anim is not None
    with pytest.raises(FileExistsError, match="overwrite"):
        plotting.animate_em(X, K, n_frames=2, filename=path)


def test_plot_selection_one_line_per_type():
    rows = []
    types = ["full", "diag", "spherical"]
    for k in (1, 2, 3):
        for j, ct in enumerate(types):
            bic = 100.0 - 10 * k + j
            rows.append(
                {
                    "n_components": k,
                    "covariance_type": ct,
                    "bic": bic,
                    "aic": bic - 5,
                    "icl": bic + 1,
                    "log_likelihood": -bic / 2,
                    "collapsed": (k == 3 and j == 0),
                    "best": False,
                }
            )
    best_index = 7  # k=3, diag
    rows[best_index]["best"] = True
    table = SelectionTable(rows, "bic", "sklearn", best_index, {})
    for crit in ("bic", "aic", "icl"):
        ax = plotting.plot_selection(table, crit)
        lines = ax.get_lines()
        assert [ln.get_label() for ln in lines] == types
        np.testing.assert_allclose(
            lines[1].get_ydata(), [91.0, 81.0, 71.0] if crit == "bic" else lines[1].get_ydata()
        )
        # The collapsed point is left out of its line.
        assert np.isnan(lines[0].get_ydata()[2])
        star = ax.collections[-1]
        np.testing.assert_allclose(star.get_offsets()[0], [3, rows[best_index][crit]])
    with pytest.raises(ValueError, match="criterion"):
        plotting.plot_selection(table, "dic")


def test_plot_uncertainty_every_type(covariance_type, data):
    params = params_of(covariance_type)
    ax = plotting.plot_uncertainty(params, data)
    sc = ax.collections[0]
    want = 1 - np.asarray(density.predict_proba(data, params)).max(1)
    np.testing.assert_allclose(np.sort(sc.get_array()), np.sort(want))
    assert sc.get_offsets().shape == (300, 2)
    # Uncertain points are drawn bigger.
    sizes = sc.get_sizes()
    assert sizes[np.argmax(sc.get_array())] > sizes[np.argmin(sc.get_array())]
    X1 = np.linspace(-4, 4, 50)[:, None]
    ax1 = plotting.plot_uncertainty(one_d_params(covariance_type), X1, colorbar=False)
    assert ax1.collections[0].get_offsets().shape == (50, 2)


# --- posterior plots on a Posterior built from synthetic draws (no NUTS: fast) -----------------
@pytest.fixture(scope="module", params=["full", "spherical"])
def posterior(request, data):
    from bayesgmm.posterior import Posterior

    ct = request.param
    mp = params_of(ct)
    rng = np.random.default_rng(0)
    chains, draws = 2, 30
    w = np.tile(WEIGHTS, (chains, draws, 1))
    m = MEANS + 0.1 * rng.standard_normal((chains, draws, K, 2))
    c = np.broadcast_to(np.asarray(mp.covariances), (chains, draws) + mp.covariances.shape)
    # Switch labels at random in every draw: the plots must undo it (relabeling).
    perm = np.array([[rng.permutation(K) for _ in range(draws)] for _ in range(chains)])
    w = np.take_along_axis(w, perm, axis=-1)
    m = np.take_along_axis(m, perm[..., None], axis=-2)
    if ct == "full":
        c = np.take_along_axis(c, perm[..., None, None], axis=-3)
    draws_p = GMMParams(w, m, np.array(c), ct)
    return Posterior(
        draws_p, X=data, prior=Prior.default(data, K, ct), map_params=mp, relabeled=False
    )


def test_plot_posterior_ellipses(posterior):
    ax3 = plotting.plot_posterior_ellipses(posterior, n_draws=10, levels=(1, 2, 3))
    assert len(ellipses(ax3)) == K * 3 + 10 * K
    ax = plotting.plot_posterior_ellipses(posterior, n_draws=10)  # MAP-EM at the draws' level
    es = ellipses(ax)
    assert len(es) == K + 10 * K
    for k in range(K):  # MAP-EM first, at 2 sd
        vals = np.linalg.eigvalsh(np.asarray(posterior.map_params.covariance_matrices())[k])
        assert es[k].width == pytest.approx(2 * 2 * np.sqrt(vals[1]))
    # Relabeled: each faint ellipse sits near the MAP-EM mean of its colour's component.
    colors = plotting.component_colors(K)
    for e in es[K:]:
        k = int(np.argmin(np.abs(colors[:, :3] - np.asarray(e.get_edgecolor())[:3]).sum(1)))
        assert np.linalg.norm(np.asarray(e.center) - MEANS[k]) < 0.6


def test_plot_posterior_ellipses_on_axes_that_already_hold_patches(posterior):
    # A patch of the caller's comes first in ax.patches: it keeps its style, and every
    # MAP-EM outline (K components x 2 levels) is the bold dashed one.
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    _, ax = plt.subplots()
    mine = Rectangle((0, 0), 1, 1, lw=0.5, linestyle="-", edgecolor="r")
    ax.add_patch(mine)
    plotting.plot_posterior_ellipses(posterior, n_draws=5, levels=(1, 2), ax=ax)
    assert mine.get_linewidth() == 0.5 and mine.get_linestyle() == "-"
    styled = [p for p in ax.patches if p.get_linestyle() == "--"]
    assert len(styled) == K * 2
    assert all(p.get_linewidth() == 2.0 and p.zorder == 3 for p in styled)
    vals = np.linalg.eigvalsh(np.asarray(posterior.map_params.covariance_matrices()))
    widths = sorted(p.width for p in styled)
    want = sorted(2 * n * np.sqrt(v[1]) for v in vals for n in (1, 2))
    assert widths == pytest.approx(want)
    plt.close(ax.figure)


def test_plot_em_vs_posterior(posterior):
    axes = plotting.plot_em_vs_posterior(posterior, which=("weights", "means"))
    assert len(axes) == K + K * 2
    for ax in axes:
        name = ax.get_title()
        marked = ax.get_lines()[-1].get_xdata()[0]
        if name.startswith("weight"):
            k = int(name[7])
            assert marked == pytest.approx(WEIGHTS[k])
        else:
            k, j = int(name[5]), int(name[7])
            assert marked == pytest.approx(MEANS[k, j])
            # The relabeled posterior density peaks near the MAP-EM value.
            x, y = ax.get_lines()[0].get_data()
            assert abs(x[np.argmax(y)] - MEANS[k, j]) < 0.2
    with pytest.raises(ValueError, match="which"):
        plotting.plot_em_vs_posterior(posterior, which=("nope",))


def test_plot_real_vs_synthetic(posterior, data, fitted):
    gm = fitted
    axes = plotting.plot_real_vs_synthetic(data, gm, posterior, n_samples=100)
    assert len(axes) == 3
    assert axes[0].collections[0].get_offsets().shape == (300, 2)
    assert axes[1].collections[0].get_offsets().shape == (100, 2)
    assert axes[2].collections[0].get_offsets().shape == (100, 2)
    assert len(plotting.plot_real_vs_synthetic(data, gm)) == 2


def test_import_bayesgmm_loads_no_pyplot():
    import subprocess
    import sys

    code = (
        "import sys, bayesgmm; assert 'matplotlib.pyplot' not in sys.modules; "
        "from bayesgmm import plotting; assert 'matplotlib.pyplot' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_max_iter_zero_returns_the_initial_parameters():
    # em_path's iteration 0 relies on max_iter=0 (a fix in em.driver._start_state: the loop body is
    # traced even when it never runs, and indexed an empty objective history).
    w, m, prec = np.array([0.4, 0.6]), np.array([[-1.0], [2.0]]), np.array([2.0, 0.5])
    X, _ = datasets.three_gaussians(100, seed=0)
    gm = GaussianMixture(
        2,
        covariance_type="spherical",
        max_iter=0,
        weights_init=w,
        means_init=m,
        precisions_init=prec,
    ).fit(X)
    assert gm.n_iter_ == 0 and gm.lower_bounds_.shape == (0,)
    np.testing.assert_allclose(gm.weights_, w)
    np.testing.assert_allclose(gm.means_, m)
    np.testing.assert_allclose(gm.covariances_, 1 / prec)
