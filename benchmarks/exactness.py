"""Issue 22's figures: each job beside the floor of its imports and the NUTS path, in one run.

Run with ``python benchmarks/exactness.py`` (``--runs N`` whole-process runs per job, default 5;
``--skip-nuts`` leaves out the NUTS comparisons; ``--skip-large`` the 100,000-row table).

Whole processes are started here and timed from outside (wall clock; user + system CPU and peak
memory from the operating system's accounting of each finished child, ``os.wait4``), each job
paired with the FLOOR, the interpreter importing numpy and pandas: A B A B ..., after one warm-up
run of each, so the ratio job / floor is taken pair by pair and survives a machine whose speed
drifts. Medians are printed; on a shared machine the CPU ratio is the steadier one, and both are
printed. Python's bytecode cache is on (as for an installed package): a private cache folder,
filled by the warm-up runs.

In this process (medians of repeated calls, data prepared once): one fit of RBesT's AS table,
10,000 synthetic arms of the default survival model, and leave-one-trial-out on the bundled data.
Last, a 100,000-row (study, r, n) table fitted and saved by ``lmsbayes fit`` in one process: its
progress lines, wall and CPU time and peak memory.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
AS_CSV = ROOT / "tests" / "data" / "AS.csv"
PY = sys.executable
LMSBAYES = str(Path(PY).with_name("lmsbayes"))
FLOOR = [PY, "-c", "import numpy, pandas"]

AS_JOB = r"""
import sys
import pandas as pd
import lmsbayes as lb
from lmsbayes.spec import load_spec
spec = load_spec("binomial")
fit = lb.fit(spec, pd.read_csv(sys.argv[1]), engine=sys.argv[2])
mix = lb.map_prior(fit)
print(lb.ess(mix, "elir"), lb.ess(mix, "moment"), lb.ess(mix, "morita"))
"""

#: (figure, target) of issue 22's "Done when", filled in as the figures come
RESULTS: list[tuple[str, str, str, str, str]] = []


def run_once(argv: list[str], env: dict, out=None) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak memory (MiB) of one whole process."""
    t = time.perf_counter()
    p = subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=out or subprocess.DEVNULL, stderr=out
    )
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        raise SystemExit(f"{' '.join(argv[:3])} ... exited with {p.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def paired(argv: list[str], env: dict, runs: int, floor: bool = True) -> dict[str, float]:
    """Medians over ``runs`` pairs (job, floor) after one warm-up of each; ratios pair by pair."""
    run_once(argv, env)
    if floor:
        run_once(FLOOR, env)
    a, b = [], []
    for _ in range(runs):
        a.append(run_once(argv, env))
        if floor:
            b.append(run_once(FLOOR, env))
    med = statistics.median
    got = {"wall": med(x[0] for x in a), "cpu": med(x[1] for x in a), "peak": med(x[2] for x in a)}
    if floor:
        got.update(
            floor_wall=med(x[0] for x in b),
            floor_cpu=med(x[1] for x in b),
            ratio_wall=med(x[0] / y[0] for x, y in zip(a, b, strict=True)),
            ratio_cpu=med(x[1] / y[1] for x, y in zip(a, b, strict=True)),
        )
    return got


def show(name: str, r: dict) -> None:
    line = f"  {name:36s} wall {r['wall']:6.2f} s  cpu {r['cpu']:6.2f} s  peak {r['peak']:6.0f} MiB"
    if "ratio_cpu" in r:
        line += (
            f" | floor wall {r['floor_wall']:.2f} s cpu {r['floor_cpu']:.2f} s"
            f" | x floor: wall {r['ratio_wall']:.2f} cpu {r['ratio_cpu']:.2f}"
        )
    print(line, flush=True)


def record(figure: str, value: str, floor: str, ratio: str, target: str, met: bool | None) -> None:
    RESULTS.append(
        (figure, value, floor, ratio, target, {True: "met", False: "not met"}.get(met, ""))
    )


def timed(fn, reps: int) -> tuple[float, float, object]:
    """Median wall and CPU seconds of ``reps`` calls, and the last result."""
    walls, cpus, out = [], [], None
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus), out


def bench_env() -> dict:
    """This interpreter's environment with the bytecode cache on, in a private folder."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="lmsbayes-bench-pyc-")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
    )
    return env


def whole_processes(args, env) -> None:
    print("\n1. Whole processes beside the floor")
    r = paired([PY, "-c", "import lmsbayes"], env, args.runs)
    show("import lmsbayes", r)
    r = paired([PY, "-c", AS_JOB, str(AS_CSV), "exact"], env, args.runs)
    show("AS job, exact (fit + MAP + ESS)", r)
    record(
        "AS job (fit + MAP mixture + 3 ESS), whole process",
        f"{r['wall']:.2f} s wall / {r['cpu']:.2f} s CPU",
        f"{r['floor_wall']:.2f} / {r['floor_cpu']:.2f} s",
        f"{r['ratio_wall']:.2f} / {r['ratio_cpu']:.2f}",
        "<= 2 x floor",
        r["ratio_cpu"] <= 2.0,
    )
    r = paired([LMSBAYES, "run", "--quiet"], env, args.runs)
    show("lmsbayes run (exact)", r)
    record(
        "`lmsbayes run`, whole process",
        f"{r['wall']:.2f} s wall / {r['cpu']:.2f} s CPU",
        f"{r['floor_wall']:.2f} / {r['floor_cpu']:.2f} s",
        f"{r['ratio_wall']:.2f} / {r['ratio_cpu']:.2f}",
        "<= 2.5 x floor",
        r["ratio_cpu"] <= 2.5,
    )
    if not args.skip_nuts:
        r = paired([PY, "-c", AS_JOB, str(AS_CSV), "nuts"], env, max(1, args.runs // 2))
        show("AS job, NUTS (compile cache warm)", r)
        r = paired([LMSBAYES, "run", "--quiet", "--engine", "nuts"], env, 1)
        show("lmsbayes run --engine nuts (cache warm)", r)


def in_process(args) -> None:
    from engine_speed import synthetic_tables

    import lmsbayes as lb
    from lmsbayes.engines.exact import fit_exact
    from lmsbayes.model.definition import Model
    from lmsbayes.model.prepare import prepare_data
    from lmsbayes.spec import load_spec
    from lmsbayes.validate import loto

    print("\n2. In this process (data prepared once; medians; wall and CPU)")
    as_spec = load_spec("binomial")  # the bundled spec a user fits to RBesT's AS table
    as_data = prepare_data(as_spec, pd.read_csv(AS_CSV))
    lb.fit(as_spec, as_data, engine="exact")
    w, c, f = timed(lambda: lb.fit(as_spec, as_data, engine="exact"), 21)
    print(f"  one AS fit (exact, median of 21): {1000 * w:.1f} ms wall, {1000 * c:.1f} ms CPU")
    record(
        "one AS fit, in process",
        f"{1000 * w:.1f} ms / {1000 * c:.1f} ms CPU",
        "",
        "",
        "<= 10 ms",
        c <= 0.010,
    )
    m = Model(as_spec, as_data)
    w, c, _ = timed(lambda: fit_exact(m, as_spec.exact, 1, latent=False), 21)
    print(
        f"    of which the engine alone (no arm draws): {1000 * w:.1f} ms wall, {1000 * c:.1f} CPU"
    )
    if not args.skip_nuts:
        lb.fit(as_spec, as_data, engine="nuts")
        w, c, _ = timed(lambda: lb.fit(as_spec, as_data, engine="nuts"), 3)
        print(f"  one AS fit (NUTS, compiled beforehand, median of 3): {1000 * w:.0f} ms wall")

    spec = load_spec("default").replace(**{"data.require_identifier": False})
    tables = synthetic_tables(10_000)
    w_prep, c_prep, data = timed(lambda: prepare_data(spec, tables), 1)
    w, c, f = timed(lambda: lb.fit(spec, data, engine="exact"), 3)
    print(
        f"  10,000 arms (default survival model): prepare {w_prep:.1f} s ({c_prep:.1f} CPU), "
        f"fit {w:.1f} s ({c:.1f} CPU) | {f.diagnostics.line()}",
        flush=True,
    )
    record(
        "10,000 arms, default model (fit; prepare apart)",
        f"{w:.1f} s / {c:.1f} s CPU (prepare {c_prep:.1f} s CPU)",
        "",
        "",
        "<= 5 s",
        c <= 5.0,
    )

    spec = load_spec("default")
    data = prepare_data(spec, lb.load_trials())
    trials = list(dict.fromkeys(data.arms["trial"]))
    lb.fit(spec, data, engine="exact")
    w, c, v = timed(lambda: loto(spec, data), 3)
    print(
        f"  leave-one-trial-out (validate.loto, {len(trials)} folds: the full fit reweighted, "
        "refits above k-hat 0.7, predictive checks): "
        f"{w:.2f} s wall, {c:.2f} s CPU (median of 3)",
        flush=True,
    )
    record(
        "leave-one-trial-out (23 folds), in process",
        f"{w:.2f} s / {c:.2f} s CPU",
        "",
        "",
        "<= 1 s",
        c <= 1.0,
    )

    def refits():
        for trial in trials:
            keep = np.flatnonzero(data.arms["trial"].to_numpy() != trial)
            lb.fit(spec, data.take(keep), engine="exact")

    w, c, _ = timed(refits, 1)
    print(f"    for comparison, {len(trials)} whole lb.fit calls: {w:.2f} s wall, {c:.2f} s CPU")


def large_table(args, env) -> None:
    print("\n3. A 100,000-row (study, r, n) table, whole process (`lmsbayes fit binomial`)")
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(7)
        k = 100_000
        n = rng.integers(10, 200, k)
        p = 1 / (1 + np.exp(-(-1 + 0.4 * rng.standard_normal(k))))
        csv = Path(tmp) / "rows.csv"
        pd.DataFrame(
            {"study": [f"s{i}" for i in range(k)], "r": rng.binomial(n, p), "n": n}
        ).to_csv(csv, index=False)
        log = Path(tmp) / "log.txt"
        argv = [LMSBAYES, "fit", "binomial", "--data", str(csv), "-o", str(Path(tmp) / "f.nc")]
        with log.open("w") as out:
            wall, cpu, peak = run_once(argv, env, out)
        for line in log.read_text().splitlines():
            print(f"    | {line}")
        print(
            f"  100,000 rows: fit + save: wall {wall:.1f} s, cpu {cpu:.1f} s, peak {peak:.0f} MiB"
        )
        record(
            "100,000-row (study, r, n) table: read, fit, save",
            f"{wall:.1f} s / {cpu:.1f} s CPU",
            "",
            "",
            "< 60 s, < 4 GB",
            wall < 60 and peak < 4096,
        )
        RESULTS[-1] = (*RESULTS[-1][:2], f"peak {peak:.0f} MiB", *RESULTS[-1][3:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--skip-nuts", action="store_true")
    ap.add_argument("--skip-large", action="store_true")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(
        f"lmsbayes benchmarks (issue 22), {now}, load {os.getloadavg()[0]:.1f} "
        f"({os.cpu_count()} cores)"
    )
    print(
        f"whole processes: medians of {args.runs} runs, each paired with the floor "
        f"({' '.join(FLOOR[1:])!r})"
    )
    env = bench_env()
    whole_processes(args, env)
    in_process(args)
    if not args.skip_large:
        large_table(args, env)
    print(f"\nload at the end: {os.getloadavg()[0]:.1f}")
    print("\n| figure | measured (wall / CPU) | floor | x floor (wall / CPU) | target | |")
    print("|---|---|---|---|---|---|")
    for row in RESULTS:
        print("| " + " | ".join(row) + " |")
    print(
        "(met: judged on CPU time, the steadier figure on a shared machine; the large table "
        "on wall time and peak memory)"
    )


if __name__ == "__main__":
    main()
