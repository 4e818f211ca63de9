"""bayesgmm: Gaussian mixtures as one generative model, fitted by JAX EM and by NumPyro NUTS.

The names below are loaded on first use, so ``import bayesgmm`` is quick and loads neither
JAX nor scikit-learn (which bayesgmm never imports); the command line's ``--help`` answers
without them. The first use of anything that computes switches JAX to 64-bit mode for the
process, so float64 data is computed in float64 and float32 data in float32 (why a
process-wide switch: :mod:`bayesgmm._jax`).

Examples
--------
>>> import numpy as np
>>> import bayesgmm
>>> X = np.random.default_rng(0).normal(size=(200, 2))
>>> gm = bayesgmm.GaussianMixture(2, random_state=0).fit(X)
>>> gm.means_.dtype
dtype('float64')
"""

from __future__ import annotations

import importlib

from ._exceptions import (
    ConvergenceWarning,
    DataScaleWarning,
    DivergenceWarning,
    FormatError,
    NotFittedError,
)
from ._version import version as __version__

#: Public names and the module that defines each, imported on first access.
_LAZY = {
    "GaussianMixture": "estimator",
    "n_parameters": "estimator",
    "KMeans": "kmeans",
    "gmm_model": "model",
    "GMMParams": "params",
    "Prior": "prior",
    "Posterior": "posterior",
    "fit_posterior": "posterior",
    "select": "selection",
    "save": "io",
}
_SUBMODULES = (
    "convert",
    "covariance",
    "datasets",
    "density",
    "em",
    "estimator",
    "hc",
    "io",
    "kmeans",
    "model",
    "params",
    "plotting",
    "posterior",
    "prior",
    "relabel",
    "sampler",
    "selection",
)

__all__ = [
    "ConvergenceWarning",
    "DataScaleWarning",
    "DivergenceWarning",
    "FormatError",
    "GMMParams",
    "GaussianMixture",
    "KMeans",
    "NotFittedError",
    "Posterior",
    "Prior",
    "__version__",
    "covariance",
    "datasets",
    "density",
    "em",
    "fit_posterior",
    "gmm_model",
    "load",
    "n_parameters",
    "plotting",
    "save",
    "select",
]


def load(path):
    """Load a file written by :func:`save` (or a ``save`` method): a fitted
    ``GaussianMixture`` or a ``Posterior``, told apart by the file's first bytes.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    GaussianMixture or Posterior

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    FormatError (a ValueError)
        The file is not a bayesgmm file, is damaged or truncated, or was written by a newer
        format version.
    """
    from .io import file_kind

    if file_kind(path) == "model":
        from .estimator import load_estimator

        return load_estimator(path)
    from .posterior import Posterior

    return Posterior.load(path)


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
