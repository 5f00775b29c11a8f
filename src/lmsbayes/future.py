"""Leave-future-out comparison of specs, the rule that chooses among them, and its honest check.

Every number lmsbayes gives is for a future trial, so specs are compared by how well
they predicted the arms published after their training data (one-step-ahead
leave-future-out, :func:`lmsbayes.validate.lfo`). This module

- scores several specs on the same held-out arms (:func:`compare_future`): coverage of
  the central 50/80/90/95% intervals with Clopper-Pearson limits, the interval score
  of the 90% interval (Gneiting & Raftery 2007) on the reporting scale (logit rate, log
  months), ELPD with its se, overall and split by the arm's role in its trial;
- applies the rule of docs/validation.md section 5 (:func:`choose`): 90% coverage
  inside its Clopper-Pearson interval as a precondition, then the 2-se ELPD rule
  against the incumbent;
- applies the same rule pseudo-prospectively (at each year, choose from the arms
  scored before it, and score that year's arms by the choice), since the winner's own
  coverage is optimistic;
- reports stacking weights on the leave-future-out predictive densities (Yao, Vehtari,
  Simpson & Gelman 2018) and which arms the chosen spec misses.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lmsbayes.spec import ModelSpec, load_spec
from lmsbayes.validate import (
    LEVELS,
    Validation,
    ValidationError,
    coverage_interval,
    lfo,
)
from lmsbayes.validate import paired_difference as _paired_diff
from lmsbayes.validate import total_and_se as _total


def _spec(spec) -> ModelSpec:
    return spec if isinstance(spec, ModelSpec) else load_spec(spec)


__all__ = [
    "FUTURE_SPECS",
    "MIN_SCORED",
    "Choice",
    "FutureComparison",
    "choose",
    "compare_future",
    "stacking_weights",
    "summarize",
]

#: Specs ``lmsbayes validate --future`` compares when none is named (those that exist).
FUTURE_SPECS = (
    "default",
    "time_trend",
    "regimen",
    "drift",
    "regimen_drift",
    "student_t",
    "age_discount",
    "era",
)
#: The pseudo-prospective choice keeps the incumbent until this many arms have been scored.
MIN_SCORED = 5
#: ELPD differences within this are ties (go to the spec with fewer parameters).
TIE = 0.1
_ROLE_GROUP = {
    "single_arm": "single_arm",
    "experimental": "experimental",
    "control": "control",
    "noncomparative": "other randomised",
    "calibration": "other randomised",
}


def _elpd_column(v: Validation) -> str:
    return "elpd_survival" if "elpd_survival" in v.arms else "elpd"


def summarize(obs: pd.DataFrame, arms: pd.DataFrame, elpd_column: str = "elpd") -> dict:
    """Coverage, interval score and ELPD of a set of held-out observations and their arms.

    Parameters
    ----------
    obs : pandas.DataFrame
        Rows of :attr:`Validation.obs` (``pit``, ``lo*``, ``hi*``, ``is*``, ``kind``).
    arms : pandas.DataFrame
        Rows of :attr:`Validation.arms` (the ELPD column).
    elpd_column : str

    Returns
    -------
    dict
        ``arms``, ``obs``; per level ``covNN``, ``covNN_k``, ``covNN_lo``, ``covNN_hi``;
        ``is90`` (mean interval score of the 90% interval) and ``is90_se``; ``elpd``,
        ``elpd_se``; ``width90_rate`` (median width of the 90% interval of a rate, in
        probability) and ``width90_median`` (median ratio hi / lo of a median's interval).
    """
    out: dict = {"arms": len(arms), "obs": len(obs)}
    pit = obs["pit"].to_numpy(float)
    for lv in LEVELS:
        key = f"cov{100 * lv:g}"
        k = int((np.abs(pit - 0.5) <= lv / 2).sum())
        lo, hi = coverage_interval(k, pit.size)
        out[key] = k / pit.size if pit.size else math.nan
        out[key + "_k"], out[key + "_lo"], out[key + "_hi"] = k, lo, hi
    s = obs["is90"].to_numpy(float) if "is90" in obs else np.full(len(obs), math.nan)
    s = s[np.isfinite(s)]
    out["is90"] = float(s.mean()) if s.size else math.nan
    out["is90_se"] = float(s.std(ddof=1) / math.sqrt(s.size)) if s.size > 1 else math.nan
    out["elpd"], out["elpd_se"] = _total(arms[elpd_column].to_numpy(float))
    if "lo90" in obs and len(obs):
        rate = (obs["kind"] == "rate").to_numpy()
        lo, hi = obs["lo90"].to_numpy(float), obs["hi90"].to_numpy(float)
        wr = 1 / (1 + np.exp(-hi[rate])) - 1 / (1 + np.exp(-lo[rate]))
        wm = np.exp(hi[~rate] - lo[~rate])
        out["width90_rate"] = float(np.nanmedian(wr)) if wr.size else math.nan
        out["width90_median"] = float(np.nanmedian(wm)) if wm.size else math.nan
    else:
        out["width90_rate"] = out["width90_median"] = math.nan
    return out


def _n_params(v: Validation) -> int:
    return int(sum(np.prod(np.shape(x)[1:]) for x in v.draws[0].values())) if v.draws else 0


@dataclass(frozen=True)
class Choice:
    """The spec the rule chooses, and why (one line)."""

    spec: str
    reason: str
    eligible: tuple[str, ...]


def choose(
    validations: dict[str, Validation], incumbent: str, arms: Sequence[str] | None = None
) -> Choice:
    """The rule of docs/validation.md section 5, on the held-out ``arms`` (default: all scored).

    A spec is eligible when the Clopper-Pearson 95% interval of its 90% coverage contains
    0.90. An eligible incumbent stays unless an eligible challenger's ELPD exceeds it by
    more than 2 se of the paired per-arm difference (then the best such challenger); a
    non-eligible incumbent is replaced by the eligible spec with the highest ELPD unless
    that spec's ELPD is below the incumbent's by more than 2 se; with no eligible spec the
    incumbent stays. Ties (within 0.1) go to the spec with fewer parameters.
    """
    if incumbent not in validations:
        raise ValidationError(f"incumbent {incumbent!r} is not among {list(validations)}")
    keep = None if arms is None else set(arms)
    stats, per_arm = {}, {}
    for name, v in validations.items():
        a = v.arms if keep is None else v.arms[v.arms.index.isin(keep)]
        o = v.obs if keep is None else v.obs[v.obs["arm"].isin(keep)]
        stats[name] = summarize(o, a, _elpd_column(v))
        per_arm[name] = a[_elpd_column(v)]
    eligible = tuple(
        n for n, s in stats.items() if s["obs"] and s["cov90_lo"] <= 0.9 <= s["cov90_hi"]
    )

    def diff(a: str, b: str) -> tuple[float, float]:
        d, se, _ = _paired_diff(per_arm[a], per_arm[b])
        return d, (0.0 if math.isnan(se) else se)

    def best(names):
        top = max(stats[n]["elpd"] for n in names)
        tied = [n for n in names if stats[n]["elpd"] >= top - TIE]
        return min(tied, key=lambda n: (_n_params(validations[n]), n))

    inc = stats[incumbent]
    cov = f"90% coverage {inc['cov90']:.2f} ({inc['cov90_lo']:.2f}-{inc['cov90_hi']:.2f})"
    if incumbent in eligible:
        better = [
            c
            for c in eligible
            if c != incumbent and diff(c, incumbent)[0] > 2 * diff(c, incumbent)[1]
        ]
        if not better:
            return Choice(
                incumbent,
                f"{incumbent!r} stays: calibrated ({cov}) and no calibrated spec beats its "
                "ELPD by more than 2 se",
                eligible,
            )
        c = best(better)
        d, se = diff(c, incumbent)
        return Choice(
            c,
            f"{c!r}: calibrated and ELPD {d:+.1f} (se {se:.1f}) over {incumbent!r}",
            eligible,
        )
    if eligible:
        c = best(eligible)
        d, se = diff(c, incumbent)
        if d >= -2 * se:
            s = stats[c]
            return Choice(
                c,
                f"{c!r}: {incumbent!r} is not calibrated ({cov}); {c!r} is (90% coverage "
                f"{s['cov90']:.2f}, {s['cov90_lo']:.2f}-{s['cov90_hi']:.2f}) with the highest "
                f"ELPD of the calibrated specs ({d:+.1f}, se {se:.1f}, vs {incumbent!r})",
                eligible,
            )
    return Choice(
        incumbent,
        f"{incumbent!r} stays, NOT calibrated ({cov}): no spec's 90% coverage reaches 0.90 "
        "within its Clopper-Pearson interval",
        eligible,
    )


def stacking_weights(lpd: pd.DataFrame, iterations: int = 2000) -> pd.Series:
    """Stacking weights maximising ``sum_i log sum_k w_k exp(lpd_ik)`` (Yao et al. 2018).

    ``lpd``: one column per spec, one row per held-out arm (log predictive densities).
    Solved by the EM fixed point ``w_k <- mean_i w_k p_ik / sum_j w_j p_ij``, which
    increases the objective at every step.
    """
    x = lpd.dropna().to_numpy(float)
    if x.size == 0:
        return pd.Series(math.nan, index=lpd.columns)
    p = np.exp(x - x.max(axis=1, keepdims=True))
    w = np.full(x.shape[1], 1 / x.shape[1])
    for _ in range(iterations):
        r = p * w
        r /= r.sum(axis=1, keepdims=True)
        w_new = r.mean(axis=0)
        if np.max(np.abs(w_new - w)) < 1e-10:
            w = w_new
            break
        w = w_new
    return pd.Series(w, index=lpd.columns)


@dataclass(frozen=True)
class FutureComparison:
    """Several specs scored by one-step-ahead leave-future-out on the same arms.

    Attributes
    ----------
    validations : dict of str to Validation
    table : pandas.DataFrame
        One row per spec: :func:`summarize` of every scored arm, ``elpd_diff`` and
        ``elpd_diff_se`` (vs the incumbent, paired per arm), ``is90_diff`` and
        ``is90_diff_se`` (paired per observation), ``eligible``, ``stacking_weight``,
        ``seconds``, ``fits``, ``max_khat``.
    by_role : pandas.DataFrame
        One row per (spec, role group): :func:`summarize` of the arms of that role.
    choice : Choice
    prospective : pandas.DataFrame
        One row per scored year: the spec chosen from the arms scored before it, and why.
    prospective_summary : dict
        :func:`summarize` of every arm scored by the pseudo-prospective choice.
    missed : pandas.DataFrame
        The chosen spec's observations outside their 90% interval.
    incumbent : str
    start : int
    seconds : float
    """

    validations: dict
    table: pd.DataFrame
    by_role: pd.DataFrame
    choice: Choice
    prospective: pd.DataFrame
    prospective_summary: dict
    missed: pd.DataFrame
    incumbent: str
    start: int
    seconds: float

    def format(self) -> str:
        """The comparison as printable text."""
        return _format(self)


def _prospective(vals: dict[str, Validation], incumbent: str, ref: Validation):
    rows, o_parts, a_parts = [], [], []
    years = list(ref.folds["fold"])
    for y in years:
        earlier = list(ref.arms.index[ref.arms["fold"].astype(int) < int(y)])
        if len(earlier) < MIN_SCORED:
            c = Choice(incumbent, f"fewer than {MIN_SCORED} arms scored before {y}: incumbent", ())
        else:
            c = choose(vals, incumbent, earlier)
        v = vals[c.spec]
        a = v.arms[v.arms["fold"] == y]
        o = v.obs[v.obs["fold"] == y]
        rows.append(
            {
                "year": int(y),
                "scored_before": len(earlier),
                "chosen": c.spec,
                "arms": len(a),
                "reason": c.reason,
            }
        )
        a_parts.append(a.assign(elpd_chosen=a[_elpd_column(v)]))
        o_parts.append(o)
    arms = pd.concat(a_parts)
    obs = pd.concat(o_parts, ignore_index=True)
    return pd.DataFrame(rows), summarize(obs, arms, "elpd_chosen")


def _missed(v: Validation) -> pd.DataFrame:
    o = v.obs[~v.obs["in_90"]].copy()
    if o.empty:
        return o
    extra = [c for c in ("year", "line", "role", "regimen") if c in v.arms and c not in o]
    o = o.merge(v.arms[extra], left_on="arm", right_index=True, how="left")
    nat = o["kind"] == "rate"

    def back(x):
        return np.where(nat, 1 / (1 + np.exp(-x)), np.exp(x))

    o["lo90_value"], o["hi90_value"] = back(o["lo90"]), back(o["hi90"])
    o["direction"] = np.where(o["pit"] > 0.5, "better than predicted", "worse than predicted")
    cols = [c for c in ("arm", "year", "line", "role", "regimen", "kind", "t", "value") if c in o]
    cols += ["lo90_value", "hi90_value", "pit", "direction"]
    return o[cols].reset_index(drop=True)


def compare_future(
    specs: Iterable = FUTURE_SPECS,
    data=None,
    *,
    incumbent: str | None = None,
    start: int | None = None,
    engine: str | None = None,
    draws: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> FutureComparison:
    """Score specs by leave-future-out and choose by the rule.

    Then check the choice pseudo-prospectively.

    Parameters
    ----------
    specs : iterable of ModelSpec or str
        Default: those of :data:`FUTURE_SPECS` that exist as bundled specs.
    data : Trials, DataFrame, path or None
        The input tables (None: the bundled data).
    incumbent : str, optional
        The spec the rule keeps unless beaten (default: the first).
    start : int, optional
        Last year of the first training set (default :func:`lmsbayes.validate.lfo_start`).
    engine, draws, progress
        As in :func:`lmsbayes.validate.lfo`.

    Returns
    -------
    FutureComparison

    Raises
    ------
    ValidationError
        When the specs do not hold out the same arms (no common comparison).
    """
    t0 = time.perf_counter()
    specs = [_spec(s) for s in specs]
    names = [s.name for s in specs]
    if not specs or len(set(names)) < len(names):
        raise ValidationError(f"compare_future needs distinct specs, got {names}")
    incumbent = names[0] if incumbent is None else incumbent
    if incumbent not in names:
        raise ValidationError(f"incumbent must be one of {names}, got {incumbent!r}")
    vals = {}
    for s in specs:
        vals[s.name] = lfo(s, data, start=start, engine=engine, draws=draws, progress=progress)
        start = vals[s.name].year if start is None else start
    ref = vals[incumbent]
    for n, v in vals.items():
        if set(v.arms.index) != set(ref.arms.index) or list(v.folds["fold"]) != list(
            ref.folds["fold"]
        ):
            raise ValidationError(
                f"spec {n!r} holds out other arms than {incumbent!r}: leave-future-out "
                "compares specs on the same arms (same [data] filters)"
            )
    rows = []
    lpd = pd.DataFrame({n: v.arms[_elpd_column(v)] for n, v in vals.items()})
    weights = stacking_weights(lpd)
    choice = choose(vals, incumbent)
    key = ["arm", "kind", "t"]
    ref_is = ref.obs.set_index(key)["is90"]
    for n, v in vals.items():
        s = summarize(v.obs, v.arms, _elpd_column(v))
        d, se, _ = _paired_diff(v.arms[_elpd_column(v)], ref.arms[_elpd_column(ref)])
        di, sei, _ = _paired_diff(v.obs.set_index(key)["is90"], ref_is)
        rows.append(
            {
                "spec": n,
                **s,
                "elpd_diff": d,
                "elpd_diff_se": se,
                "is90_diff": di / max(len(v.obs), 1),
                "is90_diff_se": sei / max(len(v.obs), 1),
                "eligible": n in choice.eligible,
                "stacking_weight": float(weights[n]),
                "seconds": v.seconds,
                "fits": len(v.folds),
                "max_khat": float(v.folds["khat"].max()),
                "refits_with_problems": int((v.folds["problems"] != "").sum()),
            }
        )
    table = pd.DataFrame(rows).set_index("spec")
    role_rows = []
    for n, v in vals.items():
        group = (
            v.arms["role"].map(_ROLE_GROUP).fillna("unknown")
            if "role" in v.arms
            else pd.Series("unknown", index=v.arms.index)
        )
        for g in ("single_arm", "experimental", "control", "other randomised", "unknown"):
            ids = set(group.index[group == g])
            if not ids:
                continue
            s = summarize(v.obs[v.obs["arm"].isin(ids)], v.arms.loc[sorted(ids)], _elpd_column(v))
            role_rows.append({"spec": n, "role": g, **s})
    prospective, p_summary = _prospective(vals, incumbent, ref)
    return FutureComparison(
        validations=vals,
        table=table,
        by_role=pd.DataFrame(role_rows),
        choice=choice,
        prospective=prospective,
        prospective_summary=p_summary,
        missed=_missed(vals[choice.spec]),
        incumbent=incumbent,
        start=int(ref.year),
        seconds=time.perf_counter() - t0,
    )


# ============================================================================ text


def _cov(s: dict, lv: float) -> str:
    key = f"cov{100 * lv:g}"
    if not s["obs"]:
        return ""
    return f"{s[key]:.2f} ({s[key + '_lo']:.2f}-{s[key + '_hi']:.2f})"


def _pm(x: float, se: float, signed: bool = False) -> str:
    if math.isnan(x):
        return ""
    v = f"{x:+.2f}" if signed else f"{x:.2f}"
    return v if math.isnan(se) else f"{v} ({se:.2f})"


def _pm1(x: float, se: float, signed: bool = False) -> str:
    if math.isnan(x):
        return ""
    v = f"{x:+.1f}" if signed else f"{x:.1f}"
    return v if math.isnan(se) else f"{v} ({se:.1f})"


def _row(name: str, s: dict) -> dict:
    return {
        "spec": name,
        "arms": s["arms"],
        "obs": s["obs"],
        **{f"cov {100 * lv:g}%": _cov(s, lv) for lv in LEVELS},
        "IS90 (se)": _pm(s["is90"], s["is90_se"]),
        "ELPD (se)": _pm1(s["elpd"], s["elpd_se"]),
    }


def _format(fc: FutureComparison) -> str:
    t = fc.table
    ref = fc.validations[fc.incumbent]
    years = list(ref.folds["fold"])
    lines = [
        (
            f"lmsbayes validate --future - leave-future-out, one step ahead: fit to the arms "
            f"published before each year {years[0]}-{years[-1]}, predict that year's arms "
            f"(first training set: arms up to {fc.start}); each arm predicted as a new trial of "
            "its size at its covariates"
        ),
        "",
        (
            "1. All scored arms (coverage of central predictive intervals with Clopper-Pearson "
            "95% CI; IS90 = mean interval score of the 90% interval, logit rate / log months, "
            "lower is better; ELPD on medians (log months) and rates (logit))"
        ),
    ]
    main = pd.DataFrame([_row(n, r.to_dict()) for n, r in t.iterrows()])
    main[f"ELPD diff vs {fc.incumbent!r} (se)"] = [
        _pm1(r["elpd_diff"], r["elpd_diff_se"], True) for _, r in t.iterrows()
    ]
    main["IS90 diff (se)"] = [_pm(r["is90_diff"], r["is90_diff_se"], True) for _, r in t.iterrows()]
    main["calibrated"] = ["yes" if e else "no" for e in t["eligible"]]
    main["stacking w"] = [f"{w:.2f}" for w in t["stacking_weight"]]
    lines.append(main.to_string(index=False))
    w = pd.DataFrame(
        {
            "spec": t.index,
            "90% width, rates (median, probability)": [f"{x:.2f}" for x in t["width90_rate"]],
            "90% width, medians (median hi/lo ratio)": [f"{x:.1f}" for x in t["width90_median"]],
        }
    )
    lines += ["", "2. Median widths of the 90% predictive intervals", w.to_string(index=False)]
    br = fc.by_role
    role_tab = pd.DataFrame(
        [{"role": r["role"], **_row(r["spec"], r.to_dict())} for _, r in br.iterrows()]
    )
    lines += [
        "",
        (
            "3. By the arm's role in its trial (data/README.md 2a; control arms are few: "
            "reported, not tested)"
        ),
        role_tab.to_string(index=False),
    ]
    ps = fc.prospective_summary
    pros = fc.prospective[["year", "scored_before", "chosen", "arms"]]
    lines += [
        "",
        (
            "4. Pseudo-prospective: at each year the rule chooses from the arms scored before it "
            "only, and that year's arms are scored by the choice"
        ),
        pros.to_string(index=False),
        pd.DataFrame([_row("pseudo-prospective", ps)]).to_string(index=False),
    ]
    lines += ["", f"choice (docs/validation.md section 5): {fc.choice.reason}"]
    if len(fc.missed):
        m = fc.missed.copy()
        m["90% interval"] = [
            f"{a:.2f}-{b:.2f}" if k == "rate" else f"{a:.1f}-{b:.1f} mo"
            for a, b, k in zip(m["lo90_value"], m["hi90_value"], m["kind"])
        ]
        cols = [
            c for c in ("arm", "year", "line", "role", "regimen", "kind", "t", "value") if c in m
        ]
        lines += [
            "",
            f"5. Observations outside the 90% interval of {fc.choice.spec!r}",
            m[[*cols, "90% interval", "direction"]].to_string(index=False),
        ]
    fits = ", ".join(
        f"{n} {r['seconds']:.1f} s ({int(r['fits'])} fits, max k-hat {r['max_khat']:.2f})"
        for n, r in t.iterrows()
    )
    lines += ["", f"time: {fc.seconds:.1f} s in all; {fits}"]
    bad = t[t["refits_with_problems"] > 0]
    if len(bad):
        lines.append(
            "inference problems in refits: "
            + ", ".join(f"{n} {int(k)}" for n, k in bad["refits_with_problems"].items())
        )
    return "\n".join(lines)
