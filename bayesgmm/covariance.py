"""The four covariance structures, each a small object with the same methods.

This is the only module that knows the covariance types apart: the density, EM, the NumPyro
model, the estimator and the plots all call these methods instead of branching on a string.

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
import numpyro
import numpyro.distributions as dist
from jax.scipy.linalg import solve_triangular

from . import _jax  # noqa: F401  (64-bit mode on before any array; see _jax)

__all__ = ["COVARIANCE_TYPES", "get_covariance_type", "CovarianceType"]


def _eye_like(a):
    return jnp.eye(a.shape[-1], dtype=a.dtype)


def _add_diag(a, value):
    return a + value * _eye_like(a)


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

    def scatter_t(self, XT, RT, centres, shift):
        """Additive scatter statistics of a block: ``XT`` (d, rows), responsibilities ``RT``
        (K, rows), the new means ``centres`` (K, d) and a fixed ``shift`` (d,) near the data.
        Sum the results over blocks, then call :meth:`scatter_finalize`."""
        raise NotImplementedError

    def scatter_finalize(self, stats, centres, shift):
        """The scatter around ``centres`` (as :meth:`scatter`) from summed block statistics."""
        return stats

    # --- expanded kernels (float64 EM) -------------------------------------------------------
    # With ``u = x - s`` for a fixed shift ``s`` (the data mean), the squared Mahalanobis
    # distance of every component is linear in a vector of features ``phi(u)`` (``u`` itself
    # and its squares or pairwise products), and so are the statistics the M-step needs. One
    # E-step then costs one (K, F) @ (F, rows) product per block, and the M-step's statistics
    # one (K, rows) @ (rows, F) product in the same pass, instead of K per-component
    # differences. The price is cancellation: it is exact only up to ``eps`` times the size of
    # the uncentred terms, so :mod:`bayesgmm.em` bounds that error every iteration and falls
    # back to the centred kernels above when the bound is not small (far, tight components).

    #: Whether the scatter needs the pooled data scatter ``sum u u^T`` (tied).
    needs_data_scatter = False

    def features_t(self, UT):
        """Features ``phi`` (F, rows) of a shifted block ``UT`` (d, rows); the first d rows are
        ``UT`` itself, so the first d columns of ``R @ phi.T`` are ``sum r u``."""
        raise NotImplementedError

    def expanded_terms(self, means, prec_chol, shift):
        """``(terms, far)``: what :meth:`expanded_maha_t` needs, and per component
        ``far_k = |mu_k|^T |Lambda_k| |mu_k|`` (``mu = m - s``) which bounds its rounding."""
        raise NotImplementedError

    def expanded_maha_t(self, UT, phi, terms):
        """Squared Mahalanobis distances (K, rows) from the features of a block."""
        return _linear_maha_t(phi, terms)

    def scatter_from_moments(self, s1, s2, nk, centres, data_scatter, count_reg):
        """Scatter around ``centres`` (K, d; minus the shift) from shifted moments.

        ``s1`` (K, d) = ``sum r u``, ``s2`` (K, F - d) = ``sum r phi[d:]``, ``nk`` (K,)
        ``= sum r``; ``data_scatter`` is ``sum u u^T`` over the data (types with
        :attr:`needs_data_scatter`); ``count_reg`` the count times ``reg_covar`` that the
        covariance adds (K,) or (). Returns ``(scatter, ratio)`` with ``ratio`` from
        :func:`_moment_ratio`.
        """
        raise NotImplementedError

    # --- EM statistics and M-step ---------------------------------------------------------
    def scatter(self, X, resp, centres):
        """Responsibility-weighted scatter of ``X`` around ``centres``, additive over rows.

        Centred at the component means (not raw second moments) so that float32 stays
        accurate for small, far-away components.
        """
        shift = jnp.mean(X, axis=0)
        return self.scatter_finalize(self.scatter_t(X.T, resp.T, centres, shift), centres, shift)

    def ml_covariance(self, nk, means, scatter, reg_covar):
        """Maximum-likelihood covariances from statistics, plus ``reg_covar`` on diagonals."""
        raise NotImplementedError

    def map_covariance(self, nk, means_ml, scatter, reg_covar, prior):
        """Closed-form posterior-mode covariances under the conjugate prior."""
        raise NotImplementedError

    # --- the prior -------------------------------------------------------------------------
    def default_scale(self, X, n_components: int):
        """mclust's default prior scale for this type (data-dependent)."""
        raise NotImplementedError

    def scale_shape(self, n_features: int) -> tuple[int, ...]:
        raise NotImplementedError

    def sample_components(self, prior, n_components: int, n_features: int):
        """NumPyro sites for the component parameters; returns ``(means, covariances)``.

        The same distributions give :meth:`log_prior`, so the NumPyro model and MAP-EM share
        one prior by construction.
        """
        raise NotImplementedError

    def log_prior(self, means, cov, prior):
        """Log prior density of the component parameters (summed), unbatched."""
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


def _semi_centred_finalize(stats, centres, shift):
    """Scatter from ``A = sum r (x - c)(x - s)^T`` and ``b = sum r (x - c)``.

    ``sum r (x - c)(x - c)^T = A - b (c - s)^T`` exactly, for any shift ``s``: one factor of
    every product is centred at the component mean, the other at ``s`` (near the data), and
    ``b`` (zero up to rounding) is summed from centred terms, so nothing cancels at the scale
    of the distance of the data from the origin.
    """
    a, b = stats
    offset = centres - shift
    if a.ndim == 3:  # one matrix per component (full)
        s = a - b[:, :, None] * offset[:, None, :]
    else:  # summed over components (tied)
        s = a - b.T @ offset
    return 0.5 * (s + jnp.swapaxes(s, -1, -2))


def _weighted_centred(XT, RT, centres):
    """``r_kn (x_n - c_k)`` for a block, shape (K, d, rows)."""
    return (XT[None, :, :] - centres[:, :, None]) * RT[:, None, :]


def _moment_correction(s1, c, nk):
    """``- s1 c^T - c s1^T + nk c c^T`` per component, (K, d, d): what turns the shifted second
    moments ``sum r u u^T`` into the scatter ``sum r (u - c)(u - c)^T`` (``u = x - shift``,
    ``c`` the component mean minus the shift, ``s1 = sum r u``, ``nk = sum r``)."""
    cross = s1[:, :, None] * c[:, None, :]
    return nk[:, None, None] * c[:, :, None] * c[:, None, :] - cross - jnp.swapaxes(cross, 1, 2)


def _moment_ratio(second, scatter, count_reg):
    """Largest ``second / (scatter + count * reg_covar)`` over diagonal entries: the factor by
    which rounding of the shifted moments is amplified in the regularised covariance (the
    expanded path is refused when ``4 eps`` times it exceeds ``1e-9``)."""
    return jnp.max(second / (scatter + count_reg))


def _triu(d):
    return np.triu_indices(d)


def _symmetric_from_triu(upper, d):
    """(K, d, d) symmetric matrices from their upper triangles (K, d (d + 1) / 2), row-major."""
    i, j = _triu(d)
    m = jnp.zeros(upper.shape[:-1] + (d, d), upper.dtype).at[..., i, j].set(upper)
    return m + jnp.swapaxes(m, -1, -2) - m * jnp.eye(d, dtype=upper.dtype)


def _linear_maha_t(UT, terms):
    """``W @ phi + c`` with ``terms = (W, c)``: the expanded squared Mahalanobis distances."""
    coef, const = terms
    return coef @ UT + const[:, None]


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

    def scatter_t(self, XT, RT, centres, shift):
        # One (K d, rows) @ (rows, d) product instead of K small Gram matrices.
        z = _weighted_centred(XT, RT, centres)
        k, d = centres.shape
        a = (z.reshape(k * d, -1) @ (XT - shift[:, None]).T).reshape(k, d, d)
        return a, jnp.sum(z, axis=-1)

    def scatter_finalize(self, stats, centres, shift):
        return _semi_centred_finalize(stats, centres, shift)

    def features_t(self, UT):
        # [u; u_i u_j for i <= j]: the upper triangle only, so F = d + d (d + 1) / 2.
        i, j = _triu(UT.shape[0])
        return jnp.concatenate([UT, UT[i] * UT[j]])

    def expanded_terms(self, means, prec_chol, shift):
        # (u - mu)^T L (u - mu) = sum_{i<=j} (2 - [i=j]) L_ij u_i u_j - 2 (L mu)^T u + |P^T mu|^2
        mu = means - shift
        y = jnp.einsum("kd,kde->ke", mu, prec_chol)
        lam = prec_chol @ jnp.swapaxes(prec_chol, -1, -2)
        lin = -2.0 * jnp.einsum("kde,ke->kd", prec_chol, y)
        i, j = _triu(means.shape[-1])
        quad = lam[:, i, j] * jnp.where(i == j, 1.0, 2.0).astype(lam.dtype)
        far = jnp.einsum("kd,kde,ke->k", jnp.abs(mu), jnp.abs(lam), jnp.abs(mu))
        return (jnp.concatenate([lin, quad], axis=1), jnp.sum(y * y, axis=1)), far

    def scatter_from_moments(self, s1, s2, nk, centres, data_scatter, count_reg):
        second = _symmetric_from_triu(s2, centres.shape[-1])
        scatter = second + _moment_correction(s1, centres, nk)
        diag = jnp.diagonal
        ratio = _moment_ratio(
            diag(second, axis1=1, axis2=2), diag(scatter, axis1=1, axis2=2), count_reg[:, None]
        )
        return scatter, ratio

    def ml_covariance(self, nk, means, scatter, reg_covar):
        return _add_diag(scatter / nk[:, None, None], reg_covar)

    def map_covariance(self, nk, means_ml, scatter, reg_covar, prior):
        d = means_ml.shape[-1]
        delta = means_ml - prior.mean
        shrink = (prior.mean_precision * nk / (prior.mean_precision + nk))[:, None, None]
        num = prior.scale + scatter + shrink * delta[:, :, None] * delta[:, None, :]
        den = (prior.dof + nk + d + 2)[:, None, None]
        return _add_diag(num / den, reg_covar)

    def default_scale(self, X, n_components):
        d = X.shape[1]
        cov = np.atleast_2d(np.cov(X, rowvar=False, ddof=1))
        return cov * n_components ** (-2.0 / d)

    def scale_shape(self, n_features):
        return (n_features, n_features)

    def _cov_dist(self, prior):
        return dist.InverseWishart(prior.dof, scale_matrix=prior.scale)

    def sample_components(self, prior, n_components, n_features):
        with numpyro.plate("component", n_components):
            cov = numpyro.sample("covariances", self._cov_dist(prior))
            means = numpyro.sample(
                "means",
                dist.MultivariateNormal(prior.mean, covariance_matrix=cov / prior.mean_precision),
            )
        return means, cov

    def log_prior(self, means, cov, prior):
        lp_cov = self._cov_dist(prior).log_prob(cov)
        lp_mean = dist.MultivariateNormal(
            prior.mean, covariance_matrix=cov / prior.mean_precision
        ).log_prob(means)
        return jnp.sum(lp_cov) + jnp.sum(lp_mean)

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

    def scatter_t(self, XT, RT, centres, shift):
        # sum_k r_kn (x_n - c_k) first, then a single (d, rows) @ (rows, d) product.
        z = _weighted_centred(XT, RT, centres)
        a = jnp.sum(z, axis=0) @ (XT - shift[:, None]).T
        return a, jnp.sum(z, axis=-1)

    def scatter_finalize(self, stats, centres, shift):
        return _semi_centred_finalize(stats, centres, shift)

    # The quadratic term |P^T u|^2 is shared by all components: computed once per row, and the
    # scatter comes from the pooled data scatter minus the components' mean terms.
    needs_data_scatter = True

    def features_t(self, UT):
        return UT

    def expanded_terms(self, means, prec_chol, shift):
        mu = means - shift
        y = mu @ prec_chol
        lam = prec_chol @ prec_chol.T
        far = jnp.einsum("kd,de,ke->k", jnp.abs(mu), jnp.abs(lam), jnp.abs(mu))
        return (-2.0 * y @ prec_chol.T, jnp.sum(y * y, axis=1), prec_chol.T), far

    def expanded_maha_t(self, UT, phi, terms):
        coef, const, pt = terms
        common = pt @ UT
        return _linear_maha_t(phi, (coef, const)) + jnp.sum(common * common, axis=0)

    def scatter_from_moments(self, s1, s2, nk, centres, data_scatter, count_reg):
        scatter = data_scatter + jnp.sum(_moment_correction(s1, centres, nk), axis=0)
        ratio = _moment_ratio(jnp.diagonal(data_scatter), jnp.diagonal(scatter), count_reg)
        return scatter, ratio

    def ml_covariance(self, nk, means, scatter, reg_covar):
        return _add_diag(scatter / jnp.sum(nk), reg_covar)

    def map_covariance(self, nk, means_ml, scatter, reg_covar, prior):
        n_components, d = means_ml.shape
        delta = means_ml - prior.mean
        shrink = prior.mean_precision * nk / (prior.mean_precision + nk)
        num = prior.scale + scatter + jnp.einsum("k,ki,kj->ij", shrink, delta, delta)
        den = prior.dof + jnp.sum(nk) + d + 1 + n_components
        return _add_diag(num / den, reg_covar)

    default_scale = _Full.default_scale
    scale_shape = _Full.scale_shape
    _cov_dist = _Full._cov_dist

    def sample_components(self, prior, n_components, n_features):
        cov = numpyro.sample("covariances", self._cov_dist(prior))
        with numpyro.plate("component", n_components):
            means = numpyro.sample(
                "means",
                dist.MultivariateNormal(prior.mean, covariance_matrix=cov / prior.mean_precision),
            )
        return means, cov

    # The shared matrix's log density once, each mean's under it: full's sums do exactly that.
    log_prior = _Full.log_prior
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

    def scatter_t(self, XT, RT, centres, shift):
        diff = XT[None, :, :] - centres[:, :, None]
        return jnp.einsum("kdn,kn->kd", diff * diff, RT)

    def features_t(self, UT):
        return jnp.concatenate([UT, UT * UT])

    def expanded_terms(self, means, prec_chol, shift):
        mu = means - shift
        p2 = prec_chol * prec_chol
        const = jnp.sum(p2 * mu * mu, axis=1)
        return (jnp.concatenate([-2.0 * p2 * mu, p2], axis=1), const), const

    def scatter_from_moments(self, s1, s2, nk, centres, data_scatter, count_reg):
        scatter = s2 - 2.0 * s1 * centres + nk[:, None] * centres * centres
        return scatter, _moment_ratio(s2, scatter, count_reg[:, None])

    def ml_covariance(self, nk, means, scatter, reg_covar):
        return scatter / nk[:, None] + reg_covar

    def map_covariance(self, nk, means_ml, scatter, reg_covar, prior):
        delta = means_ml - prior.mean
        shrink = (prior.mean_precision * nk / (prior.mean_precision + nk))[:, None]
        num = prior.scale + scatter + shrink * delta * delta
        return num / (prior.dof + nk + 3)[:, None] + reg_covar

    def default_scale(self, X, n_components):
        d = X.shape[1]
        return np.var(X, axis=0, ddof=1) * n_components ** (-2.0 / d)

    def scale_shape(self, n_features):
        return (n_features,)

    def sample_components(self, prior, n_components, n_features):
        with (
            numpyro.plate("feature", n_features, dim=-1),
            numpyro.plate("component", n_components, dim=-2),
        ):
            cov = numpyro.sample("covariances", dist.InverseGamma(prior.dof / 2, prior.scale / 2))
            means = numpyro.sample(
                "means", dist.Normal(prior.mean, jnp.sqrt(cov / prior.mean_precision))
            )
        return means, cov

    def log_prior(self, means, cov, prior):
        lp_cov = dist.InverseGamma(prior.dof / 2, prior.scale / 2).log_prob(cov)
        lp_mean = dist.Normal(prior.mean, jnp.sqrt(cov / prior.mean_precision)).log_prob(means)
        return jnp.sum(lp_cov) + jnp.sum(lp_mean)

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

    def scatter_t(self, XT, RT, centres, shift):
        diff = XT[None, :, :] - centres[:, :, None]
        return jnp.einsum("kn,kn->k", jnp.sum(diff * diff, axis=1), RT)

    def features_t(self, UT):
        # sum_d p^2 u_d^2 needs only |u|^2: one feature instead of d.
        return jnp.concatenate([UT, jnp.sum(UT * UT, axis=0, keepdims=True)])

    def expanded_terms(self, means, prec_chol, shift):
        mu = means - shift
        p2 = prec_chol * prec_chol
        const = p2 * jnp.sum(mu * mu, axis=1)
        return (jnp.concatenate([-2.0 * p2[:, None] * mu, p2[:, None]], axis=1), const), const

    def scatter_from_moments(self, s1, s2, nk, centres, data_scatter, count_reg):
        second = s2[:, 0]
        scatter = second - 2.0 * jnp.sum(s1 * centres, axis=1) + nk * jnp.sum(centres**2, axis=1)
        # The covariance adds reg_covar once per feature: d * count * reg on the scatter's scale.
        return scatter, _moment_ratio(second, scatter, count_reg * centres.shape[-1])

    def ml_covariance(self, nk, means, scatter, reg_covar):
        # scikit-learn: the mean over features of the diagonal variances.
        return scatter / (nk * means.shape[-1]) + reg_covar

    def map_covariance(self, nk, means_ml, scatter, reg_covar, prior):
        d = means_ml.shape[-1]
        delta = means_ml - prior.mean
        shrink = prior.mean_precision * nk / (prior.mean_precision + nk)
        num = prior.scale + scatter + shrink * jnp.sum(delta * delta, axis=-1)
        return num / (prior.dof + (nk + 1) * d + 2) + reg_covar

    def default_scale(self, X, n_components):
        d = X.shape[1]
        return np.asarray(np.mean(np.var(X, axis=0, ddof=1)) * n_components ** (-2.0 / d))

    def scale_shape(self, n_features):
        return ()

    def sample_components(self, prior, n_components, n_features):
        with numpyro.plate("component", n_components, dim=-1):
            cov = numpyro.sample("covariances", dist.InverseGamma(prior.dof / 2, prior.scale / 2))
        with (
            numpyro.plate("feature", n_features, dim=-1),
            numpyro.plate("component", n_components, dim=-2),
        ):
            means = numpyro.sample(
                "means",
                dist.Normal(prior.mean, jnp.sqrt(cov / prior.mean_precision)[:, None]),
            )
        return means, cov

    def log_prior(self, means, cov, prior):
        lp_cov = dist.InverseGamma(prior.dof / 2, prior.scale / 2).log_prob(cov)
        lp_mean = dist.Normal(prior.mean, jnp.sqrt(cov / prior.mean_precision)[:, None]).log_prob(
            means
        )
        return jnp.sum(lp_cov) + jnp.sum(lp_mean)

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
