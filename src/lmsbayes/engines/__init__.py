"""Inference engines: each consumes the one model definition (lmsbayes.model).

- ``exact``: deterministic integration (no compile, milliseconds);
- ``nuts``: the PyMC model sampled by nutpie (the reference; the only module
  that imports PyMC and nutpie).

Both implement the protocol of :mod:`lmsbayes.engines.base`. This module is
the one place that maps an engine's name to the engine and decides which
engine fits a spec (:func:`choose_engine`); nothing else tests an engine's
name. Engines are imported on first use, so that ``import lmsbayes`` stays
light.
"""

from __future__ import annotations

import importlib

from lmsbayes.engines.base import Diagnostics, Engine, EngineResult, FitSettings
from lmsbayes.errors import OptionError
from lmsbayes.spec import ModelSpec, SpecError

__all__ = [
    "AUTO",
    "ENGINE_NAMES",
    "Diagnostics",
    "Engine",
    "EngineResult",
    "FitSettings",
    "choose_engine",
    "get_engine",
]

#: Engine name -> module holding its ``ENGINE``, in the order ``auto`` tries them.
_REGISTRY = {"exact": "lmsbayes.engines.exact", "nuts": "lmsbayes.engines.nuts"}
#: The registered engines' names.
ENGINE_NAMES = tuple(_REGISTRY)
#: The choice "the first engine that supports the spec".
AUTO = "auto"


def get_engine(name: str) -> Engine:
    """The engine registered under ``name``.

    Raises
    ------
    OptionError
        For an unknown name (the message lists the registered ones).
    """
    try:
        module = _REGISTRY[name]
    except (KeyError, TypeError):
        raise OptionError(f"engine must be one of {list(ENGINE_NAMES)}, got {name!r}") from None
    return importlib.import_module(module).ENGINE


def choose_engine(spec: ModelSpec, engine: str | None = None) -> tuple[Engine, str]:
    """The engine a fit of ``spec`` uses, and why when ``auto`` falls back.

    Parameters
    ----------
    spec : ModelSpec
    engine : str, optional
        ``"auto"`` or a registered name; overrides ``spec.engine``.

    Returns
    -------
    engine : Engine
    note : str
        Empty, or one line saying why ``auto`` did not use the first engine.

    Raises
    ------
    OptionError
        For an unknown engine name.
    SpecError
        When the named engine cannot fit the spec (with the reason).
    """
    name = engine or spec.engine
    if name == AUTO:
        first = get_engine(ENGINE_NAMES[0])
        reason = first.supports(spec)
        if reason is None:
            return first, ""
        for other in ENGINE_NAMES[1:]:
            chosen = get_engine(other)
            if chosen.supports(spec) is None:
                return chosen, f"{chosen.label} used: {reason}"
        raise SpecError([f"no engine can fit this spec: {reason}"], spec.name)
    if name not in _REGISTRY:
        raise OptionError(f"engine must be one of {[AUTO, *ENGINE_NAMES]}, got {name!r}") from None
    chosen = get_engine(name)
    reason = chosen.supports(spec)
    if reason:
        raise SpecError([f"engine = {name!r} cannot fit this spec: {reason}"], spec.name)
    return chosen, ""
