"""The NumPyro model: one Gaussian mixture with its assignments summed out.

The model has three latent sites, ``weights`` (Dirichlet), ``means`` and ``covariances`` (the
conjugate family of the covariance type: the distributions and plates of
:func:`bayesgmm.prior.prior_family`, whose densities :func:`bayesgmm.prior.log_prior` sums for
MAP-EM), and one observed site ``obs``
whose log density is :func:`bayesgmm.density.log_prob` - the same ``logsumexp`` over
components that the EM E-step, ``score_samples`` and the plots use. Its log joint at any
parameters therefore equals ``n_samples`` times the MAP-EM objective (the log posterior per
sample that :func:`bayesgmm.em.fit_em` records), with no additive constant: both are fully
normalised.
"""

from __future__ import annotations

import math
from contextlib import ExitStack

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from . import density, marginal
from .covariance import get_covariance_type
from .params import GMMParams
from .prior import Prior, prior_family, weight_distribution

__all__ = ["gmm_model", "MixtureLikelihood", "MarginalMixtureLikelihood", "SITE_NAMES"]

#: Latent sites of :func:`gmm_model`, in the order of ``GMMParams``' fields.
SITE_NAMES = ("weights", "means", "covariances")


class MixtureLikelihood(dist.Distribution):
    """A Gaussian mixture as a NumPyro distribution over one ``n_features`` vector.

    ``log_prob`` and ``sample`` call :mod:`bayesgmm.density`, so the model never holds a second
    copy of the mixture density. Under a ``plate`` it is expanded to one vector per observation,
    which gives NumPyro (and ArviZ) a log-likelihood per observation.

    Parameters
    ----------
    params : GMMParams
        Unbatched mixture parameters.
    """

    support = constraints.real_vector

    def __init__(self, params: GMMParams, *, validate_args=None):
        self.params = params
        super().__init__(
            batch_shape=(), event_shape=(params.n_features,), validate_args=validate_args
        )

    def log_prob(self, value):
        d = self.params.n_features
        flat = jnp.reshape(value, (-1, d))
        return jnp.reshape(density.log_prob(flat, self.params), jnp.shape(value)[:-1])

    def sample(self, key, sample_shape=()):
        n = math.prod(sample_shape)
        d = self.params.n_features
        if n == 0:
            return jnp.zeros(tuple(sample_shape) + (d,), self.params.dtype)
        x, _ = density.sample(key, self.params, n)
        return jnp.reshape(x, tuple(sample_shape) + (d,))


class MarginalMixtureLikelihood(MixtureLikelihood):
    """:class:`MixtureLikelihood` of rows with missing values: each row's log density is
    the mixture's marginal density of its observed coordinates
    (:func:`bayesgmm.marginal.marginal_log_prob_rows`, the code MAP-EM's E-step runs).

    Parameters
    ----------
    params : GMMParams
    missing : tuple ``(observed (n, d) bool, index (n,) int, patterns (P, d) bool)``
        The rows' missingness (:func:`bayesgmm.marginal.missing_patterns`); the value the
        site observes is the data with missing entries set to 0.
    """

    def __init__(self, params: GMMParams, missing, *, validate_args=None):
        self.missing = missing
        super().__init__(params, validate_args=validate_args)

    def log_prob(self, value):
        observed, index, patterns = self.missing
        return marginal.marginal_log_prob_rows(value, observed, index, patterns, self.params)


def gmm_model(
    X=None,
    sample_weight=None,
    missing=None,
    *,
    n_components: int,
    covariance_type: str = "full",
    prior: Prior,
    n_samples: int | None = None,
):
    """Gaussian mixture with the component assignments marginalised out.

    Sites: ``weights`` (n_components,) ~ Dirichlet(``prior.weight_concentration``);
    ``means`` (n_components, n_features) and ``covariances`` (compact shape of the covariance
    type) from the type's conjugate prior; ``obs`` (n_samples, n_features), the data, each row
    distributed as the mixture (``logsumexp`` over components in :func:`bayesgmm.density.log_prob`).

    Parameters
    ----------
    X : array of shape (n_samples, n_features), optional
        Observed data. Without it (and with ``n_samples``) ``obs`` is sampled: prior or
        posterior predictive data. Without both, only the parameters are sampled.
    n_components : int
        Number of mixture components (static).
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
        Structure of the covariances (static).
    prior : Prior
        Hyperparameters; its arrays may be traced (changing them does not recompile).
    sample_weight : array of shape (n_samples,), optional
        Non-negative row multiplicities: row ``n``'s log-likelihood counts ``w_n`` times (a
        ``scale`` on ``obs``; rows of weight zero are masked out), so integer weights give
        the posterior of the data with rows repeated. Positional (after ``X``) so that the
        sampler passes the data as one tuple of model arguments.
    missing : tuple, optional
        ``(observed, index, patterns)`` of :func:`bayesgmm.marginal.missing_patterns` when
        ``X`` has missing values (then given with them set to 0): each row's likelihood is
        the marginal density of its observed coordinates (:class:`MarginalMixtureLikelihood`),
        values missing at random summed out as MAP-EM's missing-data E-step does.
    n_samples : int, optional
        Number of rows of ``obs`` to simulate when ``X`` is None; must equal ``len(X)``
        otherwise.

    Returns
    -------
    GMMParams
        The sampled parameters (unbatched).

    Examples
    --------
    >>> import jax, numpy as np
    >>> from numpyro.infer import Predictive
    >>> from bayesgmm import Prior, gmm_model
    >>> X = np.random.default_rng(0).normal(size=(50, 2))
    >>> prior = Prior.default(X, 3, "diag")
    >>> draws = Predictive(gmm_model, num_samples=4)(
    ...     jax.random.key(0), n_components=3, covariance_type="diag", prior=prior, n_samples=10)
    >>> draws["obs"].shape, draws["means"].shape
    ((4, 10, 2), (4, 3, 2))
    """
    ct = get_covariance_type(covariance_type)
    if not isinstance(prior, Prior):
        raise TypeError(f"prior must be a bayesgmm.Prior; got {type(prior).__name__}")
    if prior.covariance_type != ct.name:
        raise ValueError(
            f"prior is for covariance_type={prior.covariance_type!r} but the model uses {ct.name!r}"
        )
    if prior.n_components != n_components:
        raise ValueError(
            f"prior has {prior.n_components} weight concentrations but n_components={n_components}"
        )
    n_features = prior.n_features
    if X is not None:
        if jnp.ndim(X) != 2 or jnp.shape(X)[1] != n_features:
            raise ValueError(
                f"X must have shape (n_samples, {n_features}) to match the prior; "
                f"got {jnp.shape(X)}"
            )
        if n_samples is not None and n_samples != jnp.shape(X)[0]:
            raise ValueError(f"n_samples={n_samples} but X has {jnp.shape(X)[0]} rows")
        n_samples = jnp.shape(X)[0]

    weights = numpyro.sample("weights", weight_distribution(prior))
    means, covariances = _component_sites(prior, n_components, n_features)
    params = GMMParams.tree_unflatten(ct.name, (weights, means, covariances))
    if n_samples is not None:
        likelihood = (
            MixtureLikelihood(params)
            if missing is None
            else MarginalMixtureLikelihood(params, missing)
        )
        with numpyro.plate("obs_plate", n_samples, dim=-1), _weighted(sample_weight):
            numpyro.sample("obs", likelihood, obs=X)
    return params


def _weighted(sample_weight) -> ExitStack:
    """Row ``n``'s log density times ``sample_weight[n]``: NumPyro's ``scale`` (which must be
    positive) on the positive weights, ``mask`` on the zero ones. Nothing without weights."""
    stack = ExitStack()
    if sample_weight is not None:
        positive = sample_weight > 0
        stack.enter_context(numpyro.handlers.mask(mask=positive))
        stack.enter_context(numpyro.handlers.scale(scale=jnp.where(positive, sample_weight, 1)))
    return stack


def _plates(names, n_components: int, n_features: int) -> ExitStack:
    """The plates ``names`` (innermost, ``dim=-1``, first) entered on one stack."""
    sizes = {"component": n_components, "feature": n_features}
    stack = ExitStack()
    for i, name in enumerate(names):
        stack.enter_context(numpyro.plate(name, sizes[name], dim=-1 - i))
    return stack


def _component_sites(prior: Prior, n_components: int, n_features: int):
    """The ``covariances`` and ``means`` sites: the prior family's two distributions, under its
    plates; returns ``(means, covariances)`` in the compact shapes."""
    family = prior_family(prior.covariance_type)
    with _plates(family.covariance_plates, n_components, n_features):
        cov = numpyro.sample("covariances", family.covariance_distribution(prior))
    with _plates(family.mean_plates, n_components, n_features):
        means = numpyro.sample("means", family.mean_distribution(prior, cov))
    return means, cov
