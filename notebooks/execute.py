"""Execute the example notebooks in the mode CI runs them, and store their outputs.

    LMSBAYES_FAST=1 MPLBACKEND=Agg python notebooks/execute.py [NOTEBOOK ...]

Each notebook runs in its own kernel with one hidden first cell (:data:`FAST_SETUP`, never
stored) that gives NUTS fits the draws of ``lmsbayes run --fast`` and validation refits
:data:`FAST_VALIDATION_DRAWS` draws. The exact engine integrates over a fixed rule, so a
notebook stored this way and re-run by ``tests/test_notebooks.py`` gives the same key numbers
to the last printed digit: the test compares them at that precision. Nothing of the machine
that ran it is stored (no paths), and the execution counts run 1, 2, ... without the hidden cell.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: Draws per validation refit in fast mode (the full run uses lmsbayes.validate's default, 2000).
FAST_VALIDATION_DRAWS = 1000

#: Run before a notebook's first cell; not part of the stored notebook.
FAST_SETUP = f"""\
import os
if os.environ.get("LMSBAYES_FAST") == "1":
    import functools
    import warnings

    import lmsbayes
    from lmsbayes import validate as _validate
    from lmsbayes.cli._common import fast_spec
    from lmsbayes.fit import FitWarning
    from lmsbayes.spec import ModelSpec, load_spec

    warnings.simplefilter("ignore", FitWarning)  # ESS < 400 is expected with few draws
    _full_fit = lmsbayes.fit

    def _fast_fit(spec="default", *args, **kwargs):
        spec = spec if isinstance(spec, ModelSpec) else load_spec(spec)
        # shortens NUTS runs only; exact fits are unchanged
        return _full_fit(fast_spec(spec, kwargs.get("engine")), *args, **kwargs)

    lmsbayes.fit = _fast_fit

    def _few_draws(run):
        @functools.wraps(run)
        def wrapper(*args, **kwargs):
            if kwargs.get("draws") is None:
                kwargs["draws"] = {FAST_VALIDATION_DRAWS}
            return run(*args, **kwargs)
        return wrapper

    for _name in ("loto", "temporal", "compare"):  # compare calls the module's loto / temporal
        setattr(_validate, _name, _few_draws(getattr(_validate, _name)))
    print("harness: fast mode")
"""


def execute(path: Path, workdir: Path, timeout: int = 900):
    """Run a notebook with the hidden setup cell first; return the executed notebook (with it)."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(FAST_SETUP))
    client = nbclient.NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()
    return nb


def store(path: Path, workdir: Path) -> None:
    """Execute ``path`` in CI mode and write it back without the hidden cell."""
    import nbformat

    nb = execute(path, workdir)
    nb.cells.pop(0)
    count = 0
    for cell in nb.cells:
        if cell.cell_type == "code":
            count += 1
            cell.execution_count = count
            for out in cell.get("outputs", []):
                if "execution_count" in out:
                    out["execution_count"] = count
    nbformat.write(nb, path)


def main(argv: list[str]) -> int:
    """Execute and store the named notebooks (default: all of notebooks/)."""
    import tempfile

    if os.environ.get("LMSBAYES_FAST") != "1":
        print("set LMSBAYES_FAST=1: notebooks are stored in the mode CI runs them", file=sys.stderr)
        return 2
    here = Path(__file__).resolve().parent
    paths = [Path(a) for a in argv] or sorted(here.glob("*.ipynb"))
    with tempfile.TemporaryDirectory() as tmp:
        for p in paths:
            store(p, Path(tmp))
            print(f"stored {p.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
