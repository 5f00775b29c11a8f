"""The model, defined once: what both engines consume.

:class:`Model` is the one model definition: the parameter layout with its
priors, the linear predictor, and the log-likelihood terms, written against an
``ops`` namespace so that the exact engine (numpy) and the NUTS engine
(PyTensor) evaluate the same algebra.

The model::

    eta[i, t] = alpha[t] + x_i @ beta[t] + tau[stratum(i), t] * z[i, t]    (per-landmark families)
    eta[i]    = alpha    + x_i @ beta    + tau[stratum(i)] * z[i]          (one curve per arm)

with z ~ Normal(0, 1) (non-centred), x_i = X_i + (u_i - centre) Xu_i where an
arm's uterine fraction u_i is latent (Beta(1, 1)), and the likelihood of the
spec's family (lmsbayes.model.families).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmsbayes.model import families as lik
from lmsbayes.model.inputs import ModelData
from lmsbayes.model.structure import (
    age_decades,
    discount_reference,
    drift_design,
    drift_labels,
)
from lmsbayes.spec import ModelSpec, Prior

__all__ = ["Model", "Param", "structure_key"]


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
        """Number of scalar values of the parameter."""
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
        self.family = data.family
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
                "ordered" if self.family.ordered_intercepts and L > 1 else "none",
            )
        ]
        if C:
            dims = ("landmark", "covariate") if self.per_landmark else ("covariate",)
            params.append(
                Param("beta", dims, (L, C) if self.per_landmark else (C,), pri.beta, "none")
            )
        dims = ("stratum", "landmark") if self.per_landmark else ("stratum",)
        params.append(Param("tau", dims, (S, L) if self.per_landmark else (S,), pri.tau, "log"))
        if self.family.has_shape and spec.model.shape != "fixed":
            params.append(
                Param("shape", ("shape_group",), (len(data.shape_groups),), pri.shape, "log")
            )
        # structure beyond one effect per arm (lmsbayes.model.structure)
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
            J = len(drift_labels(mp)) + 1
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
            B = drift_design(mp, data.arms["year"].astype(float))
        else:
            B = np.zeros((data.n_arms, 0))
        #: design with the drift's basis as extra columns
        #: (their coefficients: drift_scale * drift_step)
        self.X_design = np.hstack([np.asarray(data.X, float), B])
        self.Xu_design = np.hstack([np.asarray(data.Xu, float), np.zeros_like(B)])
        self.n_cov = n_cov
        self.discounted = bool(re.age_discount)
        if self.discounted:
            params.append(Param("discount", (), (), pri.discount, "log"))
        #: the year ages are counted to (the target's; lmsbayes.model.structure.discount_reference)
        self.discount_year = (
            discount_reference(re, data.arms["year"].astype(float)) if self.discounted else None
        )
        self.age = (
            age_decades(data.arms["year"].astype(float), self.discount_year)
            if self.discounted
            else np.zeros(data.n_arms)
        )
        self.student_t = re.distribution == "student_t"
        self.params: tuple[Param, ...] = tuple(params)
        obs = data.obs
        self.arm_idx = obs["arm_idx"].to_numpy(np.int64)
        self.obs_comp = obs["comp"].to_numpy(np.int64)
        self.n_comp = data.n_arms * self.Kz
        correlated = self.family.correlated_terms  # terms are precision entries, not observations
        self.term_comp = data.terms["comp"].to_numpy(np.int64) if correlated else self.obs_comp
        n_curve = len(getattr(data, "curve_rows", ()))
        if n_curve:  # curve arms' groups: terms after the pair terms (families.curve_terms)
            carm = data.curve_rows["arm_idx"].to_numpy(np.int64) * self.Kz
            self.term_comp = np.concatenate([self.term_comp, carm])
        #: the likelihood is Gaussian in each arm's effect (curve arms' patients are not)
        self.gaussian = bool(self.family.gaussian and not n_curve)
        self.comp_const = (
            np.asarray(data.comp_const, float) if correlated else np.zeros(self.n_comp)
        )
        self.log_t_ref = math.log(spec.model.t_ref)
        #: some survival observation's sd moves with the shape (a median without a CI)
        self.se_by_shape = self.family.has_shape and bool(np.any(data.se_shape_power > 0))
        self.arrays = self.data_arrays(data)

    def data_arrays(self, data: ModelData) -> dict[str, np.ndarray]:
        """Every data array the algebra reads, by name.

        ``pm.Data`` containers in the NUTS engine.
        """
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
        out.update(data.family.data_arrays(data))
        if self.discounted:
            out["age"] = self.age if same else np.zeros(data.n_arms)
        if self.grouped:
            out["group_idx"] = np.asarray(data.group_idx, np.int64)
        return out

    # --- parameter layout -------------------------------------------------------------

    @property
    def coords(self) -> dict[str, list]:
        """The coords of the model's dims (arm, covariate, stratum, landmark, ...)."""
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
            out["drift_interval"] = drift_labels(self.spec.model)
        return out

    @property
    def z_dims(self) -> tuple[str, ...]:
        """Dims of the non-centred random effects ``z``."""
        return ("arm", "landmark") if self.per_landmark else ("arm",)

    @property
    def effect_dims(self) -> tuple[str, ...]:
        """Dims of a random effect beyond its unit (arm or trial): ('landmark',) or ()."""
        return self.z_dims[1:]

    def z_named(self, z):
        """Random effects (..., unit, Kz) in the shape of :attr:`z_dims`.

        Landmark axis only if any.
        """
        return z if self.per_landmark else z[..., 0]

    def z_canonical(self, v):
        """Inverse of :meth:`z_named`: random effects or their scales with the Kz axis (..., Kz)."""
        return v if self.per_landmark else v[..., None]

    def z_column(self, k):
        """The random-effect column of landmark column(s) ``k`` (0 where one effect serves all)."""
        return k if self.per_landmark else np.zeros_like(k)

    @property
    def n_params(self) -> int:
        """Number of scalar global parameters."""
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
        if self.family.has_shape:
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
        """The group effects of the arms, group_tau v[group(i)]: (..., arm, Kz).

        v is (..., group, Kz).
        """
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
        return self.family.loglik_terms(ops, eta, eta_obs, c, a, self)

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
        data.family,  # its repr names the class (the curve for survival)
        data.landmarks,
        data.strata,
        data.shape_groups,
        data.n_arms,
        len(data.obs),
        len(data.terms),
        len(getattr(data, "curve_rows", ())),
        len(data.latent),
        tuple(data.covariates),
        len(data.groups),
    )
    return hashlib.sha256(repr(parts).encode()).hexdigest()
