"""Decision rules as small printable value objects (RBesT's ``decision1S`` / ``decision2S``).

Each rule says when a trial is a success, from the posterior of the rate(s):
``PosteriorDecision`` for one arm, ``DifferenceDecision`` and
``HazardRatioDecision`` for two.  Decisions are one-sided ("greater is
better": ``p`` is a progression-free rate).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from lmsbayes.design._common import (
    TOL,
    check_open_unit,
    check_threshold,
    describe,
    fmt,
    mixture_rule,
)
from lmsbayes.errors import OptionError
from lmsbayes.prior import BetaMixture

__all__ = ["DifferenceDecision", "HazardRatioDecision", "PosteriorDecision"]


# ---------------------------------------------------------------------- decisions
@dataclass(frozen=True)
class PosteriorDecision:
    """Success when ``P(p > threshold | data) >= prob``.

    Parameters
    ----------
    threshold : float or BetaMixture
        A fixed null rate ``p0`` in (0, 1), or a Beta mixture for an uncertain
        historical rate; then ``P(p > p0 | data) = E_{p0}[P(p > p0 | data)]``,
        integrated numerically (see the module docstring).
    prob : float
        Required posterior probability ``c`` in (0, 1).

    Examples
    --------
    >>> from lmsbayes.prior import BetaMixture
    >>> rule = PosteriorDecision(threshold=0.44, prob=0.95)
    >>> print(rule)
    P(p > 0.44 | data) >= 0.95
    >>> rule(BetaMixture.from_ab(1, 1).posterior(r=18, n=25))
    True
    """

    threshold: float | BetaMixture
    prob: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "threshold", check_threshold("threshold", self.threshold))
        object.__setattr__(self, "prob", check_open_unit("prob", self.prob))

    @cached_property
    def _rule(self) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(self.threshold, BetaMixture):
            return mixture_rule(self.threshold)
        # a fixed threshold is a one-node "rule": the same code path, exactly
        return np.array([self.threshold]), np.array([1.0])

    def prob_exceeds(self, posterior: BetaMixture) -> float:
        """``P(p > threshold | data)`` for the posterior of ``p``."""
        x, w = self._rule
        return float(posterior.sf(x) @ w)

    def __call__(self, posterior: BetaMixture) -> bool:
        """True when the decision rule declares success for these posteriors."""
        return self.prob_exceeds(posterior) >= self.prob - TOL

    def __str__(self) -> str:
        if isinstance(self.threshold, BetaMixture):
            return f"P(p > p0 | data) >= {fmt(self.prob)}, p0 ~ {describe(self.threshold)}"
        return f"P(p > {fmt(self.threshold)} | data) >= {fmt(self.prob)}"


@dataclass(frozen=True)
class DifferenceDecision:
    """Two-arm success when ``P(p_t - p_c > delta | data) >= prob``.

    Parameters
    ----------
    delta : float
        Margin on the rate difference, in (-1, 1); 0 for plain superiority.
    prob : float
        Required posterior probability ``c`` in (0, 1).

    Examples
    --------
    >>> print(DifferenceDecision(delta=0.0, prob=0.975))
    P(p_t - p_c > 0 | data) >= 0.975
    """

    delta: float
    prob: float

    def __post_init__(self) -> None:
        try:
            d = float(self.delta)
        except (TypeError, ValueError):
            raise OptionError(f"delta must be a number in (-1, 1), got {self.delta!r}") from None
        if not -1.0 < d < 1.0:
            raise OptionError(f"delta must lie in (-1, 1), got {self.delta!r}")
        object.__setattr__(self, "delta", d)
        object.__setattr__(self, "prob", check_open_unit("prob", self.prob))

    def prob_exceeds(self, posterior_t: BetaMixture, posterior_c: BetaMixture) -> float:
        """``P(p_t - p_c > delta)`` for independent posteriors of the two rates.

        ``= E_{p_c}[P(p_t > p_c + delta)]``: the treatment survival function
        integrated against the control posterior.
        """
        x, w = mixture_rule(posterior_c)
        return float(posterior_t.sf(self.treatment_threshold(x)) @ w)

    def treatment_threshold(self, p_c: np.ndarray) -> np.ndarray:
        """The treatment rate above which the effect exceeds the margin, given ``p_c``."""
        return np.asarray(p_c, dtype=float) + self.delta

    def __call__(self, posterior_t: BetaMixture, posterior_c: BetaMixture) -> bool:
        """True when the decision rule declares success for these posteriors."""
        return self.prob_exceeds(posterior_t, posterior_c) >= self.prob - TOL

    def __str__(self) -> str:
        return f"P(p_t - p_c > {fmt(self.delta)} | data) >= {fmt(self.prob)}"


@dataclass(frozen=True)
class HazardRatioDecision:
    """Two-arm success when ``P(HR < hr | data) >= prob``, ``HR = log p_t / log p_c``.

    ``p_t = p_c^HR`` is proportional hazards at the landmark (the EORTC
    convention for progression-free rates: a hazard ratio below 1 raises the
    rate), so ``HR < hr`` is ``p_t > p_c^hr``.

    Parameters
    ----------
    hr : float
        Margin on the hazard-ratio scale, > 0; 1 for plain superiority.
    prob : float
        Required posterior probability ``c`` in (0, 1).

    Examples
    --------
    >>> print(HazardRatioDecision(hr=1.0, prob=0.975))
    P(HR < 1 | data) >= 0.975, HR = log p_t / log p_c
    """

    hr: float
    prob: float

    def __post_init__(self) -> None:
        try:
            h = float(self.hr)
        except (TypeError, ValueError):
            raise OptionError(f"hr must be a positive number, got {self.hr!r}") from None
        if isinstance(self.hr, bool) or not (np.isfinite(h) and h > 0):
            raise OptionError(f"hr must be a finite number > 0, got {self.hr!r}")
        object.__setattr__(self, "hr", h)
        object.__setattr__(self, "prob", check_open_unit("prob", self.prob))

    def prob_exceeds(self, posterior_t: BetaMixture, posterior_c: BetaMixture) -> float:
        """``P(p_t > p_c^hr)`` for independent posteriors of the two rates."""
        x, w = mixture_rule(posterior_c)
        return float(posterior_t.sf(self.treatment_threshold(x)) @ w)

    def treatment_threshold(self, p_c: np.ndarray) -> np.ndarray:
        """``p_c ** hr``: the treatment rate above which HR < hr, given ``p_c``."""
        return np.asarray(p_c, dtype=float) ** self.hr

    def __call__(self, posterior_t: BetaMixture, posterior_c: BetaMixture) -> bool:
        """True when the decision rule declares success for these posteriors."""
        return self.prob_exceeds(posterior_t, posterior_c) >= self.prob - TOL

    def __str__(self) -> str:
        return f"P(HR < {fmt(self.hr)} | data) >= {fmt(self.prob)}, HR = log p_t / log p_c"
