"""The likelihood families, written once for both engines.

Each family is a small set of functions of array arguments and an ``ops``
namespace (:data:`NUMPY_OPS` here; engines/nuts.py passes a PyTensor one), so
that the exact engine (numpy) and the NUTS engine (PyTensor) evaluate the
same algebra and cannot drift. The closed registry :data:`FAMILIES` says
what a spec's ``[model] likelihood`` may name (bambi-style families as data).

Terms
-----
A family turns observation-level linear predictors into log-likelihood
*terms*; summing the terms of one random-effect *component* (an arm, or an
arm at one landmark) gives that component's log-likelihood. For most
families a term is one observation. For ``survival`` the observations of an
arm are correlated (they come from one Kaplan-Meier curve), and a term is
one entry of the arm's precision matrix: ``-0.5 P_jl r_j r_l``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from scipy import special

__all__ = ["FAMILIES", "Family", "NUMPY_OPS", "survival_mean", "rate_from_eta", "LOG_2PI"]

LOG_2PI = math.log(2 * math.pi)
LOGLOG2 = math.log(math.log(2.0))


def _np_log1mexp(x):
    # log(1 - exp(x)) for x < 0, accurate on both sides of -log 2 (Maechler 2012)
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > -math.log(2), np.log(-np.expm1(x)), np.log1p(-np.exp(x)))


def _np_log1pexp(x):
    # log(1 + exp(x)) without overflow; twice as fast as np.logaddexp(0, x)
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


#: numpy implementation of the operations the families use.
NUMPY_OPS = SimpleNamespace(
    exp=np.exp,
    log=np.log,
    log1p=np.log1p,
    expm1=np.expm1,
    log1pexp=_np_log1pexp,
    log1mexp=_np_log1mexp,
    where=np.where,
    square=np.square,
    sum=np.sum,
)


@dataclass(frozen=True)
class Family:
    """A likelihood family: its link, structure and description.

    Attributes
    ----------
    name : str
    link : {'logit', 'cloglog', 'survival'}
        Scale of the arm-level linear predictor.
    per_landmark : bool
        True: parameters and random effects per landmark (each landmark its own
        model); False: one random effect per arm for all its observations.
    gaussian : bool
        The log-likelihood is quadratic in the arm's random effect, so the
        exact engine integrates it in closed form (else adaptive Gauss-Hermite).
    description : str
    """

    name: str
    link: str
    per_landmark: bool
    gaussian: bool
    description: str


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "logit-binomial",
            "logit",
            True,
            False,
            "y ~ Binomial(n_eff, p), logit p = eta: effective binomial data per arm (and landmark)",
        ),
        Family(
            "logit-normal",
            "logit",
            True,
            True,
            "logit(rate) ~ Normal(eta, se_logit): the two-stage model of frequentist meta-analysis "
            "(and of the EORTC 2021 analysis)",
        ),
        Family(
            "joint-cloglog",
            "cloglog",
            False,
            False,
            "the landmarks of one arm jointly: y[t1] ~ Binomial(n, S[t1]), then y[t] ~ Binomial(at risk, "
            "S[t] / S[t-1]); log cumulative hazard scale, proportional hazards across landmarks",
        ),
        Family(
            "survival",
            "survival",
            False,
            True,
            "one survival curve per arm (log-logistic or Weibull, shape shared): reported landmark rates "
            "at any time and the median, jointly normal on the logit / log-time scale with the "
            "correlation of one Kaplan-Meier curve",
        ),
    )
}


# ----------------------------------------------------------------------------- terms


def binomial_logit_terms(ops, eta, y, n, log_choose):
    """Binomial log pmf with logit success probability ``eta`` (one term per observation)."""
    return log_choose + y * eta - n * ops.log1pexp(eta)


def normal_terms(ops, mu, y, se):
    """Normal log density of ``y`` around ``mu`` (one term per observation)."""
    r = (y - mu) / se
    return -0.5 * r * r - ops.log(se) - 0.5 * LOG_2PI


def conditional_cloglog_terms(ops, eta, eta_prev, has_prev, n, y, log_choose):
    """Conditional binomial of the joint-landmarks likelihood (one term per observation).

    ``eta`` is the log cumulative hazard at the observation's landmark and
    ``eta_prev`` at the arm's previous observed landmark; the success
    probability exp(-(H - H_prev)) is given on the logit scale, without
    cancellation: H - H_prev = H * -expm1(log H_prev - log H).
    """
    gap = ops.where(has_prev > 0.5, -ops.expm1(eta_prev - eta), 1.0)
    d_hazard = ops.exp(eta) * gap
    logit_p = -d_hazard - ops.log1mexp(-d_hazard)
    return binomial_logit_terms(ops, logit_p, y, n, log_choose)


def survival_mean(ops, eta, shape, is_median, log_t_rel, log_t_ref, curve: str):
    """Mean of each survival observation on its own scale.

    Parameters
    ----------
    eta : array
        The arm's linear predictor at the observation: logit S(t_ref)
        (log-logistic) or log H(t_ref) (Weibull).
    shape : array
        The curve's shape k (> 0) at the observation.
    is_median : array of 0/1
        1 for a median (log-time scale), 0 for a landmark rate.
    log_t_rel : array
        log(t / t_ref) of a rate's landmark (ignored for medians).
    log_t_ref : float
    curve : {'loglogistic', 'weibull'}

    Returns
    -------
    array
        Log-logistic: logit S(t) = eta - k log(t / t_ref) for a rate, and
        log median = log t_ref + eta / k. Weibull: log(-log S(t)) =
        eta + k log(t / t_ref), and log median = log t_ref + (log log 2 - eta) / k.
    """
    if curve == "loglogistic":
        rate = eta - shape * log_t_rel
        median = log_t_ref + eta / shape
    elif curve == "weibull":
        rate = eta + shape * log_t_rel
        median = log_t_ref + (LOGLOG2 - eta) / shape
    else:  # pragma: no cover - guarded by the spec
        raise ValueError(f"unknown survival curve {curve!r}")
    return ops.where(is_median > 0.5, median, rate)


def gaussian_pair_terms(ops, mu, y, first, second, precision, log_scale=None, diagonal=None):
    """Terms ``-0.5 P_jl r_j r_l`` of a block-diagonal Gaussian quadratic form.

    ``first`` and ``second`` index the observations of each precision entry
    (both orders of an off-diagonal pair are listed); the normalising
    constants that are data are added by the caller.

    ``log_scale`` (per observation, may depend on parameters) divides the
    standard deviations: the covariance is ``S^-1 Sigma S^-1`` with
    ``S = diag(exp(log_scale))``, so ``r`` is scaled by ``S`` and the
    diagonal terms (``diagonal`` = 1 where first == second) carry that
    part of the normalising constant, ``+ log_scale_j``.
    """
    r = y - mu
    if log_scale is None:
        return -0.5 * precision * r[..., first] * r[..., second]
    r = r * ops.exp(log_scale)
    return -0.5 * precision * r[..., first] * r[..., second] + diagonal * log_scale[..., first]


#: The link (lmsbayes.links) on which a new arm's random effect adds to a curve's rate at any t:
#: logit S(t) = eta - k log(t / t_ref) (log-logistic), log(-log S(t)) = eta + k log(t / t_ref) (Weibull).
CURVE_LINKS = {"loglogistic": "logit", "weibull": "cloglog"}


def rate_from_eta(eta, t, shape, t_ref: float, curve: str):
    """Survival S(t) of a curve with linear predictor ``eta`` and shape (numpy/xarray).

    Log-logistic: S = expit(eta - k log(t / t_ref)); Weibull:
    S = exp(-exp(eta + k log(t / t_ref))).
    """
    rel = np.log(t / t_ref)
    if curve == "loglogistic":
        return special.expit(eta - shape * rel)
    if curve == "weibull":
        return np.exp(-np.exp(eta + shape * rel))
    raise ValueError(f"unknown survival curve {curve!r}")
