"""Figures of simulation-based calibration: rank histograms and ECDF differences.

Both functions take the Dataset of :func:`lmsbayes.calibrate.sbc` (and
optionally its :func:`~lmsbayes.calibrate.sbc_summary`) and return a
:class:`matplotlib.figure.Figure` with one panel per calibrated quantity.
Nothing here fits or simulates. Figures are built with
``matplotlib.figure.Figure`` (no pyplot state), as in lmsbayes.plots.

- Rank histograms: counts of the ranks in equal bins, with the central 99%
  range of a bin's count under uniform ranks (grey band).
- ECDF differences (Säilynoja, Bürkner and Vehtari 2022): the ECDF of the
  randomised PIT minus the uniform CDF, with a simultaneous 95% band; a
  curve leaving the band anywhere is evidence against calibration at that
  level (a U shape: posteriors too narrow; a hump: too wide; a one-sided
  curve: biased).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["plot_rank_histograms", "plot_ecdf_difference"]

_COLOUR = {"parameter": "#0072B2", "derived": "#D55E00"}


def _grid(n_panels: int, ncols: int):
    from matplotlib.figure import Figure

    ncols = max(1, min(ncols, n_panels))
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(2.9 * ncols, 2.3 * nrows + 0.7), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes


def _title(ds: xr.Dataset, summary: pd.DataFrame | None, what: str) -> str:
    err = ds["error"].values.astype(str)
    n_fit = int((err == "").sum())
    khat = ds["khat"].values
    high = int(np.sum(khat > float(ds.attrs.get("khat_max", 0.7))))
    parts = [
        f"{what}: spec {ds.attrs.get('spec_name', '?')!r}, {ds.attrs.get('engine', '?')} engine, "
        f"{n_fit} of {ds.sizes['simulation']} simulations fitted, L = {ds.attrs['n_ranks']} draws"
    ]
    notes = []
    if n_fit < ds.sizes["simulation"]:
        notes.append(f"{ds.sizes['simulation'] - n_fit} fits failed (left out)")
    if high:
        notes.append(f"{high} with importance k-hat > {ds.attrs.get('khat_max', 0.7)} (included)")
    if summary is not None:
        bad = [str(q) for q, ok in summary["uniform"].items() if not pd.isna(ok) and not ok]
        notes.append(
            f"rejected at {summary.attrs.get('alpha', 0.01):g} after Holm: "
            + (", ".join(bad) if bad else "none")
        )
    return parts[0] + ("\n" + "; ".join(notes) if notes else "")


def _panel_label(summary: pd.DataFrame | None, q: str) -> str:
    if summary is None or q not in summary.index:
        return q
    r = summary.loc[q]
    p = min(r["p_chi2_holm"], r["p_ks_holm"])
    return f"{q}\nHolm p = {p:.2g}" if np.isfinite(p) else q


def plot_rank_histograms(
    ds: xr.Dataset,
    summary: pd.DataFrame | None = None,
    bins: int | None = None,
    prob: float = 0.99,
    ncols: int = 5,
) -> Figure:
    """Rank histogram per quantity, with the range of a bin's count under uniformity.

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`lmsbayes.calibrate.sbc`.
    summary : pandas.DataFrame, optional
        From :func:`lmsbayes.calibrate.sbc_summary`: adds the Holm-adjusted p-values.
    bins : int, optional
        Equal bins over the L + 1 rank values (a divisor of L + 1); default as
        the chi-square test (at most 20, at least 10 expected per bin).
    prob : float
        Probability of the grey band: the central interval of Binomial(n, 1/bins).
    ncols : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    from lmsbayes.calibrate import rank_bins

    L = int(ds.attrs["n_ranks"])
    rank = ds["rank"].transpose("simulation", "quantity").values
    names = [str(q) for q in ds["quantity"].values]
    kinds = [str(k) for k in ds["kind"].values]
    fig, axes = _grid(len(names), ncols)
    for j, (q, ax) in enumerate(zip(names, axes)):
        r = rank[:, j][np.isfinite(rank[:, j])].astype(np.int64)
        n = r.size
        b = bins or max(rank_bins(L, n), 2)
        counts = np.bincount(r * b // (L + 1), minlength=b) if n else np.zeros(b)
        edges = np.arange(b + 1) * (L + 1) / b
        lo, hi = stats.binom.ppf([(1 - prob) / 2, (1 + prob) / 2], max(n, 1), 1 / b)
        ax.axhspan(lo, hi, color="0.85", zorder=0, label=f"{100 * prob:g}% range if uniform")
        ax.axhline(n / b, color="0.5", lw=0.8, zorder=1)
        for v in (lo, hi):  # on top of the bars too, where a bin falls short of the band
            ax.axhline(v, color="0.35", lw=0.7, ls="--", zorder=3)
        ax.bar(
            edges[:-1],
            counts,
            width=edges[1] - edges[0],
            align="edge",
            color=_COLOUR.get(kinds[j], "#555555"),
            edgecolor="white",
            lw=0.5,
            zorder=2,
        )
        ax.set_xlim(0, L + 1)
        ax.set_title(_panel_label(summary, q), fontsize=9)
        ax.set_xlabel(f"rank of the truth (0-{L})", fontsize=8)
        ax.tick_params(labelsize=7)
        if j % ncols == 0:
            ax.set_ylabel("simulations", fontsize=8)
    axes[0].legend(fontsize=7, loc="lower left", frameon=False)
    fig.suptitle(_title(ds, summary, "SBC rank histograms"), fontsize=10)
    return fig


def plot_ecdf_difference(
    ds: xr.Dataset,
    summary: pd.DataFrame | None = None,
    prob: float = 0.95,
    points: int = 100,
    ncols: int = 5,
) -> Figure:
    """ECDF of the randomised PIT minus the uniform CDF, with a simultaneous band, per quantity.

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`lmsbayes.calibrate.sbc`.
    summary : pandas.DataFrame, optional
    prob : float
        Simultaneous coverage of the band (:func:`lmsbayes.calibrate.ecdf_bands`).
    points : int
        Evaluation points in (0, 1).
    ncols : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    from lmsbayes.calibrate import ecdf_bands

    u = ds["u"].transpose("simulation", "quantity").values
    names = [str(q) for q in ds["quantity"].values]
    kinds = [str(k) for k in ds["kind"].values]
    z = np.arange(1, points) / points
    fig, axes = _grid(len(names), ncols)
    bands: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for j, (q, ax) in enumerate(zip(names, axes)):
        x = np.sort(u[:, j][np.isfinite(u[:, j])])
        n = x.size
        if n == 0:
            ax.set_title(f"{q}\n(no fitted simulation)", fontsize=9)
            continue
        if n not in bands:
            bands[n] = ecdf_bands(n, z, prob=prob)
        lo, hi = bands[n]
        ecdf = np.searchsorted(x, z, side="right") / n
        ax.fill_between(
            z,
            lo - z,
            hi - z,
            color="0.85",
            step="mid",
            lw=0,
            label=f"simultaneous {100 * prob:g}% band",
        )
        ax.axhline(0, color="0.5", lw=0.8)
        ax.plot(z, ecdf - z, color=_COLOUR.get(kinds[j], "#555555"), lw=1.3)
        ax.set_xlim(0, 1)
        ax.set_title(_panel_label(summary, q), fontsize=9)
        ax.set_xlabel("PIT of the truth", fontsize=8)
        ax.tick_params(labelsize=7)
        if j % ncols == 0:
            ax.set_ylabel("ECDF - uniform", fontsize=8)
    axes[0].legend(fontsize=7, loc="lower left", frameon=False)
    fig.suptitle(_title(ds, summary, "SBC ECDF differences"), fontsize=10)
    return fig
