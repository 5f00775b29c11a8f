"""Contrast-based meta-analysis: pooling per-trial log hazard ratios (or log odds ratios).

Where the arm-level models of lmsbayes pool *rates* of single arms, this
package pools *comparisons*: each randomised trial contributes its estimated
log HR with a standard error (from the published 95 % CI, or given).

- :func:`read_contrasts` / :func:`contrast_table`: input, validated (one
  :class:`~lmsbayes.errors.InputError` naming file, row, column and value);
- :func:`random_effects`: DerSimonian-Laird, REML (Fisher scoring), ML, PM, HE
  with Cochran's Q, I^2, tau^2 (Q-profile CI), the Hartung-Knapp-Sidik-Jonkman
  adjustment and the prediction interval, as metafor's ``rma.uni``;
  :func:`leave_one_out`, :func:`egger_test`;
- :func:`bayesian`: the normal-normal model on the exact quadrature engine
  (as R's bayesmeta) with a selectable tau prior (:mod:`.priors`);
- :meth:`BayesRandomEffects.predictive`: a new trial's true log HR, the
  *expected* effect of a new agent, and :func:`assurance` of a planned
  time-to-event trial over it (not a target alternative, not p1);
- :func:`forest_plot`, :func:`funnel_plot`: Figures from computed results.

Example
-------
>>> from lmsbayes import contrast as ct
>>> d = ct.read_contrasts("data/petrelli2017_pfs_hr.csv")          # doctest: +SKIP
>>> ct.random_effects(d, method="DL")                                # doctest: +SKIP
>>> b = ct.bayesian(d, tau_prior=ct.HalfNormal(0.5))                 # doctest: +SKIP
>>> ct.assurance(b.predictive(), ct.TimeToEventDesign(events=200))   # doctest: +SKIP
"""

from __future__ import annotations

from lmsbayes.contrast.assurance import (
    TimeToEventDesign,
    assurance,
    assurance_table,
    schoenfeld_events,
)
from lmsbayes.contrast.bayes import BayesRandomEffects, Predictive, bayesian
from lmsbayes.contrast.data import MEASURES, contrast_table, read_contrasts
from lmsbayes.contrast.frequentist import (
    METHODS,
    EggerTest,
    RandomEffects,
    egger_test,
    leave_one_out,
    random_effects,
    tau2_ci,
)
from lmsbayes.contrast.plots import forest_plot, funnel_plot
from lmsbayes.contrast.priors import (
    Bayesmeta,
    Exponential,
    Flat,
    HalfCauchy,
    HalfNormal,
    HalfStudentT,
    Normal,
    TauPrior,
    Uniform,
    parse_mu_prior,
    parse_tau_prior,
)

__all__ = [
    "MEASURES",
    "METHODS",
    "read_contrasts",
    "contrast_table",
    "random_effects",
    "RandomEffects",
    "leave_one_out",
    "egger_test",
    "EggerTest",
    "tau2_ci",
    "bayesian",
    "BayesRandomEffects",
    "Predictive",
    "TimeToEventDesign",
    "assurance",
    "assurance_table",
    "schoenfeld_events",
    "forest_plot",
    "funnel_plot",
    "TauPrior",
    "HalfNormal",
    "HalfCauchy",
    "HalfStudentT",
    "Exponential",
    "Uniform",
    "Bayesmeta",
    "Normal",
    "Flat",
    "parse_tau_prior",
    "parse_mu_prior",
]
