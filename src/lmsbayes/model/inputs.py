"""ModelData: the model's inputs, with named rows, and their netCDF form.

:func:`lmsbayes.model.prepare.prepare_data` builds it from (spec, tables); the
model definition (:mod:`lmsbayes.model.definition`) and both engines read it;
a saved fit carries it (:meth:`ModelData.to_xarray`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lmsbayes.model.covariates import codings_from_json, codings_to_json
from lmsbayes.model.families import Family, get_family

__all__ = ["ModelData"]


@dataclass(frozen=True)
class ModelData:
    """Everything the model needs, with named rows; produced by :func:`prepare_data`.

    Attributes
    ----------
    family : lmsbayes.model.families.Family
        The likelihood family (for ``survival``, the curve): everything that
        differs between families is a method of it.
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
        The design columns: (label, main effects) pairs (lmsbayes.model.covariates).
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
        regimens) and each arm's group; empty without one (lmsbayes.model.structure).
    uterine_centre : float
    data_sha256 : str
    t_ref : float
    table : {'lms', 'binomial'}
        The kind of input table.
    curve_rows : pandas.DataFrame
        Survival only, curve arms (lmsbayes.model.curve_arms): their reconstructed patients,
        grouped, one row per group in arm order: ``arm_id``, ``arm_idx``, ``lower``,
        ``upper`` (months), ``event`` (1: an event in (lower, upper]; 0: censored at upper),
        ``count``. Empty without curves.
    curve_arms : pandas.DataFrame
        One row per curve of the spec: its evidence, accuracy and goodness-of-fit check
        (:func:`lmsbayes.model.curve_arms.summary`).
    """

    family: Family
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
    t_ref: float = 6.0
    table: str = "lms"
    curve_rows: pd.DataFrame = field(default_factory=pd.DataFrame)
    curve_arms: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def covariates(self) -> tuple[str, ...]:
        """Labels of the design columns."""
        return tuple(label for label, _ in self.coding)

    @property
    def n_arms(self) -> int:
        """Number of arms that enter the model."""
        return len(self.arms)

    @property
    def latent_uterine(self) -> np.ndarray:
        """Positions of the arms whose uterine fraction is latent (same as ``latent``)."""
        return self.latent

    def take(self, positions, X: np.ndarray | None = None, labels=None) -> ModelData:
        """The data of the arms at ``positions`` (repeats allowed), re-indexed.

        ``X`` replaces their design rows (then no arm is latent), ``labels``
        their arm ids. Used by the exact engine (an arm at each node of its
        latent fraction) and by validation (held-out arms).
        """
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
        curve = self.curve_rows
        if len(curve):  # the copies' curve rows, in the new arm order
            carm = curve["arm_idx"].to_numpy(np.int64)
            parts = [curve[carm == a].assign(arm_idx=i) for i, a in enumerate(pos)]
            curve = pd.concat(parts, ignore_index=True) if parts else curve.iloc[:0]
            if labels is not None:
                curve["arm_id"] = np.asarray(list(labels), dtype=object)[
                    curve["arm_idx"].to_numpy(np.int64)
                ]
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
            curve_rows=curve,
        )

    @property
    def se_shape_power(self) -> np.ndarray:
        """Per survival observation, the power of the shape dividing its sd.

        0 where the sd is data.

        Fits saved before the column existed used fixed standard errors throughout: zeros.
        """
        if "se_shape_power" in self.obs:
            return self.obs["se_shape_power"].to_numpy(float)
        return np.zeros(len(self.obs))

    @property
    def Kz(self) -> int:
        """Random effects per arm: one per landmark for per-landmark families, else one."""
        return len(self.landmarks) if (self.family.per_landmark and self.landmarks) else 1

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
        frames = [("obs", self.obs), ("excluded", self.excluded), ("terms", self.terms)]
        if len(self.curve_arms):  # only with curves: a fit without them saves what it did
            frames += [("curverow", self.curve_rows), ("curvearm", self.curve_arms)]
        for name, df in frames:
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
            family=self.family.name,
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
            curve=self.family.curve,
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
            family=get_family(str(a["family"]), str(a.get("curve", ""))),
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
            t_ref=float(a.get("t_ref", 6.0)),
            table=str(a.get("table", "lms")),
            curve_rows=_curve_frame(frame("curverow_", "curverow")),
            curve_arms=frame("curvearm_", "curvearm"),
        )


def _curve_frame(df: pd.DataFrame) -> pd.DataFrame:
    for c in ("arm_idx", "event", "count"):
        if c in df:
            df[c] = df[c].astype(np.int64)
    return df


def _str_tuple(attr) -> tuple[str, ...]:
    """A list attribute read back from netCDF (an empty list may come back as '')."""
    return tuple(str(v) for v in np.atleast_1d(attr) if str(v))
