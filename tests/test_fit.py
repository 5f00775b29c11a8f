"""Fitting: engines, diagnostics of the default analysis, reproducibility, DataTree layout,
save/load.

The default fits use the exact engine (no compilation); the NUTS-specific
behaviour (one compiled model per structure, new data through the data
containers, sampling diagnostics) is checked on RBesT's AS data set.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import quiet_fit

import lmsbayes
from lmsbayes.engines import choose_engine
from lmsbayes.errors import OptionError
from lmsbayes.fit import FitWarning, SamplingError, load_fit
from lmsbayes.spec import SpecError, parse_spec

HYPER = ("alpha", "beta", "tau", "shape")
AS_CSV = Path(__file__).parent / "data" / "AS.csv"


def _as_spec(**sampler):
    return parse_spec(
        {
            "name": "as",
            "landmarks": [],
            "model": {"likelihood": "logit-binomial"},
            "random_effects": {"tau_by": "none"},
            "priors": {
                "alpha": {"dist": "Normal", "mu": 0.0, "sigma": 2.0},
                "tau": {"dist": "HalfNormal", "sigma": 1.0},
            },
            "sampler": {"draws": 500, "tune": 500, "seed": 3, **sampler},
        }
    )


@pytest.fixture(scope="module")
def as_table():
    return pd.read_csv(AS_CSV)


@pytest.fixture(scope="module")
def as_nuts(as_table):
    return quiet_fit(_as_spec(), as_table, engine="nuts")


# --- engines --------------------------------------------------------------------


def test_auto_uses_the_exact_engine_where_it_can_and_says_why_not():
    spec = lmsbayes.load_spec("default")
    engine, note = choose_engine(spec)
    assert (engine.name, note) == ("exact", "")
    # Student-t effects are integrated by the exact engine (a scale mixture of normals);
    # group effects of a per-landmark family are not
    assert (
        choose_engine(spec.replace(**{"random_effects.distribution": "student_t"}))[0].name
        == "exact"
    )
    t = lmsbayes.load_spec("per_landmark").replace(**{"random_effects.group": "trial"})
    engine, note = choose_engine(t)
    assert engine.name == "nuts" and note.startswith("NUTS used: ") and "per-landmark" in note
    with pytest.raises(SpecError, match="cannot fit this spec"):
        choose_engine(t, "exact")
    engine, note = choose_engine(spec, "nuts")
    assert (engine.name, note) == ("nuts", "")
    with pytest.raises(OptionError, match=r"engine must be one of \['auto', 'exact', 'nuts'\]"):
        choose_engine(spec, "hmc")


def test_the_registry_offers_the_engines_a_spec_may_name():
    from lmsbayes.engines import AUTO, ENGINE_NAMES, get_engine
    from lmsbayes.spec import ENGINES

    assert (AUTO, *ENGINE_NAMES) == ENGINES
    for name in ENGINE_NAMES:
        assert get_engine(name).name == name
    with pytest.raises(OptionError, match="engine must be one of"):
        get_engine(AUTO)  # "auto" is a choice among engines, not an engine


# --- the default analysis --------------------------------------------------------


def test_default_fit_diagnostics(default_fit):
    diag = default_fit.diagnostics
    assert diag.engine == "exact" and default_fit.engine == "exact"
    assert diag.khat <= 0.7
    assert diag.is_ess >= 1000
    assert diag.n_draws == default_fit.spec.exact.draws
    assert diag.ok, diag.problems
    assert diag.line().startswith(
        "diagnostics (exact engine): importance k-hat"
    ) and diag.line().endswith("OK")


def test_the_default_fit_raises_no_numpy_warning(trials):
    # the mode search's finite differences meet -inf where a step leaves the support; the engine
    # handles that, so numpy's "invalid value" must not reach the user (a notebook shows it)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = lmsbayes.fit("default", trials)
    assert result.diagnostics.ok, result.diagnostics.problems


def test_summary_has_readable_names(default_fit):
    summary = default_fit.summary()
    names = list(summary.index)
    assert {
        "alpha",
        "beta[line]",
        "beta[line:nrt]",
        "beta[uterine]",
        "tau[1L]",
        "tau[2L+]",
        "shape[all]",
    } <= set(names)
    assert {"mean", "sd", "mcse_mean"} <= set(summary.columns)
    post = default_fit.posterior
    assert float(summary.loc["tau[2L+]", "mean"]) == pytest.approx(
        float(post["tau"].sel(stratum="2L+").mean())
    )


def test_datatree_groups_and_named_dims(default_fit):
    dt, data = default_fit.datatree, default_fit.data
    assert {
        "posterior",
        "posterior_predictive",
        "observed_data",
        "constant_data",
        "importance_sampling",
    } <= set(dt.children)
    post = default_fit.posterior
    assert post["alpha"].dims == ("chain", "draw")
    assert post["beta"].dims == ("chain", "draw", "covariate")
    assert post["tau"].dims == ("chain", "draw", "stratum")
    assert post["shape"].dims == ("chain", "draw", "shape_group")
    assert post["z"].dims == ("chain", "draw", "arm")
    assert post["uterine_latent"].dims == ("chain", "draw", "arm_latent")
    assert post["theta"].dims == ("chain", "draw", "arm")
    assert post["p"].dims == ("chain", "draw", "arm", "landmark")
    assert list(post["arm"].values) == list(data.arms.index)
    assert list(post["landmark"].values) == [3.0, 6.0]
    assert list(post["covariate"].values) == ["line", "nrt", "line:nrt", "uterine"]
    assert list(post["stratum"].values) == ["1L", "2L+"]
    pp = dt["posterior_predictive"].to_dataset()
    assert pp["y"].dims == ("chain", "draw", "obs") and pp.sizes["obs"] == len(data.obs)
    np.testing.assert_array_equal(dt["observed_data"]["y"].values, data.obs["lik_y"].to_numpy())
    isg = dt["importance_sampling"].to_dataset()
    assert isg["log_weight"].dims == ("is_draw",)
    assert np.exp(isg["log_weight"].values).sum() == pytest.approx(1.0)
    assert (
        dt.attrs["spec_hash"] == default_fit.spec.hash
        and dt.attrs["data_sha256"] == default_fit.data_sha256
    )


def test_arm_rates_are_the_curves_at_the_landmarks(default_fit):
    """p[arm, t] = expit(theta - k log(t / 6)) for the log-logistic curve of each arm."""
    post = default_fit.posterior
    k = post["shape"].sel(shape_group="all")
    for t in (3.0, 6.0):
        expected = 1 / (1 + np.exp(-(post["theta"] - k * np.log(t / 6.0))))
        np.testing.assert_allclose(
            post["p"].sel(landmark=t).values,
            expected.transpose(*post["p"].sel(landmark=t).dims).values,
        )


def test_every_arm_is_fitted_or_excluded_with_a_reason(default_fit, trials):
    data = default_fit.data
    excluded = data.excluded
    assert {"arm_id", "landmark", "reason"} <= set(excluded.columns)
    assert excluded["reason"].astype(str).str.strip().ne("").all()
    arms = trials.arms if hasattr(trials, "arms") else trials
    all_arms = set(arms["arm_id"])
    fitted = set(data.arms.index)
    out = set(excluded["arm_id"]) - fitted
    assert fitted | out == all_arms and not fitted & out
    assert out, "the default spec excludes the placebo arms"


def test_placebo_arms_are_excluded_by_the_default_spec(default_fit, trials):
    arms = trials.arms if hasattr(trials, "arms") else trials
    placebo = set(arms.loc[arms["placebo"].astype(bool), "arm_id"])
    assert placebo
    reasons = default_fit.data.excluded.set_index("arm_id").loc[sorted(placebo), "reason"]
    assert reasons.str.contains("placebo").all()
    assert not placebo & set(default_fit.data.arms.index)


def test_unknown_exclude_arms_id_is_an_error(trials):
    spec = lmsbayes.load_spec("default").replace(
        **{"data.exclude_arms": ("lms04_doxo", "no_such_arm")}
    )
    with pytest.raises(SpecError, match="exclude_arms: no arm has id 'no_such_arm'"):
        lmsbayes.fit(spec, trials)


# --- reproducibility -----------------------------------------------------------


def test_exact_fits_are_reproducible_from_their_seed(default_fit):
    again = lmsbayes.fit(default_fit.spec, default_fit.data)
    xr.testing.assert_equal(again.posterior, default_fit.posterior)
    other = lmsbayes.fit(default_fit.spec, default_fit.data, seed=default_fit.spec.sampler.seed + 1)
    assert not np.array_equal(
        other.posterior["alpha"].values, default_fit.posterior["alpha"].values
    )


@pytest.mark.slow
def test_nuts_refits_reuse_the_compiled_model_and_the_new_data(as_table, as_nuts):
    from lmsbayes.engines.nuts import _COMPILED

    n_compiled = len(_COMPILED)
    again = quiet_fit(_as_spec(), as_table, engine="nuts")
    assert len(_COMPILED) == n_compiled, "a refit of the same structure must not recompile"
    xr.testing.assert_equal(again.posterior, as_nuts.posterior)
    halved = as_table.assign(r=as_table["n"] // 2)
    after = quiet_fit(_as_spec(), halved, engine="nuts")
    assert len(_COMPILED) == n_compiled
    np.testing.assert_array_equal(
        after.datatree["observed_data"]["y"].values, halved["r"].to_numpy()
    )
    # the sampler saw the new data: the pooled rate moves to one half
    assert (
        abs(float(after.posterior["p"].mean()) - 0.5)
        < 0.05
        < abs(float(as_nuts.posterior["p"].mean()) - 0.5)
    )


@pytest.mark.slow
def test_nuts_diagnostics(as_nuts):
    diag = as_nuts.diagnostics
    assert diag.engine == "nuts"
    assert diag.divergences == int(as_nuts.datatree["sample_stats"]["diverging"].sum())
    summary = as_nuts.summary()
    assert summary["r_hat"].astype(float).max() == pytest.approx(diag.max_rhat)
    assert diag.line().startswith("diagnostics (NUTS):")


# --- strict mode ---------------------------------------------------------------


@pytest.fixture(scope="module")
def starved_spec(default_fit):
    """A k-hat limit the fit cannot meet: the diagnostics fail (the exact engine's fixed rule
    does not shrink with ``draws``, so starving it of draws no longer makes a problem)."""
    return default_fit.spec.replace(**{"exact.khat_max": 0.05})


def test_strict_raises_sampling_error(default_fit, starved_spec):
    with pytest.raises(SamplingError, match=r"fit of spec 'default': .*k-hat"):
        lmsbayes.fit(starved_spec, default_fit.data, strict=True)


def test_failing_diagnostics_warn_otherwise(default_fit, starved_spec):
    with pytest.warns(FitWarning, match="k-hat") as record:
        result = lmsbayes.fit(starved_spec, default_fit.data)
    assert len([w for w in record if issubclass(w.category, FitWarning)]) == 1
    assert not result.diagnostics.ok and "PROBLEM" in result.diagnostics.line()


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
    np.testing.assert_array_equal(loaded.data.obs["lik_y"], default_fit.data.obs["lik_y"])
    assert loaded.data.landmarks == default_fit.data.landmarks
    assert loaded.data.covariates == default_fit.data.covariates
    assert loaded.data.strata == default_fit.data.strata
    for k, v in default_fit.model.arrays.items():
        np.testing.assert_array_equal(loaded.model.arrays[k], v, err_msg=k)


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
    loaded = load_fit(result.save(tmp_path / "starved.nc"))  # no "sub/": not created (issue 20)
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


def test_load_fit_of_a_version_1_file_says_to_refit(tmp_path):
    path = tmp_path / "old.nc"
    xr.Dataset(
        {"x": ("t", np.arange(3.0))},
        attrs={"lmsbayes_format": "lmsbayes.fit", "lmsbayes_format_version": 1},
    ).to_netcdf(path, engine="netcdf4")
    with pytest.raises(ValueError, match="written by lmsbayes 0.1.*refit"):
        load_fit(path)


def test_load_fit_of_an_unknown_format_version(tmp_path):
    path = tmp_path / "future.nc"
    ds = xr.Dataset(
        {"x": ("t", np.arange(3.0))},
        attrs={"lmsbayes_format": "lmsbayes.fit", "lmsbayes_format_version": 99},
    )
    ds.to_netcdf(path, engine="netcdf4")
    with pytest.raises(ValueError, match="version 99 is not supported"):
        load_fit(path)


def test_summary_rows_match_the_posterior_arrays(eortc_fit):
    """Each summary row's mean is the mean of the draws its label names (tau has dims stratum,
    landmark)."""
    table = eortc_fit.summary()
    post = eortc_fit.posterior
    for stratum in post["tau"]["stratum"].values:
        for t in post["tau"]["landmark"].values:
            expected = float(post["tau"].sel(stratum=stratum, landmark=t).mean())
            assert float(table.loc[f"tau[{stratum}, {t:g} mo]", "mean"]) == pytest.approx(
                expected, abs=1e-3
            )
    for t in post["beta"]["landmark"].values:
        for c in post["beta"]["covariate"].values:
            expected = float(post["beta"].sel(landmark=t, covariate=c).mean())
            assert float(table.loc[f"beta[{t:g} mo, {c}]", "mean"]) == pytest.approx(
                expected, abs=1e-3
            )
