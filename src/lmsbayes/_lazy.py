"""A module imported on first use, so that ``import lmsbayes`` costs only what a path uses.

``from lmsbayes._lazy import xarray as xr`` binds a stand-in whose first
attribute access imports xarray (and, with it, xarray's probe of dask):
importing lmsbayes, reading data, fitting with the exact engine and printing
a table need neither until a Dataset is built. The same for the parts of
scipy a path may not reach (``stats`` alone takes longer to import than numpy
and pandas together; ``optimize`` and ``integrate`` pull in scipy.sparse):
only ``scipy.special`` is imported eagerly.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__all__ = ["defer_dask_probe", "elementwise", "integrate", "optimize", "stats", "xarray"]


class _Lazy:
    def __init__(self, name: str) -> None:
        self.__dict__["_name"] = name

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self.__dict__["_name"])
        if self.__dict__["_name"] == "xarray":
            defer_dask_probe()
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self.__dict__['_name']!r}>"


class _DaskOnceImported:
    """xarray's record of dask, resolved only once dask.array has been imported.

    xarray imports dask.array (about as long as numpy and pandas together) on
    its first Dataset, to learn the type of a dask array. No dask array can
    exist before dask.array is imported, so until then the answer is "none";
    from then on xarray's own probe answers, and replaces this record.
    """

    def __init__(self, probe, cache: dict) -> None:
        self._probe, self._cache = probe, cache

    def _real(self):
        if "dask.array" not in sys.modules:
            return None
        real = self._probe("dask")
        self._cache["dask"] = real
        return real

    @property
    def type(self) -> tuple:
        real = self._real()
        return real.type if real is not None else ()

    @property
    def available(self) -> bool:
        real = self._real()
        return real.available if real is not None else False

    @property
    def module(self):
        real = self._real()
        return real.module if real is not None else None

    @property
    def version(self):
        real = self._real()
        if real is not None:
            return real.version
        from packaging.version import Version

        return Version("0.0.0")


def defer_dask_probe() -> None:
    """Spare a process that never uses dask xarray's import of it (see :class:`_DaskOnceImported`).

    Does nothing once dask.array is imported or xarray has probed dask, or if
    xarray's internals are not as expected (then xarray probes as usual).
    """
    if "dask.array" in sys.modules:
        return
    try:
        from xarray.namedarray import pycompat
    except ImportError:  # pragma: no cover
        return
    cache = getattr(pycompat, "_cached_duck_array_modules", None)
    probe = getattr(pycompat, "DuckArrayModule", None)
    if isinstance(cache, dict) and probe is not None and "dask" not in cache:
        cache["dask"] = _DaskOnceImported(probe, cache)


xarray = _Lazy("xarray")
stats = _Lazy("scipy.stats")
optimize = _Lazy("scipy.optimize")
integrate = _Lazy("scipy.integrate")
elementwise = _Lazy("scipy.optimize.elementwise")
