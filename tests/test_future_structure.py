"""Leave-future-out predictions of held-out arms under the structure options (lmsbayes.validate).

Each held-out arm's PIT and ELPD against a hand computation from the fold's posterior
draws on logit-normal data, where every predictive is a normal integral:

- Student-t arm effects: numerical integration over the t density (scipy), not the
  engine's scale mixture;
- regimen effects: a held-out arm of a regimen with training arms gets that regimen's
  effect from its conditional given the draw's globals (closed form here: a normal), an
  arm of a new regimen a new effect from its prior; both within Monte Carlo error of the
  sampled effects.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats
from test_future import _tables

from lmsbayes import validate as V
from lmsbayes.spec import parse_spec


def _spec(draws: int = 400, **random_effects):
    raw = {
        "name": "ln-structure",
        "landmarks": [6],
        "data": {"require_identifier": False, "derive_from_median": False},
        "model": {"likelihood": "logit-normal", "covariates": []},
        "random_effects": {"tau_by": "none", **random_effects},
        "priors": {
            "alpha": {"dist": "Normal", "mu": 0.0, "sigma": 1.0},
            "tau": {"dist": "HalfNormal", "sigma": 0.5},
        },
        "exact": {"draws": draws},
    }
    if "group" in random_effects:
        raw["priors"]["group_tau"] = {"dist": "HalfNormal", "sigma": 0.5}
    return parse_spec(raw)


def _flat(draws, name):
    x = np.asarray(draws[name], float)
    return x.reshape(x.shape[0], -1)[:, 0]


YEARS = [2010, 2010, 2011, 2011, 2012, 2013, 2013]
RATES = [0.35, 0.5, 0.42, 0.3, 0.6, 0.45, 0.55]
N = [60, 80, 40, 50, 70, 90, 45]


def test_student_t_held_out_arm_by_numerical_integration():
    spec = _spec(distribution="student_t", nu=4.0)
    v = V.lfo(spec, _tables(YEARS, RATES, N), start=2012)
    obs = v.data.obs.set_index("arm_id")
    z = np.linspace(-60, 60, 24001)  # t(4) density on a fine grid (tail mass beyond 60: 4e-7)
    wz = stats.t.pdf(z, 4.0) * (z[1] - z[0])
    for arm in v.arms.index:
        draws = v.draws[0]
        alpha, tau = _flat(draws, "alpha"), _flat(draws, "tau")
        y, se = float(obs.loc[arm, "lik_y"]), float(obs.loc[arm, "lik_se"])
        eta = alpha[:, None] + tau[:, None] * z[None, :]
        pit = (stats.norm.cdf(y, eta, se) @ wz).mean()
        dens = stats.norm.pdf(y, eta, se) @ wz
        assert v.obs.set_index("arm").loc[arm, "pit"] == pytest.approx(pit, abs=2e-4)
        assert v.arms.loc[arm, "elpd"] == pytest.approx(math.log(dens.mean()), abs=2e-3)


@pytest.mark.slow
def test_regimen_effects_carry_over_to_held_out_arms_of_known_regimens():
    spec = _spec(draws=2000, group="regimen")
    regimen = ["a", "a", "b", "b", "c", "a", "d"]  # 2013: one arm of a known, one of a new regimen
    tables = _tables(YEARS, RATES, N, regimen=regimen)
    v = V.lfo(spec, tables, start=2012)
    assert sorted(v.arms.index) == ["a5", "a6"]
    obs = v.data.obs.set_index("arm_id")
    draws = v.draws[0]
    alpha, tau, gt = (_flat(draws, k) for k in ("alpha", "tau", "group_tau"))
    y_a = np.array([obs.loc[f"a{i}", "lik_y"] for i in (0, 1)], float)
    se_a = np.array([obs.loc[f"a{i}", "lik_se"] for i in (0, 1)], float)
    # w | theta, arms of regimen a: normal (precision 1 + sum gt^2 / s_j^2)
    s2 = se_a[None, :] ** 2 + tau[:, None] ** 2
    prec = 1 + (gt[:, None] ** 2 / s2).sum(1)
    mean = (gt[:, None] * (y_a[None, :] - alpha[:, None]) / s2).sum(1) / prec
    for arm, m_w, v_w in (("a5", mean, 1 / prec), ("a6", 0.0, 1.0)):
        y, se = float(obs.loc[arm, "lik_y"]), float(obs.loc[arm, "lik_se"])
        sd = np.sqrt(se**2 + tau**2 + gt**2 * v_w)
        pit = stats.norm.cdf(y, alpha + gt * m_w, sd).mean()
        elpd = special.logsumexp(stats.norm.logpdf(y, alpha + gt * m_w, sd)) - math.log(alpha.size)
        got = v.obs.set_index("arm").loc[arm, "pit"]
        # the effect is sampled once per draw: PIT within 4 Monte Carlo se of the exact
        # mixture (a draw's term varies by at most phi(0) gt sd(w) / sd0 with w)
        sd0 = np.sqrt(se**2 + tau**2)
        mc_se = np.sqrt(np.mean((0.4 * gt * np.sqrt(v_w) / sd0) ** 2) / alpha.size)
        tol = 4 * mc_se + 1e-3
        assert got == pytest.approx(pit, abs=tol)
        assert v.arms.loc[arm, "elpd"] == pytest.approx(elpd, abs=0.05)
    assert "regimen" in v.arms
