"""The exact engine's fast paths equal the model definition, and its random-effect draws are exact.

- The binomial kernels (terms and their derivatives in the random effect)
  equal Model.loglik_terms and its finite differences.
- The matrix-product base predictor equals Model.base_predictor.
- The Gaussian families' coefficients give the arm integrals of the generic
  three-point quadratic (Model.loglik_terms at z = 0, 1, -1).
- Rejection draws of each arm's z match its exact conditional, the CDF
  computed by numerical integration of the definition (Kolmogorov-Smirnov);
  the Laplace approximation fails the same test on a skewed arm, so the test
  has power.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats
from test_engines import SPECS, _arms, _random_values, _spec

from lmsbayes.engines import exact as ex
from lmsbayes.model.definition import Model
from lmsbayes.model.families import NUMPY_OPS
from lmsbayes.model.prepare import prepare_data
from lmsbayes.spec import parse_spec


@pytest.fixture(scope="module")
def tables():
    return _arms()


def _skewed_binomial_model() -> Model:
    """Small counts, one arm with no success, one with all: conditionals of z far from normal."""
    table = pd.DataFrame({"study": ["a", "b", "c", "d"], "n": [5, 12, 40, 9], "r": [0, 12, 13, 4]})
    spec = parse_spec(
        {
            "name": "skew",
            "landmarks": [],
            "model": {"likelihood": "logit-binomial"},
            "random_effects": {"tau_by": "none"},
            "priors": {
                "alpha": {"dist": "Normal", "mu": 0.0, "sigma": 2.0},
                "tau": {"dist": "HalfNormal", "sigma": 1.0},
            },
        }
    )
    return Model(spec, prepare_data(spec, table))


def _values(m: Model, rng, batch: int) -> dict:
    one = _random_values(m, rng)
    return {
        p.name: np.repeat(np.asarray(one[p.name], float)[None], batch, axis=0) for p in m.params
    }


@pytest.mark.parametrize("name", list(SPECS))
def test_base_predictor_by_matrix_products_equals_the_definition(name, tables):
    spec = _spec(**SPECS[name])
    m = Model(spec, prepare_data(spec, tables))
    rng = np.random.default_rng(1)
    vals = {
        p.name: np.stack([np.asarray(_random_values(m, rng)[p.name], float) for _ in range(3)])
        for p in m.params
    }
    c = m.canonical(vals)
    d = m.data
    du = rng.uniform(-0.5, 0.5, (3, d.n_arms))
    ref = m.base_predictor(NUMPY_OPS, c, d.X, d.Xu, du)
    np.testing.assert_allclose(ex._base(m, c, d.X, d.Xu, du), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        ex._base(m, c, d.X),
        np.broadcast_to(m.base_predictor(NUMPY_OPS, c, d.X), ref.shape),
        rtol=1e-12,
        atol=1e-12,
    )


@pytest.mark.parametrize("name", ["logit-binomial", "joint-cloglog"])
def test_binomial_kernels_equal_the_definition_and_its_derivatives(name, tables):
    spec = _spec(**SPECS[name])
    m = Model(spec, prepare_data(spec, tables))
    part = ex._make_part(spec, m.data, np.arange(m.data.n_arms), model=m)
    rng = np.random.default_rng(2)
    vals = _values(m, rng, 2)
    c = m.canonical(vals)
    base = ex._base(m, c, m.data.X)
    kern = part.kernel
    pre = kern.prepare(base)
    scale = np.broadcast_to(m.effect_scale(c), base.shape[:-2] + (m.data.n_arms, m.Kz)).reshape(
        2, -1
    )
    z = rng.normal(0, 1.5, scale.shape)

    def ll(zz):  # the definition: component log-likelihoods at z
        eta = base + (scale * zz).reshape(2, m.data.n_arms, m.Kz)
        return ex._comp_sum(part, m.loglik_terms(NUMPY_OPS, eta, c))

    shift = (scale * z)[..., m.term_comp]  # tau z of each term's component
    v, d1, d2 = kern.derivs(pre, shift, value=True)
    np.testing.assert_allclose(ex._comp_sum(part, v), ll(z), rtol=1e-10, atol=1e-10)
    h = 1e-4
    fd1 = (ll(z + h) - ll(z - h)) / (2 * h)
    fd2 = (ll(z + h) - 2 * ll(z) + ll(z - h)) / (h * h)
    np.testing.assert_allclose(
        scale * ex._comp_sum(part, d1, const=False), fd1, rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(
        scale**2 * ex._comp_sum(part, d2, const=False), fd2, rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize(
    "name",
    [
        "survival-loglogistic",
        "survival-weibull-by-line",
        "survival-lognormal",
        "survival-constant-hazard",
        "survival-independent",
        "logit-normal",
    ],
)
def test_gaussian_coefficients_give_the_generic_arm_integrals(name, tables):
    spec = _spec(**SPECS[name])
    m = Model(spec, prepare_data(spec, tables))
    integ = ex.Integrator(m)
    assert all(p.gauss is not None for p in integ.parts)  # the fast path is the one in use
    rng = np.random.default_rng(4)
    vals = {
        p.name: np.stack([np.asarray(_random_values(m, rng)[p.name], float) for _ in range(5)])
        for p in m.params
    }
    c = m.canonical(vals)
    for part in integ.parts:
        base = ex._base(part.model, c, part.model.data.X)
        scale = part.model.effect_scale(c)
        fast = integ._quadratic(part, c, base, scale)
        gauss, part.gauss = part.gauss, None
        try:
            generic = integ._quadratic(part, c, base, scale)
        finally:
            part.gauss = gauss
        for a, b in zip(fast, generic):
            np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-8)


def _exact_cdf(m: Model, c, base, scale, comp: int):
    """CDF of z for one component (draw 0), by numerical integration of the definition's density."""
    part = ex._make_part(m.spec, m.data, np.arange(m.data.n_arms), model=m)

    def g(zs):
        zz = np.zeros((zs.size, scale.shape[1]))
        zz[:, comp] = zs
        cc = {k: (None if v is None else np.repeat(v[:1], zs.size, axis=0)) for k, v in c.items()}
        eta = base[:1] + (scale[:1] * zz).reshape(zs.size, m.data.n_arms, m.Kz)
        return ex._comp_sum(part, m.loglik_terms(NUMPY_OPS, eta, cc))[:, comp] - 0.5 * zs * zs

    grid = np.linspace(-14.0, 14.0, 28001)
    lg = g(grid)
    dens = np.exp(lg - lg.max())
    cdf = integrate.cumulative_trapezoid(dens, grid, initial=0.0)
    cdf /= cdf[-1]
    return lambda x: np.interp(x, grid, cdf), grid, dens / np.trapezoid(dens, grid)


@pytest.mark.parametrize("case", ["skewed-binomial", "joint-cloglog"])
def test_rejection_draws_of_z_follow_the_exact_conditional(case, tables):
    if case == "skewed-binomial":
        m = _skewed_binomial_model()
        vals = {"alpha": np.full(4000, -0.3), "tau": np.full((4000, 1), 1.8)}
    else:
        spec = _spec(**SPECS["joint-cloglog"])
        m = Model(spec, prepare_data(spec, tables))
        vals = _values(m, np.random.default_rng(7), 4000)
    integ = ex.Integrator(m)
    whole = integ._whole()
    c = m.canonical(vals)
    du = np.zeros((4000, m.data.n_arms))  # latent fractions (if any) at the centre
    base = ex._base(m, c, m.data.X, m.data.Xu, du)
    scale = np.broadcast_to(m.effect_scale(c), (4000, m.data.n_arms, m.Kz)).reshape(4000, -1)
    z = integ._draw_z_rejection(whole, whole.kernel.prepare(base), scale, np.random.default_rng(11))
    comps = range(min(4, scale.shape[1]))
    for k in comps:
        cdf, _, _ = _exact_cdf(m, c, base, scale, k)
        p = stats.kstest(z[:, k], cdf).pvalue
        assert p > 1e-3 / len(comps), (k, p)
    if case == "skewed-binomial":
        # power: the Laplace approximation (normal at the mode with the curvature there) is rejected
        mode, _, _, g2 = integ._newton(whole, whole.kernel.prepare(base[:1]), scale[:1])
        laplace = stats.norm(mode[0, 0], 1 / np.sqrt(-g2[0, 0])).rvs(4000, random_state=3)
        cdf, _, _ = _exact_cdf(m, c, base, scale, 0)
        assert stats.kstest(laplace, cdf).pvalue < 1e-6


def test_arm_draws_of_a_binomial_fit_have_the_exact_conditional_means(tables):
    """Through draw_latent (u at the centre is not needed: the skewed model has no latent
    fraction)."""
    m = _skewed_binomial_model()
    integ = ex.Integrator(m)
    vals = {"alpha": np.full(20000, -0.3), "tau": np.full((20000, 1), 1.8)}
    z, _, _ = integ.draw_latent(vals, np.random.default_rng(5))
    c = m.canonical(vals)
    base = ex._base(m, c, m.data.X)
    scale = np.broadcast_to(m.effect_scale(c), (20000, m.data.n_arms, 1)).reshape(20000, -1)
    for k in range(m.data.n_arms):
        _, grid, dens = _exact_cdf(m, c, base, scale, k)
        mean = np.trapezoid(grid * dens, grid)
        sd = np.sqrt(np.trapezoid((grid - mean) ** 2 * dens, grid))
        assert abs(z[:, k, 0].mean() - mean) < 4.5 * sd / np.sqrt(20000)


def test_block_cholesky_of_survival_replicates_equals_the_dense_factor():
    """The posterior predictive's correlated noise, by blocks of equal size, equals the dense N @
    L.T (scaled by k^-p)."""
    from lmsbayes.data import load_trials
    from lmsbayes.model import derived
    from lmsbayes.model.families import block_cholesky
    from lmsbayes.spec import load_spec

    spec = load_spec("default")
    m = Model(spec, prepare_data(spec, load_trials()))
    a = m.arrays
    n = len(a["lik_y"])
    P = np.zeros((n, n))
    P[a["first"], a["second"]] = a["precision"]
    L = np.zeros((n, n))
    for k in np.unique(m.obs_comp):
        idx = np.flatnonzero(m.obs_comp == k)
        L[np.ix_(idx, idx)] = np.linalg.cholesky(np.linalg.inv(P[np.ix_(idx, idx)]))
    blocks = block_cholesky(m)
    assert len(blocks) > 1  # blocks of several sizes
    # posterior_predictive draws the noise in block order: the same numbers in observation order
    perm = np.concatenate([idx.ravel() for idx, _ in blocks])
    eta = np.zeros((2, 3, m.data.n_arms, 1))
    c = {"shape": np.full((2, 3, 1), 1.3)}
    mu = derived.posterior_predictive(
        m, eta, c, np.random.default_rng(0), blocks
    ) - derived.posterior_predictive(
        m, eta, c, np.random.default_rng(0), [(i, 0 * Lb) for i, Lb in blocks]
    )
    noise = np.empty((2, 3, n))
    noise[..., perm] = np.random.default_rng(0).standard_normal((2, 3, n))
    # medians without a CI: their sd is se / k at the draw's shape (Model.se_by_shape)
    scale = np.exp(-a["se_shape_power"] * np.log(1.3)) if m.se_by_shape else 1.0
    assert m.se_by_shape and np.any(scale != 1.0)
    np.testing.assert_allclose(mu, (noise @ L.T) * scale, atol=1e-12)


@pytest.mark.parametrize("name", list(SPECS))
def test_parts_without_pandas_equal_the_models_of_taken_data(name, tables):
    """_take_model (arrays re-indexed) gives the terms of Model(spec, data.take(...)), latent arms
    at nodes."""
    spec = _spec(**SPECS[name])
    m = Model(spec, prepare_data(spec, tables))
    d = m.data
    rng = np.random.default_rng(8)
    pos = np.array([3, 0, 0, 5, 1, 7, 3])
    X = d.X[pos] + rng.uniform(-0.5, 0.5, (pos.size, 1)) * d.Xu[pos]
    for kw in ({}, {"X": X}):
        ref = Model(spec, d.take(pos, **kw))
        sub = ex._take_model(m, pos, kw.get("X"))
        vals = {
            p.name: np.stack([np.asarray(_random_values(m, rng)[p.name], float) for _ in range(2)])
            for p in m.params
        }
        c = m.canonical(vals)
        eta = rng.normal(0, 1, (2, pos.size, m.K))
        np.testing.assert_allclose(
            sub.loglik_terms(NUMPY_OPS, eta, c), ref.loglik_terms(NUMPY_OPS, eta, c), rtol=1e-13
        )
        np.testing.assert_array_equal(sub.term_comp, ref.term_comp)
        np.testing.assert_allclose(sub.comp_const, ref.comp_const)
        np.testing.assert_allclose(sub.effect_scale(c), ref.effect_scale(c))
        np.testing.assert_allclose(
            ex._base(sub, c, sub.data.X), ex._base(ref, c, ref.data.X), rtol=1e-13, atol=1e-13
        )
