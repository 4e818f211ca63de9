"""The conjugate prior: the :class:`Prior` container and its maths per covariance type.

MAP-EM (:mod:`bayesgmm.em`), the NumPyro model (:mod:`bayesgmm.model`) and the file formats
share this one prior. Its distributions are written once, per covariance type, in a small
family object (:func:`prior_family`): :func:`log_prior` sums their log densities and
:func:`bayesgmm.model.gmm_model` samples the same distributions as its sites, so the MAP-EM
objective and the model's log joint agree by construction (``tests/test_model.py`` checks it
against ``scipy.stats``). The closed-form posterior-mode covariance of the M-step lives with
the other M-step updates, in :mod:`bayesgmm.em.kernels`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from ._jax import is_concrete
from ._validation import as_float_array
from .covariance import _check_pd_matrices, _check_positive, get_covariance_type, per_type

__all__ = ["Prior", "PriorFamily", "prior_family", "log_prior", "weight_distribution"]


def _weighted_mean(X, w):
    return (w @ X) / np.sum(w)


def _data_cov(X, w=None):
    """The data covariance (d, d) with ``ddof=1``; with row multiplicities ``w``, that of the
    rows repeated (divided by ``sum(w) - 1``)."""
    if w is None:
        return np.atleast_2d(np.cov(X, rowvar=False, ddof=1))
    U = X - _weighted_mean(X, w)
    return (U.T * w) @ U / _dof_count(w)


def _data_var(X, w=None):
    """The feature variances (d,) with ``ddof=1`` (of the repeated rows under ``w``)."""
    if w is None:
        return np.var(X, axis=0, ddof=1)
    return w @ (X - _weighted_mean(X, w)) ** 2 / _dof_count(w)


def _dof_count(w):
    total = float(np.sum(w))
    if total <= 1:
        raise ValueError(
            "the default prior's data covariance needs sample_weight summing to more than 1 "
            f"(it divides by sum(w) - 1, as for repeated rows); got sum {total:g}"
        )
    return total - 1


class PriorFamily:
    """The conjugate prior of one covariance type (see :class:`Prior` for the distributions).

    ``covariance_plates`` and ``mean_plates`` name the plates around the two NumPyro sites,
    innermost (``dim=-1``) first; ``"component"`` has ``n_components`` entries and
    ``"feature"`` ``n_features``.
    """

    name: str
    covariance_plates: tuple[str, ...]
    mean_plates: tuple[str, ...]

    def scale_shape(self, n_features: int) -> tuple[int, ...]:
        """Shape of ``Prior.scale``."""
        raise NotImplementedError

    def min_dof(self, n_features: int) -> int:
        """``Prior.dof`` must exceed this."""
        return 0

    def check_scale(self, scale: np.ndarray) -> None:
        """Raise ``ValueError`` naming ``scale`` unless it is a valid scale (NumPy input)."""
        _check_positive(scale, "scale")

    def default_scale(self, X: np.ndarray, n_components: int, sample_weight=None) -> np.ndarray:
        """mclust's default prior scale for this type (data-dependent; ``sample_weight``
        (n_samples,) weights the data covariance as repeated rows)."""
        raise NotImplementedError

    def covariance_distribution(self, prior: Prior):
        """The distribution of one covariance site entry (batched by ``covariance_plates``)."""
        return dist.InverseGamma(prior.dof / 2, prior.scale / 2)

    def mean_distribution(self, prior: Prior, cov):
        """The distribution of the means given the covariances ``cov`` (compact shape)."""
        raise NotImplementedError

    def log_prior(self, means, cov, prior: Prior):
        """Log prior density of the component parameters (summed), unbatched."""
        lp_cov = self.covariance_distribution(prior).log_prob(cov)
        lp_mean = self.mean_distribution(prior, cov).log_prob(means)
        return jnp.sum(lp_cov) + jnp.sum(lp_mean)

    def __repr__(self):
        return f"<prior family {self.name!r}>"


class _InverseWishartFamily(PriorFamily):
    """``full`` and ``tied``: Inverse-Wishart covariances, multivariate normal means."""

    def scale_shape(self, n_features):
        return (n_features, n_features)

    def min_dof(self, n_features):
        return n_features - 1

    def check_scale(self, scale):
        _check_pd_matrices(scale, "scale")

    def default_scale(self, X, n_components, sample_weight=None):
        d = X.shape[1]
        return _data_cov(X, sample_weight) * n_components ** (-2.0 / d)

    def covariance_distribution(self, prior):
        return dist.InverseWishart(prior.dof, scale_matrix=prior.scale)

    def mean_distribution(self, prior, cov):
        return dist.MultivariateNormal(prior.mean, covariance_matrix=cov / prior.mean_precision)


class _FullPrior(_InverseWishartFamily):
    name = "full"
    covariance_plates = ("component",)
    mean_plates = ("component",)


class _TiedPrior(_InverseWishartFamily):
    # One shared matrix (no plate), each mean under it.
    name = "tied"
    covariance_plates = ()
    mean_plates = ("component",)


class _DiagPrior(PriorFamily):
    name = "diag"
    covariance_plates = ("feature", "component")
    mean_plates = ("feature", "component")

    def scale_shape(self, n_features):
        return (n_features,)

    def default_scale(self, X, n_components, sample_weight=None):
        d = X.shape[1]
        return _data_var(X, sample_weight) * n_components ** (-2.0 / d)

    def mean_distribution(self, prior, cov):
        return dist.Normal(prior.mean, jnp.sqrt(cov / prior.mean_precision))


class _SphericalPrior(PriorFamily):
    name = "spherical"
    covariance_plates = ("component",)
    mean_plates = ("feature", "component")

    def scale_shape(self, n_features):
        return ()

    def default_scale(self, X, n_components, sample_weight=None):
        d = X.shape[1]
        return np.asarray(np.mean(_data_var(X, sample_weight)) * n_components ** (-2.0 / d))

    def mean_distribution(self, prior, cov):
        return dist.Normal(prior.mean, jnp.sqrt(cov / prior.mean_precision)[..., None])


#: The prior family of every covariance type, by name.
PRIOR_FAMILIES: dict[str, PriorFamily] = {
    f.name: f for f in (_FullPrior(), _TiedPrior(), _DiagPrior(), _SphericalPrior())
}


def prior_family(covariance_type) -> PriorFamily:
    """The :class:`PriorFamily` of ``covariance_type`` (a name or a covariance-type object)."""
    return per_type(PRIOR_FAMILIES, covariance_type)


def weight_distribution(prior: Prior):
    """The Dirichlet distribution of the mixing weights."""
    return dist.Dirichlet(prior.weight_concentration)


def log_prior(params, prior: Prior):
    """Log prior density of unbatched parameters: Dirichlet weights plus the components'
    conjugate prior (the same distributions the NumPyro model samples).

    Parameters
    ----------
    params : GMMParams
        Unbatched parameters of ``prior.covariance_type``.
    prior : Prior

    Returns
    -------
    array ()

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm import GMMParams, Prior
    >>> from bayesgmm.prior import log_prior
    >>> X = np.random.default_rng(0).normal(size=(40, 2))
    >>> prior = Prior.default(X, 2, "spherical")
    >>> p = GMMParams([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.0]], [1.0, 1.0], "spherical")
    >>> bool(np.isfinite(log_prior(p, prior)))
    True
    """
    lp_w = weight_distribution(prior).log_prob(params.weights)
    family = prior_family(params.covariance_type)
    return lp_w + family.log_prior(params.means, params.covariances, prior)


def _check_hyper(value, name, shape, *, positive=True, minimum=None):
    arr = as_float_array(value, name)
    if arr.shape != shape:
        try:
            arr = np.broadcast_to(arr, shape).copy()
        except ValueError:
            raise ValueError(f"{name} must have shape {shape}; got {arr.shape}") from None
    if positive and np.any(arr <= 0):
        raise ValueError(f"{name} must be positive; got {arr}")
    if minimum is not None and np.any(arr < minimum):
        raise ValueError(f"{name} must be >= {minimum}; got {arr}")
    return arr


@jax.tree_util.register_pytree_node_class
class Prior:
    """Conjugate prior shared by MAP-EM and the NumPyro model.

    Weights ~ Dirichlet(``weight_concentration``). For each component (Fraley and Raftery 2007):

    - ``full``: Sigma_k ~ InverseWishart(``dof``, ``scale``), mu_k | Sigma_k ~ N(``mean``,
      Sigma_k / ``mean_precision``);
    - ``tied``: one Sigma ~ InverseWishart(``dof``, ``scale``), each mu_k | Sigma ~ N(``mean``,
      Sigma / ``mean_precision``);
    - ``diag``: each variance sigma2_kj ~ InverseGamma(``dof``/2, ``scale``_j/2),
      mu_kj | sigma2_kj ~ N(``mean``_j, sigma2_kj / ``mean_precision``);
    - ``spherical``: sigma2_k ~ InverseGamma(``dof``/2, ``scale``/2),
      mu_k | sigma2_k ~ N(``mean``, sigma2_k / ``mean_precision`` I).

    Parameters
    ----------
    weight_concentration : array of shape (n_components,)
        Dirichlet concentration; MAP-EM needs every entry >= 1 (1 is flat).
    mean : array of shape (n_features,)
        Prior mean of the component means.
    mean_precision : float
        Shrinkage kappa (> 0): the prior counts as this many observations at ``mean``.
    dof : float
        Degrees of freedom nu (> n_features - 1 for the Inverse-Wishart; > 0 otherwise).
    scale : array
        ``full``/``tied``: (d, d) positive definite; ``diag``: (d,) positive; ``spherical``: ().
    covariance_type : str
        Which structure the prior is for.
    """

    _fields = ("weight_concentration", "mean", "mean_precision", "dof", "scale")
    __slots__ = _fields + ("covariance_type",)

    def __init__(
        self,
        weight_concentration,
        mean,
        mean_precision,
        dof,
        scale,
        covariance_type="full",
    ):
        ct = get_covariance_type(covariance_type)
        values = (weight_concentration, mean, mean_precision, dof, scale)
        if all(is_concrete(v) for v in values):
            mean = as_float_array(mean, "mean")
            if mean.ndim != 1:
                raise ValueError(f"mean must have shape (n_features,); got {mean.shape}")
            d = mean.shape[0]
            wc = as_float_array(weight_concentration, "weight_concentration")
            if wc.ndim != 1:
                raise ValueError(
                    f"weight_concentration must have shape (n_components,); got {wc.shape}"
                )
            if np.any(wc <= 0):
                raise ValueError(f"weight_concentration must be positive; got {wc}")
            kappa = _check_hyper(mean_precision, "mean_precision", ())
            family = prior_family(ct)
            min_dof = family.min_dof(d)
            dof_arr = as_float_array(dof, "dof")
            if dof_arr.shape != () or dof_arr <= min_dof:
                raise ValueError(
                    f"dof must be a scalar > {min_dof} for covariance_type={ct.name!r} "
                    f"with {d} features; got {dof}"
                )
            scale_arr = as_float_array(scale, "scale")
            want = family.scale_shape(d)
            if scale_arr.shape != want:
                raise ValueError(
                    f"scale for covariance_type={ct.name!r} must have shape {want}; "
                    f"got {scale_arr.shape}"
                )
            family.check_scale(scale_arr)
            dtype = np.result_type(mean.dtype, scale_arr.dtype, np.float32)
            weight_concentration, mean, mean_precision, dof, scale = (
                jnp.asarray(a, dtype) for a in (wc, mean, kappa, dof_arr, scale_arr)
            )
        for f, v in zip(self._fields, (weight_concentration, mean, mean_precision, dof, scale)):
            object.__setattr__(self, f, v)
        object.__setattr__(self, "covariance_type", ct.name)

    @classmethod
    def default(
        cls,
        X,
        n_components: int,
        covariance_type: str = "full",
        *,
        weight_concentration=1.0,
        mean_precision=0.01,
        dof=None,
        sample_weight=None,
    ) -> Prior:
        """mclust's ``defaultPrior`` (Fraley and Raftery 2007), computed from the data.

        Prior mean the column means, shrinkage 0.01, degrees of freedom ``n_features + 2``,
        scale the data covariance (``full``/``tied``), the feature variances (``diag``) or their
        average (``spherical``), divided by ``n_components ** (2 / n_features)``.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        n_components : int
        covariance_type : str
        weight_concentration : float or array of shape (n_components,), default 1 (flat)
        mean_precision : float, default 0.01
        dof : float, optional (default n_features + 2)
        sample_weight : array of shape (n_samples,), optional
            Row multiplicities: the mean and covariance are the weighted ones, with the
            ``ddof=1`` of repeated rows (divided by ``sum(w) - 1``), so integer weights give
            the prior of the data with rows repeated.
        """
        from ._validation import (
            check_data,
            check_default_prior_scale,
            check_positive_int,
            check_sample_weight,
        )

        n_components = check_positive_int(n_components, "n_components")
        X = check_data(X, min_samples=2)
        w = check_sample_weight(sample_weight, X.shape[0], X.dtype, min_positive=2)
        ct = get_covariance_type(covariance_type)
        d = X.shape[1]
        wc = np.broadcast_to(np.asarray(weight_concentration, X.dtype), (n_components,))
        scale = prior_family(ct).default_scale(X, n_components, w).astype(X.dtype)
        check_default_prior_scale(X, scale)
        return cls(
            wc,
            X.mean(axis=0) if w is None else _weighted_mean(X, w),
            mean_precision,
            d + 2.0 if dof is None else dof,
            scale,
            ct.name,
        )

    @property
    def cov(self):
        return get_covariance_type(self.covariance_type)

    @property
    def n_components(self) -> int:
        return self.weight_concentration.shape[-1]

    @property
    def n_features(self) -> int:
        return self.mean.shape[-1]

    def tree_flatten(self):
        return tuple(getattr(self, f) for f in self._fields), self.covariance_type

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        for f, v in zip(cls._fields, children):
            object.__setattr__(obj, f, v)
        object.__setattr__(obj, "covariance_type", aux)
        return obj

    def __setattr__(self, name, value):
        raise AttributeError("Prior is immutable")

    def __reduce__(self):
        return (
            Prior,
            tuple(np.asarray(getattr(self, f)) for f in self._fields) + (self.covariance_type,),
        )

    def astype(self, dtype) -> Prior:
        return jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), self)

    def to_numpy(self) -> dict[str, np.ndarray]:
        return {f: np.asarray(getattr(self, f)) for f in self._fields}

    def __repr__(self):
        return (
            f"Prior(covariance_type={self.covariance_type!r}, n_components={self.n_components}, "
            f"n_features={self.n_features}, mean_precision={float(self.mean_precision):g}, "
            f"dof={float(self.dof):g})"
        )
