"""Expectation-maximisation for Gaussian mixtures, jitted.

Read in this order:

1. :mod:`~bayesgmm.em.reference`: :func:`reference_em`, the textbook iteration in one
   ``lax.while_loop`` (E-step, statistics, M-step on the exact centred kernels), and the M-step
   as a function of additive sufficient statistics;
2. :mod:`~bayesgmm.em.kernels`: the per-covariance-type statistics and M-step estimators, in
   their centred and expanded forms;
3. :mod:`~bayesgmm.em.centred` and :mod:`~bayesgmm.em.expanded`: one fast EM step each, behind
   the same signature ``step(params) -> (objective, new_params, ok)``; the expanded (float64)
   step bounds its rounding and refuses itself when the bound is not small;
4. :mod:`~bayesgmm.em.driver`: :func:`fit_em`, every restart's loop together under ``vmap``,
   and the one fallback policy between the two steps (a state diagram in
   ``_run_program``'s docstring);
5. :mod:`~bayesgmm.em.missing`: :func:`fit_em_missing`, EM on the observed coordinates of
   rows with missing values (the conditional expectations and covariances of the missing
   ones in the M-step);
6. :mod:`~bayesgmm.em.stream`: :func:`fit_em_stream`, the same iteration over data read in
   chunks (a Dask array, a memmap, an h5py/zarr dataset), one pass per iteration;
7. :mod:`~bayesgmm.em.init` (starting parameters) and :mod:`~bayesgmm.em.best`
   (:func:`fit_best`, the best of ``n_init`` runs with its diagnostics: what
   :class:`bayesgmm.GaussianMixture` and :func:`bayesgmm.fit_posterior` call).

The test suite checks :func:`fit_em` against :func:`reference_em` iteration by iteration, in
both kernel families, for every covariance type, with and without a prior.
"""

from .._validation import INIT_METHODS
from ..prior import log_prior
from .best import FIT_FAILED_MESSAGE, BestFit, fit_best, fit_summary
from .centred import centred_step, e_step
from .driver import fit_em
from .expanded import EXPANDED_BLOCK_ROWS, expanded_step, use_expanded
from .init import initial_resp
from .kernels import EMKernels, kernels_for
from .missing import fit_em_missing, mean_imputed, missing_step
from .reference import EMResult, SufficientStats, m_step, reference_em, sufficient_stats, to_blocks
from .stream import INIT_ROWS, fit_em_stream, sample_rows

__all__ = [
    "reference_em",
    "EMResult",
    "SufficientStats",
    "to_blocks",
    "e_step",
    "centred_step",
    "expanded_step",
    "use_expanded",
    "sufficient_stats",
    "m_step",
    "log_prior",
    "kernels_for",
    "EMKernels",
    "initial_resp",
    "fit_em",
    "fit_em_missing",
    "missing_step",
    "mean_imputed",
    "BestFit",
    "fit_best",
    "fit_summary",
    "FIT_FAILED_MESSAGE",
    "INIT_METHODS",
    "EXPANDED_BLOCK_ROWS",
    "fit_em_stream",
    "sample_rows",
    "INIT_ROWS",
]
