"""Beta-mixture priors for a binary endpoint: the hand-off from meta-analysis to design.

One concept per module:

* :mod:`~lmsbayes.prior.mixture` -- :class:`BetaMixture`, the value object
  (densities, moments, conjugate posterior, beta-binomial predictive);
* :mod:`~lmsbayes.prior.em` -- :func:`fit_mixture` (EM) and
  :func:`mixture_fit_diagnostic`;
* :mod:`~lmsbayes.prior.map` -- :func:`map_prior` from predictive draws or a fit;
* :mod:`~lmsbayes.prior.robust` -- :func:`robustify` and :func:`robust_component`;
* :mod:`~lmsbayes.prior.ess` -- :func:`ess` (ELIR, moment, Morita);
* :mod:`~lmsbayes.prior.conflict` -- :func:`conflict`, prior-data conflict;
* :mod:`~lmsbayes.prior.io` -- JSON (lmsbayes and RBesT), the RBesT R call, PreliZ.

Everything here is plain numpy/scipy; this package never imports PyMC (see
ARCHITECTURE.md, "Priors for designs").
"""

from __future__ import annotations

from lmsbayes.prior.conflict import ConflictReport, conflict
from lmsbayes.prior.em import fit_mixture, mixture_fit_diagnostic
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
from lmsbayes.prior.robust import robust_component, robustify

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "BetaMixture",
    "ConflictReport",
    "conflict",
    "ess",
    "fit_mixture",
    "from_dict",
    "from_preliz",
    "map_prior",
    "mixture_fit_diagnostic",
    "read_prior",
    "robust_component",
    "robustify",
    "to_dict",
    "to_json",
    "to_preliz",
    "to_rbest",
]
