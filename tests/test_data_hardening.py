"""Issue 11 for the two table readers: types and ranges before any cast, headers, sizes, paths.

Each case names the hostile input of the issue it covers; each must give a DataValidationError
(an InputError: one ``lmsbayes: error:`` line, exit 2) naming file, row, column and value, or be
accepted correctly.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_data import arm, base_rates, base_rows, only, pair, problems_of, rate, write

import lmsbayes.data as data_module
from lmsbayes.data import RATE_COLUMNS, DataValidationError, load_trials
from lmsbayes.errors import InputError

# ---------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        # issue 11: integer cells of 1e19 loaded as -9223372036854775808
        ("n", "1e19", "must be in [1, 100000], got '1e19'"),
        ("year", "1e19", "must be in [1950, "),
        ("pmid", "1e19", "must be in [1, 99999999], got '1e19'"),
        ("pmid", "10000000000000000000", "must be in [1, 99999999]"),
        ("n_uterine", "9223372036854775808", "must be in [0, 100000]"),
        ("pfs_events", "-9223372036854775809", "must be in [0, 100000]"),
        # issue 11: values that should be refused
        ("n", "1e12", "must be in [1, 100000], got '1e12'"),
        ("year", "99999", "must be in [1950, "),
        ("year", "-5", "must be in [1950, "),
        ("n", "\u0664\u0660", "plain decimal notation"),  # Arabic-Indic digits 40
        ("n", "\uff14\uff10", "plain decimal notation"),  # full-width digits 40
        ("pfs_median_m", "\u0664.\u0665", "plain decimal notation"),
        ("n", "1_000", "plain decimal notation, got '1_000'"),
        ("pfs_median_m", "4_0", "plain decimal notation"),
        ("n", "4\x000", "control character '\\x00'"),
        ("trial", "T\x00-1", "control character '\\x00'"),
        ("notes", "bell \x07", "control character '\\x07'"),
        ("pfs_median_m", "1e999", "must be a finite number"),  # no inf sneaks in as a number
        ("pfs_median_m", "Infinity", "must be a finite number"),
        ("pfs_median_m", "0x10", "plain decimal notation"),
        ("pfs_median_m", "241", "must be in (0, 240]"),
        ("n", "1,000", "plain decimal notation"),
    ],
)
def test_hostile_numbers_in_the_arm_table(tmp_path, column, value, expected):
    rows = base_rows()
    rows[1][column] = value
    path = write(tmp_path / "t.csv", rows)
    p = only(problems_of(path), column, expected)
    assert (p.file, p.row, p.value) == (str(path), 3, value)


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("t", "1e19", "must be in (0, 120], got '1e19'"),
        ("t", "\u0663", "plain decimal notation"),
        ("t", "1_2", "plain decimal notation"),
        ("rate", "0.5\x00", "control character"),
        ("lo", "nan", "must be a finite number"),
        ("arm_id", "a2\x00", "control character"),
        ("location", "p.\x1b[31m3", "control character '\\x1b'"),
    ],
)
def test_hostile_cells_in_the_rates_table(tmp_path, column, value, expected):
    rates = base_rates()
    rates[0][column] = value
    path = pair(tmp_path, rates=rates)
    p = only(problems_of(path), column, expected)
    assert (p.file, p.row, p.value) == (str(tmp_path / "t_rates.csv"), 2, value)


def test_largest_accepted_values_load_exactly(tmp_path):
    rows = [
        arm(
            "a1", n="100000", n_uterine="100000", pfs_events="100000", pmid="99999999", year="1950"
        ),
        arm("a2", n="4.0e1", n_uterine="20.0", pmid=""),
    ]
    df = load_trials(write(tmp_path / "t.csv", rows)).arms
    assert df["n"].tolist() == [100000, 40] and df["pmid"].iloc[0] == 99999999
    assert df["n"].dtype == "Int64" and (df["n"] > 0).all()


def test_every_numeric_cell_that_loads_is_the_number_it_reads(tmp_path):
    rows = [arm("a1", pfs_median_m="+4.50", pfs_median_lo=".5", pfs_median_hi="6.")]
    df = load_trials(write(tmp_path / "t.csv", rows)).arms
    assert df[["pfs_median_m", "pfs_median_lo", "pfs_median_hi"]].values.tolist() == [
        [4.5, 0.5, 6.0]
    ]


# ---------------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    ("bad", "good"),
    [
        ("n_uterin", "n_uterine"),  # issue 11: 21 arms silently lost their uterine counts
        ("N", "n"),  # issue 11: gave an unrelated covariate error
        ("pfsr_03m", "pfsr_3m"),  # issue 11: gave a KeyError
        ("Notes", "notes"),
        ("pfs_median", "pfs_median_m"),
        ("evidence_lvl", "evidence_level"),
        ("registryid", "registry_id"),
    ],
)
def test_a_header_close_to_a_known_name_is_an_error_with_a_suggestion(tmp_path, bad, good):
    rows = [{(bad if k == good else k): v for k, v in r.items()} for r in base_rows()]
    if bad not in rows[0]:  # a misspelled legacy column: add it
        rows = [r | {bad: ""} for r in rows]
    path = write(tmp_path / "t.csv", rows)
    p = only(problems_of(path), bad, f"did you mean {good!r}?")
    assert (p.file, p.row, p.value) == (str(path), 1, bad)
    assert str(p).startswith(f"{path} row 1 (header), column {bad!r}: unknown column")


def test_a_header_close_to_a_known_name_in_the_rates_table(tmp_path):
    rows = [{("rates" if k == "rate" else k): v for k, v in r.items()} for r in base_rates()]
    path = pair(tmp_path)
    write(tmp_path / "t_rates.csv", rows, list(rows[0]))
    problems = problems_of(path)
    only(problems, "rates", "did you mean 'rate'?")
    only(problems, "rate", "required column is missing")


def test_a_far_unknown_header_is_kept_as_the_users_own_column(tmp_path):
    rows = base_rows()
    for r, ecog, region in zip(rows, ["0.5", "", "1e-1"], ["EU", "US", ""], strict=True):
        r.update(ecog0_share=ecog, region=region)
    df = load_trials(write(tmp_path / "t.csv", rows)).arms
    assert list(df.columns)[-2:] == ["ecog0_share", "region"]
    assert df["ecog0_share"].dtype == "float64"
    np.testing.assert_array_equal(df["ecog0_share"], [0.5, np.nan, 0.1])
    assert df["region"].tolist()[:2] == ["EU", "US"] and df["region"].isna().iloc[2]


def test_known_columns_declares_a_users_column_close_to_a_known_name(tmp_path):
    rows = [r | {"uterine": "0.4"} for r in base_rows()]  # close to n_uterine
    path = write(tmp_path / "t.csv", rows)
    only(problems_of(path), "uterine", "did you mean 'n_uterine'?")
    df = load_trials(path, known_columns=["uterine"]).arms
    assert df["uterine"].tolist() == [0.4, 0.4, 0.4]


def test_computed_columns_may_not_be_in_the_file(tmp_path):
    rows = [r | {"uterine_fraction": "0.5"} for r in base_rows()]
    p = only(
        problems_of(write(tmp_path / "t.csv", rows)), "uterine_fraction", "computed by the loader"
    )
    assert p.row == 1


def test_blank_duplicate_and_binary_header_cells(tmp_path):
    path = tmp_path / "t.csv"
    header = "arm_id,trial,,trial,x\x00y"
    path.write_text(header + "\na,b,c,d,e\n", encoding="utf-8")
    text = str(pytest.raises(DataValidationError, load_trials, path).value)
    assert "header cell 3 is blank" in text
    assert "column 'trial': column appears more than once" in text
    assert "header cell 5 ('x\\x00y') holds a control character" in text


# ---------------------------------------------------------------------------- whole files


def test_a_header_only_arm_table_is_one_clear_error(tmp_path):
    # issue 11: loaded as 0 arms, then the fit said "no observation remains after the [data] filter"
    path = write(tmp_path / "t.csv", [])
    (p,) = problems_of(path)
    assert p.file == str(path) and "has a header but no arm rows" in p.message


def test_a_field_over_the_csv_limit_names_the_row(tmp_path):
    # issue 11: a CSV field over 131,072 characters named no row
    rows = base_rows()
    rows[2]["notes"] = "x" * 131_073  # arm a3: spreadsheet row 4
    path = write(tmp_path / "t.csv", rows)
    (p,) = problems_of(path)
    assert (p.file, p.row) == (str(path), 4)
    assert "longer than 131,072 characters" in p.message
    assert len(str(p)) < 300  # the huge cell is not echoed
    rates = base_rates()
    rates[1]["notes"] = "y" * 200_000
    path = pair(tmp_path, rates=rates, name="u.csv")
    (p,) = problems_of(path)
    assert (p.file, p.row) == (str(tmp_path / "u_rates.csv"), 3)


def test_a_long_cell_under_the_limit_is_clipped_in_messages(tmp_path):
    rows = base_rows()
    rows[0]["line"] = "z" * 100_000
    (p,) = problems_of(write(tmp_path / "t.csv", rows))
    assert len(p.message) < 200 and p.value == "z" * 100_000


def test_an_unclosed_quote_names_the_row(tmp_path):
    path = write(tmp_path / "t.csv", base_rows())
    text = path.read_text(encoding="utf-8")
    path.write_text(text + 'a9,"unclosed\n', encoding="utf-8")
    (p,) = problems_of(path)
    assert p.row == 5 and "not a readable CSV" in p.message


def test_a_huge_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = write(tmp_path / "t.csv", base_rows())
    monkeypatch.setattr(data_module, "MAX_FILE_BYTES", 100)
    (p,) = problems_of(path)
    assert "the limit is 100" in p.message and p.file == str(path)


def test_messages_name_the_users_path_as_given(tmp_path, monkeypatch):
    # issue 11: several messages named a temp file instead of the user's path
    (tmp_path / "sub").mkdir()
    rows = base_rows()
    rows[0]["n"] = "1e19"
    rates = base_rates() + [rate("zz", 3, "0.5")]
    pair(tmp_path / "sub", rows, rates)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataValidationError) as info:
        load_trials("sub/t.csv")
    files = {p.file for p in info.value.problems}
    assert files == {"sub/t.csv", "sub/t_rates.csv"}
    for line in str(info.value).splitlines()[1:]:
        assert line.startswith(("  - sub/t.csv row", "  - sub/t_rates.csv row")), line


def test_rates_file_problems_are_input_errors_for_the_cli(tmp_path, capsys):
    from lmsbayes.cli import main

    rows = base_rows()
    path = write(tmp_path / "t.csv", [])
    code = main(["fit", "default", "--data", str(path), "-o", str(tmp_path / "f.nc"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("lmsbayes: error: ")
    assert str(path) in err and "no arm rows" in err
    path = pair(tmp_path, rows, base_rates() + [rate("a2", 3, "0.6")], name="dup.csv")
    code = main(["fit", "default", "--data", str(path), "-o", str(tmp_path / "f.nc"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "dup_rates.csv row 5 (arm_id 'a2'), column 't': duplicate rate" in err
    assert issubclass(DataValidationError, InputError)


def test_missing_rates_file_named_by_the_user(tmp_path):
    path = write(tmp_path / "t.csv", base_rows())
    with pytest.raises(FileNotFoundError, match="rates table file not found: .*missing.csv"):
        load_trials(path, tmp_path / "missing.csv")
    write(tmp_path / "r.csv", base_rates(), list(RATE_COLUMNS))
    assert len(load_trials(path, tmp_path / "r.csv").rates) == 3
