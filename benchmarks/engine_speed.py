"""Exact engine vs NUTS, side by side in one run (printed figures, no assertions).

Run with ``python benchmarks/engine_speed.py`` (``--quick``: one repetition, no 10,000-arm NUTS
comparison; ``--reps N``: repetitions of the whole-process timings, default 3).

Whole processes (wall clock from outside, median of the repetitions):

1. ``lmsbayes run`` in a NEW process with an EMPTY PyTensor/numba compile cache
   (``base_compiledir`` in a temporary folder, as on a new machine): the
   default engine (exact) and ``--engine nuts``.
2. The RBesT AS job in a new process: fit (logit-binomial, tau ~ HalfNormal(1)),
   MAP prior (Beta mixture by EM) and its ESS, exact vs NUTS (NUTS with its
   compile cache warm, the fairest case for it).

In this process (median of repeated fits, the data prepared once):

3. One fit of the AS model and of the default analysis, exact vs NUTS
   (NUTS compiled beforehand: sampling only).
4. Synthetic data sets of 100, 1,000 and 10,000 arms simulated from the
   default survival model (medians with CIs and rates at 3, 6 and 12 months),
   exact engine; the growth in time per arm shows whether cost is linear.
5. Leave-one-trial-out over every trial of the bundled data: the full exact
   fit reweighted by each trial's likelihood (refits where k-hat > 0.7), one
   refit per trial for comparison, and NUTS extrapolated from one refit.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
AS_CSV = ROOT / "tests" / "data" / "AS.csv"

AS_JOB = r"""
import json, sys, time, warnings
t0 = time.perf_counter()
import pandas as pd
import lmsbayes as lb
from lmsbayes.spec import load_spec
spec = load_spec("binomial")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    fit = lb.fit(spec, pd.read_csv(sys.argv[1]), engine=sys.argv[2])
    mix = lb.map_prior(fit)
    ess = lb.ess(mix, "elir")
print(json.dumps({"total": time.perf_counter() - t0, "ess": ess}))
"""


def median_of(values):
    return statistics.median(values)


def whole_process(argv, env=None, reps=3) -> list[float]:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        subprocess.run(argv, env=env, check=True, capture_output=True, text=True)
        times.append(time.perf_counter() - t)
    return times


def timed(fn, reps=5):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return median_of(times), out


def synthetic_tables(n_arms: int, seed: int = 1):
    """Arms from the default log-logistic model: medians (with CIs) and rates at 3, 6, 12 months."""
    rng = np.random.default_rng(seed)
    line = rng.choice(["1L", "2L+"], n_arms)
    klass = rng.choice(["R-T", "NR-T"], n_arms)
    uterine = np.where(
        rng.uniform(size=n_arms) < 0.2, np.nan, np.round(rng.uniform(size=n_arms), 2)
    )
    n = rng.integers(20, 120, n_arms)
    eta = (
        0.2
        - 0.8 * (line == "2L+")
        - 0.2 * (klass == "NR-T")
        - 0.9 * (np.nan_to_num(uterine, nan=0.5) - 0.5)
    )
    eta = eta + 0.4 * rng.standard_normal(n_arms)
    k = 1.3
    median = 6.0 * np.exp(eta / k)
    se = 2 / (k * np.sqrt(n))
    arms = pd.DataFrame(
        {
            "arm_id": [f"a{i:05d}" for i in range(n_arms)],
            "trial": [f"T{i}" for i in range(n_arms)],
            "year": 2015,
            "evidence": "publication",
            "phase": "2",
            "design": "single_arm",
            "arm": "x",
            "agents": "x",
            "placebo": False,
            "treatment_class": klass,
            "line": line,
            "population": "LMS",
            "n": n,
            "uterine_fraction": uterine,
            "pmid": 1,
            "doi": "10.5555/x",
            "pfs_median_m": np.round(median * np.exp(se * rng.standard_normal(n_arms)), 2),
            "pfs_median_lo": np.nan,
            "pfs_median_hi": np.nan,
            "pfs_events": np.nan,
        }
    )
    arms["pfs_median_lo"] = np.round(arms["pfs_median_m"] * np.exp(-1.96 * se), 2)
    arms["pfs_median_hi"] = np.round(arms["pfs_median_m"] * np.exp(1.96 * se), 2)
    arms["n"] = arms["n"].astype("Int64")
    arms["year"] = arms["year"].astype("Int64")
    rows = []
    for i in range(n_arms):
        for t in (3.0, 6.0, 12.0):
            if rng.uniform() < 0.4:
                s = 1 / (1 + np.exp(-(eta[i] - k * np.log(t / 6.0))))
                r = rng.binomial(n[i], s) / n[i]
                rows.append(
                    {
                        "arm_id": arms.at[i, "arm_id"],
                        "t": t,
                        "rate": float(np.clip(r, 0.5 / n[i], 1 - 0.5 / n[i])),
                        "lo": np.nan,
                        "hi": np.nan,
                        "kind": "reported",
                    }
                )
    return SimpleNamespace(arms=arms, rates=pd.DataFrame(rows), sha256=f"synthetic-{n_arms}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    reps = 1 if args.quick else args.reps
    warnings.simplefilter("ignore")
    exe = [sys.executable, "-m", "lmsbayes"]

    print(
        f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; repetitions: {reps}",
        flush=True,
    )
    print("\n1. `lmsbayes run`, new process, empty compile cache (median of repetitions)")
    results = {}
    for engine in ("exact", "nuts"):
        times = []
        for _ in range(reps):
            with tempfile.TemporaryDirectory() as cache:
                env = dict(os.environ, PYTENSOR_FLAGS=f"base_compiledir={cache}")
                times += whole_process(
                    [*exe, "run", "--quiet", "--engine", engine], env=env, reps=1
                )
        results[engine] = median_of(times)
        print(
            f"  {engine:6s} {results[engine]:7.2f} s   (runs: "
            f"{', '.join(f'{t:.2f}' for t in times)})",
            flush=True,
        )
    print(f"  ratio exact / nuts: {results['exact'] / results['nuts']:.3f}")

    print("\n2. The RBesT AS job (fit + MAP mixture + ESS), new process")
    job = {}
    for engine in ("exact", "nuts"):
        if engine == "nuts":  # warm the compile cache first: NUTS at its best
            subprocess.run(
                [sys.executable, "-c", AS_JOB, str(AS_CSV), engine], check=True, capture_output=True
            )
        times = whole_process([sys.executable, "-c", AS_JOB, str(AS_CSV), engine], reps=reps)
        job[engine] = median_of(times)
        print(
            f"  {engine:6s} {job[engine]:7.2f} s   (runs: {', '.join(f'{t:.2f}' for t in times)})",
            flush=True,
        )
    print(f"  ratio exact / nuts: {job['exact'] / job['nuts']:.3f}")

    import lmsbayes as lb
    from lmsbayes.model.prepare import prepare_data
    from lmsbayes.spec import load_spec

    print("\n3. One fit, data prepared once (median of 5; NUTS compiled beforehand)")
    as_spec = load_spec("binomial")  # the bundled spec a user fits to RBesT's AS table
    cases = {
        "AS (8 arms)": (as_spec, prepare_data(as_spec, pd.read_csv(AS_CSV))),
        "default analysis": (
            load_spec("default"),
            prepare_data(load_spec("default"), lb.load_trials()),
        ),
    }
    for name, (spec, data) in cases.items():
        t_exact, f_exact = timed(lambda: lb.fit(spec, data, engine="exact"))
        lb.fit(spec, data, engine="nuts")  # compile
        t_nuts, f_nuts = timed(lambda: lb.fit(spec, data, engine="nuts"), reps=3)
        print(
            f"  {name:18s} exact {1000 * t_exact:8.1f} ms | NUTS {1000 * t_nuts:8.1f} ms | ratio "
            f"{t_exact / t_nuts:.4f} | exact: {f_exact.diagnostics.line()}",
            flush=True,
        )

    print("\n4. Synthetic arms from the default model (exact engine; prepare_data timed apart)")
    spec = load_spec("default").replace(**{"data.require_identifier": False})
    sizes = [100, 1000, 10000]
    per_arm = []
    for k in sizes:
        tables = synthetic_tables(k)
        t0 = time.perf_counter()
        data = prepare_data(spec, tables)
        t_prep = time.perf_counter() - t0
        t_fit, f = timed(lambda: lb.fit(spec, data, engine="exact"), reps=5)
        per_arm.append(t_fit / k)
        print(
            f"  {k:6d} arms: prepare {t_prep:6.2f} s, fit {t_fit:6.2f} s ({1e6 * t_fit / k:7.1f} "
            "us per arm) | "
            f"{f.diagnostics.line()}",
            flush=True,
        )
    print(
        "  growth of the time per arm, 100 -> 10,000 arms: x"
        + f"{per_arm[-1] / per_arm[0]:.2f} (1 = linear)"
    )
    if not args.quick:
        data = prepare_data(spec, synthetic_tables(1000))
        lb.fit(
            spec.replace(**{"sampler.draws": 500, "sampler.tune": 500, "sampler.chains": 2}),
            data,
            engine="nuts",
        )
        t_nuts, f = timed(
            lambda: lb.fit(
                spec.replace(**{"sampler.draws": 500, "sampler.tune": 500, "sampler.chains": 2}),
                data,
                engine="nuts",
            ),
            reps=1,
        )
        print(
            f"  NUTS, 1,000 arms (2 x 500 draws, compiled beforehand): {t_nuts:.2f} s | "
            f"{f.diagnostics.line()}"
        )

    print("\n5. Leave-one-trial-out over every trial of the bundled data (lmsbayes.validate.loto)")
    from lmsbayes import validate as V

    spec = load_spec("default")
    data = prepare_data(spec, lb.load_trials())
    V.loto(spec, data)  # first call: imports and caches
    t_loto, v = timed(lambda: V.loto(spec, data))
    t_refit, _ = timed(lambda: V.loto(spec, data, refit=True), reps=1)
    t_nuts, _ = timed(
        lambda: lb.fit(spec, data.take(np.arange(1, data.n_arms)), engine="nuts"), reps=1
    )
    n_folds = len(v.folds)
    print(
        f"  exact, full fit reweighted per trial: {t_loto:.2f} s (median of 5; "
        f"{int((v.folds['method'] == 'refit').sum())} of {n_folds} folds refitted, max LOO "
        f"k-hat {v.folds['loo_khat'].max():.2f}) | a refit per trial: {t_refit:.2f} s"
    )
    print(
        f"  NUTS (one refit of a new shape {t_nuts:.1f} s, compile included) x {n_folds} "
        "trials: "
        f"~{t_nuts * n_folds:.0f} s; ratio {t_loto / (t_nuts * n_folds):.4f}"
    )
    print(json.dumps({"run": results, "as_job": job}))


if __name__ == "__main__":
    main()
