"""RBesT's documented single-arm (decision1S/oc1S) and two-arm (decision2S/oc2S) values, reproduced.

Sources (RBesT 1.8-2, CRAN mirror github:cran/RBesT; no RBesT code is copied):

* the "Getting started with RBesT (binary)" vignette, vignettes/introduction.Rmd
  and its rendered output inst/doc/introduction.html (ankylosing spondylitis
  example): the printed MAP mixture, its ESS, summary, the 80 %-power effects
  of four designs, two decisions at the boundary and the final analysis;
* tests/testthat/test-oc2S.R: Schmidli et al. (2014) Table 2 (within 2.5
  percentage points, as RBesT's test), the type I error of a 100:100 design
  with uniform priors (within 0.01 of 0.05), and designs whose decision never
  changes;
* tests/testthat/test-oc1S.R: the binary type I error of a 1000-patient
  single-arm design (within 0.01 of 0.05) and the meaning of its critical value.

Where RBesT prints no number (the single-arm binary case), its own test
expectations are used, and an exact closed form (rational arithmetic) checks
the CLI's ``--threshold`` design.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy.optimize import brentq

from lmsbayes.design import (
    BayesianSingleArm,
    TwoArmDesign,
    operating_characteristics,
    paired_success,
)
from lmsbayes.prior import BetaMixture, ess, robustify, to_json

# vignette: `map <- automixfit(map_mcmc); print(map)` (7 significant digits printed)
AS_MAP = BetaMixture.mixture(
    [(0.6167463, 19.1916387, 57.7779318), (0.3832537, 3.5278745, 9.3735980)]
)
UNIFORM = BetaMixture.from_ab(1, 1)
TREAT = BetaMixture.from_ab(0.5, 1)  # `treat_prior <- mixbeta(c(1, 0.5, 1))`


# --------------------------------------------------------------------------- the vignette
def test_as_map_ess_and_robustify_as_printed():
    # round(ess(map, "elir")) 37, "moment" 26, "morita" 63; round(ess(map_robust)) 26
    assert round(ess(AS_MAP, "elir")) == 37
    assert round(ess(AS_MAP, "moment")) == 26
    assert round(ess(AS_MAP, "morita")) == 63
    robust = robustify(AS_MAP, weight=0.2, mean=0.5)
    np.testing.assert_allclose(robust.weights, [0.493397, 0.306603, 0.2], atol=5e-7)
    np.testing.assert_array_equal(robust.a[-1:], [1.0])
    assert round(ess(robust)) == 26


def test_as_map_summary_as_printed():
    # summary(map): mean 0.25857963 sd 0.08423297 2.5% 0.10808237 50% 0.25003652 97.5% 0.47028444
    assert AS_MAP.mean() == pytest.approx(0.25857963, abs=5e-8)
    assert AS_MAP.sd() == pytest.approx(0.08423297, abs=5e-8)
    # RBesT's qmix inverts the mixture cdf numerically to ~3e-5; ours inverts it to
    # machine precision (tests/test_prior.py), so the quantiles agree to 5e-5
    np.testing.assert_allclose(
        AS_MAP.ppf([0.025, 0.5, 0.975]), [0.10808237, 0.25003652, 0.47028444], atol=5e-5
    )


@pytest.mark.parametrize(
    ("name", "n_t", "n_c", "prior_t", "prior_c", "delta80"),
    [
        ("non-robust", 24, 6, TREAT, AS_MAP, 0.298),
        ("uniform 24:24", 24, 24, UNIFORM, UNIFORM, 0.341),
        ("robust", 24, 6, TREAT, robustify(AS_MAP, 0.2, 0.5), 0.368),
        ("uniform", 24, 6, UNIFORM, UNIFORM, 0.529),
    ],
)
def test_as_effect_with_80_percent_power_as_printed(name, n_t, n_c, prior_t, prior_c, delta80):
    # `find_delta(design, mean_control, 0.8)` with decision2S(0.95, 0, lower.tail = FALSE):
    # the table printed by knitr::kable(target_effect, digits = 3)
    d = TwoArmDesign(n_t, n_c, prior_t=prior_t, prior_c=prior_c, success_prob=0.95)
    m = AS_MAP.mean()
    root = brentq(lambda x: paired_success(d, [m + x], [m])[0] - 0.8, 0.0, 1.0 - m, xtol=1e-10)
    # 3 printed decimals, uniroot's default tolerance (1.2e-4) and the MAP printed to 7 digits
    assert abs(root - delta80) <= 0.0005 + 1.3e-4, (name, root)


def test_as_decisions_at_the_boundary_as_printed():
    # decision(postmix(treat_prior, n = 24, r = 15), postmix(map, n = 6, r = 3)) -> 1
    # decision(postmix(treat_prior, n = 24, r = 14), postmix(map, n = 6, r = 4)) -> 0
    d = TwoArmDesign(24, 6, prior_t=TREAT, prior_c=AS_MAP, success_prob=0.95)
    assert d.decision(TREAT.posterior(15, 24), AS_MAP.posterior(3, 6))
    assert not d.decision(TREAT.posterior(14, 24), AS_MAP.posterior(4, 6))
    b = d.boundaries().set_index("r_c")["min_r_t"]
    assert b.loc[3] <= 15 and b.loc[4] > 14
    # "the decision will always be negative if there are less than 10 events in the treatment group"
    assert b.min() >= 10


def test_as_final_analysis_as_printed():
    # pmixdiff(post_treat, post_placebo, 0, lower.tail = FALSE) = 0.9913233, with the
    # robust MAP, 1 of 6 on placebo and 14 of 24 on treatment
    d = TwoArmDesign(24, 6, prior_t=TREAT, prior_c=robustify(AS_MAP, 0.2, 0.5), success_prob=0.95)
    assert d.posterior_prob(14, 1) == pytest.approx(0.9913233, abs=5e-8)


# --------------------------------------------------------------------------- test-oc2S.R
def test_schmidli_2014_table_2_as_in_rbest_tests():
    # N = 40, control size N - round(ess(prior, "morita")), decision2S(0.975, 0, FALSE);
    # RBesT's test accepts 2.5 percentage points (the paper's values are simulated)
    pc = np.tile(np.arange(1, 7) / 10, 2)
    delta = np.repeat([0.0, 0.3], 6)
    ref = {
        "inf": [0, 1.6, 6.1, 13.7, 26.0, 44.4, 81.6, 87.8, 93.4, 97.9, 99.6, 100.0],
        "uni": [1.8, 2.3, 2.4, 2.6, 2.8, 2.6, 89.7, 82.1, 79.5, 79.5, 81.9, 89.8],
    }
    priors = {"inf": BetaMixture.from_ab(4, 16), "uni": UNIFORM}
    n_ctl = {k: 40 - round(ess(p, "morita")) for k, p in priors.items()}
    assert n_ctl == {"inf": 20, "uni": 38}
    for k, prior in priors.items():
        d = TwoArmDesign(40, n_ctl[k], prior_t=UNIFORM, prior_c=prior, success_prob=0.975)
        got = 100 * paired_success(d, pc + delta, pc)
        assert np.max(np.abs(got - np.array(ref[k]))) < 2.5, (k, np.round(got, 1))


def test_uniform_100_100_type_one_error_as_in_rbest_tests():
    # oc2S(beta_prior, beta_prior, 100, 100, decision2S(0.95, 0, ...)) at p = 0.1, ..., 0.9: 0.05 +-
    # 0.01
    d = TwoArmDesign(100, 100, success_prob=0.95)
    p = np.arange(1, 10) / 10
    assert np.all(np.abs(paired_success(d, p, p) - 0.05) < 0.01)


def test_decision_that_never_changes_as_in_rbest_tests():
    # mixbeta(c(1, 0.9, 1000), param = "mn") vs mixbeta(c(1, 0.1, 1000), param = "mn"), 20:20:
    # with the upper-tail decision the result is always 1, with the arms swapped always 0
    high, low = BetaMixture.from_mean_n(0.9, 1000), BetaMixture.from_mean_n(0.1, 1000)
    p = np.arange(1, 10) / 10
    always = TwoArmDesign(20, 20, prior_t=high, prior_c=low, success_prob=0.95)
    np.testing.assert_allclose(paired_success(always, p, p), 1.0, atol=1e-12)
    assert (always.boundaries()["min_r_t"] == 0).all()
    never = TwoArmDesign(20, 20, prior_t=low, prior_c=high, success_prob=0.95)
    np.testing.assert_allclose(paired_success(never, p, p), 0.0, atol=1e-12)
    assert never.boundaries()["min_r_t"].isna().all()


# --------------------------------------------------------------------------- test-oc1S.R
def test_binary_single_arm_type_one_error_as_in_rbest_tests():
    # oc1S(mixbeta(c(1, 1, 1)), 1000, decision1S(0.95, 0.4, lower.tail = TRUE))(0.4): 0.05 +- 0.01.
    # lmsbayes decides "greater is better"; p -> 1 - p maps RBesT's lower-tail rule at 0.4 onto
    # P(p > 0.6 | data) >= 0.95 at a true rate of 0.6 (the uniform prior is symmetric)
    mirrored = BayesianSingleArm(looks=(1000,), p0=0.6, success_prob=0.95, futility_pp=None)
    assert abs(float(operating_characteristics(mirrored, p=[0.6])["prob_success"][0]) - 0.05) < 0.01
    upper = BayesianSingleArm(looks=(1000,), p0=0.4, success_prob=0.95, futility_pp=None)
    assert abs(float(operating_characteristics(upper, p=[0.4])["prob_success"][0]) - 0.05) < 0.01


def test_single_arm_critical_value_semantics_as_in_rbest_tests():
    # decision1S_boundary(lower.tail = FALSE) returns crit with decision(crit) = 0 and
    # decision(crit + 1) = 1; lmsbayes' min_for_success is crit + 1
    d = BayesianSingleArm(looks=(1000,), p0=0.4, success_prob=0.95, futility_pp=None)
    crit = int(d.boundaries()["min_for_success"].iloc[-1]) - 1
    for r, expected in ((crit - 1, False), (crit, False), (crit + 1, True)):
        assert d.decision(d.prior.posterior(r, 1000)) is expected


# --------------------------------------------------------------------------- exact closed form
def _beta_fn(x: int, y: int) -> Fraction:
    return Fraction(math.factorial(x - 1) * math.factorial(y - 1), math.factorial(x + y - 1))


def _sf_exact(a: int, b: int, t: Fraction) -> Fraction:
    """P(p > t) for p ~ Beta(a, b), integer shapes: P(Bin(a + b - 1, t) <= a - 1)."""
    m = a + b - 1
    return sum((math.comb(m, j) * t**j * (1 - t) ** (m - j) for j in range(a)), Fraction(0))


def _post_prob_exact(comps, r: int, n: int, t: Fraction) -> Fraction:
    w = [Fraction(wk) * _beta_fn(a + r, b + n - r) / _beta_fn(a, b) for wk, a, b in comps]
    total = sum(w)
    return sum(
        (
            wk / total * _sf_exact(a + r, b + n - r, t)
            for wk, (_, a, b) in zip(w, comps, strict=True)
        ),
        Fraction(0),
    )


def test_cli_threshold_design_matches_exact_rational_decision1s(tmp_path, capsys):
    """`lmsbayes design prior.json --threshold 0.4 --success 0.975 --looks 40` is
    decision1S/oc1S."""
    from lmsbayes.cli import main

    comps = [(Fraction(4, 5), 12, 28), (Fraction(1, 5), 1, 1)]
    prior = BetaMixture.mixture([(float(w), a, b) for w, a, b in comps])
    path = tmp_path / "prior.json"
    to_json(prior, path)
    t, c, n = Fraction(2, 5), Fraction(39, 40), 40
    exact_min = next(r for r in range(n + 1) if _post_prob_exact(comps, r, n, t) >= c)

    # the success probability at the threshold and at 0.55, also exactly
    def p_success(p: Fraction) -> float:
        return float(
            sum(math.comb(n, r) * p**r * (1 - p) ** (n - r) for r in range(exact_min, n + 1))
        )

    assert (
        main(["design", str(path), "--threshold", "0.4", "--success", "0.975", "--looks", "40"])
        == 0
    )
    out = capsys.readouterr().out
    assert (
        "the prior is the prior of the arm's own rate" in out and "RBesT's decision1S / oc1S" in out
    )
    assert f"{exact_min} of 40" in out
    assert f"P(success) at p0 = 0.400 (the fixed threshold): {p_success(t):.4f}" in out
    d = BayesianSingleArm(looks=(40,), p0=0.4, prior=prior, success_prob=0.975)
    assert int(d.boundaries()["min_for_success"].iloc[0]) == exact_min
    assert float(operating_characteristics(d, p=[0.55])["prob_success"][0]) == pytest.approx(
        p_success(Fraction(11, 20)), abs=1e-12
    )
