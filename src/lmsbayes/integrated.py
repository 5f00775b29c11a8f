"""Summaries integrated over the exact engine's fixed rule, not read off single draws.

An exact fit keeps the rule it integrated the global parameters with
(lmsbayes.engines.rules: points theta_j, weights w_j). Given theta, a pooled
rate is a number and a new trial's rate is the inverse link of a normal
variable (its linear predictor plus tau times a standard normal). So:

- the pooled rate's quantiles are weighted quantiles over the points;
- a new trial's rate has CDF sum_j w_j Phi((x(r) - loc_j) / scale_j) on the
  link scale (x(r) the link of the rate r), inverted by bisection;
- p1 = p0 ** HR is a monotone map: its quantiles are p0's raised to HR;
- each quantile carries the rule's integration error (lmsbayes.engines.rules.Rule.error).

A case-mix setting (a line's included arms, EORTC-comparable) averages the
arms' rates; an arm whose uterine fraction is latent contributes its rate
integrated over the fraction's posterior given theta and its own data
(Gauss-Legendre nodes), so this too is a function of theta alone.

:func:`link_normals` gives the predictive density's components for the MAP
prior (lmsbayes.prior): weights, locations and scales of normals on a named
link scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

from lmsbayes.engines import rules

__all__ = ["LinkNormals", "has_rule", "link_normals", "rate_summaries", "rule_applies"]

_GL_NODES = 12  # Gauss-Legendre nodes over a latent uterine fraction


def has_rule(fit) -> bool:
    """True when the fit carries a fixed integration rule (exact engine)."""
    return "integration_rule" in fit.groups


def rule_applies(fit, target=None) -> bool:
    """True when the fit's fixed rule answers its new-trial summaries.

    An exact-engine fit whose new-trial predictive is the arm effect's normal
    at the setting's design: no group effects (a new group adds their scale),
    no drift over publication year (its basis is no setting column), no age
    discount and no Student-t arm effects, and no predictive ``target``.
    Otherwise the summaries come from the draws.
    """
    m = fit.model
    structured = m.grouped or m.drift or m.discounted or m.student_t
    return has_rule(fit) and not structured and target is None


def _rule(fit) -> rules.Rule:
    ds = fit.groups["integration_rule"]  # numpy (a fresh fit) or a Dataset (a loaded one)
    return rules.Rule(
        theta=ds["theta"].values,
        log_weight=ds["log_weight"].values,
        group=ds["group"].values,
        kind=str(ds.attrs["kind"]),
        coarse_log_weight=ds["coarse_log_weight"].values if "coarse_log_weight" in ds else None,
    )


@dataclass
class LinkNormals:
    """A new trial's rate, per setting and landmark, as a mixture of normals on a link scale.

    Attributes
    ----------
    rule : lmsbayes.engines.rules.Rule
        The points (P) and their weights.
    loc : list of ndarray (P, M_s, L), one per setting
        Each point's components' locations on the link scale (M_s components
        per point: 1, or a case mix's arms times latent-fraction nodes).
    scale : list of ndarray (P, M_s, L)
    mix : list of ndarray (P, M_s)
        The components' weights within a point (summing to 1 over M_s).
    pooled : ndarray (P, setting, L)
        The pooled rate at each point.
    link : {'logit', 'cloglog'}
        rate = expit(x) (rising in x) or exp(-exp(x)) (falling in x).
    """

    rule: rules.Rule
    loc: list
    scale: list
    mix: list
    pooled: np.ndarray
    link: str
    pooled_half: np.ndarray | None = (
        None  # tensor rules: half the pooled rate's spread over each cell
    )

    @property
    def decreasing(self) -> bool:
        """True when the rate falls as the link value rises (cloglog)."""
        return self.link == "cloglog"

    def rate(self, x):
        """The rate at link values x."""
        return _inverse_link(self.link, x)

    def components(self, s: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(weights, loc, scale) of setting s at landmark k.

        Flattened over points and components.
        """
        w = (self.rule.weights[:, None] * self.mix[s]).ravel()
        return w, self.loc[s][:, :, k].ravel(), self.scale[s][:, :, k].ravel()


def _inverse_link(link: str, x):
    return special.expit(x) if link == "logit" else np.exp(-np.exp(x))


def _rate_link(fit, eta: np.ndarray, shape, landmarks: Sequence[float]):
    """Link-scale location of the rate at each landmark, and the link.

    From predictors eta (..., K), the location is (..., L).

    The family computes the rate and names the scale a new arm's effect adds on.
    """
    d = fit.data
    link = d.family.effect_link
    if link not in ("logit", "cloglog"):
        raise NotImplementedError(f"no integrated summaries on the {link} scale")
    loc = d.family.rate_links(eta, list(landmarks), d.landmarks, shape, fit.spec.model.t_ref)
    return loc, link


def _tau_per_landmark(fit, tau: np.ndarray, landmarks: Sequence[float]) -> np.ndarray:
    """tau (..., Kz) as (..., L): per-landmark models have one per fitted landmark, others one."""
    n_l = max(len(landmarks), 1)
    if tau.shape[-1] == 1:
        return np.repeat(tau, n_l, axis=-1)
    return tau[..., [fit.data.landmarks.index(float(t)) for t in landmarks]]


def _latent_weights(fit, values: dict, arms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior weights of Gauss-Legendre nodes of each latent arm's fraction given theta.

    Returns the nodes (Q,) and the weights (P, arm, Q) for the ``arms`` (positions among the
    latent arms).
    """
    from lmsbayes.engines.exact import Integrator, log_sum_exp, quad_from_three

    m = fit.model
    integ = Integrator(m, nodes=fit.spec.exact.nodes, uterine_nodes=_GL_NODES)
    c = m.canonical(values)
    P = np.shape(values["tau"])[0]
    per = integ._per_arm(integ.latent_part, c)
    xg, wg = np.polynomial.legendre.leggauss(_GL_NODES)
    u, log_wu = 0.5 * (xg + 1), np.log(0.5 * wg)
    if integ.u_closed:  # the log-likelihood is exactly quadratic in u: evaluate it at the nodes
        a0, a1, a2 = quad_from_three(per.reshape(P, -1, 3))
        logd = a1[..., None] * u + a2[..., None] * u**2 + log_wu
    else:
        logd = per.reshape(P, -1, _GL_NODES) + log_wu
    logd = logd[:, arms]
    # plain numpy: scipy's logsumexp costs 3x as much on these (P, arm, Q) arrays
    w = np.exp(logd - log_sum_exp(logd, axis=-1)[..., None])
    return u, w


def link_normals(
    fit, settings, landmarks: Sequence[float], *, pooled_only: bool = False
) -> LinkNormals:
    """The mixture-of-normals form of the pooled and predictive rates at the rule's points.

    ``settings`` and ``landmarks`` as checked by :func:`lmsbayes.predict.predict`
    (an empty landmark list for a binomial table). ``pooled_only``: the pooled
    rates alone (``loc``, ``scale`` and ``mix`` are then empty lists).
    """
    rule = _rule(fit)
    loc, scale, mix, link = _normals_at(fit, rule.theta, settings, landmarks, pooled_only)
    pooled = _pooled(link, loc, mix)
    if pooled_only:
        loc, scale, mix = [], [], []
    out = LinkNormals(rule=rule, loc=loc, scale=scale, mix=mix, pooled=pooled, link=link)
    if rule.kind == "tensor":
        # a grid's atoms stand for their cells: the pooled rate's spread over each cell (along
        # every edge of it) makes the atoms uniform intervals, so quantiles do not step between
        # nodes
        cell = _rule_cells(fit, rule)
        half = np.zeros_like(out.pooled)
        for i in range(cell.shape[-1]):
            up = _normals_at(fit, rule.theta + 0.5 * cell[:, :, i], settings, landmarks, True)
            dn = _normals_at(fit, rule.theta - 0.5 * cell[:, :, i], settings, landmarks, True)
            half += 0.5 * np.abs(_pooled(link, up[0], up[2]) - _pooled(link, dn[0], dn[2]))
        out.pooled_half = half
    return out


def _pooled(link: str, loc: list, mix: list) -> np.ndarray:
    """The pooled rate (P, setting, L): each setting's components' rates, averaged by ``mix``.

    One component (a defined setting): its rate itself. Several (a case mix): their
    weighted sum, over the components padded with zero weights to the most any
    setting has, as the sum was first written (the same floating-point sums).
    """
    M = max(x.shape[1] for x in loc)
    out = []
    for lo, mi in zip(loc, mix):
        r = _inverse_link(link, lo)  # (P, M_s, L)
        if lo.shape[1] == 1:
            out.append(r[:, 0] * mi[:, :1])  # times its weight, 1
            continue
        pad = M - lo.shape[1]
        if pad:
            r = np.concatenate([r, np.full((r.shape[0], pad, r.shape[2]), 0.5)], axis=1)
            mi = np.concatenate([mi, np.zeros((mi.shape[0], pad))], axis=1)
        out.append(np.einsum("psm,psml->psl", mi[:, None], r[:, None])[:, 0])
    return np.stack(out, axis=1)


def _rule_cells(fit, rule) -> np.ndarray:
    return fit.groups["integration_rule"]["cell"].values


def _normals_at(
    fit, theta: np.ndarray, settings, landmarks: Sequence[float], pooled_only: bool = False
):
    """loc, scale, mix (lists over the settings, see :class:`LinkNormals`) and the link at theta.

    ``pooled_only``: no scales (an empty list), for the pooled rate alone.
    """
    from lmsbayes.engines.exact import Layout
    from lmsbayes.settings import setting_design, shape_group_of, strata_of

    m, d = fit.model, fit.data
    values, _ = Layout(m).unpack(theta)
    c = m.canonical(values)
    P = theta.shape[0]
    L = max(len(landmarks), 1)
    lm = list(landmarks)
    locs, scales, mixes = [], [], []
    link = None
    latent_w = None  # the latent fractions' node weights, for every case mix at once
    for s in settings:
        if not s.case_mix:
            X = setting_design(fit, [s])
            eta = m.base_predictor_numpy(c, X)  # (P, 1, K)
            strata, groups = strata_of(fit, [s]), shape_group_of(fit, [s])
            shape = c["shape"][..., groups] if "shape" in c else None
            loc, link = _rate_link(fit, eta, shape, lm)  # (P, 1, L)
            tau = _tau_per_landmark(fit, c["tau"][..., strata, :], lm)  # (P, 1, L)
            parts = [(loc, tau, np.ones((P, 1)))]
        else:
            sel = np.flatnonzero(d.arms["line"].astype(str).to_numpy() == s.case_mix)
            lat_pos = {int(a): i for i, a in enumerate(d.latent)}
            known = np.array([a for a in sel if int(a) not in lat_pos], dtype=np.int64)
            latent = np.array([a for a in sel if int(a) in lat_pos], dtype=np.int64)
            A = sel.size
            parts = []
            shape_idx = d.shape_idx if len(d.shape_idx) else np.zeros(d.n_arms, np.int64)
            if known.size:
                eta = m.base_predictor_numpy(c, d.X[known])  # (P, a, K)
                shape = c["shape"][..., shape_idx[known]] if "shape" in c else None
                loc, link = _rate_link(fit, eta, shape, lm)
                tau = _tau_per_landmark(fit, c["tau"][..., d.stratum_idx[known], :], lm)
                parts.append((loc, tau, np.full((P, known.size), 1.0 / A)))
            if latent.size:
                if latent_w is None:
                    latent_w = _latent_weights(fit, values, np.arange(d.latent.size))
                u, wu = latent_w[0], latent_w[1][:, [lat_pos[int(a)] for a in latent]]
                Q = u.size
                arm = np.repeat(latent, Q)
                du = np.tile(u - d.uterine_centre, latent.size)
                Xq = d.X[arm] + du[:, None] * d.Xu[arm]
                eta = m.base_predictor_numpy(c, Xq)  # (P, a * Q, K)
                shape = c["shape"][..., shape_idx[arm]] if "shape" in c else None
                loc, link = _rate_link(fit, eta, shape, lm)
                tau = _tau_per_landmark(fit, c["tau"][..., d.stratum_idx[arm], :], lm)
                parts.append((loc, tau, wu.reshape(P, -1) / A))
        loc = np.concatenate([p[0] for p in parts], axis=1)
        n = loc.shape[1]
        locs.append(loc.reshape(P, n, -1)[..., :L])
        if not pooled_only:
            tau = np.concatenate([p[1] for p in parts], axis=1)
            scales.append(np.broadcast_to(tau, loc.shape).reshape(P, n, -1)[..., :L])
        mixes.append(np.concatenate([p[2] for p in parts], axis=1))
    return locs, scales, mixes, link


def _p_power_mean(ln: LinkNormals, hr: float, s: int, k: int, predictive: bool, w=None):
    """E[rate ** hr] (hr = 1: the mean) under the rule's weights ``w`` (default the rule's)."""
    w = ln.rule.weights if w is None else w
    if not predictive:
        return float(np.sum(w * ln.pooled[:, s, k] ** hr))
    x, gw = np.polynomial.hermite.hermgauss(40)
    z, gw = np.sqrt(2.0) * x, gw / np.sqrt(np.pi)
    r = ln.rate(ln.loc[s][:, :, k, None] + ln.scale[s][:, :, k, None] * z)  # (P, M_s, G)
    per_point = np.einsum("pmg,g,pm->p", r**hr, gw, ln.mix[s])
    return float(np.sum(w * per_point))


def rate_summaries(
    fit, settings, landmarks: Sequence[float], quantity: str, probs, hrs: Sequence[float] = ()
) -> dict[str, np.ndarray]:
    """Integrated quantiles and means of the pooled or predictive rate, and of p1 = p ** HR.

    Returns a dict with ``quantiles`` (prob, setting, L), ``error`` (its
    integration error, same shape), ``mean`` (setting, L) and, per HR,
    ``p1_mean`` (hr, setting, L); quantiles of p1 are those of p raised to HR.
    """
    ln = link_normals(fit, settings, landmarks, pooled_only=quantity == "pooled")
    rule = ln.rule
    probs = np.atleast_1d(np.asarray(probs, float))
    S, L = ln.pooled.shape[1], ln.pooled.shape[2]
    if quantity == "pooled":
        flat = ln.pooled.reshape(ln.pooled.shape[0], -1)
        half = None if ln.pooled_half is None else ln.pooled_half.reshape(flat.shape)
        # the atoms' order is the same under every weighting: sorted once for all of them
        order = np.argsort(flat, axis=0, kind="stable") if half is None else None

        def estimate(w):
            if half is None:
                return rules.weighted_quantile(flat, w, probs, order=order)
            return rules.uniform_mixture_quantile(w, flat, half, probs)

        q = estimate(rule.weights)
        err = rule.error(estimate, q)
        q, err = q.reshape(-1, S, L), err.reshape(-1, S, L)
    else:
        q = np.empty((probs.size, S, L))
        err = np.empty_like(q)
        for s in range(S):
            for k in range(L):

                def estimate(w, s=s, k=k):
                    ww = (w[:, None] * ln.mix[s]).ravel()
                    x = rules.normal_mixture_quantile(
                        ww,
                        ln.loc[s][:, :, k].ravel(),
                        ln.scale[s][:, :, k].ravel(),
                        probs,
                        decreasing=ln.decreasing,
                    )
                    return ln.rate(x)

                q[:, s, k] = estimate(rule.weights)
                err[:, s, k] = rule.error(estimate, q[:, s, k])
    pred = quantity == "predictive"
    mean = np.array([[_p_power_mean(ln, 1.0, s, k, pred) for k in range(L)] for s in range(S)])
    p1_mean = np.array(
        [[[_p_power_mean(ln, h, s, k, pred) for k in range(L)] for s in range(S)] for h in hrs]
    ).reshape(len(hrs), S, L)
    return {"quantiles": q, "error": err, "mean": mean, "p1_mean": p1_mean, "rule": rule}
