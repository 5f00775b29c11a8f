"""The example notebooks run top to bottom (fast mode: LMSBAYES_FAST=1, Agg backend).

Each notebook fits one model in its own kernel (a few tens of seconds to
compile and sample); the stored notebooks in ``notebooks/`` are not modified.

Fast mode is the harness's business, not the reader's: the notebooks call
``lb.fit("default")`` as a user would, and this harness runs one hidden cell
first (never stored) that, when LMSBAYES_FAST=1, gives every fit the draws of
``lmsbayes run --fast`` and silences the ESS warnings so few draws cause.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))

#: Run before a notebook's first cell; not part of the notebook.
FAST_SETUP = """\
import os
if os.environ.get("LMSBAYES_FAST") == "1":
    import warnings

    import lmsbayes
    from lmsbayes.cli._common import fast_spec
    from lmsbayes.fit import FitWarning
    from lmsbayes.spec import ModelSpec, load_spec

    warnings.simplefilter("ignore", FitWarning)  # ESS < 400 is expected with 500 draws
    _full_fit = lmsbayes.fit

    def _fast_fit(spec="default", *args, **kwargs):
        spec = spec if isinstance(spec, ModelSpec) else load_spec(spec)
        return _full_fit(fast_spec(spec), *args, **kwargs)

    lmsbayes.fit = _fast_fit
    print("harness: fast mode")
"""


def test_the_notebooks_are_there():
    names = [p.stem for p in NOTEBOOKS]
    assert names == ["01_eortc_benchmark", "02_meta_regression", "03_prior_to_design",
                     "04_lms04_randomized_borrowing"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_show_no_ci_boilerplate(path):
    nb = nbformat.read(path, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for needle in ("LMSBAYES_FAST", "os.environ", "FAST", "sampler("):
        assert needle not in code, f"{path.name}: {needle!r} in a reader's cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("LMSBAYES_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(FAST_SETUP))
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
    texts = [o.get("text", "") for o in outputs]
    assert any("harness: fast mode" in t for t in texts), "the setup cell did not run"
    # 4 chains x 500 draws: every fit of the notebook went through fast mode
    diagnostics = [line for t in texts for line in t.splitlines() if line.startswith("diagnostics:")]
    assert diagnostics and all("(2000 draws)" in line for line in diagnostics), diagnostics
    print(f"{path.name}: {elapsed:.1f} s")
