"""Quantities derived from posterior draws, in numpy: arm-level predictors, rates, replicates.

Whichever engine made the draws, these are computed the same way, from the
one model definition (lmsbayes.model.definition), so that a saved fit answers
questions later without PyMC.
"""

from __future__ import annotations

import numpy as np

from lmsbayes._lazy import xarray as xr
from lmsbayes.model.definition import Model

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
        v = post["v"].transpose("chain", "draw", "group", *model.effect_dims).values
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
    """The arm-level linear predictor of every draw: (chain, draw, arm, K).

    See :func:`predictor`.
    """
    return predictor(model, **posterior_arrays(model, post))


def arm_rates(model: Model, eta: np.ndarray, c: dict, landmarks) -> np.ndarray:
    """The arms' PFS rates at ``landmarks`` from their predictors: (chain, draw, arm, landmark)."""
    d = model.data
    shape = c["shape"][..., d.shape_idx] if "shape" in c else None  # (chain, draw, arm) or (arm,)
    return d.family.rates(eta, landmarks, d.landmarks, shape, model.spec.model.t_ref)


def observed(model: Model) -> np.ndarray:
    """The observed values on the likelihood's scale (one per observation)."""
    return np.asarray(model.arrays["lik_y"], float)


def posterior_predictive(
    model: Model, eta: np.ndarray, c: dict, rng: np.random.Generator, blocks=None
) -> np.ndarray:
    """Replicated observations (chain, draw, obs) on the likelihood's scale.

    ``blocks``: ``model.family.simulation_blocks(model)``, if computed already.
    """
    a = model.arrays
    # one column (K = 1): a single index is half the cost of two
    eta_obs = (
        eta[..., 0][..., a["arm_idx"]] if eta.shape[-1] == 1 else eta[..., a["arm_idx"], a["k_idx"]]
    )
    return model.data.family.simulate(model, eta, eta_obs, c, rng, blocks)
