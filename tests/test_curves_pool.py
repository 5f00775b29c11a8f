"""Curve arms in the pooled survival model (spec ``[data] curves``; lmsbayes.model.curve_arms).

- The family's curve terms equal lmsbayes.curves.likelihood.loglik (an independent numpy
  implementation) and, for a constant hazard, the closed form of interval- and right-censored
  exponential data.
- The exact engine's kernel (terms and derivatives in a shift of an arm's eta) equals the
  definition's terms, and its derivatives equal finite differences.
- The exact engine's integral of a curve arm equals scipy quadrature of the same joint density.
- The PyMC log density equals the definition's with curve arms (both engines consume the same
  terms); the two engines' posteriors agree within Monte Carlo error (slow).
- Preparation: one source per arm (the curve replaces the median and rates, each listed as
  replaced), a new arm from the curve file's [arm] table, its own shape group, clear errors.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from _curves_sim import digitise, simulate_trial
from _synthetic import lms_tables
from scipy import integrate, stats

from lmsbayes.curves.likelihood import GroupedData, loglik
from lmsbayes.engines.exact import Integrator, Layout
from lmsbayes.model.curve_arms import evidence_label
from lmsbayes.model.definition import Model
from lmsbayes.model.families import CURVES, NUMPY_OPS, SurvivalCurveKernel
from lmsbayes.model.inputs import ModelData
from lmsbayes.model.prepare import CURVE_SHAPE_GROUP, prepare_data
from lmsbayes.spec import SpecError, parse_spec


def write_curve(folder, name, arm_id, *, n, median, shape, seed, arm=None, extra=""):
    """A simulated log-logistic trial digitised as a reader would, written as a curve file."""
    rng = np.random.default_rng(seed)
    time, event, _ = simulate_trial(rng, n, "loglogistic", median, shape, 30.0)
    t, s, rt, rn = digitise(rng, time, event, 24.0)
    pd.DataFrame({"t": t, "S": s}).to_csv(folder / f"{name}_points.csv", index=False)
    lines = [
        f'arm_id = "{arm_id}"',
        f'points = "{name}_points.csv"',
        'source = "simulated (tests/test_curves_pool.py)"',
        extra,
        "[risk_table]",
        f"t = {[float(x) for x in rt]}",
        f"n = {[int(x) for x in rn]}",
    ]
    if arm:
        lines += ["[arm]"] + [
            f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}" for k, v in arm.items()
        ]
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


NEW_ARM = {
    "year": 2015,
    "line": "2L+",
    "treatment_class": "NR-T",
    "doi": "10.0/sim",
    "uterine_fraction": 0.4,
}


def small_tables():
    """Six arms: medians with and without CIs and rates, one of unknown uterine fraction."""
    rng = np.random.default_rng(4)
    arms, rates = [], []
    for i in range(6):
        med = float(np.round(rng.uniform(3, 9), 1))
        a = {
            "arm_id": f"a{i}",
            "line": "1L" if i % 3 == 0 else "2L+",
            "treatment_class": "R-T" if i % 2 else "NR-T",
            "n": int(rng.integers(30, 90)),
            "pfs_median_m": med,
            "uterine_fraction": np.nan if i == 4 else float(np.round(rng.uniform(0, 1), 2)),
        }
        if i % 2 == 0:
            a["pfs_median_lo"], a["pfs_median_hi"] = med * 0.75, med * 1.35
        arms.append(a)
        for t in (3.0, 6.0):
            s = float(np.clip(1 / (1 + (t / med) ** 1.5) + rng.normal(0, 0.03), 0.05, 0.95))
            rates.append({"arm_id": f"a{i}", "t": t, "rate": s})
    return lms_tables(arms, rates)


@pytest.fixture(scope="module")
def curve_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("curves")
    write_curve(d, "a1", "a1", n=80, median=5.0, shape=1.6, seed=1)
    write_curve(d, "new", "new1", n=60, median=4.0, shape=1.4, seed=2, arm=NEW_ARM)
    return d


def spec_with(curves=(), curve="loglogistic", covariates=("line", "nrt"), **model):
    raw = {
        "name": "curves-test",
        "landmarks": [3, 6],
        "data": {"require_identifier": False, "curves": [str(c) for c in curves]},
        "model": {
            "likelihood": "survival",
            "curve": curve,
            "covariates": list(covariates),
            **model,
        },
        "random_effects": {"tau_by": "none"},
    }
    return parse_spec(raw)


@pytest.fixture(scope="module")
def prepared(curve_dir):
    spec = spec_with([curve_dir], covariates=("line", "nrt", "uterine"))
    return spec, prepare_data(spec, small_tables())


# --- the likelihood ------------------------------------------------------------------


@pytest.mark.parametrize("curve", ["loglogistic", "weibull", "lognormal"])
def test_curve_terms_equal_the_reconstruction_likelihood(curve, curve_dir):
    spec = spec_with([curve_dir], curve=curve)
    data = prepare_data(spec, small_tables())
    m = Model(spec, data)
    rng = np.random.default_rng(7)
    eta = rng.normal(0, 1, (data.n_arms, 1))
    k = 1.3
    terms = m.loglik_terms(NUMPY_OPS, eta, m.canonical(_values(m, k)))
    curve_part = terms[len(data.terms) :]
    for arm_id in ("a1", "new1"):
        i = list(data.arms.index).index(arm_id)
        cr = data.curve_rows[data.curve_rows["arm_idx"] == i]
        g = GroupedData(*(cr[c].to_numpy() for c in ("lower", "upper", "event", "count")))
        ref = float(loglik(g, eta[i, 0], k, 6.0, curve))
        mine = data.curve_rows["arm_idx"].to_numpy() == i
        assert curve_part[mine].sum() == pytest.approx(ref, rel=1e-12)


def test_curve_terms_closed_form_of_a_constant_hazard():
    """Weibull k = 1: S(t) = exp(-lam t), lam = exp(eta) / t_ref; exponential data by hand."""
    curve = CURVES["weibull"]
    t_ref, eta = 6.0, -0.4
    lam = math.exp(eta) / t_ref
    rows = {  # an event in (0, 2], two in (2, 3.5], three censored at 4 and one at 10
        "lower": [0.0, 2.0, 4.0, 10.0],
        "upper": [2.0, 3.5, 4.0, 10.0],
        "event": [1, 1, 0, 0],
        "count": [1, 2, 3, 1],
    }
    expected = (
        math.log(1 - math.exp(-lam * 2))
        + 2 * math.log(math.exp(-lam * 2) - math.exp(-lam * 3.5))
        - 3 * lam * 4
        - lam * 10
    )
    data = pd.DataFrame(rows).assign(arm_idx=0)
    a = _curve_arrays(data, t_ref)
    got = curve.curve_terms(NUMPY_OPS, np.array([[eta]]), {"shape": np.array([1.0])}, a)
    assert float(np.sum(got)) == pytest.approx(expected, rel=1e-12)


def _curve_arrays(rows, t_ref):
    from types import SimpleNamespace

    from lmsbayes.model.families import curve_arrays

    return curve_arrays(SimpleNamespace(curve_rows=rows, shape_idx=np.zeros(1, int), t_ref=t_ref))


def _values(m: Model, k: float = 1.3, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    vals = {}
    for p in m.params:
        if p.name == "shape":
            vals[p.name] = np.full(p.shape, k)
        elif p.transform == "log":
            vals[p.name] = np.exp(rng.normal(-0.9, 0.3, p.shape))
        else:
            vals[p.name] = rng.normal(0, 0.5, p.shape)
    vals["z"] = rng.normal(size=(m.data.n_arms,))
    if m.data.latent.size:
        vals["uterine_latent"] = rng.uniform(0.1, 0.9, m.data.latent.size)
    return vals


@pytest.mark.parametrize("curve", ["loglogistic", "weibull", "lognormal"])
def test_kernel_equals_the_terms_and_its_derivatives_finite_differences(curve, curve_dir):
    spec = spec_with([curve_dir], curve=curve, covariates=("line", "nrt", "uterine"))
    m = Model(spec, prepare_data(spec, small_tables()))
    assert not m.gaussian  # curve arms: the exact engine integrates by quadrature
    kern = SurvivalCurveKernel(m)
    rng = np.random.default_rng(3)
    c = m.canonical({k: np.asarray(v)[None] for k, v in _values(m).items() if k != "z"})
    base = rng.normal(0, 1, (1, m.data.n_arms, 1))
    pre = kern.prepare(base, c)
    shift = rng.normal(0, 0.5, (1, m.term_comp.size))
    v, d1, d2 = kern.derivs(pre, shift, value=True)
    eta = base + np.zeros((1, m.data.n_arms, 1))
    eta_shift = eta.copy()
    # shift one value per arm: the terms' shifts are their arm's
    per_arm = rng.normal(0, 0.5, m.data.n_arms)
    shift = per_arm[m.term_comp][None]
    eta_shift[0, :, 0] += per_arm
    v = kern.value(pre, shift)
    assert np.allclose(v[0], m.loglik_terms(NUMPY_OPS, eta_shift, c)[0], rtol=1e-10, atol=1e-10)
    h = 1e-5
    _, d1p, _ = kern.derivs(pre, shift + h, value=True)
    _, d1m, _ = kern.derivs(pre, shift - h, value=True)
    vp, vm = kern.value(pre, shift + h), kern.value(pre, shift - h)
    _, d1, d2 = kern.derivs(pre, shift, value=True)
    assert np.allclose((vp - vm) / (2 * h), d1, rtol=1e-6, atol=1e-6)
    assert np.allclose((d1p - d1m) / (2 * h), d2, rtol=1e-5, atol=1e-6)
    per_arm_d2 = np.bincount(m.term_comp, weights=d2[0])  # an arm's terms: concave together
    assert np.all(per_arm_d2 < 0)


def test_exact_arm_integral_of_a_curve_arm_equals_quadrature(prepared):
    spec, data = prepared
    m = Model(spec, data)
    layout = Layout(m)
    theta = layout.initial() + np.random.default_rng(2).normal(0, 0.2, layout.size)
    vals, _ = layout.unpack(theta[None])
    got = Integrator(m, nodes=25).arm_loglik(vals)[0]
    one = {k: v[0] for k, v in vals.items()}
    c = m.canonical(one)
    for arm_id in ("a1", "new1", "a0"):
        i = list(data.arms.index).index(arm_id)
        sub = Model(spec, data.take([i]))
        base = sub.base_predictor(NUMPY_OPS, c, sub.arrays["X"], sub.arrays["Xu"])
        scale = float(sub.effect_scale(c)[0, 0])

        def ll(z, sub=sub, base=base, scale=scale):
            eta = base + scale * z
            return float(np.sum(sub.loglik_terms(NUMPY_OPS, eta, c))) + sub.constant()

        ref = ll(0.0)
        val = integrate.quad(
            lambda z, ll=ll, ref=ref: np.exp(ll(z) - ref) * stats.norm.pdf(z),
            -12,
            12,
            epsabs=1e-13,
            limit=200,
        )[0]
        assert got[i] == pytest.approx(math.log(val) + ref, abs=1e-6)


@pytest.mark.slow  # 12 s (PyTensor graph and transforms compiled)
def test_pymc_log_density_equals_the_definition_with_curves(prepared):
    pytest.importorskip("pymc")
    from lmsbayes.engines.nuts import build_model

    spec, data = prepared
    m = Model(spec, data)
    model = build_model(spec, data)
    # FAST_COMPILE: the graph evaluated op by op, without the C compilation (40 s here)
    logp = model.compile_fn(model.logp(jacobian=False), mode="FAST_COMPILE")
    for seed in range(3):
        vals = _values(m, k=float(np.exp(np.random.default_rng(seed).normal(0.3, 0.3))), seed=seed)
        point = {}
        for rv in model.free_RVs:
            value_var = model.rvs_to_values[rv]
            x = np.asarray(vals[rv.name], dtype=float)
            tr = model.rvs_to_transforms.get(rv)
            point[value_var.name] = tr.forward(x).eval() if tr is not None else x
        assert float(logp(point)) == pytest.approx(m.joint_logp(vals), rel=1e-9, abs=1e-8)


# --- preparation ---------------------------------------------------------------------


def test_one_source_per_arm(prepared):
    spec, data = prepared
    exc = data.excluded
    a1 = exc[exc["arm_id"] == "a1"]
    label = evidence_label(80)
    assert len(a1) == 3  # the median and the two rates, each replaced by the curve
    assert all(label in r and "used instead" in r for r in a1["reason"])
    assert "a1" not in set(data.obs["arm_id"])
    assert {"a1", "new1"} <= set(data.curve_rows["arm_id"])
    assert data.arms.loc["new1", "line"] == "2L+" and int(data.arms.loc["new1", "n"]) == 60
    assert set(data.curve_arms["arm_id"]) == {"a1", "new1"} and data.curve_arms["used"].all()
    # the data hash covers the curve files (a saved fit records what it rests on)
    assert data.data_sha256 != small_tables().sha256
    # every other arm keeps its median and rates
    assert set(data.obs["arm_id"]) == {"a0", "a2", "a3", "a4", "a5"}
    # terms belong to the arms of their observations
    first = data.terms["first"].to_numpy()
    assert np.array_equal(data.terms["comp"].to_numpy(), data.obs["arm_idx"].to_numpy()[first])


def test_truncation_censors_the_curve(curve_dir, tmp_path):
    spec = spec_with([curve_dir / "a1.toml"]).replace(**{"data.curve_truncate": 6.0})
    cr = prepare_data(spec, small_tables()).curve_rows
    assert cr["upper"].max() <= 6.0
    assert (cr.loc[cr["upper"] == 6.0, "event"] == 0).all()
    # a curve file's own truncate takes precedence
    write_curve(tmp_path, "b", "a1", n=80, median=5.0, shape=1.6, seed=1, extra="truncate = 9")
    spec = spec_with([tmp_path]).replace(**{"data.curve_truncate": 6.0})
    assert prepare_data(spec, small_tables()).curve_rows["upper"].max() == pytest.approx(9.0)


def test_curve_arms_can_have_their_own_shape(curve_dir):
    spec = spec_with([curve_dir], curve_shape="own")
    data = prepare_data(spec, small_tables())
    assert data.shape_groups == ("all", CURVE_SHAPE_GROUP)
    own = [list(data.arms.index).index(a) for a in ("a1", "new1")]
    assert set(data.shape_idx[own]) == {1} and set(np.delete(data.shape_idx, own)) == {0}
    m = Model(spec, data)
    assert m.arrays["curve_shape_idx"].tolist() == [1] * len(data.curve_rows)


def test_model_data_with_curves_round_trips(prepared):
    _, data = prepared
    back = ModelData.from_xarray(data.to_xarray())
    pd.testing.assert_frame_equal(
        back.curve_rows[["arm_idx", "lower", "upper", "event", "count"]],
        data.curve_rows[["arm_idx", "lower", "upper", "event", "count"]],
    )
    assert list(back.curve_arms["arm_id"]) == list(data.curve_arms["arm_id"])


def test_without_curves_nothing_changes():
    spec = spec_with()
    data = prepare_data(spec, small_tables())
    m = Model(spec, data)
    assert m.gaussian and data.curve_rows.empty and "curve_arm" not in m.arrays
    assert "curverow" not in data.to_xarray().dims
    assert "curves" not in spec.to_dict()["data"]


@pytest.mark.parametrize(
    "arm, match",
    [
        ({"year": 2015, "line": "2L+"}, r"\[arm\] needs \['treatment_class'\]"),
        ({**NEW_ARM, "colour": "red"}, r"\[arm\] colour is not a column"),
        ({**NEW_ARM, "line": "2L"}, r"line must be one of"),
        (None, r"not in the data table; give its description"),
    ],
)
def test_a_new_arm_needs_a_valid_description(tmp_path, arm, match):
    write_curve(tmp_path, "x", "x1", n=40, median=4.0, shape=1.5, seed=3, arm=arm)
    with pytest.raises(SpecError, match=match):
        prepare_data(spec_with([tmp_path]), small_tables())


def test_curve_errors_name_the_file(tmp_path):
    write_curve(tmp_path, "x", "a1", n=40, median=4.0, shape=1.5, seed=3, arm=NEW_ARM)
    with pytest.raises(SpecError, match=r"x\.toml: arm 'a1' is in the data table"):
        prepare_data(spec_with([tmp_path]), small_tables())
    write_curve(tmp_path, "x", "a1", n=40, median=4.0, shape=1.5, seed=3)
    write_curve(tmp_path, "y", "a1", n=40, median=4.0, shape=1.5, seed=4)
    with pytest.raises(SpecError, match=r"y\.toml: arm 'a1' already has a curve"):
        prepare_data(spec_with([tmp_path]), small_tables())
    with pytest.raises(SpecError, match="no curve file or directory"):
        prepare_data(spec_with([tmp_path / "missing.toml"]), small_tables())
    with pytest.raises(SpecError, match="survival likelihood only"):
        parse_spec(
            {
                "data": {"curves": ["x.toml"]},
                "model": {"likelihood": "logit-binomial"},
            }
        )


def test_spec_paths_are_relative_to_the_spec_file(tmp_path):
    from lmsbayes.spec import load_spec

    (tmp_path / "spec.toml").write_text(
        '[data]\ncurves = ["curves/a.toml"]\n[model]\nlikelihood = "survival"\n'
    )
    spec = load_spec(tmp_path / "spec.toml")
    assert spec.data.curves == (str(tmp_path / "curves" / "a.toml"),)


# --- both engines -------------------------------------------------------------------


@pytest.mark.slow
def test_exact_and_nuts_agree_with_a_curve_arm(prepared):
    """Posterior means and sds of the globals within Monte Carlo error (NUTS: 4 x 1000 draws)."""
    pytest.importorskip("nutpie")
    from lmsbayes.fit import fit

    spec, data = prepared
    spec = spec.replace(**{"sampler.draws": 1000, "sampler.tune": 1000})
    ex = fit(spec, data, engine="exact")
    nu = fit(spec, data, engine="nuts")
    for name in ("alpha", "shape", "tau"):
        a = np.asarray(ex.posterior[name]).ravel()
        b = np.asarray(nu.posterior[name])
        b_flat = b.reshape(-1) if b.ndim == 2 else b.reshape(-1, b.shape[-1])[:, 0]
        # Monte Carlo error of NUTS' mean from its ESS; the exact engine's is smaller
        ess = float(nu.diagnostics.min_ess_bulk)
        mcse = np.std(b_flat) / math.sqrt(ess)
        assert abs(a.mean() - b_flat.mean()) < 4 * mcse + 0.02 * np.std(b_flat), name
        assert np.std(a) == pytest.approx(np.std(b_flat), rel=0.15), name


def test_validation_refuses_curve_arms(prepared):
    from lmsbayes.errors import OptionError
    from lmsbayes.validate import loto

    spec, data = prepared
    with pytest.raises(OptionError, match="curve arms"):
        loto(spec, data)


def test_a_new_arm_takes_the_other_arms_shape_not_the_curve_arms():
    from types import SimpleNamespace

    from lmsbayes.settings import Setting, shape_group_of

    for groups, want in (
        (("all", CURVE_SHAPE_GROUP), [0, 0]),
        (("1L", "2L+", CURVE_SHAPE_GROUP), [0, 1]),
    ):
        fit = SimpleNamespace(data=SimpleNamespace(shape_groups=groups))
        got = shape_group_of(fit, [Setting("1L", "R-T"), Setting("2L+", "NR-T")])
        assert got.tolist() == want
