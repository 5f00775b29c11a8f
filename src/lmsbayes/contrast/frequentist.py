"""Frequentist random-effects meta-analysis of contrasts, as metafor's ``rma.uni``.

The model is ``y_i ~ Normal(x_i' beta, v_i + tau^2)`` with known within-trial
variances ``v_i`` (intercept only: beta = mu, the pooled log HR).

Estimators of tau^2 (``method``):

- ``"DL"``: DerSimonian & Laird (1986), the method-of-moments estimator from
  Cochran's Q with fixed-effect weights, truncated at 0;
- ``"REML"`` (default) and ``"ML"``: (restricted) maximum likelihood, found by
  **Fisher scoring with step halving** (which keeps tau^2 >= 0), started at the
  Hedges (HE) estimator, iterated until the step is below 1e-10. metafor uses
  the same algorithm (Fisher scoring from HE, step halving) with a 1e-5
  threshold, so the two agree to its printed digits;
- ``"PM"``: Paule & Mandel (1982), the root of the generalised Q statistic
  equal to its degrees of freedom (Brent's method);
- ``"HE"``: Hedges' unweighted method-of-moments estimator;
- ``"EE"``: equal (fixed) effects, tau^2 = 0.

Inference on the coefficients (``test``): ``"z"`` (Wald, normal quantiles) or
``"knha"`` (alias ``"hksj"``), the Hartung-Knapp-Sidik-Jonkman method: the
variance of beta is multiplied by ``q = sum w_i (y_i - x_i'b)^2 / (k - p)``
(not truncated at 1, as metafor's ``knha``) and t quantiles with ``k - p``
degrees of freedom are used.

Prediction interval for the true effect in a new trial (``prediction``):

- ``"metafor"`` (default): ``mu +- c sqrt(se^2 + tau^2)`` with ``c`` the
  normal quantile under ``test="z"`` and the ``t_{k-p}`` quantile under
  ``knha`` -- metafor's ``predict.rma`` default, identical to the CI when
  tau^2 = 0;
- ``"hts"``: Higgins, Thompson & Spiegelhalter (2009, JRSS A 172:137), as
  Riley et al. (2011, BMJ 342:d549): the same with ``t_{k-2}`` quantiles
  (metafor's ``predtype="Riley"``).

Heterogeneity: Cochran's Q (fixed-effect weights) with its chi^2_{k-p}
p-value; I^2 = tau^2 / (tau^2 + s^2) and H^2 = (tau^2 + s^2) / s^2, with s^2
the "typical" within-trial variance of Higgins & Thompson (2002, eq. 9), as
metafor prints them (for DL this I^2 equals (Q - df) / Q); the Q-profile
confidence interval for tau^2 (Viechtbauer 2007).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr
from scipy import optimize, stats

from lmsbayes.contrast.data import MEASURES, is_ratio
from lmsbayes.errors import InputError, OptionError

__all__ = [
    "METHODS",
    "RandomEffects",
    "random_effects",
    "leave_one_out",
    "EggerTest",
    "egger_test",
    "tau2_ci",
]

METHODS = ("REML", "DL", "ML", "PM", "HE", "EE")
TESTS = ("z", "knha")
PREDICTION = ("metafor", "hts")
_TOL, _MAXIT = 1e-10, 1000


# ------------------------------------------------------------------ numpy core


def _wls(y, v, X, tau2):
    w = 1.0 / (v + tau2)
    xtwx = X.T @ (w[:, None] * X)
    vb = np.linalg.inv(xtwx)
    b = vb @ (X.T @ (w * y))
    return b, vb, w


def _p_matrix(v, X, tau2):
    w = 1.0 / (v + tau2)
    W = np.diag(w)
    xtwx_inv = np.linalg.inv(X.T @ W @ X)
    return W - W @ X @ xtwx_inv @ X.T @ W


def _q(y, v, X, tau2):
    b, _, w = _wls(y, v, X, tau2)
    return float(np.sum(w * (y - X @ b) ** 2))


def _tau2_he(y, v, X):
    k, p = X.shape
    xtx_inv = np.linalg.inv(X.T @ X)
    r = y - X @ (xtx_inv @ X.T @ y)
    return max(
        0.0, float((r @ r - (v.sum() - np.trace(xtx_inv @ X.T @ (v[:, None] * X)))) / (k - p))
    )


def _tau2_dl(y, v, X):
    k, p = X.shape
    w = 1.0 / v
    W = np.diag(w)
    P = W - W @ X @ np.linalg.inv(X.T @ W @ X) @ X.T @ W
    q = float(y @ P @ y)
    return max(0.0, (q - (k - p)) / float(np.trace(P)))


def _tau2_pm(y, v, X):
    k, p = X.shape
    if _q(y, v, X, 0.0) <= k - p:
        return 0.0
    hi = max(1.0, float(np.var(y)))
    while _q(y, v, X, hi) > k - p:
        hi *= 2
    return float(
        optimize.brentq(lambda t: _q(y, v, X, t) - (k - p), 0.0, hi, xtol=1e-14, rtol=1e-12)
    )


def _fisher_scoring(y, v, X, reml: bool):
    """(Restricted) ML tau^2 by Fisher scoring with step halving, as metafor.

    Returns (tau2, iterations).
    """
    tau2 = _tau2_he(y, v, X)
    for it in range(1, _MAXIT + 1):
        if reml:
            P = _p_matrix(v, X, tau2)
            Py = P @ y
            score = -0.5 * np.trace(P) + 0.5 * Py @ Py
            info = 0.5 * np.sum(P * P.T)
        else:
            b, _, w = _wls(y, v, X, tau2)
            r = y - X @ b
            score = -0.5 * np.sum(w) + 0.5 * np.sum((w * r) ** 2)
            info = 0.5 * np.sum(w**2)
        step = score / info
        while tau2 + step < 0:
            step /= 2
        tau2 += step
        if abs(step) < _TOL:
            return max(tau2, 0.0), it
    raise RuntimeError(f"Fisher scoring for tau^2 did not converge in {_MAXIT} iterations")


def _se_tau2(y, v, X, tau2, method):
    if method == "REML":
        P = _p_matrix(v, X, tau2)
        return float(np.sqrt(1.0 / (0.5 * np.sum(P * P.T))))
    if method == "ML":
        w = 1.0 / (v + tau2)
        return float(np.sqrt(1.0 / (0.5 * np.sum(w**2))))
    return float("nan")


def _fit(y, v, X, method="REML", test="z", level=0.95):
    """Core fit: returns a dict of numpy results for the model with design matrix X."""
    k, p = X.shape
    iterations = None
    if method == "EE":
        tau2 = 0.0
    elif method == "DL":
        tau2 = _tau2_dl(y, v, X)
    elif method == "HE":
        tau2 = _tau2_he(y, v, X)
    elif method == "PM":
        tau2 = _tau2_pm(y, v, X)
    else:
        tau2, iterations = _fisher_scoring(y, v, X, reml=method == "REML")
    b, vb, w = _wls(y, v, X, tau2)
    resid = y - X @ b
    if test == "knha":
        scale = float(np.sum(w * resid**2) / (k - p))
        vb = vb * scale
        df = k - p
        crit = stats.t.ppf(0.5 + level / 2, df)
    else:
        scale, df = 1.0, np.inf
        crit = stats.norm.ppf(0.5 + level / 2)
    se = np.sqrt(np.diag(vb))
    stat = b / se
    pval = 2 * (stats.t.sf(np.abs(stat), df) if test == "knha" else stats.norm.sf(np.abs(stat)))
    # heterogeneity: Cochran's Q with fixed-effect weights, metafor's I^2 and H^2
    P0 = _p_matrix(v, X, 0.0)
    q = float(y @ P0 @ y)
    s2 = (k - p) / float(np.trace(P0)) if k > p else float("nan")
    return dict(
        b=b,
        vb=vb,
        se=se,
        stat=stat,
        pval=pval,
        df=df,
        crit=crit,
        ci_lb=b - crit * se,
        ci_ub=b + crit * se,
        tau2=tau2,
        se_tau2=_se_tau2(y, v, X, tau2, method),
        Q=q,
        Q_df=k - p,
        Q_p=float(stats.chi2.sf(q, k - p)) if k > p else float("nan"),
        I2=100 * tau2 / (tau2 + s2) if k > p else float("nan"),
        H2=(tau2 + s2) / s2 if k > p else float("nan"),
        s2=s2,
        w=w,
        scale=scale,
        iterations=iterations,
    )


def tau2_ci(y, se, *, level: float = 0.95) -> tuple[float, float]:
    """Q-profile confidence interval for tau^2 (Viechtbauer 2007, Stat Med 26:37).

    The bounds are where the generalised Q statistic equals the upper and lower
    ``(1 - level) / 2`` quantiles of chi^2_{k-1}; a bound below 0 is set to 0.

    Parameters
    ----------
    y, se : array_like
        Estimates and standard errors.
    level : float

    Returns
    -------
    (lower, upper)
    """
    y, v = np.asarray(y, float), np.asarray(se, float) ** 2
    X = np.ones((len(y), 1))
    df = len(y) - 1
    lo_q, hi_q = stats.chi2.ppf(0.5 + level / 2, df), stats.chi2.ppf(0.5 - level / 2, df)

    def root(target):
        if _q(y, v, X, 0.0) < target:
            return 0.0
        hi = max(1.0, float(np.var(y)))
        while _q(y, v, X, hi) > target:
            hi *= 2
        return float(optimize.brentq(lambda t: _q(y, v, X, t) - target, 0.0, hi, xtol=1e-12))

    return root(lo_q), root(hi_q)


# ------------------------------------------------------------------ results


def _fmt_p(p: float) -> str:
    return "<.0001" if p < 1e-4 else f"{p:.4f}"


def _p_is(p: float) -> str:
    """'p = 0.0073' or 'p < 0.0001'."""
    return "p < 0.0001" if p < 1e-4 else f"p = {p:.4f}"


@dataclass(frozen=True)
class RandomEffects:
    """A frequentist random-effects meta-analysis (intercept only).

    All estimates are on the analysis scale (log HR for ``measure="HR"``);
    :meth:`table` also shows the ratio scale. ``weights`` are the percentage
    weights of the trials in the pooled estimate.
    """

    data: pd.DataFrame
    measure: str
    method: str
    test: str
    level: float
    prediction: str
    estimate: float
    se: float
    statistic: float
    df: float
    pvalue: float
    ci_lower: float
    ci_upper: float
    pi_lower: float
    pi_upper: float
    tau2: float
    se_tau2: float
    tau2_lower: float
    tau2_upper: float
    I2: float
    H2: float
    Q: float
    Q_df: int
    Q_pvalue: float
    knha_scale: float
    iterations: int | None
    weights: np.ndarray = field(repr=False)

    @property
    def k(self) -> int:
        """Number of trials."""
        return len(self.data)

    @property
    def tau(self) -> float:
        """Square root of tau^2."""
        return float(np.sqrt(self.tau2))

    def _tf(self, x):
        return np.exp(x) if is_ratio(self.measure) else x

    def table(self) -> pd.DataFrame:
        """One-row summary.

        Estimate with CI and PI (analysis and ratio scale), test, heterogeneity.
        """
        ratio = self.measure if is_ratio(self.measure) else "estimate"
        row = {
            "k": self.k,
            "method": self.method,
            "test": self.test,
            "estimate": self.estimate,
            "se": self.se,
            "ci_lower": self.ci_lower,
            "ci_upper": self.ci_upper,
            ("z" if self.test == "z" else "t"): self.statistic,
            "pvalue": self.pvalue,
            ratio: self._tf(self.estimate),
            f"{ratio}_ci_lower": self._tf(self.ci_lower),
            f"{ratio}_ci_upper": self._tf(self.ci_upper),
            f"{ratio}_pi_lower": self._tf(self.pi_lower),
            f"{ratio}_pi_upper": self._tf(self.pi_upper),
            "tau2": self.tau2,
            "I2_pct": self.I2,
            "Q": self.Q,
            "Q_pvalue": self.Q_pvalue,
        }
        if not is_ratio(self.measure):
            for key in [k for k in row if k.startswith("estimate_")]:
                row.pop(key)
        return pd.DataFrame([row], index=pd.Index([f"{self.method}/{self.test}"], name="analysis"))

    def studies(self) -> pd.DataFrame:
        """The trials with their estimates, CIs and percentage weights."""
        d = self.data[["estimate", "lower", "upper", "yi", "sei", "input"]].copy()
        d["weight_pct"] = self.weights
        return d

    def to_dataset(self) -> xr.Dataset:
        """The results as an xarray Dataset (trials on dim ``study``; settings in attrs)."""
        ds = xr.Dataset(
            {
                "yi": ("study", self.data["yi"].to_numpy()),
                "sei": ("study", self.data["sei"].to_numpy()),
                "weight_pct": ("study", np.asarray(self.weights)),
                **{
                    name: ((), float(getattr(self, name)))
                    for name in (
                        "estimate",
                        "se",
                        "statistic",
                        "pvalue",
                        "ci_lower",
                        "ci_upper",
                        "pi_lower",
                        "pi_upper",
                        "tau2",
                        "se_tau2",
                        "tau2_lower",
                        "tau2_upper",
                        "I2",
                        "H2",
                        "Q",
                        "Q_pvalue",
                    )
                },
            },
            coords={"study": self.data.index.to_numpy()},
            attrs={
                "measure": self.measure,
                "method": self.method,
                "test": self.test,
                "level": self.level,
                "prediction": self.prediction,
                "df": float(self.df),
                "Q_df": self.Q_df,
            },
        )
        return ds

    def __repr__(self) -> str:
        lvl = f"{100 * self.level:g}%"
        stat = "zval" if self.test == "z" else "tval"
        test_name = (
            "Wald z" if self.test == "z" else f"Hartung-Knapp-Sidik-Jonkman t({int(self.df)})"
        )
        lines = [
            f"Random-effects meta-analysis (k = {self.k}; tau^2 estimator: {self.method}; test: "
            f"{test_name})",
            f"  measure: {MEASURES[self.measure]} "
            f"({'log scale' if is_ratio(self.measure) else 'as given'})",
            "",
            f"tau^2 = {self.tau2:.4f}"
            + (f" (SE = {self.se_tau2:.4f})" if np.isfinite(self.se_tau2) else "")
            + f", {lvl} Q-profile CI {self.tau2_lower:.4f} to {self.tau2_upper:.4f}; tau = "
            f"{self.tau:.4f}",
            f"I^2 = {self.I2:.2f}%, H^2 = {self.H2:.2f}",
            f"Q(df = {self.Q_df}) = {self.Q:.4f}, {_p_is(self.Q_pvalue)}",
            "",
            f"estimate      se    {stat}    pval    ci.lb    ci.ub",
            f"{self.estimate:8.4f} {self.se:7.4f} {self.statistic:8.4f} {_fmt_p(self.pvalue):>7} "
            f"{self.ci_lower:8.4f} {self.ci_upper:8.4f}",
        ]
        pi = (
            "metafor's default"
            if self.prediction == "metafor"
            else "Higgins-Thompson-Spiegelhalter, t(k-2)"
        )
        if is_ratio(self.measure):
            lines.append(
                f"{self.measure} {self._tf(self.estimate):.2f} ({lvl} CI "
                f"{self._tf(self.ci_lower):.2f}-"
                f"{self._tf(self.ci_upper):.2f}); {lvl} prediction interval for a new trial's true "
                f"{self.measure}: {self._tf(self.pi_lower):.2f}-{self._tf(self.pi_upper):.2f} "
                f"({pi})"
            )
        else:
            lines.append(
                f"{lvl} prediction interval: {self.pi_lower:.4f} to {self.pi_upper:.4f} ({pi})"
            )
        return "\n".join(lines)


def contrast_arrays(data: pd.DataFrame):
    if not isinstance(data, pd.DataFrame) or not {"yi", "sei"} <= set(data.columns):
        raise InputError(
            "expected a contrast table from read_contrasts() or contrast_table() (columns yi, sei)"
        )
    y = data["yi"].to_numpy(float)
    se = data["sei"].to_numpy(float)
    return y, se


def random_effects(
    data: pd.DataFrame,
    *,
    method: str = "REML",
    test: str = "z",
    level: float = 0.95,
    prediction: str = "metafor",
) -> RandomEffects:
    """Frequentist random-effects meta-analysis of per-trial contrasts.

    Parameters
    ----------
    data : pandas.DataFrame
        A validated contrast table (:func:`~lmsbayes.contrast.read_contrasts`).
    method : {"REML", "DL", "ML", "PM", "HE", "EE"}
        Estimator of tau^2 (see the module docstring; REML by Fisher scoring).
    test : {"z", "knha", "hksj"}
        Wald z inference, or the Hartung-Knapp-Sidik-Jonkman adjustment with t_{k-1}.
    level : float
        Confidence and prediction level.
    prediction : {"metafor", "hts"}
        Prediction-interval definition: metafor's default (normal under ``z``,
        t_{k-1} under ``knha``) or Higgins-Thompson-Spiegelhalter's t_{k-2}.

    Returns
    -------
    RandomEffects
    """
    method = method.upper()
    test = "knha" if test.lower() == "hksj" else test.lower()
    if method not in METHODS:
        raise OptionError(f"method must be one of {list(METHODS)}, got {method!r}")
    if test not in TESTS:
        raise OptionError(f"test must be 'z' or 'knha' (alias 'hksj'), got {test!r}")
    if prediction not in PREDICTION:
        raise OptionError(f"prediction must be one of {list(PREDICTION)}, got {prediction!r}")
    if not 0 < level < 1:
        raise OptionError(f"level must be in (0, 1), got {level!r}")
    y, se = contrast_arrays(data)
    k = len(y)
    if k < 2:
        n_ex = len(data.attrs.get("excluded", []))
        where = f" in {data.attrs['path']}" if "path" in data.attrs else ""
        raise InputError(
            f"a random-effects meta-analysis needs at least 2 trials, got {k}{where}"
            + (f" ({n_ex} more rows are excluded by their 'exclude' column)" if n_ex else "")
        )
    v = se**2
    X = np.ones((k, 1))
    r = _fit(y, v, X, method, test, level)
    est, s = float(r["b"][0]), float(r["se"][0])
    if prediction == "hts":
        if k < 3:
            raise InputError(
                "the Higgins-Thompson-Spiegelhalter prediction interval (t_{k-2}) needs k >= 3"
            )
        crit = stats.t.ppf(0.5 + level / 2, k - 2)
    else:
        crit = r["crit"]
    half = crit * np.sqrt(s**2 + r["tau2"])
    lo_t2, hi_t2 = tau2_ci(y, se, level=level) if k > 1 else (np.nan, np.nan)
    w = r["w"]
    return RandomEffects(
        data=data,
        measure=data.attrs.get("measure", "HR"),
        method=method,
        test=test,
        level=level,
        prediction=prediction,
        estimate=est,
        se=s,
        statistic=float(r["stat"][0]),
        df=float(r["df"]),
        pvalue=float(r["pval"][0]),
        ci_lower=float(r["ci_lb"][0]),
        ci_upper=float(r["ci_ub"][0]),
        pi_lower=est - half,
        pi_upper=est + half,
        tau2=float(r["tau2"]),
        se_tau2=r["se_tau2"],
        tau2_lower=lo_t2,
        tau2_upper=hi_t2,
        I2=float(r["I2"]),
        H2=float(r["H2"]),
        Q=r["Q"],
        Q_df=int(r["Q_df"]),
        Q_pvalue=r["Q_p"],
        knha_scale=float(r["scale"]),
        iterations=r["iterations"],
        weights=100 * w / w.sum(),
    )


def leave_one_out(result: RandomEffects) -> pd.DataFrame:
    """Refit without each trial in turn, as metafor's ``leave1out``.

    Same estimator, test and level.

    Parameters
    ----------
    result : RandomEffects

    Returns
    -------
    pandas.DataFrame
        Indexed by the omitted study: estimate, se, statistic, pvalue, ci_lower,
        ci_upper, Q, Q_pvalue, tau2, I2, H2, and the estimate and CI on the ratio scale.
    """
    data = result.data
    if len(data) < 3:
        raise InputError("leave-one-out needs at least 3 trials (each refit needs 2)")
    rows = []
    for study in data.index:
        sub = data.drop(index=study)
        sub.attrs = dict(data.attrs)
        r = random_effects(sub, method=result.method, test=result.test, level=result.level)
        rows.append(
            {
                "estimate": r.estimate,
                "se": r.se,
                "statistic": r.statistic,
                "pvalue": r.pvalue,
                "ci_lower": r.ci_lower,
                "ci_upper": r.ci_upper,
                "Q": r.Q,
                "Q_pvalue": r.Q_pvalue,
                "tau2": r.tau2,
                "I2": r.I2,
                "H2": r.H2,
            }
        )
    out = pd.DataFrame(rows, index=pd.Index(data.index, name="omitted"))
    if is_ratio(result.measure):
        for c in ("estimate", "ci_lower", "ci_upper"):
            out[f"{result.measure}_{c}" if c != "estimate" else result.measure] = np.exp(out[c])
    out.attrs.update(method=result.method, test=result.test, measure=result.measure)
    return out


@dataclass(frozen=True)
class EggerTest:
    """Egger's regression test for funnel-plot asymmetry.

    As metafor's ``regtest`` with predictor sei.
    """

    model: str
    statistic: float
    df: float
    pvalue: float
    limit_estimate: float
    limit_lower: float
    limit_upper: float
    slope: float
    k: int

    def __repr__(self) -> str:
        kind = (
            "weighted regression with multiplicative dispersion (classical Egger test)"
            if self.model == "lm"
            else "mixed-effects meta-regression"
        )
        stat = (
            f"t = {self.statistic:.4f}, df = {int(self.df)}"
            if self.model == "lm"
            else f"z = {self.statistic:.4f}"
        )
        return (
            f"Egger's regression test for funnel-plot asymmetry (k = {self.k})\n"
            f"  model: {kind}; predictor: standard error\n"
            f"  test for asymmetry: {stat}, {_p_is(self.pvalue)}\n"
            f"  limit estimate (as se -> 0): b = {self.limit_estimate:.4f} "
            f"(CI: {self.limit_lower:.4f}, {self.limit_upper:.4f})"
        )

    def to_series(self) -> pd.Series:
        """The test as a pandas Series."""
        return pd.Series(
            {
                k: getattr(self, k)
                for k in (
                    "model",
                    "k",
                    "statistic",
                    "df",
                    "pvalue",
                    "slope",
                    "limit_estimate",
                    "limit_lower",
                    "limit_upper",
                )
            }
        )


def egger_test(
    data: pd.DataFrame | RandomEffects,
    *,
    model: str = "lm",
    method: str = "REML",
    level: float = 0.95,
) -> EggerTest:
    """Egger's regression test for funnel-plot asymmetry.

    Parameters
    ----------
    data : pandas.DataFrame or RandomEffects
        Contrast table, or a fit (its data and, for ``model="rma"``, its estimator are used).
    model : {"lm", "rma"}
        ``"lm"``: the classical test (Egger et al. 1997), a weighted regression of the
        estimates on their standard errors with weights 1/se^2 and a multiplicative
        dispersion, t test with k - 2 df (metafor ``regtest(model="lm")``).
        ``"rma"``: the mixed-effects meta-regression version with a z test (metafor's default).
    method : str
        tau^2 estimator for ``model="rma"``.
    level : float
        Level of the CI of the limit estimate (the intercept, the effect as se -> 0).

    Returns
    -------
    EggerTest
    """
    if isinstance(data, RandomEffects):
        method = data.method
        data = data.data
    y, se = contrast_arrays(data)
    k = len(y)
    if k < 3:
        raise InputError(f"Egger's test needs at least 3 trials, got {k}")
    v = se**2
    X = np.column_stack([np.ones(k), se])
    if model == "lm":
        b, vb, w = _wls(y, v, X, 0.0)
        sigma2 = float(np.sum(w * (y - X @ b) ** 2) / (k - 2))
        vb = vb * sigma2
        df = k - 2
        sd = np.sqrt(np.diag(vb))
        stat = b[1] / sd[1]
        p = 2 * stats.t.sf(abs(stat), df)
        crit = stats.t.ppf(0.5 + level / 2, df)
    elif model == "rma":
        r = _fit(y, v, X, method.upper(), "z", level)
        b, sd = r["b"], r["se"]
        stat, p, df = r["stat"][1], r["pval"][1], np.inf
        crit = stats.norm.ppf(0.5 + level / 2)
    else:
        raise OptionError(f"model must be 'lm' or 'rma', got {model!r}")
    return EggerTest(
        model=model,
        statistic=float(stat),
        df=float(df),
        pvalue=float(p),
        limit_estimate=float(b[0]),
        limit_lower=float(b[0] - crit * sd[0]),
        limit_upper=float(b[0] + crit * sd[0]),
        slope=float(b[1]),
        k=k,
    )
