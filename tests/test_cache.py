"""lmsbayes.cache: tables stored and read back exactly, keys that miss on any change, no writes
when off, an unreadable file a miss."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lmsbayes import cache


def _frames() -> dict:
    rng = np.random.default_rng(1)
    x = rng.normal(size=5) * 10.0 ** rng.integers(-300, 300, size=5)
    plain = pd.DataFrame(
        {
            "value": np.r_[x[:3], np.nan, -0.0],
            "inf": [np.inf, -np.inf, 1e-320, 0.1 + 0.2, 1 / 3],
            "count": np.arange(5, dtype=np.int64) * 10**15,
            "flag": [True, False, True, True, False],
            "label": pd.Series(["a", "é", None, "x,y", "1.0"], dtype="str"),
            "mixture": ["BetaMixture(w=[1.0])", "", "a\nb", "q", "z"],
        }
    )
    named = plain.iloc[[3, 1]].set_index(pd.Index(["arm 1", "arm 2"], dtype="str", name="arm"))
    return {"plain": plain, "named": named, "empty": pd.DataFrame()}


def test_tables_come_back_exactly():
    for name, df in _frames().items():
        back = cache.frame_from_json(json.loads(json.dumps(cache.frame_to_json(df))))
        pd.testing.assert_frame_equal(back, df, check_exact=True, obj=name)
        assert type(back.index) is type(df.index) and back.index.name == df.index.name
        for c in df.columns:  # bitwise, -0.0 and NaN included
            a, b = df[c].to_numpy(), back[c].to_numpy()
            if a.dtype.kind == "f":
                assert np.array_equal(a.view(np.int64), b.view(np.int64)), c


def test_keys_miss_on_any_change_and_store_and_load(tmp_path, monkeypatch):
    monkeypatch.setenv("LMSBAYES_CACHE", str(tmp_path))
    key, prov = cache.cache_key("test", {"spec_hash": "abc", "landmarks": [3.0, 6.0]})
    assert prov["source_sha256"] == cache.source_hash() and prov["numpy"] == np.__version__
    for other in ({"spec_hash": "abd", "landmarks": [3.0, 6.0]}, {"spec_hash": "abc"}):
        assert cache.cache_key("test", other)[0] != key
    assert cache.cache_key("other", {"spec_hash": "abc", "landmarks": [3.0, 6.0]})[0] != key
    assert cache.load_frames("test", key) is None
    frames = _frames()
    path = cache.store_frames("test", key, prov, frames, meta={"seconds": 1.5})
    assert path.parent == tmp_path and json.loads(path.read_text())["provenance"]["kind"] == "test"
    got = cache.load_frames("test", key)
    assert got["meta"] == {"seconds": 1.5}
    for name, df in frames.items():
        pd.testing.assert_frame_equal(got[name], df, check_exact=True)
    path.write_text(path.read_text()[:-20])  # a truncated file: a miss, not an error
    assert cache.load_frames("test", key) is None


@pytest.mark.parametrize("value", ["off", "0", ""])
def test_the_cache_can_be_turned_off(tmp_path, monkeypatch, value):
    monkeypatch.setenv("LMSBAYES_CACHE", value)
    monkeypatch.chdir(tmp_path)
    assert cache.cache_dir() is None
    key, prov = cache.cache_key("test", {})
    assert cache.store_frames("test", key, prov, _frames()) is None
    assert cache.load_frames("test", key) is None
    assert list(tmp_path.iterdir()) == []


def test_without_lmsbayes_cache_there_is_no_cache_and_no_folder(monkeypatch, tmp_path):
    """Opt-in: no folder the user did not name (not ~/.cache, not $XDG_CACHE_HOME)."""
    monkeypatch.delenv("LMSBAYES_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache.cache_dir() is None
    key, prov = cache.cache_key("test", {})
    assert cache.store_frames("test", key, prov, _frames()) is None
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("LMSBAYES_CACHE", str(tmp_path / "named"))
    assert cache.cache_dir() == tmp_path / "named"
