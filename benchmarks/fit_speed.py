"""Timing of model fits (no assertions): cold start, warm refit, and scaling in the number of arms.

Run with ``python benchmarks/fit_speed.py`` (add ``--quick`` to skip the 10,000-arm fit).

1. Cold: a NEW Python process imports lmsbayes, builds, compiles and samples
   the default spec on the bundled data (wall clock measured outside the
   process, and the fit itself inside it), twice: first with an EMPTY
   PyTensor/numba cache (``base_compiledir`` in a temporary folder), which is
   what the first run on a new machine costs, then with the cache that run
   left (a new process on a machine that has compiled before). Last,
   ``lmsbayes run`` as a whole, timed from outside, on an empty cache.
2. Warm: in this process, after a first fit, a refit of the same structure
   on new data of the same shape (y redrawn from Binomial(n_eff, observed
   rate)): no recompilation, the new values go in through ``pm.Data``.
3. Scaling: synthetic data sets of 100, 1,000 and 10,000 arms simulated from
   the default model (logit-binomial; covariates line, nrt, line:nrt,
   uterine; tau by line), built directly as :class:`lmsbayes.model.ModelData`.
   Compilation and sampling are timed apart.

Diagnostics are over the hyper-parameters (alpha, beta, tau), as in
:class:`lmsbayes.fit.Diagnostics`; ESS/s is min bulk ESS per second of sampling.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd

COLD_SCRIPT = r"""
import json, time, warnings
t0 = time.perf_counter()
import lmsbayes
from lmsbayes.data import load_trials
t_import = time.perf_counter() - t0
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    f = lmsbayes.fit("default", load_trials())
t_total = time.perf_counter() - t0
d = f.diagnostics
print(json.dumps({"import": t_import, "fit": t_total - t_import, "total": t_total,
                  "divergences": d.divergences, "min_ess_bulk": d.min_ess_bulk, "max_rhat": d.max_rhat}))
"""


def line(label: str, seconds: float, diag=None, sample_seconds: float | None = None) -> None:
    text = f"  {label:<44s} {seconds:8.2f} s"
    if diag is not None:
        s = sample_seconds if sample_seconds is not None else seconds
        text += (f" | {diag.divergences:3d} div, max R-hat {diag.max_rhat:.3f}, min ESS bulk "
                 f"{diag.min_ess_bulk:7.0f}, ESS/s {diag.min_ess_bulk / s:7.0f}")  # fmt: skip
    print(text, flush=True)


def _env_with_cache(cache: str) -> dict[str, str]:
    flags = ",".join(f for f in [os.environ.get("PYTENSOR_FLAGS", ""), f"base_compiledir={cache}"] if f)
    return {**os.environ, "PYTHONWARNINGS": "ignore", "PYTENSOR_FLAGS": flags}


def cold_start() -> None:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="lmsbayes-bench-cache-") as cache:
        env = _env_with_cache(cache)
        for label in ("empty cache (a new machine)", "cached kernels (a new process)"):
            print(f"Cold start, {label}: import + build + compile + sample (default spec, 4 x 2000 draws)")
            _cold_once(env)
    with tempfile.TemporaryDirectory(prefix="lmsbayes-bench-cache-") as cache:
        print("`lmsbayes run` on an empty cache (a new machine), wall time from outside")
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "lmsbayes", "run", "--quiet"], capture_output=True,
                             text=True, env=_env_with_cache(cache))  # fmt: skip
        status = "exit 0" if res.returncode == 0 else f"FAILED (exit {res.returncode})"
        print(f"  {'lmsbayes run':<44s} {time.perf_counter() - t0:8.2f} s | {status}")


def _cold_once(env: dict[str, str]) -> None:
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", COLD_SCRIPT], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        print("  cold run failed:\n" + res.stderr[-2000:])
        return
    r = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"  {'process wall time (incl. interpreter start)':<44s} {wall:8.2f} s")
    print(f"  {'  import lmsbayes + load_trials':<44s} {r['import']:8.2f} s")
    print(f"  {'  fit (build + compile + sample)':<44s} {r['fit']:8.2f} s | {r['divergences']} div, "
          f"max R-hat {r['max_rhat']:.3f}, min ESS bulk {r['min_ess_bulk']:.0f}")  # fmt: skip


def compile_then_fit(spec, data, label: str):
    """Time build + compile, then the fit that reuses the compiled model; print both lines."""
    import lmsbayes
    from lmsbayes.fit import _compiled

    t0 = time.perf_counter()
    _compiled(spec, data)
    line("build + compile", time.perf_counter() - t0)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = lmsbayes.fit(spec, data)
    seconds = time.perf_counter() - t0
    line(label, seconds, result.diagnostics)
    return result, seconds


def warm_refit() -> None:
    import lmsbayes
    from lmsbayes.data import load_trials
    from lmsbayes.model import prepare_data
    from lmsbayes.spec import load_spec

    print("\nWarm refit in this process (default spec, bundled data: compiled model reused)")
    spec = load_spec("default")
    data = prepare_data(spec, load_trials())
    print(f"  {len(data.arms)} arms, {len(data.obs)} observations, "
          f"{spec.sampler.chains} chains x {spec.sampler.draws} draws (+ {spec.sampler.tune} tune)")  # fmt: skip
    compile_then_fit(spec, data, "first sample (compiled model cached)")
    rng = np.random.default_rng(1)
    obs = data.obs.copy()
    obs["y_eff"] = rng.binomial(obs["n_eff"].to_numpy(), obs["rate"].clip(0, 1).to_numpy())
    new = dataclasses.replace(data, obs=obs)
    t0 = time.perf_counter()
    again = lmsbayes.fit(spec, new)
    t = time.perf_counter() - t0
    line("refit, new y of the same shape", t, again.diagnostics)


#: sampler settings (draws, tune, chains) for the larger synthetic data sets, to keep the run short
SCALING_SAMPLER = {100: (1000, 1000, 4), 1_000: (500, 500, 2), 10_000: (200, 200, 2)}


def simulate(n_arms: int, seed: int = 0):
    """ModelData for ``n_arms`` arms simulated from the default model (both landmarks observed)."""
    from lmsbayes.model import ModelData

    rng = np.random.default_rng(seed)
    landmarks = (3.0, 6.0)
    line = rng.choice(["1L", "2L+"], n_arms, p=[0.35, 0.65])
    klass = rng.choice(["R-T", "NR-T"], n_arms, p=[0.5, 0.5])
    uterine = rng.beta(2.0, 2.0, n_arms)
    n = rng.integers(20, 121, n_arms)
    x = np.column_stack([(line == "2L+"), (klass == "NR-T"), (line == "2L+") & (klass == "NR-T"), uterine - 0.5])
    alpha = np.array([1.0, 0.3])  # 1L R-T: 73% at 3 months, 57% at 6
    beta = np.array([[-1.0, 0.0, 0.0, -0.5], [-1.2, 0.0, 0.0, -0.8]])  # (landmark, covariate)
    tau = np.array([[0.3, 0.4], [0.3, 0.4]])  # (stratum, landmark)
    stratum = (line == "2L+").astype(int)
    theta = alpha + x.astype(float) @ beta.T + tau[stratum] * rng.standard_normal((n_arms, 2))
    p = 1 / (1 + np.exp(-theta))
    arm_ids = [f"sim{i:05d}" for i in range(n_arms)]
    arms = pd.DataFrame({
        "label": arm_ids, "trial": arm_ids, "year": pd.array(rng.integers(2003, 2026, n_arms), dtype="Int64"),
        "line": line, "treatment_class": klass, "population": "LMS", "evidence": "publication",
        "design": "single_arm", "n": pd.array(n, dtype="Int64"), "uterine_fraction": uterine,
    }, index=pd.Index(arm_ids, name="arm"))  # fmt: skip
    ai, li = np.repeat(np.arange(n_arms), 2), np.tile(np.arange(2), n_arms)
    y = rng.binomial(n[ai], p[ai, li])
    obs = pd.DataFrame({
        "arm_id": np.array(arm_ids)[ai], "landmark": np.array(landmarks)[li], "rate": y / n[ai],
        "rate_source": "reported", "se_logit": np.nan, "se_method": "binomial", "n_eff": n[ai].astype(np.int64),
        "y_eff": y.astype(np.int64), "n": pd.array(n[ai], dtype="Int64"),
        "arm_idx": ai.astype(np.int64), "landmark_idx": li.astype(np.int64),
    })  # fmt: skip
    return ModelData(
        arms=arms, obs=obs, excluded=pd.DataFrame(columns=["arm_id", "landmark", "reason"]),
        landmarks=landmarks, covariates=("line", "nrt", "line:nrt", "uterine"), strata=("1L", "2L+"),
        uterine_centre=0.5, data_sha256=f"synthetic-{n_arms}-{seed}", trials=tuple(arm_ids),
    )  # fmt: skip


def scaling(sizes: list[int]) -> None:
    from lmsbayes.spec import load_spec

    print("\nScaling: synthetic arms simulated from the default model (uterine fraction known for all arms)")
    base = load_spec("default")
    default = f"{base.sampler.chains} x {base.sampler.draws} + {base.sampler.tune}"
    for n_arms in sizes:
        data = simulate(n_arms)
        draws, tune, chains = SCALING_SAMPLER.get(n_arms, (base.sampler.draws, base.sampler.tune, base.sampler.chains))
        spec = base.replace(**{"sampler.draws": draws, "sampler.tune": tune, "sampler.chains": chains})
        s = spec.sampler
        fewer = (s.draws, s.tune, s.chains) != (base.sampler.draws, base.sampler.tune, base.sampler.chains)
        print(f" {n_arms:>6,d} arms ({len(data.obs):,d} observations; {s.chains} chains x {s.draws} draws "
              f"+ {s.tune} tune{'; FEWER than the default spec (' + default + ')' if fewer else ''})")  # fmt: skip
        result, t = compile_then_fit(spec, data, "sample (+ DataTree, diagnostics)")
        stats = result.datatree["sample_stats"]
        steps = int(stats["n_steps"].sum()) if "n_steps" in stats else None
        # n_steps counts leapfrog steps of the kept draws only; the time includes warm-up
        print(f"  {'':<44s}   mean tree depth {float(stats['depth'].mean()):.1f}"
              + (f", {steps:,d} leapfrog steps after warm-up ({1e6 * t / steps:.0f} us of total time per step)"
                 if steps else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip the 10,000-arm data set")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-start subprocess")
    parser.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",")], default=None,
                        help="comma-separated numbers of synthetic arms (default 100,1000,10000)")
    args = parser.parse_args()
    import lmsbayes

    print(f"lmsbayes {lmsbayes.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    if not args.no_cold:
        cold_start()
    warm_refit()
    sizes = args.sizes or ([100, 1_000] if args.quick else [100, 1_000, 10_000])
    if sizes != [0]:
        scaling(sizes)


if __name__ == "__main__":
    main()
