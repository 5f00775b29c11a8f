"""Model inputs and the PyMC model: ``prepare_data(spec, trials)`` and ``build_model``.

``prepare_data`` is pure pandas: it applies the spec's data filter, builds
the long (arm x landmark) table and records every exclusion with its reason.
``build_model`` turns the result into a non-centred hierarchical
``pymc.Model`` with named coords (arm, landmark, covariate, stratum, obs) and
all observed quantities in ``pm.Data`` containers, so that a compiled model
can be refitted on new data of the same shape without recompiling.

The model, per landmark t (see ARCHITECTURE.md, "Models")::

    logit p[i, t] = alpha[t] + X[i] @ beta[t] + tau[stratum(i), t] * z[i, t] (+ trial effect)
    logit-binomial:  y[i, t] ~ Binomial(n_eff[i, t], p[i, t])
    logit-normal:    logit s[i, t] ~ Normal(logit p[i, t], se[i, t])

and, with the landmarks of an arm modelled jointly (``joint-cloglog``)::

    log H[i, t] = alpha[t] + X[i] @ beta + tau[stratum(i)] * z[i],   p = exp(-H)
    y[i, t1] ~ Binomial(n_eff, p[i, t1]),   y[i, t] ~ Binomial(at risk, p[i, t] / p[i, t'])

with alpha increasing in t (see :func:`conditional_counts` for the counts).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lmsbayes.covariates import design_matrix, main_effects
from lmsbayes.spec import ModelSpec, SpecError

if TYPE_CHECKING:  # pragma: no cover
    import pymc as pm

    from lmsbayes.data import Trials

__all__ = ["ModelData", "prepare_data", "build_model", "structure_key", "arm_logits", "conditional_counts",
           "observation_probability"]


@dataclass(frozen=True)
class ModelData:
    """Everything the model needs, with named rows; produced by :func:`prepare_data`.

    Attributes
    ----------
    arms : pandas.DataFrame
        Included arms (index ``arm``): trial, year, line, treatment_class,
        population, evidence, design, n, uterine_fraction, label.
    obs : pandas.DataFrame
        Included (arm, landmark) observations: rate, rate_source, se_logit,
        se_method, n_eff, y_eff, arm_idx, landmark_idx (and for the joint
        likelihood prev_landmark_idx, has_prev, n_cond, y_cond).
    excluded : pandas.DataFrame
        Every (arm, landmark) left out, with its reason (``landmark`` NaN when
        the whole arm is excluded by the spec's data filter).
    landmarks : tuple of float
    covariates : tuple of str
    strata : tuple of str
        Heterogeneity strata (``('all',)`` or the lines).
    data_sha256 : str
        SHA-256 of the source CSV (or of the table when no file is known).
    """

    arms: pd.DataFrame
    obs: pd.DataFrame
    excluded: pd.DataFrame
    landmarks: tuple[float, ...]
    covariates: tuple[str, ...]
    strata: tuple[str, ...]
    uterine_centre: float
    data_sha256: str
    trials: tuple[str, ...] = field(default=())

    @property
    def effects(self) -> pd.DataFrame:
        """Coded main effects per arm (``uterine`` NaN where unknown)."""
        eff = main_effects(self.arms["line"], self.arms["treatment_class"],
                           self.arms["uterine_fraction"], uterine_centre=self.uterine_centre)  # fmt: skip
        eff.index = self.arms.index
        return eff

    @property
    def latent_uterine(self) -> np.ndarray:
        """Positions of arms whose uterine fraction is unknown and modelled as latent."""
        if "uterine" not in {p for c in self.covariates for p in c.split(":")}:
            return np.zeros(0, dtype=int)
        return np.flatnonzero(self.arms["uterine_fraction"].isna().to_numpy())

    @property
    def stratum_idx(self) -> np.ndarray:
        if self.strata == ("all",):
            return np.zeros(len(self.arms), dtype=int)
        return np.array([self.strata.index(v) for v in self.arms["line"].astype(str)])

    @property
    def trial_idx(self) -> np.ndarray:
        return np.array([self.trials.index(t) for t in self.arms["trial"]])

    def arrays(self) -> dict[str, np.ndarray]:
        """The values of every ``pm.Data`` container, by name."""
        eff = self.effects
        obs = self.obs
        rate = obs["rate"].to_numpy(float)
        n_known = obs["n"].astype("float64").to_numpy()
        # logit of 0 or 1 is infinite: use the 0.5-corrected rate for the normal likelihood only
        corrected = np.where(np.isnan(n_known), obs["n_eff"].astype(float), n_known)
        rate_c = np.where((rate <= 0) | (rate >= 1), (rate * corrected + 0.5) / (corrected + 1), rate)
        return {
            "x_line": eff["line"].to_numpy(float),
            "x_nrt": eff["nrt"].to_numpy(float),
            "x_uterine": np.nan_to_num(eff["uterine"].to_numpy(float), nan=0.0),
            "arm_idx": obs["arm_idx"].to_numpy(np.int64),
            "landmark_idx": obs["landmark_idx"].to_numpy(np.int64),
            "n_eff": obs["n_eff"].to_numpy(np.int64),
            "y_eff": obs["y_eff"].to_numpy(np.int64),
            "logit_rate": np.log(rate_c / (1 - rate_c)),
            "se_logit": obs["se_logit"].to_numpy(float),
            **({k: obs[k].to_numpy(np.float64 if k == "has_prev" else np.int64) for k in _JOINT_COLUMNS}
               if "n_cond" in obs else {}),
        }  # fmt: skip

    def to_xarray(self):
        """Arm- and observation-level inputs as an xarray Dataset (saved with a fit)."""
        import xarray as xr

        def plain(df: pd.DataFrame) -> pd.DataFrame:
            # netCDF has no nullable integers or pandas strings: floats (NaN) and str
            out = df.copy()
            for c in out.columns:
                if out[c].dtype.kind in "fiub" and not isinstance(out[c].dtype, pd.api.extensions.ExtensionDtype):
                    continue
                if pd.api.types.is_numeric_dtype(out[c].dtype):
                    out[c] = out[c].astype("float64")
                else:
                    out[c] = out[c].astype(str).to_numpy(dtype=object)
            return out

        arms = plain(self.arms)
        arms.index = pd.Index(list(self.arms.index), name="arm", dtype=object)
        obs = plain(self.obs.reset_index(drop=True)).rename(columns=lambda c: f"obs_{c}")
        obs.index.name = "obs"
        exc = plain(self.excluded.reset_index(drop=True)).rename(columns=lambda c: f"excluded_{c}")
        exc.index.name = "excluded"
        ds_arms, ds_obs, ds_exc = (xr.Dataset.from_dataframe(d) for d in (arms, obs, exc))
        ds = xr.merge([ds_arms, ds_obs, ds_exc])
        ds.attrs.update(
            landmarks=list(self.landmarks), covariates=list(self.covariates), strata=list(self.strata),
            uterine_centre=self.uterine_centre, data_sha256=self.data_sha256, trials=list(self.trials),
        )  # fmt: skip
        return ds

    @classmethod
    def from_xarray(cls, ds) -> ModelData:
        """Inverse of :meth:`to_xarray`."""
        arm_vars = [v for v in ds.data_vars if ds[v].dims == ("arm",)]
        arms = ds[arm_vars].to_dataframe()
        for c in ("year", "n"):
            if c in arms:
                arms[c] = arms[c].round().astype("Int64")
        obs_vars = [v for v in ds.data_vars if ds[v].dims == ("obs",)]
        obs = ds[obs_vars].to_dataframe().rename(columns=lambda c: c[4:]).reset_index(drop=True)
        for c in ("n_eff", "y_eff", "arm_idx", "landmark_idx"):
            obs[c] = obs[c].astype(np.int64)
        if "n" in obs:
            obs["n"] = obs["n"].round().astype("Int64")
        exc_vars = [v for v in ds.data_vars if ds[v].dims == ("excluded",)]
        excluded = ds[exc_vars].to_dataframe().rename(columns=lambda c: c[9:]).reset_index(drop=True)
        a = ds.attrs
        return cls(
            arms=arms, obs=obs, excluded=excluded,
            landmarks=tuple(float(v) for v in np.atleast_1d(a["landmarks"])),
            covariates=_str_tuple(a["covariates"]),
            strata=_str_tuple(a["strata"]),
            uterine_centre=float(a["uterine_centre"]), data_sha256=str(a["data_sha256"]),
            trials=_str_tuple(a["trials"]),
        )  # fmt: skip


def _str_tuple(attr) -> tuple[str, ...]:
    """A list attribute read back from netCDF (an empty list may come back as '')."""
    return tuple(str(v) for v in np.atleast_1d(attr) if str(v))


def _arm_label(trials: pd.DataFrame) -> pd.Series:
    agents = trials["agents"].astype(str).str.replace(";", "+")
    return trials["trial"].astype(str) + " " + agents + " (" + trials["year"].astype(str) + ")"


_JOINT_COLUMNS = ("prev_landmark_idx", "has_prev", "n_cond", "y_cond")


def conditional_counts(obs: pd.DataFrame) -> pd.DataFrame:
    """Binomial data of the joint-landmarks likelihood, one row per observation.

    An arm's first observed landmark is binomial as usual, ``(n_cond,
    y_cond) = (n_eff, y_eff)``. At each later landmark t, with the arm's
    previous observed landmark t' and its rate S', the observation is the
    conditional survival S(t) / S(t'): of ``n_cond = round(n_eff[t] S')``
    patients progression-free at t' (a cohort of the size that carries the
    information of the rate at t), ``y_cond = y_eff[t] = round(n_eff[t] S(t))``
    are still progression-free at t. When both landmarks have the arm's n as
    effective size this is exactly the multinomial likelihood of (progressed
    before t', between t' and t, progression-free at t).

    Parameters
    ----------
    obs : pandas.DataFrame
        Columns ``arm_idx``, ``landmark_idx`` (landmarks in increasing order),
        ``rate``, ``n_eff``, ``y_eff``.

    Returns
    -------
    pandas.DataFrame
        Same index: ``prev_landmark_idx`` (the landmark itself for a first
        observation), ``has_prev`` (0.0 or 1.0), ``n_cond``, ``y_cond``, and
        ``prev_rate`` (NaN for a first observation).
    """
    order = obs.sort_values(["arm_idx", "landmark_idx"], kind="stable")
    first = order["arm_idx"].ne(order["arm_idx"].shift())
    prev_lm = order["landmark_idx"].shift().where(~first, order["landmark_idx"]).astype(np.int64)
    prev_rate = order["rate"].shift().where(~first).astype(float)
    n_eff, y_eff = order["n_eff"].astype(np.int64), order["y_eff"].astype(np.int64)
    at_risk = np.floor(n_eff.to_numpy(float) * prev_rate.to_numpy() + 0.5)
    out = pd.DataFrame({
        "prev_landmark_idx": prev_lm,
        "has_prev": (~first).astype(np.float64),
        "n_cond": np.where(first, n_eff, np.nan_to_num(at_risk)).astype(np.int64),
        "y_cond": y_eff,
        "prev_rate": prev_rate,
    }, index=order.index)  # fmt: skip
    return out.loc[obs.index]


def _joint_observations(obs: pd.DataFrame, landmarks: tuple[float, ...]) -> tuple[pd.DataFrame, pd.DataFrame]:
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
            why = (f"joint-cloglog: rate {obs.at[i, 'rate']:.3g} at {obs.at[i, 'landmark']:g} m exceeds the rate "
                   f"{r['prev_rate']:.3g} at {prev_t:g} m (survival cannot increase)")
        else:
            why = f"joint-cloglog: no effective patient at risk after {prev_t:g} m (n_eff x S = {obs.at[i, 'n_eff'] * r['prev_rate']:.2g})"
        dropped.append({"arm_id": obs.at[i, "arm_id"], "landmark": obs.at[i, "landmark"], "reason": why})
        obs = obs.drop(index=i)
    cond = conditional_counts(obs)
    obs = pd.concat([obs, cond[list(_JOINT_COLUMNS)]], axis=1)
    return obs, pd.DataFrame(dropped, columns=["arm_id", "landmark", "reason"])


def prepare_data(spec: ModelSpec, trials: Trials | pd.DataFrame) -> ModelData:
    """Apply the spec's data filter and build the model inputs.

    Parameters
    ----------
    spec : ModelSpec
    trials : Trials or pandas.DataFrame
        The validated data from :func:`lmsbayes.data.load_trials` (an arm
        DataFrame is converted by :func:`lmsbayes.data.as_trials`).

    Returns
    -------
    ModelData

    Raises
    ------
    SpecError
        When no observation remains, or a covariate the spec asks for does not
        vary in the selected arms (the data cannot inform it).
    """
    from lmsbayes.data import as_trials, long_table

    f = spec.data
    trials = as_trials(trials)
    t = trials.arms.reset_index(drop=True)
    reasons = pd.Series("", index=t.index, dtype=object)

    def drop(mask, why: str) -> None:
        mask = np.asarray(mask, dtype=bool) & (reasons == "").to_numpy()
        reasons[mask] = why

    drop(t["arm_id"].isin(f.exclude_arms), "listed in [data] exclude_arms")
    drop(~t["line"].astype(str).isin(f.lines), f"line not in [data] lines {list(f.lines)}")
    drop(~t["treatment_class"].astype(str).isin(f.classes), f"class not in [data] classes {list(f.classes)}")
    if f.populations:
        drop(~t["population"].astype(str).isin(f.populations), f"population not in [data] populations {list(f.populations)}")
    year = t["year"].astype("float64")
    drop((year < f.years[0]) | (year > f.years[1]), f"year outside [data] years {list(f.years)}")
    drop(~t["evidence"].astype(str).isin(f.evidence), f"evidence not in [data] evidence {list(f.evidence)}")
    if f.exclude_placebo:
        drop(t["placebo"].astype(bool), "placebo arm ([data] exclude_placebo = true)")
    uses_uterine = "uterine" in spec.main_effects
    if uses_uterine and f.uterine_missing == "exclude":
        drop(t["uterine_fraction"].isna(), "uterine fraction unknown ([data] uterine_missing = 'exclude')")

    arm_excl = pd.DataFrame({"arm_id": t.loc[reasons != "", "arm_id"].to_numpy(),
                             "landmark": np.nan, "reason": reasons[reasons != ""].to_numpy()})  # fmt: skip
    kept = t[reasons == ""]
    long = (long_table(trials.select((reasons == "").to_numpy()), spec.landmarks,
                       derive_from_median=f.derive_from_median) if len(kept) else None)  # fmt: skip
    if long is None or not long["included"].any():
        raise SpecError(["no observation remains after the [data] filter and the landmark rules"], spec.name)
    obs_excl = long.loc[~long["included"], ["arm_id", "landmark", "exclusion_reason"]].rename(
        columns={"exclusion_reason": "reason"})
    obs = long[long["included"]].reset_index(drop=True)
    landmarks = tuple(float(x) for x in spec.landmarks)
    arm_ids = list(dict.fromkeys(obs["arm_id"]))  # file order, arms with >= 1 observation
    obs["arm_idx"] = pd.Index(arm_ids).get_indexer(obs["arm_id"])
    obs["landmark_idx"] = [landmarks.index(float(x)) for x in obs["landmark"]]
    if spec.joint:  # drops later landmarks only: every arm keeps its first observation and its index
        obs, joint_excl = _joint_observations(obs, landmarks)
        obs_excl = pd.concat([obs_excl, joint_excl], ignore_index=True)
        obs = obs.reset_index(drop=True)

    arms = kept.set_index("arm_id").loc[arm_ids]
    arms = pd.DataFrame({
        "label": _arm_label(arms.reset_index()).to_numpy(),
        "trial": arms["trial"].astype(str), "year": arms["year"], "line": arms["line"].astype(str),
        "treatment_class": arms["treatment_class"].astype(str), "population": arms["population"].astype(str),
        "evidence": arms["evidence"].astype(str), "design": arms["design"].astype(str), "n": arms["n"],
        "uterine_fraction": arms["uterine_fraction"].astype(float),
    }, index=pd.Index(arm_ids, name="arm"))  # fmt: skip
    obs = obs[["arm_id", "landmark", "rate", "rate_source", "se_logit", "se_method", "n_eff", "y_eff",
               "n", "arm_idx", "landmark_idx", *(_JOINT_COLUMNS if spec.joint else ())]]  # fmt: skip

    problems = []
    eff = main_effects(arms["line"], arms["treatment_class"], arms["uterine_fraction"])
    for cov in spec.model.covariates:
        col = design_matrix(eff, [cov])[:, 0]
        col = col[~np.isnan(col)]  # only known uterine fractions can show variation
        if len(col) < 2 or np.ptp(col) == 0:
            problems.append(
                f"[model] covariates: {cov!r} does not vary in the {len(arms)} selected arms "
                f"(e.g. all {', '.join(sorted(set(arms['line'])))} / {', '.join(sorted(set(arms['treatment_class'])))}); "
                "remove it or widen the [data] filter"
            )
    if problems:
        raise SpecError(problems, spec.name)

    strata = tuple(sorted(set(arms["line"]))) if spec.random_effects.tau_by == "line" else ("all",)
    sha = trials.sha256
    excluded = pd.concat([arm_excl, obs_excl], ignore_index=True)
    return ModelData(
        arms=arms, obs=obs, excluded=excluded, landmarks=landmarks,
        covariates=tuple(spec.model.covariates), strata=strata,
        uterine_centre=spec.model.uterine_centre, data_sha256=sha,
        trials=tuple(dict.fromkeys(arms["trial"])),
    )  # fmt: skip


def structure_key(spec: ModelSpec, data: ModelData) -> str:
    """What determines the compiled model: structure and shapes, not data values."""
    parts = (
        spec.model, spec.random_effects, repr(spec.priors),
        data.landmarks, data.strata, len(data.arms), len(data.obs), len(data.latent_uterine),
        len(data.trials) if spec.random_effects.trial_effect else 0,
    )  # fmt: skip
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def check_observations(spec: ModelSpec, data: ModelData) -> None:
    """Raise ValueError for observations outside the likelihood's support.

    The model is built without PyMC's parameter checks (``check_bounds=False``),
    so data that ``load_trials``/``prepare_data`` did not produce (a
    hand-built :class:`ModelData`, new data for a compiled model) are checked
    here instead.
    """
    arr = data.arrays()
    if spec.joint and "n_cond" not in arr:
        raise ValueError("joint-cloglog needs the conditional counts of prepare_data (obs column n_cond)")
    if spec.model.likelihood in ("logit-binomial", "joint-cloglog"):
        nk, yk = ("n_cond", "y_cond") if spec.joint else ("n_eff", "y_eff")
        n, y = np.asarray(arr[nk], float), np.asarray(arr[yk], float)
        bad = ~(np.isfinite(n) & np.isfinite(y) & (n > 0) & (y >= 0) & (y <= n))
        what = f"needs 0 <= {yk} <= {nk} and {nk} > 0"
        if spec.joint:
            prev, lm = arr["prev_landmark_idx"], arr["landmark_idx"]
            bad |= (arr["has_prev"] == 1) & ~(prev < lm)
            what += ", and a previous landmark before its own"
    else:
        se, lr = np.asarray(arr["se_logit"], float), np.asarray(arr["logit_rate"], float)
        bad = ~(np.isfinite(se) & np.isfinite(lr) & (se > 0))
        what = "needs a finite logit_rate and se_logit > 0"
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"observation {i} (arm {data.obs['arm_id'].iloc[i]!r}): {spec.model.likelihood} {what} "
                         f"({int(bad.sum())} observation(s) fail)")  # fmt: skip


def build_model(spec: ModelSpec, data: ModelData | pd.DataFrame) -> pm.Model:
    """Build the non-centred hierarchical model.

    Parameters
    ----------
    spec : ModelSpec
    data : ModelData or pandas.DataFrame
        Prepared inputs, or the arm table from ``load_trials`` (then
        :func:`prepare_data` is applied).

    Returns
    -------
    pymc.Model
        Coords ``arm``, ``landmark``, ``covariate``, ``stratum``, ``obs``
        (and ``trial``, ``arm_latent`` when used). Free variables ``alpha``
        (landmark), ``beta`` (landmark, covariate), ``tau`` (stratum,
        landmark), ``z`` (arm, landmark); deterministic ``theta`` (arm-level
        logit rate); :func:`lmsbayes.fit` adds ``p`` = invlogit(theta). For
        ``joint-cloglog``: ``beta`` (covariate), ``tau`` (stratum), ``z``
        (arm), and ``theta`` is the log cumulative hazard, p = exp(-exp(theta)).
    """
    import pymc as pm
    import pytensor.tensor as pt

    if not isinstance(data, ModelData):
        data = prepare_data(spec, data)
    check_observations(spec, data)
    re, pri = spec.random_effects, spec.priors
    arr = data.arrays()
    latent = data.latent_uterine
    coords = {
        "arm": list(data.arms.index),
        "landmark": list(data.landmarks),
        "covariate": list(data.covariates),
        "stratum": list(data.strata),
        "obs": np.arange(len(data.obs)),
    }
    if latent.size:
        coords["arm_latent"] = [data.arms.index[i] for i in latent]
    if re.trial_effect:
        coords["trial"] = list(data.trials)

    # no parameter checks in the log density: every parameter is transformed
    # to its support and the data were validated (n >= 1, 0 <= y <= n), and
    # the checks add a dozen boolean kernels to compile
    with pm.Model(coords=coords, check_bounds=False) as model:
        # only the main effects the spec uses: unused containers are optimised away by the compiler
        used = {p for c in data.covariates for p in c.split(":")}
        x = {k: pm.Data(f"x_{k}", arr[f"x_{k}"], dims="arm", shape=arr[f"x_{k}"].shape) for k in ("line", "nrt", "uterine") if k in used}
        arm_idx = pm.Data("arm_idx", arr["arm_idx"], dims="obs", shape=arr["arm_idx"].shape)
        lm_idx = pm.Data("landmark_idx", arr["landmark_idx"], dims="obs", shape=arr["landmark_idx"].shape)
        effects = dict(x)
        if latent.size:
            frac = pm.Beta("uterine_latent", 1.0, 1.0, dims="arm_latent")
            effects["uterine"] = pt.set_subtensor(x["uterine"][latent], frac - data.uterine_centre)

        # the joint model has one arm effect and one log hazard ratio per
        # covariate for all landmarks (proportional hazards): no landmark dim
        lm = () if spec.joint else ("landmark",)

        def per_arm(v):  # (arm, *lm) -> broadcastable against (arm, landmark)
            return v if lm else v[:, None]

        if spec.joint:
            from pymc.distributions.transforms import ordered

            # alpha increasing in t so that S = exp(-exp(theta)) never rises with
            # time; the start must be strictly increasing (no value at ties)
            alpha = pri.alpha.create("alpha", dims="landmark", transform=ordered,
                                     initval=np.linspace(-1.0, 0.0, len(data.landmarks)))  # fmt: skip
        else:
            alpha = pri.alpha.create("alpha", dims="landmark")
        one = pm.Data("x_intercept", np.ones(len(data.arms)), dims="arm", shape=(len(data.arms),))
        eta = one[:, None] * alpha[None, :]
        if data.covariates:
            beta = pri.beta.create("beta", dims=(*lm, "covariate"))
            for j, cov in enumerate(data.covariates):
                col = pt.ones(len(data.arms))
                for part in cov.split(":"):
                    col = col * effects[part]
                # a sum of elementwise products, not pt.dot or a stacked design
                # matrix: numba compiles BLAS dot, joins and reductions slowly
                # (one dot and its gradient: 63 s on an empty cache), while
                # these fuse into one elementwise kernel
                eta = eta + col[:, None] * beta[..., j]
        tau = pri.tau.create("tau", dims=("stratum", *lm))
        if re.distribution == "student_t":
            z = pm.StudentT("z", nu=re.nu, mu=0.0, sigma=1.0, dims=("arm", *lm))
        else:
            z = pm.Normal("z", 0.0, 1.0, dims=("arm", *lm))
        eta = eta + per_arm(tau[data.stratum_idx] * z)
        if re.trial_effect:
            trial_tau = pri.trial_tau.create("trial_tau", dims=lm or None)
            v = pm.Normal("v", 0.0, 1.0, dims=("trial", *lm))
            eta = eta + per_arm(trial_tau * v[data.trial_idx])
        # lmsbayes.fit samples the free variables only and computes theta (and
        # p) with arm_logits in numpy: a deterministic costs numba seconds to
        # compile on a new machine; the test suite checks the two agree
        theta = pm.Deterministic("theta", eta, dims=("arm", "landmark"))

        eta_obs = theta[arm_idx, lm_idx]
        if spec.model.likelihood == "logit-binomial":
            n_eff = pm.Data("n_eff", arr["n_eff"], dims="obs", shape=arr["n_eff"].shape)
            y_eff = pm.Data("y_eff", arr["y_eff"], dims="obs", shape=arr["y_eff"].shape)
            pm.Binomial("y", n=n_eff, logit_p=eta_obs, observed=y_eff, dims="obs")
        elif spec.joint:
            obs_data = {k: pm.Data(k, arr[k], dims="obs", shape=arr[k].shape) for k in _JOINT_COLUMNS}
            # hazard accumulated since the arm's previous observed landmark,
            # without cancellation: H_t - H_prev = H_t * -expm1(log H_prev - log H_t)
            gap = pt.switch(pt.eq(obs_data["has_prev"], 1.0),
                            -pt.expm1(theta[arm_idx, obs_data["prev_landmark_idx"]] - eta_obs), 1.0)  # fmt: skip
            d_hazard = pt.exp(eta_obs) * gap
            # p = exp(-d_hazard) given on the logit scale: stable near p = 0 and p = 1
            pm.Binomial("y", n=obs_data["n_cond"], logit_p=-d_hazard - pt.log1mexp(-d_hazard),
                        observed=obs_data["y_cond"], dims="obs")  # fmt: skip
        else:
            se = pm.Data("se_logit", arr["se_logit"], dims="obs", shape=arr["se_logit"].shape)
            logit_rate = pm.Data("logit_rate", arr["logit_rate"], dims="obs", shape=arr["logit_rate"].shape)
            pm.Normal("y", mu=eta_obs, sigma=se, observed=logit_rate, dims="obs")
    return model


def observation_probability(theta: np.ndarray, spec: ModelSpec, data: ModelData) -> np.ndarray:
    """The success probability of each binomial observation, from arm-level draws of theta.

    Parameters
    ----------
    theta : numpy.ndarray
        Shape (..., arm, landmark).
    spec, data
        A binomial likelihood (``logit-binomial`` or ``joint-cloglog``).

    Returns
    -------
    numpy.ndarray
        Shape (..., obs): the rate at each observation's landmark, or for the
        joint likelihood the conditional rate S(t) / S(previous landmark).
    """
    arr = data.arrays()
    h = theta[..., arr["arm_idx"], arr["landmark_idx"]]
    if spec.model.likelihood == "logit-binomial":
        return 1 / (1 + np.exp(-h))
    if spec.joint:
        h_prev = theta[..., arr["arm_idx"], arr["prev_landmark_idx"]]
        d_hazard = np.exp(h) * np.where(arr["has_prev"] == 1, -np.expm1(h_prev - h), 1.0)
        return np.exp(-d_hazard)
    raise ValueError(f"{spec.model.likelihood} is not a binomial likelihood")


def arm_logits(posterior, spec: ModelSpec, data: ModelData):
    """The arm-level logit rates ``theta`` from posterior draws of the free variables.

    The same algebra as :func:`build_model`, in xarray, so that the sampler
    need not compute and store the deterministic ``theta``.

    Parameters
    ----------
    posterior : xarray.Dataset
        Draws of ``alpha``, ``beta``, ``tau``, ``z`` (and ``uterine_latent``,
        ``trial_tau``, ``v`` when the model has them), dims ``chain``, ``draw``
        and the model's named dims, coords labelled with ``data``'s arms.
    spec : ModelSpec
    data : ModelData

    Returns
    -------
    xarray.DataArray
        ``theta`` with dims ``chain``, ``draw``, ``arm``, ``landmark``.
    """
    import xarray as xr

    arms = list(data.arms.index)
    eff = {k: xr.DataArray(v.to_numpy(float), dims="arm", coords={"arm": arms}) for k, v in data.effects.items()}
    latent = data.latent_uterine
    if latent.size:
        frac = posterior["uterine_latent"].rename(arm_latent="arm").assign_coords(arm=[arms[i] for i in latent])
        eff["uterine"] = (frac - data.uterine_centre).combine_first(eff["uterine"])
    theta = posterior["alpha"].expand_dims(arm=arms, axis=-1)
    for cov in data.covariates:
        col = 1.0
        for part in cov.split(":"):
            col = col * eff[part]
        theta = theta + col * posterior["beta"].sel(covariate=cov, drop=True)
    tau = posterior["tau"].isel(stratum=xr.DataArray(data.stratum_idx, dims="arm", coords={"arm": arms}), drop=True)
    theta = theta + tau * posterior["z"]
    if spec.random_effects.trial_effect:
        v = posterior["v"].isel(trial=xr.DataArray(data.trial_idx, dims="arm", coords={"arm": arms}), drop=True)
        theta = theta + posterior["trial_tau"] * v
    return theta.transpose("chain", "draw", "arm", "landmark").rename("theta")
