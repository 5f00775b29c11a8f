"""Phase II designs for a binary endpoint, with exact operating characteristics.

The endpoint is "progression-free at landmark t" per patient; ``p`` is the
progression-free-survival rate at t.  One concept per module:

* :mod:`~lmsbayes.design.simon` -- :func:`simon`, Simon's (1989) optimal and
  minimax two-stage designs (no prior);
* :mod:`~lmsbayes.design.single_arm` -- :class:`BayesianSingleArm`: success at
  the end when ``P(p > p0 | data) >= c``, futility at interims by predictive
  probability (Lee & Liu 2008).  A prior plays one of two roles: the prior of
  the arm's own rate against a fixed threshold (RBesT's decision1S/oc1S), or
  an uncertain historical ``p0``;
* :mod:`~lmsbayes.design.two_arm` -- :class:`TwoArmDesign`, a randomized
  comparison with a (robust) MAP prior on the control arm, interim looks and
  :func:`two_arm_sample_size`;
* :mod:`~lmsbayes.design.decisions` -- the decision rules, small printable
  value objects in the spirit of RBesT's ``decision1S`` / ``decision2S``;
* :mod:`~lmsbayes.design.oc` -- :func:`operating_characteristics` and
  :func:`two_arm_oc` by exact enumeration (never simulation), as xarray
  Datasets, and the checks every design prints;
* :mod:`~lmsbayes.design.tradeoff` -- the borrowing trade-off: robust weight
  against worst type I error, power and ESS.

Plain numpy/scipy/xarray: this package knows nothing of PyMC.
"""

from __future__ import annotations

from lmsbayes.design.decisions import DifferenceDecision, HazardRatioDecision, PosteriorDecision
from lmsbayes.design.oc import (
    design_warnings,
    effect_rates,
    headline,
    operating_characteristics,
    two_arm_oc,
)
from lmsbayes.design.simon import MAX_SIMON_N, SimonDesign, SimonDesigns, simon
from lmsbayes.design.single_arm import BayesianSingleArm
from lmsbayes.design.tradeoff import (
    KOPP_SCHNEIDER_2020,
    TradeoffResult,
    borrowing_tradeoff,
    find_robust_weight,
)
from lmsbayes.design.two_arm import (
    SampleSizeResult,
    TwoArmDesign,
    paired_success,
    two_arm_sample_size,
)

__all__ = [
    "KOPP_SCHNEIDER_2020",
    "MAX_SIMON_N",
    "BayesianSingleArm",
    "DifferenceDecision",
    "HazardRatioDecision",
    "PosteriorDecision",
    "SampleSizeResult",
    "SimonDesign",
    "SimonDesigns",
    "TradeoffResult",
    "TwoArmDesign",
    "borrowing_tradeoff",
    "design_warnings",
    "effect_rates",
    "find_robust_weight",
    "headline",
    "operating_characteristics",
    "paired_success",
    "simon",
    "two_arm_oc",
    "two_arm_sample_size",
]
