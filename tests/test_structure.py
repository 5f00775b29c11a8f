"""Random-effect structure (lmsbayes.model.structure).

Groups, drift, eras, age discount, Student-t effects.

- Both engines read one definition: PyMC's joint log density equals
  Model.joint_logp at random points for every new option.
- The exact engine's integrals equal scipy quadrature: an arm's Student-t
  integral, and a group's integral over its shared effect.
- Each structure recovers known parameters from data simulated from it.
- The exact engine agrees with NUTS on each bundled candidate spec (slow).
"""

from __future__ import annotations

import numpy as np
import pytest
from _synthetic import lms_tables
from scipy import integrate, stats

from lmsbayes.engines.exact import Integrator, Layout
from lmsbayes.model.definition import Model
from lmsbayes.model.prepare import prepare_data
from lmsbayes.model.structure import (
    discount_at,
    discount_reference,
    drift_basis,
    drift_labels,
    era_basis,
    t_scale_mixture,
)
from lmsbayes.spec import parse_spec

REGIMENS = ("doxorubicin", "gem+doc", "trabectedin", "pazopanib", "eribulin", "dacarbazine")


def _arms(k: int = 14, seed: int = 0):
    """Survival arms with a regimen and a year.

    Some medians with CIs, some rates, two latent fractions.
    """
    rng = np.random.default_rng(seed)
    arms, rates = [], []
    for i in range(k):
        med = float(np.round(rng.uniform(3, 10), 1))
        a = {
            "arm_id": f"a{i}",
            "line": "1L" if i % 3 == 0 else "2L+",
            "treatment_class": "R-T" if i % 2 else "NR-T",
            "n": int(rng.integers(20, 90)),
            "pfs_median_m": med,
            "year": int(2004 + (i * 17) % 21),
            "regimen": REGIMENS[i % 4],
            "uterine_fraction": np.nan if i in (2, 5) else float(np.round(rng.uniform(0, 1), 2)),
        }
        if i % 2 == 0:
            a["pfs_median_lo"], a["pfs_median_hi"] = med * 0.7, med * 1.4
        arms.append(a)
        for t in (3.0, 6.0):
            s = float(np.clip(np.exp(-np.log(2) * t / med) + rng.normal(0, 0.03), 0.03, 0.97))
            rates.append({"arm_id": f"a{i}", "t": t, "rate": s, "lo": s - 0.12, "hi": s + 0.12})
    return lms_tables(arms, rates)


def _spec(**options):
    raw = {
        "name": "t-structure",
        "landmarks": [3, 6],
        "data": {"require_identifier": False},
        "model": {"likelihood": "survival", "covariates": ["line", "nrt", "uterine"]},
        "random_effects": {"tau_by": "line"},
    }
    for key, value in options.items():
        section, name = key.split(".")
        raw.setdefault(section, {})[name] = value
    return parse_spec(raw)


OPTIONS = {
    "regimen": {"random_effects.group": "regimen"},
    "trial": {"random_effects.trial_effect": True},
    "drift": {"model.drift": "random_walk"},
    "era": {"model.drift": "era"},
    "discount": {"random_effects.age_discount": True},
    "student_t": {"random_effects.distribution": "student_t"},
    "regimen_drift": {"random_effects.group": "regimen", "model.drift": "random_walk"},
    "regimen_drift_t": {
        "random_effects.group": "regimen",
        "model.drift": "random_walk",
        "random_effects.distribution": "student_t",
    },
}


def _random_values(m: Model, rng) -> dict:
    vals = {}
    for p in m.params:
        if p.transform == "log":
            vals[p.name] = np.exp(rng.normal(-0.7, 0.5, p.shape))
        else:
            vals[p.name] = rng.normal(0, 0.8, p.shape)
    vals["z"] = rng.normal(size=(m.data.n_arms,))
    if m.data.latent.size:
        vals["uterine_latent"] = rng.uniform(0.05, 0.95, m.data.latent.size)
    if m.grouped:
        vals["v"] = rng.normal(size=len(m.data.groups))
    return vals


@pytest.fixture(scope="module")
def tables():
    return _arms()


@pytest.mark.parametrize("name", list(OPTIONS))
def test_pymc_log_density_equals_the_definition(name, tables):
    pytest.importorskip("pymc")
    from lmsbayes.engines.nuts import build_model

    spec = _spec(**OPTIONS[name])
    data = prepare_data(spec, tables)
    m = Model(spec, data)
    model = build_model(spec, data)
    logp = model.compile_logp(jacobian=False)
    rng = np.random.default_rng(len(name))
    for _ in range(4):
        vals = _random_values(m, rng)
        point = {}
        for rv in model.free_RVs:
            value_var = model.rvs_to_values[rv]
            x = np.asarray(vals[rv.name], dtype=float)
            tr = model.rvs_to_transforms.get(rv)
            point[value_var.name] = tr.forward(x).eval() if tr is not None else x
        assert float(logp(point)) == pytest.approx(m.joint_logp(vals), rel=1e-9, abs=1e-8)


def _point(m: Model, seed: int = 3):
    layout = Layout(m)
    theta = layout.initial() + np.random.default_rng(seed).normal(0, 0.3, layout.size)
    vals, _ = layout.unpack(theta[None])
    return vals, {k: v[0] for k, v in vals.items()}


def _arm_ll(m: Model, one: dict, arm: int, z: float, u: float | None, shift: float = 0.0) -> float:
    """The definition's log-likelihood of one arm at its effect z, fraction u.

    z on the t or normal scale.
    """
    from lmsbayes.model.families import NUMPY_OPS

    sub = Model(m.spec, m.data.take([arm]))
    c = sub.canonical(one)
    a = m.arrays
    du = None if u is None else np.array([u - m.data.uterine_centre])
    X, Xu = a["X"][[arm]], a["Xu"][[arm]]
    scale = m.effect_scale(m.canonical(one))[arm]
    eta = sub.base_predictor(NUMPY_OPS, c, X, Xu, du) + scale * z + shift
    return float(np.sum(sub.loglik_terms(NUMPY_OPS, eta, c))) + sub.constant()


@pytest.mark.slow
def test_student_t_arm_integrals_equal_scipy_quadrature(tables):
    """log of the integral of p(y_i | z, u) t_nu(z) dz (du): the scale mixture against scipy."""
    spec = _spec(**OPTIONS["student_t"])
    m = Model(spec, prepare_data(spec, tables))
    vals, one = _point(m)
    got = Integrator(m).arm_loglik(vals)[0]
    nu = spec.random_effects.nu
    for arm in (0, 1, 2):  # arm 2 has a latent uterine fraction
        lat = arm in set(m.data.latent)

        def inner(u, arm=arm):
            ref = _arm_ll(m, one, arm, 0.0, u)
            f = lambda z: np.exp(_arm_ll(m, one, arm, z, u) - ref) * stats.t.pdf(z, nu)  # noqa: E731
            return np.log(integrate.quad(f, -np.inf, np.inf, epsabs=1e-13, limit=400)[0]) + ref

        if lat:
            r0 = inner(0.5)
            want = r0 + np.log(
                integrate.quad(lambda u, r0=r0: np.exp(inner(u) - r0), 0, 1, epsabs=1e-11)[0]
            )
        else:
            want = inner(None)
        # the 40-node scale mixture's error is below 4e-5 for nu >= 3 (lmsbayes.model.structure)
        assert got[arm] == pytest.approx(want, abs=1e-4)


def test_t_scale_mixture_is_the_student_t_density():
    for nu in (3.0, 4.0, 10.0):
        s, logw = t_scale_mixture(nu)
        x = np.array([0.0, 0.5, 1.0, 2.0, 4.0, 8.0])
        mix = (np.exp(logw)[:, None] * stats.norm.pdf(x[None] / s[:, None]) / s[:, None]).sum(0)
        # the 40-node rule: relative error below 1e-4 (6e-5 at nu = 3)
        np.testing.assert_allclose(mix, stats.t.pdf(x, nu), rtol=1e-4)


# regimen_drift_t: with Student-t arms the group integrand is not Gaussian; 9-node adaptive
# Gauss-Hermite still agrees with scipy to 1.1e-9 (it was marked xfail while a spurious
# divide-by-zero warning in the flat-quadratic branch of the uterine integral failed it)
@pytest.mark.parametrize("name", ["regimen", "regimen_drift_t"])
def test_group_integrals_equal_scipy_quadrature(name, tables):
    """A group's log-likelihood.

    Its arms' integrals at v = group_tau w, integrated over w ~ N(0, 1).
    """
    spec = _spec(**OPTIONS[name])
    m = Model(spec, prepare_data(spec, tables))
    vals, one = _point(m, seed=5)
    integ = Integrator(m)
    got = integ.group_loglik(vals)[0]
    gt = float(np.asarray(one["group_tau"]))
    d = m.data
    for g in range(len(d.groups)):
        arms = np.flatnonzero(d.group_idx == g)

        def ll(w, arms=arms):
            shift = np.zeros((1, d.n_arms))
            shift[0, arms] = gt * w
            return float(integ.arm_loglik(vals, shift)[0, arms].sum())

        ref = ll(0.0)
        val = integrate.quad(
            lambda w, ref=ref: np.exp(ll(w) - ref) * stats.norm.pdf(w),
            -10,
            10,
            epsabs=1e-12,
            limit=200,
        )[0]
        assert got[g] == pytest.approx(np.log(val) + ref, abs=2e-6)


def test_drift_basis_is_a_random_walk_anchored_at_the_reference():
    knots = [2005, 2010, 2015, 2020, 2025]
    B = drift_basis([2003, 2005, 2012.5, 2015, 2025, 2030], knots, 2015)
    steps = np.array([1.0, 2.0, 3.0, 4.0])
    d = B @ steps
    # knot values: -3, -2, 0, 3, 7; flat outside the knots
    np.testing.assert_allclose(d, [-3.0, -3.0, -1.0, 0.0, 7.0, 7.0])


def test_era_basis_indicates_each_era_but_the_reference():
    """Eras <= 2009, 2010-2015, >= 2016, 2015's era at 0; a year after the data is in the last."""
    B = era_basis([2003, 2009, 2010, 2015, 2016, 2025, 2031], (2010, 2016), 2015)
    np.testing.assert_array_equal(B, [[1, 0], [1, 0], [0, 0], [0, 0], [0, 1], [0, 1], [0, 1]])
    spec = _spec(**{"model.drift": "era"})
    assert drift_labels(spec.model) == ["<=2009", ">=2016"]
    # the reference era is the one holding drift_reference, wherever it lies
    np.testing.assert_array_equal(
        era_basis([2005, 2012, 2020], (2010, 2016), 2005), np.eye(3)[:, 1:]
    )
    bad = {"name": "x", "model": {"drift": "era", "era_starts": [2016, 2010]}}
    with pytest.raises(Exception, match="era_starts must be 1 to 4 increasing years"):
        parse_spec(bad)


def test_age_discount_counts_ages_to_the_target_year(tables):
    """discount_year 0: the latest year of the fitted arms + 1, unless a target year is given."""
    spec = _spec(**OPTIONS["discount"])
    data = prepare_data(spec, tables)
    latest = int(data.arms["year"].max())
    m = Model(spec, data)
    assert m.discount_year == latest + 1
    np.testing.assert_allclose(m.age, (latest + 1 - data.arms["year"].to_numpy(float)) / 10)
    at = discount_at(spec, 2030)
    assert Model(at, data).discount_year == 2030 and at.hash != spec.hash
    assert discount_at(spec, None) is spec  # no target year: the spec as it is
    assert discount_at(_spec(), 2030) == _spec()  # no age discount: nothing to count
    fixed = discount_at(spec, 2020)
    assert discount_reference(fixed.random_effects, [2003.0]) == 2020
    # the command line's --year is the target's year
    import argparse

    from lmsbayes.cli._common import load_spec_from_args

    args = argparse.Namespace(spec="age_discount", year=2027, engine=None, fast=False)
    assert load_spec_from_args(args).random_effects.discount_year == 2027
    args.year = None
    assert load_spec_from_args(args).random_effects.discount_year == 0


# ----------------------------------------------------------------------------- recovery


def _binomial(
    rng,
    *,
    k=60,
    n=150,
    alpha=-0.3,
    tau=0.2,
    group_tau=0.0,
    n_groups=15,
    drift=None,
    t_nu=None,
    discount=0.0,
):
    """A (study, r, n) table simulated from the model: regimens, years, arm effects."""
    import pandas as pd

    years = rng.integers(2005, 2026, size=k)
    groups = np.arange(k) % n_groups
    v = rng.normal(size=n_groups) * group_tau
    z = rng.standard_t(t_nu, size=k) if t_nu else rng.normal(size=k)
    age = np.maximum(0.0, (2025 - years) / 10)
    eta = alpha + v[groups] + np.sqrt(tau**2 + discount**2 * age) * z
    if drift is not None:
        eta = eta + drift(years)
    r = rng.binomial(n, 1 / (1 + np.exp(-eta)))
    return pd.DataFrame(
        {
            "study": [f"s{i}" for i in range(k)],
            "r": r,
            "n": n,
            "year": years,
            "regimen": [f"reg{g}" for g in groups],
        }
    )


def _binomial_spec(**options):
    raw = {
        "name": "t-binomial-structure",
        "landmarks": [],
        "model": {"likelihood": "logit-binomial"},
        "random_effects": {"tau_by": "none"},
        "priors": {"tau": {"dist": "HalfNormal", "sigma": 1.0}},
    }
    for key, value in options.items():
        section, name = key.split(".")
        raw.setdefault(section, {})[name] = value
    return parse_spec(raw)


def _interval(fit, name, prob=0.99):
    x = fit.posterior[name].values.ravel()
    return np.quantile(x, [(1 - prob) / 2, (1 + prob) / 2])


@pytest.mark.slow
def test_regimen_effects_recover_both_heterogeneity_scales():
    """Simulated with group_tau 0.6 between 15 regimens and tau 0.2 between arms of a regimen."""
    import lmsbayes

    table = _binomial(np.random.default_rng(1), group_tau=0.6, tau=0.2)
    fit = lmsbayes.fit(_binomial_spec(**{"random_effects.group": "regimen"}), table, engine="exact")
    lo, hi = _interval(fit, "group_tau")
    assert lo < 0.6 < hi
    lo, hi = _interval(fit, "tau")
    assert lo < 0.2 < hi
    lo, hi = _interval(fit, "alpha")
    assert lo < -0.3 < hi
    assert fit.diagnostics.ok


def test_drift_recovers_a_simulated_trend():
    """A linear drift of +0.8 on the logit scale from 2005 to 2025.

    The fitted drift's difference covers it.
    """
    import lmsbayes

    table = _binomial(
        np.random.default_rng(2), tau=0.15, drift=lambda y: 0.04 * (np.asarray(y) - 2015)
    )
    fit = lmsbayes.fit(_binomial_spec(**{"model.drift": "random_walk"}), table, engine="exact")
    B = drift_basis([2005, 2025], (2005, 2010, 2015, 2020, 2025), 2015)
    scale = fit.posterior["drift_scale"].values.ravel()
    steps = fit.posterior["drift_step"].values.reshape(scale.size, -1)
    diff = scale * (steps @ (B[1] - B[0]))
    lo, hi = np.quantile(diff, [0.005, 0.995])
    assert lo < 0.8 < hi
    assert lo > 0  # and it is detected
    assert fit.diagnostics.ok


def test_era_effects_recover_simulated_era_offsets():
    """Offsets -0.5 (<= 2009) and +0.6 (>= 2016) against 2010-2015: both within their 99%
    intervals, and the later era's offset detected (its interval excludes 0)."""
    import lmsbayes

    def eras(y):
        y = np.asarray(y)
        return np.where(y < 2010, -0.5, np.where(y >= 2016, 0.6, 0.0))

    table = _binomial(np.random.default_rng(6), k=60, tau=0.15, drift=eras)
    fit = lmsbayes.fit(_binomial_spec(**{"model.drift": "era"}), table, engine="exact")
    scale = fit.posterior["drift_scale"].values.ravel()
    steps = fit.posterior["drift_step"].values.reshape(scale.size, -1)
    offsets = scale[:, None] * steps  # (draw, era): <= 2009, >= 2016
    lo, hi = np.quantile(offsets, [0.005, 0.995], axis=0)
    assert lo[0] < -0.5 < hi[0] and lo[1] < 0.6 < hi[1]
    assert lo[1] > 0
    assert fit.diagnostics.ok


@pytest.mark.slow
def test_student_t_effects_recover_tau_with_an_outlying_arm():
    import lmsbayes

    table = _binomial(np.random.default_rng(3), tau=0.3, t_nu=4)
    fit = lmsbayes.fit(
        _binomial_spec(**{"random_effects.distribution": "student_t"}), table, engine="exact"
    )
    lo, hi = _interval(fit, "tau")
    assert lo < 0.3 < hi
    assert fit.diagnostics.ok


def test_age_discount_recovers_its_scale():
    import lmsbayes

    table = _binomial(np.random.default_rng(4), k=80, tau=0.1, discount=0.5)
    fit = lmsbayes.fit(
        _binomial_spec(**{"random_effects.age_discount": True}), table, engine="exact"
    )
    lo, hi = _interval(fit, "discount")
    assert lo < 0.5 < hi
    assert fit.diagnostics.ok


# ----------------------------------------------------------------------------- targets


@pytest.fixture(scope="module")
def drift_fit():
    import warnings

    import lmsbayes

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lmsbayes.fit("drift", engine="exact")


def test_a_control_arm_prior_states_its_target_and_the_arms_it_rests_on(drift_fit):
    from lmsbayes.predict import Setting
    from lmsbayes.prior import map_prior
    from lmsbayes.targets import Target

    mix = map_prior(
        drift_fit, Setting("1L", "R-T", 0.45), 6.0, target=Target.new_arm("doxorubicin", 2027)
    )
    assert mix.provenance["regimen_arms"] == ["lms04_doxo", "announce_lms_doxpbo"]
    assert mix.provenance["target"].startswith("new arm of doxorubicin in 2027")
    assert "without regimen effects" in mix.provenance["target"]
    with pytest.raises(ValueError, match="regimen 'doxorubicn' has no included arm"):
        map_prior(drift_fit, Setting("1L"), 6.0, target=Target.new_arm("doxorubicn"))


def test_a_year_beyond_the_drift_knots_widens_the_prediction(drift_fit):
    """The random walk goes on after 2025: 2035 is less certain than 2025, by the walk's own sd."""
    from lmsbayes.predict import Setting, predict
    from lmsbayes.targets import Target

    sd = {}
    for year in (2025, 2035):
        ds = predict(
            drift_fit, [Setting("2L+", "R-T", 0.5, "x")], [6.0], target=Target.average(year)
        )
        sd[year] = float(ds["logit"].sel(quantity="pooled").std())
    extra = (
        float(np.mean(drift_fit.posterior["drift_scale"].values ** 2)) * 2.0
    )  # 10 years = 2 steps
    assert sd[2035] ** 2 - sd[2025] ** 2 == pytest.approx(extra, rel=0.15)


def test_targets_parse_and_refuse_what_they_cannot_be():
    from lmsbayes.targets import Target, parse_target

    assert parse_target("arm:doxorubicin", 2027) == Target.new_arm("doxorubicin", 2027)
    assert parse_target("new-regimen") == Target.new_regimen()
    assert Target.new_regimen(2027).describe() == "new regimen in 2027"
    with pytest.raises(ValueError, match="--target must be"):
        parse_target("doxorubicin")
    with pytest.raises(ValueError, match="needs the regimen"):
        Target("new_arm")


# ----------------------------------------------------------------------------- engines agree


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    ["regimen", "drift", "era", "discount", "student_t", "regimen_drift", "regimen_drift_t"],
)
def test_exact_engine_agrees_with_nuts(name, tables):
    """Posterior means and sds of every global parameter within Monte Carlo error.

    Bonferroni over them.
    """
    import warnings

    import lmsbayes

    spec = _spec(**OPTIONS[name]).replace(
        **{"sampler.draws": 2000, "sampler.tune": 1000, "exact.draws": 8000}
    )
    data = prepare_data(spec, tables)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ex = lmsbayes.fit(spec, data, engine="exact")
        nu = lmsbayes.fit(spec, data, engine="nuts")
    assert nu.diagnostics.divergences <= 10
    names = [p.name for p in Model(spec, data).params]
    k = sum(int(np.prod(ex.posterior[n].shape[2:])) for n in names)
    zcrit = stats.norm.ppf(1 - 0.01 / (2 * k))
    for n in names:
        a = ex.posterior[n].values.reshape(ex.posterior.sizes["draw"], -1)
        b = nu.posterior[n].values.reshape(-1, a.shape[1])
        ess_a = min(ex.diagnostics.is_ess, a.shape[0])
        ess_b = max(nu.diagnostics.min_ess_bulk, 100.0)
        sd = np.sqrt(0.5 * (a.var(0) + b.var(0)))
        se = sd * np.sqrt(1 / ess_a + 1 / ess_b)
        assert np.all(np.abs(a.mean(0) - b.mean(0)) < zcrit * se), n


def test_thresholds_of_a_drift_fit_read_the_drift_at_its_reference_year(drift_fit):
    """The evidence's pooled rate adds the drift's columns.

    It raised a shape error without them.
    """
    from lmsbayes.integrated import has_rule, rule_applies
    from lmsbayes.predict import thresholds

    # the exact engine's rule is stored, but its summaries know no drift: the draws answer
    assert has_rule(drift_fit) and not rule_applies(drift_fit)
    ds = thresholds(drift_fit)
    floats = [v for v in ds.data_vars if ds[v].dtype.kind == "f" and not v.endswith("_mcse")]
    assert floats and all(np.isfinite(ds[v].values).all() for v in floats)
