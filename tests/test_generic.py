"""Any (study, r, n) table, with or without covariates: the RBesT AS example end to end.

The pooled and predictive rates are checked against the brute-force quadrature
of tests/_quadrature.py; the MAP prior's ESS against RBesT's documented
value for this example (introduction vignette: ELIR ESS rounds to 37).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _quadrature import PROBS, QUANTILES
from scipy import special

import lmsbayes as lb
from lmsbayes.errors import InputError
from lmsbayes.predict import Setting
from lmsbayes.spec import SpecError, parse_spec

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def as_reference():
    """The brute-force quadrature's pooled and predictive quantiles on AS, keyed by probability."""
    q = QUANTILES["AS"]
    return dict(zip(PROBS, q["pooled"])), dict(zip(PROBS, q["predictive"]))


def test_five_lines_of_python_give_rbest_as_results(as_reference):
    pooled, pred = as_reference
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # --- the README's five lines ---
        table = pd.read_csv(DATA / "AS.csv")  # columns study, n, r
        fit = lb.fit("binomial", table)  # logit-binomial random effects, tau ~ HalfNormal(1)
        mix = lb.map_prior(fit)  # MAP prior of a new study's rate
        robust = lb.robustify(mix, weight=0.2, mean=0.25)
        ess = lb.ess(mix, "elir")
    assert fit.engine == "exact" and fit.diagnostics.ok
    rate = lb.predict(fit)["rate"]
    for q in (0.025, 0.5, 0.975):  # Monte Carlo error of 4000 draws: well under 0.01
        assert abs(float(rate.sel(quantity="pooled").quantile(q)) - pooled[q]) < 0.01
        assert abs(float(rate.sel(quantity="predictive").quantile(q)) - pred[q]) < 0.015
    assert 33 < ess < 41  # RBesT: 37 (its own Monte Carlo draws and EM fit)
    assert abs(mix.mean() - 0.2586) < 0.01  # RBesT's summary mean of the MAP prior
    assert robust.n_components == mix.n_components + 1 and np.isclose(robust.weights[-1], 0.2)


def test_one_cli_command_gives_rbest_as_results(as_reference):
    from lmsbayes.cli import main

    pooled, pred = as_reference
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["run", "--spec", "binomial", "--data", str(DATA / "AS.csv"), "--quiet"])
    text = out.getvalue()
    assert code == 0, text
    m = re.search(
        r"pooled rate ([0-9.]+) \(([0-9.]+)-([0-9.]+)\); predictive rate of a new study "
        r"([0-9.]+) \(([0-9.]+)-([0-9.]+)\)",
        text,
    )
    assert m, text
    got = [float(v) for v in m.groups()]
    want = [pooled[0.5], pooled[0.025], pooled[0.975], pred[0.5], pred[0.025], pred[0.975]]
    # integrated over the engine's fixed rule, printed to 3 decimals: rounding (0.0005) plus the
    # rule's error (below 0.002, test_integrated); the draws' quantiles missed by 0.012
    assert np.allclose(got, want, atol=0.0025), (got, want)
    assert "ESS: ELIR" in text and "RBesT: mixbeta(" in text and "8 studies, 513 patients" in text


def _year_spec(**model):
    return parse_spec(
        {
            "name": "as-year",
            "landmarks": [],
            "model": {"likelihood": "logit-binomial", "covariates": ["year_c"], **model},
            "covariates": {"year_c": {"type": "numeric", "centre": 2.0}},
            "random_effects": {"tau_by": "none"},
            "priors": {"tau": {"dist": "HalfNormal", "sigma": 1.0}},
        }
    )


def test_a_numeric_covariate_of_the_users_table():
    table = pd.read_csv(DATA / "AS_year.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lb.fit(_year_spec(), table)
    assert list(fit.data.covariates) == ["year_c"]
    np.testing.assert_allclose(fit.data.X[:, 0], table["year_c"] - 2.0)
    ds = lb.predict(fit, [Setting(year_c=2.0), Setting(year_c=4.0, name="later")])
    post = fit.posterior
    # at the centre the pooled logit is alpha; two years later alpha + 2 beta
    got = ds["rate"].sel(quantity="pooled").transpose("chain", "draw", "setting").values
    a, b = post["alpha"].values, post["beta"].sel(covariate="year_c").values
    np.testing.assert_allclose(got[..., 0], special.expit(a), rtol=1e-12)
    np.testing.assert_allclose(got[..., 1], special.expit(a + 2 * b), rtol=1e-12)
    with pytest.raises(ValueError, match="needs a value for covariate 'year_c'"):
        lb.predict(fit, [Setting()])
    with pytest.raises(ValueError, match="map_prior.*covariates"):
        lb.map_prior(fit)
    assert lb.map_prior(fit, Setting(year_c=3.0)).n_components >= 1


def test_a_scaled_numeric_covariate_and_values_at_the_spec_level(tmp_path):
    """scale divides the centred value; [thresholds] at fills the settings; a saved fit keeps
    both."""
    table = pd.read_csv(DATA / "AS_year.csv")
    raw = {
        "name": "as-year10",
        "landmarks": [],
        "model": {"likelihood": "logit-binomial", "covariates": ["yr"]},
        "covariates": {"yr": {"column": "year_c", "type": "numeric", "centre": 2.0, "scale": 0.5}},
        "random_effects": {"tau_by": "none"},
        "thresholds": {"at": {"year_c": 3.0}},
        "priors": {"tau": {"dist": "HalfNormal", "sigma": 1.0}},
    }
    spec = parse_spec(raw)
    assert spec.thresholds.at == (("year_c", 3.0),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lb.fit(spec, table)
    np.testing.assert_allclose(fit.data.X[:, 0], (table["year_c"] - 2.0) / 0.5)
    a, b = fit.posterior["alpha"].values, fit.posterior["beta"].sel(covariate="yr").values
    # the spec's value (year_c = 3: coded (3 - 2) / 0.5 = 2), then an explicit one (year_c = 2.5:
    # coded 1)
    for at, coded in ((None, 2.0), ({"year_c": 2.5}, 1.0), ({"yr": 2.5}, 1.0)):
        got = lb.predict(fit, [Setting(name="new")], at=at)["rate"].sel(
            quantity="pooled", setting="new"
        )
        np.testing.assert_allclose(
            got.transpose("chain", "draw").values, special.expit(a + coded * b), rtol=1e-12
        )
    with pytest.raises(ValueError, match="'month' is not a covariate of spec 'as-year10'"):
        lb.predict(fit, [Setting(name="new")], at={"month": 1.0})
    fit.save(tmp_path / "f.nc")
    back = lb.load_fit(tmp_path / "f.nc")
    assert back.spec.thresholds.at == (("year_c", 3.0),) and back.spec.covariates == spec.covariates
    import tomllib

    from lmsbayes.fitfile import spec_to_toml

    # a spec built in Python (no source text) is saved through the TOML it would have
    again = parse_spec(tomllib.loads(spec_to_toml(dataclasses.replace(spec, text=""))))
    assert again.thresholds.at == (("year_c", 3.0),) and again.covariates == spec.covariates
    for bad, msg in (
        ({"scale": 0.0}, "scale must be a finite number > 0"),
        ({"scale": -2.0}, "scale must be a finite number > 0"),
    ):
        r = {**raw, "covariates": {"yr": {**raw["covariates"]["yr"], **bad}}}
        with pytest.raises(SpecError, match=msg):
            parse_spec(r)
    with pytest.raises(SpecError, match=r"\[thresholds\] at must be a table"):
        parse_spec({**raw, "thresholds": {"at": [2026]}})
    with pytest.raises(SpecError, match=r"\[thresholds\] at.year_c must be a number"):
        parse_spec({**raw, "thresholds": {"at": {"year_c": "2026"}}})


def test_a_categorical_covariate_with_its_reference_level():
    table = pd.read_csv(DATA / "AS_year.csv").assign(
        region=["EU", "NA", "EU", "NA", "EU", "NA", "AS", "AS"]
    )
    spec = parse_spec(
        {
            "name": "region",
            "landmarks": [],
            "model": {"likelihood": "logit-binomial", "covariates": ["region"]},
            "covariates": {"region": {"type": "categorical", "reference": "EU"}},
            "random_effects": {"tau_by": "none"},
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lb.fit(spec, table)
    assert list(fit.data.covariates) == [
        "region[AS]",
        "region[NA]",
    ]  # treatment coding, EU the reference
    np.testing.assert_array_equal(
        fit.data.X, np.column_stack([table["region"] == "AS", table["region"] == "NA"])
    )
    with pytest.raises(ValueError, match=r"region must be one of \['AS', 'EU', 'NA'\], got 'SA'"):
        lb.predict(fit, [Setting(region="SA")])
    bad = parse_spec(
        {
            "name": "x",
            "landmarks": [],
            "model": {"likelihood": "logit-binomial", "covariates": ["region"]},
            "covariates": {"region": {"type": "categorical", "reference": "XX"}},
        }
    )
    with pytest.raises(SpecError, match="reference 'XX' is not a level"):
        lb.fit(bad, table)


def test_binomial_table_takes_role_and_regimen():
    table = pd.read_csv(DATA / "AS.csv")
    table = table.assign(role="control", regimen="placebo")
    assert lb.fit("binomial", table) is not None


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (
            lambda t: t.assign(r=t["r"].where(t.index != 2, t["n"] + 1)),
            "row 4, column 'r': must be <= n (",
        ),
        (lambda t: t.drop(columns="study"), "missing 'study'"),
        (
            lambda t: t.assign(n=t["n"].astype(float).where(t.index != 0, 10.5)),
            "row 2, column 'n': must be a whole number",
        ),
        (lambda t: t.assign(study=["a"] * len(t)), "duplicate study 'a'"),
        (
            lambda t: t.assign(role=["control"] + ["contorl"] * (len(t) - 1)),
            "row 3, column 'role': must be one of ['control', 'experimental', 'single_arm', "
            "'noncomparative', 'calibration'], got 'contorl'; did you mean 'control'?",
        ),
        (
            lambda t: t.assign(regimen=["dox+ifo"] + ["ifo+dox"] * (len(t) - 1)),
            "row 3, column 'regimen': 'ifo+dox' and 'dox+ifo' (row 2) name one combination",
        ),
    ],
)
def test_bad_binomial_tables_give_one_clear_error(mutate, needle):
    table = mutate(pd.read_csv(DATA / "AS.csv"))
    with pytest.raises(InputError) as info:  # the checked reader's DataValidationError (issue 20)
        lb.fit("binomial", table)
    assert needle in str(info.value)


def test_one_study_is_told_that_tau_is_not_identified(capsys, tmp_path):
    import lmsbayes as lb
    from lmsbayes.fit import FitWarning

    with pytest.warns(FitWarning, match="one study only - the between-study sd tau is not identi"):
        fit = lb.fit("binomial", pd.DataFrame({"study": ["only"], "r": [12], "n": [40]}))
    assert "tau is not identified" in fit.diagnostics.note
    two = lb.fit("binomial", pd.DataFrame({"study": ["a", "b"], "r": [12, 9], "n": [40, 35]}))
    assert "not identified" not in two.diagnostics.note
