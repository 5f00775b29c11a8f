"""Tests for lmsbayes.prior: the BetaMixture value object, EM fitting, ESS, robustify, I/O.

References used below:
- closed forms: conjugate Beta-binomial update and scipy.stats.betabinom;
- quadrature (scipy.integrate.quad) for mixture posterior weights and the ELIR
  integral, computed from first principles independently of the module;
- RBesT (Novartis/RBesT on GitHub): tests/testthat/test-utils.R and
  inst/examples/ess.R, inst/examples/robustify.R.
"""

from __future__ import annotations

import json
import math
import os
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special, stats

from lmsbayes.prior import (
    SCHEMA,
    BetaMixture,
    ess,
    fit_mixture,
    from_dict,
    map_prior,
    mixture_fit_diagnostic,
    read_prior,
    robustify,
    to_dict,
    to_json,
    to_rbest,
)

# (weights, a, b): a single beta, a two-component MAP-like prior, a robustified
# prior with a flat component, and a bimodal three-component mixture
MIXTURES = {
    "single": ([1.0], [5.0], [15.0]),
    "two": ([0.5, 0.5], [4.0, 10.0], [10.0, 40.0]),
    "robust": ([0.2, 0.8], [1.0, 10.0], [1.0, 2.0]),
    "bimodal": ([0.3, 0.5, 0.2], [2.0, 40.0, 0.7], [20.0, 15.0, 0.9]),
}
X = np.array([1e-6, 0.01, 0.1, 0.25, 0.5, 0.73, 0.9, 0.999])
Q = np.array([0.0, 1e-6, 0.025, 0.1, 0.5, 0.9, 0.975, 1 - 1e-6, 1.0])


def scipy_mixture(w, a, b):
    """The same mixture assembled by hand from scipy.stats.beta."""
    comps = [stats.beta(ai, bi) for ai, bi in zip(a, b, strict=True)]
    return {
        "pdf": lambda x: sum(wi * c.pdf(x) for wi, c in zip(w, comps, strict=True)),
        "cdf": lambda x: sum(wi * c.cdf(x) for wi, c in zip(w, comps, strict=True)),
        "sf": lambda x: sum(wi * c.sf(x) for wi, c in zip(w, comps, strict=True)),
        "mean": sum(wi * c.mean() for wi, c in zip(w, comps, strict=True)),
        "var": sum(wi * (c.var() + c.mean() ** 2) for wi, c in zip(w, comps, strict=True))
        - sum(wi * c.mean() for wi, c in zip(w, comps, strict=True)) ** 2,
    }


@pytest.fixture(params=sorted(MIXTURES))
def case(request):
    w, a, b = MIXTURES[request.param]
    return BetaMixture(weights=w, a=a, b=b), scipy_mixture(w, a, b)


# ---------------------------------------------------------------- distribution maths
def test_pdf_cdf_sf_against_scipy(case):
    mix, ref = case
    np.testing.assert_allclose(mix.pdf(X), ref["pdf"](X), rtol=1e-12)
    np.testing.assert_allclose(mix.logpdf(X), np.log(ref["pdf"](X)), rtol=1e-12)
    np.testing.assert_allclose(mix.cdf(X), ref["cdf"](X), rtol=1e-12)
    np.testing.assert_allclose(mix.sf(X), ref["sf"](X), rtol=1e-12)


def test_moments_against_scipy(case):
    mix, ref = case
    assert mix.mean() == pytest.approx(ref["mean"], rel=1e-12)
    assert mix.var() == pytest.approx(ref["var"], rel=1e-12)
    assert mix.sd() == pytest.approx(math.sqrt(ref["var"]), rel=1e-12)


def test_ppf_inverts_scipy_cdf(case):
    mix, ref = case
    x = mix.ppf(Q)
    assert x[0] == 0.0 and x[-1] == 1.0
    inner = slice(1, -1)
    np.testing.assert_allclose(ref["cdf"](x[inner]), Q[inner], rtol=1e-9, atol=1e-13)
    assert np.all(np.diff(x) >= 0)


def test_ppf_equals_scipys_root_finder_on_random_mixtures():
    """The numpy bracketed Newton search against scipy.optimize.elementwise.find_root."""
    from scipy.optimize import elementwise

    from lmsbayes.prior.beta import beta_ppf

    rng = np.random.default_rng(0)
    for _ in range(200):
        k = rng.integers(2, 5)
        mix = BetaMixture(
            rng.dirichlet(np.ones(k)), rng.uniform(0.3, 80, k), rng.uniform(0.3, 80, k)
        )
        q = np.concatenate([rng.uniform(0, 1, 10), [1e-6, 0.025, 0.5, 0.975, 1 - 1e-6]])
        comp = beta_ppf(q[:, None], mix.a, mix.b)
        ref = elementwise.find_root(
            lambda x, qq, mix=mix: mix.cdf(x) - qq,
            (comp.min(-1), comp.max(-1)),
            args=(q,),
            tolerances={"xatol": 1e-15, "xrtol": 4 * np.finfo(float).eps},
        )
        # both stop within about 1e-15 of the root; measured at most 1.5e-12 apart, where a
        # component with b < 1 makes the cdf nearly flat
        np.testing.assert_allclose(mix.ppf(q), ref.x, rtol=0, atol=1e-11)


def test_ppf_shapes_and_single_component_exact():
    mix = BetaMixture.from_ab(3.0, 7.0)
    assert np.ndim(mix.ppf(0.3)) == 0
    assert mix.ppf([[0.1, 0.2], [0.3, 0.4]]).shape == (2, 2)
    np.testing.assert_array_equal(mix.ppf(Q), stats.beta.ppf(Q, 3.0, 7.0))
    two = BetaMixture(*MIXTURES["two"])
    assert two.ppf([0.3, 0.6]).shape == (2,)
    assert float(two.ppf(0.3)) == pytest.approx(float(two.ppf([0.3])[0]), abs=0)


def test_log_tails_stay_finite():
    mix = BetaMixture(*MIXTURES["two"])
    assert np.isfinite(mix.logpdf(1e-300))
    assert mix.logpdf(1.5) == -np.inf


def test_rvs_reproducible_and_moments():
    mix = BetaMixture(*MIXTURES["two"])
    d1 = mix.rvs(40_000, rng=7)
    np.testing.assert_array_equal(d1, mix.rvs(40_000, rng=7))
    # Monte Carlo tolerance: 5 standard errors of the mean
    assert d1.mean() == pytest.approx(mix.mean(), abs=5 * mix.sd() / math.sqrt(d1.size))
    assert mix.rvs((3, 4), rng=1).shape == (3, 4)


def test_constructors():
    m = BetaMixture.from_mean_n(0.3, 20)
    np.testing.assert_allclose([m.a[0], m.b[0]], [6.0, 14.0])
    m = BetaMixture.from_mean_sd(0.3, 0.1)
    assert m.mean() == pytest.approx(0.3) and m.sd() == pytest.approx(0.1)
    m = BetaMixture.mixture([(0.5, 4, 10), (0.5, 10, 40)])
    assert m == BetaMixture(*MIXTURES["two"]) and m.n_components == 2


def test_arrays_are_read_only_and_value_semantics():
    mix = BetaMixture([1], [2], [3])
    assert mix.a.dtype == float
    with pytest.raises(ValueError):
        mix.a[0] = 5.0
    other = BetaMixture([1.0], [2.0], [3.0], provenance={"seed": 1})
    assert mix == other and hash(mix) == hash(other)  # provenance is not part of ==
    assert mix != BetaMixture([1.0], [2.0], [3.5])


# ---------------------------------------------------------------- conjugate updates
@pytest.mark.parametrize(("a", "b", "r", "n"), [(1, 1, 0, 10), (2.5, 7.5, 3, 20), (30, 12, 40, 40)])
def test_single_beta_posterior_and_predictive_closed_form(a, b, r, n):
    mix = BetaMixture.from_ab(a, b)
    post = mix.posterior(r, n)
    assert post == BetaMixture.from_ab(a + r, b + n - r)
    y = np.arange(n + 1)
    np.testing.assert_allclose(mix.predictive_pmf(n), stats.betabinom.pmf(y, n, a, b), atol=1e-10)
    np.testing.assert_allclose(mix.predictive_cdf(n), stats.betabinom.cdf(y, n, a, b), atol=1e-10)
    assert mix.predictive_pmf(n, y=[r])[0] == pytest.approx(
        stats.betabinom.pmf(r, n, a, b), abs=1e-10
    )
    assert mix.predictive_pmf(n, y=n + 1) == 0.0


def test_mixture_posterior_weights_against_quadrature():
    w, a, b = MIXTURES["bimodal"]
    mix = BetaMixture(w, a, b)
    r, n = 9, 25
    # unnormalised posterior mass of each component: w_k int f_k(p) Bin(r | n, p) dp
    mass = [
        wk
        * integrate.quad(
            lambda p, ak=ak, bk=bk: stats.beta.pdf(p, ak, bk) * stats.binom.pmf(r, n, p),
            0,
            1,
            limit=200,
        )[0]
        for wk, ak, bk in zip(w, a, b, strict=True)
    ]
    post = mix.posterior(r, n)
    np.testing.assert_allclose(post.weights, np.array(mass) / sum(mass), rtol=1e-8)
    np.testing.assert_allclose(post.a, np.array(a) + r)
    np.testing.assert_allclose(post.b, np.array(b) + n - r)
    # the predictive pmf of the prior is the normaliser of Bayes' rule
    assert mix.predictive_pmf(n, r) == pytest.approx(sum(mass), rel=1e-8)


def test_posterior_large_n_does_not_underflow():
    post = BetaMixture(*MIXTURES["two"]).posterior(r=1500, n=5000)
    assert np.all(np.isfinite(post.weights)) and post.weights.sum() == pytest.approx(1.0)


# ---------------------------------------------------------------- EM fitting
@pytest.mark.slow
def test_em_recovers_two_component_mixture():
    true = BetaMixture.mixture([(0.6, 20.0, 60.0), (0.4, 30.0, 10.0)])
    draws = true.rvs(20_000, rng=20260101)
    for criterion in ("kl", "bic"):
        fit = fit_mixture(draws, max_components=3, criterion=criterion)
        assert fit.n_components == 2, criterion  # the true k
        np.testing.assert_allclose(fit.weights, true.weights, rtol=0.05)
        np.testing.assert_allclose(fit.a, true.a, rtol=0.05)
        np.testing.assert_allclose(fit.b, true.b, rtol=0.05)
        models = fit.provenance["fit"]["models"]
        assert [m["k"] for m in models] == [1, 2, 3]
        assert all(m["converged"] for m in models) and fit.provenance["fit"]["problems"] == []
    assert all(np.isfinite(m["bic"]) for m in models)


def test_em_single_beta_and_aic():
    draws = stats.beta.rvs(8.0, 24.0, size=5000, random_state=3)
    fit = fit_mixture(draws, max_components=2, criterion="aic")
    # AIC may keep a second, nearly redundant component; the fit must still match
    assert fit.mean() == pytest.approx(8 / 32, rel=0.01)
    assert fit.sd() == pytest.approx(stats.beta(8, 24).std(), rel=0.05)
    fit1 = fit_mixture(draws, max_components=1)
    assert fit1.a[0] == pytest.approx(8.0, rel=0.06) and fit1.b[0] == pytest.approx(24.0, rel=0.06)


def test_em_clips_exact_zeros_and_ones():
    draws = np.concatenate([stats.beta.rvs(2, 5, size=2000, random_state=1), [0.0, 1.0]])
    fit = fit_mixture(draws, max_components=1)
    assert np.all(np.isfinite(fit.a)) and fit.a[0] > 1 and fit.b[0] > 1


def test_fit_diagnostic_table():
    true = BetaMixture(*MIXTURES["two"])
    draws = true.rvs(5000, rng=11)
    diag = mixture_fit_diagnostic(true, draws)
    assert list(diag.columns) == ["draws", "mixture", "difference"]
    assert {"mean", "sd", "2.5%", "50%", "97.5%"} <= set(diag.index)
    # KS distance of a correct model: ~ 1.36 / sqrt(N) at the 95% level
    assert 0 < diag.attrs["ks_distance"] < 1.63 / math.sqrt(draws.size)
    assert diag.loc["50%", "difference"] == pytest.approx(0, abs=0.01)


def test_map_prior_from_dataarray_keeps_provenance(tmp_path):
    xr = pytest.importorskip("xarray")
    true = BetaMixture.from_ab(30, 70)
    da = xr.DataArray(true.rvs((4, 500), rng=5), dims=("chain", "draw"), name="p_new")
    prov = {"data_sha256": "ab12", "spec": "default.toml", "seed": 5}
    prior = map_prior(da, max_components=2, provenance=prov)
    assert prior.provenance["data_sha256"] == "ab12"
    assert prior.provenance["fit"]["n_draws"] == 2000
    assert prior.provenance["draws_name"] == "p_new"
    back = read_prior(to_json(prior, tmp_path / "map.json"))
    assert back == prior and back.provenance["spec"] == "default.toml"
    with pytest.raises(ValueError, match="landmark"):
        map_prior(da.expand_dims(landmark=[3, 6]))


@pytest.mark.slow
def test_map_prior_of_a_fit_records_its_setting(default_fit, tmp_path):
    from lmsbayes.predict import Setting

    with warnings.catch_warnings():
        warnings.simplefilter(
            "error"
        )  # a fit problem is a diagnostic on the result, never a warning
        case_mix = map_prior(default_fit, Setting.standardised("2L+"), 6)
        plain = map_prior(default_fit, Setting("2L+", "NR-T", 1.0), 6)
    for prior in (case_mix, plain):
        assert prior.provenance["fit"]["problems"] == []
        assert prior.provenance["fit"]["target"]["link"] in ("logit", "cloglog")
    # the line's case mix, not the R-T / half-uterine defaults a Setting of that line carries
    assert case_mix.provenance["setting"] == {"line": "2L+", "case_mix": True}
    back = read_prior(to_json(case_mix, tmp_path / "map.json"))
    assert back.provenance["setting"] == {"line": "2L+", "case_mix": True}
    assert plain.provenance["setting"] == {"line": "2L+", "treatment_class": "NR-T", "uterine": 1.0}
    assert plain.provenance["landmark_months"] == 6.0


@pytest.mark.parametrize(
    ("draws", "match"),
    [
        ([0.2, 1.2, 0.3], r"draws must lie in \[0, 1\].*1\.2"),
        ([0.2, np.nan, 0.3], r"draws must lie in \[0, 1\]"),
        ([0.4, 0.4, 0.4], "all equal"),
        ([0.4], "at least 2"),
    ],
)
def test_fit_mixture_bad_draws(draws, match):
    with pytest.raises(ValueError, match=match):
        fit_mixture(draws)


def test_fit_mixture_bad_options():
    with pytest.raises(
        ValueError, match=r"criterion must be one of \['kl', 'aic', 'bic'\], got 'dic'"
    ):
        fit_mixture([0.1, 0.2, 0.3], criterion="dic")
    with pytest.raises(ValueError, match="max_components must be an integer >= 1, got 0"):
        fit_mixture([0.1, 0.2, 0.3], max_components=0)


# ---------------------------------------------------------------- robustify
def test_robustify_follows_rbest():
    """RBesT tests/testthat/test-utils.R, 'beta mixture is robustified with Beta(1,1)'.

    bmix <- mixbeta(inf1 = c(0.2, 8, 3), inf2 = c(0.8, 10, 2));
    robustify(bmix, weight = 0.1, mean = 0.5) adds c(0.1, 1, 1), and with n = 0
    adds c(0.1, 0.5, 0.5).
    """
    bmix = BetaMixture.mixture([(0.2, 8, 3), (0.8, 10, 2)])
    rob = robustify(bmix, weight=0.1, mean=0.5)
    assert rob.n_components == 3
    np.testing.assert_allclose(rob.weights, [0.18, 0.72, 0.1])
    np.testing.assert_array_equal([rob.a[-1], rob.b[-1]], [1.0, 1.0])
    rob0 = robustify(bmix, weight=0.1, mean=0.5, n=0)
    np.testing.assert_array_equal([rob0.a[-1], rob0.b[-1]], [0.5, 0.5])
    # lmsbayes' one default: the robust component is centred at the prior's mean (RBesT: 1/2)
    centred = robustify(bmix, 0.1)
    assert centred.a[-1] / (centred.a[-1] + centred.b[-1]) == pytest.approx(bmix.mean())
    assert centred.a[-1] + centred.b[-1] == pytest.approx(2.0)
    # a robust prior is never robustified twice
    with pytest.raises(ValueError, match="already robust"):
        robustify(rob, 0.1)
    # mean of the robustified prior is the weighted average of the two parts
    rob3 = robustify(bmix, 0.25, mean=0.3, n=9)
    assert rob3.a[-1] / (rob3.a[-1] + rob3.b[-1]) == pytest.approx(0.3)
    assert rob3.a[-1] + rob3.b[-1] == pytest.approx(10.0)
    assert rob3.mean() == pytest.approx(0.75 * bmix.mean() + 0.25 * 0.3)
    assert rob3.provenance["robustify"] == {
        "weight": 0.25,
        "mean": 0.3,
        "n": 9.0,
        "bounded": False,
        "a": 3.0,
        "b": 7.0,
    }


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weight": 0.0}, "weight must lie in"),
        ({"weight": 1.0}, "weight must lie in"),
        ({"weight": 0.1, "mean": 1.2}, "mean must lie in"),
        ({"weight": 0.1, "n": -1}, "n must be"),
    ],
)
def test_robustify_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        robustify(BetaMixture.from_ab(2, 3), **kwargs)


# ---------------------------------------------------------------- effective sample size
def elir_by_quadrature(mix: BetaMixture) -> float:
    """ELIR from its definition, E_pi[ i_pi(p) p (1 - p) ], by quadrature in p.

    i_pi = -d2/dp2 log pi = E_r[-g_k'] - Var_r(g_k) with the component scores
    g_k = (a_k - 1)/p - (b_k - 1)/(1 - p) and responsibilities r_k(p).  Both terms
    are multiplied out with p (1 - p) so nothing overflows near 0 and 1, and each
    half of (0, 1) is integrated on t = log(distance to the nearer end): a shape
    parameter just above 1 puts ELIR mass at p ~ 1e-100, which quad in p misses.
    """
    w, a, b = mix.weights, mix.a, mix.b

    def lir_times_density(p, q):
        f = w * np.exp((a - 1) * np.log(p) + (b - 1) * np.log(q) - special.betaln(a, b))
        if f.sum() == 0.0:  # far tail: the density underflows, so does the integrand
            return 0.0
        r = f / f.sum()
        curv = r @ ((a - 1) * q / p + (b - 1) * p / q)
        score_pq = (a - 1) * q - (b - 1) * p  # g_k * p * q
        var = (r @ score_pq**2 - (r @ score_pq) ** 2) / (p * q)
        return f.sum() * (curv - var)

    def lower(t):  # p = e^t on (0, 1/2]
        p = math.exp(t)
        return lir_times_density(p, 1 - p) * p

    def upper(t):  # 1 - p = e^t on [1/2, 1)
        q = math.exp(t)
        return lir_times_density(1 - q, q) * q

    kw = {"limit": 1000, "epsabs": 1e-12, "epsrel": 1e-10}
    cut = math.log(0.5)
    return integrate.quad(lower, -700, cut, **kw)[0] + integrate.quad(upper, -700, cut, **kw)[0]


@pytest.mark.parametrize(("a", "b"), [(5, 15), (1.5, 30), (2, 2), (200, 50)])
def test_ess_single_beta_is_a_plus_b(a, b):
    """For a single Beta(a, b) all three ESS equal a + b (RBesT test-utils.R, 'conjugate
    beta case matches canonical formula'; Morita only after rounding, exactly for s = Inf)."""
    mix = BetaMixture.from_ab(a, b)
    assert ess(mix, "moment") == pytest.approx(a + b, rel=1e-12)
    assert ess(mix, "elir") == pytest.approx(a + b, rel=1e-12)
    assert ess(mix, "elir") == pytest.approx(elir_by_quadrature(mix), rel=1e-6)
    # the vague Beta(mode/s, (1-mode)/s) reference costs O(1/s) observations
    assert ess(mix, "morita") == pytest.approx(a + b, abs=0.05)
    assert ess(mix, "morita") < a + b
    assert ess(mix, "morita", s=np.inf) == pytest.approx(a + b, rel=1e-9)


def test_ess_rbest_help_example():
    """RBesT inst/examples/ess.R: prior <- mixbeta(c(1, 5, 15)); ess(prior) equals
    (a + b) = 20 (the default method is elir); and for
    bmix <- mixbeta(rob = c(0.2, 1, 1), inf = c(0.8, 10, 2)), ess(bmix, "moment") is
    sum(ms2beta(mean, sd)) and ELIR is predictively consistent (RBesT test-utils.R,
    'ESS elir is predictively consistent for beta mixtures': there checked by
    simulation to 0.75, here exactly by summing over the beta-binomial predictive)."""
    assert ess(BetaMixture.mixture([(1, 5, 15)])) == 20.0
    bmix = BetaMixture.mixture([(0.2, 1, 1), (0.8, 10, 2)])
    m, s = bmix.mean(), bmix.sd()
    n_matched = m * (1 - m) / s**2 - 1  # ms2beta: a + b of the matching beta
    assert ess(bmix, "moment") == pytest.approx(n_matched, rel=1e-12)
    # moment ESS is conservative and Morita liberal relative to ELIR (RBesT ?ess)
    assert ess(bmix, "moment") < ess(bmix, "elir") < ess(bmix, "morita")
    for n_forward in (10, 25):
        pmf = bmix.predictive_pmf(n_forward)
        post_ess = [ess(bmix.posterior(y, n_forward), "elir") for y in range(n_forward + 1)]
        assert pmf @ post_ess - n_forward == pytest.approx(ess(bmix, "elir"), rel=1e-8)


@pytest.mark.parametrize("name", ["two", "robust"])
def test_ess_elir_mixture_against_quadrature(name):
    mix = BetaMixture(*MIXTURES[name])
    assert ess(mix, "elir") == pytest.approx(elir_by_quadrature(mix), rel=1e-6)


def test_ess_elir_problematic_rbest_mixtures():
    """Mixtures from RBesT test-utils.R that broke earlier RBesT versions: finite, > 0."""
    cases = [
        [(0.48, 1, 11), (0.34, 6.9, 173), (0.18, 1.0, 1.13)],
        [
            (0.06429517, 437.32302999, 10.71709277),
            (0.03301215, 64.04211307, 2.14157953),
            (0.00269268, 5.92543558, 1.00000001),
            (0.9, 1.0, 1.0),
        ],
        [
            (0.6051804, 1.0210697, 11.5485831),
            (0.2324492, 1.1955047, 1.0831573),
            (0.1623704, 3.1342298, 6.7636286),
        ],
    ]
    for comps in cases:
        mix = BetaMixture.mixture(comps)
        value = ess(mix, "elir")
        assert np.isfinite(value) and value > 0
        # A component with b = 1 + 1e-8 contributes w * a exactly (E[(b-1) p/(1-p)] = a
        # for any b > 1), but from 1 - p < 1e-300, beyond any quadrature in double
        # precision; the module integrates that part in closed form.
        unseen = sum(wk * ak for wk, ak, bk in comps if 1 < bk < 1 + 1e-6)
        assert value == pytest.approx(elir_by_quadrature(mix) + unseen, rel=1e-6)


def test_ess_undefined_for_shape_below_one():
    """RBesT raises 'At least one parameter of the beta mixtures is less than 1'."""
    mix = BetaMixture.mixture([(0.95, 10, 5), (0.05, 0.9, 2)])
    with pytest.raises(ValueError, match=r"a >= 1 and b >= 1.*0\.9"):
        ess(mix, "elir")
    assert math.isnan(mix.summary()["ess_elir"])
    assert ess(mix, "moment") > 0


def test_ess_morita_warns_for_multimodal():
    mix = BetaMixture.mixture([(0.5, 5, 30), (0.5, 30, 5)])
    with pytest.warns(UserWarning, match="2 modes"):
        ess(mix, "morita")


def test_ess_bad_method():
    with pytest.raises(
        ValueError, match=r"method must be one of \['elir', 'moment', 'morita'\], got 'mle'"
    ):
        ess(BetaMixture.from_ab(2, 3), "mle")


# ---------------------------------------------------------------- summary, repr, export
def test_summary_series():
    mix = BetaMixture(*MIXTURES["two"])
    s = mix.summary()
    assert isinstance(s, pd.Series)
    assert list(s.index) == ["mean", "sd", "2.5%", "50%", "97.5%", "ess_elir"]
    assert s["50%"] == pytest.approx(float(mix.ppf(0.5)))
    assert s["ess_elir"] == pytest.approx(ess(mix))


def test_repr_round_trips():
    mix = BetaMixture([0.1, 0.9], [1 / 3, 12.125], [2.0, 1e-3])
    text = repr(mix)
    assert text == "BetaMixture(weights=[0.1, 0.9], a=[0.3333333333333333, 12.125], b=[2.0, 0.001])"
    assert eval(text) == mix  # noqa: S307 - the point of the test


def test_to_rbest_string():
    mix = BetaMixture.mixture([(0.5, 4, 10), (0.5, 10, 40)])
    assert to_rbest(mix) == "mixbeta(c(0.5, 4, 10), c(0.5, 10, 40))"
    odd = BetaMixture([1 / 3, 2 / 3], [1.5, 2.0], [0.1, 3.0])
    assert to_rbest(odd) == (
        "mixbeta(c(0.3333333333333333, 1.5, 0.1), c(0.6666666666666666, 2, 3))"
    )


def test_json_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(3)
    w = rng.dirichlet(np.ones(3))
    mix = BetaMixture(w, rng.gamma(5, 3, 3), rng.gamma(5, 3, 3), provenance={"seed": 3})
    path = tmp_path / "prior.json"
    text = to_json(mix, path, provenance={"spec": "default.toml"})
    back = read_prior(path)
    for name in ("weights", "a", "b"):
        np.testing.assert_array_equal(getattr(back, name), getattr(mix, name))
    assert back.provenance == {"seed": 3, "spec": "default.toml"}
    assert read_prior(text) == mix
    doc = json.loads(path.read_text())
    assert doc["schema"] == SCHEMA and doc["schema_version"] == 1
    assert set(doc) == {
        "schema",
        "schema_version",
        "weights",
        "a",
        "b",
        "provenance",
        "lmsbayes_version",
    }
    # the atomic write leaves nothing but the target behind
    assert os.listdir(tmp_path) == ["prior.json"]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"schema_version": 2}, "schema_version must be 1.*got 2"),
        ({"schema": "rbest.mix"}, "schema must be 'lmsbayes.betamixture', got 'rbest.mix'"),
        ({"weights": [0.5, 0.6]}, "weights must sum to 1"),
    ],
)
def test_from_dict_refuses_bad_documents(change, match):
    doc = {**to_dict(BetaMixture(*MIXTURES["two"])), **change}
    with pytest.raises(ValueError, match=match):
        from_dict(doc)


def test_from_json_missing_key_and_bad_text():
    doc = to_dict(BetaMixture(*MIXTURES["two"]))
    del doc["b"]
    with pytest.raises(ValueError, match=r"missing required key\(s\) \['b'\]"):
        from_dict(doc)
    with pytest.raises(ValueError, match="not valid JSON"):
        read_prior("{not json")


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weights": [0.5, 0.4], "a": [1, 2], "b": [1, 2]}, r"weights must sum to 1.*0\.9"),
        ({"weights": [1.5, -0.5], "a": [1, 2], "b": [1, 2]}, r"weights must be >= 0.*-0\.5"),
        ({"weights": [1.0], "a": [0.0], "b": [1.0]}, r"a must be > 0, got a=\[0\.0\]"),
        ({"weights": [1.0], "a": [1.0], "b": [-2.0]}, r"b must be > 0, got b=\[-2\.0\]"),
        (
            {"weights": [0.5, 0.5], "a": [1, 2], "b": [1]},
            r"same length.*len\(weights\)=2, len\(a\)=2, len\(b\)=1",
        ),
        ({"weights": [1.0], "a": [np.inf], "b": [1.0]}, r"a must be finite"),
        ({"weights": [1.0], "a": ["x"], "b": [1.0]}, r"a must be numeric"),
        ({"weights": [[1.0]], "a": [1.0], "b": [1.0]}, r"weights must be 1-D"),
    ],
)
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BetaMixture(**kwargs)


@pytest.mark.parametrize("q", [-0.1, 1.5, np.nan, [0.2, 2.0]])
def test_ppf_outside_unit_interval(q):
    with pytest.raises(ValueError, match=r"q must lie in \[0, 1\]"):
        BetaMixture(*MIXTURES["two"]).ppf(q)


@pytest.mark.parametrize(
    ("r", "n", "match"),
    [
        (5, 3, "r must be <= 3, got 5"),
        (-1, 3, "r must be a non-negative integer, got -1"),
        (1, 2.5, "n must be a non-negative integer, got 2.5"),
    ],
)
def test_posterior_bad_counts(r, n, match):
    with pytest.raises(ValueError, match=match):
        BetaMixture.from_ab(1, 1).posterior(r, n)


def test_alternative_constructor_errors():
    with pytest.raises(ValueError, match="sd must satisfy"):
        BetaMixture.from_mean_sd(0.5, 0.6)
    with pytest.raises(ValueError, match=r"mean must lie in \(0, 1\), got mean=1\.0"):
        BetaMixture.from_mean_n(1.0, 10)
    with pytest.raises(ValueError, match="triples"):
        BetaMixture.mixture([(0.5, 1)])


def test_no_pymc_import():
    import subprocess
    import sys

    code = "import sys, lmsbayes.prior; print('pymc' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_fit_warnings_are_quiet_for_good_data():
    draws = BetaMixture(*MIXTURES["two"]).rvs(3000, rng=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_mixture(draws, max_components=2)


def test_robustified_prior_has_one_mode_and_no_false_warning():
    """A vague Beta(1, 1) component makes the density flat near 1; float noise there is not a
    mode."""
    import warnings

    from lmsbayes.prior.ess import _mixture_modes

    mix = robustify(BetaMixture.from_ab(2.2, 2.8), 0.2, mean=0.5)
    modes = _mixture_modes(mix)
    assert modes.size == 1
    assert modes[0] == pytest.approx(
        1.2 / 3.0, abs=1e-6
    )  # (a - 1) / (a + b - 2) of the informative part
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ess(mix, "morita")
    two = BetaMixture(weights=[0.5, 0.5], a=[5.0, 30.0], b=[30.0, 5.0])
    np.testing.assert_allclose(_mixture_modes(two), [4 / 33, 29 / 33], atol=1e-3)


def test_a_prior_knows_what_it_is():
    from lmsbayes.prior import is_robust, prior_kind

    plain = BetaMixture.from_ab(3, 7)
    made = BetaMixture.from_ab(3, 7, provenance={"source": "lmsbayes predictive draws"})
    assert prior_kind(plain) == "prior" and prior_kind(made) == "MAP"
    rob = robustify(made, 0.2)
    assert is_robust(rob) and not is_robust(made)
    assert prior_kind(rob) == "robust MAP" and prior_kind(robustify(plain, 0.2)) == "robust prior"
