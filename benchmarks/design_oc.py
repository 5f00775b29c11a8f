"""Timing of design searches and exact operating characteristics (no assertions).

Run with ``python benchmarks/design_oc.py``.  Each figure is the best of a few
repeats (wall clock, seconds); boundary computation (posterior / predictive
probabilities, done once per design and cached) is timed apart from the
enumeration over the grid of true rates.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from lmsbayes.design import BayesianSingleArm, TwoArmDesign, operating_characteristics, simon
from lmsbayes.prior import BetaMixture


def best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p_grid = np.linspace(0.2, 0.8, 50)
    map_prior = BetaMixture(weights=[0.8, 0.2], a=[14.0, 1.0], b=[36.0, 1.0])

    def fresh_single(p0: float | BetaMixture = 0.44) -> BayesianSingleArm:
        return BayesianSingleArm(looks=(20, 35, 50), p0=p0, success_prob=0.95, futility_pp=0.05)

    print("Single arm, looks (20, 35, 50), 50 true rates")
    t_bound = best_of(lambda: fresh_single().boundaries())
    d = fresh_single()
    d.boundaries()
    t_oc = best_of(lambda: operating_characteristics(d, p=p_grid))
    print(f"  boundaries, fixed p0 = 0.44          {t_bound:8.4f} s")
    print(f"  OC enumeration (cached boundaries)   {t_oc:8.4f} s")
    print(f"  boundaries + OC                      {t_bound + t_oc:8.4f} s")
    t_mix = best_of(lambda: operating_characteristics(fresh_single(map_prior), p=p_grid), 3)
    print(f"  boundaries + OC, p0 ~ MAP mixture    {t_mix:8.4f} s")

    print("Simon two-stage search (optimal and minimax together)")
    targets = [(0.2, 0.4, 0.05, 0.8), (0.28, 0.44, 0.05, 0.8), (0.3, 0.5, 0.05, 0.9)]
    for p0, p1, alpha, power in targets:
        res = simon(p0, p1, alpha=alpha, power=power)
        t = best_of(lambda p0=p0, p1=p1, a=alpha, w=power: simon(p0, p1, alpha=a, power=w), 3)
        print(
            f"  p0={p0}, p1={p1}, alpha={alpha}, power={power}: nmax={res.nmax:3d}  {t:8.4f} s"
            f"  (optimal n={res.optimal.n}, minimax n={res.minimax.n})"
        )
    t_all = best_of(
        lambda: [simon(p0, p0 + 0.2) for p0 in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)], 1
    )
    print(f"  Simon table, p0 = 0.05..0.7, p1 = p0 + 0.2 (8 searches)   {t_all:8.4f} s")

    print("Two arm, n_t = 40, n_c = 20, MAP prior on control, 25 x 25 grid of (p_t, p_c)")
    grid = np.linspace(0.1, 0.7, 25)

    def two_arm() -> object:
        td = TwoArmDesign(n_t=40, n_c=20, prior_c=map_prior, success_prob=0.975)
        return operating_characteristics(td, p_t=grid, p_c=grid)

    t_two = best_of(two_arm, 3)
    td = TwoArmDesign(n_t=40, n_c=20, prior_c=map_prior, success_prob=0.975)
    operating_characteristics(td, p_t=grid, p_c=grid)
    t_two_cached = best_of(lambda: operating_characteristics(td, p_t=grid, p_c=grid))
    print(f"  decision table (41 x 21 pairs) + OC  {t_two:8.4f} s")
    print(f"  OC grid only (cached table)          {t_two_cached:8.4f} s")


if __name__ == "__main__":
    main()
