"""Quadrature engine for the logit-normal random-effects model (no MCMC).

For the two-stage model without covariates,

    y_i ~ Normal(theta_i, se_i),  theta_i ~ Normal(mu, tau),
    mu ~ Normal(m0, s0),          tau ~ prior on (0, inf),

the posterior is exact up to one-dimensional numerical integration over tau
(the approach of R's bayesmeta): given tau, mu is normal (normal-normal
conjugacy) and the marginal likelihood of tau is Gaussian in closed form.
This gives an independent check of the MCMC fits and a fast engine for
sensitivity analyses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import optimize, special, stats

__all__ = ["NormalNormalPosterior", "normal_normal"]


@dataclass(frozen=True)
class NormalNormalPosterior:
    """Posterior of (mu, tau) on a tau grid.

    Attributes
    ----------
    tau : ndarray
        Grid of tau values (trapezoid nodes).
    weight : ndarray
        Posterior probability mass of each node (sums to 1).
    mu_mean, mu_var : ndarray
        Conditional posterior mean and variance of mu given tau at each node.
    """

    tau: np.ndarray
    weight: np.ndarray
    mu_mean: np.ndarray
    mu_var: np.ndarray

    # --- tau ---
    def tau_mean(self) -> float:
        return float(np.sum(self.weight * self.tau))

    def tau_sd(self) -> float:
        return float(np.sqrt(np.sum(self.weight * self.tau**2) - self.tau_mean() ** 2))

    # --- mu and a new trial's theta: mixtures of normals over the grid ---
    def mu_mean_(self) -> float:
        return float(np.sum(self.weight * self.mu_mean))

    def mu_sd(self) -> float:
        m = self.mu_mean_()
        return float(np.sqrt(np.sum(self.weight * (self.mu_var + self.mu_mean**2)) - m**2))

    def _cdf(self, x: np.ndarray, predictive: bool) -> np.ndarray:
        var = self.mu_var + (self.tau**2 if predictive else 0.0)
        z = (np.asarray(x, float)[..., None] - self.mu_mean) / np.sqrt(var)
        return np.sum(self.weight * special.ndtr(z), axis=-1)

    def quantile(self, q, *, predictive: bool = False, transform: Callable | None = None) -> np.ndarray:
        """Quantiles of mu (pooled) or of a new trial's theta (predictive).

        ``transform`` (monotone increasing, e.g. the logistic function) maps
        the logit-scale quantiles to rates; quantiles commute with it.
        """
        q = np.atleast_1d(np.asarray(q, float))
        lo, hi = self.mu_mean.min() - 50, self.mu_mean.max() + 50
        out = np.array([optimize.brentq(lambda x: self._cdf(x, predictive) - qq, lo, hi, xtol=1e-12) for qq in q])
        return transform(out) if transform is not None else out

    def expectation(self, fn: Callable[[np.ndarray], np.ndarray], *, predictive: bool = False, n_nodes: int = 80) -> float:
        """E[fn(mu)] or E[fn(theta_new)] by Gauss-Hermite quadrature within each tau node."""
        x, w = np.polynomial.hermite_e.hermegauss(n_nodes)
        w = w / w.sum()
        sd = np.sqrt(self.mu_var + (self.tau**2 if predictive else 0.0))
        vals = fn(self.mu_mean[:, None] + sd[:, None] * x[None, :]) @ w
        return float(np.sum(self.weight * vals))


def normal_normal(
    y,
    se,
    *,
    mu_prior: tuple[float, float] = (0.0, 2.0),
    tau_pdf: Callable[[np.ndarray], np.ndarray] | None = None,
    tau_max: float | None = None,
    n_grid: int = 4001,
) -> NormalNormalPosterior:
    """Exact posterior of the normal-normal random-effects model by quadrature over tau.

    Parameters
    ----------
    y, se : array_like
        Estimates (e.g. logit rates) and their standard errors.
    mu_prior : (mean, sd)
        Normal prior of mu.
    tau_pdf : callable, optional
        Prior density of tau (unnormalised is fine); default HalfNormal(0.5).
    tau_max : float, optional
        Upper end of the grid (default: where the default prior has negligible mass,
        or 10 x the largest of sd(y) and max(se)).
    n_grid : int
        Number of grid nodes (trapezoid rule).

    Returns
    -------
    NormalNormalPosterior
    """
    y = np.asarray(y, float)
    se = np.asarray(se, float)
    if y.shape != se.shape or y.ndim != 1 or len(y) < 1:
        raise ValueError(f"y and se must be 1-D of equal length, got shapes {y.shape} and {se.shape}")
    if np.any(~np.isfinite(y)) or np.any(~(se > 0)):
        raise ValueError("y must be finite and se > 0")
    m0, s0 = mu_prior
    if tau_pdf is None:
        tau_pdf = stats.halfnorm(scale=0.5).pdf
        tau_max = tau_max or 0.5 * 8
    tau_max = tau_max or 10 * max(np.std(y), se.max())
    tau = np.linspace(0.0, tau_max, n_grid)
    v = se[None, :] ** 2 + tau[:, None] ** 2  # (grid, k)
    prec = 1 / s0**2 + np.sum(1 / v, axis=1)
    mu_var = 1 / prec
    mu_mean = mu_var * (m0 / s0**2 + np.sum(y / v, axis=1))
    # log p(y | tau) with mu integrated out, in closed form:
    # -1/2 [sum log v + log s0^2 + log prec + sum y^2/v + m0^2/s0^2 - prec * mu_mean^2]
    loglik = -0.5 * (
        np.sum(np.log(v), axis=1) + np.log(s0**2) + np.log(prec)
        + np.sum(y**2 / v, axis=1) + m0**2 / s0**2 - prec * mu_mean**2
    )  # fmt: skip
    with np.errstate(divide="ignore"):
        logpost = loglik + np.log(tau_pdf(tau))
    logpost -= np.max(logpost[np.isfinite(logpost)])
    dens = np.exp(logpost)
    trap = np.full(n_grid, tau[1] - tau[0])
    trap[[0, -1]] /= 2
    weight = dens * trap
    weight /= weight.sum()
    return NormalNormalPosterior(tau=tau, weight=weight, mu_mean=mu_mean, mu_var=mu_var)
