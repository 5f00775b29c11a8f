"""What informs each setting of a fit, and when a setting lies outside the data.

A threshold row states the arms and patients of its cell (same line and
class, and a uterine fraction within 0.25 of the setting's), how many of
their observations are reported and how many derived, a model-based measure
of information (covariate effects borrow across cells), and flags:

- ``extrapolated``: no arm of the line with a uterine fraction near the
  setting's, no arm of the line and class, or a landmark beyond the latest
  reported rate or median of the line;
- ``rests on 1 arm`` (or none) in the cell.

The model-based measure is the ratio of the posterior to the prior standard
deviation of the setting's pooled logit at the landmark: 1 means the data
say nothing beyond the prior, 0.1 that they have narrowed it tenfold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lmsbayes.errors import OptionError
from lmsbayes.settings import (
    Setting,
    setting_design,
    settings_at,
    shape_group_of,
    standard_settings,
)

if TYPE_CHECKING:  # pragma: no cover
    from lmsbayes.fit import Fit

__all__ = ["setting_evidence", "data_reach", "SITE_TOLERANCE"]

#: Arms whose uterine fraction is within this distance of a setting's share its cell.
SITE_TOLERANCE = 0.25


def data_reach(fit: Fit) -> pd.DataFrame:
    """Per line: the earliest and latest time (months) with a reported rate or median."""
    d = fit.data
    obs = d.obs
    line = (
        d.arms["line"].astype(str).to_numpy()[obs["arm_idx"].to_numpy()]
        if d.table == "lms"
        else np.full(len(obs), "all")
    )
    if "kind" in obs:  # survival: rates at their landmark, medians at the median time
        t = obs["t"].to_numpy(float)
        reported = np.ones(len(obs), dtype=bool)
    else:
        t = obs["landmark"].to_numpy(float)
        reported = (
            obs.get("rate_source", pd.Series("", index=obs.index))
            .astype(str)
            .isin(["reported", "km_text"])
            .to_numpy()
        )
        if (
            d.table == "lms" and "pfs_median_m" in d.arms
        ):  # pragma: no cover - per-landmark arms keep no median
            pass
    rows = []
    for ln in sorted(set(line)):
        sel = (line == ln) & reported & np.isfinite(t)
        rows.append(
            {
                "line": ln,
                "earliest": float(t[sel].min()) if sel.any() else math.nan,
                "latest": float(t[sel].max()) if sel.any() else math.nan,
            }
        )
    return pd.DataFrame(rows)


def _prior_draws(fit: Fit, n: int = 4000, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for p in fit.model.params:
        out[p.name] = p.prior.draw((n, 1, *p.shape), rng)
    return out


def _pooled_logit(
    fit: Fit, values: dict, X: np.ndarray, shape_groups: np.ndarray, landmark: float
) -> np.ndarray:
    """Pooled logit of the settings' rate at a landmark: (draws..., setting)."""
    from lmsbayes.model.families import NUMPY_OPS
    from lmsbayes.targets import drift_row

    m = fit.model
    c = m.canonical(values)
    row = drift_row(fit, None)
    if row.size:  # a drift model's design: the drift at its reference year, as predict's default
        X = np.hstack([X, np.tile(row, (X.shape[0], 1))])
    eta = m.base_predictor(NUMPY_OPS, c, X)
    shape = c["shape"][..., shape_groups] if "shape" in c else None
    d = fit.data
    rate = d.family.rates(eta, [landmark], d.landmarks, shape, fit.spec.model.t_ref)[..., 0]
    rate = np.clip(rate, 1e-12, 1 - 1e-12)
    return np.log(rate) - np.log1p(-rate)


def setting_evidence(
    fit: Fit, settings: Sequence, landmarks: Sequence[float], at=None
) -> pd.DataFrame:
    """What informs each setting at each landmark, and its flags.

    Parameters
    ----------
    fit : Fit
    settings : sequence of Setting or labels
        Labels are looked up among :func:`lmsbayes.settings.standard_settings`; another label
        of an LMS fit is an error (ValueError).
    landmarks : sequence of float
    at : mapping, optional
        Values of the spec's own covariates for the settings (see
        :func:`lmsbayes.predict.predict`); a value outside the included
        arms' range is flagged as an extrapolation.

    Returns
    -------
    pandas.DataFrame
        One row per (setting, landmark): ``arms``, ``patients`` (arms of the
        cell and their patients; ``arms_unknown_site`` with an unknown uterine
        fraction), ``rates_reported``, ``medians``, ``rates_derived``
        (observations of the cell's arms), ``sd_ratio`` (posterior / prior sd
        of the pooled logit), ``flags`` ('' when none).
    """
    d = fit.data
    known = {
        s.label: s
        for s in standard_settings(sorted(set(d.arms["line"])) if d.table == "lms" else ())
    }
    objs = [s if isinstance(s, Setting) else known.get(str(s)) for s in settings]
    if d.table == "lms":
        unknown = [str(s) for s, o in zip(settings, objs) if o is None]
        if unknown:  # never the whole data set's arms under a label this function cannot read
            raise OptionError(
                f"unknown setting {unknown[0]!r}: give a Setting, or one of the labels "
                f"{sorted(known)}"
            )
    filled = settings_at(fit, [s for s in objs if s is not None], at)
    it = iter(filled)
    objs = [None if s is None else next(it) for s in objs]
    user_numeric = {
        name: cdef.column for name, cdef in fit.spec.covariates if cdef.type == "numeric"
    }
    reach = data_reach(fit).set_index("line") if d.table == "lms" else None
    post = fit.draws
    values = {
        p.name: post[p.name].transpose("chain", "draw", *p.dims).values for p in fit.model.params
    }
    prior = _prior_draws(fit)
    arms = d.arms
    obs = d.obs
    # curve arms (lmsbayes.model.curve_arms): their patients, by arm position
    curve_n = {}
    if len(getattr(d, "curve_rows", ())):
        from lmsbayes.model.curve_arms import evidence_label

        counts = d.curve_rows.groupby("arm_idx")["count"].sum()
        curve_n = {int(i): int(n) for i, n in counts.items()}
    rows = []
    for label, s in zip(settings, objs):
        label = s.label if isinstance(label, Setting) else str(label)
        if s is None or d.table != "lms":
            for t in landmarks:
                rows.append(
                    {
                        "setting": label,
                        "landmark": float(t),
                        "arms": len(arms),
                        "patients": float(pd.to_numeric(arms["n"], errors="coerce").sum()),
                        "flags": "",
                        "arm_ids": ", ".join(map(str, arms.index)),
                    }
                )
            continue
        line_sel = arms["line"].astype(str).to_numpy() == s.line
        u = arms["uterine_fraction"].to_numpy(float)
        if s.case_mix:
            cell = line_sel
            unknown = np.zeros(len(arms), dtype=bool)
        else:
            klass = arms["treatment_class"].astype(str).to_numpy() == s.treatment_class
            near = np.isfinite(u) & (np.abs(u - s.uterine) <= SITE_TOLERANCE + 1e-9)
            cell = line_sel & klass & near
            unknown = line_sel & klass & ~np.isfinite(u)
        idx = np.flatnonzero(cell)
        o = obs[np.isin(obs["arm_idx"].to_numpy(), idx)]
        flags_base = []
        if not s.case_mix:
            lu = u[line_sel & np.isfinite(u)]
            if lu.size and s.uterine < lu.min() - 0.05:
                flags_base.append(
                    f"extrapolated: no {s.line} arm with a uterine fraction below {lu.min():.2f}"
                )
            if lu.size and s.uterine > lu.max() + 0.05:
                flags_base.append(
                    f"extrapolated: no {s.line} arm with a uterine fraction above {lu.max():.2f}"
                )
            if not np.any(
                line_sel & (arms["treatment_class"].astype(str).to_numpy() == s.treatment_class)
            ):
                flags_base.append(f"extrapolated: no {s.line} {s.treatment_class} arm")
            for name, column in user_numeric.items():
                v = s.covariates.get(name, s.covariates.get(column))
                have = (
                    pd.to_numeric(arms[column], errors="coerce").to_numpy(float)
                    if column in arms
                    else np.zeros(0)
                )
                have = have[np.isfinite(have)]
                if v is not None and have.size and not (have.min() <= float(v) <= have.max()):
                    flags_base.append(
                        f"extrapolated: {column} {float(v):g} outside the included arms' "
                        f"{have.min():g}-{have.max():g}"
                    )
        n_unknown = int(unknown.sum())
        if len(idx) + n_unknown == 0:
            flags_base.append("no arm in this cell: from covariate effects only")
        elif len(idx) == 1 and n_unknown == 0:
            flags_base.append("rests on 1 arm")
        elif len(idx) <= 1:
            flags_base.append(
                f"rests on {len(idx)} arm{'s' if len(idx) != 1 else ''} of known site "
                f"(+{n_unknown} of unknown uterine fraction)"
            )
        if not s.case_mix:
            X = setting_design(fit, [s])
            groups = shape_group_of(fit, [s])
        for t in landmarks:
            flags = list(flags_base)
            if reach is not None and s.line in reach.index:
                late = reach.at[s.line, "latest"]
                if np.isfinite(late) and t > late * 1.05:
                    flags.append(
                        f"extrapolated: landmark beyond the latest {s.line} rate or median "
                        f"({late:.1f} mo)"
                    )
            if "kind" in o:
                rates_rep = int((o["kind"] == "rate").sum())
                medians = int((o["kind"] == "median").sum())
                derived = 0
            else:
                at = o[o["landmark"] == t]
                derived = int((at["rate_source"] == "exponential").sum())
                rates_rep = int(len(at) - derived)
                medians = 0
            ratio = math.nan
            if not s.case_mix:
                post_l = _pooled_logit(fit, values, X, groups, t).ravel()
                prior_l = _pooled_logit(fit, prior, X, groups, t).ravel()
                ratio = float(np.std(post_l) / np.std(prior_l)) if np.std(prior_l) > 0 else math.nan
            rows.append(
                {
                    "setting": label,
                    "landmark": float(t),
                    "arms": int(len(idx)),
                    "patients": float(pd.to_numeric(arms["n"].iloc[idx], errors="coerce").sum()),
                    "arms_unknown_site": int(unknown.sum()),
                    "rates_reported": rates_rep,
                    "medians": medians,
                    "rates_derived": derived,
                    "sd_ratio": ratio,
                    "flags": "; ".join(flags),
                    "arm_ids": ", ".join(map(str, arms.index[idx])),
                }
            )
            if curve_n:  # only with curve arms: a fit without them reports what it did
                rows[-1]["curves"] = "; ".join(
                    f"{arms.index[i]}: {evidence_label(curve_n[i])}" for i in idx if i in curve_n
                )
    return pd.DataFrame(rows)
