"""`lmsbayes prior` on any fit: setting options only where the fit has those covariates."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest

from lmsbayes.cli import main

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def as_fit_file(tmp_path_factory):
    import lmsbayes as lb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lb.fit("binomial", pd.read_csv(DATA / "AS.csv"))
    return str(fit.save(tmp_path_factory.mktemp("as") / "as.nc"))


def test_prior_of_a_binomial_fit_needs_no_setting(as_fit_file, capsys, tmp_path):
    out_json = tmp_path / "as_map.json"
    assert main(["prior", as_fit_file, "-o", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("MAP prior of a new trial's rate: a new study (no covariates)")
    assert "1L" not in out and "uterine" not in out and "months" not in out
    assert "fit: diagnostics (exact engine): tensor-grid quadrature" in out and "-> OK" in out
    assert out_json.exists()


def test_prior_shows_the_fits_inference_problems(as_fit_file, capsys, monkeypatch):
    """A fit with too few effective importance draws: the prior says so (never hidden)."""
    import dataclasses

    import lmsbayes.cli.prior as cli_prior
    from lmsbayes.fit import load_fit

    fit = load_fit(as_fit_file)
    bad = dataclasses.replace(fit.diagnostics, proposal="student-t", khat=0.9, is_ess=120.0)
    forged = dataclasses.replace(fit, diagnostics=bad)
    monkeypatch.setattr(cli_prior, "_fit_or_load", lambda text, year=None: forged)
    assert main(["prior", "binomial"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("fit: "))
    assert "PROBLEM" in line and "k-hat 0.90 > 0.7" in line and "importance ESS 120 < 400" in line


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--line", "1L"], "--line: this fit of a (study, r, n) table has no such covariate"),
        (["--landmark", "6"], "--landmark: this fit has no landmarks"),
    ],
)
def test_prior_refuses_settings_a_binomial_fit_does_not_have(as_fit_file, capsys, extra, match):
    assert main(["prior", as_fit_file, *extra]) == 2
    assert match in capsys.readouterr().err


def test_prior_of_an_lms_fit_needs_line_and_landmark(saved_default_fit, capsys):
    assert main(["prior", str(saved_default_fit), "--landmark", "6"]) == 2
    assert "give --line" in capsys.readouterr().err
    assert main(["prior", str(saved_default_fit), "--line", "2L+"]) == 2
    assert "give --landmark" in capsys.readouterr().err
    assert main(["prior", str(saved_default_fit), "--line", "2L+", "--landmark", "6"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("MAP prior of a new trial's rate: pre-treated (2L+), ESMO-recommended")


def test_prior_fits_a_named_spec_first(saved_default_fit, capsys):
    """FIT may name a spec: the same prior as from the saved fit of that spec (one command)."""
    argv = ["--line", "1L", "--landmark", "6"]
    assert main(["prior", str(saved_default_fit), *argv]) == 0
    from_file = capsys.readouterr().out
    assert main(["prior", "default", *argv]) == 0
    assert capsys.readouterr().out == from_file
    assert main(["prior", "no_such_spec_or_file", *argv]) != 0
