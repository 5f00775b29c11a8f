"""Load and validate the trial-arm table and the reported-rates table; build the long table.

Two CSV files hold the data (schema in ``data/README.md``):

- the **arm table** (``data/lms_trials.csv``): one row per trial arm, with its
  identity, provenance, covariates, n, and the median PFS with its 95% CI;
- the **rates table** (``data/pfs_rates.csv``): one row per reported PFS rate,
  ``(arm_id, t)`` with ``t`` in months as the source states it (12 weeks is
  ``12 * 12 / 52 = 2.769``), the rate, its 95% CI and where it was read.

:func:`load_trials` reads both files as text, checks every cell's type and
range *before* converting it, checks the join, and reports *all* problems at
once as a :class:`DataValidationError` naming file, row, column and value. It
returns a :class:`Trials`. :func:`long_table` gives one row per (arm,
landmark) for the per-landmark models; a reported rate counts for a landmark
when its ``t`` lies within a relative tolerance of it (default 10%: 12 weeks
is the 3-month landmark). The arithmetic lives in small numpy functions
(:func:`exponential_rate`, :func:`se_log_median`, :func:`se_logit_from_median`,
:func:`se_logit_from_ci`, :func:`se_logit_binomial`, :func:`effective_binomial`).

The layout before the rates table, with ``pfsr_<t>m`` column families in the
arm table, still loads: the families are converted into the rates table with
a ``FutureWarning`` naming the file.
"""

from __future__ import annotations

import csv
import datetime
import difflib
import hashlib
import importlib.resources
import io
import math
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from lmsbayes.errors import InputError, OptionError, plain_text

__all__ = [
    "ARM_COLUMNS",
    "CI_SCALES",
    "CLASSES",
    "EVIDENCE_LEVELS",
    "LINES",
    "RATE_COLUMNS",
    "DataValidationError",
    "Problem",
    "Trials",
    "as_trials",
    "binomial_table",
    "effective_binomial",
    "exponential_rate",
    "load_trials",
    "logit",
    "role_regimen_problems",
    "long_table",
    "rates_path_for",
    "read_binomial",
    "read_tables",
    "se_log_median",
    "se_logit_binomial",
    "se_logit_from_ci",
    "se_logit_from_median",
    "Z95",
]

Z95 = 1.959963984540054  # standard normal 97.5% quantile: a 95% CI spans 2 * Z95 se

#: Hierarchy of the source a number was read in, strongest first (issue 12).
EVIDENCE_LEVELS = ("full_text", "abstract", "registry", "news")
#: Scale a rate's CI was built on, when the source says: plain (Greenwood on S), log, log-log
#: (complementary log-log), logit, arcsine (square root), exact (Clopper-Pearson on a count).
CI_SCALES = ("plain", "log", "log-log", "logit", "arcsine", "exact")
RATE_KINDS = ("reported", "km_text")
#: An arm's role in its trial (data/README.md section 2a).
ROLES = ("control", "experimental", "single_arm", "noncomparative", "calibration")

#: Lines of therapy and treatment classes (ESMO 2018: recommended or not), the labels the data use.
LINES = ("1L", "2L+")
CLASSES = ("R-T", "NR-T")

LABELS: dict[str, tuple[str, ...]] = {
    "evidence": ("publication", "conference"),
    "evidence_level": EVIDENCE_LEVELS,
    "design": ("single_arm", "randomized"),
    "role": ROLES,
    "treatment_class": CLASSES,
    "line": LINES,
    "population": ("LMS", "uLMS", "stLMS", "STS-LMS-subgroup", "L-sarcoma-LMS-subgroup"),
}
RATE_LABELS: dict[str, tuple[str, ...]] = {
    "kind": RATE_KINDS,
    "ci_scale": CI_SCALES,
    "evidence_level": EVIDENCE_LEVELS,
}

#: Columns of the arm table, in output order (``notes`` last; a user's own columns follow).
ARM_COLUMNS = (
    "arm_id",
    "trial",
    "first_author",
    "year",
    "pmid",
    "doi",
    "registry_id",
    "source_url",
    "source_location",
    "evidence",
    "evidence_level",
    "phase",
    "design",
    "role",
    "arm",
    "agents",
    "regimen",
    "placebo",
    "treatment_class",
    "line",
    "population",
    "n",
    "n_uterine",
    "pfs_median_m",
    "pfs_median_lo",
    "pfs_median_hi",
    "pfs_events",
    "notes",
)
REQUIRED = (
    "arm_id",
    "trial",
    "year",
    "evidence",
    "phase",
    "design",
    "arm",
    "agents",
    "placebo",
    "treatment_class",
    "line",
    "population",
)
#: Columns of the rates table, in output order.
RATE_COLUMNS = (
    "arm_id",
    "t",
    "rate",
    "lo",
    "hi",
    "ci_scale",
    "kind",
    "evidence_level",
    "source",
    "location",
    "notes",
)
RATE_REQUIRED = ("arm_id", "t", "rate", "kind")
#: Columns the loader adds to the arm table; a file must not hold them.
COMPUTED_COLUMNS = ("uterine_fraction", "uterine_fraction_source")

INT_COLUMNS = ("year", "pmid", "n", "n_uterine", "pfs_events")
FLOAT_COLUMNS = ("pfs_median_m", "pfs_median_lo", "pfs_median_hi")

_THIS_YEAR = datetime.date.today().year
#: Accepted ranges (low, high, low_open): checked on the parsed number before any cast.
BOUNDS: dict[str, tuple[float, float, bool]] = {
    "year": (1950, _THIS_YEAR + 1, False),
    "pmid": (1, 99_999_999, False),
    "n": (1, 100_000, False),
    "n_uterine": (0, 100_000, False),
    "pfs_events": (0, 100_000, False),
    "pfs_median_m": (0, 240, True),
    "pfs_median_lo": (0, 240, True),
    "pfs_median_hi": (0, 240, True),
    "t": (0, 120, True),
    "rate": (0, 1, False),
    "lo": (0, 1, False),
    "hi": (0, 1, False),
}
MAX_FILE_BYTES = 20_000_000  # a trial table is a few hundred kB; bounded work on hostile input
FIELD_LIMIT = 131_072  # the csv module's default field limit, stated so messages can name it

_RATE_FAMILY = re.compile(r"pfsr_([1-9][0-9]*)m(?:_(lo|hi|source))?")  # legacy; fullmatch only
_ARM_ID = re.compile(r"[a-z0-9_]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")  # ASCII
_NONFINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
_DOI = re.compile(r"10\.[0-9]{4,9}/\S+")
_PMID = re.compile(r"[1-9][0-9]{0,7}")
_URL = re.compile(r"https?://\S+")
_REGISTRY = re.compile(
    r"NCT[0-9]{8}|[0-9]{4}-[0-9]{6}-[0-9]{2}|ISRCTN[0-9]{8}"
)  # ClinicalTrials.gov | EudraCT | ISRCTN
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # tab, CR, LF allowed (quoted notes)
_AGENT = r"[a-z0-9]+(?:-[a-z0-9]+)*"
_COMBINATION = rf"{_AGENT}(?:\+{_AGENT})*"
#: A regimen label: agents joined by '+' (one combination), alternatives by '/' (section 2a).
_REGIMEN = re.compile(rf"{_COMBINATION}(?:/{_COMBINATION})*")
COVARIATES = (
    "trial",
    "year",
    "line",
    "treatment_class",
    "placebo",
    "population",
    "evidence",
    "design",
    "n",
    "uterine_fraction",
)
BUNDLED_ARMS = "lms_trials.csv"
BUNDLED_RATES = "pfs_rates.csv"


@dataclass(frozen=True)
class Problem:
    """One problem found in a data file (``row`` is the spreadsheet row: header = 1)."""

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
            if self.row == 1:
                where += " (header)"
            elif self.arm_id:
                where += f" (arm_id {self.arm_id!r})"
        if self.column is not None:
            where += f", column {self.column!r}"
        return plain_text(f"{where}: {self.message}")


class DataValidationError(InputError):
    """The trial data have problems; ``.problems`` lists every one of them."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        n = len(self.problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{n} problem{'s' if n != 1 else ''} in the trial data:\n{lines}")

    def __reduce__(self):  # picklable (e.g. across processes) despite the custom signature
        return type(self), (self.problems,)


# ---------------------------------------------------------------------------- the data object


@dataclass(frozen=True, eq=False)
class Trials:
    """The validated trial data: the arm table and the reported-rates table.

    Attributes
    ----------
    arms : pandas.DataFrame
        One row per arm, in file order (columns :data:`ARM_COLUMNS`, then
        ``uterine_fraction`` and ``uterine_fraction_source``, then a user's own
        columns). Counts and years are nullable ``Int64``; medians ``float64``;
        ``placebo`` is ``bool``; label columns are categoricals with the
        allowed labels as categories; blank cells are missing.
    rates : pandas.DataFrame
        One row per reported rate (columns :data:`RATE_COLUMNS`), in file
        order: ``t``, ``rate``, ``lo``, ``hi`` are ``float64``; ``kind``,
        ``ci_scale``, ``evidence_level`` categoricals; the rest text. Every
        ``arm_id`` is one of ``arms``.
    sha256 : str
        SHA-256 over the files' bytes (the data provenance of a fit). With
        one file it is that file's SHA-256.
    files : tuple of str
        The files read, as the user named them (the arm table first).
    """

    arms: pd.DataFrame
    rates: pd.DataFrame
    sha256: str
    files: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.arms)

    def __repr__(self) -> str:
        return (
            f"Trials({len(self.arms)} arms, {len(self.rates)} reported rates, "
            f"files={list(self.files)}, sha256={self.sha256[:12]}...)"
        )

    def select(self, which) -> Trials:
        """The subset of arms given by a boolean mask or by arm ids, with their rates.

        Parameters
        ----------
        which : array-like of bool, or iterable of str
            A mask with one entry per arm (file order), or arm ids. Arms keep
            their file order whatever the order of the ids.

        Returns
        -------
        Trials
            Same ``sha256`` and ``files`` (the provenance is the files read).

        Raises
        ------
        ValueError
            A mask of the wrong length, or arm ids that are not in the table.
        """
        ids = self.arms["arm_id"].astype(str).to_numpy()
        if isinstance(which, str):
            which = [which]
        if isinstance(which, pd.Series) and pd.api.types.is_bool_dtype(which.dtype):
            which = which.fillna(False).to_numpy(dtype=bool)  # nullable boolean: NA is not selected
        arr = np.asarray(list(which) if not hasattr(which, "__array__") else which)
        if arr.dtype == bool:
            if arr.shape != (len(ids),):
                raise OptionError(
                    f"a mask needs {len(ids)} entries (one per arm), got shape {arr.shape}"
                )
            mask = arr
        else:
            wanted = [str(a) for a in arr.ravel()]
            unknown = sorted(set(wanted) - set(ids))
            if unknown:
                raise OptionError(f"arm ids not in the trial data: {unknown}")
            mask = np.isin(ids, wanted)
        arms = self.arms[mask].reset_index(drop=True)
        arms.attrs = dict(self.arms.attrs)
        rates = self.rates[self.rates["arm_id"].isin(ids[mask])].reset_index(drop=True)
        return Trials(arms=arms, rates=rates, sha256=self.sha256, files=self.files)


# ---------------------------------------------------------------------------- math


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)), elementwise."""
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
        se = (logit(hi) - logit(lo)) / (2 * Z95)
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


# ---------------------------------------------------------------------------- reading CSV text


def _clip(text: str, width: int = 60) -> str:
    """A cell for a message: long cells (up to 131,072 characters) are cut."""
    return text if len(text) <= width else text[: width - 3] + "..."


def _unreadable(file: str, message: str, row: int | None = None) -> DataValidationError:
    return DataValidationError([Problem(file, row, None, None, None, message)])


def read_csv_cells(
    path, file: str, what: str
) -> tuple[list[str], list[list[str]], list[int], bytes]:
    """Header, records as stripped strings, their spreadsheet row numbers, and the raw bytes.

    The one reader discipline of every table (arm, rates, (study, r, n),
    contrast): at most :data:`MAX_FILE_BYTES`; UTF-8 with or without a
    byte-order mark (other encodings are refused naming the file, line and
    byte); comma-separated (a header separated by semicolons or tabs is
    refused, saying so); strict CSV quoting. ``path`` is a Path or an
    importlib.resources Traversable (the bundled file); ``file`` is the name
    every message uses (the user's own spelling of it).

    Returns
    -------
    tuple
        (header, records, their spreadsheet row numbers, the raw bytes).

    Raises
    ------
    FileNotFoundError
        No such file.
    DataValidationError
        The file cannot be read as such a table (one problem naming it).
    """
    if not path.is_file():
        if isinstance(path, Path) and path.exists():
            raise _unreadable(file, f"is not a regular file; expected the {what} (CSV)")
        raise FileNotFoundError(f"{what} file not found: {file}")
    try:
        if isinstance(path, Path) and path.stat().st_size > MAX_FILE_BYTES:
            raise _unreadable(
                file,
                f"file is {path.stat().st_size:,} bytes; the limit is {MAX_FILE_BYTES:,} "
                f"(a {what} is far smaller: is this the right file?)",
            )
        raw = path.read_bytes()
    except OSError as err:
        raise _unreadable(file, f"cannot be read: {err.strerror or err}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise _unreadable(file, f"file is over {MAX_FILE_BYTES:,} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise _unreadable(
            file,
            f"not UTF-8 text ({err.reason} at byte {err.start}, line {line}); "
            "save the file as UTF-8 CSV",
        ) from None
    records: list[list[str]] = []
    # newline="" lets csv keep line breaks inside quoted cells (notes); strict catches stray quotes
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    while True:
        try:
            r = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            row = len(records) + 1
            reason = str(err)
            if "field larger than field limit" in reason:
                reason = f"a cell is longer than {FIELD_LIMIT:,} characters"
            raise _unreadable(file, f"not a readable CSV: {reason}", row=row) from None
        records.append([cell.strip() for cell in r])
    if not records:
        raise _unreadable(file, "file is empty (no header row)")
    if not any(records[0]):
        raise _unreadable(file, "row is blank; expected the header", row=1)
    if len(records[0]) == 1:
        for sep, name in ((";", "semicolons"), ("\t", "tabs")):
            if sep in records[0][0]:  # a spreadsheet's 'CSV' in a locale with decimal commas
                raise _unreadable(
                    file,
                    f"the header {_clip(records[0][0])!r} is separated by {name}, not commas; "
                    "save the table as comma-separated CSV (UTF-8)",
                    row=1,
                )
    # blank records are not data, but they keep their place in the spreadsheet numbering
    numbers = [k + 1 for k, r in enumerate(records) if any(r) and k > 0]
    return records[0], [records[k - 1] for k in numbers], numbers, raw


def parse_number(value: str, integer: bool) -> tuple[float, str | None]:
    """(number or NaN, error message or None) for one cell; ASCII decimal notation only.

    Parameters
    ----------
    value : str
        The stripped cell; blank gives (NaN, None).
    integer : bool
        A whole number is required.

    Returns
    -------
    tuple of (float, str or None)

    Python's ``float`` accepts far more than a data file should hold (``1_000``,
    non-ASCII digits, ``nan``, ``infinity``); the grammar here is checked first.
    """
    if value == "":
        return math.nan, None
    if _NONFINITE.fullmatch(value):
        return math.nan, f"must be a finite number, got {value!r} (leave unknown values blank)"
    if len(value) > 40 or not _NUMBER.fullmatch(value):
        kind = "a whole number" if integer else "a number"
        return math.nan, (
            f"must be {kind} in plain decimal notation, got {_clip(value)!r} (text, thousands "
            "separators and non-ASCII digits are not allowed in a numeric column: leave it blank "
            "and explain in 'notes')"
        )
    x = float(value)
    if not math.isfinite(x):  # 1e999 is plain notation, but not a number a table can hold
        return math.nan, f"must be a finite number, got {value!r}"
    if integer and not x.is_integer():
        return math.nan, f"must be a whole number, got {value!r}"
    return x, None


def _suggest(value: str, allowed: Sequence[str], cutoff: float = 0.6) -> str:
    lower = {a.lower(): a for a in allowed}
    close = difflib.get_close_matches(value.lower(), list(lower), n=1, cutoff=cutoff)
    return f"; did you mean {lower[close[0]]!r}?" if close else ""


def _close_known(name: str, known: Iterable[str]) -> str | None:
    """The known column an unknown header is probably a misspelling of, if any."""
    lower = {k.lower(): k for k in known}
    if name.lower() in lower:
        return lower[name.lower()]
    close = difflib.get_close_matches(name.lower(), list(lower), n=1, cutoff=0.8)
    return lower[close[0]] if close else None


# ---------------------------------------------------------------------------- validation

# pandas >= 3 has a real string dtype with NaN for missing; older pandas keeps object
_TEXT = "str" if int(pd.__version__.split(".")[0]) >= 3 else object
_CATEGORIES = {a: pd.CategoricalDtype(list(a)) for a in (*LABELS.values(), *RATE_LABELS.values())}


class _Collector:
    """Accumulates problems with their spreadsheet coordinates."""

    def __init__(self, file: str, cells: dict[str, np.ndarray], rows: list[int]) -> None:
        self.file, self.cells, self.rows, self.problems = file, cells, rows, []

    def header(self, column: str | None, message: str, value: str | None = None) -> None:
        self.problems.append(Problem(self.file, 1, None, column, value, message))

    def add(self, i: int, column: str | None, message: str) -> None:
        arm_id = self.cells["arm_id"][i] if "arm_id" in self.cells else None
        value = self.cells[column][i] if column in self.cells else None
        self.problems.append(
            Problem(
                self.file, self.rows[i], _clip(arm_id) if arm_id else None, column, value, message
            )
        )

    def where(self, mask: np.ndarray, column: str, template: str) -> None:
        """Flag rows where ``mask``.

        ``template`` is formatted per row with ``value`` (the raw cell of
        ``column``, cut if long) and ``row`` (the row's raw cells by column,
        '?' if blank).
        """
        for i in np.flatnonzero(mask):
            row = {c: _clip(x[i]) or "?" for c, x in self.cells.items()}
            self.add(int(i), column, template.format(value=_clip(self.cells[column][i]), row=row))


def _legacy_kind(col: str) -> str | None:
    m = _RATE_FAMILY.fullmatch(col)
    if not m:
        return None
    return "label" if m[2] == "source" else "float"


def _arm_kind(col: str) -> str:
    if col in INT_COLUMNS:
        return "int"
    if col in FLOAT_COLUMNS:
        return "float"
    if col in LABELS:
        return "label"
    if col == "placebo":
        return "bool"
    return _legacy_kind(col) or ("text" if col in ARM_COLUMNS else "user")


def _rate_kind(col: str) -> str:
    if col in ("t", "rate", "lo", "hi"):
        return "float"
    if col in RATE_LABELS:
        return "label"
    return "text" if col in RATE_COLUMNS else "user"


def _bounds_message(low: float, high: float, low_open: bool) -> str:
    def num(x: float) -> str:
        return str(int(x)) if float(x).is_integer() else f"{x:g}"

    return f"must be in {'(' if low_open else '['}{num(low)}, {num(high)}]"


def _convert(
    cells: dict[str, np.ndarray],
    out: _Collector,
    kind_of,
    labels: dict,
    required: tuple,
    bounds: dict[str, tuple[float, float, bool]] = BOUNDS,
) -> dict[str, np.ndarray]:
    """Typed arrays (floats with NaN, labels/text with None); cell problems go to ``out``.

    Types and ranges are checked on the text and on the parsed float, so that
    no cell reaches an integer cast unless it fits (1e19 cannot wrap around).
    """
    typed = {}
    for col, values in cells.items():
        blank, kind = values == "", kind_of(col)
        if col in required:
            out.where(blank, col, "required value is blank")
        bad_char = np.array([bool(_CONTROL.search(v)) for v in values], dtype=bool)
        for i in np.flatnonzero(bad_char):
            ch = _CONTROL.search(values[i])[0]
            out.add(
                int(i),
                col,
                f"holds the control character {ch!r} (NUL bytes and other "
                "control characters are not allowed; is the file binary or corrupted?)",
            )
        if kind in ("int", "float"):
            parsed = np.full(len(values), np.nan)
            for i, v in enumerate(values):
                if bad_char[i]:
                    continue
                x, err = parse_number(v, integer=kind == "int")
                if err:
                    out.add(i, col, err)
                    continue
                low, high, low_open = bounds.get(col, (0.0, 1.0, False))  # legacy rates: [0, 1]
                if not math.isnan(x) and ((x <= low if low_open else x < low) or x > high):
                    out.add(i, col, f"{_bounds_message(low, high, low_open)}, got {_clip(v)!r}")
                    continue
                parsed[i] = x
            typed[col] = parsed
        elif kind == "label":
            allowed = labels.get(col, RATE_KINDS)  # legacy pfsr_<t>m_source: reported / km_text
            bad = ~blank & ~np.isin(values, allowed) & ~bad_char
            for i in np.flatnonzero(bad):
                hint = _suggest(values[i], allowed)
                out.add(
                    int(i), col, f"must be one of {list(allowed)}, got {_clip(values[i])!r}{hint}"
                )
            typed[col] = np.where(blank | bad | bad_char, None, values)
        elif kind == "bool":
            low = np.array([v.lower() for v in values], dtype=object)
            bad = ~blank & ~np.isin(low, ["true", "false"]) & ~bad_char
            out.where(bad, col, "must be 'true' or 'false', got {value!r}")
            typed[col] = low == "true"
        else:
            typed[col] = np.where(blank, None, values)
    return typed


def _check_formats(cells: dict[str, np.ndarray], out: _Collector, columns: dict[str, str]) -> None:
    """Identifier columns: ``{column: format}`` with format doi, url, registry or source."""

    def bad(col: str, ok) -> np.ndarray:
        return np.array(
            [v != "" and not _CONTROL.search(v) and not ok(v) for v in cells[col]], dtype=bool
        )

    for col, fmt in columns.items():
        if col not in cells:
            continue
        if fmt == "doi":
            out.where(
                bad(col, _DOI.fullmatch),
                col,
                "must be a DOI such as 10.1200/JCO.2014.58.3781 "
                "(no https://doi.org/ prefix), got {value!r}",
            )
        elif fmt == "url":
            out.where(bad(col, _URL.fullmatch), col, "must be an http(s) URL, got {value!r}")
        elif fmt == "registry":

            def registry_ok(v: str) -> bool:
                return all(_REGISTRY.fullmatch(p.strip()) for p in v.split(";"))

            out.where(
                bad(col, registry_ok),
                col,
                "must be ';'-separated trial registry ids "
                "(NCT or ISRCTN followed by 8 digits, or an EudraCT number such as "
                "2016-001234-56), got {value!r}",
            )
        elif fmt == "source":

            def source_ok(v: str) -> bool:
                return bool(_PMID.fullmatch(v) or _DOI.fullmatch(v))

            out.where(
                bad(col, source_ok),
                col,
                "must be the PMID (digits) or the DOI "
                "(10.xxxx/...) of the publication the number is read in, got {value!r}",
            )


def _check_interval(v, cells, out, est, lo, hi) -> None:
    """lo <= hi, lo <= estimate <= hi, no CI bound without its estimate."""
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


def _check_arm_rows(
    v: dict[str, np.ndarray], cells: dict[str, np.ndarray], out: _Collector
) -> None:
    """Consistency checks across columns of the arm table (on cells that parsed)."""
    ids = cells["arm_id"]
    bad_id = np.array([a != "" and not _ARM_ID.fullmatch(a) for a in ids], dtype=bool)
    out.where(bad_id, "arm_id", "must be lowercase [a-z0-9_]+, got {value!r}")
    first: dict[str, int] = {}
    for i, a in enumerate(ids):
        if a and a in first:
            out.add(i, "arm_id", f"duplicate arm_id {a!r} (first used in row {out.rows[first[a]]})")
        first.setdefault(a, i)

    n = v["n"]
    for col in ("n_uterine", "pfs_events"):
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
    _check_interval(v, cells, out, "pfs_median_m", "pfs_median_lo", "pfs_median_hi")
    _check_formats(cells, out, {"doi": "doi", "source_url": "url", "registry_id": "registry"})
    valid_role = [c if t is not None else "" for c, t in zip(cells["role"], v["role"], strict=True)]
    for i, col, message in role_regimen_problems(
        valid_role,
        cells["regimen"],
        cells["agents"],
        cells["design"],
        lambda j: f"row {out.rows[j]}",
    ):
        out.add(i, col, message)
    for col in [c for c in v if (m := _RATE_FAMILY.fullmatch(c)) and m[2] is None]:
        _check_interval(v, cells, out, col, f"{col}_lo", f"{col}_hi")
        src = f"{col}_source"
        out.where(
            ~np.isnan(v[col]) & (cells[src] == ""),
            src,
            f"a rate is given in {col!r} ({{row[{col}]}}) but its source is blank; "
            f"must be one of {list(RATE_KINDS)}",
        )
        out.where(
            (cells[col] == "") & (cells[src] != ""),
            src,
            f"source given without a rate in {col!r}, got {{value!r}}",
        )


def role_regimen_problems(
    role: Sequence[str], regimen: Sequence[str], agents=None, design=None, row_name=None
) -> list[tuple[int, str, str]]:
    """Problems of the optional ``role`` and ``regimen`` columns (data/README.md section 2a).

    Parameters
    ----------
    role, regimen : sequence of str
        Raw cells, ``""`` where blank (a blank cell is allowed: not stated).
    agents, design : sequence of str, optional
        Raw cells of those columns when the table has them: the regimen must name the
        arm's agents (placebo dropped), and role ``single_arm`` goes with design
        ``single_arm`` and no other.
    row_name : callable, optional
        ``row_name(i)`` names row index ``i`` in a message (default ``"row index i"``).

    Returns
    -------
    list of (int, str, str)
        ``(row index, column, message)``, rows in table order; the messages quote the value.
    """
    row_name = row_name or (lambda i: f"row index {i}")
    problems = []
    seen: dict[frozenset, tuple[int, str]] = {}
    for i, (ro, rg) in enumerate(zip(role, regimen, strict=True)):
        if ro and ro not in ROLES:
            problems.append(
                (i, "role", f"must be one of {list(ROLES)}, got {_clip(ro)!r}{_suggest(ro, ROLES)}")
            )
        if design is not None and ro and design[i]:
            if (ro == "single_arm") != (design[i] == "single_arm"):
                problems.append(
                    (
                        i,
                        "role",
                        f"role {_clip(ro)!r} does not fit design "
                        f"{_clip(design[i])!r} (role 'single_arm' goes with design "
                        "'single_arm' and no other)",
                    )
                )
        if not rg:
            continue
        parts = [a for alt in rg.split("/") for a in alt.split("+")]
        if not _REGIMEN.fullmatch(rg) or len(set(parts)) < len(parts):
            problems.append(
                (
                    i,
                    "regimen",
                    "must be lowercase agent names joined by '+' (one "
                    "combination) or '/' (alternatives, e.g. investigator's choice), each "
                    f"agent once, such as 'gemcitabine+docetaxel', got {_clip(rg)!r}",
                )
            )
            continue
        if "placebo" in parts and rg != "placebo":
            problems.append(
                (
                    i,
                    "regimen",
                    "a placebo add-on is left out of the label "
                    f"(doxorubicin + placebo is 'doxorubicin'), got {_clip(rg)!r}",
                )
            )
            continue
        if agents is not None and agents[i]:
            named = {a.strip() for a in agents[i].split(";") if a.strip()}
            active = named - {"placebo"} or named
            if set(parts) != active:
                problems.append(
                    (
                        i,
                        "regimen",
                        f"{_clip(rg)!r} names the agents "
                        f"{sorted(set(parts))} but column 'agents' has "
                        f"{sorted(active)} (placebo left out)",
                    )
                )
                continue
        if "/" not in rg:
            first = seen.setdefault(frozenset(parts), (i, rg))
            if first[1] != rg:
                problems.append(
                    (
                        i,
                        "regimen",
                        f"{_clip(rg)!r} and {first[1]!r} "
                        f"({row_name(first[0])}) name one combination; use one label",
                    )
                )
    return problems


def _check_rate_rows(
    v: dict[str, np.ndarray],
    cells: dict[str, np.ndarray],
    out: _Collector,
    arm_ids: np.ndarray,
    arms_file: str,
) -> None:
    """Consistency checks of the rates table and its join with the arm table."""
    ids = cells["arm_id"]
    known = set(arm_ids)
    for i, a in enumerate(ids):
        if a and a not in known:
            hint = _suggest(a, sorted(known), cutoff=0.75)
            out.add(
                i,
                "arm_id",
                f"rate for arm_id {_clip(a)!r}, which is not in the arm table {arms_file}{hint}",
            )
    _check_interval(v, cells, out, "rate", "lo", "hi")
    _check_formats(cells, out, {"source": "source"})
    # one rate per (arm, t): t compared as the numbers they are ("6" and "6.0" are one t)
    first: dict[tuple[str, float], int] = {}
    for i, (a, t) in enumerate(zip(ids, v["t"], strict=True)):
        if not a or math.isnan(t):
            continue
        if (a, t) in first:
            out.add(
                i,
                "t",
                f"duplicate rate for arm_id {a!r} at t = {t:g} months (first in row "
                f"{out.rows[first[a, t]]}); keep one analysis per arm",
            )
        first.setdefault((a, t), i)


def _check_header(
    header: list[str],
    out: _Collector,
    known: Sequence[str],
    required: Sequence[str],
    extra_known: Iterable[str],
    arm_table: bool,
) -> list[str]:
    """Header problems go to ``out``; returns the user's own columns (kept as they are)."""
    extra = set(extra_known)
    for col in required:
        if col not in header:
            out.header(col, "required column is missing")
    for k, col in enumerate(header):
        if col == "":
            out.header(None, f"header cell {k + 1} is blank; every column needs a name")
        elif _CONTROL.search(col):
            out.header(
                None,
                f"header cell {k + 1} ({_clip(col)!r}) holds a control character "
                "(NUL bytes and the like); is the file binary or corrupted?",
                _clip(col),
            )
    for col in sorted({c for c in header if c and header.count(c) > 1}):
        out.header(col, "column appears more than once in the header", col)
    user = []
    candidates = (
        [*known, *(f"pfsr_{t}m{s}" for t in (3, 6, 12) for s in ("", "_lo", "_hi", "_source"))]
        if arm_table
        else list(known)
    )
    for col in dict.fromkeys(header):
        if col in extra and col not in known:
            user.append(col)
            continue
        if (
            not col
            or _CONTROL.search(col)
            or col in known
            or (arm_table and _RATE_FAMILY.fullmatch(col))
        ):
            continue
        if arm_table and col in COMPUTED_COLUMNS:
            out.header(
                col,
                "is computed by the loader (from n_uterine, n and population); "
                "remove it from the file",
                col,
            )
            continue
        close = _close_known(col, candidates)
        if close is not None:
            out.header(
                col,
                f"unknown column {_clip(col)!r}; did you mean {close!r}? (a column of "
                "your own must not be this close to a known name: rename it, or declare it "
                "with load_trials(..., known_columns=[...]))",
                col,
            )
        else:
            user.append(col)
    return user


def _table_cells(
    header: list[str],
    rows: list[list[str]],
    numbers: list[int],
    out: _Collector,
    columns: list[str],
) -> dict[str, np.ndarray] | None:
    """Cells by column (blank for absent optional columns), or None if rows do not line up."""
    ragged = False
    for i, r in enumerate(rows):
        if len(r) != len(header):
            ragged = True
            out.problems.append(
                Problem(
                    out.file,
                    numbers[i],
                    _clip(r[0]) if r and r[0] else None,
                    None,
                    None,
                    f"has {len(r)} cells but the header has {len(header)}",
                )
            )
    if ragged:
        return None
    by_name = dict(zip(header, zip(*rows, strict=True), strict=False)) if rows else {}
    blank = ("",) * len(rows)
    return {c: np.array(by_name.get(c, blank), dtype=object) for c in columns}


def _frame(v: dict[str, np.ndarray], kind_of, labels: dict) -> pd.DataFrame:
    """The typed arrays as a DataFrame with the documented dtypes."""
    columns = {}
    for col, x in v.items():
        kind = kind_of(col)
        if kind == "int":  # every value was bounds-checked: the cast cannot wrap around
            columns[col] = pd.array(x, dtype="Float64").astype("Int64")
        elif kind == "label":
            # from codes: validation already guaranteed every label is allowed (or None)
            allowed = labels.get(col, RATE_KINDS)
            codes = [-1 if a is None else allowed.index(a) for a in x]
            columns[col] = pd.Categorical.from_codes(codes, dtype=_CATEGORIES[allowed])
        elif kind == "user":
            columns[col] = _user_column(x)
        elif kind == "text":
            columns[col] = pd.Series(x, dtype=object).astype(_TEXT)
        else:
            columns[col] = x
    return pd.DataFrame(columns)


def _user_column(x: np.ndarray) -> pd.Series:
    """A user's own column: float64 if every non-blank cell is a plain number, else text."""
    values = [v for v in x if v is not None]
    if values and all(_NUMBER.fullmatch(v) and len(v) <= 40 for v in values):
        return pd.Series([math.nan if v is None else float(v) for v in x], dtype="float64")
    return pd.Series(x, dtype=object).astype(_TEXT)


def _uterine_fraction(v: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore", divide="ignore"):
        counts = v["n_uterine"] / v["n"]
    pop = v["population"]
    by_pop = np.select([pop == "uLMS", pop == "stLMS"], [1.0, 0.0], np.nan)
    frac = np.where(np.isnan(counts), by_pop, counts)
    source = np.select([~np.isnan(counts), ~np.isnan(by_pop)], ["counts", "population"], "missing")
    return frac, source.astype(object)


def _sorted(problems: list[Problem], columns: Sequence[str]) -> list[Problem]:
    order = {c: k for k, c in enumerate(columns)}
    return sorted(problems, key=lambda p: (p.row or 0, order.get(p.column, -1)))


def _read_arms(
    source, file: str, extra_known: Iterable[str]
) -> tuple[pd.DataFrame | None, dict[str, np.ndarray] | None, list[Problem], bytes, list[str]]:
    """Read the arm table.

    Returns (frame or None, typed legacy rate columns, problems, raw bytes, legacy columns).
    """
    header, rows, numbers, raw = read_csv_cells(source, file, "trial-arm table")
    out = _Collector(file, {}, numbers)
    lower = {c.lower() for c in header}
    if "arm_id" not in lower and len(lower & set(BINOMIAL_REQUIRED)) >= 2:
        # a (study, r, n) table where the arm table is read: one error, not one per column
        found = ", ".join(repr(_clip(c, 20)) for c in header[:8])
        out.header(
            None,
            f"is a (study, r, n) table (header {found}), not the LMS trial-arm table this reads "
            "(columns arm_id, trial, year, ..., line, population; data/README.md); a (study, r, "
            "n) table is fitted with the spec 'binomial'",
        )
        return None, None, out.problems, raw, []
    if not rows:
        out.problems.append(
            Problem(
                file,
                None,
                None,
                None,
                None,
                "the file has a header but no arm rows (at least one arm is needed)",
            )
        )
    user = _check_header(header, out, ARM_COLUMNS, REQUIRED, extra_known, arm_table=True)
    legacy = sorted(
        (c for c in header if _RATE_FAMILY.fullmatch(c)),
        key=lambda c: (int(_RATE_FAMILY.fullmatch(c)[1]), c),
    )
    families = sorted({int(_RATE_FAMILY.fullmatch(c)[1]) for c in legacy})
    legacy_cols = [f"pfsr_{t}m{s}" for t in families for s in ("", "_lo", "_hi", "_source")]
    for c in legacy_cols:  # the loader checks legacy families like the rates table (t <= 120)
        t = int(_RATE_FAMILY.fullmatch(c)[1])
        if t > BOUNDS["t"][1] and c in header:
            out.header(c, f"landmark {t} months is outside (0, 120]", c)
    columns = [*ARM_COLUMNS, *legacy_cols, *(c for c in user if c not in ARM_COLUMNS)]
    cells = _table_cells(header, rows, numbers, out, columns)
    if cells is None or out.problems:  # the table cannot be lined up; cell checks would add noise
        return None, None, out.problems, raw, []
    out.cells = cells
    typed = _convert(cells, out, _arm_kind, LABELS, REQUIRED)
    _check_arm_rows(typed, cells, out)
    if out.problems:
        return None, None, _sorted(out.problems, columns), raw, []
    legacy_typed = {c: typed.pop(c) for c in legacy_cols}
    df = _frame(typed, _arm_kind, LABELS)
    frac, src = _uterine_fraction(typed)
    at = list(df.columns).index("notes") + 1  # computed columns before the user's own
    df.insert(at, "uterine_fraction", frac)
    df.insert(at + 1, "uterine_fraction_source", pd.Series(src, dtype=object).astype(_TEXT))
    legacy_typed["__arm_id"] = cells["arm_id"]
    return df, legacy_typed, [], raw, [c for c in legacy if c in header]


def _read_rates(
    source, file: str, arm_ids: np.ndarray, arms_file: str, extra_known: Iterable[str]
) -> tuple[pd.DataFrame | None, list[Problem], bytes]:
    header, rows, numbers, raw = read_csv_cells(source, file, "rates table")
    out = _Collector(file, {}, numbers)
    user = _check_header(header, out, RATE_COLUMNS, RATE_REQUIRED, extra_known, arm_table=False)
    columns = [*RATE_COLUMNS, *(c for c in user if c not in RATE_COLUMNS)]
    cells = _table_cells(header, rows, numbers, out, columns)
    if cells is None or out.problems:
        return None, out.problems, raw
    out.cells = cells
    typed = _convert(cells, out, _rate_kind, RATE_LABELS, RATE_REQUIRED)
    _check_rate_rows(typed, cells, out, arm_ids, arms_file)
    if out.problems:
        return None, _sorted(out.problems, columns), raw
    return _frame(typed, _rate_kind, RATE_LABELS), [], raw


def _empty_rates() -> pd.DataFrame:
    typed = {
        c: np.zeros(0) if _rate_kind(c) == "float" else np.array([], dtype=object)
        for c in RATE_COLUMNS
    }
    return _frame(typed, _rate_kind, RATE_LABELS)


def _rates_from_legacy(typed: dict[str, np.ndarray], file: str) -> pd.DataFrame:
    """The pfsr_<t>m column families of a validated legacy arm table as rates-table rows."""
    ids = typed["__arm_id"]
    parts = []
    for col in [c for c in typed if (m := _RATE_FAMILY.fullmatch(c)) and m[2] is None]:
        t = float(_RATE_FAMILY.fullmatch(col)[1])
        has = ~np.isnan(typed[col])
        k = int(has.sum())
        parts.append(
            pd.DataFrame(
                {
                    "arm_id": ids[has],
                    "t": np.full(k, t),
                    "rate": typed[col][has],
                    "lo": typed[f"{col}_lo"][has],
                    "hi": typed[f"{col}_hi"][has],
                    "kind": typed[f"{col}_source"][has],
                    "notes": np.full(k, f"converted from column {col!r} of {file}", dtype=object),
                }
            )
        )
    if not parts:
        return _empty_rates()
    legacy = pd.concat(parts, ignore_index=True)
    order = {a: i for i, a in enumerate(ids)}
    legacy = legacy.sort_values(
        ["arm_id", "t"], key=lambda s: s.map(order) if s.name == "arm_id" else s, kind="stable"
    ).reset_index(drop=True)
    typed_rates = {}
    for c in RATE_COLUMNS:
        if c in legacy:
            typed_rates[c] = legacy[c].to_numpy(dtype=float if _rate_kind(c) == "float" else object)
        else:
            typed_rates[c] = np.full(
                len(legacy),
                np.nan if _rate_kind(c) == "float" else None,
                dtype=float if _rate_kind(c) == "float" else object,
            )
    return _frame(typed_rates, _rate_kind, RATE_LABELS)


def _sha256(blobs: list[bytes]) -> str:
    """SHA-256 of one file's bytes; of several, over length-prefixed bytes (no ambiguity)."""
    if len(blobs) == 1:
        return hashlib.sha256(blobs[0]).hexdigest()
    h = hashlib.sha256(b"lmsbayes-trials-v2\0")
    for b in blobs:
        h.update(len(b).to_bytes(8, "big"))
        h.update(b)
    return h.hexdigest()


def rates_path_for(path: str | PathLike[str]) -> Path | None:
    """The rates table that goes with an arm table, if it exists beside it.

    For ``DIR/NAME.csv`` this is ``DIR/NAME_rates.csv``; the bundled pair's
    names also pair up (``lms_trials.csv`` with ``pfs_rates.csv``), so a copy
    of the ``data/`` folder loads as it is.

    Parameters
    ----------
    path : str or path-like
        The arm table.

    Returns
    -------
    pathlib.Path or None
    """
    p = Path(path)
    candidates = [p.with_name(f"{p.stem}_rates{p.suffix or '.csv'}")]
    if p.name == BUNDLED_ARMS:
        candidates.append(p.with_name(BUNDLED_RATES))
    return next((c for c in candidates if c.is_file()), None)


def load_trials(
    path: str | PathLike[str] | None = None,
    rates: str | PathLike[str] | None = None,
    *,
    known_columns: Iterable[str] = (),
) -> Trials:
    """Read and validate the trial-arm table and its reported-rates table.

    Parameters
    ----------
    path : str or path-like, optional
        Arm table (CSV, schema in ``data/README.md``); the bundled
        ``lms_trials.csv`` with its ``pfs_rates.csv`` when omitted.
    rates : str or path-like, optional
        Rates table. When omitted for a user's ``path``, the file
        :func:`rates_path_for` names is read if it exists (``NAME_rates.csv``
        beside ``NAME.csv``); otherwise the data have no reported rates.
    known_columns : iterable of str, optional
        A user's own column names that are meant, such as the covariates a
        spec names. Other unknown headers close to a known name (``n_uterin``,
        ``N``) are errors with a "did you mean"; unknown headers far from every
        known name are kept as the user's own columns (float64 if every cell is
        a number, else text).

    Returns
    -------
    Trials
        ``arms`` (one row per arm, file order) and ``rates`` (one row per
        reported rate), ``sha256`` over the files read and their names.

    Raises
    ------
    FileNotFoundError
        A named file does not exist.
    DataValidationError
        Any problem with the content, in either file or in their join; all
        problems are listed at once, each naming the file, row, column and
        value.

    Warns
    -----
    FutureWarning
        The arm table holds ``pfsr_<t>m`` column families (the layout before
        the rates table); they are converted into ``rates``.
    """
    known_columns = tuple(known_columns)
    if path is None:
        if rates is not None:
            raise InputError("rates= needs path= (the bundled arm table comes with its own rates)")
        base = importlib.resources.files("lmsbayes") / "_data"
        arm_src, arm_file = base / BUNDLED_ARMS, f"lmsbayes/_data/{BUNDLED_ARMS} (bundled)"
        rate_src = base / BUNDLED_RATES
        rate_file = f"lmsbayes/_data/{BUNDLED_RATES} (bundled)"
        if not rate_src.is_file():
            rate_src = None
    else:
        arm_src, arm_file = Path(path), str(path)
        rate_src = Path(rates) if rates is not None else rates_path_for(path)
        rate_file = str(rates) if rates is not None else (str(rate_src) if rate_src else "")

    arms, legacy_typed, problems, arm_raw, legacy_cols = _read_arms(
        arm_src, arm_file, known_columns
    )
    blobs, files = [arm_raw], [arm_file]
    rate_frame = None
    if rate_src is not None:
        if legacy_cols:
            problems.append(
                Problem(
                    arm_file,
                    1,
                    None,
                    legacy_cols[0],
                    legacy_cols[0],
                    f"holds PFS rates in pfsr_<t>m columns ({', '.join(legacy_cols)})"
                    f" while the rates table {rate_file} is also read; keep the "
                    "rates in one place (move them to the rates table)",
                )
            )
        # the join needs the arm ids even when the arm table has other problems
        arm_ids = (
            arms["arm_id"].astype(str).to_numpy() if arms is not None else _arm_ids_anyway(arm_src)
        )
        rate_frame, rate_problems, rate_raw = _read_rates(
            rate_src, rate_file, arm_ids, arm_file, known_columns
        )
        problems += rate_problems
        blobs.append(rate_raw)
        files.append(rate_file)
    if problems:
        raise DataValidationError(problems)
    assert arms is not None and legacy_typed is not None
    if rate_frame is None:
        rate_frame = _rates_from_legacy(legacy_typed, arm_file)
        if legacy_cols:
            families = [c for c in legacy_cols if _RATE_FAMILY.fullmatch(c)[2] is None]
            warnings.warn(
                f"{arm_file}: PFS rates in pfsr_<t>m columns ({', '.join(families)}, ...) are the "
                "layout before the rates table and will stop loading in a later version; they were "
                f"converted to {len(rate_frame)} rates. Move them to a rates table "
                f"{Path(arm_file).stem}_rates.csv beside the file (columns arm_id, t, rate, lo, "
                f"hi, kind, ...; see data/README.md)",
                FutureWarning,
                stacklevel=2,
            )
    sha = _sha256(blobs)
    arms.attrs = {"path": arm_file, "sha256": sha}
    return Trials(arms=arms, rates=rate_frame, sha256=sha, files=tuple(files))


# ---------------------------------------------------------------------------- (study, r, n) tables

#: Columns of a plain binomial table: ``study``, ``r`` and ``n`` required, the rest optional.
BINOMIAL_COLUMNS = ("study", "r", "n", "role", "regimen", "year")
BINOMIAL_REQUIRED = ("study", "r", "n")
#: n of a (study, r, n) row: as in the arm table.
BINOMIAL_MAX_N = int(BOUNDS["n"][1])
# r is checked against its row's n below; its own bound keeps the cast safe
_BINOMIAL_BOUNDS = {**BOUNDS, "r": (0, BINOMIAL_MAX_N, False)}


#: Headers people give the required columns, for a "did you mean" (never renamed silently).
_BINOMIAL_SYNONYMS = {
    "study": ("trial", "studies", "name", "label", "id", "study_id", "studyid", "author", "source"),
    "r": (
        "events",
        "event",
        "responders",
        "responses",
        "response",
        "successes",
        "success",
        "cases",
        "count",
        "x",
        "y",
        "k",
        "resp",
    ),
    "n": (
        "total",
        "patients",
        "pts",
        "size",
        "sample_size",
        "samplesize",
        "subjects",
        "n_total",
        "n_patients",
        "number",
    ),
}
_BINOMIAL_MEANING = {"study": "the study label", "r": "responders or events", "n": "patients"}


def _binomial_header(header: list[str], file: str) -> tuple[list[str], list[Problem]]:
    """The header with the known columns' names as the package spells them, and its problems.

    A name that differs from a known column only in case (``Study``, ``N``, R's habit) is that
    column: the header is unambiguous, so it is accepted. Missing required columns are one
    problem that names study, r and n and, for each, the header cell that is probably meant
    (a typo or a usual synonym: ``studies``, ``events``), which is never renamed silently.
    """
    problems: list[Problem] = []
    out = list(header)
    lower: dict[str, list[str]] = {}
    for col in header:
        lower.setdefault(col.lower(), []).append(col)
    for known in BINOMIAL_COLUMNS:
        spellings = list(dict.fromkeys(lower.get(known, [])))
        if len(spellings) > 1:
            problems.append(
                Problem(
                    file,
                    1,
                    None,
                    known,
                    None,
                    f"columns {' and '.join(repr(c) for c in spellings)} differ only in case; "
                    f"keep one column {known!r}",
                )
            )
        elif spellings and spellings[0] != known:
            out = [known if c == spellings[0] else c for c in out]
    missing = [c for c in BINOMIAL_REQUIRED if c not in out]
    if problems or not missing:
        return out, problems
    unused = [c for c in out if c and c not in BINOMIAL_COLUMNS]
    hints = []
    for col in missing:
        close = difflib.get_close_matches(col, [c.lower() for c in unused], n=1, cutoff=0.6)
        if not close:
            close = [c.lower() for c in unused if c.lower() in _BINOMIAL_SYNONYMS[col]][:1]
        if close:
            meant = next(c for c in unused if c.lower() == close[0])
            unused.remove(meant)
            hints.append(f"{meant!r} for {col!r}")
    found = ", ".join(repr(_clip(c, 20)) for c in header[:8]) + (", ..." if len(header) > 8 else "")
    need = ", ".join(f"{c} ({_BINOMIAL_MEANING[c]})" for c in BINOMIAL_REQUIRED)
    message = (
        f"a (study, r, n) table needs the columns {need}; "
        f"missing {', '.join(repr(c) for c in missing)} (the header has {found})"
    )
    if hints:
        message += f"; did you mean {', '.join(hints)}? Rename the column"
        message += "s" if len(hints) > 1 else ""
    problems.append(Problem(file, 1, None, None, None, message))
    return out, problems


def _binomial_kind(col: str) -> str:  # role and regimen: text, checked as in the arm table
    if col in ("r", "n", "year"):
        return "int"
    return "text" if col in BINOMIAL_COLUMNS else "user"


def _check_binomial_cells(
    header: list[str], rows: list[list[str]], numbers: list[int], file: str
) -> pd.DataFrame:
    """The checked (study, r, n) table, or DataValidationError listing every problem."""
    out = _Collector(file, {}, numbers)
    if not rows:
        out.problems.append(
            Problem(
                file,
                None,
                None,
                None,
                None,
                "the table has a header but no study rows (one row per study arm: study, r, n)",
            )
        )
    given = header
    header, problems = _binomial_header(header, file)
    out.problems.extend(problems)
    spelled = {k: g for k, g in zip(header, given, strict=True) if k != g}  # 'r' -> 'R'

    def error(problems: list[Problem]) -> DataValidationError:
        """The problems, each naming its column as the user's header spells it."""
        return DataValidationError(
            [replace(p, column=spelled.get(p.column, p.column)) for p in problems]
        )

    for k, col in enumerate(header):
        if col == "":
            out.header(None, f"header cell {k + 1} is blank; every column needs a name")
        elif _CONTROL.search(col):
            out.header(None, f"header cell {k + 1} ({_clip(col)!r}) holds a control character")
    for col in sorted({c for c in header if c and header.count(c) > 1}):
        out.header(col, "column appears more than once in the header", col)
    if out.problems:
        raise error(out.problems)
    columns = [*BINOMIAL_COLUMNS, *(c for c in dict.fromkeys(header) if c not in BINOMIAL_COLUMNS)]
    cells = _table_cells(header, rows, numbers, out, columns)
    if cells is None:
        raise error(out.problems)
    out.cells = cells
    typed = _convert(cells, out, _binomial_kind, {}, BINOMIAL_REQUIRED, _BINOMIAL_BOUNDS)
    out.where(typed["r"] > typed["n"], "r", "must be <= n ({row[n]}), got {value!r}")
    clean = [  # role and regimen by the arm table's rules (data/README.md section 2a)
        np.where([bool(_CONTROL.search(v)) for v in cells[c]], "", cells[c])
        for c in ("role", "regimen")
    ]
    for i, col, message in role_regimen_problems(*clean, row_name=lambda j: f"row {out.rows[j]}"):
        out.add(i, col, message)
    first: dict[str, int] = {}
    for i, a in enumerate(cells["study"]):
        if a and a in first:
            out.add(
                i,
                "study",
                f"duplicate study {_clip(a)!r} (first in row {out.rows[first[a]]}); "
                "one row per study arm",
            )
        first.setdefault(a, i)
    if out.problems:
        raise error(_sorted(out.problems, columns))
    present = [c for c in columns if c in header]
    df = _frame({c: typed[c] for c in present}, _binomial_kind, {})
    df["r"] = df["r"].astype(np.int64)  # required and bounds-checked: no missing, no wrap-around
    df["n"] = df["n"].astype(np.int64)
    df["study"] = df["study"].astype(str)
    return df


def read_binomial(path: str | PathLike[str]) -> pd.DataFrame:
    """Read and validate a plain (study, r, n) table: one row per study arm.

    Parameters
    ----------
    path : str or path-like
        CSV (comma-separated, UTF-8 with or without a byte-order mark) with the
        columns ``study`` (a unique label), ``r`` (responders or events, a whole
        number in [0, n]) and ``n`` (patients, a whole number in [1, 100,000]);
        optional ``role`` and ``regimen`` (text) and ``year`` (a whole number in
        [1950, next year]); a user's own columns are kept (float64 if every
        cell is a number, else text) for a spec's covariates.

    Returns
    -------
    pandas.DataFrame
        ``study`` (str), ``r`` and ``n`` (int64), the optional columns present,
        then the user's own; ``attrs`` holds ``path`` and ``sha256`` (of the bytes).

    Raises
    ------
    FileNotFoundError
        No such file.
    DataValidationError
        Every problem of the file at once, each naming file, row, column and
        value: encoding, delimiter, header, a number out of range (checked
        before any cast), r > n, a duplicate study, a control character.
    """
    file = str(path)
    header, rows, numbers, raw = read_csv_cells(Path(path), file, "(study, r, n) table")
    df = _check_binomial_cells(header, rows, numbers, file)
    df.attrs = {"path": file, "sha256": hashlib.sha256(raw).hexdigest()}
    return df


def _cell_text(v) -> str:
    """A DataFrame cell as the text a CSV would hold (numbers exactly, missing blank)."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        x = float(v)
        return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)
    try:
        if pd.isna(v):
            return ""
    except (TypeError, ValueError):
        pass
    return str(v).strip()


def binomial_table(table: pd.DataFrame, *, source: str | None = None) -> pd.DataFrame:
    """Validate an in-memory (study, r, n) table by the rules of :func:`read_binomial`.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns as for :func:`read_binomial`, as numbers or text; each cell is
        checked as the text a CSV would hold, so ``1e19`` or a wrapped-around
        negative int64 is refused, never cast.
    source : str, optional
        The name messages use (default: ``attrs["path"]``, else ``"data"``);
        rows are numbered as in a spreadsheet (header = 1).

    Returns
    -------
    pandas.DataFrame
        As :func:`read_binomial`; ``attrs`` kept.

    Raises
    ------
    DataValidationError
        As :func:`read_binomial`.
    """
    if not isinstance(table, pd.DataFrame):
        raise InputError(f"a (study, r, n) table must be a DataFrame, got {type(table).__name__}")
    file = source or str(table.attrs.get("path", "data"))
    header = [str(c).strip() for c in table.columns]
    rows = [[_cell_text(v) for v in row] for row in table.itertuples(index=False, name=None)]
    numbers = [k + 2 for k in range(len(rows))]
    df = _check_binomial_cells(header, rows, numbers, file)
    df.attrs = dict(table.attrs)
    return df


def _arm_ids_anyway(source) -> np.ndarray:
    """Arm ids of an arm table that failed validation (for the join check), best effort."""
    try:
        header, rows, _, _ = read_csv_cells(source, "", "trial-arm table")
    except (DataValidationError, FileNotFoundError):
        return np.array([], dtype=object)
    if "arm_id" not in header:
        return np.array([], dtype=object)
    k = header.index("arm_id")
    return np.array([r[k] for r in rows if len(r) > k], dtype=object)


def as_trials(data: Trials | pd.DataFrame) -> Trials:
    """A :class:`Trials` from a Trials (returned as is) or an arm-table DataFrame.

    A DataFrame (e.g. a filtered ``trials.arms``, or the table an older
    ``load_trials`` returned) becomes a Trials whose rates come from its
    ``pfsr_<t>m`` columns, if it has any, with a ``FutureWarning`` (a frame
    has no rates table); its provenance is ``attrs['sha256']`` when present,
    else a hash of its content.

    Parameters
    ----------
    data : Trials or pandas.DataFrame

    Returns
    -------
    Trials
    """
    if isinstance(data, Trials):
        return data
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"expected Trials or a DataFrame of arms, got {type(data).__name__}")
    # a frame carries no rates table: say so rather than let reported rates vanish unnoticed
    warnings.warn(
        "a DataFrame of arms was given where the Trials of load_trials() is expected; its rates "
        "come from pfsr_<t>m columns only (none: every rate is derived from the median). Pass the "
        "Trials, or trials.select(mask) for a subset",
        FutureWarning,
        stacklevel=3,
    )
    arms = data.reset_index(drop=True)
    legacy = [c for c in arms.columns if (m := _RATE_FAMILY.fullmatch(str(c))) and m[2] is None]

    def get(c: str, has: np.ndarray) -> np.ndarray:
        if c not in arms:
            return np.full(int(has.sum()), np.nan)
        return arms[c].to_numpy(dtype=float, na_value=np.nan)[has]

    parts = []
    for col in legacy:
        has = arms[col].notna().to_numpy()
        src = f"{col}_source"
        parts.append(
            pd.DataFrame(
                {
                    "arm_id": arms.loc[has, "arm_id"].astype(str).to_numpy(),
                    "t": float(_RATE_FAMILY.fullmatch(col)[1]),
                    "rate": get(col, has),
                    "lo": get(f"{col}_lo", has),
                    "hi": get(f"{col}_hi", has),
                    "kind": (
                        arms.loc[has, src].astype(object).to_numpy() if src in arms else "reported"
                    ),
                }
            )
        )
    rates = _empty_rates() if not parts else pd.concat(parts, ignore_index=True)
    for c in RATE_COLUMNS:
        if c not in rates:
            rates[c] = np.nan if _rate_kind(c) == "float" else None
    rates = rates[list(RATE_COLUMNS)]
    sha = (
        data.attrs.get("sha256")
        or hashlib.sha256(
            pd.util.hash_pandas_object(arms.astype(str), index=False).to_numpy().tobytes()
        ).hexdigest()
    )
    path = data.attrs.get("path")
    return Trials(
        arms=arms.drop(columns=[c for c in arms.columns if _RATE_FAMILY.fullmatch(str(c))]),
        rates=rates,
        sha256=sha,
        files=(path,) if path else (),
    )


# ---------------------------------------------------------------------------- long table

_REASONS = (
    "reported rate has neither a usable 95% CI nor n",
    "rate derived from the median has no standard error (no CI of the median, events or n)",
    "no reported rate and no median",
    "no reported rate (derivation from the median is off)",
)


def _floats(frame: pd.DataFrame, col: str) -> np.ndarray:
    """A numeric column as floats with NaN; all NaN when the column is absent."""
    if col not in frame:
        return np.full(len(frame), np.nan)
    return frame[col].to_numpy(dtype=float, na_value=np.nan)


def _reported_at(trials: Trials, t: float, tolerance: float) -> pd.DataFrame:
    """Per arm (in arm order), the reported rate whose t is closest to ``t`` within tolerance."""
    r = trials.rates
    ids = trials.arms["arm_id"].astype(str).to_numpy()
    dist = np.abs(r["t"].to_numpy(dtype=float) - t)
    near = r[dist <= tolerance * t + 1e-9].assign(_dist=dist[dist <= tolerance * t + 1e-9])
    # closest first; an exact tie goes to the earlier t (the rate nearer the start of follow-up)
    best = near.sort_values(["_dist", "t"], kind="stable").drop_duplicates("arm_id")
    best = best.set_index(best["arm_id"].astype(str))
    pos = best.index.get_indexer(ids)
    out = {}
    for c in ("rate", "lo", "hi", "t"):
        vals = best[c].to_numpy(dtype=float)
        out[c] = np.where(pos >= 0, vals[pos] if len(vals) else np.nan, np.nan)
    kinds = best["kind"].astype(object).to_numpy()
    out["kind"] = np.where(pos >= 0, kinds[pos] if len(kinds) else "", "")
    return pd.DataFrame(out)


def _landmark_rows(
    trials: Trials, t: float, derive: bool, tolerance: float
) -> dict[str, np.ndarray]:
    """All arms at one landmark: rate, se, effective data and inclusion, as arrays."""
    arms = trials.arms
    k = len(arms)
    rep = _reported_at(trials, t, tolerance)
    s_rep = rep["rate"].to_numpy()
    n, median = _floats(arms, "n"), _floats(arms, "pfs_median_m")
    reported = ~np.isnan(s_rep)
    derived = ~reported & ~np.isnan(median) & derive

    se_ci = se_logit_from_ci(rep["lo"].to_numpy(), rep["hi"].to_numpy())
    se_bin = se_logit_binomial(s_rep, n)
    se_c, method_c = se_log_median(
        _floats(arms, "pfs_median_lo"),
        _floats(arms, "pfs_median_hi"),
        _floats(arms, "pfs_events"),
        n,
    )
    use_ci, use_bin = reported & ~np.isnan(se_ci), reported & np.isnan(se_ci) & ~np.isnan(se_bin)
    rate = np.where(reported, s_rep, np.where(derived, exponential_rate(median, t), np.nan))
    se = np.select(
        [use_ci, use_bin, derived], [se_ci, se_bin, se_logit_from_median(median, t, se_c)], np.nan
    )
    n_eff, y_eff = effective_binomial(rate, se, n)
    reason = np.select(
        [
            reported & np.isnan(se),
            derived & np.isnan(se),
            ~reported & np.isnan(median),
            ~reported & np.full(k, not derive),
        ],
        _REASONS,
        "",
    )
    return {
        "landmark": np.full(k, float(t)),
        "rate": rate,
        "rate_source": np.where(
            reported, rep["kind"].to_numpy(), np.where(derived, "exponential", "")
        ),
        "se_logit": se,
        "se_method": np.select([use_ci, use_bin, derived], ["rate_ci", "binomial", method_c], ""),
        "n_eff": n_eff,
        "y_eff": y_eff,
        "included": reason == "",
        "exclusion_reason": reason,
        "rate_t": np.where(reported, rep["t"].to_numpy(), np.nan),
    }


def long_table(
    trials: Trials | pd.DataFrame,
    landmarks: Sequence[float] = (3, 6),
    *,
    derive_from_median: bool = True,
    tolerance: float = 0.1,
) -> pd.DataFrame:
    """One row per (arm, landmark) with the rate, its logit se and effective data.

    Rules (see ARCHITECTURE.md, "Data"): a reported (or ``km_text``) rate is
    used as is, with its logit se from its 95% CI, else binomial with n. A
    missing rate is derived from the median, ``S = 2^(-t / median)``
    (``rate_source = 'exponential'``), with ``se_logit`` from se(log median)
    by the delta method (:func:`se_logit_from_median`).

    A reported rate at time ``t`` counts for landmark ``L`` when
    ``|t - L| <= tolerance * L``; of several, the closest (ties: the earlier
    ``t``). With the default 10%, 12 weeks (2.769 months) is the 3-month
    landmark and 24 weeks (5.538) or 26 weeks (6.0) the 6-month landmark, as
    EORTC-type analyses count them; ``rate_t`` says which ``t`` was used.

    Parameters
    ----------
    trials : Trials or pandas.DataFrame
        Output of :func:`load_trials` (a DataFrame of arms is converted by
        :func:`as_trials`).
    landmarks : sequence of float, default (3, 6)
        Landmarks in months (> 0, distinct).
    derive_from_median : bool, default True
        Derive missing rates from the median; when False such rows are
        excluded with the reason.
    tolerance : float, default 0.1
        Relative distance within which a reported ``t`` counts as the
        landmark, in [0, 0.5).

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
        design, n, uterine_fraction``, then ``rate_t`` (the months of the
        reported rate used; NaN when none).
    """
    marks = [float(t) for t in np.atleast_1d(np.asarray(landmarks, dtype=float))]
    if (
        not marks
        or any(not (math.isfinite(t) and t > 0) for t in marks)
        or len(set(marks)) != len(marks)
    ):
        raise OptionError(
            f"landmarks must be distinct positive numbers of months, got {landmarks!r}"
        )
    if not (isinstance(tolerance, (int, float)) and 0 <= tolerance < 0.5):
        raise OptionError(f"tolerance must be a number in [0, 0.5), got {tolerance!r}")
    trials = as_trials(trials)
    # outcome columns may be absent (treated as blank); identity and covariates may not
    missing = [c for c in ("arm_id", *COVARIATES) if c not in trials.arms]
    if missing:
        raise OptionError(f"trials lacks columns {missing}; pass the output of load_trials()")
    arms = trials.arms.reset_index(drop=True)
    trials = Trials(arms=arms, rates=trials.rates, sha256=trials.sha256, files=trials.files)
    parts = [_landmark_rows(trials, t, derive_from_median, tolerance) for t in marks]
    # arm-major order: row r is arm r // L at landmark r % L
    arm_idx = np.repeat(np.arange(len(arms)), len(marks))
    stacked = {key: np.stack([p[key] for p in parts], axis=1).ravel() for key in parts[0]}
    rate_t = stacked.pop("rate_t")
    columns = {"arm_id": arms["arm_id"].array.take(arm_idx), **stacked}
    for key in ("rate_source", "se_method", "exclusion_reason"):
        columns[key] = pd.Series(stacked[key], dtype=object).astype(_TEXT)
    for key in ("n_eff", "y_eff"):
        columns[key] = pd.array(stacked[key], dtype="Float64").astype("Int64")
    for c in COVARIATES:
        columns[c] = arms[c].array.take(arm_idx)  # keeps Int64 / categorical dtypes
    columns["rate_t"] = rate_t.astype(float)
    table = pd.DataFrame(columns)
    table.attrs = {
        **arms.attrs,
        "sha256": trials.sha256,
        "landmarks": tuple(marks),
        "derive_from_median": derive_from_median,
        "tolerance": float(tolerance),
    }
    return table


#: Columns only the arm table has: two of them (or names close to them) make a header an arm
#: table's even without ``arm_id``.
_ARM_MARKERS = tuple(c for c in REQUIRED if c not in (*BINOMIAL_COLUMNS, "arm_id", "line"))


def is_binomial_header(header: Sequence[str]) -> bool:
    """True when a table with this header is a (study, r, n) table rather than an arm table.

    ``arm_id`` (in any case) makes an arm table; otherwise ``study`` (in any case) makes a
    (study, r, n) table, and so does any header without two of the arm table's own columns
    (or names close to them): ``Study,N,R`` or ``studies,events,n`` are read as the
    (study, r, n) tables they were meant to be, so that their errors speak of study, r and n.
    """
    lower = [str(c).strip().lower() for c in header]
    if "arm_id" in lower:
        return False
    if "study" in lower:
        return True
    markers = sum(
        1 for c in lower if c and difflib.get_close_matches(c, _ARM_MARKERS, n=1, cutoff=0.8)
    )
    return markers < 2


def read_tables(data=None):
    """The input tables of a fit: the bundled data, a CSV path, or what the caller passed.

    The kind of a path's table is told from its header as the checked reader
    parses it (a byte-order mark, quoting or blank lines do not change it; see
    :func:`is_binomial_header`): ``study`` without ``arm_id``, in any case, or
    a header without the arm table's own columns is a (study, r, n) table
    (:func:`read_binomial`); anything else is read as an arm table
    (:func:`load_trials`).

    Parameters
    ----------
    data : Trials, DataFrame, ModelData, path or None
        None: the bundled data; a path: the table it names, checked; anything
        else is returned unchanged.

    Returns
    -------
    Trials or pandas.DataFrame or the input

    Raises
    ------
    FileNotFoundError, DataValidationError
        As the reader of the table's kind.
    """
    if data is None:
        return load_trials()
    if isinstance(data, (str, PathLike)):
        path = Path(data)
        if path.is_file():
            header, _, _, _ = read_csv_cells(path, str(data), "data table")
            if is_binomial_header(header):
                return read_binomial(data)
        elif not path.exists():
            raise FileNotFoundError(f"data file not found: {data}")
        return load_trials(data)
    return data
