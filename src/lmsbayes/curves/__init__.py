"""Published Kaplan-Meier curves as data.

``read`` turns a digitised curve (points exported by a digitiser such as
WebPlotDigitizer, a number-at-risk table, optionally the total number of
events) into a validated :class:`~lmsbayes.curves.read.CurveArm`;
``reconstruct`` rebuilds individual event and censoring times from it by the
algorithm of Guyot, Ades, Ouwens & Welton (BMC Med Res Methodol 2012;12:9) and
reports how well the reconstruction reproduces the figure; ``likelihood``
gives the log-likelihood of a reconstructed arm on a parametric curve
(log-logistic or Weibull) as grouped interval- and right-censored data.

Data flow one way: read -> reconstruct -> likelihood. Only numpy.
"""

from __future__ import annotations

from lmsbayes.curves.read import CurveArm, curve_from_arrays, read_curve
from lmsbayes.curves.reconstruct import Reconstruction, kaplan_meier, reconstruct

__all__ = [
    "CurveArm",
    "Reconstruction",
    "curve_from_arrays",
    "kaplan_meier",
    "read_curve",
    "reconstruct",
]
