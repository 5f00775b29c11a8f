"""The beta functions of prior/beta.py against scipy.stats, the computation they replace."""

from __future__ import annotations

import numpy as np
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
