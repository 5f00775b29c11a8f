"""Reading and writing beta-mixture priors: lmsbayes JSON, RBesT, PreliZ.

Formats
-------
* lmsbayes JSON (``docs/prior_schema.md``): written by :func:`to_json`, read
  back bit for bit by :func:`read_prior`.
* RBesT's ``write_mix_json`` of a ``betaMix`` (jsonlite's default row-major
  matrix ``comp`` and the mixture's attributes in ``meta``): read by
  :func:`read_prior`, which recognises it by its keys.  Going back to R is
  the R call of :func:`to_rbest`.
* PreliZ: :func:`to_preliz` / :func:`from_preliz` (PreliZ is optional and
  imported only there).

The reader is the door through which files from anywhere enter a design, so
it checks before it converts: the file size, the nesting depth, the types
of every required value (a JSON string or boolean is not a number), the
number of components, unknown keys (with a "did you mean") and duplicate
keys.  Every refusal is one :class:`lmsbayes.errors.PriorFileError` (or
:class:`~lmsbayes.errors.WorkLimitError` for a size bound) whose message
names the file, the key and the value.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from lmsbayes.errors import OptionError, PriorFileError, WorkLimitError
from lmsbayes.prior.mixture import BetaMixture

__all__ = [
    "MAX_COMPONENTS",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "SCHEMA",
    "SCHEMA_VERSION",
    "from_dict",
    "from_preliz",
    "read_prior",
    "to_dict",
    "to_json",
    "to_preliz",
    "to_rbest",
]

SCHEMA = "lmsbayes.betamixture"
SCHEMA_VERSION = 1

#: Most components a prior file may hold.  A MAP prior has 1-4, a robustified
#: posterior one more; 100 leaves room for any real use, and keeps a design's
#: quadrature (64 nodes per component) far from the 15 GB a 5,000,000-component
#: file once took.
MAX_COMPONENTS = 100
#: Deepest nesting of JSON arrays and objects (provenance included).
MAX_DEPTH = 32
#: Largest prior file read (a 100-component prior with provenance is ~20 kB).
MAX_FILE_BYTES = 1_000_000

_KEYS = ("schema", "schema_version", "weights", "a", "b", "provenance", "lmsbayes_version")
_REQUIRED = ("schema", "schema_version", "weights", "a", "b")


def _rounding_tolerance(values: list[float]) -> float:
    """Largest |sum - 1| that rounding the weights to the decimals they show can explain.

    jsonlite writes ``digits`` decimals (4 by default); a weight shown with D
    decimals is off by at most 0.5e-D, so k such weights sum to 1 within
    k * 0.5e-D.
    """
    decimals = 0
    for v in values:
        text = repr(float(v))
        if "e" in text or "E" in text:
            mant, _, exp = text.lower().partition("e")
            d = len(mant.partition(".")[2].rstrip("0")) - int(exp)
        else:
            d = len(text.partition(".")[2].rstrip("0"))
        decimals = max(decimals, d)
    return len(values) * 0.5 * 10.0 ** (-decimals) + 1e-12


def _package_version() -> str:
    # importlib.metadata rather than `lmsbayes.__version__`: the prior package
    # imports no modelling module, so it stays usable on its own
    from importlib import metadata

    try:
        return metadata.version("lmsbayes")
    except metadata.PackageNotFoundError:  # pragma: no cover - source checkout
        return "unknown"


def _short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


# ---------------------------------------------------------------------- writing
def to_dict(mix: BetaMixture, provenance: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON-ready dictionary of ``docs/prior_schema.md``.

    ``provenance`` is merged over the prior's.
    """
    prov = dict(mix.provenance or {})
    if provenance:
        prov.update(provenance)
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "weights": [float(v) for v in mix.weights],
        "a": [float(v) for v in mix.a],
        "b": [float(v) for v in mix.b],
        "provenance": prov or None,
        "lmsbayes_version": _package_version(),
    }


def _atomic_write_text(path: str, text: str) -> None:
    # lmsbayes.files: a package temp beside the destination, moved into place (a reader sees the
    # old prior or the new one, never half of one), umask permissions, stale temps of killed runs
    # removed
    from lmsbayes.files import atomic_write_text

    atomic_write_text(path, text)


def to_json(
    mix: BetaMixture,
    path: str | os.PathLike[str] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> str:
    """Serialise ``mix`` to JSON text; write it atomically to ``path`` when given."""
    try:
        text = json.dumps(to_dict(mix, provenance), indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as err:
        raise OptionError(
            f"provenance must be JSON-serialisable (str, numbers, lists, dicts): {err}"
        ) from None
    if path is not None:
        _atomic_write_text(os.fspath(path), text)
    return text


def to_rbest(mix: BetaMixture) -> str:
    """R expression building the same prior with RBesT: ``mixbeta(c(w, a, b), ...)``."""

    def fmt(v: float) -> str:
        s = repr(float(v))
        return s[:-2] if s.endswith(".0") else s

    comps = ", ".join(
        f"c({fmt(w)}, {fmt(a)}, {fmt(b)})"
        for w, a, b in zip(mix.weights, mix.a, mix.b, strict=True)
    )
    return f"mixbeta({comps})"


# ---------------------------------------------------------------------- reading
def _fail(source: str, message: str) -> PriorFileError:
    return PriorFileError(f"prior file {source}: {message}")


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)


def _max_depth(raw: bytes) -> int:
    """Deepest bracket nesting outside JSON strings, without parsing (no recursion)."""
    body = _STRING.sub(b'""', raw)
    arr = np.frombuffer(body, dtype=np.uint8)
    step = np.isin(arr, (ord("["), ord("{"))).astype(np.int64) - np.isin(arr, (ord("]"), ord("}")))
    return int(np.cumsum(step).max(initial=0))


def _no_constants(token: str) -> float:
    raise OptionError(f"{token} is not a JSON number (non-finite values are not allowed)")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise OptionError(f"duplicate key {key!r}")
        out[key] = value
    return out


_MAGIC = {
    b"\x89HDF": "an HDF5/netCDF-4 file (a saved fit?)",
    b"CDF\x01": "a netCDF-3 file (a saved fit?)",
    b"CDF\x02": "a netCDF-3 file (a saved fit?)",
    b"PK\x03\x04": "a zip archive",
    b"%PDF": "a PDF document",
}


def _parse(raw: bytes, source: str) -> Any:
    for magic, what in _MAGIC.items():
        if raw.startswith(magic):
            raise _fail(
                source,
                f"is {what}, not a prior JSON; write a prior with "
                "`lmsbayes prior FIT --line ... --landmark ... -o prior.json`",
            )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise _fail(
            source, f"is not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start})"
        ) from None
    if "\x00" in text:
        raise _fail(source, f"contains a NUL character at offset {text.index(chr(0))}")
    depth = _max_depth(text.encode("utf-8"))
    if depth > MAX_DEPTH:
        raise _fail(source, f"nests arrays/objects {depth} deep; at most {MAX_DEPTH} are allowed")
    try:
        return json.loads(text, parse_constant=_no_constants, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as err:
        raise _fail(
            source, f"is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}"
        ) from None
    except ValueError as err:  # a non-finite constant or a duplicate key
        raise _fail(source, f"is not a valid prior JSON: {err}") from None
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise _fail(source, f"nests arrays/objects more than {MAX_DEPTH} deep") from None


def _read_bytes(path: str | os.PathLike[str]) -> tuple[bytes, str]:
    name = repr(os.fspath(path))
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_FILE_BYTES:
                raise WorkLimitError(
                    f"prior file {name}: {size:,} bytes; a prior file may have at most "
                    f"{MAX_FILE_BYTES:,} bytes (MAX_COMPONENTS = {MAX_COMPONENTS} components)"
                )
            raw = fh.read(MAX_FILE_BYTES + 1)
    except IsADirectoryError:
        raise _fail(name, "is a directory, not a file") from None
    except FileNotFoundError:
        raise _fail(name, "does not exist") from None
    except PermissionError:
        raise _fail(name, "cannot be read (permission denied)") from None
    except OSError as err:
        raise _fail(name, f"cannot be read ({err.strerror or err})") from None
    if len(raw) > MAX_FILE_BYTES:  # grew while being read
        raise WorkLimitError(f"prior file {name}: more than {MAX_FILE_BYTES:,} bytes")
    return raw, name


def read_prior(source: str | os.PathLike[str]) -> BetaMixture:
    """Read a beta-mixture prior from a file (or from JSON text starting with ``{``).

    Recognises an lmsbayes prior (key ``schema``) and RBesT's ``write_mix_json``
    output (keys ``meta`` and ``comp``, class ``betaMix``).

    Raises
    ------
    lmsbayes.errors.PriorFileError
        The file cannot be read, is not JSON, is of another kind, or breaks the
        schema; the message names the file, the key and the value.
    lmsbayes.errors.WorkLimitError
        The file exceeds :data:`MAX_FILE_BYTES` or :data:`MAX_COMPONENTS`.
    """
    if isinstance(source, str) and source.lstrip().startswith("{"):
        raw, name = source.encode("utf-8", "surrogatepass"), "<JSON text>"
    else:
        raw, name = _read_bytes(source)
    doc = _parse(raw, name)
    if isinstance(doc, dict) and "meta" in doc and "comp" in doc and "schema" not in doc:
        return _from_rbest(doc, name)
    return from_dict(doc, source=name)


def _numbers(doc: Mapping[str, Any], key: str, source: str) -> list[float]:
    value = doc[key]
    if not isinstance(value, list):
        raise _fail(source, f"{key!r} must be an array of numbers, got {_short(value)}")
    if len(value) > MAX_COMPONENTS:
        raise WorkLimitError(
            f"prior file {source}: {key!r} has {len(value):,} components; at most "
            f"{MAX_COMPONENTS} are allowed"
        )
    for i, v in enumerate(value):
        # bool is an int in Python, but true/false in a prior file is a mistake
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise _fail(source, f"{key!r}[{i}] must be a number, got {_short(v)}")
        if not math.isfinite(float(v)):
            raise _fail(source, f"{key!r}[{i}] must be finite, got {_short(v)}")
    return [float(v) for v in value]


def _unknown_keys(keys: list[str], known: tuple[str, ...], source: str, where: str) -> None:
    unknown = [k for k in keys if k not in known]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(str(k), known, n=1, cutoff=0.6)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise _fail(
            source, f"unknown key(s) {', '.join(hints)} in {where}; known keys are {list(known)}"
        )


def from_dict(doc: Any, *, source: str = "<dict>") -> BetaMixture:
    """Validate an lmsbayes prior document (``docs/prior_schema.md``) and build the mixture."""
    if not isinstance(doc, Mapping):
        raise _fail(
            source, f"must be a JSON object with schema {SCHEMA!r}, got {type(doc).__name__}"
        )
    if "schema" not in doc:
        if "comp" in doc or "meta" in doc:
            raise _fail(source, "looks like an RBesT mixture JSON but lacks 'meta' or 'comp'")
        raise _fail(
            source, f"has no 'schema' key; expected schema {SCHEMA!r} (is it a prior file?)"
        )
    if doc["schema"] != SCHEMA:
        raise _fail(source, f"schema must be {SCHEMA!r}, got {_short(doc['schema'])}")
    version = doc.get("schema_version")
    if isinstance(version, bool) or version != SCHEMA_VERSION:
        raise _fail(
            source,
            f"schema_version must be {SCHEMA_VERSION} (this is lmsbayes {_package_version()}), "
            f"got {_short(version)}",
        )
    _unknown_keys(list(doc), _KEYS, source, "the prior document")
    missing = [k for k in _REQUIRED if k not in doc]
    if missing:
        raise _fail(source, f"missing required key(s) {missing}")
    w, a, b = (_numbers(doc, k, source) for k in ("weights", "a", "b"))
    prov = doc.get("provenance")
    if prov is not None and not isinstance(prov, Mapping):
        raise _fail(source, f"'provenance' must be an object or null, got {_short(prov)}")
    ver = doc.get("lmsbayes_version")
    if ver is not None and not isinstance(ver, str):
        raise _fail(source, f"'lmsbayes_version' must be a string, got {_short(ver)}")
    try:
        return BetaMixture(weights=w, a=a, b=b, provenance=prov)
    except ValueError as err:
        raise _fail(source, str(err)) from None


def _scalar_text(value: Any) -> Any:
    # jsonlite writes length-1 R vectors as 1-element arrays (auto_unbox=FALSE)
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


def _from_rbest(doc: Mapping[str, Any], source: str) -> BetaMixture:
    """An RBesT ``write_mix_json`` document of a beta mixture."""
    meta, comp = doc["meta"], doc["comp"]
    _unknown_keys(list(doc), ("meta", "comp"), source, "the RBesT mixture JSON")
    if not isinstance(meta, Mapping):
        raise _fail(source, f"RBesT 'meta' must be an object, got {_short(meta)}")
    cls = meta.get("class")
    classes = [cls] if isinstance(cls, str) else cls if isinstance(cls, list) else []
    if "betaMix" not in classes:
        kinds = {
            "normMix": "a normal mixture",
            "gammaMix": "a gamma mixture",
            "mvnormMix": "a multivariate normal mixture",
        }
        what = next((kinds[c] for c in classes if c in kinds), f"class {_short(cls)}")
        raise _fail(
            source,
            f"is an RBesT mixture of the wrong kind ({what}); designs need a "
            "beta mixture (RBesT class 'betaMix', made by mixbeta())",
        )
    link = _scalar_text(meta.get("link", "identity"))
    if link != "identity":
        raise _fail(
            source, f"RBesT link must be 'identity' for a prior of a rate, got {_short(link)}"
        )
    if not (
        isinstance(comp, list) and len(comp) == 3 and all(isinstance(row, list) for row in comp)
    ):
        raise _fail(
            source,
            "RBesT 'comp' must be the 3 rows w, a, b of the mixture matrix (jsonlite's default "
            f"row-major layout), got {_short(comp)}",
        )
    rows = {
        name: _numbers({name: row}, name, source) for name, row in zip("wab", comp, strict=True)
    }
    k = len(rows["w"])
    if not (len(rows["a"]) == len(rows["b"]) == k) or k == 0:
        raise _fail(
            source,
            f"RBesT 'comp' rows must have one value per component, got lengths "
            f"{[len(r) for r in rows.values()]}",
        )
    dim = meta.get("dim")
    if dim is not None and dim != [3, k]:
        raise _fail(source, f"RBesT 'meta.dim' {_short(dim)} does not match 'comp' (3 x {k})")
    dimnames = meta.get("dimnames")
    names: list[str] = []
    if isinstance(dimnames, list) and dimnames:
        if dimnames[0] != ["w", "a", "b"]:
            raise _fail(
                source, f"RBesT row names must be ['w', 'a', 'b'], got {_short(dimnames[0])}"
            )
        if len(dimnames) > 1 and isinstance(dimnames[1], list):
            names = [str(v) for v in dimnames[1]]
    total = math.fsum(rows["w"])
    tol = _rounding_tolerance(rows["w"])
    if not abs(total - 1.0) <= tol:
        raise _fail(
            source,
            f"RBesT weights sum to {total!r}; weights rounded to the decimals shown would sum to 1 "
            f"within {tol:.3g}, so the gap is not rounding (RBesT's read_mix_json would rescale "
            "it silently; lmsbayes refuses)",
        )
    prov = {
        "source": "RBesT write_mix_json",
        "file": source,
        "weight_sum_in_file": total,
        "weights_rescaled": total != 1.0,
        **({"component_names": names} if names else {}),
    }
    try:
        return BetaMixture(
            weights=[v / total for v in rows["w"]], a=rows["a"], b=rows["b"], provenance=prov
        )
    except ValueError as err:
        raise _fail(source, str(err)) from None


# ---------------------------------------------------------------------- PreliZ
def _preliz() -> Any:
    try:
        import preliz
    except ImportError:
        raise ImportError(
            "PreliZ is not installed; `pip install preliz` (optional: only to_preliz / "
            "from_preliz need it)"
        ) from None
    return preliz


def to_preliz(mix: BetaMixture) -> Any:
    """``preliz.Beta(alpha=a, beta=b)`` for one component, else ``preliz.Mixture`` of them."""
    pz = _preliz()
    comps = [pz.Beta(alpha=float(a), beta=float(b)) for a, b in zip(mix.a, mix.b, strict=True)]
    if mix.n_components == 1:
        return comps[0]
    return pz.Mixture(comps, weights=[float(w) for w in mix.weights])


def from_preliz(dist: Any) -> BetaMixture:
    """A :class:`BetaMixture` from ``preliz.Beta`` or ``preliz.Mixture`` of ``preliz.Beta``.

    PreliZ's Beta may be parametrised by (alpha, beta), (mu, sigma) or
    (mu, nu); its ``alpha`` and ``beta`` attributes are always set, and are
    what is read.
    """
    pz = _preliz()
    if isinstance(dist, pz.Beta):
        comps, weights = [dist], [1.0]
    elif isinstance(dist, pz.Mixture):
        comps, weights = list(dist.dist), [float(w) for w in np.asarray(dist.weights, dtype=float)]
        total = math.fsum(weights)
        weights = [w / total for w in weights]  # PreliZ normalises weights the same way
    else:
        raise OptionError(
            f"from_preliz needs a preliz.Beta or a preliz.Mixture of Beta, got "
            f"{type(dist).__name__}"
        )
    bad = [type(c).__name__ for c in comps if not isinstance(c, pz.Beta)]
    if bad:
        raise OptionError(f"from_preliz: every mixture component must be a preliz.Beta, got {bad}")
    missing = [i for i, c in enumerate(comps) if c.alpha is None or c.beta is None]
    if missing:
        raise OptionError(
            f"from_preliz: component(s) {missing} have no parameters set (fit them first)"
        )
    return BetaMixture(
        weights=weights, a=[float(c.alpha) for c in comps], b=[float(c.beta) for c in comps]
    )
