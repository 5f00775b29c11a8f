"""The family registry and the survival curves, the log-normal one in particular.

Independent checks of the log-normal curve (probit S(t) = eta - k log(t / t_ref)):
- S(t) and the median against scipy.stats.lognorm (log T normal with mean
  log t_ref + eta / k and sd 1 / k);
- a rate's observation scale and binomial se against the delta method by
  finite differences of scipy's normal quantile;
- the median-as-data likelihood against its closed form, with a CI and
  without one (the Kaplan-Meier median's asymptotic sd at the curve);
- the Kaplan-Meier median's sd under log-normal times, by simulation;
- validation's pieces (the log Jacobian to the logit scale, logit S of a
  probit rate and its derivative) against finite differences;
- replicates of an arm's median and rate have the model's mean and
  covariance (Monte Carlo).
The exact engine's arm integral against scipy.integrate.quad and both
engines' joint log density at random points are in tests/test_engines.py
(spec ``survival-lognormal``), the closed-form coefficients against the
generic integral in tests/test_exact_kernels.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _synthetic import lms_tables
from scipy import stats

from lmsbayes.engines.exact import Integrator
from lmsbayes.model.definition import Model
from lmsbayes.model.derived import posterior_predictive
from lmsbayes.model.families import CURVES, FAMILIES, NUMPY_OPS, SurvivalCurve, get_family
from lmsbayes.model.observations import within_arm_correlation
from lmsbayes.model.prepare import prepare_data
from lmsbayes.spec import CURVES as SPEC_CURVES
from lmsbayes.spec import SpecError, load_spec, parse_spec

LN = get_family("survival", "lognormal")


def _one_arm(median, lo, hi, rates, n):
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
    return lms_tables(arms, [{"arm_id": "a0", "t": t, "rate": s, **ci} for t, s, ci in rates])


def _spec(curve="lognormal"):
    return parse_spec(
        {
            "name": "surv",
            "landmarks": [3, 6],
            "data": {"require_identifier": False},
            "model": {"likelihood": "survival", "curve": curve},
            "random_effects": {"tau_by": "none"},
        }
    )


# ---------------------------------------------------------------------------- the registry


def test_registry_maps_names_to_one_instance_each():
    assert set(FAMILIES) == {"logit-binomial", "logit-normal", "joint-cloglog", "survival"}
    assert set(CURVES) == {"loglogistic", "weibull", "lognormal"}
    assert get_family("survival", "lognormal") is CURVES["lognormal"]
    assert get_family("survival") is CURVES["loglogistic"] is FAMILIES["survival"]
    assert get_family("logit-binomial", "weibull") is FAMILIES["logit-binomial"]  # curve ignored
    for name, f in CURVES.items():
        assert isinstance(f, SurvivalCurve) and f.curve == name and f.name == "survival"


def test_registry_errors_list_the_valid_names():
    with pytest.raises(
        ValueError, match=r"expected one of \['loglogistic', 'weibull', 'lognormal'\]"
    ):
        get_family("survival", "gompertz")
    with pytest.raises(ValueError, match="expected one of .*'joint-cloglog'"):
        get_family("poisson")


def test_the_specs_curve_names_come_from_the_registry():
    assert list(SPEC_CURVES) == list(CURVES)
    with pytest.raises(SpecError, match="curve must be one of .*'lognormal'"):
        parse_spec({"name": "x", "model": {"likelihood": "survival", "curve": "gompertz"}})
    spec = load_spec("lognormal")
    assert spec.family is LN and spec.model.curve == "lognormal"


def test_the_model_data_carry_the_family_and_save_its_name():
    tables = _one_arm(6.5, 4.8, 8.9, [], 50)
    data = prepare_data(_spec(), tables)
    assert data.family is LN
    ds = data.to_xarray()
    assert (ds.attrs["family"], ds.attrs["curve"]) == ("survival", "lognormal")
    assert type(data).from_xarray(ds).family is LN


# ---------------------------------------------------------------------------- the log-normal curve


@pytest.mark.parametrize("eta, k, t", [(0.3, 1.2, 3.0), (-0.8, 0.7, 14.0), (1.5, 2.5, 6.0)])
def test_lognormal_rate_and_median_are_scipys_lognormal(eta, k, t):
    t_ref = 6.0
    dist = stats.lognorm(s=1 / k, scale=t_ref * math.exp(eta / k))
    assert float(LN.rate_at(eta, t, k, t_ref)) == pytest.approx(dist.sf(t), rel=1e-12)
    assert math.exp(LN.log_median(eta, k, math.log(t_ref))) == pytest.approx(
        dist.median(), rel=1e-12
    )
    # the mean on each observation's scale: probit of the rate, log of the median
    mu = LN.mean(
        NUMPY_OPS,
        np.array([eta, eta]),
        k,
        np.array([0.0, 1.0]),
        np.log([t / t_ref, 1.0]),
        math.log(t_ref),
    )
    assert mu[0] == pytest.approx(stats.norm.ppf(dist.sf(t)), abs=1e-10)
    assert mu[1] == pytest.approx(math.log(dist.median()), abs=1e-12)


def test_lognormal_rate_scale_and_binomial_se_are_the_delta_method():
    for s, n in ((0.3, 40), (0.75, 120), (0.05, 200)):
        assert float(LN.to_scale(s)) == pytest.approx(stats.norm.ppf(s), abs=1e-12)
        assert float(LN.rate_of_scale(LN.to_scale(s))) == pytest.approx(s, abs=1e-14)
        h = 1e-6
        dprobit_ds = (stats.norm.ppf(s + h) - stats.norm.ppf(s - h)) / (2 * h)
        se_rate = math.sqrt(s * (1 - s) / n)
        se_logit = 1 / math.sqrt(n * s * (1 - s))
        assert LN.se_from_logit(s, se_logit) == pytest.approx(dprobit_ds * se_rate, rel=1e-7)


def test_lognormal_rate_observation_has_its_closed_form():
    """One arm, one rate with a CI: probit(rate) ~ Normal(alpha - k log(t / 6), se^2 + tau^2)."""
    rate, lo, hi, t = 0.62, 0.48, 0.74, 4.0
    tables = _one_arm(math.nan, math.nan, math.nan, [(t, rate, {"lo": lo, "hi": hi})], 60)
    m = Model(_spec(), prepare_data(_spec(), tables))
    assert m.data.obs["se_method"].tolist() == ["rate_ci"]
    alpha, tau, k = 0.2, 0.5, 1.3
    got = Integrator(m).arm_loglik(
        {"alpha": np.array([alpha]), "tau": np.array([[tau]]), "shape": np.array([[k]])}
    )[0, 0]
    se = (stats.norm.ppf(hi) - stats.norm.ppf(lo)) / (2 * stats.norm.ppf(0.975))
    mean = alpha - k * math.log(t / 6.0)
    expected = stats.norm.logpdf(stats.norm.ppf(rate), mean, math.hypot(se, tau))
    assert got == pytest.approx(expected, abs=1e-10)


def test_lognormal_median_likelihood_has_its_closed_form():
    """A median with a CI: log m ~ Normal(log 6 + alpha / k, se^2 + (tau / k)^2)."""
    median, lo, hi, n = 6.5, 4.8, 8.9, 50
    m = Model(_spec(), prepare_data(_spec(), _one_arm(median, lo, hi, [], n)))
    alpha, tau, k = 0.4, 0.6, 1.7
    got = Integrator(m).arm_loglik(
        {"alpha": np.array([alpha]), "tau": np.array([[tau]]), "shape": np.array([[k]])}
    )[0, 0]
    se = (math.log(hi) - math.log(lo)) / (2 * stats.norm.ppf(0.975))
    mean = math.log(6.0) + alpha / k
    expected = stats.norm.logpdf(math.log(median), mean, math.sqrt(se**2 + (tau / k) ** 2))
    assert got == pytest.approx(expected, abs=1e-10)


def test_lognormal_median_without_ci_has_the_shape_dependent_closed_form():
    """sd(log KM median) = 1 / (2 sqrt(n) f(m) m) = sqrt(2 pi) / (2 k sqrt(n)) under a log-normal
    curve."""
    n, median = 50, 6.5
    m = Model(_spec(), prepare_data(_spec(), _one_arm(median, math.nan, math.nan, [], n)))
    assert m.se_by_shape and m.data.obs["se_method"].tolist() == ["n_approx"]
    alpha, tau = 0.4, 0.6
    for k in (0.6, 1.1, 2.4):
        got = Integrator(m).arm_loglik(
            {"alpha": np.array([alpha]), "tau": np.array([[tau]]), "shape": np.array([[k]])}
        )[0, 0]
        se = math.sqrt(2 * math.pi) / (2 * k * math.sqrt(n))
        mean = math.log(6.0) + alpha / k
        expected = stats.norm.logpdf(math.log(median), mean, math.sqrt(se**2 + (tau / k) ** 2))
        assert got == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("k", [0.8, 1.6])
def test_km_median_sd_under_lognormal_times_is_the_one_the_model_uses(k):
    from lmsbayes.model.observations import _se_log_median

    rng = np.random.default_rng(21)
    n, median, reps = 100, 6.0, 4000
    times = median * np.exp(rng.standard_normal((reps, n)) / k)
    logm = np.log(np.sort(times, axis=1)[:, n // 2 - 1])  # uncensored KM median: first S <= 1/2
    se1, method, power = _se_log_median(math.nan, math.nan, math.nan, n, "lognormal")
    assert (method, power) == ("n_approx", 1.0)
    # Monte Carlo se of an sd: sd / sqrt(2 reps) (1.1%); 4 of them, plus 4% for n = 100 not being
    # infinite
    assert abs(np.std(logm) / (se1 / k) - 1) < 4 / math.sqrt(2 * reps) + 0.04


def test_lognormal_validation_pieces_against_finite_differences():
    c = np.array([-1.7, -0.2, 0.4, 2.1])
    h = 1e-6
    logit = lambda x: stats.norm.logcdf(x) - stats.norm.logsf(x)  # noqa: E731
    dlogit = (logit(c + h) - logit(c - h)) / (2 * h)
    np.testing.assert_allclose(LN.log_jacobian_to_logit(c), -np.log(dlogit), rtol=1e-7)
    value, slope = LN.logit_of_scale(c)
    np.testing.assert_allclose(value, logit(c), rtol=1e-12)
    np.testing.assert_allclose(slope, dlogit, rtol=1e-7)
    # the rate's scale rises with S: no observation's PIT or interval is flipped (Weibull's rates
    # are)
    a = {"is_median": np.array([0.0, 1.0, 0.0])}
    assert not LN.falls_with_rate(a, np.arange(3)).any()
    np.testing.assert_array_equal(LN.rate_rows(a, np.arange(3)), [True, False, True])
    np.testing.assert_array_equal(
        get_family("survival", "weibull").falls_with_rate(a, np.arange(3)), [True, False, True]
    )


def test_lognormal_replicates_have_the_models_mean_and_covariance():
    """posterior_predictive (the family's simulate): a median without a CI and a rate, 20,000
    draws."""
    n, median = 60, 5.0
    tables = _one_arm(median, math.nan, math.nan, [(3.0, 0.7, {})], n)
    m = Model(_spec(), prepare_data(_spec(), tables))
    obs = m.data.obs
    assert obs["kind"].tolist() == ["median", "rate"]
    eta, k = 0.3, 1.4
    assert m.data.family.sign == 1.0  # probit rises with S: the rate correlates positively

    r = within_arm_correlation(np.array([0.5, 0.7]), np.ones(2))[0, 1]
    sd = np.array(
        [
            math.sqrt(2 * math.pi) / (2 * k * math.sqrt(n)),
            math.sqrt(0.7 * 0.3 / n) / stats.norm.pdf(stats.norm.ppf(0.7)),
        ]
    )
    cov = np.outer(sd, sd) * np.array([[1, r], [r, 1]])
    mean = np.array([math.log(6.0) + eta / k, eta - k * math.log(3.0 / 6.0)])
    c = {
        "alpha": np.array([[eta]]),
        "beta": None,
        "tau": np.array([[[0.0]]]),
        "shape": np.array([[k]]),
    }
    got = float(np.sum(m.loglik_terms(NUMPY_OPS, np.array([[[eta]]]), c))) + m.constant()
    assert got == pytest.approx(
        stats.multivariate_normal.logpdf(obs["y"].to_numpy(), mean, cov), abs=1e-9
    )
    rng = np.random.default_rng(5)
    D = 20000
    c_rep = {"shape": np.full((1, D, 1), k)}
    y = posterior_predictive(m, np.full((1, D, 1, 1), eta), c_rep, rng)[0]
    se_mean = np.sqrt(np.diag(cov) / D)
    np.testing.assert_array_less(np.abs(y.mean(0) - mean), 4 * se_mean)
    emp = np.cov(y.T)
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / D)
    np.testing.assert_array_less(np.abs(emp - cov), 4 * se_cov)


@pytest.mark.parametrize(
    "likelihood, curve",
    [("survival", "loglogistic"), ("survival", "weibull"), ("logit-binomial", "")],
)
def test_rate_links_are_the_rates_on_the_effect_link_scale(likelihood, curve):
    """A curve's direct linear form equals its rates transformed by its effect link."""
    fam = get_family(likelihood, curve)
    name = curve or likelihood
    rng = np.random.default_rng(3)
    # rates kept away from 0 and 1, where the transformed rates lose their digits
    eta = rng.normal(0.0, 0.7, size=(50, 4, 1))
    shape = rng.uniform(0.5, 2.0, size=(50, 4))
    lm = [1.5, 3.0, 6.0, 12.0]
    fitted = [] if name == "logit-binomial" else [6.0]
    got = fam.rate_links(eta, lm if fitted else [], fitted, shape, 6.0)
    rate = fam.rates(eta, lm if fitted else [], fitted, shape, 6.0)
    want = np.log(rate) - np.log1p(-rate) if fam.effect_link == "logit" else np.log(-np.log(rate))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    if name == "loglogistic":  # logit S(t) = logit S(t_ref) - k log(t / t_ref), by hand
        by_hand = eta[..., :1] - shape[..., None] * np.log(np.array(lm) / 6.0)
        np.testing.assert_allclose(got, by_hand, rtol=1e-12)
