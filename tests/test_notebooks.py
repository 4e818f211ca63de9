"""Every notebook under notebooks/ executes top to bottom (nbclient), and matches its builder.

The saved notebooks are executed as committed, in a temporary working directory (their GIFs
land there, not in the repository), with ``BAYESGMM_NOTEBOOK_FAST=1``: smaller data and fewer
NUTS draws, the same code path. Their cells hold ``assert`` statements of their own (EM in NumPy
equals bayesgmm's; the chosen model's BIC equals ``GaussianMixture.bic``), which run here too.
"""

import importlib.util
import shutil
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _builder():
    spec = importlib.util.spec_from_file_location(
        "make_notebooks", ROOT / "scripts" / "make_notebooks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_builder_notebook_is_saved():
    names = {p.stem for p in NOTEBOOKS}
    assert set(_builder().NOTEBOOKS) == names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_saved_notebook_is_what_the_builder_makes(path):
    saved = nbformat.read(path, as_version=4)
    built = _builder().build(path.stem)
    assert [c.source for c in saved.cells] == [c.source for c in built.cells]
    # Saved with outputs: every code cell ran (an execution count) without an error output.
    for cell in saved.cells:
        if cell.cell_type == "code":
            assert cell.execution_count is not None
            assert not any(o.get("output_type") == "error" for o in cell.outputs)


#: Executed by the default suite; the others (20-65 s each) are marked ``extended`` (run them
#: with ``python -m pytest -n 2 -m extended``; ``scripts/time_notebooks.py`` times all).
#: Their builder-match test above still runs for every notebook.
IN_SUITE = ("01_gmm_vs_kmeans", "02_em_from_scratch_1d")


@pytest.mark.parametrize(
    "path",
    [p if p.stem in IN_SUITE else pytest.param(p, marks=pytest.mark.extended) for p in NOTEBOOKS],
    ids=[p.stem for p in NOTEBOOKS],
)
def test_notebook_executes(path, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("BAYESGMM_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    work = tmp_path / "nb"
    work.mkdir()
    shutil.copy(path, work / path.name)
    nb = nbformat.read(work / path.name, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(work)}}
    ).execute()
    # Errors while showing a figure do not stop the kernel; they leave an error output.
    for cell in nb.cells:
        if cell.cell_type == "code":
            errors = [o for o in cell.outputs if o.get("output_type") == "error"]
            assert not errors, f"{cell.source[:80]!r} -> {errors[0].get('evalue')}"
    last = nb.cells[-1].outputs
    assert any("FAST=True" in o.get("text", "") for o in last), "the fast settings were not used"
