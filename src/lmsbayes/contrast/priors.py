"""Priors of the Bayesian normal-normal model: small printable value objects.

Heterogeneity tau (the between-trial sd on the log scale):

- :class:`HalfNormal` (RBesT's and bayesmeta's common choice; half-normal(0.5)
  is a usual weakly informative prior for log HR / log OR), :class:`HalfCauchy`,
  :class:`HalfStudentT`, :class:`Exponential`, :class:`Uniform` (bounded, or
  improper on (0, inf) as bayesmeta's default);
- :class:`Bayesmeta`: bayesmeta's named reference priors, which depend on the
  standard errors: ``"jeffreys"``, ``"overall-jeffreys"``, ``"berger-deely"``,
  ``"conventional"``, ``"i2"`` (uniform on I^2), ``"sqrt"`` (uniform on sqrt tau),
  ``"shrinkage"`` (uniform shrinkage) and ``"dumouchel"``, with the densities
  of bayesmeta 3.4 (``R/bayesmeta.R``).

Pooled effect mu: :class:`Normal` or :class:`Flat` (improper uniform).

:func:`parse_tau_prior` and :func:`parse_mu_prior` read the command-line forms
``half-normal:0.5``, ``half-cauchy:1``, ``half-t:3,0.5``, ``exponential:2``,
``uniform``, ``uniform:0,2``, ``jeffreys`` ..., and ``normal:0,4``, ``flat``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from lmsbayes.errors import OptionError

__all__ = [
    "TauPrior",
    "HalfNormal",
    "HalfCauchy",
    "HalfStudentT",
    "Exponential",
    "Uniform",
    "Bayesmeta",
    "Normal",
    "Flat",
    "parse_tau_prior",
    "parse_mu_prior",
    "BAYESMETA_PRIORS",
]


class TauPrior:
    """Base class: ``pdf(tau, se)`` (se for the data-dependent priors) and ``proper``."""

    proper: bool = True

    def pdf(self, tau, se=None) -> np.ndarray:  # pragma: no cover - interface
        """Density of tau (``se``: the studies' standard errors, for priors that depend on them)."""
        raise NotImplementedError


def _positive(name, value):
    if not (np.isfinite(value) and value > 0):
        raise OptionError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True)
class HalfNormal(TauPrior):
    """Half-normal prior on tau with the given scale (sd of the parent normal)."""

    scale: float = 0.5

    def __post_init__(self):
        _positive("HalfNormal scale", self.scale)

    def pdf(self, tau, se=None):
        """Density of tau (``se``: the studies' standard errors, for priors that depend on them)."""
        return stats.halfnorm.pdf(tau, scale=self.scale)

    def __str__(self):
        return f"half-normal(scale={self.scale:g})"


@dataclass(frozen=True)
class HalfCauchy(TauPrior):
    """Half-Cauchy prior on tau with the given scale."""

    scale: float = 0.5

    def __post_init__(self):
        _positive("HalfCauchy scale", self.scale)

    def pdf(self, tau, se=None):
        """Density of tau (``se``: the studies' standard errors, for priors that depend on them)."""
        return stats.halfcauchy.pdf(tau, scale=self.scale)

    def __str__(self):
        return f"half-Cauchy(scale={self.scale:g})"


@dataclass(frozen=True)
class HalfStudentT(TauPrior):
    """Half-Student-t prior on tau with ``nu`` degrees of freedom and the given scale."""

    nu: float = 3.0
    scale: float = 0.5

    def __post_init__(self):
        _positive("HalfStudentT nu", self.nu)
        _positive("HalfStudentT scale", self.scale)

    def pdf(self, tau, se=None):
        """Density of tau (``se``: the studies' standard errors, for priors that depend on them)."""
        tau = np.asarray(tau, float)
        return np.where(tau >= 0, 2 * stats.t.pdf(tau, self.nu, scale=self.scale), 0.0)

    def __str__(self):
        return f"half-t(nu={self.nu:g}, scale={self.scale:g})"


@dataclass(frozen=True)
class Exponential(TauPrior):
    """Exponential prior on tau with the given rate."""

    rate: float = 1.0

    def __post_init__(self):
        _positive("Exponential rate", self.rate)

    def pdf(self, tau, se=None):
        """Density of tau (``se``: the studies' standard errors, for priors that depend on them)."""
        return stats.expon.pdf(tau, scale=1 / self.rate)

    def __str__(self):
        return f"exponential(rate={self.rate:g})"


@dataclass(frozen=True)
class Uniform(TauPrior):
    """Uniform prior on tau over [lower, upper]; ``upper=inf`` is improper (bayesmeta's default)."""

    lower: float = 0.0
    upper: float = float("inf")

    def __post_init__(self):
        if not (0 <= self.lower < self.upper):
            raise OptionError(
                f"Uniform needs 0 <= lower < upper, got ({self.lower!r}, {self.upper!r})"
            )

    @property
    def proper(self) -> bool:  # type: ignore[override]
        """True when the prior integrates to 1."""
        return bool(np.isfinite(self.upper))

    def pdf(self, tau, se=None):
        """Density of tau (``se``: the studies' standard errors, for priors that depend on them)."""
        tau = np.asarray(tau, float)
        return np.where((tau >= self.lower) & (tau <= self.upper), 1.0, 0.0)

    def __str__(self):
        return f"uniform({self.lower:g}, {self.upper:g})" + ("" if self.proper else " (improper)")


#: bayesmeta's named priors: name -> (improper?, description)
BAYESMETA_PRIORS = {
    "jeffreys": (True, "Jeffreys prior"),
    "overall-jeffreys": (True, "'overall' Jeffreys prior"),
    "berger-deely": (True, "Berger-Deely prior"),
    "conventional": (False, "conventional prior"),
    "i2": (False, "uniform prior on I^2"),
    "sqrt": (True, "uniform prior on sqrt(tau)"),
    "shrinkage": (False, "uniform shrinkage prior"),
    "dumouchel": (False, "DuMouchel prior"),
}


@dataclass(frozen=True)
class Bayesmeta(TauPrior):
    """One of bayesmeta's named tau priors (they depend on the trials' standard errors)."""

    name: str = "dumouchel"

    def __post_init__(self):
        if self.name not in BAYESMETA_PRIORS:
            raise OptionError(
                f"bayesmeta prior must be one of {sorted(BAYESMETA_PRIORS)}, got {self.name!r}"
            )

    @property
    def proper(self) -> bool:  # type: ignore[override]
        """True when the prior integrates to 1."""
        return not BAYESMETA_PRIORS[self.name][0]

    def pdf(self, tau, se=None):
        """Density of tau (``se``: the studies' standard errors, for priors that depend on them)."""
        if se is None:
            raise OptionError(f"the {self.name} prior depends on the standard errors: pass se")
        t = np.asarray(tau, float)[..., None]
        s2 = np.asarray(se, float) ** 2
        k = s2.size
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.name == "jeffreys":
                d = np.sqrt(np.sum((t / (s2 + t**2)) ** 2, axis=-1))
            elif self.name == "overall-jeffreys":
                d = np.sqrt(
                    np.sum(1 / (s2 + t**2), axis=-1) * np.sum((t / (s2 + t**2)) ** 2, axis=-1)
                )
            elif self.name == "berger-deely":
                d = np.exp(np.log(t[..., 0]) - np.sum(np.log(s2 + t**2), axis=-1) / k)
            elif self.name == "conventional":
                d = np.exp(np.log(t[..., 0]) - 1.5 / k * np.sum(np.log(s2 + t**2), axis=-1))
            elif self.name == "i2":
                # Higgins & Thompson (2002) eq. 9 "typical" variance, as bayesmeta
                sh = (k - 1) * np.sum(1 / s2) / (np.sum(1 / s2) ** 2 - np.sum(1 / s2**2))
                d = 2 * np.exp(np.log(sh) + np.log(t[..., 0]) - 2 * np.log(sh + t[..., 0] ** 2))
            elif self.name == "sqrt":
                d = np.where(t[..., 0] > 0, t[..., 0] ** -0.5, 0.0)
            else:
                s02 = k / np.sum(1 / s2)  # harmonic mean of the squared standard errors
                if self.name == "shrinkage":
                    d = 2 * t[..., 0] * s02 / (s02 + t[..., 0] ** 2) ** 2
                else:  # dumouchel
                    s0 = np.sqrt(s02)
                    d = s0 / (s0 + t[..., 0]) ** 2
        return np.where(np.asarray(tau) >= 0, np.nan_to_num(d, nan=0.0, posinf=0.0), 0.0)

    def __str__(self):
        return BAYESMETA_PRIORS[self.name][1] + (" (improper)" if not self.proper else "")


@dataclass(frozen=True)
class Normal:
    """Normal prior on mu (the pooled log ratio)."""

    mean: float = 0.0
    sd: float = 4.0

    def __post_init__(self):
        if not np.isfinite(self.mean):
            raise OptionError(f"Normal mean must be finite, got {self.mean!r}")
        _positive("Normal sd", self.sd)

    def __str__(self):
        return f"normal(mean={self.mean:g}, sd={self.sd:g})"


@dataclass(frozen=True)
class Flat:
    """Improper uniform prior on mu (bayesmeta's default)."""

    def __str__(self):
        return "flat (improper uniform)"


def _numbers(text: str, spec: str, n: int) -> list[float]:
    parts = [p for p in text.split(",")] if text else []
    if len(parts) != n:
        raise OptionError(
            f"{spec!r}: expected {n} number{'s' if n > 1 else ''} after ':', got {text!r}"
        )
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise OptionError(f"{spec!r}: not a number in {text!r}") from None


_TAU_FORMS = (
    "half-normal:SCALE",
    "half-cauchy:SCALE",
    "half-t:NU,SCALE",
    "exponential:RATE",
    "uniform",
    "uniform:LOWER,UPPER",
    *sorted(BAYESMETA_PRIORS),
)


def parse_tau_prior(spec: str) -> TauPrior:
    """Read a tau prior from its command-line form (e.g. ``half-normal:0.5``).

    Parameters
    ----------
    spec : str
        One of ``half-normal:SCALE``, ``half-cauchy:SCALE``, ``half-t:NU,SCALE``,
        ``exponential:RATE``, ``uniform`` (improper), ``uniform:LOWER,UPPER`` or a
        bayesmeta name (``jeffreys``, ``dumouchel``, ``i2``, ...).

    Returns
    -------
    TauPrior
    """
    name, _, args = spec.strip().partition(":")
    key = name.lower().replace("_", "-")
    if key in ("half-normal", "halfnormal"):
        return HalfNormal(*_numbers(args, spec, 1))
    if key in ("half-cauchy", "halfcauchy"):
        return HalfCauchy(*_numbers(args, spec, 1))
    if key in ("half-t", "half-student-t", "halft"):
        return HalfStudentT(*_numbers(args, spec, 2))
    if key == "exponential":
        return Exponential(*_numbers(args, spec, 1))
    if key == "uniform":
        return Uniform() if not args else Uniform(*_numbers(args, spec, 2))
    if key in BAYESMETA_PRIORS and not args:
        return Bayesmeta(key)
    raise OptionError(f"unknown tau prior {spec!r}; use one of: {', '.join(_TAU_FORMS)}")


def parse_mu_prior(spec: str) -> Normal | Flat:
    """Read a mu prior: ``normal:MEAN,SD`` or ``flat``."""
    name, _, args = spec.strip().partition(":")
    if name.lower() == "normal":
        return Normal(*_numbers(args, spec, 2))
    if name.lower() == "flat" and not args:
        return Flat()
    raise OptionError(f"unknown mu prior {spec!r}; use normal:MEAN,SD or flat")
