"""Fitting: ``fit(spec, data) -> Fit``; diagnostics; netCDF save and load.

Compiling a PyMC model with nutpie/numba takes seconds to tens of seconds,
sampling a meta-analysis well under one. Compiled models are therefore
cached per *structure* (spec model part and data shapes, see
:func:`lmsbayes.model.structure_key`) for the life of the process, and new
data of the same shape are swapped in through the ``pm.Data`` containers.

A :class:`Fit` is a plain value: the DataTree (posterior, posterior
predictive, observed and constant data, sample stats), the spec, the model
inputs and the diagnostics. It saves to one netCDF file with its provenance
(spec text and hash, data SHA-256, package version, seed) and loads back
without PyMC.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from lmsbayes import __version__
from lmsbayes.errors import SamplingError
from lmsbayes.links import inverse_link
from lmsbayes.model import (
    ModelData, arm_logits, check_observations, observation_probability, prepare_data, structure_key,
)
from lmsbayes.spec import ModelSpec, load_spec

# persistence lives in fitfile.py; load_fit stays importable from here (lmsbayes.load_fit)
from lmsbayes.fitfile import load_fit  # noqa: E402

__all__ = ["Diagnostics", "Fit", "FitWarning", "SamplingError", "fit", "load_fit"]

#: Thresholds below/above which a fit is flagged (Vehtari et al. 2021 recommendations).
RHAT_MAX = 1.01
ESS_MIN = 400

_COMPILED: dict[str, object] = {}


class FitWarning(UserWarning):
    """A fit has sampling problems (divergences, R-hat, ESS)."""




@dataclass(frozen=True)
class Diagnostics:
    """Sampling diagnostics of a fit: part of every result, never hidden.

    Attributes
    ----------
    divergences : int
    max_rhat, min_ess_bulk, min_ess_tail : float
        Over the hyper-parameters (alpha, beta, tau, trial_tau).
    table : pandas.DataFrame
        Per variable: max R-hat, min bulk and tail ESS.
    """

    divergences: int
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    n_draws: int
    table: pd.DataFrame = field(compare=False, repr=False)

    @property
    def problems(self) -> list[str]:
        out = []
        if self.divergences:
            out.append(f"{self.divergences} divergent transitions")
        if not self.max_rhat <= RHAT_MAX:
            out.append(f"max R-hat {self.max_rhat:.3f} > {RHAT_MAX}")
        if not self.min_ess_bulk >= ESS_MIN:
            out.append(f"min bulk ESS {self.min_ess_bulk:.0f} < {ESS_MIN}")
        if not self.min_ess_tail >= ESS_MIN:
            out.append(f"min tail ESS {self.min_ess_tail:.0f} < {ESS_MIN}")
        return out

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        """One-line summary for logs and the command line."""
        status = "OK" if self.ok else "PROBLEM: " + "; ".join(self.problems)
        return (f"diagnostics: {self.divergences} divergences, max R-hat {self.max_rhat:.3f}, "
                f"min ESS bulk {self.min_ess_bulk:.0f} / tail {self.min_ess_tail:.0f} "
                f"({self.n_draws} draws) -> {status}")  # fmt: skip


HYPER = ("alpha", "beta", "tau", "trial_tau")


def compute_diagnostics(dt: xr.DataTree, var_names=HYPER) -> Diagnostics:
    """Divergences, R-hat and ESS of the hyper-parameters of a sampled DataTree."""
    import arviz_stats as azs

    post = dt["posterior"].to_dataset()
    names = [v for v in var_names if v in post]
    rows = {}
    for v in names:
        da = post[v]
        rhat = azs.rhat(da)
        bulk = azs.ess(da, method="bulk")
        tail = azs.ess(da, method="tail")
        rows[v] = {"max_rhat": float(np.nanmax(rhat)), "min_ess_bulk": float(np.nanmin(bulk)),
                   "min_ess_tail": float(np.nanmin(tail))}  # fmt: skip
    table = pd.DataFrame(rows).T
    div = int(dt["sample_stats"]["diverging"].sum()) if "sample_stats" in dt else 0
    n = int(post.sizes["chain"] * post.sizes["draw"])
    return Diagnostics(
        divergences=div, max_rhat=float(table["max_rhat"].max()),
        min_ess_bulk=float(table["min_ess_bulk"].min()), min_ess_tail=float(table["min_ess_tail"].min()),
        n_draws=n, table=table,
    )  # fmt: skip


@dataclass(frozen=True)
class Fit:
    """A fitted model: posterior DataTree, spec, inputs and diagnostics.

    Create with :func:`fit`; save with :meth:`save`; restore with :func:`load_fit`.
    """

    datatree: xr.DataTree
    spec: ModelSpec
    data: ModelData
    diagnostics: Diagnostics

    @property
    def posterior(self) -> xr.Dataset:
        return self.datatree["posterior"].to_dataset()

    @property
    def data_sha256(self) -> str:
        return self.data.data_sha256

    def summary(self, var_names=HYPER, prob: float = 0.95) -> pd.DataFrame:
        """ArviZ summary of the hyper-parameters with readable row names.

        Rows read e.g. ``beta[6 mo, line]`` rather than positional indices.
        """
        import arviz as az

        names = [v for v in var_names if v in self.posterior]
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
        from lmsbayes.fitfile import save_fit

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


def _compiled(spec: ModelSpec, data: ModelData):
    """The nutpie-compiled model for this structure, compiled once per process."""
    import nutpie
    import pytensor

    from lmsbayes.model import build_model

    key = structure_key(spec, data)
    if key not in _COMPILED:
        model = build_model(spec, data)  # checks the observations
        # the free variables only: deterministics are computed afterwards in
        # numpy (arm_logits), sparing numba their compilation
        free = [rv.name for rv in model.free_RVs]
        # fastmath lets LLVM reassociate sums, and a kernel compiled fresh is
        # optimised differently from the same kernel loaded from numba's cache:
        # the log density then differs in its last bit, the NUTS trajectories
        # part, and one seed gave two posteriors (first run on a machine vs
        # later runs). Strict IEEE arithmetic costs no measurable time here.
        with pytensor.config.change_flags(numba__fastmath=False):
            _COMPILED[key] = (nutpie.compile_pymc_model(model, var_names=free), model)
    else:
        check_observations(spec, data)  # new data for a log density compiled without parameter checks
    compiled, model = _COMPILED[key]
    names = {d.name for d in model.data_vars}
    updates = {k: v for k, v in data.arrays().items() if k in names}
    return compiled.with_data(**updates), model


def fit(
    spec: ModelSpec | str | os.PathLike[str] = "default",
    data: pd.DataFrame | ModelData | str | os.PathLike[str] | None = None,
    *,
    strict: bool = False,
    progress: bool = False,
    seed: int | None = None,
) -> Fit:
    """Fit a model spec to trial-arm data.

    Parameters
    ----------
    spec : ModelSpec, str or path
        A spec, a TOML path, or a bundled spec name (default ``"default"``).
    data : DataFrame, ModelData, path or None
        The arm table (``load_trials``), prepared inputs, a CSV path, or None
        for the bundled data.
    strict : bool
        Raise :class:`SamplingError` instead of warning when diagnostics fail.
    progress : bool
        Show nutpie's progress bar.
    seed : int, optional
        Overrides ``spec.sampler.seed``.

    Returns
    -------
    Fit

    Warns
    -----
    FitWarning
        When there are divergences, R-hat > 1.01 or ESS < 400 (and not strict).
    """
    import nutpie

    from lmsbayes.data import load_trials

    if not isinstance(spec, ModelSpec):
        spec = load_spec(spec)
    if seed is not None:
        spec = spec.replace(**{"sampler.seed": int(seed)})
    if not isinstance(data, ModelData):
        trials = data if isinstance(data, pd.DataFrame) else load_trials(data)
        data = prepare_data(spec, trials)
    compiled, model = _compiled(spec, data)
    s = spec.sampler
    dt = nutpie.sample(
        compiled, draws=s.draws, tune=s.tune, chains=s.chains, seed=s.seed,
        progress_bar=progress, target_accept=s.target_accept, save_warmup=False,
        adaptation=s.adaptation,
    )  # fmt: skip
    dt = _finish_datatree(dt, spec, data)
    diag = compute_diagnostics(dt)
    result = Fit(datatree=dt, spec=spec, data=data, diagnostics=diag)
    if not diag.ok:
        msg = f"fit of spec {spec.name!r}: " + "; ".join(diag.problems)
        if strict:
            raise SamplingError(msg)
        warnings.warn(msg, FitWarning, stacklevel=2)
    return result


def _finish_datatree(dt: xr.DataTree, spec: ModelSpec, data: ModelData) -> xr.DataTree:
    """Current coords, observed data and posterior predictive (numpy, no recompilation)."""
    post = dt["posterior"].to_dataset()
    # nutpie keeps the coords it was compiled with: relabel with this data's arms
    relabel = {"arm": list(data.arms.index)}
    if "arm_latent" in post.dims:
        relabel["arm_latent"] = [data.arms.index[i] for i in data.latent_uterine]
    if "trial" in post.dims:
        relabel["trial"] = list(data.trials)
    post = post.assign_coords(relabel)
    post["theta"] = arm_logits(post, spec, data)
    post["p"] = inverse_link(post["theta"], spec.link)
    arr = data.arrays()
    rng = np.random.default_rng(spec.sampler.seed + 1)
    obs_coord = {"obs": np.arange(len(data.obs))}
    if spec.model.likelihood == "logit-normal":
        theta = post["theta"].values[:, :, arr["arm_idx"], arr["landmark_idx"]]
        y_rep = rng.normal(theta, arr["se_logit"])
        observed = arr["logit_rate"]
    else:  # the binomial node the likelihood observes (conditional counts for joint-cloglog)
        n_key, y_key = ("n_cond", "y_cond") if spec.joint else ("n_eff", "y_eff")
        y_rep = rng.binomial(arr[n_key], observation_probability(post["theta"].values, spec, data))
        observed = arr[y_key]
    pp = xr.Dataset({"y": (("chain", "draw", "obs"), y_rep)}, coords={**obs_coord,
                     "chain": post["chain"], "draw": post["draw"]})  # fmt: skip
    children = {
        "posterior": xr.DataTree(post),
        "posterior_predictive": xr.DataTree(pp),
        "observed_data": xr.DataTree(xr.Dataset({"y": ("obs", observed)}, coords=obs_coord)),
        "constant_data": xr.DataTree(xr.Dataset(
            {"n_eff": ("obs", arr["n_eff"]), "se_logit": ("obs", arr["se_logit"]),
             "arm_idx": ("obs", arr["arm_idx"]), "landmark_idx": ("obs", arr["landmark_idx"]),
             **{k: ("obs", arr[k]) for k in ("n_cond", "prev_landmark_idx") if k in arr}},
            coords=obs_coord)),
    }  # fmt: skip
    if "sample_stats" in dt:
        children["sample_stats"] = xr.DataTree(dt["sample_stats"].to_dataset())
    out = xr.DataTree.from_dict({f"/{k}": v.to_dataset() for k, v in children.items()})
    out.attrs.update(dt.attrs)
    out.attrs.update(lmsbayes_version=__version__, spec_name=spec.name, spec_hash=spec.hash,
                     data_sha256=data.data_sha256, seed=int(spec.sampler.seed))  # fmt: skip
    return out
