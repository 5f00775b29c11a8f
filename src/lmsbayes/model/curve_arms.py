"""Curve arms: digitised Kaplan-Meier curves as the data of their arms (spec ``[data] curves``).

Each curve file (:mod:`lmsbayes.curves.read`) names its arm. Its patients are rebuilt by
Guyot's algorithm (:mod:`lmsbayes.curves.reconstruct`) and enter the survival likelihood as
interval-censored events (between the previous digitised time and their own) and
right-censored censorings on the arm's curve, grouped (:func:`lmsbayes.curves.likelihood.group`):
the family's curve terms (:meth:`lmsbayes.model.families.SurvivalCurve.curve_terms`).

One source per arm: the curve replaces the arm's median and reported rates (they come from the
same curve and are not counted again; each is listed as excluded with the reason), or adds the
arm when the table does not hold it (from the file's ``[arm]`` table). Before the pooled fit
each curve arm is fitted alone on the spec's curve and checked
(:func:`lmsbayes.curves.fit.fit_arm`): a long curve that the family does not describe can pull
a shared shape, hence the check in the fit's output, the truncation (``truncate`` in the file
or ``[data] curve_truncate``) and ``[model] curve_shape = "own"``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lmsbayes.errors import InputError

__all__ = [
    "CurveData",
    "add_curve_arms",
    "curve_files",
    "data_sha256",
    "evidence_label",
    "load_curves",
    "summary",
    "summary_lines",
]

#: arm-table columns a curve file's [arm] table must give for an arm the table does not hold
REQUIRED_ARM_KEYS = ("year", "line", "treatment_class")


@dataclass(frozen=True)
class CurveData:
    """One curve arm, ready for the model.

    Attributes
    ----------
    arm_id : str
    file : str
        The curve file.
    n : int
        Patients (number at risk at 0).
    events : int
        Reconstructed events (after truncation).
    truncate : float or None
        Months at which the curve was censored.
    rows : pandas.DataFrame
        Grouped patients: ``lower``, ``upper`` (months), ``event`` (1: event in (lower,
        upper]; 0: censored at upper), ``count``.
    check : lmsbayes.curves.fit.ArmFit
        The arm's own fit on the spec's curve and its goodness-of-fit check.
    accuracy : dict
        The reconstruction against the digitised points (max and RMS distance).
    source : str
    arm : tuple
        The file's [arm] table.
    sha256 : str
        Of the curve file and its points file (a fit's data hash includes it).
    """

    arm_id: str
    file: str
    n: int
    events: int
    truncate: float | None
    rows: pd.DataFrame
    check: object
    accuracy: dict
    source: str
    arm: tuple
    sha256: str = ""


def evidence_label(n: int) -> str:
    """How a curve arm's evidence reads in tables: "curve (reconstructed, 150 patients)"."""
    return f"curve (reconstructed, {int(n)} patients)"


def curve_files(paths) -> list[Path]:
    """The curve files of ``[data] curves``: files as given, directories' ``*.toml`` sorted.

    Raises
    ------
    InputError
        A path that does not exist, or a directory without curve files.
    """
    out: list[Path] = []
    for p in paths:
        q = Path(p)
        if q.is_dir():
            found = sorted(q.glob("*.toml"))
            if not found:
                raise InputError(f"[data] curves: the directory {q} holds no curve file (*.toml)")
            out.extend(found)
        elif q.is_file():
            out.append(q)
        else:
            raise InputError(f"[data] curves: no curve file or directory {str(q)!r}")
    return out


def load_curves(paths, curve, t_ref: float, truncate_all: float = 0.0) -> list[CurveData]:
    """Read, reconstruct, truncate, group and check every curve of ``[data] curves``.

    Parameters
    ----------
    paths : sequence of str
        Files or directories (``[data] curves``, already resolved against the spec's folder).
    curve : lmsbayes.model.families.SurvivalCurve
        The spec's curve (the check fits each arm on it).
    t_ref : float
    truncate_all : float
        ``[data] curve_truncate`` (0: none); a file's own ``truncate`` takes precedence.

    Returns
    -------
    list of CurveData
        In file order.

    Raises
    ------
    InputError
        A bad curve file (naming file, row and value), or two curves for one arm.
    """
    from lmsbayes.curves.fit import fit_arm, truncate
    from lmsbayes.curves.likelihood import group
    from lmsbayes.curves.read import read_curve
    from lmsbayes.curves.reconstruct import reconstruct

    out: list[CurveData] = []
    seen: dict[str, str] = {}
    for f in curve_files(paths):
        c = read_curve(f)
        if c.arm_id in seen:
            raise InputError(
                f"{f}: arm {c.arm_id!r} already has a curve ({seen[c.arm_id]}); one source per arm"
            )
        seen[c.arm_id] = str(f)
        rec = reconstruct(c)
        t_max = c.truncate if c.truncate is not None else (truncate_all or None)
        time, event, lower = rec.time, rec.event, rec.lower
        if t_max is not None:
            time, event, lower = truncate(time, event, lower, t_max)
        g = group(lower, time, event)
        rows = pd.DataFrame(
            {"lower": g.lower, "upper": g.upper, "event": g.event, "count": g.count}
        )
        out.append(
            CurveData(
                arm_id=c.arm_id,
                file=str(f),
                n=c.n,
                events=int(np.sum(event)),
                truncate=t_max,
                rows=rows,
                # 61 points per dimension: the check needs the posterior mean, not its tails
                check=fit_arm(rec, family=curve.curve, t_ref=t_ref, t_max=t_max, points=61),
                accuracy=rec.accuracy(),
                source=c.source,
                arm=c.arm,
                sha256=hashlib.sha256(Path(f).read_bytes() + Path(c.file).read_bytes()).hexdigest(),
            )
        )
    return out


def data_sha256(tables_sha256: str, curves: list[CurveData]) -> str:
    """The data hash of a fit with curve arms: the tables' and every curve's (file order)."""
    if not curves:
        return tables_sha256
    text = tables_sha256 + "".join(c.sha256 for c in curves)
    return hashlib.sha256(text.encode()).hexdigest()


def add_curve_arms(arms: pd.DataFrame, curves: list[CurveData]) -> pd.DataFrame:
    """The arm table with a row for every curve arm it does not hold (from the file's [arm]).

    The new row has the table's columns: ``n`` is the curve's patients, ``trial`` defaults to
    the arm id, ``evidence`` to 'publication', ``population`` to 'LMS', ``placebo`` to false;
    ``year``, ``line`` and ``treatment_class`` are required. A PMID or DOI (``pmid``,
    ``doi``) is needed where the spec requires an identifier.

    Raises
    ------
    InputError
        An [arm] table for an arm the table holds (it would be ignored), a missing required
        key, a key that is no column of the table, or an unknown line or class.
    """
    from lmsbayes.data import CLASSES, LINES

    have = set(arms["arm_id"].astype(str))
    new = []
    for c in curves:
        given = dict(c.arm)
        if c.arm_id in have:
            if given:
                raise InputError(
                    f"{c.file}: arm {c.arm_id!r} is in the data table; its [arm] table would be "
                    "ignored (the table's row describes the arm): remove it"
                )
            continue
        if not given:
            raise InputError(
                f"{c.file}: arm {c.arm_id!r} is not in the data table; give its description in "
                f"an [arm] table (at least {list(REQUIRED_ARM_KEYS)})"
            )
        missing = [k for k in REQUIRED_ARM_KEYS if k not in given]
        if missing:
            raise InputError(f"{c.file}: [arm] needs {missing} (arm {c.arm_id!r})")
        unknown = sorted(set(given) - set(arms.columns) - {"arm_id"})
        if unknown:
            raise InputError(
                f"{c.file}: [arm] {unknown[0]} is not a column of the arm table "
                f"(columns: {sorted(map(str, arms.columns))})"
            )
        if str(given["line"]) not in LINES:
            raise InputError(
                f"{c.file}: [arm] line must be one of {list(LINES)}, got {given['line']!r}"
            )
        if str(given["treatment_class"]) not in CLASSES:
            raise InputError(
                f"{c.file}: [arm] treatment_class must be one of {list(CLASSES)}, "
                f"got {given['treatment_class']!r}"
            )
        row = {
            "arm_id": c.arm_id,
            "trial": c.arm_id,
            "evidence": "publication",
            "population": "LMS",
            "placebo": False,
            "design": "single_arm",
            "agents": c.arm_id,
            **given,
            "n": c.n,
        }
        if "uterine_fraction" not in row and "n_uterine" in row:
            row["uterine_fraction"] = float(row["n_uterine"]) / c.n
        new.append(row)
    if not new:
        return arms
    add = pd.DataFrame(new)
    out = pd.concat([arms.astype(object), add.astype(object)], ignore_index=True)
    for col in arms.columns:  # the table's numeric columns stay numeric
        if pd.api.types.is_numeric_dtype(arms[col].dtype) and not pd.api.types.is_bool_dtype(
            arms[col].dtype
        ):
            out[col] = pd.to_numeric(out[col], errors="coerce")
            if pd.api.types.is_integer_dtype(arms[col].dtype):
                out[col] = out[col].astype("Int64")
    for col in ("uterine_fraction", "pfs_median_m", "pfs_median_lo", "pfs_median_hi"):
        if col in out:
            out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
    out["placebo"] = out["placebo"].astype(bool)
    return out


def summary(curves: list[CurveData], used: set[str]) -> pd.DataFrame:
    """One row per curve: what it is, whether it entered, and its goodness-of-fit check."""
    rows = []
    for c in curves:
        k = c.check
        rows.append(
            {
                "arm_id": c.arm_id,
                "file": c.file,
                "used": c.arm_id in used,
                "patients": c.n,
                "events": c.events,
                "truncate": c.truncate if c.truncate is not None else math.nan,
                "groups": len(c.rows),
                "max_abs": c.accuracy["max_abs"],
                "rms": c.accuracy["rms"],
                "eta": k.eta,
                "shape": k.shape,
                "chi2": k.chi2,
                "df": k.df,
                "p_value": k.p_value,
                "max_km_distance": k.max_km_distance,
                "source": c.source,
            }
        )
    return pd.DataFrame(rows)


def summary_lines(table: pd.DataFrame, curve_name: str = "") -> list[str]:
    """The curve arms in words (the fit's output): evidence, accuracy and goodness of fit."""
    out = []
    for r in table.to_dict("records"):
        trunc = f", truncated at {r['truncate']:g} months" if np.isfinite(r["truncate"]) else ""
        state = "enters the model" if r["used"] else "not used (its arm is excluded)"
        p = r["p_value"]
        verdict = (
            "poor fit: the family does not describe this curve (consider truncate or "
            "curve_shape = 'own')"
            if np.isfinite(p) and p < 0.05
            else "no evidence of misfit"
        )
        out.append(
            f"{r['arm_id']}: {evidence_label(r['patients'])}, {int(r['events'])} events"
            f"{trunc}; {state}"
        )
        out.append(
            f"  reconstruction vs digitised points: max {r['max_abs']:.4f}, RMS {r['rms']:.4f}; "
            f"own {curve_name} fit: shape {r['shape']:.2f}; goodness of fit X^2 {r['chi2']:.2f} "
            f"on {int(r['df'])} df, p = {p:.3f}: {verdict}"
        )
    return out
