"""A fit's groups of draws as numpy arrays with named dims; the xarray Dataset on demand.

An exact fit takes milliseconds, while importing xarray and building a
DataTree (xarray probes dask on every construction) takes longer than the
fit itself. The engines and :func:`lmsbayes.fit` therefore keep each group
(posterior, posterior predictive, the integration rule, ...) as a
:class:`Group`: named-dim numpy arrays that read like a Dataset where the
package reads them (``group["tau"].transpose("chain", "draw", ...).values``,
``group.sizes``), and become an :class:`xarray.Dataset` only when a user or a
file asks for one (:meth:`Group.to_dataset`, ``Fit.datatree``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Group", "Variable"]


@dataclass(frozen=True)
class Variable:
    """One array with named dims (and its attrs), read as a DataArray is read."""

    dims: tuple[str, ...]
    values: np.ndarray
    attrs: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        """The array's shape."""
        return self.values.shape

    @property
    def sizes(self) -> dict[str, int]:
        """Length of each dim."""
        return dict(zip(self.dims, self.values.shape, strict=True))

    def transpose(self, *dims: str) -> Variable:
        """The array with its dims in the order given (all of them)."""
        if sorted(dims) != sorted(self.dims):
            raise ValueError(f"transpose{dims}: the variable's dims are {self.dims}")
        axes = [self.dims.index(d) for d in dims]
        return Variable(tuple(dims), np.transpose(self.values, axes), self.attrs)


class Group:
    """Variables with named dims, coordinates and attrs: a Dataset's content without xarray.

    Parameters
    ----------
    data_vars : mapping of str to (dims, array) or (dims, array, attrs)
    coords : mapping of str to array_like or (dim, array_like), optional
        Coordinates as an xarray Dataset takes them: a dimension coordinate's
        values, or ``(dim, values)`` for a coordinate along another dimension
        (a setting's description along ``setting``).
    attrs : mapping, optional
    """

    def __init__(
        self,
        data_vars: Mapping[str, Any],
        coords: Mapping[str, Any] | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        self.data_vars: dict[str, Variable] = {}
        self.coords: dict[str, Any] = dict(coords or {})
        self.attrs: dict[str, Any] = dict(attrs or {})
        for name, v in data_vars.items():
            self[name] = v

    @classmethod
    def from_dataset(cls, ds) -> Group:
        """The content of an xarray Dataset (coordinates along one dimension or their own)."""
        coords = {}
        for k in ds.coords:
            dims = ds[k].dims
            if dims != (k,) and len(dims) != 1:
                raise ValueError(f"coordinate {k!r} has dims {dims}: a Group keeps 1-D ones")
            coords[k] = ds[k].values if dims == (k,) else (dims[0], ds[k].values)
        out = cls({}, coords, ds.attrs)
        for name, da in ds.data_vars.items():
            out[name] = (tuple(da.dims), da.values, dict(da.attrs))
        return out

    def __setitem__(self, name: str, value) -> None:
        if not isinstance(value, Variable):
            dims, values, *rest = value
            dims = (dims,) if isinstance(dims, str) else tuple(dims)
            value = Variable(dims, np.asarray(values), dict(rest[0]) if rest else {})
        self.data_vars[name] = value

    def __getitem__(self, name: str) -> Variable:
        if name in self.data_vars:
            return self.data_vars[name]
        if name in self.coords:
            dim, values = self._coord(name)
            return Variable((dim,), np.asarray(values))
        raise KeyError(name)

    def _coord(self, name: str) -> tuple[str, Any]:
        """A coordinate's dim and values."""
        value = self.coords[name]
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
            return value
        return name, value

    def __contains__(self, name: object) -> bool:
        return name in self.data_vars

    def __iter__(self) -> Iterator[str]:
        return iter(self.data_vars)

    @property
    def sizes(self) -> dict[str, int]:
        """Length of each dim of the variables (and of coordinates no variable uses)."""
        out = {}
        for k in self.coords:
            dim, values = self._coord(k)
            out[dim] = len(np.atleast_1d(values))
        for v in self.data_vars.values():
            out.update(v.sizes)
        return out

    def assign_coords(self, **coords: Any) -> Group:
        """A new group with these coordinates set (the variables shared, not copied)."""
        return Group(self.data_vars, {**self.coords, **coords}, self.attrs)

    def to_dataset(self):
        """The group as an :class:`xarray.Dataset` (imports xarray)."""
        from lmsbayes._lazy import defer_dask_probe
        from lmsbayes._lazy import xarray as xr

        defer_dask_probe()
        return xr.Dataset(
            {
                k: (v.dims, v.values, v.attrs) if v.attrs else (v.dims, v.values)
                for k, v in self.data_vars.items()
            },
            coords=self.coords,
            attrs=self.attrs,
        )
