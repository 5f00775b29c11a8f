"""Effective sample size (ESS) of a beta-mixture prior: ELIR, moment matching, Morita.

Which one to report: ELIR (the default), the only one of the three that is
predictively consistent (Neuenschwander et al. 2020); see docs/designs.md,
"Which ESS to report".
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import special

from lmsbayes.errors import OptionError
from lmsbayes.prior.beta import beta_ppf
from lmsbayes.prior.checks import fmt_list

if TYPE_CHECKING:  # pragma: no cover
    from lmsbayes.prior.mixture import BetaMixture

__all__ = ["ess"]

_ESS_METHODS = ("elir", "moment", "morita")


def ess(mix: BetaMixture, method: str = "elir", *, s: float = 100.0) -> float:
    """Effective sample size (ESS) of a beta-mixture prior, in Bernoulli observations.

    Parameters
    ----------
    mix : BetaMixture
        The prior.
    method : {"elir", "moment", "morita"}
        ``"elir"`` (default, as in RBesT): expected local information ratio of
        Neuenschwander et al. (2020),

            ESS = E_prior[ i_prior(p) / i_F(p) ],  i_F(p) = 1 / (p (1 - p)),

        with ``i_prior = -d^2/dp^2 log prior``.  It is the only one of the three
        that is predictively consistent: averaging the posterior ESS over the
        prior predictive of ``m`` new patients gives ESS + m.  It requires all
        ``a, b >= 1`` (otherwise the defining integral diverges).
        ``"moment"``: ``a + b`` of the single beta with the mixture's mean and
        sd (conservative for mixtures).
        ``"morita"``: Morita, Thall & Müller (2008) as implemented in RBesT
        (curvature at the prior mode rather than the mean, closed form of
        Neuenschwander et al. 2019, eq. 9; liberal for mixtures).
    s : float, default 100
        Morita only: the vague reference prior is Beta(mode / s, (1 - mode) / s).
        ``s=np.inf`` drops it, which makes the ESS of a single Beta(a, b)
        exactly ``a + b``.

    Returns
    -------
    float
        For a single Beta(a, b) all three methods give ``a + b`` (Morita up to
        O(1/s)).

    Notes
    -----
    ELIR is computed semi-analytically: since pi(p) r_k(p) = w_k f_k(p), the
    within-component curvature integrates to sum_k w_k (b_k [a_k > 1] +
    a_k [b_k > 1]) in closed form, and only the between-component term (zero
    for a single beta) is integrated numerically, on the logit scale.  Hence
    ELIR jumps at a = 1 and b = 1, by definition: Beta(1, 1) has no
    curvature and ELIR 0, whereas a component with b = 1 + 1e-8 still
    contributes w a, from p within 1e-300 of 1, which a purely numerical
    integral (RBesT's) does not see.

    References
    ----------
    Neuenschwander B, Weber S, Schmidli H, O'Hagan A (2020). Predictively
    consistent prior effective sample sizes. Biometrics 76(2):578-587.
    Morita S, Thall PF, Müller P (2008). Determining the effective sample size
    of a parametric prior. Biometrics 64(2):595-602.
    RBesT ``ess()`` (R/mixess.R).
    """
    # ess sits below the mixture module (BetaMixture.summary reports the ELIR ESS), so it
    # checks the mixture's interface rather than its class
    if not all(hasattr(mix, k) for k in ("weights", "a", "b", "pdf", "ppf")):
        raise OptionError(f"mix must be a BetaMixture, got {type(mix).__name__}")
    if method == "moment":
        m, v = mix.mean(), mix.var()
        return float(m * (1.0 - m) / v - 1.0)
    if method == "elir":
        _require_ge1(mix, "elir")
        return _ess_elir(mix)
    if method == "morita":
        _require_ge1(mix, "morita")
        return _ess_morita(mix, s)
    raise OptionError(f"method must be one of {list(_ESS_METHODS)}, got {method!r}")


def _require_ge1(mix: BetaMixture, method: str) -> None:
    # a < 1 or b < 1 makes the density unbounded at a boundary: the ELIR
    # integral diverges and the mode sits at 0 or 1 (RBesT raises the same)
    bad = (mix.a < 1.0) | (mix.b < 1.0)
    if np.any(bad):
        raise OptionError(
            f"ess(method={method!r}) needs all a >= 1 and b >= 1 (the density is unbounded "
            f"otherwise), got a={fmt_list(mix.a)}, b={fmt_list(mix.b)}; fit with "
            "constrain_gt1=True"
        )


def _log_expit(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log p and log(1 - p) for p = expit(u), without overflow."""
    return -np.logaddexp(0.0, -u), -np.logaddexp(0.0, u)


def _lir(mix: BetaMixture, u: Any) -> np.ndarray:
    """Local information ratio i_prior(p) * p (1 - p) at p = expit(u)."""
    a, b = mix.a, mix.b
    # beyond |u| = 700 exp(|u|) overflows; the prior has no mass there anyway
    u = np.clip(np.asarray(u, dtype=float), -700.0, 700.0)[..., None]
    lp, lq = _log_expit(u)
    r = _responsibilities(mix, lp, lq)
    # -d2/dp2 log pi = E_r[-g_k'] - Var_r(g_k) with g_k = d/dp log f_k
    curv = (r * ((a - 1) * np.exp(-u) + (b - 1) * np.exp(u))).sum(axis=-1)
    return curv - _lir_var(mix, r, lp[..., 0], lq[..., 0])


def _responsibilities(mix: BetaMixture, lp: np.ndarray, lq: np.ndarray) -> np.ndarray:
    a, b = mix.a, mix.b
    with np.errstate(divide="ignore"):
        logf = np.log(mix.weights) + (a - 1) * lp + (b - 1) * lq - special.betaln(a, b)
    return np.exp(logf - special.logsumexp(logf, axis=-1, keepdims=True))


def _lir_var(mix: BetaMixture, r: np.ndarray, lp: np.ndarray, lq: np.ndarray) -> np.ndarray:
    """Var_r(g) * p (1 - p), written as 1/2 sum_jk r_j r_k (g_j - g_k)^2 p (1 - p).

    g_j - g_k = (da (1 - p) - db p) / (p (1 - p)), so no two large terms cancel.
    """
    p, q = np.exp(lp)[..., None, None], np.exp(lq)[..., None, None]
    da = mix.a[:, None] - mix.a[None, :]
    db = mix.b[:, None] - mix.b[None, :]
    d2 = (da * q - db * p) ** 2 / (p * q)
    return 0.5 * np.einsum("...j,...k,...jk->...", r, r, d2)


def adaptive_gauss_legendre(f, edges: np.ndarray, rtol: float = 1e-12) -> float:
    """Integral of a vectorised f over [edges[0], edges[-1]], by adaptive Gauss-Legendre.

    Each interval is accepted when its 20- and 40-node Gauss-Legendre estimates agree
    within ``rtol`` of the whole integral's running estimate (or 1e-300 absolute), else
    halved; every interval of a round is evaluated in one call of ``f``. Plain numpy:
    scipy.integrate's import (0.2 s, scipy.optimize behind it) costs more than a whole
    MAP prior. The ELIR test checks the result against scipy's adaptive QUADPACK.
    """
    x20, w20 = np.polynomial.legendre.leggauss(20)
    x40, w40 = np.polynomial.legendre.leggauss(40)
    lo, hi = np.asarray(edges[:-1], float), np.asarray(edges[1:], float)
    total = 0.0
    for _ in range(60):
        mid, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
        n = lo.size
        u = np.concatenate(
            [
                (mid[:, None] + half[:, None] * x20).ravel(),
                (mid[:, None] + half[:, None] * x40).ravel(),
            ]
        )
        v = f(u)
        i20 = (v[: 20 * n].reshape(n, 20) @ w20) * half
        i40 = (v[20 * n :].reshape(n, 40) @ w40) * half
        scale = max(abs(total + i40.sum()), 1e-300)
        ok = np.abs(i40 - i20) <= rtol * scale
        total += float(i40[ok].sum())
        if ok.all():
            return total
        lo, hi = lo[~ok], hi[~ok]
        m = 0.5 * (lo + hi)
        lo, hi = np.concatenate([lo, m]), np.concatenate([m, hi])
    raise RuntimeError("adaptive Gauss-Legendre did not converge in 60 halvings")


def _ess_elir(mix: BetaMixture) -> float:
    # Split -d2 log pi into its two parts (see _lir).  The first integrates in
    # closed form, because pi(p) r_k(p) = w_k f_k(p):
    # E_pi[ sum_k r_k ((a_k-1)(1-p)/p + (b_k-1) p/(1-p)) ] = sum_k w_k (b_k 1[a_k>1] + a_k
    # 1[b_k>1]).
    # Done numerically, this part is the unstable one (for a_k near 1 its
    # mass sits at p < 1e-300).  Only the between-component variance term,
    # which is >= 0 and vanishes for k = 1, is integrated, on the logit scale.
    w, a, b = mix.weights, mix.a, mix.b
    analytic = float(w @ (np.where(a > 1, b, 0.0) + np.where(b > 1, a, 0.0)))
    if mix.n_components == 1:
        return analytic
    logw = np.log(np.where(w > 0, w, np.finfo(float).tiny))
    lnorm = special.betaln(a, b)
    da = a[:, None] - a[None, :]
    db = b[:, None] - b[None, :]

    def integrand(u: np.ndarray) -> np.ndarray:
        lp, lq = _log_expit(u)  # (n,)
        # pi r_j r_k (da q - db p)^2 / (p q) dp = w_j f_j w_k f_k / pi (da q - db p)^2 du:
        # the Jacobian dp = p q du cancels the 1 / (p q); done on the log scale
        logf = logw + (a - 1) * lp[:, None] + (b - 1) * lq[:, None] - lnorm  # (n, K)
        top = logf.max(axis=1, keepdims=True)
        top = np.where(np.isfinite(top), top, 0.0)
        lpi = top + np.log(np.exp(logf - top).sum(axis=1, keepdims=True))
        lpair = logf[:, :, None] + logf[:, None, :] - lpi[:, :, None]
        gap = np.abs(da * np.exp(lq)[:, None, None] - db * np.exp(lp)[:, None, None])
        return 0.5 * np.exp(lpair + 2 * np.log(gap + 1e-300)).sum(axis=(1, 2))

    # breakpoints at each component's central and extreme quantiles keep the rule from
    # stepping over a narrow peak; beyond the 1e-12 quantiles the integrand is negligible,
    # and 40 logit units further it is below double precision
    qs = special.logit(beta_ppf(np.array([1e-12, 0.01, 0.5, 0.99, 1 - 1e-12])[:, None], a, b))
    pts = np.unique(qs[np.isfinite(qs)])
    edges = np.concatenate([[pts[0] - 40.0], pts, [pts[-1] + 40.0]])
    var_term = adaptive_gauss_legendre(integrand, edges)
    return analytic - float(var_term)


def _mixture_modes(mix: BetaMixture) -> np.ndarray:
    """Local maxima of the density in [eps, 1 - eps], highest first."""
    eps = np.finfo(float).eps
    # a grid uniform on the logit scale resolves peaks near 0 and 1; component
    # modes are added so that narrow components cannot fall between grid points
    grid = special.expit(np.linspace(-30.0, 30.0, 4001))
    with np.errstate(invalid="ignore", divide="ignore"):
        cmodes = np.where(
            (mix.a > 1) & (mix.b > 1), (mix.a - 1) / (mix.a + mix.b - 2), mix.a / (mix.a + mix.b)
        )
    grid = np.unique(np.clip(np.concatenate([grid, cmodes, [eps, 1 - eps]]), eps, 1 - eps))
    logf = mix.logpdf(grid)
    left = np.concatenate([[-np.inf], logf[:-1]])
    right = np.concatenate([logf[1:], [-np.inf]])
    # a peak must stand out from its right neighbour by more than rounding noise:
    # where a vague component makes the density flat near 0 or 1, float noise
    # would otherwise create many false "modes"
    tol = 1e-9 * np.maximum(1.0, np.abs(logf))
    is_peak = (logf >= left) & (logf > right + tol)
    is_peak[-1] = logf[-1] > left[-1] + tol[-1]  # the upper end must rise, not just be flat
    peaks = np.flatnonzero(is_peak)
    if peaks.size == 0:  # a flat density (e.g. Beta(1, 1)): the grid maximum stands in
        peaks = np.array([int(np.argmax(logf))])
    modes = []
    for i in peaks:
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
        if hi > lo:
            x, fx = _golden_max(lambda t: float(mix.logpdf(t)), lo, hi)
            x = x if fx >= logf[i] else grid[i]
        else:
            x = grid[i]
        modes.append(float(x))
    modes_arr = np.sort(np.array(modes))
    modes_arr = modes_arr[np.concatenate([[True], np.diff(modes_arr) > 1e-9])]  # one per peak
    return modes_arr[np.argsort(-mix.logpdf(modes_arr))]


def _golden_max(f, lo: float, hi: float, xatol: float = 1e-12) -> tuple[float, float]:
    """(x, f(x)) at the maximum of a unimodal f on [lo, hi], by golden-section search.

    Plain Python: scipy.optimize's import costs more than the whole MAP prior. Near a
    maximum f is flat to rounding, so x is found to about sqrt(eps) relative at best,
    like any search on function values (scipy's bounded Brent included).
    """
    g = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = hi - g * (hi - lo), lo + g * (hi - lo)
    fc, fd = f(c), f(d)
    while hi - lo > xatol:
        if fc >= fd:
            hi, d, fd = d, c, fc
            c = hi - g * (hi - lo)
            fc = f(c)
        else:
            lo, c, fc = c, d, fd
            d = lo + g * (hi - lo)
            fd = f(d)
    return (c, fc) if fc >= fd else (d, fd)


def _ess_morita(mix: BetaMixture, s: float) -> float:
    if not s > 0:
        raise OptionError(f"s must be > 0, got s={s!r}")
    modes = _mixture_modes(mix)
    if modes.size > 1:
        warnings.warn(
            f"the prior has {modes.size} modes ({', '.join(f'{m:.3g}' for m in modes)}); the "
            "Morita ESS uses the highest one and is ill-defined for multi-modal priors",
            UserWarning,
            stacklevel=3,
        )
    x = float(modes[0])
    # prior information (negative curvature of log prior) at the mode
    deriv2 = float(_lir(mix, special.logit(x))) / (x * (1.0 - x))
    # curvature of the vague Beta(x/s, (1-x)/s) reference prior at the same point
    a0, b0 = x / s, (1.0 - x) / s
    info0 = (a0 - 1.0) / x**2 + (b0 - 1.0) / (1.0 - x) ** 2
    # expected Fisher information of one Bernoulli observation under the prior
    # predictive, evaluated at the mode (Neuenschwander et al. 2019, eq. 9)
    mean = mix.mean()
    e_info = mean / x**2 + (1.0 - mean) / (1.0 - x) ** 2
    return float((deriv2 - info0) / e_info)
