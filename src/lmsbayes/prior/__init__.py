"""Beta-mixture priors for a binary endpoint: the hand-off from meta-analysis to design.

One concept per module:

* :mod:`~lmsbayes.prior.mixture` -- :class:`BetaMixture`, the value object
  (densities, moments, conjugate posterior, beta-binomial predictive);
* :mod:`~lmsbayes.prior.density` -- :class:`PredictiveDensity`, a new trial's
  rate as a mixture of link-scale normals over the global parameters;
* :mod:`~lmsbayes.prior.em` -- :func:`fit_mixture_to_density` (deterministic),
  :func:`fit_mixture` (draws) and :func:`mixture_fit_diagnostic`;
* :mod:`~lmsbayes.prior.map` -- :func:`map_prior` from a fit, a density or draws;
* :mod:`~lmsbayes.prior.robust` -- :func:`robustify` and :func:`robust_component`;
* :mod:`~lmsbayes.prior.ess` -- :func:`ess` (ELIR, moment, Morita);
* :mod:`~lmsbayes.prior.conflict` -- :func:`conflict`, prior-data conflict;
* :mod:`~lmsbayes.prior.io` -- JSON (lmsbayes and RBesT), the RBesT R call, PreliZ.

Everything here is plain numpy/scipy; this package never imports PyMC (see
ARCHITECTURE.md, "Priors for designs").
"""

from __future__ import annotations

from lmsbayes.prior.conflict import ConflictReport, conflict
from lmsbayes.prior.density import PredictiveDensity
from lmsbayes.prior.em import fit_mixture, fit_mixture_to_density, mixture_fit_diagnostic
from lmsbayes.prior.ess import ess
from lmsbayes.prior.io import (
    SCHEMA,
    SCHEMA_VERSION,
    from_dict,
    from_preliz,
    read_prior,
    to_dict,
    to_json,
    to_preliz,
    to_rbest,
)
from lmsbayes.prior.map import map_prior
from lmsbayes.prior.mixture import BetaMixture
from lmsbayes.prior.robust import is_robust, prior_kind, robust_component, robustify

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "BetaMixture",
    "ConflictReport",
    "PredictiveDensity",
    "conflict",
    "ess",
    "fit_mixture",
    "fit_mixture_to_density",
    "from_dict",
    "from_preliz",
    "is_robust",
    "map_prior",
    "mixture_fit_diagnostic",
    "prior_kind",
    "read_prior",
    "robust_component",
    "robustify",
    "to_dict",
    "to_json",
    "to_preliz",
    "to_rbest",
]
