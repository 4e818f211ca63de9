"""Shared test set-up: a headless matplotlib backend and small fixed data sets."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import bayesgmm  # noqa: E402,F401  (enables float64 before any test builds arrays)

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


@pytest.fixture(params=COVARIANCE_TYPES)
def covariance_type(request):
    return request.param


@pytest.fixture
def three_blobs():
    """Three well-separated 2-D Gaussian clusters, 750 points, fixed seed."""
    rng = np.random.default_rng(0)
    return np.concatenate(
        [
            rng.normal([0.0, 0.0], [1.0, 0.5], (300, 2)),
            rng.normal([5.0, 5.0], [0.5, 1.5], (200, 2)),
            rng.normal([0.0, 6.0], 1.0, (250, 2)),
        ]
    )
