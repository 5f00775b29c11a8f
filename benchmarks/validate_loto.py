"""Timing of leave-one-trial-out validation on the bundled data (no assertions).

Run with ``python benchmarks/validate_loto.py [SPEC ...]`` (default: default,
weibull, constant_hazard, eortc2021; per_landmark takes minutes). Per spec:
the whole LOTO (median of 5, in this process: the full fit reweighted by each
trial's likelihood, refits only where a trial's Pareto k-hat exceeds 0.7), the
same with a refit per trial (``refit=True``, once), the folds' largest k-hat,
and a breakdown of one refit into the engine's steps (the exact engine's
functions timed in place; wall clock, seconds). Issue 22's bound: at most 1 s.
"""

from __future__ import annotations

import functools
import os
import statistics
import sys
import time

import numpy as np

from lmsbayes import validate as V
from lmsbayes.data import load_trials
from lmsbayes.engines import exact as E
from lmsbayes.model.definition import Model
from lmsbayes.model.prepare import prepare_data
from lmsbayes.spec import load_spec


def _timed(store: dict, name: str, f):
    @functools.wraps(f)
    def g(*a, **k):
        t0 = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            store[name] = store.get(name, 0.0) + time.perf_counter() - t0

    return g


def breakdown(spec_name: str, trials) -> dict[str, float]:
    """One refit (all arms but the first trial's), step by step."""
    spec = load_spec(spec_name)
    data = prepare_data(spec, trials)
    trial = data.arms["trial"].to_numpy()
    model = Model(spec, data.take(np.flatnonzero(trial != trial[0])))
    store: dict[str, float] = {}
    saved = (E._mode, E._grid_proposal, E._t_proposal, E.Integrator.draw_latent)
    E._mode = _timed(store, "posterior mode (BFGS)", E._mode)
    E._grid_proposal = _timed(store, "proposal: tau grid + conditional Laplace", E._grid_proposal)
    E._t_proposal = _timed(store, "proposal: Student-t", E._t_proposal)
    E.Integrator.draw_latent = _timed(
        store, "arm-level draws (z, u) - unused by validate", E.Integrator.draw_latent
    )
    try:
        t0 = time.perf_counter()
        res = E.fit_exact(model, spec.exact, spec.sampler.seed)
        store["total"] = time.perf_counter() - t0
    finally:
        E._mode, E._grid_proposal, E._t_proposal, E.Integrator.draw_latent = saved
    store["rest (Hessian, importance weights of the proposals, PSIS)"] = store["total"] - sum(
        v for k, v in store.items() if k != "total"
    )
    store["log-posterior evaluations"] = res.diagnostics["n_logpost_evals"]
    return store


def main(specs) -> None:
    trials = load_trials()
    print(f"load {os.getloadavg()[0]:.2f}")
    for name in specs:
        V.loto(name, trials)  # first call: imports and caches
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            v = V.loto(name, trials)
            times.append(time.perf_counter() - t0)
        total = statistics.median(times)
        refit = (v.folds["method"] == "refit").sum()
        print(
            f"{name}: LOTO {total:.2f} s (median of 5; runs "
            f"{', '.join(f'{t:.2f}' for t in times)}) over {len(v.folds)} folds, "
            f"{refit} refitted; max LOO k-hat {v.folds['loo_khat'].max():.2f}"
        )
        t0 = time.perf_counter()
        r = V.loto(name, trials, refit=True)
        t_refit = time.perf_counter() - t0
        fits = r.folds["seconds_fit"].sum()
        print(
            f"    with a refit per trial: {t_refit:.2f} s (refits {fits:.2f} s); ELPD "
            f"{v.elpd()[0]:.2f} reweighted vs {r.elpd()[0]:.2f} refitted"
        )
        for k, x in breakdown(name, trials).items():
            print(f"    {k}: {x:.3f}" if isinstance(x, float) else f"    {k}: {x}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["default", "weibull", "constant_hazard", "eortc2021"])
