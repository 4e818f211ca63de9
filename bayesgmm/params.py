"""Parameter containers shared by every part of bayesgmm: ``GMMParams`` and ``Prior``.

Both are JAX pytrees: their arrays are leaves (so they pass through ``jit``, ``vmap`` and
NumPyro unchanged) and the covariance type is static auxiliary data (so it never becomes a
traced value and changing it selects a different compiled program).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from . import _jax  # noqa: F401  (64-bit mode on before any array; see _jax)
from .covariance import get_covariance_type

__all__ = ["GMMParams", "Prior"]


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _as_float_array(x, name):
    try:
        arr = np.asarray(x)
    except Exception as exc:
        raise TypeError(f"{name} must be an array of numbers") from exc
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be an array of real numbers; got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinity")
    return arr


@jax.tree_util.register_pytree_node_class
class GMMParams:
    """Parameters of a Gaussian mixture: weights, means and covariances of one type.

    Parameters
    ----------
    weights : array of shape (..., n_components)
        Mixing weights, non-negative and summing to one along the last axis.
    means : array of shape (..., n_components, n_features)
        Component means.
    covariances : array
        Covariances in the compact shape of ``covariance_type`` (with the same leading batch
        axes): ``full`` (..., K, d, d), ``tied`` (..., d, d), ``diag`` (..., K, d),
        ``spherical`` (..., K).
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
        Structure of the covariances.
    validate : bool, default True
        Check shapes, the simplex and positive definiteness (only for concrete arrays; traced
        values inside ``jit`` are never checked).

    Notes
    -----
    Leading batch axes (for instance ``(chain, draw)`` for posterior draws) are allowed; every
    utility in :mod:`bayesgmm.density` maps over them.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm import GMMParams
    >>> p = GMMParams(np.array([0.3, 0.7]), np.zeros((2, 1)), np.ones(2), "spherical")
    >>> p.n_components, p.n_features, p.batch_shape
    (2, 1, ())
    """

    __slots__ = ("weights", "means", "covariances", "covariance_type")

    def __init__(self, weights, means, covariances, covariance_type="full", *, validate=True):
        ct = get_covariance_type(covariance_type)
        leaves = (weights, means, covariances)
        concrete = all(_is_concrete(x) for x in leaves)
        if concrete:
            weights = _as_float_array(weights, "weights")
            means = _as_float_array(means, "means")
            covariances = _as_float_array(covariances, "covariances")
            dtype = np.result_type(weights.dtype, means.dtype, covariances.dtype, np.float32)
            weights, means, covariances = (
                jnp.asarray(a, dtype=dtype) for a in (weights, means, covariances)
            )
            if validate:
                self._validate(np.asarray(weights), np.asarray(means), np.asarray(covariances), ct)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "covariances", covariances)
        object.__setattr__(self, "covariance_type", ct.name)

    @staticmethod
    def _validate(weights, means, cov, ct):
        if weights.ndim < 1:
            raise ValueError("weights must have shape (..., n_components)")
        batch = weights.shape[:-1]
        k = weights.shape[-1]
        if means.ndim != len(batch) + 2 or means.shape[: len(batch) + 1] != batch + (k,):
            raise ValueError(
                f"means must have shape {batch + (k,)} + (n_features,) to match weights of "
                f"shape {weights.shape}; got {means.shape}"
            )
        d = means.shape[-1]
        want = batch + ct.shape(k, d)
        if cov.shape != want:
            raise ValueError(
                f"covariances for covariance_type={ct.name!r} must have shape {want}; "
                f"got {cov.shape}"
            )
        if np.any(weights < 0):
            raise ValueError("weights must be non-negative")
        tol = 1e-6 if weights.dtype == np.float64 else 1e-4
        if not np.allclose(weights.sum(axis=-1), 1.0, atol=tol, rtol=0):
            raise ValueError(
                f"weights must sum to 1 along the last axis; got sums {weights.sum(axis=-1)}"
            )
        ct.check_covariances(cov, "covariances")

    # --- pytree protocol ---------------------------------------------------------------------
    def tree_flatten(self):
        return (self.weights, self.means, self.covariances), self.covariance_type

    @classmethod
    def tree_unflatten(cls, aux, children):
        # Bypass __init__: unflattening happens inside transformations with placeholder leaves.
        obj = object.__new__(cls)
        object.__setattr__(obj, "weights", children[0])
        object.__setattr__(obj, "means", children[1])
        object.__setattr__(obj, "covariances", children[2])
        object.__setattr__(obj, "covariance_type", aux)
        return obj

    def __setattr__(self, name, value):
        raise AttributeError("GMMParams is immutable; use .replace(...)")

    def replace(self, **changes) -> GMMParams:
        """A copy with some fields replaced (no validation)."""
        fields = {
            "weights": self.weights,
            "means": self.means,
            "covariances": self.covariances,
        }
        fields.update(changes)
        return GMMParams.tree_unflatten(
            changes.get("covariance_type", self.covariance_type),
            (fields["weights"], fields["means"], fields["covariances"]),
        )

    def __reduce__(self):
        return (
            GMMParams,
            (
                np.asarray(self.weights),
                np.asarray(self.means),
                np.asarray(self.covariances),
                self.covariance_type,
            ),
        )

    # --- shapes ----------------------------------------------------------------------------
    @property
    def n_components(self) -> int:
        return self.weights.shape[-1]

    @property
    def n_features(self) -> int:
        return self.means.shape[-1]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.weights.shape[:-1])

    @property
    def dtype(self):
        return self.means.dtype

    @property
    def cov(self):
        """The covariance-type object (methods for this structure)."""
        return get_covariance_type(self.covariance_type)

    # --- conversions -----------------------------------------------------------------------
    def covariance_matrices(self):
        """Full covariance matrices, shape (..., n_components, n_features, n_features)."""
        return self.cov.to_full(self.covariances, self.n_components, self.n_features)

    def precision_matrices(self):
        """Full precision matrices, shape (..., n_components, n_features, n_features)."""
        ct = self.cov
        prec = ct.precisions(self.covariances)
        return ct.to_full(prec, self.n_components, self.n_features)

    def precisions(self):
        """Precisions in the compact shape of the covariance type (``precisions_``)."""
        return self.cov.precisions(self.covariances)

    def precisions_cholesky(self):
        """Precision Cholesky factors in scikit-learn's compact form (``precisions_cholesky_``)."""
        return self.cov.precision_cholesky(self.covariances)

    def scale_tril(self):
        """Lower Cholesky factors of the covariances, shape (..., K, d, d)."""
        return self.cov.scale_tril(self.covariances, self.n_components, self.n_features)

    def astype(self, dtype) -> GMMParams:
        return self.replace(
            weights=jnp.asarray(self.weights, dtype),
            means=jnp.asarray(self.means, dtype),
            covariances=jnp.asarray(self.covariances, dtype),
        )

    def to_numpy(self) -> dict[str, np.ndarray]:
        return {
            "weights": np.asarray(self.weights),
            "means": np.asarray(self.means),
            "covariances": np.asarray(self.covariances),
        }

    def __getitem__(self, index) -> GMMParams:
        """Index the batch axes, e.g. ``draws[0, 10]`` for chain 0, draw 10."""
        if not self.batch_shape:
            raise IndexError("these parameters have no batch axes to index")
        return jax.tree_util.tree_map(lambda a: a[index], self)

    def __repr__(self):
        batch = f", batch_shape={self.batch_shape}" if self.batch_shape else ""
        return (
            f"GMMParams(covariance_type={self.covariance_type!r}, "
            f"n_components={self.n_components}, n_features={self.n_features}{batch}, "
            f"dtype={self.dtype})"
        )


def _check_hyper(value, name, shape, *, positive=True, minimum=None):
    arr = _as_float_array(value, name)
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
        if all(_is_concrete(v) for v in values):
            mean = _as_float_array(mean, "mean")
            if mean.ndim != 1:
                raise ValueError(f"mean must have shape (n_features,); got {mean.shape}")
            d = mean.shape[0]
            wc = _as_float_array(weight_concentration, "weight_concentration")
            if wc.ndim != 1:
                raise ValueError(
                    f"weight_concentration must have shape (n_components,); got {wc.shape}"
                )
            if np.any(wc <= 0):
                raise ValueError(f"weight_concentration must be positive; got {wc}")
            kappa = _check_hyper(mean_precision, "mean_precision", ())
            min_dof = d - 1 if ct.name in ("full", "tied") else 0
            dof_arr = _as_float_array(dof, "dof")
            if dof_arr.shape != () or dof_arr <= min_dof:
                raise ValueError(
                    f"dof must be a scalar > {min_dof} for covariance_type={ct.name!r} "
                    f"with {d} features; got {dof}"
                )
            scale_arr = _as_float_array(scale, "scale")
            want = ct.scale_shape(d)
            if scale_arr.shape != want:
                raise ValueError(
                    f"scale for covariance_type={ct.name!r} must have shape {want}; "
                    f"got {scale_arr.shape}"
                )
            if ct.name in ("full", "tied"):
                from .covariance import _check_pd_matrices

                _check_pd_matrices(scale_arr, "scale")
            elif np.any(scale_arr <= 0):
                raise ValueError("scale must be positive")
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
        """
        from ._validation import check_data, check_default_prior_scale, check_positive_int

        n_components = check_positive_int(n_components, "n_components")
        X = check_data(X, min_samples=2)
        ct = get_covariance_type(covariance_type)
        d = X.shape[1]
        wc = np.broadcast_to(np.asarray(weight_concentration, X.dtype), (n_components,))
        scale = ct.default_scale(X, n_components).astype(X.dtype)
        check_default_prior_scale(X, scale)
        return cls(
            wc,
            X.mean(axis=0),
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
