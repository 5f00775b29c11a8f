"""Deterministic integration rules over the exact engine's global parameters, and summaries on them.

The exact engine integrates each arm's latent quantities out, which leaves
the posterior of the global parameters theta (2 to about 12 of them) known
up to a constant at any point. Summaries are integrals over it, computed
here by fixed rules, so that the same data give the same numbers at every
seed:

- **few globals** (one tau and at most two other parameters: RBesT-like
  tables): a tensor grid, trapezoidal in log tau (a grid widened until its
  edges carry negligible density) and, at each tau, in the other
  parameters around their conditional mode with their conditional scales.
  Its error is stated against the rule on every second node (the coarser
  rule is the worse one, so the stated error is an upper estimate);
- **many globals** (the LMS default: 8 to 12): a randomly shifted rank-1
  lattice rule of the engine's Student-t or log-tau-grid proposal, with
  importance weights. The R shifts are fixed (drawn once from a constant
  seed), so the rule is fixed too; the spread of the R shifted rules' answers
  gives the integration error (standard error of their mean, the randomised
  quasi-Monte Carlo estimate of L'Ecuyer & Lemieux 2000).

Summaries of a scalar function of theta (a pooled rate) are weighted
quantiles over the rule's points; a new trial's rate, normal on the link
scale given theta, has as CDF the weighted mixture of those conditional
normals, inverted for quantiles by bisection.

numpy and scipy.special only: importing this module costs nothing beyond them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = [
    "LATTICE_N",
    "LATTICE_VECTOR",
    "REPLICATES",
    "Rule",
    "LatticeStream",
    "cbc_vector",
    "weighted_quantile",
    "normal_mixture_cdf",
    "normal_mixture_quantile",
]

#: points of one shifted lattice, and the number of shifts (R): R * N points in all
LATTICE_N = 512
REPLICATES = 8
#: generating vector of the rank-1 lattice (N = 512 points, 32 dimensions): the component-by-
#: component construction (Sloan & Reztsov 2002) for the weighted Korobov space of order 2 with
#: product weights 0.3 (``cbc_vector(512, 32, 0.3)``, tested equal). With weights decaying fast the
#: construction repeats components (identical coordinates: a degenerate rule for correlated
#: parameters); constant weights 0.3 give 32 distinct ones.
LATTICE_VECTOR = (
    1, 189, 231, 125, 29, 85, 37, 23, 205, 187, 215, 117, 229, 155, 11, 225,
    139, 151, 197, 67, 145, 251, 237, 255, 83, 65, 41, 183, 245, 159, 49, 131,
)  # fmt: skip
#: seed of the fixed shifts (a constant: the rule is one rule, whatever the fit's seed)
SHIFT_SEED = 20261207


def cbc_vector(n: int, d: int, gamma: float) -> list[int]:
    """Generating vector of a rank-1 lattice rule by the component-by-component construction.

    Minimises, one coordinate after the other, the squared worst-case error
    of the order-2 weighted Korobov space with product weights ``gamma``:
    e^2(z) = -1 + (1/n) sum_k prod_j (1 + gamma omega({k z_j / n})),
    omega(x) = 2 pi^2 (x^2 - x + 1/6). Candidates: 1 <= z <= n/2 coprime to n.
    """
    k = np.arange(n)
    cand = np.arange(1, n // 2 + 1)
    cand = cand[np.gcd(cand, n) == 1]
    x = (np.outer(cand, k) % n) / n
    om = 2 * np.pi**2 * (x * x - x + 1 / 6)
    prod = np.ones(n)
    z = []
    for _ in range(d):
        e = (prod[None, :] * (1 + gamma * om)).mean(1)
        i = int(np.argmin(e))
        z.append(int(cand[i]))
        prod = prod * (1 + gamma * om[i])
    return z


class LatticeStream:
    """Quasi-random numbers in the shape of a numpy Generator's calls, from a shifted lattice rule.

    Every call returns ``size[0]`` rows (the rule's points, replicate after
    replicate) and consumes the next coordinates of the lattice: a proposal
    written for ``numpy.random.Generator`` draws its points from the rule
    instead, coordinate by coordinate. Points are shifted modulo 1 by one
    fixed random shift per replicate, then folded by the tent (baker's)
    transform 1 - |2x - 1|, which keeps every point uniform and makes the
    rule second-order accurate for smooth non-periodic integrands
    (Hickernell 2002).

    Parameters
    ----------
    replicates, n : int
        Shifts and points per shift (n a power of 2 up to :data:`LATTICE_N`).
    shift_seed : int, optional
        Seed of the shifts; tests vary it to see the rule's random-shift
        spread, the engine never does.
    """

    def __init__(
        self, replicates: int = REPLICATES, n: int = LATTICE_N, shift_seed: int | None = None
    ) -> None:
        if n > LATTICE_N or n & (n - 1):
            raise ValueError(f"lattice size must be a power of 2 up to {LATTICE_N}, got {n}")
        self.R, self.n = int(replicates), int(n)
        self.size = self.R * self.n
        # a smaller lattice: the same vector reduced modulo n (an embedded lattice of the 512 one)
        self.z = np.array(LATTICE_VECTOR, dtype=np.int64) % self.n
        rng = np.random.default_rng(SHIFT_SEED if shift_seed is None else shift_seed)
        self.shifts = rng.random((self.R, len(LATTICE_VECTOR)))
        self.col = 0
        self.replicate = np.repeat(np.arange(self.R), self.n)

    def _take(self, k: int) -> np.ndarray:
        """The next k coordinates of every point: (R * n, k) uniforms in (0, 1)."""
        if self.col + k > len(LATTICE_VECTOR):
            raise RuntimeError(
                f"the lattice rule has {len(LATTICE_VECTOR)} dimensions; this proposal needs more"
            )
        z = self.z[self.col : self.col + k]
        self.col += k
        base = (np.arange(self.n)[:, None] * z[None, :] % self.n) / self.n  # (n, k)
        x = (base[None] + self.shifts[:, None, self.col - k : self.col]) % 1.0  # (R, n, k)
        u = 1.0 - np.abs(2.0 * x - 1.0)
        return np.clip(u, 1e-12, 1.0 - 1e-12).reshape(self.size, k)

    def _rows(self, size) -> tuple[int, tuple]:
        shape = (size,) if np.isscalar(size) else tuple(size)
        if shape[0] != self.size:
            raise ValueError(f"the lattice rule gives {self.size} points, asked for {shape[0]}")
        return int(np.prod(shape[1:], dtype=np.int64)), shape

    def random(self, size) -> np.ndarray:
        """Uniforms in (0, 1), ``size[0]`` the rule's number of points."""
        k, shape = self._rows(size)
        return self._take(k).reshape(shape)

    def uniform(self, low=0.0, high=1.0, size=None) -> np.ndarray:
        """Uniforms in (low, high)."""
        return low + (high - low) * self.random(size)

    def standard_normal(self, size) -> np.ndarray:
        """Standard normals by the inverse CDF."""
        return special.ndtri(self.random(size))

    def chisquare(self, df, size) -> np.ndarray:
        """Chi-square variates by the inverse survival function."""
        return special.chdtri(df, self.random(size))

    def choice(self, a, size, p=None) -> np.ndarray:
        """Inverse CDF of a discrete distribution (one coordinate per point)."""
        m = int(a)
        cdf = np.cumsum(np.full(m, 1.0 / m) if p is None else np.asarray(p, float))
        u = self.random(size) * cdf[-1]
        return np.minimum(np.searchsorted(cdf, u, side="right"), m - 1)


@dataclass
class Rule:
    """A fixed rule over the global parameters: points, log weights and how its error is stated.

    Attributes
    ----------
    theta : ndarray (point, parameter)
        Unconstrained points (lmsbayes.engines.exact.Layout).
    log_weight : ndarray (point,)
        Normalised log weights (posterior / proposal, times the rule's weight).
    group : ndarray (point,)
        ``kind == 'lattice'``: the replicate (shift) of each point;
        ``kind == 'tensor'``: 1 for the points of the coarser rule (every
        second node), else 0.
    kind : {'lattice', 'tensor'}
    coarse_log_weight : ndarray, optional
        The coarser rule's normalised log weights (tensor rules; -inf off its nodes).
    """

    theta: np.ndarray
    log_weight: np.ndarray
    group: np.ndarray
    kind: str
    coarse_log_weight: np.ndarray | None = None
    cell: np.ndarray | None = None  # tensor rules: each point's cell, (point, parameter, parameter)

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n draws from the rule's distribution.

        Systematic resampling; tensor rules: uniform in the cell.
        """
        w = self.weights
        cdf = np.cumsum(w / w.sum())
        idx = np.minimum(np.searchsorted(cdf, (rng.uniform() + np.arange(n)) / n), len(w) - 1)
        idx = rng.permutation(idx)
        theta = self.theta[idx]
        if self.cell is not None:
            u = rng.uniform(-0.5, 0.5, size=theta.shape)
            theta = theta + np.einsum("nij,nj->ni", self.cell[idx], u)
        return theta

    @property
    def weights(self) -> np.ndarray:
        """The normalised weights."""
        return np.exp(self.log_weight)

    def error_weights(self) -> list[np.ndarray]:
        """Weights of the rules whose spread states the error.

        The R shifted rules, or the coarse one.
        """
        if self.kind == "tensor":
            return [np.exp(self.coarse_log_weight)]
        out = []
        for r in np.unique(self.group):
            w = np.where(self.group == r, self.weights, 0.0)
            out.append(w / w.sum())
        return out

    def error(self, estimate, value: np.ndarray | float) -> np.ndarray:
        """Integration error of ``estimate(weights) -> array``.

        Its value with all points is ``value``.
        Lattice rules: the standard error of the mean of the R shifted rules
        (their sd / sqrt(R)); tensor rules: the difference from the coarser rule.
        """
        sub = np.stack([np.asarray(estimate(w), float) for w in self.error_weights()])
        if self.kind == "tensor":
            # second order in the spacing: the finer rule is off by about a third of the difference
            return np.abs(sub[0] - np.asarray(value, float)) / 3.0
        R = sub.shape[0]
        return sub.std(axis=0, ddof=1) / math.sqrt(R)

    @property
    def description(self) -> str:
        """The rule and how its error is stated, in words."""
        if self.kind == "tensor":
            return (
                f"tensor grid, {self.theta.shape[0]} points; error against the rule on every "
                "second node"
            )
        R = int(np.unique(self.group).size)
        return (
            f"rank-1 lattice, {R} fixed shifts x {self.theta.shape[0] // R} points; error: "
            "standard error over the shifts"
        )


def weighted_quantile(x: np.ndarray, w: np.ndarray, probs, order=None) -> np.ndarray:
    """Quantiles of the discrete distribution with atoms x (point, ...) and weights w (point,).

    The weighted empirical CDF interpolated linearly between atoms (at the
    midpoints of their masses), so that a fine rule's quantile varies
    smoothly. Returns (prob, ...). ``order``: the stable argsort of x
    reshaped to (point, -1) along its first axis, where the caller has it
    (one sort for several weightings of the same atoms).
    """
    x = np.asarray(x, float)
    probs = np.atleast_1d(np.asarray(probs, float))
    flat = x.reshape(x.shape[0], -1)
    if order is None:
        order = np.argsort(flat, axis=0, kind="stable")
    xs = np.take_along_axis(flat, order, axis=0)
    ws = np.asarray(w, float)[order]
    ws = ws / ws.sum(axis=0, keepdims=True)
    cdf = np.cumsum(ws, axis=0) - 0.5 * ws
    out = np.empty((probs.size, flat.shape[1]))
    for j in range(flat.shape[1]):
        out[:, j] = np.interp(probs, cdf[:, j], xs[:, j])
    return out.reshape((probs.size,) + x.shape[1:])


def uniform_mixture_quantile(w: np.ndarray, centre: np.ndarray, half: np.ndarray, probs, tol=1e-12):
    """Quantiles of a mixture of uniforms on [centre - half, centre + half] (weights w over axis 0).

    A grid rule's atom stands for its cell: spread over the cell, the weighted
    CDF is piecewise linear (a histogram), exact to second order in the
    spacing, where atoms of different rows falling close together made the
    plain weighted CDF step. Returns (prob, ...).
    """
    probs = np.atleast_1d(np.asarray(probs, float))
    w = np.asarray(w, float) / np.sum(w)
    keep = w > 0
    w, c, h = w[keep], np.asarray(centre, float)[keep], np.asarray(half, float)[keep]
    lo_c, hi_c = c - h, c + h
    width = np.maximum(hi_c - lo_c, 1e-300)
    out = []
    for p in probs:
        a, b = lo_c.min(axis=0), hi_c.max(axis=0)
        for _ in range(200):
            mid = 0.5 * (a + b)
            F = np.einsum("p,p...->...", w, np.clip((mid - lo_c) / width, 0.0, 1.0))
            below = F < p
            a = np.where(below, mid, a)
            b = np.where(below, b, mid)
            if np.max(b - a) < tol:
                break
        out.append(0.5 * (a + b))
    return np.stack(out)


def _normal_cdf(loc, scale, x, decreasing: bool):
    zz = (x - loc) / scale
    return special.ndtr(-zz) if decreasing else special.ndtr(zz)


def normal_mixture_cdf(
    w: np.ndarray, loc: np.ndarray, scale: np.ndarray, x: np.ndarray, decreasing: bool = False
) -> np.ndarray:
    """P(X <= x) for X a mixture of normals (weights w over the first axis) on the link scale.

    ``decreasing``: the rate falls as the link value rises (cloglog links), so
    P(rate <= r) = P(X >= x(r)).
    """
    return np.einsum("p,p...->...", w, _normal_cdf(loc, scale, x[None], decreasing))


def normal_mixture_quantile(
    w: np.ndarray,
    loc: np.ndarray,
    scale: np.ndarray,
    probs,
    decreasing: bool = False,
    tol: float = 1e-10,
) -> np.ndarray:
    """Quantiles of a mixture of normals (weights w over the first axis of loc and scale).

    ``loc`` (point, ...), ``scale`` broadcastable to it. Bisection on the
    mixture CDF between the components' extreme quantiles; with
    ``decreasing`` the returned values are those of the rate's ``probs``
    quantiles on the link scale (the link value of the rate's p quantile is
    the link's 1 - p quantile). Returns (prob, ...).
    """
    probs = np.atleast_1d(np.asarray(probs, float))
    loc = np.asarray(loc, float)
    scale = np.broadcast_to(np.asarray(scale, float), loc.shape)
    w = np.asarray(w, float) / np.sum(w)
    keep = w > 0
    w, loc, scale = w[keep], loc[keep], scale[keep]
    lo = np.min(loc - 40 * scale, axis=0)
    hi = np.max(loc + 40 * scale, axis=0)
    out = []
    for p in probs:
        target = 1.0 - p if decreasing else p
        a, b = lo.copy(), hi.copy()
        for _ in range(200):
            mid = 0.5 * (a + b)
            below = normal_mixture_cdf(w, loc, scale, mid) < target
            a = np.where(below, mid, a)
            b = np.where(below, b, mid)
            if np.max(b - a) < tol:
                break
        out.append(0.5 * (a + b))
    return np.stack(out)


def tensor_rule(
    logpost,
    conditional,
    mode: np.ndarray,
    cov: np.ndarray,
    t: int,
    n_tau: int = 81,
    n_other: int = 31,
    drop: float = 16.0,
) -> tuple[Rule, float]:
    """A tensor trapezoidal rule over log tau (coordinate ``t``) and at most two other parameters.

    The log-tau axis is widened (from 6 Laplace sds below the mode and 4 above)
    until its end nodes' Laplace-approximated marginal density is ``drop``
    log units below the top: tau is often poorly identified and its left tail
    in log tau long. At each tau node the other parameters are placed on a
    grid of +-7 conditional sds (whitened by the conditional covariance)
    around their conditional mode, which ``conditional(points) -> (points,
    covariances)`` moves to by Newton steps; that grid is widened too while
    its edges carry density. Trapezoidal rules converge geometrically for
    smooth integrands decaying to the edges; the error is stated against the
    rule on every second node (both ``n_tau`` and ``n_other`` odd).

    Returns
    -------
    Rule, edge mass
        The rule (kind 'tensor') and the posterior mass on the two end nodes of the tau axis.
    """
    p = mode.size
    O = np.setdiff1d(np.arange(p), [t])
    sd_t = math.sqrt(cov[t, t])
    reg = cov[O, t] / cov[t, t] if O.size else np.zeros(0)
    lo, hi = mode[t] - 6 * sd_t, mode[t] + 4 * sd_t
    for _ in range(8):
        taus = np.linspace(lo, hi, n_tau)
        pts = np.tile(mode, (n_tau, 1))
        pts[:, t] = taus
        covs = np.zeros((n_tau, 0, 0))
        if O.size:
            pts[:, O] += np.outer(taus - mode[t], reg)
            for _ in range(4):
                pts, covs = conditional(pts)
        lap = logpost(pts)
        if O.size:
            with np.errstate(invalid="ignore"):
                lap = lap + 0.5 * np.linalg.slogdet(covs)[1]
        lap = np.where(np.isfinite(lap), lap, -np.inf)
        top = np.max(lap)
        # widen by half the width (at least 3 sds): a long tail is reached in a few steps
        step = max(3 * sd_t, 0.5 * (hi - lo))
        widen = False
        if lap[0] > top - drop:
            lo -= step
            widen = True
        if lap[-1] > top - drop:
            hi += step
            widen = True
        if not widen:
            break
    h_t = (hi - lo) / (n_tau - 1)
    q = O.size
    a = 7.0
    for _ in range(4):
        x1 = np.linspace(-a, a, n_other)
        nodes = (
            np.stack(np.meshgrid(*([x1] * q), indexing="ij"), -1).reshape(-1, q)
            if q
            else np.zeros((1, 0))
        )
        K = nodes.shape[0]
        theta = np.repeat(pts, K, axis=0)
        logdet = np.zeros(n_tau)
        if q:
            chols = np.linalg.cholesky(
                0.5 * (covs + np.swapaxes(covs, 1, 2)) + 1e-12 * np.eye(q)[None]
            )
            theta[:, O] += np.einsum("tij,kj->tki", chols, nodes).reshape(-1, q)
            logdet = np.sum(np.log(np.diagonal(chols, axis1=1, axis2=2)), axis=1)
        lp = logpost(theta).reshape(n_tau, K)
        if not q:
            break
        edge = np.any(np.abs(nodes) >= a - 1e-9, axis=1)
        top = np.max(lp)
        if np.max(lp[:, edge]) > top - drop:
            a *= 1.5
            continue
        break
    h_o = (2 * a / (n_other - 1)) if q else 1.0
    lw = lp + logdet[:, None] + math.log(h_t) + q * math.log(h_o)
    lw = np.where(np.isfinite(lw), lw, -np.inf)
    total = special.logsumexp(lw)
    # the coarser rule: every second node on every axis, each node's cell twice as wide
    keep_t = np.arange(n_tau) % 2 == 0
    keep_o = (
        np.all(np.isin(np.rint((nodes + a) / h_o).astype(int) % 2, [0]), axis=1)
        if q
        else np.ones(1, bool)
    )
    keep = np.outer(keep_t, keep_o)
    clw = np.where(keep, lw + math.log(2.0) * (1 + q), -np.inf)
    clw = clw - special.logsumexp(clw)
    lw = (lw - total).ravel()
    edge_mass = float(np.exp(special.logsumexp(lw.reshape(n_tau, K)[[0, -1]])))
    # each node's cell: h_t along log tau (the others follow the conditional mode's path) and the
    # whitened grid's spacing in the others
    cell = np.zeros((n_tau, K, p, p))
    cell[:, :, t, t] = h_t
    if q:
        cell[:, :, O[:, None], O[None, :]] = (h_o * chols)[:, None]
    rule = Rule(
        theta=theta,
        log_weight=lw,
        group=keep.ravel().astype(np.int64),
        kind="tensor",
        coarse_log_weight=clw.ravel(),
        cell=cell.reshape(n_tau * K, p, p),
    )
    return rule, edge_mass
