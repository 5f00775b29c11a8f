"""Timing of ``lmsbayes run`` beside the floor of its imports, and where its time goes.

Run with ``python benchmarks/run_speed.py [RUNS]`` (default 5). Issue 22 asks for
``lmsbayes run`` at most 2.5 times the floor: a new interpreter importing numpy and
pandas. Each run is a whole process (``lmsbayes run --quiet``, the bundled default),
paired with the floor A B A B ... after one warm-up of each (benchmarks/exactness.py's
``paired``: medians, ratios pair by pair, bytecode cache on). Then one more process
times the run's own steps (imports, fit, threshold table, landmark order, printing),
as ``cmd_run`` takes them, and says which modules the run imported. The machine's load
average is printed before and after. No assertions: figures only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from exactness import LMSBAYES, PY, bench_env, paired  # noqa: E402

STEPS = r"""
import time
t0 = time.perf_counter()
import argparse, contextlib, io, sys, warnings
from lmsbayes.cli import _parser
from lmsbayes.cli.fitting import _emit_table, _thresholds_table
from lmsbayes.cli._common import Progress, fit_from_args, load_spec_from_args
t1 = time.perf_counter()
args = _parser().parse_args(["run", "--quiet"])
spec = load_spec_from_args(args)
fit = fit_from_args(args, Progress(True), spec)
t2 = time.perf_counter()
table = _thresholds_table(fit, args)
t3 = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    _emit_table(table, fit, args)
t4 = time.perf_counter()
heavy = [m for m in ("xarray", "dask", "scipy.stats", "scipy.optimize", "arviz", "pymc")
         if m in sys.modules]
print(f"imports {t1 - t0:.2f} s, fit {t2 - t1:.2f} s, threshold table {t3 - t2:.2f} s, "
      f"landmark order and printing {t4 - t3:.2f} s; total {t4 - t0:.2f} s "
      f"(plus the interpreter's start)")
print("heavy modules imported: " + (", ".join(heavy) or "none"))
"""


def main(runs: int) -> None:
    env = bench_env()
    env.pop("LMSBAYES_FAST", None)  # the run as a user runs it
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    r = paired([LMSBAYES, "run", "--quiet"], env, runs)
    print(
        f"lmsbayes run, median of {runs}: wall {r['wall']:.2f} s, CPU {r['cpu']:.2f} s, "
        f"peak {r['peak']:.0f} MiB\n"
        f"floor (import numpy, pandas), median of {runs}: wall {r['floor_wall']:.2f} s, "
        f"CPU {r['floor_cpu']:.2f} s\n"
        f"x floor (median of the pairs' ratios): wall {r['ratio_wall']:.2f}, "
        f"CPU {r['ratio_cpu']:.2f} (issue 22: at most 2.5)"
    )
    steps = subprocess.run([PY, "-c", STEPS], env=env, capture_output=True, text=True, check=True)
    print("one run's steps: " + steps.stdout.strip().replace("\n", "\n  "))
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
