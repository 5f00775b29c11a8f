"""The engine protocol: ``Engine.fit(model, settings, progress) -> EngineResult``.

Every engine consumes the one model definition (:class:`lmsbayes.model.Model`)
and returns its draws of the free variables with typed diagnostics.
``lmsbayes.fit``, ``lmsbayes.validate`` and ``lmsbayes.calibrate`` call only
this protocol; which engine fits is decided in one place,
:func:`lmsbayes.engines.choose_engine`.

The diagnostics of an engine are built in one place, its
:meth:`Engine.diagnostics`, from the draws and the statistics the engine
stores with them, so that a fit loaded from disk has the diagnostics it was
fitted with.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import xarray as xr

    from lmsbayes.model.definition import Model
    from lmsbayes.spec import ModelSpec

__all__ = [
    "EDGE_MASS_MAX",
    "ESS_MIN",
    "HYPER",
    "RHAT_MAX",
    "Diagnostics",
    "Engine",
    "EngineResult",
    "FitSettings",
    "Progress",
]

#: Thresholds below/above which a fit is flagged (Vehtari et al. 2021 recommendations).
RHAT_MAX = 1.01
ESS_MIN = 400
EDGE_MASS_MAX = 0.01

#: The hyper-parameters a fit's diagnostics and summary report.
HYPER = ("alpha", "beta", "tau", "shape", "group_tau", "drift_scale", "drift_step", "discount")

#: A progress callback: called with one line per step.
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Diagnostics:
    """Inference diagnostics of a fit: part of every result, never hidden.

    Each engine returns its own subclass, which decides what a problem is
    (:attr:`problems`) and how the diagnostics read in one line (:meth:`line`).

    Attributes
    ----------
    engine : str
        The engine's registry name.
    divergences : int
    max_rhat : float
        NaN for independent draws (no chains to compare).
    min_ess_bulk, min_ess_tail : float
        Over the hyper-parameters; for importance sampling the importance ESS.
    n_draws : int
    khat : float
        Pareto k-hat of the importance weights (NaN without importance sampling).
    is_ess : float
        Importance-sampling effective sample size.
    tau_grid_edge_mass : float
        Posterior mass in the outer cells of the log-tau grid (NaN without a grid).
    khat_max : float
    note : str
        E.g. why the spec's ``auto`` engine fell back to another one.
    table : pandas.DataFrame
        Per variable: max R-hat, min bulk and tail ESS (samplers with chains).
    """

    divergences: int
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    n_draws: int
    table: pd.DataFrame = field(compare=False, repr=False)
    engine: str = ""
    khat: float = math.nan
    is_ess: float = math.nan
    tau_grid_edge_mass: float = math.nan
    khat_max: float = 0.7
    proposal: str = ""
    note: str = ""
    mode_converged: bool = True
    n_modes: int = 1
    n_proposals: int = 0

    #: True when the draws are independent (their Monte Carlo error follows from :attr:`ess`).
    independent_draws: ClassVar[bool] = False

    @property
    def ess(self) -> float:
        """The effective sample size a Monte Carlo error of these draws uses."""
        return self.min_ess_bulk

    @property
    def problems(self) -> list[str]:
        """The inference problems, one phrase each (empty when the fit is sound)."""
        raise NotImplementedError

    @property
    def ok(self) -> bool:
        """True when there is no inference problem."""
        return not self.problems

    def line(self) -> str:
        """One-line summary for logs and the command line."""
        raise NotImplementedError

    def _status(self) -> str:
        return "OK" if self.ok else "PROBLEM: " + "; ".join(self.problems)


@dataclass(frozen=True)
class FitSettings:
    """What a caller asks of an engine beyond the spec's own settings.

    Attributes
    ----------
    seed : int
        Seed of the engine's random numbers.
    draws : int, optional
        Draws to return (default: the spec's setting for the engine).
    latent : bool
        Draw the arms' random effects and latent fractions too (False: the
        global parameters only, with the arm-level variables set to zero
        where the engine can skip them; validation refits need no more).
    start : object, optional
        A warm start from :meth:`Engine.warm_start` (e.g. the full data's
        posterior mode for a leave-one-out refit).
    """

    seed: int
    draws: int | None = None
    latent: bool = True
    start: Any = None


@dataclass(frozen=True)
class EngineResult:
    """What an engine returns: draws of the free variables, engine groups and diagnostics.

    Attributes
    ----------
    posterior : xarray.Dataset
        Dims ``chain``, ``draw`` and the model's coords: the global
        parameters, ``z`` and ``uterine_latent`` (and trial effects).
    groups : dict of str to xarray.Dataset
        Other DataTree groups the engine keeps (``sample_stats``,
        ``importance_sampling``).
    attrs : dict
        Engine statistics stored with the fit (``engine`` is the engine's name).
    diagnostics : Diagnostics
    """

    posterior: xr.Dataset
    groups: dict[str, xr.Dataset]
    attrs: dict[str, Any]
    diagnostics: Diagnostics

    def values(self, model: Model) -> dict[str, np.ndarray]:
        """The global parameters' draws as arrays (draw, *shape), chains stacked."""
        out = {}
        for p in model.params:
            x = self.posterior[p.name].transpose("chain", "draw", *p.dims).values
            out[p.name] = x.reshape((-1, *p.shape))
        return out


class Engine(Protocol):
    """An inference engine of the one model definition."""

    #: The engine's registry name (``engine = ...`` in a spec, ``--engine`` on the command line).
    name: str
    #: How messages name the engine ("NUTS used: ...").
    label: str

    def supports(self, spec: ModelSpec) -> str | None:
        """None if this engine fits the spec, else the reason it cannot."""

    def fit(self, model: Model, settings: FitSettings, progress: Progress) -> EngineResult:
        """Fit the model; report long steps through ``progress``."""

    def diagnostics(
        self, posterior: xr.Dataset, groups: dict[str, xr.Dataset], attrs: dict[str, Any]
    ) -> Diagnostics:
        """The diagnostics of draws this engine made (also for a fit loaded from disk)."""

    def warm_start(self, model: Model) -> Any:
        """A start for refits of similar data (:attr:`FitSettings.start`), or None."""

    def fast(self, spec: ModelSpec, draws: int) -> ModelSpec:
        """The spec of a smoke run: at most ``draws`` draws where that shortens the run."""
