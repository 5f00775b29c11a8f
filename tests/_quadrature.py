"""Brute-force quadrature references for the logit-binomial random-effects model (a shared test
helper).

The model of the bundled ``binomial`` spec and of RBesT's examples,

    r_i ~ Binomial(n_i, expit(alpha + u_i)),  u_i ~ Normal(0, tau),
    alpha ~ Normal(0, alpha_sd),  tau ~ HalfNormal(tau_sigma),

integrated on a grid over (alpha, log tau); each arm's random effect is
integrated by FFT convolution of its binomial likelihood with the normal
kernel on a fine logit grid (step 0.002). No Gauss-Hermite, no importance
sampling, nothing shared with the package. From the grid weights:

- the pooled rate expit(alpha): its CDF is the cumulative alpha marginal;
- the predictive rate of a new trial: its CDF is
  sum_ij w_ij Phi((logit p - alpha_i) / tau_j), its density
  sum_ij w_ij phi((logit p - alpha_i) / tau_j) / tau_j / (p (1 - p)).

Quantiles are found by Brent's method on these CDFs to 1e-10. The grid
error (alpha step 0.002, 220 log tau nodes, tau < 0.01 treated as 0) is
below 1e-4 on every quantile of the four data sets used (halving both steps
moves none by more than that). The one brute-force reference of the suite
(tests/test_agreement.py, test_generic.py, test_integrated.py,
test_map_reference.py): it replaced a second helper (a 561 x 561 grid with
Gauss-Hermite random effects, alpha step 0.025), whose quantiles it agrees
with to 4e-4, the difference being that grid's coarser alpha step.

:data:`QUANTILES` tabulates the quantiles (5 decimals) for the tests that need
only them (test_map_reference checks the table against the grid);
``python tests/_quadrature.py`` prints the table anew (about 30 s).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

DATA = Path(__file__).parent / "data"

#: the data sets with a reference: RBesT's AS, colitis and transplant, and a zero-event set
DATA_SETS = ("AS", "colitis", "transplant", "synthetic_zero")
PROBS = (0.025, 0.5, 0.975)

#: the grid's (2.5%, 50%, 97.5%) quantiles of the pooled rate expit(alpha) and of a new study's
#: rate, to 5 decimals (``python tests/_quadrature.py``)
QUANTILES = {
    "AS": {"pooled": (0.18522, 0.24886, 0.32757), "predictive": (0.11083, 0.24861, 0.47148)},
    "colitis": {"pooled": (0.06027, 0.11188, 0.21453), "predictive": (0.02833, 0.11152, 0.37969)},
    "transplant": {
        "pooled": (0.17187, 0.20925, 0.24631),
        "predictive": (0.12826, 0.21006, 0.31262),
    },
    "synthetic_zero": {
        "pooled": (0.03292, 0.07482, 0.1408),
        "predictive": (0.01537, 0.07557, 0.25968),
    },
}


def grid_posterior(table: pd.DataFrame, tau_sigma: float = 1.0, alpha_sd: float = 2.0):
    """Posterior of (alpha, tau) on a grid: alpha nodes, tau nodes and normalised weights (alpha,
    tau)."""
    de = 0.002
    e = np.arange(-12.0, 6.0 + de, de)  # the logit of an arm's rate
    r, n = table["r"].to_numpy(), table["n"].to_numpy()
    loglik = (
        special.gammaln(n + 1)[:, None]
        - special.gammaln(r + 1)[:, None]
        - special.gammaln(n - r + 1)[:, None]
        + r[:, None] * e
        - n[:, None] * np.logaddexp(0, e)
    )  # (arm, e)
    shift = loglik.max(axis=1, keepdims=True)
    lik = np.exp(loglik - shift)
    log_tau = np.linspace(-7.0, 1.8, 220)
    keep = (e >= -7.0) & (e <= 3.0)  # where alpha can be
    alpha = e[keep]
    logpost = np.empty((alpha.size, log_tau.size))
    size = (
        1 << (2 * e.size - 1).bit_length()
    )  # a power of 2: FFT lengths with a large prime factor are slow
    F = np.fft.rfft(lik, n=size, axis=1)
    for j, lt in enumerate(log_tau):
        tau = math.exp(lt)
        if tau < 0.01:  # narrower than the grid resolves: the arm's rate is alpha (error O(tau^2))
            integral = lik[:, keep]
        else:
            half = min(int(8 * tau / de) + 1, e.size - 1)
            x = np.arange(-half, half + 1) * de
            kern = stats.norm.pdf(x, 0, tau) * de
            conv = np.fft.irfft(F * np.fft.rfft(kern, n=size), n=size)[:, half : half + e.size]
            integral = conv[:, keep]
        with np.errstate(divide="ignore"):
            logpost[:, j] = np.sum(np.log(np.maximum(integral, 1e-300)) + shift, axis=0)
    # the alpha marginal is smooth on the scale of 0.01 (its sd is >= 0.05 on every data set):
    # every 5th node integrates it as accurately, at a fifth of the points
    alpha, logpost = alpha[::5], logpost[::5]
    tau = np.exp(log_tau)
    logpost += (
        stats.norm.logpdf(alpha, 0, alpha_sd)[:, None]
        + stats.halfnorm.logpdf(tau, scale=tau_sigma)[None, :]
        + log_tau
    )
    w = np.exp(logpost - logpost.max())
    w /= w.sum()
    return alpha, tau, w


def _root(cdf, q: float) -> float:
    return optimize.brentq(lambda x: cdf(x) - q, 1e-6, 1 - 1e-6, xtol=1e-10)


@dataclass(frozen=True)
class Reference:
    """Quadrature reference of one data set (see the module docstring)."""

    name: str
    alpha: np.ndarray
    tau: np.ndarray
    w: np.ndarray  # (alpha, tau)

    def pooled_cdf(self, x: float) -> float:
        # node i carries the mass of [alpha_i - h/2, alpha_i + h/2]: the CDF reaches the
        # cumulative sum at the interval's right end, linear in between
        h = self.alpha[1] - self.alpha[0]
        return float(np.interp(special.logit(x), self.alpha + h / 2, np.cumsum(self.w.sum(axis=1))))

    def predictive_cdf(self, x: float) -> float:
        z = (special.logit(x) - self._a) / self._t
        return float(self._w @ special.ndtr(z))

    def predictive_pdf(self, x) -> np.ndarray:
        x = np.atleast_1d(np.asarray(x, float))
        z = (special.logit(x)[:, None] - self._a) / self._t
        return (stats.norm.pdf(z) / self._t) @ self._w / (x * (1 - x))

    @functools.cached_property
    def _pruned(self):
        # grid points below 1e-14 of the largest weight change no CDF value by 1e-7
        keep = self.w > 1e-12 * self.w.max()
        ia, it = np.nonzero(keep)
        return self.alpha[ia], self.tau[it], self.w[keep] / self.w[keep].sum()

    @property
    def _a(self):
        return self._pruned[0]

    @property
    def _t(self):
        return self._pruned[1]

    @property
    def _w(self):
        return self._pruned[2]

    def points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The grid's (alpha, tau, weight) points of non-negligible weight."""
        return self._pruned

    @functools.cached_property
    def pooled_quantiles(self) -> np.ndarray:
        return np.array([_root(self.pooled_cdf, q) for q in PROBS])

    @functools.cached_property
    def predictive_quantiles(self) -> np.ndarray:
        return np.array([_root(self.predictive_cdf, q) for q in PROBS])


@functools.cache
def reference(name: str) -> Reference:
    """The quadrature reference of a data set in tests/data (computed once per session)."""
    alpha, tau, w = grid_posterior(pd.read_csv(DATA / f"{name}.csv"))
    return Reference(name, alpha, tau, w)


if __name__ == "__main__":
    for name in DATA_SETS:
        ref = reference(name)
        pooled = tuple(round(float(x), 5) for x in ref.pooled_quantiles)
        pred = tuple(round(float(x), 5) for x in ref.predictive_quantiles)
        print(f"{name!r}: {{'pooled': {pooled}, 'predictive': {pred}}},")
