"""lmsbayes.groups (a fit's groups as numpy) and the imports the exact path avoids (_lazy)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from lmsbayes.groups import Group

AS_CSV = Path(__file__).parent / "data" / "AS.csv"


def _group() -> Group:
    rng = np.random.default_rng(0)
    return Group(
        {
            "tau": (("chain", "draw", "stratum"), rng.normal(size=(1, 5, 2))),
            "y": ("obs", np.arange(3.0), {"units": "logit"}),
        },
        coords={"chain": [0], "draw": np.arange(5), "stratum": ["1L", "2L+"], "obs": np.arange(3)},
        attrs={"kind": "test"},
    )


def test_group_reads_as_the_dataset_it_builds():
    g = _group()
    ds = g.to_dataset()
    direct = xr.Dataset(
        {
            "tau": (("chain", "draw", "stratum"), g["tau"].values),
            "y": ("obs", np.arange(3.0), {"units": "logit"}),
        },
        coords={"chain": [0], "draw": np.arange(5), "stratum": ["1L", "2L+"], "obs": np.arange(3)},
        attrs={"kind": "test"},
    )
    assert ds.identical(direct)
    assert g.sizes == dict(ds.sizes)
    assert "tau" in g and "chain" not in g  # data variables, as `in` on a Dataset... minus coords
    np.testing.assert_array_equal(
        g["tau"].transpose("stratum", "chain", "draw").values,
        ds["tau"].transpose("stratum", "chain", "draw").values,
    )
    np.testing.assert_array_equal(g["stratum"].values, ds["stratum"].values)
    back = Group.from_dataset(ds)
    assert back.to_dataset().identical(ds)
    moved = g.assign_coords(stratum=["a", "b"])
    assert list(moved.to_dataset()["stratum"].values) == ["a", "b"]
    assert list(g.to_dataset()["stratum"].values) == ["1L", "2L+"]  # the original is unchanged
    with pytest.raises(ValueError, match="dims are"):
        g["tau"].transpose("chain", "draw")


_PROBE = r"""
import sys
import pandas as pd
import lmsbayes as lb
from lmsbayes.spec import parse_spec
spec = parse_spec({"name": "as", "landmarks": [], "model": {"likelihood": "logit-binomial"},
                   "random_effects": {"tau_by": "none"}})
fit = lb.fit(spec, pd.read_csv(sys.argv[1]))
mix = lb.map_prior(fit)
[lb.ess(mix, m) for m in ("elir", "moment", "morita")]
print(sorted(m for m in ("xarray", "dask", "scipy.stats") if m in sys.modules))
fit.posterior  # the DataTree, on demand: xarray, but not dask.array
print("dask.array" in sys.modules)
import dask.array as da
import xarray as xr
x = xr.DataArray(da.zeros((4, 4), chunks=2), dims=("a", "b"))
print(x.chunks is not None, float(x.sum().compute()))
"""


@pytest.mark.slow  # a new interpreter: about 3 s on a quiet machine, far more on a busy one
def test_exact_path_imports_and_xarray_still_knows_dask():
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(AS_CSV)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    # fit, MAP prior and its ESS: none of xarray, dask or scipy.stats is imported
    assert out[0] == "[]"
    # building the DataTree imports xarray, not dask.array (xarray's dask probe is deferred) ...
    assert out[1] == "False"
    # ... and once dask.array is imported, xarray treats dask arrays as dask arrays
    assert out[2] == "True 0.0"


def test_group_keeps_coordinates_along_another_dim():
    """A setting's description along ``setting``: read as a Dataset reads it, and round-tripped."""
    g = Group(
        {"p": (("setting", "hr"), np.arange(6.0).reshape(3, 2))},
        coords={
            "setting": ["a", "b", "c"],
            "hr": [0.5, 0.65],
            "description": ("setting", ["first", "second", "third"]),
        },
    )
    ds = g.to_dataset()
    assert ds["description"].dims == ("setting",)
    assert "description" not in ds.dims and g.sizes == dict(ds.sizes) == {"setting": 3, "hr": 2}
    assert g["description"].dims == ("setting",)
    assert list(g["description"].values) == ["first", "second", "third"]
    back = Group.from_dataset(ds)
    assert back.to_dataset().identical(ds)
    assert back.coords["description"][0] == "setting"
