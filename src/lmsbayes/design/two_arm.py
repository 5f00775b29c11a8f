"""Randomized two-arm designs with a (robust) MAP prior on the control arm.

Success when ``P(p_t - p_c > delta | data) >= c`` (or, on the hazard-ratio
scale, ``P(HR < hr | data) >= c`` with ``HR = log p_t / log p_c``), at the
final analysis and optionally at interim analyses, with optional futility
stopping on the same posterior probability (RBesT's ``decision2S``; its
``oc2S`` for a final analysis only).

Decision boundaries
-------------------
The posterior of a rate is stochastically increasing in its count for any
prior (the binomial family has a monotone likelihood ratio), so the
posterior probability of an effect increases with the treatment count
``r_t`` and decreases with the control count ``r_c``.  The success region is
therefore ``{r_t >= b(r_c)}`` with ``b`` non-decreasing: for each ``r_c`` the
boundary is found by bisection above the previous one, about
``n_c log2(n_t)`` posterior evaluations instead of ``n_t n_c``.  The full
table (:meth:`TwoArmDesign.prob_table`) is kept for checks.

Operating characteristics are exact: a final-only design sums
``P(r_c) P(r_t >= b(r_c))``; with interims the joint distribution of the two
counts among trials still running is carried from look to look.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from lmsbayes.design._common import (
    TOL,
    check_open_unit,
    check_positive_int,
    check_rates,
    describe,
    fmt,
    mixture_rule,
    vague_prior,
)
from lmsbayes.design.decisions import DifferenceDecision, HazardRatioDecision
from lmsbayes.errors import OptionError, WorkLimitError
from lmsbayes.prior import BetaMixture

__all__ = ["MAX_TWO_ARM_N", "SampleSizeResult", "TwoArmDesign", "two_arm_sample_size"]

#: Largest number of patients per arm (and per look) a two-arm design may have;
#: the interim enumeration holds (n_t + 1) x (n_c + 1) probabilities per true rate.
MAX_TWO_ARM_N = 2000


def _check_interims(interims: Any, n_t: int, n_c: int) -> tuple[tuple[int, int], ...]:
    msg = (
        "interims must be a sequence of (n_t, n_c) pairs, cumulative and increasing in both arms, "
        f"each below the final (n_t={n_t}, n_c={n_c}), got {interims!r}"
    )
    try:
        pairs = tuple(tuple(p) for p in interims)
    except TypeError:
        raise OptionError(msg) from None
    out = []
    prev = (0, 0)
    for pair in pairs:
        if len(pair) != 2 or not all(
            isinstance(v, int | np.integer) and not isinstance(v, bool) for v in pair
        ):
            raise OptionError(msg)
        t, c = int(pair[0]), int(pair[1])
        if not (t >= prev[0] and c >= prev[1] and (t, c) != prev and t >= 1 and c >= 1):
            raise OptionError(msg)
        if not (t <= n_t and c <= n_c and (t, c) != (n_t, n_c)):
            raise OptionError(msg)
        out.append((t, c))
        prev = (t, c)
    return tuple(out)


def _staircase(
    prior_t: BetaMixture,
    prior_c: BetaMixture,
    n_t: int,
    n_c: int,
    threshold_of: Any,
    prob: float,
) -> np.ndarray:
    """``b[r_c]``: the fewest treatment successes with ``P(effect | data) >= prob``.

    Else ``n_t + 1``.
    """
    post_t: dict[int, BetaMixture] = {}

    def passes(rt: int, x: np.ndarray, w: np.ndarray) -> bool:
        if rt not in post_t:
            post_t[rt] = prior_t.posterior(rt, n_t)
        return float(post_t[rt].sf(x) @ w) >= prob - TOL

    b = np.full(n_c + 1, n_t + 1, dtype=np.int64)
    fail = -1  # a treatment count known to fail at this r_c (-1: none yet)
    for rc in range(n_c + 1):
        x, w = mixture_rule(prior_c.posterior(rc, n_c))
        x = threshold_of(x)
        if not passes(n_t, x, w):
            break  # fails for every larger r_c too
        lo, hi = fail, n_t  # lo fails (or is -1), hi passes
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if passes(mid, x, w):
                hi = mid
            else:
                lo = mid
        b[rc] = hi
        fail = hi - 1  # fails here, hence for the next (larger) r_c
    return b


@dataclass(frozen=True)
class TwoArmDesign:
    """Randomized two-arm comparison of progression-free rates.

    Success when ``P(p_t - p_c > delta | data) >= success_prob`` (or
    ``P(HR < hr | data) >= success_prob`` when ``hr`` is given), with
    independent priors on the treatment rate ``p_t`` and the control rate
    ``p_c`` -- typically a (robust) MAP prior from the historical trials on
    the control arm, so that fewer patients need be randomized to control.
    One-sided: only a better treatment succeeds.

    Parameters
    ----------
    n_t, n_c : int
        Patients on treatment and on control at the final analysis.
    prior_t, prior_c : BetaMixture, default Beta(1, 1)
        Priors of the treatment and control rates.
    delta : float, default 0.0
        Margin on the rate difference (unused when ``hr`` is given).
    success_prob : float, default 0.975
        Posterior probability ``c`` required for success.
    hr : float, optional
        Decide on the hazard-ratio scale, ``P(p_t > p_c^hr | data) >= c``;
        ``hr=1`` is superiority, like ``delta=0``.
    interims : sequence of (int, int), default ()
        Cumulative ``(n_t, n_c)`` at interim analyses before the final one.
    futility_prob : float, optional
        Stop at an interim when ``P(effect | data) < futility_prob``.
    efficacy_stop : bool, default True
        Stop at an interim for success when the final criterion already holds.

    Examples
    --------
    >>> from lmsbayes.prior import BetaMixture
    >>> map_prior = BetaMixture(weights=[0.8, 0.2], a=[14.0, 1.0], b=[30.0, 1.0])
    >>> d = TwoArmDesign(n_t=40, n_c=20, prior_c=map_prior)
    >>> print(d.decision)
    P(p_t - p_c > 0 | data) >= 0.975
    """

    n_t: int
    n_c: int
    prior_t: BetaMixture = field(default_factory=vague_prior)
    prior_c: BetaMixture = field(default_factory=vague_prior)
    delta: float = 0.0
    success_prob: float = 0.975
    hr: float | None = None
    interims: tuple[tuple[int, int], ...] = ()
    futility_prob: float | None = None
    efficacy_stop: bool = True

    def __post_init__(self) -> None:
        for name in ("n_t", "n_c"):
            v = check_positive_int(name, getattr(self, name))
            if v > MAX_TWO_ARM_N:
                raise WorkLimitError(f"{name} must be <= {MAX_TWO_ARM_N}, got {v}")
            object.__setattr__(self, name, v)
        for name in ("prior_t", "prior_c"):
            value = getattr(self, name)
            if not isinstance(value, BetaMixture):
                raise OptionError(f"{name} must be a BetaMixture, got {type(value).__name__}")
        # the decision classes validate delta / hr and success_prob with their names
        dec = DifferenceDecision(self.delta, self.success_prob)
        object.__setattr__(self, "delta", dec.delta)
        object.__setattr__(self, "success_prob", dec.prob)
        if self.hr is not None:
            object.__setattr__(self, "hr", HazardRatioDecision(self.hr, self.success_prob).hr)
            if self.delta != 0.0:
                raise OptionError(
                    f"give either delta or hr, not both (delta={self.delta!r}, hr={self.hr!r})"
                )
        object.__setattr__(self, "interims", _check_interims(self.interims, self.n_t, self.n_c))
        if self.futility_prob is not None:
            object.__setattr__(
                self, "futility_prob", check_open_unit("futility_prob", self.futility_prob)
            )
            if self.futility_prob >= self.success_prob:
                raise OptionError(
                    f"futility_prob must be below success_prob={self.success_prob!r}, "
                    f"got {self.futility_prob!r}"
                )
        if not isinstance(self.efficacy_stop, bool | np.bool_):
            raise OptionError(f"efficacy_stop must be True or False, got {self.efficacy_stop!r}")

    # ------------------------------------------------------------------ the rule
    @cached_property
    def decision(self) -> DifferenceDecision | HazardRatioDecision:
        """The success rule."""
        if self.hr is not None:
            return HazardRatioDecision(self.hr, self.success_prob)
        return DifferenceDecision(self.delta, self.success_prob)

    @property
    def looks(self) -> tuple[tuple[int, int], ...]:
        """Cumulative ``(n_t, n_c)`` at every analysis, the final one last."""
        return (*self.interims, (self.n_t, self.n_c))

    @property
    def ratio(self) -> float:
        """Allocation ratio ``n_t / n_c``."""
        return self.n_t / self.n_c

    def posterior_prob(self, r_t: int, r_c: int, look: int = -1) -> float:
        """``P(effect | r_t of n_t, r_c of n_c)`` at an analysis (default: the final one)."""
        n_t, n_c = self.looks[look]
        return self.decision.prob_exceeds(
            self.prior_t.posterior(r_t, n_t), self.prior_c.posterior(r_c, n_c)
        )

    def prob_table(self, look: int = -1) -> np.ndarray:
        """``P(effect | r_t, r_c)`` for every pair of counts, shape ``(n_t + 1, n_c + 1)``.

        The brute-force table the boundaries summarise; used to check them.
        """
        n_t, n_c = self.looks[look]
        rules = [mixture_rule(self.prior_c.posterior(rc, n_c)) for rc in range(n_c + 1)]
        x = np.concatenate([self.decision.treatment_threshold(r[0]) for r in rules])
        w = np.concatenate([r[1] for r in rules])
        starts = np.cumsum([0] + [r[0].size for r in rules[:-1]])
        table = np.empty((n_t + 1, n_c + 1))
        for rt in range(n_t + 1):
            sf = self.prior_t.posterior(rt, n_t).sf(x)
            table[rt] = np.add.reduceat(sf * w, starts)
        return table

    @cached_property
    def _bounds(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per look: (continue_from, succeed_from), each indexed by r_c, values 0..n_t_k + 1."""
        out = []
        last = len(self.looks) - 1
        thr = self.decision.treatment_threshold
        for k, (n_t, n_c) in enumerate(self.looks):
            succ = _staircase(self.prior_t, self.prior_c, n_t, n_c, thr, self.success_prob)
            if k < last:
                if not self.efficacy_stop:
                    succ = np.full(n_c + 1, n_t + 1, dtype=np.int64)
                if self.futility_prob is not None:
                    cont = _staircase(self.prior_t, self.prior_c, n_t, n_c, thr, self.futility_prob)
                else:
                    cont = np.zeros(n_c + 1, dtype=np.int64)
            else:
                cont = succ  # at the final look failing the criterion ends the trial
            succ.setflags(write=False)
            cont.setflags(write=False)
            out.append((cont, succ))
        return out

    def boundaries(self) -> pd.DataFrame:
        """Decision boundaries in progression-free patients, both arms.

        Returns
        -------
        pandas.DataFrame
            One row per analysis and control count: ``look``, ``n_c``,
            ``r_c`` (progression-free on control), ``n_t``, ``min_r_t`` (the
            fewest progression-free on treatment that declare success; <NA>
            where none of the ``n_t`` suffices) and, at interims with a
            futility rule, ``min_r_t_continue`` (fewer stop for futility).
        """
        frames = []
        last = len(self.looks) - 1
        for k, ((n_t, n_c), (cont, succ)) in enumerate(zip(self.looks, self._bounds, strict=True)):
            df = pd.DataFrame(
                {
                    "look": k + 1,
                    "n_c": n_c,
                    "r_c": np.arange(n_c + 1),
                    "n_t": n_t,
                    "min_r_t": pd.array(np.where(succ <= n_t, succ, -1), dtype="Int64"),
                }
            )
            df.loc[df["min_r_t"] < 0, "min_r_t"] = pd.NA
            if self.futility_prob is not None:
                vals = (
                    pd.array(np.where(cont <= n_t, cont, -1), dtype="Int64") if k < last else None
                )
                df["min_r_t_continue"] = (
                    vals if vals is not None else pd.array([pd.NA] * len(df), dtype="Int64")
                )
                df.loc[df["min_r_t_continue"] < 0, "min_r_t_continue"] = pd.NA
            frames.append(df)
        return pd.concat(frames, ignore_index=True)

    # ------------------------------------------------------------------ exact enumeration
    def _probs(self, p_t: np.ndarray, p_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities of stopping for futility / success at each look, paired true rates.

        Returns two ``(len(p_t), n_looks)`` arrays; at the final look
        "futility" is failing the criterion, so each row sums to 1.
        """
        P, K = p_t.size, len(self.looks)
        fut = np.zeros((P, K))
        eff = np.zeros((P, K))
        if K == 1:
            cont, succ = self._bounds[0]
            pmf_c = stats.binom.pmf(np.arange(self.n_c + 1)[None, :], self.n_c, p_c[:, None])
            tail_t = stats.binom.sf(succ[None, :] - 1, self.n_t, p_t[:, None])
            eff[:, 0] = np.clip((pmf_c * tail_t).sum(axis=1), 0.0, 1.0)
            fut[:, 0] = 1.0 - eff[:, 0]
            return fut, eff
        running = np.ones((P, 1, 1))
        prev = (0, 0)
        for k, ((n_t, n_c), (cont, succ)) in enumerate(zip(self.looks, self._bounds, strict=True)):
            running = _grow(running, n_t - prev[0], p_t, axis=1)
            running = _grow(running, n_c - prev[1], p_c, axis=2)
            xt = np.arange(n_t + 1)[:, None]
            stop_f = xt < cont[None, :]
            stop_e = (xt >= succ[None, :]) & ~stop_f
            fut[:, k] = running[:, stop_f].sum(axis=1)
            eff[:, k] = running[:, stop_e].sum(axis=1)
            running = np.where((stop_f | stop_e)[None], 0.0, running)
            prev = (n_t, n_c)
        return fut, eff

    def __str__(self) -> str:
        lines = [
            f"Two-arm design: n_t = {self.n_t}, n_c = {self.n_c} (ratio {self.ratio:.3g}:1); "
            f"prior_t {describe(self.prior_t)}, prior_c {describe(self.prior_c)}",
            f"  success (one-sided): {self.decision}",
        ]
        if self.interims:
            looks = ", ".join(f"{t}:{c}" for t, c in self.interims)
            rules = []
            if self.efficacy_stop:
                rules.append("stop for success when the criterion holds")
            if self.futility_prob is not None:
                rules.append(
                    f"stop for futility when the posterior probability < {fmt(self.futility_prob)}"
                )
            lines.append(
                f"  interims at n_t:n_c = {looks}" + (f" ({'; '.join(rules)})" if rules else "")
            )
        return "\n".join(lines)


def _grow(running: np.ndarray, m: int, p: np.ndarray, axis: int) -> np.ndarray:
    """Add ``m`` patients along ``axis`` (1: treatment, 2: control): convolve with Bin(m, p)."""
    if m == 0:
        return running
    step = stats.binom.pmf(np.arange(m + 1)[None, :], m, p[:, None])  # (P, m + 1)
    shape = list(running.shape)
    shape[axis] += m
    out = np.zeros(shape)
    n_old = running.shape[axis]
    for j in range(m + 1):
        w = step[:, j].reshape((-1, 1, 1))
        if axis == 1:
            out[:, j : j + n_old, :] += running * w
        else:
            out[:, :, j : j + n_old] += running * w
    return out


# ---------------------------------------------------------------------- sample size
@dataclass(frozen=True)
class SampleSizeResult:
    """Result of :func:`two_arm_sample_size`.

    Attributes
    ----------
    design : TwoArmDesign or None
        The smallest design meeting both targets; None when none up to
        ``n_c_max`` does.
    table : pandas.DataFrame
        Every size tried: ``n_t``, ``n_c``, ``max_type1`` (worst type I error
        over the range), ``worst_p`` (where it occurs), ``power``, ``ok``.
    targets : dict
        The search's targets and grid, for the record.
    """

    design: TwoArmDesign | None
    table: pd.DataFrame
    targets: dict

    def __str__(self) -> str:
        t = self.targets
        head = (
            f"Sample-size search: power >= {fmt(t['power'])} at p_c = {fmt(t['p_c'])}, "
            f"p_t = {fmt(t['p_t'])}; worst type I error <= {fmt(t['alpha'])} over true rates "
            f"[{fmt(t['type1_range'][0])}, {fmt(t['type1_range'][1])}]; ratio n_t:n_c = "
            f"{fmt(t['ratio'])}"
        )
        if self.design is None:
            return head + f"\n  no design with n_c <= {t['n_c_max']} meets both targets"
        row = self.table[self.table["ok"]].iloc[0]
        return head + (
            f"\n  smallest: n_t = {self.design.n_t}, n_c = {self.design.n_c} "
            f"(power {row['power']:.3f}, worst type I error {row['max_type1']:.3f} at p = "
            f"{row['worst_p']:.3f})"
        )


def two_arm_sample_size(
    prior_c: BetaMixture,
    *,
    p_c: float,
    p_t: float,
    power: float = 0.8,
    alpha: float = 0.05,
    type1_range: tuple[float, float] = (0.0, 1.0),
    ratio: float = 1.0,
    prior_t: BetaMixture | None = None,
    delta: float = 0.0,
    hr: float | None = None,
    success_prob: float = 0.975,
    n_c_max: int = 300,
    grid_points: int = 101,
) -> SampleSizeResult:
    """The smallest ``(n_t, n_c)`` with the given power and worst-case type I error.

    Sizes have ``n_t = ceil(ratio * n_c)``.  A doubling-and-bisection search
    on the power finds the first ``n_c`` whose power is within 0.05 of the
    target; from two sizes below it every ``n_c`` is tried in turn, and the
    first that meets both targets is returned, with every size evaluated.
    Power and type I error are not monotone in ``n`` (the counts are
    discrete), so a size beyond the one found may fail again: the table
    shows the sizes tried.

    Parameters
    ----------
    prior_c : BetaMixture
        Control prior (vague, MAP or robust MAP).
    p_c, p_t : float
        The true rates at which the power is required (e.g. the MAP mean
        and ``p_c ** 0.65``).
    power, alpha : float
        Targets: power at (p_t, p_c), and the worst type I error
        ``max P(success | p_t = p_c = x)`` over ``x`` in ``type1_range``.
    type1_range : (float, float), default (0, 1)
        True control rates over which the type I error is controlled, on a
        grid of ``grid_points`` points.  Under strict control over all of
        [0, 1], borrowing from a prior buys no power (Kopp-Schneider et al.
        2020); restrict it to the rates you consider plausible, knowingly.
    ratio : float, default 1
        Allocation ratio ``n_t / n_c``.
    prior_t, delta, hr, success_prob
        As in :class:`TwoArmDesign`.
    n_c_max : int, default 300
        Largest control size tried (at most :data:`MAX_TWO_ARM_N`).
    """
    p_c = check_open_unit("p_c", p_c)
    p_t = check_open_unit("p_t", p_t)
    power = check_open_unit("power", power)
    alpha = check_open_unit("alpha", alpha)
    lo, hi = check_range(type1_range)
    if isinstance(ratio, bool) or not (
        isinstance(ratio, int | float) and math.isfinite(ratio) and ratio > 0
    ):
        raise OptionError(f"ratio must be a number > 0 (n_t / n_c), got {ratio!r}")
    n_c_max = check_positive_int("n_c_max", n_c_max)
    if max(n_c_max, math.ceil(ratio * n_c_max)) > MAX_TWO_ARM_N:
        raise WorkLimitError(
            f"n_c_max * ratio must be <= {MAX_TWO_ARM_N}, got n_c_max={n_c_max}, ratio={ratio}"
        )
    grid = np.round(np.linspace(lo, hi, check_positive_int("grid_points", grid_points)), 12)
    prior_t = prior_t if prior_t is not None else vague_prior()
    cache: dict[int, dict] = {}

    def evaluate(n_c: int) -> dict:
        if n_c not in cache:
            n_t = max(1, math.ceil(ratio * n_c - 1e-9))
            d = TwoArmDesign(
                n_t,
                n_c,
                prior_t=prior_t,
                prior_c=prior_c,
                delta=delta,
                hr=hr,
                success_prob=success_prob,
            )
            _, eff = d._probs(np.concatenate([grid, [p_t]]), np.concatenate([grid, [p_c]]))
            succ = eff.sum(axis=1)
            i = int(np.argmax(succ[:-1]))
            row = {
                "n_t": n_t,
                "n_c": n_c,
                "max_type1": float(succ[i]),
                "worst_p": float(grid[i]),
                "power": float(succ[-1]),
                "design": d,
            }
            row["ok"] = row["max_type1"] <= alpha + TOL and row["power"] >= power - TOL
            cache[n_c] = row
        return cache[n_c]

    # Power rises with n up to the saw-tooth of discreteness: a doubling-and-bisection
    # search for the first size within 0.05 of the target power (well below any saw-tooth
    # seen in practice) skips the small sizes, then every size from just below it is tried
    below, above = 0, 1  # sizes, not the type I error range (lo, hi) the targets record
    while above < n_c_max and evaluate(above)["power"] < power - 0.05:
        below, above = above, min(2 * above, n_c_max)
    while above - below > 1:
        mid = (below + above) // 2
        if evaluate(mid)["power"] < power - 0.05:
            below = mid
        else:
            above = mid
    start = max(1, below - 2)
    found = None
    for n_c in range(start, n_c_max + 1):
        if evaluate(n_c)["ok"]:
            found = cache[n_c]["design"]
            break
    rows = [{k: v for k, v in cache[n].items() if k != "design"} for n in sorted(cache)]
    targets = {
        "p_c": p_c,
        "p_t": p_t,
        "power": power,
        "alpha": alpha,
        "type1_range": (lo, hi),
        "ratio": float(ratio),
        "n_c_max": n_c_max,
        "grid_points": int(grid.size),
        "success_prob": success_prob,
    }
    return SampleSizeResult(design=found, table=pd.DataFrame(rows), targets=targets)


def check_range(rng: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in rng)
    except (TypeError, ValueError):
        raise OptionError(
            f"type1_range must be two rates (lo, hi) with 0 <= lo < hi <= 1, got {rng!r}"
        ) from None
    if not (0.0 <= lo < hi <= 1.0):
        raise OptionError(
            f"type1_range must be two rates (lo, hi) with 0 <= lo < hi <= 1, got {rng!r}"
        )
    return lo, hi


def _as_pairs(p_t: Any, p_c: Any) -> tuple[np.ndarray, np.ndarray]:
    t = check_rates("p_t", p_t)
    c = check_rates("p_c", p_c)
    if t.size != c.size:
        raise OptionError(
            f"paired p_t and p_c must have the same length, got {t.size} and {c.size}"
        )
    return t, c


def paired_success(design: TwoArmDesign, p_t: Sequence[float], p_c: Sequence[float]) -> np.ndarray:
    """``P(success)`` at paired true rates ``(p_t[i], p_c[i])``.

    As RBesT's ``oc2S(...)(theta1, theta2)``.
    """
    t, c = _as_pairs(p_t, p_c)
    _, eff = design._probs(t, c)
    return eff.sum(axis=1)
