"""The package's layering, read from its source: no import cycle (function-local imports
included), every import pointing down or sideways, and the start-up promises (no scikit-learn,
no JAX for ``import bayesgmm`` and ``bayesgmm --help``).

The layers (docs/architecture.md explains them):

0. base: exceptions, version, JAX configuration, compilation and key helpers, validation;
1. core: the maths every path shares (covariance types, parameter containers, densities);
2. engines: k-means, hierarchical clustering, EM, the NumPyro model, the NUTS driver,
   relabeling, file formats, ArviZ conversion;
3. faces: the estimator, model selection, the posterior;
4. leaves: plotting, the command line, data sets, the package root.

A module may import modules of its own layer or of lower ones; imports within a layer must
not form a cycle (nor may any others).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import bayesgmm

PACKAGE = Path(bayesgmm.__file__).parent

LAYERS = {
    0: ("_exceptions", "_version", "_jax", "_compile", "_random", "_validation", "_devices", "_sources"),
    1: ("covariance", "prior", "params", "density", "marginal"),
    2: ("kmeans", "hc", "em", "model", "sampler", "relabel", "io", "convert"),
    3: ("estimator", "selection", "posterior"),
    4: ("plotting", "cli", "datasets", "__main__", "__init__"),
}
#: The em package's modules in reading order: each imports only modules before it (and lower
#: layers), so the package reads top to bottom from its reference iteration.
EM_ORDER = (
    "em.kernels",
    "em.reference",
    "em.centred",
    "em.expanded",
    "em.init",
    "em.driver",
    "em.missing",
    "em.stream",
    "em.best",
    "em",
)


def layer_of(module: str) -> int | None:
    """The layer of a module; a subpackage's modules are in the subpackage's layer."""
    top = module.split(".")[0]
    return next((layer for layer, mods in LAYERS.items() if top in mods), None)


def _load_reader():
    path = Path(__file__).resolve().parent.parent / "scripts" / "house_report.py"
    spec = importlib.util.spec_from_file_location("bayesgmm_house_report", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The graph reader lives in scripts/house_report.py (which prints the before/after tables of
# the refactor from any checkout); these are its functions bound to this package.
_reader = _load_reader()
find_cycle = _reader.find_cycle


def _path(module: str) -> Path:
    return _reader.module_path(PACKAGE, module)


def module_names():
    return _reader.module_names(PACKAGE)


def imports_of(module: str) -> set[str]:
    """bayesgmm modules that ``module`` imports anywhere in its source (module level, inside
    functions, under ``if TYPE_CHECKING``), ``__init__`` standing for the package root."""
    return _reader.imports_of(PACKAGE, module)


def import_graph():
    return {m: imports_of(m) for m in module_names()}


def test_every_module_has_a_layer():
    missing = [m for m in module_names() if layer_of(m) is None]
    assert not missing, f"add {missing} to LAYERS (and docs/architecture.md)"
    em_modules = [m for m in module_names() if m == "em" or m.startswith("em.")]
    assert sorted(em_modules) == sorted(EM_ORDER), "add new em modules to EM_ORDER"


def test_no_import_cycle_counting_function_local_imports():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_imports_point_down_or_sideways():
    upward = [
        f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
        for m, targets in import_graph().items()
        for t in targets
        if layer_of(t) > layer_of(m)
    ]
    assert not upward, upward


def test_the_em_package_reads_top_to_bottom():
    graph = import_graph()
    backward = [
        f"{m} imports {t}, which comes after it"
        for i, m in enumerate(EM_ORDER)
        for t in graph[m]
        if t in EM_ORDER and EM_ORDER.index(t) > i
    ]
    assert not backward, backward
    # Nothing outside the package reaches into its private modules' names.
    outside = [m for m in module_names() if not (m == "em" or m.startswith("em."))]
    reaching = [f"{m} imports {t}" for m in outside for t in graph[m] if t.startswith("em.")]
    assert not reaching, reaching


def test_the_graph_reader_sees_local_and_root_imports():
    # The reader must see imports inside functions and of the package root, or the tests
    # above would pass on a cyclic package.
    assert "__init__" in imports_of("cli")  # cli's "from . import load", inside a function
    assert "io" in imports_of("estimator")  # GaussianMixture.save's local import
    assert {"density", "prior", "em.kernels"} <= imports_of("em.reference")  # "..", "."
    assert "em.expanded" in imports_of("em.driver")  # "from . import expanded"
    assert "em" in imports_of("posterior")
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def _run(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return out.stdout.strip()


def test_import_bayesgmm_loads_neither_jax_nor_sklearn():
    got = _run("import sys, bayesgmm; print('jax' in sys.modules, 'sklearn' in sys.modules)")
    assert got == "False False"


def test_help_answers_without_jax():
    code = (
        "import sys, contextlib, io\n"
        "from bayesgmm.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "    for cmd in ('fit', 'select', 'demo', 'sample', 'predict', 'diagnose'):\n"
        "        try:\n"
        "            main([cmd, '--help'])\n"
        "        except SystemExit:\n"
        "            pass\n"
        "print('usage' in out.getvalue(), 'jax' in sys.modules, 'sklearn' in sys.modules)"
    )
    assert _run(code) == "True False False"


def test_using_bayesgmm_switches_on_float64_and_still_no_sklearn():
    code = (
        "import sys, numpy as np, bayesgmm\n"
        "gm = bayesgmm.GaussianMixture(2, random_state=0).fit(np.arange(20.0).reshape(10, 2))\n"
        "import jax\n"
        "print(jax.config.jax_enable_x64, gm.means_.dtype, 'sklearn' in sys.modules)"
    )
    assert _run(code) == "True float64 False"


def test_public_exceptions_and_names_are_importable_from_the_root():
    from bayesgmm import _exceptions

    for name in _exceptions.__all__:
        if name != "sklearn_compatible":
            assert getattr(bayesgmm, name) is getattr(_exceptions, name)
    for name in bayesgmm.__all__:
        assert getattr(bayesgmm, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        bayesgmm.nonexistent  # noqa: B018


def test_names_listed_at_the_bottom_match_their_implementations():
    from bayesgmm import _validation, covariance, em

    assert set(_validation.COVARIANCE_TYPE_NAMES) == set(covariance.COVARIANCE_TYPES)
    assert em.INIT_METHODS is _validation.INIT_METHODS


def test_version_comes_from_the_package_metadata():
    from importlib.metadata import version

    assert bayesgmm.__version__ == version("bayesgmm")


def test_the_bayesian_path_stands_on_em_not_on_the_estimator():
    # fit_posterior's MAP start comes from em.fit_best; the scikit-learn facade is imported
    # only when a user asks a Posterior for map_estimator.
    code = (
        "import sys, numpy as np\n"
        "from bayesgmm.posterior import fit_posterior\n"
        "X = np.concatenate([np.zeros((20, 1)), np.ones((20, 1)) * 4])\n"
        "X = X + np.random.default_rng(0).normal(size=X.shape)\n"
        "p = fit_posterior(X, 2, covariance_type='spherical', num_warmup=20, num_samples=10,\n"
        "                  num_chains=1, progress_bar=False)\n"
        "before = 'bayesgmm.estimator' in sys.modules\n"
        "est = p.map_estimator\n"
        "print(before, type(est).__name__, est.lower_bound_ == p.map_diagnostics['lower_bound'])"
    )
    assert _run(code) == "False GaussianMixture True"


def _type_names_compared(module: str) -> list[str]:
    """Lines of ``module`` that compare something with a covariance type's name (``== "tied"``,
    ``in ("full", "tied")``, a ``match`` case): a branch on the covariance type."""
    from bayesgmm._validation import COVARIANCE_TYPE_NAMES

    def names_in(node):
        if isinstance(node, ast.Constant) and node.value in COVARIANCE_TYPE_NAMES:
            return True
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return any(names_in(e) for e in node.elts)
        return False

    found = []
    for node in ast.walk(ast.parse(_path(module).read_text())):
        if isinstance(node, ast.Compare) and any(
            names_in(n) for n in [node.left, *node.comparators]
        ):
            found.append(f"{module}:{node.lineno}")
        elif isinstance(node, ast.MatchValue) and names_in(node.value):
            found.append(f"{module}:{node.lineno}")
    return found


def test_no_code_branches_on_a_covariance_type_name():
    # Per-type behaviour lives in the per-type objects, reached through covariance.per_type.
    branches = [line for m in module_names() for line in _type_names_compared(m)]
    assert not branches, branches


def test_the_branch_reader_sees_a_branch(tmp_path, monkeypatch):
    src = (
        'def f(t):\n    if t.name in ("full", "tied"):\n        return 1\n    return t == "diag"\n'
    )
    (tmp_path / "fake.py").write_text(src)
    monkeypatch.setattr(sys.modules[__name__], "_path", lambda m: tmp_path / f"{m}.py")
    assert _type_names_compared("fake") == ["fake:2", "fake:4"]


def test_every_per_type_table_covers_every_covariance_type():
    from bayesgmm.covariance import COVARIANCE_TYPES, per_type
    from bayesgmm.em.kernels import EM_KERNELS
    from bayesgmm.prior import PRIOR_FAMILIES

    for table in (EM_KERNELS, PRIOR_FAMILIES):
        assert set(table) == set(COVARIANCE_TYPES)
        for name, ct in COVARIANCE_TYPES.items():
            assert per_type(table, ct) is per_type(table, name) is table[name]
            assert table[name].name == name
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        per_type(EM_KERNELS, "fulll")
