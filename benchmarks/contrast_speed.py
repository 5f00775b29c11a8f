"""Timing of the contrast-based meta-analysis (no assertions).

Run with ``python benchmarks/contrast_speed.py``. Each figure is the best of a
few repeats (wall clock, seconds) on metafor's dat.bcg (13 trials) and on a
simulated set of 100 trials.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from lmsbayes import contrast as ct


def best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _bcg() -> pd.DataFrame:
    d = pd.read_csv(Path(__file__).resolve().parents[1] / "tests" / "data" / "metafor_dat_bcg.csv")
    a, b, c, e = (d[k].to_numpy(float) for k in ("tpos", "tneg", "cpos", "cneg"))
    return ct.contrast_table(
        pd.DataFrame(
            {
                "study": d["author"] + " " + d["year"].astype(str),
                "log_estimate": np.log(a / (a + b)) - np.log(c / (c + e)),
                "se": np.sqrt(1 / a - 1 / (a + b) + 1 / c - 1 / (c + e)),
            }
        ),
        measure="RR",
    )


def _simulated(k: int = 100, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    se = rng.uniform(0.1, 0.5, k)
    y = rng.normal(rng.normal(-0.3, 0.2, k), se)
    return ct.contrast_table(
        pd.DataFrame({"study": [f"t{i}" for i in range(k)], "log_estimate": y, "se": se})
    )


def main() -> None:
    for name, d in (("dat.bcg (k = 13)", _bcg()), ("simulated (k = 100)", _simulated())):
        print(name)
        for method in ("DL", "REML"):
            print(
                f"  random_effects {method:4s}      "
                f"{best_of(lambda: ct.random_effects(d, method=method)):.4f} s"
            )
        print(
            f"  leave_one_out REML       "
            f"{best_of(lambda: ct.leave_one_out(ct.random_effects(d)), 3):.4f} s"
        )
        print(f"  bayesian (half-normal)   {best_of(lambda: ct.bayesian(d)):.4f} s")
        b = ct.bayesian(d)
        print(f"  bayesian summary()       {best_of(b.summary):.4f} s")
        design = ct.TimeToEventDesign(events=200)
        print(
            f"  assurance                "
            f"{best_of(lambda: ct.assurance(b.predictive(), design)):.4f} s"
        )


if __name__ == "__main__":
    main()
