"""EM's maths per covariance type: the statistics of a block of rows and the M-step estimators.

One small object per type, in the table :data:`EM_KERNELS` keyed by the names of
:data:`bayesgmm.covariance.COVARIANCE_TYPES` and read through :func:`kernels_for`. Two families
of block kernels compute the same statistics:

* the **centred** ones (:meth:`EMKernels.scatter_t`, :meth:`EMKernels.scatter_finalize`)
  difference every point against every component mean: exact at any offset of the data;
* the **expanded** ones (float64, larger problems; :mod:`bayesgmm.em.expanded` drives them).
  With ``u = x - s`` for a fixed shift ``s`` (the data mean), the squared Mahalanobis distance
  of every component is linear in a vector of features ``phi(u)`` (``u`` itself and its
  squares or pairwise products), and so are the statistics the M-step needs. One E-step then
  costs one (K, F) @ (F, rows) product per block, and the M-step's statistics one
  (K, rows) @ (rows, F) product in the same pass, instead of K per-component differences. The
  price is cancellation: it is exact only up to ``eps`` times the size of the uncentred terms,
  so EM bounds that error every iteration and falls back to the centred kernels when the bound
  is not small (far, tight components).

Blocks are stored transposed, ``XT`` (n_features, rows), and the kernels produce (K, rows)
arrays, as in :meth:`bayesgmm.covariance.CovarianceType.sq_mahalanobis_t`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..covariance import per_type

__all__ = ["EMKernels", "EM_KERNELS", "kernels_for"]


def _add_diag(a, value):
    return a + value * jnp.eye(a.shape[-1], dtype=a.dtype)


class EMKernels:
    """EM's per-type maths (see the module docstring)."""

    name: str

    # --- centred kernels ---------------------------------------------------------------------
    def scatter_t(self, XT, RT, centres, shift):
        """Additive scatter statistics of a block: ``XT`` (d, rows), responsibilities ``RT``
        (K, rows), the new means ``centres`` (K, d) and a fixed ``shift`` (d,) near the data.
        Sum the results over blocks, then call :meth:`scatter_finalize`."""
        raise NotImplementedError

    def scatter_finalize(self, stats, centres, shift):
        """The scatter around ``centres`` (as :meth:`scatter`) from summed block statistics."""
        return stats

    def scatter(self, X, resp, centres):
        """Responsibility-weighted scatter of ``X`` (n, d) around ``centres`` (K, d), for
        responsibilities ``resp`` (n, K); additive over rows.

        Centred at the component means (not raw second moments) so that float32 stays
        accurate for small, far-away components.
        """
        shift = jnp.mean(X, axis=0)
        return self.scatter_finalize(self.scatter_t(X.T, resp.T, centres, shift), centres, shift)

    # --- expanded kernels (float64) -----------------------------------------------------------
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

    # --- M-step estimators --------------------------------------------------------------------
    def scatter_from_full(self, scatter):
        """This type's scatter from per-component ``(K, d, d)`` scatter matrices (what EM with
        missing values accumulates: completed rows plus conditional covariances)."""
        raise NotImplementedError

    def recentre(self, scatter, b, delta, nk, floor=0.0):
        """This type's scatter moved from centres ``c`` to ``c + delta``, and the rounding ratio.

        ``scatter`` is the scatter around ``c`` (K, d) (this type's form), ``b = sum r (x - c)``
        (K, d) summed from centred terms, ``nk`` (K,). Exactly ``sum r (x - c - delta)(...)^T =
        S - b delta^T - delta b^T + nk delta delta^T`` per component, reduced to the type's form.
        Returns ``(scatter, ratio)``, ``ratio`` the largest diagonal entry of the scatter
        around ``c`` over the one around ``c + delta`` (plus ``floor``, the count times
        ``reg_covar`` that the covariance adds, (K,), or () for a shared covariance): the
        factor by which the correction's cancellation amplifies rounding (out-of-core EM
        refuses the one-pass update when ``4 eps ratio`` is not small).
        """
        outer = b[:, :, None] * delta[:, None, :]
        full = (
            outer
            + jnp.swapaxes(outer, 1, 2)
            - nk[:, None, None] * (delta[:, :, None] * delta[:, None, :])
        )
        new = scatter - self.scatter_from_full(full)
        diagonal = self.scatter_diagonal(new)
        floor = jnp.asarray(floor)
        floor = floor.reshape(floor.shape + (1,) * (diagonal.ndim - floor.ndim))
        ratio = self.scatter_diagonal(scatter) / (diagonal + floor)
        return new, jnp.max(ratio)

    def scatter_diagonal(self, scatter):
        """The variances in a scatter of this type's form (its diagonal entries)."""
        return scatter

    def ml_covariance(self, nk, means, scatter, reg_covar):
        """Maximum-likelihood covariances from statistics, plus ``reg_covar`` on diagonals."""
        raise NotImplementedError

    def map_covariance(self, nk, means_ml, scatter, reg_covar, prior):
        """Closed-form posterior-mode covariances under the conjugate prior
        (:class:`bayesgmm.prior.Prior`; Fraley and Raftery 2007, table 2)."""
        raise NotImplementedError

    def __repr__(self):
        return f"<EM kernels {self.name!r}>"


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


class _Full(EMKernels):
    name = "full"

    def scatter_diagonal(self, scatter):
        return jnp.diagonal(scatter, axis1=-2, axis2=-1)

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

    def scatter_from_full(self, scatter):
        return scatter

    def ml_covariance(self, nk, means, scatter, reg_covar):
        return _add_diag(scatter / nk[:, None, None], reg_covar)

    def map_covariance(self, nk, means_ml, scatter, reg_covar, prior):
        d = means_ml.shape[-1]
        delta = means_ml - prior.mean
        shrink = (prior.mean_precision * nk / (prior.mean_precision + nk))[:, None, None]
        num = prior.scale + scatter + shrink * delta[:, :, None] * delta[:, None, :]
        den = (prior.dof + nk + d + 2)[:, None, None]
        return _add_diag(num / den, reg_covar)


class _Tied(EMKernels):
    name = "tied"

    def scatter_diagonal(self, scatter):
        return jnp.diagonal(scatter, axis1=-2, axis2=-1)

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

    def scatter_from_full(self, scatter):
        return jnp.sum(scatter, axis=0)

    def ml_covariance(self, nk, means, scatter, reg_covar):
        return _add_diag(scatter / jnp.sum(nk), reg_covar)

    def map_covariance(self, nk, means_ml, scatter, reg_covar, prior):
        n_components, d = means_ml.shape
        delta = means_ml - prior.mean
        shrink = prior.mean_precision * nk / (prior.mean_precision + nk)
        num = prior.scale + scatter + jnp.einsum("k,ki,kj->ij", shrink, delta, delta)
        den = prior.dof + jnp.sum(nk) + d + 1 + n_components
        return _add_diag(num / den, reg_covar)


class _Diag(EMKernels):
    name = "diag"

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

    def scatter_from_full(self, scatter):
        return jnp.diagonal(scatter, axis1=-2, axis2=-1)

    def ml_covariance(self, nk, means, scatter, reg_covar):
        return scatter / nk[:, None] + reg_covar

    def map_covariance(self, nk, means_ml, scatter, reg_covar, prior):
        delta = means_ml - prior.mean
        shrink = (prior.mean_precision * nk / (prior.mean_precision + nk))[:, None]
        num = prior.scale + scatter + shrink * delta * delta
        return num / (prior.dof + nk + 3)[:, None] + reg_covar


class _Spherical(EMKernels):
    name = "spherical"

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

    def scatter_from_full(self, scatter):
        return jnp.trace(scatter, axis1=-2, axis2=-1)

    def ml_covariance(self, nk, means, scatter, reg_covar):
        # scikit-learn: the mean over features of the diagonal variances.
        return scatter / (nk * means.shape[-1]) + reg_covar

    def map_covariance(self, nk, means_ml, scatter, reg_covar, prior):
        d = means_ml.shape[-1]
        delta = means_ml - prior.mean
        shrink = prior.mean_precision * nk / (prior.mean_precision + nk)
        num = prior.scale + scatter + shrink * jnp.sum(delta * delta, axis=-1)
        return num / (prior.dof + (nk + 1) * d + 2) + reg_covar


#: EM's kernels of every covariance type, by name.
EM_KERNELS: dict[str, EMKernels] = {k.name: k for k in (_Full(), _Tied(), _Diag(), _Spherical())}


def kernels_for(covariance_type) -> EMKernels:
    """The :class:`EMKernels` of ``covariance_type`` (a name or a covariance-type object)."""
    return per_type(EM_KERNELS, covariance_type)
