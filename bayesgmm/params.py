"""The parameter container shared by every part of bayesgmm: ``GMMParams``.

(:class:`~bayesgmm.prior.Prior`, the other container, sits with its maths in
:mod:`bayesgmm.prior` and is importable from here as before.)

Both are JAX pytrees: their arrays are leaves (so they pass through ``jit``, ``vmap`` and
NumPyro unchanged) and the covariance type is static auxiliary data (so it never becomes a
traced value and changing it selects a different compiled program).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._jax import is_concrete
from ._validation import as_float_array
from .covariance import get_covariance_type

# Prior lives in bayesgmm.prior with its maths; imported here so that ``bayesgmm.params.Prior``
# (the path of files and pickles written before it moved) still names the same class.
from .prior import Prior

__all__ = ["GMMParams", "Prior"]


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
        concrete = all(is_concrete(x) for x in leaves)
        if concrete:
            weights = as_float_array(weights, "weights")
            means = as_float_array(means, "means")
            covariances = as_float_array(covariances, "covariances")
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
