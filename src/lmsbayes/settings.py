"""Settings of a future trial: their covariate values, and their rows of a fit's design.

A :class:`Setting` names the new trial a prediction is for (line, treatment
class, uterine fraction, or a user's own covariates); the functions below
turn settings into what a fit needs: the values filled in from the spec's
``[thresholds] at``, design rows in the fit's covariate coding, and the
random-effect stratum and shape group of each setting. ``lmsbayes.predict``
and ``lmsbayes.coverage`` both use them; this module imports neither.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lmsbayes.data import CLASSES, LINES
from lmsbayes.errors import OptionError
from lmsbayes.model.covariates import design_matrices

if TYPE_CHECKING:  # pragma: no cover
    from lmsbayes.fit import Fit

__all__ = [
    "Setting",
    "setting_design",
    "settings_at",
    "shape_group_of",
    "standard_settings",
    "strata_of",
]


class Setting:
    """A future-trial setting: the covariate values of the new trial.

    Parameters
    ----------
    line : {'1L', '2L+'}, optional
        LMS table: line of therapy.
    treatment_class : {'R-T', 'NR-T'}, optional
        LMS table: default 'R-T' when ``line`` is given.
    uterine : float, optional
        LMS table: fraction of uterine patients in [0, 1]; default 0.5 when ``line`` is given.
    name : str, optional
        Label used as the ``setting`` coordinate.
    **covariates
        A user's own covariates, by spec name or column (``Setting(x=1.2)``).

    Examples
    --------
    >>> Setting("2L+", "R-T", 1.0)        # pre-treated, recommended treatment, uterine LMS
    >>> Setting(age=65)                   # a binomial table with covariate `age`
    >>> Setting()                         # a model without covariates
    """

    def __init__(
        self,
        line: str | None = None,
        treatment_class: str | None = None,
        uterine: float | None = None,
        name: str | None = None,
        *,
        case_mix: str | None = None,
        **covariates,
    ) -> None:
        if line is not None and line not in LINES:
            raise OptionError(f"line must be one of {list(LINES)}, got {line!r}")
        if line is not None:
            treatment_class = "R-T" if treatment_class is None else treatment_class
            uterine = 0.5 if uterine is None else uterine
        if treatment_class is not None and treatment_class not in CLASSES:
            raise OptionError(
                f"treatment_class must be one of {list(CLASSES)}, got {treatment_class!r}"
            )
        if uterine is not None and not (
            isinstance(uterine, (int, float, np.floating))
            and not isinstance(uterine, bool)
            and 0.0 <= float(uterine) <= 1.0
        ):
            raise OptionError(f"uterine fraction must be in [0, 1], got {uterine!r}")
        for k, v in covariates.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise OptionError(f"covariate {k!r} must be finite, got {v!r}")
        self.line = line
        self.treatment_class = treatment_class
        self.uterine = None if uterine is None else float(uterine)
        self.name = name
        self.case_mix = case_mix
        self.covariates = dict(covariates)

    @classmethod
    def standardised(cls, line: str) -> Setting:
        """The case mix of the included arms of a line.

        EORTC-comparable: one pooled value per line.
        """
        return cls(line, name=f"{line} case mix", case_mix=line)

    def values(self) -> dict[str, object]:
        """Column values of this setting (LMS names mapped to the arm table's columns)."""
        out = {}
        if self.line is not None:
            out.update(
                line=self.line, treatment_class=self.treatment_class, uterine_fraction=self.uterine
            )
        out.update(self.covariates)
        return out

    @property
    def label(self) -> str:
        """The setting's name, or its covariate values in one line."""
        if self.name:
            return self.name
        parts = []
        if self.line is not None:
            parts.append(f"{self.line} {self.treatment_class} uterine={self.uterine:g}")
        parts += [f"{k}={v}" for k, v in self.covariates.items()]
        return " ".join(parts) or "all"

    def describe(self) -> str:
        """The setting in words a clinician reads correctly."""
        if self.case_mix:
            return (
                f"{'first line' if self.case_mix == '1L' else 'pre-treated (2L+)'}, the case mix "
                "of the "
                "included arms (classes and sites as in the data; EORTC-comparable)"
            )
        parts = []
        if self.line is not None:
            parts.append("first line (1L)" if self.line == "1L" else "pre-treated (2L+)")
            parts.append(
                "ESMO-recommended treatment (R-T)"
                if self.treatment_class == "R-T"
                else "treatment not recommended by ESMO (NR-T)"
            )
            u = self.uterine
            parts.append(
                "uterine LMS only"
                if u == 1
                else "soft-tissue (non-uterine) LMS only"
                if u == 0
                else f"{100 * u:.0f}% uterine patients"
            )
        parts += [f"{k} = {v}" for k, v in self.covariates.items()]
        return ", ".join(parts) or "a new study (no covariates)"

    def with_covariates(self, **covariates) -> Setting:
        """A copy with more of a user's covariate values (by spec name or column)."""
        new = Setting(
            self.line,
            self.treatment_class,
            self.uterine,
            self.name,
            case_mix=self.case_mix,
            **{**self.covariates, **covariates},
        )
        return new

    def _key(self):
        return (
            self.line,
            self.treatment_class,
            self.uterine,
            self.name,
            self.case_mix,
            tuple(sorted(self.covariates.items())),
        )

    def __eq__(self, other) -> bool:
        return isinstance(other, Setting) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        args = []
        if self.line is not None:
            args += [repr(self.line), repr(self.treatment_class), f"{self.uterine:g}"]
        args += [f"{k}={v!r}" for k, v in self.covariates.items()]
        if self.name:
            args.append(f"name={self.name!r}")
        return f"Setting({', '.join(args)})"


def standard_settings(lines: Sequence[str] = LINES, *, case_mix: bool = True) -> list[Setting]:
    """The settings of the threshold table, per line.

    First the line's case mix (EORTC-comparable), then R-T and NR-T trials
    with half uterine patients (the model's centre), and R-T trials of
    uterine-only and soft-tissue-only patients.
    """
    out = []
    for line in lines:
        if case_mix:
            out.append(Setting.standardised(line))
        out += [
            Setting(line, "R-T", 0.5, name=f"{line} R-T"),
            Setting(line, "NR-T", 0.5, name=f"{line} NR-T"),
            Setting(line, "R-T", 1.0, name=f"{line} R-T uterine"),
            Setting(line, "R-T", 0.0, name=f"{line} R-T non-uterine"),
        ]
    return out


def settings_at(fit: Fit, settings: list[Setting], at: Mapping[str, float] | None) -> list[Setting]:
    """Settings with the user's covariates filled in from ``at`` and then ``[thresholds] at``.

    A value a setting states itself is kept; case-mix settings take the included
    arms' own values and need none.
    """
    values = {**dict(fit.spec.thresholds.at), **dict(at or {})}
    if not values:
        return settings
    names = {name: d.column for name, d in fit.spec.covariates}
    known = set(names) | set(names.values())
    for k in values:
        if k not in known:
            raise OptionError(
                f"at: {k!r} is not a covariate of spec {fit.spec.name!r} "
                f"(its own covariates: {sorted(known) or 'none'})"
            )
    out = []
    for s in settings:
        if s.case_mix:
            out.append(s)
            continue
        have = set(s.covariates) | {names.get(k, k) for k in s.covariates}
        extra = {k: v for k, v in values.items() if k not in have and names.get(k, k) not in have}
        out.append(s.with_covariates(**extra) if extra else s)
    return out


def setting_design(fit: Fit, settings: Sequence[Setting]) -> np.ndarray:
    """Design rows of the settings (setting, covariate).

    Clear errors for values outside the coding.
    """
    coding = fit.data.coding
    if not coding:
        return np.zeros((len(settings), 0))
    user_col = {name: d.column for name, d in fit.spec.covariates}
    rows = []
    for s in settings:
        vals = s.values()
        for k in list(s.covariates):
            if k in user_col:
                vals[user_col[k]] = vals.pop(k)
        rows.append(vals)
    frame = pd.DataFrame(rows)
    levels: dict[str, set] = {}
    for _, combo in coding:
        for c in combo:
            if c.kind == "indicator":
                levels.setdefault(c.column, set()).update({c.level, c.reference})
    for _, combo in coding:
        for c in combo:
            for s, v in zip(settings, frame.get(c.column, pd.Series([None] * len(settings)))):
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    raise OptionError(
                        f"setting {s.label!r} needs a value for covariate {c.name!r} (column "
                        f"{c.column!r})"
                    )
                if c.kind == "indicator" and str(v) not in levels[c.column]:
                    raise OptionError(
                        f"setting {s.label!r}: {c.column} must be one of "
                        f"{sorted(levels[c.column])}, got {v!r}"
                    )
                if c.kind == "numeric":
                    try:
                        x = float(v)
                    except (TypeError, ValueError):
                        raise OptionError(
                            f"setting {s.label!r}: {c.column} must be a number, got {v!r}"
                        ) from None
                    if not math.isfinite(x) or (c.latent and not 0.0 <= x <= 1.0):
                        raise OptionError(
                            f"setting {s.label!r}: {c.column} must be in [0, 1], got {v!r}"
                            if c.latent
                            else f"setting {s.label!r}: {c.column} must be finite, got {v!r}"
                        )
    X, _, _ = design_matrices(frame, coding)
    return X


def strata_of(fit: Fit, settings: Sequence[Setting]) -> np.ndarray:
    """Random-effect stratum (index into ``fit.data.strata``) of each setting."""
    strata = list(fit.data.strata)
    if strata == ["all"]:
        return np.zeros(len(settings), dtype=np.int64)
    return np.array([strata.index(s.line) for s in settings], dtype=np.int64)


def shape_group_of(fit: Fit, settings: Sequence[Setting]) -> np.ndarray:
    """Shape group (index into ``fit.data.shape_groups``) of each setting."""
    groups = list(fit.data.shape_groups)
    if groups in ([], ["all"]):
        return np.zeros(len(settings), dtype=np.int64)
    # a new arm is no curve arm: with curve arms' own shape ([model] curve_shape = "own") it
    # takes its line's group, or the shape of all the other arms
    return np.array(
        [groups.index(s.line if s.line in groups else "all") for s in settings], dtype=np.int64
    )
