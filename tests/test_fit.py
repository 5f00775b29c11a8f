"""Fitting: diagnostics of the default analysis, reproducibility, DataTree layout, save/load.

Uses the session fixtures of ``conftest.py``; the extra fits here reuse the
default model's compiled structure (only sampler settings or data values
change), so nothing below compiles a new model.
"""

from __future__ import annotations

import dataclasses
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import lmsbayes
from conftest import quiet_fit, theta_from_model_graph
from lmsbayes.fit import _COMPILED, FitWarning, SamplingError, load_fit

HYPER = ("alpha", "beta", "tau")


@pytest.fixture(scope="module")
def small_spec(default_fit):
    """The default structure with few draws: same compiled model, cheap to sample."""
    return default_fit.spec.replace(**{"sampler.draws": 300, "sampler.tune": 300})


@pytest.fixture(scope="module")
def small_fit(default_fit, small_spec):
    return quiet_fit(small_spec, default_fit.data)


# --- the "done when": a clean default fit ----------------------------


def test_default_fit_diagnostics(default_fit):
    diag = default_fit.diagnostics
    assert default_fit.spec.sampler.draws == 2000 and default_fit.spec.sampler.chains == 4
    assert diag.n_draws == 8000
    assert diag.divergences == 0
    assert diag.max_rhat <= 1.01
    assert diag.ok, diag.problems
    table = diag.table
    assert set(HYPER) <= set(table.index)
    assert (table.loc[list(HYPER), "max_rhat"] <= 1.01).all(), table
    assert (table.loc[list(HYPER), "min_ess_bulk"] >= 1000).all(), table
    assert diag.min_ess_bulk >= 1000
    assert "0 divergences" in diag.line() and diag.line().endswith("OK")


def test_diagnostics_agree_with_the_sample_stats(default_fit):
    div = default_fit.datatree["sample_stats"]["diverging"]
    assert int(div.sum()) == default_fit.diagnostics.divergences
    summary = default_fit.summary()
    assert summary["r_hat"].astype(float).max() == pytest.approx(default_fit.diagnostics.max_rhat)
    assert summary["ess_bulk"].astype(float).min() == pytest.approx(default_fit.diagnostics.min_ess_bulk)


def test_summary_has_readable_names(default_fit):
    summary = default_fit.summary()
    names = list(summary.index)
    assert "alpha[3 mo]" in names and "alpha[6 mo]" in names
    assert "beta[6 mo, line]" in names and "beta[3 mo, line:nrt]" in names
    assert "beta[6 mo, uterine]" in names
    assert "tau[2L+, 6 mo]" in names and "tau[1L, 3 mo]" in names
    assert len(names) == 2 + 2 * 4 + 2 * 2
    assert not any("3.0" in n or "6.0" in n for n in names)
    assert {"mean", "sd", "ess_bulk", "r_hat"} <= set(summary.columns)


# --- DataTree layout -----------------------------------------------------------


def test_datatree_groups_and_named_dims(default_fit):
    dt, data = default_fit.datatree, default_fit.data
    assert {"posterior", "posterior_predictive", "observed_data", "constant_data", "sample_stats"} <= set(dt.children)
    post = default_fit.posterior
    assert post["alpha"].dims == ("chain", "draw", "landmark")
    assert post["beta"].dims == ("chain", "draw", "landmark", "covariate")
    assert post["tau"].dims == ("chain", "draw", "stratum", "landmark")
    assert post["z"].dims == ("chain", "draw", "arm", "landmark")
    assert post["p"].dims == ("chain", "draw", "arm", "landmark")
    assert list(post["arm"].values) == list(data.arms.index)
    assert list(post["landmark"].values) == [3.0, 6.0]
    assert list(post["covariate"].values) == ["line", "nrt", "line:nrt", "uterine"]
    assert list(post["stratum"].values) == ["1L", "2L+"]
    assert dict(post.sizes)["chain"] == 4 and dict(post.sizes)["draw"] == 2000
    n_obs = len(data.obs)
    pp = dt["posterior_predictive"].to_dataset()
    assert pp["y"].dims == ("chain", "draw", "obs") and pp.sizes["obs"] == n_obs
    observed = dt["observed_data"].to_dataset()
    assert observed["y"].dims == ("obs",)
    np.testing.assert_array_equal(observed["y"].values, data.obs["y_eff"].to_numpy())
    const = dt["constant_data"].to_dataset()
    assert all(const[v].dims == ("obs",) for v in const.data_vars)
    np.testing.assert_array_equal(const["n_eff"].values, data.obs["n_eff"].to_numpy())
    assert (pp["y"].values <= const["n_eff"].values).all() and (pp["y"].values >= 0).all()
    assert dt["sample_stats"]["diverging"].dims == ("chain", "draw")
    assert dt.attrs["spec_hash"] == default_fit.spec.hash
    assert dt.attrs["data_sha256"] == default_fit.data_sha256


def test_theta_is_the_models_deterministic(default_fit):
    """theta, computed in numpy after sampling, equals the PyMC graph's theta (latent uterine arms too)."""
    ref, got = theta_from_model_graph(default_fit)
    assert default_fit.data.latent_uterine.size > 0
    assert np.isfinite(ref).all()
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_p_is_the_inverse_logit_of_theta(default_fit):
    post = default_fit.posterior
    np.testing.assert_allclose(post["p"].values[:, :50], 1 / (1 + np.exp(-post["theta"].values[:, :50])))


# --- nothing silently dropped --------------------------------------------------


def test_every_arm_is_fitted_or_excluded_with_a_reason(default_fit, trials):
    data = default_fit.data
    excluded = data.excluded
    assert {"arm_id", "landmark", "reason"} <= set(excluded.columns)
    assert excluded["reason"].astype(str).str.strip().ne("").all()

    all_arms = set(trials.arms["arm_id"])
    fitted = set(data.arms.index)
    whole = set(excluded.loc[excluded["landmark"].isna(), "arm_id"])
    assert not fitted & whole
    assert whole, "the default spec excludes the placebo arms"
    # an arm whose every landmark lacks usable data is reported once per landmark
    per_landmark = excluded.dropna(subset=["landmark"])
    no_usable = {a for a, g in per_landmark.groupby("arm_id") if set(g["landmark"]) == set(data.landmarks)}
    assert not no_usable & fitted
    assert fitted | whole | no_usable == all_arms

    # and at the level of observations: each (arm, landmark) of a kept arm is used or excluded
    used = set(zip(data.obs["arm_id"], data.obs["landmark"].astype(float)))
    left_out = set(zip(per_landmark["arm_id"], per_landmark["landmark"].astype(float)))
    assert not used & left_out
    kept = all_arms - whole
    assert used | left_out == {(a, t) for a in kept for t in data.landmarks}


def test_placebo_arms_are_excluded_by_the_default_spec(default_fit, trials):
    placebo = set(trials.arms.loc[trials.arms["placebo"].astype(bool), "arm_id"])
    assert placebo
    excluded = default_fit.data.excluded
    reasons = excluded.set_index("arm_id").loc[sorted(placebo), "reason"]
    assert reasons.str.contains("placebo").all()
    assert not placebo & set(default_fit.data.arms.index)


# --- reproducibility and the compiled-model cache -------------------------------


def _assert_same_draws(a, b):
    for group in ("posterior", "posterior_predictive", "sample_stats"):
        da, db = a.datatree[group].to_dataset(), b.datatree[group].to_dataset()
        assert set(da.data_vars) == set(db.data_vars)
        for v in da.data_vars:
            if da[v].dtype != object:
                np.testing.assert_array_equal(da[v].values, db[v].values, err_msg=f"{group}/{v}")


def test_same_seed_same_data_same_spec_gives_identical_draws(default_fit, small_spec, small_fit):
    n_compiled = len(_COMPILED)
    first = small_fit
    second = quiet_fit(small_spec, default_fit.data)
    assert len(_COMPILED) == n_compiled, "a refit of the same structure must not recompile"
    _assert_same_draws(first, second)
    xr.testing.assert_equal(first.posterior, second.posterior)  # values and coords; created_at differs
    other = quiet_fit(small_spec, default_fit.data, seed=small_spec.sampler.seed + 1)
    assert other.spec.sampler.seed == small_spec.sampler.seed + 1
    assert not np.array_equal(first.posterior["alpha"].values, other.posterior["alpha"].values)


def test_refit_on_new_data_of_the_same_shape_uses_the_new_values(default_fit, small_spec, small_fit):
    data = default_fit.data
    obs = data.obs.copy()
    # every arm at 6 months: half its effective patients progression-free
    six = obs["landmark"] == 6.0
    obs.loc[six, "y_eff"] = obs.loc[six, "n_eff"] // 2
    new_data = dataclasses.replace(data, obs=obs)
    n_compiled = len(_COMPILED)
    before = small_fit
    after = quiet_fit(small_spec, new_data)
    assert len(_COMPILED) == n_compiled
    np.testing.assert_array_equal(after.datatree["observed_data"]["y"].values, obs["y_eff"].to_numpy())
    # the sampler saw the new data: 6-month arm rates move towards one half
    p_before = before.posterior["p"].sel(landmark=6.0).mean(("chain", "draw"))
    p_after = after.posterior["p"].sel(landmark=6.0).mean(("chain", "draw"))
    assert float(abs(p_after - 0.5).mean()) < float(abs(p_before - 0.5).mean())
    # 3-month data are unchanged
    np.testing.assert_array_equal(
        after.datatree["observed_data"]["y"].values[~six.to_numpy()],
        before.datatree["observed_data"]["y"].values[~six.to_numpy()],
    )


@pytest.mark.parametrize("y_shift, n_eff, needle", [
    (+1, None, "0 <= y_eff <= n_eff"),  # y = n + 1
    (None, None, "0 <= y_eff <= n_eff"),  # y = -1
    (0, 0, "n_eff > 0"),
])  # fmt: skip
def test_observations_outside_the_support_are_refused(default_fit, small_spec, y_shift, n_eff, needle):
    # the log density is compiled without PyMC's parameter checks, so new data
    # for a compiled model are checked before they reach the sampler
    obs = default_fit.data.obs.copy()
    row = obs.index[3]
    if n_eff is not None:
        obs.loc[row, "n_eff"] = n_eff
    obs.loc[row, "y_eff"] = -1 if y_shift is None else obs.loc[row, "n_eff"] + y_shift
    bad = dataclasses.replace(default_fit.data, obs=obs)
    with pytest.raises(ValueError, match=needle) as info:
        lmsbayes.fit(small_spec, bad)
    assert "observation 3" in str(info.value) and obs.loc[row, "arm_id"] in str(info.value)


# --- strict mode ---------------------------------------------------------------


@pytest.fixture(scope="module")
def starved_spec(default_fit):
    """Too few draws for any diagnostic to pass; same structure, so no recompilation."""
    return default_fit.spec.replace(**{"sampler.draws": 5, "sampler.tune": 5})


def test_strict_raises_sampling_error(default_fit, starved_spec):
    with pytest.raises(SamplingError, match=r"fit of spec 'default': .*(R-hat|ESS)"):
        lmsbayes.fit(starved_spec, default_fit.data, strict=True)


def test_failing_diagnostics_warn_otherwise(default_fit, starved_spec):
    with pytest.warns(FitWarning, match="ESS") as record:
        result = lmsbayes.fit(starved_spec, default_fit.data)
    assert len([w for w in record if issubclass(w.category, FitWarning)]) == 1
    assert not result.diagnostics.ok
    assert result.diagnostics.problems
    assert "PROBLEM" in result.diagnostics.line()
    assert result.posterior.sizes["draw"] == 5


# --- save and load -------------------------------------------------------------


def test_save_load_round_trip(default_fit, saved_default_fit):
    loaded = load_fit(saved_default_fit)
    pd.testing.assert_frame_equal(loaded.summary(), default_fit.summary())
    for group in ("posterior", "posterior_predictive", "observed_data", "constant_data"):
        a, b = default_fit.datatree[group].to_dataset(), loaded.datatree[group].to_dataset()
        assert set(a.data_vars) == set(b.data_vars), group
        for v in a.data_vars:
            np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=f"{group}/{v}")
            assert a[v].dims == b[v].dims
        for c in a.coords:
            assert list(a[c].values) == list(b[c].values), f"{group} coord {c}"
    assert loaded.spec == default_fit.spec
    assert loaded.spec.hash == default_fit.spec.hash
    assert loaded.data_sha256 == default_fit.data_sha256
    assert loaded.diagnostics == default_fit.diagnostics
    assert list(loaded.data.arms.index) == list(default_fit.data.arms.index)
    assert len(loaded.data.excluded) == len(default_fit.data.excluded)
    assert list(loaded.data.excluded["reason"]) == list(default_fit.data.excluded["reason"])
    np.testing.assert_array_equal(loaded.data.obs["y_eff"], default_fit.data.obs["y_eff"])
    assert loaded.data.landmarks == default_fit.data.landmarks
    assert loaded.data.covariates == default_fit.data.covariates
    assert loaded.data.strata == default_fit.data.strata
    for k, v in default_fit.data.arrays().items():
        np.testing.assert_array_equal(loaded.data.arrays()[k], v, err_msg=k)


def test_saved_file_records_provenance(saved_default_fit, default_fit):
    with xr.open_datatree(saved_default_fit, engine="netcdf4") as dt:
        attrs = dict(dt.attrs)
    assert attrs["lmsbayes_format"] == "lmsbayes.fit"
    assert attrs["lmsbayes_version"] == lmsbayes.__version__
    assert attrs["spec_hash"] == default_fit.spec.hash
    assert attrs["data_sha256"] == default_fit.data_sha256
    assert int(attrs["seed"]) == default_fit.spec.sampler.seed
    assert attrs["spec_text"] == default_fit.spec.text


def test_save_of_a_spec_built_in_python_round_trips(tmp_path, default_fit, starved_spec):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        result = lmsbayes.fit(starved_spec, default_fit.data)
    assert result.spec.text == ""  # built by replace(): no TOML source
    loaded = load_fit(result.save(tmp_path / "sub" / "starved.nc"))
    assert loaded.spec == result.spec
    np.testing.assert_array_equal(loaded.posterior["beta"].values, result.posterior["beta"].values)


def _open_handles(path) -> int:
    """How many of this process's file descriptors point at ``path`` (Linux /proc)."""
    target = str(path.resolve())
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == target
        except OSError:  # the descriptor listdir itself used is gone
            pass
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc")
def test_load_fit_closes_the_file(saved_default_fit):
    # a handle left to the garbage collector crashed CI: HDF5 re-opened the
    # same file while the collector closed the old handle
    loaded = load_fit(saved_default_fit)
    assert _open_handles(saved_default_fit) == 0
    assert loaded.posterior["beta"].values.size > 0  # data in memory, not lazily on disk


def test_load_fit_of_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no fit file"):
        load_fit(tmp_path / "missing.nc")


def test_load_fit_of_a_foreign_netcdf(tmp_path):
    path = tmp_path / "foreign.nc"
    xr.Dataset({"x": ("t", np.arange(3.0))}).to_netcdf(path, engine="netcdf4")
    with pytest.raises(ValueError, match="not an lmsbayes fit"):
        load_fit(path)


def test_load_fit_of_a_file_that_is_not_netcdf(tmp_path):
    path = tmp_path / "notes.nc"
    path.write_text("arm_id,trial\nx,y\n")
    with pytest.raises(ValueError, match="not a netCDF file written by lmsbayes"):
        load_fit(path)


def test_load_fit_of_an_unknown_format_version(tmp_path):
    path = tmp_path / "future.nc"
    ds = xr.Dataset({"x": ("t", np.arange(3.0))}, attrs={"lmsbayes_format": "lmsbayes.fit",
                                                          "lmsbayes_format_version": 99})  # fmt: skip
    ds.to_netcdf(path, engine="netcdf4")
    with pytest.raises(ValueError, match="version 99 is not supported"):
        load_fit(path)


def test_summary_rows_match_the_posterior_arrays(default_fit):
    """Each summary row's mean is the mean of the draws its label names (tau has dims stratum, landmark)."""
    table = default_fit.summary()
    post = default_fit.posterior
    for stratum in post["tau"]["stratum"].values:
        for t in post["tau"]["landmark"].values:
            expected = float(post["tau"].sel(stratum=stratum, landmark=t).mean())
            assert float(table.loc[f"tau[{stratum}, {t:g} mo]", "mean"]) == pytest.approx(expected, abs=1e-3)
    for t in post["beta"]["landmark"].values:
        for c in post["beta"]["covariate"].values:
            expected = float(post["beta"].sel(landmark=t, covariate=c).mean())
            assert float(table.loc[f"beta[{t:g} mo, {c}]", "mean"]) == pytest.approx(expected, abs=1e-3)
