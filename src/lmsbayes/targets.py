"""What a prediction predicts: the historical average, a new arm of a named regimen, a new regimen.

A rate for a future trial answers one of three questions, and they differ:

- ``Target.average()``: the historical average of a setting (EORTC-comparable:
  the pooled rate over today's case mix, or of a defined setting), the p0 of
  version 0.1 and of EORTC 2021;
- ``Target.new_arm("doxorubicin", year=2027)``: a new arm of a known regimen
  at a year (a control arm's MAP prior). Its mean is the regimen's own effect
  (v of that regimen, where the model has regimen effects) at that year's
  drift; its predictive adds a new arm's effect within the regimen;
- ``Target.new_regimen(year=2027)``: a new regimen at a year (the expected rate
  of an untested agent: a design prior for assurance, not a null). Its
  predictive adds a new regimen's effect and a new arm's.

For a model without regimen effects, a new arm of a regimen and a new
regimen are both "a new arm of the setting": the description says so. With
drift, the year sets the drift; a year beyond the last knot continues the
random walk (lmsbayes.model.structure.drift_extrapolation_sd).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Target", "parse_target"]

_KINDS = ("average", "new_arm", "new_regimen")


@dataclass(frozen=True)
class Target:
    """The quantity a prediction is for (see the module docstring).

    Parameters
    ----------
    kind : {'average', 'new_arm', 'new_regimen'}
    regimen : str, optional
        ``new_arm``: the regimen (a value of the data's ``regimen`` column).
    year : int, optional
        The calendar year of the new trial (drift models); default the
        drift's reference year.
    """

    kind: str = "average"
    regimen: str | None = None
    year: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"target kind must be one of {list(_KINDS)}, got {self.kind!r}")
        if self.kind == "new_arm" and not self.regimen:
            raise ValueError("a new arm of a regimen needs the regimen, e.g. 'doxorubicin'")
        if self.year is not None and not (
            isinstance(self.year, (int, np.integer)) and 1990 <= int(self.year) <= 2100
        ):
            raise ValueError(f"target year must be an integer in 1990..2100, got {self.year!r}")

    @classmethod
    def average(cls, year: int | None = None) -> Target:
        """The historical average of a setting (EORTC-comparable)."""
        return cls("average", None, year)

    @classmethod
    def new_arm(cls, regimen: str, year: int | None = None) -> Target:
        """A new arm of a known regimen at a year (a control arm's MAP prior)."""
        return cls("new_arm", regimen, year)

    @classmethod
    def new_regimen(cls, year: int | None = None) -> Target:
        """A new regimen at a year (a design prior for assurance, not a null)."""
        return cls("new_regimen", None, year)

    def describe(self) -> str:
        """The target in words, e.g. 'new arm of doxorubicin in 2027'."""
        at = f" in {self.year}" if self.year is not None else ""
        if self.kind == "average":
            return "historical average" + at
        if self.kind == "new_arm":
            return f"new arm of {self.regimen}{at}"
        return "new regimen" + at


def parse_target(text: str | None, year: int | None = None) -> Target | None:
    """A target from its command-line form: 'average', 'new-regimen' or 'arm:REGIMEN'."""
    if text is None:
        return None
    t = text.strip()
    if t == "average":
        return Target.average(year)
    if t in ("new-regimen", "new_regimen"):
        return Target.new_regimen(year)
    if t.startswith("arm:") and t[4:].strip():
        return Target.new_arm(t[4:].strip(), year)
    raise ValueError(
        "--target must be 'average', 'new-regimen' or 'arm:REGIMEN' (e.g. arm:doxorubicin), got "
        f"{text!r}"
    )


def regimen_grouped(fit) -> bool:
    """Whether the fit has regimen effects (group = 'regimen')."""
    from lmsbayes.model.structure import group_column

    return group_column(fit.spec) == "regimen" and bool(fit.data.groups)


def check(fit, target: Target) -> None:
    """Errors for a target the fit cannot answer (an unknown regimen, a year without drift)."""
    if target.kind == "new_arm" and "regimen" in fit.data.arms:
        known = sorted(set(fit.data.arms["regimen"].astype(str)))
        if target.regimen not in known:
            raise ValueError(
                f"regimen {target.regimen!r} has no included arm (regimens: {', '.join(known)})"
            )
    if target.kind == "new_arm" and "regimen" not in fit.data.arms:
        raise ValueError("the fitted data have no 'regimen' column: no arm of a regimen to predict")


def rests_on(fit, target: Target, line: str | None) -> list[str]:
    """The included arms of the target's regimen (in the setting's line, if given)."""
    if target.kind != "new_arm" or "regimen" not in fit.data.arms:
        return []
    arms = fit.data.arms
    sel = arms["regimen"].astype(str) == target.regimen
    if line is not None and "line" in arms:
        sel &= arms["line"].astype(str) == line
    return list(arms.index[sel.to_numpy()])


def drift_row(fit, year: int | None) -> np.ndarray:
    """The drift's basis at a year (its reference without one): (steps,), empty without drift."""
    from lmsbayes.model.structure import drift_design

    mp = fit.spec.model
    if mp.drift == "none":
        return np.zeros(0)
    y = mp.drift_reference if year is None else year
    return drift_design(mp, [float(y)])[0]


def shifts(fit, target: Target, shape: tuple[int, int], rng) -> tuple[np.ndarray, np.ndarray]:
    """Per draw (chain, draw): what the target adds to the pooled predictor, and to the predictive.

    The pooled part: a named regimen's effect (group_tau v), and the drift's
    continuation beyond its last knot. The predictive part adds a new regimen's
    effect where the target is a new regimen, or where the model nests arms in
    groups other than regimens (a new arm of a new trial).
    """
    from lmsbayes.model.structure import drift_extra_sd

    post = fit.posterior
    pooled = np.zeros(shape)
    extra = np.zeros(shape)
    mp = fit.spec.model
    if mp.drift != "none" and target.year is not None:
        k = drift_extra_sd(mp, target.year)
        if k > 0:
            pooled = pooled + post["drift_scale"].values * k * rng.standard_normal(shape)
    if fit.model.grouped:
        gt = post["group_tau"].values
        gt = gt if gt.ndim == 2 else gt[..., 0]
        if regimen_grouped(fit) and target.kind == "new_arm":
            pooled = pooled + gt * post["v"].sel(group=target.regimen).values.reshape(shape)
        else:
            extra = extra + gt * rng.standard_normal(shape)
    return pooled, extra


def describe_for(fit, target: Target) -> str:
    """The target in words, with what the model can and cannot tell apart."""
    text = target.describe()
    if target.kind != "average" and not regimen_grouped(fit):
        text += " (a model without regimen effects: any new arm of the setting)"
    if fit.spec.model.drift == "none" and target.year is not None:
        if not any(d.column == "year" for _, d in fit.spec.covariates):
            text += f" (no drift in this model: {target.year} changes nothing)"
    return text


def year_covariates(fit, target: Target | None) -> dict:
    """The ``at`` values a linear time-trend covariate on ``year`` takes from the target's year."""
    if target is None or target.year is None:
        return {}
    return {
        name: float(target.year)
        for name, d in fit.spec.covariates
        if d.column == "year" and math.isfinite(float(target.year))
    }
