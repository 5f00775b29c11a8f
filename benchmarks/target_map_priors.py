"""The 1L doxorubicin control-arm MAP prior for 2027 under each candidate spec, and the fit times.

Run: PYTHONPATH=src python benchmarks/target_map_priors.py
Prints, per spec: exact fit seconds, diagnostics, and the MAP prior of a new doxorubicin arm
(1L, R-T, 45% uterine, 2027) at 6 months: arms of the regimen it rests on, mean, 95% interval,
ESS (ELIR); and, for the regimen spec, its sensitivity to the within-regimen heterogeneity prior.
"""

from __future__ import annotations

import sys
import time
import warnings

import lmsbayes as lb
from lmsbayes.data import load_trials
from lmsbayes.predict import Setting
from lmsbayes.prior import ess, map_prior
from lmsbayes.spec import Prior, load_spec
from lmsbayes.targets import Target

SPECS = sys.argv[1:] or [
    "default",
    "time_trend",
    "regimen",
    "drift",
    "regimen_drift",
    "student_t",
    "age_discount",
]


def row(spec, trials, label):
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lb.fit(spec, trials, engine="exact")
        secs = time.perf_counter() - t0
        target = Target.new_arm("doxorubicin", 2027)
        mix = map_prior(fit, Setting("1L", "R-T", 0.45), 6.0, target=target)
    lo, hi = mix.ppf([0.025, 0.975])
    arms = mix.provenance.get("regimen_arms", [])
    print(
        f"{label:34s} {secs:6.1f} s  arms {len(arms)} ({', '.join(arms)})  mean {mix.mean():.3f}  "
        f"95% {lo:.3f}-{hi:.3f}  ESS {ess(mix):.0f}  | {fit.diagnostics.line()}",
        flush=True,
    )


def main() -> None:
    trials = load_trials()
    for name in SPECS:
        row(load_spec(name), trials, name)
    if "regimen" in SPECS:
        for sigma in (0.25, 1.0):
            spec = load_spec("regimen").replace(**{"priors.tau": Prior("HalfNormal", sigma=sigma)})
            row(spec, trials, f"regimen, tau ~ HalfNormal({sigma:g})")


if __name__ == "__main__":
    main()
