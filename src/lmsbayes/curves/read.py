"""Read and validate one digitised Kaplan-Meier curve (one arm).

File format
-----------
One TOML file per arm names the digitised points and holds the rest::

    arm_id = "LMS-XX-doxo"           # the arm this curve belongs to
    time_unit = "months"             # months | weeks | days | years (converted to months)
    points = "doxo_points.csv"       # path relative to this file
    s_scale = "percent"              # "fraction" (S in [0, 1], default) or "percent"
    total_events = 120               # optional: total number of events in the arm
    source = "PMID ...; Figure 2A; digitised by ... with WebPlotDigitizer 4.6"

    truncate = 24                    # optional: a model censors the curve here (time unit)

    [risk_table]                     # the numbers at risk printed under the figure
    t = [0, 3, 6, 9, 12]
    n = [150, 110, 71, 40, 22]

    [arm]                            # optional: an arm the data table does not hold
    year = 2020                      # (columns of the arm table; year, line and
    line = "2L+"                     # treatment_class required; lmsbayes.model.curve_arms)
    treatment_class = "NR-T"

The points file is what WebPlotDigitizer's "Download .CSV" gives: one point
per line, ``t,S`` (comma, semicolon or tab separated), no header or a one-line
header; a point's order in the file does not matter beyond the tolerance below.

Digitising tolerance
--------------------
A reader's clicks on a printed curve are off by a pixel or two and a vertical
drop is often clicked slightly to the left of the previous point. Within
:data:`S_TOLERANCE` (absolute, on S) and :data:`T_TOLERANCE` (fraction of the
time axis' range) such noise is cleaned up, and the clean-up is reported
(:class:`Cleanup`): S is made non-increasing by isotonic regression (pool
adjacent violators, equal weights), points within the tolerance outside [0, 1]
are clipped, and times within the tolerance out of order are sorted. A rise of S
is noise when a time shift within :data:`T_TOLERANCE` and a change of S within
:data:`S_TOLERANCE` explain it (clicks on two close steps easily swap their order in
time); anything larger is an error naming the file, the row and the value. 0.02 on S is six to
eight pixels on a typical 300-400 pixel tall axis, several times a click's error, and a rise of
that size is no digitising noise: a Kaplan-Meier curve never rises. 2% of the time range is
twelve pixels on a 600 pixel wide axis the curve spans, and more pixels than that when the
curve ends before the axis does (then a click's error is a larger share of the range: with 1%,
simulated readers' clicks, off by up to a pixel, were refused on curves ending at a quarter of
the axis).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lmsbayes.errors import InputError
from lmsbayes.files import read_text

__all__ = [
    "S_TOLERANCE",
    "T_TOLERANCE",
    "TIME_UNITS",
    "Cleanup",
    "CurveArm",
    "curve_from_arrays",
    "isotonic_nonincreasing",
    "read_curve",
    "read_points",
]

#: Largest digitising noise on S (absolute) that is cleaned up instead of refused.
S_TOLERANCE = 0.02
#: Largest backward step in time (fraction of the time range) that is sorted instead of refused.
T_TOLERANCE = 0.02
#: Time units a curve may be given in -> months per unit (the package's time scale is months).
TIME_UNITS = {"months": 1.0, "weeks": 12.0 / 52.1775, "days": 12.0 / 365.25, "years": 12.0}

_KEYS = {
    "arm_id",
    "time_unit",
    "points",
    "s_scale",
    "total_events",
    "source",
    "risk_table",
    "truncate",
    "arm",
}


@dataclass(frozen=True)
class Cleanup:
    """What the digitising clean-up changed (all zero for a clean curve).

    Attributes
    ----------
    n_raised_or_lowered : int
        Points whose S the isotonic regression moved.
    max_s_change : float
        Largest absolute change of S by the isotonic regression or clipping.
    n_clipped : int
        Points moved into [0, 1] (within :data:`S_TOLERANCE`).
    n_reordered : int
        Points whose time was out of order (within :data:`T_TOLERANCE`) and were sorted.
    added_origin : bool
        Whether the point (0, 1) was added in front.
    added_at_risk_times : tuple of float
        Risk-table times where a point was added with the curve's value there, because no
        digitised point lay between that time and the next (the curve is flat there).
    unused_risk_rows : tuple of int
        Risk-table rows (1-based) after the curve's last digitised point: not used.
    """

    n_raised_or_lowered: int = 0
    max_s_change: float = 0.0
    n_clipped: int = 0
    n_reordered: int = 0
    added_origin: bool = False
    added_at_risk_times: tuple[float, ...] = ()
    unused_risk_rows: tuple[int, ...] = ()

    def lines(self) -> list[str]:
        """The clean-up in words, one line per change (empty for a clean curve)."""
        out = []
        if self.n_reordered:
            out.append(f"{self.n_reordered} points out of time order sorted")
        if self.n_raised_or_lowered:
            out.append(
                f"{self.n_raised_or_lowered} points made non-increasing by isotonic regression"
            )
        if self.n_clipped:
            out.append(f"{self.n_clipped} points clipped into [0, 1]")
        if self.max_s_change:
            out.append(f"largest change of S {self.max_s_change:.4f}")
        if self.added_origin:
            out.append("point (0, 1) added")
        if self.added_at_risk_times:
            times = ", ".join(f"{t:g}" for t in self.added_at_risk_times)
            out.append(f"flat-curve points added at risk-table times {times}")
        if self.unused_risk_rows:
            rows = ", ".join(str(r) for r in self.unused_risk_rows)
            out.append(f"risk-table rows {rows} lie after the curve's last point: not used")
        return out


@dataclass(frozen=True)
class CurveArm:
    """One arm's digitised Kaplan-Meier curve, validated and cleaned (times in months).

    Attributes
    ----------
    arm_id : str
    t, s : numpy.ndarray
        The cleaned points: times sorted (months), S non-increasing in [0, 1], first point (0, 1).
    risk_t, risk_n : numpy.ndarray
        The number-at-risk table used (months; integers), first time 0.
    total_events : int or None
    file : str
        Where the curve came from (a path, or a label for arrays).
    time_unit : str
        The unit of the input (converted to months here).
    source : str
        Provenance text from the file.
    cleanup : Cleanup
    raw_t, raw_s : numpy.ndarray
        The points as read (months, fraction scale), before the clean-up.
    """

    arm_id: str
    t: np.ndarray
    s: np.ndarray
    risk_t: np.ndarray
    risk_n: np.ndarray
    total_events: int | None
    file: str
    time_unit: str = "months"
    source: str = ""
    cleanup: Cleanup = field(default_factory=Cleanup)
    raw_t: np.ndarray | None = None
    raw_s: np.ndarray | None = None
    truncate: float | None = None
    arm: tuple = ()

    @property
    def n(self) -> int:
        """Patients in the arm (the number at risk at time 0)."""
        return int(self.risk_n[0])


def isotonic_nonincreasing(y: np.ndarray) -> np.ndarray:
    """Least-squares non-increasing fit to ``y`` (pool adjacent violators, equal weights).

    Parameters
    ----------
    y : numpy.ndarray
        Values in their order (here S at increasing times).

    Returns
    -------
    numpy.ndarray
        The closest non-increasing sequence in the squared-error sense.
    """
    # PAVA on -y for a non-decreasing fit: blocks of (mean, size), merged while they violate
    means: list[float] = []
    sizes: list[int] = []
    for v in -np.asarray(y, dtype=float):
        means.append(float(v))
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            m2, s2 = means.pop(), sizes.pop()
            m1, s1 = means.pop(), sizes.pop()
            means.append((m1 * s1 + m2 * s2) / (s1 + s2))
            sizes.append(s1 + s2)
    return -np.repeat(means, sizes)


def _number_fields(line: str) -> list[str]:
    for sep in (",", ";", "\t"):
        if sep in line:
            return [f.strip() for f in line.split(sep)]
    return line.split()


def read_points(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a digitiser's CSV export: one ``t,S`` point per line, optional one-line header.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Times and S values as written (no scaling, no checks of order or range).

    Raises
    ------
    InputError
        Naming the file, the line and the value of a field that is not a finite number,
        or a line without exactly two fields.
    """
    text = read_text(path, what="digitised points")
    ts, ss = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = _number_fields(line)
        fields = fields[:-1] if len(fields) == 3 and fields[-1] == "" else fields
        if len(fields) != 2:
            raise InputError(
                f"{path}: line {lineno}: a point has two fields, t and S; got {line.strip()!r}"
            )
        try:
            t, s = float(fields[0]), float(fields[1])
        except ValueError:
            if not ts and lineno == min(i for i, x in enumerate(text.splitlines(), 1) if x.strip()):
                continue  # a header line
            raise InputError(
                f"{path}: line {lineno}: t and S must be numbers, got {line.strip()!r}"
            ) from None
        if not (math.isfinite(t) and math.isfinite(s)):
            raise InputError(f"{path}: line {lineno}: t and S must be finite, got {line.strip()!r}")
        ts.append(t)
        ss.append(s)
    if len(ts) < 2:
        raise InputError(f"{path}: a curve needs at least 2 digitised points, got {len(ts)}")
    return np.array(ts), np.array(ss)


def _check_points(t, s, where: str, rows: np.ndarray):
    """Sort and clean (t, s) within the tolerance; raise naming the row otherwise."""
    span = float(np.max(t) - min(0.0, float(np.min(t))))
    span = span if span > 0 else 1.0
    for i in range(len(t)):
        if t[i] < -T_TOLERANCE * span:
            raise InputError(f"{where}: row {rows[i]}: time must be >= 0, got t = {t[i]:g}")
        if not (-S_TOLERANCE <= s[i] <= 1 + S_TOLERANCE):
            raise InputError(
                f"{where}: row {rows[i]}: S = {s[i]:g} lies outside [0, 1] "
                f"by more than the digitising tolerance {S_TOLERANCE}"
            )
    running_max = np.maximum.accumulate(t)
    back = running_max - t
    for i in np.flatnonzero(back > T_TOLERANCE * span):
        raise InputError(
            f"{where}: row {rows[i]}: times unsorted: t = {t[i]:g} after t = {running_max[i]:g} "
            f"(more than {T_TOLERANCE:.0%} of the time range back; sort the points or check the "
            f"file)"
        )
    n_reordered = int(np.sum(back > 0))
    order = np.lexsort((-s, t))  # at equal times, the higher S first (a vertical drop)
    t, s, rows = t[order], s[order], rows[order]
    t = np.maximum(t, 0.0)
    # a rise is an error when no time shift within the tolerance explains it: compare each point
    # with the lowest S digitised more than the time tolerance before it
    running_min = np.minimum.accumulate(s)
    earlier = np.searchsorted(t, t - T_TOLERANCE * span, side="left") - 1
    floor = np.where(earlier >= 0, running_min[np.maximum(earlier, 0)], 1.0)
    for i in np.flatnonzero(s - floor > S_TOLERANCE):
        raise InputError(
            f"{where}: row {rows[i]}: S rises from {floor[i]:g} to {s[i]:g} at t = {t[i]:g} "
            f"(non-monotone by more than the digitising tolerance {S_TOLERANCE} on S and "
            f"{T_TOLERANCE:.0%} of the time range); a Kaplan-Meier curve never rises: check this "
            f"point"
        )
    clipped = np.clip(s, 0.0, 1.0)
    n_clipped = int(np.sum(clipped != s))
    iso = np.clip(isotonic_nonincreasing(clipped), 0.0, 1.0)
    moved = np.abs(iso - clipped) > 1e-12
    max_change = float(np.max(np.abs(iso - s))) if len(s) else 0.0
    return t, iso, n_reordered, int(np.sum(moved)), n_clipped, max_change


def _check_risk(risk_t, risk_n, where: str):
    if len(risk_t) != len(risk_n):
        raise InputError(
            f"{where}: risk_table: t and n must have the same length, got {len(risk_t)} and "
            f"{len(risk_n)}"
        )
    if len(risk_t) == 0:
        raise InputError(f"{where}: risk_table: needs at least the number at risk at time 0")
    for i, (t, n) in enumerate(zip(risk_t, risk_n, strict=True), start=1):
        if isinstance(t, bool) or not (isinstance(t, numbers.Real) and math.isfinite(t) and t >= 0):
            raise InputError(f"{where}: risk_table row {i}: t must be a number >= 0, got {t!r}")
        if isinstance(n, bool) or not (
            isinstance(n, numbers.Integral)
            or (isinstance(n, numbers.Real) and float(n).is_integer())
        ):
            raise InputError(f"{where}: risk_table row {i}: n must be a whole number, got {n!r}")
        if n < 0:
            raise InputError(f"{where}: risk_table row {i}: n must be >= 0, got {n!r}")
    rt = np.asarray(risk_t, dtype=float)
    rn = np.asarray(risk_n, dtype=float).astype(int)
    if rt[0] != 0:
        raise InputError(
            f"{where}: risk_table row 1: the first time must be 0 (the arm's patients), got "
            f"{rt[0]:g}"
        )
    if rn[0] < 1:
        raise InputError(f"{where}: risk_table row 1: n at time 0 must be >= 1, got {rn[0]}")
    for i in range(1, len(rt)):
        if rt[i] <= rt[i - 1]:
            raise InputError(
                f"{where}: risk_table row {i + 1}: times must increase, got t = {rt[i]:g} after "
                f"{rt[i - 1]:g}"
            )
        if rn[i] > rn[i - 1]:
            raise InputError(
                f"{where}: risk_table row {i + 1}: numbers at risk never increase, got n = {rn[i]} "
                f"after {rn[i - 1]}"
            )
    return rt, rn


def _step_value(t, s, x: float, left: bool) -> float:
    """The step function through the points at x (its left limit when ``left``)."""
    idx = np.searchsorted(t, x, side="left" if left else "right") - 1
    return float(s[idx]) if idx >= 0 else 1.0


def curve_from_arrays(
    t,
    s,
    risk_t,
    risk_n,
    *,
    arm_id: str = "arm",
    total_events: int | None = None,
    file: str = "<arrays>",
    time_unit: str = "months",
    source: str = "",
    s_scale: str = "fraction",
    table_file: str | None = None,
) -> CurveArm:
    """Validate and clean a digitised curve given as arrays.

    Parameters
    ----------
    t, s : array-like
        Digitised points in the digitiser's order; S on the scale ``s_scale``.
    risk_t, risk_n : sequence
        The number-at-risk table (first time 0).
    arm_id : str
    total_events : int, optional
    file : str
        How errors name the input.
    time_unit : {"months", "weeks", "days", "years"}
        Unit of ``t`` and ``risk_t``; converted to months.
    source : str
    s_scale : {"fraction", "percent"}
    table_file : str, optional
        How errors about the risk table and total events name their file (default ``file``).

    Returns
    -------
    CurveArm

    Raises
    ------
    InputError
        One message naming the file, row and value: S outside [0, 1] or rising by more
        than :data:`S_TOLERANCE`, times out of order by more than :data:`T_TOLERANCE` of the
        range, a bad risk table, a risk table the curve cannot have (more patients at risk
        than the curve leaves), or total events impossible for the table.
    """
    if time_unit not in TIME_UNITS:
        raise InputError(
            f"{table_file or file}: time_unit must be one of {sorted(TIME_UNITS)}, got "
            f"{time_unit!r}"
        )
    if s_scale not in ("fraction", "percent"):
        raise InputError(
            f"{table_file or file}: s_scale must be 'fraction' or 'percent', got {s_scale!r}"
        )
    f = TIME_UNITS[time_unit]
    raw_t = np.asarray(t, dtype=float) * f
    raw_s = np.asarray(s, dtype=float) / (100.0 if s_scale == "percent" else 1.0)
    if raw_t.shape != raw_s.shape or raw_t.ndim != 1 or len(raw_t) < 2:
        raise InputError(f"{file}: t and S must be two equal-length lists of >= 2 points")
    if not (np.all(np.isfinite(raw_t)) and np.all(np.isfinite(raw_s))):
        raise InputError(f"{file}: t and S must be finite numbers")
    rows = np.arange(1, len(raw_t) + 1)
    ct, cs, n_reordered, n_moved, n_clipped, max_change = _check_points(raw_t, raw_s, file, rows)
    tfile = file if table_file is None else table_file
    rt, rn = _check_risk(list(risk_t), list(risk_n), tfile)
    rt = rt * f

    added_origin = not (ct[0] == 0 and cs[0] == 1)
    if added_origin:
        ct, cs = np.r_[0.0, ct], np.r_[1.0, cs]
    # the risk table against the curve: n(t) <= n0 S(t-) holds for every Kaplan-Meier curve
    # (censoring lowers n(t) and leaves S alone); the slack is the digitising tolerance
    n0 = int(rn[0])
    for i in range(1, len(rt)):
        if rt[i] > ct[-1]:
            continue
        s_left = _step_value(ct, cs, rt[i], left=True)
        bound = n0 * (s_left + S_TOLERANCE) + 1
        if rn[i] > bound:
            raise InputError(
                f"{tfile}: risk_table row {i + 1}: {rn[i]} at risk at t = {rt[i] / f:g} "
                f"{time_unit} is inconsistent with the curve: S = {s_left:.3f} just before leaves "
                f"at most {math.floor(bound)} of {n0} patients at risk (n(t) <= n0 S(t-), within "
                f"the digitising tolerance {S_TOLERANCE})"
            )
    unused = tuple(int(i + 1) for i in range(len(rt)) if rt[i] > ct[-1])
    keep = rt <= ct[-1]
    rt_used, rn_used = rt[keep], rn[keep]
    # an interval of the table without a digitised point: the curve is flat there, so a point at
    # the risk time with the curve's value carries it (the reconstruction needs one per interval)
    added = []
    for i in range(1, len(rt_used)):
        hi = rt_used[i + 1] if i + 1 < len(rt_used) else np.inf
        if not np.any((ct >= rt_used[i]) & (ct < hi)):
            v = _step_value(ct, cs, rt_used[i], left=False)
            j = np.searchsorted(ct, rt_used[i], side="right")
            ct, cs = np.insert(ct, j, rt_used[i]), np.insert(cs, j, v)
            added.append(float(rt_used[i] / f))
    if total_events is not None:
        if isinstance(total_events, bool) or not isinstance(total_events, numbers.Integral):
            raise InputError(f"{tfile}: total_events must be a whole number, got {total_events!r}")
        if not (0 <= total_events <= n0):
            raise InputError(
                f"{tfile}: total_events must be between 0 and the {n0} patients, got {total_events}"
            )
    cleanup = Cleanup(
        n_raised_or_lowered=n_moved,
        max_s_change=max_change,
        n_clipped=n_clipped,
        n_reordered=n_reordered,
        added_origin=bool(added_origin),
        added_at_risk_times=tuple(added),
        unused_risk_rows=unused,
    )
    return CurveArm(
        arm_id=str(arm_id),
        t=ct,
        s=cs,
        risk_t=rt_used,
        risk_n=rn_used,
        total_events=total_events,
        file=str(file),
        time_unit=time_unit,
        source=source,
        cleanup=cleanup,
        raw_t=raw_t,
        raw_s=raw_s,
    )


def read_curve(path: str | Path) -> CurveArm:
    """Read one arm's curve file (TOML, see the module docstring) and its points CSV.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    CurveArm

    Raises
    ------
    InputError
        An unknown or missing key, a bad value, or a digitising problem beyond the tolerance,
        naming the file, the row and the value.
    """
    path = Path(path)
    text = read_text(path, what="curve")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise InputError(f"{path}: unknown key {unknown[0]!r}; the keys are {sorted(_KEYS)}")
    for key in ("arm_id", "points", "risk_table"):
        if key not in doc:
            raise InputError(f"{path}: missing key {key!r}")
    table = doc["risk_table"]
    if not isinstance(table, dict) or set(table) != {"t", "n"}:
        raise InputError(f"{path}: [risk_table] must hold exactly two lists, t and n")
    if not (isinstance(table["t"], list) and isinstance(table["n"], list)):
        raise InputError(f"{path}: [risk_table] t and n must be lists")
    points = path.parent / str(doc["points"])
    t, s = read_points(points)
    unit = str(doc.get("time_unit", "months"))
    truncate = doc.get("truncate")
    if truncate is not None:
        ok = isinstance(truncate, (int, float)) and not isinstance(truncate, bool)
        if not (ok and math.isfinite(truncate) and truncate > 0):
            raise InputError(f"{path}: truncate must be a time > 0, got {truncate!r}")
        truncate = float(truncate) * TIME_UNITS.get(unit, math.nan)
    arm = doc.get("arm", {})
    if not isinstance(arm, dict):
        raise InputError(f"{path}: [arm] must be a table of arm-table columns, got {arm!r}")
    for key, value in arm.items():
        if not isinstance(value, (str, int, float, bool)):
            raise InputError(f"{path}: [arm] {key} must be a number or a string, got {value!r}")
    curve = curve_from_arrays(
        t,
        s,
        table["t"],
        table["n"],
        arm_id=str(doc["arm_id"]),
        total_events=doc.get("total_events"),
        file=str(points),
        time_unit=str(doc.get("time_unit", "months")),
        source=str(doc.get("source", "")),
        s_scale=str(doc.get("s_scale", "fraction")),
        table_file=str(path),
    )
    return dataclasses.replace(curve, truncate=truncate, arm=tuple(sorted(arm.items())))
