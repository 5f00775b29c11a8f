"""Pooled and predictive rates for a new trial setting, and phase II thresholds.

Everything here works on posterior draws (xarray), never on PyMC, so that a
saved fit answers questions years later without recompiling anything.

For a setting s (line, treatment class, uterine fraction) and landmark t:

- pooled rate of a typical trial:  logistic(alpha[t] + x_s @ beta[t])
- predictive rate of a new trial:  logistic(alpha[t] + x_s @ beta[t] + u_new),
  u_new ~ tau[stratum(s), t] * Normal(0, 1) (Student-t when the model says so,
  plus a new trial effect when arms are nested in trials)
- predictive observed rate of a trial of n patients: Binomial(n, p_new) / n

With the ``joint-cloglog`` likelihood the inverse link is exp(-exp(.)) instead
of the logistic, beta and tau have no landmark dim (proportional hazards), a
new arm has one effect u_new for all landmarks, and the observed counts of a
new trial are drawn landmark after landmark among those still progression-free.

Thresholds for the next phase II trial: p0 from the pooled (EORTC's choice)
or the predictive distribution, and p1 = p0 ** HR per draw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from lmsbayes.covariates import CLASSES, LINES, design_matrix, main_effects
from lmsbayes.links import inverse_link

if TYPE_CHECKING:  # pragma: no cover
    from lmsbayes.fit import Fit

__all__ = ["EORTC2021", "Setting", "standard_settings", "predict", "thresholds", "threshold_table",
           "comparisons", "landmark_order"]  # fmt: skip

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


@dataclass(frozen=True)
class Setting:
    """A future-trial setting.

    Parameters
    ----------
    line : {'1L', '2L+'}
    treatment_class : {'R-T', 'NR-T'}
    uterine : float
        Fraction of uterine LMS patients expected in the trial, in [0, 1].
    name : str, optional
        Label used as the ``setting`` coordinate (default built from the fields).
    """

    line: str
    treatment_class: str = "R-T"
    uterine: float = 0.5
    name: str | None = None

    def __post_init__(self) -> None:
        if self.line not in LINES:
            raise ValueError(f"line must be one of {list(LINES)}, got {self.line!r}")
        if self.treatment_class not in CLASSES:
            raise ValueError(f"treatment_class must be one of {list(CLASSES)}, got {self.treatment_class!r}")
        if not (isinstance(self.uterine, (int, float)) and 0.0 <= float(self.uterine) <= 1.0):
            raise ValueError(f"uterine fraction must be in [0, 1], got {self.uterine!r}")

    @property
    def label(self) -> str:
        return self.name or f"{self.line} {self.treatment_class} uterine={self.uterine:g}"


def standard_settings(lines: Sequence[str] = LINES) -> list[Setting]:
    """The settings of the threshold table: per line R-T, NR-T, uterine, non-uterine.

    ``R-T`` and ``NR-T`` assume a population with half uterine patients (the
    model's centre); ``uterine`` and ``non-uterine`` are R-T trials with all
    or no uterine patients.
    """
    out = []
    for line in lines:
        out += [
            Setting(line, "R-T", 0.5, f"{line} R-T"),
            Setting(line, "NR-T", 0.5, f"{line} NR-T"),
            Setting(line, "R-T", 1.0, f"{line} uterine"),
            Setting(line, "R-T", 0.0, f"{line} non-uterine"),
        ]
    return out


def _check_settings(fit: Fit, settings: Sequence[Setting], landmarks: Sequence[float]) -> None:
    fitted_lines = sorted(set(fit.data.arms["line"]))
    uses_line = "line" in fit.spec.main_effects
    for s in settings:
        if s.line not in fitted_lines:
            raise ValueError(
                f"setting {s.label!r}: line {s.line!r} is not in the fitted data (lines: {fitted_lines}); "
                "the model cannot extrapolate to it"
            )
        if len(fitted_lines) > 1 and not uses_line:
            raise ValueError(f"setting {s.label!r}: the model pools both lines without a `line` covariate")
    for t in landmarks:
        if float(t) not in fit.data.landmarks:
            raise ValueError(
                f"landmark {t:g} months was not fitted (fitted: {[f'{x:g}' for x in fit.data.landmarks]}); "
                "the model has no parameter for another landmark, so it cannot extrapolate to it"
            )


def _linear_predictor(fit: Fit, settings: Sequence[Setting], landmarks: Sequence[float]) -> xr.DataArray:
    post = fit.posterior
    eff = main_effects([s.line for s in settings], [s.treatment_class for s in settings],
                       [s.uterine for s in settings], uterine_centre=fit.data.uterine_centre)  # fmt: skip
    alpha = post["alpha"].sel(landmark=list(landmarks))
    eta = alpha.expand_dims(setting=[s.label for s in settings], axis=-1)
    if fit.data.covariates:
        X = xr.DataArray(design_matrix(eff, fit.data.covariates), dims=("setting", "covariate"),
                         coords={"setting": [s.label for s in settings], "covariate": list(fit.data.covariates)})  # fmt: skip
        beta = _at_landmarks(post["beta"], landmarks)
        eta = eta + xr.dot(X, beta, dim="covariate")
    return eta.transpose("chain", "draw", "setting", "landmark")


def _at_landmarks(da: xr.DataArray, landmarks: Sequence[float]) -> xr.DataArray:
    """``da`` at the landmarks; unchanged when it has none (joint model: one value for all)."""
    return da.sel(landmark=list(landmarks)) if "landmark" in da.dims else da


def predict(
    fit: Fit,
    settings: Iterable[Setting] | None = None,
    landmarks: Sequence[float] | None = None,
    *,
    n: int = 40,
    seed: int | None = None,
) -> xr.Dataset:
    """Posterior draws of pooled, predictive and predictive-observed rates.

    Parameters
    ----------
    fit : Fit
    settings : iterable of Setting, optional
        Default :func:`standard_settings` for the fitted lines.
    landmarks : sequence of float, optional
        Months; default all fitted landmarks.
    n : int
        Patients in the new trial for the predictive observed rate.
    seed : int, optional
        Seed for the new-trial random effects (default: the spec's seed).

    Returns
    -------
    xarray.Dataset
        Variable ``rate`` with dims (chain, draw, setting, landmark, quantity),
        quantity in ``['pooled', 'predictive', 'observed']``; ``eta`` the
        pooled logit. Attrs: ``n``, spec name and data hash.

    Raises
    ------
    ValueError
        For a setting outside the data (unfitted line, landmark or bad label).
    """
    settings = list(settings) if settings is not None else standard_settings(sorted(set(fit.data.arms["line"])))
    landmarks = [float(t) for t in (landmarks if landmarks is not None else fit.data.landmarks)]
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n (patients in the new trial) must be a positive integer, got {n!r}")
    _check_settings(fit, settings, landmarks)
    eta = _linear_predictor(fit, settings, landmarks)
    post = fit.posterior
    rng = np.random.default_rng(fit.spec.sampler.seed + 2 if seed is None else seed)
    shape = eta.shape
    spec = fit.spec
    re = spec.random_effects
    # the joint model has one effect per new arm for all landmarks (proportional hazards)
    z_shape = shape[:-1] + (1,) if spec.joint else shape
    z = rng.standard_t(re.nu, size=z_shape) if re.distribution == "student_t" else rng.standard_normal(z_shape)
    strata = list(fit.data.strata)
    stratum = [s.line if strata != ["all"] else "all" for s in settings]
    tau = _at_landmarks(post["tau"], landmarks).sel(stratum=xr.DataArray(stratum, dims="setting"))
    tau = tau.broadcast_like(eta).transpose("chain", "draw", "setting", "landmark").values
    u_new = tau * z
    if "trial_tau" in post:
        trial_tau = _at_landmarks(post["trial_tau"], landmarks).broadcast_like(eta)
        trial_tau = trial_tau.transpose("chain", "draw", "setting", "landmark").values
        u_new = u_new + trial_tau * rng.standard_normal(z_shape)
    pooled = inverse_link(eta.values, spec.link)
    pred = inverse_link(eta.values + u_new, spec.link)
    if spec.joint:
        observed = _observed_in_sequence(rng, n, pred, landmarks) / n
    else:
        observed = rng.binomial(n, pred) / n
    rate = xr.DataArray(
        np.stack([pooled, pred, observed], axis=-1),
        dims=("chain", "draw", "setting", "landmark", "quantity"),
        coords={**{k: eta.coords[k] for k in ("chain", "draw", "setting", "landmark")},
                "quantity": ["pooled", "predictive", "observed"]},  # fmt: skip
        attrs={"long_name": "PFS rate", "units": "proportion progression-free"},
    )
    line = xr.DataArray([s.line for s in settings], dims="setting")
    klass = xr.DataArray([s.treatment_class for s in settings], dims="setting")
    ut = xr.DataArray([float(s.uterine) for s in settings], dims="setting")
    ds = xr.Dataset({"rate": rate, "eta": eta}).assign_coords(line=line, treatment_class=klass, uterine=ut)
    ds.attrs.update(n=int(n), spec_name=fit.spec.name, data_sha256=fit.data.data_sha256)
    return ds


def _observed_in_sequence(rng: np.random.Generator, n: int, rate: np.ndarray, landmarks: Sequence[float]) -> np.ndarray:
    """Progression-free counts of one cohort of n at increasing landmarks (last axis).

    Each landmark's count is binomial among those still progression-free at
    the one before, so the counts never increase: the joint model's own
    data-generating process.
    """
    order = np.argsort(landmarks, kind="stable")
    out = np.empty(rate.shape, dtype=np.int64)
    at_risk, before = np.full(rate.shape[:-1], n), np.ones(rate.shape[:-1])
    for k in order:
        cond = np.clip(rate[..., k] / before, 0.0, 1.0)
        at_risk = out[..., k] = rng.binomial(at_risk, cond)
        before = rate[..., k]
    return out


def _summarise(da: xr.DataArray, prob: float) -> xr.Dataset:
    lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
    q = da.quantile([0.5, lo, hi], dim=("chain", "draw"))
    return xr.Dataset({
        "mean": da.mean(("chain", "draw")), "median": q.sel(quantile=0.5, drop=True),
        "lower": q.sel(quantile=lo, drop=True), "upper": q.sel(quantile=hi, drop=True),
    })  # fmt: skip


def thresholds(
    fit: Fit,
    settings: Iterable[Setting] | None = None,
    hr: Sequence[float] | float | None = None,
    reference: str | None = None,
    *,
    landmarks: Sequence[float] | None = None,
    prob: float = 0.95,
) -> xr.Dataset:
    """Phase II thresholds: p0 and p1 = p0 ** HR per draw, with credible intervals.

    Parameters
    ----------
    fit : Fit
    settings : iterable of Setting, optional
        Default :func:`standard_settings`.
    hr : float or sequence of float, optional
        Hazard ratios under the alternative (default: the spec's, 0.65).
        ``S1 = S0 ** HR`` holds exactly under proportional hazards.
    reference : {'pooled', 'predictive'}, optional
        Which distribution p0 comes from (default: the spec's; EORTC used pooled).
    landmarks : sequence of float, optional
    prob : float
        Credible-interval probability.

    Returns
    -------
    xarray.Dataset
        ``p0`` draws (chain, draw, setting, landmark), ``p1`` draws (..., hr);
        summaries ``p0_mean, p0_median, p0_lower, p0_upper`` and the same for
        p1. Attrs record the rule (reference, hr, prob).
    """
    reference = reference or fit.spec.thresholds.reference
    if reference not in ("pooled", "predictive"):
        raise ValueError(f"reference must be 'pooled' or 'predictive', got {reference!r}")
    hrs = [float(h) for h in np.atleast_1d(hr if hr is not None else fit.spec.thresholds.hr)]
    for h in hrs:
        if not 0 < h < 1:
            raise ValueError(f"hr must be in (0, 1) (an improvement), got {h!r}")
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob!r}")
    pred = predict(fit, settings, landmarks)
    p0 = pred["rate"].sel(quantity=reference, drop=True)
    hr_da = xr.DataArray(hrs, dims="hr", coords={"hr": hrs})
    p1 = p0 ** hr_da
    ds = xr.Dataset({"p0": p0, "p1": p1})
    for name in ("p0", "p1"):
        s = _summarise(ds[name], prob)
        for k in s:
            ds[f"{name}_{k}"] = s[k]
    ds.attrs.update(reference=reference, hr=hrs, prob=prob, rule=f"p0 from the {reference} rate; p1 = p0 ** HR",
                    spec_name=fit.spec.name, data_sha256=fit.data.data_sha256)  # fmt: skip
    return ds


def comparisons(fit: Fit, landmarks: Sequence[float] | None = None) -> pd.DataFrame:
    """EORTC's comparisons as posterior differences of pooled rates.

    Per line and landmark: NR-T minus R-T (at uterine fraction 0.5) and
    uterine minus non-uterine (R-T), with the posterior mean difference, its
    95% interval and P(difference > 0).
    """
    lines = sorted(set(fit.data.arms["line"]))
    pred = predict(fit, standard_settings(lines), landmarks)["rate"].sel(quantity="pooled")
    rows = []
    for line in lines:
        for label, a, b in (("NR-T - R-T", "NR-T", "R-T"), ("uterine - non-uterine", "uterine", "non-uterine")):
            d = pred.sel(setting=f"{line} {a}") - pred.sel(setting=f"{line} {b}")
            for t in d["landmark"].values:
                x = d.sel(landmark=t).values.ravel()
                rows.append({"line": line, "landmark": float(t), "comparison": label,
                             "difference": x.mean(), "lower": np.quantile(x, 0.025),
                             "upper": np.quantile(x, 0.975), "prob_positive": (x > 0).mean()})  # fmt: skip
    return pd.DataFrame(rows)


def landmark_order(
    fit: Fit, settings: Iterable[Setting] | None = None, quantity: str = "pooled"
) -> pd.DataFrame:
    """How often the posterior puts a later landmark's rate above an earlier one's.

    A survival function cannot rise, so S(6) > S(3) is impossible for one
    population. Models that fit each landmark separately (logit-binomial,
    logit-normal) do not know this, and their draws can break the order; the
    joint model (``joint-cloglog``) keeps it by construction. This measures
    the damage in each setting, for consecutive fitted landmarks.

    Parameters
    ----------
    fit : Fit
    settings : iterable of Setting, optional
        Default :func:`standard_settings` for the fitted lines.
    quantity : {"pooled", "predictive"}
        The rate whose order is checked.

    Returns
    -------
    pandas.DataFrame
        One row per setting and pair of consecutive landmarks: ``setting``,
        ``earlier``, ``later`` (months) and ``prob_later_higher``, the share
        of posterior draws with rate(later) > rate(earlier). Empty when one
        landmark was fitted.
    """
    if quantity not in ("pooled", "predictive"):
        raise ValueError(f"quantity must be 'pooled' or 'predictive', got {quantity!r}")
    rate = predict(fit, settings)["rate"].sel(quantity=quantity)
    landmarks = [float(t) for t in rate["landmark"].values]
    rows = []
    for s in rate["setting"].values:
        for a, b in zip(landmarks, landmarks[1:]):
            higher = rate.sel(setting=s, landmark=b) > rate.sel(setting=s, landmark=a)
            rows.append({"setting": str(s), "earlier": a, "later": b, "prob_later_higher": float(higher.mean())})
    return pd.DataFrame(rows, columns=["setting", "earlier", "later", "prob_later_higher"])


def threshold_table(ds: xr.Dataset, *, eortc: bool = True) -> pd.DataFrame:
    """Flat table of a :func:`thresholds` result, one row per setting x landmark x HR.

    With ``eortc=True`` the published EORTC 2021 pooled rate and its
    threshold under the same HR are added in adjacent columns (lines and
    landmarks EORTC reported; blank elsewhere).
    """
    rows = []
    for s in ds["setting"].values:
        line = str(ds["line"].sel(setting=s).values)
        for t in ds["landmark"].values:
            for h in ds["hr"].values:
                sel = {"setting": s, "landmark": t}
                row = {
                    "setting": str(s), "line": line, "landmark": float(t), "hr": float(h),
                    "p0": float(ds["p0_median"].sel(sel)), "p0_lower": float(ds["p0_lower"].sel(sel)),
                    "p0_upper": float(ds["p0_upper"].sel(sel)),
                    "p1": float(ds["p1_median"].sel(**sel, hr=h)), "p1_lower": float(ds["p1_lower"].sel(**sel, hr=h)),
                    "p1_upper": float(ds["p1_upper"].sel(**sel, hr=h)),
                }  # fmt: skip
                if eortc:
                    key = (line, float(t))
                    ref = EORTC2021.loc[key] if key in EORTC2021.index else None
                    row["eortc_p0"] = float(ref["pooled"]) if ref is not None else np.nan
                    row["eortc_p0_ci"] = f"{ref['lo']:.2f}-{ref['hi']:.2f}" if ref is not None else ""
                    row["eortc_p1"] = float(ref["pooled"]) ** float(h) if ref is not None else np.nan
                rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs.update(ds.attrs)
    return table
