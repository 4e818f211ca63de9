"""Posterior inference for a Gaussian mixture: :func:`fit_posterior` and the ``Posterior``.

:func:`fit_posterior` validates its input, starts from the MAP-EM solution under the same
prior (the best of 4 EM runs from :func:`bayesgmm.em.fit_best`), runs NUTS
(:mod:`bayesgmm.sampler`) and returns a :class:`Posterior`: the draws, the data, the prior,
the MAP start and its diagnostics, the sample statistics, and the utilities over them
(relabeling by :mod:`bayesgmm.relabel`, predictive densities, summaries, ArviZ conversion,
files).
"""

from __future__ import annotations

import math
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from . import density, marginal
from ._exceptions import DivergenceWarning
from ._random import as_key
from ._validation import (
    check_covariance_type,
    check_data,
    check_positive_int,
    check_sample_weight,
)
from .covariance import get_covariance_type
from .em import BestFit, fit_best, mean_imputed
from .marginal import missing_patterns
from .model import SITE_NAMES
from .params import GMMParams
from .prior import Prior
from .relabel import _flatten_batch, permute_draws, relabel_draws
from .sampler import (
    nuts_settings,
    resolve_chain_method,
    resolve_likelihood_mesh,
    run_nuts,
    sample_stats,
)

__all__ = ["fit_posterior", "Posterior", "DivergenceWarning", "relabel_draws", "permute_draws"]


def _resolve_prior(prior, X, n_components, covariance_type, sample_weight=None):
    if isinstance(prior, str):
        if prior != "default":
            raise ValueError(f"prior must be 'default' or a Prior; got {prior!r}")
        return Prior.default(X, n_components, covariance_type, sample_weight=sample_weight)
    if not isinstance(prior, Prior):
        raise TypeError(f"prior must be 'default' or a bayesgmm.Prior; got {type(prior).__name__}")
    if prior.covariance_type != covariance_type:
        raise ValueError(
            f"prior is for covariance_type={prior.covariance_type!r} but covariance_type="
            f"{covariance_type!r}"
        )
    if prior.n_components != n_components or prior.n_features != X.shape[1]:
        raise ValueError(
            f"prior is for {prior.n_components} components and {prior.n_features} features; "
            f"the model has {n_components} components and X has {X.shape[1]} features"
        )
    return prior


def _map_start(
    X, n_components, covariance_type, prior, key, sample_weight=None, devices=None
) -> BestFit:
    """MAP-EM fit used as the chains' starting point (and as the default relabeling pivot):
    the best of 4 EM runs under ``prior``, straight from the EM layer."""
    alpha = np.asarray(prior.weight_concentration)
    map_prior = prior
    if np.any(alpha < 1):
        # Below 1 the Dirichlet has no interior mode; start from the mode under a flat one.
        map_prior = Prior(
            np.maximum(alpha, 1.0),
            prior.mean,
            prior.mean_precision,
            prior.dof,
            prior.scale,
            covariance_type,
        )
    # A run that did not converge in 1000 iterations is still a start; the chains move on.
    return fit_best(
        key,
        X,
        n_components,
        covariance_type,
        stacklevel=5,  # fit_best -> _map_start -> _resolve_init -> fit_posterior -> the user
        devices=devices,
        prior=map_prior.astype(X.dtype),
        reg_covar=0.0,  # the prior regularises; 0 keeps the exact posterior mode
        tol=1e-8,
        max_iter=1000,
        n_init=4,
        sample_weight=sample_weight,
    )


def _fit_diagnostics(fit: BestFit) -> dict:
    """``map_diagnostics`` of the MAP-EM start fitted here."""
    return {
        "lower_bound": float(fit.lower_bound),
        "n_iter": int(fit.n_iter),
        "converged": bool(fit.converged),
        "n_init": int(fit.failed.shape[0]),
    }


def fit_posterior(
    X,
    n_components: int,
    *,
    covariance_type: str = "full",
    prior="default",
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    seed=0,
    init="map",
    progress_bar: bool | None = None,
    chain_method: str | None = None,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    dense_mass: bool = False,
    jitter: float = 1.0,
    sample_weight=None,
    missing: str = "error",
    devices=None,
) -> Posterior:
    """Sample the posterior of a Gaussian mixture with NUTS, started at the MAP-EM solution.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_components : int
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default 'full'
    prior : Prior or 'default', default 'default'
        ``'default'`` is mclust's data-dependent conjugate prior (:meth:`Prior.default`).
    num_warmup, num_samples : int, default 1000
        Warm-up (adaptation) steps and kept draws per chain.
    num_chains : int, default 4
    seed : int or jax key, default 0
    init : 'map', GMMParams or fitted GaussianMixture, default 'map'
        Where the chains start: the MAP-EM fit under ``prior`` (4 restarts, no ``reg_covar``),
        or given parameters. Each chain starts slightly jittered around it. A ``GMMParams``
        with batch shape ``(num_chains,)`` gives each chain its own start (the first is then
        ``map_params``, the default relabeling pivot).
    progress_bar : bool, optional
        Default: on when standard output is a terminal.
    chain_method : {'sequential', 'vectorized', 'parallel'}, optional
        How chains share the hardware, all in one compiled program: 'sequential' runs them one
        after another (``lax.map``; the fastest on one CPU device), 'vectorized' together
        (``vmap``; for accelerators), 'parallel' split across devices (``pmap``; CPU devices
        come from ``numpyro.set_host_device_count`` before JAX starts). Default: 'parallel'
        when several devices exist, else 'sequential'.
    target_accept_prob, max_tree_depth, dense_mass
        NUTS settings (NumPyro's meanings).
    jitter : float, default 1
        Size of the start jitter, in rough posterior standard deviations.
    sample_weight : array of shape (n_samples,), optional
        Non-negative row multiplicities: the likelihood is ``sum_n w_n log p(x_n)``
        (:func:`bayesgmm.model.gmm_model`), the default prior and the MAP start are
        weighted, so integer weights give the posterior of the data with rows repeated.
        ``Posterior.log_likelihood`` stays per row and unweighted (``log p(x_n | theta)``);
        the weights are kept as ``Posterior.sample_weight``.
    missing : {'error', 'marginalize'}, default 'error'
        As :class:`~bayesgmm.GaussianMixture`'s: with ``'marginalize'``, NaN in ``X`` marks
        values missing at random, and each row's likelihood is the marginal density of its
        observed coordinates (:class:`~bayesgmm.model.MarginalMixtureLikelihood`, the
        density MAP-EM's missing-data E-step uses, so the MAP-EM start is still the
        posterior's mode). :meth:`Posterior.impute` then gives multiple imputations that
        carry the parameters' uncertainty.
    devices : None, int or sequence of jax.Device
        The devices every chain's likelihood is sharded over by rows (each computes the log
        densities and gradients of its rows; the sums are all-reduced), so a large data set
        uses every core or accelerator even with one chain. The same seed gives the
        one-device chains up to summation order. None: every local device when the chains
        are not 'parallel' and the problem is not small; 1: one device. The MAP-EM start
        shards the same way (:class:`~bayesgmm.GaussianMixture`'s ``devices``).

    Returns
    -------
    Posterior
        Draws with batch axes (chain, draw), in sampled (not relabeled) order.

    Notes
    -----
    The run is compiled once per (data shape, dtype, settings) and reused: a second call with
    the same shapes and settings does not compile. Divergent transitions are counted and
    warned about (:class:`DivergenceWarning`).

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm import fit_posterior
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-3, 1, (100, 1)), rng.normal(3, 1, (100, 1))])
    >>> post = fit_posterior(X, 2, covariance_type="spherical", num_warmup=200,
    ...                      num_samples=200, num_chains=2, progress_bar=False)
    >>> post.draws.batch_shape
    (2, 200)
    >>> np.round(np.sort(post.mean_params().means.ravel()))
    array([-3.,  3.])
    """
    feature_names = _feature_names(X)
    if missing not in ("error", "marginalize"):
        raise ValueError(f"missing must be 'error' or 'marginalize'; got {missing!r}")
    X = check_data(X, min_samples=2, allow_nan=missing == "marginalize")
    n_components = check_positive_int(n_components, "n_components")
    covariance_type = check_covariance_type(covariance_type)
    num_chains = check_positive_int(num_chains, "num_chains")
    if not (isinstance(jitter, float | int) and jitter >= 0 and math.isfinite(jitter)):
        raise ValueError(f"jitter must be a finite number >= 0; got {jitter!r}")
    if X.shape[0] < n_components:
        raise ValueError(
            f"Expected n_samples >= n_components but got n_components = {n_components}, "
            f"n_samples = {X.shape[0]}"
        )
    sample_weight = check_sample_weight(
        sample_weight, X.shape[0], X.dtype, min_positive=n_components
    )
    if progress_bar is None:
        progress_bar = bool(getattr(sys.stdout, "isatty", lambda: False)())
    settings = nuts_settings(
        n_components,
        covariance_type,
        num_warmup,
        num_samples,
        target_accept_prob,
        max_tree_depth,
        dense_mass,
        progress_bar,
    )
    chain_method = resolve_chain_method(chain_method, num_chains)
    mesh = resolve_likelihood_mesh(devices, chain_method, X.shape[0], n_components, X.shape[1])
    has_nan = bool(np.isnan(X).any())
    # The default prior's data moments from the column-mean-imputed data (as the estimator).
    complete = mean_imputed(X, sample_weight) if has_nan else X
    prior = _resolve_prior(prior, complete, n_components, covariance_type, sample_weight)
    prior = prior.astype(X.dtype)

    key = as_key(seed)
    key_em, key_jitter, key_nuts = jax.random.split(key, 3)
    map_estimator, map_diagnostics, start = _resolve_init(
        init, X, n_components, covariance_type, prior, key_em, num_chains, sample_weight, devices
    )
    # With one start per chain, the first is the relabeling pivot.
    map_params = start if not start.batch_shape else jax.tree_util.tree_map(lambda a: a[0], start)
    rows = X
    pattern_arrays = None
    if has_nan:
        pat = missing_patterns(X)
        rows, pattern_arrays = pat.filled, (pat.observed, pat.index, pat.patterns)
    out = run_nuts(
        (key_jitter, key_nuts),
        rows,
        prior,
        start,
        num_chains=num_chains,
        settings=settings,
        chain_method=chain_method,
        progress_bar=progress_bar,
        jitter=jitter,
        sample_weight=sample_weight,
        missing=pattern_arrays,
        mesh=mesh,
    )
    draws = GMMParams.tree_unflatten(
        get_covariance_type(covariance_type).name,
        tuple(jnp.asarray(out.params[name], X.dtype) for name in SITE_NAMES),
    )
    post = Posterior(
        draws,
        X=X,
        prior=prior,
        map_params=map_params,
        map_diagnostics=map_diagnostics,
        map_estimator=map_estimator,
        sample_stats=sample_stats(out),
        feature_names=feature_names,
        sample_weight=sample_weight,
        settings={
            "num_warmup": settings.num_warmup,
            "num_samples": settings.num_samples,
            "num_chains": num_chains,
            "chain_method": chain_method,
            "target_accept_prob": settings.target_accept_prob,
            "max_tree_depth": settings.max_tree_depth,
            "dense_mass": settings.dense_mass,
            "missing": missing,
        },
    )
    if post.num_divergences:
        warnings.warn(
            f"{post.num_divergences} of {num_chains * settings.num_samples} NUTS transitions after "
            "warm-up diverged; the draws may be biased. Try target_accept_prob closer to 1, "
            "a different covariance_type or n_components, or rescaling X.",
            DivergenceWarning,
            stacklevel=2,
        )
    return post


def _feature_names(X):
    cols = getattr(X, "columns", None)
    if cols is None:
        return None
    return [str(c) for c in cols]


def _resolve_init(
    init,
    X,
    n_components,
    covariance_type,
    prior,
    key,
    num_chains=1,
    sample_weight=None,
    devices=None,
):
    """The chains' start: ``(estimator or None, map diagnostics, params)``."""
    if isinstance(init, str):
        if init != "map":
            raise ValueError(
                f"init must be 'map', a GMMParams or a fitted GaussianMixture; got {init!r}"
            )
        # The same key GaussianMixture(random_state=seed) used when the start was fitted
        # through the estimator, so the draws for a given seed are unchanged.
        seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
        fit = _map_start(
            X, n_components, covariance_type, prior, as_key(seed), sample_weight, devices
        )
        return None, _fit_diagnostics(fit), fit.params
    if _is_estimator(init):
        if not hasattr(init, "params_"):
            raise ValueError("init is a GaussianMixture that is not fitted yet; call fit first")
        est, params = init, init.params_
        diagnostics = _estimator_diagnostics(est)
    elif isinstance(init, GMMParams):
        est, diagnostics, params = None, {}, init
    else:
        raise TypeError(
            f"init must be 'map', a GMMParams or a fitted GaussianMixture; got "
            f"{type(init).__name__}"
        )
    if (
        params.covariance_type != covariance_type
        or params.n_components != n_components
        or params.n_features != X.shape[1]
        or params.batch_shape not in ((), (num_chains,))
    ):
        raise ValueError(
            f"init has covariance_type={params.covariance_type!r}, {params.n_components} "
            f"components, {params.n_features} features and batch shape {params.batch_shape}; "
            f"expected {covariance_type!r}, {n_components}, {X.shape[1]} and () or "
            f"(num_chains,) = ({num_chains},)"
        )
    params = params.astype(X.dtype)
    if not np.all(np.asarray(params.weights) > 0):
        raise ValueError("init weights must all be > 0 (the Dirichlet's support)")
    return est, diagnostics, params


def _estimator_diagnostics(est) -> dict:
    """``map_diagnostics`` of a fitted GaussianMixture used as the start."""
    return {
        "lower_bound": float(est.lower_bound_),
        "n_iter": int(est.n_iter_),
        "converged": bool(est.converged_),
        "n_init": int(getattr(est, "n_init", 1)),
    }


def _is_estimator(obj) -> bool:
    """Whether ``obj`` is a bayesgmm GaussianMixture. Looked up in ``sys.modules``: whoever
    holds an instance has imported the estimator module, and the Bayesian path does not
    import the scikit-learn facade."""
    module = sys.modules.get("bayesgmm.estimator")
    return module is not None and isinstance(obj, module.GaussianMixture)


# The Posterior container
# --------------------------------------------------------------------------------------------


class Posterior:
    """Posterior draws of a Gaussian mixture and the utilities over them.

    Attributes
    ----------
    draws : GMMParams
        Parameters with batch axes (chain, draw).
    X : ndarray (n_samples, n_features)
        The data the posterior conditions on.
    prior : Prior
    map_params : GMMParams
        The MAP-EM solution the chains started from (the default relabeling pivot).
    map_diagnostics : dict
        Of the MAP-EM run the chains started from: ``lower_bound`` (log posterior per sample
        under the prior), ``n_iter``, ``converged``, ``n_init``; empty when the start was
        given as a GMMParams.
    map_estimator : GaussianMixture or None
        ``map_params`` as a fitted :class:`~bayesgmm.GaussianMixture` (the estimator passed as
        ``init``, or one built on first access from ``map_params`` and ``map_diagnostics``);
        None when the start was given as a GMMParams.
    covariance_type : str
    n_components, n_features : int
    sample_stats : dict of ndarray (chain, draw)
        ``diverging``, ``energy``, ``lp`` (log joint in the unconstrained space, minus NUTS's
        potential energy), ``n_steps``, ``tree_depth``, ``step_size``, ``acceptance_rate``.
    num_divergences : int
    relabeled : bool
        Whether the draws were aligned by :meth:`relabel` (component-wise summaries need it).
    feature_names : list of str or None
    settings : dict
        The sampler settings used.
    sample_weight : ndarray (n_samples,) or None
        The row multiplicities of the likelihood (``fit_posterior(sample_weight=...)``).
    """

    #: What :func:`bayesgmm.save` writes a Posterior as (read by bayesgmm.io).
    _bayesgmm_file_kind = "posterior"

    def __init__(
        self,
        draws: GMMParams,
        *,
        X,
        prior: Prior,
        map_params: GMMParams,
        map_diagnostics=None,
        map_estimator=None,
        sample_stats=None,
        relabeled: bool = False,
        feature_names=None,
        settings=None,
        sample_weight=None,
    ):
        if len(draws.batch_shape) != 2:
            raise ValueError(
                f"draws must have batch axes (chain, draw); got batch shape {draws.batch_shape}"
            )
        self.draws = draws
        self.X = np.asarray(X)
        self.prior = prior
        self.map_params = map_params
        self.map_diagnostics = dict(map_diagnostics or {})
        if map_estimator is not None and not self.map_diagnostics:
            self.map_diagnostics = _estimator_diagnostics(map_estimator)
        self._map_estimator = map_estimator
        self.sample_stats = dict(sample_stats or {})
        self.relabeled = bool(relabeled)
        self.feature_names = None if feature_names is None else [str(f) for f in feature_names]
        self.settings = dict(settings or {})
        self.sample_weight = None if sample_weight is None else np.asarray(sample_weight)

    # --- shapes ---------------------------------------------------------------------------
    @property
    def map_estimator(self):
        """``map_params`` as a fitted GaussianMixture (see the class docstring), or None."""
        if self._map_estimator is None and self.map_diagnostics:
            from .estimator import GaussianMixture  # the facade, only when asked for

            d = self.map_diagnostics
            self._map_estimator = GaussianMixture.from_params(
                self.map_params,
                prior=self.prior,
                lower_bound=d.get("lower_bound", float("nan")),
                n_iter=d.get("n_iter", 0),
                converged=d.get("converged", True),
                reg_covar=0.0,
                tol=1e-8,
                max_iter=1000,
                n_init=int(d.get("n_init", 4)),
            )
        return self._map_estimator

    @property
    def covariance_type(self) -> str:
        return self.draws.covariance_type

    @property
    def n_components(self) -> int:
        return self.draws.n_components

    @property
    def n_features(self) -> int:
        return self.draws.n_features

    @property
    def num_chains(self) -> int:
        return self.draws.batch_shape[0]

    @property
    def num_draws(self) -> int:
        return self.draws.batch_shape[1]

    @property
    def num_divergences(self) -> int:
        div = self.sample_stats.get("diverging")
        return 0 if div is None else int(np.sum(div))

    def __repr__(self):
        return (
            f"Posterior(covariance_type={self.covariance_type!r}, n_components="
            f"{self.n_components}, n_features={self.n_features}, chains={self.num_chains}, "
            f"draws={self.num_draws}, divergences={self.num_divergences}, "
            f"relabeled={self.relabeled})"
        )

    def _replace(self, **changes) -> Posterior:
        fields = {
            "X": self.X,
            "prior": self.prior,
            "map_params": self.map_params,
            "map_diagnostics": self.map_diagnostics,
            "map_estimator": self._map_estimator,
            "sample_stats": self.sample_stats,
            "relabeled": self.relabeled,
            "feature_names": self.feature_names,
            "settings": self.settings,
            "sample_weight": self.sample_weight,
        }
        draws = changes.pop("draws", self.draws)
        fields.update(changes)
        return Posterior(draws, **fields)

    # --- relabeling -----------------------------------------------------------------------
    def relabel(self, pivot: GMMParams | None = None, method: str = "hungarian"):
        """Permute each draw's components to match a pivot, undoing label switching.

        Parameters
        ----------
        pivot : GMMParams, optional
            Unbatched parameters to align to; default the MAP-EM solution.
        method : {'hungarian', 'stephens'}
            ``'hungarian'``: per draw, the permutation of minimum total symmetrised KL
            divergence between matched components (means and covariances).
            ``'stephens'``: Stephens (2000)'s algorithm on the responsibilities of the data.

        Returns
        -------
        posterior : Posterior
            With relabeled draws (``relabeled=True``).
        perms : int ndarray of shape (chain, draw, n_components)
            Component ``j`` of a relabeled draw is component ``perms[c, t, j]`` of the original.
        """
        pivot = self.map_params if pivot is None else pivot
        if not isinstance(pivot, GMMParams):
            raise TypeError(f"pivot must be a GMMParams or None; got {type(pivot).__name__}")
        if (
            pivot.batch_shape
            or pivot.n_components != self.n_components
            or pivot.n_features != self.n_features
            or pivot.covariance_type != self.covariance_type
        ):
            raise ValueError(
                "pivot must be unbatched GMMParams with the posterior's covariance_type, "
                "n_components and n_features"
            )
        pivot = pivot.astype(self.draws.dtype)
        perms = relabel_draws(self.draws, pivot, method=method, X=self.X)
        return self._replace(draws=permute_draws(self.draws, perms), relabeled=True), perms

    def _aligned(self) -> Posterior:
        return self if self.relabeled else self.relabel()[0]

    # --- summaries over draws ---------------------------------------------------------------
    def mean_params(self) -> GMMParams:
        """Posterior mean of the (relabeled) weights, means and covariances (unbatched).

        Draws are relabeled to the MAP-EM solution first unless they already were.
        """
        d = self._aligned().draws
        return GMMParams.tree_unflatten(
            d.covariance_type,
            tuple(jnp.mean(a, axis=(0, 1)) for a in (d.weights, d.means, d.covariances)),
        )

    @property
    def missing(self) -> str:
        """``'marginalize'`` when the posterior was fitted with missing values marginalised
        (``fit_posterior(missing='marginalize')``): rows with NaN are then accepted."""
        return self.settings.get("missing", "error")

    def _checked_missing(self, X=None):
        """``(X as a JAX array, whether it has NaN)``, ``X`` defaulting to the posterior's
        data. NaN is looked for in NumPy and only when allowed (``missing='marginalize'``)."""
        allow = self.missing == "marginalize"
        if X is None:
            X = self.X
        else:
            X = check_data(X, n_features=self.n_features, dtype=self.X.dtype, allow_nan=allow)
        return jnp.asarray(X), allow and bool(np.isnan(X).any())

    def predict_proba(self, X):
        """Posterior probability of each component for each row, averaged over the
        (relabeled) draws; shape (n_samples, n_components), rows summing to one."""
        X, has_nan = self._checked_missing(X)
        d = self._aligned().draws
        if has_nan:
            wlp = jnp.asarray(marginal.weighted_log_prob_missing(np.asarray(X), d))
            resp = jnp.exp(wlp - logsumexp(wlp, axis=-1, keepdims=True))
            return np.asarray(jnp.mean(resp, axis=(0, 1)))
        return np.asarray(jnp.mean(density.predict_proba(X, d), axis=(0, 1)))

    def predict(self, X):
        """Most probable component of each row under :meth:`predict_proba`; (n_samples,)."""
        return np.argmax(self.predict_proba(X), axis=-1)

    def assignment_uncertainty(self, X):
        """One minus the largest posterior component probability of each row; (n_samples,).

        0 for a point surely in one component; at most ``1 - 1/n_components``.
        """
        return 1.0 - np.max(self.predict_proba(X), axis=-1)

    def log_likelihood(self, X=None):
        """``log p(x_n | theta)`` for every draw and row; shape (chain, draw, n_samples).

        ``X`` defaults to the data the posterior conditions on.
        """
        X, has_nan = self._checked_missing(X)
        if has_nan:
            # Rows with missing values: the marginal density of their observed coordinates.
            wlp = marginal.weighted_log_prob_missing(np.asarray(X), self.draws)
            return np.asarray(logsumexp(wlp, axis=-1))
        return np.asarray(density.log_prob(X, self.draws))

    def impute(self, X=None, *, n_draws: int | None = None, seed=0):
        """Multiple imputations that carry the parameters' uncertainty: for each of
        ``n_draws`` posterior draws (spread evenly over chains and draws), the missing
        values of ``X`` drawn from their conditional distribution given the row's observed
        values under that draw's parameters.

        Parameters
        ----------
        X : array of shape (n_samples, n_features), optional
            NaN marking missing values; defaults to the data the posterior conditions on.
        n_draws : int, optional
            Default: every draw.
        seed : int or jax key

        Returns
        -------
        ndarray of shape (n_draws, n_samples, n_features)
            Observed values unchanged in every imputation.
        """
        X = np.asarray(
            self.X
            if X is None
            else check_data(X, n_features=self.n_features, dtype=self.X.dtype, allow_nan=True)
        )
        flat = jax.tree_util.tree_map(
            lambda a: np.asarray(a).reshape((-1,) + a.shape[2:]), self.draws
        )
        total = flat.weights.shape[0]
        n_draws = total if n_draws is None else check_positive_int(n_draws, "n_draws")
        picks = np.linspace(0, total - 1, n_draws).round().astype(int)
        keys = jax.random.split(as_key(seed), n_draws)
        out = []
        for key, i in zip(keys, picks):
            p = jax.tree_util.tree_map(lambda a, i=i: jnp.asarray(a[i]), flat)
            out.append(marginal.sample_missing(key, X, p, 1)[0])
        return np.stack(out)

    def score_samples(self, X):
        """Log posterior-predictive density of each row: log of the mean over draws of
        ``p(x | theta)``; shape (n_samples,)."""
        ll = self.log_likelihood(X)
        s = ll.shape[0] * ll.shape[1]
        return np.asarray(logsumexp(ll.reshape(s, -1), axis=0) - np.log(s))

    def score(self, X):
        """Mean log posterior-predictive density of the rows of ``X``."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples: int = 1, seed=0):
        """Posterior-predictive synthetic data: each point from its own random draw.

        Parameters
        ----------
        n_samples : int
        seed : int or jax key

        Returns
        -------
        X : ndarray (n_samples, n_features)
        labels : ndarray (n_samples,), the component (in the draws' labeling) of each point
        """
        n_samples = check_positive_int(n_samples, "n_samples")
        key_pick, key_sample = jax.random.split(as_key(seed))
        _, flat = _flatten_batch(self.draws)
        idx = jax.random.randint(key_pick, (n_samples,), 0, flat.weights.shape[0])
        x, labels = density.sample(key_sample, flat[idx], 1)
        return np.asarray(x[:, 0]), np.asarray(labels[:, 0])

    def summary(self, var_names=("weights", "means"), **kwargs):
        """``arviz.summary`` of the relabeled draws (relabeled to the MAP-EM solution first
        unless already relabeled): means, sds, HDIs, R-hat and ESS."""
        import arviz as az

        idata = self._aligned().to_inference_data(log_likelihood=False)
        return az.summary(idata, var_names=list(var_names), **kwargs)

    # --- ArviZ ----------------------------------------------------------------------------
    def to_inference_data(self, posterior_predictive=False, *, log_likelihood=True, seed=0):
        """An ``arviz.InferenceData`` (see :func:`bayesgmm.convert.to_inference_data`)."""
        from .convert import to_inference_data

        return to_inference_data(
            self,
            posterior_predictive=posterior_predictive,
            log_likelihood=log_likelihood,
            seed=seed,
        )

    @classmethod
    def from_inference_data(cls, idata) -> Posterior:
        """Rebuild a Posterior from :meth:`to_inference_data`'s output (also after netCDF)."""
        from .convert import read_inference_data

        parts = read_inference_data(idata)
        info = parts.pop("map_info") or {}
        # Files written before map diagnostics were kept still give a MAP estimator.
        diagnostics = {
            "lower_bound": float(info.get("lower_bound", np.nan)),
            "n_iter": int(info.get("n_iter", 0)),
            "converged": bool(info.get("converged", True)),
            "n_init": int(info.get("n_init", 4)),
        }
        return cls(parts.pop("draws"), map_diagnostics=diagnostics, **parts)

    @classmethod
    def load(cls, path) -> Posterior:
        """Load a Posterior saved by :meth:`save` (or :func:`bayesgmm.save`).

        Raises
        ------
        FileNotFoundError, FormatError
            As :func:`bayesgmm.load`.
        """
        from .io import read_posterior_file

        return cls.from_inference_data(read_posterior_file(path))

    def save(self, path, overwrite=False):
        """Save as ArviZ netCDF with bayesgmm's format attributes (:mod:`bayesgmm.io`); never
        replaces an existing file unless ``overwrite=True``. Reload with :func:`bayesgmm.load`."""
        from .io import save_posterior

        return save_posterior(self, path, overwrite=overwrite)
