"""Observations of the survival likelihood: what one Kaplan-Meier curve states.

A publication states, for an arm, some of: the median PFS (with its 95% CI),
PFS rates at landmarks (with CIs), n and the number of events. They all
come from one Kaplan-Meier curve, so they are not independent data.

Each quantity becomes an observation on its own scale: a rate on the curve's
scale (:class:`lmsbayes.model.families.SurvivalCurve`: logit for log-logistic
curves, log cumulative hazard for Weibull, probit for log-normal), a
median on the log-time scale. Its standard error comes from its CI where one
is stated, else from n (binomial for a rate; for a median the asymptotic sd
of a Kaplan-Meier median under the arm's own curve, ``2 / (k sqrt(n))`` for a
log-logistic curve of shape k, with the events for n where stated: a stated
approximation that moves with the fitted shape, see ``_se_log_median``).

Their correlation is that of one curve. Without censoring the Kaplan-Meier
estimates at two times a < b have ``corr(S_a, S_b) = sqrt(odds(S_b) / odds(S_a))``
(a multinomial: the patients progressed before a, between a and b, after b),
and the median is asymptotically the estimate of S at the median time,
``m_hat - m ~ (S_hat(m) - 1/2) / f(m)``. Correlations to first order do not
change under monotone transforms except in sign, so the arm's observations
are jointly normal with covariance ``D R D``, D the standard errors and

    R_jl = sign_j sign_l sqrt(min(odds_j, odds_l) / max(odds_j, odds_l)),

with plug-in odds of the observed rates (1 at the median) and ``sign`` the
direction of each transform in S. This counts each patient once
(see tests/test_survival.py for the check against simulated curves).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lmsbayes.data import Z95
from lmsbayes.model.families import SurvivalCurve, get_family

__all__ = ["survival_observations", "within_arm_correlation", "precision_terms"]

_MAX_CORR = 0.95  # equal plug-in odds would make R singular


def within_arm_correlation(s_plug: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """Correlation matrix of one curve's estimates (see the module docstring).

    Parameters
    ----------
    s_plug : ndarray
        Plug-in survival of each observation (0.5 for a median), in (0, 1).
    sign : ndarray of +1/-1
        Direction of each observation's transform in S.

    Returns
    -------
    ndarray
        Positive definite correlation matrix; off-diagonal entries are at most 0.95
        in absolute value and are shrunk further if the plug-ins are inconsistent.
    """
    odds = s_plug / (1 - s_plug)
    lo, hi = np.minimum.outer(odds, odds), np.maximum.outer(odds, odds)
    r = np.sqrt(lo / hi) * np.outer(sign, sign)
    r = np.clip(r, -_MAX_CORR, _MAX_CORR)
    np.fill_diagonal(r, 1.0)
    for _ in range(20):  # shrink towards independence until positive definite
        try:
            np.linalg.cholesky(r)
            return r
        except np.linalg.LinAlgError:
            off = r - np.eye(len(r))
            r = np.eye(len(r)) + 0.9 * off
    return np.eye(len(r))  # pragma: no cover - 0.9**20 off-diagonals are always PD here


def precision_terms(
    cov_blocks: list[np.ndarray], offsets: list[int], comps: list[int]
) -> tuple[pd.DataFrame, np.ndarray]:
    """Precision entries of a block-diagonal covariance and the blocks' log-normalising constants.

    Returns
    -------
    terms : DataFrame
        ``first``, ``second`` (observation positions), ``precision``, ``comp``;
        both orders of an off-diagonal pair, so the quadratic form is the sum
        of ``precision * r_first * r_second`` over rows.
    log_norm : ndarray
        ``-0.5 * log det(2 pi Sigma)`` of each block.
    """
    rows, log_norm = [], []
    for cov, off, comp in zip(cov_blocks, offsets, comps, strict=True):
        prec = np.linalg.inv(cov)
        prec = 0.5 * (prec + prec.T)
        k = len(cov)
        sign, logdet = np.linalg.slogdet(cov)
        log_norm.append(-0.5 * (k * math.log(2 * math.pi) + logdet))
        for j in range(k):
            for l in range(k):
                if prec[j, l] != 0:
                    rows.append((off + j, off + l, prec[j, l], comp))
    terms = pd.DataFrame(rows, columns=["first", "second", "precision", "comp"])
    terms = terms.astype({"first": np.int64, "second": np.int64, "comp": np.int64})
    return terms, np.asarray(log_norm, dtype=float)


def _se_rate(rate, lo, hi, n, curve: SurvivalCurve) -> tuple[float, float, str]:
    """(value on the curve's scale, its se, method) of a reported rate; se NaN when unusable."""
    transform = curve.to_scale
    if np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi < 1 and 0 < rate < 1:
        a, b = transform(lo), transform(hi)
        return float(transform(rate)), float(abs(b - a) / (2 * Z95)), "rate_ci"
    if np.isfinite(n) and n >= 1:
        s = (rate * n + 0.5) / (n + 1) if rate in (0.0, 1.0) else rate
        se_logit = 1 / math.sqrt(n * s * (1 - s))
        return float(transform(s)), curve.se_from_logit(s, se_logit), "binomial"
    return math.nan, math.nan, ""


def _se_log_median(lo, hi, events, n, curve: SurvivalCurve | str) -> tuple[float, str, float]:
    """(se, method, power) of a log median: its sd is ``se * k**-power`` for a curve of shape k.

    From a 95% CI the se is the CI's (power 0). Without one it is the
    asymptotic sd of the Kaplan-Meier median under the arm's own curve,
    ``1 / (2 sqrt(n) f(m) m)`` = ``2 / (k sqrt(n))`` (log-logistic) or
    ``1 / (k log 2 sqrt(n))`` (Weibull), with the number of events for n where
    it is stated (censoring makes this a lower bound): a stated
    approximation that moves with the fitted shape. ``1 / sqrt(n)`` (the
    exponential MLE's) would treat the nonparametric median as 1.4 to 2 times
    as precise as it is; the bundled arms that state a CI have
    ``se sqrt(n)`` of median 1.24.
    """
    if np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi:
        return float((math.log(hi) - math.log(lo)) / (2 * Z95)), "median_ci", 0.0
    # f(m) m / k at the median m of the curve (SurvivalCurve.density_at_median)
    curve = get_family("survival", curve) if isinstance(curve, str) else curve
    c = 1.0 / (2.0 * curve.density_at_median)
    if np.isfinite(events) and events >= 1:
        return c / math.sqrt(events), "events", 1.0
    if np.isfinite(n) and n >= 1:
        return c / math.sqrt(n), "n_approx", 1.0
    return math.nan, "", 0.0


def survival_observations(
    arms: pd.DataFrame,
    rates: pd.DataFrame,
    *,
    curve: SurvivalCurve | str,
    t_ref: float,
    correlated: bool = True,
    evidence_levels: tuple[str, ...] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, pd.DataFrame]:
    """Observations, precision terms and exclusions of the survival likelihood.

    Parameters
    ----------
    arms : DataFrame
        One row per arm (``arm_id``, ``n``, ``pfs_median_m``, ``pfs_median_lo``,
        ``pfs_median_hi``, ``pfs_events``; optional ``evidence_level``).
    rates : DataFrame
        Reported rates: ``arm_id``, ``t``, ``rate``, ``lo``, ``hi`` (optional
        ``evidence_level``, ``kind``).
    curve : str or SurvivalCurve
        A name of :data:`lmsbayes.model.families.CURVES` or the curve: rates go on its scale
        (logit for log-logistic, log cumulative hazard for Weibull, probit for log-normal).
    t_ref : float
    correlated : bool
        Correlate an arm's observations as one curve (default) or treat them as independent.
    evidence_levels : tuple of str, optional
        Numbers from other evidence levels are excluded with the reason.

    Returns
    -------
    obs : DataFrame
        One row per observation, arms in the order of ``arms``: ``arm_id``,
        ``kind`` ('median' or 'rate'), ``t`` (months: the landmark, or the
        median itself), ``value`` (rate or median as reported), ``y`` (on the
        model scale), ``se``, ``se_method``, ``is_median``, ``log_t_rel``,
        ``s_plug``, ``source``.
    terms : DataFrame
        Precision entries (``first``, ``second``, ``precision``, ``comp``), comp =
        position of the arm among the arms that have observations.
    log_norm : ndarray
        Normalising constant of the Gaussian likelihood of each arm with observations.
    excluded : DataFrame
        ``arm_id``, ``landmark`` (t of a rate, NaN for the median), ``reason``.
    """
    curve = get_family("survival", curve) if isinstance(curve, str) else curve
    rate_sign = curve.sign
    # plain records: pandas row access costs more than the arithmetic here
    rate_cols = [
        c for c in ("arm_id", "t", "rate", "lo", "hi", "evidence_level", "kind") if c in rates
    ]
    by_arm: dict[str, list[dict]] = {}
    for r in rates[rate_cols].to_dict("records") if len(rates) else []:
        by_arm.setdefault(r["arm_id"], []).append(r)
    arm_cols = [
        c
        for c in (
            "arm_id",
            "n",
            "pfs_median_m",
            "pfs_median_lo",
            "pfs_median_hi",
            "pfs_events",
            "evidence_level",
        )
        if c in arms
    ]
    obs_rows, excluded = [], []

    def ok_level(level) -> bool:
        return (
            evidence_levels is None
            or level is None
            or (isinstance(level, float) and np.isnan(level))
            or level is pd.NA
            or str(level) == ""
            or str(level) in evidence_levels
        )

    for arm in arms[arm_cols].to_dict("records"):
        arm_id = arm["arm_id"]
        n = _f(arm.get("n"))
        median = _f(arm.get("pfs_median_m"))
        rows = []
        if np.isfinite(median):
            level = arm.get("evidence_level")
            se, method, power = _se_log_median(
                _f(arm.get("pfs_median_lo")),
                _f(arm.get("pfs_median_hi")),
                _f(arm.get("pfs_events")),
                n,
                curve,
            )
            if not ok_level(level):
                excluded.append(
                    (
                        arm_id,
                        math.nan,
                        f"median: evidence level {level!r} not in [data] evidence_levels",
                    )
                )
            elif not np.isfinite(se):
                excluded.append(
                    (arm_id, math.nan, "median has no standard error (no 95% CI, events or n)")
                )
            else:
                rows.append(
                    dict(
                        kind="median",
                        t=median,
                        value=median,
                        y=math.log(median),
                        se=se,
                        se_method=method,
                        se_shape_power=power,
                        is_median=1.0,
                        log_t_rel=0.0,
                        s_plug=0.5,
                        sign=1.0,
                        source="median",
                    )
                )
        for r in sorted(by_arm.get(arm_id, []), key=lambda r: float(r["t"])):
            t, rate = float(r["t"]), float(r["rate"])
            if not ok_level(r.get("evidence_level")):
                excluded.append(
                    (
                        arm_id,
                        t,
                        f"rate: evidence level {r.get('evidence_level')!r} not in [data] "
                        "evidence_levels",
                    )
                )
                continue
            y, se, method = _se_rate(rate, _f(r.get("lo")), _f(r.get("hi")), n, curve)
            if not np.isfinite(se):
                excluded.append((arm_id, t, "reported rate has neither a usable 95% CI nor n"))
                continue
            s_plug = (rate * n + 0.5) / (n + 1) if rate in (0.0, 1.0) and np.isfinite(n) else rate
            rows.append(
                dict(
                    kind="rate",
                    t=t,
                    value=rate,
                    y=y,
                    se=se,
                    se_method=method,
                    se_shape_power=0.0,
                    is_median=0.0,
                    log_t_rel=math.log(t / t_ref),
                    s_plug=float(np.clip(s_plug, 1e-6, 1 - 1e-6)),
                    sign=rate_sign,
                    source=str(r.get("kind") or "reported"),
                )
            )
        if not rows and not any(e[0] == arm_id for e in excluded):
            excluded.append((arm_id, math.nan, "no median and no reported rate"))
        for row in rows:
            obs_rows.append({"arm_id": arm_id, **row})
    obs = pd.DataFrame(
        obs_rows,
        columns=[
            "arm_id",
            "kind",
            "t",
            "value",
            "y",
            "se",
            "se_method",
            "se_shape_power",
            "is_median",
            "log_t_rel",
            "s_plug",
            "sign",
            "source",
        ],
    )
    blocks, offsets, comps = [], [], []
    ids = obs["arm_id"].to_numpy()
    se_all, s_all, sign_all = (obs[c].to_numpy(float) for c in ("se", "s_plug", "sign"))
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, int)
    ends = np.r_[starts[1:], len(ids)]
    for comp, (a, b) in enumerate(zip(starts, ends)):
        se = se_all[a:b]
        r = (
            within_arm_correlation(s_all[a:b], sign_all[a:b])
            if correlated and b - a > 1
            else np.eye(b - a)
        )
        blocks.append(np.outer(se, se) * r)
        offsets.append(int(a))
        comps.append(comp)
    terms, log_norm = (
        precision_terms(blocks, offsets, comps)
        if blocks
        else (pd.DataFrame(columns=["first", "second", "precision", "comp"]), np.zeros(0))
    )
    exc = pd.DataFrame(excluded, columns=["arm_id", "landmark", "reason"])
    return obs, terms, log_norm, exc


def _f(x) -> float:
    """A cell as a float (NaN when missing)."""
    if x is None or x is pd.NA:
        return math.nan
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan
