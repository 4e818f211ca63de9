"""The four covariance structures: the maths every layer shares, one small object per type.

Each object holds what the density, the estimator, the plots, the files and the conversions
need: shapes and parameter counts, conversions between covariances, precisions and their
Cholesky factors, log-determinants, squared Mahalanobis distances and input checks. The other
per-type maths sits with its layer, in a table keyed by the same names and read through
:func:`per_type`: EM's kernels and M-step estimators in :mod:`bayesgmm.em.kernels`, the
conjugate prior's distributions in :mod:`bayesgmm.prior`. No code outside these per-type
objects branches on a covariance type's name (``tests/test_layers.py`` checks both).

Compact shapes of the covariance array (``covariances``) per type, with optional leading batch
axes in front of each:

============  =====================  ==================================================
type          ``covariances`` shape  meaning
============  =====================  ==================================================
``full``      (K, d, d)              one full covariance matrix per component
``tied``      (d, d)                 one covariance matrix shared by all components
``diag``      (K, d)                 per-component variances of each feature
``spherical`` (K,)                   one variance per component
============  =====================  ==================================================

Precision Cholesky factors follow scikit-learn: ``full``/``tied`` hold an upper-triangular
``P`` with ``P @ P.T`` equal to the precision matrix; ``diag``/``spherical`` hold ``1/sqrt(var)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

from . import _jax  # noqa: F401  (64-bit mode on before any array; see _jax)

__all__ = [
    "COVARIANCE_TYPES",
    "MOST_GENERAL",
    "get_covariance_type",
    "per_type",
    "CovarianceType",
]

#: The type every other one constrains (any tied, diagonal or spherical mixture is a full one):
#: model selection starts the other types from its fits.
MOST_GENERAL = "full"


def _eye_like(a):
    return jnp.eye(a.shape[-1], dtype=a.dtype)


def _inv_chol_upper(cov):
    """Upper-triangular ``P`` with ``P @ P.T == inv(cov)``, for (..., d, d) covariances."""
    chol = jnp.linalg.cholesky(cov)
    eye = jnp.broadcast_to(_eye_like(cov), cov.shape)
    return jnp.swapaxes(solve_triangular(chol, eye, lower=True), -1, -2)


def _project_means(means, prec_chol):
    """``m_k^T P_k`` (K, d) for (K, d) means and (K, d, d) or one (d, d) factor ``P``.

    Written as a broadcast product and a sum, not as a matrix product, on purpose: jaxlib
    0.10.2's XLA:CPU fused ``means @ P`` with the per-block ``P^T @ XT`` of
    :meth:`CovarianceType.sq_mahalanobis_t` into one ``__ynn_fusion`` holding both matrix
    products, which computed wrong distances (tied densities off by up to ~900 nats) once the
    (d, rows) product passed 2**14 elements, in every program that held both: the density
    functions, ``score_samples``, ``bic``, NumPyro's potential. A fusion with one matrix product
    is compiled correctly, so this keeps the per-row pass to one. Same flops (K d^2, once per
    parameter set). ``tests/test_regressions.py`` checks the pattern as computed here, under
    ``jit``, ``grad`` and ``vmap``, past the threshold; ``scripts/diff_matrix.py`` at every size.
    """
    return jnp.sum(means[:, :, None] * prec_chol, axis=-2)


def _log_det_tri(tri):
    return jnp.sum(jnp.log(jnp.diagonal(tri, axis1=-2, axis2=-1)), axis=-1)


class CovarianceType:
    """Interface shared by the four covariance structures (see the module docstring)."""

    name: str
    #: Names of the axes of the compact ``covariances`` array (after any batch axes); used for
    #: ArviZ dims and to find the component axis.
    dims: tuple[str, ...]

    def permute_components(self, cov, perm):
        """Reorder the components of (batched) compact covariances.

        ``out[..., j, ...] = cov[..., perm[..., j], ...]``; ``perm`` has shape (..., K) with the
        same batch axes as ``cov``. Types without a component axis (``tied``) return ``cov``.
        """
        if "component" not in self.dims:
            return cov
        axis = self.dims.index("component") - len(self.dims)
        index = jnp.reshape(perm, jnp.shape(perm) + (1,) * (-axis - 1))
        return jnp.take_along_axis(cov, index, axis=axis)

    # --- shapes and counting -------------------------------------------------------------
    def shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        raise NotImplementedError

    def n_parameters(self, n_components: int, n_features: int) -> int:
        """Free parameters of the covariances alone."""
        raise NotImplementedError

    # --- conversions ----------------------------------------------------------------------
    def to_full(self, cov, n_components: int, n_features: int):
        """Covariance matrices of shape (..., K, d, d)."""
        raise NotImplementedError

    def from_full(self, full):
        """Compact covariances from (..., K, d, d) matrices (off-diagonals dropped as needed)."""
        raise NotImplementedError

    def precision_cholesky(self, cov):
        raise NotImplementedError

    def precisions(self, cov):
        """Compact precisions (the inverse covariances), scikit-learn's ``precisions_``."""
        raise NotImplementedError

    def covariance_from_precision(self, prec):
        raise NotImplementedError

    def scale_tril(self, cov, n_components: int, n_features: int):
        """Lower Cholesky factors of the covariances, shape (..., K, d, d)."""
        return jnp.linalg.cholesky(self.to_full(cov, n_components, n_features))

    # --- density --------------------------------------------------------------------------
    def log_det_precision_cholesky(self, prec_chol, n_features: int):
        """log det of the precision Cholesky factor, one value per component (K,) or ()."""
        raise NotImplementedError

    def sq_mahalanobis(self, X, means, prec_chol):
        """Squared Mahalanobis distances, shape (n_samples, K). Unbatched parameters."""
        return self.sq_mahalanobis_t(X.T, self.mahalanobis_terms(means, prec_chol)).T

    # --- kernels over a block of rows, stored transposed -----------------------------------
    # EM and the density work on blocks ``XT`` of shape (n_features, rows) and produce
    # (K, rows) arrays: the rows run along the minor (vectorised) axis, so the reductions over
    # components and features are plain vector adds, and full/tied types reduce to one large
    # matrix product per block. Blocks are small enough for every intermediate to stay in cache.

    def mahalanobis_terms(self, means, prec_chol):
        """Per-parameter-set arrays used by :meth:`sq_mahalanobis_t` (computed once per
        E-step, outside the loop over row blocks)."""
        raise NotImplementedError

    def sq_mahalanobis_t(self, XT, terms):
        """Squared Mahalanobis distances of a block ``XT`` (d, rows); returns (K, rows)."""
        raise NotImplementedError

    # --- checks on user input (NumPy, outside traced code) --------------------------------
    def check_covariances(self, cov: np.ndarray, name: str) -> None:
        raise NotImplementedError

    def __repr__(self):
        return f"<covariance type {self.name!r}>"

    def __reduce__(self):
        # Pickle by name so that unpickled objects are the registered singletons.
        return (get_covariance_type, (self.name,))


def _check_pd_matrices(mats: np.ndarray, name: str) -> None:
    if not np.allclose(mats, np.swapaxes(mats, -1, -2), rtol=1e-6, atol=1e-10 * np.abs(mats).max()):
        raise ValueError(f"{name} must be symmetric")
    try:
        np.linalg.cholesky(mats.astype(np.float64))
    except np.linalg.LinAlgError as exc:
        raise ValueError(f"{name} must be positive definite") from exc


def _check_positive(values: np.ndarray, name: str) -> None:
    if np.any(values <= 0):
        raise ValueError(f"{name} must be positive; got minimum {values.min()}")


class _Full(CovarianceType):
    name = "full"
    dims = ("component", "feature", "feature_bis")

    def shape(self, n_components, n_features):
        return (n_components, n_features, n_features)

    def n_parameters(self, n_components, n_features):
        return n_components * n_features * (n_features + 1) // 2

    def to_full(self, cov, n_components, n_features):
        return cov

    def from_full(self, full):
        return full

    def precision_cholesky(self, cov):
        return _inv_chol_upper(cov)

    def precisions(self, cov):
        p = _inv_chol_upper(cov)
        return p @ jnp.swapaxes(p, -1, -2)

    def covariance_from_precision(self, prec):
        return self.precisions(prec)  # inversion of an SPD matrix is the same operation

    def log_det_precision_cholesky(self, prec_chol, n_features):
        return _log_det_tri(prec_chol)

    def mahalanobis_terms(self, means, prec_chol):
        # y_k = P_k^T x - P_k^T m_k for all k at once: one (K d, d) @ (d, rows) product.
        k, d = means.shape
        pt = jnp.swapaxes(prec_chol, -1, -2).reshape(k * d, d)
        return pt, _project_means(means, prec_chol).reshape(k * d, 1)

    def sq_mahalanobis_t(self, XT, terms):
        pt, mp = terms
        y = (pt @ XT - mp).reshape(-1, XT.shape[0], XT.shape[1])
        return jnp.sum(y * y, axis=1)

    def check_covariances(self, cov, name):
        _check_pd_matrices(cov, name)


class _Tied(CovarianceType):
    name = "tied"
    dims = ("feature", "feature_bis")

    def shape(self, n_components, n_features):
        return (n_features, n_features)

    def n_parameters(self, n_components, n_features):
        return n_features * (n_features + 1) // 2

    def to_full(self, cov, n_components, n_features):
        return jnp.broadcast_to(
            cov[..., None, :, :], cov.shape[:-2] + (n_components,) + cov.shape[-2:]
        )

    def from_full(self, full):
        return jnp.mean(full, axis=-3)

    # One matrix instead of K: the same operations as full, which broadcast over the K axis.
    precision_cholesky = _Full.precision_cholesky
    precisions = _Full.precisions
    covariance_from_precision = _Full.covariance_from_precision
    log_det_precision_cholesky = _Full.log_det_precision_cholesky

    def mahalanobis_terms(self, means, prec_chol):
        return prec_chol.T, _project_means(means, prec_chol)[:, :, None]

    def sq_mahalanobis_t(self, XT, terms):
        pt, mp = terms
        y = (pt @ XT)[None, :, :] - mp
        return jnp.sum(y * y, axis=1)

    check_covariances = _Full.check_covariances


class _Diag(CovarianceType):
    name = "diag"
    dims = ("component", "feature")

    def shape(self, n_components, n_features):
        return (n_components, n_features)

    def n_parameters(self, n_components, n_features):
        return n_components * n_features

    def to_full(self, cov, n_components, n_features):
        return cov[..., :, None] * jnp.eye(cov.shape[-1], dtype=cov.dtype)

    def from_full(self, full):
        return jnp.diagonal(full, axis1=-2, axis2=-1)

    def precision_cholesky(self, cov):
        return jax.lax.rsqrt(cov)

    def precisions(self, cov):
        return 1.0 / cov

    def covariance_from_precision(self, prec):
        return 1.0 / prec

    def scale_tril(self, cov, n_components, n_features):
        return self.to_full(jnp.sqrt(cov), n_components, n_features)

    def log_det_precision_cholesky(self, prec_chol, n_features):
        return jnp.sum(jnp.log(prec_chol), axis=-1)

    def mahalanobis_terms(self, means, prec_chol):
        return means[:, :, None], prec_chol[:, :, None]

    def sq_mahalanobis_t(self, XT, terms):
        means, prec_chol = terms
        y = (XT[None, :, :] - means) * prec_chol
        return jnp.sum(y * y, axis=1)

    def check_covariances(self, cov, name):
        _check_positive(cov, name)


class _Spherical(CovarianceType):
    name = "spherical"
    dims = ("component",)

    def shape(self, n_components, n_features):
        return (n_components,)

    def n_parameters(self, n_components, n_features):
        return n_components

    def to_full(self, cov, n_components, n_features):
        return cov[..., None, None] * jnp.eye(n_features, dtype=cov.dtype)

    def from_full(self, full):
        return jnp.mean(jnp.diagonal(full, axis1=-2, axis2=-1), axis=-1)

    def precision_cholesky(self, cov):
        return jax.lax.rsqrt(cov)

    def precisions(self, cov):
        return 1.0 / cov

    def covariance_from_precision(self, prec):
        return 1.0 / prec

    def log_det_precision_cholesky(self, prec_chol, n_features):
        return n_features * jnp.log(prec_chol)

    def mahalanobis_terms(self, means, prec_chol):
        return means[:, :, None], (prec_chol * prec_chol)[:, None]

    def sq_mahalanobis_t(self, XT, terms):
        means, prec2 = terms
        diff = XT[None, :, :] - means
        return jnp.sum(diff * diff, axis=1) * prec2

    def check_covariances(self, cov, name):
        _check_positive(cov, name)


COVARIANCE_TYPES: dict[str, CovarianceType] = {
    c.name: c for c in (_Full(), _Tied(), _Diag(), _Spherical())
}


def get_covariance_type(name) -> CovarianceType:
    """The covariance-type object registered under ``name`` (or ``name`` itself if an object)."""
    if isinstance(name, CovarianceType):
        return name
    try:
        return COVARIANCE_TYPES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"covariance_type must be one of {sorted(COVARIANCE_TYPES)}; got {name!r}"
        ) from None


def per_type(table: dict, covariance_type):
    """The entry of a layer's per-type ``table`` (keyed by :data:`COVARIANCE_TYPES`' names)
    for ``covariance_type``, a name or a :class:`CovarianceType`: the one way bayesgmm's
    layers dispatch on the covariance type."""
    return table[get_covariance_type(covariance_type).name]
