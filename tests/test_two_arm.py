"""Two-arm designs: interims by exact enumeration vs simulation, the HR scale, OC over priors,
sample-size search, the borrowing trade-off, warnings and bad input; the design CLI."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import integrate

from lmsbayes.cli import main
from lmsbayes.design import (
    KOPP_SCHNEIDER_2020,
    BayesianSingleArm,
    HazardRatioDecision,
    TwoArmDesign,
    borrowing_tradeoff,
    design_warnings,
    effect_rates,
    find_robust_weight,
    paired_success,
    simon,
    two_arm_oc,
    two_arm_sample_size,
)
from lmsbayes.errors import OptionError, WorkLimitError
from lmsbayes.prior import BetaMixture, ess, robustify, to_json

MAP = BetaMixture(
    weights=[0.7, 0.3], a=[30.0, 8.0], b=[22.0, 6.0]
)  # 1L-like PFSR-6m prior, mean 0.575
ROBUST = robustify(MAP, 0.2, mean=MAP.mean())
VAGUE = BetaMixture.from_ab(1, 1)


# --------------------------------------------------------------------------- decisions and scales
def test_hazard_ratio_decision_against_quadrature():
    post_t, post_c = VAGUE.posterior(30, 40), MAP.posterior(10, 20)
    rule = HazardRatioDecision(hr=0.8, prob=0.9)
    ref = integrate.quad(
        lambda c: post_c.pdf(c) * post_t.sf(c**0.8), 0, 1, epsabs=1e-13, limit=500
    )[0]
    assert rule.prob_exceeds(post_t, post_c) == pytest.approx(ref, abs=1e-9)
    # hr = 1 is superiority, the same rule as a zero difference
    d_hr, d_diff = TwoArmDesign(30, 15, prior_c=MAP, hr=1.0), TwoArmDesign(30, 15, prior_c=MAP)
    assert d_hr.boundaries()["min_r_t"].equals(d_diff.boundaries()["min_r_t"])
    assert "HR = log p_t / log p_c" in str(d_hr.decision)


def test_effect_rates_scales():
    np.testing.assert_allclose(effect_rates([0.58, 0.28], 0.65, "hr"), [0.58**0.65, 0.28**0.65])
    np.testing.assert_allclose(effect_rates([0.3, 0.95], 0.1, "difference"), [0.4, np.nan])
    with pytest.raises(OptionError, match="scale must be one of"):
        effect_rates([0.3], 0.1, "ratio")


# --------------------------------------------------------------------------- interims
def _simulate(design: TwoArmDesign, p_t: float, p_c: float, reps: int, rng) -> dict:
    """Trials simulated against the brute-force tables of posterior probabilities (no staircase)."""
    looks = design.looks
    tables = [design.prob_table(k) for k in range(len(looks))]
    inc_t = np.diff([0] + [t for t, _ in looks])
    inc_c = np.diff([0] + [c for _, c in looks])
    xt = np.cumsum(rng.binomial(inc_t, p_t, size=(reps, len(looks))), axis=1)
    xc = np.cumsum(rng.binomial(inc_c, p_c, size=(reps, len(looks))), axis=1)
    running = np.ones(reps, dtype=bool)
    success = np.zeros(reps, dtype=bool)
    n_used = np.zeros(reps)
    for k, (nt, nc) in enumerate(looks):
        prob = tables[k][xt[:, k], xc[:, k]]
        final = k == len(looks) - 1
        eff = prob >= design.success_prob - 1e-12
        fut = (
            np.zeros(reps, dtype=bool)
            if final or design.futility_prob is None
            else prob < design.futility_prob
        )
        eff &= ~fut
        stop = running & (eff | fut | final)
        success |= running & eff & (final | design.efficacy_stop)
        n_used[stop] = nt + nc
        running &= ~stop
        if not design.efficacy_stop and not final:
            success &= ~(stop & ~fut)  # an interim never stops for success then
    return {"prob_success": success.mean(), "expected_n": n_used.mean(), "sd_n": n_used.std()}


@pytest.mark.parametrize(("p_t", "p_c"), [(0.575, 0.575), (0.70, 0.575), (0.8, 0.8)])
def test_interim_enumeration_agrees_with_simulation(p_t, p_c):
    d = TwoArmDesign(
        40, 20, prior_c=ROBUST, success_prob=0.975, interims=((20, 10),), futility_prob=0.2
    )
    _, eff = d._probs(np.array([p_t]), np.array([p_c]))
    oc = two_arm_oc(d, [p_c], priors={"robust": ROBUST})
    reps = 40_000
    sim = _simulate(d, p_t, p_c, reps, np.random.default_rng(11))
    q = float(eff.sum())
    assert abs(sim["prob_success"] - q) <= 4 * np.sqrt(max(q * (1 - q), 1e-6) / reps)
    if p_t == p_c:
        assert float(oc["prob_success"].sel(prior="robust", effect=0.0)[0]) == pytest.approx(
            q, abs=1e-14
        )
        en = float(oc["expected_n"].sel(prior="robust", effect=0.0)[0])
        assert abs(sim["expected_n"] - en) <= 4 * sim["sd_n"] / np.sqrt(reps)


def test_interims_add_stops_and_sum_to_one():
    d = TwoArmDesign(60, 30, prior_c=MAP, interims=((20, 10), (40, 20)), futility_prob=0.1)
    fut, eff = d._probs(np.array([0.5, 0.8]), np.array([0.5, 0.5]))
    np.testing.assert_allclose((fut + eff).sum(axis=1), 1.0, atol=1e-12)
    assert np.all(fut[:, :2].sum(axis=1) > 0) and np.all(eff[:, :2].sum(axis=1) > 0)
    b = d.boundaries()
    assert sorted(b["look"].unique()) == [1, 2, 3] and "min_r_t_continue" in b
    assert b[b.look == 3]["min_r_t_continue"].isna().all()
    assert "interims at n_t:n_c = 20:10, 40:20" in str(d)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"interims": ((20, 30),)}, "interims must be"),
        ({"interims": ((30, 10), (20, 15))}, "interims must be"),
        ({"interims": ((40, 20),)}, "interims must be"),
        ({"interims": 5}, "interims must be"),
        ({"futility_prob": 0.99}, "futility_prob must be below success_prob"),
        ({"hr": 0.0}, "hr must be a finite number > 0"),
        ({"hr": 0.8, "delta": 0.1}, "either delta or hr"),
        ({"n_t": 5000}, "n_t must be <= 2000"),
    ],
)
def test_two_arm_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TwoArmDesign(**({"n_t": 40, "n_c": 20} | kwargs))


# --------------------------------------------------------------------------- OC over priors
def test_two_arm_oc_curve_over_priors():
    d = TwoArmDesign(40, 20, prior_c=MAP)
    oc = two_arm_oc(
        d, effects=[0.65], scale="hr", priors={"vague": VAGUE, "MAP": MAP, "robust MAP": ROBUST}
    )
    assert oc["prob_success"].dims == ("prior", "effect", "p_c")
    assert list(oc["effect"].values) == [1.0, 0.65] and oc["p_c"].size == 101
    np.testing.assert_allclose(oc["p_t"].sel(effect=1.0), oc["p_c"])
    t1 = oc["prob_success"].sel(effect=1.0)
    # a vague control prior keeps the type I error near 1 - 0.975 everywhere; the MAP prior
    # inflates it where the true control rate is far above the historical one, the robust
    # MAP less so (the 0.117 at 0.7 vs 0.044-0.049 is of this kind)
    assert float(t1.sel(prior="vague").max()) < 0.035
    assert (
        float(t1.sel(prior="MAP", p_c=0.8))
        > float(t1.sel(prior="robust MAP", p_c=0.8))
        > float(t1.sel(prior="vague", p_c=0.8))
    )
    # each point is the paired OC of the design with that prior
    for name, prior in (("MAP", MAP), ("vague", VAGUE)):
        ref = paired_success(TwoArmDesign(40, 20, prior_c=prior), [0.3**0.65, 0.7], [0.3, 0.7])
        np.testing.assert_allclose(
            [
                float(oc["prob_success"].sel(prior=name, effect=0.65, p_c=0.3)),
                float(t1.sel(prior=name, p_c=0.7)),
            ],
            ref,
            atol=1e-14,
        )
    diff = two_arm_oc(d, [0.5, 0.95], [0.1], scale="difference")
    assert np.isnan(diff["prob_success"].sel(effect=0.1, p_c=0.95).item())


# --------------------------------------------------------------------------- sample size
def test_sample_size_is_the_first_size_meeting_both_targets():
    res = two_arm_sample_size(
        VAGUE,
        p_c=0.3,
        p_t=0.6,
        power=0.8,
        alpha=0.05,
        ratio=1.0,
        type1_range=(0.1, 0.9),
        n_c_max=80,
    )
    assert res.design is not None
    n = res.design.n_c
    grid = np.linspace(0.1, 0.9, 101)
    for m, expect_ok in ((n, True), (n - 1, False)):
        d = TwoArmDesign(m, m, success_prob=0.975)
        ok = (
            paired_success(d, grid, grid).max() <= 0.05
            and paired_success(d, [0.6], [0.3])[0] >= 0.8
        )
        assert bool(ok) is expect_ok
    assert not res.table[res.table["n_c"] < n]["ok"].any()
    assert res.table["n_c"].is_monotonic_increasing
    assert f"n_t = {n}, n_c = {n}" in str(res)
    # the record states the range the type I error was controlled over (not the search's bracket of
    # sizes)
    assert res.targets["type1_range"] == (0.1, 0.9)
    assert "over true rates [0.1, 0.9]" in str(res)


def test_sample_size_with_a_map_prior_and_allocation_ratio():
    res = two_arm_sample_size(
        ROBUST,
        p_c=0.575,
        p_t=0.575**0.5,
        power=0.8,
        alpha=0.1,
        type1_range=(0.4, 0.75),
        ratio=2.0,
        n_c_max=120,
    )
    assert res.design is not None and res.design.n_t == int(np.ceil(2 * res.design.n_c))
    row = res.table.iloc[-1]
    assert row["power"] >= 0.8 and row["max_type1"] <= 0.1
    none = two_arm_sample_size(MAP, p_c=0.575, p_t=0.6, power=0.99, alpha=0.01, n_c_max=5)
    assert none.design is None and "no design with n_c <= 5" in str(none)
    with pytest.raises(WorkLimitError, match="n_c_max"):
        two_arm_sample_size(MAP, p_c=0.5, p_t=0.6, n_c_max=1500, ratio=2.0)


# --------------------------------------------------------------------------- trade-off
def test_borrowing_tradeoff_rows_are_the_designs_they_name():
    d = TwoArmDesign(40, 20)
    res = borrowing_tradeoff(
        d, MAP, [0.0, 0.3, 1.0], type1_range=(0.3, 0.8), p_t=0.7, p_c=0.575, bounded=True
    )
    grid = np.linspace(0.3, 0.8, 101)
    rob = robustify(MAP, 0.3, mean=MAP.mean(), bounded=True)
    t1 = paired_success(TwoArmDesign(40, 20, prior_c=rob), grid, grid)
    assert res.table.loc[0.3, "max_type1"] == pytest.approx(t1.max(), abs=1e-14)
    assert res.table.loc[0.3, "power"] == pytest.approx(
        paired_success(TwoArmDesign(40, 20, prior_c=rob), [0.7], [0.575])[0]
    )
    assert res.table.loc[0.3, "ess_elir"] == pytest.approx(ess(rob, "elir"))
    assert res.table.loc[0.0, "ess_elir"] == pytest.approx(ess(MAP, "elir"))
    assert list(res.table.index) == [0.0, 0.3, 1.0, "vague"]
    assert res.curves["type1"].dims == ("w", "p")
    assert KOPP_SCHNEIDER_2020 in str(res)
    # RBesT's robust component with a mean other than 1/2 has a < 1: ELIR undefined, said so
    rb = borrowing_tradeoff(d, MAP, [0.2], type1_range=(0.3, 0.8), p_t=0.7, p_c=0.575)
    assert np.isnan(rb.table.loc[0.2, "ess_elir"])
    # the printed table then reports one ESS, by moments, and says why
    assert "ESS (moment)" in str(rb) and "ELIR is not defined" in str(rb)
    assert "undefined" not in str(rb) and "ESS (ELIR)" in str(res)


def test_find_robust_weight_caps_the_worst_type_one_error():
    d = TwoArmDesign(40, 20)
    w, scan = find_robust_weight(
        d, MAP, max_type1=0.10, type1_range=(0.3, 0.8), p_t=0.7, p_c=0.575, bounded=True, step=0.05
    )
    assert w is not None and 0 < w < 1
    tab = scan.table.drop(index="vague")
    assert tab.loc[w, "max_type1"] <= 0.10
    assert all(tab.loc[v, "max_type1"] > 0.10 for v in tab.index if v < w)
    # under strict control over all of [0, 1] even the robust component alone may not make the cap
    w_all, _ = find_robust_weight(
        d, MAP, max_type1=0.03, type1_range=(0.0, 1.0), p_t=0.7, p_c=0.575, step=0.25
    )
    assert w_all is None or w_all >= 0.75


def test_single_arm_tradeoff_and_warnings():
    d = BayesianSingleArm(
        looks=(40,), p0=0.4, prior=BetaMixture.from_ab(12, 28), success_prob=0.975, futility_pp=None
    )
    res = borrowing_tradeoff(
        d, BetaMixture.from_ab(12, 28), [0.0, 0.5], type1_range=(0.2, 0.6), p_t=0.6
    )
    assert res.curves["p"].values.max() == pytest.approx(0.4)  # the null region ends at p0
    with pytest.raises(OptionError, match="uncertain p0"):
        borrowing_tradeoff(BayesianSingleArm(looks=(40,), p0=MAP), MAP, [0.2], p_t=0.7)
    # the README's case: an uncertain p0 that needs 44 of 50 warns
    hopeless = BayesianSingleArm(looks=(20, 35, 50), p0=BetaMixture.from_mean_n(0.75, 200))
    msgs = design_warnings(hopeless, 0.75, 0.75**0.65)
    assert any("power at p1" in m for m in msgs)
    never = BayesianSingleArm(looks=(10,), p0=0.95, success_prob=0.999, futility_pp=None)
    assert any("practically impossible" in m for m in design_warnings(never, 0.95, 0.97))
    assert design_warnings(simon(0.2, 0.4).optimal, 0.2, 0.4) == []


def test_simon_at_tiny_rates_stops_quickly_naming_nmax():
    t0 = time.perf_counter()
    with pytest.raises(WorkLimitError, match=r"nmax \(--nmax\)"):
        simon(0.01, 0.02)
    with pytest.raises(WorkLimitError, match="nmax must be <= 300"):
        simon(0.2, 0.4, nmax=5000)
    assert time.perf_counter() - t0 < 5.0


# --------------------------------------------------------------------------- the CLI
@pytest.fixture
def map_file(tmp_path):
    path = tmp_path / "map.json"
    # as `lmsbayes prior` writes it: the file says it is a MAP prior
    made = BetaMixture(
        MAP.weights, MAP.a, MAP.b, provenance={"source": "lmsbayes predictive draws"}
    )
    to_json(made, path)
    return str(path)


def test_cli_two_arm_never_robustifies_a_robust_prior(tmp_path, capsys):
    from lmsbayes.prior import robustify

    made = BetaMixture(
        MAP.weights, MAP.a, MAP.b, provenance={"source": "lmsbayes predictive draws"}
    )
    path = tmp_path / "robust.json"
    to_json(robustify(made, 0.3), path)
    argv = ["design", str(path), "--kind", "two-arm", "--n-t", "40", "--n-c", "20"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "robust MAP (w=0.3, from the file)" in out and "robust robust" not in out
    assert main([*argv, "--robust", "0.2"]) == 2
    assert "already a robust MAP prior" in capsys.readouterr().err


def test_cli_two_arm_shows_both_counts_and_type_one_error_curve(map_file, capsys):
    assert (
        main(
            [
                "design",
                map_file,
                "--kind",
                "two-arm",
                "--n-t",
                "40",
                "--n-c",
                "20",
                "--type1-range",
                "0.3,0.8",
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    assert "control progression-free" in out and "treatment progression-free for success" in out
    assert "responders" not in out
    assert "never (not even 40 of 40)" in out or ">= " in out
    assert "type I: vague" in out and "type I: MAP" in out and "type I: robust MAP (w=0.2)" in out
    assert "P(success) at p0 = 0.575" in out and "P(success) at p1 = " in out
    assert "Worst type I error over true control rates [0.3, 0.8]" in out
    assert "success (one-sided): P(p_t - p_c > 0 | data) >= 0.975" in out  # the Python default
    assert "lmsbayes: warning: power at p1" in err


def test_cli_single_arm_prior_roles(map_file, capsys):
    assert main(["design", map_file, "--p0", "0.4", "--looks", "40"]) == 0
    out = capsys.readouterr().out
    assert "the prior is the prior of the arm's own rate" in out  # a given prior is never ignored
    assert main(["design", map_file]) == 0
    out = capsys.readouterr().out
    assert (
        "uncertain historical rate p0" in out
        and "P(success) at p0 = 0.575 (mean of the historical p0 prior)" in out
    )
    # why the power against an uncertain p0 is what it is, with the count it needs
    assert "Decision rule: success at n = 50 needs >= " in out and "--threshold p0" in out
    need = int(out.split("needs >= ")[1].split()[0])
    from lmsbayes.design import BayesianSingleArm

    assert need == int(
        BayesianSingleArm(looks=(20, 35, 50), p0=MAP).boundaries().iloc[-1]["min_for_success"]
    )
    assert main(["design", "--threshold", "0.3"]) == 0
    assert "vague prior Beta(1, 1)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--threshold", "1.5"], "argument --threshold: must lie in (0, 1), got '1.5'"),
        (["--threshold", "0"], "argument --threshold: must lie in (0, 1)"),
        (["--looks", "30,20"], "--looks must be strictly increasing"),
        (["--kind", "two-arm", "--interims", "30:40"], "interims must be"),
        (["--kind", "two-arm", "--interims", "30-40"], "--interims must be n_t:n_c pairs"),
        (["--kind", "two-arm", "--type1-range", "0.8,0.3"], "--type1-range must satisfy"),
        (["--kind", "simon", "--p0", "0.01", "--p1", "0.02"], "--nmax"),
        (["--threshold", "0.3", "--p0", "0.3"], "give the fixed null rate once"),
    ],
)
def test_cli_design_bad_options(map_file, capsys, argv, match):
    try:
        code = main(["design", map_file, *argv] if "simon" not in argv else ["design", *argv])
    except SystemExit as exc:  # argparse's own checks exit through the parser
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("lmsbayes: error:") and match in err and err.count("\n") == 1


def test_cli_wrong_kind_of_prior_file(tmp_path, capsys):
    path = tmp_path / "fit.nc"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 16)
    assert main(["design", str(path)]) == 2
    assert "HDF5/netCDF-4 file (a saved fit?)" in capsys.readouterr().err


def test_cli_tradeoff_and_weight_search(map_file, capsys):
    assert (
        main(
            [
                "design",
                map_file,
                "--kind",
                "two-arm",
                "--n-t",
                "20",
                "--n-c",
                "10",
                "--type1-range",
                "0.3,0.8",
                "--max-type1",
                "0.1",
                "--robust-bounded",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert (
        "Borrowing trade-off" in out
        and "smallest robust weight with worst type I error <= 0.1" in out
    )
    assert "Kopp-Schneider" in out


def test_cli_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["design", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 20,35,50)" in out and "default 0.95 single-arm, 0.975 two-arm" in out
