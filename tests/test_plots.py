"""Smoke tests of lmsbayes.plots that assert on content (Agg backend, session fits)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from lmsbayes import plots
from lmsbayes.design import BayesianSingleArm, operating_characteristics, simon
from lmsbayes.predict import EORTC2021, Setting, thresholds
from lmsbayes.prior import BetaMixture, ess, robustify


def by_gid(fig, prefix: str) -> dict[str, object]:
    """Artists whose gid starts with ``prefix``, keyed by the rest of the gid."""
    found = fig.findobj(lambda a: (a.get_gid() or "").startswith(prefix))
    return {a.get_gid()[len(prefix) :]: a for a in found}


def arms_at(fit, landmark: float) -> list[str]:
    """Arms with a rate reported at (within 0.25 months of) the landmark."""
    obs = fit.data.obs
    idx = obs.loc[(obs["kind"] == "rate") & ((obs["t"] - landmark).abs() <= 0.25), "arm_idx"]
    return list(fit.data.arms.index[idx])


@pytest.mark.parametrize("landmark", [3.0, 6.0])
def test_forest_one_row_per_arm_shown(default_fit, landmark):
    fig = plots.plot_forest(default_fit, landmark=landmark)
    ax = fig.axes[0]
    # the survival model gives every arm a curve: all arms are shown, observed markers where
    # reported
    shown = list(default_fit.data.arms.index)
    reported = arms_at(default_fit, landmark)
    assert reported and sorted(fig.lmsbayes["arms"]) == sorted(shown)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    n_lines = default_fit.data.arms["line"].nunique()
    summary = [t for t in labels if t.startswith(("Pooled", "New trial"))]
    assert len(summary) == 2 * n_lines
    assert (
        "Pooled, 2L+ R-T, uterine 0.5" in summary
    )  # the default spec has class and uterine effects
    assert len(labels) - len(summary) == len(shown)
    # one observed and one posterior marker per arm, at the right place
    observed, posterior = by_gid(fig, "observed:"), by_gid(fig, "posterior:")
    assert set(posterior) == set(shown) and set(observed) == set(reported)
    obs = default_fit.data.obs
    near = obs[(obs["kind"] == "rate") & ((obs["t"] - landmark).abs() <= 0.25)]
    for _, row in near.iterrows():
        arm = default_fit.data.arms.index[row["arm_idx"]]
        assert observed[arm].get_xdata()[0] == pytest.approx(row["value"])
    for arm in shown:
        med = float(default_fit.posterior["p"].sel(arm=arm, landmark=landmark).median())
        assert posterior[arm].get_xdata()[0] == pytest.approx(med, abs=1e-9)
    assert "months" in ax.get_xlabel() and "progression-free" in ax.get_xlabel()


def test_forest_labels_keep_agents_and_year(default_fit):
    fig = plots.plot_forest(default_fit, landmark=6.0)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert all(len(t) <= 62 for t in labels)
    arm_labels = [t for t in labels if not t.startswith(("Pooled", "New trial"))]
    assert all(t.endswith(")") and t[-5:-1].isdigit() for t in arm_labels)  # "(year)"
    assert len(set(arm_labels)) == len(arm_labels)  # arms of one trial stay distinguishable


def test_forest_rejects_a_landmark_beyond_ten_years(default_fit):
    with pytest.raises(ValueError, match=r"landmark must be in \(0, 120\]"):
        plots.plot_forest(default_fit, landmark=150)


def test_forest_at_any_landmark_of_the_survival_model(default_fit):
    fig = plots.plot_forest(default_fit, landmark=24.0)
    assert set(by_gid(fig, "observed:")) == set(arms_at(default_fit, 24.0))  # LMS-04's 2-year rates
    assert len(by_gid(fig, "posterior:")) == default_fit.data.n_arms


def test_predictive_reference_lines_at_thresholds(default_fit):
    settings = [Setting("1L", "R-T", 0.5, "1L R-T"), Setting("2L+", "NR-T", 0.5, "2L+ NR-T")]
    fig = plots.plot_predictive(default_fit, settings, landmark=6.0, hr=0.65)
    th = thresholds(default_fit, settings, hr=[0.65], landmarks=[6.0])
    p0, p1 = by_gid(fig, "p0:"), by_gid(fig, "p1:")
    assert set(p0) == set(p1) == {s.label for s in settings}
    for s in settings:
        want0 = float(th["p0_median"].sel(setting=s.label, landmark=6.0))
        want1 = float(th["p1_median"].sel(setting=s.label, landmark=6.0, hr=0.65))
        assert np.allclose(p0[s.label].get_xdata(), want0)
        assert np.allclose(p1[s.label].get_xdata(), want1)
    # EORTC pooled each line's case mix: its marker stands beside the case-mix rows only
    assert by_gid(fig, "eortc:") == {}
    assert len(by_gid(fig, "predictive:")) == len(settings)


def test_predictive_marks_evidence_and_eortc_only_where_comparable(default_fit):
    settings = [Setting.standardised("2L+"), Setting("2L+", "R-T", 0.5, "2L+ R-T")]
    fig = plots.plot_predictive(default_fit, settings, landmark=6.0, hr=0.65)
    eortc = by_gid(fig, "eortc:")
    assert set(eortc) == {"2L+ case mix"}
    assert eortc["2L+ case mix"].get_xdata()[0] == pytest.approx(
        EORTC2021.loc[("2L+", 6.0), "pooled"]
    )
    dens = by_gid(fig, "predictive:")
    # the case-mix row is informed directly (filled); 2L+ R-T rests on no arm of its cell (open)
    assert dens["2L+ case mix"].get_facecolor()[0][3] > 0
    open_fc = dens["2L+ R-T"].get_facecolor()
    assert (len(open_fc) == 0 or open_fc[0][3] == 0) and dens["2L+ R-T"].get_hatch() == "////"
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["2L+ case mix\n(direct)", "2L+ R-T\n(model-based)"]


def test_effects_odds_ratios_and_tau(default_fit):
    fig = plots.plot_effects(default_fit)
    post = default_fit.posterior
    ors = by_gid(fig, "or:")
    covs = list(post["covariate"].values)
    assert len(ors) == len(covs)  # one curve per arm: one effect per covariate for all landmarks
    beta = post["beta"].sel(covariate="line").values.ravel()
    (line_or,) = [a for k, a in ors.items() if k.split(":")[0] == "line" and len(k.split(":")) == 2]
    assert line_or.get_xdata()[0] == pytest.approx(np.median(np.exp(beta)))
    assert fig.axes[0].get_xscale() == "log"
    assert "Odds ratio of progression-free" in fig.axes[0].get_xlabel()
    assert len(by_gid(fig, "tau:")) == post.sizes["stratum"]
    assert (
        "log-logistic shape" in fig._suptitle.get_text()
        or "loglogistic shape" in fig._suptitle.get_text()
    )


def test_prior_legend_has_ess():
    mix = BetaMixture([0.7, 0.3], [12.0, 3.0], [20.0, 4.0])
    robust = robustify(mix, 0.2, mean=0.4)
    draws = mix.rvs(2000, rng=np.random.default_rng(1))
    fig = plots.plot_prior(mix, draws, robust)
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    # the robust component (mean 0.4, n = 1) has a shape < 1: both priors by moments
    assert any(f"ESS {ess(mix, 'moment'):.1f} (moment)" in t for t in texts)
    assert sum("ESS" in t for t in texts) == 2
    assert any("predictive draws (n = 2000)" in t for t in texts)


def test_oc_curve_is_prob_success():
    design = BayesianSingleArm(looks=(10, 20, 30), p0=0.3)
    p = np.linspace(0.1, 0.7, 13)
    oc = operating_characteristics(design, p)
    fig = plots.plot_oc(oc, p0=0.3, p1=0.45)
    line = by_gid(fig, "prob_success:")["design"]
    np.testing.assert_allclose(line.get_xdata(), p)
    np.testing.assert_allclose(line.get_ydata(), oc["prob_success"].values)
    (label,) = [t.get_text() for t in fig.legends[0].get_texts()]
    at_p0 = float(oc["prob_success"].sel(p=0.3, method="nearest"))
    assert f"P(success) {at_p0:.3f} at p0" in label and "~" not in label  # exact: p0 is on the grid
    en = by_gid(fig, "expected_n:")["design"]
    np.testing.assert_allclose(en.get_ydata(), oc["expected_n"].values)
    assert "Expected number of patients" in fig.axes[1].get_ylabel()


def test_oc_overlays_several_designs():
    p = np.linspace(0.2, 0.6, 9)
    sets = {
        "Bayesian": operating_characteristics(BayesianSingleArm(looks=(15, 30), p0=0.3), p),
        "Simon optimal": operating_characteristics(simon(0.3, 0.5).optimal, p),
    }
    fig = plots.plot_oc(sets)
    lines = by_gid(fig, "prob_success:")
    assert set(lines) == set(sets)
    for name, ds in sets.items():
        np.testing.assert_allclose(lines[name].get_ydata(), ds["prob_success"].values)
    with pytest.raises(ValueError, match="single-arm"):
        plots.plot_oc({"bad": oc_without_p()})


def oc_without_p():
    import xarray as xr

    return xr.Dataset({"prob_success": ("x", [0.1])})


def test_ppc_one_point_per_observation(default_fit):
    fig = plots.plot_ppc(default_fit)
    points = by_gid(fig, "observed:")
    assert len(points) == len(default_fit.data.obs)
    obs = default_fit.data.obs
    for kind, panel in (("median", "medians"), ("rate", "rates")):
        i = int(np.flatnonzero(obs["kind"].to_numpy() == kind)[0])
        arm = default_fit.data.arms.index[obs["arm_idx"].iloc[i]]
        assert points[f"{arm}:{panel}:{i}"].get_xdata()[0] == pytest.approx(obs["value"].iloc[i])
    assert 0 <= fig.lmsbayes["n_outside"] <= len(default_fit.data.obs)


def test_figures_from_a_saved_fit(saved_default_fit):
    from lmsbayes import load_fit

    fit = load_fit(saved_default_fit)
    fig = plots.plot_forest(fit, landmark=6.0)
    assert len(fig.lmsbayes["arms"]) == fit.data.n_arms


@pytest.mark.parametrize(
    "label",
    [
        "Study 309 eribulin vs dacarbazine (LMS subgroup) eribulin 1.4 mg/m2 (2019)",
        "SAR-3007 trabectedin vs dacarbazine (uLMS subgroup) dacarbazine 1 g/m2 (2017)",
        "a" * 80,
    ],
)
def test_labels_are_never_cut_mid_word(label):
    from lmsbayes.plots import _short

    out = _short(label, 40)
    assert len(out) <= 40
    kept = out.replace("\u2026", " ").split(" (")[0].split()
    words = label.split()
    if len(kept) > 1:  # every kept word is whole (a single over-long word is the exception)
        assert all(w in words for w in kept), (out, kept)


def test_a_prior_legend_uses_one_ess_method():
    mix = BetaMixture([0.6, 0.4], [6.0, 3.0], [18.0, 9.0])
    rob = robustify(mix, 0.2)  # RBesT's n = 1 component at the MAP mean: a shape < 1
    fig = plots.plot_prior(mix, None, rob)
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    methods = {m for t in texts for m in ("(ELIR)", "(moment)") if m in t}
    assert methods == {"(moment)"}
