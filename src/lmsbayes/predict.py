"""Pooled and predictive rates for a new trial setting, and phase II thresholds.

Everything here works on posterior draws (xarray), never on PyMC, so that a
saved fit answers questions years later without recompiling anything.

For a setting s (its covariate values: line, treatment class, uterine
fraction, or a user's own covariates) and landmark t:

- pooled rate of a typical trial: S(t) at the linear predictor alpha + x_s beta
  (the logistic of it for logit models; the survival curve at t for the
  survival model, so any landmark comes from one model);
- predictive rate of a new trial: the same with a new trial's random effect
  u_new ~ tau[stratum(s)] * Normal(0, 1) (Student-t when the model says so,
  plus a new trial effect when arms are nested in trials);
- predictive observed rate of a trial of n patients: Binomial(n, p_new) / n,
  counted landmark after landmark among those still progression-free where
  one curve or conditional counts join the landmarks.

Thresholds for the next phase II trial: p0 from the pooled (EORTC's choice)
or the predictive distribution, and p1 = p0 ** HR per draw. Every reported
quantile carries its Monte Carlo standard error.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import special

from lmsbayes import targets
from lmsbayes._lazy import xarray as xr
from lmsbayes.coverage import setting_evidence
from lmsbayes.errors import OptionError
from lmsbayes.model.families import NUMPY_OPS
from lmsbayes.settings import (
    Setting,
    setting_design,
    settings_at,
    shape_group_of,
    standard_settings,
    strata_of,
)
from lmsbayes.targets import Target

if TYPE_CHECKING:  # pragma: no cover
    from lmsbayes.fit import Fit

__all__ = [
    "EORTC2021",
    "Setting",
    "ThresholdTable",
    "standard_settings",
    "predict",
    "thresholds",
    "threshold_table",
    "comparisons",
    "landmark_order",
    "mcse_quantile",
]

#: Published EORTC STBSG 2021 results (Kantidakis et al., Eur J Cancer 2021;154:253-268,
#: abstract): pooled PFS rate (95% CI) by line and landmark, and the thresholds under HR 0.65.
EORTC2021 = pd.DataFrame(
    [
        ("1L", 3.0, 0.74, 0.64, 0.82),
        ("1L", 6.0, 0.58, 0.50, 0.66),
        ("2L+", 3.0, 0.48, 0.41, 0.54),
        ("2L+", 6.0, 0.28, 0.22, 0.34),
    ],
    columns=["line", "landmark", "pooled", "lo", "hi"],
).set_index(["line", "landmark"])


def _default_settings(fit: Fit) -> list[Setting]:
    if fit.data.table == "lms":
        lines = sorted(set(fit.data.arms["line"]))
        if len(lines) > 1 and "line" not in fit.spec.main_effects:
            return [Setting.standardised(line) for line in lines]
        return standard_settings(lines)
    return [Setting()] if not fit.data.covariates else []


def _check_settings(fit: Fit, settings: Sequence[Setting], landmarks: Sequence[float]) -> None:
    d = fit.data
    if d.table == "lms":
        fitted_lines = sorted(set(d.arms["line"]))
        uses_line = "line" in fit.spec.main_effects
        for s in settings:
            if s.line is None:
                raise OptionError(
                    f"setting {s.label!r}: a fit of the LMS table needs a line (Setting('1L') or "
                    "Setting('2L+'))"
                )
            if s.line not in fitted_lines:
                raise OptionError(
                    f"setting {s.label!r}: line {s.line!r} is not in the fitted data (lines: "
                    f"{fitted_lines}); the model cannot extrapolate to it"
                )
            if len(fitted_lines) > 1 and not uses_line and not s.case_mix:
                raise OptionError(
                    f"setting {s.label!r}: the model pools both lines without a `line` covariate"
                )
    for t in landmarks:
        if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
            raise OptionError(f"landmark must be a positive number of months, got {t!r}")
        if t > 120:
            raise OptionError(f"landmark {t:g} months is beyond 10 years; the data do not reach it")
    if d.landmarks and not d.family.any_landmark:
        for t in landmarks:
            if float(t) not in d.landmarks:
                raise OptionError(
                    f"landmark {t:g} months was not fitted (fitted: "
                    f"{[f'{x:g}' for x in d.landmarks]}); this "
                    "per-landmark model has no parameter for another landmark (the survival model "
                    "gives any landmark)"
                )
    if not d.landmarks and not d.family.any_landmark and landmarks:
        raise OptionError(
            "this model has no landmarks (a binomial table): call predict without landmarks"
        )


def _posterior_values(fit: Fit) -> dict:
    m = fit.model
    post = fit.draws
    return m, m.canonical(
        {p.name: post[p.name].transpose("chain", "draw", *p.dims).values for p in m.params}
    )


def _rates(
    fit: Fit, eta: np.ndarray, shape: np.ndarray | None, landmarks: Sequence[float]
) -> np.ndarray:
    """Rates at the landmarks from linear predictors eta.

    (chain, draw, setting, K) -> (chain, draw, setting, L).

    ``shape`` (survival): the curve's shape for each (chain, draw, setting).
    """
    d = fit.data
    return d.family.rates(eta, landmarks, d.landmarks, shape, fit.spec.model.t_ref)


def _shape_values(fit: Fit, c: dict, groups: np.ndarray) -> np.ndarray | None:
    return c["shape"][..., groups] if "shape" in c else None


def _new_effects(fit: Fit, tau: np.ndarray, rng, new_group: bool = True) -> np.ndarray:
    """A new trial's random effect for each draw.

    tau (chain, draw, setting, Kz) times a standard draw.
    """
    re = fit.spec.random_effects
    z = (
        rng.standard_t(re.nu, size=tau.shape)
        if re.distribution == "student_t"
        else rng.standard_normal(tau.shape)
    )
    u = tau * z
    post = fit.draws
    if fit.model.grouped and new_group:  # a new arm of a new group (trial or regimen)
        tt = fit.model.z_canonical(post["group_tau"].values)[:, :, None, :]
        u = u + tt * rng.standard_normal(tau.shape)
    return u


def _case_mix_predictors(
    fit: Fit, line: str, c: dict, rng
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled predictors of every included arm of a line (chain, draw, arm, K).

    Also their strata and shape groups.
    """
    m, d = fit.model, fit.data
    sel = np.flatnonzero(d.arms["line"].astype(str).to_numpy() == line)
    post = fit.draws
    C, D = post.sizes["chain"], post.sizes["draw"]
    du = None
    if d.latent.size and "uterine_latent" not in post:
        raise ValueError(
            f"this fit keeps no arm-level draws (more than {2000} arms): case-mix settings need "
            "them; predict named settings (Setting('2L+', 'R-T', 0.5)) or use thresholds()"
        )
    if d.latent.size:
        du = np.zeros((C, D, d.n_arms))
        du[..., d.latent] = (
            post["uterine_latent"].transpose("chain", "draw", "arm_latent").values
            - d.uterine_centre
        )
    # the model's own design: an arm's drift at its year is part of its case mix
    eta = m.base_predictor(NUMPY_OPS, c, m.arrays["X"], m.arrays["Xu"], du)[..., sel, :]
    return (
        eta,
        d.stratum_idx[sel],
        (d.shape_idx[sel] if len(d.shape_idx) else np.zeros(sel.size, np.int64)),
    )


def _resolve(fit: Fit, settings, landmarks, at) -> tuple[list[Setting], list[float]]:
    """The settings (``at`` filled in) and landmarks a prediction is for, checked."""
    settings = settings_at(
        fit, list(settings) if settings is not None else _default_settings(fit), at
    )
    if not settings:
        raise ValueError(
            "this model has covariates: give the settings to predict, e.g. Setting(x=1.0)"
        )
    has_lm = bool(fit.data.family.reported_landmarks(fit.spec.landmarks, fit.data.landmarks))
    if landmarks is None:
        landmarks = list(fit.spec.landmarks) if has_lm else []
    landmarks = [float(t) for t in landmarks]
    _check_settings(fit, settings, landmarks)
    return settings, landmarks


def predict(
    fit: Fit,
    settings: Iterable[Setting] | None = None,
    landmarks: Sequence[float] | None = None,
    *,
    n: int = 40,
    seed: int | None = None,
    at: Mapping[str, float] | None = None,
    target: Target | None = None,
) -> xr.Dataset:
    """Posterior draws of pooled, predictive and predictive-observed rates.

    Parameters
    ----------
    fit : Fit
    settings : iterable of Setting, optional
        Default :func:`standard_settings` for the fitted lines (LMS), or the
        one setting of a model without covariates.
    landmarks : sequence of float, optional
        Months; default the spec's landmarks. The survival model gives any
        landmark; per-landmark models only the fitted ones.
    n : int
        Patients in the new trial for the predictive observed rate.
    seed : int, optional
        Seed for the new-trial random effects (default: the spec's seed).
    at : mapping, optional
        Values of the spec's own covariates for settings that do not state
        them (by spec name or column, in the column's units: ``{"year": 2026}``);
        default the spec's ``[thresholds] at``.
    target : lmsbayes.targets.Target, optional
        What the defined settings' rates are for: the historical average, a
        new arm of a named regimen at a year, or a new regimen at a year
        (:mod:`lmsbayes.targets`). ``pooled`` is then the target's mean (a
        named regimen's own effect included) and ``predictive`` a new arm of
        it. Case-mix settings are the historical average whatever the target.
        Default: version 0.1's rows (a new arm of the setting), unlabelled.

    Returns
    -------
    xarray.Dataset
        ``rate`` with dims (chain, draw, setting, landmark, quantity) (no
        landmark dim for a binomial table), quantity in ``['pooled',
        'predictive', 'observed']``; ``logit`` the logit of the rate. Coords
        ``description`` (the setting in words) and, for LMS fits, ``line``,
        ``treatment_class``, ``uterine``. Attrs: ``n``, spec name and data hash.

    Raises
    ------
    ValueError
        For a setting the model cannot support (unfitted line or landmark,
        a covariate value outside its coding, a fraction outside [0, 1]).
    """
    p = _predict_arrays(fit, settings, landmarks, n=n, seed=seed, at=at, target=target)
    dims = p.dims + ("quantity",)
    rate = xr.DataArray(
        p.rate,
        dims=dims,
        coords={k: v for k, v in p.coords.items() if not isinstance(v, tuple)},
        attrs=dict(_RATE_ATTRS),
    )
    with np.errstate(divide="ignore"):
        logit = np.log(rate) - np.log1p(-rate)
    ds = xr.Dataset({"rate": rate, "logit": logit.assign_attrs(long_name="logit of the PFS rate")})
    ds = ds.assign_coords({k: v for k, v in p.coords.items() if isinstance(v, tuple)})
    ds.attrs.update(p.attrs)
    return ds


#: attrs of predict's ``rate`` (and of the thresholds' p0 and p1 draws)
_RATE_ATTRS = {"long_name": "PFS rate", "units": "proportion progression-free"}
_QUANTITIES = ("pooled", "predictive", "observed")


@dataclass
class _Draws:
    """:func:`predict`'s draws as numpy, before any xarray object is built.

    ``rate`` (chain, draw, setting[, landmark], quantity) holds the quantities asked for,
    in the order of ``quantities``; ``coords`` the Dataset's coordinates in its order
    (a tuple ``(dim, values)`` for one along another dim); ``attrs`` its attrs.
    """

    rate: np.ndarray
    dims: tuple[str, ...]
    quantities: tuple[str, ...]
    coords: dict
    attrs: dict
    settings: list
    landmarks: list


def _predict_arrays(
    fit: Fit,
    settings: Iterable[Setting] | None = None,
    landmarks: Sequence[float] | None = None,
    *,
    n: int = 40,
    seed: int | None = None,
    at: Mapping[str, float] | None = None,
    target: Target | None = None,
    quantities: Sequence[str] = _QUANTITIES,
) -> _Draws:
    """The draws of :func:`predict` as numpy arrays (see there), only the ``quantities`` asked.

    The pooled rates take no random numbers and the observed ones come last, so a
    quantity's draws are the same whichever others are asked with it.
    """
    if target is not None:
        targets.check(fit, target)
        at = {**targets.year_covariates(fit, target), **dict(at or {})}
    settings = settings_at(
        fit, list(settings) if settings is not None else _default_settings(fit), at
    )
    if not settings:
        raise OptionError(
            "this model has covariates: give the settings to predict, e.g. Setting(x=1.0)"
        )
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise OptionError(f"n (patients in the new trial) must be a positive integer, got {n!r}")
    family = fit.data.family
    has_lm = bool(family.reported_landmarks(fit.spec.landmarks, fit.data.landmarks))
    if landmarks is None:
        landmarks = list(fit.spec.landmarks) if has_lm else []
    landmarks = [float(t) for t in landmarks]
    _check_settings(fit, settings, landmarks)
    quantities = tuple(q for q in _QUANTITIES if q in quantities)
    need_pred = "predictive" in quantities or "observed" in quantities
    m, c = _posterior_values(fit)
    rng = np.random.default_rng(fit.spec.sampler.seed + 2 if seed is None else seed)
    post = fit.draws
    C, D = post.sizes["chain"], post.sizes["draw"]
    L = max(len(landmarks), 1)
    pooled = np.empty((C, D, len(settings), L))
    pred = np.empty_like(pooled) if need_pred else None
    plain = [k for k, s in enumerate(settings) if not s.case_mix]
    lm = landmarks if has_lm else []
    if plain:
        ps = [settings[k] for k in plain]
        X = setting_design(fit, ps)
        row = targets.drift_row(fit, None if target is None else target.year)
        if row.size:  # the drift at the target's year (its reference year without one)
            X = np.hstack([X, np.tile(row, (len(ps), 1))])
        eta = m.base_predictor(NUMPY_OPS, c, X)
        strata, groups = strata_of(fit, ps), shape_group_of(fit, ps)
        u = None
        if need_pred or target is not None:
            u = _new_effects(fit, c["tau"][..., strata, :], rng, new_group=target is None)
        if target is not None:
            mean_shift, extra = targets.shifts(fit, target, (C, D), rng)
            eta = eta + mean_shift[:, :, None, None]
            u = u + extra[:, :, None, None]
        shape = _shape_values(fit, c, groups)
        pooled[:, :, plain] = _rates(fit, eta, shape, lm).reshape(C, D, len(ps), L)
        if need_pred:
            pred[:, :, plain] = _rates(fit, eta + u, shape, lm).reshape(C, D, len(ps), L)
    for k, s in enumerate(settings):
        if s.case_mix:
            eta_a, strata_a, groups_a = _case_mix_predictors(fit, s.case_mix, c, rng)
            pooled[:, :, k] = _rates(fit, eta_a, _shape_values(fit, c, groups_a), lm).mean(axis=2)
            if not need_pred:
                continue
            # a new trial drawn from the line's case mix: one included arm's covariates per draw
            pick = rng.integers(0, eta_a.shape[2], size=(C, D))
            e1 = np.take_along_axis(eta_a, pick[:, :, None, None], axis=2)
            tau = c["tau"][..., strata_a, :]  # (chain, draw, arm, Kz)
            tau1 = np.take_along_axis(tau, pick[:, :, None, None], axis=2)
            shape1 = None
            if "shape" in c:
                shape1 = np.take_along_axis(
                    _shape_values(fit, c, groups_a) * np.ones((C, D, 1)), pick[:, :, None], axis=2
                )
            pred[:, :, k] = _rates(fit, e1 + _new_effects(fit, tau1, rng), shape1, lm)[:, :, 0]
    parts = {"pooled": pooled, "predictive": pred}
    if "observed" in quantities:
        parts["observed"] = (
            _observed_in_sequence(rng, n, pred, landmarks)
            if family.joined and has_lm
            else rng.binomial(n, pred)
        ) / n
    stack = np.stack([parts[q] for q in quantities], axis=-1)
    dims = ("chain", "draw", "setting", "landmark") if has_lm else ("chain", "draw", "setting")
    if not has_lm:
        stack = stack[:, :, :, 0]
    coords = {
        "chain": post["chain"].values,
        "draw": post["draw"].values,
        "setting": [s.label for s in settings],
    }
    if has_lm:
        coords["landmark"] = landmarks
    coords["quantity"] = list(quantities)
    coords["description"] = ("setting", [s.describe() for s in settings])
    attrs = {}
    if target is not None:  # each row states what it predicts, and the regimen arms it rests on
        coords["target"] = (
            "setting",
            [
                "historical average (case mix)" if s.case_mix else targets.describe_for(fit, target)
                for s in settings
            ],
        )
        coords["regimen_arms"] = (
            "setting",
            [0 if s.case_mix else len(targets.rests_on(fit, target, s.line)) for s in settings],
        )
        attrs["target"] = target.describe()
    if fit.data.table == "lms":
        coords["line"] = ("setting", [s.line for s in settings])
        coords["treatment_class"] = (
            "setting",
            [s.treatment_class if not s.case_mix else "case mix" for s in settings],
        )
        coords["uterine"] = (
            "setting",
            [float(s.uterine) if not s.case_mix else math.nan for s in settings],
        )
    attrs.update(
        n=int(n), spec_name=fit.spec.name, data_sha256=fit.data.data_sha256, engine=fit.engine
    )
    if any(s.covariates for s in settings):
        # a user's own covariate values, for the evidence of each setting
        attrs["setting_covariates"] = json.dumps(
            {s.label: s.covariates for s in settings}, sort_keys=True, default=float
        )
    return _Draws(stack, dims, quantities, coords, attrs, settings, landmarks)


def _observed_in_sequence(
    rng: np.random.Generator, n: int, rate: np.ndarray, landmarks: Sequence[float]
) -> np.ndarray:
    """Progression-free counts of one cohort of n at increasing landmarks (last axis).

    Each landmark's count is binomial among those still progression-free at
    the one before, so the counts never increase.
    """
    order = np.argsort(landmarks, kind="stable")
    out = np.empty(rate.shape, dtype=np.int64)
    at_risk, before = np.full(rate.shape[:-1], n), np.ones(rate.shape[:-1])
    for k in order:
        cond = np.clip(rate[..., k] / np.maximum(before, 1e-300), 0.0, 1.0)
        at_risk = out[..., k] = rng.binomial(at_risk, cond)
        before = rate[..., k]
    return out


# ----------------------------------------------------------------------------- Monte Carlo error


def _effective_size(fit: Fit, x: np.ndarray) -> float:
    """Effective sample size of draws x (chain, draw).

    The engine's ESS for independent draws, else bulk ESS.
    """
    if fit.diagnostics.independent_draws:
        return float(min(fit.diagnostics.ess, x.size))
    import arviz_stats as azs

    return float(azs.ess(xr.DataArray(x, dims=("chain", "draw")), method="bulk").values)


def mcse_quantile(x: np.ndarray, prob: float, ess: float) -> float:
    """Monte Carlo standard error of the ``prob`` quantile of draws x with effective size ``ess``.

    The order-statistic method of Vehtari et al. (2021), as ArviZ's
    ``mcse(method="quantile")``, with the given effective sample size.
    """
    x = np.sort(np.asarray(x, float).ravel())
    size = x.size
    # the beta quantiles by betaincinv (scipy.stats.beta.ppf): scipy.stats costs 0.5 s to import
    lo, hi = special.betaincinv(
        ess * prob + 1, ess * (1 - prob) + 1, np.array([0.1586553, 0.8413447])
    )
    i1 = int(np.floor(max(lo * size - 1, 0)))
    i2 = int(np.ceil(min(hi * size - 1, size - 1)))
    return float((x[i2] - x[i1]) / 2)


def _summarise(fit: Fit, da: xr.DataArray, prob: float) -> xr.Dataset:
    lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
    q = da.quantile([0.5, lo, hi], dim=("chain", "draw"))
    out = {
        "mean": da.mean(("chain", "draw")),
        "median": q.sel(quantile=0.5, drop=True),
        "lower": q.sel(quantile=lo, drop=True),
        "upper": q.sel(quantile=hi, drop=True),
    }
    other = [d for d in da.dims if d not in ("chain", "draw")]
    stacked = da.transpose("chain", "draw", *other)
    vals = stacked.values.reshape(stacked.shape[0], stacked.shape[1], -1)
    for name, p in (("median", 0.5), ("lower", lo), ("upper", hi)):
        m = np.array(
            [
                mcse_quantile(vals[:, :, j], p, _effective_size(fit, vals[:, :, j]))
                for j in range(vals.shape[-1])
            ]
        )
        out[f"{name}_mcse"] = xr.DataArray(
            m.reshape([da.sizes[d] for d in other]),
            dims=other,
            coords={d: da[d] for d in other if d in da.coords},
        )
    return xr.Dataset(out)


# ----------------------------------------------------------------------------- thresholds


def thresholds(
    fit: Fit,
    settings: Iterable[Setting] | None = None,
    hr: Sequence[float] | float | None = None,
    reference: str | None = None,
    *,
    landmarks: Sequence[float] | None = None,
    prob: float = 0.95,
    at: Mapping[str, float] | None = None,
    target: Target | None = None,
) -> xr.Dataset:
    """Phase II thresholds: p0 and p1 = p0 ** HR per draw, with credible intervals.

    Parameters
    ----------
    fit : Fit
    settings : iterable of Setting, optional
        Default :func:`standard_settings` (with the per-line case-mix rows first).
    hr : float or sequence of float, optional
        Hazard ratios under the alternative (default: the spec's, 0.65).
        ``S1 = S0 ** HR`` holds exactly under proportional hazards.
    reference : {'pooled', 'predictive'}, optional
        Which distribution p0 comes from (default: the spec's; EORTC used pooled).
    landmarks : sequence of float, optional
        Any landmarks for the survival model (default: the spec's).
    prob : float
        Credible-interval probability.
    at : mapping, optional
        Values of the spec's own covariates (see :func:`predict`).
    target : lmsbayes.targets.Target, optional
        What p0 is for (see :func:`predict`): the historical average, a named
        standard regimen's new arm, or a new regimen; each row states it.

    Returns
    -------
    xarray.Dataset
        ``p0`` draws (chain, draw, setting, landmark), ``p1`` draws (..., hr);
        summaries ``p0_mean, p0_median, p0_lower, p0_upper`` with their Monte
        Carlo standard errors (``p0_median_mcse`` ...) and the same for p1.
        Attrs record the rule (reference, hr, prob).
    """
    group, _ = threshold_group(
        fit, settings, hr, reference, landmarks=landmarks, prob=prob, at=at, target=target
    )
    return group.to_dataset()


def threshold_group(
    fit: Fit,
    settings: Iterable[Setting] | None = None,
    hr: Sequence[float] | float | None = None,
    reference: str | None = None,
    *,
    landmarks: Sequence[float] | None = None,
    prob: float = 0.95,
    at: Mapping[str, float] | None = None,
    target: Target | None = None,
):
    """:func:`thresholds` as a :class:`~lmsbayes.groups.Group`, and the rows' evidence table.

    The Dataset's content without xarray (``group.to_dataset()`` is what
    :func:`thresholds` returns): :func:`threshold_table` reads either, and
    ``lmsbayes run`` prints its table from this, since importing xarray and
    building the Dataset took longer than the fit. The evidence is
    :func:`lmsbayes.coverage.setting_evidence` of the rows (``threshold_table``'s
    ``evidence``). Arguments as for :func:`thresholds`; the draws' summaries
    (where the exact engine's rule does not apply) still use xarray.
    """
    from lmsbayes.groups import Group
    from lmsbayes.integrated import rule_applies

    reference = reference or fit.spec.thresholds.reference
    if reference not in ("pooled", "predictive"):
        raise OptionError(f"reference must be 'pooled' or 'predictive', got {reference!r}")
    hrs = [float(h) for h in np.atleast_1d(hr if hr is not None else fit.spec.thresholds.hr)]
    for h in hrs:
        if not 0 < h < 1:
            raise OptionError(f"hr must be in (0, 1) (an improvement), got {h!r}")
    if not 0 < prob < 1:
        raise OptionError(f"prob must be in (0, 1), got {prob!r}")
    draws = _predict_arrays(fit, settings, landmarks, at=at, target=target, quantities=[reference])
    p0 = draws.rate[..., 0]
    p1 = p0[..., None] ** np.asarray(hrs, float)  # as xarray broadcasts p0 ** hr
    dims0 = draws.dims
    coords = {k: v for k, v in draws.coords.items() if k != "quantity"}
    dim_coords = {k: v for k, v in coords.items() if not isinstance(v, tuple)}
    group = Group(
        {"p0": (dims0, p0, dict(_RATE_ATTRS)), "p1": ((*dims0, "hr"), p1, dict(_RATE_ATTRS))},
        coords={
            **dim_coords,
            "hr": hrs,
            **{k: v for k, v in coords.items() if k not in dim_coords},
        },
    )
    if rule_applies(fit, target):  # else the draws' summaries (see rule_applies)
        _integrated_summaries(fit, group, settings, landmarks, at, reference, hrs, prob)
    else:
        for name, x, dims in (("p0", p0, dims0), ("p1", p1, (*dims0, "hr"))):
            da = xr.DataArray(
                x,
                dims=dims,
                coords={d: group[d].values for d in dims if d in group.coords},
                attrs=dict(_RATE_ATTRS),
            )
            s = _summarise(fit, da, prob)
            for k in s:
                group[f"{name}_{k}"] = (s[k].dims, s[k].values, dict(s[k].attrs))
    used = {
        **dict(fit.spec.thresholds.at),
        **targets.year_covariates(fit, target),
        **dict(at or {}),
    }
    group.attrs.update(at=json.dumps(used, sort_keys=True))
    for name in ("target", "setting_covariates"):
        if name in draws.attrs:
            group.attrs[name] = draws.attrs[name]
    group.attrs.update(
        reference=reference,
        hr=hrs,
        prob=prob,
        rule=f"p0 from the {reference} rate; p1 = p0 ** HR",
        spec_name=fit.spec.name,
        data_sha256=fit.data.data_sha256,
        engine=fit.engine,
    )
    # what informs each row travels with the result, so that threshold_table(ds) shows it
    # without the fit (issue 24: the Python table carries the CLI's evidence and flags)
    ev = setting_evidence(fit, _settings_of(group), landmarks=_landmarks_of(group), at=used)
    group.attrs["evidence"] = ev.to_json(orient="records")
    return group, ev


def _integrated_summaries(fit, group, settings, landmarks, at, reference, hrs, prob) -> None:
    """The summaries of p0 and p1, integrated over the exact engine's rule, into ``group``.

    Quantiles of p0 by the rule (lmsbayes.integrated); p1 = p0 ** HR is
    monotone in p0, so its quantiles are p0's raised to HR, and so are their
    errors (delta method). The ``*_mcse`` variables hold the rule's
    integration error. The variables come in the order and with the dims the
    draws' summaries have (:func:`_summarise`), but for the mcse of p1: (hr, ...).
    """
    from lmsbayes.integrated import rate_summaries

    settings, landmarks = _resolve(fit, settings, landmarks, at)
    lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
    r = rate_summaries(fit, settings, landmarks, reference, [0.5, lo, hi], hrs)
    has_lm = "landmark" in group["p0"].dims
    q, err = r["quantiles"], r["error"]
    if not has_lm:
        q, err, mean, p1_mean = q[..., 0], err[..., 0], r["mean"][..., 0], r["p1_mean"][..., 0]
    else:
        mean, p1_mean = r["mean"], r["p1_mean"]
    dims0 = ("setting", "landmark") if has_lm else ("setting",)
    h = np.asarray(hrs, float).reshape((1, -1) + (1,) * len(dims0))
    q1 = q[:, None] ** h  # (prob, hr, ...)
    err1 = err[:, None] * h * q[:, None] ** (h - 1)
    # p1's summaries with hr last, as p1's draws have it
    last = (*range(1, len(dims0) + 1), 0)
    group["p0_mean"] = (dims0, mean)
    for k, name in enumerate(("median", "lower", "upper")):
        group[f"p0_{name}"] = (dims0, q[k])
    for k, name in enumerate(("median", "lower", "upper")):
        group[f"p0_{name}_mcse"] = (dims0, err[k])
    group["p1_mean"] = ((*dims0, "hr"), np.transpose(p1_mean, last))
    for k, name in enumerate(("median", "lower", "upper")):
        group[f"p1_{name}"] = ((*dims0, "hr"), np.transpose(q1[k], last))
    for k, name in enumerate(("median", "lower", "upper")):
        group[f"p1_{name}_mcse"] = (("hr", *dims0), err1[k])
    group.attrs["summaries"] = (
        f"integrated over the exact engine's rule ({r['rule'].description}); "
        "mcse columns: the rule's integration error"
    )


def _landmarks_of(ds) -> list[float]:
    return [float(t) for t in ds["landmark"].values] if "landmark" in ds.sizes else [math.nan]


class ThresholdTable(pd.DataFrame):
    """A threshold table: a pandas DataFrame whose printed form shows every column whole.

    ``print(table)`` in a terminal and the notebook view keep the p0, p1, HR
    and evidence columns instead of eliding them with "...".
    """

    @property
    def _constructor(self):
        return ThresholdTable

    def _full(self):
        return pd.option_context(
            "display.max_columns",
            None,
            "display.expand_frame_repr",
            False,
            "display.max_colwidth",
            90,
            "display.max_rows",
            500,
            "display.float_format",
            "{:.4g}".format,
        )

    def _readable(self):
        from lmsbayes.rows import readable

        needed = {"setting", "landmark", "p0", "p0_lower", "p0_upper", "hr"}
        return readable(pd.DataFrame(self)) if needed <= set(self.columns) else None

    def __repr__(self) -> str:
        view = self._readable()
        if view is None:
            with self._full():
                return super().__repr__()
        with self._full():
            return (
                view.to_string(index=False)
                + "\n(the numbers are columns: p0, p0_lower, p0_upper, p1, p1_lower, p1_upper, "
                "informed_by, flags, arm_ids)"
            )

    def _repr_html_(self) -> str:
        view = self._readable()
        with self._full():
            return super()._repr_html_() if view is None else view.to_html(index=False)


def threshold_table(
    ds: xr.Dataset,
    *,
    eortc: bool = True,
    fit: Fit | None = None,
    evidence: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Flat table of a :func:`thresholds` result, one row per setting x landmark x HR.

    Columns ``p0``, ``p0_lower``, ``p0_upper`` (posterior median and credible
    interval) with Monte Carlo standard errors, the same for ``p1``. With
    ``eortc=True`` the published EORTC 2021 per-line pooled rate is shown on
    the case-mix rows only (the rows it is comparable with). With ``fit``,
    each row also states what informs it and flags extrapolation
    (:func:`lmsbayes.coverage.setting_evidence`); ``evidence`` gives that
    table as :func:`threshold_group` returned it, instead of recomputing it.
    ``ds`` may also be the Group of :func:`threshold_group`.
    """
    ev = evidence
    if ev is None and fit is not None:
        at = json.loads(ds.attrs.get("at", "{}") or "{}")
        landmarks = sorted({float(t) for t in _landmarks_of(ds)}, key=lambda t: (t != t, t))
        ev = setting_evidence(fit, _settings_of(ds), landmarks=landmarks, at=at)
    elif ev is None and ds.attrs.get("evidence"):
        ev = pd.read_json(io.StringIO(ds.attrs["evidence"]), orient="records")
    return _threshold_table(ds, eortc=eortc, evidence=ev)


def _grid(ds, name: str) -> np.ndarray:
    """A summary of ``ds`` as (setting, landmark, hr), a length-1 axis where it has no such dim."""
    v = ds[name]
    order = [d for d in ("setting", "landmark", "hr") if d in v.dims]
    x = np.asarray(v.transpose(*order).values)
    return x.reshape(
        [x.shape[order.index(d)] if d in order else 1 for d in ("setting", "landmark", "hr")]
    )


def _threshold_table(ds, *, eortc: bool = True, evidence: pd.DataFrame | None = None):
    """:func:`threshold_table` of a thresholds Dataset or Group, with the rows' evidence given."""
    rows = []
    labels = [str(s) for s in ds["setting"].values]
    lines = [str(v) for v in ds["line"].values] if "line" in ds.coords else [""] * len(labels)
    descs = (
        [str(v) for v in ds["description"].values]
        if "description" in ds.coords
        else [""] * len(labels)
    )
    has_target = "target" in ds.coords
    if has_target:  # what the row predicts, and its regimen's arms
        target_of = [str(v) for v in ds["target"].values]
        arms_of = [int(v) for v in ds["regimen_arms"].values]
    landmarks = ds["landmark"].values if "landmark" in ds.sizes else [np.nan]
    hrs = ds["hr"].values
    grids = {
        f"{q}_{part}": _grid(ds, f"{q}_{part}")
        for q in ("p0", "p1")
        for part in ("median", "lower", "upper", "median_mcse")
    }
    for i, s in enumerate(labels):
        line = lines[i]
        for j, t in enumerate(landmarks):
            for k, h in enumerate(hrs):
                row = {
                    "setting": s,
                    "description": descs[i],
                    "line": line,
                    "landmark": float(t),
                    "hr": float(h),
                }
                if has_target:
                    row["target"] = target_of[i]
                    row["regimen_arms"] = arms_of[i]
                for q in ("p0", "p1"):
                    kk = k if q == "p1" else 0
                    row[q] = float(grids[f"{q}_median"][i, j, kk])
                    for part in ("lower", "upper"):
                        row[f"{q}_{part}"] = float(grids[f"{q}_{part}"][i, j, kk])
                    row[f"{q}_mcse"] = float(grids[f"{q}_median_mcse"][i, j, kk])
                if eortc:
                    key = (line, float(t))
                    comparable = s.endswith("case mix") and key in EORTC2021.index
                    ref = EORTC2021.loc[key] if comparable else None
                    row["eortc_p0"] = float(ref["pooled"]) if ref is not None else np.nan
                    row["eortc_p0_ci"] = (
                        f"{ref['lo']:.2f}-{ref['hi']:.2f}" if ref is not None else ""
                    )
                    row["eortc_p1"] = (
                        float(ref["pooled"]) ** float(h) if ref is not None else np.nan
                    )
                rows.append(row)
    table = pd.DataFrame(rows)
    ev = evidence
    if ev is not None and len(ev):
        table = table.merge(ev, on=["setting", "landmark"], how="left")
        from lmsbayes.rows import informed_by

        table["informed_by"] = [informed_by(r) for _, r in table.iterrows()]
        table["flags"] = table["flags"].fillna("")
    at_used = json.loads(ds.attrs.get("at", "{}") or "{}")
    if at_used and "flags" in table:
        # --at moves the class and site rows; a case-mix row is the historical average of the
        # included arms, at their own values, and says so rather than silently staying put
        given = ", ".join(f"{k}={v:g}" for k, v in at_used.items())
        note = (
            f"not evaluated at {given}: a case-mix row is the historical average of the "
            "included arms, at their own values"
        )
        case_mix = table["setting"].astype(str).str.endswith("case mix")
        table.loc[case_mix, "flags"] = [
            f"{f}; {note}" if f else note for f in table.loc[case_mix, "flags"]
        ]
    table = ThresholdTable(table)
    table.attrs.update({k: v for k, v in ds.attrs.items() if k != "evidence"})
    return table


def _settings_of(ds) -> list:
    """The settings of a :func:`thresholds` result, rebuilt from its coordinates.

    Without those coordinates, the labels themselves.

    The evidence of a row is that of its own covariate values, whatever its label: a setting
    outside the standard table must not be looked up by name.
    """
    labels = [str(s) for s in ds["setting"].values]
    if not {"line", "treatment_class", "uterine"} <= set(ds.coords):
        return labels
    own = json.loads(ds.attrs.get("setting_covariates", "{}") or "{}")
    out = []
    lines, classes = ds["line"].values, ds["treatment_class"].values
    uterine = ds["uterine"].values
    for i, label in enumerate(labels):
        line, klass = str(lines[i]), str(classes[i])
        if klass == "case mix":
            out.append(Setting(line, name=label, case_mix=line, **own.get(label, {})))
        else:
            out.append(Setting(line, klass, float(uterine[i]), name=label, **own.get(label, {})))
    return out


def comparisons(fit: Fit, landmarks: Sequence[float] | None = None) -> pd.DataFrame:
    """EORTC's comparisons as posterior differences of pooled rates.

    Per line and landmark: NR-T minus R-T (at uterine fraction 0.5) and
    uterine minus non-uterine (R-T), with the posterior mean difference, its
    95% interval and P(difference > 0).
    """
    lines = sorted(set(fit.data.arms["line"]))
    pred = predict(fit, standard_settings(lines, case_mix=False), landmarks)["rate"].sel(
        quantity="pooled"
    )
    rows = []
    for line in lines:
        for label, a, b in (
            ("NR-T - R-T", "NR-T", "R-T"),
            ("uterine - non-uterine", "R-T uterine", "R-T non-uterine"),
        ):
            d = pred.sel(setting=f"{line} {a}") - pred.sel(setting=f"{line} {b}")
            for t in d["landmark"].values:
                x = d.sel(landmark=t).values.ravel()
                rows.append(
                    {
                        "line": line,
                        "landmark": float(t),
                        "comparison": label,
                        "difference": x.mean(),
                        "lower": np.quantile(x, 0.025),
                        "upper": np.quantile(x, 0.975),
                        "prob_positive": (x > 0).mean(),
                    }
                )
    return pd.DataFrame(rows)


def landmark_order(
    fit: Fit,
    settings: Iterable[Setting] | None = None,
    quantity: str = "pooled",
    *,
    at: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """How often the posterior puts a later landmark's rate above an earlier one's.

    A survival function cannot rise, so S(6) > S(3) is impossible for one
    population. Models that fit each landmark separately (logit-binomial,
    logit-normal) do not know this, and their draws can break the order; the
    survival model and the joint model keep it by construction.

    Returns
    -------
    pandas.DataFrame
        One row per setting and pair of consecutive landmarks: ``setting``,
        ``earlier``, ``later`` (months) and ``prob_later_higher``. Empty when
        one landmark was fitted. ``at``: values of the spec's own covariates
        (see :func:`predict`).
    """
    if quantity not in ("pooled", "predictive"):
        raise OptionError(f"quantity must be 'pooled' or 'predictive', got {quantity!r}")
    draws = _predict_arrays(fit, settings, at=at, quantities=[quantity])
    if "landmark" not in draws.dims:
        return pd.DataFrame(columns=["setting", "earlier", "later", "prob_later_higher"])
    rate = draws.rate[..., 0]  # (chain, draw, setting, landmark)
    column = {float(t): j for j, t in enumerate(draws.landmarks)}
    landmarks = sorted(column)
    rows = []
    for i, s in enumerate(draws.coords["setting"]):
        for a, b in zip(landmarks, landmarks[1:]):
            higher = rate[:, :, i, column[b]] > rate[:, :, i, column[a]]
            rows.append(
                {
                    "setting": str(s),
                    "earlier": a,
                    "later": b,
                    "prob_later_higher": float(higher.mean()),
                }
            )
    return pd.DataFrame(rows, columns=["setting", "earlier", "later", "prob_later_higher"])


def new_trial_conditionals(
    fit: Fit, setting: Setting | None = None, landmark: float | None = None
) -> dict:
    """A new trial's rate given each point of the global parameters: link-scale (loc, scale).

    Given the globals, a new trial's rate is ``inverse_link(loc + scale * z)``
    with ``z`` standard normal (Student-t with ``df`` degrees of freedom for
    t random effects): ``loc`` is the link of the pooled rate of the setting
    at the landmark, ``scale`` the random-effect sd of its stratum (and of a
    new trial's own effect, for arms nested in trials). For a line's case
    mix, every included arm of the line is a point of equal weight within
    each draw. This is what :class:`lmsbayes.prior.density.PredictiveDensity`
    integrates, with no new-trial effect sampled.

    Returns
    -------
    dict
        ``loc``, ``scale``, ``weights`` (1-D, one per point), ``link``
        (``'logit'`` or ``'cloglog'``) and ``df`` (None for normal effects).

    Raises
    ------
    NotImplementedError
        Group effects, drift over publication year or an age discount (a new
        group's effect and the year's terms are not in the setting's design),
        or a link without a closed form (predict's draws remain available).
    """
    settings = [setting] if setting is not None else _default_settings(fit)
    if len(settings) != 1:
        raise OptionError("new_trial_conditionals needs one setting")
    settings = settings_at(fit, settings, None)
    s = settings[0]
    family = fit.data.family
    has_lm = bool(family.reported_landmarks(fit.spec.landmarks, fit.data.landmarks))
    lm = [float(landmark)] if has_lm else []
    _check_settings(fit, settings, lm)
    re = fit.spec.random_effects
    student = re.distribution == "student_t"
    from lmsbayes.integrated import link_normals, rule_applies

    m = fit.model
    if m.grouped or m.drift or m.discounted:
        # a new group's effect, the drift's year basis and the age discount are not in the
        # setting's design: the predictive draws (predict) stand in
        raise NotImplementedError("group effects, drift or age discount: use predict's draws")
    if rule_applies(fit) and family.effect_link in ("logit", "cloglog"):
        # the exact engine's fixed rule: its weighted points, so the MAP prior, its ESS and
        # every OC built on it are the same numbers at any seed
        ln = link_normals(fit, settings, lm)
        w, loc, scale = ln.components(0, 0)
        keep = w > 0
        return {
            "loc": loc[keep],
            "scale": scale[keep],
            "weights": w[keep] / w[keep].sum(),
            "link": ln.link,
            "df": None,
        }
    post = fit.draws
    m, c = _posterior_values(fit)
    if s.case_mix:
        eta, strata, groups = _case_mix_predictors(fit, s.case_mix, c, None)
    else:
        eta = m.base_predictor(NUMPY_OPS, c, setting_design(fit, settings))
        strata, groups = strata_of(fit, settings), shape_group_of(fit, settings)
    C, D = post.sizes["chain"], post.sizes["draw"]
    shape = _shape_values(fit, c, groups)
    if shape is not None:
        shape = shape * np.ones((C, D, 1))
    rate = _rates(fit, eta, shape, lm)[..., 0]  # (chain, draw, point)
    # the scale on which a new arm's effect adds to its rate: the family says (a curve's own scale)
    link = family.effect_link
    if link not in ("logit", "cloglog"):  # e.g. probit (log-normal): the draws stand in
        raise NotImplementedError(f"no closed-form predictive density on the {link} scale")
    with np.errstate(divide="ignore"):
        loc = np.log(rate) - np.log1p(-rate) if link == "logit" else np.log(-np.log(rate))
    tau = c["tau"][..., strata, :]  # (chain, draw, point, Kz)
    k = fit.data.landmarks.index(float(landmark)) if tau.shape[-1] > 1 else 0
    var = tau[..., k] ** 2
    scale = np.sqrt(var) * np.ones_like(loc)
    return {
        "loc": loc.ravel(),
        "scale": scale.ravel(),
        "weights": np.full(loc.size, 1.0 / loc.size),
        "link": link,
        "df": float(re.nu) if student else None,
    }
