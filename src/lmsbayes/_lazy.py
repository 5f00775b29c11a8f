"""A module imported on first use, so that ``import lmsbayes`` costs only what a path uses.

``from lmsbayes._lazy import xarray as xr`` binds a stand-in whose first
attribute access imports xarray (and, with it, xarray's probe of dask):
importing lmsbayes, reading data, fitting with the exact engine and printing
a table need neither until a Dataset is built.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["xarray"]


class _Lazy:
    def __init__(self, name: str) -> None:
        self.__dict__["_name"] = name

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self.__dict__["_name"])
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self.__dict__['_name']!r}>"


xarray = _Lazy("xarray")
