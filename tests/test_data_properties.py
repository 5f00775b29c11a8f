"""Property-based tests of the two table readers (issue 11, item 4).

Valid arm and rates tables are generated, then damaged the way a hostile user or a broken
export would: a cell replaced by a hostile value, a header misspelt, dropped or repeated,
bytes truncated, inserted or flipped, lines deleted or repeated, a file removed. Whatever
happens, ``load_trials`` either returns valid :class:`Trials` or raises
:class:`DataValidationError` whose every problem names one of the two files (or
``FileNotFoundError`` naming the missing file). Anything else escaping is a bug.

Fast by default; ``--run-slow`` runs the deep profile (many more examples).
"""

from __future__ import annotations

import csv
import io
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmsbayes.data import (
    ARM_COLUMNS,
    BOUNDS,
    INT_COLUMNS,
    LABELS,
    RATE_COLUMNS,
    DataValidationError,
    Trials,
    load_trials,
    long_table,
)

FAST = settings(
    max_examples=150,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DEEP = settings(FAST, max_examples=3000)
VALID = settings(FAST, max_examples=50)

SAFE_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from(",\"\n'"),
    min_size=1,
    max_size=8,
).filter(lambda s: s.strip() != "")
HOSTILE = st.sampled_from(
    [
        "",
        " ",
        "1e19",
        "-1e19",
        "9223372036854775808",
        "1e12",
        "99999",
        "-5",
        "0",
        "-0",
        "1.5",
        "\u0664\u0660",
        "\uff14",
        "1_000",
        "4\x000",
        "\x00",
        "nan",
        "NaN",
        "inf",
        "-inf",
        "1e999",
        "0x1A",
        "1,5",
        "5.6+",
        "NR",
        "true",
        "TRUE",
        "reported",
        "km_text",
        "1L",
        "2L+",
        "R-T",
        "uLMS",
        "abstract",
        "news",
        "10.1000/x",
        "https://x.org",
        "NCT01234567",
        "2016-001234-56",
        '"',
        '""',
        "\n",
        "\r",
        "a,b",
        "\ufeff",
        "é",
        "\u202e",
        "x" * 300,
        "0.5",
        "2.769",
        "120",
        "120.0001",
        "1e-300",
        "-0.0",
        ".5",
        "5.",
        "+3",
        "++3",
    ]
)
CELL = HOSTILE | SAFE_TEXT | st.text(max_size=12)


def _fmt(x: float) -> str:
    return repr(float(x))


@st.composite
def valid_tables(draw) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """A valid (arm rows, rate rows) pair, every optional cell sometimes blank."""
    k = draw(st.integers(1, 5))
    ids = draw(
        st.lists(
            st.text(alphabet="abcxyz_0189", min_size=1, max_size=8),
            min_size=k,
            max_size=k,
            unique=True,
        )
    )
    arms, rates = [], []
    for arm_id in ids:
        population = draw(st.sampled_from(LABELS["population"]))
        n = draw(st.none() | st.integers(1, 300))
        n_ut = {"uLMS": n, "stLMS": draw(st.sampled_from([0, None]))}.get(
            population, draw(st.none() | st.integers(0, n or 300))
        )
        cells = {c: "" for c in ARM_COLUMNS} | {
            "arm_id": arm_id,
            "trial": draw(SAFE_TEXT),
            "arm": draw(SAFE_TEXT),
            "agents": draw(SAFE_TEXT),
            "notes": draw(SAFE_TEXT),
            "phase": "2",
            "year": str(draw(st.integers(1990, 2025))),
            "pmid": str(draw(st.integers(1, 10**8 - 1))) if draw(st.booleans()) else "",
            "registry_id": draw(st.sampled_from(["", "NCT02997358", "NCT02997358;2016-001234-56"])),
            "evidence": draw(st.sampled_from(LABELS["evidence"])),
            "evidence_level": draw(st.sampled_from(("", *LABELS["evidence_level"]))),
            "design": draw(st.sampled_from(LABELS["design"])),
            "treatment_class": draw(st.sampled_from(LABELS["treatment_class"])),
            "line": draw(st.sampled_from(LABELS["line"])),
            "population": population,
            "placebo": draw(st.sampled_from(["true", "false", "TRUE", "False"])),
            "n": "" if n is None else str(n),
            "n_uterine": "" if n_ut is None else str(n_ut),
            "pfs_events": str(draw(st.integers(0, n))) if n and draw(st.booleans()) else "",
        }
        if draw(st.booleans()):
            median = draw(st.integers(50, 3000)) / 100
            cells["pfs_median_m"] = _fmt(median)
            if draw(st.booleans()):
                cells["pfs_median_lo"] = _fmt(round(median * draw(st.floats(0.1, 1.0)), 2))
                cells["pfs_median_hi"] = _fmt(round(median * draw(st.floats(1.0, 3.0)), 2))
        arms.append(cells)
        ts = draw(
            st.lists(
                st.sampled_from([1, 2.769, 3, 5.538, 6, 9, 12, 24, 60]), max_size=3, unique=True
            )
        )
        for t in ts:
            s = draw(st.integers(0, 1000)) / 1000
            row = {c: "" for c in RATE_COLUMNS} | {
                "arm_id": arm_id,
                "t": _fmt(t),
                "rate": _fmt(s),
                "kind": draw(st.sampled_from(["reported", "km_text"])),
                "evidence_level": draw(st.sampled_from(("", *LABELS["evidence_level"]))),
                "source": draw(st.sampled_from(["", "12345", "10.1056/NEJMoa2403394"])),
                "location": draw(SAFE_TEXT),
                "notes": draw(SAFE_TEXT),
            }
            if draw(st.booleans()):
                row["lo"] = _fmt(draw(st.integers(0, int(s * 1000))) / 1000)
                row["hi"] = _fmt(draw(st.integers(int(s * 1000), 1000)) / 1000)
            rates.append(row)
    return arms, rates


def _csv_bytes(rows: list[dict[str, str]], columns: list[str]) -> bytes:
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(columns)
    w.writerows([[r.get(c, "") for c in columns] for r in rows])
    return buf.getvalue().encode("utf-8")


MUTATIONS = (
    "cell",
    "header_rename",
    "header_drop",
    "header_repeat",
    "header_add",
    "truncate",
    "insert",
    "flip",
    "line_delete",
    "line_repeat",
    "remove_rates",
    "legacy_column",
)


@st.composite
def damaged(draw):
    """(arm bytes, rate bytes or None, description) after one or two random mutations."""
    arms, rates = draw(valid_tables())
    files = {"arms": [list(ARM_COLUMNS), arms], "rates": [list(RATE_COLUMNS), rates]}
    raw: dict[str, bytes | None] = {}
    done = []
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(MUTATIONS))
        which = draw(st.sampled_from(["arms", "rates"]))
        columns, rows = files[which]
        done.append(f"{kind}:{which}")
        if kind == "cell" and rows:
            i = draw(st.integers(0, len(rows) - 1))
            rows[i][draw(st.sampled_from(columns))] = draw(CELL)
        elif kind == "header_rename":
            j = draw(st.integers(0, len(columns) - 1))
            name = columns[j]
            edit = draw(st.sampled_from(["drop_last", "upper", "add", "zero_pad", "hostile"]))
            new = {
                "drop_last": name[:-1],
                "upper": name.upper(),
                "add": name + "x",
                "zero_pad": name.replace("_", "_0", 1),
                "hostile": draw(CELL),
            }[edit]
            columns[j] = new
            for r in rows:
                r[new] = r.pop(name, "")
        elif kind == "header_drop":
            columns.pop(draw(st.integers(0, len(columns) - 1)))
        elif kind == "header_repeat":
            columns.append(draw(st.sampled_from(columns)))
        elif kind == "header_add":
            columns.append(
                draw(
                    st.sampled_from(
                        [
                            "ecog",
                            "pfsr_3m",
                            "pfsr_999m",
                            "uterine_fraction",
                            "N",
                            "pfsr_03m",
                            "extra col",
                        ]
                    )
                )
            )
        elif kind == "legacy_column" and which == "arms":
            columns.extend(["pfsr_6m", "pfsr_6m_source"])
            for r in rows:
                if draw(st.booleans()):
                    r.update(
                        pfsr_6m=_fmt(draw(st.integers(0, 100)) / 100), pfsr_6m_source="reported"
                    )
        elif kind == "remove_rates":
            raw["rates"] = None
    for name, (columns, rows) in files.items():
        if name not in raw:
            raw[name] = _csv_bytes(rows, columns)
    for _ in range(draw(st.integers(0, 1))):  # byte-level damage on top, sometimes
        which = draw(st.sampled_from([k for k, v in raw.items() if v is not None]))
        b = bytearray(raw[which])
        kind = draw(st.sampled_from(["truncate", "insert", "flip", "line_delete", "line_repeat"]))
        done.append(f"{kind}:{which}")
        pos = draw(st.integers(0, max(len(b) - 1, 0)))
        if kind == "truncate":
            b = b[:pos]
        elif kind == "insert":
            b[pos:pos] = draw(st.binary(min_size=1, max_size=6))
        elif kind == "flip" and b:
            b[pos] ^= draw(st.integers(1, 255))
        else:
            lines = bytes(b).split(b"\n")
            k = draw(st.integers(0, len(lines) - 1))
            lines = (
                lines[:k] + lines[k + 1 :]
                if kind == "line_delete"
                else lines[:k] + [lines[k]] + lines[k:]
            )
            b = bytearray(b"\n".join(lines))
        raw[which] = bytes(b)
    return raw["arms"], raw["rates"], " ".join(done)


def _check_loaded(trials: Trials) -> None:
    """What a successful load guarantees, whatever the input was."""
    arms, rates = trials.arms, trials.rates
    assert len(arms) >= 1 and arms["arm_id"].is_unique
    for col in INT_COLUMNS:
        x = arms[col].astype("float64")
        low, high, _ = BOUNDS[col]
        assert ((x >= low) & (x <= high) | x.isna()).all(), col
    assert set(rates["arm_id"]) <= set(arms["arm_id"])
    assert ((rates["t"] > 0) & (rates["t"] <= 120)).all()
    for c in ("rate", "lo", "hi"):
        assert ((rates[c] >= 0) & (rates[c] <= 1) | rates[c].isna()).all()
    assert not rates.duplicated(["arm_id", "t"]).any()
    frac = arms["uterine_fraction"]
    assert ((frac >= 0) & (frac <= 1) | frac.isna()).all()
    lt = long_table(trials, landmarks=(3, 6, 24))
    inc = lt[lt["included"]]
    assert (inc["se_logit"] > 0).all() and (inc["n_eff"] >= 1).all()
    assert np.isfinite(inc["rate"]).all()


COUNTS = {"examples": 0, "loaded": 0, "rejected": 0, "not_found": 0}


def _attempt(arm_bytes: bytes, rate_bytes: bytes | None, what: str) -> None:
    COUNTS["examples"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        arms_path = Path(tmp) / "arms.csv"
        arms_path.write_bytes(arm_bytes)
        if rate_bytes is not None:
            (Path(tmp) / "arms_rates.csv").write_bytes(rate_bytes)
        names = {str(arms_path), str(Path(tmp) / "arms_rates.csv")}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter(
                    "ignore", FutureWarning
                )  # the legacy layout loads with a warning
                trials = load_trials(arms_path)
        except DataValidationError as err:
            COUNTS["rejected"] += 1
            assert err.problems, what
            for p in err.problems:
                assert p.file in names, (what, str(p))
                assert str(p).startswith(p.file), (what, str(p))
            assert isinstance(err, ValueError)
            return
        except FileNotFoundError as err:  # only a missing file, named
            COUNTS["not_found"] += 1
            assert any(n in str(err) for n in names), what
            return
        COUNTS["loaded"] += 1
        _check_loaded(trials)


@VALID
@given(tables=valid_tables())
def test_valid_tables_load_and_expand(tables):
    arms, rates = tables
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.csv"
        path.write_bytes(_csv_bytes(arms, list(ARM_COLUMNS)))
        (Path(tmp) / "t_rates.csv").write_bytes(_csv_bytes(rates, list(RATE_COLUMNS)))
        trials = load_trials(path)
    assert list(trials.arms["arm_id"]) == [r["arm_id"] for r in arms]
    assert len(trials.rates) == len(rates)
    np.testing.assert_array_equal(trials.rates["t"], [float(r["t"]) for r in rates])
    _check_loaded(trials)


@FAST
@given(case=damaged())
def test_damaged_tables_raise_only_documented_errors_naming_the_file(case):
    _attempt(*case)


@pytest.mark.slow
@DEEP
@given(case=damaged())
def test_damaged_tables_deep(case):
    _attempt(*case)


def test_report_counts(capsys):
    """Prints the counts of this session's property-based runs (visible with -s)."""
    with capsys.disabled():
        print(
            f"\nproperty-based table mutations: {COUNTS} (escapes: any other exception fails a "
            f"test)"
        )
    assert pd.api.types.is_integer(COUNTS["examples"])
