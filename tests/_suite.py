"""Which cases of a parametrised check the default suite runs.

The suite must stay under 12 minutes on 2 cores, so some checks run a representative subset
of their cases by default and mark the rest ``extended`` (``python -m pytest -n 2 -m
extended`` runs those; pyproject.toml deselects them by default).
"""

import pytest

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def types(*in_suite: str):
    """The four covariance types as parameters; those not in ``in_suite`` marked extended."""
    return [
        ct if ct in in_suite else pytest.param(ct, marks=pytest.mark.extended)
        for ct in COVARIANCE_TYPES
    ]


def extended(*values):
    """``values`` as parameters marked extended."""
    return [
        pytest.param(*v if isinstance(v, tuple) else (v,), marks=pytest.mark.extended)
        for v in values
    ]
