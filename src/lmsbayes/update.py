"""What a newly published trial changes: refit with added arms and show every difference.

:func:`update` reads the added arms with the same validation as the bundled table
(:func:`lmsbayes.data.load_trials`: the arm table and, if present, its rates table),
refuses an ``arm_id`` the base table already has or a regimen label that names a
combination another label already names, fits the spec before and after, and
returns the difference in every threshold row, in the MAP priors (with their ESS)
of the added arms' lines, and in the spec's leave-future-out summary. The
leave-future-out after the addition takes over every fold whose training and held-out
arms did not change and refits only the others (a trial published in or after the
latest year: one refit). The independent steps (the fits before and after with their
threshold rows and priors, the leave-future-out before in two halves, the changed folds
after) run side by side in 2 forked processes where the machine has 2 cores; every step
is deterministic (the exact engine's fixed rule), so the output is the same as in one
process (benchmarks/update_speed.py measures it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lmsbayes.data import DataValidationError, Problem, Trials, load_trials, role_regimen_problems
from lmsbayes.errors import OptionError

__all__ = ["Update", "combine", "update"]


def combine(base: Trials, added: Trials) -> Trials:
    """The base tables with the added arms (and their rates) appended.

    Raises
    ------
    DataValidationError
        An added ``arm_id`` is already in the base table, or an added regimen label names
        a combination the base table labels otherwise; each problem names the added
        file, row, column and value.
    """
    file = added.files[0] if added.files else "added arms"
    problems = []
    known = set(base.arms["arm_id"].astype(str))
    for i, a in enumerate(added.arms["arm_id"].astype(str)):
        if a in known:
            problems.append(
                Problem(
                    file,
                    i + 2,
                    a,
                    "arm_id",
                    a,
                    f"arm_id {a!r} is already in "
                    f"{base.files[0] if base.files else 'the base table'}"
                    " (an added arm needs a new arm_id; to correct an arm, edit the table)",
                )
            )
    if "regimen" in base.arms and "regimen" in added.arms:
        reg = pd.concat([base.arms["regimen"], added.arms["regimen"]], ignore_index=True)
        cells = ["" if pd.isna(v) else str(v) for v in reg]
        nb = len(base.arms)
        for i, col, message in role_regimen_problems(
            [""] * len(cells), cells, row_name=lambda j: f"row {j + 2} of the base table"
        ):
            if i >= nb:
                row = i - nb
                problems.append(
                    Problem(
                        file, row + 2, str(added.arms["arm_id"].iloc[row]), col, cells[i], message
                    )
                )
    if problems:
        raise DataValidationError(problems)
    arms = pd.concat([base.arms, added.arms], ignore_index=True)
    for col in base.arms.columns:  # categoricals stay categoricals (same categories on both)
        if isinstance(base.arms[col].dtype, pd.CategoricalDtype):
            arms[col] = arms[col].astype(base.arms[col].dtype)
    rates = pd.concat([base.rates, added.rates], ignore_index=True)
    for col in base.rates.columns:
        if isinstance(base.rates[col].dtype, pd.CategoricalDtype):
            rates[col] = rates[col].astype(base.rates[col].dtype)
    sha = hashlib.sha256((base.sha256 + added.sha256).encode()).hexdigest()
    return Trials(arms=arms, rates=rates, sha256=sha, files=(*base.files, *added.files))


@dataclass(frozen=True)
class Update:
    """Before and after adding arms.

    Attributes
    ----------
    spec : str
    added : pandas.DataFrame
        The added arms (arm table rows).
    entered : list of str
        Added arms that enter the spec's model (the others are excluded, with a reason
        in ``excluded``).
    excluded : pandas.DataFrame
        Exclusions of added arms (arm_id, reason).
    thresholds : pandas.DataFrame
        One row per threshold row (setting, landmark, hr): p0 and p1 with their 95%
        CrIs before and after, and the changes ``d_p0``, ``d_p1``.
    priors : pandas.DataFrame
        MAP priors of the added arms' lines (setting, landmark): mean, sd and ELIR ESS
        before and after, and the mixtures.
    lfo : pandas.DataFrame
        The spec's leave-future-out summary before and after (rows ``before``,
        ``after``), with ``refits`` (folds refitted) and ``reused``.
    seconds : dict
        Wall time of each step.
    diagnostics : dict
        The diagnostics line of the fit before and of the fit after (``before``, ``after``).
    cpu : dict
        CPU seconds of the steps each process ran (by process id; ``this process`` for
        the caller's own steps after the imports, the pool's steps included when it ran
        them itself).
    """

    spec: str
    added: pd.DataFrame
    entered: list
    excluded: pd.DataFrame
    thresholds: pd.DataFrame
    priors: pd.DataFrame
    lfo: pd.DataFrame
    seconds: dict
    cpu: dict = dataclasses.field(default_factory=dict)
    diagnostics: dict = dataclasses.field(default_factory=dict)

    def format(self) -> str:
        """The differences as printable text."""
        return _format(self)


def _threshold_rows(fit, landmarks, at) -> pd.DataFrame:
    from lmsbayes.predict import threshold_group, threshold_table

    # the table from the numpy Group with its evidence (as lmsbayes run): no xarray Dataset
    group, evidence = threshold_group(fit, landmarks=landmarks, at=dict(at or {}))
    t = pd.DataFrame(threshold_table(group, evidence=evidence))
    keep = [
        "setting",
        "landmark",
        "hr",
        "p0",
        "p0_lower",
        "p0_upper",
        "p1",
        "p1_lower",
        "p1_upper",
        "arms",
    ]
    return t[keep]


def _priors(fit, settings, landmarks) -> pd.DataFrame:
    from lmsbayes.prior import ess, map_prior

    rows = []
    for s in settings:
        for lm in landmarks:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # EM notes; the mixture is shown with its ESS
                mix = map_prior(fit, s, lm)
                try:
                    elir = float(ess(mix, "elir"))
                except ValueError:
                    elir = math.nan
            rows.append(
                {
                    "setting": s.label,
                    "landmark": float(lm),
                    "mean": float(mix.mean()),
                    "sd": float(mix.sd()),
                    "ess": elir,
                    "mixture": repr(mix),
                }
            )
    return pd.DataFrame(rows)


def _side(sp, data, landmarks, at, settings) -> tuple[pd.DataFrame, pd.DataFrame, dict, str]:
    """Fit ``sp`` to ``data``: threshold rows, MAP priors, seconds and diagnostics line.

    The diagnostics line is printed with the update: an inference problem is never hidden.
    """
    from lmsbayes.fit import fit

    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the diagnostics line is returned and printed
        f = fit(sp, data)
    secs = {"fit": time.perf_counter() - t}
    t = time.perf_counter()
    thr = _threshold_rows(f, landmarks, at)
    secs["thresholds"] = time.perf_counter() - t
    t = time.perf_counter()
    pri = _priors(f, settings, landmarks) if settings else pd.DataFrame()
    secs["priors"] = time.perf_counter() - t
    return thr, pri, secs, f.diagnostics.line()


def _lfo_part(sp, data, start, only):
    from lmsbayes.validate import lfo

    return lfo(sp, data, start=start, only=only)


def _fold_sets(data, start) -> dict:
    """Leave-future-out's folds after ``start``: year -> (training arm ids, held-out arm ids)."""
    if start is None:
        return {}
    ids = np.asarray(data.arms.index)
    y = pd.to_numeric(data.arms["year"], errors="coerce").to_numpy(float)
    years = sorted({int(v) for v in y[np.isfinite(y) & (y > start)]})
    return {str(yr): (frozenset(ids[y < yr]), frozenset(ids[y == yr])) for yr in years}


def _timed(fn, *args):
    """``fn(*args)`` with the process id and the CPU seconds it took (for the benchmark).

    In a pool's process BLAS runs on one thread: two processes share the 2 cores.
    """
    import os

    c0 = time.process_time()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it BLAS keeps its threads
        out = fn(*args)
    else:
        with threadpool_limits(1):
            out = fn(*args)
    return out, os.getpid(), time.process_time() - c0


def _preload() -> None:
    """Import what the steps import lazily, once here: forked processes inherit it."""
    import scipy.stats  # noqa: F401

    import lmsbayes.coverage  # noqa: F401
    import lmsbayes.integrated  # noqa: F401
    import lmsbayes.predict  # noqa: F401
    import lmsbayes.prior  # noqa: F401


def _cached_side(parts: dict):
    """The base fit's threshold rows and priors from the cache, or None."""
    from lmsbayes.cache import cache_key, load_frames

    got = load_frames("update-base", cache_key("update-base", parts)[0])
    if got is None or "diagnostics" not in got["meta"]:
        return None
    return got["thresholds"], got["priors"], {}, str(got["meta"]["diagnostics"])


def _store_side(parts: dict, thresholds: pd.DataFrame, priors: pd.DataFrame, diag: str) -> None:
    from lmsbayes.cache import cache_key, store_frames

    key, prov = cache_key("update-base", parts)
    frames = {"thresholds": thresholds, "priors": priors}
    store_frames("update-base", key, prov, frames, meta={"diagnostics": diag})


def _cached_lfo(spec, data, parts: dict):
    """The base leave-future-out from the cache (its rows; no draws are kept), or None."""
    from lmsbayes.cache import cache_key, load_frames
    from lmsbayes.validate import Validation

    got = load_frames("update-lfo", cache_key("update-lfo", parts)[0])
    if got is None:
        return None
    folds = got["folds"]
    return Validation(
        spec=spec,
        scheme="lfo",
        data=data,
        arms=got["arms"],
        obs=got["obs"],
        folds=folds,
        draws=tuple({} for _ in range(len(folds))),  # update reads the rows only
        seconds=float(got["meta"].get("seconds", 0.0)),
        year=parts["start"],
    )


def _store_lfo(parts: dict, v) -> None:
    from lmsbayes.cache import cache_key, store_frames

    key, prov = cache_key("update-lfo", parts)
    frames = {"arms": v.arms, "obs": v.obs, "folds": v.folds}
    store_frames("update-lfo", key, prov, frames, meta={"seconds": v.seconds})


def _default_workers() -> int:
    """2 where a second core is free (load average below the cores less one), else 1.

    On 2 cores shared with other work the two processes only compete (measured: 28 s wall
    with 2, 23 s with 1 at load 5; docs/validation.md section 7).
    """
    import os

    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        load = 0.0
    return 2 if cores >= 2 and load <= cores - 1 else 1


def _pool(workers: int):
    """A pool of ``workers`` forked processes (they share the imported modules), or None.

    None where fork is not available (then every step runs here, one after another).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return None
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))


class _Here:
    """The pool's interface, run in this process (one worker)."""

    def submit(self, fn, *args):
        from concurrent.futures import Future

        fut = Future()
        fut.set_result(fn(*args))
        return fut

    def shutdown(self):
        pass


def update(
    added,
    base=None,
    spec="default",
    *,
    landmarks: Sequence[float] | None = None,
    at: dict | None = None,
    priors: str = "rt",
    lfo: bool = True,
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
    cache: bool = True,
) -> Update:
    """Refit ``spec`` with the ``added`` arms and compare with the fit without them.

    Parameters
    ----------
    added : Trials or path
        The new arms: a path is read with :func:`lmsbayes.data.load_trials` (its rates
        table ``NAME_rates.csv`` beside it, if any), with every check of the bundled table.
    base : Trials, path or None
        The table the arms are added to (None: the bundled data).
    spec : ModelSpec or str
        The spec whose thresholds, MAP priors and leave-future-out are compared.
    landmarks : sequence of float, optional
        Threshold landmarks (default: the spec's).
    at : dict, optional
        Covariate values of the settings (e.g. ``{"year": 2027}`` for a spec with a trend).
    priors : {'rt', 'line', 'none'}
        MAP priors compared, for each line of an added arm that enters: 'rt' the R-T
        setting (50% uterine: a control arm of a recommended regimen; default), 'line'
        also the line's case mix and NR-T, 'none' no priors (each costs about 0.25 s of CPU).
    lfo : bool
        Whether to compare the leave-future-out summary.
    workers : int, optional
        Processes for the independent steps (the fits before and after with their
        thresholds and priors, and the two halves of the leave-future-out before); default
        2 where a second core is free (forked; 1 runs every step here, one after another).
        The numbers do not depend on it: every step is deterministic (the exact engine's
        fixed rule).
    progress : callable, optional
    cache : bool
        Where ``$LMSBAYES_CACHE`` names a folder (the cache is off otherwise), take the
        base analysis (the fit before with its threshold rows and priors, and its
        leave-future-out) from it where an earlier call with the same spec, data,
        options, package source and library versions stored it, and store it otherwise
        (:mod:`lmsbayes.cache`; the numbers are those a refit gives: every step is
        deterministic). False: compute everything, store nothing.

    Returns
    -------
    Update
    """
    from lmsbayes.future import summarize
    from lmsbayes.model.prepare import prepare_data
    from lmsbayes.predict import Setting
    from lmsbayes.spec import ModelSpec, load_spec
    from lmsbayes.validate import join_folds, lfo_start, select_folds

    say = progress or (lambda _m: None)
    secs: dict[str, float] = {}
    t0, c_start = time.perf_counter(), time.process_time()
    if priors not in ("rt", "line", "none"):
        raise OptionError(f"priors must be 'rt', 'line' or 'none', got {priors!r}")
    base_t = base if isinstance(base, Trials) else load_trials(base)
    new_t = added if isinstance(added, Trials) else load_trials(added)
    both = combine(base_t, new_t)
    sp = spec if isinstance(spec, ModelSpec) else load_spec(spec)
    d_before, d_after = prepare_data(sp, base_t), prepare_data(sp, both)
    ids = list(new_t.arms["arm_id"].astype(str))
    entered = [a for a in ids if a in set(d_after.arms.index)]
    exc = d_after.excluded
    excluded = exc[exc["arm_id"].isin(ids)][["arm_id", "reason"]].drop_duplicates("arm_id")
    lm = list(landmarks) if landmarks else list(sp.landmarks)
    settings = []
    if priors != "none" and entered and d_after.table == "lms":
        for ln in sorted(set(d_after.arms.loc[entered, "line"].astype(str))):
            settings += [Setting(ln, "R-T", 0.5, name=f"{ln} R-T")]
            if priors == "line":
                settings += [Setting.standardised(ln), Setting(ln, "NR-T", 0.5, name=f"{ln} NR-T")]
        if at:
            settings = [s.with_covariates(**at) for s in settings]
    secs["read"] = time.perf_counter() - t0
    # the base analysis (the fit before with its rows and priors, and its leave-future-out)
    # is the same at every call with this spec and data: taken from the cache when there
    start = None
    labels: list = []
    if lfo:
        start = lfo_start(d_before) if "year" in d_before.arms else None
        labels = list(_fold_sets(d_before, start))
    base_key = {
        "spec_hash": sp.hash,
        "data_sha256": d_before.data_sha256,
        "arm_ids": [str(a) for a in d_before.arms.index],
    }
    side_key = {
        **base_key,
        "landmarks": lm,
        "at": at or {},
        "settings": [repr(s) for s in settings],
    }
    side_cached = _cached_side(side_key) if cache else None
    lfo_key = {**base_key, "start": start, "folds": labels}
    lfo_cached = _cached_lfo(sp, d_before, lfo_key) if (cache and lfo and labels) else None
    # the independent steps, spread over the workers: the fits before and after (each with
    # its threshold rows and priors) and the leave-future-out before in two halves
    n_work = workers if workers is not None else _default_workers()
    if n_work > 1:
        _preload()
    t = time.perf_counter()
    with warnings.catch_warnings():
        # Python warns that forking a process with threads (BLAS pools) may deadlock; the
        # pool forks before any step runs, with no lock held
        warnings.simplefilter("ignore", DeprecationWarning)
        pool = _pool(n_work) or _Here()
        try:
            fut_before = (
                pool.submit(_timed, _side, sp, d_before, lm, at, settings)
                if side_cached is None
                else None
            )
            fut_after = (
                pool.submit(_timed, _side, sp, d_after, lm, at, settings) if entered else None
            )
            parts, changed = [], []
            if lfo:
                fb = _fold_sets(d_before, start)
                # alternate years: each half refits as many folds (the latest are the largest)
                halves = [labels[-1::-2], labels[-2::-2]] if labels else [None]
                if lfo_cached is None:
                    parts = [
                        pool.submit(_timed, _lfo_part, sp, d_before, start, h)
                        for h in halves
                        if h != []
                    ]
                if entered and labels:
                    # the folds whose arms the added ones change, refitted beside the others
                    fa = _fold_sets(d_after, start)
                    changed = [f for f in fa if fb.get(f) != fa[f]]
                    if changed:
                        parts.append(pool.submit(_timed, _lfo_part, sp, d_after, start, changed))
            results = {
                name: f.result()
                for name, f in (("before", fut_before), ("after", fut_after))
                if f is not None
            }
            done_parts = [f.result() for f in parts]
        finally:
            pool.shutdown()
    cpu: dict[str, float] = {}
    for _, pid, c in [*results.values(), *done_parts]:  # CPU seconds of each process's steps
        cpu[f"pid {pid}"] = cpu.get(f"pid {pid}", 0.0) + c
    if side_cached is None:
        tb, pb, s_before, diag_before = results["before"][0]
        if cache:
            _store_side(side_key, tb, pb, diag_before)
    else:
        tb, pb, s_before, diag_before = side_cached
    ta, pa, s_after, diag_after = (
        results["after"][0] if fut_after is not None else (tb, pb, {}, diag_before)
    )
    lfo_parts = [r[0] for r in done_parts]
    va = vb = None
    if lfo and (lfo_parts or lfo_cached is not None):
        new_part = lfo_parts.pop() if changed else None
        if lfo_cached is None:
            vb = join_folds(lfo_parts, labels or None)
            if cache and labels:
                _store_lfo(lfo_key, vb)
        else:
            vb = lfo_cached
        va = vb
        if entered:
            keep = select_folds(vb, [f for f in labels if f not in changed])
            order = sorted(set(labels) | set(changed), key=int)
            va = join_folds([keep] + ([new_part] if new_part else []), order)
            va = dataclasses.replace(va, data=d_after)
            va.folds["reused"] = ["no" if f in changed else "yes" for f in va.folds["fold"]]
    if side_cached is None:
        secs["before (fit, thresholds, priors)"] = sum(s_before.values())
    else:
        secs["before (fit, thresholds, priors: cached)"] = 0.0
    if lfo_cached is not None:
        secs["lfo before: cached"] = 0.0
    secs["after"] = sum(s_after.values())
    secs["parallel steps"] = time.perf_counter() - t
    say(f"refitted {sp.name!r} with {len(entered)} of {len(ids)} added arms")
    key = ["setting", "landmark", "hr"]
    thr = tb.merge(ta, on=key, how="left", suffixes=("_before", "_after"))  # the table's order
    thr["d_p0"] = thr["p0_after"] - thr["p0_before"]
    thr["d_p1"] = thr["p1_after"] - thr["p1_before"]
    pri = pd.DataFrame()
    if len(pb):
        pri = pb.merge(pa, on=["setting", "landmark"], suffixes=("_before", "_after"))
    t = time.perf_counter()
    lfo_tab = pd.DataFrame()
    if vb is not None:
        col = "elpd_survival" if "elpd_survival" in vb.arms else "elpd"
        rows = []
        for name, v in (("before", vb), ("after", va)):
            s = summarize(v.obs, v.arms, col)
            reused = v.folds.get("reused", pd.Series("no", index=v.folds.index))
            rows.append({"": name, **s, "refits": int((reused == "no").sum()), "start": v.year})
        lfo_tab = pd.DataFrame(rows).set_index("")
    secs["lfo after"] = time.perf_counter() - t
    secs["total"] = time.perf_counter() - t0
    cpu["this process"] = time.process_time() - c_start
    return Update(
        spec=sp.name,
        added=new_t.arms,
        entered=entered,
        excluded=excluded.reset_index(drop=True),
        thresholds=thr,
        priors=pri,
        lfo=lfo_tab,
        seconds=secs,
        cpu=cpu,
        diagnostics={"before": diag_before, "after": diag_after},
    )


# ============================================================================ text


def _ci(p, lo, hi) -> str:
    return "" if np.isnan(p) else f"{p:.2f} ({lo:.2f}-{hi:.2f})"


def _format(u: Update) -> str:
    n = len(u.added)
    lines = [
        f"lmsbayes update - spec {u.spec!r}: {n} arm{'s' if n != 1 else ''} added "
        f"({', '.join(u.added['arm_id'].astype(str))}); {len(u.entered)} enter the model"
    ]
    for _, r in u.excluded.iterrows():
        lines.append(f"  {r['arm_id']} does not enter: {r['reason']}")
    t = u.thresholds
    tab = pd.DataFrame(
        {
            "setting": t["setting"],
            "landmark": [f"{x:g} mo" for x in t["landmark"]],
            "HR": [f"{x:g}" for x in t["hr"]],
            "p0 before": [
                _ci(*r) for r in t[["p0_before", "p0_lower_before", "p0_upper_before"]].to_numpy()
            ],
            "p0 after": [
                _ci(*r) for r in t[["p0_after", "p0_lower_after", "p0_upper_after"]].to_numpy()
            ],
            "change p0": [f"{x:+.3f}" for x in t["d_p0"]],
            "p1 before": [
                _ci(*r) for r in t[["p1_before", "p1_lower_before", "p1_upper_before"]].to_numpy()
            ],
            "p1 after": [
                _ci(*r) for r in t[["p1_after", "p1_lower_after", "p1_upper_after"]].to_numpy()
            ],
            "change p1": [f"{x:+.3f}" for x in t["d_p1"]],
            "arms": [f"{int(a)} -> {int(b)}" for a, b in zip(t["arms_before"], t["arms_after"])],
        }
    )
    for name, line in u.diagnostics.items():  # an inference problem of either fit is shown
        lines.append(f"fit {name}: {line}")
    lines += ["", "1. Every threshold row, before and after", tab.to_string(index=False)]
    if len(u.priors):
        p = u.priors
        pt = pd.DataFrame(
            {
                "setting": p["setting"],
                "landmark": [f"{x:g} mo" for x in p["landmark"]],
                "mean (sd) before": [
                    f"{m:.3f} ({s:.3f})" for m, s in zip(p["mean_before"], p["sd_before"])
                ],
                "ESS before": [f"{x:.1f}" for x in p["ess_before"]],
                "mean (sd) after": [
                    f"{m:.3f} ({s:.3f})" for m, s in zip(p["mean_after"], p["sd_after"])
                ],
                "ESS after": [f"{x:.1f}" for x in p["ess_after"]],
                "change ESS": [f"{b - a:+.1f}" for a, b in zip(p["ess_before"], p["ess_after"])],
            }
        )
        lines += [
            "",
            "2. MAP priors (Beta mixtures fitted to a new trial's predictive rate) of the added "
            "arms' lines; ESS by ELIR",
            pt.to_string(index=False),
        ]
    if len(u.lfo):
        lf = u.lfo
        rows = []
        for name, r in lf.iterrows():
            rows.append(
                {
                    "": name,
                    "arms": int(r["arms"]),
                    "obs": int(r["obs"]),
                    **{
                        f"cov {100 * lv:g}%": f"{r[f'cov{100 * lv:g}']:.2f} "
                        f"({r[f'cov{100 * lv:g}_lo']:.2f}-{r[f'cov{100 * lv:g}_hi']:.2f})"
                        for lv in (0.5, 0.8, 0.9, 0.95)
                    },
                    "IS90": f"{r['is90']:.2f}",
                    "ELPD (se)": f"{r['elpd']:.1f} ({r['elpd_se']:.1f})",
                    "refits": int(r["refits"]),
                }
            )
        lines += [
            "",
            f"3. Leave-future-out of {u.spec!r} (first training set up to "
            f"{int(lf['start'].iloc[0])}); "
            "after: folds whose arms did not change are reused",
            pd.DataFrame(rows).to_string(index=False),
        ]
    s = u.seconds
    lines += [
        "",
        "time: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in s.items() if k != "total")
        + f"; total {s['total']:.1f} s",
    ]
    if u.cpu:
        workers = [v for k, v in u.cpu.items() if k != "this process"]
        lines.append(
            f"CPU: this process {u.cpu.get('this process', 0.0):.1f} s (after imports); steps "
            "in the pool's processes " + ", ".join(f"{v:.1f} s" for v in workers)
        )
    return "\n".join(lines)
