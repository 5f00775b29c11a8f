"""Per-trial contrasts (log hazard ratios, log odds ratios) read and validated.

A contrast table has one row per trial (or per independent comparison) and a
``study`` column, and gives each estimate in one of two forms:

- ``estimate``, ``lower``, ``upper``: the ratio (HR, OR, RR) and its
  confidence interval as published (95 % unless a ``level`` column says
  otherwise). The analysis uses ``log(estimate)`` with the standard error
  ``(log upper - log lower) / (2 z)``, z the normal quantile of the level:
  the usual back-calculation from a Wald interval on the log scale.
- ``log_estimate``, ``se``: the log ratio and its standard error.

With ``measure="identity"`` the values are used on the scale given (a mean
difference, or a log ratio entered as ``estimate``); the CI is then taken to
be symmetric on that scale.

Any further columns (``pmid``, ``doi``, ``where``, ``n`` ...) are carried
along untouched, so every number keeps its source. A row whose ``exclude``
column is not blank (the reason, e.g. "95% CI not found in the publication")
is kept out of the analysis and listed in ``attrs["excluded"]``; its numbers
may be blank. Every problem found is
reported in one :class:`~lmsbayes.errors.InputError` that names the file,
the row (spreadsheet numbering: the header is row 1), the column and the
value; nothing is dropped or repaired silently.

The file is read by the one checked reader of every table
(:func:`lmsbayes.data.read_csv_cells`: size bound, UTF-8 with or without a
byte-order mark, comma-separated, strict quoting), and every number is
checked as text in plain decimal notation, finite, and in range before it
is used: a ratio (estimate, lower, upper) in [1e-6, 1e6], a log estimate
within +-log(1e6), a standard error in [1e-4, 100] on the log scale (so the
CI bounds of a row must differ: a standard error of 1e-300 would make one
trial's weight swamp the solver), and on the identity scale values within
+-1e6 and standard errors in [1e-6, 1e6].
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special

from lmsbayes.errors import InputError

__all__ = ["MEASURES", "read_contrasts", "contrast_table"]

#: Measures the package knows: ratio measures are analysed on the log scale.
MEASURES = {
    "HR": "hazard ratio",
    "OR": "odds ratio",
    "RR": "risk ratio",
    "identity": "estimate on the scale given (no transformation)",
}
_CI_COLS = ("estimate", "lower", "upper")
_SE_COLS = ("log_estimate", "se")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # as the other tables


def is_ratio(measure: str) -> bool:
    return measure != "identity"


def _check_measure(measure: str) -> str:
    if measure not in MEASURES:
        raise InputError(f"measure must be one of {sorted(MEASURES)}, got {measure!r}")
    return measure


def _z(level: float) -> float:
    return float(special.ndtri(0.5 + level / 2))


class _Problems:
    """Collects problems as 'file row R, column 'c': message' lines."""

    def __init__(self, source: str) -> None:
        self.source, self.lines = source, []

    def add(self, row: int | None, column: str | None, message: str) -> None:
        where = self.source
        if row is not None:
            where += f" row {row}" + (" (header)" if row == 1 else "")
        if column is not None:
            where += f", column {column!r}"
        self.lines.append(f"{where}: {message}")

    def raise_if_any(self) -> None:
        if len(self.lines) == 1:
            raise InputError(self.lines[0])
        if self.lines:
            raise InputError(
                f"{len(self.lines)} problems in the contrast table: " + "; ".join(self.lines)
            )


#: Accepted ranges: (ratio estimate and CI, |log estimate|, se) on the log scale ...
RATIO_RANGE = (1e-6, 1e6)
LOG_SE_RANGE = (1e-4, 100.0)
#: ... and (|value|, se) on the identity scale.
IDENTITY_ABS_MAX = 1e6
IDENTITY_SE_RANGE = (1e-6, 1e6)


def _number(text: str) -> float | None:
    """The cell as a finite float in plain decimal notation, else None.

    ``1_0``, ``nan``, ``inf`` are not.
    """
    from lmsbayes.data import parse_number

    x, err = parse_number(text, integer=False)
    return None if err or math.isnan(x) else x


def _not_a_number(text: str) -> str:
    from lmsbayes.data import parse_number

    err = parse_number(text, integer=False)[1]
    return err or f"not a number: {text[:57] + '...' if len(text) > 60 else text!r}"


def _read_rows(path: Path) -> tuple[list[str], list[list[str]], list[int], bytes]:
    from lmsbayes.data import read_csv_cells

    if not path.exists():
        raise InputError(f"{path}: no such file")
    return read_csv_cells(path, str(path), "contrast table")


def read_contrasts(path: str | os.PathLike[str], *, measure: str = "HR") -> pd.DataFrame:
    """Read and validate a CSV of per-trial contrasts.

    Parameters
    ----------
    path : path-like
        CSV file with a ``study`` column and, per row, either ``estimate``,
        ``lower``, ``upper`` (ratio and CI) or ``log_estimate``, ``se``.
        Optional ``level`` (CI level, default 0.95); other columns are kept.
    measure : {"HR", "OR", "RR", "identity"}
        What the ratios are; ratios are analysed on the log scale.

    Returns
    -------
    pandas.DataFrame
        See :func:`contrast_table`. ``attrs`` holds the path and the file's SHA-256.

    Raises
    ------
    lmsbayes.errors.InputError
        Naming file, row, column and value of every problem found.
    """
    path = Path(path)
    header, rows, numbers, raw = _read_rows(path)
    problems = _Problems(str(path))
    seen: dict[str, int] = {}
    for j, name in enumerate(header):
        if not name:
            problems.add(1, None, f"column {j + 1} has no name")
        elif _CONTROL.search(name):
            problems.add(1, None, f"column {j + 1} ({name[:40]!r}) holds a control character")
        elif name in seen:
            problems.add(1, name, f"duplicate column name (also column {seen[name] + 1})")
        else:
            seen[name] = j
    problems.raise_if_any()
    cells = {}
    for name, j in seen.items():
        cells[name] = [r[j] if j < len(r) else "" for r in rows]
    for i, r in enumerate(rows):
        if len(r) > len(header):
            problems.add(
                numbers[i], None, f"{len(r)} cells but the header names {len(header)} columns"
            )
        for j, c in enumerate(r):
            if _CONTROL.search(c):
                name = header[j] if j < len(header) else None
                problems.add(
                    numbers[i],
                    name,
                    f"holds the control character {_CONTROL.search(c)[0]!r} (is the file "
                    "binary or corrupted?)",
                )
    problems.raise_if_any()
    df = pd.DataFrame(cells, dtype=object)
    out = _validate(df, numbers, problems, measure)
    out.attrs.update(path=str(path), sha256=hashlib.sha256(raw).hexdigest())
    return out


def contrast_table(
    table: pd.DataFrame, *, measure: str = "HR", source: str = "<table>"
) -> pd.DataFrame:
    """Validate an in-memory contrast table (same rules as :func:`read_contrasts`).

    Parameters
    ----------
    table : pandas.DataFrame
        Columns as for :func:`read_contrasts`; numbers or strings.
    measure : {"HR", "OR", "RR", "identity"}
    source : str
        Name used in error messages (rows are numbered as in a spreadsheet: header = 1).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``study``, with ``yi`` (analysis scale, e.g. log HR) and
        ``sei`` (its standard error), ``estimate``, ``lower``, ``upper`` on the
        reported scale (derived from ``yi``, ``sei`` where the input gave those),
        ``level``, ``input`` (``"ci"`` or ``"se"``: which form the row gave), and the
        table's other columns. ``attrs["measure"]`` is the measure; ``attrs["excluded"]``
        lists the rows with an ``exclude`` reason (study, row, reason, and their other cells).
    """
    if not isinstance(table, pd.DataFrame):
        raise InputError(f"{source}: expected a pandas DataFrame, got {type(table).__name__}")
    df = table.reset_index(drop=True).copy()
    df = df.astype(object).where(df.notna(), "")
    df = df.map(
        lambda v: (
            v
            if isinstance(v, str)
            else repr(float(v))
            if isinstance(v, (int, float, np.number))
            else str(v)
        )
    )
    return _validate(df, [i + 2 for i in range(len(df))], _Problems(source), measure)


def _validate(
    df: pd.DataFrame, numbers: list[int], problems: _Problems, measure: str
) -> pd.DataFrame:
    measure = _check_measure(measure)
    ratio = is_ratio(measure)
    cols = set(df.columns)
    if "study" not in cols:
        problems.add(
            1, "study", f"missing (columns found: {', '.join(map(str, df.columns)) or 'none'})"
        )
    has_ci = [c for c in _CI_COLS if c in cols]
    has_se = [c for c in _SE_COLS if c in cols]
    if has_ci and len(has_ci) < 3:
        problems.add(
            1,
            [c for c in _CI_COLS if c not in cols][0],
            "missing: an estimate with a CI needs the columns estimate, lower, upper",
        )
    if has_se and len(has_se) < 2:
        problems.add(
            1,
            [c for c in _SE_COLS if c not in cols][0],
            "missing: a log estimate needs the columns log_estimate, se",
        )
    if not has_ci and not has_se:
        problems.add(
            1, "estimate", "missing: give estimate, lower, upper (ratio and CI) or log_estimate, se"
        )
    problems.raise_if_any()
    if len(df) == 0:
        problems.add(None, None, "no data rows")
        problems.raise_if_any()

    def cell(col, i):
        return str(df[col].iat[i]).strip() if col in cols else ""

    yi = np.full(len(df), np.nan)
    sei = np.full(len(df), np.nan)
    est = np.full(len(df), np.nan)
    lo = np.full(len(df), np.nan)
    hi = np.full(len(df), np.nan)
    level = np.full(len(df), 0.95)
    form = [""] * len(df)
    first: dict[str, int] = {}
    excluded: list[dict] = []
    for i in range(len(df)):
        row = numbers[i]
        study = cell("study", i)
        if not study:
            problems.add(row, "study", "blank: every row needs a study label")
        elif study in first:
            problems.add(row, "study", f"duplicate study {study!r} (first in row {first[study]})")
        else:
            first[study] = row
        if cell("exclude", i):
            excluded.append(
                {
                    "study": study,
                    "row": row,
                    "reason": cell("exclude", i),
                    **{c: cell(c, i) for c in df.columns if c not in ("study", "exclude")},
                }
            )
            form[i] = "excluded"
            continue
        if "level" in cols and cell("level", i):
            lv = _number(cell("level", i))
            if lv is None or not 0.5 <= lv <= 0.999:
                problems.add(
                    row,
                    "level",
                    f"must be a CI level in [0.5, 0.999] such as 0.95, got {cell('level', i)!r}",
                )
                continue
            level[i] = lv
        ci_cells = [cell(c, i) for c in _CI_COLS]
        se_cells = [cell(c, i) for c in _SE_COLS]
        gave_ci, gave_se = any(ci_cells), any(se_cells)
        if gave_ci and gave_se:
            problems.add(
                row,
                "estimate" if ci_cells[0] else "lower",
                "gives both an estimate with CI and log_estimate/se; keep one form per row",
            )
            continue
        if not gave_ci and not gave_se:
            problems.add(row, "estimate", "blank: give estimate, lower, upper or log_estimate, se")
            continue
        if gave_ci:
            form[i] = "ci"
            vals = []
            for c, text in zip(_CI_COLS, ci_cells):
                x = _number(text)
                if not text:
                    problems.add(
                        row, c, "blank (an estimate with a CI needs estimate, lower and upper)"
                    )
                elif x is None:
                    problems.add(row, c, _not_a_number(text))
                elif ratio and x <= 0:
                    problems.add(row, c, f"a {MEASURES[measure]} must be > 0, got {text!r}")
                elif ratio and not RATIO_RANGE[0] <= x <= RATIO_RANGE[1]:
                    problems.add(
                        row,
                        c,
                        f"a {MEASURES[measure]} must be in [{RATIO_RANGE[0]:g}, "
                        f"{RATIO_RANGE[1]:g}], got {text!r}",
                    )
                elif not ratio and abs(x) > IDENTITY_ABS_MAX:
                    problems.add(row, c, f"must be within +-{IDENTITY_ABS_MAX:g}, got {text!r}")
                else:
                    vals.append(x)
                    continue
                vals.append(None)
            if None in vals:
                continue
            e, l, u = vals
            if not l < u:
                problems.add(
                    row, "lower", f"lower ({ci_cells[1]}) must be below upper ({ci_cells[2]})"
                )
                continue
            if not l <= e <= u:
                problems.add(
                    row,
                    "estimate",
                    f"the CI ({ci_cells[1]}, {ci_cells[2]}) does not contain "
                    f"the estimate {ci_cells[0]!r}",
                )
                continue
            z = _z(level[i])
            if ratio:
                y, se = math.log(e), (math.log(u) - math.log(l)) / (2 * z)
            else:
                y, se = e, (u - l) / (2 * z)
            low, high = LOG_SE_RANGE if ratio else IDENTITY_SE_RANGE
            if not low <= se <= high:
                problems.add(
                    row,
                    "lower",
                    f"the CI ({ci_cells[1]}, {ci_cells[2]}) gives a standard error of {se:.3g}"
                    f"{' on the log scale' if ratio else ''}, outside [{low:g}, {high:g}]: "
                    "check the bounds",
                )
                continue
            est[i], lo[i], hi[i] = e, l, u
            yi[i], sei[i] = y, se
        else:
            form[i] = "se"
            y, s = (_number(t) for t in se_cells)
            if not se_cells[0]:
                problems.add(
                    row, "log_estimate", "blank (a log estimate needs log_estimate and se)"
                )
            elif y is None:
                problems.add(row, "log_estimate", _not_a_number(se_cells[0]))
            elif abs(y) > (math.log(RATIO_RANGE[1]) if ratio else IDENTITY_ABS_MAX):
                bound = math.log(RATIO_RANGE[1]) if ratio else IDENTITY_ABS_MAX
                problems.add(
                    row, "log_estimate", f"must be within +-{bound:.4g}, got {se_cells[0]!r}"
                )
                y = None
            low, high = LOG_SE_RANGE if ratio else IDENTITY_SE_RANGE
            if not se_cells[1]:
                problems.add(row, "se", "blank (a log estimate needs log_estimate and se)")
            elif s is None:
                problems.add(row, "se", _not_a_number(se_cells[1]))
            elif s <= 0:
                problems.add(row, "se", f"a standard error must be > 0, got {se_cells[1]!r}")
            elif not low <= s <= high:
                problems.add(
                    row,
                    "se",
                    f"a standard error{' on the log scale' if ratio else ''} must be in "
                    f"[{low:g}, {high:g}], got {se_cells[1]!r}",
                )
                s = None
            if y is None or s is None or s <= 0:
                continue
            yi[i], sei[i] = y, s
            z = _z(level[i])
            tf = np.exp if ratio else (lambda v: v)
            est[i], lo[i], hi[i] = tf(y), tf(y - z * s), tf(y + z * s)
    keep = [i for i in range(len(df)) if form[i] != "excluded"]
    if not keep:
        problems.add(None, "exclude", f"every row is excluded ({len(df)} rows): nothing to analyse")
    problems.raise_if_any()
    extra = [c for c in df.columns if c not in {"study", "level", "exclude", *_CI_COLS, *_SE_COLS}]
    out = pd.DataFrame(
        {
            "yi": yi[keep],
            "sei": sei[keep],
            "estimate": est[keep],
            "lower": lo[keep],
            "upper": hi[keep],
            "level": level[keep],
            "input": [form[i] for i in keep],
        },
        index=pd.Index([cell("study", i) for i in keep], name="study"),
    )
    for c in extra:
        out[c] = [cell(c, i) for i in keep]
    out.attrs["measure"] = measure
    out.attrs["excluded"] = excluded
    return out
