"""Tests for lmsbayes.data: validation, the rate/se arithmetic, the long table."""

from __future__ import annotations

import csv
import importlib.resources
import math
import pickle
import subprocess
import sys
import tempfile
from dataclasses import FrozenInstanceError
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmsbayes.data import (
    LABELS,
    REQUIRED,
    DataValidationError,
    Problem,
    effective_binomial,
    exponential_rate,
    load_trials,
    long_table,
    se_log_median,
    se_logit_binomial,
    se_logit_from_ci,
    se_logit_from_median,
)

Z = 1.959963984540054
LN2 = math.log(2)
COLUMNS = [
    "arm_id", "trial", "first_author", "year", "pmid", "doi", "source_url", "evidence",
    "phase", "design", "arm", "agents", "placebo", "treatment_class", "line", "population",
    "n", "n_uterine", "pfs_median_m", "pfs_median_lo", "pfs_median_hi", "pfs_events",
    "pfsr_3m", "pfsr_6m", "pfsr_3m_lo", "pfsr_3m_hi", "pfsr_6m_lo", "pfsr_6m_hi",
    "pfsr_3m_source", "pfsr_6m_source", "notes",
]  # fmt: skip
NUMERIC = [
    "year", "pmid", "n", "n_uterine", "pfs_median_m", "pfs_median_lo", "pfs_median_hi",
    "pfs_events", "pfsr_3m", "pfsr_6m", "pfsr_3m_lo", "pfsr_3m_hi", "pfsr_6m_lo", "pfsr_6m_hi",
]  # fmt: skip


FILLED = {
    "trial": "T-1", "first_author": "Doe", "year": "2015", "pmid": "12345",
    "evidence": "publication", "phase": "2", "design": "single_arm", "arm": "drug x",
    "agents": "drugx", "placebo": "false", "treatment_class": "NR-T", "line": "2L+",
    "population": "LMS", "n": "40", "n_uterine": "20", "pfs_median_m": "4.0",
    "pfs_median_lo": "3.0", "pfs_median_hi": "6.0", "notes": "a note, with a comma",
}  # fmt: skip


def arm(arm_id: str, **cells: object) -> dict[str, str]:
    """A valid arm row; keyword arguments override cells (None = blank)."""
    row = {c: "" for c in COLUMNS} | FILLED | {"arm_id": arm_id}
    row.update({k: "" if v is None else str(v) for k, v in cells.items()})
    return row


def base_rows() -> list[dict[str, str]]:
    return [
        arm("a1"),
        arm("a2", pfsr_3m="0.6", pfsr_3m_lo="0.45", pfsr_3m_hi="0.75", pfsr_3m_source="reported"),
        arm("a3", population="uLMS", n="30", n_uterine="30", line="1L", treatment_class="R-T"),
    ]


def write(path: Path, rows: list[dict[str, str]], columns: list[str] | None = None) -> Path:
    columns = columns or (list(rows[0]) if rows else COLUMNS)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows([[r.get(c, "") for c in columns] for r in rows])
    return path


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(DataValidationError) as info:
        load_trials(path)
    return info.value.problems


# ---------------------------------------------------------------------------- loading


def test_valid_table_loads_with_dtypes(tmp_path):
    df = load_trials(write(tmp_path / "t.csv", base_rows()))
    assert list(df["arm_id"]) == ["a1", "a2", "a3"]
    for col in ("n", "n_uterine", "pmid", "pfs_events", "year"):
        assert df[col].dtype == "Int64", col
    for col in ("pfs_median_m", "pfsr_3m", "pfsr_6m_hi", "pfsr_12m"):
        assert df[col].dtype == "float64", col
    assert df["placebo"].dtype == bool
    assert list(df["line"].cat.categories) == ["1L", "2L+"]
    assert df["pfs_events"].isna().all() and df["pfsr_12m_source"].isna().all()
    assert df["notes"].iloc[0] == "a note, with a comma"
    assert df.attrs["path"] == str(tmp_path / "t.csv") and len(df.attrs["sha256"]) == 64


def test_uterine_fraction_from_counts_population_or_missing(tmp_path):
    rows = [
        arm("c", n="40", n_uterine="10"),
        arm("u", population="uLMS", n="", n_uterine=""),
        arm("s", population="stLMS", n="12", n_uterine=""),
        arm("m", population="STS-LMS-subgroup", n_uterine=""),
    ]
    df = load_trials(write(tmp_path / "t.csv", rows))
    np.testing.assert_array_equal(df["uterine_fraction"], [0.25, 1.0, 0.0, np.nan])
    assert list(df["uterine_fraction_source"]) == ["counts", "population", "population", "missing"]


def test_optional_columns_may_be_absent_and_extra_families_are_kept(tmp_path):
    columns = [*REQUIRED, "pfs_median_m", "pfsr_9m", "pfsr_9m_source"]
    rows = [arm("a1", pfsr_9m="0.3", pfsr_9m_source="km_text")]
    df = load_trials(write(tmp_path / "t.csv", rows, columns))
    assert df["n"].isna().all() and df["pfsr_3m"].isna().all() and df["pfsr_9m_lo"].isna().all()
    assert df.loc[0, "pfsr_9m"] == 0.3 and df.loc[0, "pfsr_9m_source"] == "km_text"


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_trials(missing)


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("line", "2L", "must be one of ['1L', '2L+'], got '2L'; did you mean '2L+'?"),
        ("treatment_class", "RT", "did you mean 'R-T'?"),
        ("design", "randomised", "got 'randomised'; did you mean 'randomized'?"),
        ("evidence", "abstract", "must be one of ['publication', 'conference'], got 'abstract'"),
        ("population", "ulms", "did you mean 'uLMS'?"),
        ("pfsr_3m_source", "reportd", "did you mean 'reported'?"),
        ("pfsr_3m", "1.2", "must be in [0, 1], got '1.2'"),
        ("pfsr_3m_hi", "1.01", "must be in [0, 1], got '1.01'"),
        ("pfsr_3m_lo", "0.8", "CI lower bound 0.8 exceeds upper bound 'pfsr_3m_hi' = 0.75"),
        ("pfsr_3m", "0.4", "estimate 0.4 lies outside its 95% CI [0.45, 0.75]"),
        ("pfs_median_lo", "7.0", "CI lower bound 7.0 exceeds upper bound"),
        ("pfs_median_m", "6.5", "estimate 6.5 lies outside its 95% CI [3.0, 6.0]"),
        ("pfs_median_m", "0", "must be > 0, got '0'"),
        ("pfs_median_m", "5.6+", "must be a number, got '5.6+' (text is not allowed"),
        ("pfs_median_m", "NA", "must be a number, got 'NA'"),
        ("pfs_median_m", "nan", "must be a finite number, got 'nan'"),
        ("n", "0", "must be >= 1, got '0'"),
        ("n", "12.5", "must be a whole number, got '12.5'"),
        ("n", "~40", "must be a whole number, got '~40'"),
        ("n_uterine", "41", "must be <= n (40), got '41'"),
        ("n_uterine", "-1", "must be >= 0, got '-1'"),
        ("pfs_events", "41", "must be <= n (40), got '41'"),
        ("placebo", "yes", "must be 'true' or 'false', got 'yes'"),
        ("pfsr_3m_source", "", "a rate is given in 'pfsr_3m' (0.6) but its source is blank"),
        ("trial", "", "required value is blank"),
        ("arm_id", "A2", "must be lowercase [a-z0-9_]+, got 'A2'"),
        ("arm_id", "a1", "duplicate arm_id 'a1' (first used in row 2)"),
    ],
)
def test_each_problem_names_file_row_column_and_value(tmp_path, column, value, expected):
    rows = base_rows()
    rows[1][column] = value  # arm a2: spreadsheet row 3
    path = write(tmp_path / "t.csv", rows)
    problems = [p for p in problems_of(path) if p.column == column and expected in p.message]
    assert len(problems) == 1, problems_of(path)
    (p,) = problems
    assert (p.file, p.row, p.value) == (str(path), 3, value)
    assert expected in p.message
    arm_id = value if column == "arm_id" else "a2"
    assert str(p).startswith(f"{path} row 3 (arm_id {arm_id!r}), column {column!r}: ")


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


def test_all_problems_are_reported_at_once_in_row_order(tmp_path):
    rows = base_rows()
    rows[2]["n"] = "0"
    rows[0]["line"] = "first"
    rows[0]["pfsr_6m"] = "1.5"
    rows[2]["pfs_median_m"] = "5.6+"
    with pytest.raises(DataValidationError) as info:
        load_trials(write(tmp_path / "t.csv", rows))
    err = info.value
    found = [(p.row, p.column) for p in err.problems]
    assert (2, "line") in found and (2, "pfsr_6m") in found and (4, "n") in found
    assert (4, "pfs_median_m") in found
    assert found == sorted(found, key=lambda rc: rc[0])
    text = str(err)
    assert text.startswith(f"{len(err.problems)} problems in the trial data:")
    assert all(str(p) in text for p in err.problems)
    assert isinstance(err, ValueError)


def test_ragged_rows_and_empty_files_are_problems_not_tracebacks(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("arm_id,trial\nx,y,z\n", encoding="utf-8")
    text = str(pytest.raises(DataValidationError, load_trials, path).value)
    assert "row 2" in text and "has 3 cells but the header has 2" in text
    path.write_text("", encoding="utf-8")
    assert "empty" in str(pytest.raises(DataValidationError, load_trials, path).value)
    path.write_bytes(b"arm_id\n\xff\xfe\n")
    assert "UTF-8" in str(pytest.raises(DataValidationError, load_trials, path).value)


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


# ---------------------------------------------------------------------------- arithmetic


def test_exponential_rate_matches_closed_form():
    median = np.array([6.0, 6.0, 2.0, 12.5])
    t = np.array([3.0, 6.0, 3.0, 1.0])
    # S(t) = exp(-lambda t) with lambda = ln 2 / median
    np.testing.assert_allclose(exponential_rate(median, t), np.exp(-LN2 / median * t))
    np.testing.assert_allclose(exponential_rate(6.0, [3.0, 6.0]), [2**-0.5, 0.5])


def test_se_log_median_prefers_ci_then_events_then_n():
    se, method = se_log_median(
        lo=[4.0, np.nan, 4.0, np.nan, np.nan], hi=[9.0, 9.0, np.nan, np.nan, np.nan],
        events=[np.nan, 25, 25, np.nan, 0], n=[np.nan, 40, 40, 16, np.nan],
    )  # fmt: skip
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
        arm("rep_ci", pfsr_3m="0.6", pfsr_3m_lo="0.45", pfsr_3m_hi="0.75",
            pfsr_3m_source="reported"),
        arm("rep_n", pfsr_3m="0.5", pfsr_3m_source="km_text", n="36", n_uterine=""),
        arm("rep_none", pfsr_3m="0.5", pfsr_3m_source="reported", n="", n_uterine="",
            pfs_median_m="", pfs_median_lo="", pfs_median_hi=""),
        arm("rep_one", pfsr_3m="1", pfsr_3m_lo="0.9", pfsr_3m_hi="1", pfsr_3m_source="reported",
            n="20", n_uterine=""),
        arm("med_ci", pfs_median_m="6", pfs_median_lo="4", pfs_median_hi="9", n=""),
        arm("med_events", pfs_median_hi="", pfs_events="25"),
        arm("med_n", pfs_median_lo="", pfs_median_hi="", n="16", n_uterine=""),
        arm("med_only", pfs_median_lo="3", pfs_median_hi="", n="", n_uterine=""),
        arm("nothing", pfs_median_m="", pfs_median_lo="", pfs_median_hi=""),
    ]  # fmt: skip
    return load_trials(write(tmp_path / "t.csv", rows))


def test_long_table_applies_each_rule(rule_table):
    lt = long_table(rule_table, landmarks=(3,)).set_index("arm_id")
    assert list(lt["rate_source"]) == [
        "reported", "km_text", "reported", "reported", "exponential", "exponential",
        "exponential", "exponential", "",
    ]  # fmt: skip
    assert list(lt["se_method"]) == [
        "rate_ci", "binomial", "", "binomial", "median_ci", "events", "n_approx", "", "",
    ]  # fmt: skip
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


def test_long_table_has_every_arm_and_landmark_and_covariates(rule_table):
    lt = long_table(rule_table, landmarks=[3, 6, 12, 4.5])
    assert len(lt) == 4 * len(rule_table)
    assert list(lt["arm_id"]) == [a for a in rule_table["arm_id"] for _ in range(4)]
    assert list(lt["landmark"][:4]) == [3.0, 6.0, 12.0, 4.5]
    assert lt.columns.tolist() == [
        "arm_id", "landmark", "rate", "rate_source", "se_logit", "se_method", "n_eff", "y_eff",
        "included", "exclusion_reason", "trial", "year", "line", "treatment_class", "placebo",
        "population", "evidence", "design", "n", "uterine_fraction",
    ]  # fmt: skip
    assert lt["n_eff"].dtype == "Int64" and lt["included"].dtype == bool
    # a landmark without its own column can only come from the median
    assert set(lt.loc[lt["landmark"] == 4.5, "rate_source"]) <= {"exponential", ""}


def test_long_table_without_derivation_excludes_median_only_rows(rule_table):
    lt = long_table(rule_table, landmarks=(3,), derive_from_median=False).set_index("arm_id")
    assert not lt.loc["med_ci", "included"] and np.isnan(lt.loc["med_ci", "rate"])
    assert (
        lt.loc["med_ci", "exclusion_reason"]
        == "no reported rate (derivation from the median is off)"
    )
    assert lt.loc["rep_ci", "included"]
    assert (lt["rate_source"] != "exponential").all()


@pytest.mark.parametrize("landmarks", [(), (0,), (3, 3), (-1,), (float("nan"),)])
def test_long_table_rejects_bad_landmarks(rule_table, landmarks):
    with pytest.raises(ValueError, match="landmarks"):
        long_table(rule_table, landmarks=landmarks)


# ---------------------------------------------------------------------------- properties

SAFE_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from(",\"\n'"),
    min_size=1,
    max_size=8,
).filter(lambda s: s.strip() != "")


def _fmt(x: float) -> str:
    return repr(float(x))


@st.composite
def rates(draw, t: int) -> dict[str, str]:
    if not draw(st.booleans()):
        return {}
    s = draw(st.integers(0, 1000)) / 1000
    cells = {
        f"pfsr_{t}m": _fmt(s),
        f"pfsr_{t}m_source": draw(st.sampled_from(["reported", "km_text"])),
    }
    if draw(st.booleans()):
        cells[f"pfsr_{t}m_lo"] = _fmt(draw(st.integers(0, int(s * 1000))) / 1000)
        cells[f"pfsr_{t}m_hi"] = _fmt(draw(st.integers(int(s * 1000), 1000)) / 1000)
    return cells


@st.composite
def valid_rows(draw) -> list[dict[str, str]]:
    k = draw(st.integers(1, 6))
    arm_ids = st.text(alphabet="abcxyz_0189", min_size=1, max_size=8)
    ids = draw(st.lists(arm_ids, min_size=k, max_size=k, unique=True))
    rows = []
    for arm_id in ids:
        population = draw(st.sampled_from(LABELS["population"]))
        n = draw(st.none() | st.integers(1, 300))
        n_ut = {"uLMS": n, "stLMS": draw(st.sampled_from([0, None]))}.get(
            population, draw(st.none() | st.integers(0, n or 300))
        )
        cells = {
            "trial": draw(SAFE_TEXT),
            "arm": draw(SAFE_TEXT),
            "agents": draw(SAFE_TEXT),
            "notes": draw(SAFE_TEXT),
            "year": draw(st.integers(1990, 2030)),
            "pmid": draw(st.none() | st.integers(1, 10**8)),
            "evidence": draw(st.sampled_from(LABELS["evidence"])),
            "design": draw(st.sampled_from(LABELS["design"])),
            "treatment_class": draw(st.sampled_from(LABELS["treatment_class"])),
            "line": draw(st.sampled_from(LABELS["line"])),
            "population": population,
            "placebo": draw(st.sampled_from(["true", "false", "TRUE", "False"])),
            "n": n,
            "n_uterine": n_ut,
            "pfs_events": draw(st.none() | st.integers(0, n or 300)),
            "pfs_median_m": None,
            "pfs_median_lo": None,
            "pfs_median_hi": None,
        }
        if draw(st.booleans()):
            median = draw(st.integers(50, 3000)) / 100
            cells["pfs_median_m"] = _fmt(median)
            if draw(st.booleans()):
                cells["pfs_median_lo"] = _fmt(round(median * draw(st.floats(0.1, 1.0)), 2))
            if draw(st.booleans()):
                cells["pfs_median_hi"] = _fmt(round(median * draw(st.floats(1.0, 3.0)), 2))
        rows.append(arm(arm_id, **cells, **draw(rates(3)), **draw(rates(6))))
    return rows


def _load(rows, columns=None):
    with tempfile.TemporaryDirectory() as tmp:
        return load_trials(write(Path(tmp) / "t.csv", rows, columns))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=valid_rows())
def test_random_valid_tables_load_and_expand(rows):
    df = _load(rows)
    assert list(df["arm_id"]) == [r["arm_id"] for r in rows]
    lt = long_table(df)
    assert len(lt) == 2 * len(rows)
    inc = lt[lt["included"]]
    assert (inc["se_logit"] > 0).all() and (inc["n_eff"] >= 1).all()
    assert ((inc["y_eff"] >= 0) & (inc["y_eff"] <= inc["n_eff"])).all()
    assert (lt.loc[~lt["included"], "exclusion_reason"] != "").all()


CORRUPTIONS = ["label", "rate", "ci", "n0", "text", "duplicate", "drop"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=valid_rows(), kind=st.sampled_from(CORRUPTIONS), data=st.data())
def test_random_corruptions_are_rejected_naming_the_column(rows, kind, data):
    i = data.draw(st.integers(0, len(rows) - 1))
    columns = list(rows[0])
    if kind == "label":
        column = data.draw(st.sampled_from([*LABELS, "pfsr_3m_source"]))
        allowed = LABELS.get(column, ("reported", "km_text"))
        rows[i][column] = data.draw(SAFE_TEXT.filter(lambda s: s.strip() not in allowed))
    elif kind == "rate":
        column = data.draw(st.sampled_from(["pfsr_3m", "pfsr_6m_hi", "pfsr_3m_lo"]))
        rows[i][column] = _fmt(data.draw(st.floats(1.0001, 100) | st.floats(-100, -0.0001)))
    elif kind == "ci":
        column = "pfs_median_lo"
        rows[i].update(pfs_median_m="5", pfs_median_lo="7.5", pfs_median_hi="6")
    elif kind == "n0":
        column, rows[i]["n"] = "n", data.draw(st.sampled_from(["0", "-3"]))
    elif kind == "text":
        column = data.draw(st.sampled_from(NUMERIC))
        rows[i][column] = data.draw(
            st.sampled_from(["5.6+", "NR", "NA", "n/a", "nan", "inf", "~3", "12 wk", "1,5"])
        )
    elif kind == "duplicate":
        column = "arm_id"
        rows.append(dict(rows[i]))
    else:
        column = data.draw(st.sampled_from(REQUIRED))
        columns.remove(column)
    with pytest.raises(DataValidationError) as info:
        _load(rows, columns)
    assert any(p.column == column for p in info.value.problems)
    assert f"column {column!r}" in str(info.value)


# ---------------------------------------------------------------------------- bundled data

BUNDLED = importlib.resources.files("lmsbayes") / "_data" / "lms_trials.csv"


@pytest.mark.skipif(not BUNDLED.is_file(), reason="data/lms_trials.csv is not committed yet")
def test_bundled_data_loads_and_every_arm_is_in_the_long_table():
    df = load_trials()
    assert len(df) > 0 and df["arm_id"].is_unique
    lt = long_table(df, landmarks=(3, 6))
    assert len(lt) == 2 * len(df)
    assert set(lt["arm_id"]) == set(df["arm_id"])
    assert (lt.loc[~lt["included"], "exclusion_reason"] != "").all()
    assert lt["included"].any()


def test_data_module_does_not_import_pymc():
    code = "import sys, lmsbayes.data; assert 'pymc' not in sys.modules, 'pymc imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
