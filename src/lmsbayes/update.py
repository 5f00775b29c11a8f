"""What a newly published trial changes: refit with added arms and show every difference.

:func:`update` reads the added arms with the same validation as the bundled table
(:func:`lmsbayes.data.load_trials`: the arm table and, if present, its rates table),
refuses an ``arm_id`` the base table already has or a regimen label that names a
combination another label already names, fits the spec before and after, and
returns the difference in every threshold row, in the MAP priors (with their ESS)
of the added arms' lines, and in the spec's leave-future-out summary. The
leave-future-out after the addition reuses every fold whose training and held-out
arms did not change (:func:`lmsbayes.validate.lfo` with ``reuse``), so a trial
published after all others costs one refit.
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lmsbayes.data import DataValidationError, Problem, Trials, load_trials, role_regimen_problems
from lmsbayes.errors import OptionError

__all__ = ["Update", "combine", "update"]


def combine(base: Trials, added: Trials) -> Trials:
    """The base tables with the added arms (and their rates) appended.

    Raises
    ------
    DataValidationError
        An added ``arm_id`` is already in the base table, or an added regimen label names
        a combination the base table labels otherwise; each problem names the added
        file, row, column and value.
    """
    file = added.files[0] if added.files else "added arms"
    problems = []
    known = set(base.arms["arm_id"].astype(str))
    for i, a in enumerate(added.arms["arm_id"].astype(str)):
        if a in known:
            problems.append(
                Problem(
                    file,
                    i + 2,
                    a,
                    "arm_id",
                    a,
                    f"arm_id {a!r} is already in "
                    f"{base.files[0] if base.files else 'the base table'}"
                    " (an added arm needs a new arm_id; to correct an arm, edit the table)",
                )
            )
    if "regimen" in base.arms and "regimen" in added.arms:
        reg = pd.concat([base.arms["regimen"], added.arms["regimen"]], ignore_index=True)
        cells = ["" if pd.isna(v) else str(v) for v in reg]
        nb = len(base.arms)
        for i, col, message in role_regimen_problems(
            [""] * len(cells), cells, row_name=lambda j: f"row {j + 2} of the base table"
        ):
            if i >= nb:
                row = i - nb
                problems.append(
                    Problem(
                        file, row + 2, str(added.arms["arm_id"].iloc[row]), col, cells[i], message
                    )
                )
    if problems:
        raise DataValidationError(problems)
    arms = pd.concat([base.arms, added.arms], ignore_index=True)
    for col in base.arms.columns:  # categoricals stay categoricals (same categories on both)
        if isinstance(base.arms[col].dtype, pd.CategoricalDtype):
            arms[col] = arms[col].astype(base.arms[col].dtype)
    rates = pd.concat([base.rates, added.rates], ignore_index=True)
    for col in base.rates.columns:
        if isinstance(base.rates[col].dtype, pd.CategoricalDtype):
            rates[col] = rates[col].astype(base.rates[col].dtype)
    sha = hashlib.sha256((base.sha256 + added.sha256).encode()).hexdigest()
    return Trials(arms=arms, rates=rates, sha256=sha, files=(*base.files, *added.files))


@dataclass(frozen=True)
class Update:
    """Before and after adding arms.

    Attributes
    ----------
    spec : str
    added : pandas.DataFrame
        The added arms (arm table rows).
    entered : list of str
        Added arms that enter the spec's model (the others are excluded, with a reason
        in ``excluded``).
    excluded : pandas.DataFrame
        Exclusions of added arms (arm_id, reason).
    thresholds : pandas.DataFrame
        One row per threshold row (setting, landmark, hr): p0 and p1 with their 95%
        CrIs before and after, and the changes ``d_p0``, ``d_p1``.
    priors : pandas.DataFrame
        MAP priors of the added arms' lines (setting, landmark): mean, sd and ELIR ESS
        before and after, and the mixtures.
    lfo : pandas.DataFrame
        The spec's leave-future-out summary before and after (rows ``before``,
        ``after``), with ``refits`` (folds refitted) and ``reused``.
    seconds : dict
        Wall time of each step.
    """

    spec: str
    added: pd.DataFrame
    entered: list
    excluded: pd.DataFrame
    thresholds: pd.DataFrame
    priors: pd.DataFrame
    lfo: pd.DataFrame
    seconds: dict

    def format(self) -> str:
        """The differences as printable text."""
        return _format(self)


def _threshold_rows(fit, landmarks, at) -> pd.DataFrame:
    from lmsbayes.predict import threshold_table, thresholds

    ds = thresholds(fit, landmarks=landmarks, at=dict(at or {}))
    t = pd.DataFrame(threshold_table(ds, fit=fit))
    keep = [
        "setting",
        "landmark",
        "hr",
        "p0",
        "p0_lower",
        "p0_upper",
        "p1",
        "p1_lower",
        "p1_upper",
        "arms",
    ]
    return t[keep]


def _priors(fit, settings, landmarks) -> pd.DataFrame:
    from lmsbayes.prior import ess, map_prior

    rows = []
    for s in settings:
        for lm in landmarks:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # EM notes; the mixture is shown with its ESS
                mix = map_prior(fit, s, lm)
                try:
                    elir = float(ess(mix, "elir"))
                except ValueError:
                    elir = math.nan
            rows.append(
                {
                    "setting": s.label,
                    "landmark": float(lm),
                    "mean": float(mix.mean()),
                    "sd": float(mix.sd()),
                    "ess": elir,
                    "mixture": repr(mix),
                }
            )
    return pd.DataFrame(rows)


def update(
    added,
    base=None,
    spec="default",
    *,
    landmarks: Sequence[float] | None = None,
    at: dict | None = None,
    priors: str = "rt",
    lfo: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Update:
    """Refit ``spec`` with the ``added`` arms and compare with the fit without them.

    Parameters
    ----------
    added : Trials or path
        The new arms: a path is read with :func:`lmsbayes.data.load_trials` (its rates
        table ``NAME_rates.csv`` beside it, if any), with every check of the bundled table.
    base : Trials, path or None
        The table the arms are added to (None: the bundled data).
    spec : ModelSpec or str
        The spec whose thresholds, MAP priors and leave-future-out are compared.
    landmarks : sequence of float, optional
        Threshold landmarks (default: the spec's).
    at : dict, optional
        Covariate values of the settings (e.g. ``{"year": 2027}`` for a spec with a trend).
    priors : {'rt', 'line', 'none'}
        MAP priors compared, for each line of an added arm that enters: 'rt' the R-T
        setting (50% uterine: a control arm of a recommended regimen; default), 'line'
        also the line's case mix and NR-T, 'none' no priors (each costs about 1.5 s of CPU).
    lfo : bool
        Whether to compare the leave-future-out summary.
    progress : callable, optional

    Returns
    -------
    Update
    """
    from lmsbayes.fit import fit
    from lmsbayes.future import summarize
    from lmsbayes.model.prepare import prepare_data
    from lmsbayes.predict import Setting
    from lmsbayes.spec import ModelSpec, load_spec
    from lmsbayes.validate import lfo as run_lfo

    say = progress or (lambda _m: None)
    secs: dict[str, float] = {}
    t0 = time.perf_counter()
    base_t = base if isinstance(base, Trials) else load_trials(base)
    new_t = added if isinstance(added, Trials) else load_trials(added)
    both = combine(base_t, new_t)
    sp = spec if isinstance(spec, ModelSpec) else load_spec(spec)
    secs["read"] = time.perf_counter() - t0
    t = time.perf_counter()
    d_before, d_after = prepare_data(sp, base_t), prepare_data(sp, both)
    ids = list(new_t.arms["arm_id"].astype(str))
    entered = [a for a in ids if a in set(d_after.arms.index)]
    exc = d_after.excluded
    excluded = exc[exc["arm_id"].isin(ids)][["arm_id", "reason"]].drop_duplicates("arm_id")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # diagnostics are kept on the fits
        f_before = fit(sp, d_before)
        f_after = fit(sp, d_after) if entered else f_before  # nothing enters: nothing changes
    secs["fits"] = time.perf_counter() - t
    say(f"refitted {sp.name!r} with {len(entered)} of {len(ids)} added arms")
    t = time.perf_counter()
    lm = list(landmarks) if landmarks else list(sp.landmarks)
    tb, ta = _threshold_rows(f_before, lm, at), _threshold_rows(f_after, lm, at)
    key = ["setting", "landmark", "hr"]
    thr = tb.merge(ta, on=key, how="left", suffixes=("_before", "_after"))  # the table's order
    thr["d_p0"] = thr["p0_after"] - thr["p0_before"]
    thr["d_p1"] = thr["p1_after"] - thr["p1_before"]
    secs["thresholds"] = time.perf_counter() - t
    t = time.perf_counter()
    pri = pd.DataFrame()
    if priors not in ("rt", "line", "none"):
        raise OptionError(f"priors must be 'rt', 'line' or 'none', got {priors!r}")
    if priors != "none" and entered and d_after.table == "lms":
        lines = sorted(set(d_after.arms.loc[entered, "line"].astype(str)))
        settings = []
        for ln in lines:
            settings += [Setting(ln, "R-T", 0.5, name=f"{ln} R-T")]
            if priors == "line":
                settings += [Setting.standardised(ln), Setting(ln, "NR-T", 0.5, name=f"{ln} NR-T")]
        if at:
            settings = [s.with_covariates(**at) for s in settings]
        pb, pa = _priors(f_before, settings, lm), _priors(f_after, settings, lm)
        pri = pb.merge(pa, on=["setting", "landmark"], suffixes=("_before", "_after"))
    secs["priors"] = time.perf_counter() - t
    t = time.perf_counter()
    lfo_tab = pd.DataFrame()
    if lfo:
        vb = run_lfo(sp, d_before)
        va = run_lfo(sp, d_after, start=vb.year, reuse=vb) if entered else vb
        col = "elpd_survival" if "elpd_survival" in vb.arms else "elpd"
        rows = []
        for name, v in (("before", vb), ("after", va)):
            s = summarize(v.obs, v.arms, col)
            refits = int((~v.folds.get("reused", pd.Series(False, index=v.folds.index))).sum())
            rows.append({"": name, **s, "refits": refits, "start": v.year})
        lfo_tab = pd.DataFrame(rows).set_index("")
    secs["lfo"] = time.perf_counter() - t
    secs["total"] = time.perf_counter() - t0
    return Update(
        spec=sp.name,
        added=new_t.arms,
        entered=entered,
        excluded=excluded.reset_index(drop=True),
        thresholds=thr,
        priors=pri,
        lfo=lfo_tab,
        seconds=secs,
    )


# ============================================================================ text


def _ci(p, lo, hi) -> str:
    return "" if np.isnan(p) else f"{p:.2f} ({lo:.2f}-{hi:.2f})"


def _format(u: Update) -> str:
    n = len(u.added)
    lines = [
        f"lmsbayes update - spec {u.spec!r}: {n} arm{'s' if n != 1 else ''} added "
        f"({', '.join(u.added['arm_id'].astype(str))}); {len(u.entered)} enter the model"
    ]
    for _, r in u.excluded.iterrows():
        lines.append(f"  {r['arm_id']} does not enter: {r['reason']}")
    t = u.thresholds
    tab = pd.DataFrame(
        {
            "setting": t["setting"],
            "landmark": [f"{x:g} mo" for x in t["landmark"]],
            "HR": [f"{x:g}" for x in t["hr"]],
            "p0 before": [
                _ci(*r) for r in t[["p0_before", "p0_lower_before", "p0_upper_before"]].to_numpy()
            ],
            "p0 after": [
                _ci(*r) for r in t[["p0_after", "p0_lower_after", "p0_upper_after"]].to_numpy()
            ],
            "change p0": [f"{x:+.3f}" for x in t["d_p0"]],
            "p1 before": [
                _ci(*r) for r in t[["p1_before", "p1_lower_before", "p1_upper_before"]].to_numpy()
            ],
            "p1 after": [
                _ci(*r) for r in t[["p1_after", "p1_lower_after", "p1_upper_after"]].to_numpy()
            ],
            "change p1": [f"{x:+.3f}" for x in t["d_p1"]],
            "arms": [f"{int(a)} -> {int(b)}" for a, b in zip(t["arms_before"], t["arms_after"])],
        }
    )
    lines += ["", "1. Every threshold row, before and after", tab.to_string(index=False)]
    if len(u.priors):
        p = u.priors
        pt = pd.DataFrame(
            {
                "setting": p["setting"],
                "landmark": [f"{x:g} mo" for x in p["landmark"]],
                "mean (sd) before": [
                    f"{m:.3f} ({s:.3f})" for m, s in zip(p["mean_before"], p["sd_before"])
                ],
                "ESS before": [f"{x:.1f}" for x in p["ess_before"]],
                "mean (sd) after": [
                    f"{m:.3f} ({s:.3f})" for m, s in zip(p["mean_after"], p["sd_after"])
                ],
                "ESS after": [f"{x:.1f}" for x in p["ess_after"]],
                "change ESS": [f"{b - a:+.1f}" for a, b in zip(p["ess_before"], p["ess_after"])],
            }
        )
        lines += [
            "",
            "2. MAP priors (Beta mixtures fitted to a new trial's predictive rate) of the added "
            "arms' lines; ESS by ELIR",
            pt.to_string(index=False),
        ]
    if len(u.lfo):
        lf = u.lfo
        rows = []
        for name, r in lf.iterrows():
            rows.append(
                {
                    "": name,
                    "arms": int(r["arms"]),
                    "obs": int(r["obs"]),
                    **{
                        f"cov {100 * lv:g}%": f"{r[f'cov{100 * lv:g}']:.2f} "
                        f"({r[f'cov{100 * lv:g}_lo']:.2f}-{r[f'cov{100 * lv:g}_hi']:.2f})"
                        for lv in (0.5, 0.8, 0.9, 0.95)
                    },
                    "IS90": f"{r['is90']:.2f}",
                    "ELPD (se)": f"{r['elpd']:.1f} ({r['elpd_se']:.1f})",
                    "refits": int(r["refits"]),
                }
            )
        lines += [
            "",
            f"3. Leave-future-out of {u.spec!r} (first training set up to "
            f"{int(lf['start'].iloc[0])}); "
            "after: folds whose arms did not change are reused",
            pd.DataFrame(rows).to_string(index=False),
        ]
    s = u.seconds
    lines += [
        "",
        "time: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in s.items() if k != "total")
        + f"; total {s['total']:.1f} s",
    ]
    return "\n".join(lines)
