"""The NUTS engine: the PyMC model of the one definition, sampled by nutpie.

The only module of lmsbayes that imports PyMC, PyTensor and nutpie. The
model is built from :class:`lmsbayes.model.definition.Model`: its priors, its linear
predictor and its log-likelihood terms, evaluated with PyTensor operations,
so that it cannot drift from the exact engine (a test holds their joint log
densities equal at random points). It also fits what the exact engine does
not integrate: group effects of per-landmark families.

Compiled models are cached per structure for the life of the process; new
data of the same shape go in through the ``pm.Data`` containers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from lmsbayes.engines.base import (
    ESS_MIN,
    HYPER,
    RHAT_MAX,
    Diagnostics,
    EngineResult,
    FitSettings,
    Progress,
)
from lmsbayes.model.definition import Model, structure_key
from lmsbayes.model.inputs import ModelData
from lmsbayes.spec import ModelSpec

__all__ = ["ENGINE", "NutsDiagnostics", "NutsEngine", "build_model", "sample", "pytensor_ops"]

_COMPILED: dict[str, object] = {}


def pytensor_ops():
    """The operations of lmsbayes.model.families, in PyTensor."""
    import pytensor.tensor as pt

    return SimpleNamespace(
        exp=pt.exp,
        log=pt.log,
        log1p=pt.log1p,
        expm1=pt.expm1,
        log1pexp=pt.softplus,
        log1mexp=pt.log1mexp,
        where=pt.switch,
        square=pt.sqr,
        sum=lambda x, axis=None: pt.sum(x, axis=axis),
        concatenate=lambda xs, axis=-1: pt.concatenate(xs, axis=axis),
        log_ndtr=_log_ndtr,
    )


def _log_ndtr(x):
    """log Phi(x) in PyTensor, accurate in the lower tail (PyMC's normal log CDF)."""
    from pymc.distributions.dist_math import normal_lcdf

    return normal_lcdf(0.0, 1.0, x)


def build_model(spec: ModelSpec, data: ModelData):
    """The PyMC model of (spec, data); see :func:`pymc_model`."""
    return pymc_model(Model(spec, data))


def pymc_model(m: Model):
    """The PyMC model of a model definition.

    Returns
    -------
    pymc.Model
        Coords ``arm``, ``covariate``, ``stratum`` (and ``landmark``,
        ``shape_group``, ``arm_latent``, ``group``, ``drift_interval`` when used). Free
        variables: the global parameters of :attr:`lmsbayes.model.definition.Model.params`
        (``group_tau``, ``drift_scale``, ``drift_step``, ``discount`` among them
        when the spec has them), ``z`` (non-centred random effects),
        ``uterine_latent`` and, with group effects, ``v``. The likelihood is the potential
        ``loglik``: the terms of lmsbayes.model.families summed.
    """
    import pymc as pm
    import pytensor.tensor as pt

    spec, data = m.spec, m.data
    ops = pytensor_ops()
    re = spec.random_effects
    coords = m.coords
    # no parameter checks in the log density: every parameter is transformed to its
    # support and the data were validated; the checks add boolean kernels to compile
    with pm.Model(coords=coords, check_bounds=False) as model:
        arrays = {k: pm.Data(k, v, shape=v.shape) for k, v in m.arrays.items()}
        values = {}
        for p in m.params:
            dims = p.dims or None
            if p.transform == "ordered":
                from pymc.distributions.transforms import ordered

                # alpha increasing in t so that S = exp(-exp(theta)) never rises with time
                values[p.name] = p.prior.create(
                    p.name, dims=dims, transform=ordered, initval=np.linspace(-1.0, 0.0, p.shape[0])
                )
            else:
                values[p.name] = p.prior.create(p.name, dims=dims)
        if re.distribution == "student_t":
            z = pm.StudentT("z", nu=re.nu, mu=0.0, sigma=1.0, dims=m.z_dims)
        else:
            z = pm.Normal("z", 0.0, 1.0, dims=m.z_dims)
        z2 = m.z_canonical(z)
        du = None
        if data.latent.size:
            u = pm.Beta("uterine_latent", 1.0, 1.0, dims="arm_latent")
            du = pt.set_subtensor(pt.zeros(data.n_arms)[data.latent], u - data.uterine_centre)
        c = m.canonical(values, xp=pt)
        eta = (
            m.base_predictor(ops, c, arrays["X"], arrays["Xu"], du) + m.effect_scale(c, arrays) * z2
        )
        if m.grouped:  # group effects (trials or regimens): v ~ Normal(0, 1), scaled by group_tau
            v = pm.Normal("v", 0.0, 1.0, dims=("group", *m.effect_dims))
            eta = eta + m.group_shift(c, m.z_canonical(v), arrays)
        terms = m.loglik_terms(ops, eta, c, arrays)
        pm.Potential("loglik", pt.sum(terms) + m.constant())
    return model


def _compiled(m: Model):
    """The nutpie-compiled model for this structure, compiled once per process."""
    import nutpie
    import pytensor

    key = structure_key(m.spec, m.data)
    if key not in _COMPILED:
        model = pymc_model(m)
        free = [rv.name for rv in model.free_RVs]
        # fastmath lets LLVM reassociate sums, and a kernel compiled fresh is optimised
        # differently from the same kernel loaded from numba's cache: one seed then gave
        # two posteriors (first run on a machine vs later runs). Strict IEEE arithmetic
        # costs no measurable time here.
        with pytensor.config.change_flags(numba__fastmath=False):
            _COMPILED[key] = (nutpie.compile_pymc_model(model, var_names=free), model)
    compiled, model = _COMPILED[key]
    # containers the compiler optimised away (e.g. an empty design matrix) cannot be updated
    names = {var.name for var in getattr(compiled, "shared_var_keys", {})}
    updates = {k: v for k, v in m.arrays.items() if k in names}
    return compiled.with_data(**updates), model


def sample(spec: ModelSpec, data: ModelData, *, progress: bool = False):
    """NUTS draws of the free variables (DataTree with ``posterior`` and ``sample_stats``)."""
    return _sample(Model(spec, data), spec.sampler.seed, None, progress)


def _sample(m: Model, seed: int, draws: int | None, progress_bar: bool):
    import nutpie

    compiled, _ = _compiled(m)
    s = m.spec.sampler
    return nutpie.sample(
        compiled,
        draws=s.draws if draws is None else int(draws),
        tune=s.tune,
        chains=s.chains,
        seed=seed,
        progress_bar=progress_bar,
        target_accept=s.target_accept,
        save_warmup=False,
        adaptation=s.adaptation,
    )


# ============================================================================ the engine protocol


@dataclass(frozen=True)
class NutsDiagnostics(Diagnostics):
    """Diagnostics of NUTS: divergences, R-hat and bulk/tail ESS of the hyper-parameters."""

    @property
    def problems(self) -> list[str]:
        """Divergence, R-hat and ESS problems."""
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

    def line(self) -> str:
        """One-line summary for logs and the command line."""
        return (
            f"diagnostics (NUTS): {self.divergences} divergences, max R-hat {self.max_rhat:.3f}, "
            f"min ESS bulk {self.min_ess_bulk:.0f} / tail {self.min_ess_tail:.0f} "
            f"({self.n_draws} draws) -> {self._status()}"
        )


class NutsEngine:
    """NUTS (PyMC + nutpie) under the protocol of :mod:`lmsbayes.engines.base`."""

    name = "nuts"
    label = "NUTS"

    def supports(self, spec) -> str | None:
        """None: NUTS fits every spec."""
        return None

    def fit(self, model: Model, settings: FitSettings, progress: Progress) -> EngineResult:
        """Sample the model with nutpie; the posterior carries the model's coords."""
        progress(
            "NUTS: compiling (the first run on a machine compiles with numba, 30-45 s; later runs "
            "reuse its cache) and sampling ..."
        )
        dt = _sample(model, settings.seed, settings.draws, progress_bar=False)
        post = dt["posterior"].to_dataset()
        # nutpie keeps the coords it was compiled with: relabel with this data's
        coords = {k: v for k, v in model.coords.items() if k in post.dims}
        if "group" in post.dims:
            coords["group"] = list(model.data.groups)
        post = post.assign_coords(coords)
        groups = {
            name: dt[name].to_dataset()
            for name in ("sample_stats", "importance_sampling")
            if name in dt
        }
        attrs = {**dt.attrs, "engine": self.name}
        return EngineResult(post, groups, attrs, self.diagnostics(post, groups, attrs))

    def diagnostics(self, posterior, groups, attrs) -> NutsDiagnostics:
        """R-hat and ESS of the hyper-parameters' draws, divergences from the sample stats."""
        import arviz_stats as azs
        import pandas as pd

        n = int(posterior.sizes["chain"] * posterior.sizes["draw"])
        rows = {}
        for v in (v for v in HYPER if v in posterior):
            da = posterior[v]
            rows[v] = {
                "max_rhat": float(np.nanmax(azs.rhat(da))),
                "min_ess_bulk": float(np.nanmin(azs.ess(da, method="bulk"))),
                "min_ess_tail": float(np.nanmin(azs.ess(da, method="tail"))),
            }
        table = pd.DataFrame(rows).T
        stats = groups.get("sample_stats")
        div = int(stats["diverging"].sum()) if stats is not None else 0
        return NutsDiagnostics(
            divergences=div,
            max_rhat=float(table["max_rhat"].max()),
            min_ess_bulk=float(table["min_ess_bulk"].min()),
            min_ess_tail=float(table["min_ess_tail"].min()),
            n_draws=n,
            table=table,
            engine=self.name,
            khat=math.nan,
            note=str(attrs.get("engine_note", "")),
        )

    def warm_start(self, model: Model) -> None:
        """None: NUTS adapts its own start."""
        return None

    def fast(self, spec: ModelSpec, draws: int) -> ModelSpec:
        """At most ``draws`` draws and tuning steps per chain (a spec asking for less keeps it)."""
        return spec.replace(
            **{
                "sampler.draws": min(spec.sampler.draws, draws),
                "sampler.tune": min(spec.sampler.tune, draws),
            }
        )


#: The engine the registry (lmsbayes.engines) returns for ``"nuts"``.
ENGINE = NutsEngine()
