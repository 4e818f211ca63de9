"""bayesgmm: Gaussian mixtures as one generative model, fitted by JAX EM and by NumPyro NUTS.

Importing bayesgmm turns on JAX's 64-bit mode so that float64 data is computed in float64
(float32 data still runs in float32).
"""

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from . import covariance, datasets, density, em  # noqa: E402
from .estimator import ConvergenceWarning, GaussianMixture, n_parameters  # noqa: E402
from .io import load, save  # noqa: E402
from .kmeans import KMeans  # noqa: E402
from .model import gmm_model  # noqa: E402
from .params import GMMParams, Prior  # noqa: E402
from .posterior import DivergenceWarning, Posterior, fit_posterior  # noqa: E402
from .selection import select  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning",
    "DivergenceWarning",
    "GMMParams",
    "GaussianMixture",
    "KMeans",
    "Posterior",
    "Prior",
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


def __getattr__(name):
    # bayesgmm.plotting is imported on first use, so importing bayesgmm never loads
    # matplotlib (and never needs a display).
    if name == "plotting":
        import importlib

        return importlib.import_module(".plotting", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
