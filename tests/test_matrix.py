"""The differential test matrix's suite subset (``scripts/diff_matrix.py --subset ci``).

Every public function that returns a number, against scipy.stats / scikit-learn / NumPy, for
all four covariance types, float32 and float64, under ``jit`` and eagerly, at shapes that
cross every size threshold of the code and of the compiler (the script's docstring lists them
and justifies the tolerances). One test per (shape, type, dtype, mode); it fails with every
function whose error exceeds its tolerance. The full matrix is the script without ``--subset``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings

import pytest

_PATH = os.path.join(os.path.dirname(__file__), os.pardir, "scripts", "diff_matrix.py")
_spec = importlib.util.spec_from_file_location("bayesgmm_diff_matrix", _PATH)
matrix = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = matrix  # dataclasses look their module up while it executes
_spec.loader.exec_module(matrix)

PLAN = matrix.plan("ci")


def test_the_subset_crosses_every_threshold():
    # The thresholds the matrix exists for, each crossed (both sides present) by the subset.
    from bayesgmm._compile import SMALL_WORK
    from bayesgmm.density import block_rows

    shapes = {(c.n, c.d, c.k) for c, _ in PLAN}
    assert any(n == 1 for n, _, _ in shapes)
    assert any(n == k and k > 1 for n, _, k in shapes)
    # One block, a padded last block and several blocks of the density's row blocks.
    assert any(n <= block_rows(k, d) for n, d, k in shapes)
    assert any(n % block_rows(k, d) and n > block_rows(k, d) for n, d, k in shapes)
    # Both sides of the small-problem switch at one (d, K).
    sides = {(d, k): set() for _, d, k in shapes}
    for n, d, k in shapes:
        sides[(d, k)].add(n * k * d * d <= SMALL_WORK)
    assert any(v == {True, False} for v in sides.values())
    # Both sides of jaxlib 0.10.2's 2**14-element (d, rows) fusion threshold, twice.
    crossing = [
        (d, k)
        for (d, k) in sides
        if {n * d > 2**14 for n, dd, kk in shapes if (dd, kk) == (d, k)} == {True, False}
    ]
    assert len(crossing) >= 2
    assert {d for _, d, _ in shapes} >= {1, 50} and {k for _, _, k in shapes} >= {1, 20}
    assert {c.mode for c, _ in PLAN} == {"jit", "eager"}
    assert {g for _, gs in PLAN for g in gs} == set(matrix.GROUPS)


@pytest.mark.parametrize("case,groups", PLAN, ids=[f"{c.label.replace(' ', '-')}" for c, _ in PLAN])
def test_matrix(case, groups):
    with warnings.catch_warnings():
        # Unconverged 3-iteration fits and data-scale hints are expected here.
        warnings.simplefilter("ignore")
        results = matrix.run_case(case, groups)
    assert results, "a case of the plan checked nothing"
    bad = matrix.failures(results)
    assert not bad, {k: f"{e:.3g} > {t:g}" for k, (e, t) in bad.items()}
