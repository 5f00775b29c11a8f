"""The example notebooks run top to bottom (fast mode: LMSBAYES_FAST=1, Agg backend).

Each notebook fits one model in its own kernel (a few tens of seconds to
compile and sample); the stored notebooks in ``notebooks/`` are not modified.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_the_notebooks_are_there():
    names = [p.stem for p in NOTEBOOKS]
    assert names == ["01_eortc_benchmark", "02_meta_regression", "03_prior_to_design",
                     "04_lms04_randomized_borrowing"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("LMSBAYES_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    start = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as exc:  # the message holds the cell source and the traceback
        pytest.fail(f"{path.name} failed:\n{exc}", pytrace=False)
    elapsed = time.perf_counter() - start
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("fast mode: True" in o.get("text", "") for o in outputs), "the notebook did not run in fast mode"
    print(f"{path.name}: {elapsed:.1f} s")
