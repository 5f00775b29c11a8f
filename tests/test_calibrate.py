"""Simulation-based calibration (lmsbayes.calibrate): simulation, ranks, tests, cluster, CLI, plots.

- Simulated data follow the likelihood: binomial means and the survival
  family's Gaussian quadratic form (chi-square with n_obs degrees of freedom)
  against computations written here from the model's equations.
- New observations enter without preparing the data again, and equal what
  prepare_data makes of a table with those values.
- Holm's correction and the ECDF bands against their definitions.
- A small fast SBC (RBesT's AS design, exact engine, 50 data sets) is
  uniform, and the same study with deliberately wrong posteriors (draws
  shifted by one posterior sd, or half as wide) fails the uniformity test.
- Results depend on the seed only: not on batching, nor on the number of
  dask workers.
- Slow: the default analysis with 1,000 exact-engine and 100 NUTS data sets.
"""

from __future__ import annotations

import functools
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import special, stats

from lmsbayes import calibrate as cal
from lmsbayes.errors import OptionError
from lmsbayes.model.definition import Model
from lmsbayes.model.prepare import prepare_data
from lmsbayes.spec import load_spec, parse_spec

AS_CSV = Path(__file__).parent / "data" / "AS.csv"
AS_SPEC = {
    "name": "as",
    "landmarks": [],
    "model": {"likelihood": "logit-binomial"},
    "random_effects": {"tau_by": "none"},
    "priors": {
        "alpha": {"dist": "Normal", "mu": 0.0, "sigma": 2.0},
        "tau": {"dist": "HalfNormal", "sigma": 1.0},
    },
    "exact": {"draws": 1000},
}


@pytest.fixture(scope="module")
def as_spec():
    return parse_spec(AS_SPEC)


@pytest.fixture(scope="module")
def as_data(as_spec):
    return prepare_data(as_spec, pd.read_csv(AS_CSV))


@pytest.fixture(scope="module")
def as_sbc(as_spec, as_data):
    """The fast SBC: 50 data sets on the AS design, exact engine, in this process."""
    return cal.sbc(as_spec, as_data, n_sims=50, seed=11, scheduler="sequential")


# --- simulation ----------------------------------------------------------------------


def test_binomial_simulation_has_the_binomial_mean(as_spec, as_data):
    m = Model(as_spec, as_data)
    values = {
        "alpha": np.array(-1.2),
        "tau": np.array([0.6]),
        "z": np.linspace(-1.5, 1.5, 8)[:, None],
        "uterine_latent": np.zeros(0),
    }
    rng = np.random.default_rng(1)
    y = np.stack([cal.simulate(m, values, rng) for _ in range(4000)])
    n = pd.read_csv(AS_CSV)["n"].to_numpy(float)
    p = special.expit(-1.2 + 0.6 * np.linspace(-1.5, 1.5, 8))  # logit p_i = alpha + tau z_i
    zscore = (y.mean(0) - n * p) / np.sqrt(n * p * (1 - p) / len(y))
    assert np.all(np.abs(zscore) < 4.5), zscore  # Bonferroni-safe over 8 arms
    assert np.all((y >= 0) & (y <= n) & (y == np.round(y)))


def test_survival_simulation_follows_the_correlated_gaussian_likelihood(trials):
    """Residuals r = y - mu from the curve equations: mean 0, and r' P r ~ chi-square(n_obs)."""
    spec = load_spec("default")
    data = prepare_data(spec, trials)
    m = Model(spec, data)
    rng = np.random.default_rng(2)
    values = cal.prior_draw(m, rng)
    values.update(alpha=np.array(0.3), shape=np.array([1.4]), tau=np.array([0.4, 0.3]))
    # the linear predictor and the log-logistic curve, written from the model's equations
    du = np.zeros(data.n_arms)
    du[data.latent] = values["uterine_latent"] - data.uterine_centre
    x = data.X + du[:, None] * data.Xu
    eta = 0.3 + x @ values["beta"] + values["tau"][data.stratum_idx] * values["z"][:, 0]
    obs = data.obs
    e = eta[obs["arm_idx"].to_numpy()]
    k, t_ref = 1.4, spec.model.t_ref
    mu = np.where(
        obs["is_median"] > 0.5, math.log(t_ref) + e / k, e - k * obs["log_t_rel"].to_numpy()
    )
    P = np.zeros((len(obs), len(obs)))
    P[data.terms["first"], data.terms["second"]] = data.terms["precision"]
    # a median without a CI has sd se / k (the KM median's asymptotic sd): precision S P S, S =
    # k^power
    s = k ** obs["se_shape_power"].to_numpy(float)
    assert (s != 1).any()
    P = P * np.outer(s, s)
    M = 3000
    r = np.stack([cal.simulate(m, values, rng) for _ in range(M)]) - mu
    quad = np.einsum("mi,ij,mj->m", r, P, r)
    n_obs = len(obs)
    assert abs(quad.mean() - n_obs) < 4.5 * math.sqrt(2 * n_obs / M)
    se = r.std(0) / math.sqrt(M)
    assert np.all(np.abs(r.mean(0)) < 4.5 * se)


@pytest.mark.parametrize("name", ["default", "weibull", "eortc2021", "per_landmark", "joint"])
def test_simulated_data_enter_without_preparing_again(name, trials):
    spec = load_spec(name)
    data = prepare_data(spec, trials)
    m = Model(spec, data)
    rng = np.random.default_rng(3)
    for _ in range(20):
        values = cal.prior_draw(m, rng)
        y = cal.simulate(m, values, rng)
        new = cal.with_observations(data, y)
        arrays = Model(spec, new).arrays
        np.testing.assert_array_equal(arrays["lik_y"], y)
        for key, v in m.arrays.items():  # the design is untouched
            if key not in ("lik_y", "log_choose"):
                np.testing.assert_array_equal(arrays[key], v)
        if "lik_n" in arrays:
            assert np.all((y >= 0) & (y <= arrays["lik_n"]))
            expect = (
                stats.binom.logpmf(y, arrays["lik_n"], 0.3)
                - y * math.log(0.3)
                - (arrays["lik_n"] - y) * math.log(0.7)
            )
            np.testing.assert_allclose(arrays["log_choose"], expect, atol=1e-8)
        assert new.data_sha256 != data.data_sha256


def test_new_counts_equal_a_prepared_table_with_those_counts(as_spec, as_data):
    m = Model(as_spec, as_data)
    y = cal.simulate(m, cal.prior_draw(m, np.random.default_rng(4)), np.random.default_rng(5))
    table = pd.read_csv(AS_CSV).assign(r=y.astype(int))
    direct = Model(as_spec, prepare_data(as_spec, table)).arrays
    replaced = Model(as_spec, cal.with_observations(as_data, y)).arrays
    assert direct.keys() == replaced.keys()
    for key in direct:
        np.testing.assert_allclose(replaced[key], direct[key], rtol=1e-12)


def test_a_count_outside_the_support_is_an_error_naming_the_arm(as_spec, as_data):
    m = Model(as_spec, as_data)
    y = as_data.obs["lik_n"].to_numpy(float).copy()
    cal.check_support(m, y)
    y[3] += 1
    with pytest.raises(ValueError, match=r"observation 3 \(arm 'Study 4'\) is outside the support"):
        cal.check_support(m, y)
    y[3] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        cal.check_support(m, y)


def test_prior_draws_follow_the_priors(as_spec, as_data):
    m = Model(as_spec, as_data)
    rng = np.random.default_rng(6)
    d = [cal.prior_draw(m, rng) for _ in range(4000)]
    alpha = np.array([v["alpha"] for v in d])
    tau = np.array([v["tau"][0] for v in d])
    assert stats.kstest(alpha, stats.norm(0, 2).cdf).pvalue > 0.001
    assert stats.kstest(tau, stats.halfnorm(scale=1.0).cdf).pvalue > 0.001


# --- ranks and tests -------------------------------------------------------------------


def test_ranks_count_the_draws_below_the_truth():
    draws = np.array([[0.1, 5.0], [0.3, 1.0], [0.7, 2.0]])  # (sample, quantity)
    np.testing.assert_array_equal(cal.ranks_from_draws(np.array([0.5, 1.5]), draws), [2, 1])
    np.testing.assert_array_equal(cal.ranks_from_draws(np.array([0.0, 9.0]), draws), [0, 3])


def test_holm_equals_its_definition():
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; running max
    np.testing.assert_allclose(cal.holm(p)[:4], [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(cal.holm(p)[4])


def test_uniform_ranks_pass_and_skewed_ranks_fail():
    rng = np.random.default_rng(7)
    r = rng.integers(0, 100, size=(500, 2)).astype(float)
    r[:, 1] = np.minimum(r[:, 1], rng.integers(0, 100, size=500))  # min of two: skewed to low ranks
    t = cal.uniformity_tests(r, cal.randomized_pit(r, 99, rng), 99)
    assert t["bins"].tolist() == [20, 20]
    assert t.loc[0, "p_chi2"] > 0.001 and t.loc[0, "p_ks"] > 0.001
    assert t.loc[1, "p_chi2"] < 1e-6 and t.loc[1, "p_ks"] < 1e-6


def test_too_few_simulations_for_a_test_leave_it_out_not_failed():
    rng = np.random.default_rng(8)
    r = rng.integers(0, 100, size=(5, 1)).astype(float)
    t = cal.uniformity_tests(r, cal.randomized_pit(r, 99, rng), 99)
    assert t.loc[0, "bins"] == 1 and np.isnan(t.loc[0, "p_chi2"]) and 0 < t.loc[0, "p_ks"] <= 1


def test_ecdf_bands_hold_their_simultaneous_coverage():
    n, z = 200, np.arange(1, 50) / 50
    lo, hi = cal.ecdf_bands(n, z, prob=0.9, n_sim=4000, seed=1)
    u = np.sort(np.random.default_rng(99).uniform(size=(3000, n)), axis=1)
    ecdf = np.stack([np.searchsorted(row, z, side="right") for row in u]) / n
    inside = np.all((ecdf >= lo) & (ecdf <= hi), axis=1).mean()
    # band estimated from 4000 simulations, checked on 3000 fresh ones: Monte Carlo se ~ 0.007
    assert abs(inside - 0.9) < 0.03
    pointwise = ((ecdf >= lo) & (ecdf <= hi)).mean(0)
    assert pointwise.min() > 0.9  # simultaneous bands are wider than pointwise ones


# --- the fast SBC -----------------------------------------------------------------------


def _reranked(ds: xr.Dataset, draws: xr.DataArray) -> xr.Dataset:
    out = ds.copy()
    r = cal.ranks_from_draws(
        ds["truth"].values, draws.transpose("simulation", "sample", "quantity").values
    )
    out["rank"] = (("simulation", "quantity"), r.astype(float))
    out["u"] = (
        ("simulation", "quantity"),
        cal.randomized_pit(r, ds.attrs["n_ranks"], np.random.default_rng(0)),
    )
    return out


def test_fast_sbc_is_uniform(as_sbc):
    s = cal.sbc_summary(as_sbc)
    assert list(s.index) == ["alpha", "tau[all]", "p pooled"]
    assert s.attrs["failed"] == []
    assert s["n"].tolist() == [50, 50, 50]
    assert s["uniform"].all(), s
    for c in (
        50,
        90,
        95,
    ):  # nominal coverage inside the 95% interval (3 x 3 checks: a loose family bound)
        lo, hi = s[f"coverage_{c}_lo"], s[f"coverage_{c}_hi"]
        assert ((lo <= c / 100) & (c / 100 <= hi)).all(), s.filter(like=f"coverage_{c}")
    assert as_sbc["draws"].sizes == {"simulation": 50, "sample": 99, "quantity": 3}
    # AS-like tables (one tau, no covariates) are integrated by a tensor grid: no importance
    # weights, so no k-hat (the LMS specs' lattice rule has one)
    assert np.all(np.isnan(as_sbc["khat"])) and as_sbc.attrs["engine"] == "exact"


def test_a_shifted_or_too_narrow_posterior_fails_the_uniformity_test(as_sbc):
    shifted = _reranked(as_sbc, as_sbc["draws"] + as_sbc["post_sd"])
    assert not cal.sbc_summary(shifted)["uniform"].any()
    m = as_sbc["post_mean"]
    narrow = _reranked(as_sbc, m + 0.5 * (as_sbc["draws"] - m))
    assert not cal.sbc_summary(narrow)["uniform"].any()


def test_replay_gives_a_simulation_and_its_posterior_again(as_sbc, as_spec, as_data):
    import lmsbayes

    values, data, fit_seed = cal.replay(as_spec, as_data, as_sbc.attrs["seed"], 7)
    m = Model(as_spec, data)
    np.testing.assert_array_equal(cal.quantities(m, values), as_sbc["truth"].values[7])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = lmsbayes.fit(as_spec, data, engine="exact", seed=fit_seed).posterior
    q = cal.quantities(m, {"alpha": post["alpha"].values, "tau": post["tau"].values}).reshape(-1, 3)
    np.testing.assert_allclose(q.mean(0), as_sbc["post_mean"].values[7], rtol=1e-12)


def test_sbc_result_saves_to_netcdf(as_sbc, tmp_path):
    path = cal.save_sbc(as_sbc, tmp_path / "sbc.nc")
    back = xr.load_dataset(path)
    np.testing.assert_array_equal(back["rank"].values, as_sbc["rank"].values)
    assert (
        back.attrs["spec_hash"] == as_sbc.attrs["spec_hash"]
        and back.attrs["lmsbayes_format"] == "lmsbayes.sbc"
    )
    pd.testing.assert_frame_equal(cal.sbc_summary(back), cal.sbc_summary(as_sbc))


def test_a_failed_fit_is_recorded_and_reported(as_spec, as_data, monkeypatch):
    real = cal._fit  # each simulation's fit through the engine protocol
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise FloatingPointError("deliberate failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(cal, "_fit", flaky)
    ds = cal.sbc(as_spec, as_data, n_sims=4, seed=5, scheduler="sequential")
    assert ds["error"].values[1] == "FloatingPointError: deliberate failure"
    assert np.all(np.isnan(ds["rank"].values[1])) and np.all(
        np.isfinite(ds["rank"].values[[0, 2, 3]])
    )
    s = cal.sbc_summary(ds)
    assert s.attrs["failed"] == [1] and s["n"].tolist() == [3, 3, 3]


# --- mapping over seeds ------------------------------------------------------------------


def _normal_task(scale: float, seed: np.random.SeedSequence) -> float:
    return scale * float(np.random.default_rng(seed).normal())


def test_results_depend_on_the_seed_only_not_on_batches(as_spec, as_data):
    one = cal.sbc(as_spec, as_data, n_sims=6, seed=3, scheduler="sequential", batch_size=1)
    five = cal.sbc(as_spec, as_data, n_sims=6, seed=3, scheduler="sequential", batch_size=5)
    for v in ("truth", "rank", "u", "draws", "khat"):
        np.testing.assert_array_equal(one[v].values, five[v].values)
    other = cal.sbc(as_spec, as_data, n_sims=6, seed=4, scheduler="sequential")
    assert not np.array_equal(one["truth"].values, other["truth"].values)


@pytest.mark.slow
def test_map_seeds_on_a_local_cluster_equals_sequential(as_spec, as_data):
    distributed = pytest.importorskip("distributed")
    seeds = cal.spawn_seeds(8, 12)
    task = functools.partial(_normal_task, 2.0)
    seq = cal.map_seeds(task, seeds, scheduler="sequential")
    assert seq.results == [_normal_task(2.0, s) for s in seeds]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. no port clash on a shared machine
        with cal._client(None, 2) as (client, where, _):
            assert (
                isinstance(client, distributed.Client)
                and "LocalCluster (2 worker processes)" in where
            )
            par = cal.map_seeds(task, seeds, scheduler=client, batch_size=5)
            assert par.results == seq.results and par.workers == 2 and par.tasks == 3
            # an SBC on two workers equals the sequential one, bit for bit
            b = cal.sbc(as_spec, as_data, n_sims=4, seed=9, scheduler=client, batch_size=1)
    a = cal.sbc(as_spec, as_data, n_sims=4, seed=9, scheduler="sequential")
    assert b.attrs["workers"] == 2 and b.attrs["tasks"] == 4
    for v in ("truth", "rank", "u", "draws", "post_mean", "khat"):
        np.testing.assert_array_equal(a[v].values, b[v].values)


def test_without_dask_runs_sequentially_with_a_note_and_an_address_needs_the_extra(monkeypatch):
    monkeypatch.setattr(cal, "_dask", lambda: None)
    seeds = cal.spawn_seeds(1, 3)
    out = cal.map_seeds(functools.partial(_normal_task, 1.0), seeds)
    assert out.scheduler.startswith("sequential") and "lmsbayes[distributed]" in out.note
    with pytest.raises(OptionError, match=r"lmsbayes\[distributed\]"):
        cal.map_seeds(functools.partial(_normal_task, 1.0), seeds, scheduler="tcp://127.0.0.1:1")


def test_bad_options_are_errors(as_spec, as_data):
    with pytest.raises(OptionError, match="n_sims"):
        cal.sbc(as_spec, as_data, n_sims=0, scheduler="sequential")
    with pytest.raises(OptionError, match="engine"):
        cal.sbc(as_spec, as_data, n_sims=2, engine="auto", scheduler="sequential")
    with pytest.raises(OptionError, match="scheduler"):
        cal.map_seeds(functools.partial(_normal_task, 1.0), cal.spawn_seeds(1, 2), scheduler=42)


# --- CLI and plots -----------------------------------------------------------------------


def _as_toml(tmp_path: Path) -> Path:
    p = tmp_path / "as.toml"
    p.write_text(
        'name = "as"\nlandmarks = []\n[model]\nlikelihood = "logit-binomial"\n[random_effects]\n'
        'tau_by = "none"\n[priors]\nalpha = { dist = "Normal", mu = 0.0, sigma = 2.0 }\n'
        'tau = { dist = "HalfNormal", sigma = 1.0 }\n[exact]\ndraws = 1000\n'
    )
    return p


def test_cli_calibrate_writes_results_figures_and_a_summary(tmp_path, capsys):
    from lmsbayes.cli import main

    out = tmp_path / "out"
    code = main(
        [
            "calibrate",
            str(_as_toml(tmp_path)),
            "--data",
            str(AS_CSV),
            "-n",
            "8",
            "--scheduler",
            "sequential",
            "-o",
            str(out / "sbc.nc"),
            "--csv",
            str(out / "sbc.csv"),
            "--figures",
            str(out / "fig"),
            "--mkdir",  # out/ does not exist: created only when asked for (issue 20)
            "-q",
        ]
    )
    text = capsys.readouterr().out
    assert code == 0
    assert "simulation-based calibration of spec 'as', exact engine" in text
    assert "tau[all]" in text and "Holm" in text and "k-hat > 0.7" in text
    assert xr.load_dataset(out / "sbc.nc").sizes["simulation"] == 8
    table = pd.read_csv(out / "sbc.csv", index_col=0)
    assert list(table.index) == ["alpha", "tau[all]", "p pooled"] and "coverage_90" in table
    for name in ("sbc_ranks.png", "sbc_ecdf.png"):
        assert (out / "fig" / name).stat().st_size > 10_000


def test_cli_calibrate_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    from lmsbayes.cli import main

    code = main(
        ["calibrate", str(_as_toml(tmp_path)), "--data", str(AS_CSV), "-n", "2", "--alpha", "1.5"]
    )
    err = capsys.readouterr().err
    assert (
        code == 2
        and err.startswith("lmsbayes: error: --alpha must be in (0, 1)")
        and err.count("\n") == 1
    )
    (tmp_path / "file").write_text("x")
    code = main(
        [
            "calibrate",
            str(_as_toml(tmp_path)),
            "--data",
            str(AS_CSV),
            "-n",
            "2",
            "-o",
            str(tmp_path / "file" / "sbc.nc"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "not a directory" in err and "sbc.nc" in err


def test_plots_show_each_quantity_with_its_p_value(as_sbc):
    from lmsbayes.plots_calibrate import plot_ecdf_difference, plot_rank_histograms

    s = cal.sbc_summary(as_sbc)
    for fig in (plot_rank_histograms(as_sbc, s), plot_ecdf_difference(as_sbc, s)):
        axes = [ax for ax in fig.axes if ax.get_visible()]
        assert [ax.get_title().split("\n")[0] for ax in axes] == ["alpha", "tau[all]", "p pooled"]
        assert all("Holm p = " in ax.get_title() for ax in axes)
        assert "50 of 50 simulations fitted" in fig._suptitle.get_text()
    hist = plot_rank_histograms(as_sbc, s, bins=5)
    heights = [p.get_height() for p in hist.axes[0].patches if p.get_width() == 20]
    assert sum(heights) == 50 and len(heights) == 5


# --- at scale (slow) ---------------------------------------------------------------------


def _assert_calibrated(ds: xr.Dataset) -> None:
    s = cal.sbc_summary(ds)
    print(s.round(4).to_string())
    assert s.attrs["failed"] == [], (
        f"{len(s.attrs['failed'])} fits failed: {set(ds['error'].values) - {''}}"
    )
    assert s["uniform"].all(), s[["p_chi2_holm", "p_ks_holm"]]


@pytest.mark.slow
def test_sbc_default_exact_engine_1000_data_sets():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = cal.sbc("default", n_sims=1000, engine="exact", seed=20210617)
    _assert_calibrated(ds)


@pytest.mark.slow
def test_sbc_default_nuts_100_data_sets():
    pytest.importorskip("nutpie")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = cal.sbc("default", n_sims=100, engine="nuts", seed=20210617)
    _assert_calibrated(ds)
