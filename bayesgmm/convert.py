"""ArviZ ``InferenceData`` from a :class:`~bayesgmm.posterior.Posterior`, and back.

Groups and dims:

===================== ==========================================================================
group                 variables (dims after ``chain, draw``)
===================== ==========================================================================
posterior             ``weights`` (component), ``means`` (component, feature), ``covariances``
                      (the covariance type's compact dims, e.g. component, feature, feature_bis)
sample_stats          ``diverging``, ``energy``, ``lp``, ``n_steps``, ``tree_depth``,
                      ``step_size``, ``acceptance_rate``
log_likelihood        ``obs`` (obs_id): one value per observation, for ``az.loo``/``az.waic``
observed_data         ``obs`` (obs_id, feature), no chain/draw
posterior_predictive  ``obs`` (obs_id, feature): one replicate data set per draw (on request)
constant_data         the prior's hyperparameters (``prior_*``), the MAP-EM start (``map_*``)
                      and, for a weighted likelihood, ``sample_weight`` (obs_id)
===================== ==========================================================================

``attrs`` record the covariance type, whether the draws were relabeled and the sampler settings,
so :meth:`bayesgmm.Posterior.from_inference_data` rebuilds the same ``Posterior``, also after
``idata.to_netcdf(path)`` and ``arviz.from_netcdf(path)``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from . import density
from ._random import as_key
from .covariance import get_covariance_type
from .params import GMMParams
from .prior import Prior, prior_family

__all__ = ["to_inference_data", "read_inference_data"]

_PRIOR_FIELDS = Prior._fields
_SETTING_KEYS = (
    "num_warmup",
    "num_samples",
    "num_chains",
    "chain_method",
    "target_accept_prob",
    "max_tree_depth",
    "dense_mass",
    "missing",
)


def _coords(post):
    d = post.n_features
    names = post.feature_names if post.feature_names is not None else [f"x{j}" for j in range(d)]
    return {
        "component": np.arange(post.n_components),
        "feature": list(names),
        "feature_bis": list(names),
        "obs_id": np.arange(post.X.shape[0]),
    }


def _cov_dims(ct):
    return list(ct.dims)


def _scale_dims(ct):
    # The prior's scale has the covariance's dims without the component axis.
    return [dim for dim in ct.dims if dim != "component"]


def to_inference_data(post, *, posterior_predictive=False, log_likelihood=True, seed=0):
    """Convert a Posterior to ``arviz.InferenceData`` with named dims and coordinates.

    Parameters
    ----------
    post : Posterior
    posterior_predictive : bool, default False
        Add one simulated data set of ``n_samples`` rows per draw (group
        ``posterior_predictive``, variable ``obs``).
    log_likelihood : bool, default True
        Add the per-observation log-likelihood (needed by ``az.loo``, ``az.waic``,
        ``az.compare``).
    seed : int or jax key
        For the posterior-predictive draws.

    Returns
    -------
    arviz.InferenceData

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm import fit_posterior
    >>> X = np.random.default_rng(0).normal(size=(60, 1))
    >>> post = fit_posterior(X, 2, num_warmup=50, num_samples=50, num_chains=1,
    ...                      progress_bar=False)
    >>> idata = post.to_inference_data()
    >>> list(idata.groups())
    ['posterior', 'log_likelihood', 'sample_stats', 'observed_data', 'constant_data']
    >>> dict(idata.posterior["means"].sizes)
    {'chain': 1, 'draw': 50, 'component': 2, 'feature': 1}

    ``arviz.loo(idata)``, ``arviz.summary(idata)`` and the other ArviZ functions take it.
    """
    import arviz as az

    ct = get_covariance_type(post.covariance_type)
    coords = _coords(post)
    draws = post.draws
    param_dims = {
        "weights": ["component"],
        "means": ["component", "feature"],
        "covariances": _cov_dims(ct),
    }

    def chained(data, dims):
        # Variables with leading (chain, draw) axes.
        return az.dict_to_dataset(data, coords=coords, dims=dims, library=None)

    def plain(data, dims):
        return az.dict_to_dataset(data, coords=coords, dims=dims, default_dims=[])

    groups = {
        "posterior": chained(
            {
                "weights": np.asarray(draws.weights),
                "means": np.asarray(draws.means),
                "covariances": np.asarray(draws.covariances),
            },
            param_dims,
        ),
        "observed_data": plain({"obs": np.asarray(post.X)}, {"obs": ["obs_id", "feature"]}),
        "constant_data": plain(
            _constant_data(post),
            {
                "prior_weight_concentration": ["component"],
                "prior_mean": ["feature"],
                "prior_scale": _scale_dims(ct),
                "map_weights": ["component"],
                "map_means": ["component", "feature"],
                "map_covariances": _cov_dims(ct),
                "sample_weight": ["obs_id"],
            },
        ),
    }
    if post.sample_stats:
        groups["sample_stats"] = chained(
            {k: np.asarray(v) for k, v in post.sample_stats.items()}, {}
        )
    if log_likelihood:
        groups["log_likelihood"] = chained({"obs": post.log_likelihood()}, {"obs": ["obs_id"]})
    if posterior_predictive:
        x, _ = density.sample(as_key(seed), draws, post.X.shape[0])
        groups["posterior_predictive"] = chained(
            {"obs": np.asarray(x)}, {"obs": ["obs_id", "feature"]}
        )
    idata = az.InferenceData(**groups)
    attrs = {
        "bayesgmm_covariance_type": ct.name,
        "bayesgmm_n_components": int(post.n_components),
        "bayesgmm_relabeled": int(post.relabeled),
        "inference_library": "numpyro",
    }
    for k in _SETTING_KEYS:
        if k in post.settings:
            v = post.settings[k]
            attrs[f"bayesgmm_{k}"] = int(v) if isinstance(v, bool) else v
    d = post.map_diagnostics
    if d:
        attrs["bayesgmm_map_lower_bound"] = float(d["lower_bound"])
        attrs["bayesgmm_map_n_iter"] = int(d["n_iter"])
        attrs["bayesgmm_map_converged"] = int(d["converged"])
        attrs["bayesgmm_map_n_init"] = int(d.get("n_init", 1))
    for group in idata.groups():
        getattr(idata, group).attrs.update(attrs)
    return idata


def _constant_data(post):
    out = {f"prior_{f}": np.asarray(getattr(post.prior, f)) for f in _PRIOR_FIELDS}
    mp = post.map_params
    out.update(
        map_weights=np.asarray(mp.weights),
        map_means=np.asarray(mp.means),
        map_covariances=np.asarray(mp.covariances),
    )
    if getattr(post, "sample_weight", None) is not None:
        out["sample_weight"] = np.asarray(post.sample_weight)
    return out


def read_inference_data(idata):
    """The parts of a :class:`~bayesgmm.Posterior` in :func:`to_inference_data`'s output
    (including after a netCDF round trip); ``Posterior.from_inference_data`` builds it.

    Returns
    -------
    parts : dict
        ``draws`` (GMMParams with leading (chain, draw) axes), ``X``, ``prior``,
        ``map_params``, ``map_info`` (the MAP-EM run's ``lower_bound``, ``n_iter``,
        ``converged`` and, in newer files, ``n_init``; or an empty dict),
        ``sample_stats``, ``relabeled``, ``feature_names``, ``settings`` and
        ``sample_weight`` (the likelihood's row weights, None when unweighted).

    Raises
    ------
    ValueError
        If ``idata`` lacks the groups or attributes bayesgmm writes.
    """
    for group in ("posterior", "observed_data", "constant_data"):
        if group not in idata.groups():
            raise ValueError(
                f"idata has no {group!r} group; it was not written by bayesgmm's to_inference_data"
            )
    attrs = idata.posterior.attrs
    if "bayesgmm_covariance_type" not in attrs:
        raise ValueError("idata.posterior has no bayesgmm attributes; not written by bayesgmm")
    ct = get_covariance_type(str(attrs["bayesgmm_covariance_type"]))
    pos = idata.posterior
    draws = GMMParams.tree_unflatten(
        ct.name,
        tuple(
            jnp.asarray(pos[name].transpose("chain", "draw", *pos[name].dims[2:]).values)
            for name in ("weights", "means", "covariances")
        ),
    )
    const = idata.constant_data
    n_features = idata.observed_data["obs"].shape[-1]
    # ArviZ stores 0-d values with a length-1 dim; restore each hyperparameter's own shape.
    shapes = {"mean_precision": (), "dof": (), "scale": prior_family(ct).scale_shape(n_features)}
    prior = Prior(
        *(
            np.reshape(const[f"prior_{f}"].values, shapes[f])
            if f in shapes
            else const[f"prior_{f}"].values
            for f in _PRIOR_FIELDS
        ),
        covariance_type=ct.name,
    )
    map_params = GMMParams(
        const["map_weights"].values,
        const["map_means"].values,
        const["map_covariances"].values,
        ct.name,
        validate=False,
    )
    X = idata.observed_data["obs"].values
    feature_names = [str(f) for f in pos["means"].coords["feature"].values]
    if feature_names == [f"x{j}" for j in range(len(feature_names))]:
        feature_names = None
    sample_stats = {}
    if "sample_stats" in idata.groups():
        ss = idata.sample_stats
        sample_stats = {
            k: ss[k].transpose("chain", "draw").values for k in ss.data_vars if ss[k].ndim == 2
        }
        if "diverging" in sample_stats:
            sample_stats["diverging"] = sample_stats["diverging"].astype(bool)
    settings = {
        k: _plain(attrs[f"bayesgmm_{k}"]) for k in _SETTING_KEYS if f"bayesgmm_{k}" in attrs
    }
    if "dense_mass" in settings:
        settings["dense_mass"] = bool(settings["dense_mass"])
    info = {}
    if "bayesgmm_map_lower_bound" in attrs:
        info = {
            "lower_bound": float(attrs["bayesgmm_map_lower_bound"]),
            "n_iter": int(attrs["bayesgmm_map_n_iter"]),
            "converged": bool(attrs["bayesgmm_map_converged"]),
        }
        if "bayesgmm_map_n_init" in attrs:  # written since the MAP start left the estimator
            info["n_init"] = int(attrs["bayesgmm_map_n_init"])
    X = X.astype(np.asarray(draws.means).dtype, copy=False)
    return dict(
        draws=draws,
        X=X,
        prior=prior,
        map_params=map_params,
        map_info=info,
        sample_stats=sample_stats,
        relabeled=bool(int(attrs.get("bayesgmm_relabeled", 0))),
        feature_names=feature_names,
        settings=settings,
        sample_weight=const["sample_weight"].values if "sample_weight" in const else None,
    )


def _plain(v):
    """NetCDF attributes come back as NumPy scalars; turn them into Python values."""
    if isinstance(v, np.generic):
        return v.item()
    return v
