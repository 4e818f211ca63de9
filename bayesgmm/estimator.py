"""``GaussianMixture``: scikit-learn's estimator conventions over the bayesgmm core.

A thin layer: it validates and converts input, calls :func:`bayesgmm.em.fit_em` and the
density functions, and stores NumPy results under scikit-learn's attribute names. It does not
import scikit-learn, yet works with its ``clone``, ``Pipeline``, ``GridSearchCV`` and pickling.
"""

from __future__ import annotations

import inspect
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from . import density, marginal
from ._exceptions import ConvergenceWarning, NotFittedError, sklearn_compatible
from ._random import as_key
from ._sources import RowSource, as_source, is_out_of_core
from ._validation import (
    check_covariance_type,
    check_data,
    check_nonnegative_float,
    check_positive_int,
    check_sample_weight,
    warn_if_reg_covar_dominates,
)
from .covariance import get_covariance_type
from .em import (  # noqa: F401
    FIT_FAILED_MESSAGE,
    INIT_METHODS,
    INIT_ROWS,
    BestFit,
    fit_best,
    fit_summary,
    mean_imputed,
    sample_rows,
)
from .params import GMMParams
from .prior import Prior

__all__ = [
    "GaussianMixture",
    "ConvergenceWarning",
    "NotFittedError",
    "n_parameters",
    "load_estimator",
]


def _sample_bucket(n_samples: int) -> int:
    """How many points ``sample`` draws to return ``n_samples``: the next power of two, at
    least 64.

    The sampler is compiled once per number of points; drawing a power of two and keeping the
    first ``n_samples`` bounds the compilations at ~log2(n) (scikit-learn's ``test_sample`` calls
    ``sample(n)`` for n = 1..99: 2 programs instead of 99). With JAX's partitionable threefry
    (the default) every draw depends only on its index, so the first ``n_samples`` points are
    exactly those ``density.sample(key, params, n_samples)`` returns. The legacy generator
    lacks that property, so under it exactly ``n_samples`` points are drawn.
    """
    if not jax.config.jax_threefry_partitionable:
        return n_samples
    return max(64, 1 << (n_samples - 1).bit_length())


def n_parameters(n_components: int, n_features: int, covariance_type: str) -> int:
    """Free parameters of a mixture: covariances, means and ``n_components - 1`` weights."""
    ct = get_covariance_type(covariance_type)
    return ct.n_parameters(n_components, n_features) + n_components * n_features + n_components - 1


class GaussianMixture:
    """Gaussian mixture fitted by EM in JAX, maximum likelihood or MAP.

    Parameters
    ----------
    n_components : int, default 1
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default 'full'
    tol : float, default 1e-3
        EM stops when the objective (mean log-likelihood, or log posterior per sample under a
        prior) changes by less than ``tol``.
    reg_covar : float, default 1e-6
        Added to covariance diagonals after every M-step (scikit-learn's placement). With a
        prior, set it to 0 for the exact posterior mode.
    max_iter : int, default 100
    n_init : int, default 1
        Restarts, run together (vectorised); the best objective is kept.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data', 'hc'}, default 'kmeans'
        How each restart starts: scikit-learn's four (k-means labels, k-means++ seeds,
        random responsibilities, random data points), or ``'hc'``, the partition of mclust's
        model-based agglomerative hierarchical clustering (:func:`bayesgmm.hc.hc`, on the
        SVD-scaled data, built on a 2000-row subsample above that size). ``'hc'`` is
        deterministic, so its restarts all start alike and ``n_init`` above 1 only repeats it.
    weights_init : array of shape (n_components,), optional
    means_init : array of shape (n_components, n_features), optional
    precisions_init : array, optional
        Compact shape of the covariance type (see :mod:`bayesgmm.covariance`). When all three
        are given, no other initialisation runs.
    random_state : int, numpy Generator/RandomState, jax key or None
    warm_start : bool, default False
        Start from the previous fit's parameters (with a single run).
    verbose : int, default 0
        1 prints a line per restart after fitting, 2 also the objective per iteration.
    verbose_interval : int, default 10
        Iterations between lines at ``verbose=2``.
    prior : Prior, 'default' or None, default None
        ``None`` is maximum likelihood; ``'default'`` is mclust's data-dependent conjugate
        prior (:meth:`Prior.default`); a :class:`Prior` is used as given (MAP-EM).
    missing : {'error', 'marginalize'}, default 'error'
        What NaN in ``X`` means. ``'error'`` refuses it. ``'marginalize'`` treats NaN as a
        value missing at random: EM uses each row's observed coordinates (the marginal
        density for the responsibilities, the conditional expectations and covariances of
        the missing coordinates in the M-step; Ghahramani and Jordan 1994), and
        ``score_samples``, ``predict_proba``, ``predict``, ``score``, ``bic``, ``aic`` of rows
        with NaN use the marginal density of their observed values. :meth:`impute` and
        :meth:`sample_missing` complete rows. A row with every value missing carries no
        information: its density is 1, its responsibilities are the weights. The
        initialisation (and ``prior='default'``'s data moments) run on the column-mean-imputed
        data; EM itself never imputes. Data without NaN fit exactly as with ``'error'``.
    devices : None, int or sequence of jax.Device, default None
        The devices EM shards the rows over (:func:`bayesgmm.em.fit_em`): each computes the
        statistics of its share and one ``psum`` adds them, so the fit equals the
        one-device fit up to summation order. None uses every local device of the default
        backend when there are several (host CPU devices come from
        ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` set before JAX starts) and
        the problem is not small; 1 is one device. EM with missing values runs on one device.

    Attributes
    ----------
    weights_ : ndarray (n_components,)
    means_ : ndarray (n_components, n_features)
    covariances_, precisions_, precisions_cholesky_ : ndarray, compact shape of the type
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Objective at the last iteration of the best run.
    lower_bounds_ : ndarray (n_iter_,)
        Objective at each iteration of the best run.
    n_features_in_ : int
    params_ : GMMParams
        The fitted parameters as the container every other part of bayesgmm takes.
    prior_ : Prior or None
        The prior actually used.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm import GaussianMixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-3, 1, (100, 1)), rng.normal(3, 1, (100, 1))])
    >>> gm = GaussianMixture(2, random_state=0).fit(X)
    >>> np.round(np.sort(gm.means_.ravel()))
    array([-3.,  3.])
    """

    _estimator_type = "density_estimator"

    #: What :func:`bayesgmm.save` writes an estimator as (read by bayesgmm.io).
    _bayesgmm_file_kind = "model"

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        prior=None,
        missing="error",
        devices=None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.prior = prior
        self.missing = missing
        self.devices = devices

    # --- scikit-learn estimator protocol --------------------------------------------------
    @classmethod
    def _get_param_names(cls):
        sig = inspect.signature(cls.__init__)
        return sorted(p for p in sig.parameters if p != "self")

    def get_params(self, deep=True):
        """Constructor arguments as a dict (scikit-learn's protocol)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        """Set constructor arguments; returns ``self``."""
        valid = self._get_param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(
                    f"Invalid parameter {key!r} for GaussianMixture; valid parameters are {valid}"
                )
            setattr(self, key, value)
        return self

    def __sklearn_tags__(self):
        from sklearn.utils import Tags, TargetTags

        tags = Tags(estimator_type="density_estimator", target_tags=TargetTags(required=False))
        return tags

    def __repr__(self):
        defaults = {
            k: v.default
            for k, v in inspect.signature(type(self).__init__).parameters.items()
            if k != "self"
        }
        changed = []
        for k in self._get_param_names():
            v = getattr(self, k)
            d = defaults[k]
            same = v is d or (
                not isinstance(v, np.ndarray | Prior)
                and not isinstance(d, np.ndarray)
                and type(v) is type(d)
                and v == d
            )
            if not same:
                changed.append(f"{k}={v!r}" if not isinstance(v, np.ndarray) else f"{k}=array")
        return f"GaussianMixture({', '.join(changed)})"

    # --- validation ---------------------------------------------------------------------
    def _check_parameters(self, X):
        self._check_missing()
        n_samples, d = X.shape
        k = check_positive_int(self.n_components, "n_components")
        check_covariance_type(self.covariance_type)
        ct = get_covariance_type(self.covariance_type)
        check_nonnegative_float(self.tol, "tol")
        check_nonnegative_float(self.reg_covar, "reg_covar")
        check_positive_int(self.max_iter, "max_iter", minimum=0)
        check_positive_int(self.n_init, "n_init")
        # verbose=True is accepted as 1, as scikit-learn does.
        verbose = int(self.verbose) if isinstance(self.verbose, bool) else self.verbose
        check_positive_int(verbose, "verbose", minimum=0)
        if self.init_params not in INIT_METHODS:
            raise ValueError(
                f"init_params must be one of {list(INIT_METHODS)}; got {self.init_params!r}"
            )
        if n_samples < k:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = {k}, "
                f"n_samples = {n_samples}"
            )
        dtype = X.dtype
        weights = means = covs = None
        # Each message names our argument, then says it in scikit-learn's words ("The parameter
        # 'weights' should ..."), which its own tests match.
        if self.weights_init is not None:
            weights = np.asarray(self.weights_init, dtype=dtype)
            if weights.shape != (k,):
                raise ValueError(
                    "weights_init must have shape (n_components,): The parameter 'weights' "
                    f"should have the shape of ({k},), but got {weights.shape}"
                )
            if np.any(weights < 0) or np.any(weights > 1) or not np.isfinite(weights).all():
                lo, hi = np.min(weights), np.max(weights)
                # scikit-learn's message prints the minimum as "max value" and the maximum as
                # "min value"; it is quoted as such, after the correct statement.
                raise ValueError(
                    f"weights_init must be in the range [0, 1]; got values from {lo:.5f} to "
                    f"{hi:.5f} (scikit-learn's message, which swaps the labels: The parameter "
                    f"'weights' should be in the range [0, 1], but got max value {lo:.5f}, "
                    f"min value {hi:.5f})"
                )
            if not np.allclose(weights.sum(), 1.0, atol=1e-6 if dtype == np.float64 else 1e-4):
                raise ValueError(
                    "weights_init must sum to 1: The parameter 'weights' should be normalized, "
                    f"but got sum(weights) = {weights.sum():.5f}"
                )
        if self.means_init is not None:
            means = np.asarray(self.means_init, dtype=dtype)
            if means.shape != (k, d):
                raise ValueError(
                    "means_init must have shape (n_components, n_features): The parameter "
                    f"'means' should have the shape of ({k}, {d}), but got {means.shape}"
                )
            if not np.isfinite(means).all():
                raise ValueError("means_init contains NaN or infinity")
        if self.precisions_init is not None:
            prec = np.asarray(self.precisions_init, dtype=dtype)
            want = ct.shape(k, d)
            if prec.shape != want:
                names = {"component": "n_components", "feature": "n_features"}
                symbolic = tuple(names.get(dim, "n_features") for dim in ct.dims)
                raise ValueError(
                    f"precisions_init for covariance_type={ct.name!r} must have shape "
                    f"({', '.join(symbolic)}{',' if len(symbolic) == 1 else ''}): The parameter "
                    f"'{ct.name} precision' should have the shape of {want}, but got {prec.shape}"
                )
            if not np.isfinite(prec).all():
                raise ValueError("precisions_init contains NaN or infinity")
            try:
                ct.check_covariances(prec, "precisions_init")
            except ValueError as exc:
                matrices = "feature_bis" in ct.dims  # full and tied hold (d, d) matrices
                need = "symmetric, positive-definite" if matrices else "positive"
                raise ValueError(f"{exc} ('{ct.name} precision' should be {need})") from None
            covs = np.asarray(ct.covariance_from_precision(jnp.asarray(prec)))
        return weights, means, covs

    def _check_missing(self):
        if self.missing not in ("error", "marginalize"):
            raise ValueError(f"missing must be 'error' or 'marginalize'; got {self.missing!r}")

    def _resolve_prior(self, X, sample_weight=None, n_features=None):
        prior = self.prior
        if prior is None:
            return None
        k, d = self.n_components, (X.shape[1] if n_features is None else n_features)
        if isinstance(prior, str):
            if prior != "default":
                raise ValueError(f"prior must be None, 'default' or a Prior; got {prior!r}")
            prior = Prior.default(X, k, self.covariance_type, sample_weight=sample_weight)
        if not isinstance(prior, Prior):
            raise TypeError(f"prior must be None, 'default' or a Prior; got {type(prior).__name__}")
        if prior.covariance_type != self.covariance_type:
            raise ValueError(
                f"prior is for covariance_type={prior.covariance_type!r} but the model uses "
                f"{self.covariance_type!r}"
            )
        if prior.n_components != k or prior.n_features != d:
            raise ValueError(
                f"prior is for {prior.n_components} components and {prior.n_features} features; "
                f"the model has {k} components and the data {d} features"
            )
        if np.any(np.asarray(prior.weight_concentration) < 1):
            raise ValueError(
                "MAP-EM needs weight_concentration >= 1 (below 1 the Dirichlet has no interior "
                "mode); use fit_posterior for sparser priors"
            )
        return prior

    # --- fitting --------------------------------------------------------------------------
    def fit(self, X, y=None, sample_weight=None):
        """Estimate the parameters by EM; returns self.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        y : ignored
        sample_weight : array of shape (n_samples,), optional
            Non-negative row multiplicities (survey weights, counts of binned or aggregated
            data, importance weights). Every statistic, the objective (the weighted mean
            log-likelihood, ``lower_bound_``), the k-means / k-means++ / random_from_data
            initialisation and ``prior="default"`` are weighted, so integer weights give
            exactly the fit of the data with rows repeated and a zero weight is a row that
            is absent. ``init_params="hc"`` refuses weights.
        """
        # No final E-step here (fit_predict has one): it would compile a prediction program
        # for every model shape, which model-selection grids never use.
        self._fit(X, sample_weight=sample_weight)
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit (``sample_weight`` as in :meth:`fit`), then return the most probable component
        of each row of ``X``; shape (n_samples,)."""
        Xj = self._fit(X, sample_weight=sample_weight)
        if isinstance(Xj, RowSource):
            return self.predict(Xj.data)
        # Always a final E-step, so that fit_predict(X) equals fit(X).predict(X) whatever
        # max_iter and tol were (the last M-step moved the parameters after the last E-step).
        if self.missing == "marginalize" and np.isnan(np.asarray(Xj)).any():
            return np.argmax(marginal.predict_proba_missing(Xj, self.params_), axis=1)
        return np.asarray(density.predict(Xj, self.params_))

    def _fit(self, X, resp_init=None, sample_weight=None):
        """Validate, run EM and store the fitted attributes; returns ``X`` as a JAX array.
        Warnings use ``stacklevel=3``: they point at the caller of ``fit``/``fit_predict``.

        ``resp_init`` (n_samples, n_components), for :func:`bayesgmm.select`: start from the
        M-step of these responsibilities instead of ``init_params``."""
        self._check_missing()
        if is_out_of_core(X):
            # Read in chunks by EM (bayesgmm.em.stream); never made one array here.
            X = as_source(X)
            if X.shape[0] < 2:
                raise ValueError(f"X has {X.shape[0]} sample(s); at least 2 required")
        else:
            X = check_data(X, min_samples=2, allow_nan=self.missing == "marginalize")
        weights, means, covs = self._check_parameters(X)
        sample_weight = check_sample_weight(
            sample_weight, X.shape[0], X.dtype, min_positive=int(self.n_components)
        )
        if isinstance(X, RowSource):
            # The default prior's data moments come from the rows the initialisation reads
            # (a uniform subset of stream.INIT_ROWS rows; every row when there are fewer).
            complete, sample_weight_prior = None, None
            if isinstance(self.prior, str):
                complete, w_sub, _ = sample_rows(X, INIT_ROWS, 0, sample_weight)
                sample_weight_prior = w_sub
        else:
            # With missing values, the warning's scale and the default prior's data moments
            # come from the column-mean-imputed data (EM itself uses the observed values only).
            complete = mean_imputed(X, sample_weight) if np.isnan(X).any() else X
            warn_if_reg_covar_dominates(complete, float(self.reg_covar))
            sample_weight_prior = sample_weight
        prior = self._resolve_prior(complete, sample_weight_prior, X.shape[1])
        k = int(self.n_components)
        params_init = None
        lower_bound_init = -np.inf
        n_init = int(self.n_init)
        if self.warm_start and hasattr(self, "converged_"):
            if self.params_.n_features != X.shape[1] or self.params_.n_components != k:
                raise ValueError(
                    "warm_start needs the same n_components and number of features as the "
                    "previous fit"
                )
            params_init = self.params_
            # As scikit-learn: the first iteration's change is measured from the previous fit.
            lower_bound_init = self.lower_bound_
            n_init = 1
        Xj = X if isinstance(X, RowSource) else jnp.asarray(X)
        fit = fit_best(
            as_key(self.random_state),
            X,
            k,
            self.covariance_type,
            stacklevel=4,  # fit_best -> _fit -> fit/fit_predict -> the user's call
            n_init=n_init,
            init_params=self.init_params,
            max_iter=int(self.max_iter),
            tol=float(self.tol),
            reg_covar=float(self.reg_covar),
            prior=prior,
            weights_init=weights,
            means_init=means,
            covariances_init=covs,
            params_init=params_init,
            lower_bound_init=lower_bound_init,
            resp_init=None if params_init is not None else resp_init,
            sample_weight=sample_weight,
            devices=self.devices,
        )
        self._store(fit, prior, X.shape[1])
        if self.verbose:
            self._print_verbose(fit.runs, fit.failed)
        if not self.converged_ and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. Try different init "
                "parameters, or increase max_iter, tol, or check for degenerate data.",
                sklearn_compatible(ConvergenceWarning),
                stacklevel=3,
            )
        return Xj

    @classmethod
    def from_params(
        cls,
        params: GMMParams,
        *,
        prior: Prior | None = None,
        lower_bound: float = float("nan"),
        n_iter: int = 0,
        converged: bool = True,
        **estimator_params,
    ) -> GaussianMixture:
        """A fitted estimator holding given parameters, without running EM.

        For parameters that come from elsewhere (a posterior's MAP start, a file, a paper),
        so that ``predict``, ``score_samples``, ``sample``, ``bic`` and ``save`` serve them.

        Parameters
        ----------
        params : GMMParams
            No batch axis.
        prior : Prior, optional
            Stored as ``prior_`` (and as the ``prior`` parameter).
        lower_bound : float, optional
            Stored as ``lower_bound_`` (and ``lower_bounds_ = [lower_bound] * n_iter``).
        n_iter : int, default 0
        converged : bool, default True
        **estimator_params
            Other constructor parameters (``reg_covar``, ``tol``, ...); ``n_components`` and
            ``covariance_type`` come from ``params``.

        Returns
        -------
        GaussianMixture

        Examples
        --------
        >>> import numpy as np
        >>> from bayesgmm import GaussianMixture, GMMParams
        >>> p = GMMParams([0.5, 0.5], [[-2.0], [2.0]], [1.0, 1.0], "spherical")
        >>> gm = GaussianMixture.from_params(p)
        >>> gm.predict(np.array([[-3.0], [3.0]]))
        array([0, 1])
        """
        if not isinstance(params, GMMParams) or params.batch_shape:
            raise TypeError("params must be a GMMParams without batch axes")
        est = cls(
            params.n_components,
            covariance_type=params.covariance_type,
            prior=prior,
            **estimator_params,
        )
        params = GMMParams.tree_unflatten(
            params.covariance_type,
            tuple(jnp.asarray(np.asarray(a)) for a in params.tree_flatten()[0]),
        )
        est._store(fit_summary(params, lower_bound, n_iter, converged), prior, params.n_features)
        return est

    def _store(self, fit: BestFit, prior, n_features):
        self.params_ = fit.params
        self.prior_ = prior
        self.weights_, self.means_, self.covariances_ = (
            np.asarray(a) for a in fit.params.tree_flatten()[0]
        )
        self.precisions_ = fit.precisions
        self.precisions_cholesky_ = fit.precisions_cholesky
        self.n_iter_ = fit.n_iter
        self.converged_ = fit.converged
        self.lower_bound_ = fit.lower_bound
        self.lower_bounds_ = fit.lower_bounds
        self.n_features_in_ = n_features

    def _print_verbose(self, res, failed):
        for i in range(len(failed)):
            n = int(res.n_iter[i])
            print(
                f"Initialization {i}: n_iter={n} converged={bool(res.converged[i])} "
                f"failed={bool(failed[i])} lower_bound={float(res.lower_bound[i]):.6g}"
            )
            if self.verbose >= 2:
                lbs = np.asarray(res.lower_bounds[i])[:n]
                step = max(1, int(self.verbose_interval))
                for it in range(0, n, step):
                    print(f"  Iteration {it + 1}\t objective {lbs[it]:.8g}")

    # --- using a fitted model -------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "params_"):
            raise sklearn_compatible(NotFittedError)(
                "This GaussianMixture instance is not fitted yet. Call 'fit' with appropriate "
                "arguments before using this estimator."
            )

    def _checked_missing(self, X):
        """``(X as a JAX array, whether it has NaN)``: rows with NaN go through
        :mod:`bayesgmm.marginal`. NaN is looked for in the validated NumPy array, and only
        when it is allowed (``missing='marginalize'``): no device work on the common path."""
        self._check_fitted()
        allow = getattr(self, "missing", "error") == "marginalize"
        X = check_data(
            X, n_features=self.n_features_in_, fitted_by=type(self).__name__, allow_nan=allow
        )
        return jnp.asarray(X), allow and bool(np.isnan(X).any())

    def _source(self, X):
        """``X`` as a :class:`~bayesgmm._sources.RowSource` when it is read in chunks (a Dask
        array, a memmap, an h5py/zarr dataset), checked against the fitted features; else
        None."""
        if not is_out_of_core(X):
            return None
        self._check_fitted()
        source = as_source(X)
        if source.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {source.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input (the number of columns it was "
                "fitted with)"
            )
        return source

    def score_samples(self, X):
        """Log density ``log p(x)`` of each row; shape (n_samples,). With
        ``missing='marginalize'``, rows with NaN get the marginal density of their observed
        values. Data read in chunks gives a NumPy array, a Dask array for a Dask ``X``."""
        if (source := self._source(X)) is not None:
            return source.map_rows(_chunk_log_prob, _host_params(self.params_))
        Xj, has_nan = self._checked_missing(X)
        if has_nan:
            return marginal.log_prob_missing(Xj, self.params_)
        return np.asarray(density.log_prob(Xj, self.params_))

    def score(self, X, y=None, sample_weight=None):
        """Mean log-likelihood of ``X`` (higher is better); with ``sample_weight``
        (n_samples,), the weighted mean ``sum(w log p(x)) / sum(w)``."""
        total, count = self._total_loglik(X, sample_weight)
        return float(total / count)

    def _total_loglik(self, X, sample_weight):
        """``(sum(w log p(x)), sum(w))`` of the rows of ``X`` (weights 1 without weights)."""
        if (source := self._source(X)) is not None:
            w = check_sample_weight(sample_weight, source.shape[0], source.dtype)
            total, count = source.map_reduce(
                _chunk_total_log_prob, _host_params(self.params_), weights=w
            )
            return float(total), (source.shape[0] if w is None else float(count))
        logp = self.score_samples(X)
        w = check_sample_weight(sample_weight, logp.shape[0], logp.dtype)
        if w is None:
            return float(np.mean(logp)) * logp.shape[0], logp.shape[0]
        return float(np.sum(w * logp)), float(np.sum(w))

    def predict_proba(self, X):
        """Responsibilities; shape (n_samples, n_components), rows summing to one (from the
        observed values of rows with NaN, with ``missing='marginalize'``)."""
        if (source := self._source(X)) is not None:
            k = self.params_.n_components
            return source.map_rows(_chunk_proba, _host_params(self.params_), out_shape=(k,))
        Xj, has_nan = self._checked_missing(X)
        if has_nan:
            return marginal.predict_proba_missing(Xj, self.params_)
        return np.asarray(density.predict_proba(Xj, self.params_))

    def predict(self, X):
        """Most probable component; shape (n_samples,)."""
        if (source := self._source(X)) is not None:
            return source.map_rows(_chunk_predict, _host_params(self.params_), out_dtype=np.int64)
        Xj, has_nan = self._checked_missing(X)
        if has_nan:
            return np.argmax(marginal.predict_proba_missing(Xj, self.params_), axis=1)
        return np.asarray(density.predict(Xj, self.params_))

    def impute(self, X):
        """``X`` with every missing value (NaN) replaced by its conditional expectation
        ``E[x_m | x_o]`` under the fitted mixture; observed values unchanged.

        Parameters
        ----------
        X : array of shape (n_samples, n_features), NaN marking missing values

        Returns
        -------
        ndarray of shape (n_samples, n_features)
            A row with every value missing becomes the mixture mean.

        Examples
        --------
        >>> import numpy as np
        >>> from bayesgmm import GaussianMixture
        >>> rng = np.random.default_rng(0)
        >>> X = rng.multivariate_normal([0, 0], [[1, 0.9], [0.9, 1]], 500)
        >>> gm = GaussianMixture(1, missing="marginalize").fit(X)
        >>> np.round(gm.impute([[2.0, np.nan]]), 1)  # E[x1 | x0 = 2] = 0.9 * 2
        array([[2. , 1.8]])
        """
        Xj = self._checked_nan(X)
        return marginal.conditional_mean(Xj, self.params_)

    def sample_missing(self, X, n_draws=1, random_state=None):
        """Multiple imputations: ``n_draws`` completions of ``X``, each missing value drawn
        from its conditional distribution given the row's observed values (a component from
        the row's responsibilities, then that component's conditional Gaussian).

        Parameters
        ----------
        X : array of shape (n_samples, n_features), NaN marking missing values
        n_draws : int, default 1
        random_state : optional
            Defaults to the estimator's ``random_state``.

        Returns
        -------
        ndarray of shape (n_draws, n_samples, n_features)
        """
        Xj = self._checked_nan(X)
        n_draws = check_positive_int(n_draws, "n_draws")
        rs = self.random_state if random_state is None else random_state
        return marginal.sample_missing(as_key(rs), Xj, self.params_, n_draws)

    def _checked_nan(self, X):
        self._check_fitted()
        return np.asarray(
            check_data(
                X, n_features=self.n_features_in_, fitted_by=type(self).__name__, allow_nan=True
            )
        )

    def sample(self, n_samples=1, random_state=None):
        """Draw synthetic data from the fitted mixture.

        Parameters
        ----------
        n_samples : int, default 1
        random_state : optional
            Defaults to the estimator's ``random_state`` (so an int seed repeats its draws).

        Returns
        -------
        X : ndarray (n_samples, n_features)
        y : ndarray (n_samples,), the component of each draw
        """
        self._check_fitted()
        try:
            n_samples = check_positive_int(n_samples, "n_samples")
        except ValueError as exc:  # scikit-learn's words first, then ours
            raise ValueError(f"Invalid value for 'n_samples': {exc}") from None
        rs = self.random_state if random_state is None else random_state
        X, y = density.sample(as_key(rs), self.params_, _sample_bucket(n_samples))
        return np.asarray(X)[:n_samples], np.asarray(y)[:n_samples]

    def save(self, path, overwrite=False):
        """Save the fitted model to ``path`` (format: :mod:`bayesgmm.io`); never replaces an
        existing file unless ``overwrite=True``. Reload with :func:`bayesgmm.load`."""
        from .io import save_estimator

        return save_estimator(self, path, overwrite=overwrite)

    def _n_parameters(self):
        return n_parameters(self.params_.n_components, self.n_features_in_, self.covariance_type)

    def bic(self, X, sample_weight=None):
        """Bayesian information criterion on ``X``; lower is better.

        ``-2 log L + p log n``; with ``sample_weight`` (n_samples,), the weighted
        log-likelihood ``sum(w log p(x))`` and ``n = sum(w)`` (the criterion of the data with
        rows repeated, for integer weights).
        """
        loglik, n = self._total_loglik(X, sample_weight)
        return float(-2 * loglik + self._n_parameters() * np.log(n))

    def aic(self, X, sample_weight=None):
        """Akaike information criterion ``-2 log L + 2 p`` on ``X``; lower is better
        (``sample_weight`` weights the log-likelihood as in :meth:`bic`)."""
        loglik, _ = self._total_loglik(X, sample_weight)
        return float(-2 * loglik + 2 * self._n_parameters())


# Per-chunk prediction for data read in chunks: module-level functions of NumPy arguments, so
# that a Dask task carries them to any worker.
def _host_params(params: GMMParams) -> GMMParams:
    return jax.tree_util.tree_map(np.asarray, params)


def _chunk_log_prob(chunk, params):
    return np.asarray(density.log_prob(jnp.asarray(chunk), params))


def _chunk_proba(chunk, params):
    return np.asarray(density.predict_proba(jnp.asarray(chunk), params))


def _chunk_predict(chunk, params):
    return np.asarray(density.predict(jnp.asarray(chunk), params)).astype(np.int64)


def _chunk_total_log_prob(chunk, w, params):
    logp = _chunk_log_prob(chunk, params)
    if w is None:
        return np.sum(logp), np.asarray(logp.shape[0], logp.dtype)
    return np.sum(w * logp), np.sum(w)


def load_estimator(path) -> GaussianMixture:
    """Load a :class:`GaussianMixture` saved by :meth:`GaussianMixture.save` (file format:
    :mod:`bayesgmm.io`); :func:`bayesgmm.load` reads either kind of file.

    Raises
    ------
    FileNotFoundError, FormatError
        As :func:`bayesgmm.load`.
    """
    from .io import read_estimator_file

    params, fitted = read_estimator_file(path)
    gm = GaussianMixture(**params)
    for name, value in fitted.items():
        setattr(gm, name, value)
    return gm
