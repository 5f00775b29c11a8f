"""Predictive validation (lmsbayes.validate): each number against an independent computation.

- A held-out arm's predictive density (its ELPD term) against scipy's
  (multivariate) normal densities averaged over the posterior draws, with
  the latent uterine fraction integrated by scipy quadrature.
- PIT values against Monte Carlo simulation of the predictive (new random
  effect, latent fraction and the likelihood's own noise), and the
  randomised PIT of a count inside [F(y - 1), F(y)].
- The common log score's quadrature against scipy.integrate.quad, and the
  Weibull densities' change of scale (cloglog -> logit) against the
  derivative of the predictive CDF on the logit scale.
- Calibration: on data simulated from the prior predictive of the spec,
  leave-one-trial-out coverage averaged over simulations is nominal within
  Monte Carlo error (t interval over the independent simulations,
  Bonferroni over the levels), and PIT deciles are flat within theirs.
- A misspecified shape (fixed far from the truth) loses ELPD by more than
  2 se of the paired difference.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from _synthetic import lms_tables
from scipy import integrate, special, stats

from lmsbayes import validate as V
from lmsbayes.engines import get_engine
from lmsbayes.model.definition import Model
from lmsbayes.model.derived import posterior_predictive
from lmsbayes.model.families import NUMPY_OPS
from lmsbayes.model.prepare import prepare_data
from lmsbayes.spec import Prior, parse_spec

Z95 = 1.959963984540054


# ---------------------------------------------------------------------------- builders


def _spec(
    likelihood="survival", name=None, covariates=("line",), tau_by="none", draws=1000, **model
):
    raw = {
        "name": name or f"v-{likelihood}",
        "landmarks": [3, 6],
        "data": {"require_identifier": False, "derive_from_median": False},
        "model": {"likelihood": likelihood, "covariates": list(covariates), **model},
        "random_effects": {"tau_by": tau_by},
        "priors": {
            "alpha": {"dist": "Normal", "mu": 0.0, "sigma": 1.0},
            "beta": {"dist": "Normal", "mu": 0.0, "sigma": 0.5},
            "tau": {"dist": "HalfNormal", "sigma": 0.5},
            "shape": {"dist": "LogNormal", "mu": 0.4, "sigma": 0.3},
        },
        "exact": {"draws": draws},
    }
    return parse_spec(raw)


def _survival_tables(k=10, seed=0, latent=(), rates_at=(3.0, 12.0), trials=None, years=None):
    """Arms with a median (95% CI) and rates (95% CIs) from log-logistic curves.

    Values only set the design.
    """
    rng = np.random.default_rng(seed)
    arms, rates = [], []
    for i in range(k):
        med = float(np.round(rng.uniform(3, 9), 1))
        n = int(rng.integers(30, 90))
        a = {
            "arm_id": f"a{i}",
            "line": "1L" if i % 3 == 0 else "2L+",
            "n": n,
            "pfs_median_m": med,
            "pfs_median_lo": med * 0.75,
            "pfs_median_hi": med * 1.35,
            "uterine_fraction": np.nan if i in latent else float(np.round(rng.uniform(0, 1), 2)),
        }
        if trials is not None:
            a["trial"] = trials[i]
        if years is not None:
            a["year"] = years[i]
        arms.append(a)
        for t in rates_at:
            s = 1 / (1 + (t / med) ** 1.5)
            half = Z95 / math.sqrt(n * s * (1 - s))
            lg = math.log(s / (1 - s))
            rates.append(
                {
                    "arm_id": f"a{i}",
                    "t": t,
                    "rate": s,
                    "lo": special.expit(lg - half),
                    "hi": special.expit(lg + half),
                }
            )
    return lms_tables(arms, rates)


def _rate_tables(n, rate, t=6, trials=None):
    """Arms with one reported rate each.

    Both table layouts: the rate table and pfsr_<t>m columns.
    """
    arms = [
        {
            "arm_id": f"a{i}",
            "n": int(n[i]),
            f"pfsr_{t}m": float(rate[i]),
            f"pfsr_{t}m_source": "reported",
            "trial": trials[i] if trials else None,
        }
        for i in range(len(n))
    ]
    return lms_tables(
        arms, [{"arm_id": f"a{i}", "t": float(t), "rate": float(rate[i])} for i in range(len(n))]
    )


def _prior_draw(prior, shape, rng):
    k = prior.kwargs
    if prior.dist == "Normal":
        return rng.normal(k.get("mu", 0.0), k["sigma"], shape)
    if prior.dist == "HalfNormal":
        return np.abs(rng.normal(0.0, k["sigma"], shape))
    if prior.dist == "LogNormal":
        return np.exp(rng.normal(k.get("mu", 0.0), k["sigma"], shape))
    raise NotImplementedError(prior.dist)  # pragma: no cover


def _simulate(spec, data, rng, truth=None):
    """Data with the template's design and observations drawn from the model.

    Prior predictive, or ``truth``.
    """
    m = Model(spec, data)
    vals = {
        p.name: (
            np.asarray(truth[p.name], float)
            if truth and p.name in truth
            else _prior_draw(p.prior, p.shape, rng)
        )
        for p in m.params
    }
    c = m.canonical({k: v[None, None] for k, v in vals.items()})
    du = np.zeros((1, 1, data.n_arms))
    du[..., data.latent] = rng.uniform(size=data.latent.size) - data.uterine_centre
    z = rng.standard_normal((1, 1, data.n_arms, m.Kz))
    eta = m.base_predictor(NUMPY_OPS, c, data.X, data.Xu, du) + m.effect_scale(c) * z
    y = posterior_predictive(m, eta, c, rng)[0, 0].astype(float)
    obs = data.obs.copy()
    obs["lik_y"] = y
    if data.family.name == "survival":  # log-logistic: rates on the logit scale
        obs["y"] = y
        obs["value"] = np.where(obs["is_median"] > 0.5, np.exp(y), special.expit(y))
    elif data.family.name == "logit-normal":
        obs["rate"] = special.expit(y)
    else:
        obs["rate"] = y / obs["lik_n"]
    return dataclasses.replace(data, obs=obs)


def _posterior_values(f, model):
    """The global parameters' draws of a Fit as arrays (draw, *shape), chains stacked."""
    post = f.posterior
    return {
        p.name: post[p.name].transpose("chain", "draw", *p.dims).values.reshape((-1, *p.shape))
        for p in model.params
    }


def _held(spec, data, held, draws=300, seed=1):
    """Posterior draws of a fit without the held arms, and the held arms' predictions."""
    train = np.setdiff1d(np.arange(data.n_arms), held)
    from lmsbayes.fit import fit

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = fit(spec, data.take(train))
    values = _posterior_values(f, Model(spec, data))
    values = {k: v[:draws] for k, v in values.items()}
    arms, obs = V._predict_held(
        spec, data, np.asarray(held), values, np.random.default_rng(seed), draws
    )
    return values, pd.DataFrame(arms), pd.DataFrame(obs)


# ---------------------------------------------------------------------------- the pieces, checked


def test_coverage_interval_is_clopper_pearson():
    for k, n in ((0, 10), (3, 10), (10, 10), (47, 50)):
        ref = stats.binomtest(k, n).proportion_ci(0.95, method="exact")
        assert V.coverage_interval(k, n) == pytest.approx((ref.low, ref.high), abs=1e-9)


@pytest.mark.parametrize("curve", ["joint-cloglog", "lognormal"])
def test_log_normal_mix_against_quadrature(curve):
    from lmsbayes.model.families import get_family

    if curve == "joint-cloglog":
        to_logit = get_family("joint-cloglog").logit_of_scale

        def h(x):  # logit S of a log cumulative hazard x, without underflow: log S - log(1 - S)
            hz = np.exp(x)
            return -hz - np.log(-np.expm1(-hz))

    else:
        to_logit = get_family("survival", "lognormal").logit_of_scale

        def h(x):  # logit S of a probit rate x, written from scipy's normal cdf
            return stats.norm.logcdf(x) - stats.norm.logsf(x)

    for y, se, m, tau in (
        (0.3, 0.3, -0.5, 0.5),
        (-2.0, 0.1, 1.0, 0.05),
        (1.5, 1.0, -2.0, 1.5),
        (0.0, 0.05, -0.4, 2.0),
        (-3.2, 1.5, 0.9, 0.02),
    ):
        # the integrand in log space, scaled by its maximum: where the observation conflicts with
        # the prior (the mode 18 tau from m for the log-normal case) it is e^-394, far below
        # what quad resolves unscaled, and the mode lies outside m +- 12 tau
        def log_f(x, m=m, tau=tau, y=y, se=se):
            return stats.norm.logpdf(x, m, tau) + stats.norm.logpdf(y, h(x), se)

        grid = np.linspace(m - 60 * tau, m + 60 * tau, 200001)
        lg = log_f(grid)
        top = float(np.nanmax(lg))
        x_mode = float(grid[np.nanargmax(lg)])
        mass = np.flatnonzero(lg > top - 60)  # beyond, the integrand is below e^-60 of its peak
        q, _ = integrate.quad(
            lambda x, top=top: math.exp(log_f(x) - top),
            grid[max(mass[0] - 1, 0)],
            grid[min(mass[-1] + 1, grid.size - 1)],
            points=[x_mode],
            limit=500,
            epsabs=1e-13,
        )
        assert float(V._log_normal_mix(y, se, m, tau, to_logit)) == pytest.approx(
            math.log(q) + top, abs=1e-6
        )
        assert float(V._log_normal_mix(y, se, m, tau, None)) == pytest.approx(
            stats.norm.logpdf(y, m, math.hypot(se, tau)), abs=1e-12
        )


def test_heldout_density_equals_direct_normal_integrals():
    """ELPD terms.

    A multivariate normal per draw (median and rates correlated), u integrated by quad.
    """
    spec = _spec(covariates=("line", "uterine"))
    data = prepare_data(spec, _survival_tables(k=9, latent=(4,)))
    held = [3, 4]
    values, arms, _ = _held(spec, data, held, draws=120)
    hd = data.take(held)
    m = Model(spec, hd)
    c = m.canonical(values)
    obs = hd.obs
    P = np.zeros((len(obs), len(obs)))
    P[hd.terms["first"], hd.terms["second"]] = hd.terms["precision"]
    for i in range(2):
        rows = np.flatnonzero(obs["arm_idx"] == i)
        Sigma = np.linalg.inv(P[np.ix_(rows, rows)])
        y = obs["lik_y"].to_numpy()[rows]
        is_med = obs["is_median"].to_numpy()[rows]
        rel = obs["log_t_rel"].to_numpy()[rows]

        def dens(s, u, i=i, y=y, is_med=is_med, rel=rel, Sigma=Sigma):
            x = hd.X[i] + ((u - hd.uterine_centre) * hd.Xu[i] if i in hd.latent else 0)
            eta = c["alpha"][s, 0] + x @ c["beta"][s, 0]
            k, tau = c["shape"][s, 0], c["tau"][s, 0, 0]
            mu = np.where(is_med > 0.5, math.log(6.0) + eta / k, eta - k * rel)
            a = np.where(is_med > 0.5, 1 / k, 1.0)
            return stats.multivariate_normal.pdf(y, mu, Sigma + tau**2 * np.outer(a, a))

        if i in hd.latent:
            p = [
                integrate.quad(lambda u, s=s: dens(s, u), 0, 1, epsabs=1e-13)[0] for s in range(120)
            ]
        else:
            p = [dens(s, None) for s in range(120)]
        assert arms["elpd"].iloc[i] == pytest.approx(math.log(np.mean(p)), abs=1e-6)


@pytest.mark.parametrize("curve", ["loglogistic", "weibull"])
def test_pit_of_survival_observations_matches_simulation(curve):
    spec = _spec(curve=curve, covariates=("line", "uterine"))
    data = prepare_data(spec, _survival_tables(k=9, latent=(4,)))
    held = [3, 4]
    values, _, obs = _held(spec, data, held, draws=400)
    hd = data.take(held)
    m = Model(spec, hd)
    rng = np.random.default_rng(5)
    R = 200  # replicates per draw
    rep = {k: np.repeat(v, R, axis=0) for k, v in values.items()}
    c = m.canonical(rep)
    du = np.zeros((len(rep["tau"]), hd.n_arms))
    du[:, hd.latent] = rng.uniform(size=(len(rep["tau"]), hd.latent.size)) - hd.uterine_centre
    eta = m.base_predictor(NUMPY_OPS, c, hd.X, hd.Xu, du) + m.effect_scale(c) * rng.standard_normal(
        (len(rep["tau"]), hd.n_arms, 1)
    )
    y_rep = posterior_predictive(m, eta[None], {k: v[None] for k, v in c.items()}, rng)[0]
    emp = (y_rep <= hd.obs["lik_y"].to_numpy()[None]).mean(axis=0)
    if curve == "weibull":  # reported as P(S_rep <= S): log(-log S) falls as S rises
        emp = np.where(hd.obs["is_median"] > 0.5, emp, 1 - emp)
    # Monte Carlo error of the simulated CDF (draws repeated: at most that of 400 independent ones)
    tol = 4 * np.sqrt(emp * (1 - emp) / 400 + 1e-6)
    np.testing.assert_array_less(np.abs(obs["pit"].to_numpy() - emp), tol)


class _FixedUniform:
    """Stands in for the generator of the randomised PIT.

    V = v gives F(y - 1) + v (F(y) - F(y - 1)).
    """

    def __init__(self, v):
        self.v = v

    def uniform(self, size):
        return np.full(size, self.v)


def test_randomised_pit_of_counts_matches_simulation():
    spec = _spec("logit-binomial", covariates=(), tau_by="none")
    spec = spec.replace(landmarks=(6.0,))
    rng = np.random.default_rng(3)
    k = 8
    n = rng.integers(20, 60, k)
    tables = _rate_tables(n, np.round(rng.uniform(0.2, 0.6, k) * n) / n)
    data = prepare_data(spec, tables)
    values, _, obs = _held(spec, data, [2], draws=1000)
    y = data.obs["lik_y"].iloc[2]
    nn = data.obs["lik_n"].iloc[2]
    reps = 400
    tau = np.repeat(values["tau"][:, 0, 0], reps)
    p = special.expit(np.repeat(values["alpha"][:, 0], reps) + tau * rng.standard_normal(tau.size))
    yr = rng.binomial(int(nn), p)
    F, Fm = (yr <= y).mean(), (yr <= y - 1).mean()
    # the same posterior draws on both sides: only the simulation's Monte Carlo error (and the z
    # grid) differ
    mc = 4 * math.sqrt(0.25 / tau.size) + 1e-3
    assert Fm - mc <= obs["pit"].iloc[0] <= F + mc
    m = Model(spec, data.take([2]))
    c = m.canonical(values)

    lo, hi = (V._pit(m, c, 0, np.array([0]), _FixedUniform(v))[0] for v in (0.0, 1.0))
    assert lo == pytest.approx(Fm, abs=mc) and hi == pytest.approx(F, abs=mc)
    assert lo < obs["pit"].iloc[0] < hi


def test_pit_of_joint_conditional_counts_matches_simulation():
    """Joint landmarks.

    Each conditional count's CDF, the arm's one random effect shared by its landmarks.
    """
    raw = {
        "name": "j",
        "landmarks": [3, 6],
        "data": {"require_identifier": False, "derive_from_median": True},
        "model": {"likelihood": "joint-cloglog", "covariates": ["line"]},
        "random_effects": {"tau_by": "none"},
        "exact": {"draws": 1000},
    }
    spec = parse_spec(raw)
    data = prepare_data(spec, _survival_tables(k=8))
    values, _, obs = _held(spec, data, [1], draws=500)
    hd = data.take([1])
    m = Model(spec, hd)
    c = m.canonical(values)
    rows = np.arange(len(hd.obs))
    lo = V._pit(m, c, 0, rows, _FixedUniform(0.0))
    hi = V._pit(m, c, 0, rows, _FixedUniform(1.0))
    rng = np.random.default_rng(2)
    R = 400
    rep = {k: np.repeat(v, R, axis=0) for k, v in values.items()}
    cr = m.canonical(rep)
    eta = m.base_predictor(NUMPY_OPS, cr, hd.X) + m.effect_scale(cr) * rng.standard_normal(
        (len(rep["tau"]), 1, 1)
    )
    y_rep = posterior_predictive(
        m, eta[None], {k: (v[None] if v is not None else v) for k, v in cr.items()}, rng
    )[0]
    y = hd.obs["lik_y"].to_numpy()
    F, Fm = (y_rep <= y).mean(axis=0), (y_rep <= y - 1).mean(axis=0)
    tol = 4 * np.sqrt(0.25 / y_rep.shape[0]) + 2e-3
    np.testing.assert_allclose(lo, Fm, atol=tol)
    np.testing.assert_allclose(hi, F, atol=tol)
    assert ((obs["pit"].to_numpy() >= lo) & (obs["pit"].to_numpy() <= hi)).all()


def test_weibull_density_on_the_logit_scale_is_the_derivative_of_its_cdf():
    """elpd_survival of a Weibull rate = d/dl P(logit S_obs <= l).

    Computed from the cloglog predictive.
    """
    spec = _spec(curve="weibull", covariates=())
    tables = lms_tables(
        [{"arm_id": f"a{i}", "n": 50} for i in range(6)],
        [
            {
                "arm_id": f"a{i}",
                "t": 6.0,
                "rate": 0.3 + 0.05 * i,
                "lo": 0.15 + 0.05 * i,
                "hi": 0.5 + 0.05 * i,
            }
            for i in range(6)
        ],
    )
    data = prepare_data(spec, tables)
    values, arms, _ = _held(spec, data, [1], draws=300)
    o = data.obs.iloc[1]
    c = Model(spec, data).canonical(values)
    mu = c["alpha"][:, 0]  # t = t_ref: the log cumulative hazard at 6 months is eta
    sd = np.sqrt(o["se"] ** 2 + c["tau"][:, 0, 0] ** 2)
    s_obs = math.exp(-math.exp(o["lik_y"]))
    l_obs = math.log(s_obs / (1 - s_obs))

    def cdf_logit(l):  # P(logit S <= l) = P(C >= cloglog(expit(l)))
        cc = math.log(-math.log(special.expit(l)))
        return float(np.mean(stats.norm.sf(cc, mu, sd)))

    h = 1e-5
    dens = (cdf_logit(l_obs + h) - cdf_logit(l_obs - h)) / (2 * h)
    assert arms["elpd_survival"].iloc[0] == pytest.approx(math.log(dens), abs=1e-6)
    assert arms["elpd"].iloc[0] != pytest.approx(arms["elpd_survival"].iloc[0], abs=1e-3)


def test_common_log_score_matches_monte_carlo():
    spec = _spec(curve="weibull", covariates=("line", "uterine"))
    data = prepare_data(spec, _survival_tables(k=9, latent=(4,)))
    values, _, _ = _held(spec, data, [4], draws=200)
    m = Model(spec, data.take([4]))
    y, se, t = -0.4, 0.3, 3.0
    score = V._common_log_score(m, values, 0, t, y, se)
    rng = np.random.default_rng(0)
    R = 2000
    c = m.canonical(values)
    u = rng.uniform(size=(200, R))
    x = m.data.X[0] + (u[..., None] - m.data.uterine_centre) * m.data.Xu[0]
    eta = (
        c["alpha"][:, None, 0]
        + np.einsum("srk,sk->sr", x, c["beta"][:, 0])
        + c["tau"][:, None, 0, 0] * rng.standard_normal((200, R))
    )
    logit_p = special.logit(np.exp(-np.exp(eta + c["shape"][:, None, 0] * math.log(t / 6.0))))
    d = stats.norm.pdf(y, logit_p, se)
    assert score == pytest.approx(
        math.log(d.mean()), abs=4 * d.std() / d.mean() / math.sqrt(d.size) + 1e-3
    )


# ---------------------------------------------------------------------------- the schemes


@pytest.fixture(scope="module")
def small_loto():
    spec = _spec(covariates=("line", "uterine"))
    tables = _survival_tables(
        k=10, latent=(2, 7), trials=["T0", "T0", "T1", "T2", "T3", "T3", "T4", "T5", "T6", "T7"]
    )
    return V.loto(spec, tables)


def test_loto_holds_out_each_trial_once(small_loto):
    v = small_loto
    assert list(v.folds["fold"]) == [f"T{i}" for i in range(8)]
    assert v.folds["held_arms"].tolist() == [2, 1, 1, 2, 1, 1, 1, 1]
    assert (v.folds["train_arms"] + v.folds["held_arms"] == 10).all()
    assert sorted(v.arms.index) == sorted(v.data.arms.index)
    assert (v.arms["fold"] == v.arms["trial"]).all()
    assert len(v.obs) == len(v.data.obs) and v.obs["reported"].all()
    assert ((v.obs["pit"] > 0) & (v.obs["pit"] < 1)).all()
    cov = v.coverage()
    assert list(cov.index) == list(V.LEVELS)
    assert (
        (cov["n"] == len(v.obs)).all()
        and (cov["lo"] <= cov["coverage"]).all()
        and (cov["coverage"] <= cov["hi"]).all()
    )
    total, se = v.elpd()
    assert total == pytest.approx(v.arms["elpd"].sum())
    assert se == pytest.approx(math.sqrt(10) * v.arms["elpd"].std(ddof=1))
    s = v.summary()
    assert (
        s["arms"] == 10 and s["fits"] == 8 and s["elpd_survival"] == pytest.approx(total)
    )  # log-logistic: logit already


def test_refits_are_the_fits_lmsbayes_fit_makes():
    """The exact engine called directly: the same draws and diagnostics as lmsbayes.fit."""
    from lmsbayes.fit import fit

    spec = _spec(covariates=("line", "uterine"))
    data = prepare_data(spec, _survival_tables(k=8, latent=(3,)))
    train = data.take(np.arange(1, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = fit(spec, train)
    full = Model(spec, data)
    values, diag = V._fit_globals(spec, train, get_engine("exact"), full)
    ref = _posterior_values(f, full)
    assert all(np.array_equal(values[k], ref[k]) for k in ref)
    assert diag.khat == f.diagnostics.khat and diag.is_ess == f.diagnostics.is_ess
    assert diag.problems == f.diagnostics.problems


def test_temporal_splits_on_the_year():
    spec = _spec()
    years = [2005, 2008, 2010, 2012, 2015, 2017, 2018, 2019, 2021, 2023]
    v = V.temporal(spec, _survival_tables(k=10, years=years), year=2018)
    assert (
        len(v.folds) == 1
        and v.folds["train_arms"].iloc[0] == 7
        and v.folds["held_arms"].iloc[0] == 3
    )
    assert sorted(v.arms.index) == ["a7", "a8", "a9"]
    with pytest.raises(V.ValidationError, match="no arm published after 2023"):
        V.temporal(spec, _survival_tables(k=10, years=years), year=2023)


def test_compare_survival_specs_on_one_scale():
    tables = _survival_tables(k=8, seed=2)
    specs = [_spec(name="ll"), _spec(name="wb", curve="weibull")]
    cmp = V.compare(specs, tables)
    t = cmp.table
    assert list(t.index) == ["ll", "wb"]
    ll, wb = cmp.validations["ll"], cmp.validations["wb"]
    jac = wb.arms["elpd_survival"] - wb.arms["elpd"]
    assert (jac < 0).all()  # every arm has rates; (1 - S) / (-log S) < 1 for S in (0, 1)
    d = wb.arms["elpd_survival"] - ll.arms["elpd_survival"]
    assert t.loc["wb", "elpd_survival_diff"] == pytest.approx(d.sum())
    assert t.loc["wb", "elpd_survival_diff_se"] == pytest.approx(math.sqrt(8) * d.std(ddof=1))
    # all survival: the common target is every reported rate; its PITs are the specs' own
    assert len(cmp.target) == 16 and set(cmp.target["t"]) == {3.0, 12.0}
    own = ll.obs[ll.obs["kind"] == "rate"]["pit"].to_numpy()
    np.testing.assert_allclose(cmp.scores[cmp.scores["spec"] == "ll"]["pit"].to_numpy(), own)
    # PITs are oriented on the reported quantity: the two curves agree on which rates are high
    assert np.corrcoef(ll.obs["pit"], wb.obs["pit"])[0, 1] > 0.8
    line = cmp.preference()
    assert (
        line.startswith("validation prefers ")
        and "(se " in line
        and "'ll'" in line
        and "'wb'" in line
    )
    text = cmp.format()
    assert "2. Survival specs on the same observations" in text and text.endswith(line)


def test_compare_rejects_bad_arguments():
    with pytest.raises(V.ValidationError, match="scheme"):
        V.compare(["default"], scheme="kfold")
    with pytest.raises(V.ValidationError, match="twice"):
        V.compare([_spec(name="x"), _spec(name="x")])
    with pytest.raises(V.ValidationError, match="input tables"):
        V.compare([_spec()], prepare_data(_spec(), _survival_tables(k=4)))
    with pytest.raises(V.ValidationError, match="draws"):
        V.loto(_spec(), _survival_tables(k=4), draws=10)


def test_calibration_figure_shows_every_spec(small_loto):
    from lmsbayes.plots_validate import plot_calibration

    fig = plot_calibration([small_loto, small_loto])
    axes = fig.axes
    assert len(axes) == 3
    heights = sum(bar.get_height() for bars in axes[0].containers for bar in bars)
    assert heights == pytest.approx(len(small_loto.obs))
    cov = axes[2]
    assert len(cov.containers) == 2  # one errorbar series per spec
    y = cov.containers[0].lines[0].get_ydata()
    np.testing.assert_allclose(y, small_loto.coverage()["coverage"].to_numpy())


# ---------------------------------------------------------------------- calibration by simulation


def _coverage_check(per_sim: np.ndarray, levels, family_alpha=0.01):
    """Mean coverage over independent simulations against nominal.

    t interval, Bonferroni over levels.
    """
    n = per_sim.shape[0]
    q = stats.t.ppf(1 - family_alpha / (2 * len(levels)), n - 1)
    mean, se = per_sim.mean(0), per_sim.std(0, ddof=1) / math.sqrt(n)
    for lv, mu, s in zip(levels, mean, se):
        assert abs(mu - lv) <= q * s + 1e-12, (
            f"coverage {mu:.3f} at nominal {lv} (se {s:.3f}, tolerance {q * s:.3f})"
        )
    return mean, se


def _calibration_run(spec, template, n_sim, seed):
    rng = np.random.default_rng(seed)
    cov, deciles = [], []
    for _ in range(n_sim):
        v = V.loto(spec, _simulate(spec, template, rng), seed=int(rng.integers(1 << 31)))
        pit = v.obs["pit"].to_numpy()
        cov.append([np.mean(np.abs(pit - 0.5) <= lv / 2) for lv in V.LEVELS])
        deciles.append(np.histogram(pit, bins=5, range=(0, 1))[0] / pit.size)
    return np.array(cov), np.array(deciles)


def _logit_normal_template(k, n_trials):
    """k arms in n_trials trials (several arms predicted per refit: more checks per fit).

    tau large against se.
    """
    spec = _spec("logit-normal", covariates=(), draws=500).replace(
        landmarks=(6.0,), **{"priors.tau": Prior("HalfNormal", sigma=1.0)}
    )
    rng = np.random.default_rng(11)
    tables = _rate_tables(
        rng.integers(150, 400, k), np.full(k, 0.4), trials=[f"T{i % n_trials}" for i in range(k)]
    )
    return spec, prepare_data(spec, tables)


def test_loto_coverage_is_nominal_on_prior_predictive_data_fast():
    """20 simulations x 4 refits.

    Power: predictive variances with 0.3 tau^2 instead of tau^2 fail it.
    """
    spec, template = _logit_normal_template(20, 4)
    cov, deciles = _calibration_run(spec, template, n_sim=20, seed=1)
    _coverage_check(cov, V.LEVELS)
    _coverage_check(deciles, [0.2] * 5)


@pytest.mark.slow
def test_loto_coverage_is_nominal_on_prior_predictive_data_logit_normal():
    spec, template = _logit_normal_template(20, 10)
    cov, deciles = _calibration_run(spec, template, n_sim=200, seed=2)
    _coverage_check(cov, V.LEVELS)
    _coverage_check(deciles, [0.2] * 5)


@pytest.mark.slow
def test_loto_coverage_is_nominal_on_prior_predictive_data_survival():
    """The default model's structure.

    Log-logistic curves, median + rates, covariates with a latent fraction.
    """
    spec = _spec(covariates=("line", "uterine"), draws=1000)
    template = prepare_data(
        spec, _survival_tables(k=12, latent=(2, 7), trials=[f"T{i % 4}" for i in range(12)])
    )
    cov, deciles = _calibration_run(spec, template, n_sim=60, seed=3)
    _coverage_check(cov, V.LEVELS)
    _coverage_check(deciles, [0.2] * 5)


@pytest.mark.slow
def test_loto_coverage_is_nominal_on_prior_predictive_data_binomial():
    """Counts: the randomised PIT makes coverage nominal for discrete data too."""
    spec = _spec("logit-binomial", covariates=(), draws=1000).replace(landmarks=(6.0,))
    rng = np.random.default_rng(12)
    tables = _rate_tables(
        rng.integers(15, 60, 10), np.full(10, 0.4), trials=[f"T{i % 5}" for i in range(10)]
    )
    cov, deciles = _calibration_run(spec, prepare_data(spec, tables), n_sim=60, seed=4)
    _coverage_check(cov, V.LEVELS)
    _coverage_check(deciles, [0.2] * 5)


def test_misspecified_shape_loses_elpd():
    """Log-logistic curves with shape 2 (truth).

    A fit with the shape fixed at 0.7 predicts worse.
    """
    good = _spec(name="pooled", covariates=("line",))
    bad = _spec(name="fixed", covariates=("line",), shape="fixed", shape_value=0.7)
    template = prepare_data(good, _survival_tables(k=12, seed=4, rates_at=(2.0, 12.0)))
    data = _simulate(
        good,
        template,
        np.random.default_rng(9),
        truth={
            "alpha": -0.3,
            "beta": np.array([-0.8]),
            "tau": np.array([0.3]),
            "shape": np.array([2.0]),
        },
    )
    vg, vb = V.loto(good, data), V.loto(bad, data)
    d = (vb.arms["elpd"] - vg.arms["elpd"]).to_numpy()
    assert d.sum() < -2 * math.sqrt(d.size) * d.std(ddof=1)
    assert V.elpd_difference(vb, vg) == pytest.approx(
        (d.sum(), math.sqrt(d.size) * d.std(ddof=1), d.size)
    )


# ---------------------------------------------------------------------------- command line


def _variant(tmp_path):
    from pathlib import Path

    import lmsbayes

    text = (Path(lmsbayes.__file__).parent / "_models" / "eortc2021.toml").read_text()
    text = text.replace('name = "eortc2021"', 'name = "eortc_wide"').replace(
        'tau = { dist = "HalfNormal", sigma = 0.5 }', 'tau = { dist = "HalfNormal", sigma = 1.5 }'
    )
    assert 'name = "eortc_wide"' in text and "sigma = 1.5" in text
    path = tmp_path / "eortc_wide.toml"
    path.write_text(text)
    return path


def test_cli_prints_the_comparison_and_writes_its_files(tmp_path, capsys):
    import json

    from lmsbayes.cli import main

    out = {k: tmp_path / f"v.{k}" for k in ("json", "csv", "png")}
    rc = main(
        [
            "validate",
            "eortc2021",
            str(_variant(tmp_path)),
            "--draws",
            "500",
            "-q",
            "--json",
            str(out["json"]),
            "--csv",
            str(out["csv"]),
            "--plot",
            str(out["png"]),
            "--observations",
            str(tmp_path / "obs.csv"),
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0
    assert "1. Each spec on its own observations" in text and "3. Common target" in text
    last = text.strip().splitlines()[-1]
    assert last.startswith("validation prefers ") and "(se " in last
    doc = json.loads(out["json"].read_text())
    assert doc["preference"] == last and [r["spec"] for r in doc["table"]] == [
        "eortc2021",
        "eortc_wide",
    ]
    table = pd.read_csv(out["csv"])
    # one refit per trial with a spec's arms: counted here from the bundled table itself
    from lmsbayes.data import load_trials
    from lmsbayes.model.prepare import prepare_data
    from lmsbayes.spec import load_spec

    data = prepare_data(load_spec("eortc2021"), load_trials())
    n_obs = len(data.obs)
    assert table["arms"].tolist() == [data.n_arms] * 2
    assert table["fits"].tolist() == [len(np.unique(data.trial_idx))] * 2
    assert out["png"].stat().st_size > 10_000
    obs = pd.read_csv(tmp_path / "obs.csv")
    assert len(obs) == 2 * n_obs and obs["pit"].between(0, 1).all()
    per_arm = obs.drop_duplicates(["spec", "arm"]).groupby("spec")["arm_elpd"].sum()
    assert per_arm["eortc2021"] == pytest.approx(doc["table"][0]["elpd"], abs=1e-6)


def test_cli_errors_are_one_line_before_any_work(tmp_path, capsys):
    from lmsbayes.cli import main

    assert main(["validate", "eortc2021", "--temporal", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "lmsbayes: error: temporal validation of spec 'eortc2021': no arm published after 2018"
    )
    assert main(["validate", "eortc2021", "--plot", str(tmp_path / "x.gif")]) == 2
    assert "written as .png, .pdf or .svg" in capsys.readouterr().err
    assert main(["validate", "eortc2021", "--csv", str(tmp_path / "no" / "t.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
