"""Figures of Gaussian mixtures: ellipses, k-means circles, 1-D densities, the EM path, model
selection curves, assignment uncertainty and posterior overlays.

Every function draws on the ``ax`` it is given (a new figure's axes when ``ax`` is None) and
returns it; nothing is shown or saved unless asked (:func:`animate_em` saves only when given a
file name, and never over an existing file unless ``overwrite=True``). Any fitted object works
where a model is expected: a fitted :class:`~bayesgmm.GaussianMixture`, one set of
:class:`~bayesgmm.GMMParams`, or a posterior (its :meth:`mean_params`). Covariances are drawn
from :meth:`GMMParams.covariance_matrices`, so every covariance type is drawn the same way; all
densities come from :mod:`bayesgmm.density`.

matplotlib's ``pyplot`` is imported only inside functions that need a new figure, so importing
this module needs no display.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgba
from matplotlib.patches import Circle, Ellipse

from . import density
from .params import GMMParams

__all__ = [
    "as_params",
    "component_colors",
    "plot_ellipses",
    "plot_kmeans",
    "plot_1d",
    "plot_em_objective",
    "em_path",
    "plot_em_steps",
    "animate_em",
    "plot_selection",
    "plot_uncertainty",
    "plot_posterior_ellipses",
    "plot_em_vs_posterior",
    "plot_real_vs_synthetic",
]

LEVELS = (1.0, 2.0, 3.0)


# --- helpers ---------------------------------------------------------------------------------
def as_params(model) -> GMMParams:
    """One set of mixture parameters from any fitted object.

    Parameters
    ----------
    model : GaussianMixture (fitted), GMMParams without batch axes, or a posterior
        A posterior (anything with ``mean_params()``) gives its posterior-mean parameters.

    Returns
    -------
    GMMParams
    """
    if isinstance(model, GMMParams):
        if model.batch_shape:
            raise ValueError(
                "model must be one set of parameters; got GMMParams with batch shape "
                f"{model.batch_shape} (index one draw, or use posterior.mean_params())"
            )
        return model
    params = getattr(model, "params_", None)
    if isinstance(params, GMMParams):
        return params
    if callable(getattr(model, "mean_params", None)):
        return model.mean_params()
    if hasattr(model, "fit") and hasattr(model, "n_components"):
        raise ValueError(f"{type(model).__name__} is not fitted yet; call fit first")
    raise TypeError(
        "model must be a fitted GaussianMixture, a GMMParams or a posterior; "
        f"got {type(model).__name__}"
    )


def component_colors(n_components: int) -> np.ndarray:
    """One RGBA colour per component, shape (n_components, 4) (tab10, then tab20, then hsv)."""
    from matplotlib import colormaps

    if n_components <= 10:
        cmap, idx = colormaps["tab10"], np.arange(n_components)
        return cmap(idx)
    if n_components <= 20:
        return colormaps["tab20"](np.arange(n_components))
    return colormaps["hsv"](np.linspace(0, 1, n_components, endpoint=False))


def _new_axes(ax, **kw):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(**kw)
    return ax


def _new_grid(n_panels, ncols, panel_size=(3.2, 3.0), **kw):
    import matplotlib.pyplot as plt

    ncols = max(1, min(ncols, n_panels))
    nrows = -(-n_panels // ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(panel_size[0] * ncols, panel_size[1] * nrows),
        squeeze=False,
        layout="constrained",
        **kw,
    )
    for extra in axes.ravel()[n_panels:]:
        extra.set_visible(False)
    return axes.ravel()[:n_panels]


def _check_X(X, n_features=None, name="X"):
    from ._validation import check_data

    return check_data(X, name=name, n_features=n_features)


def _check_dims(dims, n_features):
    dims = tuple(int(i) for i in dims)
    if len(dims) != 2 or len(set(dims)) != 2 or not all(0 <= i < n_features for i in dims):
        raise ValueError(
            f"dims must be two different feature indices below n_features={n_features}; got {dims}"
        )
    return list(dims)


def _levels(levels):
    levels = np.atleast_1d(np.asarray(levels, dtype=float))
    if levels.ndim != 1 or levels.size == 0 or np.any(levels <= 0):
        raise ValueError(f"levels must be positive numbers of standard deviations; got {levels}")
    return levels


def _ellipse_geometry(cov2):
    """Width/height per unit standard deviation and angle (degrees) of (..., 2, 2) matrices."""
    vals, vecs = np.linalg.eigh(cov2)
    vals = np.clip(vals, 0.0, None)
    # eigh sorts ascending: the last eigenvector is the major axis.
    angle = np.degrees(np.arctan2(vecs[..., 1, -1], vecs[..., 0, -1]))
    return 2.0 * np.sqrt(vals[..., -1]), 2.0 * np.sqrt(vals[..., 0]), angle


def _add_ellipses(ax, means2, cov2, colors, alphas, levels, *, fill=True, lw=1.0, zorder=1):
    """Draw one ellipse per (component, level); returns the patches."""
    width, height, angle = _ellipse_geometry(cov2)
    patches = []
    for k in range(len(means2)):
        for n in levels:
            e = Ellipse(
                xy=means2[k],
                width=n * width[k],
                height=n * height[k],
                angle=angle[k],
                facecolor=to_rgba(colors[k], alphas[k] if fill else 0.0),
                edgecolor=to_rgba(colors[k], min(1.0, 0.4 + alphas[k]) if fill else alphas[k]),
                lw=lw,
                zorder=zorder,
            )
            ax.add_patch(e)
            patches.append(e)
    return patches


def _scatter_labels(ax, X2, labels, colors, s=8, **kw):
    labels = np.asarray(labels)
    c = colors[labels % len(colors)] if labels.size else colors[:0]
    kw.setdefault("alpha", 0.75)
    kw.setdefault("linewidths", 0)
    return ax.scatter(X2[:, 0], X2[:, 1], c=c, s=s, zorder=2, **kw)


def _predict(params, X):
    return np.asarray(density.predict(np.asarray(X, dtype=np.asarray(params.means).dtype), params))


# --- mixtures and k-means -----------------------------------------------------------------------
def plot_ellipses(
    model,
    X=None,
    labels=None,
    *,
    ax=None,
    levels=LEVELS,
    dims=(0, 1),
    max_alpha=0.35,
    show_means=True,
    point_size=8,
    title=None,
):
    """Mixture components as ellipses at 1, 2 and 3 standard deviations over the data.

    Each component is drawn ``len(levels)`` times, filled with an opacity proportional to its
    weight (the heaviest at ``max_alpha``), in the colour of the points assigned to it.

    Parameters
    ----------
    model : fitted GaussianMixture, GMMParams, or posterior
    X : array of shape (n_samples, n_features), optional
        Points to draw underneath.
    labels : int array of shape (n_samples,), optional
        Colour of each point; default the model's most probable component.
    ax : matplotlib Axes, optional
    levels : sequence of float, default (1, 2, 3)
        Radii in standard deviations (Mahalanobis distance).
    dims : (int, int), default (0, 1)
        Features to draw; the ellipses are the exact 2-D marginals of the components.
    max_alpha : float, default 0.35
    show_means : bool, default True
    point_size : float, default 8
    title : str, optional

    Returns
    -------
    ax : matplotlib Axes
        Holding ``n_components * len(levels)`` :class:`~matplotlib.patches.Ellipse` patches.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from bayesgmm import GaussianMixture, datasets, plotting
    >>> X, _ = datasets.blobs(200, seed=0)
    >>> ax = plotting.plot_ellipses(GaussianMixture(5, random_state=0).fit(X), X)
    >>> len(ax.patches)
    15
    """
    params = as_params(model)
    if params.n_features < 2:
        raise ValueError("plot_ellipses needs at least 2 features; use plot_1d for 1-D data")
    dims = _check_dims(dims, params.n_features)
    levels = _levels(levels)
    ax = _new_axes(ax)
    colors = component_colors(params.n_components)
    weights = np.asarray(params.weights, dtype=float)
    means = np.asarray(params.means, dtype=float)[:, dims]
    cov = np.asarray(params.covariance_matrices(), dtype=float)[:, dims][:, :, dims]
    if X is not None:
        X = _check_X(X, params.n_features)
        if labels is None:
            labels = _predict(params, X)
        _scatter_labels(ax, X[:, dims], labels, colors, s=point_size)
    alphas = max_alpha * weights / weights.max()
    _add_ellipses(ax, means, cov, colors, alphas, levels)
    return _finish_centres_plot(ax, means if show_means else None, title)


def plot_kmeans(kmeans, X, *, ax=None, point_size=8, title=None):
    """k-means clusters as circles: centre plus the radius to the farthest member.

    Parameters
    ----------
    kmeans : fitted :class:`~bayesgmm.KMeans`
    X : array of shape (n_samples, n_features)
        The data; the first two features are drawn.
    ax : matplotlib Axes, optional
    point_size : float, default 8
    title : str, optional

    Returns
    -------
    ax : matplotlib Axes
        Holding one :class:`~matplotlib.patches.Circle` per cluster.
    """
    if not hasattr(kmeans, "cluster_centers_"):
        raise TypeError("kmeans must be a fitted KMeans (with cluster_centers_)")
    centers = np.asarray(kmeans.cluster_centers_, dtype=float)
    X = _check_X(X, centers.shape[1])
    if X.shape[1] < 2:
        raise ValueError("plot_kmeans needs at least 2 features")
    ax = _new_axes(ax)
    colors = component_colors(len(centers))
    labels = np.asarray(kmeans.predict(X))
    radii = np.asarray(kmeans.radii(X), dtype=float)
    _scatter_labels(ax, X[:, :2], labels, colors, s=point_size)
    for k, (c, r) in enumerate(zip(centers[:, :2], radii)):
        ax.add_patch(
            Circle(c, r, facecolor=to_rgba(colors[k], 0.2), edgecolor=colors[k], lw=1.5, zorder=1)
        )
    return _finish_centres_plot(ax, centers, title)


def _finish_centres_plot(ax, centres, title):
    """Shared ending of the ellipse and k-means plots: centre crosses (unless ``centres`` is
    None), equal aspect fitted to the data, and the title."""
    if centres is not None:
        ax.scatter(centres[:, 0], centres[:, 1], marker="x", c="k", s=30, lw=1.2, zorder=3)
    ax.set_aspect("equal", adjustable="datalim")
    ax.autoscale_view()
    if title is not None:
        ax.set_title(title)
    return ax


def plot_1d(model, X=None, *, ax=None, bins=40, components=True, n_grid=400, xlim=None, title=None):
    """One-dimensional mixture: histogram, each weighted component density, the mixture.

    Parameters
    ----------
    model : fitted GaussianMixture, GMMParams or posterior with one feature
    X : array of shape (n_samples, 1) or (n_samples,), optional
        Drawn as a density-normalised histogram.
    ax : matplotlib Axes, optional
    bins : int, default 40
    components : bool, default True
        Draw ``w_k N(x | mu_k, sigma_k^2)`` for each component (filled, dashed outline).
    n_grid : int, default 400
    xlim : (float, float), optional
        Range of the curves; default the data range (or 4 sd around the components) padded.
    title : str, optional

    Returns
    -------
    ax : matplotlib Axes
        With ``n_components`` component lines (when ``components``) then the mixture line.
    """
    params = as_params(model)
    if params.n_features != 1:
        raise ValueError(f"plot_1d needs one feature; the model has {params.n_features}")
    ax = _new_axes(ax)
    colors = component_colors(params.n_components)
    if X is not None:
        X = np.asarray(X)
        X = _check_X(X.reshape(-1, 1) if X.ndim == 1 else X, 1)
        ax.hist(X[:, 0], bins=bins, density=True, color="0.8", edgecolor="0.6", lw=0.5)
    if xlim is None:
        sd = np.sqrt(np.asarray(params.covariance_matrices(), dtype=float)[:, 0, 0])
        mu = np.asarray(params.means, dtype=float)[:, 0]
        lo, hi = np.min(mu - 4 * sd), np.max(mu + 4 * sd)
        if X is not None:
            pad = 0.05 * np.ptp(X[:, 0])
            lo, hi = X[:, 0].min() - pad, X[:, 0].max() + pad
        xlim = (lo, hi)
    grid = np.linspace(xlim[0], xlim[1], n_grid)[:, None].astype(np.asarray(params.means).dtype)
    if components:
        comp = np.exp(np.asarray(density.component_log_prob(grid, params)))
        comp = comp * np.asarray(params.weights)[None, :]
        for k in range(params.n_components):
            ax.fill_between(grid[:, 0], comp[:, k], color=colors[k], alpha=0.2, lw=0)
            ax.plot(grid[:, 0], comp[:, k], color=colors[k], ls="--", lw=1.2)
    mix = np.exp(np.asarray(density.log_prob(grid, params)))
    ax.plot(grid[:, 0], mix, color="k", lw=2, label="mixture")
    ax.set_xlim(xlim)
    ax.set_ylabel("density")
    if title is not None:
        ax.set_title(title)
    return ax


# --- the EM path ------------------------------------------------------------------------------
def plot_em_objective(model, *, ax=None, label=None, title=None):
    """The EM objective per iteration (``lower_bounds_``: mean log-likelihood, or log posterior
    per sample under a prior).

    Parameters
    ----------
    model : fitted GaussianMixture, or an array of shape (n_iter,) of objective values
    ax : matplotlib Axes, optional
    label : str, optional
    title : str, optional

    Returns
    -------
    ax : matplotlib Axes with one line
    """
    lbs = getattr(model, "lower_bounds_", model)
    lbs = np.asarray(lbs, dtype=float)
    if lbs.ndim != 1 or lbs.size == 0:
        raise ValueError("model must be a fitted GaussianMixture or a 1-D array of objectives")
    ax = _new_axes(ax)
    it = np.arange(1, lbs.size + 1)
    ax.plot(it, lbs, marker="o", ms=3, label=label)
    ax.set_xlabel("EM iteration")
    ax.set_ylabel("objective per sample")
    ax.xaxis.get_major_locator().set_params(integer=True)
    if title is not None:
        ax.set_title(title)
    return ax


def em_path(X, n_components, iterations, **kwargs):
    """Parameters after chosen EM iterations, all from the same initialisation.

    Iteration 0 is the initial parameters (``max_iter=0``); later ones are single warm-started
    EM steps (``max_iter=1, warm_start=True``), so each iteration's parameters are exactly
    those EM reaches on its way, and only two programs are compiled.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    n_components : int
    iterations : iterable of int
        Non-negative iteration numbers to keep.
    **kwargs
        Passed to :class:`~bayesgmm.GaussianMixture` (``covariance_type``, ``random_state``,
        ``init_params``, ``means_init``, ``prior``, ...). ``random_state`` defaults to 0.

    Returns
    -------
    params : dict of int -> GMMParams
        Parameters after each requested iteration.
    objective : ndarray of shape (max(iterations) + 1,)
        The objective at iteration 0, 1, ... (evaluated at those parameters).
    """
    from ._exceptions import ConvergenceWarning
    from .estimator import GaussianMixture

    iterations = sorted({int(i) for i in iterations})
    if not iterations or iterations[0] < 0:
        raise ValueError(f"iterations must be non-negative ints; got {iterations}")
    for bad in ("max_iter", "warm_start", "n_init", "n_components"):
        if bad in kwargs:
            raise TypeError(f"em_path sets {bad} itself; do not pass it")
    kwargs.setdefault("random_state", 0)
    X = _check_X(X)
    gm = GaussianMixture(n_components, max_iter=0, warm_start=True, tol=0.0, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(X)
        keep = {}
        objective = []
        gm.max_iter = 1
        for i in range(iterations[-1] + 1):
            if i in iterations:
                keep[i] = gm.params_
            # One step from the current parameters records their objective, then moves on.
            gm.fit(X)
            objective.append(gm.lower_bound_)
    return keep, np.asarray(objective)


def _draw_state(params, X, ax, title, **kw):
    if params.n_features == 1:
        return plot_1d(params, X, ax=ax, title=title, **kw)
    return plot_ellipses(params, X, ax=ax, title=title, **kw)


def plot_em_steps(X, n_components, iterations=(0, 1, 2, 5, 10, 30), *, ncols=3, **kwargs):
    """Small multiples of EM: the fitted components at chosen iterations, same start.

    1-D data are drawn with :func:`plot_1d`, others with :func:`plot_ellipses`.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    n_components : int
    iterations : iterable of int, default (0, 1, 2, 5, 10, 30)
    ncols : int, default 3
    **kwargs
        Passed to :func:`em_path` (estimator settings).

    Returns
    -------
    axes : ndarray of matplotlib Axes, one per iteration (in increasing order)
    """
    path, objective = em_path(X, n_components, iterations, **kwargs)
    X = _check_X(X)
    its = sorted(path)
    axes = _new_grid(len(its), ncols)
    for ax, i in zip(axes, its):
        _draw_state(path[i], X, ax, f"iteration {i}   objective {objective[i]:.3f}")
        ax.title.set_fontsize(9)
    _same_limits(axes, equal=X.shape[1] > 1)
    return axes


def _same_limits(axes, equal):
    """One view for every panel: the union of their limits (fixed box for equal aspect)."""
    xl = np.array([ax.get_xlim() for ax in axes])
    yl = np.array([ax.get_ylim() for ax in axes])
    for ax in axes:
        if equal:
            ax.set_aspect("equal", adjustable="box")
        ax.set_xlim(xl[:, 0].min(), xl[:, 1].max())
        ax.set_ylim(yl[:, 0].min(), yl[:, 1].max())


def animate_em(
    X,
    n_components,
    *,
    n_frames=30,
    filename=None,
    fps=4,
    overwrite=False,
    dpi=80,
    figsize=(5, 4),
    **kwargs,
):
    """An animation of EM, one frame per iteration; saved as a GIF if ``filename`` is given.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        1-D data are drawn as histogram and densities, others as ellipses.
    n_components : int
    n_frames : int, default 30
        Iterations 0 .. n_frames - 1.
    filename : str or path, optional
        Where to save the GIF (matplotlib's ``PillowWriter``).
    fps : int, default 4
    overwrite : bool, default False
        Refuse to replace an existing file unless True.
    dpi : int, default 80
    figsize : (float, float), default (5, 4)
    **kwargs
        Passed to :func:`em_path`.

    Returns
    -------
    matplotlib.animation.FuncAnimation
    """
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    if filename is not None and os.path.exists(filename) and not overwrite:
        raise FileExistsError(f"{filename} exists; pass overwrite=True to replace it")
    if int(n_frames) < 1:
        raise ValueError(f"n_frames must be >= 1; got {n_frames}")
    path, objective = em_path(X, n_components, range(int(n_frames)), **kwargs)
    X = _check_X(X)
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    # Fix the view from the data and the widest state so the frames do not jump.
    _draw_state(path[0], X, ax, "")
    _draw_state(path[n_frames - 1], X, ax, "")
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    if X.shape[1] == 1:
        ylim = (0, ylim[1] * 1.3)

    def frame(i):
        ax.clear()
        _draw_state(path[i], X, ax, f"EM iteration {i}   objective {objective[i]:.3f}")
        if X.shape[1] > 1:
            ax.set_aspect("equal", adjustable="box")
        ax.set_xlim(xlim)
        ax.set_ylim(ylim)
        return []

    anim = FuncAnimation(fig, frame, frames=int(n_frames), blit=False)
    if filename is not None:
        anim.save(filename, writer=PillowWriter(fps=fps), dpi=dpi)
    return anim


# --- model selection ----------------------------------------------------------------------------
def plot_selection(table, criterion="bic", *, ax=None, title=None):
    """A criterion against the number of components, one line per covariance type.

    The chosen model is starred; collapsed fits (never chosen, see :func:`bayesgmm.select`)
    are drawn as open grey markers.

    Parameters
    ----------
    table : SelectionTable from :func:`bayesgmm.select`
    criterion : {'bic', 'aic', 'icl', 'log_likelihood'}, default 'bic'
    ax : matplotlib Axes, optional
    title : str, optional

    Returns
    -------
    ax : matplotlib Axes with one line per covariance type
    """
    if criterion not in ("bic", "aic", "icl", "log_likelihood"):
        raise ValueError(
            f"criterion must be 'bic', 'aic', 'icl' or 'log_likelihood'; got {criterion!r}"
        )
    ax = _new_axes(ax)
    ks = np.asarray(table.n_components)
    values = table.pivot(criterion)
    collapsed = table.pivot("collapsed").astype(bool) if len(table) else None
    for j, ct in enumerate(table.covariance_types):
        ok = ~collapsed[:, j]
        line = ax.plot(ks, np.where(ok, values[:, j], np.nan), marker="o", ms=4, label=ct)[0]
        if (~ok).any():
            ax.scatter(
                ks[~ok],
                values[~ok, j],
                marker="o",
                facecolors="none",
                edgecolors=line.get_color(),
                s=25,
                alpha=0.7,
                zorder=3,
            )
    best = table.best
    if best is not None and criterion in ("bic", "aic", "icl"):
        ax.scatter(
            [best["n_components"]],
            [best[criterion]],
            marker="*",
            s=220,
            c="gold",
            edgecolors="k",
            zorder=4,
            label=f"chosen ({table.criterion.upper()})",
        )
    ax.set_xlabel("number of components")
    better = "lower" if table.convention == "sklearn" else "higher"
    name = criterion.upper() if criterion != "log_likelihood" else "log-likelihood"
    ax.set_ylabel(f"{name} ({better} is better)" if criterion != "log_likelihood" else name)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)
    if title is not None:
        ax.set_title(title)
    return ax


# --- uncertainty ------------------------------------------------------------------------------
def plot_uncertainty(model, X, *, ax=None, dims=(0, 1), cmap=None, colorbar=True, title=None):
    """Assignment uncertainty ``1 - max_k p(z = k | x)`` of each point.

    Points are shaded and sized by their uncertainty (in 1-D, uncertainty is drawn against x).
    For a posterior, the responsibilities are averaged over its draws.

    Parameters
    ----------
    model : fitted GaussianMixture, GMMParams, or a posterior (``predict_proba`` over draws)
    X : array of shape (n_samples, n_features)
    ax : matplotlib Axes, optional
    dims : (int, int), default (0, 1)
    cmap : str or Colormap, optional
        Default blue (certain) through orange to red (as uncertain as it gets).
    colorbar : bool, default True
    title : str, optional

    Returns
    -------
    ax : matplotlib Axes with one PathCollection of n_samples points
    """
    if hasattr(model, "draws") and callable(getattr(model, "predict_proba", None)):
        resp = np.asarray(model.predict_proba(X))
        n_features = model.n_features
    else:
        params = as_params(model)
        n_features = params.n_features
        X = _check_X(X, n_features)
        resp = np.asarray(density.predict_proba(X.astype(np.asarray(params.means).dtype), params))
    X = _check_X(X, n_features)
    if cmap is None:
        from matplotlib.colors import LinearSegmentedColormap

        cmap = LinearSegmentedColormap.from_list("uncertainty", ["#3b6fb6", "#f2a33a", "#c0182a"])
    unc = 1.0 - resp.max(axis=1)
    top = 1.0 - 1.0 / resp.shape[1] if resp.shape[1] > 1 else 1.0
    ax = _new_axes(ax)
    order = np.argsort(unc)  # draw the uncertain points last, on top
    if n_features == 1:
        sc = ax.scatter(X[order, 0], unc[order], c=unc[order], cmap=cmap, vmin=0, vmax=top, s=10)
        ax.set_ylabel("1 - max responsibility")
    else:
        dims = _check_dims(dims, n_features)
        sizes = 6 + 80 * unc / top
        sc = ax.scatter(
            X[order, dims[0]],
            X[order, dims[1]],
            c=unc[order],
            s=sizes[order],
            cmap=cmap,
            vmin=0,
            vmax=top,
            edgecolors="none",
        )
        ax.set_aspect("equal", adjustable="datalim")
    if colorbar:
        ax.figure.colorbar(sc, ax=ax, label="assignment uncertainty", shrink=0.8)
    if title is not None:
        ax.set_title(title)
    return ax


# --- posterior --------------------------------------------------------------------------------
def _thin(draws: GMMParams, n_draws, seed):
    import jax

    flat = jax.tree_util.tree_map(
        lambda a: np.asarray(a).reshape((-1,) + a.shape[len(draws.batch_shape) :]), draws
    )
    total = flat.weights.shape[0]
    n = min(int(n_draws), total)
    idx = np.sort(np.random.default_rng(seed).choice(total, n, replace=False))
    return jax.tree_util.tree_map(lambda a: a[idx], flat)


def _aligned(posterior):
    if getattr(posterior, "relabeled", False):
        return posterior
    return posterior.relabel()[0]


def plot_posterior_ellipses(
    posterior,
    X=None,
    *,
    n_draws=40,
    level=2.0,
    levels=None,
    ax=None,
    dims=(0, 1),
    seed=0,
    draw_alpha=0.2,
    title=None,
):
    """Posterior uncertainty of the components: thinned relabeled draws drawn faintly at one
    level, the MAP-EM ellipses on top.

    Parameters
    ----------
    posterior : Posterior
        Relabeled first (to the MAP-EM solution) unless it already is, so each colour follows
        one component.
    X : array of shape (n_samples, n_features), optional
        Points underneath (default the posterior's data).
    n_draws : int, default 40
        Draws shown, chosen at random over all chains.
    level : float, default 2
        Standard deviations of each draw's outline.
    levels : sequence of float, optional
        Levels of the MAP-EM ellipses; default ``(level,)``, the draws' level, so the two
        compare directly.
    ax : matplotlib Axes, optional
    dims : (int, int), default (0, 1)
    seed : int, default 0
    draw_alpha : float, default 0.15
    title : str, optional

    Returns
    -------
    ax : matplotlib Axes
        ``n_draws * n_components`` outline ellipses, then ``n_components * len(levels)`` MAP-EM
        ellipses.
    """
    post = _aligned(posterior)
    mp = post.map_params
    levels = (float(level),) if levels is None else levels
    dims = _check_dims(dims, mp.n_features)
    if X is None:
        X = post.X
    ax = _new_axes(ax)
    # The axes may already hold patches of the caller's: the MAP-EM outlines are the patches
    # plot_ellipses adds, found by identity, not by position in ax.patches.
    before = {id(p) for p in ax.patches}
    ax = plot_ellipses(mp, X, ax=ax, levels=levels, dims=dims, max_alpha=0.0, show_means=False)
    map_patches = [p for p in ax.patches if id(p) not in before]
    # plot_ellipses drew the MAP-EM outlines (unfilled); draw the faint draws under them.
    thinned = _thin(post.draws, n_draws, seed)
    colors = component_colors(mp.n_components)
    cov = np.asarray(thinned.covariance_matrices(), dtype=float)[..., dims, :][..., dims]
    means = np.asarray(thinned.means, dtype=float)[..., dims]
    for t in range(means.shape[0]):
        _add_ellipses(
            ax,
            means[t],
            cov[t],
            colors,
            np.full(mp.n_components, draw_alpha),
            [float(level)],
            fill=False,
            lw=0.8,
            zorder=1,
        )
    for p in map_patches:
        p.set_linewidth(2.0)
        p.set_edgecolor("k")
        p.set_linestyle("--")
        p.set_zorder(3)
    m = np.asarray(mp.means, dtype=float)[:, dims]
    ax.scatter(m[:, 0], m[:, 1], marker="x", c="k", s=40, lw=1.5, zorder=4)
    if title is not None:
        ax.set_title(title)
    return ax


def _scalar_parameters(params: GMMParams, which):
    """Named scalar series of (possibly batched) parameters: name -> array (*batch,)."""
    out = {}
    w = np.asarray(params.weights, dtype=float)
    m = np.asarray(params.means, dtype=float)
    cov = np.asarray(params.covariance_matrices(), dtype=float)
    for k in range(params.n_components):
        if "weights" in which:
            out[f"weight[{k}]"] = w[..., k]
        if "means" in which:
            for j in range(params.n_features):
                out[f"mean[{k},{j}]"] = m[..., k, j]
        if "sds" in which:
            for j in range(params.n_features):
                out[f"sd[{k},{j}]"] = np.sqrt(cov[..., k, j, j])
    return out


def plot_em_vs_posterior(posterior, which=("weights", "means"), *, ncols=4, axes=None):
    """Each parameter's posterior density (relabeled draws) with the MAP-EM estimate marked.

    Parameters
    ----------
    posterior : Posterior
    which : iterable of {'weights', 'means', 'sds'}, default ('weights', 'means')
        Parameter groups; 'sds' are the per-feature standard deviations.
    ncols : int, default 4
    axes : sequence of matplotlib Axes, optional
        One per scalar parameter.

    Returns
    -------
    axes : ndarray of matplotlib Axes
        Each with the density line and a vertical line at the MAP-EM value.
    """
    from scipy.stats import gaussian_kde

    which = tuple(which)
    for w in which:
        if w not in ("weights", "means", "sds"):
            raise ValueError(f"which must hold 'weights', 'means' or 'sds'; got {w!r}")
    post = _aligned(posterior)
    draws = _scalar_parameters(post.draws, which)
    point = _scalar_parameters(post.map_params, which)
    names = list(draws)
    if axes is None:
        axes = _new_grid(len(names), ncols, panel_size=(2.6, 2.0))
    axes = np.asarray(axes).ravel()
    if len(axes) < len(names):
        raise ValueError(f"axes must hold {len(names)} Axes; got {len(axes)}")
    colors = component_colors(post.n_components)
    for ax, name in zip(axes, names):
        x = draws[name].ravel()
        k = int(name.split("[")[1].split(",")[0].rstrip("]"))
        lo, hi = np.min(x), np.max(x)
        pad = 0.15 * (hi - lo) + 1e-12
        grid = np.linspace(lo - pad, hi + pad, 200)
        dens = gaussian_kde(x)(grid) if np.ptp(x) > 0 else np.zeros_like(grid)
        ax.fill_between(grid, dens, color=colors[k], alpha=0.3, lw=0)
        ax.plot(grid, dens, color=colors[k], lw=1.5)
        ax.axvline(float(point[name]), color="k", ls="--", lw=1.2)
        ax.set_title(name, fontsize=9)
        ax.set_yticks([])
        ax.tick_params(labelsize=7)
    return axes


def plot_real_vs_synthetic(X, model=None, posterior=None, *, n_samples=None, seed=0, axes=None):
    """The data beside synthetic data from the fitted mixture and the posterior predictive.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    model : fitted GaussianMixture, optional
        Its ``sample`` gives the EM panel.
    posterior : Posterior, optional
        Its ``sample`` (each point from a random posterior draw) gives the last panel.
    n_samples : int, optional
        Synthetic points per panel (default as many as the data).
    seed : int, default 0
    axes : sequence of matplotlib Axes, optional
        One per panel (1 + given models).

    Returns
    -------
    axes : ndarray of matplotlib Axes
        Panels: data, EM samples (if ``model``), posterior predictive (if ``posterior``).
    """
    X = _check_X(X)
    n = X.shape[0] if n_samples is None else int(n_samples)
    panels = [("data", X)]
    if model is not None:
        Xs, _ = model.sample(n, random_state=seed)
        panels.append(("sampled from the EM fit", np.asarray(Xs)))
    if posterior is not None:
        Xp, _ = posterior.sample(n, seed=seed)
        panels.append(("posterior predictive", np.asarray(Xp)))
    if axes is None:
        axes = _new_grid(len(panels), len(panels), sharex=True, sharey=True)
    axes = np.asarray(axes).ravel()
    if len(axes) < len(panels):
        raise ValueError(f"axes must hold {len(panels)} Axes; got {len(axes)}")
    for ax, (name, data) in zip(axes, panels):
        if X.shape[1] == 1:
            ax.hist(data[:, 0], bins=40, density=True, color="0.6")
        else:
            ax.scatter(data[:, 0], data[:, 1], s=5, alpha=0.6, c="C0" if name == "data" else "C1")
            # The panels share both axes, where matplotlib allows only a fixed box aspect.
            ax.set_aspect("equal", adjustable="box")
        ax.set_title(name, fontsize=10)
    return axes


def _count_ellipses(ax) -> int:
    """Number of Ellipse patches on ``ax`` (used by tests and docs)."""
    return sum(isinstance(p, Ellipse) for p in ax.patches)


def _point_collections(ax):
    return [c for c in ax.collections if isinstance(c, PathCollection)]
