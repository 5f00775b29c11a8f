"""The likelihood families and survival curves: one class each, owning its behaviour.

A family is a class whose one instance the registry holds (bambi's
``families/builtin.py``, RBesT's S3 methods side by side). It carries, in one
place, everything the package does differently for it:

- its observation columns and standard-error rules (:meth:`Family.add_columns`,
  and for survival curves the scale of a rate and the Kaplan-Meier median's sd);
- its log-likelihood terms (:meth:`Family.loglik_terms`), written against an
  ``ops`` namespace (:data:`NUMPY_OPS` here; engines/nuts.py passes a PyTensor
  one), so that the exact engine (numpy) and NUTS (PyTensor) evaluate the same
  algebra and cannot drift;
- the rate at a landmark (:meth:`Family.rates`) and, for curves, the median;
- the exact engine's kernel (:meth:`Family.exact_kernel`: the terms and their
  derivatives in an arm's random effect) or, for Gaussian families, the closed
  form the engine builds from the terms;
- simulation from the likelihood (:meth:`Family.simulate`, for posterior
  predictive checks and simulation-based calibration);
- the held-out predictive density and PIT pieces validation needs.

The registry (:data:`FAMILIES`, :data:`CURVES`, :func:`get_family`) maps a
spec's ``[model] likelihood`` and ``curve`` to the instance, and lists the
valid names in its errors. No other module tests a family's or curve's name.

Terms
-----
A family turns observation-level linear predictors into log-likelihood
*terms*; summing the terms of one random-effect *component* (an arm, or an
arm at one landmark) gives that component's log-likelihood. For most
families a term is one observation. For the survival curves the observations
of an arm are correlated (they come from one Kaplan-Meier curve), and a term
is one entry of the arm's precision matrix: ``-0.5 P_jl r_j r_l``.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import override

import numpy as np
from scipy import special

__all__ = [
    "SURVIVAL_DESCRIPTION",
    "BinomialLogitKernel",
    "ConditionalCloglogKernel",
    "block_cholesky",
    "CURVES",
    "FAMILIES",
    "Family",
    "LOG_2PI",
    "NUMPY_OPS",
    "SurvivalCurve",
    "SurvivalCurveKernel",
    "CURVE_ARRAYS",
    "curve_arrays",
    "LogitBinomial",
    "LogitNormal",
    "JointCloglog",
    "LogLogistic",
    "Weibull",
    "LogNormal",
    "get_family",
]

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
    concatenate=np.concatenate,
    log_ndtr=special.log_ndtr,
)


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


# ----------------------------------------------------------------------------- helpers


def _log_choose(n, y):
    """log C(n, y) for real-valued counts."""
    return special.gammaln(n + 1) - special.gammaln(y + 1) - special.gammaln(n - y + 1)


def _cloglog_to_logit(x):
    """logit S and its derivative in x, for x = log(-log S) (a log cumulative hazard)."""
    hz = np.exp(x)
    return -hz - np.log(-np.expm1(-hz)), -hz / -np.expm1(-hz)


def _rows_of_landmarks(eta, landmarks, fitted):
    """Columns of ``eta`` (..., K) at ``landmarks`` among the ``fitted`` ones.

    All of eta without landmarks.
    """
    if not fitted:
        return eta
    idx = [fitted.index(float(t)) for t in landmarks]
    return eta[..., idx] if eta.shape[-1] > 1 else np.repeat(eta, len(idx), axis=-1)


def _binomial_counts_check(y, a, arm) -> None:
    n = a["lik_n"]
    bad = np.flatnonzero((y < 0) | (y > n) | (y != np.round(y)))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"simulated count {y[i]!r} of observation {i} (arm {arm(i)!r}) is outside "
            f"the support {{0, ..., n = {n[i]:g}}}"
        )


# ----------------------------------------------------------------------------- the families


class Family:
    """A likelihood family: the behaviour every family answers for.

    Subclasses set the class attributes and override the methods that
    differ; the registry holds one instance of each.

    Attributes
    ----------
    name : str
        The spec's ``[model] likelihood``.
    curve : str
        The spec's ``[model] curve`` (survival curves; '' otherwise).
    link : {'logit', 'cloglog', 'survival'}
        Scale of the arm-level linear predictor.
    per_landmark : bool
        True: parameters and random effects per landmark (each landmark its own
        model); False: one random effect per arm for all its observations.
    gaussian : bool
        The log-likelihood is quadratic in the arm's random effect, so the
        exact engine integrates it in closed form (else adaptive Gauss-Hermite
        on :meth:`exact_kernel`).
    any_landmark : bool
        One curve per arm: rates at any time, not only the fitted landmarks.
    joined : bool
        An arm's landmarks come from one model (rates fall with time in every draw).
    has_shape : bool
        The family has a curve shape parameter k.
    correlated_terms : bool
        Terms are entries of an arm's precision matrix (not one per observation).
    ordered_intercepts : bool
        The landmark intercepts are ordered (a log cumulative hazard grows with time).
    binomial_table : bool
        The family fits a plain (study, r, n) table.
    description : str
    """

    name = ""
    curve = ""
    link = "logit"
    #: the scale on which a new arm's random effect adds to its rate (a predictive density's link)
    effect_link = "logit"
    per_landmark = True
    gaussian = False
    any_landmark = False
    joined = False
    has_shape = False
    correlated_terms = False
    ordered_intercepts = False
    binomial_table = True
    description = ""
    #: how an arm's landmarks are fitted (printed beside the landmark-order check)
    landmark_relation = "independently"
    #: what exp(beta) is
    effect_name = "Odds ratio of progression-free"
    #: the scale of the linear predictor, in words
    scale_name = "logit rate"
    #: caption of the effects figure
    effect_caption = "Odds ratios exp(beta) per landmark"
    #: what the posterior predictive check shows
    ppc_description = "observed rate"
    #: validation: h(x) = (logit S, dh/dx) for a new arm's scale variable x; None where x is logit S
    logit_of_scale = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    @property
    def likelihood_description(self) -> str:
        """What the spec's ``[model] likelihood`` name means."""
        return self.description

    def label(self, model_part) -> str:
        """Short description of the family as a spec's ``[model]`` sets it (validation tables)."""
        return self.name

    def reported_landmarks(self, spec_landmarks, fitted_landmarks) -> list:
        """The landmarks results are reported at: the fitted ones (curves: the spec's)."""
        return list(fitted_landmarks)

    # --- observations -----------------------------------------------------------------

    def add_columns(self, obs) -> None:
        """Add the likelihood's own data columns to ``obs``.

        The columns are ``lik_y``, ``lik_n``, ``lik_se``, ...
        """
        raise NotImplementedError

    def data_arrays(self, data) -> dict[str, np.ndarray]:
        """Arrays the terms read beyond the common ones (``lik_*``, indices)."""
        return {}

    # --- the likelihood ---------------------------------------------------------------

    def loglik_terms(self, ops, eta, eta_obs, c, a, model):
        """Log-likelihood terms.

        Parameters
        ----------
        ops : namespace
            :data:`NUMPY_OPS` or the NUTS engine's PyTensor operations.
        eta : array (..., arm, K)
            Arm-level linear predictor.
        eta_obs : array (..., obs)
            ``eta`` at each observation's arm and landmark.
        c : dict
            Canonical parameters (:meth:`lmsbayes.model.definition.Model.canonical`).
        a : dict
            The model's data arrays.
        model : lmsbayes.model.definition.Model
        """
        raise NotImplementedError

    def inverse_link(self, eta):
        """The rate S from the linear predictor at a landmark."""
        return special.expit(eta)

    def rates(self, eta, landmarks, fitted_landmarks, shape=None, t_ref: float = 6.0):
        """Rates at ``landmarks`` from linear predictors ``eta`` (..., K) -> (..., landmark).

        ``fitted_landmarks``: the landmark dim of ``eta`` (empty: one column, no landmark).
        ``shape`` (..., ) and ``t_ref``: curves only.
        """
        return self.inverse_link(_rows_of_landmarks(eta, landmarks, fitted_landmarks))

    def rate_links(self, eta, landmarks, fitted_landmarks, shape=None, t_ref: float = 6.0):
        """The rates of :meth:`rates` on the :attr:`effect_link` scale (logit or cloglog).

        Here the rates transformed; a curve, whose own scale is its effect link, gives its
        linear form directly (no round trip through the rate).
        """
        rate = self.rates(eta, landmarks, fitted_landmarks, shape, t_ref)
        with np.errstate(divide="ignore"):
            if self.effect_link == "logit":
                return np.log(rate) - np.log1p(-rate)
            if self.effect_link == "cloglog":
                return np.log(-np.log(rate))
        raise NotImplementedError(f"no rates on the {self.effect_link} scale")

    # --- the exact engine ---------------------------------------------------------------

    def alpha_start(self, obs) -> float:
        """A starting value of the intercept for the exact engine's mode search."""
        return 0.0

    def exact_kernel(self, model):
        """The exact engine's kernel (terms and derivatives in a shift of eta); None if Gaussian."""
        return None

    # --- simulation ------------------------------------------------------------------

    def simulation_blocks(self, model):
        """What :meth:`simulate` can reuse across batches (None: nothing)."""
        return None

    def simulate(self, model, eta, eta_obs, c, rng, blocks=None):
        """Observations (..., obs) on the likelihood's scale drawn at ``eta``."""
        raise NotImplementedError

    def check_simulated(self, y, a, arm) -> None:
        """Raise ValueError naming the first simulated value outside the support.

        Finite checked already.
        """

    def with_observations(self, obs, y) -> None:
        """Set the descriptive columns of ``obs`` from new values ``y``.

        ``obs`` is a copy whose ``lik_y`` is already ``y``.
        """

    def display_values(self, v, a):
        """Values on the likelihood's scale -> what the posterior predictive check plots."""
        return special.expit(v)

    # --- validation -------------------------------------------------------------------

    def describe_observations(self, o, reported_sources) -> dict[str, np.ndarray]:
        """kind, t, value, reported and y of observations ``o`` (rows of ``ModelData.obs``).

        ``reported_sources``: the ``rate_source`` values of a reported (not derived) rate.
        """
        n = len(o)
        lm = o["landmark"].to_numpy(float) if "landmark" in o else np.full(n, math.nan)
        src = (
            o["rate_source"].astype(str).to_numpy()
            if "rate_source" in o
            else np.full(n, "reported")
        )
        return {
            "kind": np.full(n, "rate", dtype=object),
            "t": lm,
            "value": o["rate"].to_numpy(float),
            "reported": np.isin(src, reported_sources),
            "y": o["lik_y"].to_numpy(float),
        }

    def heldout_scores(self, elpd: float, o) -> dict[str, float]:
        """Extra scores of a held-out arm (curves: its elpd on the logit / log-time scale)."""
        return {}

    def predictive_normal(self, eta, shape, a, rows, model):
        """Gaussian families.

        Mean, slope in eta and sd of held-out observations ``rows`` at ``eta``.
        """
        raise NotImplementedError

    def rate_rows(self, a, rows) -> np.ndarray:
        """Which observations ``rows`` are rates (bool): all of them but a curve's medians."""
        return np.ones(len(rows), dtype=bool)

    def falls_with_rate(self, a, rows) -> np.ndarray:
        """Which observations' scale falls as the reported rate rises.

        Bool; validation flips them.
        """
        return np.zeros(len(rows), dtype=bool)

    def success_probability(self, eta, k, a, rows):
        """Binomial families: success probability of observations ``rows`` at ``eta`` (..., K)."""
        raise NotImplementedError

    def new_arm_scale(self, base, shape, t: float, t_ref: float, fitted_landmarks):
        """A new arm's scale variable at landmark t without its random effect.

        Also its landmark column.
        """
        kk = fitted_landmarks.index(float(t))
        return base[..., kk], kk


class LogitBinomial(Family):
    """Effective binomial counts per arm and landmark, logit link.

    The EORTC-style per-landmark model.
    """

    name = "logit-binomial"
    description = (
        "y ~ Binomial(n_eff, p), logit p = eta: effective binomial data per arm (and landmark)"
    )
    ppc_description = "y / n"

    @override
    def add_columns(self, obs) -> None:
        self._counts(obs, "n_eff", "y_eff")

    @staticmethod
    def _counts(obs, nk, yk) -> None:
        n = obs[nk].astype(np.float64).to_numpy()
        y = obs[yk].astype(np.float64).to_numpy()
        obs["lik_n"], obs["lik_y"] = n, y
        obs["log_choose"] = _log_choose(n, y)

    @override
    def loglik_terms(self, ops, eta, eta_obs, c, a, model):
        return binomial_logit_terms(ops, eta_obs, a["lik_y"], a["lik_n"], a["log_choose"])

    @override
    def alpha_start(self, obs) -> float:
        y, n = obs["lik_y"].to_numpy(float), obs["lik_n"].to_numpy(float)
        p = (y.sum() + 0.5) / (n.sum() + 1)
        return float(np.log(p / (1 - p)))

    @override
    def exact_kernel(self, model):
        return BinomialLogitKernel(model.arrays)

    @override
    def simulate(self, model, eta, eta_obs, c, rng, blocks=None):
        a = model.arrays
        return rng.binomial(a["lik_n"].astype(np.int64), special.expit(eta_obs))

    @override
    def check_simulated(self, y, a, arm) -> None:
        _binomial_counts_check(y, a, arm)

    @override
    def with_observations(self, obs, y) -> None:
        n = obs["lik_n"].to_numpy(float)
        obs["log_choose"] = _log_choose(n, y)
        obs["y_eff"] = y.astype(np.int64)
        if "rate" in obs:
            obs["rate"] = y / np.maximum(n, 1)

    @override
    def display_values(self, v, a):
        return v / a["lik_n"].astype(float)

    @override
    def success_probability(self, eta, k, a, rows):
        return special.expit(eta[..., k])


class LogitNormal(Family):
    """The logit of each reported rate, normal with its se: the two-stage model.

    Closed form in z.
    """

    name = "logit-normal"
    gaussian = True
    description = (
        "logit(rate) ~ Normal(eta, se_logit): the two-stage model of frequentist meta-analysis "
        "(and of the EORTC 2021 analysis)"
    )

    @override
    def add_columns(self, obs) -> None:
        rate = obs["rate"].to_numpy(float)
        n_known = obs["n"].astype("float64").to_numpy()
        size = np.where(np.isnan(n_known), obs["n_eff"].astype(float), n_known)
        # logit of 0 or 1 is infinite: the 0.5-corrected rate for the normal likelihood only
        rate_c = np.where((rate <= 0) | (rate >= 1), (rate * size + 0.5) / (size + 1), rate)
        obs["lik_y"] = np.log(rate_c / (1 - rate_c))
        obs["lik_se"] = obs["se_logit"].to_numpy(float)

    @override
    def loglik_terms(self, ops, eta, eta_obs, c, a, model):
        return normal_terms(ops, eta_obs, a["lik_y"], a["lik_se"])

    @override
    def alpha_start(self, obs) -> float:
        return float(obs["lik_y"].mean())

    @override
    def simulate(self, model, eta, eta_obs, c, rng, blocks=None):
        return rng.normal(eta_obs, model.arrays["lik_se"])

    @override
    def with_observations(self, obs, y) -> None:
        if "rate" in obs:
            obs["rate"] = special.expit(y)

    @override
    def predictive_normal(self, eta, shape, a, rows, model):
        return eta, np.ones_like(eta), a["lik_se"][rows]


class JointCloglog(Family):
    """An arm's landmarks jointly.

    Each conditional on the one before, log cumulative hazard scale.
    """

    name = "joint-cloglog"
    link = "cloglog"
    effect_link = "cloglog"
    per_landmark = False
    joined = True
    ordered_intercepts = True
    binomial_table = False
    description = (
        "the landmarks of one arm jointly: y[t1] ~ Binomial(n, S[t1]), then y[t] ~ Binomial(at "
        "risk, "
        "S[t] / S[t-1]); log cumulative hazard scale, proportional hazards across landmarks"
    )
    landmark_relation = "jointly"
    effect_name = "Hazard ratio of progression"
    scale_name = "log cumulative hazard"
    effect_caption = "Hazard ratios exp(beta) for all landmarks (proportional hazards)"
    ppc_description = "y / n at risk: after an arm's first landmark, given the one before"
    logit_of_scale = staticmethod(_cloglog_to_logit)

    @override
    def add_columns(self, obs) -> None:
        obs["prev_idx"] = obs["prev_landmark_idx"].astype(np.int64)
        LogitBinomial._counts(obs, "n_cond", "y_cond")

    @override
    def data_arrays(self, data) -> dict[str, np.ndarray]:
        return {"prev_idx": data.obs["prev_idx"].to_numpy(np.int64)}

    @override
    def loglik_terms(self, ops, eta, eta_obs, c, a, model):
        eta_prev = eta[..., a["arm_idx"], a["prev_idx"]]
        return conditional_cloglog_terms(
            ops, eta_obs, eta_prev, a["has_prev"], a["lik_n"], a["lik_y"], a["log_choose"]
        )

    @override
    def inverse_link(self, eta):
        return np.exp(-np.exp(eta))

    @override
    def alpha_start(self, obs) -> float:
        return -0.5

    @override
    def exact_kernel(self, model):
        return ConditionalCloglogKernel(model.arrays)

    @override
    def simulate(self, model, eta, eta_obs, c, rng, blocks=None):
        a = model.arrays
        prev = eta[..., a["arm_idx"], a["prev_idx"]]
        gap = np.where(a["has_prev"] > 0.5, -np.expm1(prev - eta_obs), 1.0)
        return rng.binomial(a["lik_n"].astype(np.int64), np.exp(-np.exp(eta_obs) * gap))

    @override
    def check_simulated(self, y, a, arm) -> None:
        _binomial_counts_check(y, a, arm)

    @override
    def with_observations(self, obs, y) -> None:
        n = obs["lik_n"].to_numpy(float)
        obs["log_choose"] = _log_choose(n, y)
        obs["y_cond"] = y.astype(np.int64)

    @override
    def display_values(self, v, a):
        return v / a["lik_n"].astype(float)

    @override
    def success_probability(self, eta, k, a, rows):
        prev = a["prev_idx"][rows]
        gap = np.where(a["has_prev"][rows] > 0.5, -np.expm1(eta[..., prev] - eta[..., k]), 1.0)
        return np.exp(-np.exp(eta[..., k]) * gap)


class SurvivalCurve(Family):
    """One survival curve per arm: a family for each curve shape (the spec's ``curve``).

    The curve is ``g(S(t)) = eta + sign(g) * (-k) log(t / t_ref)`` in a scale
    ``g`` of the rate; a subclass states ``g`` (:meth:`to_scale`), its inverse,
    the line (:meth:`linear`), the log median, the se of a binomial rate on its
    scale and the Kaplan-Meier median's density factor. Everything else (the
    correlated Gaussian likelihood of one curve's median and rates, its exact
    closed form, simulation, validation) is shared.
    """

    name = "survival"
    link = "survival"
    per_landmark = False
    gaussian = True
    any_landmark = True
    joined = True
    has_shape = True
    correlated_terms = True
    binomial_table = False
    landmark_relation = "one survival curve per arm"
    ppc_description = "landmark rates and medians (months) on their own scales"
    #: +1 where the rate's scale rises with S, -1 where it falls
    sign = 1.0
    #: f(m) m / k at the median m of a curve with shape k: the Kaplan-Meier median of n
    #: uncensored patients has sd(log m) = 1 / (2 sqrt(n) f(m) m) (see observations.py)
    density_at_median = math.nan

    @property
    @override
    def likelihood_description(self) -> str:
        return SURVIVAL_DESCRIPTION

    @override
    def label(self, model_part) -> str:
        m = model_part
        if m.shape == "fixed":
            return f"survival {m.curve}, shape fixed at {m.shape_value:g}"
        return f"survival {m.curve}, shape {m.shape}"

    @override
    def reported_landmarks(self, spec_landmarks, fitted_landmarks) -> list:
        return list(spec_landmarks)

    # --- the curve (subclasses) ---------------------------------------------------------

    def to_scale(self, p):
        """A rate on the curve's scale."""
        raise NotImplementedError

    def rate_of_scale(self, y):
        """Inverse of :meth:`to_scale`."""
        raise NotImplementedError

    def log_rate_of_scale(self, y):
        """log S from the rate's scale, accurate in the tails (reconstructed curves' likelihood)."""
        return np.log(self.rate_of_scale(y))

    def log_rate(self, ops, y):
        """:meth:`log_rate_of_scale` with any ``ops`` (the curve arms' terms in both engines)."""
        raise NotImplementedError

    def log_rate_derivs(self, y):
        """log S and its first two derivatives in the rate's scale y (numpy; exact engine)."""
        raise NotImplementedError

    def linear(self, eta, shape, log_t_rel):
        """The rate's scale at log(t / t_ref) (works with any ``ops``: linear in eta)."""
        raise NotImplementedError

    def log_median(self, eta, shape, log_t_ref):
        """log median of the curve."""
        raise NotImplementedError

    def se_from_logit(self, s: float, se_logit: float) -> float:
        """The se on the curve's scale of a rate s whose se on the logit scale is ``se_logit``."""
        raise NotImplementedError

    def log_jacobian_to_logit(self, c):
        """log |dc / dlogit S| of rate observations c on the curve's scale."""
        raise NotImplementedError

    # --- shared -------------------------------------------------------------------------

    def mean(self, ops, eta, shape, is_median, log_t_rel, log_t_ref):
        """Mean of each observation on its own scale: the rate's scale, or log time for a median."""
        rate = self.linear(eta, shape, log_t_rel)
        median = self.log_median(eta, shape, log_t_ref)
        return ops.where(is_median > 0.5, median, rate)

    def rate_at(self, eta, t, shape, t_ref: float):
        """S(t) of a curve with linear predictor ``eta`` (at t_ref) and shape (numpy/xarray)."""
        rel = np.log(t / t_ref)
        return self.rate_of_scale(self.linear(eta, shape, rel))

    @override
    def rates(self, eta, landmarks, fitted_landmarks, shape=None, t_ref: float = 6.0):
        return self.rate_at(eta[..., :1], np.asarray(landmarks, float), shape[..., None], t_ref)

    @override
    def rate_links(self, eta, landmarks, fitted_landmarks, shape=None, t_ref: float = 6.0):
        rel = np.log(np.asarray(landmarks, float) / t_ref)
        return self.linear(eta[..., :1], shape[..., None], rel)

    @override
    def add_columns(self, obs) -> None:
        obs["lik_y"] = obs["y"].to_numpy(float)

    @override
    def data_arrays(self, data) -> dict[str, np.ndarray]:
        out = {
            "first": data.terms["first"].to_numpy(np.int64),
            "second": data.terms["second"].to_numpy(np.int64),
            "precision": data.terms["precision"].to_numpy(float),
            "obs_shape_idx": np.asarray(data.shape_idx, np.int64)[
                data.obs["arm_idx"].to_numpy(np.int64)
            ],
            "se_shape_power": data.se_shape_power,
        }
        out["diagonal"] = (out["first"] == out["second"]).astype(float)
        out.update(curve_arrays(data))
        return out

    @override
    def loglik_terms(self, ops, eta, eta_obs, c, a, model):
        pairs = self._pair_terms(ops, eta_obs, c, a, model)
        if "curve_arm" not in a:
            return pairs
        # curve arms (lmsbayes.model.curve_arms): their grouped patients after the pair terms
        return ops.concatenate([pairs, self.curve_terms(ops, eta, c, a)], axis=-1)

    def _pair_terms(self, ops, eta_obs, c, a, model):
        shape = c["shape"][..., a["obs_shape_idx"]]
        mu = self.mean(ops, eta_obs, shape, a["is_median"], a["log_t_rel"], model.log_t_ref)
        if not model.se_by_shape:
            return gaussian_pair_terms(ops, mu, a["lik_y"], a["first"], a["second"], a["precision"])
        # medians without a CI: sd = se / k (the Kaplan-Meier median's asymptotic sd at the arm's
        # curve)
        log_scale = a["se_shape_power"] * ops.log(shape)
        return gaussian_pair_terms(
            ops,
            mu,
            a["lik_y"],
            a["first"],
            a["second"],
            a["precision"],
            log_scale=log_scale,
            diagonal=a["diagonal"],
        )

    def curve_terms(self, ops, eta, c, a):
        """Terms of the curve arms' grouped patients, one per group (lmsbayes.model.curve_arms).

        An event in (lower, upper] contributes ``count * log(S(lower) - S(upper))``, written
        ``log S(lower) + log1mexp(log S(upper) - log S(lower))`` (S(0) = 1: no lower term
        where lower is 0); a censoring at upper ``count * log S(upper)``; S on the arm's curve
        (its eta, the shape of its shape group). The same algebra as
        :func:`lmsbayes.curves.likelihood.loglik` (tested equal).
        """
        e = eta[..., a["curve_arm"], 0]
        k = c["shape"][..., a["curve_shape_idx"]]
        log_hi = self.log_rate(ops, self.linear(e, k, a["curve_x_hi"]))
        log_lo = a["curve_has_lo"] * self.log_rate(ops, self.linear(e, k, a["curve_x_lo"]))
        # an event's gap is negative (upper > lower); a censoring's is replaced before the log
        gap = ops.where(a["curve_event"] > 0.5, log_hi - log_lo, -1.0)
        event = log_lo + ops.log1mexp(gap)
        return a["curve_count"] * ops.where(a["curve_event"] > 0.5, event, log_hi)

    @override
    def exact_kernel(self, model):
        # only asked for when curve arms make the likelihood non-Gaussian (Model.gaussian)
        return SurvivalCurveKernel(model)

    @override
    def simulation_blocks(self, model):
        return block_cholesky(model)

    @override
    def simulate(self, model, eta, eta_obs, c, rng, blocks=None):
        a = model.arrays
        shape = c["shape"][..., a["obs_shape_idx"]]
        mu = self.mean(NUMPY_OPS, eta_obs, shape, a["is_median"], a["log_t_rel"], model.log_t_ref)
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

    @override
    def with_observations(self, obs, y) -> None:
        obs["y"] = y
        med = obs["is_median"].to_numpy(float) > 0.5
        rate = self.rate_of_scale(y)
        obs["value"] = np.where(med, np.exp(np.where(med, y, 0.0)), rate)
        obs["t"] = np.where(med, obs["value"], obs["t"])

    @override
    def display_values(self, v, a):
        med = np.asarray(a["is_median"]) > 0.5
        return np.where(med, np.exp(v), self.rate_of_scale(v))

    @override
    def describe_observations(self, o, reported_sources) -> dict[str, np.ndarray]:
        return {
            "kind": o["kind"].to_numpy(object),
            "t": o["t"].to_numpy(float),
            "value": o["value"].to_numpy(float),
            "reported": np.ones(len(o), dtype=bool),
            "y": o["lik_y"].to_numpy(float),
        }

    def heldout_scores(self, elpd: float, o) -> dict[str, float]:
        """``elpd_survival``: the elpd with rates on the logit scale (medians on log time)."""
        out = np.zeros(len(o))
        rate = o["is_median"].to_numpy(float) < 0.5
        out[rate] = self.log_jacobian_to_logit(o["lik_y"].to_numpy(float)[rate])
        return {"elpd_survival": float(elpd) + float(np.sum(out))}

    @override
    def predictive_normal(self, eta, shape, a, rows, model):
        args = (a["is_median"][rows], a["log_t_rel"][rows], model.log_t_ref)
        mu = self.mean(NUMPY_OPS, eta, shape, *args)
        slope = self.mean(NUMPY_OPS, eta + 1.0, shape, *args) - mu  # the mean is linear in eta
        se = model.data.obs["se"].to_numpy(float)[rows]
        if model.se_by_shape:  # medians without a CI: sd = se / k at the draw's shape
            se = se * np.exp(-a["se_shape_power"][rows] * np.log(shape))
        return mu, slope, se

    @override
    def rate_rows(self, a, rows) -> np.ndarray:
        return a["is_median"][rows] < 0.5

    @override
    def falls_with_rate(self, a, rows) -> np.ndarray:
        # the scale of a Weibull rate, log(-log S), falls as S rises; a median's log time does not
        return self.rate_rows(a, rows) if self.sign < 0 else np.zeros(len(rows), dtype=bool)

    @override
    def new_arm_scale(self, base, shape, t: float, t_ref: float, fitted_landmarks):
        return self.linear(base[..., 0], shape, math.log(t / t_ref)), 0


class LogLogistic(SurvivalCurve):
    """Log-logistic: logit S(t) = eta - k log(t / t_ref) (proportional odds)."""

    curve = "loglogistic"
    description = (
        "logit S(t) = eta - k log(t / t_ref): proportional odds, logit rates linear in log t"
    )
    density_at_median = 0.25
    effect_caption = (
        "Odds ratios exp(beta) of being progression-free, for all landmarks (one curve per arm)"
    )

    @override
    def to_scale(self, p):
        return np.log(p) - np.log1p(-p)

    @override
    def rate_of_scale(self, y):
        return special.expit(y)

    @override
    def log_rate_of_scale(self, y):
        return -np.logaddexp(0.0, -y)

    @override
    def log_rate(self, ops, y):
        return -ops.log1pexp(-y)

    @override
    def log_rate_derivs(self, y):
        s = special.expit(y)
        return -_np_log1pexp(-y), 1.0 - s, -s * (1.0 - s)

    @override
    def linear(self, eta, shape, log_t_rel):
        return eta - shape * log_t_rel

    @override
    def log_median(self, eta, shape, log_t_ref):
        return log_t_ref + eta / shape

    @override
    def se_from_logit(self, s, se_logit):
        return se_logit

    @override
    def log_jacobian_to_logit(self, c):
        return np.zeros_like(c)


class Weibull(SurvivalCurve):
    """Weibull: log(-log S(t)) = eta + k log(t / t_ref) (proportional hazards)."""

    curve = "weibull"
    effect_link = "cloglog"
    description = (
        "log(-log S(t)) = eta + k log(t / t_ref): proportional hazards (k = 1: constant hazard)"
    )
    sign = -1.0
    density_at_median = 0.5 * math.log(2.0)
    effect_name = "Hazard ratio of progression"
    scale_name = "log cumulative hazard"
    effect_caption = "Hazard ratios exp(beta) for all landmarks (proportional hazards)"
    logit_of_scale = staticmethod(_cloglog_to_logit)

    @override
    def to_scale(self, p):
        return np.log(-np.log(p))

    @override
    def rate_of_scale(self, y):
        return np.exp(-np.exp(y))

    @override
    def log_rate_of_scale(self, y):
        return -np.exp(y)

    @override
    def log_rate(self, ops, y):
        return -ops.exp(y)

    @override
    def log_rate_derivs(self, y):
        h = -np.exp(y)
        return h, h, h

    @override
    def linear(self, eta, shape, log_t_rel):
        return eta + shape * log_t_rel

    @override
    def log_median(self, eta, shape, log_t_ref):
        return log_t_ref + (LOGLOG2 - eta) / shape

    @override
    def se_from_logit(self, s, se_logit):
        return se_logit * (1 - s) / abs(math.log(s))

    @override
    def log_jacobian_to_logit(self, c):
        log_s = -np.exp(c)  # S = exp(-exp(c)): the rate the observation states
        return np.log(-np.expm1(log_s)) - np.log(-log_s)


class LogNormal(SurvivalCurve):
    """Log-normal: probit S(t) = eta - k log(t / t_ref), i.e. Phi^-1(S) linear in log t.

    The log time to progression is normal with mean log t_ref + eta / k and
    sd 1 / k, so the median is t_ref exp(eta / k), as for the log-logistic
    curve, whose logistic the normal replaces (lighter tails: a log-normal
    curve's hazard rises and then falls more slowly). Rates are observed on
    the probit scale: a binomial rate's se is sqrt(S (1 - S) / n) / phi(Phi^-1(S))
    (delta method), and the density factor of the Kaplan-Meier median is
    f(m) m / k = phi(0) = 1 / sqrt(2 pi).
    """

    curve = "lognormal"
    effect_link = "probit"
    description = (
        "probit S(t) = eta - k log(t / t_ref): log-normal times, probit rates linear in log t"
    )
    density_at_median = 1.0 / math.sqrt(2.0 * math.pi)
    effect_name = "exp(beta), probit scale of progression-free"
    scale_name = "probit rate"
    effect_caption = (
        "exp(beta): effects on the probit scale of being progression-free, for all landmarks "
        "(one curve per arm)"
    )

    @override
    def to_scale(self, p):
        return special.ndtri(p)

    @override
    def rate_of_scale(self, y):
        return special.ndtr(y)

    @override
    def log_rate_of_scale(self, y):
        return special.log_ndtr(y)

    @override
    def log_rate(self, ops, y):
        return ops.log_ndtr(y)

    @override
    def log_rate_derivs(self, y):
        L = special.log_ndtr(y)
        d1 = np.exp(-0.5 * y * y - 0.5 * LOG_2PI - L)  # phi / Phi (inverse Mills ratio)
        return L, d1, -d1 * (y + d1)

    @override
    def linear(self, eta, shape, log_t_rel):
        return eta - shape * log_t_rel

    @override
    def log_median(self, eta, shape, log_t_ref):
        return log_t_ref + eta / shape

    @override
    def se_from_logit(self, s, se_logit):
        # d probit / d logit = S (1 - S) / phi(probit S)
        z = float(special.ndtri(s))
        return se_logit * s * (1 - s) * math.sqrt(2 * math.pi) * math.exp(0.5 * z * z)

    @override
    def log_jacobian_to_logit(self, c):
        # c = probit S: log |dc / dlogit| = log S + log(1 - S) - log phi(c)
        return special.log_ndtr(c) + special.log_ndtr(-c) + 0.5 * c * c + 0.5 * LOG_2PI

    @staticmethod
    def logit_of_scale(x):
        """logit S and its derivative in x = probit S."""
        lp, lq = special.log_ndtr(x), special.log_ndtr(-x)
        log_phi = -0.5 * x * x - 0.5 * LOG_2PI
        return lp - lq, np.exp(log_phi - lp) + np.exp(log_phi - lq)


# ----------------------------------------------------------------------------- the registry

#: Survival curves a spec's ``[model] curve`` may name (likelihood ``survival``).
CURVES: dict[str, SurvivalCurve] = {f.curve: f for f in (LogLogistic(), Weibull(), LogNormal())}
#: Likelihood families a spec's ``[model] likelihood`` may name
#: (``survival``: any of :data:`CURVES`).
FAMILIES: dict[str, Family] = {
    f.name: f for f in (LogitBinomial(), LogitNormal(), JointCloglog(), CURVES["loglogistic"])
}
#: The survival likelihood's description (any curve).
SURVIVAL_DESCRIPTION = (
    "one survival curve per arm (curve: " + ", ".join(CURVES) + "; shape shared): reported "
    "landmark rates at any time and the median, jointly normal on the rate's / log-time scale "
    "with the correlation of one Kaplan-Meier curve"
)


def get_family(likelihood: str, curve: str = "") -> Family:
    """The family of a spec's ``[model] likelihood`` (and ``curve`` for ``survival``).

    Raises
    ------
    ValueError
        An unknown name, listing the valid ones.
    """
    if likelihood not in FAMILIES:
        raise ValueError(f"unknown likelihood {likelihood!r}; expected one of {list(FAMILIES)}")
    family = FAMILIES[likelihood]
    if not isinstance(family, SurvivalCurve):
        return family
    curve = curve or "loglogistic"
    if curve not in CURVES:
        raise ValueError(f"unknown survival curve {curve!r}; expected one of {list(CURVES)}")
    return CURVES[curve]


# ----------------------------------------------------------------------------- exact-engine kernels
# binomial likelihoods: terms and their derivatives in a shift of the linear predictor


class BinomialLogitKernel:
    """logit-binomial terms (:func:`binomial_logit_terms`) and their derivatives.

    ``shift`` is added to the linear predictor of a term (tau z of its
    component); derivatives are with respect to it.
    """

    def __init__(self, a: dict) -> None:
        self.y, self.n, self.lc = a["lik_y"], a["lik_n"], a["log_choose"]
        self.arm, self.k = a["arm_idx"], a["k_idx"]
        # each observation as a normal likelihood of its empirical logit (for Newton's starting
        # point)
        p = (self.y + 0.5) / (self.n + 1.0)
        self.logit_hat, self.w_hat = np.log(p / (1 - p)), (self.n + 1.0) * p * (1 - p)

    def prepare(self, base, c=None):
        """Per-term constants of a batch (..., term)."""
        return (base[..., self.arm, self.k],)

    def start(self, comp_sum, pre, scale):
        """A starting point for the mode of z.

        The posterior mode with each observation's normal approximation.

        ``comp_sum`` sums terms (..., term) by component (without constants).
        """
        A = comp_sum(self.w_hat * (self.logit_hat - pre[0]))
        W = comp_sum(np.broadcast_to(self.w_hat, pre[0].shape))
        return scale * A / (1.0 + scale * scale * W)

    @override
    def value(self, pre, shift, t=None):
        y, n, lc = (self.y, self.n, self.lc) if t is None else (self.y[t], self.n[t], self.lc[t])
        return binomial_logit_terms(NUMPY_OPS, pre[0] + shift, y, n, lc)

    @override
    def derivs(self, pre, shift, value: bool = False, t=None):
        y, n, lc = (self.y, self.n, self.lc) if t is None else (self.y[t], self.n[t], self.lc[t])
        eta = pre[0] + shift
        if not value:
            # few operations: Newton's method calls this on small arrays, where each costs ~1 us
            s = special.expit(eta)
            ns = n * s
            return y - ns, ns * (s - 1.0)
        e = np.exp(-np.abs(eta))
        s = np.where(eta >= 0, 1.0, e) / (1.0 + e)  # expit(eta)
        d1 = y - n * s
        d2 = -n * s * (1.0 - s)
        v = (
            lc + y * eta - n * (np.maximum(eta, 0.0) + np.log1p(e))
        )  # binomial_logit_terms, sharing e
        return v, d1, d2


class ConditionalCloglogKernel:
    """joint-cloglog terms (:func:`conditional_cloglog_terms`) and their derivatives.

    A shift s of the arm's log cumulative hazards multiplies the hazard
    increment d = exp(eta) (1 - exp(eta_prev - eta)) by e^s; a term is
    lc - y d + (n - y) log(1 - e^-d), so its derivatives in s are d T'(d) and
    d T'(d) + d^2 T''(d).
    """

    def __init__(self, a: dict) -> None:
        self.y, self.n, self.lc, self.has_prev = (
            a["lik_y"],
            a["lik_n"],
            a["log_choose"],
            a["has_prev"],
        )
        self.arm, self.k, self.prev = a["arm_idx"], a["k_idx"], a["prev_idx"]

    @override
    def prepare(self, base, c=None):
        eta, prev = base[..., self.arm, self.k], base[..., self.arm, self.prev]
        with np.errstate(divide="ignore", invalid="ignore"):
            log_gap = np.where(self.has_prev > 0.5, np.log(-np.expm1(prev - eta)), 0.0)
        return eta, prev, eta + log_gap

    def _data(self, t):
        if t is None:
            return self.y, self.n, self.lc, self.has_prev
        return self.y[t], self.n[t], self.lc[t], self.has_prev[t]

    @override
    def value(self, pre, shift, t=None):
        y, n, lc, hp = self._data(t)
        return conditional_cloglog_terms(NUMPY_OPS, pre[0] + shift, pre[1] + shift, hp, n, y, lc)

    @override
    def derivs(self, pre, shift, value: bool = False, t=None):
        y, n, _, _ = self._data(t)
        d = np.exp(pre[2] + shift)
        em1 = np.expm1(d)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            t1 = -y + (n - y) / em1
            t2 = -(n - y) / (em1 * -np.expm1(-d))  # -(n - y) e^d / (e^d - 1)^2
            dt1 = d * t1
            d2 = dt1 + d * d * t2
        dt1 = np.where(d > 0, dt1, n - y)  # d -> 0: d / expm1(d) -> 1
        d2 = np.where(d > 0, d2, 0.0)
        if not value:
            return dt1, d2
        return self.value(pre, shift, t), dt1, d2


# ----------------------------------------------------------------------------- curve arms


def curve_arrays(data) -> dict[str, np.ndarray]:
    """The curve arms' arrays (lmsbayes.model.curve_arms), one entry per group; {} without.

    ``curve_arm`` (the group's arm), ``curve_shape_idx`` (its shape group), ``curve_x_hi``
    and ``curve_x_lo`` (log(t / t_ref) of upper and lower; 0 where lower is 0, with
    ``curve_has_lo`` 0 there), ``curve_event``, ``curve_count``.
    """
    cr = getattr(data, "curve_rows", None)
    if cr is None or not len(cr):
        return {}
    arm = cr["arm_idx"].to_numpy(np.int64)
    lower, upper = cr["lower"].to_numpy(float), cr["upper"].to_numpy(float)
    has_lo = lower > 0
    shape_idx = np.asarray(data.shape_idx, np.int64)
    return {
        "curve_arm": arm,
        "curve_shape_idx": shape_idx[arm] if shape_idx.size else np.zeros_like(arm),
        "curve_x_hi": np.log(upper / data.t_ref),
        "curve_x_lo": np.where(has_lo, np.log(np.where(has_lo, lower, 1.0) / data.t_ref), 0.0),
        "curve_has_lo": has_lo.astype(float),
        "curve_event": cr["event"].to_numpy(float),
        "curve_count": cr["count"].to_numpy(float),
    }


#: the model arrays with one entry per curve group (the exact engine re-indexes them by arm)
CURVE_ARRAYS = (
    "curve_arm",
    "curve_shape_idx",
    "curve_x_hi",
    "curve_x_lo",
    "curve_has_lo",
    "curve_event",
    "curve_count",
)


class SurvivalCurveKernel:
    """The survival terms with curve arms, and their derivatives in a shift of an arm's eta.

    Terms are the Gaussian pair terms of the arms' medians and rates (quadratic in the shift s:
    ``-0.5 P (r_f - b_f s)(r_s - b_s s)``, r the scaled residuals at s = 0, b the slopes of
    the means in eta) followed by the curve groups' terms (:meth:`SurvivalCurve.curve_terms`),
    whose derivatives come from :meth:`SurvivalCurve.log_rate_derivs`: with
    ``r = S(upper) / S(lower)``, ``d log(S_lo - S_hi) = (L1_lo - r L1_hi) / (1 - r)`` and so on.
    Every term is concave in s (log-concave interval probabilities of a log-concave location
    family), as the exact engine's Newton steps and rejection sampler need.
    """

    def __init__(self, model) -> None:
        a = model.arrays
        self.family, self.model = model.family, model
        self.a = a
        self.n_pairs = len(a["first"])
        n = self.n_pairs + len(a["curve_arm"])
        zeros = np.zeros(n - self.n_pairs)
        self.precision = np.concatenate([a["precision"], zeros])
        self.count = np.concatenate([np.zeros(self.n_pairs), a["curve_count"]])
        self.event = np.concatenate([np.zeros(self.n_pairs), a["curve_event"]])
        self.has_lo = np.concatenate([np.zeros(self.n_pairs), a["curve_has_lo"]])
        self.is_pair = np.arange(n) < self.n_pairs

    def prepare(self, base, c=None):
        """Per-term constants of a batch (..., term): residuals and slopes, or curve scales."""
        a, f, m = self.a, self.family, self.model
        eta_obs = base[..., a["arm_idx"], a["k_idx"]]
        shape = np.asarray(c["shape"], float)
        k_obs = shape[..., a["obs_shape_idx"]]
        args = (a["is_median"], a["log_t_rel"], m.log_t_ref)
        mu = f.mean(NUMPY_OPS, eta_obs, k_obs, *args)
        slope = f.mean(NUMPY_OPS, eta_obs + 1.0, k_obs, *args) - mu  # linear in eta
        r = a["lik_y"] - mu
        const = np.zeros(r.shape[:-1] + (self.n_pairs,))
        if m.se_by_shape:
            log_scale = a["se_shape_power"] * np.log(k_obs)
            sc = np.exp(log_scale)
            r, slope = r * sc, slope * sc
            const = a["diagonal"] * log_scale[..., a["first"]]
        e = base[..., a["curve_arm"], 0]
        k = shape[..., a["curve_shape_idx"]]
        y_hi = f.linear(e, k, a["curve_x_hi"])
        y_lo = f.linear(e, k, a["curve_x_lo"])
        zc = np.zeros(y_hi.shape)

        def cat(p, q):
            lead = np.broadcast_shapes(p.shape[:-1], q.shape[:-1])
            p, q = np.broadcast_to(p, lead + p.shape[-1:]), np.broadcast_to(q, lead + q.shape[-1:])
            return np.concatenate([p, q], axis=-1)

        fi, se = a["first"], a["second"]
        return (
            cat(r[..., fi], y_hi),
            cat(r[..., se], y_lo),
            cat(slope[..., fi], zc),
            cat(slope[..., se], zc),
            cat(const, zc),
        )

    def _split(self, t):
        if t is None:
            return slice(0, self.n_pairs), slice(self.n_pairs, None), None
        pair = self.is_pair[t]
        return pair, ~pair, t

    def value(self, pre, shift, t=None):
        """The terms at a shift (..., term) (log S only: no derivatives)."""
        p_sel, c_sel, t = self._split(t)
        rf, rs, bf, bs, const, s = np.broadcast_arrays(*pre, shift)
        prec = self.precision if t is None else self.precision[t]
        out = np.empty(rf.shape)
        ef = rf[..., p_sel] - bf[..., p_sel] * s[..., p_sel]
        es = rs[..., p_sel] - bs[..., p_sel] * s[..., p_sel]
        out[..., p_sel] = -0.5 * prec[p_sel] * ef * es + const[..., p_sel]
        count, event, has_lo = (
            (self.count, self.event, self.has_lo)
            if t is None
            else (self.count[t], self.event[t], self.has_lo[t])
        )
        ev = event[c_sel] > 0.5
        sc = s[..., c_sel]
        Lh = self.family.log_rate(NUMPY_OPS, rf[..., c_sel] + sc)
        with np.errstate(all="ignore"):
            Ll = has_lo[c_sel] * self.family.log_rate(NUMPY_OPS, rs[..., c_sel] + sc)
            v_ev = Ll + _np_log1mexp(np.where(ev, Lh - Ll, -1.0))
        out[..., c_sel] = count[c_sel] * np.where(ev, v_ev, Lh)
        return out

    def derivs(self, pre, shift, value: bool = False, t=None):
        """First and second derivatives of the terms in the shift (and the value first)."""
        p_sel, c_sel, t = self._split(t)
        rf, rs, bf, bs, const = np.broadcast_arrays(*pre, shift)[:5]
        s = np.broadcast_to(shift, rf.shape)
        prec = self.precision if t is None else self.precision[t]
        out = [np.empty(rf.shape) for _ in range(3)]
        # pair terms: quadratic in s
        P = prec[p_sel]
        ef = rf[..., p_sel] - bf[..., p_sel] * s[..., p_sel]
        es = rs[..., p_sel] - bs[..., p_sel] * s[..., p_sel]
        out[0][..., p_sel] = -0.5 * P * ef * es + const[..., p_sel]
        out[1][..., p_sel] = 0.5 * P * (bf[..., p_sel] * es + bs[..., p_sel] * ef)
        out[2][..., p_sel] = -P * bf[..., p_sel] * bs[..., p_sel]
        # curve groups
        count, event, has_lo = (
            (self.count, self.event, self.has_lo)
            if t is None
            else (self.count[t], self.event[t], self.has_lo[t])
        )
        cnt, ev, hl = count[c_sel], event[c_sel] > 0.5, has_lo[c_sel]
        sc = s[..., c_sel]
        Lh, L1h, L2h = self.family.log_rate_derivs(rf[..., c_sel] + sc)
        with np.errstate(all="ignore"):
            Ll, L1l, L2l = (hl * v for v in self.family.log_rate_derivs(rs[..., c_sel] + sc))
            log_r = np.where(ev, Lh - Ll, -1.0)
            om = -np.expm1(log_r)  # 1 - S(upper) / S(lower)
            r = 1.0 - om
            v_ev = Ll + _np_log1mexp(log_r)
            d1_ev = (L1l - r * L1h) / om
            d2_ev = ((L1l * L1l + L2l) - r * (L1h * L1h + L2h)) / om - d1_ev * d1_ev
        out[0][..., c_sel] = cnt * np.where(ev, v_ev, Lh)
        out[1][..., c_sel] = cnt * np.where(ev, d1_ev, L1h)
        out[2][..., c_sel] = cnt * np.where(ev, d2_ev, L2h)
        return tuple(out) if value else (out[1], out[2])


# ----------------------------------------------------------------------------- simulation


def block_cholesky(model) -> list[tuple[np.ndarray, np.ndarray]]:
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
