"""Declarative model specifications: ``models/*.toml`` -> frozen :class:`ModelSpec`.

A spec says *what* to fit (which arms, which landmarks, which likelihood,
covariates, random effects and priors) and *how* (sampler settings). It is
read strictly: every unknown key, bad value or unknown prior is collected and
reported at once, with a "did you mean" suggestion where one is close.

Example
-------
>>> from lmsbayes.spec import load_spec
>>> spec = load_spec("default")            # a bundled spec, or a path to a TOML file
>>> spec.model.covariates
('line', 'nrt', 'line:nrt', 'uterine')
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib.resources
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmsbayes.errors import InputError, OptionError
from lmsbayes.files import read_text
from lmsbayes.model import families as _families

__all__ = [
    "COVARIATES",
    "LIKELIHOODS",
    "LINK_OF",
    "DataFilter",
    "ModelPart",
    "ModelSpec",
    "Prior",
    "RandomEffects",
    "SamplerSettings",
    "SpecError",
    "MAX_CHAINS",
    "MAX_TOTAL_DRAWS",
    "MAX_TUNE",
    "load_spec",
    "parse_spec",
    "bundled_specs",
]

#: The closed registry of likelihoods a spec may name (bambi-style families as data).
LIKELIHOODS: dict[str, str] = {
    name: f.likelihood_description for name, f in _families.FAMILIES.items()
}

#: The link of each likelihood; ``survival`` depends on the curve.
LINK_OF: dict[str, str] = {name: f.link for name, f in _families.FAMILIES.items()}

#: Survival curves of the ``survival`` likelihood (from the registry of lmsbayes.model.families).
CURVES: dict[str, str] = {name: f.description for name, f in _families.CURVES.items()}

#: Engines a spec may ask for.
ENGINES = ("auto", "exact", "nuts")

#: Main-effect covariates the data can provide; interactions are "a:b" of these.
COVARIATES: dict[str, str] = {
    "line": "2L+ vs 1L (indicator of pre-treated population)",
    "nrt": "NR-T vs R-T (indicator of a treatment not recommended by ESMO 2018)",
    "uterine": "fraction of uterine LMS patients in the arm, centred at `uterine_centre`",
}

#: Distributions a Prior may name, with their parameter names and support.
_PRIOR_FAMILIES: dict[str, tuple[tuple[str, ...], str]] = {
    "Normal": (("mu", "sigma"), "real"),
    "StudentT": (("nu", "mu", "sigma"), "real"),
    "HalfNormal": (("sigma",), "positive"),
    "HalfStudentT": (("nu", "sigma"), "positive"),
    "HalfCauchy": (("beta",), "positive"),
    "Exponential": (("lam",), "positive"),
    "Uniform": (("lower", "upper"), "bounded"),
    "Beta": (("alpha", "beta"), "unit"),
    "LogNormal": (("mu", "sigma"), "positive"),
}
_POSITIVE_PARAMS = {"sigma", "nu", "beta", "lam", "alpha"}

# --- bounds at the door: a spec never asks for work the machine cannot do ---
#: Most chains a spec may ask for.
MAX_CHAINS = 64
#: Most posterior draws in all (draws x chains): every draw of every arm is kept in memory.
MAX_TOTAL_DRAWS = 200_000
#: Most tuning steps per chain.
MAX_TUNE = 100_000
#: Seeds numpy and nutpie both accept.
SEED_RANGE = (0, 2**32 - 1)
#: Degrees of freedom of a Student-t (random effects or prior): 1 is a Cauchy, beyond ~30 a normal.
NU_RANGE = (1.0, 1000.0)
#: Largest magnitude of a prior parameter (on the logit/cloglog scale 1e6 is beyond vague).
MAX_PRIOR_PARAM = 1e6
#: Range of a prior's scale (sigma, beta, lam ...): below 1e-6 a prior is a point mass that
#: no engine can integrate (sigma = 1e-300 stopped the mode search), above 1e6 beyond vague.
PRIOR_SCALE_RANGE = (1e-6, 1e6)
#: Most landmarks a spec may name.
MAX_LANDMARKS = 24
YEAR_RANGE = (1900, 2100)
#: Largest spec file read (a spec is a few kilobytes).
MAX_SPEC_BYTES = 1_000_000


class SpecError(InputError):
    """A model specification is invalid; the message lists every problem."""

    def __init__(self, problems: list[str], source: str = "<spec>") -> None:
        self.problems = list(problems)
        self.source = source
        if len(problems) == 1:
            msg = f"{source}: {problems[0]}"
        else:
            msg = f"{source}: {len(problems)} problems\n" + "\n".join(f"  - {p}" for p in problems)
        super().__init__(msg)


def _did_you_mean(word: str, options: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else f"; valid keys are {sorted(options)}"


@dataclass(frozen=True)
class Prior:
    """A prior distribution as a small printable value object.

    Parameters
    ----------
    dist : str
        Name of a PyMC distribution (``Normal``, ``HalfNormal``, ``StudentT``,
        ``HalfStudentT``, ``HalfCauchy``, ``Exponential``, ``Uniform``, ``Beta``).
    **params
        Its parameters, by PyMC's names.

    Examples
    --------
    >>> Prior("HalfNormal", sigma=0.5)
    Prior('HalfNormal', sigma=0.5)
    """

    dist: str
    params: tuple[tuple[str, float], ...] = ()

    def __init__(self, dist: str, /, **params: float) -> None:
        object.__setattr__(self, "dist", dist)
        object.__setattr__(self, "params", tuple(sorted((k, float(v)) for k, v in params.items())))

    @property
    def kwargs(self) -> dict[str, float]:
        """Parameters as a dict, ready for ``getattr(pm, prior.dist)(name, **kwargs)``."""
        return dict(self.params)

    @property
    def support(self) -> str:
        """The support of the distribution, in words."""
        return _PRIOR_FAMILIES[self.dist][1]

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.params)
        return f"Prior({self.dist!r}{args})"

    def to_dict(self) -> dict[str, Any]:
        """The prior as a TOML-ready table: ``{"dist": ..., **parameters}``."""
        return {"dist": self.dist, **self.kwargs}

    def logpdf(self, x):
        """Log density at ``x`` (numpy; the exact engine's prior, tested equal to PyMC's logp)."""
        import numpy as np
        from scipy import special

        k = self.kwargs
        x = np.asarray(x, dtype=float)
        half_log_2pi = 0.5 * math.log(2 * math.pi)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.dist == "Normal":
                z = (x - k.get("mu", 0.0)) / k["sigma"]
                return -0.5 * z * z - math.log(k["sigma"]) - half_log_2pi
            if self.dist == "StudentT":
                nu, s = k["nu"], k["sigma"]
                z = (x - k.get("mu", 0.0)) / s
                c = (
                    special.gammaln((nu + 1) / 2)
                    - special.gammaln(nu / 2)
                    - 0.5 * math.log(nu * math.pi)
                    - math.log(s)
                )
                return c - (nu + 1) / 2 * np.log1p(z * z / nu)
            if self.dist == "HalfNormal":
                z = x / k["sigma"]
                out = math.log(2) - 0.5 * z * z - math.log(k["sigma"]) - half_log_2pi
            elif self.dist == "HalfStudentT":
                nu, s = k["nu"], k["sigma"]
                z = x / s
                c = (
                    special.gammaln((nu + 1) / 2)
                    - special.gammaln(nu / 2)
                    - 0.5 * math.log(nu * math.pi)
                    - math.log(s)
                )
                out = math.log(2) + c - (nu + 1) / 2 * np.log1p(z * z / nu)
            elif self.dist == "HalfCauchy":
                b = k["beta"]
                out = math.log(2 / (math.pi * b)) - np.log1p((x / b) ** 2)
            elif self.dist == "Exponential":
                out = math.log(k["lam"]) - k["lam"] * x
            elif self.dist == "Uniform":
                lo, hi = k["lower"], k["upper"]
                return np.where((x >= lo) & (x <= hi), -math.log(hi - lo), -np.inf)
            elif self.dist == "Beta":
                a, b = k["alpha"], k["beta"]
                return np.where(
                    (x > 0) & (x < 1),
                    (a - 1) * np.log(x) + (b - 1) * np.log1p(-x) - special.betaln(a, b),
                    -np.inf,
                )
            elif self.dist == "LogNormal":
                z = (np.log(x) - k["mu"]) / k["sigma"]
                out = -0.5 * z * z - np.log(x) - math.log(k["sigma"]) - half_log_2pi
            else:  # pragma: no cover - the registry is closed
                raise OptionError(f"no density for {self.dist!r}")
            return np.where(x >= 0, out, -np.inf)

    def draw(self, size, rng):
        """Random draws of the shape ``size`` from numpy's generator ``rng`` (prior simulation)."""
        k = self.kwargs
        d = self.dist
        if d == "Normal":
            return rng.normal(k.get("mu", 0.0), k["sigma"], size)
        if d == "StudentT":
            return k.get("mu", 0.0) + k["sigma"] * rng.standard_t(k["nu"], size)
        if d == "HalfNormal":
            return abs(rng.normal(0, k["sigma"], size))
        if d == "HalfStudentT":
            return abs(k["sigma"] * rng.standard_t(k["nu"], size))
        if d == "HalfCauchy":
            return abs(k["beta"] * rng.standard_cauchy(size))
        if d == "Exponential":
            return rng.exponential(1 / k["lam"], size)
        if d == "Uniform":
            return rng.uniform(k["lower"], k["upper"], size)
        if d == "Beta":
            return rng.beta(k["alpha"], k["beta"], size)
        if d == "LogNormal":
            return rng.lognormal(k["mu"], k["sigma"], size)
        raise ValueError(f"no sampler for {d!r}")  # pragma: no cover - the registry is closed

    def create(self, name: str, **kwargs: Any):  # pragma: no cover - thin PyMC shim
        """Create the PyMC random variable (call inside a model context)."""
        import pymc as pm

        return getattr(pm, self.dist)(name, **self.kwargs, **kwargs)

    @classmethod
    def parse(cls, value: Any, where: str, problems: list[str]) -> Prior | None:
        """Parse ``{dist = "HalfNormal", sigma = 0.5}``; append problems instead of raising."""
        if not isinstance(value, Mapping) or "dist" not in value:
            problems.append(
                f'{where} must be a table like {{dist = "HalfNormal", sigma = 0.5}}, got '
                f"{_show(value)}"
            )
            return None
        dist = value["dist"]
        if not isinstance(dist, str) or dist not in _PRIOR_FAMILIES:
            problems.append(
                f"{where}: unknown distribution {dist!r}"
                + _did_you_mean(str(dist), tuple(_PRIOR_FAMILIES))
            )
            return None
        names, _ = _PRIOR_FAMILIES[dist]
        params = {k: v for k, v in value.items() if k != "dist"}
        ok = True
        for key, v in params.items():
            if key not in names:
                problems.append(
                    f"{where}: {dist} has no parameter {key!r}" + _did_you_mean(key, names)
                )
                ok = False
            elif not _is_finite_number(v):
                problems.append(f"{where}.{key} must be a finite number, got {_show(v)}")
                ok = False
            elif key in _POSITIVE_PARAMS and v <= 0:
                problems.append(f"{where}.{key} must be > 0, got {v!r}")
                ok = False
            elif (
                key in _POSITIVE_PARAMS
                and key != "nu"
                and not (PRIOR_SCALE_RANGE[0] <= v <= PRIOR_SCALE_RANGE[1])
            ):
                problems.append(
                    f"{where}.{key} must be in [{PRIOR_SCALE_RANGE[0]:g}, "
                    f"{PRIOR_SCALE_RANGE[1]:g}], got {v!r}"
                )
                ok = False
            elif key == "nu" and not NU_RANGE[0] <= v <= NU_RANGE[1]:
                problems.append(
                    f"{where}.nu must be in [{NU_RANGE[0]:g}, {NU_RANGE[1]:g}], got {v!r}"
                )
                ok = False
            elif abs(v) > MAX_PRIOR_PARAM:
                problems.append(f"{where}.{key} must be within +-{MAX_PRIOR_PARAM:g}, got {v!r}")
                ok = False
        missing = [
            n
            for n in names
            if n not in params and not (n == "mu" and dist in ("Normal", "StudentT"))
        ]
        if missing:
            problems.append(f"{where}: {dist} needs {missing}")
            ok = False
        if dist == "Uniform" and ok and params["lower"] >= params["upper"]:
            problems.append(
                f"{where}: Uniform needs lower < upper, got {params['lower']} >= {params['upper']}"
            )
            ok = False
        return cls(dist, **params) if ok else None


@dataclass(frozen=True)
class DataFilter:
    """Which arms enter the analysis. Every excluded arm is reported with its reason."""

    lines: tuple[str, ...] = ("1L", "2L+")
    classes: tuple[str, ...] = ("R-T", "NR-T")
    populations: tuple[str, ...] = ()  # empty: all populations
    years: tuple[int, int] = (2003, 2025)
    evidence: tuple[str, ...] = ("publication", "conference")
    exclude_placebo: bool = True
    derive_from_median: bool = True
    exclude_arms: tuple[str, ...] = ()
    #: "exclude" drops arms with an unknown uterine fraction when `uterine` is a covariate;
    #: "latent" gives them a Beta(1, 1) fraction that the model integrates over.
    uterine_missing: str = "latent"
    #: arms whose source has neither a PMID nor a DOI leave the model (with that reason)
    require_identifier: bool = True
    #: evidence levels of the numbers that may enter (a stricter spec drops e.g. "news")
    evidence_levels: tuple[str, ...] = ("full_text", "abstract", "registry", "news")
    #: digitised Kaplan-Meier curves (lmsbayes.curves files, or directories of them; paths
    #: relative to the spec file): each curve's reconstructed patients replace its arm's median
    #: and rates, or add the arm (survival likelihood only; docs/curves.md)
    curves: tuple[str, ...] = ()
    #: censor every curve at this many months (0: no truncation; a curve file's own
    #: ``truncate`` key takes precedence)
    curve_truncate: float = 0.0


@dataclass(frozen=True)
class RandomEffects:
    """Between-arm heterogeneity on the logit scale."""

    distribution: str = "normal"  # or "student_t"
    nu: float = 4.0  # degrees of freedom of the Student-t
    tau_by: str = "none"  # "none" or "line": one tau per stratum
    trial_effect: bool = (
        False  # arms of one randomized trial share a trial effect (group = "trial")
    )
    #: a column whose arms share a group effect above their own: eta_i = ... + v[group(i)] + u_i,
    #: two heterogeneity scales (group_tau between groups, tau between arms of a group);
    #: "trial" (arms nested in trials) or "regimen" (arms nested in regimens); "" for none
    group: str = ""
    #: sensitivity: an arm's heterogeneity grows with its age, tau_i^2 = tau^2 + discount^2 a_i,
    #: a_i = (discount_year - year_i) / 10 (decades before discount_year, at least 0)
    age_discount: bool = False
    #: the year ages are counted to: 0 (default) for the target's year (``--year``), else the
    #: latest year of the fitted arms + 1; a positive year fixes it unless ``--year`` is given
    discount_year: int = 0


@dataclass(frozen=True)
class ModelPart:
    """The ``[model]`` table of a spec: likelihood, covariates, survival curve."""

    likelihood: str = "logit-binomial"
    covariates: tuple[str, ...] = ()
    uterine_centre: float = 0.5
    #: survival likelihood: the curve family, its shape and the reference time of alpha
    curve: str = "loglogistic"
    shape: str = "pooled"  # "pooled", "by_line" (sensitivity) or "fixed"
    shape_value: float = 1.0  # the shape when shape = "fixed" (Weibull k = 1: constant hazard)
    t_ref: float = 6.0  # months: alpha is the pooled rate's linear predictor at t_ref
    #: an arm's median and rates come from one Kaplan-Meier curve: correlate them (true),
    #: or treat them as independent (false: counts the arm's patients more than once)
    within_arm_correlation: bool = True
    #: calendar-time drift over publication year: "none", or "random_walk" (piecewise linear
    #: between drift_knots, a Gaussian random walk of scale drift_scale per knot interval,
    #: zero at drift_reference; at most 6 knots, 5 basis functions among the global parameters),
    #: or "era" (publication-year eras starting at era_starts, the era of drift_reference at 0,
    #: the others exchangeable offsets of sd drift_scale; at most 5 eras)
    drift: str = "none"
    drift_knots: tuple[int, ...] = (2005, 2010, 2015, 2020, 2025)
    drift_reference: int = 2015
    #: drift = "era": first publication year of each era after the first
    #: (default: <= 2009, 2010-2015, >= 2016)
    era_starts: tuple[int, ...] = (2010, 2016)
    #: curve arms ([data] curves): "shared" (the shape of their shape group) or "own" (one
    #: shape for all curve arms, so that a long curve cannot pull the other arms' shape)
    curve_shape: str = "shared"


@dataclass(frozen=True)
class CovariateDef:
    """A covariate column of a user's table (``[covariates.NAME]``)."""

    column: str = ""
    type: str = "numeric"  # "numeric" or "categorical"
    centre: float = 0.0  # numeric: subtracted
    scale: float = (
        1.0  # numeric: the centred value is divided by it (10: a year covariate per decade)
    )
    reference: str = ""  # categorical: the level coded 0 (default: the first in sorted order)


@dataclass(frozen=True)
class ExactSettings:
    """Settings of the exact (integration) engine."""

    draws: int = 4000  # importance-sampling draws from the Laplace / Student-t proposal
    nodes: int = 9  # adaptive Gauss-Hermite nodes per arm (non-Gaussian likelihoods)
    uterine_nodes: int = 12  # Gauss-Legendre nodes over a latent uterine fraction
    df: float = 5.0  # degrees of freedom of the Student-t proposal
    khat_max: float = 0.7  # Pareto k-hat above this is a problem (warning; error under strict)


@dataclass(frozen=True)
class Priors:
    alpha: Prior = field(default_factory=lambda: Prior("Normal", mu=0.0, sigma=2.0))
    beta: Prior = field(default_factory=lambda: Prior("Normal", mu=0.0, sigma=1.0))
    tau: Prior = field(default_factory=lambda: Prior("HalfNormal", sigma=0.5))
    # the survival curve's shape k: median 1.5, 95% within 0.56 and 4 (simulation-based calibration
    # under LogNormal(0, 1) drew curves flat for years or falling from 90% to 10% within a factor
    # 1.7 of the median, which no LMS arm shows, and where posteriors have spurious modes)
    shape: Prior = field(default_factory=lambda: Prior("LogNormal", mu=0.4, sigma=0.5))
    #: scale of the group effects (``[random_effects] group``, or trial_effect)
    group_tau: Prior = field(default_factory=lambda: Prior("HalfNormal", sigma=0.25))
    #: drift: sd of the random walk's step per knot interval (logit scale); HalfNormal(0.25)
    #: puts 95% of a 5-year step's odds ratio of being progression-free within 1/1.8 to 1.8
    drift_scale: Prior = field(default_factory=lambda: Prior("HalfNormal", sigma=0.25))
    #: age discount: extra heterogeneity sd per sqrt(decade) of age
    discount: Prior = field(default_factory=lambda: Prior("HalfNormal", sigma=0.25))


@dataclass(frozen=True)
class SamplerSettings:
    """The ``[sampler]`` table of a spec: NUTS settings and the seed."""

    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    target_accept: float = 0.9
    seed: int = 20210617
    #: nutpie mass-matrix adaptation. "low_rank" copes better with correlated coefficients
    #: but its cost grows fast with dimension (48 s vs 1.4 s for 100 arms), so "diag" is the default
    adaptation: str = "diag"


@dataclass(frozen=True)
class Thresholds:
    reference: str = "pooled"  # or "predictive"
    hr: tuple[float, ...] = (0.65,)
    #: values of a user's covariates for the threshold table's settings, in the data column's
    #: units (``at = { year = 2026 }``): a trend model needs to know when the new trial runs
    at: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class ModelSpec:
    """A complete, validated analysis: what to fit and how.

    Read it with :func:`load_spec` (a TOML file or a bundled name such as
    ``"default"``). The spec is frozen and hashable; ``spec.text`` keeps the
    TOML it came from so that a saved fit records exactly what was asked.
    """

    name: str = "custom"
    description: str = ""
    landmarks: tuple[float, ...] = (3.0, 6.0)
    engine: str = "auto"
    data: DataFilter = field(default_factory=DataFilter)
    model: ModelPart = field(default_factory=ModelPart)
    random_effects: RandomEffects = field(default_factory=RandomEffects)
    priors: Priors = field(default_factory=Priors)
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    thresholds: Thresholds = field(default_factory=Thresholds)
    covariates: tuple[tuple[str, CovariateDef], ...] = ()
    exact: ExactSettings = field(default_factory=ExactSettings)
    text: str = field(default="", compare=False, repr=False)

    @property
    def hash(self) -> str:
        """SHA-256 of the canonical spec (independent of TOML formatting and comments)."""
        return hashlib.sha256(repr(self.to_dict()).encode()).hexdigest()

    @property
    def link(self) -> str:
        """``'logit'`` or ``'cloglog'``: the scale of the linear predictor (from the likelihood)."""
        return LINK_OF[self.model.likelihood]

    @property
    def family(self):
        """The likelihood family, for ``survival`` the curve.

        :class:`lmsbayes.model.families.Family`.
        """
        return _families.get_family(self.model.likelihood, self.model.curve)

    @property
    def main_effects(self) -> tuple[str, ...]:
        """The main effects the covariates use (``a:b`` split into ``a`` and ``b``)."""
        return tuple(sorted({p for c in self.model.covariates for p in c.split(":")}))

    def to_dict(self) -> dict[str, Any]:
        """The spec as nested plain dictionaries (the source text left out)."""
        out = dataclasses.asdict(self)
        out.pop("text")
        # curve options at their defaults are left out: the hash of a spec without curves is
        # the one it had before curves existed (saved fits keep matching)
        for part, key, default in _CURVE_DEFAULTS:
            if out[part][key] == default:
                del out[part][key]
        out["covariates"] = {k: dataclasses.asdict(v) for k, v in self.covariates}
        out["thresholds"]["at"] = dict(self.thresholds.at)
        for k, _v in out["priors"].items():
            out["priors"][k] = getattr(self.priors, k).to_dict()
        return out

    def replace(self, **changes: Any) -> ModelSpec:
        """A copy with top-level fields or dotted sub-fields changed.

        Examples
        --------
        >>> spec.replace(**{"sampler.draws": 500, "data.derive_from_median": False})
        """
        top: dict[str, Any] = {}
        nested: dict[str, dict[str, Any]] = {}
        for key, value in changes.items():
            if "." in key:
                part, sub = key.split(".", 1)
                nested.setdefault(part, {})[sub] = value
            else:
                top[key] = value
        for part, subs in nested.items():
            top[part] = dataclasses.replace(getattr(self, part), **subs)
        new = dataclasses.replace(self, **top)
        _check(new, [], "<replace>", raise_=True)
        return dataclasses.replace(new, text="")


# --- parsing -----------------------------------------------------------------

_CURVE_DEFAULTS = (
    ("data", "curves", ()),
    ("data", "curve_truncate", 0.0),
    ("model", "curve_shape", "shared"),
)

_SECTIONS: dict[str, type] = {
    "data": DataFilter,
    "model": ModelPart,
    "random_effects": RandomEffects,
    "priors": Priors,
    "sampler": SamplerSettings,
    "thresholds": Thresholds,
    "exact": ExactSettings,
}
_TOP = {"name", "description", "landmarks", "engine", "covariates", *_SECTIONS}


def _is_finite_number(v: Any) -> bool:
    """A TOML number usable as a float: not a bool, finite, an integer within 64 bits."""
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return -(2**63) <= v < 2**63
    return isinstance(v, float) and math.isfinite(v)


def _show(v: Any, width: int = 80) -> str:
    """``repr`` cut to ``width`` characters (a message never prints a megabyte of input)."""
    text = repr(v)
    return text if len(text) <= width else text[: width - 3] + "..."


#: TOML type checks per dataclass default type: (accepts, description, convert).
#: Types and ranges are checked here, before any cast: a 64-bit overflow, inf or
#: nan never reaches numpy, nutpie or PyMC.
_TYPES: tuple[tuple[type, Any, str, Any], ...] = (
    (bool, lambda v: isinstance(v, bool), "true or false", bool),
    (int, lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer", int),
    (float, lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number", float),
    (str, lambda v: isinstance(v, str), "a string", str),
)


def _parse_at(value: Any, where: str, problems: list[str]) -> tuple[tuple[str, float], ...]:
    """``{ column = number, ... }`` -> sorted (name, value) pairs.

    Problems reported, () on error.
    """
    if not isinstance(value, Mapping):
        problems.append(f"{where} must be a table like {{ year = 2026 }}, got {_show(value)}")
        return ()
    out = []
    for k, v in value.items():
        x = _coerce(v, 0.0, f"{where}.{k}", problems)
        out.append((str(k), float(x)))
    return tuple(sorted(out))


def _coerce(value: Any, target: Any, where: str, problems: list[str]) -> Any:
    """Coerce a TOML value to the type of the dataclass default ``target``.

    A list's elements take the type of the default's first element (strings
    when the default is empty). A value of the wrong type is reported and
    replaced by the default, so that the semantic checks can still run on the
    rest of the spec.
    """
    if isinstance(target, tuple):
        if not isinstance(value, list):
            problems.append(f"{where} must be a list, got {_show(value)}")
            return target
        element = target[0] if target else ""
        out, ok = [], True
        for i, v in enumerate(value):
            before = len(problems)
            out.append(_coerce(v, element, f"{where}[{i}]", problems))
            ok = ok and len(problems) == before
        return tuple(out) if ok else target
    for kind, accepts, description, convert in _TYPES:  # bool before int: bool is an int
        if isinstance(target, kind):
            if not accepts(value):
                problems.append(f"{where} must be {description}, got {_show(value)}")
                return target
            if kind in (int, float) and not _is_finite_number(value):
                what = "finite" if isinstance(value, float) else "within 64 bits (|value| < 2**63)"
                problems.append(f"{where} must be {what}, got {_show(value)}")
                return target
            return convert(value)
    return value


def _resolve_curves(paths: tuple[str, ...], source: str) -> tuple[str, ...]:
    """Curve paths relative to the spec file's folder (as given when the spec has no file)."""
    base = Path(source).parent if Path(source).is_file() else None
    out = []
    for p in paths:
        q = Path(p).expanduser()
        out.append(str(base / q) if base is not None and not q.is_absolute() else str(q))
    return tuple(out)


def parse_spec(raw: Mapping[str, Any], *, source: str = "<spec>", text: str = "") -> ModelSpec:
    """Build a :class:`ModelSpec` from a parsed TOML mapping, collecting all problems.

    Raises
    ------
    SpecError
        Listing every unknown key, wrong type and invalid value, with suggestions.
    """
    problems: list[str] = []
    top: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _TOP:
            problems.append(f"unknown key {key!r} at top level" + _did_you_mean(key, tuple(_TOP)))
            continue
        if key in _SECTIONS:
            cls = _SECTIONS[key]
            if not isinstance(value, Mapping):
                problems.append(f"[{key}] must be a table, got {value!r}")
                continue
            defaults = cls()
            fields = {f.name for f in dataclasses.fields(cls)}
            kwargs: dict[str, Any] = {}
            for sub, v in value.items():
                where = f"[{key}] {sub}"
                if sub not in fields:
                    problems.append(
                        f"unknown key {sub!r} in [{key}]" + _did_you_mean(sub, tuple(fields))
                    )
                    continue
                if cls is Priors:
                    prior = Prior.parse(v, f"[priors] {sub}", problems)
                    if prior is not None:
                        kwargs[sub] = prior
                    continue
                if cls is Thresholds and sub == "at":
                    kwargs[sub] = _parse_at(v, where, problems)
                    continue
                kwargs[sub] = _coerce(v, getattr(defaults, sub), where, problems)
            try:
                top[key] = cls(**kwargs)
            except TypeError as exc:  # pragma: no cover - guarded by the field check
                problems.append(f"[{key}]: {exc}")
        elif key == "covariates":
            if not isinstance(value, Mapping):
                problems.append(f"[covariates] must be a table of tables, got {value!r}")
                continue
            fields = {f.name for f in dataclasses.fields(CovariateDef)}
            defs = []
            for cname, cdef in value.items():
                if not isinstance(cdef, Mapping):
                    problems.append(
                        f'[covariates.{cname}] must be a table like {{column = "x"}}, got {cdef!r}'
                    )
                    continue
                kw = {}
                for sub, v in cdef.items():
                    if sub not in fields:
                        problems.append(
                            f"unknown key {sub!r} in [covariates.{cname}]"
                            + _did_you_mean(sub, tuple(fields))
                        )
                        continue
                    kw[sub] = _coerce(
                        v, getattr(CovariateDef(), sub), f"[covariates.{cname}] {sub}", problems
                    )
                kw.setdefault("column", cname)
                defs.append((str(cname), CovariateDef(**kw)))
            top[key] = tuple(defs)
        elif key == "landmarks":
            top[key] = _coerce(value, ModelSpec().landmarks, "landmarks", problems)
        else:
            top[key] = _coerce(value, "", key, problems)
    if "data" in top and top["data"].curves:
        top["data"] = dataclasses.replace(
            top["data"], curves=_resolve_curves(top["data"].curves, source)
        )
    structural = list(problems)
    try:
        spec = ModelSpec(**top, text=text)
        _check(spec, problems, source)
    except (TypeError, ValueError, AttributeError):
        # a value of the wrong type already reported above can trip a semantic check;
        # the structural problems are then the ones to report
        if not structural:
            raise
        spec = None
        problems[:] = structural
    if problems:
        raise SpecError(problems, source)
    assert spec is not None
    return spec


def _check(spec: ModelSpec, problems: list[str], source: str, raise_: bool = False) -> None:
    """Semantic checks of a structurally valid spec."""
    d, m, r, s = spec.data, spec.model, spec.random_effects, spec.sampler
    for lm in spec.landmarks:
        if not isinstance(lm, float) or not (0 < lm <= 120):
            problems.append(
                f"landmarks: each landmark must be a number of months in (0, 120], got {lm!r}"
            )
    family = _families.FAMILIES.get(m.likelihood)
    if not spec.landmarks and family is not None and not family.binomial_table:
        problems.append(
            "landmarks: at least one landmark is needed (the months of the threshold table)"
        )
    if len(set(spec.landmarks)) != len(spec.landmarks):
        problems.append(f"landmarks: duplicates in {list(spec.landmarks)}")
    if len(spec.landmarks) > MAX_LANDMARKS:
        problems.append(f"landmarks: at most {MAX_LANDMARKS} landmarks, got {len(spec.landmarks)}")
    for v in d.lines:
        if v not in ("1L", "2L+"):
            problems.append(f"[data] lines: must be among ['1L', '2L+'], got {v!r}")
    for v in d.classes:
        if v not in ("R-T", "NR-T"):
            problems.append(f"[data] classes: must be among ['R-T', 'NR-T'], got {v!r}")
    _check_populations(d.populations, problems)
    for v in d.evidence:
        if v not in ("publication", "conference"):
            problems.append(
                f"[data] evidence: must be among ['publication', 'conference'], got {v!r}"
            )
    if len(d.years) != 2 or not all(isinstance(y, int) for y in d.years) or d.years[0] > d.years[1]:
        problems.append(f"[data] years must be [first, last] integers, got {_show(list(d.years))}")
    elif not all(YEAR_RANGE[0] <= y <= YEAR_RANGE[1] for y in d.years):
        problems.append(
            f"[data] years must lie in {YEAR_RANGE[0]}..{YEAR_RANGE[1]}, got {list(d.years)!r}"
        )
    if d.uterine_missing not in ("latent", "exclude"):
        problems.append(
            f"[data] uterine_missing must be 'latent' or 'exclude', got {d.uterine_missing!r}"
        )
    if spec.engine not in ENGINES:
        problems.append(f"engine must be one of {list(ENGINES)}, got {spec.engine!r}")
    if m.curve not in CURVES:
        problems.append(f"[model] curve must be one of {list(CURVES)}, got {m.curve!r}")
    if m.curve_shape not in ("shared", "own"):
        problems.append(f"[model] curve_shape must be 'shared' or 'own', got {m.curve_shape!r}")
    fam = _families.FAMILIES.get(m.likelihood)
    if d.curves and fam is not None and not fam.any_landmark:
        problems.append(
            "[data] curves: curve arms enter the survival likelihood only "
            f"([model] likelihood = 'survival'), got {m.likelihood!r}"
        )
    if m.curve_shape == "own" and m.shape == "fixed":
        problems.append("[model] curve_shape = 'own' needs a free shape (shape is 'fixed')")
    if not (math.isfinite(d.curve_truncate) and 0 <= d.curve_truncate <= 240):
        problems.append(
            "[data] curve_truncate must be a number of months in [0, 240], "
            f"got {d.curve_truncate!r}"
        )
    if m.shape not in ("pooled", "by_line", "fixed"):
        problems.append(f"[model] shape must be 'pooled', 'by_line' or 'fixed', got {m.shape!r}")
    if not (
        isinstance(m.shape_value, float)
        and math.isfinite(m.shape_value)
        and 0.05 <= m.shape_value <= 20
    ):
        problems.append(
            f"[model] shape_value must be a number in [0.05, 20], got {m.shape_value!r}"
        )
    if not (isinstance(m.t_ref, float) and math.isfinite(m.t_ref) and 0 < m.t_ref <= 120):
        problems.append(f"[model] t_ref must be a number of months in (0, 120], got {m.t_ref!r}")
    for cname, cdef in spec.covariates:
        if cname in COVARIATES:
            problems.append(
                f"[covariates.{cname}]: {cname!r} is a built-in covariate of the LMS table; use "
                "another name"
            )
        if cdef.type not in ("numeric", "categorical"):
            problems.append(
                f"[covariates.{cname}] type must be 'numeric' or 'categorical', got {cdef.type!r}"
            )
        if not math.isfinite(cdef.centre):
            problems.append(f"[covariates.{cname}] centre must be finite, got {cdef.centre!r}")
        if not (math.isfinite(cdef.scale) and cdef.scale > 0):
            problems.append(
                f"[covariates.{cname}] scale must be a finite number > 0, got {cdef.scale!r}"
            )
    e = spec.exact
    for name, lo, hi in (("draws", 100, 1_000_000), ("nodes", 1, 61), ("uterine_nodes", 2, 64)):
        v = getattr(e, name)
        if isinstance(v, int) and not lo <= v <= hi:
            problems.append(f"[exact] {name} must be in [{lo}, {hi}], got {v!r}")
    if not (math.isfinite(e.df) and e.df > 0):
        problems.append(f"[exact] df must be a positive number, got {e.df!r}")
    if not (0 < e.khat_max <= 1):
        problems.append(f"[exact] khat_max must be in (0, 1], got {e.khat_max!r}")
    for v in d.evidence_levels:
        if v not in ("full_text", "abstract", "registry", "news"):
            problems.append(
                "[data] evidence_levels: must be among ['full_text', 'abstract', 'registry', "
                f"'news'], got {v!r}"
            )
    if m.likelihood not in LIKELIHOODS:
        problems.append(
            f"[model] likelihood: unknown {m.likelihood!r}"
            + _did_you_mean(m.likelihood, tuple(LIKELIHOODS))
        )
    elif _families.FAMILIES[m.likelihood].ordered_intercepts and list(spec.landmarks) != sorted(
        spec.landmarks
    ):
        problems.append(
            f"landmarks: the {m.likelihood} likelihood conditions each landmark on the one before, "
            f"so landmarks must be in increasing order, got {list(spec.landmarks)}"
        )
    seen = set()
    known = {*COVARIATES, *(c for c, _ in spec.covariates)}
    for cov in m.covariates:
        parts = cov.split(":") if isinstance(cov, str) else [cov]
        for p in parts:
            if p not in known:
                problems.append(
                    f"[model] covariates: unknown covariate {p!r}"
                    + _did_you_mean(str(p), tuple(known))
                    + f" (a column of your own table needs a [covariates.{p}] entry)"
                )
        key = tuple(sorted(parts)) if all(isinstance(p, str) for p in parts) else cov
        if key in seen:
            problems.append(f"[model] covariates: {cov!r} is listed twice")
        seen.add(key)
        if len(parts) > 1 and len(set(parts)) != len(parts):
            problems.append(f"[model] covariates: interaction {cov!r} repeats a term")
    if not (0.0 <= m.uterine_centre <= 1.0):
        problems.append(f"[model] uterine_centre must be in [0, 1], got {m.uterine_centre!r}")
    if r.distribution not in ("normal", "student_t"):
        problems.append(
            f"[random_effects] distribution must be 'normal' or 'student_t', got {r.distribution!r}"
        )
    if not NU_RANGE[0] <= r.nu <= NU_RANGE[1]:
        problems.append(
            f"[random_effects] nu must be in [{NU_RANGE[0]:g}, {NU_RANGE[1]:g}] (1 is a Cauchy; "
            f"beyond ~30 the Student-t is a normal), got {r.nu!r}"
        )
    if r.discount_year and not 1900 <= r.discount_year <= 2200:
        problems.append(
            f"[random_effects] discount_year must be 0 (the target's year) or a calendar "
            f"year, got {r.discount_year!r}"
        )
    if r.tau_by not in ("none", "line"):
        problems.append(f"[random_effects] tau_by must be 'none' or 'line', got {r.tau_by!r}")
    if r.trial_effect and r.group not in ("", "trial"):
        problems.append(
            f"[random_effects] trial_effect = true nests arms in trials; it cannot be combined "
            f"with group = {r.group!r} (one grouping per model)"
        )
    if not isinstance(r.group, str) or (r.group and not r.group.isidentifier()):
        problems.append(f"[random_effects] group must be a column name or '', got {r.group!r}")
    if m.drift not in ("none", "random_walk", "era"):
        problems.append(f"[model] drift must be 'none', 'random_walk' or 'era', got {m.drift!r}")
    elif m.drift == "era":
        starts = list(m.era_starts)
        if not 1 <= len(starts) <= 4 or any(b <= a for a, b in zip(starts, starts[1:])):
            problems.append(
                f"[model] era_starts must be 1 to 4 increasing years (2 to 5 eras), got {starts!r}"
            )
    elif m.drift == "random_walk":
        knots = list(m.drift_knots)
        if not 3 <= len(knots) <= 6 or any(b <= a for a, b in zip(knots, knots[1:])):
            problems.append(f"[model] drift_knots must be 3 to 6 increasing years, got {knots!r}")
        elif not knots[0] <= m.drift_reference <= knots[-1]:
            problems.append(
                f"[model] drift_reference must lie in [{knots[0]}, {knots[-1]}], got "
                f"{m.drift_reference!r}"
            )
    for name in ("tau", "group_tau", "drift_scale", "discount"):
        prior = getattr(spec.priors, name)
        if prior.support not in ("positive", "unit", "bounded") or (
            prior.dist == "Uniform" and prior.kwargs.get("lower", 0) < 0
        ):
            problems.append(
                f"[priors] {name} must have positive support (e.g. HalfNormal), got {prior!r}"
            )
    if spec.priors.shape.support != "positive":
        problems.append(
            f"[priors] shape must have positive support (e.g. LogNormal), got {spec.priors.shape!r}"
        )
    for name in ("alpha", "beta"):
        if getattr(spec.priors, name).support != "real":
            problems.append(
                f"[priors] {name} must be a distribution on the real line, got "
                f"{getattr(spec.priors, name)!r}"
            )
    for name in ("draws", "tune", "chains"):
        v = getattr(s, name)
        if isinstance(v, int) and v < 1:
            problems.append(f"[sampler] {name} must be >= 1, got {v!r}")
    if s.chains > MAX_CHAINS:
        problems.append(f"[sampler] chains must be <= {MAX_CHAINS}, got {s.chains!r}")
    elif s.draws >= 1 and s.chains >= 1 and s.draws * s.chains > MAX_TOTAL_DRAWS:
        problems.append(
            f"[sampler] draws x chains = {s.draws:,} x {s.chains} exceeds the bound of "
            f"{MAX_TOTAL_DRAWS:,} draws in all (every draw of every arm is kept in memory)"
        )
    if s.tune > MAX_TUNE:
        problems.append(f"[sampler] tune must be <= {MAX_TUNE:,} per chain, got {s.tune:,}")
    if not SEED_RANGE[0] <= s.seed <= SEED_RANGE[1]:
        problems.append(
            f"[sampler] seed must be an integer in {SEED_RANGE[0]}..{SEED_RANGE[1]} "
            f"(2**32 - 1, what numpy and nutpie accept), got {s.seed!r}"
        )
    if s.adaptation not in ("diag", "low_rank"):
        problems.append(f"[sampler] adaptation must be 'diag' or 'low_rank', got {s.adaptation!r}")
    if not (0.5 <= s.target_accept < 1):
        problems.append(f"[sampler] target_accept must be in [0.5, 1), got {s.target_accept!r}")
    if spec.thresholds.reference not in ("pooled", "predictive"):
        problems.append(
            "[thresholds] reference must be 'pooled' or 'predictive', got "
            f"{spec.thresholds.reference!r}"
        )
    for hr in spec.thresholds.hr:
        if not isinstance(hr, (int, float)) or not (0 < hr < 1):
            problems.append(
                f"[thresholds] hr: each hazard ratio must be in (0, 1), got {_show(hr)}"
            )
    if not spec.thresholds.hr:
        problems.append("[thresholds] hr: at least one hazard ratio is needed")
    if raise_ and problems:
        raise SpecError(problems, source)


def _check_populations(populations: tuple[str, ...], problems: list[str]) -> None:
    """Each [data] populations label must be one the arm table knows.

    A typo would drop arms silently.
    """
    from lmsbayes.data import LABELS

    known = LABELS["population"]
    for v in populations:
        if v not in known:
            close = difflib.get_close_matches(str(v), list(known), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(
                f"[data] populations: unknown population {_show(v)}{hint} (known: {list(known)})"
            )


def bundled_specs() -> dict[str, Path]:
    """Names and paths of the specs shipped with the package (``models/*.toml``)."""
    root = importlib.resources.files("lmsbayes") / "_models"
    return {p.name[:-5]: Path(str(p)) for p in root.iterdir() if p.name.endswith(".toml")}


def load_spec(path_or_name: str | Path = "default") -> ModelSpec:
    """Read and validate a model spec.

    Parameters
    ----------
    path_or_name : str or Path
        A path to a TOML file, or the name of a bundled spec (``"default"``,
        ``"eortc2021"``, ``"uterine"``).

    Returns
    -------
    ModelSpec

    Raises
    ------
    SpecError
        If the file is not valid TOML or the spec is invalid (all problems at once).
    FileNotFoundError
        If neither a file nor a bundled spec of that name exists.
    """
    p = Path(path_or_name)
    if not p.is_file():
        bundled = bundled_specs()
        if str(path_or_name) in bundled:
            p = bundled[str(path_or_name)]
        else:
            raise FileNotFoundError(
                f"no spec file {str(path_or_name)!r} and no bundled spec of that name "
                f"(bundled: {sorted(bundled)})"
            )
    text = read_text(
        p,
        what="spec",
        max_bytes=MAX_SPEC_BYTES,
        error=lambda path, reason: SpecError([reason], path),
    )
    empty = SpecError(
        [
            "the spec is empty (no keys); an empty spec would fit the package's defaults, not "
            "an analysis you chose: write the [model] table (see models/default.toml)"
        ],
        str(p),
    )
    if not text.strip():
        raise empty
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError([f"not valid TOML: {exc}"], str(p)) from None
    except RecursionError:
        raise SpecError(["not valid TOML: nested too deeply"], str(p)) from None
    if not raw:  # whitespace and comments only
        raise empty
    raw.setdefault("name", p.stem)
    return parse_spec(raw, source=str(p), text=text)
