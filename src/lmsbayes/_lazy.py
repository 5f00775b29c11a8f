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
from typing import Any

__all__ = ["elementwise", "integrate", "optimize", "stats", "xarray"]


class _Lazy:
    def __init__(self, name: str) -> None:
        self.__dict__["_name"] = name

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self.__dict__["_name"])
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self.__dict__['_name']!r}>"


xarray = _Lazy("xarray")
stats = _Lazy("scipy.stats")
optimize = _Lazy("scipy.optimize")
integrate = _Lazy("scipy.integrate")
elementwise = _Lazy("scipy.optimize.elementwise")
