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
import os
import subprocess
import sys
from pathlib import Path

import pytest

import bayesgmm

PACKAGE = Path(bayesgmm.__file__).parent

LAYERS = {
    0: ("_exceptions", "_version", "_jax", "_compile", "_random", "_validation"),
    1: ("covariance", "params", "density"),
    2: ("kmeans", "hc", "em", "model", "sampler", "relabel", "io", "convert"),
    3: ("estimator", "selection", "posterior"),
    4: ("plotting", "cli", "datasets", "__main__", "__init__"),
}
LAYER_OF = {m: layer for layer, mods in LAYERS.items() for m in mods}


def module_names():
    return sorted(p.stem for p in PACKAGE.glob("*.py"))


def imports_of(module: str) -> set[str]:
    """bayesgmm modules that ``module`` imports anywhere in its source (module level, inside
    functions, under ``if TYPE_CHECKING``), ``__init__`` standing for the package root."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    known = set(module_names())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and not (node.module or "").startswith("bayesgmm"):
                continue
            if node.level > 1:
                raise AssertionError(f"{module}: relative import above the package")
            base = node.module or ""
            if node.level == 0:
                base = base.removeprefix("bayesgmm").removeprefix(".")
            if base:
                out.add(base.split(".")[0])
            else:  # "from . import x": x is a module or a name of the package root
                for alias in node.names:
                    out.add(alias.name if alias.name in known else "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "bayesgmm":
                    out.add("__init__")
                elif alias.name.startswith("bayesgmm."):
                    out.add(alias.name.split(".")[1])
    out.discard(module)
    return out


def import_graph():
    return {m: imports_of(m) for m in module_names()}


def find_cycle(graph):
    """A list of modules forming a cycle, or None (depth-first search)."""
    state, stack = {}, []

    def visit(v):
        state[v] = "open"
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == "open":
                return stack[stack.index(w) :] + [w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        stack.pop()
        state[v] = "done"
        return None

    for v in sorted(graph):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return None


def test_every_module_has_a_layer():
    missing = [m for m in module_names() if m not in LAYER_OF]
    assert not missing, f"add {missing} to LAYERS (and docs/architecture.md)"


def test_no_import_cycle_counting_function_local_imports():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_imports_point_down_or_sideways():
    upward = [
        f"{m} (layer {LAYER_OF[m]}) imports {t} (layer {LAYER_OF[t]})"
        for m, targets in import_graph().items()
        for t in targets
        if LAYER_OF[t] > LAYER_OF[m]
    ]
    assert not upward, upward


def test_the_graph_reader_sees_local_and_root_imports():
    # The reader must see imports inside functions and of the package root, or the tests
    # above would pass on a cyclic package.
    assert "__init__" in imports_of("cli")  # cli's "from . import load", inside a function
    assert "io" in imports_of("estimator")  # GaussianMixture.save's local import
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
