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

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from lmsbayes import __version__
from lmsbayes.errors import SamplingError

# persistence lives in fitfile.py; load_fit stays importable from here (lmsbayes.load_fit)
from lmsbayes.fitfile import load_fit  # noqa: E402
from lmsbayes.model.definition import Model
from lmsbayes.model.inputs import ModelData
from lmsbayes.model.prepare import prepare_data
from lmsbayes.spec import ModelSpec, SpecError, load_spec

__all__ = ["Diagnostics", "Fit", "FitWarning", "SamplingError", "fit", "load_fit", "choose_engine"]

#: Thresholds below/above which a fit is flagged (Vehtari et al. 2021 recommendations).
RHAT_MAX = 1.01
ESS_MIN = 400
EDGE_MASS_MAX = 0.01


class FitWarning(UserWarning):
    """A fit has inference problems (divergences, R-hat, ESS, importance k-hat)."""


@dataclass(frozen=True)
class Diagnostics:
    """Inference diagnostics of a fit: part of every result, never hidden.

    Attributes
    ----------
    engine : {'nuts', 'exact'}
    divergences : int
    max_rhat : float
        NaN for the exact engine (independent draws: no chains to compare).
    min_ess_bulk, min_ess_tail : float
        Over the hyper-parameters; for the exact engine the importance ESS.
    n_draws : int
    khat : float
        Pareto k-hat of the importance weights (exact engine; NaN for NUTS).
    is_ess : float
        Importance-sampling effective sample size (exact engine).
    tau_grid_edge_mass : float
        Posterior mass in the outer cells of the log-tau grid (exact engine; NaN without a grid).
    khat_max : float
    note : str
        E.g. why NUTS was used under ``engine = "auto"``.
    table : pandas.DataFrame
        Per variable: max R-hat, min bulk and tail ESS (NUTS).
    """

    divergences: int
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    n_draws: int
    table: pd.DataFrame = field(compare=False, repr=False)
    engine: str = "nuts"
    khat: float = math.nan
    is_ess: float = math.nan
    tau_grid_edge_mass: float = math.nan
    khat_max: float = 0.7
    proposal: str = ""
    note: str = ""
    mode_converged: bool = True
    n_modes: int = 1
    n_proposals: int = 0

    @property
    def problems(self) -> list[str]:
        out = []
        if self.engine == "exact":
            if not self.khat <= self.khat_max:
                out.append(f"importance-sampling k-hat {self.khat:.2f} > {self.khat_max}")
            if not self.is_ess >= ESS_MIN:
                out.append(f"importance ESS {self.is_ess:.0f} < {ESS_MIN}")
            if self.tau_grid_edge_mass > EDGE_MASS_MAX:
                out.append(
                    f"{100 * self.tau_grid_edge_mass:.1f}% of the posterior mass at the edge of the tau grid"
                )
            if not self.mode_converged:
                out.append("the posterior mode search did not converge")
            return out
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
        if self.engine == "exact":
            grid = (
                ""
                if math.isnan(self.tau_grid_edge_mass)
                else f", tau grid edge mass {self.tau_grid_edge_mass:.4f}"
            )
            if self.n_modes > 1:
                grid += f", {self.n_modes} posterior modes (mixture proposal)"
            of = (
                f"{self.n_proposals} proposals, {self.n_draws} draws"
                if self.n_proposals
                else f"{self.n_draws} draws"
            )
            return (
                f"diagnostics (exact engine): importance k-hat {self.khat:.2f}, importance ESS "
                f"{self.is_ess:.0f} of {of}{grid} -> {status}"
            )
        return (
            f"diagnostics (NUTS): {self.divergences} divergences, max R-hat {self.max_rhat:.3f}, "
            f"min ESS bulk {self.min_ess_bulk:.0f} / tail {self.min_ess_tail:.0f} "
            f"({self.n_draws} draws) -> {status}"
        )


HYPER = ("alpha", "beta", "tau", "shape", "group_tau", "drift_scale", "drift_step", "discount")


def compute_diagnostics(dt: xr.DataTree, var_names=HYPER) -> Diagnostics:
    """Diagnostics of a DataTree: from the engine's attrs (exact) or the draws (NUTS)."""
    post = dt["posterior"].to_dataset()
    n = int(post.sizes["chain"] * post.sizes["draw"])
    a = dt.attrs
    if a.get("engine") == "exact":
        return Diagnostics(
            divergences=0,
            max_rhat=math.nan,
            min_ess_bulk=float(a["is_ess"]),
            min_ess_tail=float(a["is_ess"]),
            n_draws=n,
            table=pd.DataFrame(),
            engine="exact",
            khat=float(a["khat"]),
            is_ess=float(a["is_ess"]),
            tau_grid_edge_mass=float(a.get("tau_grid_edge_mass", math.nan)),
            khat_max=float(a.get("khat_max", 0.7)),
            proposal=str(a.get("proposal", "")),
            note=str(a.get("engine_note", "")),
            mode_converged=bool(int(a.get("mode_converged", 1))),
            n_modes=int(a.get("n_modes", 1)),
            n_proposals=int(a.get("n_proposals", 0)),
        )
    import arviz_stats as azs

    names = [v for v in var_names if v in post]
    rows = {}
    for v in names:
        da = post[v]
        rows[v] = {
            "max_rhat": float(np.nanmax(azs.rhat(da))),
            "min_ess_bulk": float(np.nanmin(azs.ess(da, method="bulk"))),
            "min_ess_tail": float(np.nanmin(azs.ess(da, method="tail"))),
        }
    table = pd.DataFrame(rows).T
    div = int(dt["sample_stats"]["diverging"].sum()) if "sample_stats" in dt else 0
    return Diagnostics(
        divergences=div,
        max_rhat=float(table["max_rhat"].max()),
        min_ess_bulk=float(table["min_ess_bulk"].min()),
        min_ess_tail=float(table["min_ess_tail"].min()),
        n_draws=n,
        table=table,
        engine="nuts",
        note=str(a.get("engine_note", "")),
    )


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

    @property
    def engine(self) -> str:
        return self.diagnostics.engine

    @property
    def model(self) -> Model:
        """The model definition of this fit (lmsbayes.model.definition.Model)."""
        return Model(self.spec, self.data)

    def summary(self, var_names=HYPER, prob: float = 0.95) -> pd.DataFrame:
        """Summary of the hyper-parameters with readable row names.

        Mean, sd and the equal-tailed ``prob`` interval; for NUTS also the
        ArviZ columns (MCSE, ESS, R-hat); for the exact engine the Monte
        Carlo standard error of the mean from the importance ESS.
        """
        names = [v for v in var_names if v in self.posterior]
        if self.engine == "exact":
            rows = {}
            lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
            ess = self.diagnostics.is_ess
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


def choose_engine(spec: ModelSpec, engine: str | None = None) -> tuple[str, str]:
    """(engine, note): the engine a fit uses, and why when ``auto`` falls back to NUTS."""
    from lmsbayes.engines.exact import supports

    engine = engine or spec.engine
    if engine not in ("auto", "exact", "nuts"):
        from lmsbayes.errors import OptionError

        raise OptionError(f"engine must be 'auto', 'exact' or 'nuts', got {engine!r}")
    reason = supports(spec)
    if engine == "exact" and reason:
        raise SpecError([f"engine = 'exact' cannot fit this spec: {reason}"], spec.name)
    if engine == "auto":
        return ("nuts", f"NUTS used: {reason}") if reason else ("exact", "")
    return engine, ""


def fit(
    spec: ModelSpec | str | os.PathLike[str] = "default",
    data=None,
    *,
    engine: str | None = None,
    strict: bool = False,
    progress: bool = False,
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
    engine : {'auto', 'exact', 'nuts'}, optional
        Overrides the spec's ``engine``.
    strict : bool
        Raise :class:`SamplingError` instead of warning when diagnostics fail.
    progress : bool
        Show nutpie's progress bar (NUTS).
    seed : int, optional
        Overrides ``spec.sampler.seed``.

    Returns
    -------
    Fit

    Warns
    -----
    FitWarning
        When the diagnostics fail (and not strict).
    """
    if not isinstance(spec, ModelSpec):
        spec = load_spec(spec)
    if seed is not None:
        spec = spec.replace(**{"sampler.seed": int(seed)})
    if not isinstance(data, ModelData):
        data = prepare_data(spec, _read_data(data))
    used, note = choose_engine(spec, engine)
    model = Model(spec, data)
    if used == "exact":
        from lmsbayes.engines.exact import fit_exact

        res = fit_exact(model, spec.exact, spec.sampler.seed)
        post, groups, attrs = _exact_groups(model, res)
    else:
        from lmsbayes.engines import nuts

        dt = nuts.sample(spec, data, progress=progress)
        dt.attrs["engine"] = "nuts"
        post = dt["posterior"].to_dataset()
        groups = {
            name: dt[name].to_dataset()
            for name in ("sample_stats", "importance_sampling")
            if name in dt
        }
        attrs = dict(dt.attrs)
    if note:
        attrs["engine_note"] = note
    dt = _finish_datatree(post, groups, attrs, model, relabel=used != "exact")
    diag = compute_diagnostics(dt)
    result = Fit(datatree=dt, spec=spec, data=data, diagnostics=diag)
    if not diag.ok:
        msg = f"fit of spec {spec.name!r}: " + "; ".join(diag.problems)
        if strict:
            raise SamplingError(msg)
        warnings.warn(msg, FitWarning, stacklevel=2)
    return result


def _read_data(data):
    """The input tables: the bundled data, a CSV path, or what the caller passed."""
    if data is None or isinstance(data, (str, os.PathLike)):
        from lmsbayes.data import load_trials

        path = None if data is None else Path(data)
        if path is not None and path.is_file():
            head = path.read_text(encoding="utf-8", errors="replace").split("\n", 1)[0]
            cols = [c.strip().strip('"') for c in head.split(",")]
            if "study" in cols and "arm_id" not in cols:  # a plain binomial table
                table = pd.read_csv(path)
                table.attrs["path"] = str(path)
                import hashlib

                table.attrs["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
                return table
        return load_trials(data)
    return data


def _exact_groups(model: Model, res) -> tuple[xr.Dataset, dict, dict]:
    """The exact engine's draws as NUTS gives them (one chain of independent draws): posterior, groups, attrs."""
    coords = model.coords
    S = res.z.shape[0]
    base = {"chain": [0], "draw": np.arange(S)}
    data_vars = {}
    for p in model.params:
        data_vars[p.name] = (("chain", "draw", *p.dims), res.values[p.name][None])
    z = res.z if model.per_landmark else res.z[..., 0]
    data_vars["z"] = (("chain", "draw", *model.z_dims), z[None])
    if model.data.latent.size:
        data_vars["uterine_latent"] = (("chain", "draw", "arm_latent"), res.u[None])
    if model.grouped:
        data_vars["v"] = (("chain", "draw", "group"), res.v[None][..., 0])
    post = xr.Dataset(data_vars, coords={**base, **{k: v for k, v in coords.items()}})
    d = res.diagnostics
    prop = res.proposals
    isg = xr.Dataset(
        {
            "theta": (("is_draw", "parameter"), prop["theta"]),
            "log_weight": (("is_draw",), prop["log_weight"]),
        },
        coords={"parameter": list(prop["names"])},
    )
    attrs = dict(
        engine="exact",
        khat=d["khat"],
        is_ess=d["is_ess"],
        proposal=d["proposal"],
        tau_grid_edge_mass=d["tau_grid_edge_mass"],
        khat_max=model.spec.exact.khat_max,
        mode_converged=int(d["mode_converged"]),
        exact_seconds=d["seconds"],
        n_logpost_evals=d["n_logpost_evals"],
        n_modes=int(d.get("n_modes", 1)),
        n_proposals=int(d.get("n_proposals", 0)),
    )
    return post, {"importance_sampling": isg}, attrs


def _finish_datatree(
    post: xr.Dataset, groups: dict, attrs: dict, model: Model, relabel: bool = True
) -> xr.DataTree:
    """Coords, derived theta and p, observed data and posterior predictive (numpy), as one DataTree.

    ``post``: the posterior draws; ``groups``: other groups kept as they are
    (sample_stats, importance_sampling); ``relabel``: set the data's coords
    (nutpie keeps those it was compiled with; the exact engine's are right).
    """
    from lmsbayes.model.derived import (
        _block_cholesky,
        arm_rates,
        observed,
        posterior_arrays,
        posterior_predictive,
        predictor,
    )

    spec, data = model.spec, model.data
    if relabel:  # nutpie keeps the coords it was compiled with: relabel with this data's
        coords = {k: v for k, v in model.coords.items() if k in post.dims}
        if "group" in post.dims:
            coords["group"] = list(data.groups)
        post = post.assign_coords(coords)
    arrays = posterior_arrays(model, post)
    landmarks = list(spec.landmarks) if spec.survival else list(data.landmarks)
    rng = np.random.default_rng(spec.sampler.seed + 1)
    blocks = _block_cholesky(model) if data.family == "survival" else None
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
    obs_coord = {"obs": np.arange(len(data.obs))}
    pp = xr.Dataset(
        {"y": (("chain", "draw", "obs"), y_rep)},
        coords={**obs_coord, "chain": post["chain"], "draw": post["draw"]},
    )
    const = {"arm_idx": ("obs", model.arrays["arm_idx"]), "k_idx": ("obs", model.arrays["k_idx"])}
    for k in ("lik_n", "lik_se"):
        if k in model.arrays:
            const[k] = ("obs", model.arrays[k])
    children = {
        "posterior": post,
        "posterior_predictive": pp,
        "observed_data": xr.Dataset({"y": ("obs", observed(model))}, coords=obs_coord),
        "constant_data": xr.Dataset(const, coords=obs_coord),
    }
    children.update(groups)
    out = xr.DataTree.from_dict({f"/{k}": v for k, v in children.items()})
    out.attrs.update(attrs)
    out.attrs.update(
        lmsbayes_version=__version__,
        spec_name=spec.name,
        spec_hash=spec.hash,
        data_sha256=data.data_sha256,
        seed=int(spec.sampler.seed),
    )
    return out
