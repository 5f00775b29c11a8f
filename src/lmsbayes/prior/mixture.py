"""The Beta-mixture value object: densities, moments, conjugate updates, predictive.

A :class:`BetaMixture` is a small, immutable value object,

    pi(p) = sum_k w_k Beta(p | a_k, b_k),

with the operations a trial design needs: densities, quantiles, moments,
sampling, the conjugate posterior after ``r`` progression-free patients out
of ``n``, and the beta-binomial predictive distribution.  Persistence
(:mod:`lmsbayes.prior.io`), effective sample size (:mod:`lmsbayes.prior.ess`)
and prior-data conflict (:mod:`lmsbayes.prior.conflict`) live in their own
modules; the methods here delegate to them.  Plain numpy/scipy: this package
never imports PyMC (see ARCHITECTURE.md, "Priors for designs").
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from lmsbayes._lazy import stats
from lmsbayes.errors import OptionError
from lmsbayes.prior.beta import beta_logpdf, beta_ppf
from lmsbayes.prior.checks import check_count, check_unit_interval, fmt_list
from lmsbayes.prior.ess import ess

__all__ = ["BetaMixture"]

# weights are compared to 1 with this absolute tolerance; tighter than any
# rounding a user would do by hand, looser than float accumulation error
_WEIGHT_TOL = 1e-8


def _as_param(name: str, value: Any) -> np.ndarray:
    """Convert a parameter to a read-only 1-D float array or raise one ValueError."""
    try:
        arr = np.array(value, dtype=float, ndmin=1)
    except (TypeError, ValueError):
        raise OptionError(f"{name} must be numeric, got {value!r}") from None
    if arr.ndim != 1:
        raise OptionError(f"{name} must be 1-D (one value per component), got shape {arr.shape}")
    if arr.size == 0:
        raise OptionError(f"{name} must have at least one component, got {value!r}")
    if not np.all(np.isfinite(arr)):
        raise OptionError(f"{name} must be finite, got {fmt_list(arr)}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class BetaMixture:
    """A finite mixture of beta distributions on (0, 1).

    Parameters
    ----------
    weights : array_like, shape (k,)
        Component weights, non-negative and summing to 1 (checked to 1e-8).
    a, b : array_like, shape (k,)
        Beta shape parameters, all > 0.
    provenance : mapping, optional
        Where the prior came from (data hash, model spec, package version, ...).
        Kept on the object and written to JSON; it does not take part in ``==``.

    Notes
    -----
    Lists and scalars are converted to read-only float arrays.  A weight may be
    exactly 0: a conjugate update can underflow a component's weight, and
    dropping the component would change ``n_components`` under a caller's feet.

    Examples
    --------
    >>> prior = BetaMixture(weights=[0.8, 0.2], a=[12.0, 1.0], b=[18.0, 1.0])
    >>> round(prior.mean(), 4)
    0.42
    >>> prior.posterior(r=7, n=20).n_components
    2
    """

    weights: np.ndarray
    a: np.ndarray
    b: np.ndarray
    provenance: Mapping[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        w = _as_param("weights", self.weights)
        a = _as_param("a", self.a)
        b = _as_param("b", self.b)
        if not (w.size == a.size == b.size):
            raise OptionError(
                "weights, a and b must have the same length, got "
                f"len(weights)={w.size}, len(a)={a.size}, len(b)={b.size}"
            )
        if np.any(w < 0):
            raise OptionError(f"weights must be >= 0, got weights={fmt_list(w)}")
        if abs(w.sum() - 1.0) > _WEIGHT_TOL:
            raise OptionError(
                f"weights must sum to 1 (within {_WEIGHT_TOL:g}), got sum {w.sum()!r} "
                f"for weights={fmt_list(w)}"
            )
        for name, p in (("a", a), ("b", b)):
            if np.any(p <= 0):
                raise OptionError(f"{name} must be > 0, got {name}={fmt_list(p)}")
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)
        if self.provenance is not None:
            if not isinstance(self.provenance, Mapping):
                raise OptionError(f"provenance must be a mapping or None, got {self.provenance!r}")
            object.__setattr__(self, "provenance", types.MappingProxyType(dict(self.provenance)))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_ab(cls, a: float, b: float, **kwargs: Any) -> BetaMixture:
        """A single Beta(a, b) component."""
        return cls(weights=[1.0], a=[a], b=[b], **kwargs)

    @classmethod
    def from_mean_sd(cls, mean: float, sd: float, **kwargs: Any) -> BetaMixture:
        """A single beta with the given mean and standard deviation.

        Requires ``0 < sd**2 < mean * (1 - mean)``, the largest variance a
        distribution on (0, 1) with that mean can have.
        """
        if not 0.0 < mean < 1.0:
            raise OptionError(f"mean must lie in (0, 1), got mean={mean!r}")
        if not 0.0 < sd**2 < mean * (1.0 - mean):
            raise OptionError(
                f"sd must satisfy 0 < sd**2 < mean*(1-mean) = {mean * (1 - mean)!r}, got sd={sd!r}"
            )
        n = mean * (1.0 - mean) / sd**2 - 1.0
        return cls.from_mean_n(mean, n, **kwargs)

    @classmethod
    def from_mean_n(cls, mean: float, n: float, **kwargs: Any) -> BetaMixture:
        """A single Beta(mean * n, (1 - mean) * n): ``n = a + b`` prior observations."""
        if not 0.0 < mean < 1.0:
            raise OptionError(f"mean must lie in (0, 1), got mean={mean!r}")
        if not n > 0:
            raise OptionError(f"n must be > 0, got n={n!r}")
        return cls.from_ab(mean * n, (1.0 - mean) * n, **kwargs)

    @classmethod
    def mixture(
        cls, components: Sequence[tuple[float, float, float]], **kwargs: Any
    ) -> BetaMixture:
        """Build from ``[(w1, a1, b1), (w2, a2, b2), ...]`` (RBesT's ``mixbeta`` order)."""
        try:
            rows = [tuple(float(v) for v in c) for c in components]
        except (TypeError, ValueError):
            raise OptionError(
                f"components must be (weight, a, b) triples, got {components!r}"
            ) from None
        if not rows or any(len(r) != 3 for r in rows):
            raise OptionError(f"components must be (weight, a, b) triples, got {components!r}")
        w, a, b = zip(*rows, strict=True)
        return cls(weights=list(w), a=list(a), b=list(b), **kwargs)

    # ------------------------------------------------------------------ value semantics
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BetaMixture):
            return NotImplemented
        return (
            np.array_equal(self.weights, other.weights)
            and np.array_equal(self.a, other.a)
            and np.array_equal(self.b, other.b)
        )

    def __hash__(self) -> int:
        return hash((self.weights.tobytes(), self.a.tobytes(), self.b.tobytes()))

    def __repr__(self) -> str:
        # float repr is the shortest string that reads back to the same double,
        # so eval(repr(m)) == m holds exactly
        return (
            f"BetaMixture(weights={fmt_list(self.weights)}, "
            f"a={fmt_list(self.a)}, b={fmt_list(self.b)})"
        )

    @property
    def n_components(self) -> int:
        """Number of mixture components ``k``."""
        return int(self.weights.size)

    # ------------------------------------------------------------------ densities
    def logpdf(self, x: Any) -> np.ndarray:
        """Log density at ``x`` (``-inf`` outside the support)."""
        x = np.asarray(x, dtype=float)
        comp = beta_logpdf(x[..., None], self.a, self.b)
        # logsumexp with b=weights keeps the tails finite where pdf underflows
        with np.errstate(divide="ignore"):
            return special.logsumexp(comp, axis=-1, b=self.weights)

    def pdf(self, x: Any) -> np.ndarray:
        """Density at ``x``."""
        x = np.asarray(x, dtype=float)
        return stats.beta.pdf(x[..., None], self.a, self.b) @ self.weights

    def cdf(self, x: Any) -> np.ndarray:
        """Distribution function P(p <= x)."""
        # the regularized incomplete beta function directly: designs call this
        # thousands of times, and scipy.stats' argument handling costs 5x more
        x = np.clip(np.asarray(x, dtype=float), 0.0, 1.0)  # NaN stays NaN
        return special.betainc(self.a, self.b, x[..., None]) @ self.weights

    def sf(self, x: Any) -> np.ndarray:
        """Survival function P(p > x), accurate in the upper tail."""
        x = np.clip(np.asarray(x, dtype=float), 0.0, 1.0)
        return special.betaincc(self.a, self.b, x[..., None]) @ self.weights

    def ppf(self, q: Any) -> np.ndarray:
        """Quantile function, by vectorized bracketed root finding on the cdf.

        The mixture cdf is a weighted average of the component cdfs, so its
        q-quantile lies between the smallest and largest component q-quantiles;
        that bracket is exact and makes the root search safe.
        """
        q = check_unit_interval("q", q)
        comp = beta_ppf(q[..., None], self.a, self.b)
        if self.n_components == 1:
            return comp[..., 0]
        lo = np.atleast_1d(comp.min(axis=-1))
        hi = np.atleast_1d(comp.max(axis=-1))
        qq = np.atleast_1d(q)
        out = lo.copy()
        open_ = hi > lo
        if np.any(open_):
            out[open_] = self._bracketed_root(lo[open_], hi[open_], qq[open_])
        return out.reshape(q.shape)[()]

    def _bracketed_root(self, lo: np.ndarray, hi: np.ndarray, q: np.ndarray) -> np.ndarray:
        """x in [lo, hi] with cdf(x) = q, by Newton steps kept inside a shrinking bracket.

        Plain numpy: scipy.optimize's import costs more than a whole MAP prior. As in
        Numerical Recipes' ``rtsafe``, each step is a Newton step on the cdf where it
        falls inside the bracket and is under half the step before, otherwise a
        bisection; a Newton step under the tolerance goes the tolerance past the root, so
        the next evaluation brackets it. The search stops when the bracket is within
        twice 1e-15 absolute plus 4 eps relative (the tolerance of the root finder it
        replaces), so it converges whatever the density's shape.
        """
        lo, hi = lo.copy(), hi.copy()
        x = 0.5 * (lo + hi)
        prev = hi - lo  # the step before last, for the halving test
        todo = np.ones(x.shape, bool)
        for _ in range(400):
            xt, qt = x[todo], q[todo]
            f = self.cdf(xt) - qt
            below = f < 0
            lt = np.where(below, xt, lo[todo])
            ht = np.where(below, hi[todo], xt)
            lo[todo], hi[todo] = lt, ht
            tol = 1e-15 + 4 * np.finfo(float).eps * np.abs(xt)
            done = (f == 0) | (ht - lt <= 2 * tol)
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                dens = np.exp(beta_logpdf(xt[..., None], self.a, self.b)) @ self.weights
                move = -f / dens
            move = np.where(np.abs(move) < tol, np.sign(move) * tol, move)
            step = xt + move
            newton = (
                np.isfinite(step) & (step > lt) & (step < ht) & (np.abs(move) <= 0.5 * prev[todo])
            )
            new = np.where(done, xt, np.where(newton, step, 0.5 * (lt + ht)))
            prev[todo] = np.abs(new - xt)
            x[todo] = new
            todo[np.flatnonzero(todo)[done]] = False
            if not todo.any():
                break
        return x

    # ------------------------------------------------------------------ moments
    def mean(self) -> float:
        """Mixture mean ``sum_k w_k a_k / (a_k + b_k)``."""
        return float(self.weights @ (self.a / (self.a + self.b)))

    def var(self) -> float:
        """Mixture variance, by the law of total variance."""
        n = self.a + self.b
        m = self.a / n
        v = m * (1.0 - m) / (n + 1.0)
        mean = self.weights @ m
        return float(self.weights @ (v + m**2) - mean**2)

    def sd(self) -> float:
        """Mixture standard deviation."""
        return math.sqrt(self.var())

    def rvs(self, size: int | tuple[int, ...] = 1, rng: Any = None) -> np.ndarray:
        """Random draws: pick a component by weight, then draw from its beta."""
        rng = np.random.default_rng(rng)
        k = rng.choice(self.n_components, size=size, p=self.weights)
        return rng.beta(self.a[k], self.b[k])

    # ------------------------------------------------------------------ conjugate updates
    def posterior(self, r: int, n: int) -> BetaMixture:
        """Posterior after ``r`` responders in ``n`` patients.

        Each component updates to Beta(a + r, b + n - r); its weight is
        multiplied by its beta-binomial marginal likelihood of ``r``.  The
        binomial coefficient is common to all components and cancels; the
        rest is done on the log scale so that large ``n`` cannot underflow.
        """
        n = check_count("n", n)
        r = check_count("r", r, upper=n)
        a_post = self.a + r
        b_post = self.b + (n - r)
        with np.errstate(divide="ignore"):
            logw = (
                np.log(self.weights)
                + special.betaln(a_post, b_post)
                - special.betaln(self.a, self.b)
            )
        w = np.exp(logw - special.logsumexp(logw))
        w /= w.sum()
        return BetaMixture(weights=w, a=a_post, b=b_post, provenance=self.provenance)

    def _predictive_y(self, n: int, y: Any) -> tuple[int, np.ndarray]:
        n = check_count("n", n)
        if y is None:
            return n, np.arange(n + 1)
        y = np.asarray(y)
        if not np.issubdtype(y.dtype, np.number) or np.any(y != np.round(y)):
            raise OptionError(f"y must be integer counts, got {y!r}")
        return n, y

    def predictive_pmf(self, n: int, y: Any = None) -> np.ndarray:
        """Beta-binomial mixture pmf of the responders ``y`` out of ``n`` new patients.

        Returns the pmf over ``y = 0..n`` when ``y`` is None; values of ``y``
        outside 0..n have probability 0.
        """
        n, y = self._predictive_y(n, y)
        return stats.betabinom.pmf(y[..., None], n, self.a, self.b) @ self.weights

    def predictive_cdf(self, n: int, y: Any = None) -> np.ndarray:
        """Beta-binomial mixture cdf P(Y <= y) for ``n`` new patients."""
        n, y = self._predictive_y(n, y)
        return stats.betabinom.cdf(y[..., None], n, self.a, self.b) @ self.weights

    # ------------------------------------------------------------------ summaries
    def summary(self) -> pd.Series:
        """Mean, sd, 2.5%/50%/97.5% quantiles and the ELIR effective sample size.

        ``ess_elir`` is NaN when some ``a < 1`` or ``b < 1`` (see :func:`ess`).
        """
        q = self.ppf([0.025, 0.5, 0.975])
        # ELIR is undefined when some a or b < 1 (the integral diverges); a
        # summary should still print, so it shows NaN there
        ess_elir = ess(self, "elir") if np.all(self.a >= 1) and np.all(self.b >= 1) else np.nan
        return pd.Series(
            {
                "mean": self.mean(),
                "sd": self.sd(),
                "2.5%": float(q[0]),
                "50%": float(q[1]),
                "97.5%": float(q[2]),
                "ess_elir": ess_elir,
            },
            name="BetaMixture",
        )
