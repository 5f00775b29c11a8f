"""Errors and warnings a user can act on (issue 24, item 5).

A (study, r, n) table's header problems speak of study, r and n; --data of the other kind than
the spec says which --spec to give; one study is told that tau is not identified; no numpy
reprs in messages; every verb has a description; every list option takes one syntax.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmsbayes.cli import _parser, main
from lmsbayes.cli._common import ListAction
from lmsbayes.data import DataValidationError, binomial_table, read_binomial, read_tables
from lmsbayes.errors import InputError, OptionError, plain_text

DATA = Path(__file__).parent / "data"


def call(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse: a usage error, already one line
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def one_error_line(code: int, err: str) -> str:
    lines = err.strip("\n").splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("lmsbayes: error: "), err
    return lines[0]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- 1. the (study, r, n) header

AS_ROWS = "A,52,10\nB,40,8\nC,30,5\n"


@pytest.mark.parametrize("header", ["Study,N,R", "STUDY,n,r", "study,N,r"])
def test_a_header_in_another_case_is_the_same_table(tmp_path, header):
    """R writes Study,N,R: accepted as study, n, r (an exact match but for case is unambiguous)."""
    got = read_binomial(write(tmp_path, "t.csv", f"{header}\n{AS_ROWS}"))
    want = read_binomial(write(tmp_path, "u.csv", f"study,n,r\n{AS_ROWS}"))
    assert list(got.columns) == list(want.columns) == ["study", "r", "n"]
    pd.testing.assert_frame_equal(got, want)
    # the file is routed to the (study, r, n) reader, not the arm table's 12 missing columns
    assert list(read_tables(tmp_path / "t.csv").columns) == ["study", "r", "n"]
    frame = pd.DataFrame({"Study": ["A", "B"], "R": [10, 8], "N": [52, 40]})
    assert list(binomial_table(frame).columns) == ["study", "r", "n"]


@pytest.mark.parametrize(
    "header, hints",
    [
        ("studies,events,n", ["'studies' for 'study'", "'events' for 'r'"]),
        ("Studies,Events,N", ["'Studies' for 'study'", "'Events' for 'r'"]),
        ("name,x,total", ["'name' for 'study'", "'x' for 'r'", "'total' for 'n'"]),
        ("study,rr,n", ["'rr' for 'r'"]),
    ],
)
def test_a_misspelt_header_is_one_error_about_study_r_and_n(tmp_path, header, hints):
    path = write(tmp_path, "t.csv", f"{header}\n{AS_ROWS}")
    with pytest.raises(DataValidationError) as info:
        read_tables(path)
    assert len(info.value.problems) == 1, info.value
    text = str(info.value.problems[0])
    assert "a (study, r, n) table needs the columns study" in text
    assert "r (responders or events), n (patients)" in text
    assert "did you mean " + ", ".join(hints) in text
    assert "arm_id" not in text  # not the LMS arm table's columns
    code, _, err = call("run", "--spec", "binomial", "--data", path, "-q")
    line = one_error_line(code, err)
    assert "did you mean" in line and "treatment_class" not in line


def test_case_twins_are_refused_and_errors_use_the_users_spelling(tmp_path):
    with pytest.raises(DataValidationError, match="columns 'Study' and 'study' differ only in"):
        read_binomial(write(tmp_path, "t.csv", "Study,study,n,r\nA,A,52,10\n"))
    with pytest.raises(DataValidationError) as info:
        read_binomial(write(tmp_path, "u.csv", "Study,N,R\nA,52,10\nB,40,60\n"))
    assert str(info.value.problems[0]).endswith(
        "u.csv row 3, column 'R': must be <= n (40), got '60'"
    )


# ------------------------------------------------------------ 2. --data of the other kind


def test_a_binomial_table_with_the_default_spec_asks_for_spec_binomial(tmp_path):
    code, _, err = call("run", "--data", DATA / "AS.csv", "-q")
    line = one_error_line(code, err)
    assert line.endswith("add --spec binomial"), line
    assert "likelihood" not in line and "logit-" not in line
    code, _, err = call("fit", "default", "--data", DATA / "AS.csv", "-q", "-o", tmp_path / "f.nc")
    assert one_error_line(code, err).endswith("fit the spec binomial instead")


def test_the_arm_table_with_the_binomial_spec_says_what_to_do():
    code, _, err = call("run", "--spec", "binomial", "-q")
    line = one_error_line(code, err)
    assert "the bundled data are the LMS arm table" in line and "drop --spec" in line


def test_a_binomial_table_where_the_arm_table_is_read_is_one_error(tmp_path):
    code, _, err = call("data", "--data", DATA / "AS.csv")
    line = one_error_line(code, err)
    assert "is a (study, r, n) table" in line and "required column is missing" not in line


# ---------------------------------------------------------------------- 3. one study


@pytest.mark.slow  # a fit and its MAP mixture: ~3-9 s on a shared machine
def test_one_study_is_told_on_stdout_even_with_quiet(tmp_path):
    path = write(tmp_path, "one.csv", "Study,R,N\nonly,12,40\n")
    code, out, err = call("run", "--spec", "binomial", "--data", path, "-q")
    assert code == 0, err
    assert err == ""  # no raw warning with a package path
    notes = [line for line in out.splitlines() if "not identified" in line]
    assert notes == [
        "warning: one study only - the between-study sd tau is not identified by the data; its "
        "prior alone sets how far a new study's rate may differ (the MAP prior's width)"
    ]


# ------------------------------------------------------------------------ 4. numpy reprs


def test_plain_text_drops_numpy_reprs():
    text = (
        f"{np.int64(52)!r} {np.float64(0.5)!r} {np.str_('a')!r} {np.True_!r} "
        f"{[np.int32(3), np.float32(1.5)]!r}"
    )
    assert plain_text(text) == "52 0.5 'a' True [3, 1.5]"
    assert str(OptionError(f"got {np.int64(52)!r}")) == "got 52"


def test_no_numpy_repr_in_typical_bad_inputs(tmp_path):
    from lmsbayes.design.simon import SimonDesign

    with pytest.raises(OptionError) as info:  # numpy integers from an array
        SimonDesign.from_boundaries(np.int64(25), 20, 30, 40, 0.2, 0.4)
    assert str(info.value) == "r1 must be an integer in [0, n1), got r1=25"
    with pytest.raises(InputError) as info:  # numbers straight from numpy arrays
        binomial_table(
            pd.DataFrame({"study": ["a", "b"], "r": np.array([60, 3]), "n": np.array([52, 10])})
        )
    assert "np." not in str(info.value) and "got '60'" in str(info.value)
    spec = write(
        tmp_path,
        "cov.toml",
        'name = "cov"\nlandmarks = []\n[model]\nlikelihood = "logit-binomial"\n'
        'covariates = ["x"]\n[covariates.x]\ntype = "numeric"\n',
    )
    data = write(tmp_path, "x.csv", "study,r,n,x\nA,1,52,3\nB,8,40,\nC,5,30,1\n")
    runs = [  # a blank covariate cell printed np.float64(nan)
        ("run", "-q", "--spec", spec, "--data", data, "--at", "x=1"),
        (
            "run",
            "-q",
            "--spec",
            "binomial",
            "--data",
            write(tmp_path, "b.csv", "study,r,n\nA,60,52\nA,-1,0\n"),
        ),
        ("design", "--kind", "simon", "--p0", "0.5", "--p1", "0.4"),
        ("run", "--hr", "0.5,x"),
        ("run", "--landmarks", "3,200"),
    ]
    for argv in runs:
        code, out, err = call(*argv)
        assert code == 2, (argv, err)
        assert "np." not in err + out, (argv, err)
    code, _, err = call(*runs[0])
    assert "must be numeric and complete, got a blank cell (row 3)" in err


# ------------------------------------------------------------------ 5. --help of every verb


def _verbs() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_verb_has_a_description_in_its_help():
    verbs = _verbs()
    assert {"run", "validate", "calibrate", "data", "curve", "update"} <= set(verbs)
    for name in verbs:
        code, out, _ = None, "", ""
        with pytest.raises(SystemExit) as info:
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                main([name, "--help"])
        code, out = info.value.code, buf.getvalue()
        assert code == 0, name
        description = verbs[name].description
        assert description and len(description) > 60, f"`lmsbayes {name} --help`: no description"
        assert " ".join(description.split()[:6]) in " ".join(out.split()), name


# ----------------------------------------------------------------- 6. one list syntax

#: (argv before the option, option, values as given, values parsed): every list option.
LIST_OPTIONS = [
    (["run"], "--landmarks", ["3", "6", "9"], [3.0, 6.0, 9.0]),
    (["run"], "--hr", ["0.6", "0.7"], [0.6, 0.7]),
    (["thresholds", "fit.nc"], "--landmarks", ["3", "6"], [3.0, 6.0]),
    (["thresholds", "fit.nc"], "--hr", ["0.65", "0.5"], [0.65, 0.5]),
    (["data"], "--landmarks", ["3", "12"], [3.0, 12.0]),
    (["update", "--add", "new.csv"], "--landmarks", ["3", "6"], [3.0, 6.0]),
    (["curve", "a.toml"], "--landmarks", ["3", "6", "9", "12"], [3.0, 6.0, 9.0, 12.0]),
    (["curve", "a.toml"], "--family", ["loglogistic", "weibull"], ["loglogistic", "weibull"]),
    (["contrast", "t.csv"], "--events", ["150", "300"], [150, 300]),
    (["contrast", "t.csv"], "--method", ["DL", "REML"], ["DL", "REML"]),
    (["design", "p.json"], "--looks", ["20", "35", "50"], ["20", "35", "50"]),
    (["design", "p.json"], "--interims", ["20:10", "30:15"], ["20:10", "30:15"]),
    (["design", "p.json"], "--type1-range", ["0.3", "0.8"], ["0.3", "0.8"]),
]


@pytest.mark.parametrize(
    "before, option, values, parsed", LIST_OPTIONS, ids=[f"{a[0]} {o}" for a, o, *_ in LIST_OPTIONS]
)
def test_every_list_option_takes_one_comma_separated_word(before, option, values, parsed):
    parser = _parser()
    dest = option.lstrip("-").replace("-", "_")
    args = parser.parse_args([*before, option, ",".join(values)])
    assert getattr(args, dest) == parsed
    if len(values) > 1:  # one syntax: the space-separated form is refused, with the hint
        with pytest.raises(SystemExit):
            parser.parse_args([*before, option, *values])


def test_every_multi_value_option_is_a_list_option_with_its_syntax_in_help():
    seen = set()
    for name, verb in _verbs().items():
        for action in verb._actions:
            if not action.option_strings:
                continue
            if action.nargs in ("+", "*") or isinstance(action, ListAction):
                assert isinstance(action, ListAction), (name, action.option_strings)
                assert action.nargs is None, (name, action.option_strings)
                assert "comma-separated, e.g." in action.help, (name, action.option_strings)
                seen.add((name, action.option_strings[-1]))
    listed = {(before[0], option) for before, option, *_ in LIST_OPTIONS}
    assert seen == listed  # every list option is tested above


def test_a_positional_after_a_list_is_the_positional():
    parser = _parser()
    args = parser.parse_args(["thresholds", "--landmarks", "3,6", "fit.nc"])
    assert args.landmarks == [3.0, 6.0]


def test_the_space_separated_form_of_0_1_gets_the_comma_hint():
    code, _, err = call("run", "--hr", "0.65", "0.5")
    line = one_error_line(code, err)
    assert "unrecognized arguments: 0.5" in line and "--hr 0.65,0.5" in line
    code, _, err = call("run", "--hr", "0.5,,0.6")
    assert "empty value in '0.5,,0.6'" in one_error_line(code, err)
