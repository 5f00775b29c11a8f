"""Predictions and thresholds, checked against the fit's raw posterior draws."""

from __future__ import annotations

import numpy as np
import pandas as pd
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


@pytest.fixture(scope="module")
def per_landmark_fit(trials):
    """The 0.1 default's per-landmark structure.

    Logit-normal: the exact engine's fast Gaussian path.
    """
    import lmsbayes

    return lmsbayes.fit(
        lmsbayes.load_spec("per_landmark").replace(**{"model.likelihood": "logit-normal"}), trials
    )


def _logit_pooled(post, t, line, nrt, uterine_centred):
    """Pooled logit S(t) of the default log-logistic model, by hand from the posterior arrays."""
    a = post["alpha"].values
    b = {k: post["beta"].sel(covariate=k).values for k in ("line", "nrt", "line:nrt", "uterine")}
    k = post["shape"].sel(shape_group="all").values
    eta = (
        a
        + line * b["line"]
        + nrt * b["nrt"]
        + line * nrt * b["line:nrt"]
        + uterine_centred * b["uterine"]
    )
    return eta - k * np.log(t / 6.0)


def test_pooled_rate_equals_raw_draw_computation(default_fit):
    """pooled S(t) = logistic(alpha + x beta - k log(t / 6)) at any t.

    By hand from the posterior arrays.
    """
    post = default_fit.posterior
    s = Setting("2L+", "NR-T", 1.0, "x")
    for t in (3.0, 6.0, 9.0, 24.0):
        got = (
            predict(default_fit, [s], [t])["rate"]
            .sel(setting="x", landmark=t, quantity="pooled")
            .values
        )
        np.testing.assert_allclose(got, _expit(_logit_pooled(post, t, 1, 1, 0.5)), rtol=1e-12)


def test_predictive_spread_matches_tau(default_fit):
    """logit(predictive) - logit(pooled) ~ N(0, tau[stratum]) per draw: its variance is E[tau^2]."""
    s = Setting("1L", "R-T", 0.5, "x")
    rate = predict(default_fit, [s], [3.0])["rate"].sel(setting="x", landmark=3.0)
    lg = lambda p: np.log(p / (1 - p))  # noqa: E731
    diff = (lg(rate.sel(quantity="predictive")) - lg(rate.sel(quantity="pooled"))).values.ravel()
    tau = default_fit.posterior["tau"].sel(stratum="1L").values.ravel()
    expected = np.mean(tau**2)
    # Monte Carlo standard error of a variance estimate from m draws of a normal scale mixture
    se = np.sqrt(
        np.var(tau**2 * np.random.default_rng(0).standard_normal(tau.size) ** 2) / tau.size
    )
    assert abs(diff.var() - expected) < 5 * se


def test_case_mix_row_is_the_mean_over_the_lines_arms(default_fit):
    """The EORTC-comparable row.

    The pooled rate at each included arm's covariates, averaged over the arms.
    """
    post = default_fit.posterior
    d = default_fit.data
    got = (
        predict(default_fit, [Setting.standardised("2L+")], [6.0])["rate"]
        .sel(quantity="pooled")
        .values[..., 0, 0]
    )
    arms = np.flatnonzero(d.arms["line"].to_numpy() == "2L+")
    u = np.broadcast_to(
        d.arms["uterine_fraction"].to_numpy(float), (1, post.sizes["draw"], d.n_arms)
    ).copy()
    u[..., d.latent] = post["uterine_latent"].transpose("chain", "draw", "arm_latent").values
    rates = []
    for i in arms:
        x_nrt = float(d.arms["treatment_class"].iloc[i] == "NR-T")
        rates.append(_expit(_logit_pooled(post, 6.0, 1, x_nrt, u[..., i] - 0.5)))
    np.testing.assert_allclose(got, np.mean(rates, axis=0), rtol=1e-10)


def test_thresholds_p1_is_p0_to_the_hr_per_draw(default_fit):
    ds = thresholds(default_fit, hr=[0.65, 0.5])
    for h in (0.65, 0.5):
        # to rounding: numpy takes a sqrt fast path for a scalar exponent of 0.5
        np.testing.assert_allclose(
            ds["p1"].sel(hr=h).values, ds["p0"].values ** h, rtol=1e-14, atol=0
        )
    # summaries are integrated over the exact engine's rule (lmsbayes.integrated), not read off
    # the draws: they agree with the draws' quantiles within the draws' Monte Carlo error
    # (4000 draws: sd of a median ~ 0.003 here), and p1's are p0's raised to HR
    sel = dict(setting="2L+ R-T", landmark=6.0)
    draws = ds["p0"].sel(sel).values.ravel()
    assert float(ds["p0_median"].sel(sel)) == pytest.approx(np.median(draws), abs=0.012)
    assert float(ds["p0_lower"].sel(sel)) == pytest.approx(np.quantile(draws, 0.025), abs=0.012)
    assert float(ds["p1_lower"].sel(**sel, hr=0.5)) == pytest.approx(
        float(ds["p0_lower"].sel(sel)) ** 0.5, rel=1e-12
    )
    assert ds.attrs["reference"] == "pooled"
    # every quantile carries its Monte Carlo standard error: small, positive
    mcse = ds["p0_median_mcse"].sel(sel).values
    assert 0 < mcse < 0.01


@pytest.mark.slow
def test_predictive_reference_is_wider(default_fit):
    pooled = thresholds(default_fit, reference="pooled")
    pred = thresholds(default_fit, reference="predictive")
    width = lambda d: (d["p0_upper"] - d["p0_lower"]).values  # noqa: E731
    assert np.all(width(pred) > width(pooled))


def test_threshold_table_has_eortc_columns_on_the_comparable_rows_only(default_fit):
    table = threshold_table(thresholds(default_fit))
    assert len(table) == len(standard_settings()) * 2
    row = table[(table.setting == "2L+ case mix") & (table.landmark == 6.0)].iloc[0]
    assert row.eortc_p0 == EORTC2021.loc[("2L+", 6.0), "pooled"] == 0.28
    assert row.eortc_p1 == pytest.approx(0.28**0.65)  # 0.44 in the paper
    assert 0 < row.p0_lower < row.p0 < row.p0_upper < 1
    other = table[table.setting == "2L+ R-T"]
    assert other.eortc_p0.isna().all()
    assert (table.description != "").all()


def test_rows_state_their_evidence_and_flags(default_fit):
    table = threshold_table(thresholds(default_fit, landmarks=[6.0, 24.0]), fit=default_fit)
    assert {"arms", "patients", "rates_reported", "medians", "sd_ratio", "flags"} <= set(
        table.columns
    )
    by = table.set_index(["setting", "landmark"])
    # 1L R-T rests on one arm of these data
    assert "rests on 1 arm" in by.loc[("1L R-T", 6.0), "flags"]
    assert by.loc[("1L R-T", 6.0), "arms"] == 1
    # 24 months lies beyond every reported rate or median of 2L+
    assert "beyond the latest 2L+" in by.loc[("2L+ case mix", 24.0), "flags"]
    # the data narrow the prior of a well-covered cell
    assert 0 < by.loc[("2L+ R-T uterine", 6.0), "sd_ratio"] < 0.5
    # a flag's count is the evidence columns' count (an arm of unknown site is not "1 arm")
    for (setting, _t), r in by.iterrows():
        if "rests on 1 arm" in r["flags"] and "of known site" not in r["flags"]:
            assert (r["arms"], r["arms_unknown_site"]) == (1, 0), setting
        if "of known site" in r["flags"]:
            assert (
                f"rests on {r['arms']} arm" in r["flags"]
                and f"+{r['arms_unknown_site']} of unknown" in r["flags"]
            )


def test_rows_of_any_setting_state_their_own_evidence(default_fit):
    from lmsbayes.coverage import SITE_TOLERANCE, setting_evidence

    arms = default_fit.data.arms
    u = arms["uterine_fraction"]
    lms04 = Setting(
        "1L", "R-T", 34 / 76, name="1L R-T, LMS-04 case mix"
    )  # not a label of the standard table
    pre = Setting("2L+", name="pre-treated, any", case_mix="2L+")
    table = threshold_table(
        thresholds(default_fit, [lms04, pre], landmarks=[6.0]), fit=default_fit
    ).set_index("setting")
    row = table.loc[lms04.label]
    # counted from the arm table: same line and class, uterine fraction within the tolerance
    cell = (
        (arms["line"] == "1L")
        & (arms["treatment_class"] == "R-T")
        & ((u - 34 / 76).abs() <= SITE_TOLERANCE)
    )
    assert row.arms == cell.sum() == 1 < len(arms)
    assert row.patients == pd.to_numeric(arms.loc[cell, "n"]).sum()
    assert (
        row.arms_unknown_site
        == ((arms["line"] == "1L") & (arms["treatment_class"] == "R-T") & u.isna()).sum()
    )
    assert "rests on 1 arm" in row["flags"]
    assert 0 < row.sd_ratio < 1
    # a case mix under another name: every included arm of the line
    assert table.loc[pre.label, "arms"] == (arms["line"] == "2L+").sum()
    with pytest.raises(ValueError, match="unknown setting 'no such setting'"):
        setting_evidence(default_fit, ["no such setting"], [6.0])


def test_rows_keep_a_settings_own_covariate_values(trials):
    import lmsbayes as lb

    fit = lb.fit("time_trend", trials)
    own = Setting("2L+", "R-T", 1.0, name="2L+ uterine, a 2035 trial", year=2035)
    row = threshold_table(thresholds(fit, [own], landmarks=[6.0]), fit=fit).iloc[0]
    assert "extrapolated: year 2035 outside the included arms'" in row["flags"]
    # the same setting with the year given through at=
    via_at = threshold_table(
        thresholds(
            fit,
            [Setting("2L+", "R-T", 1.0, name="2L+ uterine")],
            landmarks=[6.0],
            at={"year": 2035},
        ),
        fit=fit,
    ).iloc[0]
    assert via_at["flags"] == row["flags"] and via_at["arms"] == row["arms"]
    assert via_at["sd_ratio"] == pytest.approx(row["sd_ratio"])


def test_comparisons_are_probabilities(default_fit):
    c = comparisons(default_fit)
    assert set(c.comparison) == {"NR-T - R-T", "uterine - non-uterine"}
    assert c.prob_positive.between(0, 1).all()
    assert (c.lower < c.difference).all() and (c.difference < c.upper).all()


def test_comparisons_equal_raw_draw_computation(default_fit):
    """uterine - non-uterine (2L+ R-T) and NR-T - R-T (1L, uterine 0.5).

    By hand from alpha, beta and k.
    """
    post = default_fit.posterior
    c = comparisons(default_fit).set_index(["line", "landmark", "comparison"])
    for t in (3.0, 6.0):
        uterine = _expit(_logit_pooled(post, t, 1, 0, 0.5)) - _expit(
            _logit_pooled(post, t, 1, 0, -0.5)
        )
        nrt = _expit(_logit_pooled(post, t, 0, 1, 0.0)) - _expit(_logit_pooled(post, t, 0, 0, 0.0))
        for line, label, d in (
            ("2L+", "uterine - non-uterine", uterine.ravel()),
            ("1L", "NR-T - R-T", nrt.ravel()),
        ):
            row = c.loc[(line, t, label)]
            assert row.difference == pytest.approx(d.mean(), rel=1e-10)
            assert row.lower == pytest.approx(np.quantile(d, 0.025), rel=1e-10)
            assert row.upper == pytest.approx(np.quantile(d, 0.975), rel=1e-10)
            assert row.prob_positive == pytest.approx((d > 0).mean())


def test_landmark_order_holds_in_every_draw_of_the_default(default_fit):
    order = landmark_order(default_fit, standard_settings(["1L", "2L+"]))
    assert (order.prob_later_higher == 0).all()


def test_landmark_order_equals_raw_draw_computation(per_landmark_fit):
    """P(S(6) > S(3)) per setting, by hand from alpha and beta (landmarks fitted independently)."""
    post = per_landmark_fit.posterior
    settings = standard_settings(["1L", "2L+"], case_mix=False)
    order = landmark_order(per_landmark_fit, settings).set_index("setting")
    assert list(order.index) == [s.label for s in settings]
    assert (order.earlier == 3.0).all() and (order.later == 6.0).all()

    def pooled(t, line, nrt, uterine_centred):
        a = post["alpha"].sel(landmark=t).values
        b = {
            k: post["beta"].sel(landmark=t, covariate=k).values
            for k in ("line", "nrt", "line:nrt", "uterine")
        }
        return _expit(
            a
            + line * b["line"]
            + nrt * b["nrt"]
            + line * nrt * b["line:nrt"]
            + uterine_centred * b["uterine"]
        )

    for label, x in (("2L+ R-T non-uterine", (1, 0, -0.5)), ("1L NR-T", (0, 1, 0.0))):
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
        (dict(landmarks=[150.0]), "beyond 10 years"),
        (dict(settings=[Setting("2L+")], hr=[1.5]), "hr must be in"),
        (dict(reference="median"), "reference must be"),
    ],
)
def test_settings_outside_the_data_are_errors(default_fit, kwargs, match):
    with pytest.raises(ValueError, match=match):
        thresholds(default_fit, **kwargs)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("2L",), "line must be one of"),
        (("1L", "RT"), "treatment_class must be"),
        (("1L", "R-T", 1.2), "uterine"),
    ],
)
def test_bad_setting(args, match):
    with pytest.raises(ValueError, match=match):
        Setting(*args)


def test_per_landmark_model_cannot_give_another_landmark(per_landmark_fit):
    with pytest.raises(ValueError, match="landmark 12 months was not fitted"):
        thresholds(per_landmark_fit, landmarks=[12.0])


def test_line_not_in_fitted_data_is_an_error(trials):
    """A fit of first-line arms only cannot predict for 2L+ (no extrapolation)."""
    import lmsbayes

    spec = lmsbayes.load_spec("default").replace(
        **{"data.lines": ("1L",), "model.covariates": ("nrt",), "random_effects.tau_by": "none"}
    )
    fit_1l = lmsbayes.fit(spec, trials)
    predict(fit_1l, [Setting("1L")], [6.0])  # fine
    with pytest.raises(ValueError, match="line '2L\\+' is not in the fitted data"):
        predict(fit_1l, [Setting("2L+")], [6.0])


def test_printed_threshold_table_shows_every_column_whole(default_fit):
    table = threshold_table(thresholds(default_fit), fit=default_fit)
    text = repr(table)
    header = text.splitlines()[0]
    # the readable view: rates as percentages with CrIs, evidence in words, flags whole
    for column in ("setting", "landmark", "p0 (95% CrI)", "p1 = p0^0.65", "informed by", "flags"):
        assert column in header
    assert "..." not in text and "58% (50-66)" in text
    assert "<table" in table._repr_html_() and "informed by" in table._repr_html_()
    assert {"p0_lower", "p0_mcse", "arm_ids"} <= set(table.columns)  # the numbers stay columns
    assert type(table.head()).__name__ == "ThresholdTable"  # slicing keeps the readable view


def test_the_python_table_carries_evidence_flags_and_arm_ids(default_fit):
    """threshold_table(thresholds(fit)) without the fit: the CLI's evidence, flags and arm ids."""
    from lmsbayes.predict import threshold_table, thresholds

    table = threshold_table(thresholds(default_fit, landmarks=[6]))
    for col in ("arms", "patients", "sd_ratio", "flags", "informed_by", "arm_ids"):
        assert col in table, col
    arms = default_fit.data.arms
    u = arms["uterine_fraction"].to_numpy(float)
    by_hand = arms.index[
        (arms["line"] == "1L").to_numpy()
        & (arms["treatment_class"] == "NR-T").to_numpy()
        & (np.abs(u - 0.5) <= 0.25)
    ]
    row = table.set_index("setting").loc["1L NR-T"]
    assert row["arm_ids"].split(", ") == list(by_hand) and row["arms"] == len(by_hand)
    assert row["informed_by"].startswith(f"direct: {len(by_hand)} arms in this cell")
    rt = table.set_index("setting").loc["2L+ R-T"]
    assert rt["arms"] == 0 and rt["informed_by"].startswith("model-based: no arm in this cell")
    text = repr(table)
    assert "model-based" in text and "direct" in text and "%" in text


def test_at_applies_to_every_row_or_the_row_says_why_not(trials):
    """`--at year=2026` moves the class and site rows.

    The case-mix rows say why they do not move.
    """
    import lmsbayes

    fit = lmsbayes.fit("time_trend", trials)
    at = threshold_table(thresholds(fit, landmarks=[6], at={"year": 2026}))
    plain = threshold_table(thresholds(fit, landmarks=[6], at={"year": 2015}))
    a, p = at.set_index("setting"), plain.set_index("setting")
    assert a.loc["1L R-T", "p0"] != p.loc["1L R-T", "p0"]  # a class row moves with the year
    assert a.loc["1L case mix", "p0"] == p.loc["1L case mix", "p0"]  # the average does not
    assert "not evaluated at year=2026" in a.loc["1L case mix", "flags"]
    assert "not evaluated" not in a.loc["1L R-T", "flags"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # the exact engine's integrated summaries
        {  # one setting: a case mix's predictive quantiles take seconds each
            "settings": [Setting("2L+", "R-T", 0.5, name="2L+ R-T")],
            "reference": "predictive",
            "landmarks": [6.0, 3.0],
            "hr": [0.5, 0.65],
        },
        {"target": "average"},  # a target: the draws' summaries (xarray's quantiles)
    ],
)
def test_the_cli_tables_numpy_core_is_the_public_thresholds(default_fit, kwargs):
    """``lmsbayes run`` prints from threshold_group (no xarray): the same Dataset and table."""
    from lmsbayes.predict import threshold_group
    from lmsbayes.targets import Target

    if kwargs.get("target") == "average":
        kwargs = {**kwargs, "target": Target.average(None)}
    group, evidence = threshold_group(default_fit, **kwargs)
    ds = thresholds(default_fit, **kwargs)
    assert group.to_dataset().identical(ds)
    assert list(group) == list(ds.data_vars)
    for name in ds.data_vars:  # bitwise, and in the Dataset's dims order
        assert group[name].dims == ds[name].dims
        np.testing.assert_array_equal(group[name].values, ds[name].values)
    fast = threshold_table(group, evidence=evidence)
    slow = threshold_table(ds, fit=default_fit)
    pd.testing.assert_frame_equal(fast, slow, check_exact=True)
    assert fast.attrs == slow.attrs


def test_each_quantity_has_the_same_draws_whichever_are_asked_with_it(default_fit):
    """predict's core computes only the quantities asked, without moving another's draws."""
    from lmsbayes.predict import _predict_arrays

    full = predict(default_fit)["rate"]
    for quantities in (["pooled"], ["predictive"], ["pooled", "predictive"]):
        part = _predict_arrays(default_fit, quantities=quantities)
        assert part.quantities == tuple(quantities)
        for k, q in enumerate(quantities):
            np.testing.assert_array_equal(part.rate[..., k], full.sel(quantity=q).values)
