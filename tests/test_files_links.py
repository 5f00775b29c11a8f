"""Files stay safe, part 2 (issue 20): links, missing directories, the report folder, the exit
status of user mistakes and of bugs, validation before work, temps that no signal orphans.

Each reproducer of the issue is run through the command line: one ``lmsbayes: error:`` line
naming the file (and row, column, value where there are any), exit status 2, nothing written
outside what the user named, no file of the user's changed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sys
from pathlib import Path

import pytest
from test_cli import assert_user_error, call

import lmsbayes.files as files
from lmsbayes.cli import EXIT_BUG
from lmsbayes.errors import OutputPathError
from lmsbayes.files import TMP_PREFIX, Staging
from lmsbayes.report import MANIFEST


@pytest.fixture
def no_fit(monkeypatch):
    """Any fit, or any fit-file read, fails the test: the check must come first."""

    def boom(*args, **kwargs):
        pytest.fail("a fit started before the options were checked")

    monkeypatch.setattr(sys.modules["lmsbayes.fit"], "fit", boom)
    monkeypatch.setattr(sys.modules["lmsbayes.fit"], "load_fit", boom)


@pytest.fixture
def decoy(tmp_path):
    path = tmp_path / "decoy"
    path.write_text("the user's file")
    return path


def _temps(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(TMP_PREFIX)]


BINOMIAL = "study,r,n\nA,3,10\nB,4,12\nC,5,20\n"


# --- no write through a link ------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ("fit", "default", "-o", "{link}"),
        ("run", "--json", "{link}"),
        ("run", "--csv", "{link}"),
        ("run", "-o", "{link}"),
        ("prior", "fit.nc", "--line", "2L+", "--landmark", "6", "-o", "{link}"),
        ("thresholds", "fit.nc", "--json", "{link}"),
    ],
    ids=["fit-o", "run-json", "run-csv", "run-o", "prior-o", "thresholds-json"],
)
def test_an_output_that_is_a_link_is_refused_at_the_door(argv, tmp_path, decoy, no_fit):
    link = tmp_path / "link.nc"
    link.symlink_to(decoy)
    code, out, err = call(*(a.format(link=link) for a in argv))
    assert_user_error(code, err, str(link), "symbolic link", str(decoy))
    assert decoy.read_text() == "the user's file" and link.is_symlink()
    assert _temps(tmp_path) == []


def test_a_dangling_link_creates_nothing_where_it_points(tmp_path, no_fit):
    link = tmp_path / "d.nc"
    link.symlink_to(tmp_path / "nonexistent" / "dir" / "x.nc")
    code, _, err = call("fit", "default", "-o", link)
    assert_user_error(code, err, str(link), "symbolic link")
    assert not (tmp_path / "nonexistent").exists()


def test_a_missing_parent_is_an_error_unless_mkdir(tmp_path, no_fit):
    target = tmp_path / "a" / "b" / "c.nc"
    code, _, err = call("fit", "default", "-o", target)
    assert_user_error(code, err, str(target), "does not exist", "--mkdir")
    assert not (tmp_path / "a").exists()


def test_mkdir_creates_the_parents_the_user_named(tmp_path):
    data = tmp_path / "b.csv"
    data.write_text(BINOMIAL)
    out = tmp_path / "a" / "b" / "t.json"
    code, _, err = call("run", "--spec", "binomial", "--data", data, "-q", "--json", out, "--mkdir")
    assert code == 0, err
    assert json.loads(out.read_text())["spec"] == "binomial"


# --- the report folder ------------------------------------------------------------------------


def test_report_refuses_a_link_inside_the_folder_before_any_work(tmp_path, decoy, no_fit):
    out = tmp_path / "report"
    out.mkdir()
    (out / "index.html").symlink_to(decoy)
    code, _, err = call("report", "fit.nc", "-o", out)
    assert_user_error(code, err, str(out / "index.html"), "symbolic link")
    assert decoy.read_text() == "the user's file"
    code, _, err = call("report", "fit.nc", "-o", out, "--overwrite")  # a link, even then
    assert_user_error(code, err, "symbolic link")


@pytest.mark.parametrize("name", ["index.html", "thresholds.csv"])
def test_report_refuses_the_users_own_file_of_the_same_name(tmp_path, name, no_fit):
    out = tmp_path / "report"
    out.mkdir()
    (out / name).write_text("the user's own")
    code, _, err = call("report", "fit.nc", "-o", out)
    assert_user_error(code, err, str(out / name), "not written by a report", "--overwrite")
    assert (out / name).read_text() == "the user's own"
    assert sorted(p.name for p in out.iterdir()) == [name]


def test_report_refuses_a_file_changed_since_a_report_wrote_it(tmp_path, no_fit):
    out = tmp_path / "report"
    out.mkdir()
    (out / "index.html").write_text("edited by the user")
    digest = hashlib.sha256(b"what lmsbayes wrote").hexdigest()
    (out / MANIFEST).write_text(json.dumps({"files": {"index.html": digest}}))
    code, _, err = call("report", "fit.nc", "-o", out)
    assert_user_error(code, err, "changed since a report wrote it")


def test_report_with_a_missing_parent_needs_mkdir(tmp_path, no_fit):
    code, _, err = call("report", "fit.nc", "-o", tmp_path / "a" / "report")
    assert_user_error(code, err, "does not exist", "--mkdir")
    assert not (tmp_path / "a").exists()


def test_a_full_disk_during_the_report_names_the_file(tmp_path, monkeypatch):
    from lmsbayes.report import _write_files

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", full)
    out = tmp_path / "report"
    with pytest.raises(OSError) as info:
        _write_files(out, {"index.html": b"<html>"})
    assert info.value.filename == str(out / "index.html")
    assert _temps(out) == []


def test_a_dollar_in_a_label_is_drawn_as_text(tmp_path):
    import matplotlib.pyplot as plt

    from lmsbayes.report import plain_text

    labels = ["trial $x_$ b", "cost $\\bad$"]  # mathtext fails on each of these
    fig, ax = plt.subplots()
    ax.set_yticks([0, 1], labels)
    with pytest.raises(ValueError):  # the failure the report met (the test can fail)
        fig.savefig(tmp_path / "a.png")
    plt.close(fig)
    with plain_text():
        fig, ax = plt.subplots()
        ax.set_yticks([0, 1], labels)
        fig.savefig(tmp_path / "b.png")
    plt.close(fig)


def test_contrast_plots_with_a_dollar_in_a_study_label(tmp_path):
    table = tmp_path / "c.csv"
    table.write_text("study,log_estimate,se\nA $x_$ b,-0.2,0.2\nB $}$,0.1,0.3\nC,0.0,0.25\n")
    code, _, err = call("contrast", table, "--plots", tmp_path / "plots", "--no-bayes")
    assert code == 0, err
    assert (tmp_path / "plots" / "forest.png").stat().st_size > 0


# --- the generic table through the command line -------------------------------------------------


@pytest.mark.parametrize(
    "raw, needles",
    [
        (
            b"study,n,r\nA,10000000000000000000,23\nB,44,12\n",
            ("b.csv row 2, column 'n': must be in [1, 100000], got '10000000000000000000'",),
        ),
        (b"study;r;n\nA;3;10\n", ("b.csv row 1 (header)", "separated by semicolons")),
        (b"study,r,n\n", ("b.csv", "no study rows")),
        (b"study,n\nA,10\n", ("b.csv row 1 (header): a (study, r, n) table", "missing 'r'")),
        ("study,r,n\nK\u00f6ln,3,10\n".encode("latin-1"), ("b.csv", "not UTF-8")),
    ],
    ids=["n-1e19", "semicolons", "header-only", "no-r", "latin-1"],
)
def test_generic_table_reproducers(tmp_path, raw, needles, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("b.csv").write_bytes(raw)
    code, _, err = call("run", "--spec", "binomial", "--data", "b.csv", "-q")
    assert_user_error(code, err, *needles)


def test_an_excel_csv_with_a_bom_is_read_as_the_generic_table(tmp_path):
    data = tmp_path / "b.csv"
    data.write_bytes(b"\xef\xbb\xbf" + BINOMIAL.replace("\n", "\r\n").encode())
    code, out, err = call("run", "--spec", "binomial", "--data", data, "-q")
    assert code == 0, err
    assert "3 studies, 42 patients" in out


# --- validation before work -------------------------------------------------------------------


def test_a_repeated_hr_is_one_row(tmp_path):
    data = tmp_path / "b.csv"
    data.write_text(BINOMIAL)
    code, _, err = call(
        "run", "--spec", "binomial", "--data", data, "-q", "--hr", "0.5,0.50", "--csv",
        tmp_path / "t.csv",
    )  # fmt: skip
    assert code == 0, err
    import pandas as pd

    assert pd.read_csv(tmp_path / "t.csv")["hr"].tolist().count(0.5) == 1


def test_thresholds_with_a_repeated_hr(saved_default_fit):
    code, out, err = call("thresholds", saved_default_fit, "--hr", "0.5,0.5")
    assert code == 0, err


@pytest.mark.parametrize(
    "text, needles",
    [
        ("", ("empty.toml", "the spec is empty")),
        ("  \n\t\n", ("empty.toml", "the spec is empty")),
        ("# only a comment\n", ("empty.toml", "the spec is empty")),
    ],
)
def test_an_empty_spec_is_refused(tmp_path, text, needles, no_fit):
    spec = tmp_path / "empty.toml"
    spec.write_text(text)
    code, _, err = call("run", "--spec", spec, "-q")
    assert_user_error(code, err, *needles)


def test_a_prior_scale_out_of_range_is_refused(tmp_path, no_fit):
    from test_cli import DEFAULT_TOML

    text = DEFAULT_TOML.read_text()
    spec = tmp_path / "tiny.toml"
    import re

    spec.write_text(re.sub(r"sigma = [0-9.]+", "sigma = 1e-300", text, count=1))
    code, _, err = call("run", "--spec", spec, "-q")
    assert_user_error(code, err, "tiny.toml", "sigma must be in [1e-06, 1e+06], got 1e-300")


@pytest.mark.parametrize(
    "argv, needles",
    [
        (("--allocation", "0.6"), ("--allocation applies only to the assurance", "--events")),
        (("--alpha", "0.05", "--target-hr", "0.7"), ("--alpha and --target-hr apply only",)),
        (("--allocation", "1"), ("--allocation", "(0, 1)")),
        (("--events", "100", "--measure", "OR"), ("--events", "needs --measure HR")),
        (("--method", "DL,XX"), ("--method",)),
        (("--level", "1.5"), ("--level",)),
        (("--tau-prior", "half-normal:-1"), ("--tau-prior: HalfNormal scale",)),
    ],
)
def test_contrast_options_are_checked_before_the_analysis(tmp_path, argv, needles):
    table = tmp_path / "c.csv"
    table.write_text("study,log_estimate,se\nA,-0.2,0.2\nB,0.1,0.3\n")
    code, out, err = call("contrast", table, *argv)
    assert_user_error(code, err, *needles)
    assert out == ""  # nothing printed: the analysis did not start


def test_a_contrast_se_of_1e_300_is_refused_naming_the_cell(tmp_path):
    table = tmp_path / "c.csv"
    table.write_text("study,log_estimate,se\nA,-0.2,1e-300\nB,0.1,0.3\n")
    code, out, err = call("contrast", table)
    assert_user_error(code, err, f"{table} row 2, column 'se'", "got '1e-300'")


# --- only the package's errors exit 2 ----------------------------------------------------------


def test_a_value_error_inside_a_fit_is_a_bug_exit_70(tmp_path, monkeypatch):
    data = tmp_path / "b.csv"
    data.write_text(BINOMIAL)

    def broken(*args, **kwargs):
        raise ValueError("an internal check failed")

    monkeypatch.setattr(sys.modules["lmsbayes.fit"], "fit", broken)
    monkeypatch.delenv("LMSBAYES_DEBUG", raising=False)
    code, _, err = call("run", "--spec", "binomial", "--data", data, "-q")
    assert code == EXIT_BUG, err
    assert "internal error, a bug in lmsbayes" in err and "ValueError" in err


# --- temps registered before they exist -------------------------------------------------------


def test_a_signal_right_after_the_temp_is_created_leaves_nothing(tmp_path, monkeypatch):
    real_open = os.open

    def open_then_signal(path, flags, mode=0o777, **kw):
        fd = real_open(path, flags, mode, **kw)
        if Path(path).name.startswith(TMP_PREFIX):
            os.close(fd)
            raise KeyboardInterrupt  # SIGTERM under the command line unwinds the same way
        return fd

    monkeypatch.setattr(files.os, "open", open_then_signal)
    with pytest.raises(KeyboardInterrupt), Staging() as stage:
        stage.path(tmp_path / "index.html")
    assert _temps(tmp_path) == []


def test_a_taken_temp_name_is_never_removed(tmp_path, monkeypatch):
    taken = tmp_path / "taken"
    names = iter([taken.name, "fresh"])
    taken.write_text("someone else's")
    monkeypatch.setattr(files, "temp_name", lambda dest: next(names))
    with Staging() as stage:
        stage.path(tmp_path / "out.txt").write_text("x")
    assert taken.read_text() == "someone else's"
    assert (tmp_path / "out.txt").read_text() == "x"


def test_staging_refuses_a_link_and_a_directory(tmp_path, decoy):
    (tmp_path / "l").symlink_to(decoy)
    (tmp_path / "d").mkdir()
    for name in ("l", "d"):
        with pytest.raises(OutputPathError), Staging() as stage:
            stage.path(tmp_path / name)
    assert decoy.read_text() == "the user's file"
