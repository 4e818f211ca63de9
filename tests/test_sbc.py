"""Simulation-based calibration of fit_posterior, reduced to run in the test suite.

The full study is ``scripts/sbc.py`` (500 simulations per covariance type; figures and
statistics in docs/sbc/). Here, for every covariance type: 30 simulations of 50 points from
the same fixed 2-D, two-component prior (``sbc.sbc_prior``), one chain of 100 warm-up and 100
draws thinned by 5 (L = 20 draws, ranks 0..20 in 3 bins of 7).

Uniformity: chi-square on 3 bins (df 2) per label-invariant quantity; rejected below
p = 0.001. With 7 to 11 quantities per type and 35 in all, the chance of a false alarm
under a calibrated sampler is below 1 - 0.999**35 = 3.5% for an arbitrary seed; the seed is
fixed, so the outcome is deterministic and was seen to pass. A negative control shows the
test has power: the first 15 of the same data sets fitted under a wrong prior
(``sbc.wrong_prior``: means pulled by +3 with strength 1) must be rejected for some quantity.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

_PATH = os.path.join(os.path.dirname(__file__), os.pardir, "scripts", "sbc.py")
_spec = importlib.util.spec_from_file_location("bayesgmm_sbc_script", _PATH)
sbc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sbc)

SETTINGS = dict(n_data=50, num_warmup=100, num_samples=100, thin=5, verbose=False, seed=1)
N_SIMS, N_CONTROL = 30, 15
N_BINS = 3
THRESHOLD = 1e-3


# 'full' and 'diag' in the default suite (a dense and a diagonal family of priors); 'tied' and
# 'spherical' are marked extended (docs/sbc/ holds the 500-simulation study of all four).
@pytest.mark.parametrize(
    "covariance_type",
    [
        ct if ct in ("full", "diag") else pytest.param(ct, marks=pytest.mark.extended)
        for ct in sbc.COVARIANCE_TYPES
    ],
)
def test_ranks_of_the_true_parameters_are_uniform_and_a_wrong_prior_is_detected(
    covariance_type,
):
    ranks, L, _ = sbc.run_sbc(covariance_type, N_SIMS, **SETTINGS)
    assert L == 20
    assert tuple(ranks) == sbc.quantities(covariance_type, 2)
    for name, r in ranks.items():
        assert r.shape == (N_SIMS,) and r.min() >= 0 and r.max() <= L
        stat, p, counts = sbc.chi_square(r, L, N_BINS)
        assert p >= THRESHOLD, (covariance_type, name, stat, p, counts)
    # The control refits the first N_CONTROL of the same data sets (the simulations depend on
    # the seed and the type only), so it differs from the study by its prior alone.
    wrong, _, _ = sbc.run_sbc(
        covariance_type, N_CONTROL, fit_prior=sbc.wrong_prior(covariance_type), **SETTINGS
    )
    pvalues = {name: sbc.chi_square(r, L, N_BINS)[1] for name, r in wrong.items()}
    assert min(pvalues.values()) < THRESHOLD, pvalues


@pytest.mark.parametrize("covariance_type", sbc.COVARIANCE_TYPES)
def test_label_invariant_quantities_ignore_the_labels(covariance_type):
    rng = np.random.default_rng(0)
    n, d = 5, 2
    w = rng.dirichlet([1, 1], n)
    mu = rng.normal(size=(n, 2, d))
    a = rng.normal(size=(n, 2, d, d))
    full = a @ np.swapaxes(a, -1, -2) + np.eye(d)
    cov = {
        "full": full,
        "tied": full[:, 0],
        "diag": rng.uniform(0.5, 2, (n, 2, d)),
        "spherical": rng.uniform(0.5, 2, (n, 2)),
    }[covariance_type]
    swap = cov if covariance_type == "tied" else cov[:, ::-1]
    x = sbc.label_invariant(w, mu, cov, covariance_type)
    y = sbc.label_invariant(w[:, ::-1], mu[:, ::-1], swap, covariance_type)
    assert tuple(x) == sbc.quantities(covariance_type, d)
    for name in x:
        np.testing.assert_array_equal(x[name], y[name])
    assert np.all(x["mean_low_x"] <= x["mean_high_x"])
    if covariance_type == "full":  # a correlation is in [-1, 1] and matches its matrix
        i = np.where(mu[:, 0, 0] <= mu[:, 1, 0], 0, 1)
        c = full[np.arange(n), i]
        np.testing.assert_allclose(x["corr_low"], c[:, 0, 1] / np.sqrt(c[:, 0, 0] * c[:, 1, 1]))


def test_sbc_prior_means_are_the_stated_ones():
    # The docstring's claims: the covariances' prior mean is C for every type (diagonal of C
    # for 'diag', 1 for 'spherical'), so the study's scale is the one it says.
    C = np.array([[1.25, 0.3], [0.3, 0.8]])
    for ct in sbc.COVARIANCE_TYPES:
        p = sbc.sbc_prior(ct)
        dof, scale = float(np.asarray(p.dof)), np.asarray(p.scale)
        if ct in ("full", "tied"):
            np.testing.assert_allclose(scale / (dof - 2 - 1), C)
        elif ct == "diag":
            np.testing.assert_allclose(scale / (dof / 2 - 1) / 2, np.diag(C))
        else:
            np.testing.assert_allclose(scale / (dof / 2 - 1) / 2, 1.0)


def test_chi_square_bins():
    L = 20
    stat, p, counts = sbc.chi_square(np.arange(21).repeat(3), L, 3)
    assert counts.tolist() == [21, 21, 21] and stat == 0.0 and p == 1.0
    with pytest.raises(ValueError, match="equal bins"):
        sbc.chi_square(np.arange(21), L, 4)
