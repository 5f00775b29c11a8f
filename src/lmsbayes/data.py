"""Load and validate the trial-arm table; turn it into a tidy arm x landmark table.

The arm table (``data/lms_trials.csv``, schema in ``data/README.md``) holds one
row per trial arm. :func:`load_trials` reads it as text, converts every column
itself and reports *all* problems at once as a :class:`DataValidationError`.
:func:`long_table` gives one row per (arm, landmark) with the rate, its
standard error on the logit scale, effective binomial data and, for arms that
cannot enter a model, the reason. The arithmetic lives in small numpy
functions (:func:`exponential_rate`, :func:`se_log_median`,
:func:`se_logit_from_median`, :func:`se_logit_from_ci`,
:func:`se_logit_binomial`, :func:`effective_binomial`).
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import importlib.resources
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from lmsbayes.errors import InputError

__all__ = [
    "DataValidationError",
    "Problem",
    "effective_binomial",
    "exponential_rate",
    "load_trials",
    "long_table",
    "se_log_median",
    "se_logit_binomial",
    "se_logit_from_ci",
    "se_logit_from_median",
]

Z95 = 1.959963984540054  # standard normal 97.5% quantile: a 95% CI spans 2 * Z95 se

LABELS: dict[str, tuple[str, ...]] = {
    "evidence": ("publication", "conference"),
    "design": ("single_arm", "randomized"),
    "treatment_class": ("R-T", "NR-T"),
    "line": ("1L", "2L+"),
    "population": ("LMS", "uLMS", "stLMS", "STS-LMS-subgroup", "L-sarcoma-LMS-subgroup"),
}
RATE_SOURCES = ("reported", "km_text")
REQUIRED = (
    "arm_id", "trial", "year", "evidence", "phase", "design", "arm", "agents",
    "placebo", "treatment_class", "line", "population",
)  # fmt: skip
INT_COLUMNS = ("year", "pmid", "n", "n_uterine", "pfs_events")
FLOAT_COLUMNS = ("pfs_median_m", "pfs_median_lo", "pfs_median_hi")
SCHEMA_LANDMARKS = (3, 6, 12)  # families always present in the output, blank if absent
_SCHEMA_ORDER = (
    "arm_id", "trial", "first_author", "year", "pmid", "doi", "source_url", "evidence",
    "phase", "design", "arm", "agents", "placebo", "treatment_class", "line", "population",
    "n", "n_uterine", "pfs_median_m", "pfs_median_lo", "pfs_median_hi", "pfs_events",
)  # fmt: skip
_RATE_FAMILY = re.compile(r"pfsr_(\d+)m(?:_(lo|hi|source))?")  # always used with fullmatch
_ARM_ID = re.compile(r"[a-z0-9_]+")
COVARIATES = (
    "trial", "year", "line", "treatment_class", "placebo", "population", "evidence",
    "design", "n", "uterine_fraction",
)  # fmt: skip


@dataclass(frozen=True)
class Problem:
    """One problem found in the arm table (``row`` is the spreadsheet row: header = 1)."""

    file: str
    row: int | None
    arm_id: str | None
    column: str | None
    value: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}"
        if self.row is not None:
            where += f" row {self.row}"
            where += " (header)" if self.row == 1 else f" (arm_id {self.arm_id!r})"
        if self.column is not None:
            where += f", column {self.column!r}"
        return f"{where}: {self.message}"


class DataValidationError(InputError):
    """The arm table has problems; ``.problems`` lists every one of them."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        n = len(self.problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{n} problem{'s' if n != 1 else ''} in the trial data:\n{lines}")

    def __reduce__(self):  # picklable (e.g. across processes) despite the custom signature
        return type(self), (self.problems,)


# ---------------------------------------------------------------------------- math


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def exponential_rate(median: np.ndarray, t: float | np.ndarray) -> np.ndarray:
    """Survival at ``t`` under an exponential model with the given median.

    Parameters
    ----------
    median : array_like
        Median survival time (> 0), same unit as ``t``.
    t : float or array_like
        Landmark time.

    Returns
    -------
    numpy.ndarray
        ``S(t) = 2 ** (-t / median)``.
    """
    return np.exp2(-np.asarray(t, dtype=float) / np.asarray(median, dtype=float))


def se_log_median(
    lo: np.ndarray, hi: np.ndarray, events: np.ndarray, n: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Standard error of log(median) from the best information available.

    In order of preference: the 95% CI of the median,
    ``(log hi - log lo) / (2 * 1.96)`` (method ``'median_ci'``); the number
    of events, ``1 / sqrt(d)`` (``'events'``, exact for the exponential MLE);
    the arm size, ``1 / sqrt(n)`` (``'n_approx'``, an optimistic approximation
    because d <= n).

    Parameters
    ----------
    lo, hi, events, n : array_like
        CI bounds of the median, progression events and patients; NaN = unknown.

    Returns
    -------
    se : numpy.ndarray
        NaN where nothing is usable.
    method : numpy.ndarray of str
        ``'median_ci'``, ``'events'``, ``'n_approx'`` or ``''``.
    """
    lo, hi, d, n = (np.asarray(x, dtype=float) for x in (lo, hi, events, n))
    ci_ok = (lo > 0) & (hi > lo)  # one-sided ("not reached") or degenerate CIs are unusable
    with np.errstate(invalid="ignore", divide="ignore"):
        se_ci = (np.log(hi) - np.log(lo)) / (2 * Z95)
        se_d, se_n = 1 / np.sqrt(d), 1 / np.sqrt(n)
    d_ok, n_ok = d >= 1, n >= 1
    se = np.select([ci_ok, d_ok, n_ok], [se_ci, se_d, se_n], np.nan)
    method = np.select([ci_ok, d_ok, n_ok], ["median_ci", "events", "n_approx"], "")
    return se, method


def se_logit_from_median(median: np.ndarray, t: float, se_log_med: np.ndarray) -> np.ndarray:
    """Logit-scale standard error of an exponential rate derived from a median.

    On the cloglog scale ``c = log(t ln 2) - log(median)``, so
    ``se_c = se(log median)``; the delta method from cloglog to logit gives
    ``se_logit = |log S| / (1 - S) * se_c``.

    Parameters
    ----------
    median : array_like
        Median (> 0).
    t : float
        Landmark (> 0), same unit as the median.
    se_log_med : array_like
        Standard error of log(median), see :func:`se_log_median`.

    Returns
    -------
    numpy.ndarray
    """
    s = exponential_rate(median, t)
    return np.abs(np.log(s)) / (1 - s) * np.asarray(se_log_med, dtype=float)


def se_logit_from_ci(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Logit-scale standard error of a rate from its 95% CI.

    ``(logit hi - logit lo) / (2 * 1.96)``; NaN unless ``0 < lo < hi < 1``
    (a bound at 0 or 1, or a degenerate interval, carries no logit width).

    Parameters
    ----------
    lo, hi : array_like
        CI bounds in [0, 1]; NaN = unknown.

    Returns
    -------
    numpy.ndarray
    """
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    ok = (lo > 0) & (hi < 1) & (hi > lo)
    with np.errstate(invalid="ignore", divide="ignore"):
        se = (_logit(hi) - _logit(lo)) / (2 * Z95)
    return np.where(ok, se, np.nan)


def se_logit_binomial(s: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Binomial logit-scale standard error ``1 / sqrt(n S (1 - S))``.

    At S = 0 or 1 the 0.5-corrected ``S' = (S n + 0.5) / (n + 1)`` is used so
    the standard error stays finite; the rate itself is not changed.

    Parameters
    ----------
    s, n : array_like
        Rate in [0, 1] and arm size (NaN = unknown, giving NaN).

    Returns
    -------
    numpy.ndarray
    """
    s, n = np.asarray(s, dtype=float), np.asarray(n, dtype=float)
    edge = (s == 0) | (s == 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(edge, (s * n + 0.5) / (n + 1), s)
        return np.where(n >= 1, 1 / np.sqrt(n * s * (1 - s)), np.nan)


def effective_binomial(
    s: np.ndarray, se_logit: np.ndarray, n: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Effective binomial data carrying the same information as (S, se_logit).

    ``n_eff = 1 / (se_logit^2 S (1 - S))``, capped at ``n`` where known
    (the data cannot be worth more patients than the arm had), rounded
    half up and at least 1; ``y_eff = round(S n_eff)``.

    Parameters
    ----------
    s, se_logit : array_like
        Rate and its logit-scale standard error.
    n : array_like, optional
        Arm size; NaN = unknown (no cap).

    Returns
    -------
    n_eff, y_eff : numpy.ndarray of float
        Whole numbers; NaN where ``s`` or ``se_logit`` is NaN.
    """
    s, se = np.asarray(s, dtype=float), np.asarray(se_logit, dtype=float)
    n = np.full_like(s, np.nan) if n is None else np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = 1 / (se**2 * s * (1 - s))  # inf at S = 0 or 1: the cap at n takes over
    raw = np.where(np.isnan(se) | np.isnan(s), np.nan, raw)
    capped = np.where(n >= 1, np.minimum(raw, n), raw)
    n_eff = np.maximum(np.floor(capped + 0.5), 1)
    n_eff = np.where(np.isfinite(capped), n_eff, np.nan)
    return n_eff, np.floor(s * n_eff + 0.5)


# ---------------------------------------------------------------------------- reading


def _unreadable(file: str, message: str, row: int | None = None) -> DataValidationError:
    return DataValidationError([Problem(file, row, None, None, None, message)])


def _read_cells(path, file: str) -> tuple[list[str], list[list[str]], list[int], bytes]:
    """Header, rows as stripped strings, their spreadsheet row numbers, and the raw bytes.

    ``path`` is a Path or an importlib.resources Traversable (the bundled file).
    """
    if not path.is_file():
        raise FileNotFoundError(f"trial data file not found: {file}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise _unreadable(file, f"not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:  # newline="" lets csv keep line breaks inside quoted cells (notes)
        rows = [[cell.strip() for cell in r] for r in csv.reader(io.StringIO(text, newline=""))]
    except csv.Error as err:
        raise _unreadable(file, f"not a readable CSV: {err}") from None
    if not rows:
        raise _unreadable(file, "file is empty (no header row)")
    if not any(rows[0]):
        raise _unreadable(file, "row is blank; expected the header", row=1)
    # blank records are not arms, but they keep their place in the spreadsheet numbering
    numbers = [k + 1 for k, r in enumerate(rows) if any(r) and k > 0]
    return rows[0], [rows[k - 1] for k in numbers], numbers, raw


def _column_order(columns: list[str]) -> list[str]:
    families = sorted(
        {int(m[1]) for c in columns if (m := _RATE_FAMILY.fullmatch(c))} | set(SCHEMA_LANDMARKS)
    )
    rate_cols = [f"pfsr_{t}m{sfx}" for t in families for sfx in ("", "_lo", "_hi", "_source")]
    known = [*_SCHEMA_ORDER, *rate_cols, "notes"]
    return known + [c for c in columns if c not in known]


def _parse_number(value: str, integer: bool) -> tuple[float, str | None]:
    """(number or NaN, error message or None) for one cell."""
    if value == "":
        return math.nan, None
    try:
        x = float(value)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        return math.nan, (
            f"must be {kind}, got {value!r} (text is not allowed in a numeric column: "
            "leave it blank and explain in 'notes')"
        )
    if not math.isfinite(x):
        return math.nan, f"must be a finite number, got {value!r} (leave unknown values blank)"
    if integer and not x.is_integer():
        return math.nan, f"must be a whole number, got {value!r}"
    return x, None


def _suggest(value: str, allowed: tuple[str, ...]) -> str:
    lower = {a.lower(): a for a in allowed}
    close = difflib.get_close_matches(value.lower(), list(lower), n=1, cutoff=0.6)
    return f"; did you mean {lower[close[0]]!r}?" if close else ""


# ---------------------------------------------------------------------------- validation

# pandas >= 3 has a real string dtype with NaN for missing; older pandas keeps object
_TEXT = "str" if int(pd.__version__.split(".")[0]) >= 3 else object
_CATEGORIES = {a: pd.CategoricalDtype(list(a)) for a in (*LABELS.values(), RATE_SOURCES)}


class _Collector:
    """Accumulates problems with their spreadsheet coordinates."""

    def __init__(self, file: str, cells: dict[str, np.ndarray], rows: list[int]) -> None:
        self.file, self.cells, self.rows, self.problems = file, cells, rows, []

    def add(self, i: int, column: str, message: str) -> None:
        arm_id = self.cells["arm_id"][i] if "arm_id" in self.cells else None
        value = self.cells[column][i] if column in self.cells else None
        self.problems.append(
            Problem(self.file, self.rows[i], arm_id or None, column, value, message)
        )

    def where(self, mask: np.ndarray, column: str, template: str) -> None:
        """Flag rows where ``mask``.

        ``template`` is formatted per row with ``value`` (the raw cell of
        ``column``) and ``row`` (the row's raw cells by column, '?' if blank).
        """
        for i in np.flatnonzero(mask):
            row = {c: x[i] or "?" for c, x in self.cells.items()}
            self.add(int(i), column, template.format(value=self.cells[column][i], row=row))


def _kind(col: str) -> str:
    m = _RATE_FAMILY.fullmatch(col)
    if col in INT_COLUMNS:
        return "int"
    if col in FLOAT_COLUMNS or (m and m[2] != "source"):
        return "float"
    if col in LABELS or m:
        return "label"
    return "bool" if col == "placebo" else "text"


def _convert(cells: dict[str, np.ndarray], out: _Collector) -> dict[str, np.ndarray]:
    """Typed arrays (floats with NaN, labels/text with None); cell problems go to ``out``."""
    typed = {}
    for col, values in cells.items():
        blank, kind = values == "", _kind(col)
        if col in REQUIRED:
            out.where(blank, col, "required value is blank")
        if kind in ("int", "float"):
            parsed = np.full(len(values), np.nan)
            for i, v in enumerate(values):
                parsed[i], err = _parse_number(v, integer=kind == "int")
                if err:
                    out.add(i, col, err)
            typed[col] = parsed
        elif kind == "label":
            allowed = LABELS.get(col, RATE_SOURCES)
            bad = ~blank & ~np.isin(values, allowed)
            for i in np.flatnonzero(bad):
                hint = _suggest(values[i], allowed)
                out.add(int(i), col, f"must be one of {list(allowed)}, got {values[i]!r}{hint}")
            typed[col] = np.where(blank | bad, None, values)
        elif kind == "bool":
            low = np.array([v.lower() for v in values], dtype=object)
            bad = ~blank & ~np.isin(low, ["true", "false"])
            out.where(bad, col, "must be 'true' or 'false', got {value!r}")
            typed[col] = low == "true"
        else:
            typed[col] = np.where(blank, None, values)
    return typed


def _check_rows(v: dict[str, np.ndarray], cells: dict[str, np.ndarray], out: _Collector) -> None:
    """Range and consistency checks across columns (on cells that parsed)."""
    ids = cells["arm_id"]
    bad_id = np.array([a != "" and not _ARM_ID.fullmatch(a) for a in ids], dtype=bool)
    out.where(bad_id, "arm_id", "must be lowercase [a-z0-9_]+, got {value!r}")
    first: dict[str, int] = {}
    for i, a in enumerate(ids):
        if a and a in first:
            out.add(i, "arm_id", f"duplicate arm_id {a!r} (first used in row {out.rows[first[a]]})")
        first.setdefault(a, i)

    n = v["n"]
    out.where(n < 1, "n", "must be >= 1, got {value!r}")
    for col in ("n_uterine", "pfs_events"):
        out.where(v[col] < 0, col, "must be >= 0, got {value!r}")
        out.where(v[col] > n, col, "must be <= n ({row[n]}), got {value!r}")
    nu, pop = v["n_uterine"], v["population"]
    ulms_mismatch = (pop == "uLMS") & (nu != n) & ~np.isnan(nu) & ~np.isnan(n)
    out.where(
        ulms_mismatch,
        "n_uterine",
        "population 'uLMS' needs n_uterine = n ({row[n]}), got {value!r}",
    )
    out.where(
        (pop == "stLMS") & (nu > 0),
        "n_uterine",
        "population 'stLMS' needs n_uterine = 0, got {value!r}",
    )

    out.where(v["pfs_median_m"] <= 0, "pfs_median_m", "must be > 0, got {value!r}")
    _check_interval(
        v, cells, out, "pfs_median_m", "pfs_median_lo", "pfs_median_hi", (0.0, math.inf)
    )
    for col in [c for c in v if (m := _RATE_FAMILY.fullmatch(c)) and m[2] is None]:
        _check_interval(v, cells, out, col, f"{col}_lo", f"{col}_hi", (0.0, 1.0))
        src = f"{col}_source"
        out.where(
            ~np.isnan(v[col]) & (cells[src] == ""),
            src,
            f"a rate is given in {col!r} ({{row[{col}]}}) but its source is blank; "
            f"must be one of {list(RATE_SOURCES)}",
        )
        out.where(
            (cells[col] == "") & (cells[src] != ""),
            src,
            f"source given without a rate in {col!r}, got {{value!r}}",
        )


def _check_interval(v, cells, out, est, lo, hi, bounds) -> None:
    """Estimate and CI inside ``bounds``, lo <= hi, lo <= estimate <= hi, no CI without estimate."""
    low, high = bounds
    for col in (est, lo, hi):
        if high < math.inf:
            out.where(
                (v[col] < low) | (v[col] > high),
                col,
                f"must be in [{low:g}, {high:g}], got {{value!r}}",
            )
        elif col != est:
            out.where(v[col] <= low, col, f"must be > {low:g}, got {{value!r}}")
    out.where(
        v[lo] > v[hi], lo, f"CI lower bound {{value}} exceeds upper bound {hi!r} = {{row[{hi}]}}"
    )
    out.where(
        (v[est] < v[lo]) | (v[est] > v[hi]),
        est,
        f"estimate {{value}} lies outside its 95% CI [{{row[{lo}]}}, {{row[{hi}]}}]",
    )
    for col in (lo, hi):
        out.where(
            (cells[est] == "") & ~np.isnan(v[col]),
            col,
            f"CI bound {{value}} given without the estimate {est!r}",
        )


def _frame(v: dict[str, np.ndarray]) -> pd.DataFrame:
    """The typed arrays as a DataFrame with the documented dtypes."""
    columns = {}
    for col, x in v.items():
        kind = _kind(col)
        if kind == "int":
            columns[col] = pd.array(x, dtype="Float64").astype("Int64")
        elif kind == "label":
            # from codes: validation already guaranteed every label is allowed (or None)
            allowed = LABELS.get(col, RATE_SOURCES)
            codes = [-1 if a is None else allowed.index(a) for a in x]
            columns[col] = pd.Categorical.from_codes(codes, dtype=_CATEGORIES[allowed])
        elif kind == "text":
            columns[col] = pd.Series(x, dtype=object).astype(_TEXT)
        else:
            columns[col] = x
    return pd.DataFrame(columns)


def _uterine_fraction(v: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore", divide="ignore"):
        counts = v["n_uterine"] / v["n"]
    pop = v["population"]
    by_pop = np.select([pop == "uLMS", pop == "stLMS"], [1.0, 0.0], np.nan)
    frac = np.where(np.isnan(counts), by_pop, counts)
    source = np.select([~np.isnan(counts), ~np.isnan(by_pop)], ["counts", "population"], "missing")
    return frac, source.astype(object)


def load_trials(path: str | PathLike[str] | None = None) -> pd.DataFrame:
    """Read and validate the trial-arm table.

    Parameters
    ----------
    path : str or path-like, optional
        CSV file following the schema in ``data/README.md``; the bundled
        ``lms_trials.csv`` when omitted.

    Returns
    -------
    pandas.DataFrame
        One row per arm, in file order. Counts and years are nullable
        ``Int64``; medians and rates ``float64``; ``placebo`` is ``bool``;
        label columns are categoricals with the allowed labels as categories;
        blank cells are missing. Optional columns absent from the file are
        added blank; every ``pfsr_<t>m`` family is kept. Added columns:
        ``uterine_fraction`` (n_uterine / n, else 1 for ``uLMS`` and 0 for
        ``stLMS``, else NaN) and ``uterine_fraction_source`` (``'counts'``,
        ``'population'`` or ``'missing'``). ``attrs`` holds ``path`` and the
        file's ``sha256``.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    DataValidationError
        Any problem with the content; all problems are listed at once, each
        naming the file, row, column and value.
    """
    file = str(path) if path is not None else "lmsbayes/_data/lms_trials.csv (bundled)"
    source = (
        Path(path)
        if path is not None
        else importlib.resources.files("lmsbayes") / "_data" / "lms_trials.csv"
    )
    header, rows, numbers, raw = _read_cells(source, file)

    out = _Collector(file, {}, numbers)
    for col in REQUIRED:
        if col not in header:
            out.problems.append(Problem(file, 1, None, col, None, "required column is missing"))
    for col in sorted({c for c in header if header.count(c) > 1}):
        out.problems.append(
            Problem(file, 1, None, col, col, "column appears more than once in the header")
        )
    for i, r in enumerate(rows):
        if len(r) != len(header):
            out.problems.append(
                Problem(
                    file,
                    numbers[i],
                    r[0] if r else None,
                    None,
                    None,
                    f"has {len(r)} cells but the header has {len(header)}",
                )
            )
    if out.problems:  # the table cannot be lined up; cell checks would only add noise
        raise DataValidationError(out.problems)

    columns = _column_order(header)
    by_name = dict(zip(header, zip(*rows, strict=True), strict=True)) if rows else {}
    blank = ("",) * len(rows)
    out.cells = cells = {c: np.array(by_name.get(c, blank), dtype=object) for c in columns}
    typed = _convert(cells, out)
    _check_rows(typed, cells, out)
    if out.problems:
        order = {c: k for k, c in enumerate(columns)}
        raise DataValidationError(
            sorted(out.problems, key=lambda p: (p.row, order.get(p.column, -1)))
        )

    df = _frame(typed)
    df["uterine_fraction"], source = _uterine_fraction(typed)
    df["uterine_fraction_source"] = pd.Series(source, dtype=object).astype(_TEXT)
    df.attrs = {"path": file, "sha256": hashlib.sha256(raw).hexdigest()}
    return df


# ---------------------------------------------------------------------------- long table

_REASONS = (
    "reported rate has neither a usable 95% CI nor n",
    "rate derived from the median has no standard error (no CI of the median, events or n)",
    "no reported rate and no median",
    "no reported rate (derivation from the median is off)",
)


def _floats(trials: pd.DataFrame, col: str | None) -> np.ndarray:
    """A numeric column as floats with NaN; all NaN when the column is absent."""
    if col not in trials:
        return np.full(len(trials), np.nan)
    return trials[col].to_numpy(dtype=float, na_value=np.nan)


def _landmark_rows(trials: pd.DataFrame, t: float, derive: bool) -> dict[str, np.ndarray]:
    """All arms at one landmark: rate, se, effective data and inclusion, as arrays."""
    k = len(trials)
    # only integer landmarks have pfsr_<t>m columns; others can only come from medians
    col = f"pfsr_{int(t)}m" if float(t).is_integer() else None
    s_rep = _floats(trials, col)
    n, median = _floats(trials, "n"), _floats(trials, "pfs_median_m")
    reported = ~np.isnan(s_rep)
    derived = ~reported & ~np.isnan(median) & derive

    se_ci = se_logit_from_ci(_floats(trials, f"{col}_lo"), _floats(trials, f"{col}_hi"))
    se_bin = se_logit_binomial(s_rep, n)
    se_c, method_c = se_log_median(
        _floats(trials, "pfs_median_lo"), _floats(trials, "pfs_median_hi"),
        _floats(trials, "pfs_events"), n,
    )  # fmt: skip
    use_ci, use_bin = reported & ~np.isnan(se_ci), reported & np.isnan(se_ci) & ~np.isnan(se_bin)
    rate = np.where(reported, s_rep, np.where(derived, exponential_rate(median, t), np.nan))
    src = f"{col}_source"
    source = trials[src].astype(object).fillna("").to_numpy() if src in trials else ""
    se = np.select(
        [use_ci, use_bin, derived], [se_ci, se_bin, se_logit_from_median(median, t, se_c)], np.nan
    )
    n_eff, y_eff = effective_binomial(rate, se, n)
    reason = np.select(
        [reported & np.isnan(se), derived & np.isnan(se), ~reported & np.isnan(median),
         ~reported & np.full(k, not derive)],
        _REASONS, "",
    )  # fmt: skip
    return {
        "landmark": np.full(k, float(t)),
        "rate": rate,
        "rate_source": np.where(reported, source, np.where(derived, "exponential", "")),
        "se_logit": se,
        "se_method": np.select([use_ci, use_bin, derived], ["rate_ci", "binomial", method_c], ""),
        "n_eff": n_eff,
        "y_eff": y_eff,
        "included": reason == "",
        "exclusion_reason": reason,
    }


def long_table(
    trials: pd.DataFrame,
    landmarks: Sequence[float] = (3, 6),
    *,
    derive_from_median: bool = True,
) -> pd.DataFrame:
    """One row per (arm, landmark) with the rate, its logit se and effective data.

    Rules (see ARCHITECTURE.md, "Data"): a reported (or ``km_text``) rate is
    used as is, with its logit se from its 95% CI, else binomial with n. A
    missing rate is derived from the median, ``S = 2^(-t / median)``
    (``rate_source = 'exponential'``), with ``se_logit`` from se(log median)
    by the delta method (:func:`se_logit_from_median`). Landmarks without a
    ``pfsr_<t>m`` column can only come from medians.

    Parameters
    ----------
    trials : pandas.DataFrame
        Output of :func:`load_trials`.
    landmarks : sequence of float, default (3, 6)
        Landmarks in months (> 0, distinct).
    derive_from_median : bool, default True
        Derive missing rates from the median; when False such rows are
        excluded with the reason.

    Returns
    -------
    pandas.DataFrame
        Every arm at every landmark (arm-major order), columns ``arm_id``,
        ``landmark``, ``rate``, ``rate_source`` (``'reported'``,
        ``'km_text'``, ``'exponential'`` or ``''``), ``se_logit``,
        ``se_method`` (``'rate_ci'``, ``'binomial'``, ``'median_ci'``,
        ``'events'``, ``'n_approx'`` or ``''``), ``n_eff``, ``y_eff``
        (``Int64``, missing when excluded), ``included``,
        ``exclusion_reason`` (``''`` when included), then the covariates
        ``trial, year, line, treatment_class, placebo, population, evidence,
        design, n, uterine_fraction``.
    """
    marks = [float(t) for t in np.atleast_1d(np.asarray(landmarks, dtype=float))]
    if (
        not marks
        or any(not (math.isfinite(t) and t > 0) for t in marks)
        or len(set(marks)) != len(marks)
    ):
        raise ValueError(
            f"landmarks must be distinct positive numbers of months, got {landmarks!r}"
        )
    # outcome columns may be absent (treated as blank); identity and covariates may not
    missing = [c for c in ("arm_id", *COVARIATES) if c not in trials]
    if missing:
        raise ValueError(f"trials lacks columns {missing}; pass the output of load_trials()")
    trials = trials.reset_index(drop=True)
    parts = [_landmark_rows(trials, t, derive_from_median) for t in marks]
    # arm-major order: row r is arm r // L at landmark r % L
    arm_idx = np.repeat(np.arange(len(trials)), len(marks))
    stacked = {key: np.stack([p[key] for p in parts], axis=1).ravel() for key in parts[0]}
    columns = {"arm_id": trials["arm_id"].array.take(arm_idx), **stacked}
    for key in ("rate_source", "se_method", "exclusion_reason"):
        columns[key] = pd.Series(stacked[key], dtype=object).astype(_TEXT)
    for key in ("n_eff", "y_eff"):
        columns[key] = pd.array(stacked[key], dtype="Float64").astype("Int64")
    for c in COVARIATES:
        columns[c] = trials[c].array.take(arm_idx)  # keeps Int64 / categorical dtypes
    table = pd.DataFrame(columns)
    table.attrs = {
        **trials.attrs,
        "landmarks": tuple(marks),
        "derive_from_median": derive_from_median,
    }
    return table
