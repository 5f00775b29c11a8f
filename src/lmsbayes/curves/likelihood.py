"""Log-likelihood of a reconstructed arm on a parametric survival curve.

A reconstructed event is known to lie between two digitised times, (lower, time]; a
censoring is at its time. On the model's curves (lmsbayes.likelihoods.survival_mean's
parametrisation, with eta the linear predictor at the reference time t_ref):

- log-logistic: S(t) = expit(eta - k log(t / t_ref));
- Weibull: S(t) = exp(-exp(eta + k log(t / t_ref))),

the arm contributes sum over events of log(S(lower) - S(time)) and over censorings of
log S(time): interval- and right-censored data, not its median or rates again (they come from
the same curve). Patients with the same (lower, time, event) are grouped, so a 200-patient arm
is a few dozen terms.

:func:`grid_posterior` integrates an arm's (eta, log k) posterior on a grid: what the exact
engine does for an arm's own quantities, here for one arm alone, to study what a curve
carries (tests/test_curves_model.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmsbayes.errors import OptionError
from lmsbayes.model.families import CURVES

__all__ = ["CURVE_FAMILIES", "GroupedData", "grid_posterior", "group", "log_survival", "loglik"]

#: Curve families a reconstructed arm can be fitted on (the model's survival curves).
CURVE_FAMILIES = tuple(CURVES)


def log_survival(t, eta, shape, t_ref: float, curve: str) -> np.ndarray:
    """log S(t) on the curve (the model's own family class); S(0) = 1 (t = 0 gives 0)."""
    family = CURVES.get(curve)
    if family is None:
        raise OptionError(f"curve must be one of {CURVE_FAMILIES}, got {curve!r}")
    t = np.asarray(t, float)
    with np.errstate(divide="ignore"):
        x = np.log(np.where(t > 0, t, 1.0) / t_ref)
    out = family.log_rate_of_scale(family.linear(eta, shape, x))
    return np.where(t > 0, out, 0.0)


@dataclass(frozen=True)
class GroupedData:
    """Reconstructed patients grouped by (lower, upper, event), with their counts."""

    lower: np.ndarray
    upper: np.ndarray
    event: np.ndarray
    count: np.ndarray


def group(lower, time, event) -> GroupedData:
    """Group identical (lower, time, event) rows (see :class:`GroupedData`)."""
    rows = np.column_stack(
        [np.asarray(lower, float), np.asarray(time, float), np.asarray(event, float)]
    )
    uniq, count = np.unique(rows, axis=0, return_counts=True)
    return GroupedData(uniq[:, 0], uniq[:, 1], uniq[:, 2].astype(int), count)


def loglik(
    data: GroupedData, eta, shape, t_ref: float = 6.0, curve: str = "loglogistic"
) -> np.ndarray:
    """Log-likelihood of grouped interval- and right-censored data; broadcasts over eta, shape.

    Parameters
    ----------
    data : GroupedData
    eta, shape : array-like
        Broadcastable arrays (e.g. a grid); the data run along a new last axis.
    t_ref : float
    curve : {"loglogistic", "weibull"}

    Returns
    -------
    numpy.ndarray
        The log-likelihood, shape of ``eta`` and ``shape`` broadcast.
    """
    eta = np.asarray(eta, float)[..., None]
    shape = np.asarray(shape, float)[..., None]
    log_hi = log_survival(data.upper, eta, shape, t_ref, curve)
    log_lo = log_survival(data.lower, eta, shape, t_ref, curve)
    # log(S(lo) - S(hi)) = log S(lo) + log(1 - exp(log S(hi) - log S(lo))), stable for tiny gaps
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.minimum(log_hi - log_lo, -1e-300)
        log_event = log_lo + np.where(gap > -0.693, np.log(-np.expm1(gap)), np.log1p(-np.exp(gap)))
    terms = np.where(data.event == 1, log_event, log_hi)
    return np.sum(data.count * terms, axis=-1)


def _log_post(data, E, K, t_ref, curve, extra):
    lp = np.zeros(np.broadcast(E, K).shape)
    if data is not None:
        lp = lp + loglik(data, E, K, t_ref, curve)
    if extra is not None:
        lp = lp + extra(E, K)
    return lp


def _support(grid, lp_marginal, cut=25.0):
    """The grid range where the log density is within ``cut`` of its maximum, widened a step."""
    keep = np.flatnonzero(lp_marginal >= lp_marginal.max() - cut)
    step = grid[1] - grid[0]
    return grid[keep[0]] - step, grid[keep[-1]] + step


def grid_posterior(
    data: GroupedData | None,
    curve: str,
    t_ref: float = 6.0,
    shape: float | None = None,
    extra=None,
    points: int = 161,
):
    """Posterior of one arm's eta (and log k) under flat priors, integrated on a grid.

    A coarse pass (eta in [-8, 8] by 0.1, log k in [log 0.1, log 10] by 0.1) finds where the
    log density is within 25 of its maximum (mass outside below e^-25 per point); a fine grid of
    ``points`` per dimension there gives the summaries.

    Parameters
    ----------
    data : GroupedData or None
    curve : {"loglogistic", "weibull"}
    t_ref : float
    shape : float, optional
        Fix the shape k (then the grid is over eta alone).
    extra : callable, optional
        ``extra(eta, shape) -> array``: further log-likelihood terms (e.g. printed summaries
        instead of, or besides, the curve).
    points : int
        Fine-grid points per dimension.

    Returns
    -------
    dict
        ``eta_mean``, ``eta_sd``, ``eta_q`` (2.5%, 97.5%) and, when the shape is free,
        ``shape_q`` (2.5%, 97.5% of k) and ``shape_mean``; ``edge_mass``: the posterior mass on
        the fine grid's border (small when the grid holds the posterior).
    """
    coarse_e = np.arange(-8, 8.0001, 0.1)
    if shape is None:
        coarse_k = np.arange(np.log(0.1), np.log(10.0), 0.1)
        E, K = np.meshgrid(coarse_e, coarse_k, indexing="ij")
        lp = _log_post(data, E, np.exp(K), t_ref, curve, extra)
        e_lo, e_hi = _support(coarse_e, lp.max(axis=1))
        k_lo, k_hi = _support(coarse_k, lp.max(axis=0))
        eta_grid, lk = np.linspace(e_lo, e_hi, points), np.linspace(k_lo, k_hi, points)
        E, K = np.meshgrid(eta_grid, np.exp(lk), indexing="ij")
    else:
        lp = _log_post(data, coarse_e, float(shape), t_ref, curve, extra)
        e_lo, e_hi = _support(coarse_e, lp)
        eta_grid = np.linspace(e_lo, e_hi, points)
        E, K = eta_grid[:, None], np.full((points, 1), float(shape))
    lp = _log_post(data, E, K, t_ref, curve, extra)
    w = np.exp(lp - np.max(lp))
    w /= w.sum()
    pe = w.sum(axis=1)
    out = {"eta_mean": float(np.sum(pe * eta_grid)), "eta_q": _quantiles(eta_grid, pe)}
    out["eta_sd"] = float(np.sqrt(np.sum(pe * (eta_grid - out["eta_mean"]) ** 2)))
    out["edge_mass"] = float(pe[0] + pe[-1])
    if shape is None:
        pk = w.sum(axis=0)
        out["shape_q"] = tuple(float(x) for x in np.exp(_quantiles(lk, pk)))
        out["shape_mean"] = float(np.sum(pk * np.exp(lk)))
        out["edge_mass"] += float(pk[0] + pk[-1])
    return out


def _quantiles(grid, p, q=(0.025, 0.975)) -> tuple[float, float]:
    # the mass of grid point i spreads over its cell: the CDF reaches cumsum[i] at its upper edge
    c = np.cumsum(p)
    edges = grid + (grid[1] - grid[0]) / 2
    return tuple(float(np.interp(x, c, edges)) for x in q)
