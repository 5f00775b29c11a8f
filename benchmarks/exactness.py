"""Issue 22's figures.

Every job beside the floor of its imports and beside the NUTS path, in one run.

Run with ``python benchmarks/exactness.py`` (``--runs N`` whole-process runs per job, default 5;
``--skip-nuts`` leaves out the NUTS comparisons; ``--skip-large`` the 100,000-row table).

Whole processes are timed from outside by ``farm-bench`` (wall, user + system CPU and peak
memory of each run; medians), each job paired with the FLOOR: the interpreter importing numpy
and pandas, A B A B ..., so the ratio job / floor is taken run by run. On a shared machine the CPU
ratio is the steadier one; both are printed.

In this process (medians of repeated calls, data prepared once): one fit of RBesT's AS table,
10,000 synthetic arms of the default survival model, and leave-one-trial-out on the bundled data.
"""

from __future__ import annotations

import argparse
import os
import re
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
FLOOR = f"{PY} -c 'import numpy, pandas'"

AS_JOB = r"""
import sys, warnings
import pandas as pd
import lmsbayes as lb
from lmsbayes.spec import parse_spec
spec = parse_spec({"name": "as", "landmarks": [], "model": {"likelihood": "logit-binomial"},
                   "random_effects": {"tau_by": "none"},
                   "priors": {"alpha": {"dist": "Normal", "mu": 0.0, "sigma": 2.0},
                              "tau": {"dist": "HalfNormal", "sigma": 1.0}}})
fit = lb.fit(spec, pd.read_csv(sys.argv[1]), engine=sys.argv[2])
mix = lb.map_prior(fit)
print(lb.ess(mix, "elir"), lb.ess(mix, "moment"), lb.ess(mix, "morita"))
"""


def farm_bench(cmd: list[str], runs: int, vs: str | None = FLOOR, timeout: int = 1800) -> dict:
    """Medians of farm-bench's report: wall, cpu, peak for A (and B, and A/B) as a dict."""
    argv = ["farm-bench", "-n", str(runs), "--warmup", "1", "--timeout", str(timeout)]
    if vs:
        argv += ["--vs", vs]
    out = subprocess.run(argv + ["--", *cmd], capture_output=True, text=True).stdout
    got = {}
    for line in out.splitlines():
        m = re.match(r"^(A|B|A/B) (user|sys|cpu|wall|peak)\s*(s|MiB)?\s+([\d.]+)\s+([\d.]+)", line)
        if m:
            got[f"{m.group(1)} {m.group(2)}"] = float(m.group(5))
    got["raw"] = out
    return got


def show(name: str, r: dict) -> None:
    if "A wall" not in r:
        print(f"  {name}: farm-bench gave no figures:\n{r['raw']}", flush=True)
        return
    line = (
        f"  {name:34s} wall {r['A wall']:7.2f} s  cpu {r['A cpu']:6.2f} s  "
        f"peak {r['A peak']:7.1f} MiB"
    )
    if "A/B wall" in r:
        line += (
            f" | floor wall {r['B wall']:.2f} s cpu {r['B cpu']:.2f} s"
            f" | ratio wall {r['A/B wall']:.2f} cpu {r['A/B cpu']:.2f}"
        )
    print(line, flush=True)


def timed(fn, reps: int):
    times = []
    out = None
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--skip-nuts", action="store_true")
    ap.add_argument("--skip-large", action="store_true")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    env_note = f"load {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)"
    print(
        f"lmsbayes benchmarks (issue 22), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{env_note}"
    )
    print(
        f"whole processes: farm-bench, medians of {args.runs} runs, each paired with the floor "
        f"({FLOOR})"
    )

    print("\n1. Whole processes beside the floor")
    show("import lmsbayes", farm_bench([PY, "-c", "import lmsbayes"], args.runs))
    show(
        "AS job, exact (fit + MAP + ESS)",
        farm_bench([PY, "-c", AS_JOB, str(AS_CSV), "exact"], args.runs),
    )
    show("lmsbayes run (exact)", farm_bench([LMSBAYES, "run", "--quiet"], args.runs))
    if not args.skip_nuts:
        show(
            "AS job, NUTS (compile cache warm)",
            farm_bench([PY, "-c", AS_JOB, str(AS_CSV), "nuts"], max(1, args.runs // 2)),
        )
        show(
            "lmsbayes run --engine nuts",
            farm_bench([LMSBAYES, "run", "--quiet", "--engine", "nuts"], 1),
        )

    from engine_speed import synthetic_tables

    import lmsbayes as lb
    from lmsbayes.model.prepare import prepare_data
    from lmsbayes.spec import load_spec, parse_spec

    print("\n2. In this process (data prepared once)")
    as_spec = parse_spec(
        {
            "name": "as",
            "landmarks": [],
            "model": {"likelihood": "logit-binomial"},
            "random_effects": {"tau_by": "none"},
            "priors": {
                "alpha": {"dist": "Normal", "mu": 0.0, "sigma": 2.0},
                "tau": {"dist": "HalfNormal", "sigma": 1.0},
            },
        }
    )
    as_data = prepare_data(as_spec, pd.read_csv(AS_CSV))
    lb.fit(as_spec, as_data, engine="exact")
    t_fit, f = timed(lambda: lb.fit(as_spec, as_data, engine="exact"), 11)
    print(
        f"  one AS fit (exact, median of 11): {1000 * t_fit:.1f} ms | {f.diagnostics.line()}",
        flush=True,
    )
    from lmsbayes.engines.exact import fit_exact
    from lmsbayes.model.definition import Model

    m = Model(as_spec, as_data)
    t_eng, _ = timed(lambda: fit_exact(m, as_spec.exact, 1, latent=False), 11)
    print(
        f"  of which the engine alone (no arm draws, no DataTree): {1000 * t_eng:.1f} ms",
        flush=True,
    )
    if not args.skip_nuts:
        lb.fit(as_spec, as_data, engine="nuts")
        t_nuts, _ = timed(lambda: lb.fit(as_spec, as_data, engine="nuts"), 3)
        print(
            f"  one AS fit (NUTS, compiled beforehand, median of 3): {1000 * t_nuts:.0f} ms",
            flush=True,
        )

    spec = load_spec("default").replace(**{"data.require_identifier": False})
    t0 = time.perf_counter()
    data = prepare_data(spec, synthetic_tables(10_000))
    t_prep = time.perf_counter() - t0
    t_big, f = timed(lambda: lb.fit(spec, data, engine="exact"), 1)
    print(
        f"  10,000 arms (default survival model): prepare {t_prep:.1f} s, fit {t_big:.1f} s | "
        f"{f.diagnostics.line()}",
        flush=True,
    )

    spec = load_spec("default")
    data = prepare_data(spec, lb.load_trials())
    trials = list(dict.fromkeys(data.arms["trial"]))

    def loto():
        for trial in trials:
            keep = np.flatnonzero(data.arms["trial"].to_numpy() != trial)
            lb.fit(spec, data.take(keep), engine="exact")

    t_loto, _ = timed(loto, 1)
    print(f"  leave-one-trial-out, {len(trials)} refits (exact): {t_loto:.2f} s", flush=True)

    if not args.skip_large:
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
            r = farm_bench(
                [LMSBAYES, "fit", "binomial", "--data", str(csv), "-o", str(Path(tmp) / "f.nc")],
                1,
                vs=None,
            )
            show("100,000 rows: fit + save", r)
    print(f"\nload at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
