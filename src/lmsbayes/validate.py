"""Predictive validation: leave-one-trial-out, temporal, and the comparison of specs.

Every check here predicts data the fit did not see, each held-out arm as a
new trial of its size at its covariates:

- **leave-one-trial-out** (:func:`loto`): for each trial, the spec is refitted
  without the trial's arms (all arms of a randomised trial leave together)
  and predicts them;
- **temporal** (:func:`temporal`): one fit on the arms published up to a
  year predicts the arms published later.

The predictive distribution of a held-out arm integrates the posterior of the
global parameters (intercepts, effects, shape, tau), a new random effect
``u_new ~ Normal(0, tau[stratum])`` and, where the arm's uterine fraction is
unknown, that fraction (its Beta(1, 1) prior); the observation noise is the
spec's own likelihood (the arm's reported se, or its effective binomial n).

Reported per held-out observation: the probability integral transform
(PIT: the predictive CDF at the observed value, oriented on the reported
quantity, i.e. P(replicate rate <= observed rate), whatever the scale the
likelihood uses; randomised for counts,
``F(y - 1) + V (F(y) - F(y - 1))`` with V uniform, so that it is uniform
under a correct model), and whether the observation lies inside the central
50/80/90/95% predictive interval (``|PIT - 1/2| <= level / 2``). Per spec:
the coverage of each interval with a Clopper-Pearson 95% interval, and the
expected log predictive density ``ELPD = sum_i log mean_s p(y_i | theta_s)``
over held-out arms i (the arm's observations jointly, its random effect and
latent fraction integrated out exactly by the exact engine's
:class:`~lmsbayes.engines.exact.Integrator`), with standard error
``sqrt(n) sd_i(elpd_i)`` as in loo (Vehtari et al. 2017).

Comparing specs (:func:`compare`) is honest only on a common target:

(a) Survival specs (log-logistic, Weibull, constant hazard, shape by line)
    use the same observations: each arm's reported median (log months) and
    reported rates. A log-logistic curve models a rate on the logit scale, a
    Weibull curve on the log cumulative hazard scale c = log(-log S); their
    densities are put on the logit scale by adding
    ``log |dc / dlogit| = log(1 - S) - log(-log S)`` for each rate. The
    column ``elpd_survival`` is that ELPD; differences are paired per arm,
    with ``se_diff = sqrt(n) sd_i(d_i)``.
(b) Per-landmark models observe other things (rates at fixed landmarks,
    partly derived from medians under a constant hazard). Across families the
    target is the held-out arms' *reported* (never derived) rates at the
    landmarks every compared spec predicts, for the arms every spec
    includes. Coverage and PIT of each reported rate use each model's own
    predictive (its own observation noise); the common log score is
    ``log mean_s E[Normal(logit r | logit p_new, se_r)]``, the density of
    the observed logit rate r (se from its CI, else binomial with n) around
    each model's predictive true rate p_new of a new arm at the arm's
    covariates, summed per arm.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special

from lmsbayes.data import read_tables
from lmsbayes.decision import DEFAULT_SPECS
from lmsbayes.engines import choose_engine
from lmsbayes.engines.base import FitSettings
from lmsbayes.engines.exact import ENGINE as EXACT
from lmsbayes.engines.exact import Integrator
from lmsbayes.errors import InputError, OptionError
from lmsbayes.model.definition import Model
from lmsbayes.model.families import NUMPY_OPS
from lmsbayes.model.inputs import ModelData
from lmsbayes.model.prepare import prepare_data
from lmsbayes.model.structure import discount_at, t_scale_mixture
from lmsbayes.spec import ModelSpec, load_spec

__all__ = [
    "DEFAULT_SPECS",
    "LEVELS",
    "Comparison",
    "Validation",
    "ValidationError",
    "common_target",
    "compare",
    "coverage_interval",
    "elpd_difference",
    "interval_score",
    "join_folds",
    "lfo",
    "lfo_start",
    "paired_difference",
    "select_folds",
    "total_and_se",
    "loro",
    "loto",
    "temporal",
]

#: Nominal levels of the central predictive intervals whose coverage is reported.
LEVELS = (0.5, 0.8, 0.9, 0.95)
#: Rate sources that count as reported (lmsbayes.data.RATE_KINDS).
_REPORTED = ("reported", "km_text")
_U_NODES_GAUSS = 16  # Gauss-Legendre nodes over a latent uterine fraction (smooth integrands)
_U_NODES_BINOM = 8
_Z_GRID = np.linspace(
    -6.0, 6.0, 97
)  # new random effect for binomial CDFs (a step in z needs a grid)
_INTERVAL_DRAWS = 500  # posterior draws for interval limits (the PITs use every draw)
_PIT_DRAWS_BINOM = 1000  # posterior draws used for binomial PITs (MCSE of a PIT <= 0.016)
_GH_NODES = 24
#: Arm columns carried into the validation's rows (what an arm is: data/README.md 2a).
_ARM_KINDS = ("year", "line", "role", "regimen")


class ValidationError(InputError):
    """A validation cannot be set up on these data (e.g. no arm after the year)."""


# ============================================================================ results


@dataclass(frozen=True)
class Validation:
    """Out-of-sample predictive checks of one spec.

    Attributes
    ----------
    spec : ModelSpec
    scheme : {'loto', 'temporal', 'lfo', 'loro'}
    data : ModelData
        All arms of the spec (training and held-out).
    arms : pandas.DataFrame
        One row per held-out arm (index ``arm``): ``trial``, ``fold``,
        ``n_obs``, ``elpd`` (log predictive density of the arm's observations
        on the spec's scales), ``elpd_mcse`` and, for survival specs,
        ``elpd_survival`` (rates on the logit scale, medians in log months).
    obs : pandas.DataFrame
        One row per held-out observation: ``arm``, ``trial``, ``fold``,
        ``kind`` ('median' or 'rate'), ``t`` (landmark, or the median in
        months), ``value`` (as reported), ``reported`` (False: derived from
        the median), ``y`` (on the likelihood's scale), ``pit`` (P(replicate
        <= observed) for the rate or median as reported), ``in_50`` ... ``in_95``.
    folds : pandas.DataFrame
        One row per fit: ``fold`` (the held-out trial, or the year cut),
        ``train_arms``, ``held_arms``, ``engine``, ``khat``, ``is_ess``,
        ``problems`` ('' when the diagnostics pass), ``seconds``.
    draws : tuple of dict
        Per fold, the posterior draws of the global parameters (draw, *shape).
    seconds : float
        Wall time of the whole validation.
    year : int or None
        The temporal cut.
    """

    spec: ModelSpec
    scheme: str
    data: ModelData
    arms: pd.DataFrame
    obs: pd.DataFrame
    folds: pd.DataFrame
    draws: tuple = field(repr=False)
    seconds: float
    year: int | None = None

    @property
    def name(self) -> str:
        """Name of the validated spec."""
        return self.spec.name

    def coverage(
        self, levels: Sequence[float] = LEVELS, reported_only: bool = False
    ) -> pd.DataFrame:
        """Coverage of the central predictive intervals, with Clopper-Pearson 95% intervals.

        Observations of one arm are correlated (one curve), so the binomial
        interval is somewhat narrow when arms report several quantities.
        """
        obs = self.obs[self.obs["reported"]] if reported_only else self.obs
        return _coverage_table(obs["pit"].to_numpy(float), levels)

    def elpd(self, column: str = "elpd") -> tuple[float, float]:
        """Total ELPD over the held-out arms and its standard error ``sqrt(n) sd``."""
        return _total(self.arms[column].to_numpy(float))

    def summary(self) -> dict:
        """The spec's row of the comparison table (numbers only)."""
        from scipy import stats  # scipy.stats takes 0.5 s to import: only where used

        out = {
            "spec": self.name,
            "likelihood": _describe(self.spec),
            "scheme": self.scheme,
            "arms": len(self.arms),
            "obs": len(self.obs),
            "obs_derived": int((~self.obs["reported"]).sum()),
        }
        cov = self.coverage()
        for lv, r in cov.iterrows():
            key = f"cov{100 * lv:g}"
            out[key], out[key + "_lo"], out[key + "_hi"] = r["coverage"], r["lo"], r["hi"]
        pit = self.obs["pit"].to_numpy(float)
        out["pit_ks_p"] = float(stats.kstest(pit, "uniform").pvalue) if pit.size else math.nan
        out["elpd"], out["elpd_se"] = self.elpd()
        out["elpd_mcse"] = float(np.sqrt(np.sum(self.arms["elpd_mcse"].to_numpy(float) ** 2)))
        if "elpd_survival" in self.arms:
            out["elpd_survival"], out["elpd_survival_se"] = self.elpd("elpd_survival")
        out["fits"] = len(self.folds)
        # folds taken from the full fit by reweighting its rule (leave-one-trial-out)
        method = self.folds["method"] if "method" in self.folds else pd.Series([], dtype=str)
        out["reweighted"] = int((method == "reweighted").sum())
        out["max_khat"] = float(self.folds["khat"].max())
        bad = self.folds[self.folds["problems"] != ""]
        out["refits_with_problems"] = len(bad)
        out["problems"] = "; ".join(f"{f}: {p}" for f, p in zip(bad["fold"], bad["problems"]))
        out["seconds"] = self.seconds
        out["seconds_per_fit"] = float(self.folds["seconds"].mean())
        return out


def _describe(spec: ModelSpec) -> str:
    return spec.family.label(spec.model)


def _total(x: np.ndarray) -> tuple[float, float]:
    n = x.size
    if n == 0:
        return math.nan, math.nan
    return float(x.sum()), float(math.sqrt(n) * x.std(ddof=1)) if n > 1 else math.nan


def coverage_interval(covered: int, n: int, prob: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson (exact binomial) interval of a coverage of ``covered`` out of ``n``."""
    from scipy import stats  # scipy.stats takes 0.5 s to import: only where used

    if n == 0:
        return math.nan, math.nan
    a = (1 - prob) / 2
    lo = stats.beta.ppf(a, covered, n - covered + 1) if covered > 0 else 0.0
    hi = stats.beta.ppf(1 - a, covered + 1, n - covered) if covered < n else 1.0
    return float(lo), float(hi)


def _coverage_table(pit: np.ndarray, levels: Sequence[float]) -> pd.DataFrame:
    rows = {}
    for lv in levels:
        inside = np.abs(pit - 0.5) <= lv / 2
        k, n = int(inside.sum()), int(pit.size)
        lo, hi = coverage_interval(k, n)
        rows[float(lv)] = {
            "covered": k,
            "n": n,
            "coverage": k / n if n else math.nan,
            "lo": lo,
            "hi": hi,
        }
    out = pd.DataFrame(rows).T
    out.index.name = "level"
    return out.astype({"covered": int, "n": int})


# ============================================================================ the schemes


def _spec(spec) -> ModelSpec:
    return spec if isinstance(spec, ModelSpec) else load_spec(spec)


def _model_data(spec: ModelSpec, data) -> ModelData:
    data = data if isinstance(data, ModelData) else prepare_data(spec, read_tables(data))
    if len(data.curve_rows):
        # a held-out curve arm's predictive density is not the Gaussian one validation scores
        raise OptionError(
            "validation of a spec with curve arms ([data] curves) is not supported yet: "
            "validate the spec without them"
        )
    return data


#: importance draws per exact refit by default: ELPD and PITs are stable at 2,000 (at 1,000 the
#: bundled data's default ELPD moved by 0.05 of its se), and a refit costs half the spec's 4,000
VALIDATION_DRAWS = 2000


def _with_draws(spec: ModelSpec, draws: int | None) -> ModelSpec:
    # only the exact engine reads exact.draws: a sampler's refits keep the spec's draws
    if draws is None:
        return spec.replace(**{"exact.draws": min(spec.exact.draws, VALIDATION_DRAWS)})
    if not isinstance(draws, (int, np.integer)) or isinstance(draws, bool) or draws < 100:
        raise ValidationError(f"draws must be an integer >= 100, got {draws!r}")
    return spec.replace(**{"exact.draws": int(draws), "sampler.draws": int(draws)})


def loto(
    spec: ModelSpec | str = "default",
    data=None,
    *,
    engine: str | None = None,
    draws: int | None = None,
    seed: int | None = None,
    progress: Callable[[str], None] | None = None,
    refit: bool = False,
) -> Validation:
    """Leave-one-trial-out predictive checks of a spec.

    Parameters
    ----------
    spec : ModelSpec or str
        A spec or a bundled spec name / TOML path.
    data : Trials, DataFrame, ModelData, path or None
        The input tables (None: the bundled data), or prepared inputs.
    engine : str, optional
        Engine of every refit, ``"auto"`` or an engine's name (default: the
        spec's, which for the bundled specs is the exact engine).
    draws : int, optional
        Posterior draws per refit (default: the spec's NUTS draws; for the exact engine at most
        :data:`VALIDATION_DRAWS`).
    seed : int, optional
        Seed of the randomised PITs (default: the spec's seed).
    progress : callable, optional
        Called with a message after each refit.
    refit : bool
        Refit the spec without each trial (True), or (False, the default) with the exact
        engine reweight the full fit's integration rule by each trial's likelihood
        (Pareto-smoothed importance sampling, Vehtari, Gelman & Gabry 2017), refitting only
        the trials whose Pareto k-hat exceeds 0.7 (``folds["method"]``, ``folds["loo_khat"]``);
        other engines and models with group effects always refit.

    Returns
    -------
    Validation
    """
    spec = _with_draws(_spec(spec), draws)
    data = _model_data(spec, data)
    trial = data.arms["trial"].astype(str).to_numpy()
    groups = list(dict.fromkeys(trial))
    if len(groups) < 2:
        raise ValidationError(
            f"leave-one-trial-out needs at least 2 trials, the data of spec {spec.name!r} "
            f"have {len(groups)}"
        )
    folds = [(g, np.flatnonzero(trial != g), np.flatnonzero(trial == g)) for g in groups]
    return _run(spec, data, folds, "loto", engine, seed, progress, None, reweight=refit is False)


def temporal(
    spec: ModelSpec | str = "default",
    data=None,
    year: int = 2018,
    *,
    engine: str | None = None,
    draws: int | None = None,
    seed: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Validation:
    """Temporal validation: fit on the arms published up to ``year``, predict the later ones.

    Parameters are those of :func:`loto`, and ``year`` (inclusive end of the
    training period). Arms without a year are in neither set (counted in
    the fold's row).

    Raises
    ------
    ValidationError
        When no arm lies on one side of the cut.
    """
    spec = _with_draws(_spec(spec), draws)
    data = _model_data(spec, data)
    if isinstance(year, bool) or not isinstance(year, (int, np.integer)):
        raise ValidationError(f"year must be an integer, got {year!r}")
    if "year" not in data.arms:
        raise ValidationError(
            f"temporal validation of spec {spec.name!r}: the data have no column 'year'"
        )
    y = pd.to_numeric(data.arms["year"], errors="coerce").astype(float).to_numpy()
    train, held = np.flatnonzero(y <= year), np.flatnonzero(y > year)
    years = sorted({int(v) for v in y[np.isfinite(y)]})
    if train.size == 0 or held.size == 0:
        side = "up to" if train.size == 0 else "after"
        raise ValidationError(
            f"temporal validation of spec {spec.name!r}: no arm published {side} {year} "
            f"(years in the data: {years[0]}-{years[-1]})"
        )
    return _run(
        spec, data, [(f"<= {year}", train, held)], "temporal", engine, seed, progress, int(year)
    )


#: Leave-future-out starts once the fit has this many arms, and this many per line.
LFO_MIN_ARMS, LFO_MIN_PER_LINE = 10, 3


def lfo_start(data: ModelData, min_arms: int = LFO_MIN_ARMS, min_per_line: int = LFO_MIN_PER_LINE):
    """The first year from which the training set is large enough.

    Its arms, with all earlier ones, number ``min_arms`` and ``min_per_line`` per line.

    Leave-future-out scores every arm published after that year. Returns None when no
    year qualifies or no later arm exists.
    """
    y = pd.to_numeric(data.arms["year"], errors="coerce").astype(float).to_numpy()
    line = data.arms["line"].astype(str).to_numpy() if "line" in data.arms else None
    lines = sorted(set(line)) if line is not None else []
    for year in sorted({int(v) for v in y[np.isfinite(y)]}):
        upto = y <= year
        per_line = [int((upto & (line == ln)).sum()) for ln in lines]
        if upto.sum() >= min_arms and all(k >= min_per_line for k in per_line):
            return year if (y > year).any() else None
    return None


def lfo(
    spec: ModelSpec | str = "default",
    data=None,
    *,
    start: int | None = None,
    engine: str | None = None,
    draws: int | None = None,
    seed: int | None = None,
    progress: Callable[[str], None] | None = None,
    reuse: Validation | None = None,
    only: Iterable[str] | None = None,
) -> Validation:
    """Leave-future-out, one step ahead.

    Each arm after ``start`` predicted by the arms before its year.

    For each publication year Y after ``start``, the spec is fitted to the arms
    published before Y and predicts the arms of Y (Bürkner, Gabry & Vehtari 2020,
    J Stat Comput Simul 90:2499, one-step-ahead with the year as the step). Every
    arm after ``start`` is scored once; the arms of one year are predicted
    jointly by one fit, as a trial statistician would have predicted them.

    Parameters
    ----------
    start : int, optional
        Last year of the first training set (default :func:`lfo_start`: the first
        year with at least 10 arms in the model and 3 per line, with its earlier ones).
    Others as in :func:`loto`.

    Returns
    -------
    Validation
        ``scheme = 'lfo'``, ``year = start``; one fold per scored year (``fold``
        is the year as text).
    reuse : Validation, optional
        An earlier leave-future-out of the same spec (e.g. before arms were added):
        its folds whose training and held-out arms are the same arms by id are taken
        over as they are, and those whose training arms are the same keep their fit
        (only the held-out arms are predicted again), so neither is refitted
        (``lmsbayes update``; ``folds["reused"]``: "yes", "fit" or "no").
    only : iterable of str, optional
        Run only these folds (years as text): a part of a leave-future-out, joined to
        the others by :func:`join_folds` (``lmsbayes update`` runs parts in parallel).

    Raises
    ------
    ValidationError
        No year qualifies as start, or no arm lies after ``start``.
    """
    spec = _with_draws(_spec(spec), draws)
    data = _model_data(spec, data)
    if "year" not in data.arms:
        raise ValidationError(f"leave-future-out of spec {spec.name!r}: the data have no 'year'")
    if start is None:
        start = lfo_start(data)
        if start is None:
            raise ValidationError(
                f"leave-future-out of spec {spec.name!r}: no year has {LFO_MIN_ARMS} arms "
                f"({LFO_MIN_PER_LINE} per line) up to it and later arms to predict"
            )
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)):
        raise ValidationError(f"start must be an integer year, got {start!r}")
    y = pd.to_numeric(data.arms["year"], errors="coerce").astype(float).to_numpy()
    years = sorted({int(v) for v in y[np.isfinite(y) & (y > start)]})
    if not years or not (y <= start).any():
        raise ValidationError(
            f"leave-future-out of spec {spec.name!r}: no arm published "
            f"{'after' if not years else 'up to'} {start}"
        )
    folds = [(str(yr), np.flatnonzero(y < yr), np.flatnonzero(y == yr)) for yr in years]
    if only is not None:
        folds = [f for f in folds if f[0] in set(only)]
    kept, fitted = _reusable_folds(reuse, data, folds, spec, start)
    if not kept and not fitted:
        return _run(spec, data, folds, "lfo", engine, seed, progress, int(start))
    t0 = time.perf_counter()
    todo = [f for f in folds if f[0] not in kept]
    # a fold whose training arms did not change keeps its fit: only its held-out arms are
    # predicted again (e.g. an arm added to the latest year)
    given = {f: _reused_fit(reuse, f) for f in fitted}
    new = _run(spec, data, todo, "lfo", engine, seed, progress, int(start), given) if todo else None
    parts = [select_folds(reuse, kept)] + ([new] if new is not None else [])
    out = join_folds(parts, [f[0] for f in folds], seconds=time.perf_counter() - t0)
    out.folds["reused"] = [
        "yes" if f in kept else ("fit" if f in fitted else "no") for f in out.folds["fold"]
    ]
    return out


def select_folds(v: Validation, labels) -> Validation:
    """The folds ``labels`` of a validation (its rows and draws of those folds only)."""
    labels = set(labels)
    pos = [k for k, f in enumerate(v.folds["fold"]) if f in labels]
    return dataclasses.replace(
        v,
        arms=v.arms[v.arms["fold"].isin(labels)],
        obs=v.obs[v.obs["fold"].isin(labels)].reset_index(drop=True),
        folds=v.folds.iloc[pos].reset_index(drop=True),
        draws=tuple(v.draws[k] for k in pos),
    )


def join_folds(
    parts: Sequence[Validation], order: Sequence[str] | None = None, seconds: float | None = None
) -> Validation:
    """One leave-future-out from validations of the same spec and data over disjoint folds.

    Parameters
    ----------
    parts : sequence of Validation
        Partial leave-future-outs (``lfo(..., only=...)`` or reused folds); the first
        gives the spec, data and start year.
    order : sequence of str, optional
        The folds in their order (default: by year).
    seconds : float, optional
        Wall time to record (default: the parts' sum).

    Returns
    -------
    Validation
    """
    where = {}
    for v in parts:
        for k, f in enumerate(v.folds["fold"]):
            if f in where:
                raise ValidationError(f"fold {f} is in two parts")
            where[f] = (v, k)
    order = list(order) if order is not None else sorted(where, key=int)

    def rows(attr: str, f: str) -> pd.DataFrame:
        frame = getattr(where[f][0], attr)
        return frame[frame["fold"] == f]

    first = parts[0]
    return Validation(
        spec=first.spec,
        scheme="lfo",
        data=first.data,
        arms=pd.concat([rows("arms", f) for f in order]),
        obs=pd.concat([rows("obs", f) for f in order], ignore_index=True),
        folds=pd.concat([rows("folds", f) for f in order], ignore_index=True),
        draws=tuple(where[f][0].draws[where[f][1]] for f in order),
        seconds=sum(v.seconds for v in parts) if seconds is None else seconds,
        year=first.year,
    )


@dataclass(frozen=True)
class _FoldFit:
    """A reused fold's fit: its draws and the diagnostics its fold row recorded."""

    values: dict
    engine: str
    khat: float
    is_ess: float
    ess: float
    problems: tuple


def _reused_fit(reuse: Validation, label: str) -> _FoldFit:
    k = reuse.folds["fold"].tolist().index(label)
    row = reuse.folds.iloc[k]
    problems = tuple(p for p in str(row.get("problems", "")).split("; ") if p)
    ess = float(row["ess"]) if "ess" in row else float(row["is_ess"])
    return _FoldFit(
        reuse.draws[k], str(row["engine"]), float(row["khat"]), float(row["is_ess"]), ess, problems
    )


def _reusable_folds(reuse, data: ModelData, folds, spec: ModelSpec, start):
    """Folds an earlier LFO of the same spec ran on the same arms, or on the same training arms.

    Returns the labels of folds to take over as they are (same training and held-out
    arms) and of folds whose fit is taken over (same training arms, other held-out arms).
    """
    if reuse is None:
        return set(), set()
    if reuse.scheme != "lfo" or reuse.spec.hash != spec.hash or reuse.year != int(start):
        raise ValidationError(
            "reuse must be a leave-future-out of the same spec with the same start year"
        )
    old_ids = reuse.data.arms.index
    old_y = pd.to_numeric(reuse.data.arms["year"], errors="coerce").astype(float).to_numpy()
    ids = data.arms.index
    done = set(reuse.folds["fold"])
    kept, fitted = set(), set()
    for label, train, held in folds:
        yr = int(label)
        if label not in done or set(ids[train]) != set(old_ids[old_y < yr]):
            continue
        if set(ids[held]) == set(old_ids[old_y == yr]):
            kept.add(label)
        else:
            fitted.add(label)
    return kept, fitted


def loro(
    spec: ModelSpec | str = "default",
    data=None,
    *,
    engine: str | None = None,
    draws: int | None = None,
    seed: int | None = None,
    progress: Callable[[str], None] | None = None,
    refit: bool = False,
) -> Validation:
    """Leave-one-regimen-out.

    All arms of a regimen leave together and are predicted as a new regimen.

    Tests the prediction for an untested agent (a new regimen): nothing of the
    held-out regimen is in the fit, other arms of its trials are. Arms without a
    regimen label are held out on their own. Parameters as in :func:`loto`.
    """
    spec = _with_draws(_spec(spec), draws)
    data = _model_data(spec, data)
    if "regimen" not in data.arms:
        raise ValidationError(
            f"leave-one-regimen-out of spec {spec.name!r}: the data have no column 'regimen'"
        )
    reg = [
        str(r) if isinstance(r, str) and r else f"(arm {a})"
        for a, r in zip(data.arms.index, data.arms["regimen"], strict=True)
    ]
    groups = list(dict.fromkeys(reg))
    if len(groups) < 2:
        raise ValidationError(f"leave-one-regimen-out needs 2 regimens, got {len(groups)}")
    reg = np.asarray(reg, dtype=object)
    folds = [(g, np.flatnonzero(reg != g), np.flatnonzero(reg == g)) for g in groups]
    return _run(spec, data, folds, "loro", engine, seed, progress, None, reweight=refit is False)


def _fit_globals(spec: ModelSpec, train: ModelData, engine, full_model: Model, start=None):
    """Posterior draws of the global parameters (draw, *shape) of a fit to ``train``.

    Also its diagnostics.

    Through the engine protocol, without building a Fit's DataTree and
    posterior predictive (a third of a refit's time); ``start``: the engine's
    warm start from the full data, and no arm-level draws (validation uses
    only the globals).
    """
    settings = FitSettings(seed=spec.sampler.seed, latent=False, start=start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the diagnostics are kept in the folds table instead
        res = engine.fit(Model(spec, train), settings, _silent)
    return res.values(full_model), res.diagnostics


def _silent(message: str) -> None:
    """Refits report through the fold messages of :func:`_run`, not their own."""


#: Pareto k-hat above which a reweighted fold is refitted (Vehtari, Gelman & Gabry 2017)
LOO_KHAT_MAX = 0.7


@dataclass(frozen=True)
class _LooFold:
    """A fold from the full fit reweighted by the held-out arms' likelihood.

    ``values``: equal-weight draws of the reweighted rule; ``elpd``: the held-out arms'
    log predictive densities and their errors, integrated over the reweighted rule.
    """

    values: dict
    elpd: tuple
    khat: float
    is_ess: float
    ess: float
    mode: np.ndarray
    problems: tuple
    engine: str = EXACT.name


def _reweighted_folds(spec: ModelSpec, model: Model, folds) -> dict[str, _LooFold]:
    """Every fold's posterior as the full fit's rule reweighted by 1 / p(y_held | theta).

    The exact engine integrates each arm over its latent quantities at each
    point theta_j of its rule, so the held-out arms' likelihood L(theta_j) is
    known exactly there, and the posterior without them is the full posterior
    divided by L: the weights w_j / L(theta_j), normalised (importance-sampling
    leave-one-out, Gelfand 1996), Pareto-smoothed with their k-hat as the
    diagnostic (Vehtari, Gelman & Gabry 2017); a fold whose k-hat exceeds
    :data:`LOO_KHAT_MAX` is refitted by :func:`_run`. A held-out arm's ELPD is
    log sum_j w~_j p(y_arm | theta_j) (the smoothed weights); its error is
    the importance-sampling standard error of that mean (delta method). The
    fold's draws (for PITs and intervals) are the reweighted rule resampled
    as a fit resamples its own rule, at the spec's seed.
    """
    from lmsbayes.engines.exact import Layout, fit_exact
    from lmsbayes.engines.psis import importance_ess, psis
    from lmsbayes.engines.rules import Rule

    res = fit_exact(model, spec.exact, spec.sampler.seed, latent=False)
    rule = res.rule
    if rule is None:
        return {}
    d = res.diagnostics
    problems = []
    if not d["mode_converged"]:
        problems.append("the posterior mode search did not converge")
    layout = Layout(model)
    vals, _ = layout.unpack(rule.theta)
    integ = Integrator(model)
    P = rule.theta.shape[0]
    ll = np.empty((P, model.data.n_arms))
    step = max(int(integ.chunk), 1)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for s0 in range(0, P, step):
            ll[s0 : s0 + step] = integ.arm_loglik({k: v[s0 : s0 + step] for k, v in vals.items()})
    n = int(spec.exact.draws)
    out = {}
    for label, _train, held in folds:
        with np.errstate(invalid="ignore"):  # -inf - -inf: a point of no weight either way
            raw = rule.log_weight - ll[:, held].sum(axis=1)
        raw = np.where(np.isfinite(raw), raw, -np.inf)
        lw, khat = psis(raw)
        w = np.exp(lw)
        lh = ll[:, held]
        top = np.max(lh, axis=0)
        r = np.exp(lh - top)
        mean = w @ r
        elpd = np.log(mean) + top
        mcse = np.sqrt(w**2 @ (r - mean) ** 2) / mean
        loo_rule = Rule(
            theta=rule.theta, log_weight=lw, group=rule.group, kind=rule.kind, cell=rule.cell
        )
        theta = loo_rule.draw(n, np.random.default_rng(spec.sampler.seed))
        values, _ = layout.unpack(theta)
        is_ess = importance_ess(lw)
        out[label] = _LooFold(
            values=values,
            elpd=(elpd, mcse),
            khat=float(khat),
            is_ess=is_ess,
            ess=is_ess,
            mode=d["mode"],
            problems=tuple(problems),
        )
    return out


def _run(
    spec, data, folds, scheme, engine, seed, progress, year, given=None, reweight=False
) -> Validation:
    """Fit each fold (or take ``given[label]``, a :class:`_FoldFit`) and score its held-out arms.

    ``reweight``: the folds hold out complementary arms (leave-one-trial-out): with the exact
    engine, folds are the full fit reweighted (:func:`_reweighted_folds`) where their k-hat allows.
    """
    t_all = time.perf_counter()
    rng = np.random.default_rng(spec.sampler.seed + 7 if seed is None else seed)
    full_model = Model(spec, data)
    chosen, _ = choose_engine(spec, engine)
    loo = {}
    if reweight and not given and chosen.name == EXACT.name and not full_model.grouped:
        loo = _reweighted_folds(spec, full_model, folds)
    # the warm start (the full data's mode) only where a fold is fitted
    to_fit = [f for f in folds if not (given and f[0] in given) and f[0] not in loo]
    if loo:
        start = next(iter(loo.values())).mode
    else:
        start = chosen.warm_start(full_model) if to_fit else None
    arm_rows, obs_rows, fold_rows, all_draws = [], [], [], []
    for k, (label, train, held) in enumerate(folds):
        t0 = time.perf_counter()
        # an age discount counts ages to the year predicted: each cut's own year
        fspec = discount_at(spec, int(label)) if scheme == "lfo" else spec
        held_elpd = None
        method = "refit"
        loo_khat = math.nan
        if label in loo:
            loo_khat = loo[label].khat
        if given and label in given:
            values, d = given[label].values, given[label]
            method = "given"
        elif label in loo and loo[label].khat <= LOO_KHAT_MAX:
            values, d, held_elpd = loo[label].values, loo[label], loo[label].elpd
            method = "reweighted"
        else:
            values, d = _fit_globals(fspec, data.take(train), chosen, full_model, start)
        seconds_fit = time.perf_counter() - t0
        ess = d.ess
        train_data = (lambda train=train: data.take(train)) if full_model.grouped else None
        a_rows, o_rows = _predict_held(
            fspec, data, held, values, rng, ess, train_data, held_elpd=held_elpd
        )
        for r in a_rows + o_rows:
            r["fold"] = label
        arm_rows += a_rows
        obs_rows += o_rows
        all_draws.append(values)
        fold_rows.append(
            {
                "fold": label,
                "train_arms": int(train.size),
                "held_arms": int(held.size),
                "engine": d.engine,
                "khat": d.khat,
                "is_ess": d.is_ess,
                "ess": ess,
                "problems": "; ".join(d.problems),
                "method": method,
                "loo_khat": loo_khat,
                "seconds_fit": seconds_fit,
                "seconds": time.perf_counter() - t0,
            }
        )
        if progress:
            progress(
                f"{spec.name}: fold {k + 1}/{len(folds)} ({label}, {held.size} "
                f"arm{'s' if held.size != 1 else ''}"
                f" held out) {fold_rows[-1]['seconds']:.2f} s"
            )
    arms = pd.DataFrame(arm_rows).set_index("arm")
    obs = pd.DataFrame(obs_rows)
    for lv in LEVELS:
        obs[f"in_{100 * lv:g}"] = np.abs(obs["pit"] - 0.5) <= lv / 2
    return Validation(
        spec=spec,
        scheme=scheme,
        data=data,
        arms=arms,
        obs=obs,
        folds=pd.DataFrame(fold_rows),
        draws=tuple(all_draws),
        seconds=time.perf_counter() - t_all,
        year=year,
    )


# ============================================================================ held-out predictions


def _group_shift(spec, train: ModelData | None, hd: ModelData, values, rng) -> np.ndarray | None:
    """Each held-out arm's group effect group_tau v (draw, arm), or None without group effects.

    An arm of a group (regimen, trial) with training arms keeps that group's effect, drawn
    from its conditional given the draw's globals and the training arms (the exact engine's
    grid inverse CDF); an arm of a new group draws a new standardised effect from its
    Normal(0, 1) prior (one per new group, shared by that group's held-out arms).
    """
    m = Model(spec, hd)
    if not m.grouped:
        return None
    gt = np.asarray(m.canonical(values)["group_tau"], float)[..., 0]  # (draw,)
    S = gt.shape[0]
    held_groups = [hd.groups[g] for g in np.asarray(hd.group_idx, int)]
    w_new = {g: rng.standard_normal(S) for g in dict.fromkeys(held_groups)}
    if train is not None and len(train.groups):
        integ = Integrator(Model(spec, train))
        w = np.empty((S, len(train.groups)))
        step = max(int(getattr(integ, "chunk", S)), 1)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for s0 in range(0, S, step):
                sl = slice(s0, s0 + step)
                w[sl] = integ._draw_groups({k: x[sl] for k, x in values.items()}, rng)
        known = {g: w[:, j] for j, g in enumerate(train.groups)}
        w_new.update({g: known[g] for g in w_new if g in known})
    return np.stack([gt * w_new[g] for g in held_groups], axis=1)


def _predict_held(
    spec, data: ModelData, held: np.ndarray, values, rng, ess: float, train=None, held_elpd=None
):
    """Rows of the arms and observations of one fold's held-out arms.

    ``train``: the fold's training data, or a callable returning it (its groups' effects
    carry over to held-out arms of the same regimen or trial; without it every held-out
    group is new). ``held_elpd``: the held-out arms' ELPD and its error, computed already
    (a reweighted fold integrates them over its rule, :func:`_reweighted_folds`).
    """
    hd = data.take(held)
    m = Model(spec, hd)
    if callable(train):
        train = train()
    shift = _group_shift(spec, train, hd, values, rng)
    if held_elpd is not None:
        elpd, mcse = held_elpd
    else:
        with np.errstate(
            over="ignore", invalid="ignore", divide="ignore"
        ):  # as the engine's own log posterior
            ll = Integrator(m).arm_loglik(values, shift)  # (draw, arm)
        S = ll.shape[0]
        elpd = special.logsumexp(ll, axis=0) - math.log(S)
        r = np.exp(ll - ll.max(axis=0))
        mcse = r.std(axis=0, ddof=1) / r.mean(axis=0) / math.sqrt(max(min(ess, S), 1.0))
    c = m.canonical(values)
    if shift is not None:
        c = {**c, "_shift": shift}  # read by _arm_predictor
    obs = hd.obs
    arm_rows, obs_rows = [], []
    for i, arm in enumerate(hd.arms.index):
        rows = np.flatnonzero(obs["arm_idx"].to_numpy() == i)
        desc = hd.family.describe_observations(hd.obs.iloc[rows], _REPORTED)
        pit = _pit(m, c, i, rows, rng)
        lo, hi, y_rep = _intervals(m, c, i, rows)
        scores = np.stack(
            [interval_score(lo[:, li], hi[:, li], y_rep, lv) for li, lv in enumerate(LEVELS)], 1
        )
        row = {
            "arm": arm,
            "trial": str(hd.arms["trial"].iloc[i]),
            **{col: hd.arms[col].iloc[i] for col in _ARM_KINDS if col in hd.arms},
            "n_obs": rows.size,
            "elpd": float(elpd[i]),
            "elpd_mcse": float(mcse[i]),
        }
        row.update(hd.family.heldout_scores(float(elpd[i]), hd.obs.iloc[rows]))
        arm_rows.append(row)
        for j, _q in enumerate(rows):
            obs_rows.append(
                {
                    "arm": arm,
                    "trial": row["trial"],
                    **{k: v[j] for k, v in desc.items()},
                    "pit": float(pit[j]),
                    "y_report": float(y_rep[j]),
                    **{
                        f"{key}{100 * lv:g}": float(x[j, li])
                        for li, lv in enumerate(LEVELS)
                        for key, x in (("lo", lo), ("hi", hi), ("is", scores))
                    },
                }
            )
    return arm_rows, obs_rows


def _arm_predictor(m: Model, c: dict, i: int, nodes: int):
    """Linear predictor of arm i without random effect at its uterine fraction(s).

    Returns ``base`` (draw, node, K) and the nodes' weights (node,): one node
    of weight 1 for a known fraction, Gauss-Legendre nodes over [0, 1] (the
    Beta(1, 1) prior of an unknown fraction) otherwise.
    """
    d = m.data
    # the model's design: the covariates and, with a drift, its basis at the arm's year
    Xd, Xud = m.arrays["X"], m.arrays["Xu"]
    X = Xd[i][None]
    w = np.ones(1)
    if i in set(d.latent.tolist()):
        xg, wg = _leggauss(nodes)
        u = 0.5 * (xg + 1)
        X = Xd[i][None] + (u[:, None] - d.uterine_centre) * Xud[i][None]
        w = 0.5 * wg
    S = np.shape(c["tau"])[0]
    base = m.base_predictor(NUMPY_OPS, c, X)
    base = np.broadcast_to(base, (S, X.shape[0], base.shape[-1]))
    if "_shift" in c:  # the arm's group effect (regimen or trial), per draw
        base = base + np.asarray(c["_shift"])[:, i][:, None, None]
    return base, w


@functools.lru_cache(maxsize=8)
def _leggauss(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights (computed once per size: an eigenproblem each time)."""
    x, w = np.polynomial.legendre.leggauss(nodes)
    x.flags.writeable = w.flags.writeable = False
    return x, w


def _effect_sd(m: Model, c: dict, i: int) -> np.ndarray:
    """The sd of arm i's own effect (draw, Kz): tau of its stratum, widened by an age discount."""
    return np.asarray(m.effect_scale(c), float)[..., i, :]


def _arm_shape(m: Model, c: dict, i: int) -> np.ndarray:
    S = np.shape(c["tau"])[0]
    return np.broadcast_to(np.asarray(c["shape"], float)[..., m.data.shape_idx[i]], (S,))


def _gauss_predictive(m: Model, c: dict, i: int, rows: np.ndarray):
    """The predictive of arm i's observations ``rows`` as a normal mixture.

    The mixture is on the likelihood's scale.

    Returns ``mu``, ``sd`` (draw, node, obs), the node weights (node,) and ``flip`` (obs,):
    True where the scale falls as the reported quantity rises (a Weibull curve's rate,
    observed as log(-log S)). The family gives the mean, its slope in eta and the se.
    """
    d = m.data
    a = m.arrays
    tau = _effect_sd(m, c, i)  # (draw, Kz)
    k = a["k_idx"][rows]
    kz = m.z_column(k)
    base, w = _arm_predictor(m, c, i, _U_NODES_GAUSS)
    eta = base[..., k]  # (draw, node, obs)
    shape = _arm_shape(m, c, i)[:, None, None] if "shape" in c else None
    mu, slope, se = d.family.predictive_normal(eta, shape, a, rows, m)
    if m.student_t:  # a Student-t effect: its scale mixture's nodes times the fraction's nodes
        mult, logw = t_scale_mixture(m.spec.random_effects.nu)
        n_u, T = w.size, mult.size
        se = np.broadcast_to(se, mu.shape)[..., None, :]  # (draw, node, 1, obs)
        sd = np.sqrt(
            se**2 + (slope[:, :, None, :] * tau[:, None, None, kz] * mult[None, None, :, None]) ** 2
        )
        mu = np.broadcast_to(mu[:, :, None, :], sd.shape)
        sd = sd.reshape(sd.shape[0], n_u * T, -1)
        mu = mu.reshape(sd.shape)
        w = (w[:, None] * np.exp(logw)[None, :]).reshape(-1)
    else:
        sd = np.sqrt(se**2 + (slope * tau[:, None, kz]) ** 2)
    flip = d.family.falls_with_rate(a, rows)
    mu, sd = np.broadcast_arrays(mu, sd)
    return mu, sd, w, flip


def _intervals(m: Model, c: dict, i: int, rows: np.ndarray, levels=LEVELS, iterations: int = 32):
    """Central predictive intervals of arm i's observations on the reporting scale.

    Also the observed value.

    The reporting scale is logit S for a rate and log months for a median (for every curve:
    a Weibull rate's interval is mapped from log(-log S), a log-normal one's from probit S).
    Quantiles of the predictive mixture over :data:`_INTERVAL_DRAWS` evenly spaced posterior
    draws (:func:`_mixture_quantiles`, error below 1e-7 on that scale). Returns ``lo``,
    ``hi`` (obs, level) and ``y`` (obs,); NaN for count likelihoods (no interval score there).
    """
    if not m.family.gaussian:
        nan = np.full((rows.size, len(levels)), math.nan)
        return nan, nan.copy(), np.full(rows.size, math.nan)
    mu, sd, w, flip = _gauss_predictive(m, c, i, rows)
    sub = np.unique(np.linspace(0, mu.shape[0] - 1, _INTERVAL_DRAWS).round().astype(int))
    mu, sd = mu[sub], sd[sub]
    lv = np.asarray(levels, float)
    probs = np.concatenate([(1 - lv) / 2, (1 + lv) / 2])  # (P,)
    q = _mixture_quantiles(mu, sd, w / mu.shape[0], probs, iterations)  # (obs, P)
    y = m.arrays["lik_y"][rows].astype(float)
    to_logit = m.family.logit_of_scale  # None: rates are observed as logit S already
    rate = m.family.rate_rows(m.arrays, rows)
    if to_logit is not None and rate.any():
        L = lv.size
        if flip.any():  # decreasing map: the lower limit on the logit scale is the upper quantile
            q[flip] = np.concatenate([q[flip][:, L:], q[flip][:, :L]], axis=1)
        q[rate] = to_logit(q[rate])[0]
        y = np.where(rate, to_logit(np.where(rate, y, 0.0))[0], y)
    return q[:, : lv.size], q[:, lv.size :], y


def _mixture_quantiles(mu, sd, w, probs, iterations: int = 32, tol: float = 1e-5) -> np.ndarray:
    """Quantiles ``probs`` (P,) of each observation's normal mixture: (obs, P).

    ``mu``, ``sd`` (draw, node, obs); ``w`` (node,) the weights of a draw's nodes, summing
    to 1 over draws and nodes. Newton steps on the mixture CDF (its density is the
    derivative), safeguarded by a bracket that starts at the components' +-9 sd and
    shrinks at every step (bisection where a step would leave it): the CDF is smooth and
    monotone, so Newton converges quadratically: once every step is below ``tol`` the
    error left is of order tol^2 times the CDF's relative curvature (below 1e-9 on the
    bundled data, tested against bisection), reached in 2 or 3 steps where bisection took
    32 for 1e-7. At most ``iterations`` steps.
    """
    P = probs.size
    lo = np.broadcast_to((mu - 9 * sd).min(axis=(0, 1))[:, None], (mu.shape[-1], P)).copy()
    hi = np.broadcast_to((mu + 9 * sd).max(axis=(0, 1))[:, None], (mu.shape[-1], P)).copy()
    # start: the normal with the mixture's mean and variance
    mean = np.einsum("snj,n->j", mu, w)
    var = np.einsum("snj,n->j", sd * sd + mu * mu, w) - mean * mean
    x = mean[:, None] + np.sqrt(np.maximum(var, 1e-300))[:, None] * special.ndtri(probs)[None]
    x = np.clip(x, lo, hi)
    mu3, inv = mu[..., None], 1.0 / sd[..., None]
    for _ in range(iterations):
        zz = (x - mu3) * inv
        F = np.einsum("snjp,n->jp", special.ndtr(zz), w)
        f = np.einsum("snjp,n->jp", np.exp(-0.5 * zz * zz) * inv, w) / math.sqrt(2 * math.pi)
        below = F < probs[None, :]
        lo, hi = np.where(below, x, lo), np.where(below, hi, x)
        with np.errstate(divide="ignore", invalid="ignore"):
            new = x - (F - probs[None, :]) / f
        new = np.where((new > lo) & (new < hi), new, 0.5 * (lo + hi))
        done = np.max(np.abs(new - x)) < tol
        x = new
        if done:
            break
    return x


def interval_score(lo, hi, y, level: float):
    """Interval score of a central interval (Gneiting & Raftery 2007, eq. 43): lower is better.

    ``(hi - lo) + (2 / alpha) (lo - y)+ + (2 / alpha) (y - hi)+`` with ``alpha = 1 - level``.
    """
    alpha = 1.0 - level
    lo, hi, y = (np.asarray(v, float) for v in (lo, hi, y))
    return (hi - lo) + 2 / alpha * np.maximum(lo - y, 0) + 2 / alpha * np.maximum(y - hi, 0)


def _pit(m: Model, c: dict, i: int, rows: np.ndarray, rng) -> np.ndarray:
    """Predictive CDF at each observation of held-out arm i (randomised for counts)."""
    d = m.data
    a = m.arrays
    tau = _effect_sd(m, c, i)  # (draw, Kz)
    k = a["k_idx"][rows]
    y = a["lik_y"][rows]
    if m.family.gaussian:
        mu, sd, w, flip = _gauss_predictive(m, c, i, rows)
        F = np.einsum("snj,n->j", special.ndtr((y - mu) / sd), w) / mu.shape[0]
        # a scale that falls as S rises: P(C_rep <= c) = P(S_rep >= S); report P(S_rep <= S)
        return np.where(flip, 1.0 - F, F)
    # binomial families: the CDF of a count over a grid of the new random effect
    S = tau.shape[0]
    sub = np.unique(np.linspace(0, S - 1, min(S, _PIT_DRAWS_BINOM)).round().astype(int))
    c_sub = {
        key: (v[sub] if isinstance(v, np.ndarray) and v.ndim and v.shape[0] == S else v)
        for key, v in c.items()
    }
    base, w = _arm_predictor(m, c_sub, i, _U_NODES_BINOM)
    zg = _Z_GRID
    wz = np.exp(-0.5 * zg * zg)  # the normal density, normalised below
    wz = wz / wz.sum()
    eta = (
        base[:, :, None, :] + tau[sub][:, None, None, :] * zg[None, None, :, None]
    )  # (draw, node, z, K)
    n = a["lik_n"][rows]
    p = d.family.success_probability(eta, k, a, rows)
    F, Fm = _binom_cdf(y, n, p), _binom_cdf(y - 1, n, p)
    F = np.einsum("sngj,n,g->j", F, w, wz) / len(sub)
    Fm = np.einsum("sngj,n,g->j", Fm, w, wz) / len(sub)
    return Fm + rng.uniform(size=rows.size) * (F - Fm)


def _binom_cdf(k, n, p):
    """P(Y <= k) for Y ~ Binomial(n, p), real-valued counts allowed.

    Regularised incomplete beta.
    """
    k, n = np.broadcast_arrays(np.asarray(k, float), np.asarray(n, float))
    inside = (k >= 0) & (k < n)
    a, b = np.where(inside, n - k, 1.0), np.where(inside, k + 1, 1.0)
    return np.where(k >= n, 1.0, np.where(k < 0, 0.0, special.betainc(a, b, 1 - p)))


# ============================================================================ the common target


def _log_normal_mix(y, se, m, tau, to_logit=None, nodes: int = _GH_NODES) -> np.ndarray:
    """log of the integral over x ~ Normal(m, tau) of Normal(y | h(x), se).

    ``to_logit`` None: x is itself logit S, h(x) = x (closed form); else
    ``to_logit(x)`` gives h(x) = logit S and its derivative (a family's
    ``logit_of_scale``: x a log cumulative hazard, a probit rate ...), and the
    integral is by Gauss-Hermite quadrature centred at the integrand's mode
    with its curvature's scale (Gauss-Newton), so that narrow integrands are
    resolved. Arrays broadcast.
    """
    from scipy import stats  # scipy.stats takes 0.5 s to import: only where used

    y, se, m, tau = np.broadcast_arrays(*(np.asarray(v, float) for v in (y, se, m, tau)))
    if to_logit is None:
        return stats.norm.logpdf(y, m, np.sqrt(se**2 + tau**2))
    h = to_logit

    x = m.copy()
    for _ in range(12):
        hx, dh = h(x)
        prec = 1 / tau**2 + dh**2 / se**2
        x = (m / tau**2 + dh * (y - hx + dh * x) / se**2) / prec
    _, dh = h(x)
    s = 1 / np.sqrt(1 / tau**2 + dh**2 / se**2)
    xi, wi = np.polynomial.hermite.hermgauss(nodes)
    xs = x[..., None] + math.sqrt(2) * s[..., None] * xi
    hx, _ = h(xs)
    g = stats.norm.logpdf(xs, m[..., None], tau[..., None]) + stats.norm.logpdf(
        y[..., None], hx, se[..., None]
    )
    return np.log(math.sqrt(2) * s) + special.logsumexp(g + np.log(wi) + xi**2, axis=-1)


def _new_arm_scale(m: Model, c: dict, i: int, t: float):
    """The scale variable of a new arm's true rate at t.

    mean (draw, node), tau (draw,), link, node weights.
    """
    d = m.data
    base, w = _arm_predictor(m, c, i, _U_NODES_GAUSS)
    tau = _effect_sd(m, c, i)
    shape = _arm_shape(m, c, i)[:, None] if "shape" in c else None
    mu, kk = d.family.new_arm_scale(base, shape, t, m.spec.model.t_ref, d.landmarks)
    return mu, tau[:, m.z_column(kk)], d.family.logit_of_scale, w


def _common_log_score(m: Model, values, i: int, t: float, y: float, se: float) -> float:
    """log E[Normal(y | logit p_new(t), se)] over the predictive of a new arm.

    The new arm has arm i's covariates.
    """
    c = m.canonical(values)
    mu, tau, link, w = _new_arm_scale(m, c, i, t)
    lp = _log_normal_mix(y, se, mu, tau[:, None], link)  # (draw, node)
    return float(special.logsumexp(lp + np.log(w)[None, :]) - math.log(lp.shape[0]))


def _target_spec() -> ModelSpec:
    """A log-logistic survival spec that keeps every arm.

    Its rate observations are the reported rates.
    """
    return load_spec("default").replace(
        **{
            "data.years": (1900, 2100),
            "data.exclude_placebo": False,
            "data.require_identifier": False,
            "model.covariates": (),
        }
    )


def _predicted_landmarks(v: Validation) -> set[float] | None:
    """Landmarks a spec predicts: any (None) for one curve per arm, else its fitted ones."""
    return None if v.data.family.any_landmark else {float(t) for t in v.data.landmarks}


def common_target(validations: Sequence[Validation], data=None) -> pd.DataFrame:
    """The reported rates every compared spec predicts, for the held-out arms every spec includes.

    Returns
    -------
    pandas.DataFrame
        One row per (arm, landmark): ``arm``, ``t``, ``rate``, ``y`` (logit
        rate, 0.5-corrected at 0 or 1 as the survival observations are), ``se``
        (logit scale, from the CI, else binomial with n), ``se_method``.
    """
    arms = None
    for v in validations:
        ids = list(v.arms.index)
        arms = ids if arms is None else [a for a in arms if a in set(ids)]
    lms = [set(x) for x in (_predicted_landmarks(v) for v in validations) if x is not None]
    landmarks = set.intersection(*lms) if lms else None
    tables = data if data is not None and not isinstance(data, ModelData) else None
    td = prepare_data(_target_spec(), read_tables(tables))
    o = td.obs
    sel = (
        (o["kind"] == "rate")
        & o["source"].astype(str).isin(_REPORTED)
        & o["arm_id"].isin(arms or [])
    )
    if landmarks is not None:
        sel &= o["t"].astype(float).isin(landmarks)
    out = o.loc[sel, ["arm_id", "t", "value", "lik_y", "se", "se_method"]].rename(
        columns={"arm_id": "arm", "value": "rate", "lik_y": "y"}
    )
    order = {a: k for k, a in enumerate(arms or [])}
    out = out.assign(_o=out["arm"].map(order)).sort_values(["_o", "t"]).drop(columns="_o")
    return out.reset_index(drop=True)


def _score_target(v: Validation, target: pd.DataFrame) -> pd.DataFrame:
    """Common log score and own-noise PIT of each target rate under one spec."""
    pos_of = {a: k for k, a in enumerate(v.data.arms.index)}
    fold_of = v.arms["fold"]
    fold_index = {f: k for k, f in enumerate(v.folds["fold"])}
    rows = []
    obs = v.obs[(v.obs["kind"] == "rate") & v.obs["reported"]]
    for _, r in target.iterrows():
        a, t = r["arm"], float(r["t"])
        values = v.draws[fold_index[fold_of[a]]]
        m = Model(v.spec, v.data.take([pos_of[a]]))
        score = _common_log_score(m, values, 0, t, float(r["y"]), float(r["se"]))
        own = obs[
            (obs["arm"] == a)
            & np.isclose(obs["t"].astype(float), t)
            & np.isclose(obs["value"], r["rate"])
        ]
        pit = float(own["pit"].iloc[0]) if len(own) else math.nan
        rows.append({"spec": v.name, "arm": a, "t": t, "log_score": score, "pit": pit})
    return pd.DataFrame(rows, columns=["spec", "arm", "t", "log_score", "pit"])


# ============================================================================ comparison


@dataclass(frozen=True)
class Comparison:
    """Several specs validated side by side (see the module docstring for what is compared).

    Attributes
    ----------
    validations : dict of str to Validation
    table : pandas.DataFrame
        One row per spec (index ``spec``): the summary of each
        :class:`Validation`, the paired differences of ``elpd_survival`` from
        the reference spec (survival specs, same observations), and the
        common target (``target_*`` columns).
    target : pandas.DataFrame
        The common target observations (:func:`common_target`).
    scores : pandas.DataFrame
        Per spec and target observation: ``log_score`` and ``pit``.
    reference : str
        The spec differences are taken from.
    """

    validations: dict
    table: pd.DataFrame
    target: pd.DataFrame
    scores: pd.DataFrame
    reference: str

    def preference(self) -> str:
        """One line: which spec validation prefers, and by how much (difference and its se)."""
        parts = []
        t = self.table
        surv = t[t["elpd_survival_diff"].notna()] if "elpd_survival_diff" in t else t.iloc[:0]
        if len(surv) > 1:
            parts.append(
                _prefer(
                    self._paired("elpd_survival", list(surv.index)),
                    "ELPD",
                    f"the survival observations (medians and reported rates, "
                    f"{_n(int(surv['arms'].iloc[0]), 'arm')} held out)",
                )
            )
        if len(t) > 1 and len(self.target) and (len(surv) < len(t)):
            lm = sorted(set(self.target["t"]))
            n_arms = self.target["arm"].nunique()
            parts.append(
                _prefer(
                    self._paired("target_log_score", list(t.index)),
                    "log score",
                    f"the reported {_months(lm)} rates ({_n(n_arms, 'arm')}, "
                    f"{_n(len(self.target), 'rate')})",
                )
            )
        if not parts:
            best = t.index[0]
            return f"validation of {best!r} only: nothing to compare"
        return "validation prefers " + "; ".join(parts)

    def _paired(self, column: str, specs: list[str]) -> pd.DataFrame:
        """Per-arm values of a column for the specs, on the arms they share."""
        if column == "target_log_score":
            per = self.scores.groupby(["spec", "arm"], sort=False)["log_score"].sum().unstack(0)
        else:
            per = pd.DataFrame(
                {s: self.validations[s].arms[column.replace("target_", "")] for s in specs}
            )
        return per[specs].dropna()

    def format(self) -> str:
        """The comparison as printable text (tables and the preference line)."""
        return _format(self)


def _n(k: int, word: str) -> str:
    return f"{k} {word}{'' if k == 1 else 's'}"


def _months(lm: Sequence[float]) -> str:
    v = [f"{x:g}" for x in lm]
    return (", ".join(v[:-1]) + " and " + v[-1] if len(v) > 1 else v[0]) + "-month"


def _prefer(per: pd.DataFrame, what: str, target: str) -> str:
    tot = per.sum()
    order = tot.sort_values(ascending=False).index
    best, second = order[0], order[1]
    d = (per[best] - per[second]).to_numpy(float)
    if d.size < 2:
        return (
            f"{best!r} on {target}: {what} {d.sum():+.1f} over {second!r} "
            "(one arm: no se, no preference)"
        )
    se = math.sqrt(d.size) * d.std(ddof=1)
    clear = "" if d.sum() > 2 * se else ", within 2 se: no clear preference"
    return f"{best!r} on {target}: {what} {d.sum():+.1f} (se {se:.1f}) over {second!r}{clear}"


def elpd_difference(a: Validation, b: Validation, column: str = "elpd") -> tuple[float, float, int]:
    """ELPD of ``a`` minus that of ``b`` on the arms both hold out, its se and the number of arms.

    The se is ``sqrt(n) sd_i(d_i)`` of the paired per-arm differences (as
    loo's ``compare``). Meaningful only when both predict the same
    observations on the same scales: the same survival observations with
    ``column='elpd_survival'``, or two specs of one family on one data set.
    """
    return _paired_diff(a.arms[column], b.arms[column])


def paired_difference(a: pd.Series, b: pd.Series) -> tuple[float, float, int]:
    """Sum of ``a - b`` over the index both hold, its se ``sqrt(n) sd(d)`` and n.

    As loo's compare does.
    """
    return _paired_diff(a, b)


def total_and_se(x: np.ndarray) -> tuple[float, float]:
    """Sum of per-arm terms and its standard error ``sqrt(n) sd`` (NaN when fewer than 2)."""
    return _total(np.asarray(x, float))


def _paired_diff(a: pd.Series, b: pd.Series) -> tuple[float, float, int]:
    both = pd.concat([a, b], axis=1).dropna()
    d = (both.iloc[:, 0] - both.iloc[:, 1]).to_numpy(float)
    if d.size == 0:
        return math.nan, math.nan, 0
    return (
        float(d.sum()),
        float(math.sqrt(d.size) * d.std(ddof=1)) if d.size > 1 else math.nan,
        int(d.size),
    )


def _same_survival_obs(vs: Sequence[Validation]) -> bool:
    def key(v):
        return sorted(
            zip(
                v.obs["arm"],
                v.obs["kind"],
                np.round(v.obs["t"].astype(float), 9),
                np.round(v.obs["value"].astype(float), 9),
            )
        )

    first = key(vs[0])
    return all(key(v) == first for v in vs[1:])


def compare(
    specs: Iterable[ModelSpec | str] = DEFAULT_SPECS,
    data=None,
    *,
    scheme: str = "loto",
    year: int = 2018,
    reference: str | None = None,
    engine: str | None = None,
    draws: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Comparison:
    """Validate several specs on the same data and compare them on common targets.

    Parameters
    ----------
    specs : iterable of ModelSpec or str
        Default :data:`DEFAULT_SPECS`.
    data : Trials, DataFrame, path or None
        The input tables (None: the bundled data); each spec prepares its own inputs.
    scheme : {'loto', 'temporal', 'loro'}
    year : int
        The temporal cut (``scheme='temporal'``).
    reference : str, optional
        The spec differences are taken from (default: the first).
    engine, draws, progress
        As in :func:`loto`.

    Returns
    -------
    Comparison
    """
    if scheme not in ("loto", "temporal", "loro"):
        raise ValidationError(f"scheme must be 'loto', 'temporal' or 'loro', got {scheme!r}")
    if isinstance(data, ModelData):
        raise ValidationError(
            "compare needs the input tables (each spec prepares its own data and the common "
            "target comes from them); with prepared data call loto or temporal per spec and "
            "elpd_difference"
        )
    specs = [_spec(s) for s in specs]
    if not specs:
        raise ValidationError("compare needs at least one spec")
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValidationError(f"specs must have distinct names, got {dup[0]!r} twice")
    reference = names[0] if reference is None else reference
    if reference not in names:
        raise ValidationError(
            f"reference must be one of the compared specs {names}, got {reference!r}"
        )
    vals = {}
    for s in specs:
        run = {
            "loto": loto,
            "loro": loro,
            "temporal": lambda sp, dd, **kw: temporal(sp, dd, year, **kw),
        }[scheme]
        vals[s.name] = run(s, data, engine=engine, draws=draws, progress=progress)
    target = common_target(list(vals.values()), data)
    scores = pd.concat([_score_target(v, target) for v in vals.values()], ignore_index=True)
    table = pd.DataFrame([v.summary() for v in vals.values()]).set_index("spec")
    surv = [v for v in vals.values() if "elpd_survival" in v.arms]
    same = len(surv) > 1 and _same_survival_obs(surv)
    # survival-scale differences from the reference, or from the first survival spec when it is not
    # one
    sref = (
        vals[reference] if "elpd_survival" in vals[reference].arms else (surv[0] if surv else None)
    )
    for name, v in vals.items():
        if "elpd_survival" in v.arms and sref is not None and (same or v is sref):
            d, se, _ = _paired_diff(v.arms["elpd_survival"], sref.arms["elpd_survival"])
        else:
            d, se = math.nan, math.nan
        table.loc[name, "elpd_survival_diff"], table.loc[name, "elpd_survival_diff_se"] = d, se
        sc = scores[scores["spec"] == name]
        per_arm = sc.groupby("arm", sort=False)["log_score"].sum()
        ref_arm = scores[scores["spec"] == reference].groupby("arm", sort=False)["log_score"].sum()
        table.loc[name, "target_rates"] = len(sc)
        table.loc[name, "target_arms"] = sc["arm"].nunique()
        tl, tse = _total(per_arm.to_numpy(float))
        table.loc[name, "target_log_score"], table.loc[name, "target_log_score_se"] = tl, tse
        d, se, _ = _paired_diff(per_arm, ref_arm)
        table.loc[name, "target_diff"], table.loc[name, "target_diff_se"] = d, se
        pit = sc["pit"].dropna().to_numpy(float)
        for lv in (0.5, 0.9):
            inside = int((np.abs(pit - 0.5) <= lv / 2).sum())
            lo, hi = coverage_interval(inside, pit.size)
            key = f"target_cov{100 * lv:g}"
            table.loc[name, key] = inside / pit.size if pit.size else math.nan
            table.loc[name, key + "_lo"], table.loc[name, key + "_hi"] = lo, hi
    table.attrs["survival_reference"] = sref.name if sref is not None else ""
    if len(surv) > 1 and not same:
        table.attrs["note"] = (
            "survival specs do not share their observations: no survival-scale ELPD difference"
        )
    return Comparison(
        validations=vals, table=table, target=target, scores=scores, reference=reference
    )


# ============================================================================ text


def _ci(v, lo, hi) -> str:
    return "" if math.isnan(v) else f"{v:.2f} ({lo:.2f}-{hi:.2f})"


def _pm(v, se) -> str:
    if math.isnan(v):
        return ""
    return f"{v:+.1f} (n/a)" if math.isnan(se) else f"{v:+.1f} ({se:.1f})"


def _refits(r) -> str:
    """How a spec's folds were fitted, in words (the comparison table's time line)."""
    n, rw = int(r["fits"]), int(r.get("reweighted", 0) or 0)
    if not rw:
        return _n(n, "fit")
    return f"{n} folds: {rw} reweighted from one fit, {n - rw} refitted"


def _format(cmp: Comparison) -> str:
    t = cmp.table
    v0 = next(iter(cmp.validations.values()))
    how = {
        "loto": "leave-one-trial-out",
        "loro": "leave-one-regimen-out (all arms of a regimen held out: a new regimen)",
    }.get(v0.scheme, f"temporal (fit <= {v0.year}, predict later arms)")
    lines = [
        (
            f"lmsbayes validate - {how} predictive checks; each held-out arm predicted as a new "
            "trial of its "
            "size at its covariates"
        )
    ]
    own = pd.DataFrame(
        {
            "spec": t.index,
            "model": t["likelihood"],
            "arms": t["arms"].astype(int),
            "obs (derived)": [f"{int(a)} ({int(b)})" for a, b in zip(t["obs"], t["obs_derived"])],
            **{
                f"cov {lv * 100:g}%": [
                    _ci(r[f"cov{lv * 100:g}"], r[f"cov{lv * 100:g}_lo"], r[f"cov{lv * 100:g}_hi"])
                    for _, r in t.iterrows()
                ]
                for lv in LEVELS
            },
            "PIT KS p": [f"{p:.2f}" for p in t["pit_ks_p"]],
            "ELPD own (se)": [f"{a:.1f} ({b:.1f})" for a, b in zip(t["elpd"], t["elpd_se"])],
        }
    )
    lines += [
        "",
        (
            "1. Each spec on its own observations (coverage of central predictive intervals, "
            "Clopper-Pearson "
            "95% CI; ELPD on the spec's own scales: not comparable across families)"
        ),
        own.to_string(index=False),
    ]
    surv = t[t["elpd_survival_diff"].notna()] if "elpd_survival_diff" in t else t.iloc[:0]
    if len(surv) > 1:
        a = pd.DataFrame(
            {
                "spec": surv.index,
                "ELPD (se)": [
                    f"{x:.1f} ({s:.1f})"
                    for x, s in zip(surv["elpd_survival"], surv["elpd_survival_se"])
                ],
                f"diff vs {t.attrs.get('survival_reference', cmp.reference)!r} (se)": [
                    _pm(x, s)
                    for x, s in zip(surv["elpd_survival_diff"], surv["elpd_survival_diff_se"])
                ],
            }
        )
        lines += [
            "",
            (
                "2. Survival specs on the same observations (medians in log months, rates on the "
                "logit "
                "scale: densities of rates on another scale carry its Jacobian to logit S, e.g. "
                "log(-log S) for Weibull, probit S for log-normal); paired differences "
                "per arm"
            ),
            a.to_string(index=False),
        ]
    if len(cmp.target):
        lm = sorted(set(cmp.target["t"]))
        b = pd.DataFrame(
            {
                "spec": t.index,
                "rates": t["target_rates"].astype(int),
                "cov 50%": [
                    _ci(r.target_cov50, r.target_cov50_lo, r.target_cov50_hi)
                    for r in t.itertuples()
                ],
                "cov 90%": [
                    _ci(r.target_cov90, r.target_cov90_lo, r.target_cov90_hi)
                    for r in t.itertuples()
                ],
                "log score (se)": [
                    _pm(x, s).lstrip("+")
                    for x, s in zip(t["target_log_score"], t["target_log_score_se"])
                ],
                f"diff vs {cmp.reference!r} (se)": [
                    _pm(x, s) for x, s in zip(t["target_diff"], t["target_diff_se"])
                ],
            }
        )
        lines += [
            "",
            (
                f"3. Common target: the reported (not derived) {_months(lm)} rates of "
                f"{_n(cmp.target['arm'].nunique(), 'held-out arm')} every spec includes; coverage "
                "under each "
                "model's own predictive; log score = log E[Normal(logit r | logit p_new, se_r)], "
                "summed per arm"
            ),
            b.to_string(index=False),
        ]
    fits = ", ".join(
        f"{n} {r['seconds']:.1f} s ({_refits(r)}"
        + (")" if math.isnan(r["max_khat"]) else f", max k-hat {r['max_khat']:.2f})")
        for n, r in t.iterrows()
    )
    lines += ["", f"time: {fits}"]
    probs = []
    for n, v in cmp.validations.items():
        bad = v.folds[v.folds["problems"] != ""]
        if len(bad):
            probs.append(
                f"{n}: {len(bad)} of {len(v.folds)} refits, e.g. {bad['fold'].iloc[0]}: "
                f"{bad['problems'].iloc[0]}"
            )
    if probs:
        lines.append("inference problems (Validation.folds lists them all): " + " | ".join(probs))
    if t.attrs.get("note"):
        lines.append("note: " + t.attrs["note"])
    lines += ["", cmp.preference()]
    return "\n".join(lines)
