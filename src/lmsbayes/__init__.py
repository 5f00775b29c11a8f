"""lmsbayes: Bayesian meta-analysis of historical leiomyosarcoma trials.

The package turns published trial-arm results into pooled and predictive
progression-free-survival rates, phase II efficacy thresholds, and
meta-analytic-predictive priors for adaptive designs.

Heavy dependencies (PyMC, nutpie) are imported lazily so that
``import lmsbayes`` stays cheap; ``lmsbayes.prior`` and ``lmsbayes.design``
never import PyMC at all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lmsbayes.version import __version__

# public name -> module that defines it; resolved on first attribute access
_LAZY = {
    "load_trials": "lmsbayes.data",
    "read_binomial": "lmsbayes.data",
    "long_table": "lmsbayes.data",
    "DataValidationError": "lmsbayes.data",
    "ModelSpec": "lmsbayes.spec",
    "load_spec": "lmsbayes.spec",
    "build_model": "lmsbayes.engines.nuts",
    "Model": "lmsbayes.model.definition",
    "prepare_data": "lmsbayes.model.prepare",
    "Trials": "lmsbayes.data",
    "thresholds": "lmsbayes.predict",
    "threshold_table": "lmsbayes.predict",
    "Setting": "lmsbayes.predict",
    "BetaMixture": "lmsbayes.prior",
    "fit_mixture": "lmsbayes.prior",
    "robustify": "lmsbayes.prior",
    "ess": "lmsbayes.prior",
    "map_prior": "lmsbayes.prior",
    "read_prior": "lmsbayes.prior",
    "conflict": "lmsbayes.prior",
    "simon": "lmsbayes.design",
    "BayesianSingleArm": "lmsbayes.design",
    "TwoArmDesign": "lmsbayes.design",
    "operating_characteristics": "lmsbayes.design",
    "PosteriorDecision": "lmsbayes.design",
    "DifferenceDecision": "lmsbayes.design",
    "HazardRatioDecision": "lmsbayes.design",
    "two_arm_oc": "lmsbayes.design",
    "two_arm_sample_size": "lmsbayes.design",
    "borrowing_tradeoff": "lmsbayes.design",
    "find_robust_weight": "lmsbayes.design",
}

# ``fit`` is both a module and the function users call. Binding the function
# eagerly (fit.py imports PyMC only inside functions) guarantees that
# ``lmsbayes.fit`` is the function however the submodule was first imported.
# Same reason for ``evidence``: module and function share the name.
from lmsbayes.evidence import evidence  # noqa: E402
from lmsbayes.fit import Fit, fit, load_fit  # noqa: E402
from lmsbayes.predict import predict  # noqa: E402  (same reason)

__all__ = ["__version__", "Fit", "evidence", "fit", "load_fit", "predict", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'lmsbayes' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from lmsbayes.data import DataValidationError, load_trials, long_table
    from lmsbayes.engines.nuts import build_model
    from lmsbayes.model.definition import Model
    from lmsbayes.model.prepare import prepare_data
    from lmsbayes.predict import Setting, predict, thresholds
    from lmsbayes.prior import BetaMixture, ess, fit_mixture, map_prior, robustify
    from lmsbayes.spec import ModelSpec, load_spec
