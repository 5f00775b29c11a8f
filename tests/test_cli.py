"""The ``lmsbayes`` command, called in-process so that compiled models are shared.

Every fit here has the default model's structure (``--fast`` changes only the
number of draws), so the session compiles it once for all of these tests.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmsbayes
from lmsbayes.cli import EXIT_SAMPLING, EXIT_USAGE, main
from lmsbayes.fit import FitWarning, load_fit
from lmsbayes.prior import read_prior
from lmsbayes.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TOML = ROOT / "models" / "default.toml"
FAST = {"sampler.draws": 500, "sampler.tune": 500}  # what --fast means


def call(*argv: object) -> tuple[int, str, str]:
    """Run ``lmsbayes ARGV`` in this process; return (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse: --version, --help, usage errors
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def assert_user_error(code: int, err: str, *needles: str) -> str:
    """Exit status 2 and one line on stderr, 'lmsbayes: error: ...', no traceback."""
    assert code == EXIT_USAGE, err
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("lmsbayes: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def run_output(workdir):
    """``lmsbayes run --fast --quiet --json --csv``: the main job, once per module."""
    return call(
        "run", "--fast", "--quiet", "--json", workdir / "t.json", "--csv", workdir / "t.csv"
    )


@pytest.fixture(scope="module")
def fit_file(workdir) -> Path:
    """``lmsbayes fit models/default.toml -o x.nc --fast``."""
    path = workdir / "x.nc"
    code, out, err = call("fit", DEFAULT_TOML, "-o", path, "--fast", "--quiet")
    assert code == 0, err
    assert path.is_file()
    assert "beta[line]" in out and out.strip().splitlines()[-1].startswith(
        "diagnostics (exact engine):"
    )
    return path


@pytest.fixture(scope="module")
def prior_file(workdir, fit_file) -> Path:
    path = workdir / "p.json"
    code, out, err = call(
        "prior", fit_file, "--line", "2L+", "--landmark", "6", "--robust", "0.2", "-o", path
    )
    assert code == 0, err
    assert out.startswith("robust MAP prior of a new trial's rate: pre-treated (2L+)")
    assert "ESS: " in out and "RBesT: mixbeta(" in out
    return path


# --- the main job ------------------------------------------------------------


def test_run_prints_the_threshold_table(run_output):
    code, out, err = run_output
    assert code == 0, err
    assert err == ""  # --quiet: no progress messages
    lines = out.splitlines()
    assert lines[0].startswith(f"lmsbayes {lmsbayes.__version__} - efficacy thresholds")
    header = next(line for line in lines if line.lstrip().startswith("setting"))
    for column in (
        "landmark",
        "HR",
        "p0",
        "p1 = p0^HR",
        "EORTC 2021 p0 (per line)",
        "informed by (cell)",
    ):
        assert column in header
    assert any("posterior median of the pooled PFS rate" in line for line in lines[:3])
    body = "\n".join(lines)
    for line in ("1L", "2L+"):
        assert line in body
    assert "3 mo" in body and "6 mo" in body
    assert "0.58 (0.50-0.66)" in body  # EORTC 1L PFSR-6m, pooled (95% CI)
    assert "0.28 (0.22-0.34)" in body  # EORTC 2L+ PFSR-6m
    diag = [line for line in lines if line.startswith("diagnostics")]
    assert len(diag) == 1 and "importance k-hat" in diag[0] and "4000 draws" in diag[0]
    order = [
        line for line in lines if line.startswith("landmarks fitted one survival curve per arm")
    ]
    assert len(order) == 1 and "every draw" in order[0]
    assert any(line.startswith("flags (read these") for line in lines)
    assert any("rests on 1 arm" in line for line in lines)
    assert lines[-1].startswith("EORTC 2021: Kantidakis et al.")
    # the default's leave-future-out validation, one line before the table (lmsbayes.decision)
    val = [line for line in lines if line.startswith("validation: ")]
    assert len(val) == 1 and lines.index(val[0]) < lines.index(header)
    assert "0.70 (0.47-0.87)" in val[0] and "too narrow for future trials" in val[0]
    assert "these data differ" not in val[0]


def test_run_writes_json_and_csv(run_output, workdir):
    code, _, err = run_output
    assert code == 0, err
    payload = json.loads((workdir / "t.json").read_text())
    assert payload["spec"] == "default" and payload["lmsbayes_version"] == lmsbayes.__version__
    assert payload["spec_hash"] == load_spec("default").hash  # --fast shortens NUTS runs only
    assert len(payload["data_sha256"]) == 64
    assert {"engine", "khat", "importance_ess", "divergences", "max_rhat", "ok"} <= set(
        payload["diagnostics"]
    )
    assert payload["engine"] == "exact" and payload["diagnostics"]["ok"]
    assert {"arm_id", "reason"} <= set(pd.DataFrame(payload["excluded"]).columns)
    rows = pd.DataFrame(payload["rows"])
    table = pd.read_csv(workdir / "t.csv")
    assert len(rows) == len(table) > 0
    assert {
        "setting",
        "landmark",
        "hr",
        "p0",
        "p0_lower",
        "p0_upper",
        "p0_mcse",
        "p1",
        "arms",
        "flags",
    } <= set(table.columns)
    assert set(table["landmark"]) == {3.0, 6.0}
    assert ((table["p0_lower"] <= table["p0"]) & (table["p0"] <= table["p0_upper"])).all()
    assert (table["p1"] > table["p0"]).all()  # p1 = p0^0.65 > p0
    np.testing.assert_allclose(rows["p0"], table["p0"], rtol=1e-9)  # JSON keeps 10 digits
    order = pd.DataFrame(payload["landmark_order"])
    assert list(order.columns) == ["setting", "earlier", "later", "prob_later_higher"]
    assert (
        set(order["setting"]) == set(table["setting"])
        and order.prob_later_higher.between(0, 1).all()
    )


def test_run_progress_messages_go_to_stderr(workdir):
    # a starved spec (5 draws) keeps this cheap; progress lines are on stderr, the table on stdout
    spec = _starved_spec(workdir)
    code, out, err = call("run", "--spec", spec)
    assert code == 0
    assert "spec 'default'" in err and "enter the model" in err
    assert "PROBLEM" in out and "efficacy thresholds" in out


# --- fit, thresholds, prior, design ------------------------------------------


def test_thresholds_from_a_saved_fit(fit_file, workdir):
    code, out, err = call("thresholds", fit_file, "--hr", "0.65,0.5", "--csv", workdir / "thr.csv")
    assert code == 0, err
    assert "EORTC 2021 p0" in out and "diagnostics (exact engine)" in out
    table = pd.read_csv(workdir / "thr.csv")
    assert set(table["hr"]) == {0.65, 0.5}


def test_api_and_cli_give_the_same_posterior(fit_file, trials):
    from_cli = load_fit(fit_file)
    spec = load_spec(DEFAULT_TOML)
    assert from_cli.spec == spec
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        from_api = lmsbayes.fit(spec, trials)
    for v in ("alpha", "beta", "tau", "z"):
        np.testing.assert_array_equal(
            from_cli.posterior[v].values, from_api.posterior[v].values, err_msg=v
        )
    assert from_cli.data_sha256 == from_api.data_sha256


def test_run_and_fit_agree(run_output, workdir, fit_file):
    # same spec, same seed, same data: `run` and `fit` print the same table
    code, out_run, _ = run_output
    code2, out_thr, err = call("thresholds", fit_file)
    assert code == code2 == 0, err
    table = lambda out: [line for line in out.splitlines() if " mo " in line]  # noqa: E731
    assert table(out_run) == table(out_thr)


def test_prior_then_design(prior_file):

    mix = read_prior(prior_file)
    assert np.isclose(np.sum(mix.weights), 1.0)
    assert np.any(np.isclose(mix.weights, 0.2))  # the robust component
    assert 0.1 < mix.mean() < 0.6  # 2L+ PFSR-6m

    code, out, err = call("design", prior_file, "--looks", "20,35,50")
    assert code == 0, err
    assert "Decision boundaries" in out and "Operating characteristics" in out
    assert "prob_success" in out and "expected_n" in out


def test_design_simon(capsys):
    code = main(["design", "--kind", "simon", "--p0", "0.28", "--p1", "0.44"])
    out = capsys.readouterr().out
    assert code == 0
    assert "optimal" in out and "minimax" in out
    optimal = next(line for line in out.splitlines() if line.startswith("optimal")).split()
    # r1 n1 r n EN0 PET0 alpha power: an exact search, p0 = 0.28 vs p1 = 0.44, alpha 0.05, power 0.8
    r1, n1, r, n = map(int, optimal[1:5])
    alpha, power = map(float, optimal[-2:])
    assert r1 < n1 < n and r < n
    assert alpha <= 0.05 and power >= 0.8


# --- user mistakes: exit 2, one line, no traceback ----------------------------


def test_missing_spec_file(workdir):
    code, _, err = call("fit", workdir / "nope.toml", "-o", workdir / "never.nc")
    assert_user_error(code, err, "nope.toml")
    assert not (workdir / "never.nc").exists()


def test_bad_spec_key(workdir):
    bad = workdir / "bad.toml"
    bad.write_text(DEFAULT_TOML.read_text().replace("likelihood =", "likelyhood ="))
    code, _, err = call("run", "--spec", bad, "--fast", "--quiet")
    assert_user_error(code, err, "likelyhood", "did you mean 'likelihood'?", str(bad))


def test_unknown_line(fit_file):
    code, _, err = call("prior", fit_file, "--line", "3L", "--landmark", "6")
    assert_user_error(code, err, "'3L'")


def test_landmark_beyond_the_data(fit_file):
    code, _, err = call("prior", fit_file, "--line", "2L+", "--landmark", "150")
    assert_user_error(code, err, "150")


def test_bad_csv(workdir):
    from lmsbayes.data import load_trials

    lines = (ROOT / "data" / "lms_trials.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    assert lines[1].startswith("lms04_doxo,") and lines[1].count(",1L,") == 1
    bad = workdir / "bad.csv"
    bad.write_text(
        lines[0] + lines[1].replace(",1L,", ",1st line,") + "".join(lines[2:]), encoding="utf-8"
    )
    with pytest.raises(lmsbayes.DataValidationError):
        load_trials(bad)
    code, _, err = call("run", "--fast", "--quiet", "--data", bad)
    assert_user_error(code, err, "bad.csv", "row 2", "'line'", "1st line")


def test_missing_csv(workdir):
    code, _, err = call("run", "--fast", "--quiet", "--data", workdir / "nothing.csv")
    assert_user_error(code, err, "nothing.csv")


@pytest.mark.parametrize(
    "argv, needle",
    [
        (("thresholds", "missing.nc"), "no fit file"),
        (("design", "--looks", "20,3x", "--p0", "0.3"), "--looks"),
        (("design", "--kind", "simon", "--p0", "0.3"), "simon needs --p0 and --p1"),
        (("frobnicate",), "invalid choice"),
        (("run", "--draws", "10"), "--draws"),
    ],
)
def test_other_user_mistakes(argv, needle, workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    code, _, err = call(*argv)
    assert_user_error(code, err, needle)


def test_thresholds_of_a_file_that_is_not_a_fit(workdir):
    path = workdir / "notes.nc"
    path.write_text("not a fit\n")
    code, _, err = call("thresholds", path)
    assert_user_error(code, err, "notes.nc")


# --- sampling problems ---------------------------------------------------------


def _starved_spec(workdir: Path) -> Path:
    """The default spec with a k-hat limit its fit cannot meet: a fit with an inference problem.

    (The exact engine integrates over a fixed rule whose size does not follow ``draws``, so
    starving it of draws no longer makes a problem; a limit of 0.05 on k-hat does.)
    """
    path = workdir / "starved.toml"
    text = DEFAULT_TOML.read_text() + "\n[exact]\nkhat_max = 0.05\n"
    path.write_text(text)
    return path


def test_strict_with_sampling_problems_exits_3(workdir):
    code, out, err = call(
        "fit", _starved_spec(workdir), "-o", workdir / "starved.nc", "--strict", "--quiet"
    )
    assert code == EXIT_SAMPLING == 3
    assert err.startswith("lmsbayes: error: inference problems (--strict)")
    assert "Traceback" not in err
    assert "PROBLEM" in out


def test_sampling_problems_without_strict_exit_0(workdir):
    code, out, err = call("fit", _starved_spec(workdir), "-o", workdir / "starved2.nc", "--quiet")
    assert code == 0, err
    assert "PROBLEM" in out.splitlines()[-1]


def test_an_importance_k_hat_above_its_limit_is_a_warning_and_under_strict_an_error(workdir):
    # the default's k-hat is 0.26: a limit of 0.05 makes it a problem without starving the sampler
    path = workdir / "khat.toml"
    path.write_text(DEFAULT_TOML.read_text() + "\n[exact]\nkhat_max = 0.05\n")
    code, out, err = call("fit", path, "-o", workdir / "khat.nc", "--quiet")
    assert code == 0, err
    last = out.splitlines()[-1]
    assert "PROBLEM" in last and "k-hat" in last and "> 0.05" in last
    code, out, err = call("fit", path, "-o", workdir / "khat_strict.nc", "--strict", "--quiet")
    assert code == EXIT_SAMPLING
    assert err.startswith("lmsbayes: error: inference problems (--strict)") and "k-hat" in err + out
    assert not (workdir / "khat_strict.nc").exists()


# --- the installed entry point -------------------------------------------------


def test_installed_entry_point_version():
    exe = Path(sys.executable).with_name("lmsbayes")
    assert exe.is_file(), f"console script not installed next to {sys.executable}"
    result = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"lmsbayes {lmsbayes.__version__}"


def test_python_dash_m_is_the_same_command():
    result = subprocess.run(
        [sys.executable, "-m", "lmsbayes", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"lmsbayes {lmsbayes.__version__}"


def test_a_time_trend_needs_the_new_trials_year_before_any_fit(workdir, monkeypatch):
    """The time_trend spec: no year -> one error before fitting; --at year=... -> settings at that
    year, flagged where the year lies outside the included arms' years (the coding itself:
    test_generic)."""
    import lmsbayes.cli.fitting as cf

    fitted = []
    monkeypatch.setattr(
        cf, "fit_from_args", lambda *a, **k: fitted.append(1) or pytest.fail("fitted")
    )
    code, _, err = call("run", "--spec", "time_trend", "--quiet")
    assert_user_error(code, err, "'decade' (column 'year')", "--at year=VALUE")
    assert not fitted
    monkeypatch.undo()
    code, out, err = call(
        "run",
        "--spec",
        "time_trend",
        "--fast",
        "--quiet",
        "--at",
        "year=2030",
        "--json",
        workdir / "trend.json",
    )
    assert code == 0, err
    assert (
        "2L+ R-T: pre-treated (2L+), ESMO-recommended treatment (R-T), 50% uterine patients, year "
        "= 2030" in out
    )
    doc = json.loads((workdir / "trend.json").read_text())
    assert doc["at"] == {"year": 2030.0}
    rows = {(r["setting"], r["landmark"]): r for r in doc["rows"]}
    assert "extrapolated: year 2030 outside the included arms' " in rows[("2L+ R-T", 6.0)]["flags"]
    # the case mix takes the arms' own years, and says so instead of an extrapolation flag
    case_mix = rows[("2L+ case mix", 6.0)]["flags"]
    assert "not evaluated at year=2030" in case_mix and "extrapolated" not in case_mix
    code, _, err = call("run", "--fast", "--quiet", "--at", "year=2026")
    assert_user_error(code, err, "'year' is not a covariate of spec 'default'")
