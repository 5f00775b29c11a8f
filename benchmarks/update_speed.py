"""Timing of ``lmsbayes update --add NEWARMS.csv`` on a one-arm CSV (no assertions).

Run with ``python benchmarks/update_speed.py [RUNS] [-- extra update options]``
(default 5 runs). Each run is a fresh ``lmsbayes update`` process (imports included)
adding one synthetic 2025 1L doxorubicin arm (n = 60, median 6.5 months; invented
numbers, not data) to the bundled table with the default spec, MAP priors included.
Prints each run's wall and CPU time (user + system of the process and its children),
the CPU on its critical path (all CPU less the steps the two pool processes ran side
by side, but the larger of them: about the wall time on 2 idle cores), the median of
each, the machine's load average before and after, and the last run's own step times.
The issue's goal: under 10 s wall on 2 cores. Each is measured twice: as a first call (an
empty cache folder per run: every step computed, the base analysis stored) and as a later
call (the base fit and its leave-future-out read from lmsbayes.cache, as every call after
the first with the same spec, data and package).
"""

from __future__ import annotations

import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ONE_ARM = (
    "arm_id,trial,year,doi,evidence,evidence_level,phase,design,role,arm,agents,regimen,"
    "placebo,treatment_class,line,population,n,pfs_median_m,pfs_median_lo,pfs_median_hi,notes\n"
    "synthetic_2025_doxo,SYNTHETIC test arm,2025,10.5555/synthetic.test,publication,abstract,2,"
    "single_arm,single_arm,doxorubicin 75 mg/m2 q3w,doxorubicin,doxorubicin,false,R-T,1L,LMS,60,"
    "6.5,5.0,8.1,SYNTHETIC: invented numbers for a benchmark\n"
)


def _critical_path(out: str, cpu: float) -> float:
    """The CPU seconds on the longest chain: all CPU less the pool's steps but the largest.

    The steps in the pool's processes run side by side on 2 cores; everything else (imports,
    reading, the leave-future-out after, printing) runs one after another. On 2 idle cores
    the wall time is about this (plus forking); on shared cores it is longer.
    """
    line = [ln for ln in out.splitlines() if ln.startswith("CPU:")]
    if not line:
        return cpu
    workers = [float(x) for x in re.findall(r"([0-9.]+) s", line[-1].split("processes")[-1])]
    return cpu - sum(workers) + max(workers) if workers else cpu


def _runs(cmd: list[str], env: dict, runs: int, label: str, cache_of) -> None:
    """``runs`` fresh processes; ``cache_of(k)`` the cache folder of run k."""
    walls, cpus, crits = [], [], []
    out = ""
    for k in range(runs):
        env_k = {**env, "LMSBAYES_CACHE": str(cache_of(k))}
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env_k, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        walls.append(wall)
        cpus.append(cpu)
        out = done.stdout
        crit = _critical_path(out, cpu)
        crits.append(crit)
        print(
            f"{label} run {k + 1}: wall {wall:.2f} s, CPU {cpu:.2f} s (critical path on 2 idle "
            f"cores {crit:.2f} s), load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    steps = [ln for ln in out.splitlines() if ln.startswith("time:")]
    print(
        f"{label}, median of {runs}: wall {statistics.median(walls):.2f} s, "
        f"CPU {statistics.median(cpus):.2f} s, critical path {statistics.median(crits):.2f} s"
    )
    if steps:
        print(f"  last run's steps: {steps[-1]}")


def main(runs: int, extra: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LMSBAYES_FAST"}
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "new.csv"
        path.write_text(ONE_ARM)
        cmd = [sys.executable, "-m", "lmsbayes", "update", "--add", str(path), "-q", *extra]
        # a first call: an empty cache per run (the base analysis computed and stored)
        _runs(cmd, env, runs, "first call (empty cache)", lambda k: Path(tmp) / f"cold{k}")
        # later calls: the base analysis (fit before, its leave-future-out) from the cache
        warm = Path(tmp) / "warm"
        subprocess.run(cmd, env={**env, "LMSBAYES_CACHE": str(warm)}, capture_output=True)
        _runs(cmd, env, runs, "later call (cache filled)", lambda k: warm)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    args = sys.argv[1:]
    extra = args[args.index("--") + 1 :] if "--" in args else []
    head = args[: args.index("--")] if "--" in args else args
    main(int(head[0]) if head else 5, extra)
