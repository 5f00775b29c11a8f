"""The model, defined once from (spec, data): what both engines consume.

``prepare_data(spec, data)`` is pure pandas: it applies the spec's data
filter, builds the observations of the spec's likelihood family and the
design matrix, and records every exclusion with its reason.
:class:`Model` is the one model definition: the parameter layout with its
priors, the linear predictor, and the log-likelihood terms, written against an
``ops`` namespace so that the exact engine (numpy) and the NUTS engine
(PyTensor) evaluate the same algebra.

The model::

    eta[i, t] = alpha[t] + x_i @ beta[t] + tau[stratum(i), t] * z[i, t]    (per-landmark families)
    eta[i]    = alpha    + x_i @ beta    + tau[stratum(i)] * z[i]          (one curve per arm)

with z ~ Normal(0, 1) (non-centred), x_i = X_i + (u_i - centre) Xu_i where an
arm's uterine fraction u_i is latent (Beta(1, 1)), and the likelihood of the
spec's family (lmsbayes.likelihoods).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from lmsbayes import likelihoods as lik
from lmsbayes.covariates import (
    LMS_COVARIATES,
    Covariate,
    codings_from_json,
    codings_to_json,
    design_matrices,
    expand_terms,
)
from lmsbayes.spec import ModelSpec, Prior, SpecError
from lmsbayes.structure import (
    age_decades,
    drift_basis,
    group_column,
    group_index,
)

__all__ = ["ModelData", "Model", "Param", "prepare_data", "structure_key", "conditional_counts"]


# ============================================================================ data


@dataclass(frozen=True)
class ModelData:
    """Everything the model needs, with named rows; produced by :func:`prepare_data`.

    Attributes
    ----------
    family : str
        The likelihood (a key of :data:`lmsbayes.likelihoods.FAMILIES`).
    arms : pandas.DataFrame
        Included arms (index ``arm``): label, trial, year, n and the covariate
        source columns (LMS table: line, treatment_class, population, evidence,
        design, uterine_fraction).
    obs : pandas.DataFrame
        One row per observation, with ``arm_idx``, ``k_idx`` (landmark or 0),
        ``comp`` (random-effect component) and the family's columns.
    terms : pandas.DataFrame
        Survival only: the precision entries of each arm's Gaussian likelihood.
    comp_const : ndarray
        Per component: constant added to its log-likelihood (survival normalising constants).
    excluded : pandas.DataFrame
        Every arm or observation left out, with its reason (``landmark`` NaN
        for a whole arm or a median).
    landmarks : tuple of float
        The landmark dim of per-landmark and joint families; () otherwise.
    coding : tuple
        The design columns: (label, main effects) pairs (lmsbayes.covariates).
    X, Xu : ndarray (arm, covariate)
        Design matrix at known values, and its slope in a latent fraction.
    latent : ndarray of int
        Arms with a latent uterine fraction.
    strata, stratum_idx
        Heterogeneity strata and each arm's stratum.
    shape_groups, shape_idx
        Survival shape groups and each arm's group.
    trials, trial_idx
        Trials (arms of one randomised trial share one) and each arm's trial.
    groups, group_idx
        Groups of the spec's group effect (``[random_effects] group``: trials or
        regimens) and each arm's group; empty without one (lmsbayes.structure).
    uterine_centre : float
    data_sha256 : str
    curve : str
        Survival curve family ('' for other likelihoods).
    t_ref : float
    table : {'lms', 'binomial'}
        The kind of input table.
    """

    family: str
    arms: pd.DataFrame
    obs: pd.DataFrame
    excluded: pd.DataFrame
    landmarks: tuple[float, ...]
    coding: tuple
    X: np.ndarray
    Xu: np.ndarray
    latent: np.ndarray
    strata: tuple[str, ...]
    stratum_idx: np.ndarray
    data_sha256: str
    uterine_centre: float = 0.5
    shape_groups: tuple[str, ...] = ()
    shape_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    trials: tuple[str, ...] = ()
    trial_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    groups: tuple[str, ...] = ()
    group_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    terms: pd.DataFrame = field(default_factory=pd.DataFrame)
    comp_const: np.ndarray = field(default_factory=lambda: np.zeros(0))
    curve: str = ""
    t_ref: float = 6.0
    table: str = "lms"

    @property
    def covariates(self) -> tuple[str, ...]:
        """Labels of the design columns."""
        return tuple(label for label, _ in self.coding)

    @property
    def n_arms(self) -> int:
        return len(self.arms)

    @property
    def latent_uterine(self) -> np.ndarray:
        return self.latent

    def take(self, positions, X: np.ndarray | None = None, labels=None) -> ModelData:
        """The data of the arms at ``positions`` (repeats allowed), re-indexed.

        ``X`` replaces their design rows (then no arm is latent), ``labels``
        their arm ids. Used by the exact engine (an arm at each node of its
        latent fraction) and by validation (held-out arms).
        """
        import dataclasses

        pos = np.asarray(positions, dtype=np.int64)
        kz = self.Kz
        arms = self.arms.iloc[pos].copy()
        if labels is not None:
            arms.index = pd.Index(list(labels), name="arm")
        arm_idx = self.obs["arm_idx"].to_numpy(np.int64)
        # observations of each arm are contiguous, in arm order
        counts = np.bincount(arm_idx, minlength=self.n_arms)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        n_new = counts[pos]
        new_start = (
            np.concatenate([[0], np.cumsum(n_new)[:-1]]) if len(pos) else np.zeros(0, np.int64)
        )
        rows = (
            np.concatenate([np.arange(starts[a], starts[a] + counts[a]) for a in pos])
            if len(pos)
            else np.zeros(0, np.int64)
        )
        copy_of_row = np.repeat(np.arange(len(pos)), n_new)
        obs = self.obs.iloc[rows].reset_index(drop=True)
        obs["arm_idx"] = copy_of_row
        obs["comp"] = copy_of_row * kz + (
            self.obs["comp"].to_numpy(np.int64)[rows] - pos[copy_of_row] * kz
        )
        terms = self.terms
        if len(self.terms):
            tcomp = self.terms["comp"].to_numpy(np.int64)
            tcounts = np.bincount(tcomp, minlength=self.n_arms)
            tstarts = np.concatenate([[0], np.cumsum(tcounts)[:-1]])
            trows = np.concatenate([np.arange(tstarts[a], tstarts[a] + tcounts[a]) for a in pos])
            tcopy = np.repeat(np.arange(len(pos)), tcounts[pos])
            shift = new_start[tcopy] - starts[pos[tcopy]]
            terms = pd.DataFrame(
                {
                    "first": self.terms["first"].to_numpy(np.int64)[trows] + shift,
                    "second": self.terms["second"].to_numpy(np.int64)[trows] + shift,
                    "precision": self.terms["precision"].to_numpy(float)[trows],
                    "comp": tcopy,
                }
            )
        if X is None:
            Xn, Xun = self.X[pos], self.Xu[pos]
            lat = np.flatnonzero(np.isin(pos, self.latent))
        else:
            Xn, Xun, lat = (
                np.asarray(X, float),
                np.zeros_like(X, dtype=float),
                np.zeros(0, dtype=np.int64),
            )
        const = (
            self.comp_const.reshape(self.n_arms, kz)[pos].ravel()
            if len(self.comp_const)
            else self.comp_const
        )
        return dataclasses.replace(
            self,
            arms=arms,
            obs=obs,
            terms=terms,
            X=Xn,
            Xu=Xun,
            latent=lat,
            stratum_idx=self.stratum_idx[pos],
            shape_idx=self.shape_idx[pos] if len(self.shape_idx) else self.shape_idx,
            trial_idx=self.trial_idx[pos] if len(self.trial_idx) else self.trial_idx,
            group_idx=self.group_idx[pos] if len(self.group_idx) else self.group_idx,
            comp_const=const,
        )

    @property
    def Kz(self) -> int:
        """Random effects per arm: one per landmark for per-landmark families, else one."""
        from lmsbayes.likelihoods import FAMILIES

        return len(self.landmarks) if (FAMILIES[self.family].per_landmark and self.landmarks) else 1

    # --- persistence -----------------------------------------------------------------

    def to_xarray(self):
        """The inputs as an xarray Dataset (saved with a fit)."""
        import xarray as xr

        def plain(df: pd.DataFrame) -> pd.DataFrame:
            # netCDF has no nullable integers or pandas strings: floats (NaN) and str
            out = df.copy()
            for c in out.columns:
                if out[c].dtype.kind in "fiub" and not isinstance(
                    out[c].dtype, pd.api.extensions.ExtensionDtype
                ):
                    continue
                if pd.api.types.is_numeric_dtype(out[c].dtype):
                    out[c] = out[c].astype("float64")
                else:
                    out[c] = out[c].astype(str).to_numpy(dtype=object)
            return out

        arms = plain(self.arms)
        arms.index = pd.Index(list(self.arms.index), name="arm", dtype=object)
        parts = [xr.Dataset.from_dataframe(arms)]
        for name, df in (("obs", self.obs), ("excluded", self.excluded), ("terms", self.terms)):
            d = plain(df.reset_index(drop=True)).rename(columns=lambda c, n=name: f"{n}_{c}")
            d.index.name = name
            parts.append(xr.Dataset.from_dataframe(d))
        ds = xr.merge(parts)
        cov = list(self.covariates)
        ds["design_X"] = (("arm", "covariate"), self.X)
        ds["design_Xu"] = (("arm", "covariate"), self.Xu)
        ds = ds.assign_coords(covariate=cov)
        ds["comp_const"] = ("comp", self.comp_const)
        ds.attrs.update(
            family=self.family,
            landmarks=list(self.landmarks),
            coding=codings_to_json(self.coding),
            latent=[int(i) for i in self.latent],
            strata=list(self.strata),
            stratum_idx=[int(i) for i in self.stratum_idx],
            shape_groups=list(self.shape_groups),
            shape_idx=[int(i) for i in self.shape_idx],
            trials=list(self.trials),
            trial_idx=[int(i) for i in self.trial_idx],
            groups=list(self.groups),
            group_idx=[int(i) for i in self.group_idx],
            uterine_centre=self.uterine_centre,
            data_sha256=self.data_sha256,
            curve=self.curve,
            t_ref=self.t_ref,
            table=self.table,
            inputs_version=2,
        )
        return ds

    @classmethod
    def from_xarray(cls, ds) -> ModelData:
        """Inverse of :meth:`to_xarray`."""
        a = ds.attrs

        def frame(prefix: str, dim: str) -> pd.DataFrame:
            names = [v for v in ds.data_vars if ds[v].dims == (dim,) and v.startswith(prefix)]
            if not names:
                return pd.DataFrame()
            return (
                ds[names]
                .to_dataframe()
                .rename(columns=lambda c: c[len(prefix) :])
                .reset_index(drop=True)
            )

        arm_vars = [v for v in ds.data_vars if ds[v].dims == ("arm",)]
        arms = ds[arm_vars].to_dataframe()
        arms.index = pd.Index([str(i) for i in arms.index], name="arm")
        for c in ("year", "n"):
            if c in arms:
                arms[c] = arms[c].round().astype("Int64")
        obs = frame("obs_", "obs")
        for c in ("arm_idx", "k_idx", "comp", "landmark_idx", "prev_idx"):
            if c in obs:
                obs[c] = obs[c].astype(np.int64)
        terms = frame("terms_", "terms")
        for c in ("first", "second", "comp"):
            if c in terms:
                terms[c] = terms[c].astype(np.int64)

        def ints(key):
            return (
                np.asarray(np.atleast_1d(a.get(key, [])), dtype=np.int64)
                if _str_tuple(a.get(key, []))
                else np.zeros(0, np.int64)
            )  # noqa: E731

        return cls(
            family=str(a["family"]),
            arms=arms,
            obs=obs,
            excluded=frame("excluded_", "excluded"),
            landmarks=tuple(
                float(v) for v in np.atleast_1d(a.get("landmarks", [])) if str(v) != ""
            ),
            coding=tuple(codings_from_json(str(a["coding"]))),
            X=np.asarray(ds["design_X"].values, float).reshape(len(arms), -1),
            Xu=np.asarray(ds["design_Xu"].values, float).reshape(len(arms), -1),
            latent=ints("latent"),
            strata=_str_tuple(a["strata"]),
            stratum_idx=ints("stratum_idx"),
            shape_groups=_str_tuple(a.get("shape_groups", [])),
            shape_idx=ints("shape_idx"),
            trials=_str_tuple(a.get("trials", [])),
            trial_idx=ints("trial_idx"),
            groups=_str_tuple(a.get("groups", [])),
            group_idx=ints("group_idx"),
            terms=terms,
            comp_const=np.asarray(ds["comp_const"].values, float)
            if "comp_const" in ds
            else np.zeros(0),
            uterine_centre=float(a.get("uterine_centre", 0.5)),
            data_sha256=str(a["data_sha256"]),
            curve=str(a.get("curve", "")),
            t_ref=float(a.get("t_ref", 6.0)),
            table=str(a.get("table", "lms")),
        )


def _se_shape_power(obs: pd.DataFrame) -> np.ndarray:
    """Per survival observation, the power of the shape dividing its sd (0 where the sd is data).

    Fits saved before the column existed used fixed standard errors throughout: zeros.
    """
    if "se_shape_power" in obs:
        return obs["se_shape_power"].to_numpy(float)
    return np.zeros(len(obs))


def _str_tuple(attr) -> tuple[str, ...]:
    """A list attribute read back from netCDF (an empty list may come back as '')."""
    return tuple(str(v) for v in np.atleast_1d(attr) if str(v))


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
    missing = [c for c in _BINOMIAL_REQUIRED if c not in data]
    if missing:
        raise SpecError(
            [
                f"the table has no column {missing[0]!r}: a binomial table needs columns "
                f"{list(_BINOMIAL_REQUIRED)} (one row per study arm), an LMS table the columns of "
                "lmsbayes.load_trials"
            ],
            "data",
        )
    return _Tables("binomial", _check_binomial(data), pd.DataFrame(), sha)


def _num(v) -> float:
    return float(v) if v is not None and pd.notna(v) else math.nan


def _check_binomial(table: pd.DataFrame) -> pd.DataFrame:
    """Validate a plain (study, r, n) table; one error naming row, column and value."""
    where = table.attrs.get("path", "data")
    problems = []
    t = table.reset_index(drop=True).copy()
    for col in ("r", "n"):
        vals = pd.to_numeric(t[col], errors="coerce")
        for i in np.flatnonzero(
            vals.isna() | ~np.isfinite(vals.fillna(0)) | (vals.fillna(0) % 1 != 0)
        ):
            problems.append(
                f"{where} row {i + 2}, column {col!r}: must be a whole number, got {t.at[i, col]!r}"
            )
        t[col] = vals
    if not problems:
        for i in np.flatnonzero(t["n"] < 1):
            problems.append(f"{where} row {i + 2}, column 'n': must be >= 1, got {t.at[i, 'n']!r}")
        for i in np.flatnonzero((t["r"] < 0) | (t["r"] > t["n"])):
            problems.append(
                f"{where} row {i + 2}, column 'r': must be in [0, n = {t.at[i, 'n']:g}], got {t.at[i, 'r']!r}"
            )
    study = t["study"].astype(str)
    for i in np.flatnonzero(study.duplicated()):
        problems.append(
            f"{where} row {i + 2}, column 'study': duplicate study {study[i]!r} (one row per study arm)"
        )
    if problems:
        raise SpecError(problems, where)
    t["study"] = study
    t["r"] = t["r"].astype(np.int64)
    t["n"] = t["n"].astype(np.int64)
    return t


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
                    problems.append(
                        f"[covariates.{name}] column {d.column!r} must be numeric and complete, "
                        f"got {arms[d.column].iloc[i]!r} (row {i + 2})"
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
            f"evidence level of the arm's numbers not in [data] evidence_levels {list(f.evidence_levels)}",
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
    family = lik.FAMILIES[spec.model.likelihood]
    if tables.kind == "binomial":
        return _prepare_binomial(spec, tables, family)
    t = tables.arms
    if not spec.landmarks:
        raise SpecError(
            ["landmarks: the LMS table needs at least one landmark (months)"], spec.name
        )
    reasons = _filter_lms(spec, t)
    arm_excl = pd.DataFrame(
        {
            "arm_id": t.loc[reasons != "", "arm_id"].to_numpy(),
            "landmark": np.nan,
            "reason": reasons[reasons != ""].to_numpy(),
        }
    )
    kept = t[reasons == ""].reset_index(drop=True)
    if spec.survival:
        obs, terms, const, obs_excl = _survival_obs(spec, kept, tables.rates)
        landmarks: tuple[float, ...] = ()
    else:
        obs, obs_excl, landmarks = _landmark_obs(spec, kept, tables.rates, family)
        terms, const = pd.DataFrame(), np.zeros(0)
    if obs.empty:
        raise SpecError(
            ["no observation remains after the [data] filter and the observation rules"], spec.name
        )
    arm_ids = list(dict.fromkeys(obs["arm_id"]))  # file order, arms with >= 1 observation
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
    for name, d in spec.covariates:  # a user's own covariate columns
        if d.column in src and d.column not in arms:
            arms[d.column] = src[d.column].to_numpy()
    gcol = group_column(spec)
    if gcol and gcol in src and gcol not in arms:  # the group effect's column (e.g. regimen)
        arms[gcol] = src[gcol].to_numpy()
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
        tables.sha256,
        "lms",
    )


def _survival_obs(spec, kept, rates):
    from lmsbayes.observations import survival_observations

    levels = spec.data.evidence_levels if len(spec.data.evidence_levels) < 4 else None
    rates = rates[rates["arm_id"].isin(kept["arm_id"])] if len(rates) else rates
    obs, terms, const, excl = survival_observations(
        kept,
        rates,
        curve=spec.model.curve,
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
    if spec.joint:
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
        *(_JOINT_COLUMNS if spec.joint else ()),
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
    if spec.survival or spec.joint:
        raise SpecError(
            [
                f"[model] likelihood {spec.model.likelihood!r} needs the LMS tables (medians and "
                "landmark rates); a (study, r, n) table takes 'logit-binomial' or 'logit-normal'"
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


def _finish(spec, family, arms, obs, terms, const, excluded, landmarks, sha, table) -> ModelData:
    """Indices, design matrix, strata and checks common to every table."""
    arm_ids = list(arms.index)
    obs = obs.reset_index(drop=True).copy()
    obs["arm_idx"] = pd.Index(arm_ids).get_indexer(obs["arm_id"])
    L = len(landmarks)
    per_lm = family.per_landmark and L > 0
    obs["k_idx"] = obs["landmark_idx"].astype(np.int64) if (L > 0 and "landmark_idx" in obs) else 0
    kz = L if per_lm else 1
    obs["comp"] = obs["arm_idx"] * kz + (obs["k_idx"] if per_lm else 0)
    if family.name == "joint-cloglog":
        obs["prev_idx"] = obs["prev_landmark_idx"].astype(np.int64)
    _add_family_columns(family, obs)
    if family.name == "survival" and len(terms):
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
    if spec.survival and spec.model.shape == "by_line":
        shape_groups = tuple(sorted(set(arms["line"].astype(str))))
        shape_idx = np.array(
            [shape_groups.index(v) for v in arms["line"].astype(str)], dtype=np.int64
        )
    elif spec.survival:
        shape_groups, shape_idx = ("all",), np.zeros(len(arms), dtype=np.int64)
    else:
        shape_groups, shape_idx = (), np.zeros(0, dtype=np.int64)
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
    if family.name == "survival":
        comp_const = np.asarray(const, float)
    else:
        comp_const = np.zeros(len(arms) * kz)
    return ModelData(
        family=family.name,
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
        curve=spec.model.curve if spec.survival else "",
        t_ref=spec.model.t_ref,
        table=table,
    )


def _add_family_columns(family, obs: pd.DataFrame) -> None:
    """The likelihood's own data columns (y, n, se, log_choose ...)."""
    if family.name in ("logit-binomial", "joint-cloglog"):
        nk, yk = ("n_cond", "y_cond") if family.name == "joint-cloglog" else ("n_eff", "y_eff")
        n = obs[nk].astype(np.float64).to_numpy()
        y = obs[yk].astype(np.float64).to_numpy()
        obs["lik_n"], obs["lik_y"] = n, y
        obs["log_choose"] = (
            special.gammaln(n + 1) - special.gammaln(y + 1) - special.gammaln(n - y + 1)
        )
    elif family.name == "logit-normal":
        rate = obs["rate"].to_numpy(float)
        n_known = obs["n"].astype("float64").to_numpy()
        size = np.where(np.isnan(n_known), obs["n_eff"].astype(float), n_known)
        # logit of 0 or 1 is infinite: the 0.5-corrected rate for the normal likelihood only
        rate_c = np.where((rate <= 0) | (rate >= 1), (rate * size + 0.5) / (size + 1), rate)
        obs["lik_y"] = np.log(rate_c / (1 - rate_c))
        obs["lik_se"] = obs["se_logit"].to_numpy(float)
    elif family.name == "survival":
        obs["lik_y"] = obs["y"].to_numpy(float)


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
        # one at a time, the earliest in time first: a removal changes the next landmark's predecessor
        i = obs.index[up | empty][0]
        r = cond.loc[i]
        prev_t = landmarks[int(r["prev_landmark_idx"])]
        if up[obs.index.get_loc(i)]:
            why = (
                f"joint-cloglog: rate {obs.at[i, 'rate']:.3g} at {obs.at[i, 'landmark']:g} m exceeds the rate "
                f"{r['prev_rate']:.3g} at {prev_t:g} m (survival cannot increase)"
            )
        else:
            why = f"joint-cloglog: no effective patient at risk after {prev_t:g} m (n_eff x S = {obs.at[i, 'n_eff'] * r['prev_rate']:.2g})"
        dropped.append(
            {"arm_id": obs.at[i, "arm_id"], "landmark": obs.at[i, "landmark"], "reason": why}
        )
        obs = obs.drop(index=i)
    cond = conditional_counts(obs)
    obs = pd.concat([obs, cond[list(_JOINT_COLUMNS)]], axis=1)
    return obs, pd.DataFrame(dropped, columns=["arm_id", "landmark", "reason"])


# ============================================================================ the definition


@dataclass(frozen=True)
class Param:
    """A global parameter block: its dims, prior and unconstraining transform."""

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    prior: Prior
    transform: str  # "none", "log" or "ordered"

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


class Model:
    """The one model definition both engines consume.

    Parameters
    ----------
    spec : ModelSpec
    data : ModelData

    Notes
    -----
    Canonical shapes used by the algebra (engines add leading batch dims):
    ``alpha_c`` (K,), ``beta_c`` (Kb, C), ``tau_c`` (S, Kz), ``shape_c`` (G,),
    with K the columns of the arm-level linear predictor (landmarks of the
    per-landmark and joint families, else 1), Kz the random effects per arm
    (landmarks of per-landmark families, else 1).
    """

    def __init__(self, spec: ModelSpec, data: ModelData) -> None:
        self.spec, self.data = spec, data
        self.family = lik.FAMILIES[data.family]
        L = len(data.landmarks)
        self.per_landmark = self.family.per_landmark and L > 0
        self.K = L if L > 0 else 1
        self.Kz = L if self.per_landmark else 1
        C, S = len(data.covariates), len(data.strata)
        pri = spec.priors
        lm = ("landmark",) if L > 0 else ()
        params = [
            Param(
                "alpha",
                lm,
                (L,) if L else (),
                pri.alpha,
                "ordered" if data.family == "joint-cloglog" and L > 1 else "none",
            )
        ]
        if C:
            dims = ("landmark", "covariate") if self.per_landmark else ("covariate",)
            params.append(
                Param("beta", dims, (L, C) if self.per_landmark else (C,), pri.beta, "none")
            )
        dims = ("stratum", "landmark") if self.per_landmark else ("stratum",)
        params.append(Param("tau", dims, (S, L) if self.per_landmark else (S,), pri.tau, "log"))
        if data.family == "survival" and spec.model.shape != "fixed":
            params.append(
                Param("shape", ("shape_group",), (len(data.shape_groups),), pri.shape, "log")
            )
        # structure beyond one effect per arm (lmsbayes.structure)
        re, mp = spec.random_effects, spec.model
        self.grouped = bool(data.groups)
        if self.grouped:
            params.append(
                Param(
                    "group_tau",
                    ("landmark",) if self.per_landmark else (),
                    (L,) if self.per_landmark else (),
                    pri.group_tau,
                    "log",
                )
            )
        self.drift = mp.drift != "none"
        n_cov = C
        if self.drift:
            J = len(mp.drift_knots)
            params.append(Param("drift_scale", (), (), pri.drift_scale, "log"))
            params.append(
                Param(
                    "drift_step",
                    ("drift_interval",),
                    (J - 1,),
                    Prior("Normal", mu=0.0, sigma=1.0),
                    "none",
                )
            )
            B = drift_basis(data.arms["year"].astype(float), mp.drift_knots, mp.drift_reference)
        else:
            B = np.zeros((data.n_arms, 0))
        #: design with the drift's basis as extra columns (their coefficients: drift_scale * drift_step)
        self.X_design = np.hstack([np.asarray(data.X, float), B])
        self.Xu_design = np.hstack([np.asarray(data.Xu, float), np.zeros_like(B)])
        self.n_cov = n_cov
        self.discounted = bool(re.age_discount)
        if self.discounted:
            params.append(Param("discount", (), (), pri.discount, "log"))
        self.age = (
            age_decades(data.arms["year"].astype(float), re.discount_year)
            if self.discounted
            else np.zeros(data.n_arms)
        )
        self.student_t = re.distribution == "student_t"
        self.params: tuple[Param, ...] = tuple(params)
        obs = data.obs
        self.arm_idx = obs["arm_idx"].to_numpy(np.int64)
        self.obs_comp = obs["comp"].to_numpy(np.int64)
        self.n_comp = data.n_arms * self.Kz
        self.term_comp = (
            data.terms["comp"].to_numpy(np.int64) if data.family == "survival" else self.obs_comp
        )
        self.comp_const = (
            np.zeros(self.n_comp)
            if data.family != "survival"
            else np.asarray(data.comp_const, float)
        )
        if data.family == "survival":
            self.log_t_ref = math.log(spec.model.t_ref)
        #: some survival observation's sd moves with the shape (a median without a CI)
        self.se_by_shape = data.family == "survival" and bool(np.any(_se_shape_power(obs) > 0))
        self.arrays = self.data_arrays(data)

    def data_arrays(self, data: ModelData) -> dict[str, np.ndarray]:
        """Every data array the algebra reads, by name (``pm.Data`` containers in the NUTS engine)."""
        obs = data.obs
        same = data is self.data
        out = {
            "X": self.X_design if same else np.asarray(data.X, float),
            "Xu": self.Xu_design if same else np.asarray(data.Xu, float),
            "stratum_idx": np.asarray(data.stratum_idx, np.int64),
            "arm_idx": obs["arm_idx"].to_numpy(np.int64),
            "k_idx": obs["k_idx"].to_numpy(np.int64),
        }
        for c in ("lik_y", "lik_n", "lik_se", "log_choose", "has_prev", "is_median", "log_t_rel"):
            if c in obs:
                out[c] = obs[c].to_numpy(float)
        if data.family == "joint-cloglog":
            out["prev_idx"] = obs["prev_idx"].to_numpy(np.int64)
        if data.family == "survival":
            out["first"] = data.terms["first"].to_numpy(np.int64)
            out["second"] = data.terms["second"].to_numpy(np.int64)
            out["precision"] = data.terms["precision"].to_numpy(float)
            out["obs_shape_idx"] = np.asarray(data.shape_idx, np.int64)[out["arm_idx"]]
            out["se_shape_power"] = _se_shape_power(obs)
            out["diagonal"] = (out["first"] == out["second"]).astype(float)
        if self.discounted:
            out["age"] = self.age if same else np.zeros(data.n_arms)
        if self.grouped:
            out["group_idx"] = np.asarray(data.group_idx, np.int64)
        return out

    # --- parameter layout -------------------------------------------------------------

    @property
    def coords(self) -> dict[str, list]:
        d = self.data
        out = {
            "arm": list(d.arms.index),
            "covariate": list(d.covariates),
            "stratum": list(d.strata),
        }
        if d.landmarks:
            out["landmark"] = list(d.landmarks)
        if d.shape_groups:
            out["shape_group"] = list(d.shape_groups)
        if d.latent.size:
            out["arm_latent"] = [d.arms.index[i] for i in d.latent]
        if d.groups:
            out["group"] = list(d.groups)
        if self.drift:
            k = self.spec.model.drift_knots
            out["drift_interval"] = [f"{a}-{b}" for a, b in zip(k, k[1:])]
        return out

    @property
    def z_dims(self) -> tuple[str, ...]:
        return ("arm", "landmark") if self.per_landmark else ("arm",)

    @property
    def n_params(self) -> int:
        return sum(p.size for p in self.params)

    def canonical(self, values: dict[str, Any], xp=np) -> dict[str, Any]:
        """Parameters in the canonical shapes of the algebra (leading batch dims kept)."""
        alpha = values["alpha"]
        alpha_c = alpha if self.data.landmarks else alpha[..., None]
        if "beta" in values:
            beta_c = values["beta"] if self.per_landmark else values["beta"][..., None, :]
        else:
            beta_c = None
        tau = values["tau"]
        tau_c = tau if self.per_landmark else tau[..., :, None]
        if self.drift:  # the drift's coefficients follow the covariates' (X_design's extra columns)
            dc = (values["drift_scale"][..., None] * values["drift_step"])[..., None, :]
            if self.per_landmark:
                dc = dc * xp.ones((self.K, 1))
            beta_c = dc if beta_c is None else xp.concatenate([beta_c, dc], axis=-1)
        out = {"alpha": alpha_c, "beta": beta_c, "tau": tau_c}
        if self.grouped:
            gt = values["group_tau"]
            out["group_tau"] = gt if self.per_landmark else gt[..., None]  # (..., Kz)
        if self.discounted:
            out["discount"] = values["discount"]
        if self.data.family == "survival":
            out["shape"] = (
                values["shape"] if "shape" in values else self.spec.model.shape_value * xp.ones(1)
            )
        return out

    # --- the algebra, written once ----------------------------------------------------

    def base_predictor(self, ops, c: dict[str, Any], X, Xu=None, du=None):
        """Arm-level linear predictor without the random effect: (..., arm, K).

        ``X`` (arm, C) is the design at known values; ``Xu`` and ``du``
        (..., arm) add the latent part ``du * Xu`` (du = u - centre).
        """
        eta = c["alpha"][..., None, :]
        if c["beta"] is not None:
            Xb = X if du is None else X + du[..., :, None] * Xu
            eta = eta + ops.sum(Xb[..., :, None, :] * c["beta"][..., None, :, :], axis=-1)
        return eta

    def base_predictor_numpy(self, c: dict[str, Any], X, Xu=None, du=None) -> np.ndarray:
        """:meth:`base_predictor` in numpy by matrix products: (..., arm, K), broadcast over arms.

        ``X @ beta`` for the whole batch is one matrix product (and the
        latent part ``du * (Xu @ beta)`` another) instead of a broadcast
        (batch, arm, K, covariate) product summed: the same algebra, tested
        equal, without the memory of that product for thousands of arms.
        """
        alpha, beta = np.asarray(c["alpha"]), c["beta"]
        n_arms = X.shape[0]
        if beta is None:
            return np.broadcast_to(
                alpha[..., None, :], alpha.shape[:-1] + (n_arms, alpha.shape[-1])
            )
        beta = np.asarray(beta)
        lead, (kb, n_cov) = beta.shape[:-2], beta.shape[-2:]
        flat = beta.reshape(-1, n_cov)

        def times(M):  # M @ beta for every draw: (..., arm, Kb)
            return np.swapaxes((flat @ np.asarray(M, float).T).reshape(lead + (kb, n_arms)), -1, -2)

        xb = times(X)
        if du is not None:
            xb = xb + np.asarray(du)[..., :, None] * times(Xu)
        return alpha[..., None, :] + xb

    def effect_scale(self, c: dict[str, Any], arrays: dict | None = None):
        """Standard deviation of each arm's random effect(s): (..., arm, Kz)."""
        a = self.arrays if arrays is None else arrays
        tau = c["tau"][..., a["stratum_idx"], :]
        if not self.discounted:
            return tau
        d = c["discount"][..., None, None]
        return (tau * tau + d * d * a["age"][:, None]) ** 0.5

    def group_shift(self, c: dict[str, Any], v, arrays: dict | None = None):
        """The group effects of the arms, group_tau v[group(i)]: (..., arm, Kz); v (..., group, Kz)."""
        a = self.arrays if arrays is None else arrays
        return c["group_tau"][..., None, :] * v[..., a["group_idx"], :]

    def z_logpdf(self, z: np.ndarray) -> np.ndarray:
        """Log density of the standardised arm effects (normal, or Student-t(nu))."""
        from scipy import stats

        if self.student_t:
            return stats.t.logpdf(z, self.spec.random_effects.nu)
        return stats.norm.logpdf(z)

    def loglik_terms(self, ops, eta, c: dict[str, Any], arrays: dict | None = None):
        """Log-likelihood terms from the arm-level linear predictor ``eta`` (..., arm, K).

        Sum the terms by :attr:`term_comp` for each component's log-likelihood
        (plus :attr:`comp_const`), or all of them for the total. ``arrays``
        replaces :attr:`arrays` (the NUTS engine passes its data containers).
        """
        a = self.arrays if arrays is None else arrays
        eta_obs = eta[..., a["arm_idx"], a["k_idx"]]
        name = self.data.family
        if name == "logit-binomial":
            return lik.binomial_logit_terms(ops, eta_obs, a["lik_y"], a["lik_n"], a["log_choose"])
        if name == "logit-normal":
            return lik.normal_terms(ops, eta_obs, a["lik_y"], a["lik_se"])
        if name == "joint-cloglog":
            eta_prev = eta[..., a["arm_idx"], a["prev_idx"]]
            return lik.conditional_cloglog_terms(
                ops, eta_obs, eta_prev, a["has_prev"], a["lik_n"], a["lik_y"], a["log_choose"]
            )
        if name == "survival":
            shape = c["shape"][..., a["obs_shape_idx"]]
            mu = lik.survival_mean(
                ops, eta_obs, shape, a["is_median"], a["log_t_rel"], self.log_t_ref, self.data.curve
            )
            if not self.se_by_shape:
                return lik.gaussian_pair_terms(
                    ops, mu, a["lik_y"], a["first"], a["second"], a["precision"]
                )
            # medians without a CI: sd = se / k (the Kaplan-Meier median's asymptotic sd at the arm's curve)
            log_scale = a["se_shape_power"] * ops.log(shape)
            return lik.gaussian_pair_terms(
                ops,
                mu,
                a["lik_y"],
                a["first"],
                a["second"],
                a["precision"],
                log_scale=log_scale,
                diagonal=a["diagonal"],
            )
        raise ValueError(f"unknown likelihood {name!r}")  # pragma: no cover

    def constant(self) -> float:
        """Total of the components' constants."""
        return float(np.sum(self.comp_const))

    # --- numpy conveniences -----------------------------------------------------------

    def log_prior(self, values: dict[str, np.ndarray]) -> np.ndarray:
        """Log prior density of the global parameters (constrained scale), summed per batch."""
        total = 0.0
        for p in self.params:
            x = np.asarray(values[p.name], float)
            lp = p.prior.logpdf(x)
            total = total + lp.reshape(lp.shape[: lp.ndim - len(p.shape)] + (-1,)).sum(-1)
        return total

    def joint_logp(self, values: dict[str, np.ndarray]) -> float:
        """Joint log density of all parameters and latent variables (one point, numpy).

        ``values`` holds the globals and ``z`` (arm[, landmark]), and
        ``uterine_latent`` (arm_latent) when the model has latent fractions.
        This is what both engines' log densities are tested against.
        """
        from scipy import stats

        c = self.canonical({k: np.asarray(v, float) for k, v in values.items()})
        d = self.data
        du = None
        if d.latent.size:
            du = np.zeros(d.n_arms)
            du[d.latent] = np.asarray(values["uterine_latent"], float) - d.uterine_centre
        z = np.asarray(values["z"], float).reshape(d.n_arms, self.Kz)
        a = self.arrays
        eta = self.base_predictor(lik.NUMPY_OPS, c, a["X"], a["Xu"], du) + self.effect_scale(c) * z
        lp = 0.0
        if self.grouped:
            v = np.asarray(values["v"], float).reshape(len(d.groups), self.Kz)
            eta = eta + self.group_shift(c, v)
            lp += float(np.sum(stats.norm.logpdf(v)))
        ll = float(np.sum(self.loglik_terms(lik.NUMPY_OPS, eta, c))) + self.constant()
        lp += float(np.sum(self.log_prior(values))) + float(np.sum(self.z_logpdf(z)))
        if d.latent.size:
            lp += float(np.sum(stats.beta.logpdf(values["uterine_latent"], 1.0, 1.0)))
        return ll + lp


def structure_key(spec: ModelSpec, data: ModelData) -> str:
    """What determines a compiled model: structure and shapes, not data values."""
    parts = (
        spec.model,
        spec.random_effects,
        repr(spec.priors),
        data.family,
        data.landmarks,
        data.strata,
        data.shape_groups,
        data.n_arms,
        len(data.obs),
        len(data.terms),
        len(data.latent),
        tuple(data.covariates),
        len(data.groups),
    )
    return hashlib.sha256(repr(parts).encode()).hexdigest()
