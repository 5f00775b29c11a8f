"""The evidence dossier of a prior: what a protocol and a regulator need, in one document.

:func:`dossier` assembles, for one setting and landmark of a fit, the sections that the FDA
draft guidance "Use of Bayesian Methodology in Clinical Trials of Drug and Biological
Products" (January 2026, docket FDA-2025-D-3217) asks of a sponsor who borrows external
data: how the external data were found; every external arm considered, whether it entered
and why not; the exchangeability assumptions; the MAP prior, its robust version and how the
robust weight was chosen; the prior's influence (ESS by three methods, the sd ratio, its
share of the information at the planned sample size); the planned prior-data conflict check;
design prior versus analysis prior; operating characteristics across true control rates
with the worst-case type I error; sensitivity to the tau prior, the robust weight and the
spec; and the provenance (package version, spec and data hashes).

Each section is a :class:`Section` holding paragraphs and small tables, so that the same
content is written as HTML (:meth:`Dossier.to_html`) and JSON (:meth:`Dossier.to_dict`).
:func:`write_dossier` writes both through :mod:`lmsbayes.files` (atomic, never through a
link). The numbers come from the package's own functions (``map_prior``, ``robustify``,
``ess``, ``conflict``, ``two_arm_oc``, ``borrowing_tradeoff``); nothing here computes a
statistic of its own.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lmsbayes.errors import OptionError

if TYPE_CHECKING:  # pragma: no cover
    from lmsbayes.fit import Fit
    from lmsbayes.prior import BetaMixture

__all__ = ["FDA_DRAFT_2026", "Dossier", "Section", "dossier", "write_dossier"]

#: The guidance whose requests the sections answer.
FDA_DRAFT_2026 = (
    'FDA draft guidance "Use of Bayesian Methodology in Clinical Trials of Drug and '
    'Biological Products" (January 2026, docket FDA-2025-D-3217)'
)
KOPP_SCHNEIDER = (
    "Kopp-Schneider, Calderazzo & Wiesenfarth, Biom J 2020;62:361-374: under strict control of "
    "the type I error at every true control rate, borrowing cannot raise power; a gain in power "
    "is bought with a higher type I error where the true control rate differs from history."
)
#: Robust weight used when no type I error cap is given (RBesT's vignettes use 0.2 too).
DEFAULT_ROBUST_WEIGHT = 0.2
#: At most this many columns per table: a table must read without horizontal scrolling.
MAX_COLUMNS = 8


@dataclass(frozen=True)
class Section:
    """One section of the dossier.

    Attributes
    ----------
    key : str
        Stable identifier (JSON key, HTML anchor).
    title : str
    request : str
        What the FDA draft guidance asks, in one sentence.
    paragraphs : tuple of str
        Plain text, read by a clinician.
    tables : tuple of (str, pandas.DataFrame)
        Caption and table; at most :data:`MAX_COLUMNS` columns each.
    """

    key: str
    title: str
    request: str
    paragraphs: tuple[str, ...] = ()
    tables: tuple[tuple[str, pd.DataFrame], ...] = ()

    def __post_init__(self) -> None:
        for caption, table in self.tables:
            if table.shape[1] > MAX_COLUMNS:
                raise ValueError(
                    f"dossier table {caption!r} has {table.shape[1]} columns; at most "
                    f"{MAX_COLUMNS} read without scrolling"
                )


@dataclass(frozen=True)
class Dossier:
    """The evidence dossier of one prior (see the module docstring).

    Attributes
    ----------
    title : str
    sections : tuple of Section
        In reading order: the answer and its caveats first.
    provenance : dict
        Package version, spec name and hash, data SHA-256, seed, date.
    """

    title: str
    sections: tuple[Section, ...]
    provenance: dict = field(default_factory=dict)

    def section(self, key: str) -> Section:
        """The section called ``key``."""
        for s in self.sections:
            if s.key == key:
                return s
        raise KeyError(f"no section {key!r}; sections: {[s.key for s in self.sections]}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready content: every section's text and tables (records)."""
        return {
            "title": self.title,
            "guidance": FDA_DRAFT_2026,
            "provenance": self.provenance,
            "sections": [
                {
                    "key": s.key,
                    "title": s.title,
                    "request": s.request,
                    "paragraphs": list(s.paragraphs),
                    "tables": [
                        {
                            "caption": caption,
                            "columns": [str(c) for c in t.columns],
                            "rows": [[_json_value(v) for v in row] for row in t.itertuples(False)],
                        }
                        for caption, t in s.tables
                    ],
                }
                for s in self.sections
            ],
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def to_html(self) -> str:
        """A self-contained HTML page: a contents list, then each section in order."""
        esc = html.escape
        toc = "".join(f'<li><a href="#{esc(s.key)}">{esc(s.title)}</a></li>' for s in self.sections)
        body = []
        for s in self.sections:
            parts = [f'<section id="{esc(s.key)}"><h2>{esc(s.title)}</h2>']
            parts.append(f'<p class="request"><b>Asked for:</b> {esc(s.request)}</p>')
            parts += [f"<p>{esc(p)}</p>" for p in s.paragraphs]
            for caption, t in s.tables:
                parts.append(_html_table(caption, t))
            parts.append("</section>")
            body.append("".join(parts))
        prov = "".join(
            f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>"
            for k, v in self.provenance.items()
        )
        return (
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{esc(self.title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{esc(self.title)}</h1><p class='guidance'>Mapped section by section to the "
            f"{esc(FDA_DRAFT_2026)}.</p><nav><ol>{toc}</ol></nav>{''.join(body)}"
            f"<footer><h2>Provenance</h2><table>{prov}</table></footer></body></html>\n"
        )


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:70rem;margin:1rem auto;padding:0 1rem;"
    "line-height:1.45;overflow-wrap:anywhere}"
    "table{border-collapse:collapse;margin:.5rem 0 1rem;max-width:100%;table-layout:auto}"
    "th,td{border-bottom:1px solid #ccc;padding:.2rem .5rem;text-align:left;vertical-align:top;"
    "white-space:normal;overflow-wrap:anywhere}"
    "caption{text-align:left;font-weight:600;padding:.3rem 0}"
    ".request{color:#444;font-size:.95em}.flag{color:#8a1c00;font-weight:600}"
)


def _html_table(caption: str, t: pd.DataFrame) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(str(c))}</th>" for c in t.columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{esc(_cell(v))}</td>" for v in row) + "</tr>"
        for row in t.itertuples(False)
    )
    return f"<table><caption>{esc(caption)}</caption><tr>{head}</tr>{rows}</table>"


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.3g}"
    return str(v)


def _json_value(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(float(v)) else None
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    return v if isinstance(v, (int, str)) or v is None else str(v)


def _pct(p: float) -> str:
    return f"{100 * p:.0f}%"


def _interval(mix: BetaMixture, prob: float = 0.95) -> tuple[float, float]:
    lo, hi = mix.ppf([(1 - prob) / 2, (1 + prob) / 2])
    return float(lo), float(hi)


def _mix_summary(mix: BetaMixture) -> str:
    lo, hi = _interval(mix)
    return (
        f"mean {mix.mean():.3f}, median {float(mix.ppf(0.5)):.3f}, 95% interval {lo:.3f}-{hi:.3f}"
    )


def _components(mix: BetaMixture) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "component": [f"{k + 1}" for k in range(mix.n_components)],
            "weight": np.round(mix.weights, 3),
            "a": np.round(mix.a, 2),
            "b": np.round(mix.b, 2),
            "mean": np.round(mix.a / (mix.a + mix.b), 3),
        }
    )


def _ess_row(mix: BetaMixture) -> dict[str, Any]:
    from lmsbayes.prior import ess

    out = {}
    for method in ("elir", "moment", "morita"):
        try:
            out[f"ESS ({method})"] = round(float(ess(mix, method)), 1)
        except ValueError:  # ELIR and Morita need every shape >= 1 (the density is bounded)
            out[f"ESS ({method})"] = "undefined: a component has a shape < 1"
    return out


def _search_log_counts(readme: str) -> dict[str, int]:
    """Trials looked for in the curation's search log (data/README.md section 9), in and out."""
    start = readme.find("## 9. Search log")
    text = readme[start:] if start >= 0 else ""
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    rows = [r for r in rows if not r.startswith("| trial |")]
    last = [r.rstrip(" |").rsplit("|", 1)[-1].strip().lower() for r in rows]
    return {
        "looked_for": len(rows),
        "in": sum(c.startswith("in") and "out of the model" not in c for c in last),
        "in_file_out_of_model": sum("out of the model" in c for c in last),
        "out": sum(c.startswith("out") for c in last),
    }


def _bundled_readme() -> str:
    from importlib import resources

    try:
        return resources.files("lmsbayes").joinpath("_data/README.md").read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):  # a wheel without the data dictionary
        return ""


# ------------------------------------------------------------------------------------ sections
def _answer(ctx: dict) -> Section:
    mix, robust, w = ctx["map"], ctx["robust"], ctx["weight"]
    ev = ctx["evidence"]
    paras = [
        f"Setting: {ctx['setting_text']}; progression-free rate at {ctx['landmark_text']}. "
        f"Target: {ctx['target']}.",
        f"MAP prior (the predictive distribution of the rate in a new trial): {_mix_summary(mix)}.",
        f"Analysis prior (robust MAP, weight {w:g} on a vague component with the MAP mean "
        f"{ctx['robust_mean']:.3f}): {_mix_summary(robust)}.",
        f"Informed by: {ev['informed']}.",
    ]
    flags = [f for f in ev["flags"] if f]
    paras += [f"CAVEAT: {f}" for f in flags] or ["No flag: the setting is inside the data's range."]
    return Section(
        "answer",
        "The answer and its caveats",
        "A clear statement of the prior proposed, of what it rests on, and of its limitations.",
        tuple(paras),
    )


def _identification(ctx: dict) -> Section:
    n = ctx["counts"]
    log = ctx["search_log"]
    paras = [
        "The external data are a curated table of published leiomyosarcoma trial arms "
        "(data/README.md), not the result of a registered systematic review: the inclusion rule "
        "is written down (prospective phase 2/3 trials, adults with advanced LMS, an LMS-specific "
        "PFS quantity, codable line), and every number traces to a named source. A systematic "
        "review with a registered protocol would be needed for a confirmatory submission.",
    ]
    if log["looked_for"]:
        paras.append(
            f"The curation's search log lists {log['looked_for']} trials looked for: "
            f"{log['in']} in the table, {log['in_file_out_of_model']} in the table but unusable "
            f"by the model, {log['out']} not entered (each with its reason in data/README.md "
            "section 9)."
        )
    flow = pd.DataFrame(
        [
            ("arms in the table", n["table"]),
            ("arms excluded before modelling, with reasons", n["excluded"]),
            ("arms entering the model", n["model"]),
            ("arms in this setting's cell", n["cell"]),
        ],
        columns=["step (PRISMA-style flow)", "arms"],
    )
    return Section(
        "identification",
        "How the external data were found",
        "A systematic identification of all relevant external data, with the search and the "
        "selection documented.",
        tuple(paras),
        (("Flow of arms", flow),),
    )


def _external(ctx: dict) -> Section:
    table = ctx["arms_table"]
    paras = [
        "Every arm considered is listed, whether or not it entered and whatever its result. "
        "The last column gives each included arm's own rate at the landmark (posterior median, "
        "mostly its own data) and whether it lies below or above the MAP prior's median: the "
        "less favourable arms are in the prior, not left out.",
    ]
    return Section(
        "external_data",
        "Every external arm considered",
        "All relevant external data, unfavourable studies included, with the reason for each "
        "exclusion.",
        tuple(paras),
        (("Arms (entered: yes / the reason it did not)", table),),
    )


def _exchangeability(ctx: dict) -> Section:
    spec = ctx["fit"].spec
    ev = ctx["evidence"]
    paras = [
        f"Model: {spec.description or spec.name}.",
        "Exchangeability assumed: given the covariates in the model, the arms' effects are "
        "exchangeable draws from one normal distribution whose sd (tau) is estimated; a new "
        "trial is one more draw. Its rate therefore varies around the pooled rate by tau, "
        "which the MAP prior carries.",
        f"Heterogeneity prior: tau ~ {spec.priors.tau!r}.",
        f"Covariates: {', '.join(ctx['fit'].data.covariates) or 'none'}.",
        f"This setting is informed by {ev['informed']}.",
    ]
    if ev.get("sd_ratio") is not None:
        paras.append(
            f"Posterior/prior sd of the pooled logit: {ev['sd_ratio']:.2f} (1 = the data say "
            "nothing about this setting beyond the prior; small = well informed)."
        )
    return Section(
        "exchangeability",
        "Exchangeability and relevance",
        "A justification of the exchangeability of the external data with the planned trial, "
        "and of their relevance.",
        tuple(paras),
    )


def _prior_section(ctx: dict) -> Section:
    mix, robust = ctx["map"], ctx["robust"]
    paras = [
        f"MAP prior: a mixture of {mix.n_components} beta distributions fitted to the "
        f"predictive distribution of a new trial's rate; {_mix_summary(mix)}.",
        f"Robust version (dynamic discounting): weight {ctx['weight']:g} on a vague beta "
        f"component with mean {ctx['robust_mean']:.3f} (one prior patient). If the trial's "
        "data conflict with the MAP prior, the posterior moves its weight to that component and "
        "the historical data are discounted automatically.",
        ctx["weight_rule"],
    ]
    tables = [("MAP prior components", _components(mix))]
    tables.append(("Robust MAP prior components", _components(robust)))
    if ctx.get("tradeoff") is not None:
        tables.append(("Robust weight against worst type I error and power", ctx["tradeoff"]))
    return Section(
        "prior",
        "The MAP prior, its robust version and the weight",
        "The prior, how it discounts the external data dynamically, and how the discounting "
        "parameter was chosen.",
        tuple(paras),
        tuple(tables),
    )


def _influence(ctx: dict) -> Section:
    rows = []
    for name, m in (("MAP", ctx["map"]), ("robust MAP", ctx["robust"])):
        e = _ess_row(m)
        share = {}
        for method in ("elir", "moment", "morita"):
            v = e[f"ESS ({method})"]
            share[method] = (
                f"{v / (v + ctx['n_control']):.2f}" if isinstance(v, float) else "undefined"
            )
        rows.append(
            {
                "prior": name,
                **e,
                "share (ELIR)": share["elir"],
                "share (moment)": share["moment"],
                "share (Morita)": share["morita"],
            }
        )
    table = pd.DataFrame(rows)
    paras = [
        "Effective sample size (ESS) in patients, by three named methods that answer different "
        "questions: ELIR (expected local information ratio, Neuenschwander et al. 2020), moment "
        "matching, and Morita et al. (2008). They differ for mixtures; a protocol quotes one and "
        "names it.",
        f"Share = ESS / (ESS + n) at the planned control-arm size n = {ctx['n_control']}: the "
        "fraction of the control arm's information the prior supplies if the data agree.",
    ]
    if ctx["evidence"].get("sd_ratio") is not None:
        paras.append(
            f"sd ratio (posterior/prior, pooled logit): {ctx['evidence']['sd_ratio']:.2f}."
        )
    return Section(
        "influence",
        "Influence of the prior",
        "A quantified influence of the prior on the analysis.",
        tuple(paras),
        (("ESS and share of information", table),),
    )


def _conflict_section(ctx: dict) -> Section:
    from lmsbayes.prior import conflict

    robust, n = ctx["robust"], ctx["n_control"]
    # outcomes at the MAP prior's quantiles, then the two extremes (no quantile)
    outcomes = [
        (q, int(round(float(ctx["map"].ppf(q)) * n))) for q in (0.025, 0.25, 0.5, 0.75, 0.975)
    ]
    outcomes += [(float("nan"), 0), (float("nan"), n)]
    rows = []
    for q, r in outcomes:
        rep = conflict(robust, r, n)
        rows.append(
            {
                "observed": f"{r}/{n}",
                "MAP quantile": q,
                "box p": round(rep.p_box, 3),
                # the robust component is the last one (robustify appends it)
                "robust weight after": round(float(rep.components["posterior_weight"].iloc[-1]), 3),
                "posterior mean": round(float(rep.posterior.mean()), 3),
            }
        )
    paras = [
        "Planned check: at the analysis, the control arm's r of n is compared with the prior's "
        "predictive distribution (Box's p-value: the predictive probability of a count at most "
        "as likely as the one observed). A box p below 0.05 is reported as a prior-data "
        "conflict.",
        "What is done on conflict: nothing by hand. The robust component's posterior weight "
        "rises (table), so the analysis discounts the historical data by itself; the report "
        "states the box p and the weight. The analysis prior is not changed after unblinding.",
    ]
    return Section(
        "conflict",
        "Prior-data conflict: the planned check",
        "A pre-specified assessment of prior-data conflict and what is done when it occurs.",
        tuple(paras),
        (("Conflict check at possible control-arm outcomes", pd.DataFrame(rows)),),
    )


def _design_vs_analysis(ctx: dict) -> Section:
    paras = [
        f"Design prior (for power and assurance): the MAP prior, {_mix_summary(ctx['map'])}. "
        "It describes where the control rate is expected to lie when the trial is planned.",
        f"Analysis prior (for the decision at the end): the robust MAP prior, "
        f"{_mix_summary(ctx['robust'])}. It is fixed in the protocol before the data are seen.",
        "The experimental arm gets a vague Beta(1, 1) prior in both.",
    ]
    return Section(
        "design_vs_analysis",
        "Design prior and analysis prior",
        "The distinction between the prior used to design the trial and the prior used to "
        "analyse it.",
        tuple(paras),
    )


def _operating(ctx: dict) -> Section:
    oc, design = ctx["oc"], ctx["design"]
    paras = [
        f"Design: {design.n_t} experimental and {design.n_c} control patients; success when "
        f"{design.decision}. Operating characteristics are exact (enumeration of every outcome).",
        f"Type I error = P(success) when both arms have the same true rate; its worst case is "
        f"taken over all true control rates in [0, 1] and over the MAP prior's 95% interval "
        f"({ctx['map_lo']:.2f}-{ctx['map_hi']:.2f}). Power at p_t = p_c ** {ctx['hr']:g} "
        f"(hazard ratio {ctx['hr']:g}) at the MAP median control rate.",
        KOPP_SCHNEIDER,
    ]
    return Section(
        "operating_characteristics",
        "Operating characteristics across true control rates",
        "Success criteria calibrated to a frequentist error rate, or justified directly, with "
        "the type I error across plausible true control rates.",
        tuple(paras),
        (("Type I error and power under each control prior", oc),),
    )


def _sensitivity(ctx: dict) -> Section:
    paras = [
        "The MAP prior refitted under other heterogeneity priors and other specs, and the robust "
        "weight varied. A large move means the answer depends on an assumption, which the "
        "protocol then states.",
    ]
    return Section(
        "sensitivity",
        "Sensitivity",
        "Sensitivity of the conclusions to the prior's assumptions (heterogeneity prior, "
        "discounting, model).",
        tuple(paras),
        (("MAP prior under alternatives", ctx["sensitivity"]),),
    )


def _provenance_section(ctx: dict) -> Section:
    p = ctx["provenance"]
    paras = [
        f"lmsbayes {p['lmsbayes_version']}; spec {p['spec_name']} (hash {p['spec_hash']}); data "
        f"SHA-256 {p['data_sha256']}; seed {p['seed']}; written {p['date']}.",
        "Rerun: the same spec and data files give the same numbers; a changed file changes its "
        "hash here.",
    ]
    return Section(
        "provenance",
        "Locked inputs",
        "The software version and locked analysis inputs, so that the prior can be reproduced.",
        tuple(paras),
    )


# ----------------------------------------------------------------------------------- assembly
def _setting_evidence(fit: Fit, setting: Any, landmark: float | None) -> dict[str, Any]:
    from lmsbayes.coverage import setting_evidence

    if fit.data.table != "lms":
        n = pd.to_numeric(fit.data.arms["n"], errors="coerce").sum()
        return {
            "informed": f"{fit.data.n_arms} studies, {n:.0f} patients",
            "flags": [
                "one study only: the heterogeneity tau is not identified by the data; the prior "
                "on tau decides the MAP prior's width"
            ]
            if fit.data.n_arms == 1
            else [],
            "sd_ratio": None,
            "cell_arms": list(map(str, fit.data.arms.index)),
        }
    row = setting_evidence(fit, [setting], [landmark]).iloc[0]
    arms = int(row.get("arms", 0))
    unknown = int(row.get("arms_unknown_site", 0) or 0)
    patients = float(row.get("patients", float("nan")))
    if arms:
        informed = (
            f"direct: {arms} arm{'s' if arms != 1 else ''} in this cell ({patients:.0f} patients)"
        )
    else:
        informed = (
            "model-based: no arm in this cell; from the line, class and uterine effects of the "
            "other arms"
        )
    if unknown:
        informed += f" (+{unknown} arms of unknown uterine fraction)"
    sd = row.get("sd_ratio")
    flags = [f.strip() for f in str(row.get("flags", "") or "").split(";") if f.strip()]
    cell_arms = list(map(str, _cell_arms(fit, setting)))
    return {
        "informed": informed,
        "flags": flags,
        "sd_ratio": None if sd is None or not np.isfinite(sd) else float(sd),
        "cell_arms": cell_arms,
    }


def _cell_arms(fit: Fit, setting: Any) -> list:
    from lmsbayes.coverage import SITE_TOLERANCE

    arms = fit.data.arms
    if getattr(setting, "line", None) is None:
        return list(arms.index)
    sel = arms["line"].astype(str).to_numpy() == setting.line
    if not setting.case_mix:
        u = arms["uterine_fraction"].to_numpy(float)
        sel &= arms["treatment_class"].astype(str).to_numpy() == setting.treatment_class
        sel &= np.isfinite(u) & (np.abs(u - setting.uterine) <= SITE_TOLERANCE + 1e-9)
    return list(arms.index[sel])


def _own_rates(fit: Fit, landmark: float | None) -> dict[str, float]:
    """Posterior median of each included arm's own rate at the landmark (its data and shrinkage)."""
    post = fit.posterior
    if "p" not in post:
        return {}
    p = post["p"]
    if "landmark" in p.dims:
        marks = p["landmark"].to_numpy()
        if landmark is None or not np.isclose(marks, landmark).any():
            return {}
        p = p.isel(landmark=int(np.argmin(np.abs(marks - landmark))))
    med = p.median(("chain", "draw"))
    return {str(a): float(v) for a, v in zip(med["arm"].to_numpy(), med.to_numpy())}


def _source_id(r: pd.Series) -> str:
    for key, label in (("pmid", "PMID"), ("doi", "DOI"), ("registry_id", "registry")):
        v = r.get(key)
        if v is not None and not pd.isna(v) and str(v).strip():
            return f"{label} {v}"
    return "none"


def _arms_table(
    fit: Fit, trials: Any, cell: Sequence[str], map_median: float, landmark: float | None
) -> pd.DataFrame:
    """Every arm considered: entered or why not, and where its own rate lies against the prior."""
    excluded = fit.data.excluded
    reasons: dict[str, str] = {}
    if len(excluded) and "arm_id" in excluded:
        whole = excluded[excluded["landmark"].isna()] if "landmark" in excluded else excluded
        for arm, why in zip(whole["arm_id"].astype(str), whole["reason"].astype(str)):
            reasons.setdefault(arm, why)
    entered = set(map(str, fit.data.arms.index))
    own = _own_rates(fit, landmark)
    cell = set(map(str, cell))

    def versus(arm: str) -> str:
        if arm not in own:
            return ""
        v = own[arm]
        where = "below" if v < map_median else "above"
        return f"{v:.2f} ({where})" + ("" if arm in cell else ", other cell")

    if trials is not None and hasattr(trials, "arms"):
        src = trials.arms
        ids = src["arm_id"].astype(str) if "arm_id" in src else src.index.astype(str)
        rows = []
        for i, arm in enumerate(ids):
            r = src.iloc[i]
            role = "" if pd.isna(r.get("role", "")) else str(r.get("role", ""))
            regimen = "" if pd.isna(r.get("regimen", "")) else str(r.get("regimen", ""))
            rows.append(
                {
                    "arm": arm,
                    "trial (year)": f"{r.get('trial', '')} ({r.get('year', '')})",
                    "line, class": f"{r.get('line', '')} {r.get('treatment_class', '')}",
                    "role: regimen": f"{role}: {regimen}" if role or regimen else "",
                    "n": r.get("n", ""),
                    "source": _source_id(r),
                    "entered": "yes" if arm in entered else reasons.get(arm, "no (filtered)"),
                    "own rate vs MAP median": versus(arm),
                }
            )
        return pd.DataFrame(rows)
    arms = fit.data.arms
    names = list(map(str, arms.index))
    return pd.DataFrame(
        {
            "study": names,
            "n": arms["n"].to_numpy(),
            "entered": "yes",
            "own rate vs MAP median": [versus(a) for a in names],
        }
    )


def dossier(
    fit: Fit,
    setting: Any = None,
    landmark: float | None = None,
    *,
    prior: BetaMixture | None = None,
    target: str | None = None,
    trials: Any = None,
    n_control: int = 30,
    n_treatment: int = 60,
    hr: float = 0.65,
    robust_weight: float | None = None,
    max_type1: float | None = None,
    sensitivity: bool = True,
) -> Dossier:
    """The evidence dossier of the MAP prior of one setting and landmark of a fit.

    Parameters
    ----------
    fit : Fit
        A fitted model (LMS arm table or a (study, r, n) table).
    setting : Setting, optional
        The planned trial's setting (LMS fits); omit for a table without covariates.
    landmark : float, optional
        Months (fits with landmarks).
    prior : BetaMixture, optional
        The MAP prior, if computed elsewhere; default ``map_prior(fit, setting, landmark,
        target=target)``.
    target : lmsbayes.targets.Target or str, optional
        What the prior predicts: a Target (e.g. ``Target.new_arm("doxorubicin", 2027)``, a
        control arm's MAP prior, whose regimen arms the dossier names), or words; default "a
        new trial in this setting".
    trials : lmsbayes.data.Trials, optional
        The full arm table, so that arms that did not enter are listed too; default the
        bundled table when the fit was made on it.
    n_control, n_treatment : int
        Planned control and experimental arm sizes (for the prior's share and the OC).
    hr : float, default 0.65
        Hazard ratio of the alternative, ``p_t = p_c ** hr``.
    robust_weight : float, optional
        Weight of the vague component; default: the smallest weight whose worst type I error
        over the MAP prior's 95% interval is at most ``max_type1`` when that is given, else
        :data:`DEFAULT_ROBUST_WEIGHT`.
    max_type1 : float, optional
        Cap on the worst type I error over the MAP prior's 95% interval.
    sensitivity : bool, default True
        Refit the spec under a halved and a doubled tau prior scale (exact engine: fast).

    Returns
    -------
    Dossier
    """
    from lmsbayes.design import TwoArmDesign, borrowing_tradeoff, find_robust_weight, two_arm_oc
    from lmsbayes.prior import BetaMixture, map_prior, robustify
    from lmsbayes.version import __version__

    has_landmarks = bool(fit.data.family.reported_landmarks(fit.spec.landmarks, fit.data.landmarks))
    if has_landmarks and landmark is None:
        raise OptionError("dossier: give the landmark (months) of the rate")
    if fit.data.table == "lms" and setting is None:
        raise OptionError("dossier: give the setting of the planned trial, e.g. Setting('2L+')")
    predictive_target = target if hasattr(target, "describe") else None
    mix = (
        prior if prior is not None else map_prior(fit, setting, landmark, target=predictive_target)
    )
    lo, hi = _interval(mix)
    median = float(mix.ppf(0.5))
    robust_mean = float(mix.mean())
    design = TwoArmDesign(n_t=n_treatment, n_c=n_control)
    p_c_alt = median
    p_t_alt = p_c_alt**hr
    tradeoff_table = None
    if robust_weight is None and max_type1 is not None:
        w, scan = find_robust_weight(
            design,
            mix,
            max_type1=max_type1,
            type1_range=(lo, hi),
            p_t=p_t_alt,
            p_c=p_c_alt,
            robust_mean=robust_mean,
            bounded=True,
            step=0.05,
        )
        if w is None:
            raise OptionError(
                f"no robust weight keeps the worst type I error over {lo:.2f}-{hi:.2f} at "
                f"{max_type1:g} for this design; raise max_type1 or enlarge the trial"
            )
        weight = w
        rule = (
            f"The weight {w:g} is the smallest (most borrowing) whose worst type I error over "
            f"the MAP prior's 95% interval is at most {max_type1:g} (scan in steps of 0.05)."
        )
        tradeoff_table = scan.table
    else:
        weight = DEFAULT_ROBUST_WEIGHT if robust_weight is None else float(robust_weight)
        rule = (
            f"The weight {weight:g} is "
            + ("the default of lmsbayes and RBesT's examples" if robust_weight is None else "given")
            + "; the table shows what other weights would give."
        )
        tradeoff_table = borrowing_tradeoff(
            design,
            mix,
            (0.0, 0.1, 0.2, 0.3, 0.5, 1.0),
            type1_range=(lo, hi),
            p_t=p_t_alt,
            p_c=p_c_alt,
            robust_mean=robust_mean,
            bounded=True,
        ).table
    tradeoff_table = _tradeoff_view(tradeoff_table)
    robust = robustify(mix, weight, mean=robust_mean, bounded=True)
    vague = BetaMixture([1.0], [1.0], [1.0])
    grid = np.round(np.linspace(0.0, 1.0, 101), 10)
    oc = two_arm_oc(
        design,
        grid,
        effects=[hr],
        scale="hr",
        priors={"vague": vague, "MAP": mix, "robust": robust},
    )
    oc_table = _oc_view(oc, lo, hi, p_c_alt, hr)
    evidence = _setting_evidence(fit, setting, landmark)
    if predictive_target is not None and predictive_target.kind == "new_arm":
        from lmsbayes.targets import rests_on

        arms = rests_on(fit, predictive_target, getattr(setting, "line", None))
        evidence["informed"] += (
            f"; the regimen {predictive_target.regimen} rests on {len(arms)} included arm"
            f"{'s' if len(arms) != 1 else ''} of this line: {', '.join(arms) or 'none'}"
        )
        if len(arms) < 3:
            evidence["flags"].append(
                f"few arms of {predictive_target.regimen} ({len(arms)}): the within-regimen "
                "heterogeneity prior decides much of the width (see Sensitivity)"
            )
    if trials is None and fit.data.table == "lms":
        from lmsbayes.data import load_trials

        bundled = load_trials()
        trials = bundled if bundled.sha256 == fit.data.data_sha256 else None
    counts = _counts(fit, trials, evidence["cell_arms"])
    provenance = {
        "lmsbayes_version": __version__,
        "spec_name": fit.spec.name,
        "spec_hash": fit.spec.hash,
        "data_sha256": fit.data.data_sha256,
        "seed": int(fit.spec.sampler.seed),
        "date": _dt.date.today().isoformat(),
        "setting": getattr(setting, "label", "all") if setting is not None else "all",
        "landmark_months": landmark,
    }
    ctx = {
        "fit": fit,
        "map": mix,
        "robust": robust,
        "weight": weight,
        "weight_rule": rule,
        "robust_mean": robust_mean,
        "tradeoff": tradeoff_table,
        "design": design,
        "oc": oc_table,
        "hr": hr,
        "map_lo": lo,
        "map_hi": hi,
        "n_control": n_control,
        "evidence": evidence,
        "counts": counts,
        "search_log": _search_log_counts(_bundled_readme() if trials is not None else ""),
        "arms_table": _arms_table(fit, trials, evidence["cell_arms"], median, landmark),
        "setting_text": setting.describe() if hasattr(setting, "describe") else "all studies",
        "landmark_text": f"{landmark:g} months" if landmark is not None else "the study endpoint",
        "target": (
            predictive_target.describe()
            if predictive_target is not None
            else (target or "a new trial in this setting")
        ),
        "provenance": provenance,
        "sensitivity": _sensitivity_table(
            fit, setting, landmark, mix, weight, robust_mean, predictive_target
        )
        if sensitivity
        else pd.DataFrame({"note": ["not computed (sensitivity=False)"]}),
    }
    sections = (
        _answer(ctx),
        _identification(ctx),
        _external(ctx),
        _exchangeability(ctx),
        _prior_section(ctx),
        _influence(ctx),
        _conflict_section(ctx),
        _design_vs_analysis(ctx),
        _operating(ctx),
        _sensitivity(ctx),
        _provenance_section(ctx),
    )
    label = getattr(setting, "label", None) or "all studies"
    title = f"Evidence dossier: MAP prior for {label}" + (
        f" at {landmark:g} months" if landmark is not None else ""
    )
    return Dossier(title, sections, provenance)


def _counts(fit: Fit, trials: Any, cell: Sequence[str]) -> dict[str, int]:
    n_model = fit.data.n_arms
    if trials is not None and hasattr(trials, "arms"):
        n_table = len(trials.arms)
    else:
        n_table = n_model + int(
            fit.data.excluded["landmark"].isna().sum() if len(fit.data.excluded) else 0
        )
    return {
        "table": n_table,
        "excluded": n_table - n_model,
        "model": n_model,
        "cell": len(cell),
    }


def _tradeoff_view(table: pd.DataFrame) -> pd.DataFrame:
    t = table.reset_index().rename(columns={table.index.name or "index": "weight"})
    keep = [
        c for c in ("weight", "max_type1", "worst_p", "power", "ess_elir", "ess_moment") if c in t
    ]
    t = t[keep].copy()
    t.columns = [
        {
            "max_type1": "worst type I",
            "worst_p": "at control rate",
            "ess_elir": "ESS (ELIR)",
            "ess_moment": "ESS (moment)",
        }.get(c, c)
        for c in t.columns
    ]
    for c in t.columns[1:]:
        t[c] = pd.to_numeric(t[c], errors="coerce").round(3)
    return t


def _oc_view(oc: Any, lo: float, hi: float, p_c_alt: float, hr: float) -> pd.DataFrame:
    ps = oc["prob_success"]
    p_c = ps["p_c"].to_numpy()
    rows = []
    for prior in [str(p) for p in ps["prior"].to_numpy()]:
        null = ps.sel(prior=prior, effect=1.0).to_numpy()
        alt = ps.sel(prior=prior, effect=hr).to_numpy()
        inside = (p_c >= lo - 1e-12) & (p_c <= hi + 1e-12)
        j = int(np.nanargmin(np.abs(p_c - p_c_alt)))
        rows.append(
            {
                "control prior": prior,
                "worst type I, all rates": round(float(np.nanmax(null)), 3),
                "at rate": round(float(p_c[int(np.nanargmax(null))]), 2),
                "worst type I, MAP 95%": round(float(np.nanmax(null[inside])), 3)
                if inside.any()
                else float("nan"),
                f"power, HR {hr:g}": round(float(alt[j]), 3),
            }
        )
    return pd.DataFrame(rows)


def _sensitivity_table(
    fit: Fit,
    setting: Any,
    landmark: float | None,
    mix: BetaMixture,
    weight: float,
    mean: float,
    target: Any = None,
) -> pd.DataFrame:
    import warnings

    from lmsbayes.fit import FitWarning
    from lmsbayes.fit import fit as refit
    from lmsbayes.prior import ess, map_prior, robustify

    def row(label: str, m: BetaMixture) -> dict[str, Any]:
        lo, hi = _interval(m)
        try:
            e = round(float(ess(m, "elir")), 1)
        except ValueError:
            e = float("nan")
        return {
            "analysis": label,
            "mean": round(float(m.mean()), 3),
            "95% interval": f"{lo:.3f}-{hi:.3f}",
            "ESS (ELIR)": e,
        }

    rows = [row("as specified (MAP)", mix)]
    tau = fit.spec.priors.tau
    scale_key = next((k for k in ("sigma", "beta", "scale") if k in tau.kwargs), None)
    if scale_key is not None:
        for factor in (0.5, 2.0):
            new_tau = type(tau)(
                tau.dist, **{**tau.kwargs, scale_key: tau.kwargs[scale_key] * factor}
            )
            spec = fit.spec.replace(**{"priors.tau": new_tau})
            try:
                with warnings.catch_warnings():
                    # its diagnostics go into the table's row, not onto the console
                    warnings.simplefilter("ignore", FitWarning)
                    other = refit(spec, _fit_input(fit))
            except ValueError as exc:  # a refit the engine cannot do is stated, not hidden
                rows.append({"analysis": f"tau prior scale x{factor:g}", "mean": str(exc)})
                continue
            other_mix = map_prior(other, setting, landmark, target=target)
            problem = (
                ""
                if other.diagnostics.ok
                else f"; fit problem: {'; '.join(other.diagnostics.problems)}"
            )
            rows.append(row(f"tau ~ {new_tau!r} (MAP){problem}", other_mix))
    for w in sorted({0.1, weight, 0.5}):
        rows.append(row(f"robust weight {w:g}", robustify(mix, w, mean=mean, bounded=True)))
    return pd.DataFrame(rows)


def _fit_input(fit: Fit) -> Any:
    """The table a fit was made from, for a refit under another spec."""
    if fit.data.table == "lms":
        from lmsbayes.data import load_trials

        bundled = load_trials()
        if bundled.sha256 == fit.data.data_sha256:
            return bundled
        raise OptionError("sensitivity refits need the fit's own data; pass sensitivity=False")
    arms = fit.data.arms.reset_index()
    arms = arms.rename(columns={arms.columns[0]: "study"})
    return arms


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def write_dossier(d: Dossier, out_dir: str | Path, *, name: str = "dossier") -> list[Path]:
    """Write ``NAME.html`` and ``NAME.json`` into ``out_dir`` (atomic; never through a link).

    Parameters
    ----------
    d : Dossier
    out_dir : str or Path
        An existing directory.
    name : str, default "dossier"
        File stem: letters, digits, ``_ . + -``.

    Returns
    -------
    list of Path
        The files written.
    """
    from lmsbayes.files import atomic_write_text

    if not _SAFE_NAME.fullmatch(name):
        raise OptionError(f"dossier name must be letters, digits, _ . + -; got {name!r}")
    out = Path(out_dir)
    paths = [out / f"{name}.html", out / f"{name}.json"]
    atomic_write_text(paths[0], d.to_html())
    atomic_write_text(paths[1], d.to_json())
    return paths
