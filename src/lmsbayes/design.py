"""Phase II designs for a binary endpoint, with exact operating characteristics.

The endpoint is "progression-free at landmark t" per patient; ``p`` is the
progression-free-survival rate at t.  Three families of design live here:

* :func:`simon` -- Simon's (1989) optimal and minimax two-stage designs, found
  by exact binomial search (no prior);
* :class:`BayesianSingleArm` -- a single-arm trial with interim looks: success
  at the end when ``P(p > p0 | data) >= c``, stopping for futility at an
  interim when the predictive probability of final success drops below
  ``theta_L`` (Lee & Liu 2008); ``p0`` may be a fixed rate or a
  :class:`~lmsbayes.prior.BetaMixture` describing an uncertain historical rate;
* :class:`TwoArmDesign` -- a randomized comparison with a (robust) MAP prior on
  the control arm; success when ``P(p_t - p_c > delta | data) >= c``.

:func:`operating_characteristics` evaluates any of them over a grid of true
rates by exact enumeration of the binomial sample space -- never by
simulation -- and returns an :class:`xarray.Dataset`.

Decision rules are small printable value objects (:class:`PosteriorDecision`,
:class:`DifferenceDecision`), in the spirit of RBesT's ``decision1S``.  This
module is plain numpy/scipy/xarray and knows nothing of PyMC.

Numerical integration
---------------------
Whenever a probability involves integrating over a Beta mixture (an uncertain
``p0`` in the single-arm design, the control-arm posterior in the two-arm
design), it is a sum over components of a fixed Gauss-Jacobi rule with
``_GJ_NODES = 64`` nodes: the Jacobi weight ``x^(a-1) (1-x)^(b-1)`` *is*
the component's beta density, so the rule integrates a polynomial of degree
127 against it exactly and converges geometrically for the smooth survival
functions integrated here, however concentrated a MAP prior is.  Against
adaptive ``scipy.integrate.quad`` it agrees to better than 1e-8 even when the
integrand is the posterior after 700 patients and the weight a vague
component (see the tests).
Where the Jacobi rule cannot be formed (extreme shapes such as a < 1 with
b < 1, or a parameter in the thousands next to one near 1) a 256-node
Gauss-Legendre rule on the component's probability scale,
``integral_0^1 g(F^{-1}(u)) du``, is used instead.  A fixed rule keeps
decision boundaries deterministic and fast to compute.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import special, stats

from lmsbayes.prior import BetaMixture

__all__ = [
    "BayesianSingleArm",
    "DifferenceDecision",
    "PosteriorDecision",
    "SimonDesign",
    "SimonDesigns",
    "TwoArmDesign",
    "operating_characteristics",
    "simon",
]

# Probabilities computed in floating point are compared with thresholds with
# this slack, so that a probability that equals the threshold exactly in exact
# arithmetic is not lost to rounding (ph2bayes does the same with machine eps).
_TOL = 1e-12

# quadrature rules for expectations over a Beta component (module docstring)
_GJ_NODES = 64
_GL_NODES = 256
_gl_t, _gl_w = np.polynomial.legendre.leggauss(_GL_NODES)
_GL_U = 0.5 * (_gl_t + 1.0)
_GL_W = 0.5 * _gl_w
del _gl_t, _gl_w


# ---------------------------------------------------------------------- validation
def _check_open_unit(name: str, value: Any) -> float:
    """A probability strictly inside (0, 1), or one ValueError naming it."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}") from None
    if isinstance(value, bool) or not 0.0 < v < 1.0:
        raise ValueError(f"{name} must lie in (0, 1), got {value!r}")
    return v


def _check_threshold(name: str, value: Any) -> float | BetaMixture:
    if isinstance(value, BetaMixture):
        return value
    return _check_open_unit(name, value)


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_looks(looks: Any) -> tuple[int, ...]:
    try:
        seq = tuple(looks)
    except TypeError:
        raise ValueError(
            f"looks must be a sequence of strictly increasing positive integers, got {looks!r}"
        ) from None
    ok = (
        len(seq) > 0
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in seq)
        and all(v >= 1 for v in seq)
        and all(b > a for a, b in zip(seq, seq[1:], strict=False))
    )
    if not ok:
        raise ValueError(
            f"looks must be a sequence of strictly increasing positive integers, got {looks!r}"
        )
    return tuple(int(v) for v in seq)


def _check_rates(name: str, p: Any) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(p, dtype=float))
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a scalar or 1-D array of rates, got shape {arr.shape}")
    bad = ~((arr >= 0.0) & (arr <= 1.0))
    if np.any(bad):
        raise ValueError(f"{name} must lie in [0, 1], got {arr[bad][:5].tolist()}")
    return arr


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _describe(mix: BetaMixture) -> str:
    if mix.n_components == 1:
        return f"Beta({_fmt(mix.a[0])}, {_fmt(mix.b[0])})"
    return f"{mix.n_components}-component BetaMixture (mean {mix.mean():.3f}, sd {mix.sd():.3f})"


# ---------------------------------------------------------------------- quadrature
@lru_cache(maxsize=4096)
def _beta_rule(a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights with ``sum(w * g(x)) ~= E[g(X)]``, ``X ~ Beta(a, b)``."""
    with np.errstate(all="ignore"):
        t, w = special.roots_jacobi(_GJ_NODES, b - 1.0, a - 1.0)
        x = 0.5 * (t + 1.0)
        w = w / w.sum()
    mean, var = a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1.0))
    ok = (
        np.all(np.isfinite(x))
        and np.all(np.isfinite(w))
        and np.all(w >= 0)
        and abs(w @ x - mean) <= 1e-9 * mean
        and abs(w @ (x - mean) ** 2 - var) <= 1e-6 * var
    )
    if not ok:
        # Golub-Welsch breaks down for extreme shapes: integrate on the
        # probability scale instead, where the nodes are component quantiles
        x, w = stats.beta.ppf(_GL_U, a, b), _GL_W.copy()
    x.setflags(write=False)
    w.setflags(write=False)
    return x, w


def _mixture_rule(mix: BetaMixture) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights with ``sum(w * g(x)) ~= E_mix[g(X)]``.

    One rule per component, scaled by the component weight; zero-weight
    components (a conjugate update can underflow a weight) are dropped.
    """
    xs, ws = [], []
    for wk, ak, bk in zip(mix.weights, mix.a, mix.b, strict=True):
        if wk > 0:
            x, w = _beta_rule(float(ak), float(bk))
            xs.append(x)
            ws.append(wk * w)
    return np.concatenate(xs), np.concatenate(ws)


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
        object.__setattr__(self, "threshold", _check_threshold("threshold", self.threshold))
        object.__setattr__(self, "prob", _check_open_unit("prob", self.prob))

    @cached_property
    def _rule(self) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(self.threshold, BetaMixture):
            return _mixture_rule(self.threshold)
        # a fixed threshold is a one-node "rule": the same code path, exactly
        return np.array([self.threshold]), np.array([1.0])

    def prob_exceeds(self, posterior: BetaMixture) -> float:
        """``P(p > threshold | data)`` for the posterior of ``p``."""
        x, w = self._rule
        return float(posterior.sf(x) @ w)

    def __call__(self, posterior: BetaMixture) -> bool:
        return self.prob_exceeds(posterior) >= self.prob - _TOL

    def __str__(self) -> str:
        if isinstance(self.threshold, BetaMixture):
            return f"P(p > p0 | data) >= {_fmt(self.prob)}, p0 ~ {_describe(self.threshold)}"
        return f"P(p > {_fmt(self.threshold)} | data) >= {_fmt(self.prob)}"


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
            raise ValueError(f"delta must be a number in (-1, 1), got {self.delta!r}") from None
        if not -1.0 < d < 1.0:
            raise ValueError(f"delta must lie in (-1, 1), got {self.delta!r}")
        object.__setattr__(self, "delta", d)
        object.__setattr__(self, "prob", _check_open_unit("prob", self.prob))

    def prob_exceeds(self, posterior_t: BetaMixture, posterior_c: BetaMixture) -> float:
        """``P(p_t - p_c > delta)`` for independent posteriors of the two rates.

        ``= E_{p_c}[P(p_t > p_c + delta)]``: the treatment survival function
        integrated against the control posterior.
        """
        x, w = _mixture_rule(posterior_c)
        return float(posterior_t.sf(x + self.delta) @ w)

    def __call__(self, posterior_t: BetaMixture, posterior_c: BetaMixture) -> bool:
        return self.prob_exceeds(posterior_t, posterior_c) >= self.prob - _TOL

    def __str__(self) -> str:
        return f"P(p_t - p_c > {_fmt(self.delta)} | data) >= {_fmt(self.prob)}"


# ---------------------------------------------------------------------- Simon
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
        n1 = _check_positive_int("n1", n1)
        n = _check_positive_int("n", n)
        if n <= n1:
            raise ValueError(f"n must exceed n1={n1}, got n={n}")
        if not (isinstance(r1, (int, np.integer)) and 0 <= r1 < n1):
            raise ValueError(f"r1 must be an integer in [0, n1), got r1={r1!r}")
        if not (isinstance(r, (int, np.integer)) and r1 <= r < n):
            raise ValueError(f"r must be an integer in [r1, n), got r={r!r}")
        p0 = _check_open_unit("p0", p0)
        p1 = _check_open_unit("p1", p1)
        rej = _simon_reject(int(r1), n1, int(r), n, np.array([p0, p1]))
        pet0 = float(stats.binom.cdf(r1, n1, p0))
        return cls(
            kind="custom", r1=int(r1), n1=n1, r=int(r), n=n, p0=p0, p1=p1,
            en0=n1 + (1.0 - pet0) * (n - n1), pet0=pet0,
            attained_alpha=float(rej[0]), attained_power=float(rej[1]),
        )  # fmt: skip

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
        return _boundary_table(self.looks, self._stopping_masks())

    def as_dict(self) -> dict[str, Any]:
        """The design as one table row (Simon's column names)."""
        return {
            "r1": self.r1, "n1": self.n1, "r": self.r, "n": self.n,
            "EN0": self.en0, "PET0": self.pet0,
            "alpha": self.attained_alpha, "power": self.attained_power,
        }  # fmt: skip

    def __str__(self) -> str:
        return (
            f"Simon {self.kind} (p0={_fmt(self.p0)}, p1={_fmt(self.p1)}): "
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
            f"Simon two-stage designs: p0={_fmt(self.p0)}, p1={_fmt(self.p1)}, "
            f"alpha={_fmt(self.alpha)}, power={_fmt(self.power)}"
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
        while r > 0 and stats.binom.sf(r - 1, n, p0) <= alpha + _TOL:
            r -= 1
        if stats.binom.sf(r, n, p1) >= power - _TOL:
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
        Largest total sample size searched.  By default twice the sample size
        of the exact one-stage test with the same alpha and power (at least
        20), which comfortably contains both designs.

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
    p0 = _check_open_unit("p0", p0)
    p1 = _check_open_unit("p1", p1)
    if not p1 > p0:
        raise ValueError(f"p1 must exceed p0={p0!r}, got p1={p1!r}")
    alpha = _check_open_unit("alpha", alpha)
    power = _check_open_unit("power", power)
    if nmax is None:
        nmax = max(20, 2 * _single_stage_n(p0, p1, alpha, power, cap=2000))
    else:
        nmax = _check_positive_int("nmax", nmax)
        if nmax < 3:
            raise ValueError(f"nmax must be at least 3, got {nmax!r}")

    N = nmax
    # sf tables: T[m, k + N] = P(Bin(m, p) > k), m = 0..N, k = -N..N
    k = np.arange(-N, N + 1)
    m = np.arange(N + 1)[:, None]
    sf0 = stats.binom.sf(k[None, :], m, p0)
    sf1 = stats.binom.sf(k[None, :], m, p1)
    # The two-stage rejection region is a subset of the one-stage region
    # {X > r}, so the one-stage critical value at N bounds every useful r.
    r_hi = min(N - 1, int(np.argmax(sf0[N, N:] <= alpha + _TOL)))
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
        ok = valid & (rej0 <= alpha + _TOL)
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
        good = pw >= power - _TOL
        if not good.any():
            continue
        n2s, r1s, rr, pw = n2s[good], r1s[good], rr[good], pw[good]
        a0 = rej0[i2[good], i1[good], ridx[i2[good], i1[good]]]
        pet0 = stats.binom.cdf(r1s, n1, p0)
        en0 = n1 + (1.0 - pet0) * n2s
        best_en0 = min(best_en0, float(en0.min()))
        best_n = min(best_n, int((n1 + n2s).min()))
        rows.append(
            np.column_stack([n1 + n2s, np.full(n2s.size, n1), r1s, rr, en0, pet0, a0, pw])
        )
    if not rows:
        raise ValueError(
            f"no two-stage design with n <= nmax={nmax} meets alpha={alpha} and power={power} "
            f"for p0={p0}, p1={p1}; increase nmax"
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
            kind=kind, r1=int(row.r1), n1=int(row.n1), r=int(row.r), n=int(row.n),
            p0=p0, p1=p1, en0=float(row.EN0), pet0=float(row.PET0),
            attained_alpha=float(row.alpha), attained_power=float(row.power),
        )  # fmt: skip

    return SimonDesigns(
        optimal=make("optimal", opt),
        minimax=make("minimax", mm),
        p0=p0, p1=p1, alpha=alpha, power=power, nmax=nmax,
    )  # fmt: skip


# ---------------------------------------------------------------------- Bayesian single arm
def _vague_prior() -> BetaMixture:
    return BetaMixture.from_ab(1.0, 1.0)


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
    prior: BetaMixture = field(default_factory=_vague_prior)
    success_prob: float = 0.95
    futility_pp: float | None = 0.05
    efficacy_stop: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "looks", _check_looks(self.looks))
        object.__setattr__(self, "p0", _check_threshold("p0", self.p0))
        if not isinstance(self.prior, BetaMixture):
            raise ValueError(f"prior must be a BetaMixture, got {type(self.prior).__name__}")
        success_prob = _check_open_unit("success_prob", self.success_prob)
        object.__setattr__(self, "success_prob", success_prob)
        if self.futility_pp is not None:
            object.__setattr__(
                self, "futility_pp", _check_open_unit("futility_pp", self.futility_pp)
            )
        if not isinstance(self.efficacy_stop, (bool, np.bool_)):
            raise ValueError(f"efficacy_stop must be True or False, got {self.efficacy_stop!r}")

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
            raise ValueError(f"n must be an integer in [0, n_max={self.n_max}], got {n!r}")
        m = self.n_max - int(n)
        pred = self.prior.posterior(x, n).predictive_pmf(m)
        return float(pred @ self._final_success[int(x) : int(x) + m + 1])

    @cached_property
    def _final_success(self) -> np.ndarray:
        n = self.n_max
        prob = np.array([self.posterior_prob(x, n) for x in range(n + 1)])
        return prob >= self.success_prob - _TOL

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
                eff = (post >= self.success_prob - _TOL) & ~fut
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
        return _boundary_table(self.looks, self._masks)

    def __str__(self) -> str:
        lines = [
            "Bayesian single-arm design: looks at n = "
            + ", ".join(str(n) for n in self.looks)
            + f"; prior {_describe(self.prior)}",
            f"  success at n = {self.n_max}: {self.decision}",
        ]
        if self.futility_pp is not None and len(self.looks) > 1:
            pp = _fmt(self.futility_pp)
            lines.append(f"  futility at interims: P(final success | data) < {pp}")
        if self.efficacy_stop and len(self.looks) > 1:
            lines.append(f"  efficacy at interims: {self.decision}")
        return "\n".join(lines)


# ---------------------------------------------------------------------- two arms
@dataclass(frozen=True)
class TwoArmDesign:
    """Randomized two-arm comparison, final analysis only.

    Success when ``P(p_t - p_c > delta | data) >= success_prob``, with
    independent priors on the treatment rate ``p_t`` and the control rate
    ``p_c`` -- typically a (robust) MAP prior from the historical trials on
    the control arm, so that fewer patients need be randomized to control.

    Parameters
    ----------
    n_t, n_c : int
        Patients on treatment and on control.
    prior_t, prior_c : BetaMixture, default Beta(1, 1)
        Priors of the treatment and control rates.
    delta : float, default 0.0
        Margin on the rate difference.
    success_prob : float, default 0.975
        Posterior probability ``c`` required for success.

    Notes
    -----
    ``P(p_t - p_c > delta | data) = E[P(p_t > p_c + delta | p_c)]`` is the
    treatment posterior's survival function integrated against the control
    posterior (Gauss-Legendre on each control component's probability scale).
    It is computed once for every pair ``(r_t, r_c)`` and cached, so the
    operating characteristics over any grid of true rates are two matrix
    products.

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
    prior_t: BetaMixture = field(default_factory=_vague_prior)
    prior_c: BetaMixture = field(default_factory=_vague_prior)
    delta: float = 0.0
    success_prob: float = 0.975

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_t", _check_positive_int("n_t", self.n_t))
        object.__setattr__(self, "n_c", _check_positive_int("n_c", self.n_c))
        for name in ("prior_t", "prior_c"):
            value = getattr(self, name)
            if not isinstance(value, BetaMixture):
                raise ValueError(f"{name} must be a BetaMixture, got {type(value).__name__}")
        # DifferenceDecision validates delta and success_prob with their names
        dec = DifferenceDecision(self.delta, self.success_prob)
        object.__setattr__(self, "delta", dec.delta)
        object.__setattr__(self, "success_prob", dec.prob)

    @cached_property
    def decision(self) -> DifferenceDecision:
        """The success rule, ``P(p_t - p_c > delta | data) >= success_prob``."""
        return DifferenceDecision(self.delta, self.success_prob)

    def posterior_prob(self, r_t: int, r_c: int) -> float:
        """``P(p_t - p_c > delta | r_t of n_t, r_c of n_c)``."""
        return self.decision.prob_exceeds(
            self.prior_t.posterior(r_t, self.n_t), self.prior_c.posterior(r_c, self.n_c)
        )

    @cached_property
    def _prob_table(self) -> np.ndarray:
        # all control-posterior quadrature nodes in one array, so that each
        # treatment posterior is evaluated once: n_t + 1 vectorised calls
        rules = [_mixture_rule(self.prior_c.posterior(rc, self.n_c)) for rc in range(self.n_c + 1)]
        x = np.concatenate([r[0] for r in rules]) + self.delta
        w = np.concatenate([r[1] for r in rules])
        starts = np.cumsum([0] + [r[0].size for r in rules[:-1]])
        table = np.empty((self.n_t + 1, self.n_c + 1))
        for rt in range(self.n_t + 1):
            sf = self.prior_t.posterior(rt, self.n_t).sf(x)
            table[rt] = np.add.reduceat(sf * w, starts)
        table.setflags(write=False)
        return table

    @cached_property
    def _success(self) -> np.ndarray:
        return self._prob_table >= self.success_prob - _TOL

    def boundaries(self) -> pd.DataFrame:
        """Fewest progression-free patients on treatment needed for success.

        Returns
        -------
        pandas.DataFrame
            Indexed by ``r_c`` (progression-free on control), column
            ``min_r_t``; ``n_t + 1`` where no treatment count suffices.
        """
        succ = self._success
        min_rt = np.where(succ.any(axis=0), succ.argmax(axis=0), self.n_t + 1)
        return pd.DataFrame(
            {"min_r_t": min_rt}, index=pd.RangeIndex(self.n_c + 1, name="r_c")
        )

    def __str__(self) -> str:
        return (
            f"Two-arm design: n_t = {self.n_t}, n_c = {self.n_c}; "
            f"prior_t {_describe(self.prior_t)}, prior_c {_describe(self.prior_c)}\n"
            f"  success: {self.decision}"
        )


# ---------------------------------------------------------------------- exact OCs
def _boundary_table(
    looks: Sequence[int], masks: Sequence[tuple[np.ndarray, np.ndarray]]
) -> pd.DataFrame:
    rows = []
    last = len(looks) - 1
    for k, (n, (fut, eff)) in enumerate(zip(looks, masks, strict=True)):
        cont = ~(fut | eff)
        if k < last:
            # the stop-for-futility set is {x < threshold} for every rule here
            min_cont = int(np.argmax(cont)) if cont.any() else n + 1
        else:
            min_cont = pd.NA
        if eff.any():
            min_succ = int(np.argmax(eff))
        elif k == last:
            min_succ = n + 1
        else:
            min_succ = pd.NA
        rows.append({"n": n, "min_to_continue": min_cont, "min_for_success": min_succ})
    out = pd.DataFrame(rows, index=pd.RangeIndex(1, len(looks) + 1, name="look"))
    return out.astype("Int64")


def _convolve_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise full convolution of two (P, .) arrays, exact (no FFT)."""
    if a.shape[1] < b.shape[1]:
        a, b = b, a
    na, nb = a.shape[1], b.shape[1]
    out = np.zeros((a.shape[0], na + nb - 1))
    # loop over the shorter axis; each step is one vectorised shifted add
    for j in range(nb):
        out[:, j : j + na] += a * b[:, j : j + 1]
    return out


def _single_arm_oc(
    looks: Sequence[int], masks: Sequence[tuple[np.ndarray, np.ndarray]], p: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact probabilities of stopping for futility / efficacy at each look.

    The sub-distribution of the number of progression-free patients among
    trials still running is carried from look to look by convolution with the
    binomial distribution of the increment; paths that stop are zeroed
    (absorbed).  Returns two (len(p), len(looks)) arrays; at the final look
    "futility" is failure of the final criterion, so each row sums to 1.
    """
    n_p, n_looks = p.size, len(looks)
    fut_prob = np.zeros((n_p, n_looks))
    eff_prob = np.zeros((n_p, n_looks))
    running = np.ones((n_p, 1))  # no patients yet: 0 progression-free, probability 1
    prev = 0
    for k, (n, (fut, eff)) in enumerate(zip(looks, masks, strict=True)):
        m = n - prev
        step = stats.binom.pmf(np.arange(m + 1)[None, :], m, p[:, None])
        running = _convolve_rows(running, step)
        fut_prob[:, k] = running[:, fut].sum(axis=1)
        eff_prob[:, k] = running[:, eff].sum(axis=1)
        running = np.where(fut | eff, 0.0, running)
        prev = n
    return fut_prob, eff_prob


_VAR_ATTRS = {
    "prob_success": "probability of declaring success (power; type I error at p0)",
    "prob_stop_futility": "probability of stopping for futility at the look "
    "(final look: failing the final criterion)",
    "prob_stop_efficacy": "probability of stopping for success at the look "
    "(final look: meeting the final criterion)",
    "prob_early_stop": "probability of stopping at an interim look",
    "expected_n": "expected number of patients",
}


def _single_arm_dataset(design: SimonDesign | BayesianSingleArm, p: np.ndarray) -> xr.Dataset:
    looks = design.looks
    fut, eff = _single_arm_oc(looks, design._stopping_masks(), p)
    stop = fut + eff
    ds = xr.Dataset(
        data_vars={
            "prob_success": ("p", eff.sum(axis=1)),
            "prob_stop_futility": (("p", "look"), fut),
            "prob_stop_efficacy": (("p", "look"), eff),
            "prob_early_stop": ("p", stop[:, :-1].sum(axis=1)),
            "expected_n": ("p", stop @ np.asarray(looks, dtype=float)),
        },
        coords={
            "p": ("p", p, {"long_name": "true progression-free rate"}),
            "look": np.arange(1, len(looks) + 1),
            "n": ("look", np.asarray(looks), {"long_name": "patients at the look"}),
        },
        attrs={"design": str(design), "method": "exact enumeration"},
    )
    for name, text in _VAR_ATTRS.items():
        ds[name].attrs["long_name"] = text
    return ds


def _two_arm_dataset(design: TwoArmDesign, p_t: np.ndarray, p_c: np.ndarray) -> xr.Dataset:
    pmf_t = stats.binom.pmf(np.arange(design.n_t + 1)[None, :], design.n_t, p_t[:, None])
    pmf_c = stats.binom.pmf(np.arange(design.n_c + 1)[None, :], design.n_c, p_c[:, None])
    prob = pmf_t @ design._success.astype(float) @ pmf_c.T
    ds = xr.Dataset(
        data_vars={
            "prob_success": (("p_t", "p_c"), prob),
            "expected_n": (
                ("p_t", "p_c"),
                np.full(prob.shape, float(design.n_t + design.n_c)),
            ),
        },
        coords={
            "p_t": ("p_t", p_t, {"long_name": "true rate on treatment"}),
            "p_c": ("p_c", p_c, {"long_name": "true rate on control"}),
        },
        attrs={"design": str(design), "method": "exact enumeration"},
    )
    ds["prob_success"].attrs["long_name"] = _VAR_ATTRS["prob_success"]
    ds["expected_n"].attrs["long_name"] = _VAR_ATTRS["expected_n"]
    return ds


def operating_characteristics(
    design: SimonDesign | BayesianSingleArm | TwoArmDesign,
    p: Any = None,
    *,
    p_t: Any = None,
    p_c: Any = None,
) -> xr.Dataset:
    """Operating characteristics by exact enumeration of the sample space.

    Parameters
    ----------
    design : SimonDesign, BayesianSingleArm or TwoArmDesign
        The design (for :func:`simon`'s result pick ``.optimal`` or ``.minimax``).
    p : array_like, optional
        True progression-free rates, for a single-arm design.
    p_t, p_c : array_like, optional
        True rates on treatment and control, for a two-arm design; the result
        covers their full grid.

    Returns
    -------
    xarray.Dataset
        Single arm: dims ``p`` and ``look`` (with coordinate ``n``) and
        variables ``prob_success``, ``prob_stop_futility`` and
        ``prob_stop_efficacy`` (per look), ``prob_early_stop`` and
        ``expected_n``.  Two arms: dims ``p_t`` and ``p_c`` with
        ``prob_success`` and ``expected_n``.  ``.to_dataframe()`` gives the
        table view.

    Examples
    --------
    >>> d = BayesianSingleArm(looks=(20, 35, 50), p0=0.44)
    >>> oc = operating_characteristics(d, p=[0.44, 0.64])
    >>> oc["prob_success"].round(3).values.tolist()
    [0.056, 0.895]
    """
    if isinstance(design, SimonDesigns):
        raise ValueError(
            "design must be one design; pass simon(...).optimal or simon(...).minimax"
        )
    if isinstance(design, TwoArmDesign):
        if p is not None:
            raise ValueError("a two-arm design takes p_t and p_c, not p")
        if p_t is None or p_c is None:
            raise ValueError("a two-arm design needs both p_t and p_c")
        return _two_arm_dataset(design, _check_rates("p_t", p_t), _check_rates("p_c", p_c))
    if isinstance(design, (SimonDesign, BayesianSingleArm)):
        if p_t is not None or p_c is not None:
            raise ValueError("a single-arm design takes p, not p_t / p_c")
        if p is None:
            raise ValueError("a single-arm design needs the true rates p")
        return _single_arm_dataset(design, _check_rates("p", p))
    raise ValueError(
        "design must be a SimonDesign, BayesianSingleArm or TwoArmDesign, "
        f"got {type(design).__name__}"
    )
