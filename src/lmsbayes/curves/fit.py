"""One reconstructed arm on the model's curve.

Its fit, an optional truncation, and a goodness-of-fit check.

Before a curve arm enters a pooled model, whose shape k is shared across arms, its own fit
shows whether the family describes it: a 200-patient curve that the family does not fit can
pull the shared shape. The check groups the reconstructed patients by the intervals of the
number-at-risk table and compares observed with expected events under the arm's own fitted
curve (each patient at risk at an interval's start contributes the probability of an event
before leaving the interval or being censored), X^2 = sum (O - E)^2 / E on (intervals - 2)
degrees of freedom (two parameters fitted), a Hosmer-Lemeshow-type statistic. Intervals with
fewer than 5 expected events are merged with the next. The largest distance between the
reconstructed KM and the fitted curve is reported beside it.

Truncation at ``t_max`` censors every patient still at risk at ``t_max`` there: the tail
(few patients, where digitising and reconstruction are least accurate and a family fits
worst) then informs the arm only through the fact that those patients were event-free at
``t_max``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lmsbayes.curves.likelihood import CURVE_FAMILIES, grid_posterior, group, log_survival
from lmsbayes.curves.reconstruct import Reconstruction
from lmsbayes.errors import OptionError
from lmsbayes.model.families import CURVES

__all__ = ["ArmFit", "chi2_sf", "fit_arm", "grouped_events", "truncate"]


def truncate(time, event, lower, t_max: float):
    """Censor at ``t_max`` everyone still at risk there (events after ``t_max`` included).

    An event whose interval (lower, time] straddles ``t_max`` is censored at ``t_max`` too:
    only what is known by ``t_max`` is kept.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray)
        time, event, lower after truncation.
    """
    time, event, lower = (np.asarray(x, float) for x in (time, event, lower))
    late = time > t_max
    return (
        np.where(late, t_max, time),
        np.where(late, 0, event).astype(int),
        np.where(late, t_max, lower),
    )


@dataclass(frozen=True)
class ArmFit:
    """One arm's fit on a curve family (flat priors on eta and log k, integrated on a grid).

    Attributes
    ----------
    family : str
    t_ref : float
    t_max : float or None
        The truncation time, if any.
    eta, eta_lo, eta_hi : float
        Posterior mean and 95% interval of eta (logit S(t_ref) or log H(t_ref)).
    shape, shape_lo, shape_hi : float
        Posterior mean and 95% interval of k.
    chi2, df, p_value : float
        The grouped goodness-of-fit statistic, its degrees of freedom and p-value.
    observed, expected : numpy.ndarray
        Events per (merged) interval.
    max_km_distance : float
        Largest |KM - S_fit| at the reconstructed event times (up to ``t_max``).
    """

    family: str
    t_ref: float
    t_max: float | None
    eta: float
    eta_lo: float
    eta_hi: float
    shape: float
    shape_lo: float
    shape_hi: float
    chi2: float
    df: int
    p_value: float
    observed: np.ndarray
    expected: np.ndarray
    max_km_distance: float

    def survival(self, t) -> np.ndarray:
        """S(t) on the fitted curve (posterior-mean eta and k, a plug-in)."""
        return np.exp(
            log_survival(np.asarray(t, float), self.eta, self.shape, self.t_ref, self.family)
        )

    def lines(self) -> list[str]:
        """The fit and the check in words."""
        link = CURVES[self.family].scale_name
        trunc = f", truncated at {self.t_max:g} months" if self.t_max is not None else ""
        verdict = (
            "poor fit: the family does not describe this curve"
            if self.p_value < 0.05
            else "no evidence of misfit"
        )
        return [
            f"  {self.family} fit{trunc}: {link}({self.t_ref:g}m) {self.eta:.3f} "
            f"(95% CrI {self.eta_lo:.3f} to {self.eta_hi:.3f}), shape k {self.shape:.2f} "
            f"({self.shape_lo:.2f} to {self.shape_hi:.2f})",
            f"  goodness of fit: X^2 {self.chi2:.2f} on {self.df} df, p = {self.p_value:.3f} "
            f"({len(self.observed)} intervals, observed {_ints(self.observed)}, expected "
            f"{_floats(self.expected)}); max |KM - fit| {self.max_km_distance:.3f}; {verdict}",
        ]


def _ints(x) -> str:
    return "/".join(str(int(v)) for v in x)


def _floats(x) -> str:
    return "/".join(f"{v:.1f}" for v in x)


def chi2_sf(x: float, df: int) -> float:
    """Upper tail of the chi-square distribution (regularised incomplete gamma, series/fraction)."""
    if df <= 0:
        return float("nan")
    a, z = df / 2.0, x / 2.0
    if z <= 0:
        return 1.0
    if z < a + 1:  # series for the lower tail
        term = total = 1.0 / a
        n = a
        for _ in range(1000):
            n += 1
            term *= z / n
            total += term
            if term < total * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(-z + a * math.log(z) - math.lgamma(a)))
    # continued fraction for the upper tail (Lentz)
    b, c, d = z + 1 - a, 1e300, 1 / (z + 1 - a)
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = 1e-300 if abs(d) < 1e-300 else d
        c = b + an / c
        c = 1e-300 if abs(c) < 1e-300 else c
        d = 1 / d
        h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return math.exp(-z + a * math.log(z) - math.lgamma(a)) * h


def grouped_events(time, event, lower, edges, s_fit):
    """Observed and expected events per interval [edges[j], edges[j+1]), merged to E >= 5."""
    obs, exp_ = [], []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        at_risk = time >= a if a > 0 else np.ones_like(time, bool)
        # an event belongs to the interval holding its time (its reconstructed time)
        o = np.sum(at_risk & (event == 1) & (time < b))
        # the martingale compensator: each patient's cumulative hazard from a to its exit
        exit_ = np.minimum(time[at_risk], b)
        with np.errstate(divide="ignore"):
            e = np.sum(np.log(s_fit(np.full(exit_.shape, a))) - np.log(s_fit(exit_)))
        obs.append(o)
        exp_.append(e)
    obs, exp_ = np.array(obs, float), np.array(exp_, float)
    mo, me = [], []
    co = ce = 0.0
    for o, e in zip(obs, exp_, strict=True):
        co, ce = co + o, ce + e
        if ce >= 5:
            mo.append(co)
            me.append(ce)
            co = ce = 0.0
    if ce > 0 or co > 0:
        if me:
            mo[-1] += co
            me[-1] += ce
        else:
            mo.append(co)
            me.append(ce)
    return np.array(mo), np.array(me)


def fit_arm(
    rec: Reconstruction,
    family: str = "loglogistic",
    t_ref: float = 6.0,
    t_max: float | None = None,
    points: int = 161,
) -> ArmFit:
    """Fit one reconstructed arm on a curve family and check the fit.

    Parameters
    ----------
    rec : Reconstruction
    family : {"loglogistic", "weibull"}
    t_ref : float
        Reference time of eta (months).
    t_max : float, optional
        Truncate the curve there (see :func:`truncate`).
    points : int
        Fine-grid points per dimension of the posterior (:func:`grid_posterior`).

    Returns
    -------
    ArmFit
    """
    if family not in CURVE_FAMILIES:
        raise OptionError(f"family must be one of {CURVE_FAMILIES}, got {family!r}")
    time, event, lower = rec.time, rec.event, rec.lower
    if t_max is not None:
        if not (t_max > 0):
            raise OptionError(f"t_max must be > 0 months, got {t_max!r}")
        time, event, lower = truncate(time, event, lower, t_max)
    post = grid_posterior(group(lower, time, event), family, t_ref=t_ref, points=points)
    eta, k = post["eta_mean"], post["shape_mean"]

    def s_fit(t):
        return np.exp(log_survival(t, eta, k, t_ref, family))

    end = float(time.max()) if t_max is None else min(t_max, float(time.max()))
    edges = np.r_[rec.curve.risk_t[rec.curve.risk_t < end], end + 1e-9]
    obs, exp_ = grouped_events(time, event, lower, edges, s_fit)
    chi2 = float(np.sum((obs - exp_) ** 2 / np.where(exp_ > 0, exp_, np.nan)))
    df = len(obs) - 2
    from lmsbayes.curves.reconstruct import kaplan_meier

    km = kaplan_meier(time, event)
    dist = float(np.max(np.abs(km.surv - s_fit(km.time)))) if len(km.time) else 0.0
    return ArmFit(
        family=family,
        t_ref=t_ref,
        t_max=t_max,
        eta=eta,
        eta_lo=post["eta_q"][0],
        eta_hi=post["eta_q"][1],
        shape=k,
        shape_lo=post["shape_q"][0],
        shape_hi=post["shape_q"][1],
        chi2=chi2,
        df=df,
        p_value=chi2_sf(chi2, df) if df > 0 else float("nan"),
        observed=obs,
        expected=exp_,
        max_km_distance=dist,
    )
