"""The joint-landmarks likelihood (``joint-cloglog``): data, likelihood, posterior, predictions.

Checked against independent computations: the conditional binomial equals
the multinomial of (progressed before 3 m, between 3 and 6 m, progression-free
at 6 m) evaluated by scipy; a one-arm posterior against a 2-D grid
integral; the bundled-data fit against its own structure (survival never
rises with time, one arm effect for all landmarks) and its data (PPC).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _synthetic import trials_csv
from conftest import quiet_fit
from scipy import integrate, special, stats

import lmsbayes
from lmsbayes.data import load_trials
from lmsbayes.model.definition import Model
from lmsbayes.model.families import NUMPY_OPS
from lmsbayes.model.prepare import conditional_counts, prepare_data
from lmsbayes.predict import Setting, landmark_order, predict, thresholds
from lmsbayes.spec import SpecError, load_spec, parse_spec

N, Y3, Y6 = 40, 30, 18  # one arm: 40 patients, 30 progression-free at 3 months, 18 at 6


def _one_arm_spec(**sampler):
    return parse_spec(
        {
            "name": "one-arm-joint",
            "landmarks": [3, 6],
            "model": {"likelihood": "joint-cloglog", "covariates": []},
            "priors": {
                "alpha": {"dist": "Normal", "mu": 0.0, "sigma": 2.0},
                # heterogeneity switched off in effect: one arm cannot inform it
                "tau": {"dist": "HalfNormal", "sigma": 0.001},
            },
            "sampler": {"draws": 2500, "tune": 1000, "chains": 4, "seed": 5, **sampler},
        }
    )


@pytest.fixture(scope="module")
def one_arm(tmp_path_factory):
    path = trials_csv(
        tmp_path_factory.mktemp("joint") / "one.csv",
        rate=np.array([Y3 / N]),
        n=np.array([N]),
        landmark=3,
        extra_rates={6: np.array([Y6 / N])},
    )
    return load_trials(path)


@pytest.fixture(scope="module")
def one_arm_fit(one_arm):
    return quiet_fit(_one_arm_spec(), one_arm)


@pytest.fixture(scope="module")
def joint_fit(trials):
    return quiet_fit(lmsbayes.load_spec("joint").replace(**{"exact.draws": 2000}), trials)


# --- data ------------------------------------------------------------------------


def test_conditional_counts_by_hand():
    obs = pd.DataFrame(
        {
            "arm_idx": [0, 0, 1, 2, 2],
            "landmark_idx": [0, 1, 1, 0, 1],
            "rate": [0.75, 0.45, 0.30, 0.60, 0.50],
            "n_eff": [40, 40, 25, 50, 20],
            "y_eff": [30, 18, 8, 30, 10],
        }
    )
    got = conditional_counts(obs)
    # arm 0: same n at both landmarks -> (40, 30) then 18 of the 30 still progression-free
    # arm 1: only 6 months -> marginal; arm 2: 6-month cohort of 20, 0.6 * 20 = 12 at risk after 3
    # months
    assert got["n_cond"].tolist() == [40, 30, 25, 50, 12]
    assert got["y_cond"].tolist() == [30, 18, 8, 30, 10]
    assert got["has_prev"].tolist() == [0, 1, 0, 0, 1]
    assert got["prev_landmark_idx"].tolist() == [0, 0, 1, 0, 0]


def test_one_arm_data_are_the_multinomial_counts(one_arm):
    data = prepare_data(_one_arm_spec(), one_arm)
    assert data.obs[["n_cond", "y_cond"]].values.tolist() == [[N, Y3], [Y3, Y6]]


def test_rising_survival_and_empty_risk_sets_are_excluded_with_reasons(tmp_path):
    path = trials_csv(
        tmp_path / "bad.csv",
        rate=np.array([0.5, 0.02, 0.7]),
        n=np.array([30, 20, 30]),
        landmark=3,
        extra_rates={6: np.array([0.6, 0.0, 0.4])},
    )
    data = prepare_data(_one_arm_spec(), load_trials(path))
    reasons = data.excluded.set_index("arm_id")["reason"]
    assert "exceeds the rate 0.5 at 3 m" in reasons["arm00000"]
    assert "no effective patient at risk" in reasons["arm00001"]
    assert data.obs["arm_id"].tolist() == ["arm00000", "arm00001", "arm00002", "arm00002"]
    assert (data.obs["landmark"] == 3.0).sum() == 3


def test_joint_needs_increasing_landmarks():
    with pytest.raises(SpecError, match="increasing order"):
        parse_spec(
            {
                "name": "x",
                "landmarks": [6, 3],
                "model": {"likelihood": "joint-cloglog", "covariates": []},
            }
        )


# --- likelihood and posterior against independent computations ----------------------


def test_likelihood_is_the_multinomial(one_arm):
    """log p(y | alpha, tau, z) of the model definition = scipy's multinomial of the three outcomes.

    (The PyMC model's log density equals the definition's: tests/test_engines.py.)
    """
    spec = _one_arm_spec()
    m = Model(spec, prepare_data(spec, one_arm))
    a3, a6, tau, z = -1.1, -0.3, 0.3, 0.5
    eta = np.array([[a3 + tau * z, a6 + tau * z]])
    got = float(np.sum(m.loglik_terms(NUMPY_OPS, eta, {})))
    s3, s6 = np.exp(-np.exp(a3 + tau * z)), np.exp(-np.exp(a6 + tau * z))
    expected = stats.multinomial.logpmf([N - Y3, Y3 - Y6, Y6], N, [1 - s3, s3 - s6, s6])
    assert got == pytest.approx(expected, rel=1e-12)


def _grid_posterior():
    """E and sd of (S3, S6) by a 2-D grid integral over (alpha3 < alpha6), tau = 0."""
    a = np.linspace(-5.0, 2.5, 1501)
    a3, a6 = a[:, None], a[None, :]
    s3, s6 = np.exp(-np.exp(a3)), np.exp(-np.exp(a6))
    with np.errstate(divide="ignore", invalid="ignore"):
        loglik = (
            special.xlogy(Y6, s6) + special.xlogy(Y3 - Y6, s3 - s6) + special.xlogy(N - Y3, 1 - s3)
        )
    logpost = np.where(
        a6 > a3, loglik + stats.norm.logpdf(a3, 0, 2) + stats.norm.logpdf(a6, 0, 2), -np.inf
    )
    w = np.exp(logpost - logpost[np.isfinite(logpost)].max())
    z = integrate.trapezoid(integrate.trapezoid(w, a, axis=1), a)

    def moment(f):
        return integrate.trapezoid(integrate.trapezoid(w * f, a, axis=1), a) / z

    out = {}
    for name, s in (("s3", s3 + 0 * a6), ("s6", s6 + 0 * a3)):
        m = moment(s)
        out[name] = (m, np.sqrt(moment(s**2) - m**2))
    return out


def test_one_arm_posterior_matches_grid_integration(one_arm_fit):
    fit = one_arm_fit
    assert fit.diagnostics.ok, fit.diagnostics.line()
    ess = fit.diagnostics.is_ess
    exact = _grid_posterior()
    for name, t in (("s3", 3.0), ("s6", 6.0)):
        x = fit.posterior["p"].sel(landmark=t).isel(arm=0).values
        mean, sd = exact[name]
        # tolerance: 4 Monte Carlo standard errors of the mean (sd / sqrt(ESS)) and of the sd (sd /
        # sqrt(2 ESS))
        assert abs(x.mean() - mean) < 4 * sd / np.sqrt(ess), name
        assert abs(x.std() - sd) < 4 * sd / np.sqrt(2 * ess), name


# --- the bundled data ------------------------------------------------------------


def test_joint_fit_samples_soundly(joint_fit):
    d = joint_fit.diagnostics
    assert d.ok, d.line()
    post = joint_fit.posterior
    assert post["beta"].dims == ("chain", "draw", "covariate")
    assert post["tau"].dims == ("chain", "draw", "stratum")
    assert post["z"].dims == ("chain", "draw", "arm")


def test_survival_never_rises_with_time(joint_fit):
    p = joint_fit.posterior["p"]
    assert bool((p.sel(landmark=6.0) < p.sel(landmark=3.0)).all())


def test_pooled_and_predictive_rates_keep_the_landmark_order(joint_fit):
    for quantity in ("pooled", "predictive"):
        order = landmark_order(joint_fit, quantity=quantity)
        assert len(order) == 10 and (order.prob_later_higher == 0).all(), quantity


def test_posterior_predictive_covers_the_data(joint_fit):
    dt = joint_fit.datatree
    y_rep = dt["posterior_predictive"]["y"].values.reshape(-1, dt["observed_data"]["y"].size)
    lo, hi = np.quantile(y_rep, [0.025, 0.975], axis=0)
    y = dt["observed_data"]["y"].values
    np.testing.assert_array_equal(y, joint_fit.data.obs["y_cond"].to_numpy())
    outside = np.mean((y < lo) | (y > hi))
    assert outside <= 0.10, f"{outside:.0%} of observations outside their 95% predictive interval"


def test_predictions_are_monotone_and_share_one_arm_effect(joint_fit):
    ds = predict(joint_fit, [Setting("2L+", "R-T", 0.5), Setting("1L", "NR-T", 1.0)], n=30)
    rate = ds["rate"]
    for q in ("pooled", "predictive", "observed"):
        r = rate.sel(quantity=q)
        assert bool((r.sel(landmark=6.0) <= r.sel(landmark=3.0)).all()), q
    # counts drawn landmark after landmark keep each landmark's mean: E[y_t / n | S] = S_t (4 Monte
    # Carlo se)
    for t in (3.0, 6.0):
        diff = (
            rate.sel(quantity="observed", landmark=t) - rate.sel(quantity="predictive", landmark=t)
        ).values.ravel()
        assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(diff.size), t
    # the new arm's effect is the same at both landmarks: log(-log S) moves by alpha6 - alpha3 only
    cll = np.log(-np.log(rate.sel(quantity="predictive")))
    shift = (cll.sel(landmark=6.0) - cll.sel(landmark=3.0)).transpose("chain", "draw", "setting")
    alpha = joint_fit.posterior["alpha"]
    gap = (alpha.sel(landmark=6.0) - alpha.sel(landmark=3.0)).values[..., None]
    np.testing.assert_allclose(shift.values, np.broadcast_to(gap, shift.shape), atol=1e-9)
    # pooled: the cloglog of the rate is alpha + x beta, computed by hand
    post = joint_fit.posterior
    x = {"line": 1.0, "nrt": 0.0, "line:nrt": 0.0, "uterine": 0.0}
    eta = post["alpha"].sel(landmark=3.0) + sum(
        v * post["beta"].sel(covariate=k) for k, v in x.items()
    )
    np.testing.assert_allclose(
        rate.sel(quantity="pooled", landmark=3.0).isel(setting=0).values,
        np.exp(-np.exp(eta.values)),
        rtol=1e-12,
    )


def test_joint_thresholds_are_p0_to_the_hr(joint_fit):
    th = thresholds(joint_fit, [Setting("2L+", "R-T", 0.5)], hr=(0.65,))
    assert "p1" in th and "p0" in th
    p0, p1 = th["p0"], th["p1"].sel(hr=0.65)
    np.testing.assert_allclose(p1.values, p0.values**0.65, rtol=1e-12)


def test_joint_fit_round_trips_through_netcdf(joint_fit, tmp_path):
    loaded = lmsbayes.load_fit(joint_fit.save(tmp_path / "joint.nc"))
    assert loaded.spec.model.likelihood == "joint-cloglog" and loaded.data.family.joined
    a = predict(joint_fit, [Setting("2L+")], seed=1)["rate"]
    b = predict(loaded, [Setting("2L+")], seed=1)["rate"]
    np.testing.assert_array_equal(a.values, b.values)


def test_joint_plots(joint_fit):
    import matplotlib

    matplotlib.use("Agg")
    from lmsbayes.plots import plot_effects, plot_ppc

    fig = plot_effects(joint_fit)
    assert "Hazard ratio" in fig.axes[0].get_xlabel()
    plot_ppc(joint_fit)


def test_bundled_joint_spec():
    spec = load_spec("joint")
    assert spec.family.joined and spec.link == "cloglog"
    assert load_spec("per_landmark").link == "logit"
    assert load_spec("default").family.any_landmark


@pytest.mark.slow
def test_joint_recovery_of_known_parameters(tmp_path):
    """Counts simulated from the joint model (80 arms, fixed seed): 95% intervals contain the
    truth."""
    rng = np.random.default_rng(7)
    k = 80
    line = rng.choice(["1L", "2L+"], k)
    klass = rng.choice(["R-T", "NR-T"], k)
    n = rng.integers(30, 90, k)
    truth = {"alpha3": -1.2, "alpha6": -0.4, "line": 0.6, "nrt": -0.3, "tau": 0.3}
    arm = (
        truth["line"] * (line == "2L+")
        + truth["nrt"] * (klass == "NR-T")
        + truth["tau"] * rng.standard_normal(k)
    )
    s3, s6 = np.exp(-np.exp(truth["alpha3"] + arm)), np.exp(-np.exp(truth["alpha6"] + arm))
    y3 = rng.binomial(n, s3)
    y6 = rng.binomial(y3, s6 / s3)
    path = trials_csv(
        tmp_path / "sim.csv",
        rate=y3 / n,
        n=n,
        landmark=3,
        line=line,
        treatment_class=klass,
        extra_rates={6: y6 / n},
    )
    spec = parse_spec(
        {
            "name": "joint-recovery",
            "landmarks": [3, 6],
            "model": {"likelihood": "joint-cloglog", "covariates": ["line", "nrt"]},
            "sampler": {"draws": 1000, "tune": 1000, "chains": 4, "seed": 5},
        }
    )
    fit = quiet_fit(spec, load_trials(path))
    assert fit.diagnostics.ok, fit.diagnostics.line()
    kept = fit.data.obs
    assert len(kept) == 2 * k, fit.data.excluded  # no rate of 0 or 1 with this seed
    # the conditional counts are the simulated ones
    np.testing.assert_array_equal(
        kept.loc[kept["landmark"] == 6.0, ["n_cond", "y_cond"]].to_numpy(),
        np.column_stack([y3, y6]),
    )
    post = fit.posterior
    checks = {
        "alpha3": post["alpha"].sel(landmark=3.0),
        "alpha6": post["alpha"].sel(landmark=6.0),
        "line": post["beta"].sel(covariate="line"),
        "nrt": post["beta"].sel(covariate="nrt"),
        "tau": post["tau"].sel(stratum="all"),
    }
    for name, draws in checks.items():
        lo, hi = np.quantile(draws.values.ravel(), [0.025, 0.975])
        assert lo < truth[name] < hi, (name, lo, hi, truth[name])
