"""Quantities derived from posterior draws, in numpy: arm-level predictors, rates, replicates.

Whichever engine made the draws, these are computed the same way, from the
one model definition (lmsbayes.model), so that a saved fit answers
questions later without PyMC.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy import special

from lmsbayes.likelihoods import NUMPY_OPS, rate_from_eta
from lmsbayes.model import Model

__all__ = ["arm_predictor", "arm_rates", "posterior_predictive", "observed"]


def _values(model: Model, post: xr.Dataset) -> dict[str, np.ndarray]:
    out = {}
    for p in model.params:
        da = post[p.name]
        out[p.name] = da.transpose("chain", "draw", *p.dims).values
    return out


def arm_predictor(model: Model, post: xr.Dataset) -> np.ndarray:
    """The arm-level linear predictor of every draw: (chain, draw, arm, K).

    The same algebra as the engines (base predictor plus tau z), with latent
    uterine fractions and, for NUTS fits with trial effects, the trial effect.
    """
    d = model.data
    c = model.canonical(_values(model, post))
    C, D = post.sizes["chain"], post.sizes["draw"]
    du = None
    if d.latent.size:
        du = np.zeros((C, D, d.n_arms))
        du[..., d.latent] = post["uterine_latent"].transpose("chain", "draw", "arm_latent").values - d.uterine_centre
    z = post["z"].transpose("chain", "draw", *model.z_dims).values.reshape(C, D, d.n_arms, model.Kz)
    eta = model.base_predictor(NUMPY_OPS, c, d.X, d.Xu, du) + model.effect_scale(c) * z
    if "v" in post:
        dims = ("chain", "draw", "trial", "landmark") if model.per_landmark else ("chain", "draw", "trial")
        v = post["v"].transpose(*dims).values[:, :, d.trial_idx]
        tt = post["trial_tau"].values
        tv = (tt[:, :, None, :] if model.per_landmark else tt[:, :, None]) * v
        eta = eta + (tv if model.per_landmark else tv[..., None])
    return eta


def arm_rates(model: Model, eta: np.ndarray, c: dict, landmarks) -> np.ndarray:
    """The arms' PFS rates at ``landmarks`` from their predictors: (chain, draw, arm, landmark)."""
    fam = model.data.family
    if fam == "survival":
        shape = c["shape"][..., model.data.shape_idx]  # (chain, draw, arm) or (arm,)
        t = np.asarray(landmarks, float)
        return rate_from_eta(eta[..., :1], t, shape[..., None], model.spec.model.t_ref, model.data.curve)
    if fam == "joint-cloglog":
        return np.exp(-np.exp(eta))
    return special.expit(eta)


def observed(model: Model) -> np.ndarray:
    """The observed values on the likelihood's scale (one per observation)."""
    return np.asarray(model.arrays["lik_y"], float)


def posterior_predictive(model: Model, eta: np.ndarray, c: dict, rng: np.random.Generator) -> np.ndarray:
    """Replicated observations (chain, draw, obs) on the likelihood's scale."""
    a = model.arrays
    fam = model.data.family
    eta_obs = eta[..., a["arm_idx"], a["k_idx"]]
    if fam == "logit-binomial":
        return rng.binomial(a["lik_n"].astype(np.int64), special.expit(eta_obs))
    if fam == "logit-normal":
        return rng.normal(eta_obs, a["lik_se"])
    if fam == "joint-cloglog":
        prev = eta[..., a["arm_idx"], a["prev_idx"]]
        gap = np.where(a["has_prev"] > 0.5, -np.expm1(prev - eta_obs), 1.0)
        return rng.binomial(a["lik_n"].astype(np.int64), np.exp(-np.exp(eta_obs) * gap))
    if fam == "survival":
        from lmsbayes.likelihoods import survival_mean

        shape = c["shape"][..., a["obs_shape_idx"]]
        mu = survival_mean(NUMPY_OPS, eta_obs, shape, a["is_median"], a["log_t_rel"], model.log_t_ref,
                           model.data.curve)  # fmt: skip
        noise = rng.standard_normal(mu.shape) @ _block_cholesky(model).T
        if model.se_by_shape:  # medians without a CI: sd = se / k at the draw's shape
            noise = noise * np.exp(-a["se_shape_power"] * np.log(shape))
        return mu + noise
    raise ValueError(f"unknown likelihood {fam!r}")  # pragma: no cover


def _block_cholesky(model: Model) -> np.ndarray:
    """Cholesky factor of the survival observations' block-diagonal covariance."""
    a = model.arrays
    n = len(a["lik_y"])
    P = np.zeros((n, n))
    P[a["first"], a["second"]] = a["precision"]
    L = np.zeros((n, n))
    comp = model.obs_comp
    for k in np.unique(comp):
        idx = np.flatnonzero(comp == k)
        L[np.ix_(idx, idx)] = np.linalg.cholesky(np.linalg.inv(P[np.ix_(idx, idx)]))
    return L
