"""Exact operating characteristics of any design, and the checks every design prints.

:func:`operating_characteristics` evaluates a design over true rates by
exact enumeration of the binomial sample space -- never by simulation -- and
returns an :class:`xarray.Dataset`.  :func:`two_arm_oc` gives the two-arm
type I error curve ``P(success | p_t = p_c = x)`` over ``x`` in [0, 1] and
the power at stated effects (a difference, or ``p_t = p_c^HR``), under
several control priors side by side.  :func:`headline` and
:func:`design_warnings` are what the command line prints for every design.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import xarray as xr
from scipy import stats

from lmsbayes.design._common import check_rates, convolve_rows, fmt
from lmsbayes.design.simon import SimonDesign, SimonDesigns
from lmsbayes.design.single_arm import BayesianSingleArm
from lmsbayes.design.two_arm import TwoArmDesign
from lmsbayes.errors import OptionError
from lmsbayes.prior import BetaMixture

__all__ = [
    "IMPOSSIBLE_BELOW",
    "design_warnings",
    "effect_rates",
    "headline",
    "operating_characteristics",
    "two_arm_oc",
]


def _single_arm_oc(
    looks: Sequence[int], masks: Sequence[tuple[np.ndarray, np.ndarray]], p: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact probabilities of stopping for futility / efficacy at each look.

    The sub-distribution of the number of progression-free patients among
    trials still running is carried from look to look by convolution with the
    binomial distribution of the increment; paths that stop are zeroed
    (absorbed).  Returns two (len(p), len(looks)) arrays; at the final look
    "futility" is failure of the final criterion, so each row sums to 1.
    """
    n_p, n_looks = p.size, len(looks)
    fut_prob = np.zeros((n_p, n_looks))
    eff_prob = np.zeros((n_p, n_looks))
    running = np.ones((n_p, 1))  # no patients yet: 0 progression-free, probability 1
    prev = 0
    for k, (n, (fut, eff)) in enumerate(zip(looks, masks, strict=True)):
        m = n - prev
        step = stats.binom.pmf(np.arange(m + 1)[None, :], m, p[:, None])
        running = convolve_rows(running, step)
        fut_prob[:, k] = running[:, fut].sum(axis=1)
        eff_prob[:, k] = running[:, eff].sum(axis=1)
        running = np.where(fut | eff, 0.0, running)
        prev = n
    return fut_prob, eff_prob


_VAR_ATTRS = {
    "prob_success": "probability of declaring success (power; type I error at p0)",
    "prob_stop_futility": "probability of stopping for futility at the look "
    "(final look: failing the final criterion)",
    "prob_stop_efficacy": "probability of stopping for success at the look "
    "(final look: meeting the final criterion)",
    "prob_early_stop": "probability of stopping at an interim look",
    "expected_n": "expected number of patients",
}


def _single_arm_dataset(design: SimonDesign | BayesianSingleArm, p: np.ndarray) -> xr.Dataset:
    looks = design.looks
    fut, eff = _single_arm_oc(looks, design._stopping_masks(), p)
    stop = fut + eff
    ds = xr.Dataset(
        data_vars={
            "prob_success": ("p", eff.sum(axis=1)),
            "prob_stop_futility": (("p", "look"), fut),
            "prob_stop_efficacy": (("p", "look"), eff),
            "prob_early_stop": ("p", stop[:, :-1].sum(axis=1)),
            "expected_n": ("p", stop @ np.asarray(looks, dtype=float)),
        },
        coords={
            "p": ("p", p, {"long_name": "true progression-free rate"}),
            "look": np.arange(1, len(looks) + 1),
            "n": ("look", np.asarray(looks), {"long_name": "patients at the look"}),
        },
        attrs={"design": str(design), "method": "exact enumeration"},
    )
    for name, text in _VAR_ATTRS.items():
        ds[name].attrs["long_name"] = text
    return ds


def _two_arm_grid_dataset(design: TwoArmDesign, p_t: np.ndarray, p_c: np.ndarray) -> xr.Dataset:
    tt, cc = np.meshgrid(p_t, p_c, indexing="ij")
    fut, eff = design._probs(tt.ravel(), cc.ravel())
    shape = (p_t.size, p_c.size)
    n_look = np.array([t + c for t, c in design.looks], dtype=float)
    stop = fut + eff
    ds = xr.Dataset(
        data_vars={
            "prob_success": (("p_t", "p_c"), eff.sum(axis=1).reshape(shape)),
            "prob_early_stop": (("p_t", "p_c"), stop[:, :-1].sum(axis=1).reshape(shape)),
            "expected_n": (("p_t", "p_c"), (stop @ n_look).reshape(shape)),
        },
        coords={
            "p_t": ("p_t", p_t, {"long_name": "true rate on treatment"}),
            "p_c": ("p_c", p_c, {"long_name": "true rate on control"}),
        },
        attrs={"design": str(design), "method": "exact enumeration"},
    )
    for name in ds.data_vars:
        ds[name].attrs["long_name"] = _VAR_ATTRS[name]
    return ds


def operating_characteristics(
    design: SimonDesign | BayesianSingleArm | TwoArmDesign,
    p: Any = None,
    *,
    p_t: Any = None,
    p_c: Any = None,
) -> xr.Dataset:
    """Operating characteristics by exact enumeration of the sample space.

    Parameters
    ----------
    design : SimonDesign, BayesianSingleArm or TwoArmDesign
        The design (for :func:`simon`'s result pick ``.optimal`` or ``.minimax``).
    p : array_like, optional
        True progression-free rates, for a single-arm design.
    p_t, p_c : array_like, optional
        True rates on treatment and control, for a two-arm design; the result
        covers their full grid.

    Returns
    -------
    xarray.Dataset
        Single arm: dims ``p`` and ``look`` (with coordinate ``n``) and
        variables ``prob_success``, ``prob_stop_futility`` and
        ``prob_stop_efficacy`` (per look), ``prob_early_stop`` and
        ``expected_n``.  Two arms: dims ``p_t`` and ``p_c`` with
        ``prob_success``, ``prob_early_stop`` and ``expected_n`` (see
        :func:`two_arm_oc` for the type I error curve and power under several
        control priors).  ``.to_dataframe()`` gives the table view.

    Examples
    --------
    >>> d = BayesianSingleArm(looks=(20, 35, 50), p0=0.44)
    >>> oc = operating_characteristics(d, p=[0.44, 0.64])
    >>> oc["prob_success"].round(3).values.tolist()
    [0.056, 0.895]
    """
    if isinstance(design, SimonDesigns):
        raise OptionError(
            "design must be one design; pass simon(...).optimal or simon(...).minimax"
        )
    if isinstance(design, TwoArmDesign):
        if p is not None:
            raise OptionError("a two-arm design takes p_t and p_c, not p")
        if p_t is None or p_c is None:
            raise OptionError("a two-arm design needs both p_t and p_c")
        return _two_arm_grid_dataset(design, check_rates("p_t", p_t), check_rates("p_c", p_c))
    if isinstance(design, (SimonDesign, BayesianSingleArm)):
        if p_t is not None or p_c is not None:
            raise OptionError("a single-arm design takes p, not p_t / p_c")
        if p is None:
            raise OptionError("a single-arm design needs the true rates p")
        return _single_arm_dataset(design, check_rates("p", p))
    raise OptionError(
        "design must be a SimonDesign, BayesianSingleArm or TwoArmDesign, "
        f"got {type(design).__name__}"
    )


# ---------------------------------------------------------------------- two-arm OC over priors
_SCALES = ("difference", "hr")


def effect_rates(p_c: Any, effect: float, scale: str = "difference") -> np.ndarray:
    """True treatment rates for control rates ``p_c`` under an effect on a stated scale.

    ``"difference"``: ``p_t = p_c + effect`` (NaN where that leaves [0, 1]);
    ``"hr"``: ``p_t = p_c ** effect``, proportional hazards at the landmark
    (the EORTC convention; ``effect < 1`` is a benefit).
    """
    p_c = np.asarray(p_c, dtype=float)
    if scale == "difference":
        out = p_c + float(effect)
        return np.where((out >= 0.0) & (out <= 1.0), out, np.nan)
    if scale == "hr":
        if not float(effect) > 0:
            raise OptionError(f"an effect on the hr scale must be > 0, got {effect!r}")
        return p_c ** float(effect)
    raise OptionError(f"scale must be one of {list(_SCALES)}, got {scale!r}")


def _null_effect(scale: str) -> float:
    return 0.0 if scale == "difference" else 1.0


def two_arm_oc(
    design: TwoArmDesign,
    p_c: Any = None,
    effects: Sequence[float] = (),
    *,
    scale: str = "difference",
    priors: Mapping[str, BetaMixture] | None = None,
) -> xr.Dataset:
    """Type I error curve and power of a two-arm design, under several control priors.

    Parameters
    ----------
    design : TwoArmDesign
        The design; its ``prior_c`` is replaced by each of ``priors``.
    p_c : array_like, default 101 points on [0, 1]
        True control rates.
    effects : sequence of float
        Effects on ``scale`` at which to give the power; the null effect
        (0 for a difference, 1 for a hazard ratio) is always included: at it
        ``prob_success`` is the type I error ``P(success | p_t = p_c)``.
    scale : {"difference", "hr"}
        ``p_t = p_c + effect`` or ``p_t = p_c ** effect`` (:func:`effect_rates`).
    priors : mapping of name -> BetaMixture, optional
        Control priors side by side, e.g. ``{"vague": Beta(1, 1), "MAP": map,
        "robust MAP": robust}``; default the design's own ``prior_c``.

    Returns
    -------
    xarray.Dataset
        Dims ``prior``, ``effect``, ``p_c``; variables ``prob_success``,
        ``expected_n`` and coordinate ``p_t`` (effect, p_c).  NaN where the
        effect takes ``p_t`` outside [0, 1].  Attributes record the scale, the
        decision and the sample sizes.
    """
    if not isinstance(design, TwoArmDesign):
        raise OptionError(f"design must be a TwoArmDesign, got {type(design).__name__}")
    if scale not in _SCALES:
        raise OptionError(f"scale must be one of {list(_SCALES)}, got {scale!r}")
    grid = np.round(np.linspace(0.0, 1.0, 101), 12) if p_c is None else check_rates("p_c", p_c)
    null = _null_effect(scale)
    eff_list = [null] + [float(e) for e in effects if float(e) != null]
    priors = {"design prior": design.prior_c} if priors is None else dict(priors)
    if not priors:
        raise OptionError("priors must name at least one control prior")
    succ = np.full((len(priors), len(eff_list), grid.size), np.nan)
    en = np.full_like(succ, np.nan)
    pt = np.stack([effect_rates(grid, e, scale) for e in eff_list])
    n_look = np.array([t + c for t, c in design.looks], dtype=float)
    for i, (name, prior) in enumerate(priors.items()):
        if not isinstance(prior, BetaMixture):
            raise OptionError(f"priors[{name!r}] must be a BetaMixture, got {type(prior).__name__}")
        d = replace(design, prior_c=prior)
        ok = np.isfinite(pt)
        fut, eff = d._probs(pt[ok], np.broadcast_to(grid, pt.shape)[ok])
        s = np.full(pt.shape, np.nan)
        s[ok] = eff.sum(axis=1)
        e = np.full(pt.shape, np.nan)
        e[ok] = (fut + eff) @ n_look
        succ[i], en[i] = s, e
    ds = xr.Dataset(
        data_vars={
            "prob_success": (
                ("prior", "effect", "p_c"),
                succ,
                {"long_name": "P(success); at the null effect the type I error"},
            ),
            "expected_n": (
                ("prior", "effect", "p_c"),
                en,
                {"long_name": "expected number of patients"},
            ),
        },
        coords={
            "prior": ("prior", list(priors)),
            "effect": ("effect", np.array(eff_list), {"scale": scale, "null": null}),
            "p_c": ("p_c", grid, {"long_name": "true rate on control"}),
            "p_t": (("effect", "p_c"), pt, {"long_name": "true rate on treatment"}),
        },
        attrs={
            "design": str(design),
            "decision": str(design.decision),
            "scale": scale,
            "n_t": design.n_t,
            "n_c": design.n_c,
            "sided": "one-sided",
            "method": "exact enumeration",
        },
    )
    return ds


# ---------------------------------------------------------------------- what every design prints
#: Success counts as impossible when its probability is below this at a true rate of 0.9.
IMPOSSIBLE_BELOW = 1e-3


def _success_at(design: Any, p: float, p_c: float | None = None) -> float:
    if isinstance(design, TwoArmDesign):
        _, eff = design._probs(np.array([p]), np.array([p_c]))
        return float(eff.sum())
    return float(operating_characteristics(design, p=[p])["prob_success"].values[0])


def headline(design: Any, p0: float, p1: float) -> dict[str, float]:
    """``P(success)`` at the null and the alternative.

    Single arm: at true rates ``p0`` and ``p1``.  Two arms: at
    ``p_t = p_c = p0`` (type I error) and at ``p_c = p0, p_t = p1`` (power).
    """
    if isinstance(design, TwoArmDesign):
        return {
            "p0": p0,
            "p1": p1,
            "success_at_p0": _success_at(design, p0, p0),
            "success_at_p1": _success_at(design, p1, p0),
        }
    return {
        "p0": p0,
        "p1": p1,
        "success_at_p0": _success_at(design, p0),
        "success_at_p1": _success_at(design, p1),
    }


def design_warnings(design: Any, p0: float, p1: float) -> list[str]:
    """Warnings every design gets: low power at p1, or success out of reach.

    * power ``P(success)`` at ``p1`` below 0.5;
    * success practically impossible (probability below
      :data:`IMPOSSIBLE_BELOW`) at every true rate up to 0.9 (single arm:
      ``p = 0.9``; two arms: ``p_t = 0.9`` with ``p_c = p0``).  Success
      probabilities rise with the true rate, so checking 0.9 checks them all.
    """
    out = []
    h = headline(design, p0, p1)
    if h["success_at_p1"] < 0.5:
        out.append(
            f"power at p1 = {fmt(p1)} is {h['success_at_p1']:.3f} (< 0.5): the design is "
            "unlikely to succeed even if the treatment works as hoped"
        )
    top = (
        _success_at(design, 0.9, p0)
        if isinstance(design, TwoArmDesign)
        else _success_at(design, 0.9)
    )
    if top < IMPOSSIBLE_BELOW:
        where = "p_t = 0.9 (p_c = p0)" if isinstance(design, TwoArmDesign) else "a true rate of 0.9"
        out.append(
            f"success is practically impossible: P(success) = {top:.2g} even at {where}; "
            "check the success threshold and the role of the prior"
        )
    return out
