"""Statistical validation of the models against independent computations.

- logit-normal model without covariates vs exact quadrature over tau
  (normal-normal conjugacy given tau), on RBesT's AS data set;
- the quadrature engine itself vs brute-force 2-D integration;
- recovery of known alpha, beta, tau from data simulated from the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _synthetic import trials_csv
from conftest import quiet_fit
from scipy import integrate, stats

from lmsbayes.data import load_trials
from lmsbayes.engines.normal_normal import normal_normal
from lmsbayes.predict import Setting, landmark_order, predict
from lmsbayes.spec import parse_spec

#: Public data sets the tests need, shipped with their source notes (tests/data/*.md)
DATA = Path(__file__).resolve().parent / "data"


def _as_data() -> pd.DataFrame:
    """RBesT's AS example (8 placebo arms); source in tests/data/AS.md."""
    return pd.read_csv(DATA / "AS.csv")


def _logit(p):
    return np.log(p / (1 - p))


def test_quadrature_engine_matches_bruteforce_2d_integration():
    y = np.array([-1.2, -0.8, -1.5, -0.3, -1.0])
    se = np.array([0.3, 0.5, 0.4, 0.6, 0.25])
    post = normal_normal(y, se, mu_prior=(0.0, 2.0))

    # independent computation: the joint density on a fine 2-D grid (trapezoid rule),
    # with no use of the normal-normal conjugacy the engine relies on
    mu = np.linspace(-8.0, 6.0, 1401)[:, None]
    tau = np.linspace(0.0, 4.0, 1601)[None, :]
    loglik = sum(stats.norm.logpdf(yi, mu, np.sqrt(si**2 + tau**2)) for yi, si in zip(y, se))
    joint = np.exp(loglik + stats.norm.logpdf(mu, 0, 2) + stats.halfnorm.logpdf(tau, scale=0.5))

    def integral(f):
        return integrate.trapezoid(integrate.trapezoid(joint * f, tau[0], axis=1), mu[:, 0])

    z = integral(1.0)
    e_mu, e_tau, e_mu2, e_tau2 = (integral(f) / z for f in (mu, tau, mu**2, tau**2))
    assert post.mu_mean_() == pytest.approx(e_mu, abs=1e-6)
    assert post.tau_mean() == pytest.approx(e_tau, abs=1e-5)
    assert post.mu_sd() == pytest.approx(np.sqrt(e_mu2 - e_mu**2), abs=1e-5)
    assert post.tau_sd() == pytest.approx(np.sqrt(e_tau2 - e_tau**2), abs=1e-5)


@pytest.fixture(scope="module")
def as_logit_normal_fit(tmp_path_factory):
    """Logit-normal, no covariates, one landmark, RBesT's AS placebo data (8 arms)."""
    d = _as_data()
    rate = (d["r"] / d["n"]).to_numpy()
    se = 1 / np.sqrt(d["n"] * rate * (1 - rate))
    path = trials_csv(tmp_path_factory.mktemp("as") / "as.csv", rate=rate, n=d["n"], se_logit=se)
    spec = parse_spec(
        {
            "name": "as-logit-normal",
            "landmarks": [6],
            "model": {"likelihood": "logit-normal", "covariates": []},
            "priors": {
                "alpha": {"dist": "Normal", "mu": 0.0, "sigma": 2.0},
                "tau": {"dist": "HalfNormal", "sigma": 0.5},
            },
            # 8 arms and tau near 0: a small step size keeps the non-centred funnel free of
            # divergences
            # (0.95 left 1 divergence in 10,000 draws)
            "sampler": {
                "draws": 2500,
                "tune": 1000,
                "chains": 4,
                "seed": 11,
                "target_accept": 0.99,
            },
        }
    )
    fit = quiet_fit(spec, load_trials(path))
    exact = normal_normal(_logit(rate), se, mu_prior=(0.0, 2.0))
    return fit, exact


def _mcse(x: np.ndarray, method: str) -> float:
    import arviz_stats as azs

    return float(azs.mcse(x, method=method))


def test_logit_normal_posterior_matches_quadrature(as_logit_normal_fit):
    fit, exact = as_logit_normal_fit
    assert fit.diagnostics.divergences == 0
    mu = fit.posterior["alpha"].sel(landmark=6.0).values
    tau = fit.posterior["tau"].sel(landmark=6.0, stratum="all").values
    # tolerance: 4 Monte Carlo standard errors of the posterior mean and sd
    assert abs(mu.mean() - exact.mu_mean_()) < 4 * _mcse(mu, "mean")
    assert abs(tau.mean() - exact.tau_mean()) < 4 * _mcse(tau, "mean")
    assert abs(mu.std() - exact.mu_sd()) < 4 * _mcse(mu, "sd")
    assert abs(tau.std() - exact.tau_sd()) < 4 * _mcse(tau, "sd")


def test_landmark_order_is_empty_for_one_landmark(as_logit_normal_fit):
    fit, _ = as_logit_normal_fit
    order = landmark_order(fit, [Setting("2L+", name="AS")])
    assert order.empty and list(order.columns) == [
        "setting",
        "earlier",
        "later",
        "prob_later_higher",
    ]


def test_predictive_quantiles_match_quadrature(as_logit_normal_fit):
    """predict(): pooled and predictive rate quantiles vs numerical integration."""
    fit, exact = as_logit_normal_fit
    rate = predict(fit, [Setting("2L+", name="AS")], [6.0])["rate"].sel(setting="AS", landmark=6.0)
    expit = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    for quantity, predictive in (("pooled", False), ("predictive", True)):
        draws = rate.sel(quantity=quantity).values.ravel()
        for q in (0.05, 0.5, 0.95):
            ref = exact.quantile(q, predictive=predictive, transform=expit)[0]
            # Monte Carlo error of a quantile: sqrt(q(1-q)/ESS) / density; ESS >= 1000 here
            dens = stats.gaussian_kde(draws)(ref)[0]
            tol = 4 * np.sqrt(q * (1 - q) / 1000) / dens
            assert abs(np.quantile(draws, q) - ref) < tol, (quantity, q)
    # pooled mean rate: E[logistic(mu)] by Gauss-Hermite within each tau node
    assert rate.sel(quantity="pooled").mean() == pytest.approx(exact.expectation(expit), abs=0.01)


def test_recovery_of_known_parameters(tmp_path):
    """Data simulated from the model (60 arms, fixed seed): 95% intervals contain the truth."""
    rng = np.random.default_rng(2024)
    k = 60
    line = rng.choice(["1L", "2L+"], k)
    klass = rng.choice(["R-T", "NR-T"], k)
    frac = rng.choice([0.0, 0.5, 1.0], k)
    n = rng.integers(30, 90, k)
    truth = {"alpha": 0.4, "line": -1.0, "nrt": 0.3, "uterine": -0.7, "tau": 0.35}
    eta = (
        truth["alpha"]
        + truth["line"] * (line == "2L+")
        + truth["nrt"] * (klass == "NR-T")
        + truth["uterine"] * (frac - 0.5)
        + truth["tau"] * rng.standard_normal(k)
    )
    y = rng.binomial(n, 1 / (1 + np.exp(-eta)))
    path = trials_csv(
        tmp_path / "sim.csv",
        rate=y / n,
        n=n,
        line=line,
        treatment_class=klass,
        uterine_fraction=frac,
    )
    spec = parse_spec(
        {
            "name": "recovery",
            "landmarks": [6],
            "model": {"likelihood": "logit-binomial", "covariates": ["line", "nrt", "uterine"]},
            "sampler": {"draws": 1000, "tune": 1000, "chains": 4, "seed": 5},
        }
    )
    fit = quiet_fit(spec, load_trials(path))
    assert fit.diagnostics.divergences == 0
    # the effective binomial data are the simulated counts (binomial se -> n_eff = n)
    assert np.array_equal(fit.data.obs["y_eff"].to_numpy(), y)
    post = fit.posterior.sel(landmark=6.0)
    checks = {
        "alpha": post["alpha"].values.ravel(),
        "line": post["beta"].sel(covariate="line").values.ravel(),
        "nrt": post["beta"].sel(covariate="nrt").values.ravel(),
        "uterine": post["beta"].sel(covariate="uterine").values.ravel(),
        "tau": post["tau"].sel(stratum="all").values.ravel(),
    }
    for name, draws in checks.items():
        lo, hi = np.quantile(draws, [0.025, 0.975])
        assert lo < truth[name] < hi, (name, lo, hi, truth[name])
