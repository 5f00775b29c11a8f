"""Pareto-smoothed importance sampling (Vehtari, Simpson, Gelman, Yao & Gabry 2024).

numpy only. ``psis(log_ratios)`` returns normalised smoothed log weights and
the Pareto shape k-hat of the largest ratios: below 0.7 (or the sample-size
dependent threshold ``1 - 1 / log10(S)``) the importance-sampling estimates
are reliable; above it they are not, and the caller must say so.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["psis", "gpd_fit", "khat_threshold", "importance_ess"]


def khat_threshold(n_draws: int) -> float:
    """Sample-size dependent k-hat threshold ``min(1 - 1/log10(S), 0.7)``."""
    return min(1 - 1 / math.log10(n_draws), 0.7) if n_draws > 10 else 0.0


def gpd_fit(x: np.ndarray) -> tuple[float, float]:
    """Generalised Pareto shape and scale of exceedances ``x`` (sorted ascending).

    The empirical Bayes estimate of Zhang & Stephens (2009) with the weakly
    informative prior on k of Vehtari et al. (as in loo and ArviZ).
    """
    n = len(x)
    m = 30 + int(math.sqrt(n))
    b = 1 - np.sqrt(m / (np.arange(1, m + 1, dtype=float) - 0.5))
    xstar = x[int(n / 4 + 0.5) - 1]
    b = b / (3 * xstar) + 1 / x[-1]
    k = np.log1p(-b[:, None] * x).mean(axis=1)
    len_scale = n * (np.log(-(b / k)) - k - 1)
    weights = 1 / np.exp(len_scale - len_scale[:, None]).sum(axis=1)
    keep = weights >= 10 * np.finfo(float).eps
    weights, b = weights[keep] / weights[keep].sum(), b[keep]
    b_post = float(np.sum(b * weights))
    k_post = float(np.log1p(-b_post * x).mean())
    sigma = -k_post / b_post
    k_post = (n * k_post + 10 * 0.5) / (n + 10)
    return k_post, sigma


def _gpd_quantile(p: np.ndarray, k: float, sigma: float) -> np.ndarray:
    if abs(k) < 1e-12:
        return -sigma * np.log1p(-p)
    return sigma * np.expm1(-k * np.log1p(-p)) / k


def psis(log_ratios: np.ndarray, r_eff: float = 1.0) -> tuple[np.ndarray, float]:
    """Smoothed, normalised log weights and k-hat.

    Parameters
    ----------
    log_ratios : ndarray (S,)
        log target - log proposal, up to a constant.
    r_eff : float
        Relative efficiency of the draws (1 for independent draws).

    Returns
    -------
    log_weights : ndarray (S,)
        ``logsumexp(log_weights) == 0``.
    khat : float
        NaN when the tail is too short to fit (fewer than 5 draws in it).
    """
    lw = np.asarray(log_ratios, dtype=float).copy()
    finite = np.isfinite(lw)
    lw[~finite] = -np.inf
    s = len(lw)
    lw -= np.max(lw[finite])
    # tail length of Vehtari et al. (2024), as ArviZ: 3 sqrt(S / r_eff), or S / 5 for small samples
    m = int(math.floor(3 * math.sqrt(s / r_eff))) if s * r_eff > 225 else int(math.floor(s / 5))
    khat = math.nan
    if m >= 5 and finite.sum() > m + 1:
        order = np.argsort(lw, kind="stable")
        tail = order[-m:]
        cutoff = lw[order[-m - 1]]
        x = np.exp(lw[tail]) - np.exp(cutoff)
        if np.all(x > 0) and np.ptp(x) > 0:
            khat, sigma = gpd_fit(x)
            if np.isfinite(khat):
                probs = (np.arange(1, m + 1) - 0.5) / m
                lw[tail] = np.log(_gpd_quantile(probs, khat, sigma) + np.exp(cutoff))
                lw = np.minimum(lw, 0.0)
    top = np.max(lw)
    lw = lw - (top + np.log(np.sum(np.exp(lw - top))))
    return lw, float(khat)


def importance_ess(log_weights: np.ndarray) -> float:
    """Effective sample size ``1 / sum(w^2)`` of normalised log weights."""
    return float(1.0 / np.sum(np.exp(2 * log_weights)))
