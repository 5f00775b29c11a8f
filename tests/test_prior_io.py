"""The prior JSON reader at the door: hardening cases, RBesT's JSON, PreliZ, and property-based
mutations.

The reader must give one documented error (PriorFileError, or WorkLimitError
for a size bound) naming the file for every bad input, and read every good
one exactly.  The property-based tests mutate valid files at random: by
structure (keys removed, added, retyped) and by bytes (truncated, spliced,
flipped).  Fast by default; ``--run-slow`` (or LMSBAYES_RUN_SLOW=1) runs a
deeper profile.  ``test_zz_property_counts`` prints how many examples ran.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmsbayes.errors import PriorFileError, WorkLimitError
from lmsbayes.prior import (
    BetaMixture,
    from_preliz,
    read_prior,
    robustify,
    to_dict,
    to_json,
    to_preliz,
    to_rbest,
)
from lmsbayes.prior.io import MAX_COMPONENTS, MAX_DEPTH

DEEP = os.environ.get("LMSBAYES_RUN_SLOW") == "1" or "--run-slow" in sys.argv
N_EXAMPLES = 3000 if DEEP else 150
PROFILE = settings(
    max_examples=N_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
COUNTS: Counter = Counter()

GOOD = robustify(BetaMixture(weights=[0.6, 0.4], a=[19.2, 3.5], b=[57.8, 9.4]), 0.2, mean=0.26)


def _write(tmp_path, text: str | bytes, name: str = "prior.json"):
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def _refused(path, cls=PriorFileError, match: str = ""):
    with pytest.raises(cls, match=match) as info:
        read_prior(path)
    assert repr(str(path)) in str(info.value), info.value
    return str(info.value)


# --------------------------------------------------------------------------- issue 11 cases
def test_nesting_100000_deep_is_refused_quickly(tmp_path):
    path = _write(
        tmp_path,
        '{"schema": "lmsbayes.betamixture", "provenance": ' + "[" * 100_000 + "]" * 100_000 + "}",
    )
    t0 = time.perf_counter()
    msg = _refused(path, match="nests arrays/objects 100001 deep")
    assert time.perf_counter() - t0 < 2.0
    assert f"at most {MAX_DEPTH}" in msg


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        (["0.5", "0.5"], r"'weights'\[0\] must be a number, got '0.5'"),
        ([True, False], r"'weights'\[0\] must be a number, got True"),
        ("0.5,0.5", r"'weights' must be an array of numbers, got '0.5,0.5'"),
        ([0.5, None], r"'weights'\[1\] must be a number, got None"),
    ],
)
def test_string_and_boolean_weights_are_refused(tmp_path, weights, match):
    doc = to_dict(GOOD) | {"weights": weights, "a": [1.0, 2.0], "b": [1.0, 2.0]}
    _refused(_write(tmp_path, json.dumps(doc)), match=match)


def test_unknown_key_is_refused_with_did_you_mean(tmp_path):
    doc = to_dict(GOOD)
    doc["provenace"] = doc.pop("provenance")
    msg = _refused(_write(tmp_path, json.dumps(doc)), match="unknown key")
    assert "did you mean 'provenance'?" in msg


def test_five_million_components_stop_at_the_door(tmp_path):
    k = 5_000_000
    text = (
        '{"schema": "lmsbayes.betamixture", "schema_version": 1, "weights": ['
        + ",".join(["2e-7"] * k)
        + '], "a": [1], "b": [1]}'
    )
    path = _write(tmp_path, text)
    t0 = time.perf_counter()
    _refused(path, WorkLimitError, match="bytes")
    assert time.perf_counter() - t0 < 1.0
    # within the byte limit, the component count is bounded too
    n = MAX_COMPONENTS + 1
    doc = {
        "schema": "lmsbayes.betamixture",
        "schema_version": 1,
        "weights": [1 / n] * n,
        "a": [1.0] * n,
        "b": [1.0] * n,
    }
    _refused(
        _write(tmp_path, json.dumps(doc), "many.json"),
        WorkLimitError,
        match=f"at most {MAX_COMPONENTS}",
    )


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            '{"schema": "lmsbayes.betamixture", "schema_version": 1, "weights": [NaN], "a": [1], '
            '"b": [1]}',
            "NaN is not a JSON number",
        ),
        ('{"schema": "lmsbayes.betamixture", "schema": "x"}', "duplicate key 'schema'"),
        (
            '{"schema": "lmsbayes.betamixture", "schema_version": true, "weights": [1], "a": [1], '
            '"b": [1]}',
            "schema_version must be 1",
        ),
        (
            '{"schema": "lmsbayes.betamixture", "schema_version": 1, "weights": [1], "a": [0], '
            '"b": [1]}',
            "a must be > 0",
        ),
        (
            '{"schema": "lmsbayes.betamixture", "schema_version": 1, "weights": [0.5], "a": [1], '
            '"b": [1]}',
            "weights must sum to 1",
        ),
        (
            '{"schema": "lmsbayes.betamixture", "schema_version": 1, "weights": [1], "a": [1, 2], '
            '"b": [1]}',
            "same length",
        ),
        (
            '{"schema": "lmsbayes.betamixture", "schema_version": 1, "weights": [1], "a": [1]}',
            r"missing required key\(s\) \['b'\]",
        ),
        (
            '{"schema": "lmsbayes.betamixture", "schema_version": 1, "weights": [1], "a": [1], '
            '"b": [1], '
            '"provenance": 3}',
            "'provenance' must be an object or null, got 3",
        ),
        ("[1, 2]", "must be a JSON object"),
        ('{"weights": [1], "a": [1], "b": [1]}', "has no 'schema' key"),
        (
            '{"schema": "lmsbayes.betamixture", "schema_version": 1, "weights": [1e999], "a": [1], '
            '"b": [1]}',
            "must be finite",
        ),
        ('{"schema": "lmsbayes.betamixture", "schema_version": 1, "weigh', "is not valid JSON"),
    ],
)
def test_bad_documents_give_one_clear_error(tmp_path, text, match):
    _refused(_write(tmp_path, text), match=match)


def test_files_of_the_wrong_kind(tmp_path):
    _refused(
        _write(tmp_path, b"\x89HDF\r\n\x1a\n" + b"\0" * 64, "fit.nc"), match="HDF5/netCDF-4 file"
    )
    _refused(_write(tmp_path, b"arm_id,trial,n\nA,B,3\n", "data.csv"), match="not valid JSON")
    _refused(_write(tmp_path, b'{"schema": "\xff"}', "latin.json"), match="not UTF-8 .* offset 12")
    _refused(
        _write(tmp_path, '{"schema": "lmsbayes.betamixture"\x00}', "nul.json"),
        match="NUL character",
    )
    _refused(tmp_path / "missing.json", match="does not exist")
    (tmp_path / "dir.json").mkdir()
    _refused(tmp_path / "dir.json", match="is a directory")


def test_good_file_reads_back_exactly_and_old_files_still_read(tmp_path):
    path = tmp_path / "good.json"
    to_json(GOOD, path)
    assert read_prior(path) == GOOD
    assert read_prior(path) == GOOD
    # a file as written before this reader (schema_version 1, the same keys) reads
    old = {
        "schema": "lmsbayes.betamixture",
        "schema_version": 1,
        "weights": [0.8, 0.2],
        "a": [12.0, 1.0],
        "b": [18.0, 1.0],
        "provenance": None,
        "lmsbayes_version": "0.1.0",
    }
    assert read_prior(_write(tmp_path, json.dumps(old), "old.json")) == BetaMixture(
        [0.8, 0.2], [12.0, 1.0], [18.0, 1.0]
    )
    # files are written with the user's permissions, not mkstemp's 0600, and no temp file is left
    mode = path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.json", "old.json"]


# --------------------------------------------------------------------------- RBesT JSON
def _rbest_json(w, a, b, cls=("betaMix", "mix"), names=None) -> str:
    """What RBesT 1.8's write_mix_json(mix, con, digits = 7) writes for a mixbeta.

    jsonlite::toJSON(list(meta = attributes(mix), comp = unclass(mix))): the
    attributes (dim, dimnames, class, likelihood, link name) as length-1 arrays
    (auto_unbox = FALSE), and the 3 x k matrix in jsonlite's default row-major
    layout. Written from RBesT's R/mixjson.R and jsonlite's documented defaults;
    R is not run here.
    """
    k = len(w)
    names = names or [f"comp{i + 1}" for i in range(k)]
    meta = {
        "dim": [3, k],
        "dimnames": [["w", "a", "b"], names],
        "class": list(cls),
        "likelihood": ["binomial"],
        "link": ["identity"],
    }
    return json.dumps({"meta": meta, "comp": [list(w), list(a), list(b)]})


def test_reads_rbest_write_mix_json(tmp_path):
    # the AS vignette's MAP prior as 7 digits would write it (weights sum to 1 exactly here)
    text = _rbest_json([0.6167463, 0.3832537], [19.19164, 3.527875], [57.77793, 9.373598])
    mix = read_prior(_write(tmp_path, text, "map.json"))
    np.testing.assert_allclose(mix.weights, [0.6167463, 0.3832537], rtol=1e-15)
    np.testing.assert_array_equal(mix.a, [19.19164, 3.527875])
    assert mix.provenance["source"] == "RBesT write_mix_json"
    assert mix.provenance["component_names"] == ["comp1", "comp2"]
    # rounded weights (digits = 2) are rescaled as read_mix_json does, and the record says so
    r = read_prior(
        _write(tmp_path, _rbest_json([0.33, 0.33, 0.33], [1, 2, 3], [3, 2, 1]), "rounded.json")
    )
    assert r.weights.sum() == pytest.approx(1.0) and r.provenance["weights_rescaled"] is True
    assert r.provenance["weight_sum_in_file"] == pytest.approx(0.99)


def test_rbest_json_of_the_wrong_kind_or_shape(tmp_path):
    norm = _rbest_json([0.2, 0.8], [0, 2], [2, 2], cls=("normMix", "mix"))
    _refused(_write(tmp_path, norm, "norm.json"), match=r"wrong kind \(a normal mixture\)")
    far = _rbest_json(
        [0.15, 0.8], [1, 2], [1, 2]
    )  # RBesT's own rescaling test: 0.95 is not rounding
    _refused(_write(tmp_path, far, "far.json"), match="sum to 0.95")
    col = json.dumps({"meta": {"class": ["betaMix", "mix"]}, "comp": [[0.5, 1, 1], [0.5, 2, 2]]})
    _refused(_write(tmp_path, col, "colmajor.json"), match="3 rows w, a, b")
    dim = json.loads(_rbest_json([0.5, 0.5], [1, 2], [1, 2]))
    dim["meta"]["dim"] = [3, 3]
    _refused(
        _write(tmp_path, json.dumps(dim), "dim.json"), match=r"does not match 'comp' \(3 x 2\)"
    )


def test_rbest_r_call_and_json_agree(tmp_path):
    """The R call we write and the JSON RBesT would write describe one prior."""
    text = _rbest_json(GOOD.weights.tolist(), GOOD.a.tolist(), GOOD.b.tolist())
    assert read_prior(_write(tmp_path, text, "r.json")) == GOOD
    call = to_rbest(GOOD)
    triples = [
        tuple(float(v) for v in part.split(", "))
        for part in call[len("mixbeta(c(") : -2].split("), c(")
    ]
    assert BetaMixture.mixture(triples) == GOOD


# --------------------------------------------------------------------------- PreliZ
def test_preliz_round_trip():
    pz = pytest.importorskip("preliz")
    single = BetaMixture.from_ab(3.0, 7.0)
    d = to_preliz(single)
    assert isinstance(d, pz.Beta) and (d.alpha, d.beta) == (3.0, 7.0)
    assert from_preliz(d) == single
    mixed = to_preliz(GOOD)
    assert isinstance(mixed, pz.Mixture)
    x = np.array([0.05, 0.2, 0.26, 0.5, 0.9])
    np.testing.assert_allclose(mixed.pdf(x), GOOD.pdf(x), rtol=1e-10)
    np.testing.assert_allclose(mixed.cdf(x), GOOD.cdf(x), rtol=1e-10)
    assert mixed.mean() == pytest.approx(GOOD.mean(), rel=1e-12)
    back = from_preliz(mixed)
    np.testing.assert_allclose(back.weights, GOOD.weights, rtol=1e-15)
    np.testing.assert_array_equal(back.a, GOOD.a)
    # PreliZ's (mu, sigma) parametrisation ends up as the same (alpha, beta)
    ms = pz.Beta(mu=0.3, sigma=0.1)
    ref = BetaMixture.from_mean_sd(0.3, 0.1)
    got = from_preliz(ms)
    np.testing.assert_allclose([got.a[0], got.b[0]], [ref.a[0], ref.b[0]], rtol=1e-12)
    with pytest.raises(ValueError, match="preliz.Beta"):
        from_preliz(pz.Normal(0, 1))
    with pytest.raises(ValueError, match="every mixture component must be a preliz.Beta"):
        from_preliz(pz.Mixture([pz.Beta(2, 3), pz.Normal(0, 1)], weights=[0.5, 0.5]))


# --------------------------------------------------------------------------- property-based
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
KEYS = ["schema", "schema_version", "weights", "a", "b", "provenance", "lmsbayes_version"]


def _check(path) -> str:
    """Read a (mutated) file: a good mixture or one documented error naming the file."""
    try:
        mix = read_prior(path)
    except (PriorFileError, WorkLimitError) as err:
        assert repr(str(path)) in str(err), err
        return "refused"
    assert isinstance(mix, BetaMixture)
    return "accepted"


@PROFILE
@given(
    op=st.sampled_from(["delete", "replace", "add", "element"]),
    key=st.sampled_from(KEYS + ["schem", "weight", "extra"]),
    value=json_values,
    index=st.integers(0, 5),
)
def test_structural_mutations_raise_only_documented_errors(tmp_path, op, key, value, index):
    doc = to_dict(GOOD)
    if op == "delete":
        doc.pop(key, None)
    elif op in ("replace", "add"):
        doc[key] = value
    elif key in ("weights", "a", "b"):
        arr = doc[key]
        arr[index % len(arr)] = value
    text = json.dumps(doc, allow_nan=True)
    COUNTS["structural", _check(_write(tmp_path, text))] += 1


@PROFILE
@given(
    op=st.sampled_from(["truncate", "insert", "delete", "flip", "nest"]),
    pos=st.integers(0, 10_000),
    blob=st.binary(min_size=1, max_size=12),
    depth=st.integers(1, 400),
)
def test_byte_mutations_raise_only_documented_errors(tmp_path, op, pos, blob, depth):
    raw = to_json(GOOD).encode()
    i = pos % (len(raw) + 1)
    if op == "truncate":
        raw = raw[:i]
    elif op == "insert":
        raw = raw[:i] + blob + raw[i:]
    elif op == "delete":
        raw = raw[:i] + raw[i + len(blob) :]
    elif op == "flip":
        raw = raw[:i] + bytes([(raw[i % len(raw)] ^ blob[0]) or 1]) + raw[i + 1 :]
    else:  # deep nesting inside provenance
        raw = raw.replace(
            b'"provenance": {', b'"provenance": {"x": ' + b"[" * depth + b"]" * depth + b", ", 1
        )
    COUNTS["bytes", _check(_write(tmp_path, raw))] += 1


@PROFILE
@given(doc=st.dictionaries(st.sampled_from(["meta", "comp", "schema"]), json_values, max_size=3))
def test_rbest_shaped_documents_raise_only_documented_errors(tmp_path, doc):
    COUNTS["rbest", _check(_write(tmp_path, json.dumps(doc, allow_nan=True)))] += 1


def test_zz_property_counts():
    """Report how many mutated files were read (run with -s to see the counts)."""
    total = sum(COUNTS.values())
    print(
        f"\nprior JSON reader, property-based: {total} examples "
        f"({dict(sorted((f'{k[0]}/{k[1]}', v) for k, v in COUNTS.items()))}); "
        "escaped the documented errors: 0"
    )
    if COUNTS:  # the counts exist only when the property tests ran in this session
        assert total >= 3 * min(N_EXAMPLES, 100)
