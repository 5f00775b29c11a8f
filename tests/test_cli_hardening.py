"""The command line under misuse: options and output paths checked before any fit, one line per
error, documented exit statuses, nothing written by a failed --strict fit, temp files removed,
quiet broken pipes.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_cli import DEFAULT_TOML, ROOT, _starved_spec, assert_user_error, call

import lmsbayes.cli.fitting as fitting
from lmsbayes.cli import EXIT_BUG, EXIT_CODES, EXIT_OS, EXIT_SAMPLING, EXIT_USAGE, _parser
from lmsbayes.errors import OptionError
from lmsbayes.files import TMP_PREFIX


@pytest.fixture
def no_fit(monkeypatch):
    """Any fit, or any fit-file read, fails the test: the check must come first."""

    def boom(*args, **kwargs):
        pytest.fail("a fit started before the options were checked")

    monkeypatch.setattr(sys.modules["lmsbayes.fit"], "fit", boom)
    monkeypatch.setattr(sys.modules["lmsbayes.fit"], "load_fit", boom)


def _one_line(err: str) -> str:
    lines = err.strip("\n").splitlines()
    assert (
        len(lines) == 1 and lines[0].startswith("lmsbayes: error: ") and "Traceback" not in err
    ), err
    return lines[0]


# --- options, before any fit ----------------------------------------------------------


@pytest.mark.parametrize(
    "argv, needle",
    [
        (("run", "--hr", "1.5"), "--hr: a hazard ratio must be in (0, 1), got 1.5"),
        (("run", "--hr", "0"), "--hr"),
        (("run", "--hr", "nan"), "finite"),
        (("run", "--hr", "0.65,x"), "not a number: 'x'"),
        (("run", "--hr", "0.65", "x"), "unrecognized arguments: x"),
        (("thresholds", "f.nc", "--hr=-inf"), "finite"),
        (("prior", "f.nc", "--line", "2L+", "--landmark", "-3"), "--landmark"),
        (("prior", "f.nc", "--line", "2L+", "--landmark", "inf"), "--landmark"),
        (("prior", "f.nc", "--line", "2L+", "--landmark", "6", "--uterine", "1.5"), "--uterine"),
        (("prior", "f.nc", "--line", "2L+", "--landmark", "6", "--robust", "1"), "--robust"),
        (
            ("prior", "f.nc", "--line", "2L+", "--landmark", "6", "--robust-mean", "0"),
            "--robust-mean",
        ),
        (("prior", "f.nc", "--line", "2L", "--landmark", "6"), "'2L'"),
    ],
)
def test_bad_options_fail_before_any_fit(argv, needle, no_fit):
    code, _, err = call(*argv)
    assert_user_error(code, err, needle)


@pytest.mark.parametrize(
    "make_argv, needle",
    [
        (
            lambda d: ("run", "--fast", "--json", d / "file.txt" / "t.json"),
            "is a file, not a directory",
        ),
        (lambda d: ("run", "--fast", "--csv", d), "it is a directory"),
        (
            lambda d: ("run", "--fast", "-o", d / "file.txt" / "sub" / "x.nc"),
            "is a file, not a directory",
        ),
        (lambda d: ("fit", DEFAULT_TOML, "-o", d), "it is a directory"),
        (
            lambda d: ("fit", DEFAULT_TOML, "-o", d / "file.txt" / "x.nc"),
            "is a file, not a directory",
        ),
        (lambda d: ("report", "--fast", "-o", d / "file.txt"), "exists and is not a directory"),
        (
            lambda d: ("report", "fit.nc", "-o", d / "file.txt" / "report"),
            "is a file, not a directory",
        ),
        (lambda d: ("thresholds", "fit.nc", "--json", d / "file.txt" / "t.json"), "is a file"),
        (
            lambda d: ("prior", "fit.nc", "--line", "2L+", "--landmark", "6", "-o", d),
            "it is a directory",
        ),
        (
            lambda d: ("run", "--fast", "--json", d / "t", "--csv", d / "t"),
            "--json and --csv name the same file",
        ),
    ],
    ids=[
        "json-under-file",
        "csv-is-dir",
        "run-o-under-file",
        "fit-o-is-dir",
        "fit-o-under-file",
        "report-o-is-file",
        "report-o-under-file",
        "thresholds-json",
        "prior-o-is-dir",
        "same-file-twice",
    ],
)
def test_bad_output_paths_fail_before_any_fit(make_argv, needle, tmp_path, no_fit, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file.txt").write_text("the user's file")
    argv = make_argv(tmp_path)
    code, _, err = call(*argv)
    line = assert_user_error(code, err, needle)
    assert TMP_PREFIX not in line
    assert (tmp_path / "file.txt").read_text() == "the user's file"


def test_bad_spec_values_fail_before_compiling(tmp_path, no_fit):
    text = DEFAULT_TOML.read_text()
    cases = {
        "seed": (
            text.replace("seed = 20210617", "seed = -1"),
            "seed must be an integer in 0..4294967295",
        ),
        "nu": (
            text.replace('distribution = "normal"', 'distribution = "student_t"\nnu = inf'),
            "nu must be finite",
        ),
        "draws": (
            text.replace("draws = 2000", "draws = 1000000000000"),
            "exceeds the bound of 200,000 draws",
        ),
        "population": (
            text.replace("[data]\n", '[data]\npopulations = ["uLSM"]\n'),
            "did you mean 'uLMS'?",
        ),
    }
    for name, (body, needle) in cases.items():
        path = tmp_path / f"{name}.toml"
        path.write_text(body)
        code, _, err = call("fit", path, "-o", tmp_path / "x.nc", "--quiet")
        assert_user_error(code, err, needle, str(path))
    assert not (tmp_path / "x.nc").exists()


def test_a_spec_with_many_problems_is_one_line(tmp_path, no_fit):
    path = tmp_path / "bad.toml"
    path.write_text(
        DEFAULT_TOML.read_text()
        .replace("seed = 20210617", "seed = -1")
        .replace("draws = 2000", "draws = 0")
        .replace("likelihood =", "likelyhood =")
    )
    code, _, err = call("run", "--spec", path, "--quiet")
    line = assert_user_error(code, err, str(path), "3 problems", "seed", "draws", "likelyhood")
    assert line.count(";") >= 2


def test_a_spec_that_is_not_utf8_names_the_file(tmp_path, no_fit):
    path = tmp_path / "latin1.toml"
    path.write_bytes(
        DEFAULT_TOML.read_bytes().replace(b"Survival-coherent", b"Survival-coh\xe4rent")
    )
    code, _, err = call("run", "--spec", path, "--quiet")
    assert_user_error(code, err, str(path), "not valid UTF-8", "line")


# --- a failed --strict fit writes nothing ---------------------------------------------------


def test_a_failed_strict_fit_does_not_write_over_an_earlier_file(tmp_path):
    earlier = tmp_path / "fit.nc"
    earlier.write_bytes(b"the earlier, good fit")
    code, out, err = call("fit", _starved_spec(tmp_path), "-o", earlier, "--strict", "--quiet")
    assert code == EXIT_SAMPLING
    line = _one_line(err)
    assert (
        "inference problems (--strict)" in line
        and "nothing was written" in line
        and str(earlier) in line
    )
    assert earlier.read_bytes() == b"the earlier, good fit"
    assert "PROBLEM" in out
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)] == []


def test_a_failed_strict_run_writes_no_table_and_no_fit(tmp_path):
    files = {name: tmp_path / name for name in ("fit.nc", "t.json", "t.csv")}
    for path in files.values():
        path.write_text("earlier")
    code, out, err = call(
        "run",
        "--spec",
        _starved_spec(tmp_path),
        "--strict",
        "--quiet",
        "-o",
        files["fit.nc"],
        "--json",
        files["t.json"],
        "--csv",
        files["t.csv"],
    )
    assert code == EXIT_SAMPLING
    _one_line(err)
    assert all(path.read_text() == "earlier" for path in files.values())
    assert "efficacy thresholds" in out  # the table is still shown


def test_a_failed_strict_report_writes_no_report(tmp_path):
    out_dir = tmp_path / "report"
    code, _, err = call(
        "report", "--spec", _starved_spec(tmp_path), "--strict", "--quiet", "-o", out_dir
    )
    assert code == EXIT_SAMPLING
    _one_line(err)
    assert not out_dir.exists()


# --- no exception escapes as a traceback ---------------------------------------------------------


@pytest.mark.parametrize(
    "exc, status, needle",
    [
        (
            OSError(errno.ENOSPC, "No space left on device", "out.json"),
            EXIT_OS,
            "out.json: No space left on device",
        ),
        (
            PermissionError(errno.EACCES, "Permission denied", "fit.nc"),
            EXIT_OS,
            "fit.nc: Permission denied",
        ),
        (MemoryError(), EXIT_OS, "out of memory"),
        # only the package's own errors are user mistakes (issue 20): the rest are bugs, exit 70
        (RecursionError("maximum recursion depth exceeded"), EXIT_BUG, "bug in lmsbayes"),
        (
            UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
            EXIT_BUG,
            "UnicodeDecodeError",
        ),
        (
            ValueError("landmark 12 was not fitted"),
            EXIT_BUG,
            "ValueError: landmark 12 was not fitted",
        ),
        (OptionError("landmark 12 was not fitted"), EXIT_USAGE, "landmark 12 was not fitted"),
        (KeyError("alpha"), EXIT_BUG, "bug in lmsbayes"),
        (TypeError("unsupported operand"), EXIT_BUG, "TypeError: unsupported operand"),
    ],
    ids=[
        "ENOSPC",
        "EACCES",
        "memory",
        "recursion",
        "unicode",
        "valueerror",
        "optionerror",
        "keyerror",
        "typeerror",
    ],
)
def test_every_exception_is_one_line_with_its_status(exc, status, needle, monkeypatch):
    def raiser(args):
        raise exc

    monkeypatch.setattr(fitting, "cmd_thresholds", raiser)
    monkeypatch.delenv("LMSBAYES_DEBUG", raising=False)
    code, _, err = call("thresholds", "fit.nc")
    assert code == status
    assert needle in _one_line(err)


def test_ctrl_c_exits_130(monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(fitting, "cmd_thresholds", interrupted)
    code, _, err = call("thresholds", "fit.nc")
    assert code == 130 and "interrupted" in _one_line(err)


def test_lmsbayes_debug_shows_the_traceback_of_a_bug(monkeypatch):
    def buggy(args):
        raise KeyError("alpha")

    monkeypatch.setattr(fitting, "cmd_thresholds", buggy)
    monkeypatch.setenv("LMSBAYES_DEBUG", "1")
    code, _, err = call("thresholds", "fit.nc")
    assert code == EXIT_BUG
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith(
        "lmsbayes: error: internal error"
    )


def test_a_full_disk_during_a_save_names_the_destination_and_leaves_no_temp(
    tmp_path, saved_default_fit
):
    """RLIMIT_FSIZE makes the fit file's write fail as a full disk would (EFBIG instead of
    ENOSPC)."""
    dest = tmp_path / "out" / "fit.nc"
    script = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        from lmsbayes.cli import main
        from lmsbayes.fit import load_fit
        import lmsbayes.cli.fitting as fitting
        fit = load_fit({str(saved_default_fit)!r})
        # no refit: the save is under test
        fitting.fit_from_args = lambda args, progress, spec=None: fit
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        sys.exit(main(["fit", "default", "--quiet", "--mkdir", "-o", {str(dest)!r}]))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == EXIT_OS, r.stderr
    line = _one_line(r.stderr)
    assert str(dest) in line and TMP_PREFIX not in line
    assert not dest.exists() and list(dest.parent.iterdir()) == []


@pytest.mark.slow
def test_sigterm_during_a_write_removes_the_temp_file(tmp_path, saved_default_fit):
    dest = tmp_path / "t.json"
    dest.write_text("earlier")
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        import lmsbayes.cli.fitting as fitting
        from lmsbayes.cli import main
        from lmsbayes.files import atomic_write

        def slow_write(path, text):
            def write(tmp):
                tmp.write_text(text[:10])
                os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` from another shell
                time.sleep(30)
            atomic_write(path, write)

        fitting.atomic_write_text = slow_write
        sys.exit(main(["thresholds", {str(saved_default_fit)!r}, "--json", {str(dest)!r}]))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 128 + 15, r.stderr
    assert "terminated by SIGTERM" in _one_line(r.stderr)
    assert dest.read_text() == "earlier"
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


# --- broken pipes: `lmsbayes ... | head` exits quietly
# ----------------------------------------------


def _to_closed_pipe(argv: list[str]) -> subprocess.CompletedProcess:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (head) has gone before we write
    try:
        return subprocess.run(
            [sys.executable, "-m", "lmsbayes", *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    finally:
        os.close(write_end)


@pytest.mark.slow
def test_a_closed_pipe_is_quiet(saved_default_fit):
    r = _to_closed_pipe(["thresholds", str(saved_default_fit)])
    assert r.stderr == ""
    assert r.returncode == EXIT_OS
    r = _to_closed_pipe(["--help"])
    assert r.stderr == ""


@pytest.mark.slow
def test_head_of_the_threshold_table(saved_default_fit):
    exe = Path(sys.executable).with_name("lmsbayes")
    r = subprocess.run(
        f"'{exe}' thresholds '{saved_default_fit}' | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith("lmsbayes ")


# --- help
# ---------------------------------------------------------------------------------------------


def _verb_parsers():
    parser = _parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return parser, sub.choices


def test_top_level_help_describes_the_package_and_the_exit_statuses():
    code, out, _ = call("--help")
    assert code == 0
    assert "leiomyosarcoma" in out and "p1 = p0^HR" in out
    for status, meaning in EXIT_CODES.items():
        assert f"{status:<4} {meaning}" in out


@pytest.mark.parametrize("verb", ["run", "fit", "thresholds", "report", "prior"])
def test_every_option_has_help_and_shows_its_default(verb):
    _, verbs = _verb_parsers()
    q = verbs[verb]
    assert q.description, verb
    for action in q._actions:
        if action.dest == "help":
            continue
        assert action.help, f"{verb} {action.dest}: no help text"
        if action.option_strings and action.default not in (None, False):
            formatted = q._get_formatter()._get_help_string(action) % {"default": action.default}
            assert "default" in formatted.lower(), f"{verb} {action.dest}: default not shown"


def test_readme_lists_the_exit_statuses():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "## Errors and guarantees" in readme
    for status in EXIT_CODES:
        assert f"| {status} |" in readme
    assert "[notebooks]" in readme


def test_json_output_file_permissions(tmp_path, saved_default_fit):
    dest = tmp_path / "t.json"
    code, _, err = call("thresholds", saved_default_fit, "--json", dest)
    assert code == 0, err
    umask = os.umask(0)
    os.umask(umask)
    assert dest.stat().st_mode & 0o777 == 0o666 & ~umask
    assert json.loads(dest.read_text())["rows"]


def test_prior_json_gets_normal_permissions(tmp_path, saved_default_fit):
    dest = tmp_path / "prior.json"
    code, _, err = call("prior", saved_default_fit, "--line", "2L+", "--landmark", "6", "-o", dest)
    assert code == 0, err
    umask = os.umask(0)
    os.umask(umask)
    assert dest.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["prior.json"]
