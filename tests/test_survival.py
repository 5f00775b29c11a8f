"""The survival-curve likelihood: one Kaplan-Meier curve's median and rates, counted once.

Independent checks:
- the within-arm correlation of the observations against simulated
  Kaplan-Meier curves (Monte Carlo, tolerance from the sampling error of a
  correlation);
- an arm's median and rates from one curve, fitted as correlated data, give
  calibrated intervals for its curve; treated as independent they do not;
- the median-as-data likelihood against its closed form (the random effect
  integrated analytically);
- recovery of known log-logistic and Weibull parameters from arms that
  report only medians and some rates;
- coherence: S(t) never rises with t, in any draw and setting.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _synthetic import lms_tables
from scipy import stats

from lmsbayes.engines.exact import Integrator
from lmsbayes.model.definition import Model
from lmsbayes.model.families import NUMPY_OPS
from lmsbayes.model.observations import within_arm_correlation
from lmsbayes.model.prepare import prepare_data
from lmsbayes.spec import parse_spec

LOG2 = math.log(2.0)


def _km(times: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, float]:
    """Uncensored Kaplan-Meier: survival at the grid and the median (first time S <= 1/2)."""
    t = np.sort(times)
    n = len(t)
    surv = np.array([(t > g).mean() for g in grid])
    return surv, float(t[int(math.ceil(n / 2)) - 1])


def _loglogistic_times(rng, n, median, k):
    u = rng.uniform(size=n)
    return median * (u / (1 - u)) ** (1 / k)  # S(t) = 1 / (1 + (t / m)^k)


def test_within_arm_correlation_matches_simulated_curves():
    rng = np.random.default_rng(1)
    n, median, k = 80, 6.0, 1.6
    grid = np.array([3.0, 6.0, 12.0])
    true_s = 1 / (1 + (grid / median) ** k)
    reps = 3000
    vals = np.empty((reps, 4))
    for r in range(reps):
        s, m = _km(_loglogistic_times(rng, n, median, k), grid)
        s = np.clip(s, 0.5 / n, 1 - 0.5 / n)
        vals[r] = [*np.log(s / (1 - s)), math.log(m)]
    emp = np.corrcoef(vals.T)
    # the median is the curve's estimate at the median time: S = 1/2 there
    model = within_arm_correlation(np.array([*true_s, 0.5]), np.ones(4))
    se_corr = (1 - model**2) / math.sqrt(reps)
    iu = np.triu_indices(4, 1)
    # 4 Monte Carlo se (and the asymptotic formula's own error at n = 80)
    assert np.all(np.abs(emp[iu] - model[iu]) < 4 * se_corr[iu] + 0.05)
    # the correlations are far from zero: treating them as independent would count patients again
    assert np.all(model[iu] > 0.3)


def _one_arm_tables(median, lo, hi, rates, n):
    arms = [
        {
            "arm_id": "a0",
            "line": "2L+",
            "n": n,
            "pfs_median_m": median,
            "pfs_median_lo": lo,
            "pfs_median_hi": hi,
            "uterine_fraction": 1.0,
        }
    ]
    return lms_tables(arms, [{"arm_id": "a0", "t": t, "rate": s} for t, s in rates])


def _spec(curve="loglogistic", correlated=True, shape="pooled", covariates=()):
    return parse_spec(
        {
            "name": "surv",
            "landmarks": [3, 6],
            "data": {"require_identifier": False},
            "model": {
                "likelihood": "survival",
                "curve": curve,
                "shape": shape,
                "covariates": list(covariates),
                "within_arm_correlation": correlated,
            },
            "random_effects": {"tau_by": "none"},
        }
    )


@pytest.mark.parametrize(
    "correlated, calibrated",
    [(True, True), pytest.param(False, False, marks=pytest.mark.slow)],  # each fits: 10 s
)
def test_median_and_rates_of_one_curve_are_counted_once(correlated, calibrated):
    """Arm-level intervals are calibrated only when the curve's correlation is used.

    One arm, n patients, reports its median (with the CI a paper gives) and its
    rates at 3 and 6 months from one simulated Kaplan-Meier curve. With the
    shape known and a flat prior, the arm's likelihood in eta (logit S at 6
    months) is a normal; the standardised errors of its mean must have sd 1.
    """
    from lmsbayes.model.observations import survival_observations

    rng = np.random.default_rng(7)
    n, median, k = 60, 5.0, 1.5
    eta_true = -k * math.log(6.0 / median)  # logit S(6) of a log-logistic curve with this median
    grid = np.array([3.0, 6.0])
    se_med = 2 / (k * math.sqrt(n))  # asymptotic se(log median) of a log-logistic KM median
    zs = []
    for _ in range(600):
        s, m = _km(_loglogistic_times(rng, n, median, k), grid)
        s = np.clip(s, 0.5 / n, 1 - 0.5 / n)
        tables = _one_arm_tables(
            m, m * math.exp(-1.96 * se_med), m * math.exp(1.96 * se_med), list(zip(grid, s)), n
        )
        obs, terms, _, _ = survival_observations(
            tables.arms, tables.rates, curve="loglogistic", t_ref=6.0, correlated=correlated
        )
        P = np.zeros((len(obs), len(obs)))
        P[terms["first"], terms["second"]] = terms["precision"]
        # the observations' means are linear in eta: rates eta - k log(t / 6), the median log 6 +
        # eta / k
        b = np.where(obs["kind"] == "median", 1 / k, 1.0)
        c = np.where(obs["kind"] == "median", math.log(6.0), -k * np.log(obs["t"] / 6.0))
        prec = b @ P @ b
        eta_hat = b @ P @ (obs["y"].to_numpy() - c) / prec
        zs.append((eta_hat - eta_true) * math.sqrt(prec))
    sd = float(np.std(zs))
    # the sd of standardised errors is 1 when the information is right (sampling error ~ 1/sqrt(2 *
    # 600) = 0.03)
    if calibrated:
        assert 0.88 < sd < 1.12
    else:
        assert sd > 1.12


@pytest.mark.parametrize("curve", ["loglogistic", "weibull"])
def test_median_likelihood_has_its_closed_form(curve):
    median, lo, hi, n = 6.5, 4.8, 8.9, 50
    tables = _one_arm_tables(median, lo, hi, [], n)
    spec = _spec(curve=curve)
    m = Model(spec, prepare_data(spec, tables))
    alpha, tau, k = 0.4, 0.6, 1.7
    got = Integrator(m).arm_loglik(
        {"alpha": np.array([alpha]), "tau": np.array([[tau]]), "shape": np.array([[k]])}
    )[0, 0]
    se = (math.log(hi) - math.log(lo)) / (2 * 1.959963984540054)
    if curve == "loglogistic":  # logit S(median) = 0: log m = log t_ref + eta / k
        mean = math.log(6.0) + alpha / k
    else:  # log(-log S(median)) = log log 2: log m = log t_ref + (log log 2 - eta) / k
        mean = math.log(6.0) + (math.log(LOG2) - alpha) / k
    expected = stats.norm.logpdf(math.log(median), mean, math.sqrt(se**2 + (tau / k) ** 2))
    assert got == pytest.approx(expected, abs=1e-10)


def _weibull_times(rng, n, median, k):
    return median * (-np.log(rng.uniform(size=n)) / LOG2) ** (1 / k)  # S(t) = exp(-log 2 (t / m)^k)


@pytest.mark.parametrize("curve, k", [("loglogistic", 1.5), ("weibull", 1.0), ("weibull", 2.0)])
def test_km_median_sd_is_the_asymptotic_one_the_model_uses(curve, k):
    """sd(log KM median) of n patients from a curve of shape k, by simulation, vs the model's se /
    k.

    The model gives a median without a CI the sd 2 / (k sqrt(n)) (log-logistic)
    or 1 / (k log 2 sqrt(n)) (Weibull); a fixed 1 / sqrt(n) is off by 25-45% in these cases.
    """
    from lmsbayes.model.observations import _se_log_median

    rng = np.random.default_rng(11)
    n, median, reps = 100, 6.0, 4000
    draw = _loglogistic_times if curve == "loglogistic" else _weibull_times
    logm = np.array([math.log(_km(draw(rng, n, median, k), np.zeros(0))[1]) for _ in range(reps)])
    se1, method, power = _se_log_median(math.nan, math.nan, math.nan, n, curve)
    assert (method, power) == ("n_approx", 1.0)
    model_sd = se1 / k**power
    # Monte Carlo se of an sd: sd / sqrt(2 reps) (1.1%); 4 of them, plus 4% for n = 100 not being
    # infinite
    assert abs(np.std(logm) / model_sd - 1) < 4 / math.sqrt(2 * reps) + 0.04
    assert (
        abs((1 / math.sqrt(n)) / np.std(logm) - 1) > 0.2
    )  # a fixed 1 / sqrt(n) would fail the check above


@pytest.mark.parametrize("curve", ["loglogistic", "weibull"])
def test_median_without_ci_has_the_shape_dependent_closed_form(curve):
    n, median = 50, 6.5
    tables = _one_arm_tables(median, math.nan, math.nan, [], n)
    spec = _spec(curve=curve)
    m = Model(spec, prepare_data(spec, tables))
    assert m.se_by_shape and m.data.obs["se_method"].tolist() == ["n_approx"]
    alpha, tau = 0.4, 0.6
    for k in (0.8, 1.7, 3.0):
        got = Integrator(m).arm_loglik(
            {"alpha": np.array([alpha]), "tau": np.array([[tau]]), "shape": np.array([[k]])}
        )[0, 0]
        if curve == "loglogistic":
            mean, se = math.log(6.0) + alpha / k, 2 / (k * math.sqrt(n))
        else:
            mean, se = math.log(6.0) + (math.log(LOG2) - alpha) / k, 1 / (k * LOG2 * math.sqrt(n))
        expected = stats.norm.logpdf(math.log(median), mean, math.sqrt(se**2 + (tau / k) ** 2))
        assert got == pytest.approx(expected, abs=1e-10)


def test_shape_dependent_sd_with_a_rate_matches_the_bivariate_normal():
    """Median without a CI + a rate with its CI: the arm's Gaussian is S^-1 Sigma S^-1, counted
    once."""
    from lmsbayes.model.derived import posterior_predictive

    n, median = 60, 5.0
    tables = _one_arm_tables(median, math.nan, math.nan, [(3.0, 0.7)], n)
    spec = _spec()
    m = Model(spec, prepare_data(spec, tables))
    obs = m.data.obs
    assert obs["kind"].tolist() == ["median", "rate"]
    eta, k = 0.3, 1.4
    rho = within_arm_correlation(np.array([0.5, 0.7]), np.ones(2))[0, 1]
    sd = np.array([2 / (k * math.sqrt(n)), 1 / math.sqrt(n * 0.7 * 0.3)])
    cov = np.outer(sd, sd) * np.array([[1, rho], [rho, 1]])
    mean = np.array([math.log(6.0) + eta / k, eta - k * math.log(3.0 / 6.0)])
    c = {
        "alpha": np.array([[eta]]),
        "beta": None,
        "tau": np.array([[[0.0]]]),
        "shape": np.array([[k]]),
    }
    terms = m.loglik_terms(NUMPY_OPS, np.array([[[eta]]]), c)
    got = float(np.sum(terms)) + m.constant()
    assert got == pytest.approx(
        stats.multivariate_normal.logpdf(obs["y"].to_numpy(), mean, cov), abs=1e-9
    )
    # the replicates have that covariance too (Monte Carlo: 4 se of a covariance entry at 20,000
    # draws)
    rng = np.random.default_rng(2)
    c_rep = {
        "alpha": np.full((1, 20000, 1), eta),
        "beta": None,
        "tau": np.zeros((1, 20000, 1, 1)),
        "shape": np.full((1, 20000, 1), k),
    }
    y = posterior_predictive(m, np.full((1, 20000, 1, 1), eta), c_rep, rng)[0]
    emp = np.cov(y.T)
    se_cov = np.sqrt((cov[0, 0] * cov[1, 1] + cov**2) / 20000)
    assert np.all(np.abs(emp - cov) < 4 * se_cov)


def _simulated_arms(curve: str, seed: int, n_arms: int = 60):
    """Arms from known curves: medians (with the CI a paper would give) and rates at some times."""
    rng = np.random.default_rng(seed)
    alpha, beta, k, tau = (
        (-0.2, -0.9, 1.6, 0.35) if curve == "loglogistic" else (0.1, 0.7, 1.3, 0.3)
    )
    arms, rates = [], []
    for i in range(n_arms):
        x = i % 2  # 'line': 2L+ for odd arms
        n = int(rng.integers(30, 120))
        eta = alpha + beta * x + tau * rng.standard_normal()
        u = rng.uniform(size=n)
        if curve == "loglogistic":  # logit S(t) = eta - k log(t / 6)
            t = 6.0 * (math.exp(eta) * (1 - u) / u) ** (1 / k)
            se_med = 2 / (k * math.sqrt(n))
        else:  # log(-log S(t)) = eta + k log(t / 6)
            t = 6.0 * (-np.log(u) / math.exp(eta)) ** (1 / k)
            se_med = 1 / (k * LOG2 * math.sqrt(n))
        grid = np.array([3.0, 6.0, 12.0])
        s, med = _km(t, grid)
        a = {"arm_id": f"a{i}", "line": "2L+" if x else "1L", "n": n, "uterine_fraction": 1.0}
        if i % 3 != 1:  # most arms report a median
            a.update(
                pfs_median_m=med,
                pfs_median_lo=med * math.exp(-1.96 * se_med),
                pfs_median_hi=med * math.exp(1.96 * se_med),
            )
        arms.append(a)
        for j, g in enumerate(grid):
            if (i + j) % 3 == 0 or i % 3 == 1:  # some rates; median-less arms give all three
                rates.append(
                    {
                        "arm_id": f"a{i}",
                        "t": float(g),
                        "rate": float(np.clip(s[j], 0.5 / n, 1 - 0.5 / n)),
                    }
                )
    return lms_tables(arms, rates), dict(alpha=alpha, beta=beta, shape=k, tau=tau)


@pytest.mark.parametrize("curve, seed", [("loglogistic", 11), ("weibull", 12)])
def test_recovery_of_known_curve_parameters(curve, seed):
    import lmsbayes

    tables, truth = _simulated_arms(curve, seed)
    spec = _spec(curve=curve, covariates=["line"])
    fit = lmsbayes.fit(spec, tables, engine="exact")
    assert fit.diagnostics.ok, fit.diagnostics.line()
    post = fit.posterior
    checks = {
        "alpha": post["alpha"],
        "beta": post["beta"].sel(covariate="line"),
        "shape": post["shape"],
        "tau": post["tau"],
    }
    for name, da in checks.items():
        lo, hi = np.quantile(da.values, [0.005, 0.995])
        assert lo < truth[name] < hi, (
            f"{name}: {truth[name]} outside 99% interval ({lo:.3f}, {hi:.3f})"
        )


def test_survival_never_rises_with_time_in_any_draw():
    import lmsbayes
    from lmsbayes.predict import Setting, predict

    tables, _ = _simulated_arms("loglogistic", 3, n_arms=20)
    fit = lmsbayes.fit(_spec(covariates=["line"]), tables, engine="exact")
    grid = [1.0, 2.0, 3.0, 4.5, 6.0, 9.0, 12.0, 18.0, 24.0]
    rate = predict(fit, [Setting("1L"), Setting("2L+")], grid)["rate"]
    for q in ("pooled", "predictive"):
        r = rate.sel(quantity=q).transpose("chain", "draw", "setting", "landmark").values
        assert np.all(np.diff(r, axis=-1) <= 0)
    # observed counts of one cohort never increase either
    obs = rate.sel(quantity="observed").transpose("chain", "draw", "setting", "landmark").values
    assert np.all(np.diff(obs, axis=-1) <= 0)
