"""Property-based tests of the (study, r, n) reader and the contrast reader (issue 20, item 6).

Valid tables are generated, then damaged the way a hostile user or a broken export would: a
cell replaced by a hostile value, a header misspelt, dropped or repeated, the delimiter or the
encoding changed, a byte-order mark added, bytes truncated, inserted or flipped, lines deleted or
repeated. Whatever happens, the reader either returns a table that keeps every documented
guarantee (an accepted invalid value fails the test) or raises the package's error
(:class:`~lmsbayes.errors.InputError`) naming the file. Any other exception is an escape and
fails the test. Counts (examples, accepted, refused, escaped) are printed at the end of the run.

Fast by default (the conftest's profile); ``--run-slow`` runs the deep profile.
"""

from __future__ import annotations

import csv
import io
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import PROPERTY_COUNTS, count_property
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmsbayes.contrast.data import (
    IDENTITY_ABS_MAX,
    IDENTITY_SE_RANGE,
    LOG_SE_RANGE,
    RATIO_RANGE,
    contrast_table,
    read_contrasts,
)
from lmsbayes.data import BINOMIAL_MAX_N, BOUNDS, ROLES, binomial_table, read_binomial
from lmsbayes.errors import InputError

_COMMON = dict(
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FAST = settings(max_examples=150, **_COMMON)
DEEP = settings(max_examples=3000, **_COMMON)

HOSTILE = st.sampled_from(
    [
        "",
        " ",
        "1e19",
        "-1e19",
        "10000000000000000000",
        "9223372036854775808",
        "-9223372036854775808",
        "1e12",
        "100000",
        "100001",
        "99999",
        "-5",
        "0",
        "-0",
        "1.5",
        "1.0",
        "\u0664\u0660",
        "\uff14",
        "1_000",
        "4\x000",
        "\x00",
        "\x07",
        "nan",
        "NaN",
        "inf",
        "-inf",
        "Infinity",
        "1e999",
        "1e-300",
        "-1e-300",
        "0x1A",
        "1,5",
        "5.6+",
        "NR",
        "true",
        '"',
        '""',
        "\n",
        "\r",
        "a,b",
        "a;b",
        "\ufeff",
        "é",
        "\u202e",
        "x" * 300,
        "0.5",
        "1e-7",
        "1e-6",
        "1e6",
        "1e7",
        "0.00005",
        "13.9",
        "-13.9",
        "101",
        ".5",
        "5.",
        "+3",
        "++3",
        "1949",
        "1950",
        "2999",
    ]
)
SAFE_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from(",\"'"),
    min_size=1,
    max_size=8,
).filter(lambda s: s.strip() != "")
CELL = HOSTILE | SAFE_TEXT | st.text(max_size=12)
_CONTROL = set(map(chr, [*range(0, 9), 11, 12, *range(14, 32), 127]))


def _csv_bytes(rows: list[dict[str, str]], columns: list[str]) -> bytes:
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(columns)
    w.writerows([[r.get(c, "") for c in columns] for r in rows])
    return buf.getvalue().encode("utf-8")


# --- valid tables -------------------------------------------------------------------------------


@st.composite
def binomial_rows(draw) -> tuple[list[str], list[dict[str, str]]]:
    k = draw(st.integers(1, 6))
    studies = draw(st.lists(SAFE_TEXT, min_size=k, max_size=k, unique_by=str.strip))
    columns = ["study", "r", "n"]
    for extra in ("role", "regimen", "year", "ecog"):
        if draw(st.booleans()):
            columns.append(extra)
    columns = draw(st.permutations(columns))
    rows = []
    for s in studies:
        n = draw(st.integers(1, BINOMIAL_MAX_N))
        rows.append(
            {
                "study": s,
                "n": str(n),
                "r": str(draw(st.integers(0, n))),
                "role": draw(st.sampled_from(["", "control", "experimental", "single_arm"])),
                "regimen": draw(st.sampled_from(["", "doxorubicin", "gemcitabine+docetaxel"])),
                "year": draw(st.sampled_from(["", "1990", "2024"])),
                "ecog": draw(st.sampled_from(["", "0", "1.5", "x"])),
            }
        )
    return list(columns), rows


@st.composite
def contrast_rows(draw) -> tuple[list[str], list[dict[str, str]], str]:
    measure = draw(st.sampled_from(["HR", "OR", "RR", "identity"]))
    k = draw(st.integers(1, 6))
    studies = draw(st.lists(SAFE_TEXT, min_size=k, max_size=k, unique_by=str.strip))
    columns = ["study", "estimate", "lower", "upper", "log_estimate", "se", "level", "exclude"]
    rows = []
    for s in studies:
        row = {"study": s}
        if draw(st.booleans()):
            e = draw(st.floats(0.2, 3.0))
            lo = e * draw(st.floats(0.3, 0.95))
            hi = e * draw(st.floats(1.05, 3.0))
            row |= {"estimate": f"{e:.4f}", "lower": f"{lo:.4f}", "upper": f"{hi:.4f}"}
        else:
            row |= {
                "log_estimate": f"{draw(st.floats(-2, 2)):.4f}",
                "se": f"{draw(st.floats(0.01, 2)):.4f}",
            }
        if draw(st.integers(0, 4)) == 0:
            row["level"] = draw(st.sampled_from(["0.9", "0.95", "0.99"]))
        if draw(st.integers(0, 6)) == 0 and s != studies[0]:
            row["exclude"] = "CI not reported"
        rows.append(row)
    return columns, rows, measure


# --- mutations ----------------------------------------------------------------------------------

TABLE_MUTATIONS = ("cell", "cell", "header_rename", "header_drop", "header_repeat", "header_add")
BYTE_MUTATIONS = (
    "truncate",
    "insert",
    "flip",
    "line_delete",
    "line_repeat",
    "bom",
    "semicolons",
    "tabs",
    "latin1",
    "crlf",
)


def _damage(draw, columns: list[str], rows: list[dict[str, str]]) -> tuple[bytes, str]:
    done = []
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(TABLE_MUTATIONS))
        done.append(kind)
        if kind == "cell" and rows:
            i = draw(st.integers(0, len(rows) - 1))
            rows[i][draw(st.sampled_from(columns))] = draw(CELL)
        elif kind == "header_rename":
            j = draw(st.integers(0, len(columns) - 1))
            old, new = columns[j], draw(st.sampled_from(["", "R", "N", "studie", "x y"]) | CELL)
            columns[j] = new
            for r in rows:
                r[new] = r.pop(old, "")
        elif kind == "header_drop" and len(columns) > 1:
            columns.pop(draw(st.integers(0, len(columns) - 1)))
        elif kind == "header_repeat":
            columns.append(draw(st.sampled_from(columns)))
        elif kind == "header_add":
            columns.append(draw(st.sampled_from(["notes", "arm_id", "level", "r", "\x00"])))
    raw = _csv_bytes(rows, columns)
    for _ in range(draw(st.integers(0, 1))):
        kind = draw(st.sampled_from(BYTE_MUTATIONS))
        done.append(kind)
        b = bytearray(raw)
        pos = draw(st.integers(0, max(len(b) - 1, 0)))
        if kind == "truncate":
            b = b[:pos]
        elif kind == "insert":
            b[pos:pos] = draw(st.binary(min_size=1, max_size=6))
        elif kind == "flip" and b:
            b[pos] ^= draw(st.integers(1, 255))
        elif kind == "bom":
            b[0:0] = b"\xef\xbb\xbf"
        elif kind == "semicolons":
            b = bytearray(bytes(b).replace(b",", b";"))
        elif kind == "tabs":
            b = bytearray(bytes(b).replace(b",", b"\t"))
        elif kind == "latin1":
            b = bytearray(
                bytes(b).decode("utf-8", "replace").encode("latin-1", "replace") + b"\xe9"
            )
        elif kind == "crlf":
            b = bytearray(bytes(b).replace(b"\n", b"\r\n"))
        elif kind in ("line_delete", "line_repeat"):
            lines = bytes(b).split(b"\n")
            k = draw(st.integers(0, len(lines) - 1))
            lines = (
                lines[:k] + lines[k + 1 :]
                if kind == "line_delete"
                else lines[:k] + [lines[k]] + lines[k:]
            )
            b = bytearray(b"\n".join(lines))
        raw = bytes(b)
    return raw, " ".join(done) or "none"


@st.composite
def damaged_binomial(draw) -> tuple[bytes, str]:
    columns, rows = draw(binomial_rows())
    return _damage(draw, columns, rows)


@st.composite
def damaged_contrast(draw) -> tuple[bytes, str, str]:
    columns, rows, measure = draw(contrast_rows())
    raw, what = _damage(draw, columns, rows)
    return raw, what, measure


# --- what an accepted table guarantees ----------------------------------------------------------


def _text_ok(values) -> bool:
    return all(
        (v is None or (isinstance(v, float) and math.isnan(v)))
        or (isinstance(v, str) and not (set(v) & _CONTROL))
        for v in values
    )


def _check_binomial(df: pd.DataFrame) -> None:
    assert len(df) >= 1
    assert df["r"].dtype == np.int64 and df["n"].dtype == np.int64
    n, r = df["n"].to_numpy(), df["r"].to_numpy()
    assert ((n >= 1) & (n <= BINOMIAL_MAX_N)).all()
    assert ((r >= 0) & (r <= n)).all()
    study = df["study"].astype(str)
    assert study.is_unique and (study.str.strip() != "").all()
    assert _text_ok(df["study"])
    for col in ("role", "regimen"):
        if col in df:
            assert _text_ok(df[col])
    if "role" in df:
        assert df["role"].dropna().isin(ROLES).all()
    if "year" in df:
        y = df["year"].astype("float64")
        low, high, _ = BOUNDS["year"]
        assert ((y >= low) & (y <= high) | y.isna()).all()
    for col in df.columns:
        if df[col].dtype == object or str(df[col].dtype) in ("str", "string"):
            assert _text_ok(df[col]), col


def _check_contrasts(df: pd.DataFrame, measure: str) -> None:
    assert len(df) >= 1 and df.index.is_unique
    assert (df.index.astype(str).str.strip() != "").all() and _text_ok(df.index)
    assert np.isfinite(df["yi"]).all() and np.isfinite(df["sei"]).all()
    low, high = LOG_SE_RANGE if measure != "identity" else IDENTITY_SE_RANGE
    assert ((df["sei"] >= low) & (df["sei"] <= high)).all()
    if measure != "identity":
        assert (np.abs(df["yi"]) <= math.log(RATIO_RANGE[1]) + 1e-12).all()
    else:
        assert (np.abs(df["yi"]) <= IDENTITY_ABS_MAX).all()
    assert ((df["level"] >= 0.5) & (df["level"] <= 0.999)).all()
    assert (df["lower"] < df["upper"]).all()


# --- the attempts -------------------------------------------------------------------------------


def _attempt(name: str, read, check, raw: bytes, what: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "table.csv"
        path.write_bytes(raw)
        try:
            out = read(path)
        except InputError as err:
            count_property(name, "refused")
            assert str(path) in str(err), (what, str(err))
            return
        except BaseException:
            count_property(name, "escaped")
            raise
        count_property(name, "accepted")
        check(out)


def _binomial(raw: bytes, what: str, name: str) -> None:
    _attempt(name, read_binomial, _check_binomial, raw, what)


def _contrast(raw: bytes, what: str, measure: str, name: str) -> None:
    _attempt(
        name,
        lambda p: read_contrasts(p, measure=measure),
        lambda df: _check_contrasts(df, measure),
        raw,
        what,
    )


@FAST
@given(case=damaged_binomial())
def test_damaged_binomial_tables_raise_only_the_packages_error(case):
    _binomial(*case, name="(study, r, n) reader")


@pytest.mark.slow
@DEEP
@given(case=damaged_binomial())
def test_damaged_binomial_tables_deep(case):
    _binomial(*case, name="(study, r, n) reader, deep")


@FAST
@given(case=damaged_contrast())
def test_damaged_contrast_tables_raise_only_the_packages_error(case):
    _contrast(*case, name="contrast reader")


@pytest.mark.slow
@DEEP
@given(case=damaged_contrast())
def test_damaged_contrast_tables_deep(case):
    _contrast(*case, name="contrast reader, deep")


NUMBERS = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e19, -1, 0, 1, 10, 100_000, 100_001, 2**63 - 1]),
    st.none(),
    CELL,
)


@FAST
@given(
    r=st.lists(st.integers(0, 60) | NUMBERS, min_size=1, max_size=4),
    n=st.lists(st.integers(60, 500) | NUMBERS, min_size=1, max_size=4),
    as_int=st.booleans(),
)
def test_in_memory_binomial_tables_raise_only_the_packages_error(r, n, as_int):
    """A DataFrame (what ``lb.fit("binomial", df)`` gets): int64, float or object columns."""
    k = min(len(r), len(n))
    df = pd.DataFrame({"study": [f"s{i}" for i in range(k)], "r": r[:k], "n": n[:k]})
    if as_int:
        try:
            df = df.astype({"r": "int64", "n": "int64"})
        except (TypeError, ValueError, OverflowError):
            pass
    try:
        out = binomial_table(df)
    except InputError as err:
        count_property("(study, r, n) in memory", "refused")
        assert "data row" in str(err) or "data" in str(err)
        return
    except BaseException:
        count_property("(study, r, n) in memory", "escaped")
        raise
    count_property("(study, r, n) in memory", "accepted")
    _check_binomial(out)


@FAST
@given(
    y=st.lists(st.floats(-3, 3) | NUMBERS, min_size=1, max_size=4),
    se=st.lists(st.floats(0.01, 2) | NUMBERS, min_size=1, max_size=4),
)
def test_in_memory_contrast_tables_raise_only_the_packages_error(y, se):
    k = min(len(y), len(se))
    df = pd.DataFrame({"study": [f"s{i}" for i in range(k)], "log_estimate": y[:k], "se": se[:k]})
    try:
        out = contrast_table(df)
    except InputError:
        count_property("contrast in memory", "refused")
        return
    except BaseException:
        count_property("contrast in memory", "escaped")
        raise
    count_property("contrast in memory", "accepted")
    _check_contrasts(out, "HR")


def test_zz_report_reader_counts(capsys):
    """Prints this session's counts per reader (run last in this module; visible with -s)."""
    mine = {k: v for k, v in PROPERTY_COUNTS.items() if "reader" in k or "memory" in k}
    with capsys.disabled():
        for name, c in sorted(mine.items()):
            print(
                f"\n{name}: examples {c['examples']}, accepted {c['accepted']}, "
                f"refused {c['refused']}, escaped {c['escaped']}"
            )
    assert all(c["escaped"] == 0 for c in mine.values())
