"""Timing of leave-one-trial-out validation on the bundled data (no assertions).

Run with ``python benchmarks/validate_loto.py [SPEC ...]`` (default: default,
weibull, constant_hazard, eortc2021; per_landmark takes minutes). Per spec:
the whole LOTO, the refits (exact engine), the held-out predictions, and a
breakdown of one refit into the engine's steps (the exact engine's functions
timed in place; wall clock, seconds). The issue's goal is at most ~2 s per spec.
"""

from __future__ import annotations

import functools
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
    for name in specs:
        t0 = time.perf_counter()
        v = V.loto(name, trials)
        total = time.perf_counter() - t0
        fits = v.folds["seconds_fit"].sum()
        print(
            f"{name}: LOTO {total:.2f} s over {len(v.folds)} refits "
            f"(refits {fits:.2f} s, {fits / len(v.folds):.3f} s each; predictions "
            f"{total - fits:.2f} s)"
        )
        for k, x in breakdown(name, trials).items():
            print(f"    {k}: {x:.3f}" if isinstance(x, float) else f"    {k}: {x}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["default", "weibull", "constant_hazard", "eortc2021"])
