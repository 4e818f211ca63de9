"""Simulation-based calibration of fit_posterior, reduced to run in the test suite.

The full study is ``scripts/sbc.py`` (500 simulations; figure and statistics in docs/sbc/).
Here: 60 simulations of 50 points from the same fixed prior (1-D, 2 spherical components),
one chain of 100 warm-up and 100 draws thinned by 5 (L = 20 draws, ranks 0..20 in 3 bins of
7), the same program shapes as test_determinism's posterior so the NUTS program may be reused.

Uniformity: chi-square on 3 bins (df 2) per label-invariant quantity; rejected below
p = 0.001 (for 5 quantities the chance of a false alarm is < 0.5%; the seed is fixed, so the
outcome is deterministic). A negative control shows the test has power: the same data fitted
under a wrong prior (means pulled to +3 with strength 1) must be rejected.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

from bayesgmm import Prior

_PATH = os.path.join(os.path.dirname(__file__), os.pardir, "scripts", "sbc.py")
_spec = importlib.util.spec_from_file_location("bayesgmm_sbc_script", _PATH)
sbc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sbc)

SETTINGS = dict(n_sims=60, n_data=50, num_warmup=100, num_samples=100, thin=5, verbose=False)
N_BINS = 3
THRESHOLD = 1e-3


@pytest.fixture(scope="module")
def calibrated():
    return sbc.run_sbc(seed=1, **SETTINGS)


def test_ranks_of_the_true_parameters_are_uniform(calibrated):
    ranks, L, info = calibrated
    assert L == 20
    for name, r in ranks.items():
        assert r.shape == (SETTINGS["n_sims"],) and r.min() >= 0 and r.max() <= L
        stat, p, counts = sbc.chi_square(r, L, N_BINS)
        assert p >= THRESHOLD, (name, stat, p, counts)


def test_a_wrong_prior_is_detected():
    wrong = Prior(np.array([5.0, 5.0]), np.array([3.0]), 1.0, 10.0, np.asarray(10.0), "spherical")
    ranks, L, _ = sbc.run_sbc(seed=1, fit_prior=wrong, **SETTINGS)
    pvalues = {name: sbc.chi_square(r, L, N_BINS)[1] for name, r in ranks.items()}
    assert min(pvalues["mean_low"], pvalues["mean_high"]) < THRESHOLD, pvalues


def test_label_invariant_quantities_ignore_the_labels():
    rng = np.random.default_rng(0)
    w = rng.dirichlet([1, 1], 5)
    mu = rng.normal(size=(5, 2, 1))
    var = rng.uniform(0.5, 2, (5, 2))
    a = sbc.label_invariant(w, mu, var)
    b = sbc.label_invariant(w[:, ::-1], mu[:, ::-1], var[:, ::-1])
    for name in sbc.QUANTITIES:
        np.testing.assert_array_equal(a[name], b[name])
    assert np.all(a["mean_low"] <= a["mean_high"])


def test_chi_square_bins():
    L = 20
    stat, p, counts = sbc.chi_square(np.arange(21).repeat(3), L, 3)
    assert counts.tolist() == [21, 21, 21] and stat == 0.0 and p == 1.0
    with pytest.raises(ValueError, match="equal bins"):
        sbc.chi_square(np.arange(21), L, 4)
