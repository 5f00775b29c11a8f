"""Fit files (lmsbayes.fitfile): every damaged, truncated, foreign or malformed file is one
FitFileError
naming the file and what is wrong; never a KeyError, never HDF5 opening a file that is not whole.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import lmsbayes.fitfile as fitfile
from lmsbayes.errors import FitFileError, OutputPathError
from lmsbayes.fit import load_fit
from lmsbayes.fitfile import REQUIRED_GROUPS


def write_variant(tree: xr.DataTree, path: Path, mutate) -> Path:
    """``tree`` changed by ``mutate(copy)`` and written as a netCDF file at ``path``."""
    dt = tree.copy(deep=True)
    mutate(dt)
    dt.to_netcdf(path, engine="netcdf4")
    return path


def assert_fit_file_error(path: Path, *needles: str) -> str:
    with pytest.raises(FitFileError) as info:
        load_fit(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: ") or msg.startswith(f"{path} (saved spec)"), msg
    assert ".lmsbayes-tmp" not in msg and "\n" not in msg.strip()
    for needle in needles:
        assert needle in msg, msg
    return msg


# --- round trip
# -------------------------------------------------------------------------------------


def test_round_trip_and_permissions(small_fit_file):
    fit = load_fit(small_fit_file)
    assert fit.posterior["alpha"].sizes == {"chain": 1, "draw": 200}
    umask = os.umask(0)
    os.umask(umask)
    assert small_fit_file.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p for p in small_fit_file.parent.iterdir() if p.name.startswith(".lmsbayes-tmp")] == []


def test_numeric_variables_carry_a_checksum(small_fit_file):
    import netCDF4

    with netCDF4.Dataset(small_fit_file) as nc:
        assert nc["posterior"]["alpha"].filters()["fletcher32"]


def test_lmsbayes_load_fit_is_fit_load_fit():
    import lmsbayes

    assert lmsbayes.load_fit is load_fit


def test_saving_under_a_regular_file_fails_before_writing(small_fit_file, tmp_path):
    (tmp_path / "f").write_text("the user's file")
    fit = load_fit(small_fit_file)
    with pytest.raises(OutputPathError, match="is a file, not a directory"):
        fit.save(tmp_path / "f" / "fit.nc")
    assert (tmp_path / "f").read_text() == "the user's file"


# --- before HDF5 opens the file
# ----------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0, 5, 40, 47, 48, 96, 1000, 0.5, -1], ids=str)
def test_a_truncated_file(small_fit_file, tmp_path, keep):
    data = small_fit_file.read_bytes()
    n = (
        int(len(data) * keep)
        if isinstance(keep, float)
        else (len(data) + keep if keep < 0 else keep)
    )
    path = tmp_path / "cut.nc"
    path.write_bytes(data[:n])
    msg = assert_fit_file_error(path)
    assert any(word in msg for word in ("truncated", "empty", "damaged", "HDF5 signature")), msg


def test_a_damaged_superblock(small_fit_file, tmp_path):
    data = bytearray(small_fit_file.read_bytes())
    data[20] ^= 0xFF  # inside the end-of-file address
    path = tmp_path / "sb.nc"
    path.write_bytes(bytes(data))
    assert_fit_file_error(path, "checksum")


def test_a_file_left_open_by_a_writer(small_fit_file, tmp_path):
    data = bytearray(small_fit_file.read_bytes())
    assert data[8] in (2, 3)  # superblock version 2/3: flags at byte 11, checksum at 44
    data[11] |= 0b1
    data[44:48] = fitfile._lookup3(bytes(data[:44])).to_bytes(4, "little")
    path = tmp_path / "open.nc"
    path.write_bytes(bytes(data))
    assert_fit_file_error(path, "not closed after writing")


def test_lookup3_matches_hdf5(small_fit_file):
    head = small_fit_file.read_bytes()[:48]
    assert fitfile._lookup3(head[:44]) == int.from_bytes(head[44:48], "little")
    # Bob Jenkins' published values for hashlittle("Four score and seven years ago", 30, 0 / 1)
    assert fitfile._lookup3(b"Four score and seven years ago", 0) == 0x17770551
    assert fitfile._lookup3(b"Four score and seven years ago", 1) == 0xCD628161
    assert fitfile._lookup3(b"", 0) == 0xDEADBEEF


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"", "empty"),
        (b"arm_id,trial\nx,y\n", "no HDF5 signature"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "no HDF5 signature"),
        (b"CDF\x01" + bytes(100), "netCDF-3"),
    ],
    ids=["empty", "csv", "png", "netcdf3"],
)
def test_foreign_files(tmp_path, content, needle):
    path = tmp_path / "foreign.nc"
    path.write_bytes(content)
    assert_fit_file_error(path, needle)


def test_a_directory_and_a_missing_file(tmp_path):
    assert_fit_file_error(tmp_path, "not a regular file")
    with pytest.raises(FileNotFoundError, match="no fit file"):
        load_fit(tmp_path / "missing.nc")


def test_a_file_over_the_size_bound(small_fit_file, monkeypatch):
    monkeypatch.setattr(fitfile, "MAX_FIT_BYTES", 1000)
    assert_fit_file_error(small_fit_file, "more than the 1,000 a fit file may have")


def test_damaged_data_fail_their_checksum(small_fit_file, small_tree, tmp_path):
    data = bytearray(small_fit_file.read_bytes())
    values = small_tree["posterior"]["alpha"].values.astype("<f8").tobytes()
    at = bytes(data).find(values[:64])
    assert at > 0, "the alpha chunk is stored as it is"
    data[at + 3] ^= 0x10
    path = tmp_path / "flipped.nc"
    path.write_bytes(bytes(data))
    assert_fit_file_error(path, "damaged fit file")


# --- after opening: attributes, groups, sizes
# ------------------------------------------------------------


@pytest.mark.parametrize("group", REQUIRED_GROUPS)
def test_a_missing_group(small_tree, tmp_path, group):
    def drop(dt):
        del dt[group]

    path = write_variant(small_tree, tmp_path / "g.nc", drop)
    assert_fit_file_error(path, f"['{group}'] missing")


@pytest.mark.parametrize(
    "attr",
    [
        "spec_text",
        "spec_hash",
        "data_sha256",
        "lmsbayes_version",
        "lmsbayes_format_version",
        "lmsbayes_format",
    ],
)
def test_a_missing_root_attribute(small_tree, tmp_path, attr):
    path = write_variant(small_tree, tmp_path / "a.nc", lambda dt: dt.attrs.pop(attr))
    assert_fit_file_error(path, attr)


@pytest.mark.parametrize(
    "attr", ["coding", "strata", "family", "stratum_idx", "uterine_centre", "data_sha256"]
)
def test_a_missing_inputs_attribute(small_tree, tmp_path, attr):
    path = write_variant(
        small_tree, tmp_path / "i.nc", lambda dt: dt["lmsbayes_inputs"].attrs.pop(attr)
    )
    assert_fit_file_error(path, attr)


@pytest.mark.parametrize(
    "attr, value, needle",
    [
        ("lmsbayes_format_version", "one", "must be int"),
        ("lmsbayes_format_version", 99, "version 99 is not supported"),
        ("lmsbayes_format", "xarray", "not an lmsbayes fit"),
        ("spec_text", 5, "must be str"),
        ("spec_text", "seed = [", "saved spec is not valid TOML"),
        ("spec_text", "[sampler]\nseed = -1\n", "seed must be an integer in 0..4294967295"),
        ("spec_text", "[model]\nlikelyhood = 'x'\n", "did you mean 'likelihood'"),
    ],
)
def test_a_malformed_root_attribute(small_tree, tmp_path, attr, value, needle):
    path = write_variant(small_tree, tmp_path / "v.nc", lambda dt: dt.attrs.update({attr: value}))
    assert_fit_file_error(path, needle)


@pytest.mark.parametrize(
    "var, values, needle",
    [
        ("obs_arm_idx", lambda v: v + 1000, "outside 0.."),
        ("obs_k_idx", lambda v: -v - 1, "outside 0.."),
        ("obs_comp", lambda v: v + 0.5, "must hold integers"),
        ("terms_first", lambda v: np.full(v.shape, np.nan), "must hold integers"),
    ],
)
def test_malformed_inputs(small_tree, tmp_path, var, values, needle):
    def mutate(dt):
        ds = dt["lmsbayes_inputs"].to_dataset()
        ds[var] = (
            ds[var].dims,
            values(ds[var].values.astype(float)),
        )  # a new variable: no saved encoding
        dt["lmsbayes_inputs"].dataset = ds

    path = write_variant(small_tree, tmp_path / "x.nc", mutate)
    assert_fit_file_error(path, var, needle)


def test_a_missing_inputs_variable(small_tree, tmp_path):
    def mutate(dt):
        dt["lmsbayes_inputs"].dataset = dt["lmsbayes_inputs"].to_dataset().drop_vars("obs_arm_idx")

    assert_fit_file_error(
        write_variant(small_tree, tmp_path / "m.nc", mutate), "'obs_arm_idx' missing"
    )


@pytest.mark.parametrize("var", ["alpha", "tau", "z"])
def test_a_missing_posterior_variable(small_tree, tmp_path, var):
    def mutate(dt):
        dt["posterior"].dataset = dt["posterior"].to_dataset().drop_vars(var)

    assert_fit_file_error(write_variant(small_tree, tmp_path / "p.nc", mutate), f"'{var}' missing")


def test_a_posterior_that_is_not_finite(small_tree, tmp_path):
    def mutate(dt):
        ds = dt["posterior"].to_dataset()
        ds["tau"] = ds["tau"].where(ds["tau"] > 1e9, np.inf)
        dt["posterior"].dataset = ds

    assert_fit_file_error(
        write_variant(small_tree, tmp_path / "n.nc", mutate), "'tau'", "not finite"
    )


def test_more_draws_than_the_bound(small_fit_file, monkeypatch):
    monkeypatch.setattr(fitfile, "MAX_TOTAL_DRAWS", 10)
    assert_fit_file_error(small_fit_file, "1 x 200 draws", "10 draws in all")


def test_the_cli_prints_one_line_for_a_damaged_fit(small_fit_file, tmp_path):
    from test_cli import assert_user_error, call

    path = tmp_path / "cut.nc"
    path.write_bytes(small_fit_file.read_bytes()[:5000])
    code, _, err = call("thresholds", path)
    assert_user_error(code, err, str(path), "truncated")


def test_a_spec_built_in_python_round_trips_through_its_toml(small_fit_file, tmp_path):
    import dataclasses

    fit = load_fit(small_fit_file)
    text = 'a "quoted" description\\with a backslash\nand a second line'
    spec = fit.spec.replace(description=text, name="python-built")
    assert spec.text == ""  # no source text: the file gets the TOML that fitfile writes for it
    loaded = load_fit(dataclasses.replace(fit, spec=spec).save(tmp_path / "py.nc"))
    assert loaded.spec == spec and loaded.spec.description == text
