"""Contrast-based meta-analysis against metafor's and bayesmeta's documented examples.

Expected values are quoted from the documents named beside them (sources and
commits in tests/data/README.md). Independent checks where no peer value
exists: brute-force 2-D integration (Bayesian posterior), Monte Carlo
(assurance), closed forms (Schoenfeld).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from lmsbayes import contrast as ct
from lmsbayes.contrast.priors import BAYESMETA_PRIORS
from lmsbayes.errors import InputError, OptionError

DATA = Path(__file__).parent / "data"


# ------------------------------------------------------------------ fixtures


def _escalc_rr(d):
    """metafor's escalc(measure="RR") for 2x2 tables without zero cells."""
    a, b, c, e = (d[k].to_numpy(float) for k in ("tpos", "tneg", "cpos", "cneg"))
    yi = np.log(a / (a + b)) - np.log(c / (c + e))
    vi = 1 / a - 1 / (a + b) + 1 / c - 1 / (c + e)
    return yi, vi


def _escalc_or(ai, n1, ci, n2):
    """metafor's escalc(measure="OR"): 1/2 added to every cell of a table with a zero cell."""
    ai, n1, ci, n2 = (np.asarray(v, float) for v in (ai, n1, ci, n2))
    bi, di = n1 - ai, n2 - ci
    zero = (ai == 0) | (bi == 0) | (ci == 0) | (di == 0)
    ai, bi, ci, di = (x + 0.5 * zero for x in (ai, bi, ci, di))
    return np.log(ai * di / (bi * ci)), 1 / ai + 1 / bi + 1 / ci + 1 / di


def _table(study, yi, vi, measure):
    return ct.contrast_table(
        pd.DataFrame({"study": study, "log_estimate": yi, "se": np.sqrt(vi)}), measure=measure
    )


@pytest.fixture(scope="module")
def bcg():
    d = pd.read_csv(DATA / "metafor_dat_bcg.csv")
    yi, vi = _escalc_rr(d)
    return _table([f"{a} {y}" for a, y in zip(d["author"], d["year"])], yi, vi, "RR")


@pytest.fixture(scope="module")
def raudenbush():
    d = pd.read_csv(DATA / "metafor_dat_raudenbush1985.csv")
    return _table(d["study"].astype(str), d["yi"], d["vi"], "identity")


@pytest.fixture(scope="module")
def egger2001():
    d = pd.read_csv(DATA / "metafor_dat_egger2001.csv")
    d = d[d["study"] != "ISIS-4"]  # metafor's example: escalc(..., subset=-16)
    yi, vi = _escalc_or(d["ai"], d["n1i"], d["ci"], d["n2i"])
    return _table([f"{s} {y}" for s, y in zip(d["study"], d["year"])], yi, vi, "OR")


@pytest.fixture(scope="module")
def schools():
    d = pd.read_csv(DATA / "bayesmeta_rubin1981.csv")
    return _table(d["school"], d["effect"], d["stderr"] ** 2, "identity")


# ------------------------------------------------------------------ input


def _write(tmp_path, text, name="c.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_ci_input_gives_log_estimate_and_se(tmp_path):
    p = _write(tmp_path, "study,estimate,lower,upper,pmid\nA,0.5,0.25,1.0,123\nB,2,1,4,\n")
    d = ct.read_contrasts(p)
    z = stats.norm.ppf(0.975)
    assert d.loc["A", "yi"] == pytest.approx(np.log(0.5))
    assert d.loc["A", "sei"] == pytest.approx(np.log(4) / (2 * z))
    assert list(d["input"]) == ["ci", "ci"] and d.loc["A", "pmid"] == "123"
    assert d.attrs["measure"] == "HR" and len(d.attrs["sha256"]) == 64


def test_se_input_and_level_column(tmp_path):
    p = _write(
        tmp_path,
        "study,log_estimate,se,estimate,lower,upper,level\nA,-0.2,0.1,,,,\nB,,,0.8,0.6,0.9,0.9\n",
    )
    d = ct.read_contrasts(p)
    assert d.loc["A", "estimate"] == pytest.approx(
        np.exp(-0.2)
    )  # derived, flagged by input == "se"
    assert d.loc["A", "input"] == "se"
    assert d.loc["B", "sei"] == pytest.approx(
        (np.log(0.9) - np.log(0.6)) / (2 * stats.norm.ppf(0.95))
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("estimate,lower,upper\n0.5,0.3,0.8\n", "row 1 (header), column 'study': missing"),
        ("study,estimate,lower\nA,0.5,0.3\n", "column 'upper': missing"),
        (
            "study,estimate,lower,upper\nA,0.5,0.6,0.8\n",
            "row 2, column 'estimate': the CI (0.6, 0.8) does not contain the estimate '0.5'",
        ),
        (
            "study,estimate,lower,upper\nA,1,0.5,2\nB,-0.5,0.3,0.8\n",
            "row 3, column 'estimate': a hazard ratio must be > 0, got '-0.5'",
        ),
        (
            "study,estimate,lower,upper\nA,0.5,0.3,0.8\nB,0.5,0,0.8\n",
            "row 3, column 'lower': a hazard ratio must be > 0, got '0'",
        ),
        (
            "study,estimate,lower,upper\nA,0.5,0.8,0.3\n",
            "row 2, column 'lower': lower (0.8) must be below upper (0.3)",
        ),
        (
            "study,estimate,lower,upper\nA,abc,0.3,0.8\n",
            "row 2, column 'estimate': must be a number in plain decimal notation, got 'abc'",
        ),
        (
            "study,estimate,lower,upper\nA,0.5,0.3,0.8\nA,0.6,0.4,0.9\n",
            "row 3, column 'study': duplicate study 'A' (first in row 2)",
        ),
        (
            "study,log_estimate,se\nA,-0.2,0\n",
            "row 2, column 'se': a standard error must be > 0, got '0'",
        ),
        ("study,estimate,lower,upper\n,0.5,0.3,0.8\n", "row 2, column 'study': blank"),
        ("study,estimate,lower,upper\nA,0.5,,0.8\n", "row 2, column 'lower': blank"),
    ],
)
def test_bad_input_names_file_row_column_value(tmp_path, text, expected):
    p = _write(tmp_path, text)
    with pytest.raises(InputError) as err:
        ct.read_contrasts(p)
    msg = str(err.value)
    assert str(p) in msg and expected in msg, msg


def test_all_problems_in_one_error_and_blank_lines_keep_row_numbers(tmp_path):
    p = _write(tmp_path, "study,estimate,lower,upper\n\nA,0.5,0.6,0.8\nB,-1,0.3,0.8\n")
    with pytest.raises(InputError) as err:
        ct.read_contrasts(p)
    msg = str(err.value)
    assert (
        msg.startswith("2 problems")
        and "row 3, column 'estimate'" in msg
        and "row 4, column 'estimate'" in msg
    )


def test_unknown_measure_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="measure must be one of"):
        ct.read_contrasts(_write(tmp_path, "study,estimate,lower,upper\nA,1,0.5,2\n"), measure="hr")
    with pytest.raises(InputError, match="no such file"):
        ct.read_contrasts(tmp_path / "absent.csv")


# ------------------------------------------------------------------ metafor: dat.bcg


def test_reml_matches_metafor_rma_uni_documentation(bcg):
    # metafor docs/reference/rma.uni.html: rma(yi, vi, data=dat, method="REML")
    r = ct.random_effects(bcg, method="REML")
    assert r.tau2 == pytest.approx(0.3132, abs=5e-5)
    assert r.se_tau2 == pytest.approx(0.1664, abs=5e-5)
    assert r.tau == pytest.approx(0.5597, abs=5e-5)
    assert r.I2 == pytest.approx(92.22, abs=5e-3)
    assert r.H2 == pytest.approx(12.86, abs=5e-3)
    assert r.Q == pytest.approx(152.2330, abs=5e-5) and r.Q_df == 12 and r.Q_pvalue < 1e-4
    assert r.estimate == pytest.approx(-0.7145, abs=5e-5)
    assert r.se == pytest.approx(0.1798, abs=5e-5)
    assert r.statistic == pytest.approx(-3.9744, abs=5e-5)
    assert (r.ci_lower, r.ci_upper) == pytest.approx((-1.0669, -0.3622), abs=5e-5)
    # predict.rma.html: predict(res, digits=2) -> pi.lb -1.87, pi.ub 0.44; transf=exp -> 0.15, 1.55
    assert (r.pi_lower, r.pi_upper) == pytest.approx((-1.87, 0.44), abs=5e-3)
    assert np.exp([r.pi_lower, r.pi_upper]) == pytest.approx([0.15, 1.55], abs=5e-3)
    assert r.iterations is not None and r.iterations < 50


def test_dl_matches_metafor_and_stata_metan(bcg):
    # metafor tests/testthat/test_misc_metan_vs_rma.uni_with_dat.bcg.r (values checked against Stata
    # metan)
    r = ct.random_effects(bcg, method="DL")
    assert r.estimate == pytest.approx(-0.7141, abs=5e-5)
    assert (r.ci_lower, r.ci_upper) == pytest.approx((-1.0644, -0.3638), abs=5e-5)
    assert r.statistic == pytest.approx(-3.9952, abs=5e-5)
    assert r.tau2 == pytest.approx(0.3088, abs=5e-5)
    assert r.I2 == pytest.approx(92.1173, abs=5e-5)
    assert np.exp([r.estimate, r.ci_lower, r.ci_upper]) == pytest.approx(
        [0.4896, 0.3449, 0.6950], abs=5e-5
    )
    # for DL, metafor's I^2 is Higgins' (Q - df) / Q
    assert r.I2 == pytest.approx(100 * (r.Q - r.Q_df) / r.Q, rel=1e-10)


def test_equal_effects_matches_metafor(bcg):
    r = ct.random_effects(bcg, method="EE")  # same metafor test file, EE model
    assert (r.estimate, r.ci_lower, r.ci_upper) == pytest.approx(
        (-0.4303, -0.5097, -0.3509), abs=5e-5
    )
    assert r.statistic == pytest.approx(-10.6247, abs=5e-5)


def test_leave_one_out_matches_metafor_leave1out(bcg):
    # metafor docs/reference/leave1out.html, leave1out(res) rows -1, -4 and -8
    loo = ct.leave_one_out(ct.random_effects(bcg))
    expected = {
        0: (-0.7071, 0.1900, -3.7223, -1.0794, -0.3348, 151.5826, 0.3362, 93.2259, 14.7622),
        3: (-0.6284, 0.1766, -3.5580, -0.9746, -0.2822, 96.5626, 0.2628, 90.4125, 10.4302),
        7: (-0.7948, 0.1799, -4.4184, -1.1473, -0.4422, 67.9858, 0.2732, 87.0314, 7.7109),
    }
    cols = ["estimate", "se", "statistic", "ci_lower", "ci_upper", "Q", "tau2", "I2", "H2"]
    for i, want in expected.items():
        assert loo.iloc[i][cols].to_numpy(float) == pytest.approx(want, abs=5e-5), loo.index[i]
    assert loo.iloc[0]["RR"] == pytest.approx(0.4931, abs=5e-5)


def test_q_profile_ci_matches_metafor_confint(bcg):
    # metafor tests/testthat/test_analysis_example_vanhouwelingen2002.r: confint(res) for
    # dat.colditz1994
    # (the same 13 trials as dat.bcg) on the log odds ratio scale: tau^2 CI 0.1302 to 1.1812
    d = pd.read_csv(DATA / "metafor_dat_bcg.csv")
    yi, vi = _escalc_or(d["tpos"], d["tpos"] + d["tneg"], d["cpos"], d["cpos"] + d["cneg"])
    # metafor finds the bounds with uniroot(tol = .Machine$double.eps^0.25 = 1.2e-4)
    # (R/confint.rma.uni.r)
    lo, hi = ct.tau2_ci(yi, np.sqrt(vi))
    assert (lo, hi) == pytest.approx((0.1302, 1.1812), abs=1.3e-4)
    for bound, q in ((lo, 0.975), (hi, 0.025)):  # the defining equation, to machine precision
        w = 1 / (vi + bound)
        mu = np.sum(w * yi) / np.sum(w)
        assert np.sum(w * (yi - mu) ** 2) == pytest.approx(stats.chi2.ppf(q, len(yi) - 1), rel=1e-9)
    # the same file: ML with Knapp-Hartung, predict(transf=exp): CI 0.3175 to 0.7141; ML tau^2 .3025
    r = ct.random_effects(
        _table(d["author"] + d["year"].astype(str), yi, vi, "OR"), method="ML", test="knha"
    )
    assert r.tau2 == pytest.approx(0.3025, abs=5e-5)
    assert np.exp([r.ci_lower, r.ci_upper]) == pytest.approx([0.3175, 0.7141], abs=5e-5)


# ------------------------------------------------------------------ metafor: Raudenbush (2009)
# Table 16.3


_RAUD = pd.DataFrame(
    # metafor tests/testthat/test_analysis_example_raudenbush2009.r, "compare with results on page
    # 309 (Table 16.3)"
    {
        "tau2": [0, 0.0126, 0.0188, 0.0259, 0.0804],
        "mu": [0.0604, 0.0777, 0.0837, 0.0893, 0.1143],
        "se": [0.0365, 0.0475, 0.0516, 0.0558, 0.0792],
        "z": [1.6553, 1.6368, 1.6208, 1.6009, 1.4432],
        "ci_lb": [-0.0111, -0.0153, -0.0175, -0.02, -0.0409],
        "ci_ub": [0.1318, 0.1708, 0.1849, 0.1987, 0.2696],
        "se_knha": [0.0515, 0.0593, 0.0616, 0.0636, 0.0711],
        "t_knha": [1.1733, 1.311, 1.3593, 1.405, 1.6078],
        "lb_knha": [-0.0477, -0.0468, -0.0457, -0.0442, -0.0351],
        "ub_knha": [0.1685, 0.2023, 0.2131, 0.2229, 0.2637],
    },
    index=["EE", "ML", "REML", "DL", "HE"],
)


@pytest.mark.parametrize("method", list(_RAUD.index))
def test_estimators_and_knapp_hartung_match_raudenbush_2009_table(raudenbush, method):
    want = _RAUD.loc[method]
    z = ct.random_effects(raudenbush, method=method)
    k = ct.random_effects(raudenbush, method=method, test="knha")
    tol = 1e-4  # the table is printed to 4 decimals; metafor's own tolerance for it is looser
    assert z.tau2 == pytest.approx(want["tau2"], abs=tol)
    assert (z.estimate, z.se, z.statistic) == pytest.approx(
        (want["mu"], want["se"], want["z"]), abs=tol
    )
    assert (z.ci_lower, z.ci_upper) == pytest.approx((want["ci_lb"], want["ci_ub"]), abs=tol)
    assert (k.se, k.statistic) == pytest.approx((want["se_knha"], want["t_knha"]), abs=tol)
    assert (k.ci_lower, k.ci_upper) == pytest.approx((want["lb_knha"], want["ub_knha"]), abs=tol)
    assert k.df == 18


def test_prediction_intervals_metafor_default_and_hts(raudenbush):
    r = ct.random_effects(raudenbush)
    # metafor test_analysis_example_raudenbush2009.r: predict(res.RE): pi.lb -0.2036, pi.ub 0.3711
    # metafor stops Fisher scoring when tau^2 changes by < 1e-5, and the PI bounds move by ~7 per
    # unit
    # of tau^2 here, so its 4th decimal can differ from the converged REML solution by ~1e-4
    assert (r.pi_lower, r.pi_upper) == pytest.approx((-0.2036, 0.3711), abs=2e-4)
    # Higgins-Thompson-Spiegelhalter: mu +- t_{k-2} sqrt(se^2 + tau^2), closed form
    h = ct.random_effects(raudenbush, prediction="hts")
    half = stats.t.ppf(0.975, r.k - 2) * np.sqrt(r.se**2 + r.tau2)
    assert (h.pi_lower, h.pi_upper) == pytest.approx(
        (r.estimate - half, r.estimate + half), rel=1e-12
    )
    # under knha metafor's default uses t_{k-1} with the adjusted se
    kn = ct.random_effects(raudenbush, test="knha")
    half = stats.t.ppf(0.975, r.k - 1) * np.sqrt(kn.se**2 + kn.tau2)
    assert kn.pi_upper - kn.estimate == pytest.approx(half, rel=1e-12)


def test_paule_mandel_solves_its_estimating_equation(bcg):
    r = ct.random_effects(bcg, method="PM")
    y, v = bcg["yi"].to_numpy(), bcg["sei"].to_numpy() ** 2
    w = 1 / (v + r.tau2)
    mu = np.sum(w * y) / np.sum(w)
    assert np.sum(w * (y - mu) ** 2) == pytest.approx(len(y) - 1, abs=1e-8)
    assert r.estimate == pytest.approx(mu, abs=1e-10)


def test_reml_estimate_maximises_the_restricted_likelihood(bcg):
    y, v = bcg["yi"].to_numpy(), bcg["sei"].to_numpy() ** 2

    def restricted_loglik(t2):
        w = 1 / (v + t2)
        mu = np.sum(w * y) / np.sum(w)
        return -0.5 * (np.sum(np.log(v + t2)) + np.log(np.sum(w)) + np.sum(w * (y - mu) ** 2))

    t2 = ct.random_effects(bcg).tau2
    grid = np.linspace(0.05, 1.0, 20001)
    assert grid[np.argmax([restricted_loglik(g) for g in grid])] == pytest.approx(t2, abs=1e-4)


# ------------------------------------------------------------------ metafor: Egger's test


def test_egger_tests_match_metafor_regtest(egger2001):
    # metafor docs/reference/regtest.html (dat.egger2001, ISIS-4 removed). First the escalc values:
    assert egger2001["yi"].to_numpy()[[0, 5, 7, 14]] == pytest.approx(
        [-0.83034830, -2.40751999, -1.19170271, -1.57078846], abs=1e-8
    )
    r = ct.random_effects(egger2001)
    assert (r.tau2, r.estimate, r.se) == pytest.approx((0.1911, -0.8745, 0.2080), abs=5e-5)
    assert r.Q == pytest.approx(20.9184, abs=5e-5) and r.I2 == pytest.approx(38.19, abs=5e-3)
    lm = ct.egger_test(egger2001, model="lm")  # regtest(res, model="lm")
    assert (lm.statistic, lm.df, lm.pvalue) == pytest.approx((-3.1783, 13, 0.0073), abs=5e-5)
    assert (lm.limit_estimate, lm.limit_lower, lm.limit_upper) == pytest.approx(
        (-0.1512, -0.5130, 0.2106), abs=5e-5
    )
    me = ct.egger_test(r, model="rma")  # regtest(res)
    assert (me.statistic, me.pvalue) == pytest.approx((-2.8062, 0.0050), abs=5e-5)
    assert (me.limit_estimate, me.limit_lower, me.limit_upper) == pytest.approx(
        (-0.1639, -0.5681, 0.2402), abs=5e-5
    )
    assert "t = -3.1783, df = 13, p = 0.0073" in repr(lm)


def test_option_errors(bcg):
    with pytest.raises(OptionError, match="method must be one of"):
        ct.random_effects(bcg, method="SJ")
    with pytest.raises(OptionError, match="test must be"):
        ct.random_effects(bcg, test="t")
    with pytest.raises(InputError, match="at least 2 trials"):
        ct.random_effects(bcg.iloc[:1])


def test_readable_tables(bcg):
    r = ct.random_effects(bcg, method="DL", test="knha")
    text = repr(r)
    assert "tau^2 estimator: DL" in text and "Hartung-Knapp-Sidik-Jonkman t(12)" in text
    assert "prediction interval" in text and "RR 0.49" in text
    t = r.table()
    assert list(t.index) == ["DL/knha"] and {"RR", "RR_pi_lower", "I2_pct", "Q_pvalue"} <= set(
        t.columns
    )
    ds = r.to_dataset()
    assert (
        ds.sizes["study"] == 13
        and ds.attrs["method"] == "DL"
        and float(ds["weight_pct"].sum()) == pytest.approx(100)
    )


# ------------------------------------------------------------------ bayesmeta: eight schools


def test_half_cauchy_posterior_matches_bayesmeta_vignette(schools):
    # bayesmeta vignette (inst/doc/bayesmeta.html): tau ~ half-Cauchy(25), mu ~ N(0, 50); shortest
    # intervals
    b = ct.bayesian(
        schools, tau_prior=ct.HalfCauchy(25), mu_prior=ct.Normal(0, 50), interval="shortest"
    )
    s = b.summary()
    # tau: bayesmeta integrates tau with R's integrate(); agreement to its printed 7 digits
    assert (s.at["tau", "median"], s.at["tau", "mean"], s.at["tau", "sd"]) == pytest.approx(
        (4.758539, 5.884511, 4.869904), rel=2e-6
    )
    assert s.at["tau", "lower"] == pytest.approx(0.0, abs=1e-6)
    assert s.at["tau", "upper"] == pytest.approx(15.165894, rel=1e-4)
    assert b.posterior.tau_quantile([0.025, 0.975]) == pytest.approx(
        [0.2199559, 18.0531718], rel=1e-4
    )
    # mu and theta: bayesmeta approximates the mu mixture by its DIRECT algorithm (delta = 0.01,
    # Röver & Friede 2017), off by up to ~0.03 here; our values agree with brute force (next test)
    assert (s.at["mu", "median"], s.at["mu", "mean"], s.at["mu", "sd"]) == pytest.approx(
        (7.962961, 7.985729, 4.995762), abs=0.002
    )
    assert (s.at["mu", "lower"], s.at["mu", "upper"]) == pytest.approx(
        (-1.823353, 17.824562), abs=0.005
    )
    assert (s.at["theta_new", "median"], s.at["theta_new", "sd"]) == pytest.approx(
        (7.926819, 9.126767), abs=0.002
    )
    assert (s.at["theta_new", "lower"], s.at["theta_new", "upper"]) == pytest.approx(
        (-10.623526, 26.827377), abs=0.03
    )
    upper = 1 - b.prob(0.0)  # 1 - pposterior(mu=0)
    assert upper == pytest.approx(0.9487521, abs=1e-4)
    assert b.posterior.quantile(0.95)[0] == pytest.approx(
        16.11009, abs=0.002
    )  # qposterior(mu.p=0.95)
    # shrinkage of schools A, G, H (vignette: $theta[, c("A","G","H")], mean and sd)
    sh = b.shrinkage().loc[["A", "G", "H"]]
    assert sh["mean"].to_numpy() == pytest.approx([11.095255, 10.336032, 8.474644], abs=0.006)
    assert sh["sd"].to_numpy() == pytest.approx([7.901084, 6.631039, 7.456906], abs=0.006)


def test_uniform_priors_match_bayesmeta_vignette(schools):
    # bayesmeta's defaults: improper uniform tau and flat mu (schools.example.2 in the vignette)
    b = ct.bayesian(schools, tau_prior=ct.Uniform(), mu_prior=ct.Flat(), interval="shortest")
    s = b.summary()
    assert (s.at["tau", "median"], s.at["tau", "mean"], s.at["tau", "sd"]) == pytest.approx(
        (5.227732, 6.585992, 5.685974), rel=2e-6
    )
    assert s.at["tau", "upper"] == pytest.approx(17.265797, rel=1e-4)
    assert (s.at["mu", "median"], s.at["mu", "mean"], s.at["mu", "sd"]) == pytest.approx(
        (8.055861, 8.092138, 5.246683), abs=0.004
    )
    assert (s.at["theta_new", "lower"], s.at["theta_new", "upper"]) == pytest.approx(
        (-12.511817, 29.014749), abs=0.03
    )


def test_bayesian_posterior_matches_bruteforce_2d_integration(schools):
    """Independent of the conjugate step: the joint density of (mu, tau) on a 2-D grid."""
    y, se = schools["yi"].to_numpy(), schools["sei"].to_numpy()
    b = ct.bayesian(schools, tau_prior=ct.HalfCauchy(25), mu_prior=ct.Normal(0, 50))
    mu = np.linspace(-80, 100, 1201)[
        :, None
    ]  # wide: the mu posterior has the tails of its tau mixture
    s = np.linspace(np.log(10) - 15, np.log(10) + 20, 2001)[None, :]
    tau = np.exp(s)
    ll = sum(stats.norm.logpdf(yi, mu, np.sqrt(si**2 + tau**2)) for yi, si in zip(y, se))
    joint = np.exp(ll + stats.norm.logpdf(mu, 0, 50) + stats.halfcauchy.logpdf(tau, scale=25) + s)
    m = integrate.trapezoid(joint, s[0], axis=1)
    m /= integrate.trapezoid(m, mu[:, 0])
    e = integrate.trapezoid(m * mu[:, 0], mu[:, 0])
    sd = np.sqrt(integrate.trapezoid(m * mu[:, 0] ** 2, mu[:, 0]) - e**2)
    assert b.posterior.mu_mean_() == pytest.approx(e, abs=1e-4)
    assert b.posterior.mu_sd() == pytest.approx(sd, abs=1e-4)


@pytest.mark.parametrize("name", sorted(BAYESMETA_PRIORS))
def test_bayesmeta_named_priors_give_proper_posteriors(schools, name):
    b = ct.bayesian(schools, tau_prior=ct.Bayesmeta(name))
    assert np.isfinite(b.summary().to_numpy(float)[:, :5]).all()


def test_dumouchel_prior_density_is_bayesmeta_formula(schools):
    se = schools["sei"].to_numpy()
    s0 = np.sqrt(len(se) / np.sum(1 / se**2))
    t = np.array([0.0, 1.0, 10.0])
    assert ct.Bayesmeta("dumouchel").pdf(t, se) == pytest.approx(s0 / (s0 + t) ** 2)
    assert integrate.quad(lambda x: float(ct.Bayesmeta("dumouchel").pdf(x, se)), 0, np.inf)[
        0
    ] == pytest.approx(1)


def test_improper_posterior_raises():
    d = ct.contrast_table(pd.DataFrame({"study": ["a"], "log_estimate": [0.1], "se": [0.2]}))
    with pytest.raises(InputError, match="improper"):
        ct.bayesian(d, tau_prior=ct.Uniform(), mu_prior=ct.Flat())


def test_prior_parsing():
    assert ct.parse_tau_prior("half-normal:0.5") == ct.HalfNormal(0.5)
    assert ct.parse_tau_prior("half-t:3,1") == ct.HalfStudentT(3, 1)
    assert ct.parse_tau_prior("uniform") == ct.Uniform() and not ct.Uniform().proper
    assert ct.parse_tau_prior("uniform:0,2") == ct.Uniform(0, 2)
    assert ct.parse_tau_prior("DuMouchel") == ct.Bayesmeta("dumouchel")
    assert (
        ct.parse_mu_prior("normal:0,4") == ct.Normal(0, 4)
        and ct.parse_mu_prior("flat") == ct.Flat()
    )
    for bad in ("half-normal", "half-normal:-1", "gamma:2", "uniform:2,1"):
        with pytest.raises(OptionError):
            ct.parse_tau_prior(bad)


# ------------------------------------------------------------------ predictive and assurance


def test_assurance_is_exact_for_a_normal_predictive_and_matches_monte_carlo():
    design = ct.TimeToEventDesign(events=200, allocation=0.5, alpha=0.025)
    assert design.se == pytest.approx(2 / np.sqrt(200))
    # a point-mass-like predictive reduces to the power at that HR (Schoenfeld)
    sharp = ct.Predictive.normal(np.log(0.7), 1e-9)
    assert ct.assurance(sharp, design) == pytest.approx(float(design.power(0.7)), abs=1e-9)
    z = (-np.log(0.7)) / design.se - stats.norm.ppf(0.975)
    assert float(design.power(0.7)) == pytest.approx(stats.norm.cdf(z))
    # a normal predictive: closed form vs simulation of the true HR and the trial's estimate
    pred = ct.Predictive.normal(np.log(0.7), 0.3)
    exact = ct.assurance(pred, design)
    rng = np.random.default_rng(1)
    theta = pred.sample(400_000, seed=2)
    est = rng.normal(theta, design.se)
    mc = np.mean(est < np.log(design.critical_hr))
    assert abs(mc - exact) < 4 * np.sqrt(exact * (1 - exact) / theta.size)


def test_schoenfeld_events_closed_form():
    # 4 (z_0.975 + z_0.8)^2 / log(0.7)^2 = 246.8 -> 247 events for HR 0.7, 1:1, 80% power
    assert ct.schoenfeld_events(0.7) == 247
    d = ct.TimeToEventDesign(events=247)
    assert float(d.power(0.7)) == pytest.approx(0.8, abs=2e-3)


def test_bayesian_predictive_feeds_assurance(bcg):
    b = ct.bayesian(bcg)
    pred = b.predictive()
    assert pred.prob_below(1.0) == pytest.approx(b.prob(1.0, quantity="theta_new"), abs=1e-12)
    tab = ct.assurance_table(pred, [50, 200, 1000, 100_000], target_hr=0.7)
    a = tab["assurance"].to_numpy()
    assert np.all(np.diff(a) > 0)  # more events, more assurance ...
    assert a[-1] < tab["p_true_hr_below_1"].iloc[0] + 1e-3  # ... up to P(true HR < 1)
    assert a[-1] == pytest.approx(tab["p_true_hr_below_1"].iloc[0], abs=0.01)


# ------------------------------------------------------------------ plots


def test_forest_and_funnel_plots_show_the_results(bcg):
    import matplotlib

    matplotlib.use("Agg")
    r = ct.random_effects(bcg)
    fig = ct.forest_plot(r)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[:2] == list(bcg.index[:2]) and "new trial (prediction)" in labels
    assert ax.get_xscale() == "log"
    pts = next(c for c in ax.collections if c.get_label() == "trial estimate").get_offsets()
    assert np.exp(bcg["yi"].to_numpy()) == pytest.approx(np.asarray(pts)[:, 0])
    f2 = ct.funnel_plot(ct.bayesian(bcg))
    assert f2.axes[0].get_ylim()[0] > f2.axes[0].get_ylim()[1]  # se axis inverted
    fb = ct.forest_plot(ct.bayesian(bcg))
    assert any(c.get_label() == "shrinkage estimate" for c in fb.axes[0].collections)


def test_excluded_rows_are_reported_not_dropped(tmp_path):
    p = _write(
        tmp_path,
        "study,estimate,lower,upper,exclude\nA,0.5,0.3,0.8,\nB,,,,CI not "
        "published\nC,0.7,0.5,0.9,\n",
    )
    d = ct.read_contrasts(p)
    assert list(d.index) == ["A", "C"]
    assert d.attrs["excluded"][0]["study"] == "B" and d.attrs["excluded"][0]["row"] == 3
    assert d.attrs["excluded"][0]["reason"] == "CI not published"
    with pytest.raises(InputError, match="every row is excluded"):
        ct.read_contrasts(
            _write(tmp_path, "study,estimate,lower,upper,exclude\nA,,,,x\n", "all.csv")
        )
    one = ct.read_contrasts(
        _write(tmp_path, "study,estimate,lower,upper,exclude\nA,0.5,0.3,0.8,\nB,,,,x\n", "one.csv")
    )
    with pytest.raises(InputError, match=r"got 1 in .*one.csv \(1 more rows are excluded"):
        ct.random_effects(one)
