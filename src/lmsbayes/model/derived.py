"""Quantities derived from posterior draws, in numpy: arm-level predictors, rates, replicates.

Whichever engine made the draws, these are computed the same way, from the
one model definition (lmsbayes.model.definition), so that a saved fit answers
questions later without PyMC.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy import special

from lmsbayes.model.definition import Model
from lmsbayes.model.families import NUMPY_OPS, rate_from_eta

__all__ = [
    "arm_predictor",
    "arm_rates",
    "observed",
    "posterior_arrays",
    "posterior_predictive",
    "predictor",
]


def _values(model: Model, post: xr.Dataset) -> dict[str, np.ndarray]:
    out = {}
    for p in model.params:
        da = post[p.name]
        out[p.name] = da.transpose("chain", "draw", *p.dims).values
    return out


def posterior_arrays(model: Model, post: xr.Dataset) -> dict[str, np.ndarray]:
    """The draws :func:`predictor` needs, as numpy arrays with leading dims (chain, draw)."""
    d = model.data
    C, D = post.sizes["chain"], post.sizes["draw"]
    out = {
        "values": _values(model, post),
        "z": post["z"]
        .transpose("chain", "draw", *model.z_dims)
        .values.reshape(C, D, d.n_arms, model.Kz),
    }
    if d.latent.size:
        out["u"] = post["uterine_latent"].transpose("chain", "draw", "arm_latent").values
    if model.grouped:
        v = post["v"].transpose("chain", "draw", "group", *model.z_dims[1:]).values
        out["v"] = v.reshape(C, D, len(d.groups), model.Kz)
    return out


def predictor(model: Model, values: dict, z: np.ndarray, u=None, v=None) -> np.ndarray:
    """The arm-level linear predictor (..., arm, K) from arrays of draws (leading dims ...).

    The same algebra as the engines (base predictor, with the drift where the
    model has one, plus s_i z_i), with latent uterine fractions ``u``
    (..., arm_latent) and, with group effects, their standardised values ``v``
    (..., group, Kz).
    """
    d = model.data
    c = model.canonical(values)
    du = None
    if d.latent.size:
        du = np.zeros(z.shape[:-2] + (d.n_arms,))
        du[..., d.latent] = u - d.uterine_centre
    a = model.arrays
    eta = model.base_predictor_numpy(c, a["X"], a["Xu"], du) + model.effect_scale(c) * z
    if v is not None:
        eta = eta + model.group_shift(c, v)
    return eta


def arm_predictor(model: Model, post: xr.Dataset) -> np.ndarray:
    """The arm-level linear predictor of every draw: (chain, draw, arm, K); see :func:`predictor`."""
    return predictor(model, **posterior_arrays(model, post))


def arm_rates(model: Model, eta: np.ndarray, c: dict, landmarks) -> np.ndarray:
    """The arms' PFS rates at ``landmarks`` from their predictors: (chain, draw, arm, landmark)."""
    fam = model.data.family
    if fam == "survival":
        shape = c["shape"][..., model.data.shape_idx]  # (chain, draw, arm) or (arm,)
        t = np.asarray(landmarks, float)
        return rate_from_eta(
            eta[..., :1], t, shape[..., None], model.spec.model.t_ref, model.data.curve
        )
    if fam == "joint-cloglog":
        return np.exp(-np.exp(eta))
    return special.expit(eta)


def observed(model: Model) -> np.ndarray:
    """The observed values on the likelihood's scale (one per observation)."""
    return np.asarray(model.arrays["lik_y"], float)


def posterior_predictive(
    model: Model, eta: np.ndarray, c: dict, rng: np.random.Generator, blocks=None
) -> np.ndarray:
    """Replicated observations (chain, draw, obs) on the likelihood's scale.

    ``blocks``: :func:`block_cholesky` of the model (survival), if computed already.
    """
    a = model.arrays
    fam = model.data.family
    # one column (K = 1): a single index is half the cost of two
    eta_obs = (
        eta[..., 0][..., a["arm_idx"]] if eta.shape[-1] == 1 else eta[..., a["arm_idx"], a["k_idx"]]
    )
    if fam == "logit-binomial":
        return rng.binomial(a["lik_n"].astype(np.int64), special.expit(eta_obs))
    if fam == "logit-normal":
        return rng.normal(eta_obs, a["lik_se"])
    if fam == "joint-cloglog":
        prev = eta[..., a["arm_idx"], a["prev_idx"]]
        gap = np.where(a["has_prev"] > 0.5, -np.expm1(prev - eta_obs), 1.0)
        return rng.binomial(a["lik_n"].astype(np.int64), np.exp(-np.exp(eta_obs) * gap))
    if fam == "survival":
        from lmsbayes.model.families import survival_mean

        shape = c["shape"][..., a["obs_shape_idx"]]
        mu = survival_mean(
            NUMPY_OPS,
            eta_obs,
            shape,
            a["is_median"],
            a["log_t_rel"],
            model.log_t_ref,
            model.data.curve,
        )
        # one Kaplan-Meier curve's observations are correlated: noise L^T block by block, the
        # blocks of each size side by side (lower-triangular products written out: blocks are small)
        blocks = blocks if blocks is not None else block_cholesky(model)
        perm = np.concatenate([idx.ravel() for idx, _ in blocks])
        noise = rng.standard_normal(mu.shape[:-1] + (perm.size,))
        corr = np.empty_like(noise)
        o = 0
        for idx, L in blocks:
            nb, size = idx.shape
            nz = noise[..., o : o + nb * size].reshape(noise.shape[:-1] + (nb, size))
            acc = nz[..., 0:1] * L[:, :, 0]
            for j in range(1, size):
                acc += nz[..., j : j + 1] * L[:, :, j]
            corr[..., o : o + nb * size] = acc.reshape(noise.shape[:-1] + (nb * size,))
            o += nb * size
        if model.se_by_shape:  # medians without a CI: sd = se / k at the draw's shape
            corr = corr * np.exp(-a["se_shape_power"][perm] * np.log(shape[..., perm]))
        mu[..., perm] += corr
        return mu
    raise ValueError(f"unknown likelihood {fam!r}")  # pragma: no cover


def block_cholesky(model: Model) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cholesky factors of the survival observations' block-diagonal covariance, by block size.

    One (index, factor) pair per block size: the observations of the blocks
    (block, size) and their factors (block, size, size), so that thousands of
    arms need neither a dense covariance nor a loop over arms.
    """
    a = model.arrays
    comp = model.obs_comp
    order = np.argsort(comp, kind="stable")
    counts = np.bincount(comp)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(comp.size, dtype=np.int64)
    rank[order] = np.arange(comp.size) - start[comp[order]]
    out = []
    for size in np.unique(counts[counts > 0]):
        blocks = np.flatnonzero(counts == size)
        idx = order[start[blocks][:, None] + np.arange(size)]  # (block, size) observations
        P = np.zeros((blocks.size, size, size))
        row = np.full(comp.size, -1, dtype=np.int64)
        row[idx.ravel()] = np.repeat(np.arange(blocks.size), size)
        f, s_ = a["first"], a["second"]
        mine = row[f] >= 0
        P[row[f[mine]], rank[f[mine]], rank[s_[mine]]] = a["precision"][mine]
        out.append((idx, np.linalg.cholesky(np.linalg.inv(P))))
    return out
