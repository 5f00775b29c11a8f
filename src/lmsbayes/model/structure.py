"""Random-effect structure beyond one effect per arm: groups, calendar-time drift, age discount.

The model of lmsbayes.model, with the options of ``[random_effects]`` and ``[model]``::

    eta_i = alpha + x_i beta + drift(year_i) + group_tau v[g(i)] + s_i z_i
    s_i^2 = tau[stratum(i)]^2 + discount^2 a_i          (a_i: age in decades, age_discount)
    v ~ Normal(0, 1),   z ~ Normal(0, 1) or Student-t(nu)

- **Groups.** Arms of one group (a column: ``trial`` or ``regimen``) share the
  effect v[g]: two heterogeneity scales, between groups (group_tau) and between
  arms of a group (tau). A new arm of a known group keeps its group's v; a new
  group draws a new one.
- **Drift.** drift(year) = drift_scale * B(year) @ drift_step, piecewise linear
  between the knots, a Gaussian random walk over them (one step of sd
  drift_scale per interval, drift_step ~ Normal(0, 1)), zero at the reference
  year, flat before the first knot. With 5 knots that is 4 basis functions and
  one scale among the global parameters. Beyond the last knot the walk goes on:
  a year y > last adds Normal(0, drift_scale^2 (y - last) / interval) to the
  drift at the last knot (:func:`drift_extrapolation_sd`).
  Publication year is the time axis, not accrual: LMS trials publish about
  4 to 6 years after their accrual midpoint (LMS-04 accrued 2017-2019 and
  published its final analysis in 2024), so a drift at year y describes arms
  accrued around y - 5.
- **Era effects** (``drift = "era"``). The same drift term with an indicator
  basis: publication-year eras starting at ``era_starts`` (default
  <= 2009, 2010-2015, >= 2016; with the lag above, accrued up to about 2004,
  2005-2010 and from 2011), the era containing ``drift_reference`` at 0 and
  each other era's offset drift_scale * drift_step, drift_step ~ Normal(0, 1):
  exchangeable era effects with one scale (two basis functions for three
  eras). A year after the data is in the last era (no extra uncertainty: the
  era model assumes the latest era goes on).
- **Age discount.** An older arm is less exchangeable with a new one: its
  random effect's variance grows linearly with its age before the year of the
  trial predicted (a sensitivity model in the spirit of power priors with
  ordered discounting). That year is the target's (``--year``,
  :func:`discount_at`; each cut's year in leave-future-out), else
  ``discount_year`` when the spec sets one, else the latest year of the
  fitted arms + 1 (:func:`discount_reference`).

Everything here is numpy: the model definition reads these arrays, both
engines evaluate them.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = [
    "group_column",
    "group_index",
    "drift_basis",
    "drift_extrapolation_sd",
    "era_basis",
    "era_labels",
    "drift_design",
    "drift_labels",
    "drift_extra_sd",
    "age_decades",
    "discount_reference",
    "discount_at",
    "t_scale_mixture",
]


def group_column(spec) -> str:
    """The column whose arms share a group effect ('' for none)."""
    re = spec.random_effects
    return "trial" if re.trial_effect else re.group


def group_index(
    arms: pd.DataFrame, column: str, where: str = ""
) -> tuple[tuple[str, ...], np.ndarray]:
    """Groups (in first-appearance order) and each arm's group position.

    Raises
    ------
    ValueError
        When the column is missing or an included arm has no value in it.
    """
    if column not in arms:
        raise ValueError(
            f"[random_effects] group = {column!r}: the data have no column {column!r}{where}"
        )
    col = arms[column]
    bad = col.isna() | (col.astype(str).str.strip() == "")
    if bad.any():
        arm = arms.index[np.flatnonzero(bad.to_numpy())[0]]
        raise ValueError(
            f"[random_effects] group = {column!r}: arm {arm!r} has no {column}{where}; "
            f"every included arm needs one"
        )
    labels = col.astype(str).to_numpy()
    groups = tuple(dict.fromkeys(labels))
    return groups, np.array([groups.index(v) for v in labels], dtype=np.int64)


def _knot_values(knots: np.ndarray, reference: float) -> np.ndarray:
    """A (knot, step) matrix.

    Drift at each knot from the random walk's steps, zero at ``reference``.
    """
    J = knots.size
    walk = np.tril(np.ones((J, J - 1)), -1)  # d_k = sum of steps before k
    ref = _interp_rows(np.array([reference], float), knots) @ walk
    return walk - ref


def _interp_rows(years: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation weights (year, knot), flat beyond the ends."""
    y = np.clip(np.asarray(years, float), knots[0], knots[-1])
    W = np.zeros((y.size, knots.size))
    j = np.clip(np.searchsorted(knots, y, side="right") - 1, 0, knots.size - 2)
    f = (y - knots[j]) / (knots[j + 1] - knots[j])
    W[np.arange(y.size), j] = 1.0 - f
    W[np.arange(y.size), j + 1] += f
    return W


def drift_basis(years, knots, reference: float) -> np.ndarray:
    """The drift's basis (year, step): drift(year) = drift_scale * basis @ drift_step.

    Parameters
    ----------
    years : array of float
        Publication years (NaN is an error).
    knots : sequence of int
        Increasing knot years (3 to 6).
    reference : float
        The year where the drift is 0 (alpha is the reference arm's predictor there).
    """
    y = np.asarray(years, float)
    if not np.all(np.isfinite(y)):
        raise ValueError("drift over publication year: every included arm needs a year")
    k = np.asarray(knots, float)
    return _interp_rows(y, k) @ _knot_values(k, float(reference))


def drift_extrapolation_sd(year: float, knots) -> float:
    """The walk's extra sd, in units of drift_scale, at a year beyond the last knot (0 within)."""
    k = np.asarray(knots, float)
    interval = float(np.mean(np.diff(k)))
    return math.sqrt(max(0.0, float(year) - k[-1]) / interval)


def _era_index(years, starts) -> np.ndarray:
    return np.searchsorted(np.asarray(starts, float), np.asarray(years, float), side="right")


def era_labels(starts) -> tuple[str, ...]:
    """Every era's label: ``<=2009``, ``2010-2015``, ``>=2016`` for starts (2010, 2016)."""
    s = [int(v) for v in starts]
    out = [f"<={s[0] - 1}"]
    out += [f"{a}-{b - 1}" if b - 1 > a else f"{a}" for a, b in zip(s, s[1:])]
    return (*out, f">={s[-1]}")


def era_basis(years, starts, reference: float) -> np.ndarray:
    """The era effects' basis (year, era other than the reference's): 0/1 indicators.

    Parameters
    ----------
    years : array of float
        Publication years (NaN is an error).
    starts : sequence of int
        First year of each era after the first (increasing, 1 to 4 of them).
    reference : float
        A year of the reference era (its effect is 0: alpha describes it).
    """
    y = np.asarray(years, float)
    if not np.all(np.isfinite(y)):
        raise ValueError("era effects over publication year: every included arm needs a year")
    e = _era_index(y, starts)
    ref = int(_era_index([float(reference)], starts)[0])
    others = [j for j in range(len(starts) + 1) if j != ref]
    return (e[:, None] == np.asarray(others)[None, :]).astype(float)


def drift_design(mp, years) -> np.ndarray:
    """The drift term's basis (year, step) of a ``[model]`` part: random walk or eras."""
    if mp.drift == "era":
        return era_basis(years, mp.era_starts, mp.drift_reference)
    return drift_basis(years, mp.drift_knots, mp.drift_reference)


def drift_labels(mp) -> list[str]:
    """Labels of the drift's steps (the ``drift_interval`` dim): knot intervals or eras."""
    if mp.drift == "era":
        labels = era_labels(mp.era_starts)
        ref = int(_era_index([float(mp.drift_reference)], mp.era_starts)[0])
        return [lab for j, lab in enumerate(labels) if j != ref]
    k = mp.drift_knots
    return [f"{a}-{b}" for a, b in zip(k, k[1:])]


def drift_extra_sd(mp, year: float) -> float:
    """The drift's extra sd (units of drift_scale) at ``year``.

    The random walk's continuation beyond its last knot; 0 for eras (the last era goes on).
    """
    if mp.drift == "era":
        return 0.0
    return drift_extrapolation_sd(year, mp.drift_knots)


def discount_reference(random_effects, years) -> int:
    """The year an age discount counts arm ages to.

    ``discount_year`` when set (a positive year: the target's, or the spec's), else the
    latest publication year of ``years`` + 1 (the next trial after the data).
    """
    if random_effects.discount_year:
        return int(random_effects.discount_year)
    y = np.asarray(years, float)
    y = y[np.isfinite(y)]
    if not y.size:
        raise ValueError("age discount: every included arm needs a year")
    return int(y.max()) + 1


def discount_at(spec, year):
    """``spec`` with its age discount counted to ``year`` (unchanged without one or a year)."""
    import dataclasses

    re = spec.random_effects
    if year is None or not re.age_discount or int(year) == re.discount_year:
        return spec
    return dataclasses.replace(
        spec, random_effects=dataclasses.replace(re, discount_year=int(year))
    )


def age_decades(years, reference: int) -> np.ndarray:
    """An arm's age before ``reference`` in decades (0 for arms at or after it)."""
    y = np.asarray(years, float)
    if not np.all(np.isfinite(y)):
        raise ValueError("age discount: every included arm needs a year")
    return np.maximum(0.0, (float(reference) - y) / 10.0)


def t_scale_mixture(nu: float, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """A Student-t(nu) as a discrete scale mixture of normals: scales and log weights.

    z ~ t(nu) is z = zeta / sqrt(g), zeta ~ Normal(0, 1), g ~ Gamma(nu / 2, rate nu / 2).
    The nodes are a trapezoid rule in log g over its 1e-15 to 1 - 1e-10 quantiles
    (exponentially convergent for the smooth integrands of an arm integral),
    weights normalised to 1. Returns sd multipliers 1 / sqrt(g_j) and log weights.
    Tested against scipy quadrature of the Student-t kernel.
    """
    from scipy import special

    a = 0.5 * float(nu)
    lo = math.log(special.gammaincinv(a, 1e-15) / a)
    hi = math.log(special.gammainccinv(a, 1e-10) / a)
    t = np.linspace(lo, hi, n)
    logw = a * t - a * np.exp(t)  # density of log g, up to a constant
    logw = logw - special.logsumexp(logw)
    return np.exp(-0.5 * t), logw
