"""Data preparation: (spec, tables) -> :class:`~lmsbayes.model.inputs.ModelData`.

``prepare_data(spec, data)`` is pure pandas: it applies the spec's data
filter, builds the observations of the spec's likelihood family and the
design matrix, and records every exclusion with its reason.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lmsbayes.model import families as lik
from lmsbayes.model.covariates import LMS_COVARIATES, Covariate, design_matrices, expand_terms
from lmsbayes.model.inputs import ModelData
from lmsbayes.model.structure import group_column, group_index
from lmsbayes.spec import ModelSpec, SpecError

__all__ = ["CURVE_SHAPE_GROUP", "prepare_data", "conditional_counts"]

#: the shape group of curve arms under ``[model] curve_shape = "own"``
CURVE_SHAPE_GROUP = "curve arms"


# ---------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class _Tables:
    kind: str  # "lms" or "binomial"
    arms: pd.DataFrame
    rates: pd.DataFrame
    sha256: str


_BINOMIAL_REQUIRED = ("study", "r", "n")


def _tables(data: Any) -> _Tables:
    """The input as arm and rate tables, whatever form it came in."""
    if hasattr(data, "arms") and hasattr(data, "rates"):  # lmsbayes.data.Trials
        return _Tables(
            "lms", data.arms.reset_index(drop=True), data.rates.reset_index(drop=True), data.sha256
        )
    if not isinstance(data, pd.DataFrame):
        raise TypeError(
            f"data must be lmsbayes Trials, a DataFrame or a path, got {type(data).__name__}"
        )
    sha = (
        data.attrs.get("sha256")
        or hashlib.sha256(
            pd.util.hash_pandas_object(data.astype(str), index=False).to_numpy().tobytes()
        ).hexdigest()
    )
    if "arm_id" in data and "line" in data:  # an LMS arm table (0.1 layout: rate columns pfsr_<t>m)
        from lmsbayes.data import as_trials

        trials = as_trials(data)
        return _Tables(
            "lms", trials.arms.reset_index(drop=True), trials.rates.reset_index(drop=True), sha
        )
    from lmsbayes.data import binomial_table, is_binomial_header

    missing = [c for c in _BINOMIAL_REQUIRED if c not in data]
    if missing and not is_binomial_header([str(c) for c in data.columns]):
        raise SpecError(
            [
                f"the table has no column {missing[0]!r}: a binomial table needs columns "
                f"{list(_BINOMIAL_REQUIRED)} (one row per study arm), an LMS table the columns of "
                "lmsbayes.load_trials"
            ],
            "data",
        )
    # the checked reader's rules (issue 20): 'Study' is 'study'; a header without study, r and n
    # is one error naming them, with "did you mean"
    return _Tables("binomial", binomial_table(data), pd.DataFrame(), sha)


# ---------------------------------------------------------------------------- preparation


def _coding(spec: ModelSpec, arms: pd.DataFrame, kind: str) -> list:
    """The design columns of the spec's terms for these arms."""
    effects: dict[str, list[Covariate]] = {}
    builtin = LMS_COVARIATES(spec.model.uterine_centre) if kind == "lms" else {}
    user = dict(spec.covariates)
    problems = []
    for name in spec.main_effects:
        if name in user:
            d = user[name]
            if d.column not in arms:
                problems.append(
                    f"[covariates.{name}] column {d.column!r} is not in the data (columns: "
                    f"{sorted(map(str, arms.columns))})"
                )
                continue
            if d.type == "numeric":
                vals = pd.to_numeric(arms[d.column], errors="coerce")
                if vals.isna().any():
                    i = int(np.flatnonzero(vals.isna())[0])
                    cell = arms[d.column].iloc[i]
                    got = "a blank cell" if pd.isna(cell) else repr(str(cell))
                    problems.append(
                        f"[covariates.{name}] column {d.column!r} must be numeric and complete, "
                        f"got {got} (row {i + 2})"
                    )
                    continue
                effects[name] = [
                    Covariate(name, d.column, "numeric", centre=d.centre, scale=d.scale)
                ]
            else:
                levels = sorted(map(str, arms[d.column].dropna().unique()))
                ref = d.reference or (levels[0] if levels else "")
                if ref not in levels:
                    problems.append(
                        f"[covariates.{name}] reference {ref!r} is not a level of {d.column!r} "
                        f"(levels: {levels})"
                    )
                    continue
                effects[name] = [
                    Covariate(f"{name}[{lv}]", d.column, "indicator", level=lv, reference=ref)
                    for lv in levels
                    if lv != ref
                ]
        elif name in builtin:
            effects[name] = [builtin[name]]
        else:
            problems.append(
                f"[model] covariates: {name!r} is not a column of this table; define it in "
                f"[covariates.{name}]"
            )
    if problems:
        raise SpecError(problems, spec.name)
    return expand_terms(spec.model.covariates, effects)


def _filter_lms(spec: ModelSpec, t: pd.DataFrame) -> pd.Series:
    """The reason each LMS arm is excluded by the spec's data filter ('' when kept)."""
    f = spec.data
    reasons = pd.Series("", index=t.index, dtype=object)

    def drop(mask, why: str) -> None:
        mask = np.asarray(mask, dtype=bool) & (reasons == "").to_numpy()
        reasons[mask] = why

    unknown = sorted(set(f.exclude_arms) - set(t["arm_id"].astype(str)))
    if unknown:
        raise SpecError([f"[data] exclude_arms: no arm has id {a!r}" for a in unknown], spec.name)
    drop(t["arm_id"].isin(f.exclude_arms), "listed in [data] exclude_arms")
    drop(~t["line"].astype(str).isin(f.lines), f"line not in [data] lines {list(f.lines)}")
    drop(
        ~t["treatment_class"].astype(str).isin(f.classes),
        f"class not in [data] classes {list(f.classes)}",
    )
    if f.populations:
        drop(
            ~t["population"].astype(str).isin(f.populations),
            f"population not in [data] populations {list(f.populations)}",
        )
    year = t["year"].astype("float64")
    drop((year < f.years[0]) | (year > f.years[1]), f"year outside [data] years {list(f.years)}")
    drop(
        ~t["evidence"].astype(str).isin(f.evidence),
        f"evidence not in [data] evidence {list(f.evidence)}",
    )
    if f.exclude_placebo:
        drop(t["placebo"].astype(bool), "placebo arm ([data] exclude_placebo = true)")
    if f.require_identifier:
        pmid = t["pmid"] if "pmid" in t else pd.Series(pd.NA, index=t.index)
        doi = t["doi"] if "doi" in t else pd.Series(pd.NA, index=t.index)
        no_id = (
            pmid.isna().to_numpy() & (doi.isna() | (doi.astype(str).str.strip() == "")).to_numpy()
        )
        drop(no_id, "no PMID or DOI identifies the source ([data] require_identifier = true)")
    if "evidence_level" in t and len(f.evidence_levels) < 4:
        lvl = t["evidence_level"].astype(object)
        drop(
            lvl.notna() & ~lvl.astype(str).isin(f.evidence_levels),
            "evidence level of the arm's numbers not in [data] evidence_levels "
            f"{list(f.evidence_levels)}",
        )
    if "uterine" in spec.main_effects and f.uterine_missing == "exclude":
        drop(
            t["uterine_fraction"].isna(),
            "uterine fraction unknown ([data] uterine_missing = 'exclude')",
        )
    return reasons


def _arm_label(t: pd.DataFrame) -> pd.Series:
    agents = t["agents"].astype(str).str.replace(";", "+")
    return t["trial"].astype(str) + " " + agents + " (" + t["year"].astype(str) + ")"


def prepare_data(spec: ModelSpec, data: Any) -> ModelData:
    """Apply the spec's data filter and build the model inputs.

    Parameters
    ----------
    spec : ModelSpec
    data : lmsbayes.data.Trials, pandas.DataFrame
        The LMS tables from :func:`lmsbayes.data.load_trials`, an LMS arm
        table, or a plain binomial table with columns ``study``, ``r``, ``n``
        (optionally ``trial``, ``year`` and covariate columns the spec names).

    Returns
    -------
    ModelData

    Raises
    ------
    SpecError
        When no observation remains, a covariate the spec asks for does not
        vary in the selected arms, or the spec does not fit the table.
    """
    tables = _tables(data)
    family = lik.get_family(spec.model.likelihood, spec.model.curve)
    if tables.kind == "binomial":
        return _prepare_binomial(spec, tables, family)
    t = tables.arms
    if not spec.landmarks:
        raise SpecError(
            [
                "landmarks: the spec has none, and the LMS arm table needs at least one "
                "landmark (months)"
                + (
                    "; this spec is for a (study, r, n) table: fit the LMS table with the spec "
                    "'default'"
                    if family.binomial_table
                    else ""
                )
            ],
            spec.name,
        )
    curves = _load_curves(spec, family) if spec.data.curves else []
    if curves:  # an arm the table does not hold joins it from its curve file's [arm] table
        t = _add_curve_arms(spec, t, curves)
    reasons = _filter_lms(spec, t)
    arm_excl = pd.DataFrame(
        {
            "arm_id": t.loc[reasons != "", "arm_id"].to_numpy(),
            "landmark": np.nan,
            "reason": reasons[reasons != ""].to_numpy(),
        }
    )
    kept = t[reasons == ""].reset_index(drop=True)
    rates = tables.rates
    used: list = []
    if curves:  # one source per arm: the curve replaces its arm's median and rates
        kept, rates, curve_excl, used = _curve_sources(kept, rates, curves)
        arm_excl = pd.concat([arm_excl, curve_excl], ignore_index=True)
    if family.any_landmark:  # one curve per arm: medians and rates at any time
        obs, terms, const, obs_excl = _survival_obs(spec, kept, rates, family)
        landmarks: tuple[float, ...] = ()
    else:
        obs, obs_excl, landmarks = _landmark_obs(spec, kept, rates, family)
        terms, const = pd.DataFrame(), np.zeros(0)
    if obs.empty and not used:
        raise SpecError(
            ["no observation remains after the [data] filter and the observation rules"], spec.name
        )
    arm_ids = list(dict.fromkeys(obs["arm_id"]))  # file order, arms with >= 1 observation
    curve_rows = pd.DataFrame()
    if curves:
        arm_ids, terms, const, obs_excl, curve_rows = _with_curve_arms(
            kept, obs, terms, const, obs_excl, curves, used
        )
    src = kept.set_index("arm_id").loc[arm_ids].reset_index()
    arms = pd.DataFrame(
        {
            "label": _arm_label(src).to_numpy(),
            "trial": src["trial"].astype(str).to_numpy(),
            "year": src["year"].to_numpy(),
            "line": src["line"].astype(str).to_numpy(),
            "treatment_class": src["treatment_class"].astype(str).to_numpy(),
            "population": src["population"].astype(str).to_numpy(),
            "evidence": src["evidence"].astype(str).to_numpy(),
            "design": src["design"].astype(str).to_numpy(),
            "n": src["n"].to_numpy(),
            "uterine_fraction": src["uterine_fraction"].astype(float).to_numpy(),
        },
        index=pd.Index(arm_ids, name="arm"),
    )
    for _name, d in spec.covariates:  # a user's own covariate columns
        if d.column in src and d.column not in arms:
            arms[d.column] = src[d.column].to_numpy()
    # what an arm is (its regimen and role: validation splits by it, predictive targets name
    # them; data/README.md 2a), and the group effect's column where the spec nests arms in one
    for col in ("role", "regimen", group_column(spec)):
        if col and col in src and col not in arms:
            arms[col] = src[col].astype(object).to_numpy()
    arms["year"] = arms["year"].astype("Int64")
    arms["n"] = pd.array(arms["n"], dtype="Float64").astype("Int64")
    return _finish(
        spec,
        family,
        arms,
        obs,
        terms,
        const,
        pd.concat([arm_excl, obs_excl], ignore_index=True),
        landmarks,
        _curve_sha(tables.sha256, curves),
        "lms",
        curve_rows=curve_rows,
        curve_arms=_curve_summary(curves, used),
    )


# ---------------------------------------------------------------------------- curve arms


def _load_curves(spec, family):
    """The spec's curve arms (lmsbayes.model.curve_arms); a bad file is a SpecError naming it."""
    from lmsbayes.errors import InputError
    from lmsbayes.model.curve_arms import load_curves

    try:
        return load_curves(
            spec.data.curves, family, spec.model.t_ref, truncate_all=spec.data.curve_truncate
        )
    except InputError as exc:
        raise SpecError([str(exc)], spec.name) from None


def _add_curve_arms(spec, t, curves):
    from lmsbayes.errors import InputError
    from lmsbayes.model.curve_arms import add_curve_arms

    try:
        return add_curve_arms(t, curves)
    except InputError as exc:
        raise SpecError([str(exc)], spec.name) from None


def _curve_sources(kept, rates, curves):
    """Take the median and rates of the kept curve arms out (listed as replaced by the curve).

    Returns the kept arms (medians of curve arms blanked), the rates without theirs, the
    exclusion rows of what the curve replaces and of curves whose arm is not kept, and the
    ids of the curve arms that enter, in table order.
    """
    from lmsbayes.model.curve_arms import evidence_label

    by_id = {c.arm_id: c for c in curves}
    ids = kept["arm_id"].astype(str)
    used = [a for a in ids if a in by_id]
    rows = []
    kept = kept.copy()
    for a in used:
        label = evidence_label(by_id[a].n)
        i = int(np.flatnonzero(ids.to_numpy() == a)[0])
        if np.isfinite(float(kept.at[i, "pfs_median_m"])):
            rows.append((a, np.nan, f"median: {label} used instead (one source per arm)"))
        for r in rates[rates["arm_id"] == a].itertuples() if len(rates) else ():
            rows.append((a, float(r.t), f"rate: {label} used instead (one source per arm)"))
    for col in ("pfs_median_m", "pfs_median_lo", "pfs_median_hi"):
        kept.loc[ids.isin(used).to_numpy(), col] = np.nan
    if len(rates):
        rates = rates[~rates["arm_id"].isin(used)]
    for c in curves:
        if c.arm_id not in set(ids):
            rows.append(
                (c.arm_id, np.nan, f"{evidence_label(c.n)} not used: the arm does not enter")
            )
    excl = pd.DataFrame(rows, columns=["arm_id", "landmark", "reason"])
    return kept, rates, excl, used


def _with_curve_arms(kept, obs, terms, const, obs_excl, curves, used):
    """Arm order with the curve arms, terms re-numbered to it, and the curve rows."""
    with_obs = list(dict.fromkeys(obs["arm_id"]))
    present = set(with_obs) | set(used)
    arm_ids = [a for a in dict.fromkeys(kept["arm_id"].astype(str)) if a in present]
    pos = pd.Index(arm_ids)
    if len(terms):  # terms were numbered by position among the arms with observations
        terms = terms.copy()
        terms["comp"] = pos.get_indexer(np.asarray(with_obs, dtype=object)[terms["comp"]])
    full = np.zeros(len(arm_ids))
    if len(const):
        full[pos.get_indexer(with_obs)] = const
    # a curve arm has no median or rate left: that is no reason to exclude it
    none = "no median and no reported rate"
    obs_excl = obs_excl[~(obs_excl["arm_id"].isin(used) & (obs_excl["reason"] == none))]
    by_id = {c.arm_id: c for c in curves}
    parts = [by_id[a].rows.assign(arm_id=a) for a in arm_ids if a in by_id]
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return arm_ids, terms, full, obs_excl.reset_index(drop=True), rows


def _curve_sha(sha, curves) -> str:
    if not curves:
        return sha
    from lmsbayes.model.curve_arms import data_sha256

    return data_sha256(sha, curves)


def _curve_summary(curves, used) -> pd.DataFrame:
    from lmsbayes.model.curve_arms import summary

    return summary(curves, set(used)) if curves else pd.DataFrame()


def _survival_obs(spec, kept, rates, family):
    from lmsbayes.model.observations import survival_observations

    levels = spec.data.evidence_levels if len(spec.data.evidence_levels) < 4 else None
    rates = rates[rates["arm_id"].isin(kept["arm_id"])] if len(rates) else rates
    obs, terms, const, excl = survival_observations(
        kept,
        rates,
        curve=family,
        t_ref=spec.model.t_ref,
        correlated=spec.model.within_arm_correlation,
        evidence_levels=levels,
    )
    return obs, terms, const, excl


def _landmark_obs(spec, kept, rates, family):
    """Observations of the per-landmark and joint families: one per (arm, landmark)."""
    from lmsbayes.data import long_table

    landmarks = tuple(float(x) for x in spec.landmarks)
    long = (
        _long(long_table, kept, rates, landmarks, spec.data.derive_from_median)
        if len(kept)
        else None
    )
    if long is None or not long["included"].any():
        return pd.DataFrame(), pd.DataFrame(columns=["arm_id", "landmark", "reason"]), landmarks
    obs_excl = long.loc[~long["included"], ["arm_id", "landmark", "exclusion_reason"]].rename(
        columns={"exclusion_reason": "reason"}
    )
    obs = long[long["included"]].reset_index(drop=True)
    obs["landmark_idx"] = [landmarks.index(float(x)) for x in obs["landmark"]]
    if family.joined:  # each landmark conditional on the one before
        ids = list(dict.fromkeys(obs["arm_id"]))
        obs["arm_idx"] = pd.Index(ids).get_indexer(obs["arm_id"])
        obs, joint_excl = _joint_observations(obs, landmarks)
        obs_excl = pd.concat([obs_excl, joint_excl], ignore_index=True)
        obs = obs.drop(columns=["arm_idx"]).reset_index(drop=True)
    keep = [
        "arm_id",
        "landmark",
        "landmark_idx",
        "rate",
        "rate_source",
        "se_logit",
        "se_method",
        "n_eff",
        "y_eff",
        "n",
        *(_JOINT_COLUMNS if family.joined else ()),
    ]
    return obs[keep], obs_excl.reset_index(drop=True), landmarks


def _long(long_table, kept, rates, landmarks, derive):
    """long_table on the kept arms, whichever table API lmsbayes.data offers."""
    try:
        from lmsbayes.data import Trials  # the two-table API
    except ImportError:
        return long_table(kept, landmarks, derive_from_median=derive)
    sub = Trials(
        arms=kept,
        rates=rates[rates["arm_id"].isin(kept["arm_id"])] if len(rates) else rates,
        sha256="",
        files=(),
    )
    return long_table(sub, landmarks, derive_from_median=derive)


def _prepare_binomial(spec: ModelSpec, tables: _Tables, family) -> ModelData:
    """A plain (study, r, n) table: one observation per study arm."""
    t = tables.arms
    if not family.binomial_table:
        raise SpecError(
            [
                f"[model] likelihood {spec.model.likelihood!r} needs the LMS tables (medians and "
                "landmark rates), and the data are a (study, r, n) table: fit it with the spec "
                "'binomial' (or a spec whose likelihood is 'logit-binomial' or 'logit-normal')"
            ],
            spec.name,
        )
    unknown = sorted(set(spec.data.exclude_arms) - set(t["study"]))
    if unknown:
        raise SpecError([f"[data] exclude_arms: no study {a!r}" for a in unknown], spec.name)
    if spec.random_effects.tau_by == "line" and "line" not in t:
        raise SpecError(["[random_effects] tau_by = 'line' needs a 'line' column"], spec.name)
    drop = t["study"].isin(spec.data.exclude_arms)
    excl = pd.DataFrame(
        {
            "arm_id": t.loc[drop, "study"].to_numpy(),
            "landmark": np.nan,
            "reason": "listed in [data] exclude_arms",
        }
    )
    t = t[~drop].reset_index(drop=True)
    if t.empty:
        raise SpecError(["no study remains after [data] exclude_arms"], spec.name)
    arms = t.copy()
    arms.index = pd.Index(arms["study"].astype(str).to_numpy(), name="arm")
    arms["label"] = arms["study"].astype(str)
    arms["trial"] = arms["trial"].astype(str) if "trial" in arms else arms["label"]
    if "year" in arms:
        arms["year"] = pd.to_numeric(arms["year"], errors="coerce").astype("Int64")
    r, n = t["r"].to_numpy(float), t["n"].to_numpy(float)
    rate = r / n
    rate_c = np.where((r == 0) | (r == n), (r + 0.5) / (n + 1), rate)
    obs = pd.DataFrame(
        {
            "arm_id": arms.index.to_numpy(),
            "landmark": np.nan,
            "landmark_idx": 0,
            "rate": rate,
            "rate_source": "reported",
            "se_logit": 1 / np.sqrt(n * rate_c * (1 - rate_c)),
            "se_method": "binomial",
            "n_eff": t["n"].to_numpy(),
            "y_eff": t["r"].to_numpy(),
            "n": t["n"].to_numpy(),
        }
    )
    return _finish(
        spec, family, arms, obs, pd.DataFrame(), np.zeros(0), excl, (), tables.sha256, "binomial"
    )


def _finish(
    spec,
    family,
    arms,
    obs,
    terms,
    const,
    excluded,
    landmarks,
    sha,
    table,
    curve_rows=None,
    curve_arms=None,
) -> ModelData:
    """Indices, design matrix, strata and checks common to every table."""
    arm_ids = list(arms.index)
    obs = obs.reset_index(drop=True).copy()
    obs["arm_idx"] = pd.Index(arm_ids).get_indexer(obs["arm_id"])
    curve_rows = pd.DataFrame() if curve_rows is None else curve_rows.reset_index(drop=True)
    if len(curve_rows):
        curve_rows["arm_idx"] = pd.Index(arm_ids).get_indexer(curve_rows["arm_id"])
    L = len(landmarks)
    per_lm = family.per_landmark and L > 0
    obs["k_idx"] = obs["landmark_idx"].astype(np.int64) if (L > 0 and "landmark_idx" in obs) else 0
    kz = L if per_lm else 1
    obs["comp"] = obs["arm_idx"] * kz + (obs["k_idx"] if per_lm else 0)
    family.add_columns(obs)
    if len(terms):
        # terms were numbered by arm order among arms with observations: the same order as arms
        terms = terms.copy()
    coding = _coding(spec, arms, table)
    X, Xu, latent = design_matrices(arms, coding)
    problems = []
    for j, (label, _) in enumerate(coding):
        col = X[np.setdiff1d(np.arange(len(arms)), latent), j] if latent.size else X[:, j]
        if latent.size and np.any(Xu[:, j] != 0):
            col = X[np.setdiff1d(np.arange(len(arms)), latent), j]
        if len(col) < 2 or np.ptp(col) == 0:
            problems.append(
                f"[model] covariates: {label!r} does not vary in the {len(arms)} selected arms; "
                "remove it or widen the [data] filter"
            )
    if problems:
        raise SpecError(problems, spec.name)
    if spec.random_effects.tau_by == "line":
        strata = tuple(sorted(set(arms["line"].astype(str))))
        stratum_idx = np.array([strata.index(v) for v in arms["line"].astype(str)], dtype=np.int64)
    else:
        strata, stratum_idx = ("all",), np.zeros(len(arms), dtype=np.int64)
    if family.has_shape and spec.model.shape == "by_line":
        shape_groups = tuple(sorted(set(arms["line"].astype(str))))
        shape_idx = np.array(
            [shape_groups.index(v) for v in arms["line"].astype(str)], dtype=np.int64
        )
    elif family.has_shape:
        shape_groups, shape_idx = ("all",), np.zeros(len(arms), dtype=np.int64)
    else:
        shape_groups, shape_idx = (), np.zeros(0, dtype=np.int64)
    if len(curve_rows) and spec.model.curve_shape == "own":  # curve arms: a shape of their own
        own = np.unique(curve_rows["arm_idx"].to_numpy(np.int64))
        shape_groups = (*shape_groups, CURVE_SHAPE_GROUP)
        shape_idx = shape_idx.copy()
        shape_idx[own] = len(shape_groups) - 1
    trials = tuple(dict.fromkeys(arms["trial"].astype(str)))
    trial_idx = np.array([trials.index(v) for v in arms["trial"].astype(str)], dtype=np.int64)
    groups, group_idx = (), np.zeros(0, dtype=np.int64)
    if group_column(spec):
        try:
            groups, group_idx = group_index(arms, group_column(spec))
        except ValueError as exc:
            raise SpecError([str(exc)], spec.name) from None
    for what, on in (
        ("drift", spec.model.drift != "none"),
        ("age discount", spec.random_effects.age_discount),
    ):
        if on and ("year" not in arms or arms["year"].isna().any()):
            raise SpecError([f"{what}: every included arm needs a publication year"], spec.name)
    if family.correlated_terms:
        comp_const = np.asarray(const, float)
    else:
        comp_const = np.zeros(len(arms) * kz)
    return ModelData(
        family=family,
        arms=arms,
        obs=obs,
        excluded=excluded.reset_index(drop=True),
        landmarks=landmarks,
        coding=tuple(coding),
        X=X,
        Xu=Xu,
        latent=latent,
        strata=strata,
        stratum_idx=stratum_idx,
        data_sha256=sha,
        uterine_centre=spec.model.uterine_centre,
        shape_groups=shape_groups,
        shape_idx=shape_idx,
        trials=trials,
        trial_idx=trial_idx,
        groups=groups,
        group_idx=group_idx,
        terms=terms,
        comp_const=comp_const,
        t_ref=spec.model.t_ref,
        table=table,
        curve_rows=curve_rows,
        curve_arms=pd.DataFrame() if curve_arms is None else curve_arms,
    )


# ---------------------------------------------------------------------------- joint landmarks

_JOINT_COLUMNS = ("prev_landmark_idx", "has_prev", "n_cond", "y_cond")


def conditional_counts(obs: pd.DataFrame) -> pd.DataFrame:
    """Binomial data of the joint-landmarks likelihood, one row per observation.

    An arm's first observed landmark is binomial as usual, ``(n_cond,
    y_cond) = (n_eff, y_eff)``. At each later landmark t, with the arm's
    previous observed landmark t' and its rate S', the observation is the
    conditional survival S(t) / S(t'): of ``n_cond = round(n_eff[t] S')``
    patients progression-free at t', ``y_cond = y_eff[t]`` are still
    progression-free at t. When both landmarks have the arm's n as effective
    size this is exactly the multinomial likelihood of (progressed before t',
    between t' and t, progression-free at t).

    Parameters
    ----------
    obs : pandas.DataFrame
        Columns ``arm_idx``, ``landmark_idx`` (landmarks in increasing order),
        ``rate``, ``n_eff``, ``y_eff``.

    Returns
    -------
    pandas.DataFrame
        Same index: ``prev_landmark_idx``, ``has_prev``, ``n_cond``, ``y_cond``, ``prev_rate``.
    """
    order = obs.sort_values(["arm_idx", "landmark_idx"], kind="stable")
    first = order["arm_idx"].ne(order["arm_idx"].shift())
    prev_lm = order["landmark_idx"].shift().where(~first, order["landmark_idx"]).astype(np.int64)
    prev_rate = order["rate"].shift().where(~first).astype(float)
    n_eff, y_eff = order["n_eff"].astype(np.int64), order["y_eff"].astype(np.int64)
    at_risk = np.floor(n_eff.to_numpy(float) * prev_rate.to_numpy() + 0.5)
    out = pd.DataFrame(
        {
            "prev_landmark_idx": prev_lm,
            "has_prev": (~first).astype(np.float64),
            "n_cond": np.where(first, n_eff, np.nan_to_num(at_risk)).astype(np.int64),
            "y_cond": y_eff,
            "prev_rate": prev_rate,
        },
        index=order.index,
    )
    return out.loc[obs.index]


def _joint_observations(
    obs: pd.DataFrame, landmarks: tuple[float, ...]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add the conditional counts; exclude (with reasons) what the joint likelihood cannot use."""
    dropped = []
    while True:
        cond = conditional_counts(obs)
        up = cond["prev_rate"].to_numpy() < obs["rate"].to_numpy()  # NaN compares False
        empty = (cond["has_prev"].to_numpy() == 1) & (cond["n_cond"].to_numpy() < 1)
        if not (up | empty).any():
            break
        # one at a time, the earliest in time first: a removal changes the next landmark's
        # predecessor
        i = obs.index[up | empty][0]
        r = cond.loc[i]
        prev_t = landmarks[int(r["prev_landmark_idx"])]
        if up[obs.index.get_loc(i)]:
            why = (
                f"joint-cloglog: rate {obs.at[i, 'rate']:.3g} at {obs.at[i, 'landmark']:g} m "
                "exceeds the rate "
                f"{r['prev_rate']:.3g} at {prev_t:g} m (survival cannot increase)"
            )
        else:
            why = (
                f"joint-cloglog: no effective patient at risk after {prev_t:g} m "
                f"(n_eff x S = {obs.at[i, 'n_eff'] * r['prev_rate']:.2g})"
            )
        dropped.append(
            {"arm_id": obs.at[i, "arm_id"], "landmark": obs.at[i, "landmark"], "reason": why}
        )
        obs = obs.drop(index=i)
    cond = conditional_counts(obs)
    obs = pd.concat([obs, cond[list(_JOINT_COLUMNS)]], axis=1)
    return obs, pd.DataFrame(dropped, columns=["arm_id", "landmark", "reason"])
