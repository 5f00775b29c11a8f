"""The LMS default's integration rule: its stated error, its real error, and the old sampler's.

Issue 22 asks, for the default (8 global parameters: a rank-1 lattice of 8 fixed shifts x 512
points through the Student-t or log-tau-grid proposal, 2 importance rounds), to state the rule
and its error. Three runs, each writing a JSON file that ``summary`` reads:

``shifts N``
    The default fitted with N random shift sets (``rules.SHIFT_SEED`` = 1000 + i) in place of
    the fixed one: the spread of every threshold over the N rules is the rule's real random-shift
    error, which the stated error (sd of the 8 shifted rules' answers / sqrt(8)) estimates.
``fine``
    The same rule with 16 times the points (128 other shifts instead of the fixed 8): the
    reference the fixed rule's real error is measured against (its own error is a quarter of
    the fixed rule's; the two add).
``old N`` (run with the package before the rule, ``PYTHONPATH=OLD/src``)
    The engine before issue 22: 4000 random importance draws, quantiles of the draws, at fit
    seeds 0..N-1; their seed-to-seed sd and the MCSE it reported.

Quantities: the pooled rate's 2.5/50/97.5% quantiles (the default's threshold reference) for
every setting of the default table at 3 and 6 months, and the predictive (new-trial) quantiles
of the settings that are not a case mix.

    python benchmarks/default_rule_error.py shifts 50 OUT_DIR
    python benchmarks/default_rule_error.py fine 1 OUT_DIR
    PYTHONPATH=OLD/src python benchmarks/default_rule_error.py old 50 OUT_DIR
    python benchmarks/default_rule_error.py summary 0 OUT_DIR
"""

from __future__ import annotations

import functools
import importlib
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

PROBS = (0.025, 0.5, 0.975)


def _new_quantiles(fit, rule) -> dict:
    """Pooled (all settings) and predictive (settings that are no case mix) quantiles and errors."""
    from lmsbayes import integrated

    predict = importlib.import_module("lmsbayes.predict")
    integrated._rule = lambda fit: rule  # the summaries over the given rule
    settings, landmarks = predict._resolve(fit, None, None, None)
    single = [s for s in settings if not s.case_mix]
    out = {}
    for name, ss in (("pooled", settings), ("predictive", single)):
        # one setting at a time: a case mix's components over 131,072 points fill gigabytes
        rs = [integrated.rate_summaries(fit, [s], landmarks, name, PROBS) for s in ss]
        out[name] = {
            "q": np.concatenate([r["quantiles"] for r in rs], axis=1).tolist(),
            "err": np.concatenate([r["error"] for r in rs], axis=1).tolist(),
            "settings": [s.label for s in ss],
        }
    out["landmarks"] = list(landmarks)
    return out


def _default_rules():
    """The default's fit and a function shift_seed -> its lattice rule (the engine's path)."""
    import lmsbayes as lb
    from lmsbayes.engines import exact as ex
    from lmsbayes.spec import load_spec

    # the rule does not depend on the number of draws; few draws make the fit cheaper
    spec = load_spec("default").replace(**{"exact.draws": 200})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lb.fit(spec)
    m = fit.model
    post = ex._Posterior(m, ex.Integrator(m, spec.exact.nodes, spec.exact.uterine_nodes))
    mode, _, optima = ex._mode(post)
    cov = ex._covariance(post.hessian(mode))
    others = [(x, lp) for x, lp in optima[1:] if lp > optima[0][1] - 8.0]

    def rule(shift_seed):
        return ex._lattice_rule(post, mode, cov, others, optima, spec.exact, shift_seed)[0]

    return fit, rule


def run_shifts(n: int, out: Path) -> None:
    fit, rule = _default_rules()
    runs = []
    for i in range(n):
        t = time.perf_counter()
        runs.append(_new_quantiles(fit, rule(1000 + i)))
        print(f"shift set {i}: {time.perf_counter() - t:.1f} s", flush=True)
    (out / "shifts.json").write_text(json.dumps(runs))


def run_fine(out: Path) -> None:
    from lmsbayes.engines import rules

    fit, rule = _default_rules()
    fixed = _new_quantiles(fit, rule(None))
    original = rules.LatticeStream
    # 16 times the points: 128 shifts of the same lattice, drawn independently of the fixed 8
    # (so that the two rules' errors add)
    rules.LatticeStream = functools.partial(original, 128)
    t = time.perf_counter()
    fine_rule = rule(7)
    fine = _new_quantiles(fit, fine_rule)
    print(f"fine rule: {fine_rule.description} ({time.perf_counter() - t:.0f} s)")
    (out / "fine.json").write_text(json.dumps({"fixed": fixed, "fine": fine}))


def run_old(n: int, out: Path) -> None:
    import lmsbayes as lb
    from lmsbayes.predict import thresholds

    runs = []
    for seed in range(n):
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = lb.fit("default", seed=seed)
            ds = thresholds(fit, reference="pooled")
        q = np.stack([ds[f"p0_{k}"].values for k in ("lower", "median", "upper")])
        e = np.stack([ds[f"p0_{k}_mcse"].values for k in ("lower", "median", "upper")])
        runs.append({"q": q.tolist(), "err": e.tolist()})
        print(f"old seed {seed}: {time.perf_counter() - t:.1f} s", flush=True)
    (out / "old.json").write_text(json.dumps(runs))


def summary(out: Path) -> None:
    lines = []
    say = lines.append
    if (out / "shifts.json").exists():
        runs = json.loads((out / "shifts.json").read_text())
        say(f"random shift sets: {len(runs)}")
        for name in ("pooled", "predictive"):
            q = np.array([r[name]["q"] for r in runs])  # (run, prob, setting, landmark)
            e = np.array([r[name]["err"] for r in runs])
            sd = q.std(axis=0, ddof=1)
            rms = np.sqrt(np.mean(e**2, axis=0))
            ratio = rms / sd
            for j, p in enumerate(PROBS):
                pooled = np.sqrt(np.sum(rms[j] ** 2) / np.sum(sd[j] ** 2))
                say(
                    f"  {name} {p:.1%}: spread over shift sets sd median {np.median(sd[j]):.5f} "
                    f"(max {sd[j].max():.5f}); stated / actual: pooled over rows {pooled:.2f}, "
                    f"per row median {np.median(ratio[j]):.2f} (range {ratio[j].min():.2f}-"
                    f"{ratio[j].max():.2f})"
                )
    if (out / "fine.json").exists():
        f = json.loads((out / "fine.json").read_text())
        for name in ("pooled", "predictive"):
            fixed_q, fine_q = np.array(f["fixed"][name]["q"]), np.array(f["fine"][name]["q"])
            err, err_fine = np.array(f["fixed"][name]["err"]), np.array(f["fine"][name]["err"])
            d = np.abs(fixed_q - fine_q)
            z = (fixed_q - fine_q) / np.sqrt(err**2 + err_fine**2)
            say(
                f"  {name}: fixed rule vs 16x rule: |difference| max {d.max():.5f}, median "
                f"{np.median(d):.5f}; stated error median {np.median(err):.5f} (max "
                f"{err.max():.5f}); 16x rule's error median {np.median(err_fine):.5f}; "
                f"rms of difference / combined stated error {np.sqrt(np.mean(z**2)):.2f} "
                f"({z.size} quantiles), |z| > 2: {int(np.sum(np.abs(z) > 2))}"
            )
    if (out / "old.json").exists():
        old = json.loads((out / "old.json").read_text())
        q = np.array([r["q"] for r in old])  # (seed, prob[lower, median, upper], setting, lm)
        e = np.array([r["err"] for r in old])
        sd = q.std(axis=0, ddof=1)
        rms = np.sqrt(np.mean(e**2, axis=0))
        say(f"old sampler (4000 random importance draws), seeds: {len(old)}")
        for j, p in enumerate(("2.5%", "50%", "97.5%")):
            say(
                f"  pooled {p}: seed-to-seed sd median {np.median(sd[j]):.5f} (max "
                f"{sd[j].max():.5f}); its reported MCSE / sd pooled over rows "
                f"{np.sqrt(np.sum(rms[j] ** 2) / np.sum(sd[j] ** 2)):.2f}"
            )
    text = "\n".join(lines)
    print(text)
    (out / "summary.txt").write_text(text + "\n")


def main() -> None:
    what, n, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    if what == "shifts":
        run_shifts(n, out)
    elif what == "fine":
        run_fine(out)
    elif what == "old":
        run_old(n, out)
    summary(out)


if __name__ == "__main__":
    main()
