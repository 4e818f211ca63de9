"""Every docstring example in the package runs and prints what it shows.

One test per module with examples; a module whose docstrings show ``>>>`` must run at least
one example (so an example cannot silently stop being collected).
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

import bayesgmm

PACKAGE = Path(bayesgmm.__file__).parent


def _dotted(path: Path) -> str:
    """``density``, ``em.reference``, ``em`` (a subpackage) or ``__init__`` (the root)."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


WITH_EXAMPLES = sorted(
    _dotted(p) for p in PACKAGE.rglob("*.py") if ">>>" in p.read_text() and p.stem != "__main__"
)


def test_the_package_has_examples():
    assert {"estimator", "density", "posterior", "io", "em.reference", "em.best"} <= set(
        WITH_EXAMPLES
    )


@pytest.mark.parametrize("module", WITH_EXAMPLES)
def test_docstring_examples(module, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    name = "bayesgmm" if module == "__init__" else f"bayesgmm.{module}"
    mod = importlib.import_module(name)
    result = doctest.testmod(
        mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    assert result.attempted > 0, f"{name} shows examples but none ran"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
