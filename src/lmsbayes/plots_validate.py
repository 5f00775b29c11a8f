"""The calibration figure of predictive validation (lmsbayes.validate): results in, a Figure out.

Kept apart from lmsbayes.plots (one concept, and others edit that module).
Nothing here fits a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

from lmsbayes.errors import OptionError
from lmsbayes.validate import LEVELS, Comparison, Validation

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["plot_calibration"]

#: One colour per compared spec, in order (Okabe-Ito, colour-blind safe).
SPEC_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
_BINS = 10


def plot_calibration(result: Comparison | Validation | Sequence[Validation]) -> Figure:
    """PIT histograms and coverage against nominal level.

    One panel per spec for the histograms; one panel, all specs, for coverage.

    Parameters
    ----------
    result : Comparison, Validation or sequence of Validation

    Returns
    -------
    matplotlib.figure.Figure
        Top row: the histogram of each spec's PIT values of held-out
        observations (10 bins; a correct model gives a flat histogram, the
        grey band is the 95% range of a bin's count under uniformity);
        bottom: empirical coverage of the central 50/80/90/95% predictive
        intervals against the nominal level, with Clopper-Pearson 95%
        intervals (specs side by side at each level).
    """
    from matplotlib.figure import Figure

    if isinstance(result, Validation):
        vals = [result]
    elif hasattr(result, "validations"):
        vals = list(result.validations.values())
    else:
        vals = list(result)
    if not vals:
        raise OptionError("plot_calibration needs at least one validation")
    k = len(vals)
    fig = Figure(figsize=(max(7.0, 2.6 * k), 6.4), layout="constrained")
    grid = fig.add_gridspec(2, k, height_ratios=[1.0, 1.1])
    edges = np.linspace(0, 1, _BINS + 1)
    scheme = (
        "leave-one-trial-out" if vals[0].scheme == "loto" else f"temporal (fit <= {vals[0].year})"
    )
    for j, v in enumerate(vals):
        ax = fig.add_subplot(grid[0, j])
        pit = v.obs["pit"].to_numpy(float)
        n = pit.size
        lo, hi = stats.binom.ppf([0.025, 0.975], n, 1 / _BINS)
        ax.axhspan(lo, hi, color="0.88", zorder=0)
        ax.axhline(n / _BINS, color="0.5", lw=0.8, zorder=1)
        colour = SPEC_COLOURS[j % len(SPEC_COLOURS)]
        reported = v.obs["reported"].to_numpy(bool)
        ax.hist(
            [pit[reported], pit[~reported]],
            bins=edges,
            stacked=True,
            color=[colour, colour],
            alpha=0.9,
            edgecolor="white",
            label=["reported", "derived"],
        )
        for patch in ax.containers[1] if len(ax.containers) > 1 else []:
            patch.set_alpha(0.35)
        ax.set_xlim(0, 1)
        ax.set_title(f"{v.name}\n{n} held-out observations", fontsize=9)
        ax.set_xlabel("PIT")
        if j == 0:
            ax.set_ylabel("observations")
        if (~reported).any():
            ax.legend(fontsize=7, frameon=False)
    ax = fig.add_subplot(grid[1, :])
    levels = np.asarray(LEVELS)
    pos = np.arange(levels.size)
    half = 0.36
    for p, lv in zip(pos, levels):  # the nominal level as a short dashed segment at each level
        ax.plot(
            [p - half, p + half],
            [lv, lv],
            color="0.4",
            lw=1.0,
            ls="--",
            label="nominal" if p == 0 else None,
        )
    offsets = np.linspace(-half + 0.08, half - 0.08, k) if k > 1 else np.zeros(1)
    for j, v in enumerate(vals):
        cov = v.coverage()
        y = cov["coverage"].to_numpy(float)
        err = np.vstack([y - cov["lo"].to_numpy(float), cov["hi"].to_numpy(float) - y])
        ax.errorbar(
            pos + offsets[j],
            y,
            yerr=err,
            fmt="o",
            ms=4,
            capsize=2,
            color=SPEC_COLOURS[j % len(SPEC_COLOURS)],
            label=f"{v.name} ({len(v.obs)} obs)",
        )
    ax.set_xlim(-0.5, levels.size - 0.5)
    ax.set_ylim(0.0, 1.02)
    ax.set_xticks(pos)
    ax.set_xticklabels([f"{100 * lv:g}%" for lv in levels])
    ax.set_xlabel("nominal level of the central predictive interval")
    ax.set_ylabel("coverage of held-out observations")
    ax.legend(fontsize=8, frameon=False, loc="lower right", ncol=2)
    fig.suptitle(f"Predictive calibration, {scheme}", fontsize=11)
    return fig
