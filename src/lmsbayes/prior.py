"""Beta-mixture priors for a binary endpoint: the hand-off from meta-analysis to design.

A :class:`BetaMixture` is a small, immutable value object,

    pi(p) = sum_k w_k Beta(p | a_k, b_k),

with the operations a trial design needs: densities, quantiles, moments,
sampling, the conjugate posterior after ``r`` responders out of ``n`` and the
beta-binomial predictive distribution.  Everything here is plain numpy/scipy;
this module never imports PyMC (see ARCHITECTURE.md, "Priors for designs").
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import types
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import integrate, special, stats
from scipy.optimize import elementwise, minimize_scalar

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "BetaMixture",
    "ess",
    "fit_mixture",
    "map_prior",
    "mixture_fit_diagnostic",
    "robustify",
]

SCHEMA = "lmsbayes.betamixture"
SCHEMA_VERSION = 1

# weights are compared to 1 with this absolute tolerance; tighter than any
# rounding a user would do by hand, looser than float accumulation error
_WEIGHT_TOL = 1e-8


def _package_version() -> str:
    # importlib.metadata rather than `lmsbayes.__version__`: prior.py imports no
    # other lmsbayes module, so it stays usable on its own
    from importlib import metadata

    try:
        return metadata.version("lmsbayes")
    except metadata.PackageNotFoundError:  # pragma: no cover - source checkout
        return "unknown"


def _fmt_list(x: np.ndarray) -> str:
    return "[" + ", ".join(repr(float(v)) for v in x) + "]"


def _as_param(name: str, value: Any) -> np.ndarray:
    """Convert a parameter to a read-only 1-D float array or raise one ValueError."""
    try:
        arr = np.array(value, dtype=float, ndmin=1)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric, got {value!r}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per component), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must have at least one component, got {value!r}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {_fmt_list(arr)}")
    arr.setflags(write=False)
    return arr


def _check_unit_interval(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    bad = ~((arr >= 0.0) & (arr <= 1.0))  # also catches NaN
    if np.any(bad):
        raise ValueError(f"{name} must lie in [0, 1], got {arr[bad].ravel()[:5].tolist()}")
    return arr


def _check_count(name: str, value: Any, *, upper: int | None = None) -> int:
    if isinstance(value, bool) or not float(value).is_integer() or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if upper is not None and value > upper:
        raise ValueError(f"{name} must be <= {upper}, got {value!r}")
    return int(value)


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
            raise ValueError(
                "weights, a and b must have the same length, got "
                f"len(weights)={w.size}, len(a)={a.size}, len(b)={b.size}"
            )
        if np.any(w < 0):
            raise ValueError(f"weights must be >= 0, got weights={_fmt_list(w)}")
        if abs(w.sum() - 1.0) > _WEIGHT_TOL:
            raise ValueError(
                f"weights must sum to 1 (within {_WEIGHT_TOL:g}), got sum {w.sum()!r} "
                f"for weights={_fmt_list(w)}"
            )
        for name, p in (("a", a), ("b", b)):
            if np.any(p <= 0):
                raise ValueError(f"{name} must be > 0, got {name}={_fmt_list(p)}")
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)
        if self.provenance is not None:
            if not isinstance(self.provenance, Mapping):
                raise ValueError(f"provenance must be a mapping or None, got {self.provenance!r}")
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
            raise ValueError(f"mean must lie in (0, 1), got mean={mean!r}")
        if not 0.0 < sd**2 < mean * (1.0 - mean):
            raise ValueError(
                f"sd must satisfy 0 < sd**2 < mean*(1-mean) = {mean * (1 - mean)!r}, got sd={sd!r}"
            )
        n = mean * (1.0 - mean) / sd**2 - 1.0
        return cls.from_mean_n(mean, n, **kwargs)

    @classmethod
    def from_mean_n(cls, mean: float, n: float, **kwargs: Any) -> BetaMixture:
        """A single Beta(mean * n, (1 - mean) * n): ``n = a + b`` prior observations."""
        if not 0.0 < mean < 1.0:
            raise ValueError(f"mean must lie in (0, 1), got mean={mean!r}")
        if not n > 0:
            raise ValueError(f"n must be > 0, got n={n!r}")
        return cls.from_ab(mean * n, (1.0 - mean) * n, **kwargs)

    @classmethod
    def mixture(
        cls, components: Sequence[tuple[float, float, float]], **kwargs: Any
    ) -> BetaMixture:
        """Build from ``[(w1, a1, b1), (w2, a2, b2), ...]`` (RBesT's ``mixbeta`` order)."""
        try:
            rows = [tuple(float(v) for v in c) for c in components]
        except (TypeError, ValueError):
            raise ValueError(
                f"components must be (weight, a, b) triples, got {components!r}"
            ) from None
        if not rows or any(len(r) != 3 for r in rows):
            raise ValueError(f"components must be (weight, a, b) triples, got {components!r}")
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
            f"BetaMixture(weights={_fmt_list(self.weights)}, "
            f"a={_fmt_list(self.a)}, b={_fmt_list(self.b)})"
        )

    @property
    def n_components(self) -> int:
        """Number of mixture components ``k``."""
        return int(self.weights.size)

    # ------------------------------------------------------------------ densities
    def logpdf(self, x: Any) -> np.ndarray:
        """Log density at ``x`` (``-inf`` outside the support)."""
        x = np.asarray(x, dtype=float)
        comp = stats.beta.logpdf(x[..., None], self.a, self.b)
        # logsumexp with b=weights keeps the tails finite where pdf underflows
        with np.errstate(divide="ignore"):
            return special.logsumexp(comp, axis=-1, b=self.weights)

    def pdf(self, x: Any) -> np.ndarray:
        """Density at ``x``."""
        x = np.asarray(x, dtype=float)
        return stats.beta.pdf(x[..., None], self.a, self.b) @ self.weights

    def cdf(self, x: Any) -> np.ndarray:
        """Distribution function P(p <= x)."""
        x = np.asarray(x, dtype=float)
        return stats.beta.cdf(x[..., None], self.a, self.b) @ self.weights

    def sf(self, x: Any) -> np.ndarray:
        """Survival function P(p > x), accurate in the upper tail."""
        x = np.asarray(x, dtype=float)
        return stats.beta.sf(x[..., None], self.a, self.b) @ self.weights

    def ppf(self, q: Any) -> np.ndarray:
        """Quantile function, by vectorized bracketed root finding on the cdf.

        The mixture cdf is a weighted average of the component cdfs, so its
        q-quantile lies between the smallest and largest component q-quantiles;
        that bracket is exact and makes the root search safe.
        """
        q = _check_unit_interval("q", q)
        comp = stats.beta.ppf(q[..., None], self.a, self.b)
        if self.n_components == 1:
            return comp[..., 0]
        lo = np.atleast_1d(comp.min(axis=-1))
        hi = np.atleast_1d(comp.max(axis=-1))
        qq = np.atleast_1d(q)
        out = lo.copy()
        open_ = hi > lo
        if np.any(open_):
            res = elementwise.find_root(
                lambda x, qq: self.cdf(x) - qq,
                (lo[open_], hi[open_]),
                args=(qq[open_],),
                tolerances={"xatol": 1e-15, "xrtol": 4 * np.finfo(float).eps},
            )
            out[open_] = res.x
        return out.reshape(q.shape)[()]

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
        n = _check_count("n", n)
        r = _check_count("r", r, upper=n)
        a_post = self.a + r
        b_post = self.b + (n - r)
        with np.errstate(divide="ignore"):
            logw = np.log(self.weights) + special.betaln(a_post, b_post) - special.betaln(self.a, self.b)
        w = np.exp(logw - special.logsumexp(logw))
        w /= w.sum()
        return BetaMixture(weights=w, a=a_post, b=b_post, provenance=self.provenance)

    def _predictive_y(self, n: int, y: Any) -> tuple[int, np.ndarray]:
        n = _check_count("n", n)
        if y is None:
            return n, np.arange(n + 1)
        y = np.asarray(y)
        if not np.issubdtype(y.dtype, np.number) or np.any(y != np.round(y)):
            raise ValueError(f"y must be integer counts, got {y!r}")
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

    # ------------------------------------------------------------------ persistence
    def to_dict(self, provenance: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The JSON-ready dictionary of ``docs/prior_schema.md``.

        ``provenance`` entries are merged over the object's own provenance.
        """
        prov = dict(self.provenance or {})
        if provenance:
            prov.update(provenance)
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "weights": [float(v) for v in self.weights],
            "a": [float(v) for v in self.a],
            "b": [float(v) for v in self.b],
            "provenance": prov or None,
            "lmsbayes_version": _package_version(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BetaMixture:
        """Inverse of :meth:`to_dict`; refuses unknown schemas and versions."""
        if not isinstance(d, Mapping):
            raise ValueError(f"expected a mapping with schema {SCHEMA!r}, got {type(d).__name__}")
        if d.get("schema") != SCHEMA:
            raise ValueError(f"schema must be {SCHEMA!r}, got {d.get('schema')!r}")
        if d.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                f"schema_version must be {SCHEMA_VERSION} (this is lmsbayes "
                f"{_package_version()}), got {d.get('schema_version')!r}"
            )
        missing = [k for k in ("weights", "a", "b") if k not in d]
        if missing:
            raise ValueError(f"missing required key(s) {missing} in {SCHEMA} document")
        return cls(weights=d["weights"], a=d["a"], b=d["b"], provenance=d.get("provenance"))

    def to_json(
        self, path: str | os.PathLike[str] | None = None, provenance: Mapping[str, Any] | None = None
    ) -> str:
        """Serialise to JSON; write it to ``path`` (atomically) when given.

        Floats are written with Python's repr, the shortest decimal string that
        reads back to the same double, so the round trip is exact.  The file is
        written to a temporary file in the same directory and moved into place
        with ``os.replace``, so a reader never sees half a prior.

        Returns
        -------
        str
            The JSON text.
        """
        try:
            text = json.dumps(self.to_dict(provenance), indent=2, allow_nan=False) + "\n"
        except (TypeError, ValueError) as err:
            raise ValueError(f"provenance must be JSON-serialisable (str, numbers, lists, dicts): {err}") from None
        if path is not None:
            path = os.fspath(path)
            directory = os.path.dirname(os.path.abspath(path))
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(text)
                os.replace(tmp, path)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        return text

    @classmethod
    def from_json(cls, source: str | os.PathLike[str]) -> BetaMixture:
        """Read a prior written by :meth:`to_json`: a file path or the JSON text itself."""
        if isinstance(source, str) and source.lstrip().startswith("{"):
            text = source
        else:
            with open(source, encoding="utf-8") as fh:
                text = fh.read()
        try:
            d = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"not valid JSON ({err}) in {source!r:.80}") from None
        return cls.from_dict(d)

    def to_rbest(self) -> str:
        """R expression building the same prior with RBesT: ``mixbeta(c(w, a, b), ...)``.

        Numbers are written with full (round-trip) precision.
        """

        def fmt(v: float) -> str:
            s = repr(float(v))
            return s[:-2] if s.endswith(".0") else s

        comps = ", ".join(
            f"c({fmt(w)}, {fmt(a)}, {fmt(b)})"
            for w, a, b in zip(self.weights, self.a, self.b, strict=True)
        )
        return f"mixbeta({comps})"


# ---------------------------------------------------------------------- effective sample size
_ESS_METHODS = ("elir", "moment", "morita")


def ess(mix: BetaMixture, method: str = "elir", *, s: float = 100.0) -> float:
    """Effective sample size (ESS) of a beta-mixture prior, in Bernoulli observations.

    Parameters
    ----------
    mix : BetaMixture
        The prior.
    method : {"elir", "moment", "morita"}
        ``"elir"`` (default, as in RBesT): expected local information ratio of
        Neuenschwander et al. (2020),

            ESS = E_prior[ i_prior(p) / i_F(p) ],  i_F(p) = 1 / (p (1 - p)),

        with ``i_prior = -d^2/dp^2 log prior``.  It is the only one of the three
        that is predictively consistent: averaging the posterior ESS over the
        prior predictive of ``m`` new patients gives ESS + m.  It requires all
        ``a, b >= 1`` (otherwise the defining integral diverges).
        ``"moment"``: ``a + b`` of the single beta with the mixture's mean and
        sd (conservative for mixtures).
        ``"morita"``: Morita, Thall & Müller (2008) as implemented in RBesT
        (curvature at the prior mode rather than the mean, closed form of
        Neuenschwander et al. 2019, eq. 9; liberal for mixtures).
    s : float, default 100
        Morita only: the vague reference prior is Beta(mode / s, (1 - mode) / s).
        ``s=np.inf`` drops it, which makes the ESS of a single Beta(a, b)
        exactly ``a + b``.

    Returns
    -------
    float
        For a single Beta(a, b) all three methods give ``a + b`` (Morita up to
        O(1/s)).

    Notes
    -----
    ELIR is computed semi-analytically: since pi(p) r_k(p) = w_k f_k(p), the
    within-component curvature integrates to sum_k w_k (b_k [a_k > 1] +
    a_k [b_k > 1]) in closed form, and only the between-component term (zero
    for a single beta) is integrated numerically, on the logit scale.  Hence
    ELIR jumps at a = 1 and b = 1, by definition: Beta(1, 1) has no
    curvature and ELIR 0, whereas a component with b = 1 + 1e-8 still
    contributes w a, from p within 1e-300 of 1, which a purely numerical
    integral (RBesT's) does not see.

    References
    ----------
    Neuenschwander B, Weber S, Schmidli H, O'Hagan A (2020). Predictively
    consistent prior effective sample sizes. Biometrics 76(2):578-587.
    Morita S, Thall PF, Müller P (2008). Determining the effective sample size
    of a parametric prior. Biometrics 64(2):595-602.
    RBesT ``ess()`` (R/mixess.R).
    """
    if not isinstance(mix, BetaMixture):
        raise ValueError(f"mix must be a BetaMixture, got {type(mix).__name__}")
    if method == "moment":
        m, v = mix.mean(), mix.var()
        return float(m * (1.0 - m) / v - 1.0)
    if method == "elir":
        _require_ge1(mix, "elir")
        return _ess_elir(mix)
    if method == "morita":
        _require_ge1(mix, "morita")
        return _ess_morita(mix, s)
    raise ValueError(f"method must be one of {list(_ESS_METHODS)}, got {method!r}")


def _require_ge1(mix: BetaMixture, method: str) -> None:
    # a < 1 or b < 1 makes the density unbounded at a boundary: the ELIR
    # integral diverges and the mode sits at 0 or 1 (RBesT raises the same)
    bad = (mix.a < 1.0) | (mix.b < 1.0)
    if np.any(bad):
        raise ValueError(
            f"ess(method={method!r}) needs all a >= 1 and b >= 1 (the density is unbounded "
            f"otherwise), got a={_fmt_list(mix.a)}, b={_fmt_list(mix.b)}; fit with "
            "constrain_gt1=True"
        )


def _log_expit(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log p and log(1 - p) for p = expit(u), without overflow."""
    return -np.logaddexp(0.0, -u), -np.logaddexp(0.0, u)


def _lir(mix: BetaMixture, u: Any) -> np.ndarray:
    """Local information ratio i_prior(p) * p (1 - p) at p = expit(u)."""
    a, b = mix.a, mix.b
    # beyond |u| = 700 exp(|u|) overflows; the prior has no mass there anyway
    u = np.clip(np.asarray(u, dtype=float), -700.0, 700.0)[..., None]
    lp, lq = _log_expit(u)
    r = _responsibilities(mix, lp, lq)
    # -d2/dp2 log pi = E_r[-g_k'] - Var_r(g_k) with g_k = d/dp log f_k
    curv = (r * ((a - 1) * np.exp(-u) + (b - 1) * np.exp(u))).sum(axis=-1)
    return curv - _lir_var(mix, r, lp[..., 0], lq[..., 0])


def _responsibilities(mix: BetaMixture, lp: np.ndarray, lq: np.ndarray) -> np.ndarray:
    a, b = mix.a, mix.b
    with np.errstate(divide="ignore"):
        logf = np.log(mix.weights) + (a - 1) * lp + (b - 1) * lq - special.betaln(a, b)
    return np.exp(logf - special.logsumexp(logf, axis=-1, keepdims=True))


def _lir_var(mix: BetaMixture, r: np.ndarray, lp: np.ndarray, lq: np.ndarray) -> np.ndarray:
    """Var_r(g) * p (1 - p), written as 1/2 sum_jk r_j r_k (g_j - g_k)^2 p (1 - p).

    g_j - g_k = (da (1 - p) - db p) / (p (1 - p)), so no two large terms cancel.
    """
    p, q = np.exp(lp)[..., None, None], np.exp(lq)[..., None, None]
    da = mix.a[:, None] - mix.a[None, :]
    db = mix.b[:, None] - mix.b[None, :]
    d2 = (da * q - db * p) ** 2 / (p * q)
    return 0.5 * np.einsum("...j,...k,...jk->...", r, r, d2)


def _ess_elir(mix: BetaMixture) -> float:
    # Split -d2 log pi into its two parts (see _lir).  The first integrates in
    # closed form, because pi(p) r_k(p) = w_k f_k(p):
    #     E_pi[ sum_k r_k ((a_k-1)(1-p)/p + (b_k-1) p/(1-p)) ] = sum_k w_k (b_k 1[a_k>1] + a_k 1[b_k>1]).
    # Done numerically, this part is the unstable one (for a_k near 1 its
    # mass sits at p < 1e-300).  Only the between-component variance term,
    # which is >= 0 and vanishes for k = 1, is integrated, on the logit scale.
    w, a, b = mix.weights, mix.a, mix.b
    analytic = float(w @ (np.where(a > 1, b, 0.0) + np.where(b > 1, a, 0.0)))
    if mix.n_components == 1:
        return analytic
    logw = np.log(np.where(w > 0, w, np.finfo(float).tiny))
    lnorm = special.betaln(a, b)
    da = a[:, None] - a[None, :]
    db = b[:, None] - b[None, :]

    def integrand(u: float) -> float:
        lp, lq = _log_expit(np.asarray(u, dtype=float))
        # pi r_j r_k (da q - db p)^2 / (p q) dp = w_j f_j w_k f_k / pi (da q - db p)^2 du:
        # the Jacobian dp = p q du cancels the 1 / (p q); done on the log scale
        logf = logw + (a - 1) * lp + (b - 1) * lq - lnorm
        lpi = special.logsumexp(logf)
        lpair = logf[:, None] + logf[None, :] - lpi
        val = np.exp(lpair + 2 * np.log(np.abs(da * np.exp(lq) - db * np.exp(lp)) + 1e-300))
        return 0.5 * float(val.sum())

    # breakpoints at each component's central and extreme quantiles keep quad
    # from stepping over a narrow peak
    qs = special.logit(stats.beta.ppf(np.array([1e-12, 0.01, 0.5, 0.99, 1 - 1e-12])[:, None], a, b))
    pts = np.unique(qs[np.isfinite(qs)])
    var_term = integrate.quad(integrand, -np.inf, pts[0], limit=200)[0]
    for lo, hi in zip(pts[:-1], pts[1:], strict=True):
        var_term += integrate.quad(integrand, lo, hi, limit=200)[0]
    var_term += integrate.quad(integrand, pts[-1], np.inf, limit=200)[0]
    return analytic - float(var_term)


def _mixture_modes(mix: BetaMixture) -> np.ndarray:
    """Local maxima of the density in [eps, 1 - eps], highest first."""
    eps = np.finfo(float).eps
    # a grid uniform on the logit scale resolves peaks near 0 and 1; component
    # modes are added so that narrow components cannot fall between grid points
    grid = special.expit(np.linspace(-30.0, 30.0, 4001))
    with np.errstate(invalid="ignore", divide="ignore"):
        cmodes = np.where(
            (mix.a > 1) & (mix.b > 1), (mix.a - 1) / (mix.a + mix.b - 2), mix.a / (mix.a + mix.b)
        )
    grid = np.unique(np.clip(np.concatenate([grid, cmodes, [eps, 1 - eps]]), eps, 1 - eps))
    logf = mix.logpdf(grid)
    left = np.concatenate([[-np.inf], logf[:-1]])
    right = np.concatenate([logf[1:], [-np.inf]])
    # a peak must stand out from its right neighbour by more than rounding noise:
    # where a vague component makes the density flat near 0 or 1, float noise
    # would otherwise create many false "modes"
    tol = 1e-9 * np.maximum(1.0, np.abs(logf))
    is_peak = (logf >= left) & (logf > right + tol)
    is_peak[-1] = logf[-1] > left[-1] + tol[-1]  # the upper end must rise, not just be flat
    peaks = np.flatnonzero(is_peak)
    if peaks.size == 0:  # a flat density (e.g. Beta(1, 1)): the grid maximum stands in
        peaks = np.array([int(np.argmax(logf))])
    modes = []
    for i in peaks:
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
        if hi > lo:
            res = minimize_scalar(
                lambda x: -mix.logpdf(x), bounds=(lo, hi), method="bounded",
                options={"xatol": 1e-12},
            )
            x = res.x if -res.fun >= logf[i] else grid[i]
        else:
            x = grid[i]
        modes.append(float(x))
    modes_arr = np.sort(np.array(modes))
    modes_arr = modes_arr[np.concatenate([[True], np.diff(modes_arr) > 1e-9])]  # one per peak
    return modes_arr[np.argsort(-mix.logpdf(modes_arr))]


def _ess_morita(mix: BetaMixture, s: float) -> float:
    if not s > 0:
        raise ValueError(f"s must be > 0, got s={s!r}")
    modes = _mixture_modes(mix)
    if modes.size > 1:
        warnings.warn(
            f"the prior has {modes.size} modes ({', '.join(f'{m:.3g}' for m in modes)}); the "
            "Morita ESS uses the highest one and is ill-defined for multi-modal priors",
            UserWarning,
            stacklevel=3,
        )
    x = float(modes[0])
    # prior information (negative curvature of log prior) at the mode
    deriv2 = float(_lir(mix, special.logit(x))) / (x * (1.0 - x))
    # curvature of the vague Beta(x/s, (1-x)/s) reference prior at the same point
    a0, b0 = x / s, (1.0 - x) / s
    info0 = (a0 - 1.0) / x**2 + (b0 - 1.0) / (1.0 - x) ** 2
    # expected Fisher information of one Bernoulli observation under the prior
    # predictive, evaluated at the mode (Neuenschwander et al. 2019, eq. 9)
    mean = mix.mean()
    e_info = mean / x**2 + (1.0 - mean) / (1.0 - x) ** 2
    return float((deriv2 - info0) / e_info)


# ---------------------------------------------------------------------- robustify
def robustify(
    mix: BetaMixture, weight: float, mean: float | None = None, n: float = 1.0
) -> BetaMixture:
    """Add a vague component to a prior to protect against prior-data conflict.

    Follows RBesT's ``robustify`` for beta mixtures exactly: the robust
    component is Beta(mean * (n + 1), (1 - mean) * (n + 1)) with weight
    ``weight``, and the existing weights are scaled by ``1 - weight``.  With
    the defaults (``mean=0.5, n=1``) that is the uniform Beta(1, 1); RBesT uses
    ``n + 1`` rather than ``n`` so that the default is the uniform and not the
    strict unit-information Beta(1/2, 1/2) (``n=0`` gives that one).

    Parameters
    ----------
    mix : BetaMixture
        The informative (e.g. MAP) prior.
    weight : float
        Prior probability of the robust component, ``0 < weight < 1``.
    mean : float, optional
        Mean of the robust component.  Defaults to 0.5 as in RBesT; like
        RBesT we strongly recommend setting it to the null rate ``p0``.
    n : float, default 1
        Prior observations of the robust component (RBesT's ``n``), ``>= 0``.

    Returns
    -------
    BetaMixture
        ``k + 1`` components, the robust one last; provenance records the step.

    References
    ----------
    Schmidli H, Gsteiger S, Roychoudhury S, O'Hagan A, Spiegelhalter D,
    Neuenschwander B (2014). Robust meta-analytic-predictive priors in
    clinical trials with historical control information. Biometrics
    70(4):1023-1032.
    """
    if not isinstance(mix, BetaMixture):
        raise ValueError(f"mix must be a BetaMixture, got {type(mix).__name__}")
    if not 0.0 < weight < 1.0:
        raise ValueError(f"weight must lie in (0, 1), got weight={weight!r}")
    if mean is None:
        mean = 0.5
    if not 0.0 < mean < 1.0:
        raise ValueError(f"mean must lie in (0, 1), got mean={mean!r}")
    if not (np.isfinite(n) and n >= 0):
        raise ValueError(f"n must be finite and >= 0, got n={n!r}")
    m = float(n) + 1.0
    prov = dict(mix.provenance or {})
    prov["robustify"] = {"weight": float(weight), "mean": float(mean), "n": float(n)}
    return BetaMixture(
        weights=np.append(mix.weights * (1.0 - weight), weight),
        a=np.append(mix.a, mean * m),
        b=np.append(mix.b, (1.0 - mean) * m),
        provenance=prov,
    )


# ---------------------------------------------------------------------- fitting to draws
_CRITERIA = ("aic", "bic")
_SHORT_EM = 25  # iterations per start before the best start is run to convergence


def _as_draws(draws: Any) -> np.ndarray:
    """Flatten draws (array or xarray.DataArray) to 1-D values in (0, 1)."""
    if hasattr(draws, "dims") and hasattr(draws, "values"):
        # an xarray.DataArray: only sample dims may be flattened, never a
        # setting or landmark dim, which would silently pool different rates
        extra = [d for d in draws.dims if d not in ("chain", "draw", "sample")]
        if extra:
            raise ValueError(
                f"draws must only have sample dims ('chain', 'draw', 'sample'), got dims "
                f"{tuple(draws.dims)}; select one value of {extra} first"
            )
        draws = draws.values
    x = np.asarray(draws, dtype=float).ravel()
    if x.size < 2:
        raise ValueError(f"draws must hold at least 2 values, got {x.size}")
    bad = ~((x >= 0.0) & (x <= 1.0))
    if np.any(bad):
        raise ValueError(
            f"draws must lie in [0, 1] (they are rates), got {int(bad.sum())} value(s) outside, "
            f"e.g. {x[bad][:3].tolist()}"
        )
    if np.ptp(x) == 0:
        raise ValueError(f"draws are all equal ({x[0]!r}); a beta mixture cannot be fitted")
    # exact 0s and 1s have -inf log-likelihood under any beta with a, b > 1;
    # as in RBesT's EM they are moved to machine epsilon, which changes no
    # quantile anyone could care about
    eps = np.finfo(float).eps
    return np.clip(x, eps, 1.0 - eps)


def _moment_ab(m: float, v: float, floor: float) -> tuple[float, float]:
    """Beta (a, b) with mean m and variance v, kept above ``floor``."""
    n = m * (1.0 - m) / v - 1.0 if v > 0 else 1e6
    n = max(n, 2.0 * floor + 1e-3)
    return max(m * n, floor), max((1.0 - m) * n, floor)


def _beta_ml(s1: float, s2: float, a0: float, b0: float, floor: float) -> tuple[float, float]:
    """Beta ML from weighted sufficient statistics s1 = E_r[log x], s2 = E_r[log(1-x)].

    The negative log-likelihood per unit weight, betaln(a, b) - (a-1) s1 - (b-1) s2,
    is strictly convex in (a, b) (the beta is an exponential family with
    natural parameters a, b), so Newton's method from the moment-matching
    start converges in a handful of steps.  Steps are halved to stay above
    ``floor`` and to decrease the objective.  This replaces a general
    optimiser: EM calls it k times per iteration, and a call to
    ``scipy.optimize.minimize`` costs ~100 times more for a 2-parameter problem.
    """

    def nll(a: float, b: float) -> float:
        return special.betaln(a, b) - (a - 1.0) * s1 - (b - 1.0) * s2

    a, b = a0, b0
    f = nll(a, b)
    for _ in range(100):
        psi_ab, tri_ab = special.digamma(a + b), special.polygamma(1, a + b)
        g = np.array([special.digamma(a) - psi_ab - s1, special.digamma(b) - psi_ab - s2])
        h11 = special.polygamma(1, a) - tri_ab
        h22 = special.polygamma(1, b) - tri_ab
        det = h11 * h22 - tri_ab**2
        step = np.array([h22 * g[0] + tri_ab * g[1], tri_ab * g[0] + h11 * g[1]]) / det
        t = 1.0
        while True:
            a_new, b_new = a - t * step[0], b - t * step[1]
            if a_new >= floor and b_new >= floor:
                f_new = nll(a_new, b_new)
                if f_new <= f + 1e-14 * abs(f):
                    break
            t *= 0.5
            if t < 1e-10:
                # stuck at the constraint: the optimum lies on the boundary
                a_new, b_new = max(a - t * step[0], floor), max(b - t * step[1], floor)
                f_new = nll(a_new, b_new)
                break
        done = abs(a_new - a) <= 1e-10 * a and abs(b_new - b) <= 1e-10 * b
        a, b, f = a_new, b_new, f_new
        if done:
            break
    return float(a), float(b)


def _em(
    x: np.ndarray,
    lx: np.ndarray,
    l1x: np.ndarray,
    init: tuple[np.ndarray, np.ndarray, np.ndarray],
    constrain_gt1: bool,
    max_iter: int,
    tol: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, bool]:
    w, a, b = (np.array(v, dtype=float) for v in init)
    floor = 1.0 + 1e-8 if constrain_gt1 else 1e-8
    a, b = np.maximum(a, floor), np.maximum(b, floor)
    ll_old = -np.inf
    converged = False
    # columns of the per-draw statistics the M-step needs; one matrix product
    # resp.T @ stats gives all weighted sums (and avoids BLAS dot on long vectors)
    suff = np.column_stack([x, x * x, lx, l1x])
    for _ in range(max_iter):
        # E-step on the log scale: points far out in a component's tail would
        # otherwise underflow to responsibility 0/0
        with np.errstate(divide="ignore"):
            logf = np.log(w) + (a - 1) * lx[:, None] + (b - 1) * l1x[:, None] - special.betaln(a, b)
        top = logf.max(axis=1, keepdims=True)
        resp = np.exp(logf - top)
        dens = resp.sum(axis=1, keepdims=True)
        ll = float((top + np.log(dens)).sum())
        if abs(ll - ll_old) <= tol * (1.0 + abs(ll)):
            converged = True
            break
        ll_old = ll
        resp /= dens
        nk = resp.sum(axis=0)
        w = nk / x.size
        sums = resp.T @ suff
        for k in range(w.size):
            if nk[k] < 1e-8 * x.size:
                continue  # an emptied component keeps its shape; its weight is ~0
            m, m2, s1, s2 = sums[k] / nk[k]
            a0, b0 = _moment_ab(m, max(m2 - m * m, 0.0), floor)
            a[k], b[k] = _beta_ml(s1, s2, a0, b0, floor)
    w = w / w.sum()
    return w, a, b, ll, converged


def _inits(x: np.ndarray, k: int, rng: np.random.Generator, floor: float) -> list[tuple]:
    """Starting values: equal-count quantile groups, and k-means on the logit scale."""
    xs = np.sort(x)
    out = []
    groups = np.array_split(xs, k)
    out.append(
        (
            np.array([g.size for g in groups], dtype=float) / x.size,
            *map(np.array, zip(*(_moment_ab(g.mean(), g.var(), floor) for g in groups), strict=True)),
        )
    )
    if k > 1:
        # 1-D k-means (Lloyd) on logit(x), seeded k-means++ style from rng
        z = special.logit(x)
        centers = [rng.choice(z)]
        for _ in range(1, k):
            d2 = np.min((z[:, None] - np.array(centers)[None, :]) ** 2, axis=1)
            centers.append(rng.choice(z, p=d2 / d2.sum()) if d2.sum() > 0 else rng.choice(z))
        c = np.sort(np.array(centers))
        for _ in range(50):
            lab = np.argmin(np.abs(z[:, None] - c[None, :]), axis=1)
            new = np.array([z[lab == j].mean() if np.any(lab == j) else c[j] for j in range(k)])
            if np.allclose(new, c):
                break
            c = new
        w, a, b = [], [], []
        for j in range(k):
            g = x[lab == j]
            if g.size < 2:
                g = x  # an empty cluster starts as the whole sample
            w.append(max(g.size, 1) / x.size)
            aj, bj = _moment_ab(g.mean(), g.var(), floor)
            a.append(aj)
            b.append(bj)
        out.append((np.array(w) / np.sum(w), np.array(a), np.array(b)))
    return out


def fit_mixture(
    draws: Any,
    max_components: int = 4,
    criterion: str = "bic",
    rng: Any = None,
    *,
    constrain_gt1: bool = True,
    max_iter: int = 500,
    tol: float = 1e-8,
) -> BetaMixture:
    """Fit a beta mixture to draws by EM, choosing the number of components.

    For each ``k = 1..max_components`` EM is started from equal-count quantile
    groups and from k-means on the logit scale; after a few iterations the
    start with the higher log-likelihood is run to convergence, and ``k`` is
    chosen by ``criterion``.  The M-step matches each component's weighted
    moments and then refines by weighted maximum likelihood from the weighted
    sufficient statistics sum r log x and sum r log(1 - x) (Newton's method on
    (a, b), where the objective is convex).  This is RBesT's ``mixfit`` /
    ``automixfit`` for ``type="beta"``; convergence is declared on the
    log-likelihood.

    Parameters
    ----------
    draws : array_like or xarray.DataArray
        Draws of a rate in [0, 1]; all dims are flattened (a DataArray may
        only have ``chain``, ``draw`` or ``sample`` dims).  Values exactly 0 or
        1 are moved to machine epsilon (``2.2e-16``) from the boundary, as
        RBesT does: they have zero likelihood under a beta with a, b > 1.
    max_components : int, default 4
        Largest ``k`` tried.
    criterion : {"bic", "aic"}
        ``-2 loglik + penalty * (3k - 1)`` with penalty ``log(N)`` (BIC) or 2
        (AIC).  RBesT's ``automixfit`` uses AIC with penalty 6 by default;
        with thousands of MCMC draws BIC penalises at least as strongly.
    rng : int or numpy.random.Generator, optional
        Seeds the k-means start; the fit is deterministic given ``rng``.
    constrain_gt1 : bool, default True
        Keep all ``a, b > 1`` (RBesT's default), so that every component is
        unimodal with a bounded density and the ELIR ESS is defined.
    max_iter, tol : int, float
        EM stops when the relative change of the log-likelihood is ``<= tol``.

    Returns
    -------
    BetaMixture
        Components ordered by decreasing weight.  ``provenance["fit"]`` holds
        the log-likelihood and criterion of every ``k`` tried.
    """
    x = _as_draws(draws)
    if isinstance(max_components, bool) or not (
        isinstance(max_components, int | np.integer) and max_components >= 1
    ):
        raise ValueError(f"max_components must be an integer >= 1, got {max_components!r}")
    if criterion not in _CRITERIA:
        raise ValueError(f"criterion must be one of {list(_CRITERIA)}, got {criterion!r}")
    rng = np.random.default_rng(rng)
    lx, l1x = np.log(x), np.log1p(-x)
    floor = 1.0 + 1e-8 if constrain_gt1 else 1e-8
    penalty = math.log(x.size) if criterion == "bic" else 2.0

    table = []
    best = None
    for k in range(1, max_components + 1):
        # "small EM" (Biernacki, Celeux & Govaert 2003): a few iterations from
        # each start, then only the most promising one is run to convergence
        short = [
            _em(x, lx, l1x, init, constrain_gt1, _SHORT_EM, tol)
            for init in _inits(x, k, rng, floor)
        ]
        w, a, b, ll, converged = max(short, key=lambda f: f[3])
        if not converged:
            w, a, b, ll, converged = _em(x, lx, l1x, (w, a, b), constrain_gt1, max_iter, tol)
        df = 3 * k - 1
        ic = -2.0 * ll + penalty * df
        table.append({"k": k, "loglik": ll, criterion: ic, "converged": converged})
        if best is None or ic < best[0]:
            best = (ic, w, a, b, converged, k)
    _, w, a, b, converged, k = best
    # over-fitted k often crawl (two components sharing one mode); only the
    # chosen model's convergence matters
    if not converged:
        warnings.warn(
            f"EM for the chosen k={k} components did not converge in {max_iter} iterations; "
            "check mixture_fit_diagnostic()",
            RuntimeWarning,
            stacklevel=2,
        )
    order = np.argsort(-w, kind="stable")
    prov = {
        "fit": {
            "method": "EM",
            "criterion": criterion,
            "n_draws": int(x.size),
            "constrain_gt1": constrain_gt1,
            "models": table,
        }
    }
    return BetaMixture(weights=w[order], a=a[order], b=b[order], provenance=prov)


def mixture_fit_diagnostic(
    mix: BetaMixture,
    draws: Any,
    probs: Sequence[float] = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975),
) -> pd.DataFrame:
    """Compare a fitted mixture with the draws it approximates (RBesT style).

    Returns
    -------
    pandas.DataFrame
        Rows ``mean``, ``sd`` and the quantiles ``probs`` (labelled "2.5%",
        ...); columns ``draws``, ``mixture`` and ``difference`` (mixture minus
        draws).  ``df.attrs["ks_distance"]`` is the Kolmogorov-Smirnov
        distance sup |F_draws - F_mixture|; with MCMC draws its p-value would
        mostly measure the number of draws, so none is reported.
    """
    x = _as_draws(draws)
    probs = _check_unit_interval("probs", probs)
    labels = ["mean", "sd", *(f"{100 * p:g}%" for p in probs)]
    emp = [x.mean(), x.std(ddof=1), *np.quantile(x, probs)]
    fit = [mix.mean(), mix.sd(), *np.atleast_1d(mix.ppf(probs))]
    df = pd.DataFrame({"draws": emp, "mixture": fit}, index=labels)
    df["difference"] = df["mixture"] - df["draws"]
    ks = stats.kstest(x, mix.cdf)
    df.attrs["ks_distance"] = float(ks.statistic)
    return df


def map_prior(
    draws: Any,
    setting: Any = None,
    landmark: float | None = None,
    *,
    max_components: int = 4,
    criterion: str = "bic",
    provenance: Mapping[str, Any] | None = None,
    rng: Any = 0,
) -> BetaMixture:
    """Meta-analytic-predictive (MAP) prior from predictive draws of a new trial's rate.

    Parameters
    ----------
    draws : array_like, xarray.DataArray or lmsbayes Fit
        Posterior-predictive draws of the rate in a new trial (``chain`` and
        ``draw`` dims are flattened), or a fitted model: then ``setting`` and
        ``landmark`` select the predictive rate of a new trial
        (:func:`lmsbayes.predict.predict`) and the provenance records the
        fit's spec, data hash, setting and landmark.
    setting : lmsbayes.predict.Setting, optional
        Required with a fit.
    landmark : float, optional
        Months; required with a fit.
    max_components, criterion
        Passed to :func:`fit_mixture`.
    provenance : mapping, optional
        Where the draws came from (data hash, spec, seed, ...); kept on the
        prior together with the fit record and the draws' summary, and
        written to JSON.
    rng : int or Generator, default 0
        Seed for :func:`fit_mixture`; fixed by default so a MAP prior is
        reproducible from its draws.

    Returns
    -------
    BetaMixture
    """
    if hasattr(draws, "posterior") and hasattr(draws, "spec"):
        # a fitted model: imported here so that prior.py stays free of the modelling stack
        from lmsbayes.predict import predict

        fit = draws
        if setting is None or landmark is None:
            raise ValueError("map_prior(fit, setting, landmark): setting and landmark are required with a fit")
        pred = predict(fit, [setting], [float(landmark)])
        draws = pred["rate"].sel(quantity="predictive").isel(setting=0, landmark=0, drop=True)
        draws.name = "p_new"
        provenance = {
            "source": "lmsbayes predictive draws of a new trial's rate",
            "spec_name": fit.spec.name, "spec_hash": fit.spec.hash, "data_sha256": fit.data.data_sha256,
            "seed": int(fit.spec.sampler.seed), "setting": {"line": setting.line,
            "treatment_class": setting.treatment_class, "uterine": float(setting.uterine)},
            "landmark_months": float(landmark), **dict(provenance or {}),
        }  # fmt: skip
    mix = fit_mixture(draws, max_components=max_components, criterion=criterion, rng=rng)
    diag = mixture_fit_diagnostic(mix, draws)
    prov = dict(provenance or {})
    prov["fit"] = {**mix.provenance["fit"], "ks_distance": diag.attrs["ks_distance"]}
    if hasattr(draws, "dims") and getattr(draws, "name", None) is not None:
        prov.setdefault("draws_name", str(draws.name))
    return BetaMixture(weights=mix.weights, a=mix.a, b=mix.b, provenance=prov)
