"""Simon's (1989) optimal and minimax two-stage designs, by exhaustive exact search."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from lmsbayes.design._common import (
    TOL,
    boundary_table,
    check_open_unit,
    check_positive_int,
    fmt,
)
from lmsbayes.errors import OptionError, WorkLimitError

__all__ = ["MAX_SIMON_N", "SimonDesign", "SimonDesigns", "simon"]

#: Largest total sample size the Simon search covers.  The search costs about
#: nmax**3 operations: nmax = 300 takes ~5 s on a 2-core machine.
MAX_SIMON_N = 300


@dataclass(frozen=True)
class SimonDesign:
    """One Simon two-stage design.

    Enrol ``n1`` patients; stop for futility if at most ``r1`` are
    progression-free; otherwise enrol up to ``n`` and reject ``H0: p <= p0``
    if more than ``r`` of the ``n`` are progression-free.

    Attributes
    ----------
    kind : str
        ``"optimal"`` (minimum expected size under ``p0``) or ``"minimax"``
        (minimum maximum size), or ``"custom"``.
    r1, n1, r, n : int
        Boundaries and sample sizes, in Simon's notation.
    p0, p1 : float
        Null and alternative rates the design was built for.
    en0, pet0 : float
        Expected sample size and probability of early termination under ``p0``.
    attained_alpha, attained_power : float
        Exact type I error at ``p0`` and power at ``p1``.
    """

    kind: str
    r1: int
    n1: int
    r: int
    n: int
    p0: float
    p1: float
    en0: float
    pet0: float
    attained_alpha: float
    attained_power: float

    @classmethod
    def from_boundaries(cls, r1: int, n1: int, r: int, n: int, p0: float, p1: float) -> SimonDesign:
        """Evaluate a given ``(r1, n1, r, n)`` at ``p0`` and ``p1`` (kind ``"custom"``)."""
        n1 = check_positive_int("n1", n1)
        n = check_positive_int("n", n)
        if n <= n1:
            raise OptionError(f"n must exceed n1={n1}, got n={n}")
        if not (isinstance(r1, (int, np.integer)) and 0 <= r1 < n1):
            raise OptionError(f"r1 must be an integer in [0, n1), got r1={r1!r}")
        if not (isinstance(r, (int, np.integer)) and r1 <= r < n):
            raise OptionError(f"r must be an integer in [r1, n), got r={r!r}")
        p0 = check_open_unit("p0", p0)
        p1 = check_open_unit("p1", p1)
        rej = _simon_reject(int(r1), n1, int(r), n, np.array([p0, p1]))
        pet0 = float(stats.binom.cdf(r1, n1, p0))
        return cls(
            kind="custom",
            r1=int(r1),
            n1=n1,
            r=int(r),
            n=n,
            p0=p0,
            p1=p1,
            en0=n1 + (1.0 - pet0) * (n - n1),
            pet0=pet0,
            attained_alpha=float(rej[0]),
            attained_power=float(rej[1]),
        )

    @property
    def looks(self) -> tuple[int, int]:
        """Cumulative sample sizes at the two analyses."""
        return (self.n1, self.n)

    def _stopping_masks(self) -> list[tuple[np.ndarray, np.ndarray]]:
        x1 = np.arange(self.n1 + 1)
        xn = np.arange(self.n + 1)
        return [
            (x1 <= self.r1, np.zeros(x1.size, dtype=bool)),
            (xn <= self.r, xn > self.r),
        ]

    def boundaries(self) -> pd.DataFrame:
        """Minimum number progression-free needed to continue / to succeed, per look."""
        return boundary_table(self.looks, self._stopping_masks())

    def as_dict(self) -> dict[str, Any]:
        """The design as one table row (Simon's column names)."""
        return {
            "r1": self.r1,
            "n1": self.n1,
            "r": self.r,
            "n": self.n,
            "EN0": self.en0,
            "PET0": self.pet0,
            "alpha": self.attained_alpha,
            "power": self.attained_power,
        }

    def __str__(self) -> str:
        return (
            f"Simon {self.kind} (p0={fmt(self.p0)}, p1={fmt(self.p1)}): "
            f"stop if <= {self.r1}/{self.n1}; reject H0 if > {self.r}/{self.n} "
            f"[EN0 {self.en0:.1f}, PET0 {self.pet0:.2f}, "
            f"alpha {self.attained_alpha:.3f}, power {self.attained_power:.3f}]"
        )


@dataclass(frozen=True)
class SimonDesigns:
    """Result of :func:`simon`: the optimal and minimax designs.

    Attributes
    ----------
    optimal, minimax : SimonDesign
    p0, p1, alpha, power : float
        The design targets (nominal alpha and power).
    nmax : int
        Largest total sample size searched.
    """

    optimal: SimonDesign
    minimax: SimonDesign
    p0: float
    p1: float
    alpha: float
    power: float
    nmax: int

    def to_dataframe(self) -> pd.DataFrame:
        """Optimal and minimax designs as a two-row table."""
        rows = [self.optimal.as_dict(), self.minimax.as_dict()]
        return pd.DataFrame(rows, index=pd.Index(["optimal", "minimax"], name="design"))

    def __str__(self) -> str:
        head = (
            f"Simon two-stage designs: p0={fmt(self.p0)}, p1={fmt(self.p1)}, "
            f"alpha={fmt(self.alpha)}, power={fmt(self.power)}"
        )
        return head + "\n" + self.to_dataframe().round(4).to_string()


def _simon_reject(r1: int, n1: int, r: int, n: int, p: np.ndarray) -> np.ndarray:
    """P(X1 > r1 and X1 + X2 > r) for each rate in ``p`` (exact)."""
    x1 = np.arange(r1 + 1, n1 + 1)
    pmf = stats.binom.pmf(x1[None, :], n1, p[:, None])
    sf2 = stats.binom.sf(r - x1[None, :], n - n1, p[:, None])
    return (pmf * sf2).sum(axis=1)


def _single_stage_n(p0: float, p1: float, alpha: float, power: float, cap: int) -> int:
    """Smallest n of an exact one-stage binomial test meeting alpha and power."""
    for n in range(1, cap + 1):
        r = int(stats.binom.isf(alpha, n, p0))  # smallest r with P(X > r | p0) <= alpha
        while r > 0 and stats.binom.sf(r - 1, n, p0) <= alpha + TOL:
            r -= 1
        if stats.binom.sf(r, n, p1) >= power - TOL:
            return n
    return cap


def simon(
    p0: float,
    p1: float,
    alpha: float = 0.05,
    power: float = 0.8,
    nmax: int | None = None,
) -> SimonDesigns:
    """Simon's (1989) optimal and minimax two-stage designs.

    Exhaustive exact search over ``(r1, n1, r, n)`` with ``n <= nmax``:
    among designs with type I error ``<= alpha`` at ``p0`` and power
    ``>= power`` at ``p1``, the *optimal* design minimises the expected sample
    size under ``p0`` (``EN0``) and the *minimax* design minimises ``n``
    (ties broken by ``EN0``).  Reject ``H0`` if more than ``r`` of ``n``
    patients are progression-free; stop after stage 1 if at most ``r1`` of
    ``n1`` are.

    Parameters
    ----------
    p0, p1 : float
        Uninteresting and target rates, ``0 < p0 < p1 < 1``.
    alpha : float, default 0.05
        Maximum type I error.
    power : float, default 0.8
        Minimum power (``1 - beta``).
    nmax : int, optional
        Largest total sample size searched, at most :data:`MAX_SIMON_N`.  By
        default twice the sample size of the exact one-stage test with the
        same alpha and power (at least 20), which comfortably contains both
        designs, capped at :data:`MAX_SIMON_N`.

    Raises
    ------
    lmsbayes.errors.WorkLimitError
        ``nmax`` above :data:`MAX_SIMON_N`, or a one-stage test that already
        needs more patients than that (e.g. ``p0=0.01, p1=0.02``): the search
        grows as ``nmax**3`` and would run for minutes.

    Returns
    -------
    SimonDesigns

    Notes
    -----
    For fixed ``(n1, n2, r1)`` the rejection probability decreases in ``r``,
    so the smallest ``r`` meeting ``alpha`` maximises power and ``EN0`` does
    not depend on ``r``.  For each ``n1`` the rejection probabilities for all
    ``(n2, r1, r)`` are one array: binomial pmf of stage 1 times the
    stage-2 binomial survival function, with a reverse cumulative sum over the
    stage-1 count giving every ``r1`` at once.

    References
    ----------
    Simon R. Optimal two-stage designs for phase II clinical trials.
    Controlled Clinical Trials 1989; 10: 1-10.

    Examples
    --------
    >>> d = simon(0.2, 0.4, alpha=0.05, power=0.8)
    >>> (d.optimal.r1, d.optimal.n1, d.optimal.r, d.optimal.n)
    (3, 13, 12, 43)
    """
    p0 = check_open_unit("p0", p0)
    p1 = check_open_unit("p1", p1)
    if not p1 > p0:
        raise OptionError(f"p1 must exceed p0={p0!r}, got p1={p1!r}")
    alpha = check_open_unit("alpha", alpha)
    power = check_open_unit("power", power)
    if nmax is None:
        n_one = _single_stage_n(p0, p1, alpha, power, cap=MAX_SIMON_N + 1)
        if n_one > MAX_SIMON_N:
            raise WorkLimitError(
                f"simon(p0={p0:g}, p1={p1:g}, alpha={alpha:g}, power={power:g}): even a one-stage "
                f"test needs more than {MAX_SIMON_N} patients, and a two-stage search beyond "
                f"nmax={MAX_SIMON_N} would run for minutes; choose p0 and p1 further apart, or "
                f"pass nmax (--nmax) <= {MAX_SIMON_N} to search a smaller range"
            )
        nmax = min(MAX_SIMON_N, max(20, 2 * n_one))
    else:
        nmax = check_positive_int("nmax", nmax)
        if nmax < 3:
            raise OptionError(f"nmax must be at least 3, got {nmax!r}")
        if nmax > MAX_SIMON_N:
            raise WorkLimitError(
                f"nmax must be <= {MAX_SIMON_N} (--nmax on the command line), got {nmax}: "
                "the exhaustive search grows as nmax**3 and would run for minutes"
            )

    N = nmax
    # sf tables: T[m, k + N] = P(Bin(m, p) > k), m = 0..N, k = -N..N
    k = np.arange(-N, N + 1)
    m = np.arange(N + 1)[:, None]
    sf0 = stats.binom.sf(k[None, :], m, p0)
    sf1 = stats.binom.sf(k[None, :], m, p1)
    # The two-stage rejection region is a subset of the one-stage region
    # {X > r}, so the one-stage critical value at N bounds every useful r.
    r_hi = min(N - 1, int(np.argmax(sf0[N, N:] <= alpha + TOL)))
    r_all = np.arange(r_hi + 1)

    best_en0 = math.inf  # EN0 >= n1: no n1 >= best_en0 can give a better optimal design
    best_n = N + 1  # ... and then only n <= the best minimax n so far can matter
    rows = []  # (n, n1, r1, r, en0, pet0, alpha, power)
    for n1 in range(1, N):
        n2_max = N - n1
        if n1 >= best_en0:
            if n1 >= best_n:
                break
            n2_max = min(n2_max, best_n - n1)
        n2 = np.arange(1, n2_max + 1)
        x1 = np.arange(n1 + 1)
        kk = r_all[None, None, :] - x1[None, :, None] + N  # index of r - x1
        b0 = stats.binom.pmf(x1, n1, p0)[None, :, None]
        # tail[:, j, r] = P(X1 >= j, X1 + X2 > r); r1 = j - 1 for j = 1..n1
        rej0 = np.cumsum((b0 * sf0[n2[:, None, None], kk])[:, ::-1, :], axis=1)[:, -2::-1, :]
        r1 = np.arange(n1)
        valid = (r_all[None, None, :] > r1[None, :, None]) & (
            r_all[None, None, :] < (n1 + n2)[:, None, None]
        )
        ok = valid & (rej0 <= alpha + TOL)
        has = ok.any(axis=-1)
        if not has.any():
            continue
        ridx = ok.argmax(axis=-1)  # smallest r meeting alpha (rej0 decreases in r)
        i2, i1 = np.nonzero(has)
        rr = r_all[ridx[i2, i1]]
        n2s, r1s = n2[i2], r1[i1]
        # power only where needed: P(X1 > r1, X1 + X2 > r) at p1
        b1 = stats.binom.pmf(x1, n1, p1)
        contrib = b1[None, :] * sf1[n2s[:, None], rr[:, None] - x1[None, :] + N]
        contrib = np.where(x1[None, :] > r1s[:, None], contrib, 0.0)
        pw = contrib.sum(axis=1)
        good = pw >= power - TOL
        if not good.any():
            continue
        n2s, r1s, rr, pw = n2s[good], r1s[good], rr[good], pw[good]
        a0 = rej0[i2[good], i1[good], ridx[i2[good], i1[good]]]
        pet0 = stats.binom.cdf(r1s, n1, p0)
        en0 = n1 + (1.0 - pet0) * n2s
        best_en0 = min(best_en0, float(en0.min()))
        best_n = min(best_n, int((n1 + n2s).min()))
        rows.append(np.column_stack([n1 + n2s, np.full(n2s.size, n1), r1s, rr, en0, pet0, a0, pw]))
    if not rows:
        raise OptionError(
            f"no two-stage design with n <= nmax={nmax} meets alpha={alpha} and power={power} "
            f"for p0={p0}, p1={p1}; increase nmax (--nmax, at most {MAX_SIMON_N})"
        )
    cols = ["n", "n1", "r1", "r", "EN0", "PET0", "alpha", "power"]
    table = pd.DataFrame(np.concatenate(rows), columns=cols)
    table = table.astype({"n": int, "n1": int, "r1": int, "r": int})
    # round EN0 before sorting so that float noise cannot break a true tie;
    # ties go to the smaller n, then the smaller n1
    table["_en0"] = table["EN0"].round(10)
    opt = table.sort_values(["_en0", "n", "n1"], kind="stable").iloc[0]
    mm = table.sort_values(["n", "_en0", "n1"], kind="stable").iloc[0]

    def make(kind: str, row: pd.Series) -> SimonDesign:
        return SimonDesign(
            kind=kind,
            r1=int(row.r1),
            n1=int(row.n1),
            r=int(row.r),
            n=int(row.n),
            p0=p0,
            p1=p1,
            en0=float(row.EN0),
            pet0=float(row.PET0),
            attained_alpha=float(row.alpha),
            attained_power=float(row.power),
        )

    return SimonDesigns(
        optimal=make("optimal", opt),
        minimax=make("minimax", mm),
        p0=p0,
        p1=p1,
        alpha=alpha,
        power=power,
        nmax=nmax,
    )
