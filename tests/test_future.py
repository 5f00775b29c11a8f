"""Leave-future-out, leave-one-regimen-out and the choice among specs.

Modules: lmsbayes.validate, lmsbayes.future.

- The folds of leave-future-out, its ELPD terms, PITs, interval limits and interval
  scores against a hand computation from each fold's posterior draws (scipy normal
  densities and CDFs, root finding for the limits).
- Calibration: on data simulated from the model with parameters drawn from the prior,
  one-step-ahead coverage averaged over simulations is nominal within Monte Carlo error
  (slow; a fast version with fewer simulations).
- Drift: on data with a simulated calendar-time drift, leave-future-out PITs of the model
  without drift lean high, and a spec with a time trend wins by more than 2 se.
- The choice rule (docs/validation.md section 5) on constructed scores, and the stacking
  weights against a direct numerical optimisation.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from _synthetic import lms_tables
from scipy import optimize, special, stats
from test_validate import _coverage_check, _simulate, _spec

from lmsbayes import future as F
from lmsbayes import validate as V
from lmsbayes.model.prepare import prepare_data
from lmsbayes.spec import parse_spec


def _logit_normal(trend: bool = False, tau: float = 1.0, draws: int = 500, name=None):
    """A logit-normal spec at 6 months, optionally with a linear trend per decade of the year."""
    raw = {
        "name": name or ("ln-trend" if trend else "ln"),
        "landmarks": [6],
        "data": {"require_identifier": False, "derive_from_median": False},
        "model": {"likelihood": "logit-normal", "covariates": ["decade"] if trend else []},
        "random_effects": {"tau_by": "none"},
        "priors": {
            "alpha": {"dist": "Normal", "mu": 0.0, "sigma": 1.0},
            "beta": {"dist": "Normal", "mu": 0.0, "sigma": 1.0},
            "tau": {"dist": "HalfNormal", "sigma": tau},
        },
        "exact": {"draws": draws},
    }
    if trend:
        raw["covariates"] = {
            "decade": {"column": "year", "type": "numeric", "centre": 2015, "scale": 10}
        }
    return parse_spec(raw)


def _tables(years, rates, n, line=None, regimen=None):
    arms = [
        {
            "arm_id": f"a{i}",
            "year": int(years[i]),
            "n": int(n[i]),
            "line": "2L+" if line is None else line[i],
            "regimen": None if regimen is None else regimen[i],
            "role": "single_arm",
        }
        for i in range(len(years))
    ]
    return lms_tables(
        arms, [{"arm_id": f"a{i}", "t": 6.0, "rate": float(r)} for i, r in enumerate(rates)]
    )


# ---------------------------------------------------------------------------- folds and scores


def test_lfo_start_is_the_first_year_with_enough_arms_per_line():
    spec = _logit_normal()
    years = [2010] * 4 + [2011] * 4 + [2012] * 4 + [2013] * 2
    line = ["1L", "2L+"] * 7
    line[8:12] = ["2L+"] * 4  # 2002 adds 2L+ only
    t = _tables(years, np.full(14, 0.4), np.full(14, 50), line=line)
    d = prepare_data(spec, t)
    assert V.lfo_start(d) == 2012  # 8 arms up to 2011: too few; 2012: 12 arms, 1L has 4
    assert V.lfo_start(d, min_arms=8) == 2011
    assert V.lfo_start(d, min_arms=13) is None  # 2013 qualifies but no later arm remains
    assert V.lfo_start(d, min_per_line=5) is None  # 1L reaches 5 only in the last year


def test_lfo_scores_each_later_arm_once_by_hand():
    """Each held-out arm's ELPD, PIT, 90% limits and interval score from its fold's draws."""
    spec = _logit_normal(draws=V._INTERVAL_DRAWS)  # the limits then use every draw
    years = [2010, 2010, 2011, 2012, 2013, 2013]
    rates = [0.35, 0.5, 0.42, 0.3, 0.6, 0.45]
    n = [60, 80, 40, 50, 70, 90]
    v = V.lfo(spec, _tables(years, rates, n), start=2011)
    assert v.scheme == "lfo" and v.year == 2011
    assert v.folds["fold"].tolist() == ["2012", "2013"]
    assert v.folds["train_arms"].tolist() == [3, 4] and v.folds["held_arms"].tolist() == [1, 2]
    assert sorted(v.arms.index) == ["a3", "a4", "a5"]
    assert v.arms["fold"].tolist() == ["2012", "2013", "2013"]
    obs = v.data.obs.set_index("arm_id")
    for arm, fold in (("a3", 0), ("a4", 1), ("a5", 1)):
        draws = v.draws[fold]
        alpha = np.asarray(draws["alpha"], float).reshape(len(draws["alpha"]), -1)[:, 0]
        tau = np.asarray(draws["tau"], float).reshape(len(draws["tau"]), -1)[:, 0]
        y, se = float(obs.loc[arm, "lik_y"]), float(obs.loc[arm, "lik_se"])
        assert y == pytest.approx(special.logit(rates[int(arm[1])]), abs=1e-9)
        sd = np.sqrt(se**2 + tau**2)
        elpd = special.logsumexp(stats.norm.logpdf(y, alpha, sd)) - math.log(alpha.size)
        assert v.arms.loc[arm, "elpd"] == pytest.approx(elpd, abs=1e-9)
        o = v.obs[v.obs["arm"] == arm].iloc[0]
        assert o["pit"] == pytest.approx(stats.norm.cdf(y, alpha, sd).mean(), abs=1e-9)

        def cdf(x, alpha=alpha, sd=sd):
            return stats.norm.cdf(x, alpha, sd).mean()

        lo = optimize.brentq(lambda x: cdf(x) - 0.05, -15, 15)
        hi = optimize.brentq(lambda x: cdf(x) - 0.95, -15, 15)
        assert o["lo90"] == pytest.approx(lo, abs=1e-6)
        assert o["hi90"] == pytest.approx(hi, abs=1e-6)
        expected = (o["hi90"] - o["lo90"]) + 20 * max(o["lo90"] - y, 0) + 20 * max(y - o["hi90"], 0)
        assert o["is90"] == pytest.approx(expected, abs=1e-12)
        assert o["in_90"] == (abs(o["pit"] - 0.5) <= 0.45)
    with pytest.raises(V.ValidationError, match="no arm published after 2013"):
        V.lfo(spec, _tables(years, rates, n), start=2013)


def test_interval_score_by_hand():
    assert V.interval_score(-1.0, 1.0, 0.0, 0.9) == pytest.approx(2.0)
    assert V.interval_score(-1.0, 1.0, 2.0, 0.9) == pytest.approx(2.0 + 20 * 1.0)
    assert V.interval_score(-1.0, 1.0, -1.5, 0.5) == pytest.approx(2.0 + 4 * 0.5)


def test_loro_holds_out_each_regimen_together():
    spec = _logit_normal()
    reg = ["x", "x", "y", None, "z", "y"]
    t = _tables([2010 + i for i in range(6)], np.linspace(0.3, 0.6, 6), np.full(6, 50), regimen=reg)
    v = V.loro(spec, t)
    assert v.folds["fold"].tolist() == ["x", "y", "(arm a3)", "z"]
    assert v.folds["held_arms"].tolist() == [2, 2, 1, 1]
    assert v.arms.loc["a5", "fold"] == "y" and v.arms.loc["a5", "regimen"] == "y"


# ---------------------------------------------------------------------------- calibration and drift


def _lfo_coverage(spec, template, n_sim, seed):
    rng = np.random.default_rng(seed)
    cov = []
    for _ in range(n_sim):
        v = V.lfo(spec, _simulate(spec, template, rng), seed=int(rng.integers(1 << 31)))
        pit = v.obs["pit"].to_numpy()
        cov.append([np.mean(np.abs(pit - 0.5) <= lv / 2) for lv in V.LEVELS])
    return np.array(cov)


def _template(k=24):
    spec = _logit_normal(draws=400)
    rng = np.random.default_rng(5)
    years = np.repeat(np.arange(2010, 2010 + k // 2), 2)
    t = _tables(years, np.full(k, 0.4), rng.integers(150, 400, k))
    return spec, prepare_data(spec, t)


@pytest.mark.slow
def test_lfo_coverage_is_nominal_on_prior_predictive_data_fast():
    """20 simulations, 7 refits each (start 2014: 10 arms), 14 arms scored per simulation."""
    spec, template = _template()
    assert V.lfo_start(template) == 2014
    _coverage_check(_lfo_coverage(spec, template, n_sim=20, seed=21), V.LEVELS)


@pytest.mark.slow
def test_lfo_coverage_is_nominal_on_prior_predictive_data():
    spec, template = _template()
    _coverage_check(_lfo_coverage(spec, template, n_sim=150, seed=22), V.LEVELS)


def test_lfo_detects_a_simulated_drift():
    """2 logit per decade of drift: without a trend later arms beat their predictions."""
    rng = np.random.default_rng(8)
    k = 30
    years = np.repeat(np.arange(2010, 2025), 2)
    eta = -1.0 + 2.0 * (years - 2015) / 10 + 0.2 * rng.standard_normal(k)
    n = rng.integers(150, 300, k)
    rates = rng.binomial(n, special.expit(eta)) / n
    t = _tables(years, rates, n)
    flat = V.lfo(_logit_normal(draws=600, name="flat"), t)
    trend = V.lfo(_logit_normal(trend=True, draws=600, name="trend"), t)
    pit = flat.obs["pit"].to_numpy()
    assert pit.mean() > 0.75  # uniform: 0.5 (sd 0.29 / sqrt(20) ~ 0.065)
    d, se, n_arms = V._paired_diff(trend.arms["elpd"], flat.arms["elpd"])
    assert n_arms == len(flat.arms) and d > 2 * se
    fc = F.compare_future([flat.spec, trend.spec], t)
    assert fc.choice.spec == "trend"


# ---------------------------------------------------------------------------- the rule


def _fake(name, elpd, pit, n_params=2):
    k = len(elpd)
    arms = pd.DataFrame(
        {"elpd": elpd, "fold": [str(2010 + i) for i in range(k)]},
        index=pd.Index([f"a{i}" for i in range(k)], name="arm"),
    )
    obs = pd.DataFrame(
        {
            "arm": arms.index,
            "fold": arms["fold"].to_numpy(),
            "kind": "rate",
            "pit": pit,
            "lo90": -1.0,
            "hi90": 1.0,
            "is90": 2.0,
            "in_90": np.abs(np.asarray(pit) - 0.5) <= 0.45,
        }
    )
    return V.Validation(
        spec=dataclasses.replace(_spec(), name=name),
        scheme="lfo",
        data=None,
        arms=arms,
        obs=obs,
        folds=pd.DataFrame({"fold": arms["fold"], "khat": 0.1, "problems": ""}),
        draws=({"p": np.zeros((5, n_params))},),
        seconds=0.0,
        year=2009,
    )


def test_choice_rule_of_section_5():
    rng = np.random.default_rng(0)
    k = 40
    ok = (np.arange(k) + 0.5) / k  # PITs spread evenly: 90% coverage 0.90
    bad = np.where(np.arange(k) % 2 == 0, 0.01, 0.99)  # every PIT in the tails
    base = rng.normal(-1.0, 0.5, k)
    noise = rng.normal(0, 1.0, k)
    noise -= noise.mean()  # differences: exactly the stated shift in total
    # an eligible incumbent stays against a challenger within 2 se ...
    vals = {"inc": _fake("inc", base, ok), "ch": _fake("ch", base + 0.1 + noise, ok)}
    assert F.choose(vals, "inc").spec == "inc"
    # ... and yields to one ahead by more than 2 se
    vals["ch"] = _fake("ch", base + 0.5 + 0.1 * noise, ok)
    c = F.choose(vals, "inc")
    assert c.spec == "ch" and "over 'inc'" in c.reason
    # a calibrated challenger replaces an uncalibrated incumbent unless worse by > 2 se
    vals = {"inc": _fake("inc", base, bad), "ch": _fake("ch", base - 0.01 * noise, ok)}
    assert F.choose(vals, "inc").spec == "ch"
    vals["ch"] = _fake("ch", base - 1.0, ok)
    assert F.choose(vals, "inc").spec == "inc"
    # nothing calibrated: the incumbent stays, and says so
    vals = {"inc": _fake("inc", base, bad), "ch": _fake("ch", base + 1, bad)}
    c = F.choose(vals, "inc")
    assert c.spec == "inc" and "NOT calibrated" in c.reason and c.eligible == ()
    # ties go to fewer parameters
    vals = {
        "inc": _fake("inc", base, bad),
        "a": _fake("a", base, ok, 5),
        "b": _fake("b", base, ok, 3),
    }
    assert F.choose(vals, "inc").spec == "b"
    # on a subset of arms (pseudo-prospective), only those arms count
    assert F.choose(vals, "inc", arms=["a0", "a1"]).eligible == ()


def test_stacking_weights_maximise_the_log_score():
    rng = np.random.default_rng(3)
    lpd = pd.DataFrame(rng.normal(-1, 1, (30, 3)), columns=["a", "b", "c"])
    w = F.stacking_weights(lpd)
    assert w.sum() == pytest.approx(1.0) and (w >= 0).all()

    def neg(z):
        p = special.softmax(np.append(z, 0.0))
        return -np.sum(np.log(np.exp(lpd.to_numpy()) @ p))

    z = optimize.minimize(
        neg, np.zeros(2), method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-12}
    ).x
    ref = special.softmax(np.append(z, 0.0))
    np.testing.assert_allclose(w.to_numpy(), ref, atol=2e-3)


def test_pseudo_prospective_uses_only_earlier_arms():
    k = 12
    ok = (np.arange(k) + 0.5) / k
    base = np.full(k, -1.0)
    late = base.copy()
    late[8:] += 3.0  # the challenger is better only on the last 4 arms
    vals = {"inc": _fake("inc", base, ok), "ch": _fake("ch", late, ok)}
    table, summary = F._prospective(vals, "inc", vals["inc"])
    assert (table["chosen"] == "inc").all()  # no earlier arm shows the challenger better
    assert summary["arms"] == k and summary["elpd"] == pytest.approx(base.sum())


# ---------------------------------------------------------------------------- the command line


def test_cli_validate_future_prints_the_table_and_the_choice(tmp_path, capsys):
    import json

    from lmsbayes.cli import main

    out_json = tmp_path / "lfo.json"
    assert main(["validate", "--future", "default", "-q", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert (
        "leave-future-out, one step ahead" in out and "(first training set: arms up to 2015)" in out
    )
    for section in ("1. All scored arms", "2. Median widths", "3. By the arm's role", "4. Pseudo"):
        assert section in out
    assert "choice (docs/validation.md section 5): " in out
    doc = json.loads(out_json.read_text())
    assert doc["scheme"] == "lfo" and doc["start"] == 2015 and doc["choice"] == "default"
    (row,) = doc["table"]
    assert row["arms"] == 18 and row["fits"] == 8  # arms of 2016-2025, one fit per year
    roles = {r["role"]: r["arms"] for r in doc["by_role"]}
    assert roles == {"single_arm": 8, "experimental": 6, "control": 3, "other randomised": 1}
    assert main(["validate", "--future", "--temporal", "-q"]) != 0
    assert "--future cannot be combined" in capsys.readouterr().err
