"""The (study, r, n) reader and the contrast reader: one checked reader discipline (issue 20).

Every reproducer of the issue ends in one error naming the file, row, column and value, from
the file (``read_binomial``, ``read_tables``) or from a DataFrame (``lb.fit("binomial", df)``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmsbayes.contrast.data import contrast_table, read_contrasts
from lmsbayes.data import (
    DataValidationError,
    Trials,
    binomial_table,
    load_trials,
    read_binomial,
    read_tables,
)
from lmsbayes.errors import InputError


def _write(tmp_path, text: str | bytes, name: str = "b.csv"):
    path = tmp_path / name
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


def _one(err: pytest.ExceptionInfo) -> str:
    problems = err.value.problems
    assert len(problems) == 1, err.value
    return str(problems[0])


def test_a_valid_table_with_role_regimen_year_and_a_column_of_ones_own(tmp_path):
    path = _write(
        tmp_path,
        "study,r,n,role,regimen,year,ecog\n"
        "A,3,10,control,doxorubicin,2001,0.5\n"
        "B,0,44,experimental,gemcitabine+docetaxel,,1\n",
    )
    df = read_binomial(path)
    assert list(df.columns) == ["study", "r", "n", "role", "regimen", "year", "ecog"]
    assert df["r"].dtype == np.int64 and df["n"].dtype == np.int64
    assert df["r"].tolist() == [3, 0] and df["n"].tolist() == [10, 44]
    assert df["regimen"].tolist() == ["doxorubicin", "gemcitabine+docetaxel"]
    assert str(df["year"].dtype) == "Int64" and df["year"].isna().tolist() == [False, True]
    assert df["ecog"].tolist() == [0.5, 1.0]
    assert df.attrs["path"] == str(path) and len(df.attrs["sha256"]) == 64


@pytest.mark.parametrize(
    "text, row, column, needle",
    [
        # the issue's reproducer: n = 1e19 was stored as a negative int64
        (
            "study,n,r\nA,10000000000000000000,23\nB,44,12\n",
            2,
            "n",
            "must be in [1, 100000], got '10000000000000000000'",
        ),
        ("study,r,n\nA,3,1000000000000\n", 2, "n", "must be in [1, 100000]"),  # 1e12 was fitted
        ("study,r,n\nA,3,1e19\n", 2, "n", "must be in [1, 100000]"),
        ("study,r,n\nA,11,10\n", 2, "r", "must be <= n (10), got '11'"),
        ("study,r,n\nA,-1,10\n", 2, "r", "must be in [0, 100000]"),
        ("study,r,n\nA,1.5,10\n", 2, "r", "whole number"),
        ("study,r,n\nA,nan,10\n", 2, "r", "finite"),
        ("study,r,n\nA,3,0\n", 2, "n", "must be in [1, 100000]"),
        ("study,r,n\nA,,10\n", 2, "r", "required value is blank"),
        ("study,r,n\nA,3,10\nA,4,12\n", 3, "study", "duplicate study 'A' (first in row 2)"),
        ("study,r,n,year\nA,3,10,1850\n", 2, "year", "must be in [1950,"),
        ("study,r,n,role\nA,3,10,ctrl\x07\n", 2, "role", "control character"),
        ("study,r,n,role\nA,3,10,contorl\n", 2, "role", "did you mean 'control'?"),
        ("study,r,n,regimen\nA,3,10,Doxorubicin\n", 2, "regimen", "lowercase agent names"),
        ("study,r,n,regimen\nA,3,10,x\x00y\n", 2, "regimen", "control character"),
    ],
)
def test_every_bad_cell_is_named_by_file_row_column_and_value(tmp_path, text, row, column, needle):
    path = _write(tmp_path, text)
    with pytest.raises(DataValidationError) as err:
        read_binomial(path)
    line = _one(err)
    assert line.startswith(f"{path} row {row}"), line
    assert f"column {column!r}" in line and needle in line, line


@pytest.mark.parametrize(
    "raw, needle",
    [
        (b"study;r;n\nA;3;10\n", "separated by semicolons, not commas"),
        (b"study\tr\tn\nA\t3\t10\n", "separated by tabs, not commas"),
        ("study,r,n\nK\u00f6ln,3,10\n".encode("latin-1"), "not UTF-8 text"),
        (b"study,r,n\n", "has a header but no study rows"),
        (b"study,n\nA,10\n", "a (study, r, n) table needs the columns study"),
        (b"", "file is empty"),
    ],
    ids=["semicolons", "tabs", "latin-1", "header-only", "no-r", "empty"],
)
def test_misleading_messages_of_the_issue_now_name_the_file_and_say_what(tmp_path, raw, needle):
    path = _write(tmp_path, raw)
    with pytest.raises(DataValidationError) as err:
        read_tables(path)  # never read as an LMS arm table (12 'required column missing')
    assert len(err.value.problems) == 1, err.value
    assert str(path) in str(err.value) and needle in str(err.value)


def test_a_bom_does_not_change_the_kind_of_table(tmp_path):
    path = _write(tmp_path, b"\xef\xbb\xbfstudy,r,n\r\nA,3,10\r\nB,4,12\r\n")  # Excel 'CSV UTF-8'
    df = read_tables(path)
    assert isinstance(df, pd.DataFrame) and df["study"].tolist() == ["A", "B"]
    assert isinstance(read_tables(None), Trials)


def test_a_quoted_header_is_a_binomial_table(tmp_path):
    df = read_tables(_write(tmp_path, '"study","r","n"\n"A",3,10\n'))
    assert df["n"].tolist() == [10]


def test_the_arm_table_refuses_a_semicolon_file_saying_so(tmp_path):
    path = _write(tmp_path, b"arm_id;trial;year\nx;y;2000\n", "arms.csv")
    with pytest.raises(DataValidationError, match="separated by semicolons"):
        load_trials(path)


@pytest.mark.parametrize(
    "column, values",
    [
        ("n", [10_000_000_000_000_000_000, 44]),  # Python ints beyond int64: object column
        ("n", [1e19, 44.0]),  # float64
        ("n", np.array([10**19 - 2**64, 44], dtype=np.int64)),  # wrapped around to a negative int64
        ("n", ["1e19", "44"]),  # text
        ("r", [np.nan, 3]),
    ],
    ids=["python-int", "float", "wrapped-int64", "text", "nan"],
)
def test_the_python_api_raises_the_packages_error_for_the_same_inputs(column, values):
    import lmsbayes as lb

    df = pd.DataFrame({"study": ["A", "B"], "n": [30, 44], "r": [23, 12]})
    df[column] = pd.Series(values, dtype=object if column == "n" and values[0] == 10**19 else None)
    with pytest.raises(DataValidationError) as err:
        binomial_table(df)
    assert f"column {column!r}" in _one(err)
    with pytest.raises(InputError):  # never pandas' AssertionError or the engine's RuntimeError
        lb.fit("binomial", df, progress=False)


def test_an_in_memory_table_keeps_its_attrs_and_types():
    df = pd.DataFrame({"study": ["A", "B"], "r": [1.0, 2.0], "n": [10, 20]})
    df.attrs["path"] = "mine.csv"
    out = binomial_table(df)
    assert out["r"].dtype == np.int64 and out.attrs["path"] == "mine.csv"


# --- the contrast table ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, needle",
    [
        # the issue's reproducer: scipy's 'solver cannot continue'
        (
            "study,log_estimate,se\nA,-0.2,1e-300\nB,0.1,0.3\n",
            "row 2, column 'se': a standard error on the log scale must be in [0.0001, 100], got "
            "'1e-300'",
        ),
        ("study,log_estimate,se\nA,-0.2,nan\n", "row 2, column 'se': must be a finite number"),
        (
            "study,log_estimate,se\nA,-0.2,1_0\n",
            "row 2, column 'se': must be a number in plain decimal",
        ),
        ("study,log_estimate,se\nA,99,0.2\n", "row 2, column 'log_estimate': must be within"),
        (
            "study,estimate,lower,upper\nA,0.5,0.4999999,0.5000001\n",
            "row 2, column 'lower': the CI",
        ),
        (
            "study,estimate,lower,upper\nA,1e-9,1e-6,1\n",
            "row 2, column 'estimate': a hazard ratio must be in [1e-06, 1e+06]",
        ),
        ("study,log_estimate,se,level\nA,0.1,0.2,0.1\n", "row 2, column 'level'"),
    ],
)
def test_contrast_values_are_checked_in_range(tmp_path, text, needle):
    path = _write(tmp_path, text, "c.csv")
    with pytest.raises(InputError) as err:
        read_contrasts(path)
    assert str(path) in str(err.value) and needle in str(err.value), str(err.value)


@pytest.mark.parametrize(
    "raw, needle",
    [
        (b"study;log_estimate;se\nA;0.1;0.2\n", "separated by semicolons"),
        ("study,log_estimate,se\nK\u00f6ln,0.1,0.2\n".encode("latin-1"), "not UTF-8 text"),
    ],
)
def test_the_contrast_table_shares_the_reader(tmp_path, raw, needle):
    path = _write(tmp_path, raw, "c.csv")
    with pytest.raises(InputError, match=needle) as err:
        read_contrasts(path)
    assert str(path) in str(err.value)


def test_a_bom_contrast_table_reads(tmp_path):
    path = _write(tmp_path, b"\xef\xbb\xbfstudy,log_estimate,se\r\nA,0.1,0.2\r\n", "c.csv")
    assert read_contrasts(path).index.tolist() == ["A"]


def test_an_in_memory_contrast_table_is_checked_in_range():
    with pytest.raises(InputError, match="must be in"):
        contrast_table(pd.DataFrame({"study": ["A"], "log_estimate": [0.1], "se": [1e-300]}))
