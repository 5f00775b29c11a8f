"""What a row of the threshold table says, in words a clinician cannot misread.

:func:`lmsbayes.predict.threshold_table` gives one row per setting and landmark with the
numbers and the evidence counts. This module turns a row into words, once, for every place
that shows it (the CLI, the HTML report, the evidence dossier, the Python table's repr):

* :func:`informed_by`: "direct: 9 arms in this cell (685 patients)" or "model-based: no arm in
  this cell; from the line, class and uterine effects (sd ratio 0.15)";
* :func:`readable`: the table with percentages and credible intervals as text, at most seven
  columns, the flags last;
* :func:`caveats`: every flagged row's flag, one line each;
* :func:`quotable`: the rows a protocol can quote (direct evidence, no extrapolation flag).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

__all__ = ["caveats", "informed_by", "quotable", "readable"]


def _num(v: Any) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return math.nan
    return x


def _is_case_mix(row: Mapping[str, Any]) -> bool:
    return "case mix" in str(row.get("setting", ""))


def informed_by(row: Mapping[str, Any]) -> str:
    """How a row is informed, in words: direct (arms of its cell) or model-based.

    Parameters
    ----------
    row : mapping
        A row of :func:`lmsbayes.predict.threshold_table` (``arms``, ``patients``,
        ``arms_unknown_site``, ``sd_ratio``, ``setting``).

    Returns
    -------
    str
    """
    arms = int(_num(row.get("arms", 0)) or 0)
    patients = _num(row.get("patients"))
    unknown = int(_num(row.get("arms_unknown_site", 0)) or 0)
    sd = _num(row.get("sd_ratio"))
    pts = f", {patients:.0f} patients" if math.isfinite(patients) and patients > 0 else ""
    if _is_case_mix(row):
        return (
            f"direct: the {arms} arms of this line{pts}, averaged over their case mix "
            "(no sd ratio: an average over the line's cells, not one cell)"
        )
    extra = f" (+{unknown} of unknown uterine fraction)" if unknown else ""
    curves = str(row.get("curves", "") or "")
    if curves and curves != "nan":  # curve arms: their evidence is the reconstructed curve
        extra += f" [{curves}]"
    ratio = f"; sd ratio {sd:.2f}" if math.isfinite(sd) else ""
    if arms > 0:
        s = "" if arms == 1 else "s"
        return f"direct: {arms} arm{s} in this cell{pts}{extra}{ratio}"
    return (
        "model-based: no arm in this cell; from the line, class and uterine effects of the "
        f"other arms{extra}{ratio}"
    )


def _pct(v: Any) -> str:
    x = _num(v)
    return "" if not math.isfinite(x) else f"{100 * x:.0f}%"


def _ci(row: Mapping[str, Any], q: str) -> str:
    mid, lo, hi = (_num(row.get(k)) for k in (q, f"{q}_lower", f"{q}_upper"))
    if not math.isfinite(mid):
        return ""
    return f"{100 * mid:.0f}% ({100 * lo:.0f}-{100 * hi:.0f})"


def _eortc(value: float, ci: str) -> str:
    """The published pooled rate with its CI, as percentages ("58% (50-66)")."""
    if not math.isfinite(value):
        return ""
    try:
        lo, hi = (float(x) for x in ci.split("-"))
    except ValueError:
        return f"{100 * value:.0f}%"
    return f"{100 * value:.0f}% ({100 * lo:.0f}-{100 * hi:.0f})"


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """The threshold table for reading: rates as percentages with 95% CrIs, evidence in words.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`lmsbayes.predict.threshold_table`.

    Returns
    -------
    pandas.DataFrame
        Columns: setting, landmark, p0 (95% CrI), p1 (95% CrI) with the HR in its name,
        EORTC 2021 (where comparable), informed by, flags.
    """
    hr = table["hr"].iloc[0] if "hr" in table and len(table) else math.nan
    p1_name = f"p1 = p0^{_num(hr):g} (95% CrI)" if math.isfinite(_num(hr)) else "p1 (95% CrI)"
    rows = []
    for _, r in table.iterrows():
        eortc = _num(r.get("eortc_p0"))
        rows.append(
            {
                "setting": str(r.get("setting", "")),
                "landmark": f"{_num(r.get('landmark')):g} mo",
                "p0 (95% CrI)": _ci(r, "p0"),
                p1_name: _ci(r, "p1"),
                "EORTC 2021": _eortc(eortc, str(r.get("eortc_p0_ci", "") or "")),
                "informed by": informed_by(r),
                "flags": str(r.get("flags", "") or ""),
            }
        )
    return pd.DataFrame(rows)


def caveats(table: pd.DataFrame) -> list[str]:
    """One line per flagged row: "2L+ R-T (6 mo): rests on 0 arms ..."."""
    out = []
    for _, r in table.iterrows():
        flags = str(r.get("flags", "") or "").strip()
        if flags:
            out.append(f"{r.get('setting')} ({_num(r.get('landmark')):g} mo): {flags}")
    return out


def quotable(table: pd.DataFrame) -> pd.DataFrame:
    """Rows a protocol can quote: informed directly by arms of their cell, and not flagged."""
    keep = []
    for _i, r in table.iterrows():
        direct = _is_case_mix(r) or int(_num(r.get("arms", 0)) or 0) > 0
        keep.append(direct and not str(r.get("flags", "") or "").strip())
    return table.loc[keep]
