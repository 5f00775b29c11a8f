"""Fitting a beta mixture to draws by EM (RBesT's ``mixfit`` / ``automixfit`` for beta)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

from lmsbayes.prior.checks import check_unit_interval
from lmsbayes.prior.mixture import BetaMixture

__all__ = ["fit_mixture", "mixture_fit_diagnostic"]

_CRITERIA = ("aic", "bic")
_SHORT_EM = 25  # iterations per start before the best start is run to convergence


def _as_draws(draws: Any) -> np.ndarray:
    """Flatten draws (array or xarray.DataArray) to 1-D values in (0, 1)."""
    if hasattr(draws, "dims") and hasattr(draws, "values"):
        # an xarray.DataArray: only sample dims may be flattened, never a
        # setting or landmark dim, which would silently pool different rates
        extra = [d for d in draws.dims if d not in ("chain", "draw", "sample")]
        if extra:
            raise ValueError(
                f"draws must only have sample dims ('chain', 'draw', 'sample'), got dims "
                f"{tuple(draws.dims)}; select one value of {extra} first"
            )
        draws = draws.values
    x = np.asarray(draws, dtype=float).ravel()
    if x.size < 2:
        raise ValueError(f"draws must hold at least 2 values, got {x.size}")
    bad = ~((x >= 0.0) & (x <= 1.0))
    if np.any(bad):
        raise ValueError(
            f"draws must lie in [0, 1] (they are rates), got {int(bad.sum())} value(s) outside, "
            f"e.g. {x[bad][:3].tolist()}"
        )
    if np.ptp(x) == 0:
        raise ValueError(f"draws are all equal ({x[0]!r}); a beta mixture cannot be fitted")
    # exact 0s and 1s have -inf log-likelihood under any beta with a, b > 1;
    # as in RBesT's EM they are moved to machine epsilon, which changes no
    # quantile anyone could care about
    eps = np.finfo(float).eps
    return np.clip(x, eps, 1.0 - eps)


def _moment_ab(m: float, v: float, floor: float) -> tuple[float, float]:
    """Beta (a, b) with mean m and variance v, kept above ``floor``."""
    n = m * (1.0 - m) / v - 1.0 if v > 0 else 1e6
    n = max(n, 2.0 * floor + 1e-3)
    return max(m * n, floor), max((1.0 - m) * n, floor)


def _beta_ml(s1: float, s2: float, a0: float, b0: float, floor: float) -> tuple[float, float]:
    """Beta ML from weighted sufficient statistics s1 = E_r[log x], s2 = E_r[log(1-x)].

    The negative log-likelihood per unit weight, betaln(a, b) - (a-1) s1 - (b-1) s2,
    is strictly convex in (a, b) (the beta is an exponential family with
    natural parameters a, b), so Newton's method from the moment-matching
    start converges in a handful of steps.  Steps are halved to stay above
    ``floor`` and to decrease the objective.  This replaces a general
    optimiser: EM calls it k times per iteration, and a call to
    ``scipy.optimize.minimize`` costs ~100 times more for a 2-parameter problem.
    """

    def nll(a: float, b: float) -> float:
        return special.betaln(a, b) - (a - 1.0) * s1 - (b - 1.0) * s2

    a, b = a0, b0
    f = nll(a, b)
    for _ in range(100):
        psi_ab, tri_ab = special.digamma(a + b), special.polygamma(1, a + b)
        g = np.array([special.digamma(a) - psi_ab - s1, special.digamma(b) - psi_ab - s2])
        h11 = special.polygamma(1, a) - tri_ab
        h22 = special.polygamma(1, b) - tri_ab
        det = h11 * h22 - tri_ab**2
        step = np.array([h22 * g[0] + tri_ab * g[1], tri_ab * g[0] + h11 * g[1]]) / det
        t = 1.0
        while True:
            a_new, b_new = a - t * step[0], b - t * step[1]
            if a_new >= floor and b_new >= floor:
                f_new = nll(a_new, b_new)
                if f_new <= f + 1e-14 * abs(f):
                    break
            t *= 0.5
            if t < 1e-10:
                # stuck at the constraint: the optimum lies on the boundary
                a_new, b_new = max(a - t * step[0], floor), max(b - t * step[1], floor)
                f_new = nll(a_new, b_new)
                break
        done = abs(a_new - a) <= 1e-10 * a and abs(b_new - b) <= 1e-10 * b
        a, b, f = a_new, b_new, f_new
        if done:
            break
    return float(a), float(b)


def _beta_ml_many(s1: np.ndarray, s2: np.ndarray, a0: np.ndarray, b0: np.ndarray, floor: float):
    """:func:`_beta_ml` for several components at once (the same iterations, element by element).

    The M-step of EM solves one such problem per component at every
    iteration; as arrays, a Newton step for all of them is a few ufunc calls
    instead of a few per component (polygamma(1, x) is zeta(2, x)).
    """

    def nll(a, b):
        return special.betaln(a, b) - (a - 1.0) * s_1 - (b - 1.0) * s_2

    a, b = np.array(a0, dtype=float), np.array(b0, dtype=float)
    s_1, s_2 = s1, s2
    f = nll(a, b)
    active = np.ones(a.size, dtype=bool)
    for _ in range(100):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        aa, bb, ff = a[idx], b[idx], f[idx]
        s_1, s_2 = s1[idx], s2[idx]
        psi_ab, tri_ab = special.digamma(aa + bb), special.zeta(2.0, aa + bb)
        g0 = special.digamma(aa) - psi_ab - s_1
        g1 = special.digamma(bb) - psi_ab - s_2
        h11 = special.zeta(2.0, aa) - tri_ab
        h22 = special.zeta(2.0, bb) - tri_ab
        det = h11 * h22 - tri_ab**2
        st0, st1 = (h22 * g0 + tri_ab * g1) / det, (tri_ab * g0 + h11 * g1) / det
        t = np.ones(idx.size)
        a_new, b_new = aa - st0, bb - st1
        if np.all((a_new >= floor) & (b_new >= floor)):  # the full Newton step, usually accepted
            f_new = nll(a_new, b_new)
            pending = ~(f_new <= ff + 1e-14 * np.abs(ff))
        else:
            a_new, b_new, f_new = aa.copy(), bb.copy(), ff.copy()
            pending = np.ones(idx.size, dtype=bool)
        while pending.any():
            an, bn = aa - t * st0, bb - t * st1
            inside = (an >= floor) & (bn >= floor)
            with np.errstate(invalid="ignore", divide="ignore"):
                fn = np.where(
                    inside, nll(np.where(inside, an, 1.0), np.where(inside, bn, 1.0)), np.inf
                )
            accept = pending & inside & (fn <= ff + 1e-14 * np.abs(ff))
            a_new[accept], b_new[accept], f_new[accept] = an[accept], bn[accept], fn[accept]
            pending &= ~accept
            t = np.where(pending, 0.5 * t, t)
            stuck = pending & (t < 1e-10)
            if stuck.any():  # stuck at the constraint: the optimum lies on the boundary
                ab = np.maximum(aa - t * st0, floor)
                bb_ = np.maximum(bb - t * st1, floor)
                a_new[stuck], b_new[stuck] = ab[stuck], bb_[stuck]
                f_new[stuck] = nll(ab, bb_)[stuck]
                pending &= ~stuck
        done = (np.abs(a_new - aa) <= 1e-10 * aa) & (np.abs(b_new - bb) <= 1e-10 * bb)
        a[idx], b[idx], f[idx] = a_new, b_new, f_new
        active[idx[done]] = False
    return a, b


def _em(
    x: np.ndarray,
    lx: np.ndarray,
    l1x: np.ndarray,
    init: tuple[np.ndarray, np.ndarray, np.ndarray],
    constrain_gt1: bool,
    max_iter: int,
    tol: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, bool]:
    w, a, b = (np.array(v, dtype=float) for v in init)
    floor = 1.0 + 1e-8 if constrain_gt1 else 1e-8
    a, b = np.maximum(a, floor), np.maximum(b, floor)
    ll_old = -np.inf
    converged = False
    # columns of the per-draw statistics the M-step needs; one matrix product
    # resp.T @ stats gives all weighted sums (and avoids BLAS dot on long vectors)
    suff = np.column_stack([x, x * x, lx, l1x])
    for it in range(max_iter):
        # E-step on the log scale: points far out in a component's tail would
        # otherwise underflow to responsibility 0/0. Components are rows (k, N):
        # reductions over a few rows are elementwise, over a few columns they are slow
        with np.errstate(divide="ignore"):
            logf = (
                np.log(w)[:, None]
                + (a - 1)[:, None] * lx
                + (b - 1)[:, None] * l1x
                - special.betaln(a, b)[:, None]
            )
        top = logf.max(axis=0)
        resp = np.exp(logf - top)
        dens = resp.sum(axis=0)
        ll = float((top + np.log(dens)).sum())
        if abs(ll - ll_old) <= tol * (1.0 + abs(ll)):
            converged = True
            break
        ll_old = ll
        resp /= dens
        nk = resp.sum(axis=1)
        w = nk / x.size
        sums = resp @ suff
        live = np.flatnonzero(
            nk >= 1e-8 * x.size
        )  # an emptied component keeps its shape; its weight is ~0
        if live.size:
            m, m2, s1, s2 = (sums[live] / nk[live, None]).T
            # Newton from the previous iteration's shapes (one or two steps once EM settles;
            # the objective is convex, so any start converges) - 3x faster than from the moments
            if it:
                a0, b0 = a[live], b[live]
            else:
                a0, b0 = map(
                    np.array,
                    zip(
                        *(
                            _moment_ab(mk, max(m2k - mk * mk, 0.0), floor)
                            for mk, m2k in zip(m, m2, strict=True)
                        ),
                        strict=True,
                    ),
                )
            a[live], b[live] = _beta_ml_many(s1, s2, a0, b0, floor)
    w = w / w.sum()
    return w, a, b, ll, converged


def _inits(x: np.ndarray, k: int, rng: np.random.Generator, floor: float) -> list[tuple]:
    """Starting values: equal-count quantile groups, and k-means on the logit scale."""
    xs = np.sort(x)
    out = []
    groups = np.array_split(xs, k)
    out.append(
        (
            np.array([g.size for g in groups], dtype=float) / x.size,
            *map(
                np.array, zip(*(_moment_ab(g.mean(), g.var(), floor) for g in groups), strict=True)
            ),
        )
    )
    if k > 1:
        # 1-D k-means (Lloyd) on logit(x), seeded k-means++ style from rng
        z = special.logit(x)
        centers = [rng.choice(z)]
        for _ in range(1, k):
            d2 = np.min((z[:, None] - np.array(centers)[None, :]) ** 2, axis=1)
            centers.append(rng.choice(z, p=d2 / d2.sum()) if d2.sum() > 0 else rng.choice(z))
        c = np.sort(np.array(centers))
        for _ in range(50):
            lab = np.argmin(np.abs(z[:, None] - c[None, :]), axis=1)
            new = np.array([z[lab == j].mean() if np.any(lab == j) else c[j] for j in range(k)])
            if np.allclose(new, c):
                break
            c = new
        w, a, b = [], [], []
        for j in range(k):
            g = x[lab == j]
            if g.size < 2:
                g = x  # an empty cluster starts as the whole sample
            w.append(max(g.size, 1) / x.size)
            aj, bj = _moment_ab(g.mean(), g.var(), floor)
            a.append(aj)
            b.append(bj)
        out.append((np.array(w) / np.sum(w), np.array(a), np.array(b)))
    return out


def fit_mixture(
    draws: Any,
    max_components: int = 4,
    criterion: str = "bic",
    rng: Any = None,
    *,
    constrain_gt1: bool = True,
    max_iter: int = 500,
    tol: float = 1e-8,
) -> BetaMixture:
    """Fit a beta mixture to draws by EM, choosing the number of components.

    For each ``k = 1..max_components`` EM is started from equal-count quantile
    groups and from k-means on the logit scale; after a few iterations the
    start with the higher log-likelihood is run to convergence, and ``k`` is
    chosen by ``criterion``.  The M-step matches each component's weighted
    moments and then refines by weighted maximum likelihood from the weighted
    sufficient statistics sum r log x and sum r log(1 - x) (Newton's method on
    (a, b), where the objective is convex).  This is RBesT's ``mixfit`` /
    ``automixfit`` for ``type="beta"``; convergence is declared on the
    log-likelihood.

    Parameters
    ----------
    draws : array_like or xarray.DataArray
        Draws of a rate in [0, 1]; all dims are flattened (a DataArray may
        only have ``chain``, ``draw`` or ``sample`` dims).  Values exactly 0 or
        1 are moved to machine epsilon (``2.2e-16``) from the boundary, as
        RBesT does: they have zero likelihood under a beta with a, b > 1.
    max_components : int, default 4
        Largest ``k`` tried.
    criterion : {"bic", "aic"}
        ``-2 loglik + penalty * (3k - 1)`` with penalty ``log(N)`` (BIC) or 2
        (AIC).  RBesT's ``automixfit`` uses AIC with penalty 6 by default;
        with thousands of MCMC draws BIC penalises at least as strongly.
    rng : int or numpy.random.Generator, optional
        Seeds the k-means start; the fit is deterministic given ``rng``.
    constrain_gt1 : bool, default True
        Keep all ``a, b > 1`` (RBesT's default), so that every component is
        unimodal with a bounded density and the ELIR ESS is defined.
    max_iter, tol : int, float
        EM stops when the relative change of the log-likelihood is ``<= tol``.

    Returns
    -------
    BetaMixture
        Components ordered by decreasing weight.  ``provenance["fit"]`` holds
        the log-likelihood and criterion of every ``k`` tried.
    """
    x = _as_draws(draws)
    if isinstance(max_components, bool) or not (
        isinstance(max_components, int | np.integer) and max_components >= 1
    ):
        raise ValueError(f"max_components must be an integer >= 1, got {max_components!r}")
    if criterion not in _CRITERIA:
        raise ValueError(f"criterion must be one of {list(_CRITERIA)}, got {criterion!r}")
    rng = np.random.default_rng(rng)
    lx, l1x = np.log(x), np.log1p(-x)
    floor = 1.0 + 1e-8 if constrain_gt1 else 1e-8
    penalty = math.log(x.size) if criterion == "bic" else 2.0

    table = []
    best = None
    for k in range(1, max_components + 1):
        # "small EM" (Biernacki, Celeux & Govaert 2003): a few iterations from
        # each start, then only the most promising one is run to convergence
        short = [
            _em(x, lx, l1x, init, constrain_gt1, _SHORT_EM, tol)
            for init in _inits(x, k, rng, floor)
        ]
        w, a, b, ll, converged = max(short, key=lambda f: f[3])
        if not converged:
            w, a, b, ll, converged = _em(x, lx, l1x, (w, a, b), constrain_gt1, max_iter, tol)
        df = 3 * k - 1
        ic = -2.0 * ll + penalty * df
        table.append({"k": k, "loglik": ll, criterion: ic, "converged": converged})
        if best is None or ic < best[0]:
            best = (ic, w, a, b, converged, k)
    _, w, a, b, converged, k = best
    # over-fitted k often crawl (two components sharing one mode); only the
    # chosen model's convergence matters
    if not converged:
        warnings.warn(
            f"EM for the chosen k={k} components did not converge in {max_iter} iterations; "
            "check mixture_fit_diagnostic()",
            RuntimeWarning,
            stacklevel=2,
        )
    order = np.argsort(-w, kind="stable")
    prov = {
        "fit": {
            "method": "EM",
            "criterion": criterion,
            "n_draws": int(x.size),
            "constrain_gt1": constrain_gt1,
            "models": table,
        }
    }
    return BetaMixture(weights=w[order], a=a[order], b=b[order], provenance=prov)


def mixture_fit_diagnostic(
    mix: BetaMixture,
    draws: Any,
    probs: Sequence[float] = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975),
) -> pd.DataFrame:
    """Compare a fitted mixture with the draws it approximates (RBesT style).

    Returns
    -------
    pandas.DataFrame
        Rows ``mean``, ``sd`` and the quantiles ``probs`` (labelled "2.5%",
        ...); columns ``draws``, ``mixture`` and ``difference`` (mixture minus
        draws).  ``df.attrs["ks_distance"]`` is the Kolmogorov-Smirnov
        distance sup |F_draws - F_mixture|; with MCMC draws its p-value would
        mostly measure the number of draws, so none is reported.
    """
    x = _as_draws(draws)
    probs = check_unit_interval("probs", probs)
    labels = ["mean", "sd", *(f"{100 * p:g}%" for p in probs)]
    emp = [x.mean(), x.std(ddof=1), *np.quantile(x, probs)]
    fit = [mix.mean(), mix.sd(), *np.atleast_1d(mix.ppf(probs))]
    df = pd.DataFrame({"draws": emp, "mixture": fit}, index=labels)
    df["difference"] = df["mixture"] - df["draws"]
    ks = stats.kstest(x, mix.cdf)
    df.attrs["ks_distance"] = float(ks.statistic)
    return df
