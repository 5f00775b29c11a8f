"""Single-arm Bayesian designs with interim looks (Lee & Liu 2008's predictive probability)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from lmsbayes.design._common import (
    TOL,
    boundary_table,
    check_looks,
    check_open_unit,
    check_threshold,
    describe,
    fmt,
    vague_prior,
)
from lmsbayes.design.decisions import PosteriorDecision
from lmsbayes.errors import OptionError
from lmsbayes.prior import BetaMixture

__all__ = ["BayesianSingleArm"]


@dataclass(frozen=True)
class BayesianSingleArm:
    """Single-arm trial with Bayesian monitoring at interim looks.

    Success at the final look ``N = looks[-1]`` when
    ``P(p > p0 | data) >= success_prob``.  At each interim look the trial
    stops for futility when the predictive probability of final success,

        PP = sum_y P(Y = y | x) 1[final success with x + y],

    with ``Y`` the beta-binomial count among the ``N - n`` patients still to
    come, is below ``futility_pp`` (Lee & Liu 2008's ``theta_L``; their
    ``theta_T`` is ``success_prob``).

    Parameters
    ----------
    looks : sequence of int
        Cumulative numbers of evaluable patients at each analysis, strictly
        increasing; the last one is the maximum sample size.  ``range(1, N+1)``
        gives continuous monitoring.
    p0 : float or BetaMixture
        Null (historical) rate.  A Beta mixture -- e.g. a MAP prior of the
        historical rate -- makes the success criterion
        ``P(p > p0 | data) = E_{p0}[P(p > p0 | data)]`` (numerical
        integration, see the module docstring).
    prior : BetaMixture, default Beta(1, 1)
        Prior for the experimental rate ``p``.
    success_prob : float, default 0.95
        Posterior probability ``c`` required for success.
    futility_pp : float or None, default 0.05
        Stop at an interim when the predictive probability of final success is
        below this; None for no futility stopping.
    efficacy_stop : bool, default False
        Also stop at an interim for success once the final criterion
        ``P(p > p0 | data) >= success_prob`` already holds.  Repeated looks at
        the same ``c`` inflate the type I error; the operating
        characteristics show by how much.

    Notes
    -----
    All decisions are functions of the number of progression-free patients
    ``x`` at a look, and the posterior is stochastically increasing in ``x``,
    so each rule is a threshold on ``x``: :meth:`boundaries` lists them.

    References
    ----------
    Lee JJ, Liu DD. A predictive probability design for phase II cancer
    clinical trials. Clinical Trials 2008; 5: 93-106.

    Examples
    --------
    >>> d = BayesianSingleArm(looks=(20, 35, 50), p0=0.44)
    >>> d.boundaries()["min_to_continue"].tolist()[:2]
    [9, 17]
    """

    looks: tuple[int, ...]
    p0: float | BetaMixture
    prior: BetaMixture = field(default_factory=vague_prior)
    success_prob: float = 0.95
    futility_pp: float | None = 0.05
    efficacy_stop: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "looks", check_looks(self.looks))
        object.__setattr__(self, "p0", check_threshold("p0", self.p0))
        if not isinstance(self.prior, BetaMixture):
            raise OptionError(f"prior must be a BetaMixture, got {type(self.prior).__name__}")
        success_prob = check_open_unit("success_prob", self.success_prob)
        object.__setattr__(self, "success_prob", success_prob)
        if self.futility_pp is not None:
            object.__setattr__(
                self, "futility_pp", check_open_unit("futility_pp", self.futility_pp)
            )
        if not isinstance(self.efficacy_stop, (bool, np.bool_)):
            raise OptionError(f"efficacy_stop must be True or False, got {self.efficacy_stop!r}")

    @property
    def prior_role(self) -> str:
        """Which role a prior plays in this design, in words (printed by the CLI)."""
        if isinstance(self.p0, BetaMixture):
            return (
                f"the prior describes the uncertain historical rate p0 ({describe(self.p0)}); "
                f"the arm's own rate has prior {describe(self.prior)}"
            )
        vague = self.prior.n_components == 1 and self.prior.a[0] == 1 and self.prior.b[0] == 1
        if vague:
            return (
                f"fixed threshold p0 = {fmt(self.p0)}; the arm's own rate has the vague prior "
                f"Beta(1, 1)"
            )
        return (
            f"the prior is the prior of the arm's own rate ({describe(self.prior)}), "
            f"tested against the fixed threshold {fmt(self.p0)} (RBesT's decision1S / oc1S)"
        )

    @property
    def n_max(self) -> int:
        """Maximum sample size (the last look)."""
        return self.looks[-1]

    @cached_property
    def decision(self) -> PosteriorDecision:
        """The final success rule, ``P(p > p0 | data) >= success_prob``."""
        return PosteriorDecision(self.p0, self.success_prob)

    def posterior_prob(self, x: int, n: int) -> float:
        """``P(p > p0 | x progression-free of n)``."""
        return self.decision.prob_exceeds(self.prior.posterior(x, n))

    def predictive_prob(self, x: int, n: int) -> float:
        """Predictive probability of final success after ``x`` of ``n`` patients.

        Parameters
        ----------
        x, n : int
            Progression-free patients so far and patients so far, ``n <= n_max``.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= self.n_max:
            raise OptionError(f"n must be an integer in [0, n_max={self.n_max}], got {n!r}")
        m = self.n_max - int(n)
        pred = self.prior.posterior(x, n).predictive_pmf(m)
        return float(pred @ self._final_success[int(x) : int(x) + m + 1])

    @cached_property
    def _final_success(self) -> np.ndarray:
        n = self.n_max
        prob = np.array([self.posterior_prob(x, n) for x in range(n + 1)])
        return prob >= self.success_prob - TOL

    @cached_property
    def _masks(self) -> list[tuple[np.ndarray, np.ndarray]]:
        masks = []
        for n in self.looks[:-1]:
            x = np.arange(n + 1)
            if self.futility_pp is None:
                fut = np.zeros(n + 1, dtype=bool)
            else:
                pp = np.array([self.predictive_prob(int(xi), n) for xi in x])
                fut = pp < self.futility_pp
            if self.efficacy_stop:
                post = np.array([self.posterior_prob(int(xi), n) for xi in x])
                eff = (post >= self.success_prob - TOL) & ~fut
            else:
                eff = np.zeros(n + 1, dtype=bool)
            masks.append((fut, eff))
        succ = self._final_success
        masks.append((~succ, succ))
        return masks

    def _stopping_masks(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return self._masks

    def boundaries(self) -> pd.DataFrame:
        """Decision boundaries in numbers of progression-free patients.

        Returns
        -------
        pandas.DataFrame
            One row per look with ``n``; ``min_to_continue``, the fewest
            progression-free patients with which the trial continues past an
            interim (fewer: stop for futility); and ``min_for_success``, the
            fewest that declare success (at the final look, or at an interim
            with ``efficacy_stop``).  ``<NA>`` where the rule does not apply;
            ``n + 1`` where no count suffices.
        """
        return boundary_table(self.looks, self._masks)

    def __str__(self) -> str:
        lines = [
            "Bayesian single-arm design: looks at n = "
            + ", ".join(str(n) for n in self.looks)
            + f"; prior {describe(self.prior)}",
            f"  success at n = {self.n_max}: {self.decision}",
        ]
        if self.futility_pp is not None and len(self.looks) > 1:
            pp = fmt(self.futility_pp)
            lines.append(f"  futility at interims: P(final success | data) < {pp}")
        if self.efficacy_stop and len(self.looks) > 1:
            lines.append(f"  efficacy at interims: {self.decision}")
        return "\n".join(lines)
