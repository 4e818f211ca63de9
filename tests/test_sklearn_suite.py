"""scikit-learn's own tests, run against ``bayesgmm.GaussianMixture``.

Two groups, both read from the installed scikit-learn at collection time (nothing of
scikit-learn's is copied into this repository):

1. **Its test file** ``sklearn/mixture/tests/test_gaussian_mixture.py``. The source is read,
   the one line ``from sklearn.mixture import GaussianMixture`` is replaced by bayesgmm's
   import (line numbers are unchanged, so tracebacks point at the right lines of scikit-learn's
   file), and the result is executed as a fresh module. Each of its test functions that uses
   only the public API is re-exported here, with its own ``pytest.mark`` decorators
   (``parametrize``, ``filterwarnings``), so pytest collects and reports every one as a
   separate case (``tests/test_sklearn_suite.py::test_check_weights``...). scikit-learn's
   ``conftest.py`` fixtures ``global_dtype`` and ``global_random_seed`` are redefined below
   with the same values and environment variables: as in scikit-learn, the float32 cases
   (15 of them) run only with ``SKLEARN_RUN_FLOAT32_TESTS=1`` (they pass; left out by default
   because every new data shape and dtype compiles its EM programs, which dominates the time).

   Tests that exercise scikit-learn's private implementation instead of the estimator are
   excluded, each with its reason in :data:`EXCLUDED`; the few run although they use a private
   name are in :data:`RUN_DESPITE_PRIVATE`, with theirs. Both are checked against the file:
   :func:`test_exclusions_match_the_installed_file` classifies every test from its syntax tree
   (names imported from private scikit-learn modules, private attributes such as
   ``gmm._initialize``, whether ``GaussianMixture`` is used at all; helper functions of the file
   are followed) and fails when the table and the file disagree.

2. **The estimator checks**: every check that ``sklearn.utils.estimator_checks`` generates
   for ``GaussianMixture()`` is one case here. None is marked as an expected failure, and a
   check that skips itself fails the case instead (see :func:`test_sklearn_estimator_check`).
"""

from __future__ import annotations

import ast
import functools
import importlib
import os
import types
import unittest
import warnings
from pathlib import Path

import numpy as np
import pytest

from bayesgmm import GaussianMixture

sklearn = pytest.importorskip("sklearn")
from sklearn.utils import estimator_checks  # noqa: E402

SKLEARN_TEST_FILE = Path(sklearn.__file__).parent / "mixture" / "tests" / "test_gaussian_mixture.py"
SKLEARN_IMPORT = "from sklearn.mixture import GaussianMixture\n"
BAYESGMM_IMPORT = "from bayesgmm import GaussianMixture\n"

# Tests of scikit-learn's file that are not run, with the reason (scikit-learn 1.9.1).
EXCLUDED = {
    "test_suffstat_sk_full": (
        "tests scikit-learn's private _estimate_gaussian_covariances_full and "
        "_compute_precision_cholesky; never calls GaussianMixture"
    ),
    "test_suffstat_sk_tied": (
        "tests scikit-learn's private _estimate_gaussian_covariances_full/_tied and "
        "_compute_precision_cholesky; never calls GaussianMixture"
    ),
    "test_suffstat_sk_diag": (
        "tests scikit-learn's private _estimate_gaussian_covariances_full/_diag and "
        "_compute_precision_cholesky; never calls GaussianMixture"
    ),
    "test_gaussian_suffstat_sk_spherical": (
        "tests scikit-learn's private _estimate_gaussian_covariances_spherical and "
        "_compute_precision_cholesky; never calls GaussianMixture"
    ),
    "test_compute_log_det_cholesky": (
        "tests scikit-learn's private _compute_log_det_cholesky; never calls GaussianMixture"
    ),
    "test_gaussian_mixture_log_probabilities": (
        "tests scikit-learn's private _estimate_log_gaussian_prob; never calls GaussianMixture"
    ),
    "test_gaussian_mixture_precisions_init": (
        "calls the private methods GaussianMixture._set_parameters and ._initialize(X, resp) "
        "of scikit-learn's BaseMixture (bayesgmm's estimator has no such methods)"
    ),
    "test_gaussian_mixture_all_init_does_not_estimate_gaussian_parameters": (
        "monkeypatches scikit-learn's private sklearn.mixture._gaussian_mixture."
        "_estimate_gaussian_parameters and counts its calls, which bayesgmm never makes"
    ),
    "test_gaussian_mixture_array_api_compliance": (
        "array API dispatch through scikit-learn's private sklearn.utils._array_api "
        "(get_namespace, move_to, device); bayesgmm computes in JAX and does not dispatch"
    ),
    "test_gaussian_mixture_raises_where_array_api_not_implemented": (
        "array API dispatch through scikit-learn's private sklearn.utils._array_api; "
        "bayesgmm computes in JAX and does not dispatch"
    ),
}

# Tests that are run although they use a private name, each with the reason.
RUN_DESPITE_PRIVATE = {
    "test_gaussian_mixture_precisions_init_diag": (
        "scikit-learn's private _estimate_gaussian_parameters only computes the precisions_init "
        "given to GaussianMixture; the test compares two bayesgmm fits"
    ),
    "test_gaussian_mixture_n_parameters": (
        "GaussianMixture._n_parameters() is private in scikit-learn, and bayesgmm provides it "
        "with the same meaning (bic and aic use it)"
    ),
    "test_gaussian_mixture_aic_bic": (
        "GaussianMixture._n_parameters() is private in scikit-learn, and bayesgmm provides it "
        "with the same meaning (bic and aic use it)"
    ),
}

# Private modules whose names are test tooling rather than scikit-learn's implementation.
_ASSERTION_MODULE = "sklearn.utils._testing"


def _is_private_module(module: str) -> bool:
    return any(part.startswith("_") for part in module.split("."))


def _is_public_name(module: str, name: str) -> bool:
    """A name imported from a private module that is still public API: exported by the public
    package above it (``sklearn.datasets._samples_generator.make_blobs`` is
    ``sklearn.datasets.make_blobs``), or one of scikit-learn's ``assert_*`` testing helpers."""
    if module == _ASSERTION_MODULE and name.startswith("assert_"):
        return True
    public = ".".join(part for part in module.split(".") if not part.startswith("_"))
    try:
        return hasattr(importlib.import_module(public), name)
    except ImportError:
        return False


def classify(source: str) -> dict[str, tuple[bool, frozenset[str]]]:
    """For each top-level ``test_*`` function: whether it uses ``GaussianMixture`` and the
    private scikit-learn names it uses, following the file's own helpers (functions and classes
    it calls, such as ``_calculate_precisions``)."""
    tree = ast.parse(source)
    private_imports = {}
    defs = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and _is_private_module(node.module):
            for alias in node.names:
                if not _is_public_name(node.module, alias.name):
                    private_imports[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            defs[node.name] = node

    @functools.cache
    def uses(name: str) -> tuple[bool, frozenset[str]]:
        estimator, private = False, set()
        for sub in ast.walk(defs[name]):
            if isinstance(sub, ast.Name):
                if sub.id == "GaussianMixture":
                    estimator = True
                elif sub.id in private_imports:
                    private.add(private_imports[sub.id])
                elif sub.id in defs and sub.id != name:
                    helper_estimator, helper_private = uses(sub.id)
                    estimator |= helper_estimator
                    private |= helper_private
            elif isinstance(sub, ast.Attribute):
                if sub.attr.startswith("_") and not sub.attr.startswith("__"):
                    private.add("." + sub.attr)
            elif isinstance(sub, ast.ImportFrom) and sub.module and _is_private_module(sub.module):
                private.update(
                    f"{sub.module}.{alias.name}"
                    for alias in sub.names
                    if not _is_public_name(sub.module, alias.name)
                )
        return estimator, frozenset(private)

    return {name: uses(name) for name in defs if name.startswith("test_")}


def _load_sklearn_tests():
    """scikit-learn's test file with bayesgmm's GaussianMixture, as a fresh module."""
    source = SKLEARN_TEST_FILE.read_text()
    if source.count(SKLEARN_IMPORT) != 1:
        raise RuntimeError(
            f"{SKLEARN_TEST_FILE} no longer has exactly one line {SKLEARN_IMPORT.strip()!r}"
        )
    module = types.ModuleType("sklearn_test_gaussian_mixture_with_bayesgmm")
    module.__file__ = str(SKLEARN_TEST_FILE)
    code = compile(source.replace(SKLEARN_IMPORT, BAYESGMM_IMPORT), str(SKLEARN_TEST_FILE), "exec")
    exec(code, module.__dict__)
    return source, module


# Some distributions ship scikit-learn without its tests; the estimator checks still run.
if SKLEARN_TEST_FILE.is_file():
    SKLEARN_SOURCE, SKLEARN_TESTS = _load_sklearn_tests()
    CLASSIFIED = classify(SKLEARN_SOURCE)
else:
    SKLEARN_SOURCE, SKLEARN_TESTS, CLASSIFIED = None, None, {}
RUN = sorted(name for name in CLASSIFIED if name not in EXCLUDED)

for _name in RUN:  # pytest collects these as this module's tests, marks and all
    globals()[_name] = getattr(SKLEARN_TESTS, _name)
del _name


# scikit-learn's conftest.py fixtures, with the same values and environment variables.
_SKIP_FLOAT32 = pytest.mark.skipif(
    os.environ.get("SKLEARN_RUN_FLOAT32_TESTS", "0") != "1",
    reason="Set SKLEARN_RUN_FLOAT32_TESTS=1 to run float32 dtype tests",
)


@pytest.fixture(params=[pytest.param(np.float32, marks=_SKIP_FLOAT32), np.float64])
def global_dtype(request):
    return request.param


def _global_random_seeds():
    seed = os.environ.get("SKLEARN_TESTS_GLOBAL_RANDOM_SEED")
    if seed is None:
        return [42]
    if seed == "all":
        return list(range(100))
    if "-" in seed:
        start, stop = map(int, seed.split("-"))
        return list(range(start, stop + 1))
    return [int(seed)]


@pytest.fixture(params=_global_random_seeds())
def global_random_seed(request):
    return request.param


def test_exclusions_match_the_installed_file():
    """Every test of scikit-learn's file is run or excluded for a reason that its syntax
    tree confirms: an excluded test uses a private scikit-learn name or never touches
    GaussianMixture; a run test uses neither, or is listed in RUN_DESPITE_PRIVATE."""
    if SKLEARN_SOURCE is None:
        pytest.skip(f"scikit-learn's tests are not installed ({SKLEARN_TEST_FILE})")
    assert CLASSIFIED, f"no tests found in {SKLEARN_TEST_FILE}"
    problems = []
    for name, (estimator, private) in sorted(CLASSIFIED.items()):
        needs_exclusion = not estimator or (private and name not in RUN_DESPITE_PRIVATE)
        if needs_exclusion and name not in EXCLUDED:
            why = "never uses GaussianMixture" if not estimator else f"uses {sorted(private)}"
            problems.append(f"{name} {why}: add it to EXCLUDED with a reason")
        if name in EXCLUDED and not needs_exclusion:
            problems.append(f"{name} uses only the public API now: remove it from EXCLUDED")
    for name in RUN_DESPITE_PRIVATE:
        if name in CLASSIFIED and not CLASSIFIED[name][1]:
            problems.append(f"{name} no longer uses a private name: remove it from the list")
    assert not problems, "\n".join(problems)
    for name in RUN:
        assert getattr(SKLEARN_TESTS, name).__module__ == SKLEARN_TESTS.__name__
    assert SKLEARN_TESTS.GaussianMixture.__module__ == "bayesgmm.estimator"


# --- scikit-learn's estimator checks --------------------------------------------------------


def _check_name(check) -> str:
    func = check
    while isinstance(func, functools.partial):
        func = func.func
    return func.__name__


def _check_id(check) -> str:
    keywords = check.keywords if isinstance(check, functools.partial) else {}
    args = ",".join(f"{k}={v}" for k, v in keywords.items())
    return _check_name(check) + (f"({args})" if args else "")


# mark=None: nothing is an expected failure; every check runs and must pass.
_GENERATOR = getattr(estimator_checks, "estimator_checks_generator", None)  # scikit-learn >= 1.6
with warnings.catch_warnings():  # the generator warns that we do not subclass BaseEstimator
    warnings.filterwarnings("ignore", "Estimator GaussianMixture does not inherit", UserWarning)
    ESTIMATOR_CHECKS = (
        list(_GENERATOR(GaussianMixture(), legacy=True, mark=None)) if _GENERATOR else []
    )


@pytest.mark.filterwarnings("ignore:Estimator GaussianMixture does not inherit:UserWarning")
@pytest.mark.parametrize(
    "estimator, check", ESTIMATOR_CHECKS, ids=[_check_id(c) for _, c in ESTIMATOR_CHECKS]
)
def test_sklearn_estimator_check(estimator, check, monkeypatch):
    if _check_name(check) == "check_array_api_input":
        # With NumPy inputs (the only namespace offered to an estimator without array API
        # support) the check compares results with and without array_api_dispatch. It skips
        # itself unless SCIPY_ARRAY_API is set; scipy reads that variable when it is imported,
        # and for NumPy arrays it changes nothing.
        monkeypatch.setenv("SCIPY_ARRAY_API", "1")
    try:
        check(estimator)
    except unittest.SkipTest as exc:  # scikit-learn's SkipTest
        pytest.fail(f"{_check_id(check)} skipped itself: {exc}")


def test_every_estimator_check_is_generated():
    """The checks above are all scikit-learn has for this estimator: 48 in scikit-learn 1.9.1,
    including the ones that failed before bayesgmm's messages followed scikit-learn's and the
    7 sample-weight checks its ``fit(X, y, sample_weight)`` signature brings (among them
    ``check_sample_weight_equivalence_on_dense_data``: integer weights = repeated rows, by
    scikit-learn's own test)."""
    if _GENERATOR is None:
        pytest.skip("sklearn.utils.estimator_checks.estimator_checks_generator needs >= 1.6")
    names = {_check_name(c) for _, c in ESTIMATOR_CHECKS}
    for name in (
        "check_estimator_sparse_tag",
        "check_estimator_sparse_array",
        "check_estimator_sparse_matrix",
        "check_complex_data",
        "check_n_features_in_after_fitting",
        "check_fit2d_predict1d",
        "check_estimators_empty_data_messages",
        "check_dtype_object",
        "check_array_api_input",
        "check_all_zero_sample_weights_error",
        "check_sample_weight_equivalence_on_dense_data",
        "check_sample_weights_list",
        "check_sample_weights_not_an_array",
        "check_sample_weights_not_overwritten",
        "check_sample_weights_pandas_series",
        "check_sample_weights_shape",
    ):
        assert name in names
    if sklearn.__version__ == "1.9.1":
        assert len(ESTIMATOR_CHECKS) == 48
