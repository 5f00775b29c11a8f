"""Figures: computed results in, matplotlib Figures out (the HTML report is lmsbayes.report).

Every function takes a :class:`~lmsbayes.fit.Fit` or a result object
(a :class:`~lmsbayes.prior.BetaMixture`, an operating-characteristics
Dataset) and returns a :class:`matplotlib.figure.Figure`. Nothing here fits
a model. Figures are created with ``matplotlib.figure.Figure`` (not pyplot),
so building many of them leaks no global state; in a notebook run
``%matplotlib inline`` once and a returned figure displays itself.

Colours are fixed across figures: one hue per line of therapy (1L blue,
2L+ vermillion, Okabe-Ito), a dark shade for recommended (R-T) and a light
shade for non-recommended (NR-T) treatments. Observed rates are circles,
filled when the rate was reported and open when it was derived from the
median under an exponential model; posterior arm estimates are diamonds.

Example
-------
>>> import lmsbayes as lb
>>> from lmsbayes import plots
>>> f = lb.fit("default")
>>> fig = plots.plot_forest(f, landmark=6.0)
>>> fig.savefig("forest.png")
>>> from lmsbayes.report import write_report
>>> write_report(f, "report")              # tables, PNGs and report/index.html
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from lmsbayes.errors import OptionError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from lmsbayes.fit import Fit
    from lmsbayes.predict import Setting
    from lmsbayes.prior import BetaMixture

__all__ = [
    "LINE_COLOURS",
    "plot_forest",
    "plot_predictive",
    "plot_effects",
    "plot_prior",
    "plot_oc",
    "plot_two_arm_oc",
    "plot_tradeoff",
    "plot_ppc",
]

#: One colour per line of therapy (Okabe-Ito, colour-blind safe).
LINE_COLOURS = {"1L": "#0072B2", "2L+": "#D55E00", "all": "#555555"}
#: Shade per treatment class: weight of white mixed into the line colour.
_CLASS_TINT = {"R-T": 0.0, "NR-T": 0.5}
_COVARIATE_LABELS = {
    "line": "2L+ vs 1L",
    "nrt": "NR-T vs R-T",
    "uterine": "uterine fraction 1 vs 0",
    "line:nrt": "2L+ x NR-T (interaction)",
    "line:uterine": "2L+ x uterine (interaction)",
    "nrt:uterine": "NR-T x uterine (interaction)",
}
_MAX_LABEL = 52


# --------------------------------------------------------------------------- helpers
def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _tint(colour: str, amount: float) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    rgb = np.asarray(to_rgb(colour))
    return tuple(rgb + (1.0 - rgb) * amount)


def arm_colour(line: str, treatment_class: str) -> tuple[float, float, float]:
    """Colour of an arm: hue by line, shade by treatment class."""
    return _tint(
        LINE_COLOURS.get(line, LINE_COLOURS["all"]), _CLASS_TINT.get(treatment_class, 0.25)
    )


def _short(label: str, width: int = _MAX_LABEL) -> str:
    """Shorten a label to ``width`` characters at a word boundary, keeping a trailing ``(year)``."""
    label = " ".join(str(label).split())
    if len(label) <= width:
        return label
    tail = ""
    if label.endswith(")") and "(" in label:
        head, _, year = label.rpartition(" (")
        if len(year) <= 6:
            label, tail = head, f" ({year}"
    room = width - len(tail) - 1
    cut = label[:room]
    if len(label) > room and label[room] not in " +,;/" and " " in cut:
        cut = cut[: cut.rfind(" ")]  # never mid-word: drop the partial word
    return cut.rstrip(" +,;") + "\u2026" + tail


def _arm_text(label: str, trial: str, width: int = 62) -> str:
    """An arm label of at most ``width`` characters that keeps agents and year.

    Labels read ``trial agents (year)``; when too long the trial name is cut
    first, since the agents and the year tell arms of one trial apart.
    """
    label, trial = " ".join(str(label).split()), " ".join(str(trial).split())
    if len(label) <= width or not label.startswith(trial):
        return _short(label, width)
    rest = label[len(trial) :]
    keep = max(14, width - len(rest) - 1)
    head = trial if len(trial) <= keep else _short(trial, keep)
    return _short(head + rest, width)


def _expit(x: Any) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def _flat(da: xr.DataArray) -> np.ndarray:
    return np.asarray(da.values, dtype=float).ravel()


def _interval(x: np.ndarray, prob: float = 0.95) -> tuple[float, float, float]:
    lo, med, hi = np.quantile(x, [(1 - prob) / 2, 0.5, 1 - (1 - prob) / 2])
    return float(med), float(lo), float(hi)


def _check_landmark(fit: Fit, landmark: float) -> float:
    landmark = float(landmark)
    if fit.data.family.any_landmark:  # one curve per arm: any landmark
        if not 0 < landmark <= 120:
            raise OptionError(f"landmark must be in (0, 120] months, got {landmark:g}")
        return landmark
    if landmark not in fit.data.landmarks:
        raise OptionError(
            f"landmark {landmark:g} months was not fitted (fitted: "
            f"{[f'{t:g}' for t in fit.data.landmarks]})"
        )
    return landmark


def rate_label(landmark: float) -> str:
    return f"Proportion progression-free at {landmark:g} months"


# --------------------------------------------------------------------------- forest
def _forest_rows(
    fit: Fit, landmark: float, z: float = 1.959964, prob: float = 0.95
) -> pd.DataFrame:
    """Arms observed at ``landmark`` with observed and posterior summaries, in plot order."""
    arms = fit.data.arms
    obs = fit.data.obs
    lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
    family = fit.data.family
    if family.any_landmark:
        # every arm has a posterior curve; the observed marker only where a rate is reported near
        # the landmark
        arm_ids = arms.index
        rate = np.full(len(arms), np.nan)
        o_lo, o_hi = np.full(len(arms), np.nan), np.full(len(arms), np.nan)
        source = np.full(len(arms), "none", dtype=object)
        near = obs[(obs["kind"] == "rate") & (np.abs(obs["t"] - landmark) <= 0.25)]
        for _, r in near.iterrows():
            i = int(r["arm_idx"])
            rate[i] = r["value"]
            lo_y, hi_y = r["y"] - z * r["se"], r["y"] + z * r["se"]
            # the curve's scale may fall as the rate rises (Weibull): order the ends
            ends = sorted((float(family.rate_of_scale(lo_y)), float(family.rate_of_scale(hi_y))))
            o_lo[i], o_hi[i] = ends
            source[i] = "reported"
        from lmsbayes.model.derived import arm_rates

        m = fit.model
        c = m.canonical(
            {
                p_.name: fit.posterior[p_.name].transpose("chain", "draw", *p_.dims).values
                for p_ in m.params
            }
        )
        eta = fit.posterior["theta"].transpose("chain", "draw", "arm").values[..., None]
        p = xr.DataArray(
            arm_rates(m, eta, c, [landmark])[..., 0],
            dims=("chain", "draw", "arm"),
            coords={"arm": list(arms.index)},
        )
        q = p.quantile([lo, 0.5, hi], dim=("chain", "draw"))
        o = pd.DataFrame({"rate": rate, "rate_source": source})
        obs_lower, obs_upper = o_lo, o_hi
    else:
        li = fit.data.landmarks.index(landmark)
        sel = np.flatnonzero(obs["landmark_idx"].to_numpy() == li)
        o = obs.iloc[sel]
        logit = np.log(o["rate"].clip(1e-6, 1 - 1e-6)) - np.log1p(-o["rate"].clip(1e-6, 1 - 1e-6))
        se = o["se_logit"].to_numpy(float)
        arm_ids = arms.index[o["arm_idx"].to_numpy()]
        p = fit.posterior["p"].sel(landmark=landmark)
        q = p.quantile([lo, 0.5, hi], dim=("chain", "draw")).sel(arm=list(arm_ids))
        obs_lower, obs_upper = _expit(logit - z * se), _expit(logit + z * se)
    rows = pd.DataFrame(
        {
            "arm": arm_ids,
            "label": arms.loc[arm_ids, "label"].astype(str).to_numpy(),
            "trial": arms.loc[arm_ids, "trial"].astype(str).to_numpy(),
            "line": arms.loc[arm_ids, "line"].astype(str).to_numpy(),
            "treatment_class": arms.loc[arm_ids, "treatment_class"].astype(str).to_numpy(),
            "year": pd.to_numeric(arms.loc[arm_ids, "year"], errors="coerce").to_numpy(),
            "rate": o["rate"].to_numpy(float),
            "rate_source": o["rate_source"].astype(str).to_numpy(),
            "obs_lower": np.asarray(obs_lower, float),
            "obs_upper": np.asarray(obs_upper, float),
            "post_median": q.sel(quantile=0.5).values,
            "post_lower": q.sel(quantile=lo).values,
            "post_upper": q.sel(quantile=hi).values,
        }
    )
    line_order = {v: i for i, v in enumerate(("1L", "2L+"))}
    class_order = {v: i for i, v in enumerate(("R-T", "NR-T"))}
    rows["_l"] = rows["line"].map(line_order).fillna(9)
    rows["_c"] = rows["treatment_class"].map(class_order).fillna(9)
    rows = rows.sort_values(["_l", "_c", "year", "label"]).drop(columns=["_l", "_c"])
    return rows.reset_index(drop=True)


def plot_forest(fit: Fit, landmark: float = 6.0, *, prob: float = 0.95) -> Figure:
    """Forest plot with shrinkage: observed and posterior rate of every arm.

    Per arm (grouped by line, then treatment class, then year) the observed
    rate with its interval (logit(rate) +/- z se_logit, back-transformed;
    filled circle: reported rate, open circle: derived from the median) and,
    just below it, the posterior arm rate ``p[arm, landmark]`` (diamond,
    median and ``prob`` interval), so the pull towards the pooled mean is
    visible. After each line the pooled rate of a typical R-T trial with half
    uterine patients and the predictive interval of a new such trial.

    Parameters
    ----------
    fit : Fit
    landmark : float
        Months; must be a fitted landmark.
    prob : float
        Interval probability (observed, posterior, pooled, predictive).

    Returns
    -------
    matplotlib.figure.Figure
        One y tick per arm (its ``label``) plus two summary ticks per line.
    """
    from matplotlib.lines import Line2D
    from scipy import stats

    from lmsbayes.predict import Setting, predict

    landmark = _check_landmark(fit, landmark)
    rows = _forest_rows(fit, landmark, float(stats.norm.ppf(0.5 + prob / 2)), prob)
    lines = [v for v in ("1L", "2L+") if v in set(rows["line"])] or sorted(set(rows["line"]))
    can_predict = "line" in fit.spec.main_effects or len(set(fit.data.arms["line"])) == 1
    summary = {}
    if can_predict:
        settings = [Setting(line, "R-T", 0.5, name=f"{line} R-T") for line in lines]
        rate = predict(fit, settings, [landmark])["rate"].sel(landmark=landmark)
        lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
        q = rate.quantile([lo, 0.5, hi], dim=("chain", "draw"))
        for s in settings:
            summary[s.line] = {
                k: q.sel(setting=s.label, quantity=k).values for k in ("pooled", "predictive")
            }

    # summary rows name only what the model distinguishes
    effects = set(fit.spec.main_effects)
    who = {
        line: line
        + (" R-T" if "nrt" in effects else "")
        + (", uterine 0.5" if "uterine" in effects else "")
        for line in lines
    }

    # layout: y decreases down the page; a gap between groups
    ypos, ticks, tick_labels, kinds = {}, [], [], []
    y = 0.0
    group_spans = []
    for line in lines:
        start = y
        for klass in ("R-T", "NR-T"):
            sub = rows[(rows["line"] == line) & (rows["treatment_class"] == klass)]
            if sub.empty:
                continue
            group_spans.append((line, klass, y, y - len(sub) + 1))
            for i, r in sub.iterrows():
                ypos[i] = y
                ticks.append(y)
                tick_labels.append(_arm_text(r["label"], r["trial"]))
                kinds.append("arm")
                y -= 1
            y -= 0.6
        if line in summary:
            for kind, text in (
                ("pooled", f"Pooled, {who[line]}"),
                ("predictive", f"New trial, {who[line]}"),
            ):
                ticks.append(y)
                tick_labels.append(text)
                kinds.append(kind)
                summary[line][f"y_{kind}"] = y
                y -= 1
        group_spans_line = (start, y + 1)
        summary.setdefault(line, {})["span"] = group_spans_line
        y -= 0.9
    n_rows = len(ticks)
    fig = _figure(10.0, 1.6 + 0.27 * n_rows + 0.25 * len(group_spans))
    ax = fig.add_subplot()
    off = 0.17
    for i, r in rows.iterrows():
        colour = arm_colour(r["line"], r["treatment_class"])
        yy = ypos[i]
        reported = r["rate_source"] == "reported"
        if np.isfinite(r["rate"]):
            ax.plot(
                [r["obs_lower"], r["obs_upper"]],
                [yy + off] * 2,
                color=colour,
                lw=1.2,
                solid_capstyle="butt",
            )
            ax.plot(
                [r["rate"]],
                [yy + off],
                "o",
                ms=5.5,
                mec=colour,
                mew=1.3,
                mfc=colour if reported else "white",
                gid=f"observed:{r['arm']}",
            )
        dark = _tint(LINE_COLOURS.get(r["line"], "#555555"), 0.0)
        ax.plot(
            [r["post_lower"], r["post_upper"]],
            [yy - off] * 2,
            color=dark,
            lw=2.4,
            alpha=0.8,
            solid_capstyle="butt",
        )
        ax.plot(
            [r["post_median"]],
            [yy - off],
            "D",
            ms=4.5,
            color=dark,
            mec="black",
            mew=0.5,
            gid=f"posterior:{r['arm']}",
        )
    for line, s in summary.items():
        if "pooled" not in s:
            continue
        colour = LINE_COLOURS.get(line, "#555555")
        lo, med, hi = s["pooled"]
        yp = s["y_pooled"]
        ax.fill(
            [lo, med, hi, med],
            [yp, yp + 0.32, yp, yp - 0.32],
            color=colour,
            ec="black",
            lw=0.6,
            gid=f"pooled:{line}",
        )
        lo, med, hi = s["predictive"]
        yq = s["y_predictive"]
        ax.plot(
            [lo, hi],
            [yq, yq],
            color=colour,
            lw=5,
            alpha=0.35,
            solid_capstyle="butt",
            gid=f"predictive:{line}",
        )
        ax.plot([med], [yq], "|", ms=10, mew=2, color=colour)
        top, bottom = s["span"]
        ax.plot(
            [s["pooled"][1]] * 2, [top + 0.5, bottom - 0.5], color=colour, lw=0.8, ls=":", zorder=0
        )
    for line, klass, top, bottom in group_spans:
        ax.axhspan(
            bottom - 0.5, top + 0.5, color=arm_colour(line, klass), alpha=0.07, lw=0, zorder=-1
        )
        ax.text(
            1.005,
            (top + bottom) / 2,
            f"{line}\n{klass}",
            transform=ax.get_yaxis_transform(),
            ha="left",
            va="center",
            fontsize=8.5,
            color=LINE_COLOURS.get(line, "#555555"),
            fontweight="bold",
        )
    ax.set_yticks(ticks, tick_labels, fontsize=8)
    for lab, kind in zip(ax.get_yticklabels(), kinds, strict=True):
        if kind != "arm":
            lab.set_fontweight("bold")
    ax.set_ylim(min(ticks) - 0.8, max(ticks) + 0.8)
    ax.set_xlim(0, 1)
    ax.set_xlabel(rate_label(landmark))
    ax.grid(axis="x", color="0.9", lw=0.6)
    ax.set_axisbelow(True)
    ax.tick_params(axis="y", length=0)
    pct = int(round(prob * 100))
    fig.suptitle(
        f"Observed and posterior PFS rate at {landmark:g} months, {len(rows)} arms "
        f"(spec '{fit.spec.name}')",
        x=0.01,
        ha="left",
        fontsize=11,
    )
    handles = [
        Line2D(
            [],
            [],
            marker="o",
            color="0.3",
            mfc="0.3",
            ls="-",
            label=f"observed, reported ({pct}% CI)",
        ),
        Line2D(
            [],
            [],
            marker="o",
            color="0.3",
            mfc="white",
            ls="-",
            label="observed, derived from median"
            if not fit.data.family.any_landmark
            else "(survival model: medians and rates at other times enter the curve)",
        ),
        Line2D(
            [],
            [],
            marker="D",
            color="0.2",
            lw=2.4,
            mec="black",
            label=f"posterior arm rate ({pct}% CrI)",
        ),
        Line2D(
            [],
            [],
            marker="D",
            color="0.5",
            ls="none",
            mec="black",
            ms=8,
            label=f"pooled rate, typical trial ({pct}% CrI)",
        ),
        Line2D([], [], color="0.5", lw=5, alpha=0.4, label=f"predictive rate, new trial ({pct}%)"),
    ]
    handles += [
        Line2D([], [], color=arm_colour(line, k), lw=6, label=f"{line} {k}")
        for line in lines
        for k in ("R-T", "NR-T")
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=8, frameon=False)
    fig.lmsbayes = {"arms": list(rows["arm"]), "landmark": landmark}  # for tests and callers
    return fig


# --------------------------------------------------------------------------- predictive
def plot_predictive(
    fit: Fit,
    settings: Sequence[Setting] | None = None,
    landmark: float = 6.0,
    hr: float = 0.65,
) -> Figure:
    """Predictive distribution of a new trial's rate per setting, with thresholds.

    One half-violin per setting (the predictive rate of a new trial), the
    pooled rate's median and interval below it, the thresholds p0 (solid) and
    p1 = p0 ** hr (dashed) from :func:`lmsbayes.predict.thresholds` as
    vertical segments, and the EORTC 2021 published pooled rate (cross, with
    its 95% CI) and its p1 (open cross) where EORTC reported that line.

    Parameters
    ----------
    fit : Fit
    settings : sequence of Setting, optional
        Default :func:`lmsbayes.predict.standard_settings` of the fitted lines.
    landmark : float
        Months.
    hr : float
        Hazard ratio under the alternative.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from scipy import stats

    from lmsbayes.predict import EORTC2021, predict, standard_settings, thresholds

    landmark = _check_landmark(fit, landmark)
    if settings is None:
        settings = standard_settings(sorted(set(fit.data.arms["line"])))
    settings = list(settings)
    th = thresholds(fit, settings, hr=[hr], landmarks=[landmark])
    rate = predict(fit, settings, [landmark])["rate"].sel(landmark=landmark)
    n = len(settings)
    step = 1.5  # vertical distance between settings, in data units
    fig = _figure(9.5, 1.9 + 0.85 * n)
    ax = fig.add_subplot()
    grid = np.linspace(0.001, 0.999, 400)
    labels = []
    direct = _direct_rows(th, landmark)
    for k, s in enumerate(settings):
        y = -k * step
        colour = arm_colour(s.line, s.treatment_class)
        dark = LINE_COLOURS.get(s.line, "#555555")
        draws = _flat(rate.sel(setting=s.label, quantity="predictive"))
        dens = stats.gaussian_kde(draws)(grid)
        dens = 0.7 * dens / dens.max()
        # a row with no arm of its own cell (model-based) is drawn open and hatched: it must not
        # look as solid as a row the data inform directly
        solid = direct.get(s.label, True)
        ax.fill_between(
            grid,
            y,
            y + dens,
            facecolor=colour if solid else "none",
            alpha=0.55 if solid else 0.9,
            hatch=None if solid else "////",
            lw=0.8,
            ec=dark,
            gid=f"predictive:{s.label}",
        )
        med, lo, hi = _interval(_flat(rate.sel(setting=s.label, quantity="pooled")))
        ax.plot([lo, hi], [y - 0.14] * 2, color=dark, lw=2.2, solid_capstyle="butt")
        ax.plot(
            [med],
            [y - 0.14],
            "D",
            color=dark,
            mfc=dark if solid else "white",
            mec="black",
            mew=0.5,
            ms=5,
            gid=f"pooled:{s.label}",
        )
        p0 = float(th["p0_median"].sel(setting=s.label, landmark=landmark))
        p1 = float(th["p1_median"].sel(setting=s.label, landmark=landmark, hr=hr))
        ax.plot([p0, p0], [y - 0.45, y + 0.72], color="black", lw=1.4, gid=f"p0:{s.label}")
        ax.plot([p1, p1], [y - 0.45, y + 0.72], color="black", lw=1.4, ls="--", gid=f"p1:{s.label}")
        ax.text(p0 - 0.005, y + 0.74, f"p0 {p0:.2f}", ha="right", va="bottom", fontsize=7.5)
        ax.text(p1 + 0.005, y + 0.74, f"p1 {p1:.2f}", ha="left", va="bottom", fontsize=7.5)
        key = (s.line, landmark)
        if s.case_mix and key in EORTC2021.index:  # EORTC pooled a line's case mix: only there
            ref = EORTC2021.loc[key]
            ye = y - 0.32
            ax.plot([ref["lo"], ref["hi"]], [ye] * 2, color="#CC79A7", lw=1.4)
            ax.plot(
                [ref["pooled"]],
                [ye],
                "X",
                color="#CC79A7",
                mec="black",
                mew=0.4,
                ms=7,
                gid=f"eortc:{s.label}",
            )
            ax.plot(
                [ref["pooled"] ** hr],
                [ye],
                "x",
                color="#CC79A7",
                ms=7,
                mew=1.8,
                gid=f"eortc_p1:{s.label}",
            )
        labels.append(f"{s.label}\n({'direct' if solid else 'model-based'})")
    ax.set_yticks([-k * step for k in range(n)], labels, fontsize=9)
    ax.set_ylim(-(n - 1) * step - 0.6, 1.1)
    ax.set_xlim(0, 1)
    ax.set_xlabel(rate_label(landmark))
    ax.grid(axis="x", color="0.9", lw=0.6)
    ax.set_axisbelow(True)
    ax.tick_params(axis="y", length=0)
    ref = th.attrs.get("reference", "pooled")
    fig.suptitle(
        f"Rate of a new trial at {landmark:g} months (spec '{fit.spec.name}'): predictive "
        f"distribution, \nthresholds p0 (median {ref} rate) and p1 = p0^{hr:g}, EORTC 2021 "
        "published values",
        x=0.01,
        ha="left",
        fontsize=10.5,
    )
    handles = [
        Line2D(
            [], [], color="0.5", lw=6, alpha=0.6, label="predictive rate of a new trial (density)"
        ),
        Line2D(
            [],
            [],
            marker="D",
            color="0.3",
            mec="black",
            lw=2.2,
            label="pooled rate (median, 95% CrI)",
        ),
        Line2D([], [], color="black", lw=1.4, label="p0 (posterior median)"),
        Line2D([], [], color="black", lw=1.4, ls="--", label=f"p1 = p0^{hr:g}"),
        Patch(
            facecolor="none",
            hatch="////",
            edgecolor="0.3",
            label="model-based row: no arm in its cell (open)",
        ),
        Line2D(
            [],
            [],
            marker="X",
            color="#CC79A7",
            mec="black",
            label="EORTC 2021 pooled (95% CI), case-mix rows only",
        ),
        Line2D(
            [], [], marker="x", color="#CC79A7", ls="none", mew=1.6, label=f"EORTC 2021 p0^{hr:g}"
        ),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return fig


def _direct_rows(th, landmark: float) -> dict[str, bool]:
    """Setting label -> whether arms of its own cell inform it (case-mix rows always do)."""
    import io
    import json

    raw = th.attrs.get("evidence")
    if not raw:
        return {}
    out = {}
    for r in json.load(io.StringIO(raw)):
        if abs(float(r.get("landmark", landmark)) - landmark) < 1e-9 or r.get("landmark") is None:
            label = str(r["setting"])
            out[label] = "case mix" in label or int(r.get("arms") or 0) > 0
    return out


# --------------------------------------------------------------------------- effects
def _kde_line(ax: Axes, x: np.ndarray, colour, label: str, lower: float | None = 0.0, **kw):
    from scipy import stats

    hi = np.quantile(x, 0.999)
    lo = lower if lower is not None else np.quantile(x, 0.001)
    grid = np.linspace(lo, hi, 300)
    kde = stats.gaussian_kde(x)
    dens = kde(grid)
    if lower is not None:  # reflect at the boundary so a density on (0, inf) does not dip at 0
        dens = dens + kde(2 * lower - grid)
    return ax.plot(grid, dens, color=colour, label=label, **kw)


def plot_effects(fit: Fit, *, prob: float = 0.95) -> Figure:
    """Covariate effects as odds ratios per landmark, and heterogeneity (tau) posteriors.

    Left: ``exp(beta)`` (posterior median, 50% and ``prob`` intervals) per
    covariate, one row per landmark, on a log axis with the null at 1.
    Right: posterior densities of ``tau`` (between-arm sd on the logit
    scale) per stratum and landmark, with the prior density for comparison.
    """
    post = fit.posterior
    landmarks = [float(t) for t in post["landmark"].values] if "landmark" in post.dims else [0.0]
    joint = not fit.model.effect_dims  # one beta and tau for all landmarks (one curve per arm)
    if joint and "landmark" not in post.dims:
        post = post.assign(
            {
                v: post[v].expand_dims(landmark=landmarks, axis=-1)
                for v in ("beta", "tau")
                if v in post
            }
        )
    elif joint:
        post = post.assign(
            {
                v: post[v].expand_dims(landmark=landmarks, axis=-1)
                for v in ("beta", "tau")
                if v in post
            }
        )
        landmarks = landmarks[:1]
    has_beta = "beta" in post and post.sizes.get("covariate", 0) > 0
    covs = [str(c) for c in post["covariate"].values] if has_beta else []
    fig = _figure(11.0, max(3.6, 1.4 + 0.55 * len(covs) * len(landmarks)))
    ax_b, ax_t = fig.subplots(1, 2, width_ratios=[1.35, 1])
    styles = {
        t: dict(color=c, marker=m)
        for t, c, m in zip(
            landmarks, ("0.15", "#009E73", "#56B4E9", "#E69F00"), ("o", "s", "^", "v")
        )
    }
    if has_beta:
        k = len(landmarks)
        ticks, labels = [], []
        for i, cov in enumerate(covs):
            for j, t in enumerate(landmarks):
                y = -i - (j - (k - 1) / 2) * 0.22
                x = np.exp(_flat(post["beta"].sel(covariate=cov, landmark=t)))
                med, lo, hi = _interval(x, prob)
                _, lo50, hi50 = _interval(x, 0.5)
                st = styles[t]
                ax_b.plot([lo, hi], [y, y], color=st["color"], lw=1.2)
                ax_b.plot([lo50, hi50], [y, y], color=st["color"], lw=3.2, solid_capstyle="butt")
                ax_b.plot(
                    [med],
                    [y],
                    ls="none",
                    ms=5.5,
                    mec="black",
                    mew=0.4,
                    gid=f"or:{cov}:{t:g}",
                    label=("all landmarks" if joint else f"{t:g} months") if i == 0 else None,
                    **st,
                )
            ticks.append(-i)
            labels.append(_COVARIATE_LABELS.get(cov, cov))
        ax_b.axvline(1.0, color="0.4", lw=0.9, ls="--")
        ax_b.set_xscale("log")
        ax_b.set_yticks(ticks, labels, fontsize=9)
        ax_b.set_ylim(-len(covs) + 0.5, 0.5)
        ax_b.tick_params(axis="y", length=0)
        ax_b.legend(fontsize=8, loc="best", title="landmark", title_fontsize=8)
        from matplotlib.ticker import FixedLocator, NullFormatter

        lo_lim, hi_lim = ax_b.get_xlim()
        cand = [0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20]
        ax_b.xaxis.set_major_locator(FixedLocator([c for c in cand if lo_lim <= c <= hi_lim]))
        ax_b.xaxis.set_major_formatter(lambda v, _: f"{v:g}")
        ax_b.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax_b.text(
            0.5,
            0.5,
            "no covariates in this model",
            ha="center",
            va="center",
            transform=ax_b.transAxes,
        )
        ax_b.set_yticks([])
    what = fit.data.family.effect_name
    ax_b.set_xlabel(f"{what} (median, 50% and {int(round(prob * 100))}% CrI)")
    ax_b.set_title("Covariate effects, exp(beta)", loc="left", fontsize=10.5)
    ax_b.grid(axis="x", color="0.92", lw=0.6, which="both")

    xmax = 0.0
    dashes = {t: ls for t, ls in zip(landmarks, ("-", "--", ":", "-."))}
    for stratum in post["stratum"].values:
        colour = LINE_COLOURS.get(str(stratum), LINE_COLOURS["all"])
        for t in landmarks:
            x = _flat(post["tau"].sel(stratum=stratum, landmark=t))
            xmax = max(xmax, float(np.quantile(x, 0.995)))
            name = "all arms" if str(stratum) == "all" else str(stratum)
            med = np.median(x)
            when = "all landmarks" if joint else f"{t:g} mo"
            _kde_line(
                ax_t,
                x,
                colour,
                f"{name}, {when} (median {med:.2f})",
                ls=dashes[t],
                lw=1.6,
                gid=f"tau:{stratum}:{t:g}",
            )
    prior = fit.spec.priors.tau
    grid = np.linspace(0, max(xmax, 0.1), 300)
    pdf = _prior_pdf(prior, grid)
    if pdf is not None:
        ax_t.plot(
            grid,
            pdf,
            color="0.55",
            lw=1.0,
            ls=(0, (1, 1.5)),
            label=f"prior {prior.dist}{_kw(prior)}",
        )
    ax_t.set_xlim(0, max(xmax, 0.1))
    ax_t.set_ylim(bottom=0)
    ax_t.set_xlabel("tau, between-arm sd of the " + fit.data.family.scale_name)
    ax_t.set_ylabel("posterior density")
    ax_t.set_title("Heterogeneity, tau", loc="left", fontsize=10.5)
    ax_t.legend(fontsize=7.5, loc="upper right")
    title = f"Meta-regression parameters (spec '{fit.spec.name}')"
    if "shape" in fit.posterior:
        med, lo_s, hi_s = _interval(_flat(fit.posterior["shape"]), prob)
        title += f"; {fit.data.family.curve} shape k {med:.2f} ({lo_s:.2f}-{hi_s:.2f})"
    fig.suptitle(title, x=0.01, ha="left", fontsize=11.5)
    return fig


def _kw(prior) -> str:
    return "(" + ", ".join(f"{k}={v:g}" for k, v in prior.params) + ")"


def _prior_pdf(prior, grid: np.ndarray) -> np.ndarray | None:
    from scipy import stats

    kw = prior.kwargs
    match prior.dist:
        case "HalfNormal":
            return stats.halfnorm(scale=kw["sigma"]).pdf(grid)
        case "HalfStudentT":
            return 2 * stats.t(df=kw["nu"], scale=kw["sigma"]).pdf(grid)
        case "HalfCauchy":
            return stats.halfcauchy(scale=kw["beta"]).pdf(grid)
        case "Exponential":
            return stats.expon(scale=1 / kw["lam"]).pdf(grid)
        case "Uniform":
            return stats.uniform(kw["lower"], kw["upper"] - kw["lower"]).pdf(grid)
    return None


# --------------------------------------------------------------------------- prior
def _ess_method(*mixes: BetaMixture | None) -> str:
    """One ESS method for every prior of a figure: ELIR where it is defined for all, else moment."""
    given = [m for m in mixes if m is not None]
    return "elir" if all(np.all(m.a >= 1) and np.all(m.b >= 1) for m in given) else "moment"


def _ess_text(mix: BetaMixture, method: str) -> str:
    from lmsbayes.prior import ess

    return f"ESS {ess(mix, method):.1f} ({'ELIR' if method == 'elir' else 'moment'})"


def _describe_mix(mix: BetaMixture) -> str:
    parts = [
        f"{w:.2f} Beta({a:.1f}, {b:.1f})" for w, a, b in zip(mix.weights, mix.a, mix.b, strict=True)
    ]
    return " + ".join(parts) if len(parts) <= 2 else f"{len(parts)}-component mixture"


def plot_prior(
    mix: BetaMixture,
    draws: Any = None,
    robust: BetaMixture | None = None,
    *,
    title: str | None = None,
    xlabel: str = "Proportion progression-free",
) -> Figure:
    """A MAP Beta mixture over the histogram of the draws it was fitted to.

    Parameters
    ----------
    mix : BetaMixture
        The (MAP) prior.
    draws : array_like or xarray.DataArray, optional
        Predictive draws of the new trial's rate (histogram, density scale).
    robust : BetaMixture, optional
        A robustified version, overlaid dashed.
    title, xlabel : str, optional

    The legend gives each prior's effective sample size (:func:`lmsbayes.prior.ess`,
    ELIR; moment-based when some component has a or b < 1).
    """
    fig = _figure(7.5, 4.4)
    ax = fig.add_subplot()
    x = np.linspace(0.0005, 0.9995, 800)
    ymax = 0.0
    if draws is not None:
        d = np.asarray(getattr(draws, "values", draws), dtype=float).ravel()
        d = d[np.isfinite(d)]
        counts, _, _ = ax.hist(
            d,
            bins=60,
            range=(0, 1),
            density=True,
            color="0.82",
            ec="white",
            lw=0.3,
            label=f"predictive draws (n = {d.size})",
        )
        ymax = max(ymax, float(counts.max()))
    y = mix.pdf(x)
    method = _ess_method(mix, robust)  # never ELIR beside moment in one legend
    label = (
        f"MAP prior: {_describe_mix(mix)}\nmean {mix.mean():.3f}, sd {mix.sd():.3f}; "
        f"{_ess_text(mix, method)}"
    )
    ax.plot(x, y, color="#0072B2", lw=2.0, label=label)
    ymax = max(ymax, float(np.nanmax(y)))
    if robust is not None:
        yr = robust.pdf(x)
        rw = (robust.provenance or {}).get("robustify", {})
        wtxt = f" (w = {rw['weight']:g})" if "weight" in rw else ""
        label = (
            f"robust MAP{wtxt}: mean {robust.mean():.3f}, sd {robust.sd():.3f}; "
            f"{_ess_text(robust, method)}"
        )
        ax.plot(x, yr, color="#D55E00", lw=1.8, ls="--", label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, ymax * 1.45)  # head room for the legend
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title or "Meta-analytic-predictive prior", loc="left", fontsize=11)
    ax.legend(fontsize=8, loc="upper right")
    return fig


# --------------------------------------------------------------------------- OC
def plot_oc(
    oc_dataset: xr.Dataset | Mapping[str, xr.Dataset],
    *,
    p0: float | None = None,
    p1: float | None = None,
    title: str | None = None,
) -> Figure:
    """Operating characteristics against the true rate.

    Parameters
    ----------
    oc_dataset : xarray.Dataset or mapping of name -> Dataset
        Output of :func:`lmsbayes.design.operating_characteristics` for a
        single-arm design (dim ``p``); several designs are overlaid when a
        mapping is given.  A :func:`lmsbayes.design.two_arm_oc` Dataset goes
        to :func:`plot_two_arm_oc`.
    p0, p1 : float, optional
        Null and alternative rates, drawn as vertical reference lines with the
        probability of success there annotated.

    Left: probability of declaring success (type I error at p0, power at p1)
    and of stopping early; right: expected number of patients.
    """
    if (
        isinstance(oc_dataset, xr.Dataset)
        and "prior" in oc_dataset.dims
        and "effect" in oc_dataset.dims
    ):
        return plot_two_arm_oc(oc_dataset, title=title)
    sets = {"design": oc_dataset} if isinstance(oc_dataset, xr.Dataset) else dict(oc_dataset)
    for name, ds in sets.items():
        if not isinstance(ds, xr.Dataset) or "p" not in ds.dims or "prob_success" not in ds:
            raise OptionError(
                f"{name!r}: expected a single-arm operating_characteristics Dataset (dim 'p')"
            )
    fig = _figure(11.0, 4.8 + 0.22 * ((len(sets) + 1) // 2))
    ax_s, ax_n = fig.subplots(1, 2)
    palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7"]
    handles, interpolated = [], False
    for k, (name, ds) in enumerate(sets.items()):
        c = palette[k % len(palette)]
        p = ds["p"].values
        parts = []
        for var, fmt, what in (
            ("prob_success", ".3f", "P(success)"),
            ("expected_n", ".1f", "E[N]"),
        ):
            vals = [
                f"{_at(ds, var, ref, fmt)} at {nm}"
                for ref, nm in ((p0, "p0"), (p1, "p1"))
                if ref is not None and p.min() <= ref <= p.max()
            ]
            if vals:
                parts.append(f"{what} " + ", ".join(vals))
                interpolated |= any(v.startswith("~") for v in vals)
        label = name if len(sets) > 1 else "design"
        label += (": " + "; ".join(parts)) if parts else ""
        (h,) = ax_s.plot(
            p, ds["prob_success"].values, color=c, lw=2, label=label, gid=f"prob_success:{name}"
        )
        handles.append(h)
        if "prob_early_stop" in ds and ds.sizes.get("look", 1) > 1:
            ax_s.plot(
                p,
                ds["prob_early_stop"].values,
                color=c,
                lw=1.2,
                ls=":",
                gid=f"prob_early_stop:{name}",
            )
        ax_n.plot(p, ds["expected_n"].values, color=c, lw=2, gid=f"expected_n:{name}")
        if "n" in ds.coords:
            ax_n.axhline(float(ds["n"].values.max()), color=c, lw=0.8, ls="--", alpha=0.6)
    refs = [(ref, name) for ref, name in ((p0, "p0"), (p1, "p1")) if ref is not None]
    for ax in (ax_s, ax_n):
        for ref, _ in refs:
            ax.axvline(ref, color="0.35", lw=0.9, ls="--")
        if refs:
            top = ax.secondary_xaxis("top")
            top.set_xticks([r for r, _ in refs], [f"{n} = {r:.2f}" for r, n in refs], fontsize=8)
            top.tick_params(length=3, pad=1)
    ax_s.set_ylim(0, 1.02)
    ax_s.set_xlabel("True proportion progression-free")
    ax_s.set_ylabel("Probability")
    ax_s.set_title(
        "Probability of success (solid) and of early stop (dotted)", loc="left", fontsize=10
    )
    n_max = max(
        float(ds["n"].values.max()) if "n" in ds.coords else float(ds["expected_n"].max())
        for ds in sets.values()
    )
    ax_n.set_ylim(0, n_max * 1.08)
    ax_n.set_xlabel("True proportion progression-free")
    ax_n.set_ylabel("Expected number of patients")
    ax_n.set_title("Expected sample size (dashed: maximum)", loc="left", fontsize=10)
    for ax in (ax_s, ax_n):
        ax.grid(color="0.92", lw=0.6)
        ax.set_xlim(
            min(float(ds["p"].min()) for ds in sets.values()),
            max(float(ds["p"].max()) for ds in sets.values()),
        )
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=1 if len(handles) < 3 else 2,
        fontsize=8,
        frameon=False,
        title="~: interpolated between grid points" if interpolated else None,
        title_fontsize=7.5,
    )
    if title:
        fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    return fig


_PRIOR_COLOURS = ["#555555", "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00"]


def plot_two_arm_oc(
    oc_dataset: xr.Dataset,
    *,
    type1_range: tuple[float, float] | None = None,
    alpha: float | None = None,
    title: str | None = None,
) -> Figure:
    """Two-arm type I error curve and power against the true control rate.

    One line per control prior.

    Parameters
    ----------
    oc_dataset : xarray.Dataset
        Output of :func:`lmsbayes.design.two_arm_oc` (dims ``prior``,
        ``effect``, ``p_c``).
    type1_range : (float, float), optional
        The range of true control rates over which the type I error is
        controlled, shaded; the worst type I error inside it is in the legend.
    alpha : float, optional
        A target type I error, drawn as a horizontal line.

    Left: ``P(success | p_t = p_c)``; right: the power at each stated effect
    (solid for the first, dashed after), on the dataset's effect scale.
    """
    if not isinstance(oc_dataset, xr.Dataset) or not {"prior", "effect", "p_c"} <= set(
        oc_dataset.dims
    ):
        raise OptionError("expected a two_arm_oc Dataset (dims 'prior', 'effect', 'p_c')")
    ds = oc_dataset
    scale = ds.attrs.get("scale", ds["effect"].attrs.get("scale", "difference"))
    null = 1.0 if scale == "hr" else 0.0
    fig = _figure(11.0, 4.9)
    ax1, ax2 = fig.subplots(1, 2)
    p = ds["p_c"].values
    lo, hi = type1_range if type1_range is not None else (None, None)
    effects = [float(e) for e in ds["effect"].values if float(e) != null]
    for k, name in enumerate(ds["prior"].values):
        c = _PRIOR_COLOURS[k % len(_PRIOR_COLOURS)]
        y = ds["prob_success"].sel(prior=name, effect=null).values
        label = str(name)
        if lo is not None:
            inside = (p >= lo - 1e-12) & (p <= hi + 1e-12)
            if inside.any():
                i = int(np.nanargmax(np.where(inside, y, -np.inf)))
                label += f": worst {y[i]:.3f} at {p[i]:.2f}"
        ax1.plot(p, y, color=c, lw=2, label=label, gid=f"type1:{name}")
        for j, e in enumerate(effects):
            ax2.plot(
                p,
                ds["prob_success"].sel(prior=name, effect=e).values,
                color=c,
                lw=2 if j == 0 else 1.2,
                ls="-" if j == 0 else "--",
                label=str(name) if j == 0 else None,
                gid=f"power:{name}:{e:g}",
            )
    for ax in (ax1, ax2):
        if lo is not None:
            ax.axvspan(lo, hi, color="0.9", zorder=0, lw=0)
        ax.set_xlim(0, 1)
        ax.set_xlabel("True proportion progression-free on control, p_c")
        ax.grid(color="0.92", lw=0.6)
    if alpha is not None:
        ax1.axhline(alpha, color="0.3", lw=0.9, ls=":")
    ax1.set_ylim(0, max(0.1, float(np.nanmax(ds["prob_success"].sel(effect=null).values)) * 1.1))
    ax1.set_ylabel("P(success) when p_t = p_c (type I error)")
    ax1.set_title(
        "Type I error over the true control rate"
        + (" (shaded: stated range)" if lo is not None else ""),
        loc="left",
        fontsize=10,
    )
    ax1.legend(fontsize=8, loc="upper left")
    ax2.set_ylim(0, 1.02)
    ax2.set_ylabel("Power")
    eff_txt = ", ".join(
        f"p_t = p_c^{e:g}" if scale == "hr" else f"p_t = p_c + {e:g}" for e in effects
    )
    ax2.set_title(
        f"Power at {eff_txt}" if effects else "Power (no effect given)", loc="left", fontsize=10
    )
    if effects:
        ax2.legend(fontsize=8, loc="lower right")
    fig.suptitle(
        title
        or f"Two-arm design, {ds.attrs.get('decision', '')} (n_t = {ds.attrs.get('n_t')}, "
        f"n_c = {ds.attrs.get('n_c')})",
        x=0.01,
        ha="left",
        fontsize=11,
    )
    return fig


def plot_tradeoff(result: Any, *, title: str | None = None) -> Figure:
    """The borrowing trade-off: worst type I error, power and ESS against the robust weight.

    Parameters
    ----------
    result : lmsbayes.design.TradeoffResult
        Output of :func:`lmsbayes.design.borrowing_tradeoff` or
        :func:`~lmsbayes.design.find_robust_weight`.

    Left: worst type I error over the stated range and power at the
    alternative against ``w`` (the vague-prior design as horizontal
    references); right: the ESS (ELIR where defined, else moment) against ``w``.
    """
    tab = result.table
    if not {"max_type1", "power"} <= set(tab.columns):
        raise OptionError("expected a TradeoffResult (table with max_type1 and power)")
    rows = tab.drop(index="vague", errors="ignore")
    w = np.array([float(v) for v in rows.index])
    fig = _figure(11.0, 4.6)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(
        w,
        rows["max_type1"],
        color="#D55E00",
        lw=2,
        marker="o",
        ms=3,
        label="worst type I error over the range",
        gid="max_type1",
    )
    ax1.plot(
        w,
        rows["power"],
        color="#0072B2",
        lw=2,
        marker="o",
        ms=3,
        label="power at the alternative",
        gid="power",
    )
    if "vague" in tab.index:
        ax1.axhline(
            tab.loc["vague", "max_type1"],
            color="#D55E00",
            lw=0.9,
            ls=":",
            label="vague prior: type I error",
        )
        ax1.axhline(
            tab.loc["vague", "power"], color="#0072B2", lw=0.9, ls=":", label="vague prior: power"
        )
    ax1.set_xlim(0, 1)
    top = float(np.nanmax(np.r_[rows["max_type1"], rows["power"], tab.get("power", rows["power"])]))
    ax1.set_ylim(0, min(1.02, 1.25 * top + 0.02))
    ax1.set_xlabel("Robust weight w (0: the MAP prior, 1: the robust component alone)")
    ax1.set_ylabel("Probability")
    lo, hi = result.targets["type1_range"]
    ax1.set_title(
        f"Worst type I error over p_c in [{lo:g}, {hi:g}] and power", loc="left", fontsize=10
    )
    ax1.legend(fontsize=7.5, loc="center right")
    elir = rows["ess_elir"].to_numpy(dtype=float)
    ax2.plot(
        w, rows["ess_moment"], color="0.4", lw=1.5, ls="--", label="moment ESS", gid="ess_moment"
    )
    if np.isfinite(elir).any():
        ax2.plot(w, elir, color="#009E73", lw=2, label="ELIR ESS (to report)", gid="ess_elir")
    ax2.set_xlim(0, 1)
    ax2.set_ylim(bottom=0)
    ax2.set_xlabel("Robust weight w")
    ax2.set_ylabel("Effective sample size (patients)")
    ax2.set_title("Prior effective sample size", loc="left", fontsize=10)
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(color="0.92", lw=0.6)
    fig.suptitle(
        title or f"Borrowing trade-off; robust component {result.targets['robust_component']}",
        x=0.01,
        ha="left",
        fontsize=11,
    )
    return fig


def _at(ds: xr.Dataset, var: str, ref: float, fmt: str) -> str:
    """Value of ``var`` at the true rate ``ref``.

    Exact on the grid, else interpolated (marked ~).
    """
    p = ds["p"].values
    hit = np.flatnonzero(np.isclose(p, ref, rtol=0, atol=1e-9))
    if hit.size:
        return format(float(ds[var].values[hit[0]]), fmt)
    return "~" + format(float(np.interp(ref, p, ds[var].values)), fmt)


# --------------------------------------------------------------------------- PPC
def plot_ppc(fit: Fit, *, prob: float = 0.95) -> Figure:
    """Posterior predictive check of the observed rates, one panel per landmark.

    Per arm: the observed rate (``y_eff / n_eff``; the rate itself for the
    logit-normal likelihood) against the 50% and ``prob`` intervals of its
    replicates from ``datatree['posterior_predictive']['y']``. Observations
    outside the ``prob`` interval are drawn in red and counted in the title.
    """
    dt = fit.datatree
    if "posterior_predictive" not in dt.children:
        raise OptionError("the fit has no posterior_predictive group")
    y_rep = dt["posterior_predictive"]["y"]
    obs = fit.data.obs
    arr = fit.model.arrays
    family = fit.data.family
    rep = y_rep.copy(data=family.display_values(np.asarray(y_rep.values, float), arr))
    observed = family.display_values(np.asarray(arr["lik_y"], float), arr)
    what = family.ppc_description
    lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
    q = rep.quantile([lo, 0.25, 0.5, 0.75, hi], dim=("chain", "draw")).values  # (5, obs)
    arms = fit.data.arms
    # arm order as in the forest plot: line, class, year
    order = arms.assign(
        _l=arms["line"].astype(str).map({"1L": 0, "2L+": 1}).fillna(9),
        _c=arms["treatment_class"].astype(str).map({"R-T": 0, "NR-T": 1}).fillna(9),
        _y=pd.to_numeric(arms["year"], errors="coerce"),
    ).sort_values(["_l", "_c", "_y", "label"])
    ypos = {a: -i for i, a in enumerate(order.index)}
    if family.any_landmark:  # medians and rates at any time: one panel each
        panels = [
            (
                "rates",
                np.flatnonzero(obs["kind"].to_numpy() == "rate"),
                "PFS rate at the reported landmark",
            ),
            ("medians", np.flatnonzero(obs["kind"].to_numpy() == "median"), "median PFS (months)"),
        ]
        panels = [p_ for p_ in panels if p_[1].size]
    elif fit.data.landmarks:
        panels = [
            (f"{t:g} months", np.flatnonzero(obs["k_idx"].to_numpy() == j), rate_label(t))
            for j, t in enumerate(fit.data.landmarks)
        ]
    else:
        panels = [("all", np.arange(len(obs)), "observed rate")]
    fig = _figure(4.5 + 3.2 * len(panels), 1.6 + 0.24 * len(arms))
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    n_out = 0
    for ax, (t, sel, xlabel) in zip(axes, panels, strict=True):
        for i in sel:
            arm = arms.index[obs["arm_idx"].iloc[i]]
            y = ypos[arm]
            r = arms.loc[arm]
            colour = arm_colour(str(r["line"]), str(r["treatment_class"]))
            ax.plot([q[0, i], q[4, i]], [y, y], color=colour, lw=1.2)
            ax.plot([q[1, i], q[3, i]], [y, y], color=colour, lw=4, solid_capstyle="butt")
            outside = not (q[0, i] <= observed[i] <= q[4, i])
            n_out += outside
            ax.plot(
                [observed[i]],
                [y],
                "o",
                ms=4.5,
                mfc="#E41A1C" if outside else "black",
                mec="white",
                mew=0.5,
                zorder=3,
                gid=f"observed:{arm}:{t}:{i}",
            )
        if t != "medians":
            ax.set_xlim(0, 1)
        ax.set_xlabel(xlabel)
        n_t = len(sel)
        out_t = int(sum(not (q[0, i] <= observed[i] <= q[4, i]) for i in sel))
        ax.set_title(
            f"{t}: {out_t} of {n_t} outside the {int(round(prob * 100))}% interval",
            loc="left",
            fontsize=9.5,
        )
        ax.grid(axis="x", color="0.92", lw=0.6)
        ax.tick_params(axis="y", length=0)
    tick_labels = [_arm_text(arms.loc[a, "label"], arms.loc[a, "trial"], 60) for a in ypos]
    axes[0].set_yticks(list(ypos.values()), tick_labels, fontsize=7.5)
    axes[0].set_ylim(min(ypos.values()) - 0.7, 0.7)
    fig.suptitle(
        f"Posterior predictive check ({what}; bars: replicated 50% and {int(round(prob * 100))}% "
        f"intervals; dot: observed)",
        x=0.01,
        ha="left",
        fontsize=10.5,
    )
    fig.lmsbayes = {"n_outside": int(n_out), "n_obs": int(len(obs))}
    return fig
