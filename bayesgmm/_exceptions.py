"""Every exception and warning bayesgmm raises of its own, in one module at the bottom of the
package (it imports nothing of bayesgmm), re-exported by ``bayesgmm``.

scikit-learn's users filter and catch its ``ConvergenceWarning`` and ``NotFittedError``, and
scikit-learn's own tests expect them from a ``GaussianMixture``. bayesgmm does not import
scikit-learn, so its classes are its own; but when the process has imported scikit-learn (only
then can anybody name scikit-learn's classes), :func:`sklearn_compatible` returns a subclass
of both bayesgmm's class and scikit-learn's namesake, and that is what is raised or warned: an
``except``, ``pytest.warns`` or ``warnings.filterwarnings`` written against either class
matches.
"""

from __future__ import annotations

import sys

__all__ = [
    "ConvergenceWarning",
    "DataScaleWarning",
    "DivergenceWarning",
    "FormatError",
    "NotFittedError",
    "sklearn_compatible",
]


class ConvergenceWarning(UserWarning):
    """EM (or k-means) stopped at ``max_iter`` before the objective changed by less than
    ``tol``."""


class NotFittedError(ValueError, AttributeError):
    """A method that needs a fitted estimator was called before ``fit``."""


class DataScaleWarning(UserWarning):
    """The data's spread is so small that the absolute ``reg_covar`` dominates every covariance."""


class DivergenceWarning(RuntimeWarning):
    """NUTS reported divergent transitions after warm-up: the draws may be biased."""


class FormatError(ValueError):
    """A file is not a bayesgmm file, is damaged or truncated, or is from a newer version."""


_SKLEARN_NAMESAKES = {ConvergenceWarning: "ConvergenceWarning", NotFittedError: "NotFittedError"}
_combined: dict[type, type] = {}


def sklearn_compatible(cls: type) -> type:
    """``cls``, or, once scikit-learn is imported, a subclass of ``cls`` and of scikit-learn's
    class of the same name (cached; ``cls`` is ``ConvergenceWarning`` or ``NotFittedError``).

    Examples
    --------
    >>> import warnings
    >>> from bayesgmm import ConvergenceWarning
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warnings.warn("stopped early", sklearn_compatible(ConvergenceWarning))
    >>> issubclass(caught[0].category, ConvergenceWarning)
    True
    """
    if "sklearn" not in sys.modules:
        return cls
    if cls not in _combined:
        import sklearn.exceptions

        theirs = getattr(sklearn.exceptions, _SKLEARN_NAMESAKES[cls])
        _combined[cls] = type(
            cls.__name__, (cls, theirs), {"__module__": cls.__module__, "__doc__": cls.__doc__}
        )
    return _combined[cls]
