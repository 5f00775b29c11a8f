"""Individual patient data from a digitised Kaplan-Meier curve (Guyot et al. 2012).

The algorithm is that of Guyot, Ades, Ouwens & Welton, "Enhanced secondary
analysis of survival data: reconstructing the data from published Kaplan-Meier
survival curves", BMC Med Res Methodol 2012;12:9 (doi:10.1186/1471-2288-12-9),
as in their published R code: within each interval of the number-at-risk
table, censoring times are spread evenly and their number adjusted until the
reconstructed number at risk at the start of the next interval equals the
table's; the events at each digitised point are the integers that reproduce the
digitised drop of S; the last interval gets the average censoring rate of the
earlier ones or, when the total number of events is given, as many censorings
as make the events add up. Events sit at the digitised point's time; censorings
at the midpoint to the next point; patients left at the end are censored at the
last point.

The accuracy report compares the Kaplan-Meier estimate of the reconstructed
data with the digitised points (distance of each point to the step function's
vertical extent there, so a point clicked on a drop is on the curve), gives the
median and landmark rates with Greenwood confidence intervals, and the
reconstructed numbers at risk against the table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmsbayes.curves.read import CurveArm

__all__ = [
    "KaplanMeier",
    "Reconstruction",
    "kaplan_meier",
    "reconstruct",
]

_Z975 = 1.959963984540054
#: Iterations of the censoring adjustment per interval before giving up (reported, not hidden).
MAX_ITER = 1000


@dataclass(frozen=True)
class KaplanMeier:
    """A Kaplan-Meier estimate with Greenwood variances.

    Attributes
    ----------
    time : numpy.ndarray
        Distinct event times.
    n_risk, n_event : numpy.ndarray
    surv : numpy.ndarray
        S just after each event time.
    greenwood : numpy.ndarray
        Greenwood's sum, sum d / (n (n - d)), so var S = S^2 greenwood.
    """

    time: np.ndarray
    n_risk: np.ndarray
    n_event: np.ndarray
    surv: np.ndarray
    greenwood: np.ndarray

    def at(self, t, left: bool = False) -> np.ndarray:
        """S(t) (right-continuous), or its left limit S(t-) when ``left``."""
        idx = np.searchsorted(self.time, np.asarray(t, float), side="left" if left else "right") - 1
        return np.where(idx >= 0, self.surv[np.maximum(idx, 0)], 1.0)

    def greenwood_sum(self, t) -> np.ndarray:
        """Greenwood's sum at t (right-continuous), so var S(t) = S(t)^2 times it."""
        idx = np.searchsorted(self.time, np.asarray(t, float), side="right") - 1
        return np.where(idx >= 0, self.greenwood[np.maximum(idx, 0)], 0.0)

    def ci(self, t, conf_type: str = "log-log") -> tuple[np.ndarray, np.ndarray]:
        """Pointwise 95% Greenwood interval of S(t).

        Parameters
        ----------
        t : array-like
        conf_type : {"log-log", "log", "plain"}
            "log-log" (Kalbfleisch-Prentice: normal on log(-log S)), "log" (normal on log S,
            R survfit's default), "plain" (normal on S, clipped).

        Returns
        -------
        (numpy.ndarray, numpy.ndarray)
            Lower and upper limits; NaN where undefined (S = 0, or S = 1 on "log-log").
        """
        s = self.at(t)
        gw = self.greenwood_sum(t)
        with np.errstate(divide="ignore", invalid="ignore"):
            if conf_type == "log-log":
                se = np.sqrt(gw) / np.abs(np.log(s))
                lo = s ** np.exp(_Z975 * se)
                hi = s ** np.exp(-_Z975 * se)
                bad = (s <= 0) | (s >= 1)
            elif conf_type == "log":
                se = np.sqrt(gw)
                lo = s * np.exp(-_Z975 * se)
                hi = np.minimum(s * np.exp(_Z975 * se), 1.0)
                bad = s <= 0
            elif conf_type == "plain":
                se = s * np.sqrt(gw)
                lo, hi = np.clip(s - _Z975 * se, 0, 1), np.clip(s + _Z975 * se, 0, 1)
                bad = np.zeros_like(s, dtype=bool)
            else:
                raise ValueError(
                    f"conf_type must be 'log-log', 'log' or 'plain', got {conf_type!r}"
                )
        return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)

    def quantile_time(
        self, p: float = 0.5, conf_type: str = "log-log"
    ) -> tuple[float, float, float]:
        """Time at which S first falls to 1 - ``p`` or below, with its 95% interval.

        The interval inverts the pointwise interval of S (Brookmeyer & Crowley's
        construction, as R's ``quantile.survfit``): its ends are the first times at which the
        upper and lower limit fall to 1 - ``p`` or below. NaN where never reached.

        Returns
        -------
        (float, float, float)
            Estimate, lower, upper.
        """
        target = 1.0 - p
        lo, hi = self.ci(self.time, conf_type)

        def first(values) -> float:
            hit = np.flatnonzero(values <= target + 1e-12)
            if not len(hit):
                return float("nan")
            i = hit[0]
            # R's rule: where S equals the target exactly on a flat stretch, the midpoint
            if abs(values[i] - target) < 1e-12 and i + 1 < len(self.time):
                return float((self.time[i] + self.time[i + 1]) / 2)
            return float(self.time[i])

        return (
            first(self.surv),
            first(np.nan_to_num(lo, nan=1.0)),
            first(np.nan_to_num(hi, nan=1.0)),
        )


def kaplan_meier(time, event) -> KaplanMeier:
    """The Kaplan-Meier estimate of right-censored data.

    Parameters
    ----------
    time : array-like
        Event or censoring times.
    event : array-like of bool or {0, 1}
        1 for an event, 0 for a censoring; a censoring at an event time counts as at risk there.

    Returns
    -------
    KaplanMeier
    """
    time = np.asarray(time, float)
    event = np.asarray(event).astype(bool)
    ut = np.unique(time[event])
    n_risk = np.array([np.sum(time >= u) for u in ut], dtype=float)
    n_event = np.array([np.sum((time == u) & event) for u in ut], dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        surv = np.cumprod(1.0 - n_event / n_risk)
        gw_terms = np.where(n_risk > n_event, n_event / (n_risk * (n_risk - n_event)), np.inf)
    return KaplanMeier(ut, n_risk, n_event, surv, np.cumsum(gw_terms))


@dataclass(frozen=True)
class Reconstruction:
    """Reconstructed individual data of one arm and how well they reproduce the figure.

    Attributes
    ----------
    curve : CurveArm
        The input.
    time, event : numpy.ndarray
        One row per patient: time (months) and 1 for an event, 0 for a censoring.
    lower : numpy.ndarray
        For an event, the previous digitised time before its own: the event happened in
        (lower, time] (the interval-censored reading of a drop between two digitised times);
        for a censoring, equal to ``time``.
    d, cen, n_hat : numpy.ndarray
        Per digitised point: events, censorings (placed after it), number at risk before it.
    risk_table : dict of numpy.ndarray
        Per table row used: t, n (reported), n_hat (reconstructed), events and censorings in
        the interval starting there.
    converged : bool
        Whether every interval's censoring adjustment met the table (else the last iterate).
    km : KaplanMeier
        Of the reconstructed data.
    """

    curve: CurveArm
    time: np.ndarray
    event: np.ndarray
    lower: np.ndarray
    d: np.ndarray
    cen: np.ndarray
    n_hat: np.ndarray
    risk_table: dict
    converged: bool
    km: KaplanMeier

    @property
    def n_events(self) -> int:
        """Reconstructed events."""
        return int(self.event.sum())

    def point_errors(self, raw: bool = False) -> np.ndarray:
        """Distance of each digitised point to the reconstructed step function.

        A point on a drop (between S(t) and S(t-)) is at distance 0.

        Parameters
        ----------
        raw : bool
            Against the points as read (before clean-up) instead of the cleaned ones.
        """
        t, s = (self.curve.raw_t, self.curve.raw_s) if raw else (self.curve.t, self.curve.s)
        t = np.maximum(t, 0.0)
        right, left = self.km.at(t), self.km.at(t, left=True)
        return np.where(s > left, s - left, np.where(s < right, s - right, 0.0))

    def accuracy(self) -> dict:
        """Max and RMS absolute difference between the reconstruction and the digitised points."""
        e = self.point_errors()
        return {
            "max_abs": float(np.max(np.abs(e))),
            "rms": float(np.sqrt(np.mean(e**2))),
            "n_points": int(len(e)),
        }

    def landmarks(self, times, conf_type: str = "log-log") -> dict:
        """KM rates at ``times`` with 95% Greenwood intervals.

        And the digitised curve's value there.
        """
        times = np.asarray(times, float)
        lo, hi = self.km.ci(times, conf_type)
        c = self.curve
        idx = np.searchsorted(c.t, times, side="right") - 1
        digitised = np.where(times <= c.t[-1], c.s[np.maximum(idx, 0)], np.nan)
        return {
            "t": times,
            "rate": self.km.at(times),
            "lo": lo,
            "hi": hi,
            "digitised": digitised,
            "beyond_curve": times > c.t[-1],
        }

    def median(self, conf_type: str = "log-log") -> tuple[float, float, float]:
        """Median with its 95% interval (see :meth:`KaplanMeier.quantile_time`)."""
        return self.km.quantile_time(0.5, conf_type)

    def report(self, landmarks=(3, 6, 9, 12), conf_type: str = "log-log") -> str:
        """The accuracy report in words: one block per arm, as ``lmsbayes curve`` prints it."""
        c = self.curve
        acc = self.accuracy()
        lines = [
            f"arm {c.arm_id}: {c.n} patients, {len(c.t)} digitised points to {c.t[-1]:.1f} months "
            f"({c.file})",
        ]
        if c.source:
            lines.append(f"  source: {c.source}")
        for text in c.cleanup.lines():
            lines.append(f"  clean-up: {text}")
        lines.append(
            f"  reconstructed: {self.n_events} events, {len(self.time) - self.n_events} censored"
            + (f" (total events given: {c.total_events})" if c.total_events is not None else "")
            + (
                "; NOTE: the total is not met (Guyot's rule adjusts only the last interval of the "
                "table, and its digitised drops allow no more, or the earlier intervals already "
                "hold more)"
                if c.total_events is not None and c.total_events != self.n_events
                else ""
            )
            + ("" if self.converged else "; WARNING: the censoring adjustment did not converge")
        )
        lines.append(
            f"  reconstructed KM vs digitised points: max |diff| {acc['max_abs']:.4f}, "
            f"RMS {acc['rms']:.4f} over {acc['n_points']} points"
        )
        m, mlo, mhi = self.median(conf_type)
        lines.append(
            f"  median {_fmt(m)} months (95% CI {_fmt(mlo)} to {_fmt(mhi)}; Greenwood, {conf_type})"
        )
        lm = self.landmarks(landmarks, conf_type)
        lines.append("  landmark  KM rate  95% CI (Greenwood)  digitised")
        for i, t in enumerate(lm["t"]):
            note = "  beyond the curve" if lm["beyond_curve"][i] else ""
            lines.append(
                f"  {t:>6g}m  {lm['rate'][i]:7.3f}  {_fmt(lm['lo'][i], 3):>6} to "
                f"{_fmt(lm['hi'][i], 3):<6}  {_fmt(lm['digitised'][i], 3):>9}{note}"
            )
        rt = self.risk_table
        lines.append(
            "  at risk:  t  table  reconstructed  events  censored (in the interval from t)"
        )
        for i in range(len(rt["t"])):
            lines.append(
                f"  {rt['t'][i]:>10g}  {rt['n'][i]:>5d}  {rt['n_hat'][i]:>13d}  "
                f"{rt['events'][i]:>6d}  {rt['censored'][i]:>8d}"
            )
        return "\n".join(lines)


def _fmt(x: float, digits: int = 1) -> str:
    return "NA" if not np.isfinite(x) else f"{x:.{digits}f}"


def _spread_censoring(ncen: int, i: int, lower, upper, t, lo_t: float, hi_t: float) -> np.ndarray:
    """ncen censoring times spread evenly over (lo_t, hi_t), counted per point of interval i."""
    k = upper[i] - lower[i] + 1
    cen = np.zeros(k, dtype=int)
    if ncen <= 0:
        return cen
    ct = lo_t + np.arange(1, ncen + 1) * (hi_t - lo_t) / (ncen + 1)
    pts = t[lower[i] : upper[i] + 1]
    # each censoring time goes to the last digitised point at or before it
    idx = np.searchsorted(pts, ct, side="right") - 1
    np.add.at(cen, np.clip(idx, 0, k - 1), 1)
    return cen


def reconstruct(curve: CurveArm) -> Reconstruction:
    """Reconstruct individual event and censoring times of one arm (Guyot et al. 2012).

    Parameters
    ----------
    curve : CurveArm
        A validated curve (:func:`~lmsbayes.curves.read.read_curve`).

    Returns
    -------
    Reconstruction
        The patients and the accuracy report.

    Notes
    -----
    A number at risk that the digitised drops cannot reach (the adjustment oscillates) stops
    after :data:`MAX_ITER` iterations with ``converged=False``, printed in the report.
    """
    t, s = curve.t, curve.s
    total = len(t)
    rt, nr = curve.risk_t, curve.risk_n.astype(int).copy()
    nint = len(rt)
    lower = np.searchsorted(t, rt, side="left")
    upper = np.r_[lower[1:] - 1, total - 1]
    ncensor = np.zeros(nint, dtype=int)
    last_i = np.zeros(nint, dtype=int)
    cen = np.zeros(total, dtype=int)
    d = np.zeros(total, dtype=int)
    n_hat = np.full(total + 1, nr[0] + 1, dtype=int)
    km = np.ones(total)
    converged = True

    def sweep(i: int, last: int) -> int:
        n_hat[lower[i]] = nr[i]
        for k in range(lower[i], upper[i] + 1):
            if i == 0 and k == lower[i]:
                d[k], km[k] = 0, 1.0
            else:
                d[k] = int(np.round(n_hat[k] * (1 - s[k] / km[last]))) if km[last] > 0 else 0
                d[k] = min(max(d[k], 0), n_hat[k])
                km[k] = km[last] * (1 - d[k] / n_hat[k]) if n_hat[k] > 0 else km[last]
            n_hat[k + 1] = n_hat[k] - d[k] - cen[k]
            if n_hat[k + 1] < 0:
                n_hat[k + 1] = 0
                cen[k] = n_hat[k] - d[k]
            if d[k] != 0:
                last = k
        return last

    for i in range(nint - 1):
        a, b = lower[i], lower[i + 1]
        ncensor[i] = int(np.round(nr[i] * s[b] / s[a] - nr[i + 1])) if s[a] > 0 else 0
        last = last_i[i]
        for _ in range(MAX_ITER):
            cen[a : upper[i] + 1] = _spread_censoring(ncensor[i], i, lower, upper, t, t[a], t[b])
            ncensor[i] = max(ncensor[i], 0)
            last = sweep(i, last_i[i])
            gap = n_hat[b] - nr[i + 1]
            if gap == 0 or (gap < 0 and ncensor[i] == 0):
                break
            ncensor[i] += gap
        else:
            converged = False
        nr[i + 1] = n_hat[b]
        last_i[i + 1] = last

    i = nint - 1
    a, b = lower[i], upper[i]
    if nint > 1:
        # the last interval: the average censoring rate of the earlier ones (Guyot's rule)
        span_before = t[upper[i - 1]] - t[lower[0]]
        rate = ncensor[: nint - 1].sum() / span_before if span_before > 0 else 0.0
        ncensor[i] = min(int(np.round(rate * (t[b] - t[a]))), nr[i])
    else:
        ncensor[i] = 0
    ncensor[i] = max(ncensor[i], 0)

    def last_interval() -> None:
        cen[a : b + 1] = _spread_censoring(ncensor[i], i, lower, upper, t, t[a], t[b])
        cen[b] = 0  # censorings after the last point are the patients left at the end
        sweep(i, last_i[i])

    last_interval()
    tot = curve.total_events
    if tot is not None:
        before = int(d[: lower[i]].sum())
        if nint > 1 and before >= tot:
            d[a : b + 1] = 0
            cen[a : b + 1] = 0
            n_hat[a : b + 2] = nr[i]
        else:
            for _ in range(MAX_ITER):
                gap = int(d[: b + 1].sum()) - tot
                if gap == 0 or (gap < 0 and ncensor[i] == 0):
                    break
                ncensor[i] = max(ncensor[i] + gap, 0)
                last_interval()
            else:
                converged = False

    times, events, lowers = [], [], []
    for k in range(total):
        if d[k] > 0:
            times += [t[k]] * d[k]
            events += [1] * d[k]
            earlier = t[:k][t[:k] < t[k]]  # the previous digitised time (not a drop's upper corner)
            lowers += [earlier[-1] if len(earlier) else 0.0] * d[k]
        if cen[k] > 0:
            ct = (t[k] + t[k + 1]) / 2 if k + 1 < total else t[k]
            times += [ct] * cen[k]
            events += [0] * cen[k]
            lowers += [ct] * cen[k]
    left = n_hat[total]
    if left > 0:
        times += [t[-1]] * left
        events += [0] * left
        lowers += [t[-1]] * left
    time, event, lower_t = np.array(times), np.array(events, dtype=int), np.array(lowers)

    ev = np.array([d[lower[j] : upper[j] + 1].sum() for j in range(nint)], dtype=int)
    cn = np.array([cen[lower[j] : upper[j] + 1].sum() for j in range(nint)], dtype=int)
    cn[-1] += left
    table = {
        "t": rt,
        "n": curve.risk_n.astype(int),
        "n_hat": n_hat[lower].astype(int),
        "events": ev,
        "censored": cn,
    }
    return Reconstruction(
        curve=curve,
        time=time,
        event=event,
        lower=lower_t,
        d=d.copy(),
        cen=cen.copy(),
        n_hat=n_hat[:total].copy(),
        risk_table=table,
        converged=converged,
        km=kaplan_meier(time, event),
    )
