"""Timing of the MAP mixture on RBesT's AS example (prints medians of repeated in-process runs).

Run: PYTHONPATH=src .venv/bin/python benchmarks/map_prior.py [repeats]

Parts: the predictive density's quadrature grid (400 cells, the 4000 global
points of the default fit), the KL fit of the mixture on it, the whole
``map_prior(fit)``, and for comparison the same fit to 4000 equal-weight
draws (the NUTS path). Before issue 22 the EM on draws took 0.44 s on AS
(10 EM runs, 1,296 beta ML calls). The machine's load is printed: the
figures scale with it on 2 shared cores; the
process's CPU time is printed beside the wall time (run with OPENBLAS_NUM_THREADS=1:
the 3x3 to 11x11 linear algebra gains nothing from threads).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import lmsbayes as lb
from lmsbayes.predict import new_trial_conditionals
from lmsbayes.prior.density import PredictiveDensity
from lmsbayes.prior.em import fit_mixture, fit_mixture_to_density

REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 7
AS = Path(__file__).parents[1] / "tests" / "data" / "AS.csv"


def median_time(fn, repeats=REPEATS):
    """Median wall time and median CPU time of this process (the latter less sensitive to load)."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    warnings.simplefilter("error")  # the fit must be silent
    fit = lb.fit("binomial", pd.read_csv(AS))
    cond = new_trial_conditionals(fit)
    density = PredictiveDensity(cond["loc"], cond["scale"], cond["weights"], cond["link"])
    grid = density.grid()
    draws = lb.predict(fit)["rate"].sel(quantity="predictive").values.ravel()
    probs = np.array([0.025, 0.05, 0.25, 0.5, 0.75, 0.95, 0.975])
    rows = [
        ("density: quadrature grid (400 cells)", lambda: density.grid()),
        (
            "density: 7 target quantiles (bracketed by the grid)",
            lambda: density.ppf_on(grid, probs),
        ),
        (
            "fit_mixture_to_density (grid, quantiles, KL fit of k = 1..3)",
            lambda: fit_mixture_to_density(density),
        ),
        ("map_prior(fit) (plus the conditionals)", lambda: lb.map_prior(fit)),
        ("fit_mixture(4000 draws) (the NUTS path)", lambda: fit_mixture(draws)),
    ]
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {REPEATS} runs each")
    print(f"{'':<55} {'wall':>8} {'CPU':>8}  (medians)")
    for label, fn in rows:
        med, cpu = median_time(fn)
        print(f"{label:<55} {med:8.4f} {cpu:8.4f} s")
    mix = lb.map_prior(fit)
    print("MAP:", mix)
    print("ESS:", {m: round(lb.ess(mix, m), 2) for m in ("elir", "moment", "morita")})


if __name__ == "__main__":
    main()
