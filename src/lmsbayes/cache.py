"""An on-disk cache of deterministic results, keyed by everything that decides them.

``lmsbayes update`` compares a base analysis (the bundled data, fitted, its
threshold rows, MAP priors and leave-future-out) with the analysis after added
arms. The base side is the same at every call with the same spec and data: the
exact engine's fixed rule makes it deterministic. It is kept here once computed,
so that a later call recomputes only what the added arms change.

A result is found only under its key: the SHA-256 of its inputs as the caller
names them (spec hash, data SHA-256, landmarks, ...) together with the package's
version, a hash of every one of its source files, and the versions of Python,
numpy, scipy and pandas. Any change to the code or the libraries misses, and the
result is computed again (and stored). Tables are stored as JSON with every
value exactly (Python writes floats by their shortest round-trip repr), their
dtypes and index, and are read back identical (tested); no pickles. Each file
records its provenance (the key's parts, the time it was written).

The cache is off unless ``$LMSBAYES_CACHE`` names a folder: the package creates no
folder the user did not name (``off``, ``0`` or empty: off). The package writes
only its own ``*.json`` files there (atomically) and never deletes a file; an
unreadable or mismatched file is a miss, replaced by the next store.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["cache_dir", "cache_key", "load_frames", "store_frames"]

#: format of the cache files (a file of another format is a miss)
FORMAT = 1


def cache_dir() -> Path | None:
    """The folder ``$LMSBAYES_CACHE`` names (created on the first store), else None (off).

    Opt-in: a default folder in the user's home would be a folder nobody named.
    """
    env = os.environ.get("LMSBAYES_CACHE")
    if env is None or env.strip().lower() in ("", "0", "off", "no", "false"):
        return None
    return Path(env)


@functools.cache
def source_hash() -> str:
    """SHA-256 over the package's source files (path and content, in path order)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def _provenance(parts: dict) -> dict:
    import scipy

    from lmsbayes.version import __version__

    return {
        **parts,
        "lmsbayes_version": __version__,
        "source_sha256": source_hash(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pd.__version__,
    }


def cache_key(kind: str, parts: dict) -> tuple[str, dict]:
    """The key of a result of ``kind`` with inputs ``parts`` (JSON-able), and its provenance."""
    prov = _provenance({"kind": kind, **parts})
    text = json.dumps(prov, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest(), prov


def _path(kind: str, key: str) -> Path | None:
    folder = cache_dir()
    return None if folder is None else folder / f"{kind}-{key[:40]}.json"


# ------------------------------------------------------------------ tables as exact JSON


def _values(values) -> list:
    # floats keep their shortest round-trip repr; NaN (and missing strings) as NaN
    out = []
    for v in values:
        if isinstance(v, (float, np.floating)):
            out.append(float(v))
        elif isinstance(v, (np.integer,)):
            out.append(int(v))
        elif isinstance(v, np.bool_):
            out.append(bool(v))
        elif v is None or v is pd.NA:
            out.append(math.nan)
        else:
            out.append(v)
    return out


def frame_to_json(df: pd.DataFrame) -> dict:
    """A table's columns, dtypes and index as exact JSON-able values (:func:`frame_from_json`)."""
    index = df.index
    if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
        idx = {"range": len(index), "name": index.name}
    else:
        idx = {"values": _values(index.tolist()), "dtype": str(index.dtype), "name": index.name}
    cols = [
        {"name": str(c), "dtype": str(df[c].dtype), "values": _values(df[c].tolist())}
        for c in df.columns
    ]
    return {"index": idx, "columns": cols}


def frame_from_json(obj: dict) -> pd.DataFrame:
    """The table :func:`frame_to_json` wrote."""
    idx = obj["index"]
    if "range" in idx:
        index = pd.RangeIndex(idx["range"], name=idx["name"])
    else:
        index = pd.Index(idx["values"], dtype=idx["dtype"], name=idx["name"])
    if not obj["columns"]:
        return pd.DataFrame(index=index)
    data = {
        c["name"]: pd.Series(c["values"], dtype=c["dtype"], index=index) for c in obj["columns"]
    }
    return pd.DataFrame(data, index=index, columns=[c["name"] for c in obj["columns"]])


# ------------------------------------------------------------------ load and store


def load_frames(kind: str, key: str) -> dict | None:
    """The tables (and ``meta``) stored under ``key``, or None (a miss, or the cache off)."""
    path = _path(kind, key)
    if path is None or not path.is_file():
        return None
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        if obj.get("lmsbayes_cache") != FORMAT or obj.get("key") != key:
            return None
        out = {name: frame_from_json(f) for name, f in obj["frames"].items()}
        out["meta"] = obj.get("meta", {})
        return out
    except (OSError, ValueError, KeyError, TypeError):  # unreadable: computed again
        return None


def store_frames(kind: str, key: str, provenance: dict, frames: dict, meta=None) -> Path | None:
    """Store tables under ``key`` with their provenance; None when the cache is off or unwritable.

    A cache that cannot be written (a read-only home, a full disk) only costs the
    next call the computation: no error is raised.
    """
    from lmsbayes.files import atomic_write_text

    path = _path(kind, key)
    if path is None:
        return None
    obj = {
        "lmsbayes_cache": FORMAT,
        "kind": kind,
        "key": key,
        "provenance": {**provenance, "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "meta": meta or {},
        "frames": {name: frame_to_json(df) for name, df in frames.items()},
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(path, json.dumps(obj, allow_nan=True) + "\n")
    except OSError:
        return None
