"""Forest and funnel plots of a contrast meta-analysis: computed results in, Figures out.

Nothing here fits a model. Figures are built with ``matplotlib.figure.Figure``
(not pyplot), so making many leaks no global state.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from lmsbayes.contrast.bayes import BayesRandomEffects
from lmsbayes.contrast.data import MEASURES, is_ratio
from lmsbayes.contrast.frequentist import RandomEffects
from lmsbayes.errors import OptionError

__all__ = ["forest_plot", "funnel_plot"]

_BLUE, _VERM, _GREY = "#0072B2", "#D55E00", "#777777"


def _check(result):
    if not isinstance(result, (RandomEffects, BayesRandomEffects)):
        raise OptionError(
            f"expected a RandomEffects or BayesRandomEffects result, got {type(result).__name__}"
        )


def _ratio_axis(ax, measure, label):
    """Log x axis labelled with plain ratios (0.2, 0.5, 1, 2) instead of powers of ten."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax.set_xscale("log")
    lo, hi = ax.get_xlim()
    ticks = [
        t
        for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 5, 10, 20, 50, 100)
        if lo <= t <= hi
    ]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel(label)


def _pooled(result):
    """(label, estimate, ci, pi) on the analysis scale."""
    if isinstance(result, RandomEffects):
        label = f"RE model ({result.method}{', HKSJ' if result.test == 'knha' else ''})"
        return (
            label,
            result.estimate,
            (result.ci_lower, result.ci_upper),
            (result.pi_lower, result.pi_upper),
        )
    s = result.summary()
    label = f"Bayesian (tau ~ {result.tau_prior})"
    return (
        label,
        s.at["mu", "median"],
        (s.at["mu", "lower"], s.at["mu", "upper"]),
        (s.at["theta_new", "lower"], s.at["theta_new", "upper"]),
    )


def forest_plot(result, *, title: str | None = None):
    """Forest plot: each trial's estimate and CI, the pooled estimate and the prediction interval.

    Parameters
    ----------
    result : RandomEffects or BayesRandomEffects
        A computed meta-analysis. For a Bayesian result the trials' shrinkage
        estimates (posterior mean +- 1.96 sd) are drawn beside the data.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Ratio measures are drawn on a log axis labelled with ratios.
    """
    from matplotlib.figure import Figure

    _check(result)
    d = result.data
    k = len(d)
    ratio = is_ratio(result.measure)
    tf = np.exp if ratio else (lambda v: v)
    z = stats.norm.ppf(0.5 + result.level / 2)
    y = np.arange(k)[::-1] + 2.0
    fig = Figure(figsize=(7.5, 0.38 * k + 2.2), layout="constrained")
    ax = fig.add_subplot()
    lo, hi = d["yi"] - z * d["sei"], d["yi"] + z * d["sei"]
    if isinstance(result, RandomEffects):
        size = 20 + 200 * np.asarray(result.weights) / max(np.max(result.weights), 1e-12)
    else:
        size = np.full(k, 40.0)
    ax.hlines(y, tf(lo), tf(hi), color="black", lw=1)
    ax.scatter(tf(d["yi"]), y, s=size, marker="s", color="black", zorder=3, label="trial estimate")
    if isinstance(result, BayesRandomEffects):
        sh = result.shrinkage()
        ax.hlines(
            y - 0.25,
            tf(sh["mean"] - z * sh["sd"]),
            tf(sh["mean"] + z * sh["sd"]),
            color=_GREY,
            lw=1,
        )
        ax.scatter(
            tf(sh["mean"]), y - 0.25, s=18, color=_GREY, zorder=3, label="shrinkage estimate"
        )
    label, est, (clo, chi), (plo, phi) = _pooled(result)
    interval = "CI" if isinstance(result, RandomEffects) else "credible interval"
    ax.fill(
        [tf(clo), tf(est), tf(chi), tf(est)],
        [0.5, 0.8, 0.5, 0.2],
        color=_BLUE,
        zorder=3,
        label=f"pooled ({100 * result.level:g}% {interval})",
    )
    ax.hlines(
        -0.4,
        tf(plo),
        tf(phi),
        color=_VERM,
        lw=3,
        label=f"{100 * result.level:g}% prediction interval",
    )
    ax.axvline(1.0 if ratio else 0.0, color=_GREY, lw=0.8, ls="--")
    ax.axvline(tf(est), color=_BLUE, lw=0.6, ls=":")
    ax.set_yticks([*y, 0.5, -0.4], [*d.index.astype(str), label, "new trial (prediction)"])
    right = ax.secondary_yaxis("right")
    txt = [f"{tf(a):.2f} [{tf(b):.2f}, {tf(c):.2f}]" for a, b, c in zip(d["yi"], lo, hi)]
    right.set_yticks(
        [*y, 0.5, -0.4],
        [*txt, f"{tf(est):.2f} [{tf(clo):.2f}, {tf(chi):.2f}]", f"[{tf(plo):.2f}, {tf(phi):.2f}]"],
    )
    right.tick_params(length=0)
    if ratio:
        _ratio_axis(ax, result.measure, f"{result.measure} ({MEASURES[result.measure]}, log scale)")
    else:
        ax.set_xlabel("estimate")
    ax.set_ylim(-1.0, k + 2.6)
    ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.18 if k < 6 else -0.1),
        ncol=2,
        fontsize=8,
        frameon=False,
    )
    ax.set_title(title or f"Forest plot (k = {k})")
    return fig


def funnel_plot(result, *, title: str | None = None):
    """Funnel plot: estimates against their standard errors (inverted), with the pseudo-CI funnel.

    Parameters
    ----------
    result : RandomEffects or BayesRandomEffects
        The funnel is centred on the pooled estimate (the posterior median for a Bayesian fit).
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    _check(result)
    d = result.data
    ratio = is_ratio(result.measure)
    tf = np.exp if ratio else (lambda v: v)
    _, est, _, _ = _pooled(result)
    z = stats.norm.ppf(0.5 + result.level / 2)
    fig = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    top = float(d["sei"].max()) * 1.1
    s = np.linspace(0, top, 50)
    ax.plot(
        tf(est - z * s), s, color=_GREY, lw=0.8, ls="--", label=f"{100 * result.level:g}% pseudo-CI"
    )
    ax.plot(tf(est + z * s), s, color=_GREY, lw=0.8, ls="--")
    ax.axvline(tf(est), color=_BLUE, lw=1, label="pooled estimate")
    ax.scatter(tf(d["yi"]), d["sei"], color="black", zorder=3, label="trials")
    ax.set_ylim(top, 0)
    ax.set_ylabel(f"standard error of log {result.measure}" if ratio else "standard error")
    if ratio:
        _ratio_axis(ax, result.measure, f"{result.measure} (log scale)")
    else:
        ax.set_xlabel("estimate")
    ax.legend(fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3)
    ax.set_title(title or f"Funnel plot (k = {len(d)})")
    return fig
