"""Brute-force quadrature of the normal-normal-binomial random-effects model (tests only).

For a binomial table (r, n) with logit p_i = alpha + tau z_i, z_i ~ N(0, 1),
alpha ~ Normal(mu, sigma) and tau ~ HalfNormal(s), the posterior of (alpha, log tau)
on a fine rectangular grid, each study's random effect integrated by 100-node
Gauss-Hermite quadrature. Independent of lmsbayes' code: plain numpy/scipy,
written from the model's definition. Quantities: the pooled rate expit(alpha)
and a new study's rate expit(alpha + tau z_new), both as CDFs on the grid,
inverted for quantiles.
"""

from __future__ import annotations

import numpy as np
from scipy import special


def posterior_grid(r, n, mu=0.0, sigma=2.0, s_tau=1.0, G=(561, 561)):
    r, n = np.asarray(r, float), np.asarray(n, float)
    xg, wg = np.polynomial.hermite.hermgauss(100)
    z, wz = np.sqrt(2) * xg, wg / np.sqrt(np.pi)
    # the range: wide enough that the edges carry nothing (checked by the caller's tolerance)
    a = np.linspace(-9.0, 5.0, G[0])
    lt = np.linspace(-12.0, 2.5, G[1])
    A, LT = np.meshgrid(a, lt, indexing="ij")
    tau = np.exp(LT)
    lc = special.gammaln(n + 1) - special.gammaln(r + 1) - special.gammaln(n - r + 1)
    loglik = np.zeros_like(A)
    for j in range(G[1]):  # one log-tau column at a time: bounded memory
        eta = a[:, None] + tau[0, j] * z[None, :]
        l1p = np.logaddexp(0.0, eta)
        for ri, ni, ci in zip(r, n, lc):
            ll = ci + ri * eta - ni * l1p
            loglik[:, j] += special.logsumexp(ll + np.log(wz), axis=-1)
    logprior = (
        -0.5 * ((A - mu) / sigma) ** 2
        - 0.5 * (tau / s_tau) ** 2
        + LT  # Jacobian of tau = exp(log tau)
    )
    lp = loglik + logprior
    w = np.exp(lp - lp.max())
    w /= w.sum()
    return A, tau, w


def quantiles(r, n, probs=(0.025, 0.5, 0.975), **kw):
    """Pooled and predictive rate quantiles: dict name -> array over probs."""
    A, tau, w = posterior_grid(r, n, **kw)
    probs = np.asarray(probs)
    # pooled: the weighted CDF of expit(alpha), a function of alpha alone (sum over tau)
    wa = w.sum(axis=1)
    a = A[:, 0]
    cdf = np.cumsum(wa) - 0.5 * wa
    pooled = special.expit(np.interp(probs, cdf, a))
    # predictive: P(alpha + tau z <= x) = sum w Phi((x - alpha) / tau), by bisection
    flat_w, flat_a, flat_t = w.ravel(), A.ravel(), tau.ravel()
    keep = flat_w > 1e-16
    flat_w, flat_a, flat_t = flat_w[keep] / flat_w[keep].sum(), flat_a[keep], flat_t[keep]
    pred = []
    for p in probs:
        lo, hi = -30.0, 30.0
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            if np.sum(flat_w * special.ndtr((mid - flat_a) / flat_t)) < p:
                lo = mid
            else:
                hi = mid
        pred.append(special.expit(0.5 * (lo + hi)))
    tq = np.interp(probs, np.cumsum(w.sum(axis=0)) - 0.5 * w.sum(axis=0), tau[0])
    return {"pooled": pooled, "predictive": np.array(pred), "tau": tq}
