"""Simulation-based calibration (SBC) of the engines, at scale on dask.distributed.

SBC (Talts et al. 2018, arXiv:1804.06788; Modrák et al. 2023, Bayesian
Analysis) checks an inference engine on data sets drawn from the model
itself. For each simulation:

1. draw the global parameters from their priors, each arm's random effect
   z ~ Normal(0, 1) and each latent uterine fraction u ~ Beta(1, 1);
2. draw a data set from the likelihood on the design of the given data:
   the same arms, covariates and observation structure (binomial sizes, standard
   errors, a survival curve's correlation), new observed values;
3. fit it with the engine (lmsbayes.fit on the new observations; the data are
   not prepared again);
4. rank each true value among L posterior draws.

If the engine's posteriors are right, every rank is uniform on 0..L. Ranks are
computed from L draws thinned evenly from the posterior: for NUTS, from all
chains (at a spacing of draws/L, far beyond the autocorrelation time at the
ESS the diagnostics ask for); for the exact engine, from its equal-weight
draws, resampled from the importance sample (PSIS weights), which are valid
given enough importance ESS (recorded per simulation, with k-hat).

The tests per quantity are a chi-square test on binned ranks and a
Kolmogorov-Smirnov test on the randomised PIT ``(rank + U) / (L + 1)``
(exactly uniform under calibration), with Holm's correction over all of them.
The coverage of central 50/90/95% intervals (quantiles of all posterior
draws) comes with Clopper-Pearson intervals. The quantities are the global
parameters (alpha, each beta, each tau, the shape) and the pooled rate at
each landmark for the design's mean covariate row (a derived quantity).

The simulations run through :func:`map_seeds`, the package's generic way to
map a task over seeds: on a dask LocalCluster by default, an existing
scheduler by address, or sequentially. Each simulation has its own seed
(``numpy.random.SeedSequence(seed).spawn``), so results do not depend on the
number of workers or the batching. The same function serves any simulation
study, e.g. design calibration over simulated historical data.

Example
-------
>>> from lmsbayes.calibrate import sbc, sbc_summary
>>> ds = sbc("default", n_sims=1000)        # the spec's engine, on a LocalCluster of 2 workers
>>> sbc_summary(ds)                                         # p-values, coverages
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from lmsbayes.data import read_tables
from lmsbayes.engines import choose_engine, get_engine
from lmsbayes.engines.base import EngineResult, FitSettings
from lmsbayes.errors import OptionError
from lmsbayes.fitfile import spec_to_toml
from lmsbayes.model.definition import Model
from lmsbayes.model.derived import posterior_predictive
from lmsbayes.model.families import NUMPY_OPS
from lmsbayes.model.inputs import ModelData
from lmsbayes.model.prepare import prepare_data
from lmsbayes.spec import ModelSpec, load_spec
from lmsbayes.version import __version__

__all__ = [
    "COVERAGE_LEVELS",
    "Mapped",
    "SBCSetup",
    "sbc",
    "sbc_summary",
    "save_sbc",
    "sbc_one",
    "replay",
    "check_support",
    "prior_draw",
    "simulate",
    "with_observations",
    "quantity_labels",
    "quantities",
    "ranks_from_draws",
    "randomized_pit",
    "uniformity_tests",
    "holm",
    "ecdf_bands",
    "spawn_seeds",
    "map_seeds",
]

#: Central interval probabilities whose coverage is reported.
COVERAGE_LEVELS = (0.5, 0.9, 0.95)
_DASK_MISSING = (
    "dask.distributed is not installed: install the extra with "
    "`pip install 'lmsbayes[distributed]'`"
)


# ============================================================================ quantities


def _coord_label(v) -> str:
    return f"{v:g} mo" if isinstance(v, float) else str(v)


def quantity_labels(model: Model) -> tuple[list[str], list[str]]:
    """Names of the calibrated quantities and their kind ('parameter' or 'derived').

    Parameters are named as in :meth:`lmsbayes.fit.Fit.summary` (``beta[line]``,
    ``tau[2L+]``, ``shape[all]``); the derived quantities are the pooled rate
    at each landmark, ``S(6 mo) pooled`` (``p pooled`` without landmarks).
    """
    coords = model.coords
    names, kinds = [], []
    for p in model.params:
        for idx in np.ndindex(*p.shape) if p.shape else [()]:
            label = ", ".join(_coord_label(coords[d][i]) for d, i in zip(p.dims, idx))
            names.append(f"{p.name}[{label}]" if label else p.name)
            kinds.append("parameter")
    for t in _derived_landmarks(model):
        names.append(f"S({t:g} mo) pooled" if t is not None else "p pooled")
        kinds.append("derived")
    return names, kinds


def _derived_landmarks(model: Model) -> list:
    d = model.data
    return [float(t) for t in d.family.reported_landmarks(model.spec.landmarks, d.landmarks)] or [
        None
    ]


def quantities(model: Model, values: dict[str, np.ndarray]) -> np.ndarray:
    """The calibrated quantities of parameter values: (..., quantity).

    ``values`` holds each parameter block with any leading batch dims (e.g.
    chain, draw). The derived quantities are the pooled rates at the design's
    mean covariate row (latent fractions at the centre), with the shape of
    the most common shape group: the family's rates (a survival curve's at
    any landmark, the inverse link at each fitted landmark otherwise).
    """
    blocks = []
    for p in model.params:
        x = np.asarray(values[p.name], float)
        batch = x.shape[: x.ndim - len(p.shape)]
        blocks.append(x.reshape(batch + (p.size,)))
    d = model.data
    c = model.canonical({k: np.asarray(values[k], float) for k in (p.name for p in model.params)})
    x = d.X.mean(axis=0, keepdims=True) if d.X.size else np.zeros((1, 0))
    eta = model.base_predictor(NUMPY_OPS, c, x)[..., 0, :]  # (..., K)
    g = int(np.bincount(d.shape_idx).argmax()) if len(d.shape_idx) else 0
    shape = c["shape"][..., g] if "shape" in c else None
    rate = d.family.rates(
        eta, _derived_landmarks(model), d.landmarks, shape, model.spec.model.t_ref
    )
    blocks.append(np.broadcast_to(rate, eta.shape[:-1] + rate.shape[-1:]))
    return np.concatenate(blocks, axis=-1)


# ============================================================================ simulation


def prior_draw(model: Model, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One draw of every parameter and latent quantity from the prior.

    Returns
    -------
    dict
        The global parameter blocks (their shapes), ``z`` (arm, Kz) ~ Normal(0, 1)
        and ``uterine_latent`` (latent arm) ~ Beta(1, 1). An ordered block
        (the joint-landmarks intercepts) is the sorted iid draw: the prior
        restricted to the ordered region, as PyMC's ordered transform defines it.
    """
    out = {}
    for p in model.params:
        x = np.asarray(p.prior.draw(p.shape, rng), float).reshape(p.shape)
        out[p.name] = np.sort(x) if p.transform == "ordered" else x
    out["z"] = rng.standard_normal((model.data.n_arms, model.Kz))
    out["uterine_latent"] = rng.beta(1.0, 1.0, model.data.latent.size)
    return out


def simulate(model: Model, values: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Observations (on the likelihood's scale) drawn from the likelihood at ``values``.

    The design is the model's data: binomial sizes ``lik_n`` (for the joint
    family the conditional sizes, ancillary as the likelihood treats them),
    standard errors, and the survival observations' correlation. The draws
    are checked to lie in the likelihood's support.

    Raises
    ------
    ValueError
        A simulated observation is outside the support (a count outside
        [0, n] or a non-finite value), naming the observation and its arm.
    """
    d = model.data
    c = model.canonical({p.name: np.asarray(values[p.name], float) for p in model.params})
    du = None
    if d.latent.size:
        du = np.zeros(d.n_arms)
        du[d.latent] = np.asarray(values["uterine_latent"], float) - d.uterine_centre
    z = np.asarray(values["z"], float).reshape(d.n_arms, model.Kz)
    eta = model.base_predictor(NUMPY_OPS, c, d.X, d.Xu, du) + model.effect_scale(c) * z
    with np.errstate(over="ignore"):
        y = np.asarray(posterior_predictive(model, eta, c, rng), float)
    check_support(model, y)
    return y


def check_support(model: Model, y: np.ndarray) -> None:
    """Raise ValueError naming the first simulated observation outside the likelihood's support."""
    a, d = model.arrays, model.data
    arm = lambda i: d.arms.index[int(a["arm_idx"][i])]  # noqa: E731
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        i = int(bad[0])
        raise OptionError(f"simulated observation {i} (arm {arm(i)!r}) is not finite: {y[i]!r}")
    d.family.check_simulated(y, a, arm)


def with_observations(data: ModelData, y: np.ndarray, label: str = "simulated") -> ModelData:
    """The same design with new observed values ``y`` (likelihood scale), without preparing again.

    Replaces the likelihood columns that :meth:`lmsbayes.model.definition.Model.data_arrays`
    reads (``lik_y`` and, for binomial families, ``log_choose``) and the
    descriptive columns derived from them (counts, rates, the survival
    observation's value), and sets ``data_sha256`` to a hash of ``y``
    prefixed with ``label``. Sizes, standard errors and correlations are kept.
    """
    import hashlib

    y = np.asarray(y, float)
    obs = data.obs.copy()
    if len(y) != len(obs):
        raise OptionError(f"{len(y)} simulated values for {len(obs)} observations")
    obs["lik_y"] = y
    data.family.with_observations(obs, y)
    sha = hashlib.sha256(y.tobytes()).hexdigest()
    return replace(data, obs=obs, data_sha256=f"{label}:{sha}")


# ============================================================================ ranks and tests


def ranks_from_draws(
    truth: np.ndarray, draws: np.ndarray, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Rank of each true value among draws: the number of draws below it (ties split at random).

    Parameters
    ----------
    truth : ndarray (..., quantity)
    draws : ndarray (..., sample, quantity)
    rng : numpy Generator, optional
        Breaks ties (a draw equal to the truth); without it ties count half-down.

    Returns
    -------
    ndarray of int (..., quantity), values 0..L with L the number of draws.
    """
    truth = np.asarray(truth, float)[..., None, :]
    below = (draws < truth).sum(axis=-2)
    ties = (draws == truth).sum(axis=-2)
    if np.any(ties):
        extra = rng.binomial(ties, 0.5) if rng is not None else ties // 2
        below = below + extra
    return below.astype(np.int64)


def randomized_pit(rank: np.ndarray, n_ranks: int, rng: np.random.Generator) -> np.ndarray:
    """``(rank + U) / (L + 1)`` with U ~ Uniform(0, 1).

    Exactly Uniform(0, 1) when ranks are uniform on 0..L.
    """
    return (np.asarray(rank, float) + rng.uniform(size=np.shape(rank))) / (n_ranks + 1)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979); NaNs are kept and not counted."""
    p = np.asarray(p, float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if not m:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adj, 1.0)
    return out


def rank_bins(n_ranks: int, n: int, min_expected: float = 10.0, max_bins: int = 20) -> int:
    """Bins for the chi-square test.

    A divisor of L + 1 (equal bins) with >= min_expected per bin.
    """
    divisors = [b for b in range(1, n_ranks + 2) if (n_ranks + 1) % b == 0]
    ok = [b for b in divisors if b <= max_bins and n / b >= min_expected]
    return max(ok) if ok else 1


def uniformity_tests(
    rank: np.ndarray, u: np.ndarray, n_ranks: int, bins: int | None = None
) -> pd.DataFrame:
    """Chi-square (binned ranks) and Kolmogorov-Smirnov (randomised PIT) tests, per column.

    Parameters
    ----------
    rank : ndarray (simulation, quantity)
        Ranks 0..L; NaN rows (failed fits) are left out of each column.
    u : ndarray (simulation, quantity)
        Randomised PIT values.
    n_ranks : int
        L, the number of draws ranked against.
    bins : int, optional
        Chi-square bins (a divisor of L + 1); by default the most bins, up to
        20, with at least 10 expected simulations each.

    Returns
    -------
    pandas.DataFrame
        One row per column: ``n``, ``bins``, ``chi2``, ``p_chi2``, ``ks``, ``p_ks``.
    """
    rank, u = np.atleast_2d(rank), np.atleast_2d(u)
    rows = []
    for j in range(rank.shape[1]):
        r = rank[:, j][np.isfinite(rank[:, j])].astype(np.int64)
        uj = u[:, j][np.isfinite(u[:, j])]
        n = r.size
        b = bins or rank_bins(n_ranks, n)
        if (n_ranks + 1) % b:
            raise OptionError(f"bins must divide L + 1 = {n_ranks + 1}, got {b}")
        row = {
            "n": n,
            "bins": b,
            "chi2": math.nan,
            "p_chi2": math.nan,
            "ks": math.nan,
            "p_ks": math.nan,
        }
        if n >= 2 and b >= 2:  # too few simulations for 2 bins of 10: no chi-square test
            chi = stats.chisquare(np.bincount(r * b // (n_ranks + 1), minlength=b))
            row.update(chi2=float(chi.statistic), p_chi2=float(chi.pvalue))
        if uj.size >= 2:
            ks = stats.kstest(uj, "uniform")
            row.update(ks=float(ks.statistic), p_ks=float(ks.pvalue))
        rows.append(row)
    return pd.DataFrame(rows)


def ecdf_bands(
    n: int, z: np.ndarray, prob: float = 0.95, n_sim: int = 4000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Simultaneous ``prob`` bands for the ECDF of n Uniform(0, 1) values at points z.

    The simulation method of Säilynoja, Bürkner and Vehtari (2022, Statistics
    and Computing 32:32): find the pointwise level gamma at which ``prob`` of
    simulated uniform samples stay inside the pointwise binomial intervals at
    every z, then return those intervals.

    Returns
    -------
    lower, upper : ndarray
        Band for the ECDF (not the difference) at each z.
    """
    z = np.asarray(z, float)
    rng = np.random.default_rng(seed)
    u = rng.uniform(size=(n_sim, n))
    # counts[m, k] = #(u[m] <= z[k]), from the interval each value falls in (memory n_sim x n, not x
    # len(z))
    K = z.size
    cell = np.searchsorted(z, u, side="left") + (K + 1) * np.arange(n_sim)[:, None]
    counts = np.cumsum(
        np.bincount(cell.ravel(), minlength=n_sim * (K + 1)).reshape(n_sim, K + 1), axis=1
    )[:, :K]
    below = stats.binom.cdf(counts, n, z)
    above = stats.binom.sf(counts - 1, n, z)
    tail = 2 * np.minimum(below, above)
    gamma = float(np.quantile(tail.min(axis=1), 1 - prob))
    lo = stats.binom.ppf(gamma / 2, n, z) / n
    hi = stats.binom.isf(gamma / 2, n, z) / n
    return lo, hi


# ============================================================================ one simulation


@dataclass(frozen=True)
class SBCSetup:
    """What every simulation needs (shipped once to each worker)."""

    spec: Any
    data: ModelData
    engine: str
    n_ranks: int = 99
    levels: tuple[float, ...] = COVERAGE_LEVELS

    @functools.cached_property
    def model(self) -> Model:
        """The model definition of the study design."""
        return Model(self.spec, self.data)


def _draw(model: Model, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], int]:
    """The truth of one simulation and its fit's seed: the first draws of its stream."""
    values = prior_draw(model, rng)
    return values, int(rng.integers(2**31 - 1))


def replay(spec, data, seed: int, index: int) -> tuple[dict[str, np.ndarray], ModelData, int]:
    """The simulated data set ``index`` of an :func:`sbc` study, to look at one simulation again.

    Parameters
    ----------
    spec : ModelSpec
    data : ModelData
        The prepared data of the study (its design).
    seed : int
        The study's seed (``ds.attrs["seed"]``).
    index : int
        The simulation.

    Returns
    -------
    values : dict
        The true parameters and latent quantities.
    data : ModelData
        The simulated data set, as the study fitted it.
    fit_seed : int
        The seed its fit used: ``lmsbayes.fit(spec, data, engine=..., seed=fit_seed)``
        gives the study's posterior again.
    """
    model = Model(spec, data)
    ss = np.random.SeedSequence(int(seed), spawn_key=(int(index),))  # = spawn_seeds(seed, n)[index]
    rng = np.random.default_rng(ss)
    values, fit_seed = _draw(model, rng)
    y = simulate(model, values, rng)
    return (
        values,
        with_observations(data, y, label=f"sbc seed {ss.entropy} {ss.spawn_key}"),
        fit_seed,
    )


def sbc_one(setup: SBCSetup, seed: np.random.SeedSequence) -> dict[str, Any]:
    """One simulation: draw from the prior, simulate data, fit, rank.

    Never raises for a failed fit: the error is recorded (``error``) with NaN
    ranks, so that the summary reports it.

    Returns
    -------
    dict
        ``truth``, ``rank``, ``u``, ``draws`` (L, quantity), ``mean``, ``sd``,
        ``lower``/``upper`` (level, quantity), ``khat``, ``is_ess``,
        ``divergences``, ``max_rhat``, ``min_ess_bulk``, ``ok``, ``problems``,
        ``error``, ``fit_seconds`` (wall) and ``fit_cpu_seconds`` (CPU time of the process:
        on a shared machine the steadier measure).
    """
    model = setup.model
    rng = np.random.default_rng(seed)
    truth_vals, fit_seed = _draw(model, rng)
    truth = quantities(model, truth_vals)
    Q, L = truth.size, setup.n_ranks
    out = {
        "truth": truth,
        "rank": np.full(Q, np.nan),
        "u": np.full(Q, np.nan),
        "draws": np.full((L, Q), np.nan),
        "mean": np.full(Q, np.nan),
        "sd": np.full(Q, np.nan),
        "lower": np.full((len(setup.levels), Q), np.nan),
        "upper": np.full((len(setup.levels), Q), np.nan),
        "khat": math.nan,
        "is_ess": math.nan,
        "divergences": -1,
        "max_rhat": math.nan,
        "min_ess_bulk": math.nan,
        "ok": False,
        "problems": "",
        "error": "",
        "fit_seconds": math.nan,
        "fit_cpu_seconds": math.nan,
    }
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        y = simulate(model, truth_vals, rng)
        data = with_observations(setup.data, y, label=f"sbc seed {seed.entropy} {seed.spawn_key}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # diagnostics are recorded per simulation
            result = _fit(setup, data, fit_seed)
    except Exception as exc:  # noqa: BLE001 - recorded per simulation and reported, never dropped
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["fit_seconds"], out["fit_cpu_seconds"] = (
            time.perf_counter() - t0,
            time.process_time() - c0,
        )
        return out
    out["fit_seconds"], out["fit_cpu_seconds"] = time.perf_counter() - t0, time.process_time() - c0
    vals = result.values(model)
    draws = quantities(model, vals).reshape(-1, Q)
    S = draws.shape[0]
    thin = draws[np.round(np.linspace(0, S - 1, L)).astype(np.int64)]
    rank = ranks_from_draws(truth, thin, rng)
    probs = np.concatenate(
        [[(1 - c) / 2 for c in setup.levels], [(1 + c) / 2 for c in setup.levels]]
    )
    q = np.quantile(draws, probs, axis=0)
    k = len(setup.levels)
    diag = result.diagnostics
    out.update(
        rank=rank.astype(float),
        u=randomized_pit(rank, L, rng),
        draws=thin,
        mean=draws.mean(0),
        sd=draws.std(0, ddof=1),
        lower=q[:k],
        upper=q[k:],
        khat=float(diag.khat),
        is_ess=float(diag.is_ess),
        divergences=int(diag.divergences),
        max_rhat=float(diag.max_rhat),
        min_ess_bulk=float(diag.min_ess_bulk),
        ok=bool(diag.ok),
        problems="; ".join(diag.problems),
    )
    return out


def _fit(setup: SBCSetup, data: ModelData, seed: int) -> EngineResult:
    """The engine's fit of one simulated data set (the globals' draws are all SBC ranks).

    No arm-level draws: every calibrated quantity is a function of the globals, and drawing
    the arms' effects cost per_landmark 17 of its 30 s per fit (binomial rejection sampling);
    the globals' draws come first from the engine's generator, so they are the same either way.
    """
    model = Model(setup.spec, data)
    return get_engine(setup.engine).fit(model, FitSettings(seed=seed, latent=False), _silent)


def _silent(message: str) -> None:
    """Simulations report through :func:`map_seeds`' progress, not their own."""


# ============================================================================ mapping over seeds


def spawn_seeds(seed: int, n: int) -> list[np.random.SeedSequence]:
    """n independent child seeds of ``seed``: simulation i always gets the same one."""
    return np.random.SeedSequence(int(seed)).spawn(int(n))


@dataclass(frozen=True)
class Mapped:
    """Results of :func:`map_seeds`, in the order of the seeds, and how they were computed."""

    results: list
    scheduler: str
    workers: int
    tasks: int
    seconds: float
    note: str = ""


def _run_batch(task: Callable, seeds: Sequence) -> list:
    return [task(s) for s in seeds]


def _dask():
    try:
        import distributed
    except ImportError:
        return None
    return distributed


@contextlib.contextmanager
def _client(scheduler, workers: int | None):
    """(client or None, description, note) for a scheduler option; closes what it opened."""
    distributed = _dask()
    if scheduler == "sequential":
        yield None, "sequential (this process)", ""
        return
    if distributed is None:
        if scheduler is None:
            yield (
                None,
                "sequential (this process)",
                _DASK_MISSING + "; the simulations ran sequentially in this process",
            )
            return
        raise OptionError(f"scheduler {scheduler!r}: {_DASK_MISSING}")
    if isinstance(scheduler, distributed.Client):
        yield scheduler, f"dask client {scheduler.scheduler.address}", ""
        return
    if scheduler in (None, "local"):
        import logging

        n = int(workers or min(2, os.cpu_count() or 1))
        try:
            # the scheduler serves HTTP (health, metrics) even without a dashboard: a free port,
            # not 8787, which another cluster on a shared machine may hold
            cluster = distributed.LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                silence_logs=logging.ERROR,
            )
        except RuntimeError as exc:
            raise RuntimeError(
                f"could not start a dask LocalCluster of {n} worker processes ({exc}). Worker "
                "processes import the main module again: a script that runs simulations must keep "
                "its code under `if __name__ == \"__main__\":`; or pass scheduler='sequential'"
            ) from exc
        try:
            client = distributed.Client(cluster)
            try:
                yield client, f"dask LocalCluster ({n} worker processes)", ""
            finally:
                client.close()
        finally:
            cluster.close()
        return
    if not isinstance(scheduler, str):
        raise OptionError(
            f"scheduler must be None, 'local', 'sequential', an address or a dask Client, got "
            f"{scheduler!r}"
        )
    try:
        client = distributed.Client(scheduler, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise OptionError(f"cannot connect to the dask scheduler at {scheduler!r}: {exc}") from None
    try:
        yield client, f"dask scheduler {scheduler}", ""
    finally:
        client.close()


def map_seeds(
    task: Callable[[np.random.SeedSequence], Any],
    seeds: Sequence[np.random.SeedSequence],
    *,
    scheduler=None,
    workers: int | None = None,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Mapped:
    """Map a task over seeds on a dask cluster, in batches, and return the results in seed order.

    Parameters
    ----------
    task : callable
        ``task(seed) -> result``; picklable (a module-level function or a
        ``functools.partial`` of one), as are its results. It is sent to each
        worker once.
    seeds : sequence of numpy.random.SeedSequence
        One per simulation (:func:`spawn_seeds`): the results do not depend on
        the workers or the batching.
    scheduler : None, 'local', 'sequential', str or distributed.Client
        None or 'local': a LocalCluster of ``workers`` processes (default 2),
        closed afterwards (None without dask installed: sequential, with a
        note); 'sequential': in this process; an address such as
        ``tcp://host:8786``: an existing scheduler whose workers have
        lmsbayes installed; a Client: used as it is.
    workers : int, optional
        Worker processes of the LocalCluster.
    batch_size : int, optional
        Seeds per task; by default about 10 tasks per worker, so that the
        per-task overhead is small and the load stays balanced.
    progress : callable, optional
        ``progress(done, total)`` after each batch.

    Returns
    -------
    Mapped
    """
    seeds = list(seeds)
    t0 = time.perf_counter()
    with _client(scheduler, workers) as (client, where, note):
        n_workers = len(client.scheduler_info()["workers"]) if client is not None else 1
        size = int(batch_size or max(1, math.ceil(len(seeds) / (10 * max(n_workers, 1)))))
        if size < 1:
            raise OptionError(f"batch_size must be >= 1, got {batch_size}")
        batches = [seeds[i : i + size] for i in range(0, len(seeds), size)]
        results: list = [None] * len(batches)
        done = 0
        if client is None:
            for i, b in enumerate(batches):
                results[i] = _run_batch(task, b)
                done += len(b)
                if progress:
                    progress(done, len(seeds))
        else:
            from distributed import as_completed

            remote = client.scatter(task, broadcast=True, hash=False)
            futures = [client.submit(_run_batch, remote, b, pure=False) for b in batches]
            index = {f.key: i for i, f in enumerate(futures)}
            for fut in as_completed(futures):
                i = index[fut.key]
                results[i] = fut.result()
                done += len(batches[i])
                if progress:
                    progress(done, len(seeds))
    flat = [r for batch in results for r in batch]
    return Mapped(
        results=flat,
        scheduler=where,
        workers=n_workers,
        tasks=len(batches),
        seconds=time.perf_counter() - t0,
        note=note,
    )


# ============================================================================ the study


def sbc(
    spec="default",
    data=None,
    *,
    n_sims: int = 1000,
    engine: str | None = None,
    seed: int | None = None,
    n_ranks: int = 99,
    scheduler=None,
    workers: int | None = None,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> xr.Dataset:
    """Simulation-based calibration of an engine on the design of a data set.

    Parameters
    ----------
    spec : ModelSpec, str or path
        The model (default: the bundled default analysis).
    data : Trials, DataFrame, ModelData, path or None
        Whose design (arms, covariates, observation structure) the simulated
        data sets share; None for the bundled data.
    n_sims : int
        Simulated data sets.
    engine : str, optional
        The engine to calibrate, by name (:data:`lmsbayes.engines.ENGINE_NAMES`;
        default: the engine the spec chooses).
    seed : int, optional
        Seed of the study (default: the spec's sampler seed); simulation i uses
        child i of ``SeedSequence(seed)``.
    n_ranks : int
        L, the posterior draws each truth is ranked against (L + 1 rank values).
    scheduler, workers, batch_size, progress
        See :func:`map_seeds`.

    Returns
    -------
    xarray.Dataset
        Dims ``simulation``, ``quantity`` (coord ``kind``: parameter or
        derived), ``sample`` (the L thinned draws) and ``level`` (interval
        probabilities). Variables ``truth``, ``rank``, ``u`` (randomised
        PIT), ``draws``, ``post_mean``, ``post_sd``, ``lower``, ``upper``
        (central intervals), and per simulation ``khat``, ``is_ess``,
        ``divergences``, ``max_rhat``, ``min_ess_bulk``, ``fit_ok``,
        ``problems``, ``error`` (failed fits: NaN ranks), ``fit_seconds`` and
        ``fit_cpu_seconds`` (simulation and fit, wall and CPU time).
        Attrs: provenance (spec, data hash, seed, version), the rank method,
        the scheduler, workers, tasks and the wall time. Summarise with
        :func:`sbc_summary`.
    """
    if not isinstance(spec, ModelSpec):
        spec = load_spec(spec)
    if int(n_sims) < 1:
        raise OptionError(f"n_sims must be >= 1, got {n_sims}")
    if int(n_ranks) < 1:
        raise OptionError(f"n_ranks must be >= 1, got {n_ranks}")
    # SBC checks one named engine: get_engine refuses "auto"; None: the engine the spec chooses
    used, _ = choose_engine(spec, None if engine is None else get_engine(engine).name)
    if not isinstance(data, ModelData):
        data = prepare_data(spec, read_tables(data))
    seed = int(spec.sampler.seed if seed is None else seed)
    setup = SBCSetup(spec=spec, data=data, engine=used.name, n_ranks=int(n_ranks))
    names, kinds = quantity_labels(setup.model)
    mapped = map_seeds(
        functools.partial(sbc_one, setup),
        spawn_seeds(seed, n_sims),
        scheduler=scheduler,
        workers=workers,
        batch_size=batch_size,
        progress=progress,
    )
    R = mapped.results
    stack = lambda k: np.stack([r[k] for r in R])  # noqa: E731
    sim = ("simulation",)
    ds = xr.Dataset(
        {
            "truth": (("simulation", "quantity"), stack("truth")),
            "rank": (("simulation", "quantity"), stack("rank")),
            "u": (("simulation", "quantity"), stack("u")),
            "draws": (("simulation", "sample", "quantity"), stack("draws")),
            "post_mean": (("simulation", "quantity"), stack("mean")),
            "post_sd": (("simulation", "quantity"), stack("sd")),
            "lower": (("simulation", "level", "quantity"), stack("lower")),
            "upper": (("simulation", "level", "quantity"), stack("upper")),
            "khat": (sim, stack("khat")),
            "is_ess": (sim, stack("is_ess")),
            "divergences": (sim, stack("divergences")),
            "max_rhat": (sim, stack("max_rhat")),
            "min_ess_bulk": (sim, stack("min_ess_bulk")),
            "fit_ok": (sim, stack("ok").astype(np.int8)),
            "problems": (sim, np.array([r["problems"] for r in R], dtype=object)),
            "error": (sim, np.array([r["error"] for r in R], dtype=object)),
            "fit_seconds": (sim, stack("fit_seconds")),
            "fit_cpu_seconds": (sim, stack("fit_cpu_seconds")),
        },
        coords={
            "simulation": np.arange(n_sims),
            "quantity": names,
            "kind": ("quantity", kinds),
            "sample": np.arange(n_ranks),
            "level": list(COVERAGE_LEVELS),
        },
    )
    ds.attrs.update(
        lmsbayes_format="lmsbayes.sbc",
        lmsbayes_version=__version__,
        spec_name=spec.name,
        spec_hash=spec.hash,
        spec_text=spec.text or spec_to_toml(spec),
        data_sha256=data.data_sha256,
        engine=used.name,
        seed=seed,
        n_sims=int(n_sims),
        n_ranks=int(n_ranks),
        khat_max=float(spec.exact.khat_max),
        rank_method=(
            "rank = number of L posterior draws below the true value; the L draws are thinned "
            "evenly from all draws (NUTS: all chains; exact engine: its equal-weight draws "
            "resampled from the PSIS-weighted importance sample); u = (rank + Uniform(0, 1)) / (L "
            "+ 1)"
        ),
        derived=(
            "pooled rate at each landmark for the mean covariate row of the design (latent uterine "
            "fractions at the centre)"
        ),
        scheduler=mapped.scheduler,
        workers=mapped.workers,
        tasks=mapped.tasks,
        wall_seconds=mapped.seconds,
        note=mapped.note,
    )
    if mapped.note:
        warnings.warn(mapped.note, stacklevel=2)
    return ds


def sbc_summary(ds: xr.Dataset, alpha: float = 0.01, bins: int | None = None) -> pd.DataFrame:
    """Uniformity tests and interval coverage per quantity of an :func:`sbc` result.

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`sbc`.
    alpha : float
        Level of the uniformity tests after Holm's correction over all of
        them (2 per quantity: chi-square and KS).
    bins : int, optional
        Chi-square bins (see :func:`uniformity_tests`).

    Returns
    -------
    pandas.DataFrame
        Index ``quantity``; columns ``kind``, ``n`` (simulations with a fit),
        ``bins``, ``p_chi2``, ``p_ks`` and their Holm-adjusted values
        ``p_chi2_holm``, ``p_ks_holm``, ``uniform`` (every test that ran has adjusted
        p >= alpha; NA when too few simulations for any test),
        and per level c ``coverage_<c>`` with its 95% Clopper-Pearson interval
        ``coverage_<c>_lo``, ``coverage_<c>_hi``. Attrs: ``alpha``,
        ``n_sims``, ``failed`` and ``khat_high`` (simulation indices),
        ``not_ok`` (simulations whose diagnostics failed).
    """
    L = int(ds.attrs["n_ranks"])
    rank = ds["rank"].transpose("simulation", "quantity").values
    u = ds["u"].transpose("simulation", "quantity").values
    tests = uniformity_tests(rank, u, L, bins=bins)
    adj = holm(np.concatenate([tests["p_chi2"].to_numpy(), tests["p_ks"].to_numpy()]))
    Q = rank.shape[1]
    tests["p_chi2_holm"], tests["p_ks_holm"] = adj[:Q], adj[Q:]
    # a test that could not be run (too few simulations) neither passes nor fails: NA if neither ran
    ran = tests[["p_chi2_holm", "p_ks_holm"]].notna()
    passed = ((tests["p_chi2_holm"] >= alpha) | ~ran["p_chi2_holm"]) & (
        (tests["p_ks_holm"] >= alpha) | ~ran["p_ks_holm"]
    )
    tests["uniform"] = pd.array(np.where(ran.any(axis=1), passed, pd.NA), dtype="boolean")
    tests.index = pd.Index(list(ds["quantity"].values), name="quantity")
    tests.insert(0, "kind", list(ds["kind"].values))
    truth = ds["truth"].transpose("simulation", "quantity").values
    valid = np.isfinite(rank)
    for c in ds["level"].values:
        lo = ds["lower"].sel(level=c).transpose("simulation", "quantity").values
        hi = ds["upper"].sel(level=c).transpose("simulation", "quantity").values
        cov = (lo <= truth) & (truth <= hi)
        key = f"coverage_{100 * c:g}"
        k = (cov & valid).sum(0)
        n = valid.sum(0)
        tests[key] = np.where(n > 0, k / np.maximum(n, 1), np.nan)
        ci = [
            stats.binomtest(int(ki), int(ni)).proportion_ci(0.95) if ni else None
            for ki, ni in zip(k, n)
        ]
        tests[f"{key}_lo"] = [c_.low if c_ else np.nan for c_ in ci]
        tests[f"{key}_hi"] = [c_.high if c_ else np.nan for c_ in ci]
    err = ds["error"].values.astype(str)
    khat = ds["khat"].values
    tests.attrs.update(
        alpha=alpha,
        correction="Holm over all tests (chi-square and KS per quantity)",
        n_sims=int(ds.sizes["simulation"]),
        failed=[int(i) for i in np.flatnonzero(err != "")],
        khat_high=[int(i) for i in np.flatnonzero(khat > float(ds.attrs.get("khat_max", 0.7)))],
        not_ok=[int(i) for i in np.flatnonzero((ds["fit_ok"].values == 0) & (err == ""))],
    )
    return tests


def save_sbc(ds: xr.Dataset, path) -> os.PathLike:
    """Write an :func:`sbc` result to netCDF, atomically.

    lmsbayes.files: temp file, then rename; umask mode.
    """
    from lmsbayes.files import atomic_write

    out = ds.copy()
    for v in ("problems", "error"):
        out[v] = out[v].astype(str)
    return atomic_write(path, lambda tmp: out.to_netcdf(tmp, engine="netcdf4"))
