"""The beta functions of prior/beta.py against scipy.stats, the computation they replace."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lmsbayes.prior.beta import beta_logpdf, beta_ppf


def test_beta_ppf_equals_scipy_stats_over_random_shapes_and_tails():
    rng = np.random.default_rng(20261208)
    a = np.exp(rng.uniform(-3, 6, 20_000))
    b = np.exp(rng.uniform(-3, 6, 20_000))
    q = np.concatenate([rng.uniform(0, 1, 19_000), 10.0 ** -rng.uniform(5, 15, 1_000)])
    # q down to 1e-15; below about 1e-200 both scipy.special and scipy.stats give up (NaN and a
    # RuntimeWarning from Boost), far beyond any quantile a prior or ESS asks for
    np.testing.assert_allclose(beta_ppf(q, a, b), stats.beta.ppf(q, a, b), rtol=1e-12, atol=0)


def test_beta_ppf_broadcasts_like_scipy_stats():
    q = np.array([0.025, 0.5, 0.975])
    a, b = np.array([[2.0], [30.0]]), np.array([[5.0], [90.0]])
    got = beta_ppf(q, a, b)
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got, stats.beta.ppf(q, a, b), rtol=1e-12)


def test_beta_logpdf_equals_scipy_stats_inside_and_outside_the_support():
    rng = np.random.default_rng(7)
    a = np.exp(rng.uniform(-2, 5, 5_000))
    b = np.exp(rng.uniform(-2, 5, 5_000))
    x = np.concatenate([rng.uniform(0, 1, 4_990), [-0.5, 1.5, -1e-9, 1 + 1e-9] * 2 + [0.3, 0.7]])
    np.testing.assert_allclose(beta_logpdf(x, a, b), stats.beta.logpdf(x, a, b), rtol=1e-10)


def test_adaptive_gauss_legendre_against_closed_forms():
    """The ELIR's quadrature (plain numpy) on integrals with known values.

    Like every adaptive rule it needs a narrow peak among its breakpoints (the ELIR puts
    each component's quantiles there); between them it must halve until converged.
    """
    from lmsbayes.prior.ess import adaptive_gauss_legendre

    def narrow(u):  # N(3, 0.001^2), its 1e-12, 1%, 50%, 99%, 1 - 1e-12 quantiles as breakpoints
        return np.exp(-0.5 * ((u - 3.0) / 1e-3) ** 2) / (1e-3 * np.sqrt(2 * np.pi))

    z = np.array([-7.034, -2.326, 0.0, 2.326, 7.034])  # as the ELIR places them
    edges = np.concatenate([[-40.0], 3.0 + 1e-3 * z, [40.0]])
    assert adaptive_gauss_legendre(narrow, edges) == pytest.approx(1, rel=1e-10)
    got = adaptive_gauss_legendre(lambda u: np.exp(-u), np.array([0.0, 1.0, 40.0]))
    assert got == pytest.approx(1 - np.exp(-40.0), rel=1e-12)
    logistic = adaptive_gauss_legendre(
        lambda u: np.exp(-u) / (1 + np.exp(-u)) ** 2, np.array([-40.0, 0.0, 40.0])
    )
    assert logistic == pytest.approx(np.tanh(20.0), rel=1e-12)  # F(40) - F(-40)


def test_elir_with_the_numpy_rule_equals_elir_with_quadpack(monkeypatch):
    """ELIR ESS of random mixtures: the numpy rule against scipy's adaptive QUADPACK."""
    import importlib

    from scipy import integrate

    from lmsbayes.prior.mixture import BetaMixture

    ess_mod = importlib.import_module("lmsbayes.prior.ess")  # the module, not the function

    def quadpack(f, edges):
        return sum(
            integrate.quad(lambda u: float(f(np.array([u]))[0]), lo, hi, limit=400, epsrel=1e-11)[0]
            for lo, hi in zip(edges[:-1], edges[1:], strict=True)
        )

    rng = np.random.default_rng(4)
    mixes = [
        BetaMixture(
            rng.dirichlet(np.ones(k)),
            np.exp(rng.uniform(0, np.log(500), k)),
            np.exp(rng.uniform(0, np.log(500), k)),
        )
        for k in rng.integers(2, 5, size=25)
    ]
    got = [ess_mod.ess(m, "elir") for m in mixes]
    monkeypatch.setattr(ess_mod, "adaptive_gauss_legendre", quadpack)
    want = [ess_mod.ess(m, "elir") for m in mixes]
    np.testing.assert_allclose(got, want, rtol=1e-9)


@pytest.mark.parametrize(("a", "b"), [(2.0, 5.0), (36.2, 110.3), (300.0, 1.5), (1.2, 1.1)])
def test_the_morita_mode_search_finds_the_closed_form_mode(a, b):
    """One Beta(a, b), a, b > 1: the mode (a - 1) / (a + b - 2), to the search's sqrt(eps)."""
    from lmsbayes.prior.ess import _mixture_modes
    from lmsbayes.prior.mixture import BetaMixture

    modes = _mixture_modes(BetaMixture.from_ab(a, b))
    assert modes.size == 1
    assert modes[0] == pytest.approx((a - 1) / (a + b - 2), rel=1e-7, abs=1e-9)
