"""Predictions and thresholds, checked against the fit's raw posterior draws."""

from __future__ import annotations

import numpy as np
import pytest

from lmsbayes.predict import (
    EORTC2021,
    Setting,
    comparisons,
    landmark_order,
    predict,
    standard_settings,
    threshold_table,
    thresholds,
)


def _expit(x):
    return 1 / (1 + np.exp(-x))


def test_pooled_rate_equals_raw_draw_computation(default_fit):
    """pooled = logistic(alpha + x beta), recomputed by hand from the posterior arrays."""
    post = default_fit.posterior
    s = Setting("2L+", "NR-T", 1.0, "x")
    got = predict(default_fit, [s], [6.0])["rate"].sel(setting="x", landmark=6.0, quantity="pooled").values
    a = post["alpha"].sel(landmark=6.0).values
    b = post["beta"].sel(landmark=6.0)
    # covariates of the default spec: line, nrt, line:nrt, uterine (centred at 0.5)
    eta = (a + b.sel(covariate="line").values + b.sel(covariate="nrt").values
           + b.sel(covariate="line:nrt").values + 0.5 * b.sel(covariate="uterine").values)  # fmt: skip
    np.testing.assert_allclose(got, _expit(eta), rtol=1e-12)


def test_predictive_spread_matches_tau(default_fit):
    """logit(predictive) - logit(pooled) ~ N(0, tau[stratum]) per draw: its variance is E[tau^2]."""
    s = Setting("1L", "R-T", 0.5, "x")
    rate = predict(default_fit, [s], [3.0])["rate"].sel(setting="x", landmark=3.0)
    lg = lambda p: np.log(p / (1 - p))  # noqa: E731
    diff = (lg(rate.sel(quantity="predictive")) - lg(rate.sel(quantity="pooled"))).values.ravel()
    tau = default_fit.posterior["tau"].sel(stratum="1L", landmark=3.0).values.ravel()
    expected = np.mean(tau**2)
    # Monte Carlo standard error of a variance estimate from m draws of a normal scale mixture
    se = np.sqrt(np.var(tau**2 * np.random.default_rng(0).standard_normal(tau.size) ** 2) / tau.size)
    assert abs(diff.var() - expected) < 5 * se


def test_thresholds_p1_is_p0_to_the_hr_per_draw(default_fit):
    ds = thresholds(default_fit, hr=[0.65, 0.5])
    for h in (0.65, 0.5):
        # to rounding: numpy takes a sqrt fast path for a scalar exponent of 0.5
        np.testing.assert_allclose(ds["p1"].sel(hr=h).values, ds["p0"].values ** h, rtol=1e-14, atol=0)
    # summaries are the quantiles of those draws
    sel = dict(setting="2L+ R-T", landmark=6.0)
    draws = ds["p0"].sel(sel).values.ravel()
    assert float(ds["p0_median"].sel(sel)) == pytest.approx(np.median(draws))
    assert float(ds["p0_lower"].sel(sel)) == pytest.approx(np.quantile(draws, 0.025))
    assert ds.attrs["reference"] == "pooled"


def test_predictive_reference_is_wider(default_fit):
    pooled = thresholds(default_fit, reference="pooled")
    pred = thresholds(default_fit, reference="predictive")
    width = lambda d: (d["p0_upper"] - d["p0_lower"]).values  # noqa: E731
    assert np.all(width(pred) > width(pooled))


def test_threshold_table_has_eortc_columns(default_fit):
    table = threshold_table(thresholds(default_fit))
    assert len(table) == len(standard_settings()) * 2
    row = table[(table.setting == "2L+ R-T") & (table.landmark == 6.0)].iloc[0]
    assert row.eortc_p0 == EORTC2021.loc[("2L+", 6.0), "pooled"] == 0.28
    assert row.eortc_p1 == pytest.approx(0.28**0.65)  # 0.44 in the paper
    assert 0 < row.p0_lower < row.p0 < row.p0_upper < 1


def test_comparisons_are_probabilities(default_fit):
    c = comparisons(default_fit)
    assert set(c.comparison) == {"NR-T - R-T", "uterine - non-uterine"}
    assert c.prob_positive.between(0, 1).all()
    assert (c.lower < c.difference).all() and (c.difference < c.upper).all()


def test_comparisons_equal_raw_draw_computation(default_fit):
    """uterine - non-uterine (2L+ R-T) and NR-T - R-T (1L, uterine 0.5), by hand from alpha and beta."""
    post = default_fit.posterior
    c = comparisons(default_fit).set_index(["line", "landmark", "comparison"])
    for t in (3.0, 6.0):
        a = post["alpha"].sel(landmark=t).values
        b = {k: post["beta"].sel(landmark=t, covariate=k).values for k in ("line", "nrt", "line:nrt", "uterine")}
        # 2L+ R-T: line = 1, nrt = 0; uterine effect centred at 0.5
        uterine = _expit(a + b["line"] + 0.5 * b["uterine"]) - _expit(a + b["line"] - 0.5 * b["uterine"])
        # 1L at uterine fraction 0.5: line = 0, so the interaction is 0
        nrt = _expit(a + b["nrt"]) - _expit(a)
        for line, label, d in (("2L+", "uterine - non-uterine", uterine.ravel()), ("1L", "NR-T - R-T", nrt.ravel())):
            row = c.loc[(line, t, label)]
            assert row.difference == pytest.approx(d.mean(), rel=1e-10)
            assert row.lower == pytest.approx(np.quantile(d, 0.025), rel=1e-10)
            assert row.upper == pytest.approx(np.quantile(d, 0.975), rel=1e-10)
            assert row.prob_positive == pytest.approx((d > 0).mean())


def test_landmark_order_equals_raw_draw_computation(default_fit):
    """P(S(6) > S(3)) per setting, by hand from alpha and beta (landmarks fitted independently)."""
    post = default_fit.posterior
    order = landmark_order(default_fit).set_index("setting")
    assert list(order.index) == [s.label for s in standard_settings(["1L", "2L+"])]
    assert (order.earlier == 3.0).all() and (order.later == 6.0).all()

    def pooled(t, line, nrt, uterine_centred):
        a = post["alpha"].sel(landmark=t).values
        b = {k: post["beta"].sel(landmark=t, covariate=k).values for k in ("line", "nrt", "line:nrt", "uterine")}
        return _expit(a + line * b["line"] + nrt * b["nrt"] + line * nrt * b["line:nrt"] + uterine_centred * b["uterine"])

    # 2L+ non-uterine: line 1, R-T, uterine fraction 0 (centred: -0.5); 1L NR-T at fraction 0.5
    for label, x in (("2L+ non-uterine", (1, 0, -0.5)), ("1L NR-T", (0, 1, 0.0))):
        by_hand = (pooled(6.0, *x) > pooled(3.0, *x)).mean()
        assert order.loc[label, "prob_later_higher"] == pytest.approx(by_hand, abs=1e-12)
    # independent landmarks do break the order on these data (the check can fail)
    assert order.prob_later_higher.max() > 0.05


def test_landmark_order_rejects_other_quantities(default_fit):
    with pytest.raises(ValueError, match="quantity must be"):
        landmark_order(default_fit, quantity="observed")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(landmarks=[12.0]), "landmark 12 months was not fitted"),
        (dict(settings=[Setting("2L+")], hr=[1.5]), "hr must be in"),
        (dict(reference="median"), "reference must be"),
    ],
)
def test_settings_outside_the_data_are_errors(default_fit, kwargs, match):
    with pytest.raises(ValueError, match=match):
        thresholds(default_fit, **kwargs)


@pytest.mark.parametrize(
    ("args", "match"),
    [(("2L",), "line must be one of"), (("1L", "RT"), "treatment_class must be"), (("1L", "R-T", 1.2), "uterine")],
)
def test_bad_setting(args, match):
    with pytest.raises(ValueError, match=match):
        Setting(*args)


def test_line_not_in_fitted_data_is_an_error(default_fit):
    """A fit of first-line arms only cannot predict for 2L+ (no extrapolation)."""
    from types import SimpleNamespace

    from lmsbayes.predict import _check_settings

    first_line = default_fit.data.arms[default_fit.data.arms["line"] == "1L"]
    fit_1l = SimpleNamespace(spec=default_fit.spec,
                             data=SimpleNamespace(arms=first_line, landmarks=default_fit.data.landmarks))  # fmt: skip
    _check_settings(fit_1l, [Setting("1L")], [6.0])  # fine
    with pytest.raises(ValueError, match="line '2L\\+' is not in the fitted data"):
        _check_settings(fit_1l, [Setting("2L+")], [6.0])
