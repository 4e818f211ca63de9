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


def assert_local_maximum(f, u0, *, grad_tol=1e-4, n_directions=200, seed=0):
    """Assert that the jitted scalar function ``f`` of a flat vector has a local maximum at
    ``u0``: its gradient vanishes (below ``grad_tol``, against a gradient of order
    curvature * step ~ 1e2 * 1e-2 one small step away) and no move of size 1e-3 or 1e-2 in
    ``n_directions`` random directions raises it."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    grad = np.asarray(jax.grad(f)(u0))
    assert np.max(np.abs(grad)) < grad_tol, grad
    dirs = np.random.default_rng(seed).normal(size=(n_directions, u0.size))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    points = jnp.concatenate([u0[None], u0 + 1e-3 * dirs, u0 + 1e-2 * dirs])
    values = np.asarray(jax.vmap(f)(points))
    assert np.all(values[1:] < values[0]), values[0] - values[1:].max()
