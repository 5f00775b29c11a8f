"""Fitting: ``fit(spec, data) -> Fit``; diagnostics; netCDF save and load.

``fit`` prepares the data (lmsbayes.model), picks the engine and returns a
:class:`Fit`: the DataTree (posterior, posterior predictive, observed and
constant data, engine statistics), the spec, the model inputs and the
diagnostics. Two engines consume the one model definition:

- ``exact`` (lmsbayes.engines.exact): integration and importance sampling,
  no compilation, milliseconds; diagnostics k-hat, importance ESS and the
  tau grid's edge mass;
- ``nuts`` (lmsbayes.engines.nuts): PyMC sampled by nutpie, the reference;
  diagnostics divergences, R-hat and ESS.

``engine = "auto"`` (the default) uses the exact engine wherever it supports
the spec and NUTS otherwise, with a one-line note. A Fit saves to one netCDF
file with its provenance and loads back without PyMC.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from lmsbayes._lazy import xarray as xr
from lmsbayes.data import read_tables
from lmsbayes.engines import choose_engine
from lmsbayes.engines.base import HYPER, Diagnostics, FitSettings
from lmsbayes.errors import SamplingError
from lmsbayes.fitfile import read_fit, save_fit
from lmsbayes.groups import Group
from lmsbayes.model.definition import Model
from lmsbayes.model.derived import (
    arm_rates,
    observed,
    posterior_arrays,
    posterior_predictive,
    predictor,
)
from lmsbayes.model.inputs import ModelData
from lmsbayes.model.prepare import prepare_data
from lmsbayes.spec import ModelSpec, load_spec
from lmsbayes.version import __version__

__all__ = ["Diagnostics", "Fit", "FitWarning", "SamplingError", "fit", "load_fit"]


class FitWarning(UserWarning):
    """A fit has inference problems (divergences, R-hat, ESS, importance k-hat)."""


@dataclass(frozen=True)
class Fit:
    """A fitted model: its groups of draws, spec, inputs and diagnostics.

    Create with :func:`fit`; save with :meth:`save`; restore with :func:`load_fit`.
    ``datatree`` (and ``posterior``) are built from the groups when first asked
    for: the package's own summaries read the groups' arrays, so a fit and its
    threshold table need no xarray.
    """

    spec: ModelSpec
    data: ModelData
    diagnostics: Diagnostics
    #: group name -> :class:`lmsbayes.groups.Group` or xarray Dataset, in DataTree order
    groups: dict = field(repr=False, compare=False)
    #: the DataTree's attrs (engine statistics and provenance)
    attrs: dict = field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def datatree(self) -> xr.DataTree:
        """The fit as one DataTree (posterior, posterior predictive, observed data, ...)."""
        children = {
            f"/{k}": v.to_dataset() if isinstance(v, Group) else v for k, v in self.groups.items()
        }
        out = xr.DataTree.from_dict(children)
        out.attrs.update(self.attrs)
        return out

    @property
    def posterior(self) -> xr.Dataset:
        """The posterior draws (chain, draw, ...)."""
        return self.datatree["posterior"].to_dataset()

    @property
    def draws(self):
        """The posterior draws as the package's own summaries read them, without xarray.

        A :class:`~lmsbayes.groups.Group` for a fresh fit, the Dataset for a loaded
        one: both answer ``draws[name].transpose("chain", "draw", ...).values``,
        ``draws[name].values``, ``draws.sizes`` and ``name in draws``. Building
        :attr:`posterior` imports xarray and builds the DataTree, which took longer
        than an exact fit and its threshold table together.
        """
        return self.groups["posterior"]

    @property
    def data_sha256(self) -> str:
        """SHA-256 of the input data the fit used."""
        return self.data.data_sha256

    @property
    def engine(self) -> str:
        """Name of the engine that made the draws."""
        return self.diagnostics.engine

    @functools.cached_property
    def model(self) -> Model:
        """The model definition of this fit (lmsbayes.model.definition.Model).

        Built once per fit (a table's rows read it dozens of times); treat it as read-only.
        """
        return Model(self.spec, self.data)

    def summary(self, var_names=HYPER, prob: float = 0.95) -> pd.DataFrame:
        """Summary of the hyper-parameters with readable row names.

        Mean, sd and the equal-tailed ``prob`` interval; for NUTS also the
        ArviZ columns (MCSE, ESS, R-hat); for independent draws (the exact
        engine) the Monte Carlo standard error of the mean from their ESS.
        """
        names = [v for v in var_names if v in self.posterior]
        if self.diagnostics.independent_draws:
            rows = {}
            lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
            ess = self.diagnostics.ess
            for v in names:
                da = self.posterior[v].stack(sample=("chain", "draw"))
                flat = da.transpose(..., "sample")
                extra = [d for d in flat.dims if d != "sample"]
                for idx in np.ndindex(*[flat.sizes[d] for d in extra]) if extra else [()]:
                    x = flat.values[idx] if extra else flat.values
                    label = v + (
                        f"[{', '.join(str(flat[d].values[i]) for d, i in zip(extra, idx))}]"
                        if extra
                        else ""
                    )
                    rows[_readable(label)] = {
                        "mean": x.mean(),
                        "sd": x.std(ddof=1),
                        f"eti{lo * 100:g}%": np.quantile(x, lo),
                        f"eti{hi * 100:g}%": np.quantile(x, hi),
                        "mcse_mean": x.std(ddof=1) / math.sqrt(ess),
                    }
            return pd.DataFrame(rows).T
        import arviz as az

        # one variable per call: ArviZ 1.3 mislabels rows when variables with
        # different dim orders (landmark / stratum, landmark) share one call
        table = pd.concat([az.summary(self.datatree, var_names=[v], ci_prob=prob) for v in names])
        table.index = [_readable(i) for i in table.index]
        return table

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fit to one netCDF file, atomically; see :func:`lmsbayes.fitfile.save_fit`.

        The path is checked before anything is written
        (:class:`~lmsbayes.errors.OutputPathError`); an existing file is
        replaced only once the new one is complete.
        """
        return save_fit(self, path)


def _readable(name: str) -> str:
    # "beta[3.0, line]" -> "beta[3 mo, line]"
    if "[" not in name:
        return name
    head, rest = name.split("[", 1)
    parts = [p.strip() for p in rest.rstrip("]").split(",")]
    out = []
    for p in parts:
        try:
            out.append(f"{float(p):g} mo")
        except ValueError:
            out.append(p)
    return f"{head}[{', '.join(out)}]"


def fit(
    spec: ModelSpec | str | os.PathLike[str] = "default",
    data=None,
    *,
    engine: str | None = None,
    strict: bool = False,
    progress: Callable[[str], None] | None = None,
    seed: int | None = None,
) -> Fit:
    """Fit a model spec to trial-arm data.

    Parameters
    ----------
    spec : ModelSpec, str or path
        A spec, a TOML path, or a bundled spec name (default ``"default"``).
    data : Trials, DataFrame, ModelData, path or None
        The LMS tables (``load_trials``), a plain binomial table (columns
        ``study``, ``r``, ``n`` and any covariates the spec names), prepared
        inputs, a CSV path, or None for the bundled data.
    engine : str, optional
        ``"auto"`` or an engine's name (:data:`lmsbayes.engines.ENGINE_NAMES`);
        overrides the spec's ``engine``.
    strict : bool
        Raise :class:`SamplingError` instead of warning when diagnostics fail.
    progress : callable, optional
        Called with one line per step (the spec, the data, the engine, the
        diagnostics), e.g. ``print``.
    seed : int, optional
        Overrides ``spec.sampler.seed``.

    Returns
    -------
    Fit

    Warns
    -----
    FitWarning
        When the diagnostics fail (and not strict), and when the data hold one study only
        (the between-study sd tau is then not identified by the data).
    """
    report = progress or _silent
    if not isinstance(spec, ModelSpec):
        spec = load_spec(spec)
    if seed is not None:
        spec = spec.replace(**{"sampler.seed": int(seed)})
    chosen, note = choose_engine(spec, engine)
    report(
        f"spec {spec.name!r} ({spec.model.likelihood}; covariates {list(spec.model.covariates)})"
    )
    if not isinstance(data, ModelData):
        tables = read_tables(data)
        data = prepare_data(spec, tables)
        n_in = len(getattr(tables, "arms", tables))
        excluded_arms = (
            len(set(data.excluded["arm_id"]) - set(data.arms.index)) if len(data.excluded) else 0
        )
        report(
            f"data: {n_in} arms read, {len(data.arms)} arms / {len(data.obs)} observations enter "
            f"the model, {excluded_arms} arms excluded"
        )
        if len(data.curve_arms):  # curve arms and their goodness-of-fit checks
            from lmsbayes.model.curve_arms import summary_lines

            for text in summary_lines(data.curve_arms, data.family.curve):
                report(text)
    thin = thin_data_note(data)
    if thin:  # said once, in words, to a caller who passes no progress callback too
        warnings.warn(thin.removeprefix("warning: "), FitWarning, stacklevel=2)
    note = "; ".join(n for n in (note, thin) if n)
    if note:
        report(note)
    model = Model(spec, data)
    res = chosen.fit(model, FitSettings(seed=spec.sampler.seed), report)
    attrs = dict(res.attrs)
    diag = res.diagnostics
    if note:
        attrs["engine_note"] = note
        diag = replace(diag, note=note)
    groups, attrs = _finish_groups(res.posterior, res.groups, attrs, model)
    result = Fit(spec=spec, data=data, diagnostics=diag, groups=groups, attrs=attrs)
    report(diag.line())
    if not diag.ok:
        msg = f"fit of spec {spec.name!r}: " + "; ".join(diag.problems)
        if strict:
            raise SamplingError(msg)
        warnings.warn(msg, FitWarning, stacklevel=2)
    return result


def _silent(message: str) -> None:
    """The progress callback of a quiet fit."""


def thin_data_note(data: ModelData) -> str:
    """A warning in words when the data cannot identify the between-study heterogeneity.

    Parameters
    ----------
    data : ModelData
        The prepared data of a fit.

    Returns
    -------
    str
        ``"warning: one study only - ..."`` for one study (arm), else ``""``.
    """
    if data.n_arms == 1:
        return (
            "warning: one study only - the between-study sd tau is not identified by the data; "
            "its prior alone sets how far a new study's rate may differ (the MAP prior's width)"
        )
    return ""


def load_fit(path: str | os.PathLike[str]) -> Fit:
    """Read a fit saved with :meth:`Fit.save` (checked by :func:`lmsbayes.fitfile.read_fit`).

    Raises
    ------
    FileNotFoundError
        No such file.
    lmsbayes.errors.FitFileError
        The file is not a readable lmsbayes fit (the message names the file and what is wrong).
    """
    got = read_fit(path)
    dt = got.pop("datatree")
    out = Fit(**got, groups={k: dt[k].to_dataset() for k in dt.children}, attrs=dict(dt.attrs))
    out.__dict__["datatree"] = dt  # the tree as read (cached_property's own slot)
    return out


def _finish_groups(post, groups: dict, attrs: dict, model: Model) -> tuple[dict, dict]:
    """Derived theta and p, observed data and posterior predictive (numpy), and the attrs.

    ``post``: the engine's posterior draws (a :class:`~lmsbayes.groups.Group` or an
    xarray Dataset, with the model's coords); ``groups``: other groups kept as they
    are (sample_stats, importance_sampling). Returns the groups in DataTree order
    and the tree's attrs; no xarray object is built here.
    """
    spec, data = model.spec, model.data
    attrs = dict(attrs)
    attrs.update(
        lmsbayes_version=__version__,
        spec_name=spec.name,
        spec_hash=spec.hash,
        data_sha256=data.data_sha256,
        seed=int(spec.sampler.seed),
    )
    obs_coord = {"obs": np.arange(len(data.obs))}
    observed_data = Group({"y": ("obs", observed(model))}, coords=obs_coord)
    if "z" not in post:  # a large table fitted without arm-level draws: the globals only
        return {"posterior": post, "observed_data": observed_data, **groups}, attrs
    arrays = posterior_arrays(model, post)
    landmarks = data.family.reported_landmarks(spec.landmarks, data.landmarks)
    rng = np.random.default_rng(spec.sampler.seed + 1)
    blocks = data.family.simulation_blocks(model)
    C, D = post.sizes["chain"], post.sizes["draw"]
    # draws in chunks whose arrays stay in cache: thousands of arms would otherwise page-fault
    # gigabytes of temporaries; each output is written once
    width = max(data.n_arms * max(model.K, len(landmarks), 1), len(data.obs), 1)
    step = max(1, 2**15 // width)
    eta_out = rates = y_rep = None
    for ch in range(C):
        for d0 in range(0, D, step):
            sl = (slice(ch, ch + 1), slice(d0, d0 + step))
            sub = {
                k: ({n: x[sl] for n, x in v.items()} if k == "values" else v[sl])
                for k, v in arrays.items()
            }
            eta = predictor(model, **sub)
            c = model.canonical(sub["values"])
            r = arm_rates(model, eta, c, landmarks)
            y = posterior_predictive(model, eta, c, rng, blocks)
            if eta_out is None:
                eta_out = np.empty((C, D) + eta.shape[2:])
                rates = np.empty((C, D) + r.shape[2:])
                y_rep = np.empty((C, D) + y.shape[2:], dtype=y.dtype)
            eta_out[sl], rates[sl], y_rep[sl] = eta, r, y
    k_dims = ("landmark",) if data.landmarks else ()
    post["theta"] = (("chain", "draw", "arm", *k_dims), eta_out if k_dims else eta_out[..., 0])
    if landmarks:
        post = post.assign_coords(landmark=[float(t) for t in landmarks])
        post["p"] = (("chain", "draw", "arm", "landmark"), rates)
    else:
        post["p"] = (("chain", "draw", "arm"), rates[..., 0])
    pp = Group(
        {"y": (("chain", "draw", "obs"), y_rep)},
        # (chain, draw, obs): the order the DataArray coords of a Dataset gave, kept in the file
        coords={"chain": post["chain"].values, "draw": post["draw"].values, **obs_coord},
    )
    const = {"arm_idx": ("obs", model.arrays["arm_idx"]), "k_idx": ("obs", model.arrays["k_idx"])}
    for k in ("lik_n", "lik_se"):
        if k in model.arrays:
            const[k] = ("obs", model.arrays[k])
    children = {
        "posterior": post,
        "posterior_predictive": pp,
        "observed_data": observed_data,
        "constant_data": Group(const, coords=obs_coord),
    }
    children.update(groups)
    return children, attrs
