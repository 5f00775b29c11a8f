"""Probability of success (assurance) of a planned two-arm time-to-event trial.

The meta-analysis gives a distribution of the true log HR of a new trial of a
new agent against control (:meth:`BayesRandomEffects.predictive`). That is
the *expected* effect, with its uncertainty; it is not the target
alternative HR a trial is powered for (and not a p1). Averaging the power of
the planned design over it gives the assurance (O'Hagan, Stevens & Campbell
2005, Pharm Stat 4:187), the unconditional probability that the trial will
succeed.

The design is summarised by Schoenfeld's approximation (Biometrika 1981;
68:316): with ``d`` events and a fraction ``a`` of patients allocated to the
experimental arm, the estimated log HR is approximately
``Normal(theta, 1 / (d a (1 - a)))``. The trial succeeds when the one-sided
log-rank / Cox test rejects at level ``alpha``, i.e. when the estimated HR is
below the critical HR ``exp(-z_{1-alpha} / sqrt(d a (1 - a)))``. For a
predictive distribution that is a mixture of normals the assurance is exact:
``sum_j w_j Phi((log HR_crit - m_j) / sqrt(s_j^2 + 1 / (d a (1 - a))))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special, stats

from lmsbayes.contrast.bayes import Predictive
from lmsbayes.errors import OptionError

__all__ = ["TimeToEventDesign", "assurance", "assurance_table", "schoenfeld_events"]


@dataclass(frozen=True)
class TimeToEventDesign:
    """A planned two-arm time-to-event trial, analysed by a one-sided log-rank test.

    Parameters
    ----------
    events : int
        Number of events (progressions or deaths) at the final analysis.
    allocation : float
        Fraction of patients randomised to the experimental arm (0.5 for 1:1; 2/3 for 2:1).
    alpha : float
        One-sided significance level.
    """

    events: int
    allocation: float = 0.5
    alpha: float = 0.025

    def __post_init__(self):
        if not (isinstance(self.events, (int, np.integer)) and self.events >= 1):
            raise OptionError(f"events must be a whole number >= 1, got {self.events!r}")
        if not 0 < self.allocation < 1:
            raise OptionError(
                "allocation (fraction to the experimental arm) must be in (0, 1), "
                f"got {self.allocation!r}"
            )
        if not 0 < self.alpha < 0.5:
            raise OptionError(f"alpha (one-sided) must be in (0, 0.5), got {self.alpha!r}")

    @property
    def se(self) -> float:
        """Standard error of the estimated log HR (Schoenfeld)."""
        return float(1 / np.sqrt(self.events * self.allocation * (1 - self.allocation)))

    @property
    def critical_hr(self) -> float:
        """The largest estimated HR that still gives a significant result."""
        return float(np.exp(-stats.norm.ppf(1 - self.alpha) * self.se))

    def power(self, hr) -> np.ndarray:
        """Power at a fixed true HR (Schoenfeld's approximation)."""
        hr = np.asarray(hr, float)
        return special.ndtr((np.log(self.critical_hr) - np.log(hr)) / self.se)

    def __str__(self) -> str:
        return (
            f"two-arm time-to-event trial: {self.events} events, {self.allocation:.3g} allocated "
            f"to the experimental arm, one-sided alpha {self.alpha:g} (critical HR "
            f"{self.critical_hr:.3f})"
        )


def schoenfeld_events(
    hr: float, *, alpha: float = 0.025, power: float = 0.8, allocation: float = 0.5
) -> int:
    """Events needed to detect ``hr`` with the given one-sided alpha and power (Schoenfeld 1981)."""
    if not hr > 0 or hr == 1:
        raise OptionError(f"hr must be > 0 and != 1, got {hr!r}")
    z = stats.norm.ppf(1 - alpha) + stats.norm.ppf(power)
    return int(np.ceil(z**2 / (allocation * (1 - allocation) * np.log(hr) ** 2)))


def assurance(predictive: Predictive, design: TimeToEventDesign) -> float:
    """Probability of success of ``design`` averaged over ``predictive``.

    Exact for normal mixtures.

    Parameters
    ----------
    predictive : Predictive
        Distribution of the new trial's true log HR.
    design : TimeToEventDesign

    Returns
    -------
    float
    """
    if not isinstance(predictive, Predictive):
        raise OptionError(
            f"predictive must be a Predictive (from BayesRandomEffects.predictive()), got "
            f"{predictive!r}"
        )
    sd = np.sqrt(predictive.sd**2 + design.se**2)
    z = (np.log(design.critical_hr) - predictive.mean) / sd
    return float(np.sum(predictive.weight * special.ndtr(z)) / np.sum(predictive.weight))


def assurance_table(
    predictive: Predictive,
    events,
    *,
    allocation: float = 0.5,
    alpha: float = 0.025,
    target_hr: float | None = None,
) -> pd.DataFrame:
    """Assurance for several event counts, beside the power at the predictive median HR.

    Parameters
    ----------
    predictive : Predictive
    events : sequence of int
    allocation, alpha : float
        As in :class:`TimeToEventDesign`.
    target_hr : float, optional
        Also show the conventional power at this fixed HR (the design's alternative).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``events``: critical HR, assurance, power at the predictive median HR
        (and at ``target_hr``), and P(true HR < 1), the ceiling of the assurance as events grow.
    """
    median_hr = float(np.exp(predictive.quantile(0.5)[0]))
    p_benefit = predictive.prob_below(1.0)
    rows = []
    for d in events:
        des = TimeToEventDesign(int(d), allocation, alpha)
        row = {
            "critical_hr": des.critical_hr,
            "assurance": assurance(predictive, des),
            "power_at_median_hr": float(des.power(median_hr)),
        }
        if target_hr is not None:
            row[f"power_at_hr_{target_hr:g}"] = float(des.power(target_hr))
        row["p_true_hr_below_1"] = p_benefit
        rows.append(row)
    out = pd.DataFrame(rows, index=pd.Index([int(d) for d in events], name="events"))
    out.attrs.update(allocation=allocation, alpha=alpha, predictive_median_hr=median_hr)
    return out
