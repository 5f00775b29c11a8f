"""Bayesian normal-normal random-effects meta-analysis on the exact quadrature engine.

``y_i ~ Normal(theta_i, se_i)``, ``theta_i ~ Normal(mu, tau)``, ``mu ~`` a
normal (or flat) prior, ``tau ~`` any prior of :mod:`lmsbayes.contrast.priors`.
The posterior is computed by :func:`lmsbayes.engines.normal_normal.normal_normal`
(one-dimensional quadrature over tau, no sampling, a few milliseconds), as R's
bayesmeta does. Results: the pooled effect mu, the heterogeneity tau, and the
predictive distribution of a new trial's true effect theta_new -- the
expected effect of a new agent, which feeds the probability of success of a
planned trial (:mod:`lmsbayes.contrast.assurance`), not a target alternative.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from lmsbayes.contrast.data import MEASURES, is_ratio
from lmsbayes.contrast.frequentist import contrast_arrays
from lmsbayes.contrast.priors import Flat, HalfNormal, Normal, TauPrior
from lmsbayes.engines.normal_normal import NormalNormalPosterior, normal_normal
from lmsbayes.errors import InputError, OptionError

__all__ = ["BayesRandomEffects", "bayesian", "Predictive"]

QUANTITIES = ("mu", "tau", "theta_new")


def _fmt_prob(p: float) -> str:
    """'= 0.886', or '> 0.999' rather than a '= 1.000' a reader could take for a certainty."""
    return "> 0.999" if p > 0.999 else "< 0.001" if p < 0.001 else f"= {p:.3f}"


@dataclass(frozen=True)
class Predictive:
    """A distribution of a log ratio as a mixture of normals (weights, means, sds).

    The posterior predictive of a new trial's true log HR from
    :meth:`BayesRandomEffects.predictive`, or a single normal from
    :meth:`Predictive.normal` (e.g. a frequentist N(mu_hat, se^2 + tau^2)).
    """

    weight: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    measure: str = "HR"
    label: str = "new trial's true effect"

    @classmethod
    def normal(
        cls, mean: float, sd: float, *, measure: str = "HR", label: str = "normal"
    ) -> Predictive:
        """One normal component."""
        if not (np.isfinite(mean) and sd > 0):
            raise OptionError(
                f"a normal predictive needs a finite mean and sd > 0, got ({mean!r}, {sd!r})"
            )
        return cls(np.array([1.0]), np.array([float(mean)]), np.array([float(sd)]), measure, label)

    def cdf(self, x) -> np.ndarray:
        """P(log ratio <= x)."""
        from scipy import special

        z = (np.asarray(x, float)[..., None] - self.mean) / self.sd
        return np.sum(self.weight * special.ndtr(z), axis=-1)

    def prob_below(self, ratio: float) -> float:
        """P(ratio < ``ratio``), e.g. the probability that a new trial's true HR is below 1."""
        return float(self.cdf(np.log(ratio) if is_ratio(self.measure) else ratio))

    def quantile(self, q) -> np.ndarray:
        """Quantiles on the log scale."""
        from scipy import optimize

        q = np.atleast_1d(np.asarray(q, float))
        lo, hi = float(np.min(self.mean - 40 * self.sd)), float(np.max(self.mean + 40 * self.sd))
        # B023: the lambda is called within the iteration that defines it
        return np.array(
            [
                optimize.brentq(
                    lambda x: float(self.cdf(x)) - qq,  # noqa: B023
                    lo,
                    hi,
                    xtol=1e-12,
                )
                for qq in q
            ]
        )

    def mean_(self) -> float:
        """Mean on the log scale."""
        return float(np.sum(self.weight * self.mean))

    def sd_(self) -> float:
        """Standard deviation on the log scale."""
        m = self.mean_()
        return float(np.sqrt(np.sum(self.weight * (self.sd**2 + self.mean**2)) - m**2))

    def sample(self, n: int, *, seed=None) -> np.ndarray:
        """Random draws on the log scale."""
        rng = np.random.default_rng(seed)
        j = rng.choice(len(self.weight), size=n, p=self.weight / self.weight.sum())
        return rng.normal(self.mean[j], self.sd[j])

    def __repr__(self) -> str:
        lo, med, hi = self.quantile([0.025, 0.5, 0.975])
        tf = np.exp if is_ratio(self.measure) else (lambda v: v)
        name = self.measure if is_ratio(self.measure) else "effect"
        return (
            f"Predictive({self.label}: {name} median {tf(med):.3g}, 95% interval "
            f"{tf(lo):.3g}-{tf(hi):.3g}; "
            f"{len(self.weight)} normal components)"
        )


@dataclass(frozen=True)
class BayesRandomEffects:
    """A Bayesian normal-normal random-effects meta-analysis.

    Attributes
    ----------
    data : pandas.DataFrame
        The contrast table.
    measure : str
    tau_prior, mu_prior :
        The priors (value objects with a readable ``str``).
    posterior : NormalNormalPosterior
        The quadrature posterior (tau grid, weights, mu | tau).
    level : float
        Credible level of the intervals.
    interval : {"central", "shortest"}
        Interval type of :meth:`summary` (bayesmeta prints shortest intervals).
    """

    data: pd.DataFrame
    measure: str
    tau_prior: TauPrior
    mu_prior: Normal | Flat
    posterior: NormalNormalPosterior = field(repr=False)
    level: float = 0.95
    interval: str = "central"

    @property
    def k(self) -> int:
        """Number of studies."""
        return len(self.data)

    def _interval(self, q: str) -> tuple[float, float]:
        p = self.posterior
        a = (1 - self.level) / 2
        if self.interval == "shortest":
            return p.shortest_interval(self.level, parameter={"theta_new": "theta"}.get(q, q))
        if q == "tau":
            lo, hi = p.tau_quantile([a, 1 - a])
        else:
            lo, hi = p.quantile([a, 1 - a], predictive=q == "theta_new")
        return float(lo), float(hi)

    def summary(self) -> pd.DataFrame:
        """Posterior summaries of mu, tau and theta_new (mean, sd, median, interval).

        On the log scale, with the median and interval on the ratio scale for mu and theta_new.
        """
        p = self.posterior
        rows = {}
        for q in QUANTITIES:
            if q == "tau":
                mean, sd, med = p.tau_mean(), p.tau_sd(), float(p.tau_quantile(0.5)[0])
            else:
                pred = q == "theta_new"
                mean = p.mu_mean_()
                sd = p.theta_sd() if pred else p.mu_sd()
                med = float(p.quantile(0.5, predictive=pred)[0])
            lo, hi = self._interval(q)
            rows[q] = {"mean": mean, "sd": sd, "median": med, "lower": lo, "upper": hi}
        out = pd.DataFrame(rows).T
        out.index.name = "quantity"
        if is_ratio(self.measure):
            for c in ("median", "lower", "upper"):
                out[f"{self.measure}_{c}"] = np.where(out.index == "tau", np.nan, np.exp(out[c]))
        out.attrs.update(level=self.level, interval=self.interval, measure=self.measure)
        return out

    def prob(self, threshold: float = 1.0, *, quantity: str = "mu") -> float:
        """P(ratio < threshold).

        For the pooled effect (``"mu"``) or a new trial (``"theta_new"``).
        """
        if quantity not in ("mu", "theta_new"):
            raise OptionError(f"quantity must be 'mu' or 'theta_new', got {quantity!r}")
        x = np.log(threshold) if is_ratio(self.measure) else threshold
        return float(self.posterior.cdf(x, predictive=quantity == "theta_new"))

    def predictive(self) -> Predictive:
        """The posterior predictive distribution of a new trial's true log ratio (theta_new)."""
        p = self.posterior
        keep = p.weight > 0
        return Predictive(
            p.weight[keep],
            p.mu_mean[keep],
            p.component_sd(True)[keep],
            self.measure,
            "new trial's true effect (posterior predictive)",
        )

    def shrinkage(self) -> pd.DataFrame:
        """Each trial's estimate beside its posterior (shrinkage) mean and sd."""
        mean, sd = self.posterior.shrinkage(self.data["yi"], self.data["sei"])
        out = pd.DataFrame(
            {"yi": self.data["yi"], "sei": self.data["sei"], "mean": mean, "sd": sd},
            index=self.data.index,
        )
        return out

    def to_dataset(self) -> xr.Dataset:
        """Summaries as an xarray Dataset, plus the tau posterior grid.

        Dims ``quantity`` x ``stat``.
        """
        s = self.summary()[["mean", "sd", "median", "lower", "upper"]]
        ds = xr.Dataset(
            {
                "summary": (("quantity", "stat"), s.to_numpy(float)),
                "tau_grid": ("node", self.posterior.tau),
                "tau_weight": ("node", self.posterior.weight),
            },
            coords={"quantity": list(s.index), "stat": list(s.columns)},
            attrs={
                "measure": self.measure,
                "tau_prior": str(self.tau_prior),
                "mu_prior": str(self.mu_prior),
                "level": self.level,
                "interval": self.interval,
                "k": self.k,
            },
        )
        return ds

    def __repr__(self) -> str:
        s = self.summary()
        lvl = f"{100 * self.level:g}%"
        lines = [
            f"Bayesian random-effects meta-analysis (k = {self.k}; exact quadrature over tau)",
            f"  measure: {MEASURES[self.measure]}"
            + (" (log scale)" if is_ratio(self.measure) else ""),
            f"  priors: tau ~ {self.tau_prior}; mu ~ {self.mu_prior}",
            f"  {lvl} {self.interval} credible intervals",
            "",
            s[["mean", "sd", "median", "lower", "upper"]].to_string(
                float_format=lambda v: f"{v:.4f}"
            ),
        ]
        if is_ratio(self.measure):
            m = self.measure
            lines += [
                "",
                f"pooled {m} {s.at['mu', f'{m}_median']:.2f} ({lvl} CrI "
                f"{s.at['mu', f'{m}_lower']:.2f}-"
                f"{s.at['mu', f'{m}_upper']:.2f}), P({m} < 1) {_fmt_prob(self.prob(1.0))}",
                f"a new trial's true {m}: median {s.at['theta_new', f'{m}_median']:.2f} ({lvl} "
                "predictive interval "
                f"{s.at['theta_new', f'{m}_lower']:.2f}-{s.at['theta_new', f'{m}_upper']:.2f}), "
                f"P({m} < 1) {_fmt_prob(self.prob(1.0, quantity='theta_new'))}",
            ]
        return "\n".join(lines)


def bayesian(
    data: pd.DataFrame,
    *,
    tau_prior: TauPrior | None = None,
    mu_prior: Normal | Flat | None = None,
    level: float = 0.95,
    interval: str = "central",
) -> BayesRandomEffects:
    """Bayesian normal-normal random-effects meta-analysis of per-trial contrasts.

    Parameters
    ----------
    data : pandas.DataFrame
        A validated contrast table (:func:`~lmsbayes.contrast.read_contrasts`).
    tau_prior : TauPrior, optional
        Prior of the heterogeneity tau (log scale); default ``HalfNormal(0.5)``.
    mu_prior : Normal or Flat, optional
        Prior of the pooled log ratio; default ``Normal(0, 4)`` (weakly informative:
        95 % prior mass on HRs from 1/2500 to 2500).
    level : float
        Credible level of the intervals.
    interval : {"central", "shortest"}

    Returns
    -------
    BayesRandomEffects

    Raises
    ------
    lmsbayes.errors.InputError
        When the posterior is improper (an improper tau prior with too few trials).
    """
    tau_prior = HalfNormal(0.5) if tau_prior is None else tau_prior
    mu_prior = Normal(0.0, 4.0) if mu_prior is None else mu_prior
    if not isinstance(tau_prior, TauPrior):
        raise OptionError(f"tau_prior must be a TauPrior (e.g. HalfNormal(0.5)), got {tau_prior!r}")
    if not isinstance(mu_prior, (Normal, Flat)):
        raise OptionError(f"mu_prior must be Normal(mean, sd) or Flat(), got {mu_prior!r}")
    if interval not in ("central", "shortest"):
        raise OptionError(f"interval must be 'central' or 'shortest', got {interval!r}")
    if not 0 < level < 1:
        raise OptionError(f"level must be in (0, 1), got {level!r}")
    y, se = contrast_arrays(data)
    try:
        post = normal_normal(
            y,
            se,
            mu_prior=None if isinstance(mu_prior, Flat) else (mu_prior.mean, mu_prior.sd),
            tau_pdf=lambda t: tau_prior.pdf(t, se),
        )
    except ValueError as exc:
        raise InputError(
            f"{exc} (tau prior {tau_prior}, mu prior {mu_prior}, k = {len(y)})"
        ) from None
    return BayesRandomEffects(
        data=data,
        measure=data.attrs.get("measure", "HR"),
        tau_prior=tau_prior,
        mu_prior=mu_prior,
        posterior=post,
        level=level,
        interval=interval,
    )
