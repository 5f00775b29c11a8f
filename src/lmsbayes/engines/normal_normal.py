"""Quadrature engine for the normal-normal random-effects model (no MCMC).

For estimates ``y_i`` with known standard errors ``se_i``,

    y_i ~ Normal(theta_i, se_i),  theta_i ~ Normal(mu, tau),
    mu ~ Normal(m0, s0) or flat,  tau ~ any prior density on (0, inf),

the posterior is exact up to one-dimensional numerical integration over tau
(the approach of R's bayesmeta, Röver 2020, J Stat Softw 93(6)): given tau,
mu is normal (normal-normal conjugacy) and the marginal likelihood of tau is
Gaussian in closed form. The marginal posteriors of mu and of a new trial's
theta are then mixtures of normals over the tau nodes.

The integral over tau runs on a grid in log tau (the trapezoid rule there
converges geometrically for the smooth integrands met here) that spans the
whole half-line: 20 log units below and above the scale of the problem,
widened until the posterior mass at the upper end is negligible, so that
heavy-tailed priors (half-Cauchy, improper uniform) are integrated whole.
A posterior that is still not negligible at tau = 1e12 x scale is improper
(e.g. a uniform tau prior with one or two estimates) and raises.

This gives an independent check of the MCMC fits, the Bayesian engine of
:mod:`lmsbayes.contrast`, and a fast engine for sensitivity analyses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

__all__ = ["NormalNormalPosterior", "normal_normal"]

#: Relative posterior density below which the upper end of the tau grid counts as "no mass".
_TAIL = 1e-14


@dataclass(frozen=True)
class NormalNormalPosterior:
    """Posterior of (mu, tau) on a tau grid.

    Attributes
    ----------
    tau : ndarray
        Grid of tau values (quadrature nodes, increasing).
    weight : ndarray
        Posterior probability mass of each node (sums to 1).
    mu_mean, mu_var : ndarray
        Conditional posterior mean and variance of mu given tau at each node.
    cum : ndarray
        Posterior CDF of tau at each node (cumulative trapezoid of the density).
    log_evidence : float
        Log marginal likelihood of the data up to the constants of an improper prior
        (comparable only between fits with the same proper priors).
    """

    tau: np.ndarray
    weight: np.ndarray
    mu_mean: np.ndarray
    mu_var: np.ndarray
    cum: np.ndarray | None = None
    log_evidence: float = float("nan")

    # --- tau ---
    def tau_mean(self) -> float:
        """Posterior mean of tau."""
        return float(np.sum(self.weight * self.tau))

    def tau_sd(self) -> float:
        """Posterior standard deviation of tau."""
        return float(np.sqrt(max(np.sum(self.weight * self.tau**2) - self.tau_mean() ** 2, 0.0)))

    def tau_cdf(self, x) -> np.ndarray:
        """Posterior CDF of tau (linear interpolation of the cumulative integral)."""
        cum = self.cum if self.cum is not None else np.cumsum(self.weight)
        return np.interp(np.asarray(x, float), self.tau, cum, left=0.0, right=1.0)

    def tau_quantile(self, q) -> np.ndarray:
        """Posterior quantiles of tau."""
        cum = self.cum if self.cum is not None else np.cumsum(self.weight)
        q = np.atleast_1d(np.asarray(q, float))
        # np.interp needs increasing x; flat stretches of the CDF (zero density) are harmless here
        keep = np.concatenate([[True], np.diff(cum) > 0])
        return np.interp(q, cum[keep], self.tau[keep])

    # --- mu and a new trial's theta: mixtures of normals over the grid ---
    def mu_mean_(self) -> float:
        """Posterior mean of mu."""
        return float(np.sum(self.weight * self.mu_mean))

    def mu_sd(self) -> float:
        """Posterior standard deviation of mu."""
        m = self.mu_mean_()
        return float(np.sqrt(np.sum(self.weight * (self.mu_var + self.mu_mean**2)) - m**2))

    def theta_sd(self) -> float:
        """Standard deviation of a new trial's theta (posterior predictive)."""
        m = self.mu_mean_()
        return float(
            np.sqrt(np.sum(self.weight * (self.mu_var + self.tau**2 + self.mu_mean**2)) - m**2)
        )

    def component_sd(self, predictive: bool = False) -> np.ndarray:
        """Standard deviation of each normal component (mu, or theta_new when ``predictive``)."""
        return np.sqrt(self.mu_var + (self.tau**2 if predictive else 0.0))

    def cdf(self, x, *, predictive: bool = False) -> np.ndarray:
        """Posterior CDF of mu, or of a new trial's theta when ``predictive``."""
        z = (np.asarray(x, float)[..., None] - self.mu_mean) / self.component_sd(predictive)
        return np.sum(self.weight * special.ndtr(z), axis=-1)

    # kept for callers of the first version of this module
    def _cdf(self, x, predictive: bool) -> np.ndarray:
        return self.cdf(x, predictive=predictive)

    def pdf(self, x, *, predictive: bool = False) -> np.ndarray:
        """Posterior density of mu, or of a new trial's theta when ``predictive``."""
        sd = self.component_sd(predictive)
        x = np.asarray(x, float)[..., None]
        return np.sum(self.weight * stats.norm.pdf(x, self.mu_mean, sd), axis=-1)

    def quantile(
        self, q, *, predictive: bool = False, transform: Callable | None = None
    ) -> np.ndarray:
        """Quantiles of mu (pooled) or of a new trial's theta (predictive).

        ``transform`` (monotone increasing, e.g. the logistic function) maps
        the quantiles to another scale; quantiles commute with it.
        """
        q = np.atleast_1d(np.asarray(q, float))
        sd = self.component_sd(predictive)
        lo, hi = float(np.min(self.mu_mean - 40 * sd)), float(np.max(self.mu_mean + 40 * sd))
        out = np.array(
            [
                optimize.brentq(
                    # B023: the lambda is called within the iteration that defines it
                    lambda x: self.cdf(x, predictive=predictive) - qq,  # noqa: B023
                    lo,
                    hi,
                    xtol=1e-12,
                )
                for qq in q
            ]
        )
        return transform(out) if transform is not None else out

    def shortest_interval(
        self, prob: float = 0.95, *, parameter: str = "mu"
    ) -> tuple[float, float]:
        """Shortest interval holding ``prob`` of the posterior of ``parameter``.

        ``parameter`` is ``"mu"``, ``"theta"`` (a new trial, predictive) or ``"tau"``;
        bayesmeta prints these intervals by default.
        """
        if parameter == "tau":

            def quant(a):
                return float(self.tau_quantile(a)[0])
        elif parameter in ("mu", "theta"):

            def quant(a):
                return float(self.quantile(a, predictive=parameter == "theta")[0])
        else:
            raise ValueError(f"parameter must be 'mu', 'theta' or 'tau', got {parameter!r}")

        def width(a):
            return quant(a + prob) - quant(a)

        res = optimize.minimize_scalar(
            width, bounds=(0.0, 1.0 - prob), method="bounded", options={"xatol": 1e-9}
        )
        a = min([0.0, float(res.x), 1.0 - prob], key=width)
        return quant(a), quant(a + prob)

    def expectation(
        self, fn: Callable[[np.ndarray], np.ndarray], *, predictive: bool = False, n_nodes: int = 80
    ) -> float:
        """E[fn(mu)] or E[fn(theta_new)] by Gauss-Hermite quadrature within each tau node."""
        x, w = np.polynomial.hermite_e.hermegauss(n_nodes)
        w = w / w.sum()
        sd = self.component_sd(predictive)
        vals = fn(self.mu_mean[:, None] + sd[:, None] * x[None, :]) @ w
        return float(np.sum(self.weight * vals))

    def shrinkage(self, y, se) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and sd of each trial's own theta_i (shrinkage estimates)."""
        y = np.asarray(y, float)[None, :]
        v = np.asarray(se, float)[None, :] ** 2
        t2 = self.tau[:, None] ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            b = np.where(t2 > 0, v / (v + t2), 1.0)  # weight of mu in theta_i | mu, tau
        mean_j = b * self.mu_mean[:, None] + (1 - b) * y
        var_j = b**2 * self.mu_var[:, None] + np.where(t2 > 0, (1 - b) * v, 0.0)
        w = self.weight[:, None]
        mean = np.sum(w * mean_j, axis=0)
        sd = np.sqrt(np.sum(w * (var_j + mean_j**2), axis=0) - mean**2)
        return mean, sd


def _conditional(y, v, m0, s0):
    """mu | tau (mean, variance) and log p(y | tau) at each tau node; v is (nodes, k)."""
    w = 1.0 / v
    prec0 = 0.0 if s0 is None else 1.0 / s0**2
    prec = prec0 + np.sum(w, axis=1)
    mu_var = 1.0 / prec
    mu_mean = mu_var * ((prec0 * m0 if s0 is not None else 0.0) + np.sum(w * y, axis=1))
    # log p(y | tau) with mu integrated out, in closed form (a flat mu prior drops the prior terms):
    # -1/2 [k log 2pi + sum log v + log prec - log prec0 + sum y^2/v + prec0 m0^2 - prec mean^2]
    quad = np.sum(w * y**2, axis=1) - prec * mu_mean**2
    if s0 is not None:
        quad = quad + prec0 * m0**2
    logdet = np.sum(np.log(v), axis=1) + np.log(prec) - (np.log(prec0) if s0 is not None else 0.0)
    loglik = -0.5 * (y.shape[-1] * np.log(2 * np.pi) + logdet + quad)
    return mu_mean, mu_var, loglik


def normal_normal(
    y,
    se,
    *,
    mu_prior: tuple[float, float] | None = (0.0, 2.0),
    tau_pdf: Callable[[np.ndarray], np.ndarray] | None = None,
    tau_max: float | None = None,
    n_grid: int | None = None,
) -> NormalNormalPosterior:
    """Exact posterior of the normal-normal random-effects model by quadrature over tau.

    Parameters
    ----------
    y, se : array_like
        Estimates (e.g. logit rates, log hazard ratios) and their standard errors.
    mu_prior : (mean, sd) or None
        Normal prior of mu; ``None`` for the improper flat prior (bayesmeta's default).
    tau_pdf : callable, optional
        Prior density of tau on (0, inf), vectorised (unnormalised or improper is fine:
        the posterior is checked to be proper); default HalfNormal(0.5).
    tau_max : float, optional
        Integrate over a linear grid on [0, tau_max] instead (the prior is then truncated
        there). By default the whole half-line is integrated on a log grid.
    n_grid : int, optional
        Number of grid nodes (default 8001 on the log grid, 4001 on a linear grid).

    Returns
    -------
    NormalNormalPosterior

    Raises
    ------
    ValueError
        On invalid input, or when the posterior of tau is improper (its mass does not
        vanish at the upper end of the grid).
    """
    y = np.asarray(y, float)
    se = np.asarray(se, float)
    if y.shape != se.shape or y.ndim != 1 or len(y) < 1:
        raise ValueError(
            f"y and se must be 1-D of equal length, got shapes {y.shape} and {se.shape}"
        )
    if np.any(~np.isfinite(y)) or np.any(~(se > 0)) or np.any(~np.isfinite(se)):
        raise ValueError("y must be finite and se finite and > 0")
    if mu_prior is None:
        m0, s0 = 0.0, None
    else:
        m0, s0 = (float(v) for v in mu_prior)
        if not (np.isfinite(m0) and s0 > 0 and np.isfinite(s0)):
            raise ValueError(f"mu_prior must be (mean, sd > 0), got {mu_prior!r}")
    if tau_pdf is None:
        tau_pdf = stats.halfnorm(scale=0.5).pdf

    def logprior(t):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(np.asarray(tau_pdf(t), float))

    if tau_max is not None:
        n = n_grid or 4001
        tau = np.linspace(0.0, float(tau_max), n)
        jac = np.zeros(n)  # log d tau / d node index, constant
        step = np.full(n, tau[1] - tau[0])
    else:
        n = n_grid or 8001
        scale = float(max(np.std(y), np.median(se), 1e-8))
        lo, hi = np.log(scale) - 20.0, np.log(scale) + 20.0
        for _ in range(12):
            s = np.linspace(lo, hi, n)
            tau = np.exp(s)
            v = se[None, :] ** 2 + tau[:, None] ** 2
            _, _, ll = _conditional(y, v, m0, s0)
            lp = ll + logprior(tau) + s  # density in log tau
            top = np.max(lp[np.isfinite(lp)])
            if not np.isfinite(lp[-1]) or lp[-1] - top < np.log(_TAIL):
                break
            hi += 10.0
        else:
            raise ValueError(
                "the posterior of tau is improper (no mass vanishing as tau grows): "
                "use a proper tau prior, or more estimates"
            )
        step = np.full(n, s[1] - s[0])
        jac = s
    v = se[None, :] ** 2 + tau[:, None] ** 2
    mu_mean, mu_var, loglik = _conditional(y, v, m0, s0)
    logpost = loglik + logprior(tau) + jac
    finite = np.isfinite(logpost)
    if not finite.any():
        raise ValueError("the tau prior has no mass where the likelihood has")
    top = np.max(logpost[finite])
    dens = np.where(finite, np.exp(logpost - top), 0.0)
    trap = step.copy()
    trap[[0, -1]] /= 2
    mass = dens * trap
    total = mass.sum()
    weight = mass / total
    # CDF at the nodes by the cumulative trapezoid rule (consistent with the weights)
    cum = np.concatenate([[0.0], np.cumsum((dens[1:] + dens[:-1]) / 2 * step[1:])]) / total
    log_evidence = float(np.log(total) + top)
    return NormalNormalPosterior(
        tau=tau, weight=weight, mu_mean=mu_mean, mu_var=mu_var, cum=cum, log_evidence=log_evidence
    )
