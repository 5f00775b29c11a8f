"""Helpers shared by the command-line verbs (progress, fitting from options, exit codes)."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

EXIT_USAGE = 2
EXIT_SAMPLING = 3


class Progress:
    """Step messages on stderr with elapsed time (quiet with --quiet)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(f"[{time.perf_counter() - self.t0:5.1f}s] {msg}", file=sys.stderr, flush=True)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fit_from_args(args, progress: Progress):
    from lmsbayes.data import load_trials
    from lmsbayes.fit import fit
    from lmsbayes.model import prepare_data
    from lmsbayes.spec import load_spec

    spec = load_spec(args.spec)
    if getattr(args, "fast", False) or os.environ.get("LMSBAYES_FAST") == "1":
        # fast mode only ever shortens a run; a spec that already asks for less keeps its settings
        spec = spec.replace(**{"sampler.draws": min(spec.sampler.draws, 500),
                               "sampler.tune": min(spec.sampler.tune, 500)})  # fmt: skip
    progress(f"spec {spec.name!r} ({spec.model.likelihood}; covariates {list(spec.model.covariates)})")
    trials = load_trials(args.data)
    data = prepare_data(spec, trials)
    progress(f"data: {len(trials)} arms in {' + '.join(trials.files)}, {len(data.arms)} arms / "
             f"{len(data.obs)} observations enter the model, {len(data.excluded)} exclusions")  # fmt: skip
    progress("building, compiling (the first run on a machine compiles with numba, 30-45 s; "
             "later runs reuse its cache, 15-25 s) and sampling ...")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # diagnostics are printed below, and decide the exit status
        result = fit(spec, data, strict=False, progress=False)
    progress(result.diagnostics.line())
    return result


def exit_for(fit, args) -> int:
    if getattr(args, "strict", False) and not fit.diagnostics.ok:
        print("lmsbayes: error: sampling problems (--strict): " + "; ".join(fit.diagnostics.problems), file=sys.stderr)
        return EXIT_SAMPLING
    return 0


def version() -> str:
    from lmsbayes import __version__

    return __version__




def fit_args(q, spec_positional: bool) -> None:
    """Options of every verb that fits a spec."""
    if spec_positional:
        q.add_argument("spec", help="model spec: a TOML file or a bundled name (default, eortc2021, uterine)")
    else:
        q.add_argument("--spec", default="default", help="model spec (TOML file or bundled name; default: default)")
    q.add_argument("--data", default=None, help="trial-arm CSV (default: the bundled data)")
    q.add_argument("--fast", action="store_true", help="fewer draws (also LMSBAYES_FAST=1), for smoke runs")
    q.add_argument("--strict", action="store_true", help="exit with status 3 on divergences, R-hat or ESS problems")
    q.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
