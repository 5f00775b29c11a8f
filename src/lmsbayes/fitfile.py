"""A fit on disk: one netCDF-4 file (DataTree groups) with its provenance.

:func:`save_fit` writes it atomically (:mod:`lmsbayes.files`), every numeric
variable with HDF5's Fletcher-32 checksum so that damaged data are refused
on reading rather than read as other numbers. :func:`read_fit` (behind
:func:`lmsbayes.fit.load_fit`) checks the
file at the door, in this order, and raises
:class:`~lmsbayes.errors.FitFileError` naming the file and what is wrong:

1. before HDF5 opens it: a regular file, at most :data:`MAX_FIT_BYTES`, the
   HDF5 signature at byte 0 (netCDF-4), a superblock whose checksum holds and
   whose end-of-file address the file reaches (a truncated file is refused
   here), a file closed properly;
2. after opening, before reading the data: the lmsbayes format attributes,
   the groups and the sizes (``chain x draw`` bounded as in the spec);
3. the saved spec (TOML, validated like a spec file), the model inputs (types,
   integer indices inside their ranges) and the posterior (finite values).

A crash inside the HDF5 C library on a file damaged in a way its checksums
do not see remains out of reach; the checks above keep HDF5 from seeing the
common damages (truncation, a foreign or partly written file).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lmsbayes._lazy import xarray as xr
from lmsbayes.engines import get_engine
from lmsbayes.errors import FitFileError
from lmsbayes.files import atomic_write, check_output_path
from lmsbayes.model.inputs import ModelData
from lmsbayes.spec import MAX_CHAINS, MAX_TOTAL_DRAWS, ModelSpec, SpecError, parse_spec
from lmsbayes.version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from lmsbayes.fit import Fit

__all__ = [
    "FIT_FORMAT",
    "FIT_FORMAT_VERSION",
    "MAX_FIT_BYTES",
    "REQUIRED_GROUPS",
    "check_fit_file",
    "read_fit",
    "save_fit",
    "spec_to_toml",
]

FIT_FORMAT = "lmsbayes.fit"
FIT_FORMAT_VERSION = 2  # 2: the one model definition (lmsbayes 0.2); 1: lmsbayes 0.1
#: Largest fit file :func:`load_fit` opens (it is read into memory whole).
MAX_FIT_BYTES = 2 * 2**30
#: Groups every saved fit has (``sample_stats`` is optional: an exact engine has none).
REQUIRED_GROUPS = (
    "posterior",
    "posterior_predictive",
    "observed_data",
    "constant_data",
    "lmsbayes_inputs",
)
_MAX_SPEC_CHARS = 1_000_000
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_INPUT_INT_VARS = ("obs_arm_idx", "obs_k_idx", "obs_comp")


# --------------------------------------------------------------------------- save
def save_fit(fit: Fit, path: str | os.PathLike[str]) -> Path:
    """Write ``fit`` to one netCDF file, atomically; see :meth:`lmsbayes.fit.Fit.save`."""
    path = check_output_path(path, what="fit file")
    dt = fit.datatree.copy()
    dt["lmsbayes_inputs"] = xr.DataTree(fit.data.to_xarray())
    dt.attrs.update(
        lmsbayes_format=FIT_FORMAT,
        lmsbayes_format_version=FIT_FORMAT_VERSION,
        lmsbayes_version=__version__,
        spec_text=fit.spec.text or spec_to_toml(fit.spec),
        spec_name=fit.spec.name,
        spec_hash=fit.spec.hash,
        data_sha256=fit.data.data_sha256,
        seed=int(fit.spec.sampler.seed),
    )
    dt = _sanitize_for_netcdf(dt)

    def write(tmp: Path) -> None:
        try:
            dt.to_netcdf(tmp, engine="netcdf4", encoding=_checksummed(dt))
        except (
            RuntimeError
        ) as exc:  # netCDF-C reports a failed write (disk full ...) as "NetCDF: HDF error"
            raise OSError(
                errno.EIO, f"netCDF could not write the fit ({exc}); is the disk full?", str(tmp)
            ) from None

    atomic_write(path, write)
    return path


def _checksummed(dt: xr.DataTree) -> dict[str, dict[str, dict[str, Any]]]:
    """netCDF encoding: a Fletcher-32 checksum on every numeric variable.

    HDF5 verifies it on read.
    """
    enc: dict[str, dict[str, dict[str, Any]]] = {}
    for node in dt.subtree:
        ds = node.to_dataset(inherit=False)
        numeric = {
            v: {"fletcher32": True}
            for v in ds.variables
            if ds[v].dtype.kind in "fiub" and ds[v].ndim > 0
        }
        if numeric:
            enc[node.path] = numeric
    return enc


def _sanitize_for_netcdf(dt: xr.DataTree) -> xr.DataTree:
    """Drop object-typed sample stats (e.g. nutpie's divergence messages) netCDF cannot store."""
    out = dt.copy()
    for node in out.subtree:
        ds = node.to_dataset()
        drop = [v for v in ds.data_vars if ds[v].dtype == object and node.name != "lmsbayes_inputs"]
        if drop:
            node.dataset = ds.drop_vars(drop)
        for k, v in list(node.attrs.items()):
            if isinstance(v, (dict, list)) and not all(isinstance(x, (int, float, str)) for x in v):
                node.attrs[k] = str(v)
    return out


def spec_to_toml(spec: ModelSpec) -> str:
    """Minimal TOML for a spec built in Python (no source text)."""

    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, dict):
            return (
                "{ "
                + ", ".join(
                    f"{k if re.fullmatch(r'[A-Za-z0-9_-]+', str(k)) else val(str(k))} = {val(x)}"
                    for k, x in v.items()
                )
                + " }"
            )
        return repr(v)

    d = spec.to_dict()
    lines = [
        f"name = {val(d['name'])}",
        f"description = {val(d['description'])}",
        f"landmarks = {val(list(d['landmarks']))}",
        f"engine = {val(d['engine'])}",
    ]
    # every table of the spec in its order, [covariates.*] last
    sections = [k for k, v in d.items() if isinstance(v, dict) and k != "covariates"]
    for section in sections:
        lines.append(f"\n[{section}]")
        lines += [f"{k} = {val(v)}" for k, v in d[section].items()]
    for name, cdef in d["covariates"].items():
        lines.append(f"\n[covariates.{name}]")
        lines += [f"{k} = {val(v)}" for k, v in cdef.items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- load
def _lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle``: HDF5's metadata checksum (H5_checksum_lookup3)."""
    m = 0xFFFFFFFF

    def rot(x: int, k: int) -> int:
        return ((x << k) | (x >> (32 - k))) & m

    n = len(data)
    a = b = c = (0xDEADBEEF + n + initval) & m
    i = 0
    while n > 12:
        a = (a + int.from_bytes(data[i : i + 4], "little")) & m
        b = (b + int.from_bytes(data[i + 4 : i + 8], "little")) & m
        c = (c + int.from_bytes(data[i + 8 : i + 12], "little")) & m
        a = (a - c) & m
        a ^= rot(c, 4)
        c = (c + b) & m  # noqa: E702
        b = (b - a) & m
        b ^= rot(a, 6)
        a = (a + c) & m  # noqa: E702
        c = (c - b) & m
        c ^= rot(b, 8)
        b = (b + a) & m  # noqa: E702
        a = (a - c) & m
        a ^= rot(c, 16)
        c = (c + b) & m  # noqa: E702
        b = (b - a) & m
        b ^= rot(a, 19)
        a = (a + c) & m  # noqa: E702
        c = (c - b) & m
        c ^= rot(b, 4)
        b = (b + a) & m  # noqa: E702
        n -= 12
        i += 12
    if n == 0:
        return c
    tail = data[i:] + bytes(12 - n)
    a = (a + int.from_bytes(tail[0:4], "little")) & m
    b = (b + int.from_bytes(tail[4:8], "little")) & m
    c = (c + int.from_bytes(tail[8:12], "little")) & m
    c ^= b
    c = (c - rot(b, 14)) & m  # noqa: E702
    a ^= c
    a = (a - rot(c, 11)) & m  # noqa: E702
    b ^= a
    b = (b - rot(a, 25)) & m  # noqa: E702
    c ^= b
    c = (c - rot(b, 16)) & m  # noqa: E702
    a ^= c
    a = (a - rot(c, 4)) & m  # noqa: E702
    b ^= a
    b = (b - rot(a, 14)) & m  # noqa: E702
    c ^= b
    c = (c - rot(b, 24)) & m  # noqa: E702
    return c


def check_fit_file(path: str | os.PathLike[str]) -> Path:
    """Check a fit file's signature, size and HDF5 superblock before HDF5 opens it.

    Raises
    ------
    FileNotFoundError
        No such file.
    FitFileError
        Not a regular file, empty or larger than :data:`MAX_FIT_BYTES`, no
        HDF5 signature at byte 0, a superblock that is damaged (checksum) or
        says the file is longer than it is (truncated), or a file that was
        not closed after writing.
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"no fit file {str(p)!r}") from None
    except OSError as exc:
        raise FitFileError(f"{p}: cannot read the fit file: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise FitFileError(f"{p}: not a fit file (not a regular file)")
    size = st.st_size
    if size > MAX_FIT_BYTES:
        raise FitFileError(
            f"{p}: {size:,} bytes, more than the {MAX_FIT_BYTES:,} a fit file may have"
        )
    try:
        with open(p, "rb") as fh:
            head = fh.read(96)
    except OSError as exc:
        raise FitFileError(f"{p}: cannot read the fit file: {exc.strerror}") from None
    if not head:
        raise FitFileError(f"{p}: the fit file is empty")
    if not head.startswith(_HDF5_SIGNATURE):
        kind = "a netCDF-3 file" if head[:3] == b"CDF" else "no HDF5 signature at byte 0"
        raise FitFileError(f"{p}: not a netCDF file written by lmsbayes ({kind})")
    version = head[8] if len(head) > 8 else -1
    if version in (2, 3):
        so = head[9] if len(head) > 9 else 0
        if so not in (2, 4, 8) or len(head) < 12 + 4 * so + 4:
            raise FitFileError(f"{p}: truncated or damaged fit file (HDF5 superblock incomplete)")
        end = 12 + 4 * so
        if _lookup3(head[:end]) != int.from_bytes(head[end : end + 4], "little"):
            raise FitFileError(f"{p}: damaged fit file (HDF5 superblock checksum does not match)")
        flags = head[11]
        base = int.from_bytes(head[12 : 12 + so], "little")
        eof = int.from_bytes(head[12 + 2 * so : 12 + 3 * so], "little")
        if flags & 0b101:
            raise FitFileError(
                f"{p}: the fit file was not closed after writing (an interrupted writer?)"
            )
    elif version in (0, 1):
        so = head[13] if len(head) > 13 else 0
        start = 24 + (4 if version == 1 else 0)
        if so not in (2, 4, 8) or len(head) < start + 4 * so:
            raise FitFileError(f"{p}: truncated or damaged fit file (HDF5 superblock incomplete)")
        base = int.from_bytes(head[start : start + so], "little")
        eof = int.from_bytes(head[start + 2 * so : start + 3 * so], "little")
    else:
        raise FitFileError(f"{p}: damaged fit file (HDF5 superblock version {version} unknown)")
    if base + eof > size:
        raise FitFileError(
            f"{p}: truncated fit file ({size:,} bytes, the file says {base + eof:,})"
        )
    return p


def read_fit(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a fit saved with :meth:`Fit.save` (no PyMC, no recompilation).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    dict
        The fields of a :class:`lmsbayes.fit.Fit`: ``datatree``, ``spec``,
        ``data`` and ``diagnostics`` (built by the engine that made the draws).

    Raises
    ------
    FileNotFoundError
        No such file.
    FitFileError
        The file is not a readable lmsbayes fit: truncated, foreign, damaged,
        of an unknown format version, missing a group or an attribute, or
        holding an invalid spec or model inputs. The message names the file
        and what is wrong.
    """
    p = check_fit_file(path)
    try:
        # load and close at once: a handle left to the garbage collector can be
        # closed while HDF5 opens the same file again (same inode after
        # Fit.save's rename), which crashes the process (xarray #8289,
        # netcdf4-python #1444)
        with xr.open_datatree(p, engine="netcdf4") as lazy:
            _check_structure(lazy, p)
            dt = lazy.load()
    except FitFileError:
        raise
    except MemoryError:
        raise FitFileError(f"{p}: the fit is too large to load into memory") from None
    except (
        Exception
    ) as exc:  # netCDF4/HDF5 raise OSError, RuntimeError, KeyError ... for a damaged file
        raise FitFileError(
            f"{p}: damaged fit file, netCDF/HDF5 cannot read it "
            f"({type(exc).__name__}: {_short(exc)})"
        ) from None
    spec = _saved_spec(dt, p)
    data = _saved_inputs(dt["lmsbayes_inputs"].to_dataset(), p, ModelData)
    tree = xr.DataTree.from_dict(
        {f"/{k}": dt[k].to_dataset() for k in dt.children if k != "lmsbayes_inputs"}
    )
    tree.attrs.update(dt.attrs)
    _check_posterior(tree, data, p)
    try:
        post = tree["posterior"].to_dataset()
        groups = {k: tree[k].to_dataset() for k in tree.children if k != "posterior"}
        diagnostics = get_engine(str(tree.attrs.get("engine"))).diagnostics(
            post, groups, dict(tree.attrs)
        )
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise FitFileError(
            f"{p}: the posterior is malformed ({type(exc).__name__}: {_short(exc)})"
        ) from None
    return {"datatree": tree, "spec": spec, "data": data, "diagnostics": diagnostics}


def _short(exc: BaseException, width: int = 160) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _attr(attrs, name: str, kind: type, p: Path, where: str = "") -> Any:
    if name not in attrs:
        raise FitFileError(
            f"{p}: not an lmsbayes fit, or damaged: attribute {name!r}{where} is missing"
        )
    value = attrs[name]
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise FitFileError(
            f"{p}: attribute {name!r}{where} must be {kind.__name__}, got {value!r:.80}"
        )
    return value


def _check_structure(dt: xr.DataTree, p: Path) -> None:
    """Format attributes, groups and sizes, on the lazily opened tree (no data read yet)."""
    fmt = dt.attrs.get("lmsbayes_format")
    if fmt != FIT_FORMAT:
        got = "missing" if fmt is None else f"{fmt!r:.80}, expected {FIT_FORMAT!r}"
        raise FitFileError(f"{p}: not an lmsbayes fit (attribute lmsbayes_format {got})")
    version = _attr(dt.attrs, "lmsbayes_format_version", int, p)
    if version == 1:
        raise FitFileError(
            f"{p}: fit format version 1 was written by lmsbayes 0.1, whose model inputs this "
            "version cannot rebuild; refit the spec (`lmsbayes fit SPEC -o FILE`)"
        )
    if version != FIT_FORMAT_VERSION:
        raise FitFileError(
            f"{p}: fit format version {version} is not supported "
            f"(this lmsbayes {__version__} reads version {FIT_FORMAT_VERSION})"
        )
    for name in ("spec_text", "spec_hash", "data_sha256", "lmsbayes_version"):
        _attr(dt.attrs, name, str, p)
    missing = [g for g in REQUIRED_GROUPS if g not in dt.children]
    if missing:
        raise FitFileError(f"{p}: damaged fit file: group(s) {missing} missing")
    post = dt["posterior"]
    for dim in ("chain", "draw"):
        if post.sizes.get(dim, 0) < 1:
            raise FitFileError(f"{p}: damaged fit file: the posterior has no {dim!r} dimension")
    chains, draws = int(post.sizes["chain"]), int(post.sizes["draw"])
    if chains > MAX_CHAINS or chains * draws > MAX_TOTAL_DRAWS:
        raise FitFileError(
            f"{p}: the posterior holds {chains} x {draws} draws; at most {MAX_CHAINS} chains "
            f"and {MAX_TOTAL_DRAWS:,} draws in all are read"
        )
    for var in ("alpha", "tau", "z"):
        if var not in post.data_vars:
            raise FitFileError(f"{p}: damaged fit file: posterior variable {var!r} missing")


def _saved_spec(dt: xr.DataTree, p: Path) -> ModelSpec:
    text = _attr(dt.attrs, "spec_text", str, p)
    if len(text) > _MAX_SPEC_CHARS:
        raise FitFileError(
            f"{p}: the saved spec is {len(text):,} characters, more than {_MAX_SPEC_CHARS:,}"
        )
    try:
        raw = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise FitFileError(f"{p}: the saved spec is not valid TOML ({_short(exc)})") from None
    try:
        return parse_spec(raw, source=f"{p} (saved spec)", text=text)
    except SpecError as exc:
        raise FitFileError(str(exc)) from None


def _finite_list(attrs, name: str, p: Path) -> list[float]:
    value = np.atleast_1d(attrs.get(name, np.array([])))
    if name not in attrs or value.dtype.kind not in "fiu":
        raise FitFileError(
            f"{p}: lmsbayes_inputs attribute {name!r} must be numbers, got {attrs.get(name)!r:.80}"
        )
    if not np.all(np.isfinite(value)):
        raise FitFileError(
            f"{p}: lmsbayes_inputs attribute {name!r} holds a value that is not finite"
        )
    return [float(v) for v in value]


def _saved_inputs(ds: xr.Dataset, p: Path, model_data: type) -> Any:
    """The model inputs, checked before they are rebuilt.

    Types, finite values, indices in range.
    """
    where = " of lmsbayes_inputs"
    landmarks = (
        _finite_list(ds.attrs, "landmarks", p)
        if len(np.atleast_1d(ds.attrs.get("landmarks", [])))
        else []
    )
    centre = ds.attrs.get("uterine_centre")
    if isinstance(centre, np.ndarray) and centre.size == 1:
        centre = centre.item()
    if (
        isinstance(centre, (bool, np.bool_))
        or not isinstance(centre, (int, float, np.integer, np.floating))
        or not np.isfinite(centre)
    ):
        raise FitFileError(
            f"{p}: lmsbayes_inputs attribute 'uterine_centre' must be a finite number, "
            f"got {centre!r:.80}"
        )
    _attr(ds.attrs, "data_sha256", str, p, where)
    for name in ("coding", "strata", "family", "stratum_idx"):
        if name not in ds.attrs:
            raise FitFileError(
                f"{p}: not an lmsbayes fit, or damaged: attribute {name!r}{where} is missing"
            )
    if "arm" not in ds.dims or ds.sizes["arm"] < 1:
        raise FitFileError(f"{p}: damaged fit file: lmsbayes_inputs has no arms")
    n_arms = int(ds.sizes["arm"])
    n_obs = int(ds.sizes.get("obs", 0))
    bounds = {
        "obs_arm_idx": n_arms,
        "obs_k_idx": max(len(landmarks), 1),
        "obs_comp": n_arms * max(len(landmarks), 1),
        "terms_first": n_obs,
        "terms_second": n_obs,
    }
    optional = ("terms_first", "terms_second")
    for var in (*_INPUT_INT_VARS, *optional):
        if var not in ds.data_vars:
            if var in optional:
                continue
            raise FitFileError(f"{p}: damaged fit file: lmsbayes_inputs variable {var!r} missing")
        values = ds[var].values
        dim = "terms" if var.startswith("terms_") else "obs"
        if values.dtype.kind not in "fiu" or ds[var].dims != (dim,):
            raise FitFileError(
                f"{p}: lmsbayes_inputs variable {var!r} must be numbers along {dim!r}"
            )
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
            raise FitFileError(f"{p}: lmsbayes_inputs variable {var!r} must hold integers")
        hi = bounds.get(var, 2**31)
        if values.size and (values.min() < 0 or values.max() >= hi):
            raise FitFileError(
                f"{p}: lmsbayes_inputs variable {var!r} holds {values.min():g}..{values.max():g}, "
                f"outside 0..{hi - 1}"
            )
    try:
        return model_data.from_xarray(ds)
    except (KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise FitFileError(
            f"{p}: the saved model inputs are malformed ({type(exc).__name__}: {_short(exc)})"
        ) from None


#: Groups whose numbers are all finite in every fit lmsbayes writes (sample_stats may hold NaN).
_FINITE_GROUPS = ("posterior", "posterior_predictive", "observed_data", "constant_data")


def _check_posterior(tree: xr.DataTree, data: Any, p: Path) -> None:
    for group in _FINITE_GROUPS:
        for name, da in tree[group].to_dataset().data_vars.items():
            if da.dtype.kind == "f" and not np.all(np.isfinite(da.values)):
                raise FitFileError(
                    f"{p}: {group} variable {name!r} holds values that are not finite"
                )
    post = tree["posterior"].to_dataset()
    if "landmark" in post["alpha"].dims:
        saved = [float(v) for v in post["alpha"]["landmark"].values]
        if saved != [float(v) for v in data.landmarks]:
            raise FitFileError(
                f"{p}: the posterior's landmarks {saved} differ from the inputs' "
                f"{list(data.landmarks)}"
            )
    if "arm" in post["z"].dims and post.sizes["arm"] != len(data.arms):
        raise FitFileError(
            f"{p}: the posterior has {post.sizes['arm']} arms, the inputs {len(data.arms)}"
        )
