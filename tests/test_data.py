"""Tests for lmsbayes.data: the two tables, their join, the rate/se arithmetic, the long table."""

from __future__ import annotations

import csv
import hashlib
import math
import pickle
import subprocess
import sys
import warnings
from dataclasses import FrozenInstanceError
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmsbayes.data import (
    ARM_COLUMNS,
    RATE_COLUMNS,
    REQUIRED,
    DataValidationError,
    Problem,
    Trials,
    as_trials,
    effective_binomial,
    exponential_rate,
    load_trials,
    long_table,
    rates_path_for,
    role_regimen_problems,
    se_log_median,
    se_logit_binomial,
    se_logit_from_ci,
    se_logit_from_median,
)
from lmsbayes.errors import InputError

Z = 1.959963984540054
LN2 = math.log(2)
COLUMNS = [c for c in ARM_COLUMNS]
LEGACY = [
    "pfsr_3m",
    "pfsr_6m",
    "pfsr_3m_lo",
    "pfsr_3m_hi",
    "pfsr_6m_lo",
    "pfsr_6m_hi",
    "pfsr_3m_source",
    "pfsr_6m_source",
]

FILLED = {
    "trial": "T-1",
    "first_author": "Doe",
    "year": "2015",
    "pmid": "12345",
    "evidence": "publication",
    "evidence_level": "abstract",
    "phase": "2",
    "design": "single_arm",
    "role": "single_arm",
    "arm": "drug x",
    "agents": "drugx",
    "regimen": "drugx",
    "placebo": "false",
    "treatment_class": "NR-T",
    "line": "2L+",
    "population": "LMS",
    "n": "40",
    "n_uterine": "20",
    "pfs_median_m": "4.0",
    "pfs_median_lo": "3.0",
    "pfs_median_hi": "6.0",
    "notes": "a note, with a comma",
}


def arm(arm_id: str, **cells: object) -> dict[str, str]:
    """A valid arm row; keyword arguments override cells (None = blank)."""
    row = {c: "" for c in COLUMNS} | FILLED | {"arm_id": arm_id}
    row.update({k: "" if v is None else str(v) for k, v in cells.items()})
    return row


def rate(arm_id: str, t: object, r: object, **cells: object) -> dict[str, str]:
    """A valid rates row; keyword arguments override cells (None = blank)."""
    row = {c: "" for c in RATE_COLUMNS} | {
        "arm_id": arm_id,
        "t": str(t),
        "rate": str(r),
        "kind": "reported",
        "source": "12345",
    }
    row.update({k: "" if v is None else str(v) for k, v in cells.items()})
    return row


def base_rows() -> list[dict[str, str]]:
    return [
        arm("a1"),
        arm("a2"),
        arm("a3", population="uLMS", n="30", n_uterine="30", line="1L", treatment_class="R-T"),
    ]


def base_rates() -> list[dict[str, str]]:
    return [
        rate("a2", 3, "0.6", lo="0.45", hi="0.75", location="Table 2"),
        rate("a2", 6, "0.4"),
        rate("a3", "2.769", "0.7", notes="12 weeks"),
    ]


def write(path: Path, rows: list[dict[str, str]], columns: list[str] | None = None) -> Path:
    columns = columns or (list(rows[0]) if rows else COLUMNS)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows([[r.get(c, "") for c in columns] for r in rows])
    return path


def pair(tmp_path: Path, rows=None, rates=None, name: str = "t.csv") -> Path:
    """Arm table and its sibling rates table; returns the arm table's path."""
    path = write(tmp_path / name, base_rows() if rows is None else rows)
    write(
        path.with_name(f"{path.stem}_rates.csv"),
        base_rates() if rates is None else rates,
        list(RATE_COLUMNS),
    )
    return path


def problems_of(path: Path, rates: Path | None = None, **kw) -> list[Problem]:
    with pytest.raises(DataValidationError) as info:
        load_trials(path, rates, **kw)
    return info.value.problems


def only(problems: list[Problem], column: str | None, needle: str) -> Problem:
    hits = [p for p in problems if p.column == column and needle in p.message]
    assert len(hits) == 1, [str(p) for p in problems]
    return hits[0]


# ---------------------------------------------------------------------------- loading


def test_valid_pair_loads_with_dtypes(tmp_path):
    path = pair(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the current layout loads without any warning
        trials = load_trials(path)
    assert isinstance(trials, Trials) and len(trials) == 3
    df = trials.arms
    assert list(df["arm_id"]) == ["a1", "a2", "a3"]
    assert list(df.columns) == [*ARM_COLUMNS, "uterine_fraction", "uterine_fraction_source"]
    for col in ("n", "n_uterine", "pmid", "pfs_events", "year"):
        assert df[col].dtype == "Int64", col
    assert df["pfs_median_m"].dtype == "float64" and df["placebo"].dtype == bool
    assert list(df["line"].cat.categories) == ["1L", "2L+"]
    assert list(df["evidence_level"].cat.categories) == [
        "full_text",
        "abstract",
        "registry",
        "news",
    ]
    assert df["pfs_events"].isna().all() and df["registry_id"].isna().all()
    assert df["notes"].iloc[0] == "a note, with a comma"
    r = trials.rates
    assert list(r.columns) == list(RATE_COLUMNS)
    assert r["t"].tolist() == [3.0, 6.0, 2.769] and r["rate"].dtype == "float64"
    assert list(r["kind"].cat.categories) == ["reported", "km_text"]
    assert r["lo"].isna().tolist() == [False, True, True]
    assert trials.files == (str(path), str(tmp_path / "t_rates.csv"))
    assert df.attrs["path"] == str(path) and df.attrs["sha256"] == trials.sha256


def test_sha256_covers_both_files(tmp_path):
    path = pair(tmp_path)
    a, r = path.read_bytes(), (tmp_path / "t_rates.csv").read_bytes()
    expected = hashlib.sha256(b"lmsbayes-trials-v2\0")
    for blob in (a, r):
        expected.update(len(blob).to_bytes(8, "big") + blob)
    sha = load_trials(path).sha256
    assert sha == expected.hexdigest()
    (tmp_path / "t_rates.csv").write_bytes(r.replace(b"Table 2", b"Table 3"))
    assert load_trials(path).sha256 != sha  # a change in the rates file alone changes it
    (tmp_path / "t_rates.csv").unlink()
    assert load_trials(path).sha256 == hashlib.sha256(a).hexdigest()  # one file: its own hash


def test_rates_file_lookup_rule(tmp_path):
    path = pair(tmp_path)
    assert rates_path_for(path) == tmp_path / "t_rates.csv"
    other = write(tmp_path / "other.csv", base_rates(), list(RATE_COLUMNS))
    assert load_trials(path, other).files[1] == str(other)  # rates= wins over the sibling
    (tmp_path / "t_rates.csv").unlink()
    assert rates_path_for(path) is None
    trials = load_trials(path)
    assert len(trials.rates) == 0 and trials.files == (str(path),)
    assert list(trials.rates.columns) == list(RATE_COLUMNS)
    # the bundled pair's names pair up too, so a copy of data/ loads as it is
    d = tmp_path / "copy"
    d.mkdir()
    write(d / "lms_trials.csv", base_rows())
    write(d / "pfs_rates.csv", base_rates(), list(RATE_COLUMNS))
    assert rates_path_for(d / "lms_trials.csv") == d / "pfs_rates.csv"
    assert len(load_trials(d / "lms_trials.csv").rates) == 3
    with pytest.raises(FileNotFoundError, match="nope_rates.csv"):
        load_trials(path, tmp_path / "nope_rates.csv")
    with pytest.raises(InputError, match="rates= needs path="):
        load_trials(None, other)


def test_uterine_fraction_from_counts_population_or_missing(tmp_path):
    rows = [
        arm("c", n="40", n_uterine="10"),
        arm("u", population="uLMS", n="", n_uterine=""),
        arm("s", population="stLMS", n="12", n_uterine=""),
        arm("m", population="STS-LMS-subgroup", n_uterine=""),
    ]
    df = load_trials(write(tmp_path / "t.csv", rows)).arms
    np.testing.assert_array_equal(df["uterine_fraction"], [0.25, 1.0, 0.0, np.nan])
    assert list(df["uterine_fraction_source"]) == ["counts", "population", "population", "missing"]


def test_optional_columns_may_be_absent(tmp_path):
    columns = [*REQUIRED, "pfs_median_m"]
    df = load_trials(write(tmp_path / "t.csv", [arm("a1")], columns)).arms
    assert df["n"].isna().all() and df["evidence_level"].isna().all()
    assert list(df.columns)[: len(ARM_COLUMNS)] == list(ARM_COLUMNS)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_trials(tmp_path / "nope.csv")
    p = only(problems_of(tmp_path), None, "not a regular file")  # a directory
    assert p.file == str(tmp_path)


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("line", "2L", "must be one of ['1L', '2L+'], got '2L'; did you mean '2L+'?"),
        ("treatment_class", "RT", "did you mean 'R-T'?"),
        ("design", "randomised", "got 'randomised'; did you mean 'randomized'?"),
        ("evidence", "abstract", "must be one of ['publication', 'conference'], got 'abstract'"),
        ("evidence_level", "fulltext", "did you mean 'full_text'?"),
        ("population", "ulms", "did you mean 'uLMS'?"),
        ("pfs_median_lo", "7.0", "CI lower bound 7.0 exceeds upper bound"),
        ("pfs_median_m", "6.5", "estimate 6.5 lies outside its 95% CI [3.0, 6.0]"),
        ("pfs_median_m", "0", "must be in (0, 240], got '0'"),
        ("pfs_median_m", "5.6+", "must be a number in plain decimal notation, got '5.6+'"),
        ("pfs_median_m", "NA", "must be a number in plain decimal notation, got 'NA'"),
        ("pfs_median_m", "nan", "must be a finite number, got 'nan'"),
        ("pfs_median_m", "inf", "must be a finite number, got 'inf'"),
        ("n", "0", "must be in [1, 100000], got '0'"),
        ("n", "12.5", "must be a whole number, got '12.5'"),
        ("n", "~40", "must be a whole number in plain decimal notation, got '~40'"),
        ("n_uterine", "41", "must be <= n (40), got '41'"),
        ("n_uterine", "-1", "must be in [0, 100000], got '-1'"),
        ("pfs_events", "41", "must be <= n (40), got '41'"),
        ("placebo", "yes", "must be 'true' or 'false', got 'yes'"),
        ("trial", "", "required value is blank"),
        ("arm_id", "A2", "must be lowercase [a-z0-9_]+, got 'A2'"),
        ("arm_id", "a1", "duplicate arm_id 'a1' (first used in row 2)"),
        ("doi", "https://doi.org/10.1/x", "must be a DOI such as"),
        ("source_url", "www.example.org", "must be an http(s) URL"),
        ("registry_id", "NCT123", "must be ';'-separated trial registry ids"),
        ("registry_id", "NCT01234567; 20160012345", "must be ';'-separated trial registry ids"),
        ("role", "contol", "got 'contol'; did you mean 'control'?"),
        ("role", "control", "role 'control' does not fit design 'single_arm'"),
        ("regimen", "Drugx", "must be lowercase agent names joined by '+'"),
        ("regimen", "drugx + drugy", "must be lowercase agent names joined by '+'"),
        ("regimen", "drugx+drugx", "each agent once"),
        ("regimen", "drugx+placebo", "a placebo add-on is left out of the label"),
        (
            "regimen",
            "drugy",
            "'drugy' names the agents ['drugy'] but column 'agents' has ['drugx']",
        ),
    ],
)
def test_each_arm_problem_names_file_row_column_and_value(tmp_path, column, value, expected):
    rows = base_rows()
    rows[1][column] = value  # arm a2: spreadsheet row 3
    path = write(tmp_path / "t.csv", rows)
    p = only(problems_of(path), column, expected)
    assert (p.file, p.row, p.value) == (str(path), 3, value)
    arm_id = value if column == "arm_id" else "a2"
    assert str(p).startswith(f"{path} row 3 (arm_id {arm_id!r}), column {column!r}: ")


def test_role_and_regimen_rules(tmp_path):
    """Section 2a: placebo add-ons leave the label, '/' joins alternatives, one label per set."""
    rows = [
        arm("c", design="randomized", role="control", agents="drugx;placebo", regimen="drugx"),
        arm(
            "e",
            design="randomized",
            role="experimental",
            agents="drugx;drugy",
            regimen="drugx+drugy",
        ),
        arm(
            "p",
            design="randomized",
            role="control",
            agents="placebo",
            regimen="placebo",
            placebo="true",
        ),
        arm("ic", design="randomized", role="control", agents="drugy;drugz", regimen="drugy/drugz"),
        arm("nc", design="randomized", role="noncomparative", regimen=None),
        arm("s", role=None),
    ]
    df = load_trials(write(tmp_path / "t.csv", rows)).arms
    assert df["role"].tolist()[:5] == [
        "control",
        "experimental",
        "control",
        "control",
        "noncomparative",
    ]
    assert pd.isna(df["role"].iloc[5]) and pd.isna(df["regimen"].iloc[4])  # blank: not stated
    assert df["regimen"].tolist()[:4] == ["drugx", "drugx+drugy", "placebo", "drugy/drugz"]
    rows.append(arm("e2", agents="drugx;drugy", regimen="drugy+drugx"))  # spreadsheet row 8
    p = only(problems_of(write(tmp_path / "u.csv", rows)), "regimen", "name one combination")
    assert p.row == 8 and "'drugx+drugy' (row 3)" in p.message


def test_role_and_regimen_columns_are_optional(tmp_path):
    columns = [c for c in COLUMNS if c not in ("role", "regimen")]
    df = load_trials(write(tmp_path / "t.csv", base_rows(), columns)).arms
    assert df["role"].isna().all() and df["regimen"].isna().all()


def test_role_regimen_problems_without_agents_or_design():
    """The check the generic (study, r, n) table uses: labels and format only."""
    problems = role_regimen_problems(["control", "experimentl", ""], ["a+b", "b+a", "x y"])
    assert [(i, c) for i, c, _ in problems] == [(1, "role"), (1, "regimen"), (2, "regimen")]
    assert "did you mean 'experimental'?" in problems[0][2]
    assert "(row index 0)" in problems[1][2]


def test_valid_identifiers_are_accepted(tmp_path):
    rows = [
        arm(
            "a1",
            registry_id="NCT02997358",
            doi="10.1016/S1470-2045(22)00380-1",
            source_url="https://doi.org/10.1056/NEJMoa2403394",
        ),
        arm("a2", registry_id="NCT02997358; 2016-001234-56"),
    ]
    df = load_trials(write(tmp_path / "t.csv", rows)).arms
    assert df["registry_id"].tolist() == ["NCT02997358", "NCT02997358; 2016-001234-56"]


def test_message_reads_like_the_design_example(tmp_path):
    rows = [arm(f"a{i}") for i in range(12)] + [arm("gog87l_gd", line="2L")]
    path = write(tmp_path / "lms_trials.csv", rows)
    (p,) = problems_of(path)
    assert str(p) == (
        f"{path} row 14 (arm_id 'gog87l_gd'), column 'line': "
        "must be one of ['1L', '2L+'], got '2L'; did you mean '2L+'?"
    )


def test_missing_required_column_is_reported_on_the_header(tmp_path):
    columns = [c for c in COLUMNS if c not in ("line", "placebo")]
    problems = problems_of(write(tmp_path / "t.csv", base_rows(), columns))
    assert [(p.row, p.column) for p in problems] == [(1, "placebo"), (1, "line")]
    assert "row 1 (header), column 'line': required column is missing" in str(problems[1])


def test_all_problems_are_reported_at_once_across_both_files(tmp_path):
    rows = base_rows()
    rows[2]["n"] = "0"
    rows[0]["line"] = "first"
    rows[2]["pfs_median_m"] = "5.6+"
    rates = base_rates() + [rate("a9", 3, "0.5"), rate("a1", "-2", "0.5")]
    path = pair(tmp_path, rows, rates)
    with pytest.raises(DataValidationError) as info:
        load_trials(path)
    err = info.value
    found = [(Path(p.file).name, p.row, p.column) for p in err.problems]
    assert ("t.csv", 2, "line") in found and ("t.csv", 4, "n") in found
    assert ("t.csv", 4, "pfs_median_m") in found
    assert ("t_rates.csv", 5, "arm_id") in found and ("t_rates.csv", 6, "t") in found
    text = str(err)
    assert text.startswith(f"{len(err.problems)} problems in the trial data:")
    assert all(str(p) in text for p in err.problems)
    assert isinstance(err, ValueError) and isinstance(err, InputError)


def test_ragged_rows_and_empty_files_are_problems_not_tracebacks(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("arm_id,trial\nx,y,z\n", encoding="utf-8")
    text = str(pytest.raises(DataValidationError, load_trials, path).value)
    assert "row 2" in text and "has 3 cells but the header has 2" in text
    path.write_text("", encoding="utf-8")
    assert "empty" in str(pytest.raises(DataValidationError, load_trials, path).value)
    path.write_bytes(b"arm_id\n\xff\xfe\n")
    text = str(pytest.raises(DataValidationError, load_trials, path).value)
    assert "UTF-8" in text and "line 2" in text and str(path) in text


def test_row_numbers_count_blank_lines_like_a_spreadsheet(tmp_path):
    path = write(tmp_path / "t.csv", base_rows())
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines.insert(2, "\n")  # blank spreadsheet row 3
    path.write_text("".join(lines).replace("drugx,false", "drugx,maybe", 1), encoding="utf-8")
    (p,) = problems_of(path)
    assert (p.row, p.arm_id, p.column) == (2, "a1", "placebo")
    lines = path.read_text(encoding="utf-8").replace("maybe", "false").replace(",2L+,", ",2L,")
    path.write_text(lines, encoding="utf-8")
    assert [p.row for p in problems_of(path)] == [2, 4]  # a2 sits in row 4 after the blank row


def test_error_survives_pickling():
    err = DataValidationError([Problem("f.csv", 3, "a", "n", "0", "must be >= 1, got '0'")])
    back = pickle.loads(pickle.dumps(err))
    assert back.problems == err.problems and str(back) == str(err)


def test_problem_is_a_frozen_value():
    p = Problem("f.csv", 3, "a", "n", "0", "must be >= 1, got '0'")
    with pytest.raises(FrozenInstanceError):
        p.row = 4  # type: ignore[misc]
    assert str(p) == "f.csv row 3 (arm_id 'a'), column 'n': must be >= 1, got '0'"
    assert str(Problem("f.csv", 5, None, None, None, "x")) == "f.csv row 5: x"


# ---------------------------------------------------------------------------- the rates table


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("t", "0", "must be in (0, 120], got '0'"),
        ("t", "-3", "must be in (0, 120], got '-3'"),
        ("t", "121", "must be in (0, 120], got '121'"),
        ("t", "3m", "must be a number in plain decimal notation, got '3m'"),
        ("t", "", "required value is blank"),
        ("arm_id", "a4", "rate for arm_id 'a4', which is not in the arm table"),
        ("arm_id", "a22", "did you mean 'a2'?"),
        ("rate", "0.8", "estimate 0.8 lies outside its 95% CI [0.45, 0.75]"),
        ("rate", "0.4", "estimate 0.4 lies outside its 95% CI [0.45, 0.75]"),
        ("rate", "1.2", "must be in [0, 1], got '1.2'"),
        ("rate", "60%", "must be a number in plain decimal notation, got '60%'"),
        ("lo", "0.8", "CI lower bound 0.8 exceeds upper bound 'hi' = 0.75"),
        ("hi", "1.01", "must be in [0, 1], got '1.01'"),
        ("kind", "reportd", "did you mean 'reported'?"),
        ("kind", "", "required value is blank"),
        ("ci_scale", "loglog", "did you mean 'log-log'?"),
        ("evidence_level", "press", "must be one of ['full_text', 'abstract', 'registry', 'news']"),
        ("source", "PMC123", "must be the PMID (digits) or the DOI (10.xxxx/...)"),
        ("source", "123456789", "must be the PMID (digits) or the DOI"),
    ],
)
def test_each_rate_problem_names_file_row_column_and_value(tmp_path, column, value, expected):
    rates = base_rates()
    rates[0][column] = value  # rates row 2 (a2 at 3 months)
    path = pair(tmp_path, rates=rates)
    rates_file = str(tmp_path / "t_rates.csv")
    p = only(problems_of(path), column, expected)
    assert (p.file, p.row, p.value, p.arm_id) == (rates_file, 2, value, rates[0]["arm_id"])
    assert str(p).startswith(
        f"{rates_file} row 2 (arm_id {rates[0]['arm_id']!r}), column {column!r}: "
    )


def test_duplicate_arm_and_t_points_at_both_rows(tmp_path):
    rates = base_rates() + [rate("a2", "6.0", "0.41")]
    path = pair(tmp_path, rates=rates)
    (p,) = problems_of(path)
    assert (p.row, p.column, p.value, p.arm_id) == (5, "t", "6.0", "a2")
    assert "first in row 3" in p.message and "keep one analysis per arm" in p.message


def test_a_rate_without_its_arm_names_the_arm_file(tmp_path):
    path = pair(tmp_path, rates=[*base_rates(), rate("a7", 3, "0.5")])
    (p,) = problems_of(path)
    assert (p.file, p.row, p.column, p.value) == (str(tmp_path / "t_rates.csv"), 5, "arm_id", "a7")
    assert f"not in the arm table {path}" in p.message


def test_rate_join_is_checked_even_when_the_arm_table_has_problems(tmp_path):
    rows = base_rows()
    rows[0]["n"] = "zero"
    path = pair(tmp_path, rows, [*base_rates(), rate("zz", 3, "0.5")])
    files = {(Path(p.file).name, p.column) for p in problems_of(path)}
    assert files == {("t.csv", "n"), ("t_rates.csv", "arm_id")}


def test_header_only_rates_file_means_no_rates(tmp_path):
    path = pair(tmp_path, rates=[])
    assert len(load_trials(path).rates) == 0


# ---------------------------------------------------------------------------- legacy layout


def legacy_rows() -> list[dict[str, str]]:
    rows = [r | {c: "" for c in LEGACY} for r in base_rows()]
    rows[1].update(pfsr_3m="0.6", pfsr_3m_lo="0.45", pfsr_3m_hi="0.75", pfsr_3m_source="reported")
    rows[2].update(pfsr_6m="0.5", pfsr_6m_source="km_text")
    return rows


def test_legacy_layout_loads_with_a_future_warning_naming_the_file(tmp_path):
    path = write(tmp_path / "old.csv", legacy_rows())
    with pytest.warns(FutureWarning, match=rf"{path}: PFS rates in pfsr_<t>m columns"):
        trials = load_trials(path)
    r = trials.rates
    assert r[["arm_id", "t", "rate", "lo", "hi"]].to_dict("records") == [
        {"arm_id": "a2", "t": 3.0, "rate": 0.6, "lo": 0.45, "hi": 0.75},
        {"arm_id": "a3", "t": 6.0, "rate": 0.5, "lo": np.nan, "hi": np.nan},
    ] or r["lo"].isna().tolist() == [False, True]
    assert r["kind"].tolist() == ["reported", "km_text"]
    assert r["notes"].str.contains("converted from column 'pfsr_3m'").iloc[0]
    assert not any(c.startswith("pfsr_") for c in trials.arms.columns)
    assert (
        trials.files == (str(path),)
        and trials.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    )
    lt = long_table(trials, landmarks=(3, 6)).set_index(["arm_id", "landmark"])
    assert lt.loc[("a2", 3.0), "rate_source"] == "reported"
    assert lt.loc[("a3", 6.0), "rate_source"] == "km_text"


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("pfsr_3m", "1.2", "must be in [0, 1], got '1.2'"),
        ("pfsr_3m_lo", "0.8", "CI lower bound 0.8 exceeds upper bound 'pfsr_3m_hi' = 0.75"),
        ("pfsr_3m", "0.4", "estimate 0.4 lies outside its 95% CI [0.45, 0.75]"),
        ("pfsr_3m_source", "reportd", "did you mean 'reported'?"),
        ("pfsr_3m_source", "", "a rate is given in 'pfsr_3m' (0.6) but its source is blank"),
    ],
)
def test_legacy_columns_are_still_validated(tmp_path, column, value, expected):
    rows = legacy_rows()
    rows[1][column] = value
    path = write(tmp_path / "old.csv", rows)
    p = only(problems_of(path), column, expected)
    assert (p.file, p.row, p.value) == (str(path), 3, value)


def test_legacy_columns_and_a_rates_file_together_are_an_error(tmp_path):
    path = write(tmp_path / "t.csv", legacy_rows())
    write(tmp_path / "t_rates.csv", base_rates(), list(RATE_COLUMNS))
    p = only(problems_of(path), "pfsr_3m", "keep the rates in one place")
    assert p.row == 1 and "t_rates.csv" in p.message


def test_legacy_dataframe_is_converted_by_as_trials(tmp_path):
    path = write(tmp_path / "old.csv", legacy_rows())
    with pytest.warns(FutureWarning):
        trials = load_trials(path)
    frame = trials.arms.copy()
    frame["pfsr_3m"] = [np.nan, 0.6, np.nan]
    frame["pfsr_3m_source"] = [None, "reported", None]
    with pytest.warns(FutureWarning, match="a DataFrame of arms was given"):
        t2 = as_trials(frame)
    assert t2.rates[["arm_id", "t", "rate"]].values.tolist() == [["a2", 3.0, 0.6]]
    assert "pfsr_3m" not in t2.arms and t2.sha256 == trials.sha256
    assert as_trials(trials) is trials
    with pytest.raises(TypeError):
        as_trials([1, 2])


# ---------------------------------------------------------------------------- Trials


def test_select_by_mask_and_by_ids_keeps_file_order_and_rates(tmp_path):
    trials = load_trials(pair(tmp_path))
    sub = trials.select(["a3", "a2"])
    assert list(sub.arms["arm_id"]) == ["a2", "a3"] and len(sub) == 2
    assert set(sub.rates["arm_id"]) == {"a2", "a3"} and len(sub.rates) == 3
    assert sub.sha256 == trials.sha256 and sub.files == trials.files
    only_a1 = trials.select(np.array([True, False, False]))
    assert list(only_a1.arms["arm_id"]) == ["a1"] and len(only_a1.rates) == 0
    assert list(trials.select(trials.arms["line"] == "1L").arms["arm_id"]) == ["a3"]
    assert len(trials.select([])) == 0
    nullable = pd.Series([True, pd.NA, False], dtype="boolean")
    assert list(trials.select(nullable).arms["arm_id"]) == ["a1"]
    with pytest.raises(ValueError, match="not in the trial data: \\['zz'\\]"):
        trials.select(["a1", "zz"])
    with pytest.raises(ValueError, match="one per arm"):
        trials.select([True, False])
    with pytest.raises(FrozenInstanceError):
        trials.arms = None  # type: ignore[misc]
    assert "3 arms, 3 reported rates" in repr(trials)


# ---------------------------------------------------------------------------- arithmetic


def test_exponential_rate_matches_closed_form():
    median = np.array([6.0, 6.0, 2.0, 12.5])
    t = np.array([3.0, 6.0, 3.0, 1.0])
    # S(t) = exp(-lambda t) with lambda = ln 2 / median
    np.testing.assert_allclose(exponential_rate(median, t), np.exp(-LN2 / median * t))
    np.testing.assert_allclose(exponential_rate(6.0, [3.0, 6.0]), [2**-0.5, 0.5])


def test_se_log_median_prefers_ci_then_events_then_n():
    se, method = se_log_median(
        lo=[4.0, np.nan, 4.0, np.nan, np.nan],
        hi=[9.0, 9.0, np.nan, np.nan, np.nan],
        events=[np.nan, 25, 25, np.nan, 0],
        n=[np.nan, 40, 40, 16, np.nan],
    )
    np.testing.assert_allclose(se, [math.log(9 / 4) / (2 * Z), 0.2, 0.2, 0.25, np.nan])
    assert list(method) == ["median_ci", "events", "events", "n_approx", ""]


def test_derived_se_logit_by_hand():
    # median 6 months, 95% CI 4-9, landmark 3:
    #   se(log median) = (ln 9 - ln 4) / (2 * 1.959964) = 0.810930 / 3.919928 = 0.206874
    #   S = 2^(-3/6) = 0.707107;  |ln S| = 0.346574;  |ln S| / (1 - S) = 1.183276
    #   se_logit = 1.183276 * 0.206874 = 0.244789
    se_c, _ = se_log_median(4.0, 9.0, np.nan, np.nan)
    assert se_c == pytest.approx(0.206874, abs=1e-6)
    assert se_logit_from_median(6.0, 3.0, se_c) == pytest.approx(0.244789, abs=1e-6)
    # landmark 6: S = 0.5, |ln S| / (1 - S) = 2 ln 2 = 1.386294; se = 0.286788
    assert se_logit_from_median(6.0, 6.0, se_c) == pytest.approx(0.286788, abs=1e-6)


def test_se_logit_from_ci_and_binomial_by_hand():
    # CI 0.4-0.6: (logit 0.6 - logit 0.4) / 3.919928 = 2 * 0.405465 / 3.919928 = 0.206874
    assert se_logit_from_ci(0.4, 0.6) == pytest.approx(0.206874, abs=1e-6)
    assert np.isnan(se_logit_from_ci([0.0, 0.5, np.nan], [0.5, 0.5, 0.6])).all()
    # binomial: 1 / sqrt(25 * 0.2 * 0.8) = 1 / 2 = 0.5
    assert se_logit_binomial(0.2, 25) == pytest.approx(0.5)
    # S = 0 with n = 20 uses S' = 0.5 / 21 for the se only
    s_adj = 0.5 / 21
    assert se_logit_binomial(0.0, 20) == pytest.approx(1 / math.sqrt(20 * s_adj * (1 - s_adj)))
    assert se_logit_binomial(1.0, 20) == pytest.approx(se_logit_binomial(0.0, 20))


def test_effective_binomial_by_hand_with_cap():
    # S = 0.5, se = 0.2: n_eff = 1 / (0.04 * 0.25) = 100, y = 50
    # S = 0.3, se = 0.5: n_eff = 1 / (0.25 * 0.21) = 19.05 -> 19, y = round(5.7) = 6
    # S = 0.5, se = 0.2, n = 60: capped at 60, y = 30
    n_eff, y = effective_binomial([0.5, 0.3, 0.5], [0.2, 0.5, 0.2], [np.nan, np.nan, 60])
    np.testing.assert_array_equal(n_eff, [100, 19, 60])
    np.testing.assert_array_equal(y, [50, 6, 30])
    # the binomial se gives back n exactly; S = 1 (infinite information) is capped at n
    n_eff, y = effective_binomial([0.2, 1.0], se_logit_binomial([0.2, 1.0], [25, 20]), [25, 20])
    np.testing.assert_array_equal(n_eff, [25, 20])
    np.testing.assert_array_equal(y, [5, 20])
    n_eff, y = effective_binomial(0.5, np.nan, 40)
    assert np.isnan(n_eff) and np.isnan(y)


def test_derived_se_matches_sampling_variation_of_exponential_medians():
    """Simulated exponential arms: the stated se_logit equals the empirical SD (10%)."""
    rng = np.random.default_rng(20261122)
    n, reps, true_median = 40, 4000, 6.0
    times = rng.exponential(true_median / LN2, size=(reps, n))
    median = LN2 * times.sum(axis=1) / n  # exponential MLE, no censoring: d = n
    half = Z / math.sqrt(n)
    se_c, method = se_log_median(median * np.exp(-half), median * np.exp(half), n, n)
    assert set(method) == {"median_ci"}
    np.testing.assert_allclose(se_c, 1 / math.sqrt(n))
    for t in (3.0, 6.0):
        s = exponential_rate(median, t)
        logit = np.log(s / (1 - s))
        stated = se_logit_from_median(median, t, se_c).mean()
        assert logit.std(ddof=1) == pytest.approx(stated, rel=0.10)
        truth = math.log(2 ** (-t / true_median) / (1 - 2 ** (-t / true_median)))
        assert logit.mean() == pytest.approx(truth, abs=4 * stated / math.sqrt(reps) + 0.02)


# ---------------------------------------------------------------------------- long table


@pytest.fixture
def rule_table(tmp_path):
    rows = [
        arm("rep_ci"),
        arm("rep_n", n="36", n_uterine=""),
        arm("rep_none", n="", n_uterine="", pfs_median_m="", pfs_median_lo="", pfs_median_hi=""),
        arm("rep_one", n="20", n_uterine=""),
        arm("med_ci", pfs_median_m="6", pfs_median_lo="4", pfs_median_hi="9", n=""),
        arm("med_events", pfs_median_hi="", pfs_events="25"),
        arm("med_n", pfs_median_lo="", pfs_median_hi="", n="16", n_uterine=""),
        arm("med_only", pfs_median_lo="3", pfs_median_hi="", n="", n_uterine=""),
        arm("nothing", pfs_median_m="", pfs_median_lo="", pfs_median_hi=""),
    ]
    rates = [
        rate("rep_ci", 3, "0.6", lo="0.45", hi="0.75"),
        rate("rep_n", 3, "0.5", kind="km_text"),
        rate("rep_none", 3, "0.5"),
        rate("rep_one", 3, "1", lo="0.9", hi="1"),
    ]
    return load_trials(pair(tmp_path, rows, rates))


def test_long_table_applies_each_rule(rule_table):
    lt = long_table(rule_table, landmarks=(3,)).set_index("arm_id")
    assert list(lt["rate_source"]) == [
        "reported",
        "km_text",
        "reported",
        "reported",
        "exponential",
        "exponential",
        "exponential",
        "exponential",
        "",
    ]
    assert list(lt["se_method"]) == [
        "rate_ci",
        "binomial",
        "",
        "binomial",
        "median_ci",
        "events",
        "n_approx",
        "",
        "",
    ]
    assert list(lt.index[~lt["included"]]) == ["rep_none", "med_only", "nothing"]
    assert (
        lt.loc["rep_none", "exclusion_reason"] == "reported rate has neither a usable 95% CI nor n"
    )
    assert "no CI of the median, events or n" in lt.loc["med_only", "exclusion_reason"]
    assert lt.loc["nothing", "exclusion_reason"] == "no reported rate and no median"
    assert (lt.loc[lt["included"], "exclusion_reason"] == "").all()
    assert lt.loc["rep_ci", "se_logit"] == pytest.approx(se_logit_from_ci(0.45, 0.75))
    assert lt.loc["rep_n", "se_logit"] == pytest.approx(1 / math.sqrt(36 * 0.25))
    assert (lt.loc["rep_n", "n_eff"], lt.loc["rep_n", "y_eff"]) == (36, 18)
    assert (lt.loc["rep_one", "rate"], lt.loc["rep_one", "n_eff"], lt.loc["rep_one", "y_eff"]) == (
        1.0,
        20,
        20,
    )
    assert lt.loc["med_ci", "rate"] == pytest.approx(2**-0.5)
    assert lt.loc["med_ci", "se_logit"] == pytest.approx(0.244789, abs=1e-6)
    # med_ci has no n: n_eff = 1 / (0.244789^2 * 0.707107 * 0.292893) = 80.5 -> 81 (no cap)
    assert (lt.loc["med_ci", "n_eff"], lt.loc["med_ci", "y_eff"]) == (81, 57)
    assert lt.loc["med_events", "se_logit"] == pytest.approx(
        LN2 * 3 / 4 / (1 - 2 ** (-3 / 4)) * 0.2  # |ln S| / (1 - S) / sqrt(25)
    )
    assert lt.loc["med_events", "n_eff"] == 40  # capped at n = 40
    assert lt["n_eff"].isna().tolist() == (~lt["included"]).tolist()
    assert lt.loc["rep_ci", "rate_t"] == 3.0 and np.isnan(lt.loc["med_ci", "rate_t"])


def test_long_table_has_every_arm_and_landmark_and_covariates(rule_table):
    lt = long_table(rule_table, landmarks=[3, 6, 12, 4.5])
    assert len(lt) == 4 * len(rule_table)
    assert list(lt["arm_id"]) == [a for a in rule_table.arms["arm_id"] for _ in range(4)]
    assert list(lt["landmark"][:4]) == [3.0, 6.0, 12.0, 4.5]
    assert lt.columns.tolist() == [
        "arm_id",
        "landmark",
        "rate",
        "rate_source",
        "se_logit",
        "se_method",
        "n_eff",
        "y_eff",
        "included",
        "exclusion_reason",
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
        "rate_t",
    ]
    assert lt["n_eff"].dtype == "Int64" and lt["included"].dtype == bool
    # a landmark with no reported rate near it can only come from the median
    assert set(lt.loc[lt["landmark"] == 4.5, "rate_source"]) <= {"exponential", ""}
    assert lt.attrs["sha256"] == rule_table.sha256 and lt.attrs["tolerance"] == 0.1


def test_long_table_without_derivation_excludes_median_only_rows(rule_table):
    lt = long_table(rule_table, landmarks=(3,), derive_from_median=False).set_index("arm_id")
    assert not lt.loc["med_ci", "included"] and np.isnan(lt.loc["med_ci", "rate"])
    assert (
        lt.loc["med_ci", "exclusion_reason"]
        == "no reported rate (derivation from the median is off)"
    )
    assert lt.loc["rep_ci", "included"]
    assert (lt["rate_source"] != "exponential").all()


def test_landmark_tolerance_maps_weeks_to_landmarks(tmp_path):
    """12 weeks is the 3-month landmark and 24 or 26 weeks the 6-month one (default 10%)."""
    rows = [arm(a) for a in ("w12", "w24", "w26", "both", "m9", "far")]
    rates = [
        rate("w12", 12 * 12 / 52, "0.7"),  # 2.769...
        rate("w24", "5.538", "0.5"),
        rate("w26", "6.0", "0.5"),
        rate("both", "2.769", "0.71"),
        rate("both", "3", "0.70"),
        rate("both", "3.25", "0.69"),
        rate("m9", "9", "0.3"),
        rate("far", "3.4", "0.6"),  # 13% past 3 months: no landmark
    ]
    trials = load_trials(pair(tmp_path, rows, rates))
    lt = long_table(trials, landmarks=(3, 6, 12)).set_index(["arm_id", "landmark"])
    assert lt.loc[("w12", 3.0), "rate"] == 0.7 and lt.loc[("w12", 3.0), "rate_t"] == pytest.approx(
        2.7692, abs=1e-4
    )
    assert lt.loc[("w24", 6.0), "rate"] == 0.5 and lt.loc[("w24", 6.0), "rate_t"] == 5.538
    assert lt.loc[("w26", 6.0), "rate_source"] == "reported"
    assert (
        lt.loc[("both", 3.0), "rate"] == 0.70 and lt.loc[("both", 3.0), "rate_t"] == 3.0
    )  # closest
    assert lt.loc[("m9", 12.0), "rate_source"] == "exponential"  # 9 is 25% short of 12 months
    assert lt.loc[("far", 3.0), "rate_source"] == "exponential"
    exact = long_table(trials, landmarks=(3,), tolerance=0).set_index("arm_id")
    assert exact.loc["w12", "rate_source"] == "exponential" and exact.loc["both", "rate"] == 0.70
    wide = long_table(trials, landmarks=(3,), tolerance=0.15).set_index("arm_id")
    assert wide.loc["far", "rate"] == 0.6
    # a tie goes to the earlier t: 2.7 and 3.3 are both 0.3 from 3
    tie = load_trials(
        pair(tmp_path, [arm("x")], [rate("x", "2.7", "0.8"), rate("x", "3.3", "0.75")], "tie.csv")
    )
    assert long_table(tie, landmarks=(3,))["rate"].iloc[0] == 0.8
    for bad in (-0.1, 0.5, "0.1", float("nan")):
        with pytest.raises(ValueError, match="tolerance"):
            long_table(trials, tolerance=bad)


def test_long_table_accepts_an_arm_dataframe_with_a_warning(rule_table):
    with pytest.warns(FutureWarning, match="every rate is derived"):
        lt = long_table(rule_table.arms, landmarks=(3,))
    assert set(lt["rate_source"]) <= {"exponential", ""}  # a bare arm frame has no rates


@pytest.mark.parametrize("landmarks", [(), (0,), (3, 3), (-1,), (float("nan"),)])
def test_long_table_rejects_bad_landmarks(rule_table, landmarks):
    with pytest.raises(ValueError, match="landmarks"):
        long_table(rule_table, landmarks=landmarks)


def test_data_module_does_not_import_pymc():
    code = "import sys, lmsbayes.data; assert 'pymc' not in sys.modules, 'pymc imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
