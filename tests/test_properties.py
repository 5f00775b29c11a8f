"""Property-based tests (hypothesis) of the spec reader and the fit loader.

Random mutations of a valid input either give a valid result or one of the
documented errors (SpecError, FitFileError), whose message names the file;
any other exception is an escape. Each example's outcome is counted
(conftest.PROPERTY_COUNTS) and printed at the end of the run. The fast
profile runs 40 examples per property; ``--run-slow`` runs 400 and adds byte
flips in the body of a fit file, each loaded in a subprocess (a crash inside
the HDF5 C library is out of reach and counted apart).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import count_property
from hypothesis import given
from hypothesis import strategies as st

from lmsbayes.data import LABELS
from lmsbayes.errors import FitFileError
from lmsbayes.fit import load_fit
from lmsbayes.spec import (
    MAX_CHAINS,
    MAX_LANDMARKS,
    MAX_TOTAL_DRAWS,
    MAX_TUNE,
    NU_RANGE,
    SEED_RANGE,
    SpecError,
    load_spec,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TEXT = (ROOT / "models" / "default.toml").read_text(encoding="utf-8")
DEFAULT_RAW = tomllib.loads(DEFAULT_TEXT)


# --- a small TOML writer (the standard library reads TOML but does not write it)
# -----------------------


def _toml_string(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _toml_string(k)


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return (
            "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
        )
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def toml_document(raw: dict) -> str:
    """Top-level scalars first, then one [table] per dict (nested dicts as inline tables)."""
    lines = [f"{_toml_key(k)} = {toml_value(v)}" for k, v in raw.items() if not isinstance(v, dict)]
    for k, v in raw.items():
        if isinstance(v, dict):
            lines.append(f"\n[{_toml_key(k)}]")
            lines += [f"{_toml_key(kk)} = {toml_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def test_the_toml_writer_round_trips_the_default_spec():
    assert tomllib.loads(toml_document(DEFAULT_RAW)) == DEFAULT_RAW


# --- strategies
# -----------------------------------------------------------------------------------------

_NAMES = sorted(
    {k for sec in DEFAULT_RAW.values() if isinstance(sec, dict) for k in sec}
    | set(DEFAULT_RAW)
    | {"nu", "populations", "exclude_arms", "tau_by", "trial_effect", "adaptation"}
)
_WORDS = sorted(
    {
        *_NAMES,
        *(w for labels in LABELS.values() for w in labels),
        "uLSM",
        "2L",
        "logit-binomal",
        "student_t",
        "HalfNormal",
        "Normal",
        "HalfCauchy",
        "line:nrt",
        "line",
        "nrt",
        "uterine",
    }
)
_EDGE_INTS = [
    -1,
    0,
    1,
    2,
    24,
    25,
    64,
    65,
    1000,
    2**31,
    2**32 - 1,
    2**32,
    2**53 + 1,
    2**63 - 1,
    2**63,
    -(2**63),
    10**12,
    10**30,
]
_EDGE_FLOATS = [
    0.0,
    -0.0,
    0.5,
    1.0,
    1e-300,
    1e300,
    1e6,
    1e7,
    float("inf"),
    float("-inf"),
    float("nan"),
]

toml_scalars = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from(_EDGE_INTS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(_EDGE_FLOATS),
    st.text(max_size=12),
    st.sampled_from(_WORDS),
    st.booleans(),
    st.dates(),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(_WORDS) | st.text(max_size=6), inner, max_size=3),
    ),
    max_leaves=8,
)


@st.composite
def mutated_spec_text(draw) -> bytes:
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULT_RAW.items()}
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["set", "set", "set", "delete", "section"]))
        section = draw(
            st.sampled_from([*raw, "sampler", "random_effects", "data", "priors"])
            | st.text(max_size=6)
        )
        if op == "section":
            raw[section] = draw(toml_values)
            continue
        target = (
            raw.setdefault(section, {})
            if section in DEFAULT_RAW and isinstance(DEFAULT_RAW[section], dict)
            else raw
        )
        if not isinstance(target, dict):
            continue
        key = draw(st.sampled_from([*target, *_NAMES]) if target else st.sampled_from(_NAMES))
        if op == "delete":
            target.pop(key, None)
        else:
            target[key] = draw(toml_values)
    data = bytearray(toml_document(raw).encode("utf-8"))
    for _ in range(draw(st.integers(0, 2))):  # byte-level damage: invalid UTF-8, NUL, cut lines
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["replace", "insert", "delete"]))
        chunk = draw(
            st.binary(min_size=1, max_size=4)
            | st.sampled_from([b"\xff", b"\0", b"\xe4", b"[[", b"\n"])
        )
        if kind == "replace":
            data[at : at + len(chunk)] = chunk
        elif kind == "insert":
            data[at:at] = chunk
        else:
            del data[at : at + draw(st.integers(1, 40))]
    return bytes(data)


def _floats_in(obj):
    if isinstance(obj, float):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _floats_in(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _floats_in(v)


def check_accepted_spec(spec) -> None:
    s = spec.sampler
    assert SEED_RANGE[0] <= s.seed <= SEED_RANGE[1]
    assert (
        s.chains >= 1
        and s.chains <= MAX_CHAINS
        and s.draws >= 1
        and s.draws * s.chains <= MAX_TOTAL_DRAWS
    )
    assert s.tune >= 1 and s.tune <= MAX_TUNE
    assert NU_RANGE[0] <= spec.random_effects.nu <= NU_RANGE[1]
    assert (
        len(spec.landmarks) >= 1
        and len(spec.landmarks) <= MAX_LANDMARKS
        and all(0 < t <= 120 for t in spec.landmarks)
    )
    assert set(spec.data.populations) <= set(LABELS["population"])
    assert all(math.isfinite(v) for v in _floats_in(spec.to_dict()))


@given(text=mutated_spec_text())
def test_spec_reader_gives_a_spec_or_a_spec_error_naming_the_file(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "mutated.toml"
        path.write_bytes(text)
        try:
            spec = load_spec(path)
        except SpecError as exc:
            count_property("spec reader", "refused")
            assert str(exc).startswith(f"{path}: "), str(exc)
            return
        except BaseException:
            count_property("spec reader", "escaped")
            raise
        count_property("spec reader", "accepted")
        check_accepted_spec(spec)


# --- the fit loader
# ---------------------------------------------------------------------------------------

attr_values = st.one_of(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=30
    ),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=4),
    st.lists(st.integers(-(2**31), 2**31), min_size=1, max_size=4),
    st.sampled_from(["", "lmsbayes.fit", "seed = [", "[sampler]\nseed = -1\n", DEFAULT_TEXT]),
)


def _mutated_spec_string(draw) -> str:
    return draw(mutated_spec_text()).decode("utf-8", errors="replace").replace("\0", "")


@st.composite
def fit_mutation(draw, tree: xr.DataTree):
    """A list of operations on the saved tree, then an optional byte-level damage of the written
    file."""
    ops = []
    groups = [g for g in tree.children]
    for _ in range(draw(st.integers(1, 3))):
        op = draw(
            st.sampled_from(
                ["drop_group", "drop_attr", "set_attr", "spec_text", "drop_var", "set_var"]
            )
        )
        node = draw(st.sampled_from(["/", "lmsbayes_inputs", "posterior"]))
        if op == "drop_group":
            ops.append((op, draw(st.sampled_from(groups))))
        elif op in ("drop_attr", "set_attr"):
            attrs = tree.attrs if node == "/" else tree[node].attrs
            names = st.text(alphabet="abcdefgh_", min_size=1, max_size=8)
            key = draw(st.sampled_from(sorted(attrs)) | names if attrs else names)
            ops.append((op, node, key, draw(attr_values) if op == "set_attr" else None))
        elif op == "spec_text":
            ops.append(("set_attr", "/", "spec_text", _mutated_spec_string(draw)))
        else:
            group = draw(
                st.sampled_from(["lmsbayes_inputs", "posterior", "observed_data", "constant_data"])
            )
            var = draw(st.sampled_from(sorted(tree[group].data_vars)))
            fill = draw(st.sampled_from([np.nan, np.inf, -1.0, 1e300, 0.5, 10**9, 0.0]))
            ops.append((op, group, var, fill))
    damage = draw(st.sampled_from([None, None, "truncate", "head"]))
    where = draw(st.floats(0, 1))
    byte = draw(st.integers(0, 255))
    return ops, damage, where, byte


def apply_ops(tree: xr.DataTree, ops) -> xr.DataTree:
    out = tree.copy(deep=True)
    for op in ops:
        kind = op[0]
        if kind == "drop_group":
            if op[1] in out.children:
                del out[op[1]]
        elif kind in ("drop_attr", "set_attr"):
            _, node, key, value = op
            if node != "/" and node not in out.children:
                continue
            attrs = out.attrs if node == "/" else out[node].attrs
            if kind == "drop_attr":
                attrs.pop(key, None)
            else:
                attrs[key] = value
        else:
            _, group, var, fill = op
            if group not in out.children:
                continue
            ds = out[group].to_dataset()
            if var not in ds:
                continue
            if kind == "drop_var":
                ds = ds.drop_vars(var)
            else:
                shape = ds[var].shape
                ds[var] = (
                    ds[var].dims,
                    np.full(shape, fill, dtype=float),
                )  # a new variable: no saved encoding
            out[group].dataset = ds
    return out


def _check_loaded(fit) -> None:
    assert fit.diagnostics.line().startswith("diagnostics (")
    for group in ("posterior", "posterior_predictive", "observed_data", "constant_data"):
        for name, da in fit.datatree[group].to_dataset().data_vars.items():
            if da.dtype.kind == "f":
                assert np.isfinite(da.values).all(), (group, name)


@given(data=st.data())
@pytest.mark.slow
def test_fit_loader_gives_a_fit_or_a_fit_file_error_naming_the_file(small_tree, data):
    ops, damage, where, byte = data.draw(fit_mutation(small_tree))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "mutated.nc"
        apply_ops(small_tree, ops).to_netcdf(path, engine="netcdf4")
        raw = bytearray(path.read_bytes())
        if damage == "truncate":
            del raw[int(where * (len(raw) - 1)) :]
        elif damage == "head":
            raw[int(where * 95)] = byte
        path.write_bytes(bytes(raw))
        try:
            fit = load_fit(path)
        except FitFileError as exc:
            count_property("fit loader", "refused")
            msg = str(exc)
            assert msg.startswith(f"{path}: ") or msg.startswith(f"{path} (saved spec)"), msg
            assert ".lmsbayes-tmp" not in msg
            return
        except BaseException:
            count_property("fit loader", "escaped")
            raise
        count_property("fit loader", "accepted")
        _check_loaded(fit)


_LOAD_IN_CHILD = """
import sys
from lmsbayes.errors import FitFileError
from lmsbayes.fit import load_fit
try:
    load_fit(sys.argv[1])
except FitFileError as exc:
    print("refused", exc if str(exc).startswith(sys.argv[1]) else "UNNAMED")
except BaseException as exc:
    print("escaped", type(exc).__name__, exc)
else:
    print("accepted")
"""


@pytest.mark.slow
def test_fit_loader_on_byte_flips_in_the_body(small_fit_file, request, tmp_path):
    """Random bytes changed anywhere after the superblock; each file loaded in its own process."""
    rng = np.random.default_rng(20250101)
    n = 40
    source = small_fit_file.read_bytes()
    for i in range(n):
        raw = bytearray(source)
        for j in rng.integers(96, len(raw), size=int(rng.choice([1, 4, 32]))):
            raw[j] = int(rng.integers(0, 256))
        path = tmp_path / f"flip_{i}.nc"
        path.write_bytes(bytes(raw))
        r = subprocess.run(
            [sys.executable, "-c", _LOAD_IN_CHILD, str(path)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if r.returncode != 0:
            count_property("fit loader, body byte flips (subprocess)", "crashed in HDF5")
            continue
        outcome = r.stdout.split()[0]
        count_property("fit loader, body byte flips (subprocess)", outcome)
        assert outcome != "escaped", r.stdout
        assert "UNNAMED" not in r.stdout, r.stdout
