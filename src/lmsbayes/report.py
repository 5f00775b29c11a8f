"""The HTML report of a fit: tables, figures and a self-contained ``index.html``.

:func:`write_report` computes every file in memory first, then writes them
into the output directory, each through a temp file beside it
(:mod:`lmsbayes.files`), and moves them into place together at the end. An
existing directory is written into. A manifest (``.lmsbayes-report.json``)
lists the files a report wrote with their SHA-256; it decides what the
report may replace: a file of the same name as one of the report's is
replaced only when the manifest lists it with its current content (an
earlier report wrote it, and no one changed it since); any other file of
that name (the user's own ``index.html``) is an error naming it, unless
``overwrite=True`` (``--overwrite``). A symbolic link or other non-regular
file in the report's place is always an error: the report writes only
regular files it creates, never through a link. The next report into the
same directory removes a figure the new one no longer has (e.g.
``forest_12m.png`` of a fit with other landmarks) only when that file is
still the one lmsbayes wrote. Labels taken from the data (trial names) are
drawn as plain text: a ``$`` is never read as mathtext.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import io
import json
import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lmsbayes.errors import OutputPathError
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

__all__ = ["ALWAYS_WRITTEN", "MANIFEST", "check_report_dir", "plain_text", "write_report"]

#: The file in a report directory that lists what the report wrote (name -> SHA-256).
MANIFEST = ".lmsbayes-report.json"
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
#: Files every report writes: checked before any work (the full list, which depends on the
#: fit's landmarks, is checked again before anything is written).
ALWAYS_WRITTEN = (
    "index.html",
    "thresholds.csv",
    "diagnostics.csv",
    "exclusions.csv",
    "effects.png",
    "ppc.png",
)


def _png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _design_for_report(fit: Fit, line: str = "2L+", landmark: float = 6.0, looks=(30, 55, 80)):
    """MAP prior, robust MAP and a 3-look Bayesian single-arm design with its OC, for the report.

    The design is built on the line's case-mix row, the row the table supports best (every arm
    of the line informs it directly; EORTC-comparable). Two versions: against the fixed
    threshold p0 (posterior median of the spec's reference rate, rounded to 0.01) and against
    the MAP prior of the historical rate (``p0`` a Beta mixture), which carries the
    between-trial heterogeneity into the success criterion and therefore needs a much higher
    observed rate: the report says so beside its curve.
    """
    from lmsbayes.design import BayesianSingleArm, operating_characteristics
    from lmsbayes.predict import Setting, predict, thresholds
    from lmsbayes.prior import map_prior, robustify

    setting = Setting.standardised(line)
    draws = predict(fit, [setting], [landmark])["rate"].sel(
        setting=setting.label, landmark=landmark, quantity="predictive"
    )
    mix = map_prior(
        draws,
        provenance={
            "source": "lmsbayes predictive draws of a new trial's rate",
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
    need = int(against_map.boundaries().iloc[-1]["min_for_success"])
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
        map_needs=need,
    )


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;\
margin:1.5em auto;
color:#222;line-height:1.45;padding:0 1em;overflow-wrap:break-word}
h1{font-size:1.5em;margin-bottom:.3em}h2{font-size:1.2em;border-bottom:1px solid #ddd;
padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0;max-width:100%}
th,td{border:1px solid #ddd;padding:.2em .5em;text-align:left;vertical-align:top;white-space:normal;
overflow-wrap:break-word;hyphens:none}th{background:#f4f4f4;word-break:keep-all}
img{max-width:100%;height:auto;border:1px solid #eee}.ok{color:#1a7f37}.bad{color:#c00}
code,pre{background:#f6f6f6}pre{padding:.6em;white-space:pre-wrap;font-size:.8em}
.caveats{border-left:4px solid #c60;background:#fff7ef;padding:.4em .9em;margin:.8em 0}
.caveats li{margin:.2em 0}\
.answer{border-left:4px solid #1a7f37;background:#f3faf4;padding:.4em .9em}
.meta{color:#555;font-size:.9em}
"""

#: At most this many columns in any table of the report: it must read without scrolling.
MAX_COLUMNS = 8


def _html_table(df, *, index: bool = False) -> str:
    """A table for reading: text cells as they are, floats to 3 significant digits."""
    if df.shape[1] + int(index) > MAX_COLUMNS:
        raise ValueError(f"report tables have at most {MAX_COLUMNS} columns, got {df.shape[1]}")

    def cell(v) -> str:
        if isinstance(v, float):
            return "" if v != v else f"{v:.3g}"
        return html.escape(str(v))

    head = "".join(
        f"<th>{html.escape(str(c))}</th>"
        for c in ([df.index.name or ""] if index else []) + list(df.columns)
    )
    body = "".join(
        "<tr>"
        + (f"<td>{html.escape(str(i))}</td>" if index else "")
        + "".join(f"<td>{cell(v)}</td>" for v in row)
        + "</tr>"
        for i, row in zip(df.index, df.itertuples(index=False))
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(
    fit: Fit, outdir: str | os.PathLike[str], *, overwrite: bool = False, mkdir: bool = False
) -> Path:
    """Write tables, figures and a self-contained ``index.html`` for a fit.

    Files: ``thresholds.csv`` (:func:`lmsbayes.predict.threshold_table` of
    the standard settings), ``diagnostics.csv``, ``exclusions.csv``, the
    figures of :mod:`lmsbayes.plots` as PNG (forest per landmark, predictive, effects,
    posterior predictive check; MAP prior and the operating characteristics
    of a 3-look Bayesian single-arm design for 2L+ R-T at 6 months when the
    fit has that line and landmark) and ``index.html`` with the PNGs embedded
    as base64 and the tables as HTML, readable without the other files.

    ``outdir`` is created if missing (its parent must exist unless
    ``mkdir``); an existing directory is written into. The files are computed
    in memory, written to temp files in ``outdir`` and moved into place
    together at the end, so an interrupted run leaves the directory as it
    was. A file is replaced only if an earlier report wrote it and it is
    unchanged since (the manifest ``.lmsbayes-report.json`` keeps its
    SHA-256), or with ``overwrite``; a file an earlier report wrote and this
    one does not is removed only if its content is still what lmsbayes wrote.
    Nothing else in ``outdir`` is touched, and nothing is written through a
    symbolic link.

    Parameters
    ----------
    fit : Fit
    outdir : str or path-like
    overwrite : bool
        Replace a same-named regular file the manifest does not list (the
        user's own ``index.html``). A link is refused even then.
    mkdir : bool
        Create the missing parents of ``outdir``.

    Raises
    ------
    OutputPathError
        ``outdir`` exists and is not a directory, lies under a regular file,
        its parent is missing (without ``mkdir``), or it cannot be written; a
        file of the report's is in the way: a link, not a regular file, or a
        file lmsbayes did not write (without ``overwrite``). Checked before
        anything is computed, and again, for the exact list of files, before
        anything is written.

    Returns
    -------
    pathlib.Path
        The path of ``index.html`` inside ``outdir``.
    """
    outdir = check_output_path(outdir, kind="directory", what="report directory", mkdir=mkdir)
    check_report_dir(outdir, None, overwrite)
    with plain_text():
        files = _report_files(fit)
    _write_files(outdir, files, overwrite)
    return outdir / "index.html"


@contextlib.contextmanager
def plain_text():
    """Context in which matplotlib text is drawn as it is.

    A ``$`` in a trial's name is not mathtext.

    Yields
    ------
    None
    """
    import matplotlib

    with matplotlib.rc_context({"text.parse_math": False}):
        yield


def _report_files(fit: Fit) -> dict[str, bytes]:
    """Every file of the report, by name, computed in memory."""
    from lmsbayes.predict import comparisons, threshold_table, thresholds
    from lmsbayes.version import __version__

    files: dict[str, bytes] = {}
    table = threshold_table(thresholds(fit), fit=fit)
    # the survival model gives any landmark: the spec's; per-landmark models: the fitted ones
    landmarks = fit.data.family.reported_landmarks(fit.spec.landmarks, fit.data.landmarks)
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
            "Observed rate per arm (circle, filled if reported, open if derived from the median) "
            "and posterior arm rate (diamond) with 95% intervals; pooled rate and predictive "
            "interval of a new R-T trial (half uterine patients) per line.",
        )
    lines = sorted(set(fit.data.arms["line"].astype(str)))
    can_predict = "line" in fit.spec.main_effects or len(lines) == 1
    if can_predict:
        for t in landmarks:
            add(
                f"predictive_{t:g}m.png",
                plot_predictive(fit, landmark=t),
                f"New-trial rate, {t:g} months",
                "Predictive distribution of a new trial's rate per setting, pooled rate, "
                "thresholds p0 and p1 = p0^HR, and the EORTC 2021 published values.",
            )
    add(
        "effects.png",
        plot_effects(fit),
        "Covariate effects and heterogeneity",
        fit.data.family.effect_caption + "; posterior of the between-arm sd tau.",
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
                title="MAP prior for a new 2L+ trial (the line's case mix), PFS rate at 6 months",
                xlabel=rate_label(6.0),
            ),
            "MAP prior, 2L+ case mix at 6 months",
            "Beta mixture fitted to the predictive draws of a new 2L+ trial's rate at 6 months "
            "(the line's case mix: the row every 2L+ arm informs directly), and its robust version "
            "(weight 0.2 on a vague component centred at p0).",
        )
        looks = "/".join(str(n) for n in d["design"].looks)
        add(
            "oc_2L_6m.png",
            plot_oc(
                d["oc"],
                p0=d["p0"],
                p1=d["p1"],
                title=f"Bayesian single-arm design, looks at {looks} patients, 2L+ at 6 months",
            ),
            "Operating characteristics, 2L+ case mix at 6 months",
            f"Success at n = {d['design'].n_max} when P(p > p0 | data) >= 0.95 (Beta(1, 1) prior "
            f"for p), with p0 fixed at the threshold {d['p0']:.2f} or distributed as the MAP "
            "prior; futility at the interims when the predictive probability of success is < 0.05. "
            "p1 = p0^HR. Exact enumeration. Why the second curve is so low: with p0 uncertain (the "
            f"MAP prior), success at n = {d['design'].n_max} needs at least {d['map_needs']} "
            "progression-free patients (an observed rate of "
            f"{d['map_needs'] / d['design'].n_max:.2f}), because the trial's rate must exceed p0 "
            "over the prior's whole spread; it is shown to make that cost visible, not as a design "
            "to use.",
        )
        bounds = d["design"].boundaries()
        files["design_2L_6m_boundaries.csv"] = bounds.to_csv(index=False).encode()
        design_html = f"<pre>{html.escape(str(d['design']))}</pre>" + _html_table(
            bounds.astype(object).where(bounds.notna(), "")
        )

    from lmsbayes.rows import caveats, quotable, readable

    diag_line = fit.diagnostics.line()
    cls = "ok" if fit.diagnostics.ok else "bad"
    quote = readable(quotable(table)).drop(columns="flags")
    flagged = caveats(table)
    view = readable(table)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>lmsbayes report: {html.escape(fit.spec.name)}</title><style>{_CSS}</style>"
        "</head><body>",
        f"<h1>lmsbayes report: spec <code>{html.escape(fit.spec.name)}</code></h1>",
        f"<p class='meta'>{html.escape(fit.spec.description)}</p>",
        f"<p class='{cls}'>{html.escape(diag_line)}</p>",
        "<section id='caveats'><h2>Caveats: read these before quoting any other row</h2>",
        "<div class='caveats'><ul>"
        + "".join(f"<li>{html.escape(c)}</li>" for c in flagged)
        + "</ul></div>"
        if flagged
        else "<p>No row is flagged.</p>",
        "</section>",
        "<section id='answer'><h2>The answer: rows a protocol can quote</h2>",
        "<div class='answer'><p>Rows informed directly by arms of their own cell and not "
        f"flagged; {html.escape(str(table.attrs.get('rule', '')))}; medians and 95% credible "
        "intervals.</p>",
        _html_table(quote) if len(quote) else "<p>No row is both direct and unflagged.</p>",
        "</div></section>",
        "<section id='thresholds'><h2>All thresholds</h2>",
        "<p>Every row says how it is informed: <b>direct</b> (arms of its own cell) or "
        "<b>model-based</b> (no arm in its cell; the regression carries the other arms' "
        "information to it). The sd ratio is the posterior / prior sd of the row's pooled logit: "
        "small means the data inform the row.</p>",
        _html_table(view),
        "</section>",
        f"<p class='meta'>lmsbayes {__version__}; data SHA-256 "
        f"<code>{fit.data.data_sha256[:16]}</code>; spec hash <code>{fit.spec.hash[:16]}</code>; "
        f"seed {fit.spec.sampler.seed}; {len(fit.data.arms)} arms, {len(fit.data.obs)} "
        f"observations, landmarks {', '.join(f'{t:g}' for t in landmarks)} months.</p>",
    ]
    if comp is not None:
        comp_view = comp.copy()
        for col in ("difference", "lower", "upper", "prob_positive"):
            comp_view[col] = comp_view[col].map(lambda v: f"{v:.2f}")
        comp_view["landmark"] = comp_view["landmark"].map(lambda v: f"{v:g} mo")
        parts += [
            "<h2>Comparisons of pooled rates</h2>",
            _html_table(comp_view),
        ]
    for name, title, caption in figures:
        b64 = base64.b64encode(images[name]).decode("ascii")
        parts += [
            f"<h2>{html.escape(title)}</h2><p>{html.escape(caption)}</p>",
            f"<img alt='{html.escape(title)}' src='data:image/png;base64,{b64}'>",
        ]
        if name.startswith("oc_") and design_html:
            parts.append(design_html)
    diag_view = diag.reset_index()
    parts += [
        "<h2>Diagnostics</h2>",
        _html_table(diag_view.iloc[:, :MAX_COLUMNS]),
        f"<h2>Exclusions ({len(excluded)})</h2>",
        _html_table(_exclusions_view(excluded)),
        "<h2>Spec</h2>",
        f"<pre>{html.escape(fit.spec.text or repr(fit.spec))}</pre>",
        "</body></html>",
    ]
    files["index.html"] = "\n".join(parts).encode("utf-8")
    return files


def _exclusions_view(excluded):
    """Exclusions for reading: the arm, what was left out and why."""
    cols = [c for c in ("arm_id", "trial", "line", "landmark", "reason") if c in excluded]
    view = excluded[cols].copy() if cols else excluded.iloc[:, :MAX_COLUMNS].copy()
    if "landmark" in view:
        view["landmark"] = view["landmark"].map(lambda v: "whole arm" if v != v else f"{v:g} mo")
    return view.astype(object).where(view.notna(), "")


def _sha256_of(path: Path) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def check_report_dir(
    outdir: str | os.PathLike[str], names: list[str] | None = None, overwrite: bool = False
) -> None:
    """Refuse to replace what a report may not: a link, a non-regular file, a file it did not write.

    Parameters
    ----------
    outdir : str or path-like
        The report directory (missing: nothing is in the way).
    names : list of str, optional
        The files the report will write; None: :data:`ALWAYS_WRITTEN` (the
        check before the work, when the full list is not known yet).
    overwrite : bool
        Accept a regular file the manifest does not list (or lists with
        other content).

    Raises
    ------
    OutputPathError
        Naming every file in the way and why.
    """
    outdir = Path(outdir)
    names = list(ALWAYS_WRITTEN if names is None else names)
    previous = _read_manifest(outdir)
    problems = []
    for name in sorted(set(names) | {MANIFEST}):
        path = outdir / name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror}")
            continue
        if stat.S_ISLNK(st.st_mode):
            problems.append(
                f"{path} is a symbolic link (to {os.readlink(path)!r}); the report never writes "
                "through a link: remove it"
            )
        elif not stat.S_ISREG(st.st_mode):
            problems.append(f"{path} exists and is not a regular file")
        elif name != MANIFEST and not overwrite and previous.get(name) != _sha256_of(path):
            why = (
                "changed since a report wrote it" if name in previous else "not written by a report"
            )
            problems.append(
                f"{path} exists and was {why}; move it away, or pass --overwrite "
                "(overwrite=True) to replace it"
            )
    if problems:
        raise OutputPathError(
            f"cannot write report directory {str(outdir)!r}: " + "; ".join(problems)
        )


def _write_files(outdir: Path, files: dict[str, bytes], overwrite: bool = False) -> None:
    """Write ``files`` into ``outdir`` together; retire unchanged files of the previous report."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(outdir)  # the directory the user named; its parent was checked
    check_report_dir(outdir, list(files), overwrite)
    previous = _read_manifest(outdir)
    manifest = {
        "written_by": "lmsbayes report",
        "files": {n: hashlib.sha256(b).hexdigest() for n, b in files.items()},
    }
    with Staging() as stage:
        for name, data in files.items():
            stage.write_bytes(outdir / name, data)
        stage.write_bytes(outdir / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
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
    """Names and SHA-256 of the files the previous report wrote.

    Plain names only; {} if none or unreadable.
    """
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
