"""The borrowing trade-off: robust weight against worst type I error, power and ESS.

Borrowing from historical controls through a MAP prior buys power (or
saves control patients) where the true control rate is close to the
historical one, and costs type I error where it is not.  The weight ``w`` of
the robust component sets the balance.  :func:`borrowing_tradeoff` tabulates,
for each ``w``: the worst type I error over a stated range of true control
rates, the power at a stated alternative, and the prior's ESS.
:func:`find_robust_weight` finds the smallest ``w`` (the most borrowing)
whose worst type I error over the range stays under a cap.

What is known, plainly: under strict type I error control over the whole
range of true control rates, borrowing buys no power -- a design with a
fixed prior that controls the type I error at every ``p_c`` in [0, 1] has
no more power than one that ignores the prior (Kopp-Schneider, Calderazzo &
Wiesenfarth 2020, Biometrical Journal 62:361-374).  A gain exists only where
the range is restricted to plausible control rates, and whoever chooses the
range chooses the risk outside it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from lmsbayes.design._common import TOL, check_open_unit, fmt, vague_prior
from lmsbayes.design.oc import operating_characteristics
from lmsbayes.design.single_arm import BayesianSingleArm
from lmsbayes.design.two_arm import TwoArmDesign, check_range
from lmsbayes.errors import OptionError
from lmsbayes.prior import BetaMixture, robust_component, robustify

__all__ = ["KOPP_SCHNEIDER_2020", "TradeoffResult", "borrowing_tradeoff", "find_robust_weight"]

KOPP_SCHNEIDER_2020 = (
    "Under strict type I error control over the whole range of true control rates, borrowing "
    "buys no power (Kopp-Schneider, Calderazzo & Wiesenfarth 2020, Biom J 62:361-374); a gain "
    "exists only where the range is restricted to plausible control rates, chosen knowingly."
)


def _prior_for_weight(
    prior: BetaMixture, w: float, mean: float, n: float, bounded: bool
) -> BetaMixture:
    if w == 0.0:
        return prior
    if w == 1.0:
        a, b = robust_component(mean, n, bounded=bounded)
        return BetaMixture.from_ab(a, b)
    return robustify(prior, w, mean=mean, n=n, bounded=bounded)


def _ess(mix: BetaMixture) -> tuple[float, float]:
    """ELIR (NaN where a component has a or b < 1, where it is undefined) and the moment ESS."""
    from lmsbayes.prior import ess

    elir = float(ess(mix, "elir")) if np.all(mix.a >= 1) and np.all(mix.b >= 1) else float("nan")
    return elir, float(ess(mix, "moment"))


def _check_weights(weights: Any) -> np.ndarray:
    w = np.atleast_1d(np.asarray(weights, dtype=float))
    if w.ndim != 1 or w.size == 0 or np.any(~np.isfinite(w)) or np.any((w < 0) | (w > 1)):
        raise OptionError(f"robust weights must lie in [0, 1], got {np.asarray(weights).tolist()}")
    return np.unique(w)


@dataclass(frozen=True)
class TradeoffResult:
    """Result of :func:`borrowing_tradeoff`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per robust weight ``w`` (index), plus a ``vague`` reference
        row: ``max_type1`` over the range, ``worst_p`` where it occurs,
        ``power`` at the alternative, and the prior's ESS: ``ess_elir`` (the
        one to report; NaN where a component has a or b < 1, e.g. RBesT's
        robust component with a mean other than 1/2 -- use ``bounded=True``)
        and ``ess_moment``.
    curves : xarray.Dataset
        ``type1`` over dims ``w`` and ``p`` (the true control rate, on the
        stated range's grid; the whole [0, 1] is in ``type1_full``).
    targets : dict
        Range, alternative, robust component.
    """

    table: pd.DataFrame
    curves: xr.Dataset
    targets: dict

    def __str__(self) -> str:
        t = self.targets
        lo, hi = t["type1_range"]
        head = (
            f"Borrowing trade-off: worst type I error over true control rates [{fmt(lo)}, "
            f"{fmt(hi)}], power at {t['alternative']}; robust component {t['robust_component']}"
        )
        tab = self.table.copy()
        for col in ("max_type1", "worst_p", "power"):
            tab[col] = tab[col].map(lambda v: f"{v:.3f}")
        # one ESS, by one named method: ELIR where it is defined on every row, else moments
        if self.table["ess_elir"].notna().all():
            tab = tab.drop(columns="ess_moment").rename(columns={"ess_elir": "ESS (ELIR)"})
            tab["ESS (ELIR)"] = tab["ESS (ELIR)"].map(lambda v: f"{v:.1f}")
            note = ""
        else:
            tab = tab.drop(columns="ess_elir").rename(columns={"ess_moment": "ESS (moment)"})
            tab["ESS (moment)"] = tab["ESS (moment)"].map(lambda v: f"{v:.1f}")
            note = (
                "\nESS by moments: ELIR is not defined for a robust component with a shape < 1 "
                "(RBesT's n = 1 component away from a mean of 1/2); robustify with bounded=True "
                "(--robust-bounded) to report ELIR"
            )
        return head + "\n" + tab.to_string() + note + "\n" + KOPP_SCHNEIDER_2020


def _evaluate(
    design: Any, prior: BetaMixture, grid: np.ndarray, alt: tuple[float, float]
) -> tuple[np.ndarray, float]:
    if isinstance(design, TwoArmDesign):
        d = replace(design, prior_c=prior)
        p_t = np.concatenate([grid, [alt[0]]])
        p_c = np.concatenate([grid, [alt[1]]])
        _, eff = d._probs(p_t, p_c)
        succ = eff.sum(axis=1)
        return succ[:-1], float(succ[-1])
    d = replace(design, prior=prior)
    oc = operating_characteristics(d, p=np.concatenate([grid, [alt[0]]]))["prob_success"].values
    return oc[:-1], float(oc[-1])


def borrowing_tradeoff(
    design: TwoArmDesign | BayesianSingleArm,
    prior: BetaMixture,
    weights: Any = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
    *,
    type1_range: tuple[float, float] = (0.0, 1.0),
    p_t: float,
    p_c: float | None = None,
    robust_mean: float | None = None,
    robust_n: float = 1.0,
    bounded: bool = False,
    grid_points: int = 101,
) -> TradeoffResult:
    """Worst type I error, power and ESS for each robust weight ``w``.

    Parameters
    ----------
    design : TwoArmDesign or BayesianSingleArm
        A template: its control prior (two arms) or the arm's own prior (single
        arm, fixed threshold ``p0``) is replaced by the robustified ``prior``.
    prior : BetaMixture
        The informative (MAP) prior; ``w = 0`` uses it as it is, ``w = 1`` the
        robust component alone.
    weights : sequence of float in [0, 1]
    type1_range : (float, float)
        True control rates over which the worst type I error is taken.  Two
        arms: ``max P(success | p_t = p_c = x)``; single arm: ``max P(success | p = x)``
        over ``x <= p0`` in the range.
    p_t, p_c : float
        The alternative: two arms, true rates on treatment and control;
        single arm, ``p_t`` is the true rate (``p_c`` unused).
    robust_mean, robust_n, bounded
        The robust component (:func:`lmsbayes.prior.robust_component`);
        ``robust_mean`` defaults to the prior mean (two arms) or ``p0``
        (single arm).
    grid_points : int, default 101
        Points on the range.

    Returns
    -------
    TradeoffResult
    """
    lo, hi = check_range(type1_range)
    w_all = _check_weights(weights)
    p_t = check_open_unit("p_t", p_t)
    if isinstance(design, TwoArmDesign):
        p_c = check_open_unit("p_c", p_c if p_c is not None else prior.mean())
        default_mean = prior.mean()
        alt = (p_t, p_c)
        alt_text = f"p_t = {fmt(p_t)}, p_c = {fmt(p_c)}"
        grid = np.round(np.linspace(lo, hi, grid_points), 12)
    elif isinstance(design, BayesianSingleArm):
        if isinstance(design.p0, BetaMixture):
            raise OptionError(
                "the borrowing trade-off of a single-arm design needs the prior in the role of the "
                "arm's own prior (a fixed threshold p0); this design has an uncertain p0"
            )
        default_mean = float(design.p0)
        hi = min(hi, float(design.p0))
        if hi <= lo:
            raise OptionError(
                f"type1_range {type1_range!r} has no rate at or below p0 = {design.p0:g}"
            )
        alt = (p_t, float("nan"))
        alt_text = f"p = {fmt(p_t)}"
        grid = np.round(np.linspace(lo, hi, grid_points), 12)
    else:
        raise OptionError(
            f"design must be a TwoArmDesign or BayesianSingleArm, got {type(design).__name__}"
        )
    if not isinstance(prior, BetaMixture):
        raise OptionError(f"prior must be a BetaMixture, got {type(prior).__name__}")
    mean = check_open_unit("robust_mean", robust_mean if robust_mean is not None else default_mean)
    ra, rb = robust_component(mean, robust_n, bounded=bounded)
    rows, curves = {}, []
    labels: list[Any] = []
    for w in [*w_all, "vague"]:
        pr = (
            vague_prior()
            if w == "vague"
            else _prior_for_weight(prior, float(w), mean, robust_n, bounded)
        )
        type1, power = _evaluate(design, pr, grid, alt)
        i = int(np.argmax(type1))
        elir, moment = _ess(pr)
        rows[w] = {
            "max_type1": float(type1[i]),
            "worst_p": float(grid[i]),
            "power": power,
            "ess_elir": elir,
            "ess_moment": moment,
        }
        curves.append(type1)
        labels.append(str(w) if w == "vague" else float(w))
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "w"
    ds = xr.Dataset(
        {
            "type1": (
                ("w", "p"),
                np.array(curves),
                {"long_name": "P(success) when the treatment is no better"},
            )
        },
        coords={
            "w": ("w", np.array([str(v) for v in labels], dtype=object)),
            "p": ("p", grid, {"long_name": "true control rate"}),
        },
        attrs={"design": str(design), "type1_range": (lo, hi), "alternative": alt_text},
    )
    targets = {
        "type1_range": (lo, hi),
        "alternative": alt_text,
        "robust_component": f"Beta({ra:.4g}, {rb:.4g}) (mean {mean:.3g})",
        "grid_points": int(grid.size),
    }
    return TradeoffResult(table=table, curves=ds, targets=targets)


def find_robust_weight(
    design: TwoArmDesign | BayesianSingleArm,
    prior: BetaMixture,
    *,
    max_type1: float,
    type1_range: tuple[float, float],
    p_t: float,
    p_c: float | None = None,
    robust_mean: float | None = None,
    robust_n: float = 1.0,
    bounded: bool = False,
    step: float = 0.01,
) -> tuple[float | None, TradeoffResult]:
    """The smallest robust weight (most borrowing) with a capped worst type I error.

    The worst type I error is taken over the range.

    Scans ``w = 0, step, 2 step, ..., 1`` and returns the first ``w`` with
    ``max_type1`` at most the cap, and the scan as a :class:`TradeoffResult`.
    Returns ``(None, scan)`` when even ``w = 1`` (the robust component alone)
    exceeds the cap.  The worst type I error need not fall monotonically in
    ``w``; the table shows every weight scanned.

    Examples
    --------
    >>> from lmsbayes.prior import BetaMixture
    >>> d = TwoArmDesign(n_t=40, n_c=20)
    >>> w, scan = find_robust_weight(d, BetaMixture.from_ab(12, 28), max_type1=0.10,
    ...                              type1_range=(0.1, 0.6), p_t=0.55, step=0.1)
    >>> w
    0.5
    """
    cap = check_open_unit("max_type1", max_type1)
    if not 0.0 < step <= 0.5:
        raise OptionError(f"step must lie in (0, 0.5], got {step!r}")
    weights = np.round(np.arange(0.0, 1.0 + step / 2, step), 10)
    scan = borrowing_tradeoff(
        design,
        prior,
        weights,
        type1_range=type1_range,
        p_t=p_t,
        p_c=p_c,
        robust_mean=robust_mean,
        robust_n=robust_n,
        bounded=bounded,
    )
    tab = scan.table.drop(index="vague")
    ok = tab.index[tab["max_type1"].to_numpy() <= cap + TOL]
    return (float(ok[0]) if len(ok) else None), scan
