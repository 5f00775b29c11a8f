"""The HTML report of a fit: tables, figures and a self-contained ``index.html``.

:func:`write_report` computes every file in memory first, then writes them
into the output directory, each through a temp file beside it
(:mod:`lmsbayes.files`), and moves them into place together at the end. An
existing directory is written into: the report's own files are replaced and
nothing else in it is touched. A manifest (``.lmsbayes-report.json``) lists
the files a report wrote with their SHA-256, so that the next report into
the same directory removes a figure the new one no longer has (e.g.
``forest_12m.png`` of a fit with other landmarks) only when that file is
still the one lmsbayes wrote.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lmsbayes.files import Staging, check_output_path
from lmsbayes.plots import (
    plot_effects,
    plot_forest,
    plot_oc,
    plot_ppc,
    plot_predictive,
    plot_prior,
    rate_label,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from lmsbayes.fit import Fit

__all__ = ["MANIFEST", "write_report"]

#: The file in a report directory that lists what the report wrote (name -> SHA-256).
MANIFEST = ".lmsbayes-report.json"
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def _png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _design_for_report(fit: Fit, line: str = "2L+", landmark: float = 6.0, looks=(30, 55, 80)):
    """MAP prior, robust MAP and a 3-look Bayesian single-arm design with its OC, for the report.

    Two versions of the design: against the fixed threshold p0 (posterior
    median of the spec's reference rate, rounded to 0.01) and against the
    MAP prior of the historical rate (``p0`` a Beta mixture), which carries
    the between-trial heterogeneity into the success criterion.
    """
    from lmsbayes.design import BayesianSingleArm, operating_characteristics
    from lmsbayes.predict import Setting, predict, thresholds
    from lmsbayes.prior import map_prior, robustify

    setting = Setting(line, "R-T", 0.5, name=f"{line} R-T")
    draws = predict(fit, [setting], [landmark])["rate"].sel(
        setting=setting.label, landmark=landmark, quantity="predictive"
    )
    mix = map_prior(
        draws,
        provenance={
            "spec": fit.spec.name,
            "data_sha256": fit.data.data_sha256,
            "setting": setting.label,
            "landmark": landmark,
        },
    )
    th = thresholds(fit, [setting], landmarks=[landmark])
    hr = float(th["hr"].values[0])
    p0 = round(float(th["p0_median"].sel(setting=setting.label, landmark=landmark)), 2)
    p1 = round(p0**hr, 2)
    robust = robustify(mix, 0.2, mean=p0)
    fixed = BayesianSingleArm(looks=looks, p0=p0)
    against_map = BayesianSingleArm(looks=looks, p0=mix)
    grid = np.union1d(np.round(np.linspace(0.02, 0.90, 45), 4), [p0, p1])
    oc = {
        f"p0 fixed at {p0:.2f}": operating_characteristics(fixed, grid),
        "p0 ~ MAP prior": operating_characteristics(against_map, grid),
    }
    return dict(
        setting=setting,
        draws=draws,
        mix=mix,
        robust=robust,
        design=fixed,
        design_map=against_map,
        oc=oc,
        p0=p0,
        p1=p1,
        hr=hr,
    )


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.8em;margin:.5em 0}th,td{border:1px solid #ddd;padding:.2em .5em;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee}.ok{color:#1a7f37}.bad{color:#c00}code,pre{background:#f6f6f6}
pre{padding:.6em;overflow-x:auto;font-size:.8em}
"""


def write_report(fit: Fit, outdir: str | os.PathLike[str]) -> Path:
    """Write tables, figures and a self-contained ``index.html`` for a fit.

    Files: ``thresholds.csv`` (:func:`lmsbayes.predict.threshold_table` of
    the standard settings), ``diagnostics.csv``, ``exclusions.csv``, the
    figures of :mod:`lmsbayes.plots` as PNG (forest per landmark, predictive, effects,
    posterior predictive check; MAP prior and the operating characteristics
    of a 3-look Bayesian single-arm design for 2L+ R-T at 6 months when the
    fit has that line and landmark) and ``index.html`` with the PNGs embedded
    as base64 and the tables as HTML, readable without the other files.

    ``outdir`` is created if missing; an existing directory is written into.
    The files are computed in memory, written to temp files in ``outdir`` and
    moved into place together at the end, so an interrupted run leaves the
    directory as it was. Only the report's own files are replaced; a file an
    earlier report wrote and this one does not is removed only if its content
    is still what lmsbayes wrote (the manifest ``.lmsbayes-report.json``
    keeps its SHA-256). Nothing else in ``outdir`` is touched.

    Raises
    ------
    OutputPathError
        ``outdir`` exists and is not a directory, lies under a regular file,
        or cannot be written (checked before anything is computed).

    Returns
    -------
    pathlib.Path
        The path of ``index.html`` inside ``outdir``.
    """
    from lmsbayes.predict import comparisons, threshold_table, thresholds
    from lmsbayes.version import __version__

    outdir = check_output_path(outdir, kind="directory", what="report directory")
    files: dict[str, bytes] = {}
    table = threshold_table(thresholds(fit), fit=fit)
    # the survival model gives any landmark: the spec's; per-landmark models: the fitted ones
    landmarks = list(fit.spec.landmarks) if fit.spec.survival else list(fit.data.landmarks)
    files["thresholds.csv"] = table.to_csv(index=False).encode()
    diag = fit.diagnostics.table.copy()
    diag.index.name = "variable"
    diag["divergences"] = fit.diagnostics.divergences
    diag["n_draws"] = fit.diagnostics.n_draws
    files["diagnostics.csv"] = diag.to_csv().encode()
    excluded = fit.data.excluded
    files["exclusions.csv"] = excluded.to_csv(index=False).encode()
    try:
        comp = comparisons(fit)
    except ValueError:
        comp = None

    figures: list[tuple[str, str, str]] = []  # (file, title, caption)
    images: dict[str, bytes] = {}

    def add(name: str, fig: Figure, title: str, caption: str) -> None:
        images[name] = files[name] = _png_bytes(fig)
        figures.append((name, title, caption))

    for t in landmarks:
        add(
            f"forest_{t:g}m.png",
            plot_forest(fit, t),
            f"Forest plot, {t:g} months",
            "Observed rate per arm (circle, filled if reported, open if derived from the median) and "
            "posterior arm rate (diamond) with 95% intervals; pooled rate and predictive interval of a "
            "new R-T trial (half uterine patients) per line.",
        )
    lines = sorted(set(fit.data.arms["line"].astype(str)))
    can_predict = "line" in fit.spec.main_effects or len(lines) == 1
    if can_predict:
        for t in landmarks:
            add(
                f"predictive_{t:g}m.png",
                plot_predictive(fit, landmark=t),
                f"New-trial rate, {t:g} months",
                "Predictive distribution of a new trial's rate per setting, pooled rate, thresholds p0 and "
                "p1 = p0^HR, and the EORTC 2021 published values.",
            )
    add(
        "effects.png",
        plot_effects(fit),
        "Covariate effects and heterogeneity",
        (
            "Hazard ratios exp(beta) for all landmarks (proportional hazards)"
            if fit.spec.joint or fit.data.curve == "weibull"
            else "Odds ratios exp(beta) of being progression-free, for all landmarks (one curve per arm)"
            if fit.spec.survival
            else "Odds ratios exp(beta) per landmark"
        )
        + "; posterior of the between-arm sd tau.",
    )
    add(
        "ppc.png",
        plot_ppc(fit),
        "Posterior predictive check",
        "Observed rate of each arm against the distribution of its replicates.",
    )
    design_html = ""
    if "2L+" in lines and 6.0 in landmarks and can_predict:
        d = _design_for_report(fit)
        add(
            "prior_2L_6m.png",
            plot_prior(
                d["mix"],
                d["draws"],
                d["robust"],
                title="MAP prior for a new 2L+ R-T trial, PFS rate at 6 months",
                xlabel=rate_label(6.0),
            ),
            "MAP prior, 2L+ at 6 months",
            "Beta mixture fitted to the predictive draws of a new 2L+ R-T trial's rate at 6 months, "
            "and its robust version (weight 0.2 on a vague component).",
        )
        looks = "/".join(str(n) for n in d["design"].looks)
        add(
            "oc_2L_6m.png",
            plot_oc(
                d["oc"],
                p0=d["p0"],
                p1=d["p1"],
                title=f"Bayesian single-arm design, looks at {looks} patients, 2L+ R-T at 6 months",
            ),
            "Operating characteristics, 2L+ at 6 months",
            f"Success at n = {d['design'].n_max} when P(p > p0 | data) >= 0.95 (Beta(1, 1) prior for p), "
            f"with p0 fixed at the threshold {d['p0']:.2f} or distributed as the MAP prior; futility at the "
            "interims when the predictive probability of success is < 0.05. p1 = p0^HR. Exact enumeration.",
        )
        bounds = d["design"].boundaries()
        files["design_2L_6m_boundaries.csv"] = bounds.to_csv(index=False).encode()
        design_html = f"<pre>{html.escape(str(d['design']))}</pre>" + bounds.to_html(
            index=False, na_rep=""
        )

    diag_line = fit.diagnostics.line()
    cls = "ok" if fit.diagnostics.ok else "bad"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>lmsbayes report: {html.escape(fit.spec.name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>lmsbayes report: spec <code>{html.escape(fit.spec.name)}</code></h1>",
        f"<p>{html.escape(fit.spec.description)}</p>",
        f"<p>lmsbayes {__version__}; data SHA-256 <code>{fit.data.data_sha256[:16]}</code>; "
        f"spec hash <code>{fit.spec.hash[:16]}</code>; seed {fit.spec.sampler.seed}; "
        f"{len(fit.data.arms)} arms, {len(fit.data.obs)} observations, "
        f"landmarks {', '.join(f'{t:g}' for t in landmarks)} months.</p>",
        f"<p class='{cls}'>{html.escape(diag_line)}</p>",
        "<h2>Thresholds</h2>",
        f"<p>{html.escape(str(table.attrs.get('rule', '')))}; medians and 95% credible intervals.</p>",
        table.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep=""),
    ]
    if comp is not None:
        parts += [
            "<h2>Comparisons of pooled rates</h2>",
            comp.to_html(index=False, float_format=lambda v: f"{v:.3f}"),
        ]
    for name, title, caption in figures:
        b64 = base64.b64encode(images[name]).decode("ascii")
        parts += [
            f"<h2>{html.escape(title)}</h2><p>{html.escape(caption)}</p>",
            f"<img alt='{html.escape(title)}' src='data:image/png;base64,{b64}'>",
        ]
        if name.startswith("oc_") and design_html:
            parts.append(design_html)
    parts += [
        "<h2>Diagnostics</h2>",
        diag.to_html(float_format=lambda v: f"{v:.3f}"),
        f"<h2>Exclusions ({len(excluded)})</h2>",
        excluded.to_html(index=False, na_rep=""),
        "<h2>Spec</h2>",
        f"<pre>{html.escape(fit.spec.text or repr(fit.spec))}</pre>",
        "</body></html>",
    ]
    files["index.html"] = "\n".join(parts).encode("utf-8")
    _write_files(outdir, files)
    return outdir / "index.html"


def _write_files(outdir: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` into ``outdir`` together; retire unchanged files of the previous report."""
    previous = _read_manifest(outdir)
    manifest = {
        "written_by": "lmsbayes report",
        "files": {n: hashlib.sha256(b).hexdigest() for n, b in files.items()},
    }
    outdir.mkdir(parents=True, exist_ok=True)
    with Staging() as stage:
        for name, data in files.items():
            stage.path(outdir / name).write_bytes(data)
        stage.path(outdir / MANIFEST).write_text(
            json.dumps(manifest, indent=1) + "\n", encoding="utf-8"
        )
    for name, digest in previous.items():
        if name in files:
            continue
        path = outdir / name
        try:
            if (
                path.is_file()
                and not path.is_symlink()
                and hashlib.sha256(path.read_bytes()).hexdigest() == digest
            ):
                path.unlink()
        except OSError:
            pass  # it stays; nothing is lost


def _read_manifest(outdir: Path) -> dict[str, str]:
    """Names and SHA-256 of the files the previous report wrote (plain names only; {} if none or unreadable)."""
    try:
        raw = json.loads((outdir / MANIFEST).read_text(encoding="utf-8"))
        entries = raw["files"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return {}
    if not isinstance(entries, dict):
        return {}
    return {
        n: d
        for n, d in entries.items()
        if isinstance(n, str) and isinstance(d, str) and _PLAIN_NAME.fullmatch(n)
    }
