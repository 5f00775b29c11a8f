"""Simulated trials digitised as a reader would from a printed figure (tests of lmsbayes.curves).

A trial: n patients, event times from a Weibull or log-logistic curve, independent uniform
censoring on (0, C). Its Kaplan-Meier curve is "printed" on an axis of ``WIDTH_PX`` x
``HEIGHT_PX`` pixels covering (0, t_max) x (0, 1), and a reader clicks the two corners of
every step, each click off by a uniform error of up to ``CLICK_PX`` pixels in each direction
and rounded to the pixel: the resolution a reader gets from a journal figure (a column-wide
figure of ~8 cm scanned at 200 dpi is ~600 pixels wide). The number-at-risk table is the
true one at every ``risk_every`` months, as a journal prints it.
"""

from __future__ import annotations

import numpy as np

from lmsbayes.curves import curve_from_arrays, kaplan_meier

WIDTH_PX = 600
HEIGHT_PX = 400
CLICK_PX = 1.0


def survival(t, family: str, scale: float, shape: float):
    t = np.asarray(t, float)
    if family == "weibull":
        return np.exp(-((t / scale) ** shape))
    return 1.0 / (1.0 + (t / scale) ** shape)


def draw_times(rng, n, family, scale, shape):
    u = rng.uniform(size=n)
    if family == "weibull":
        return scale * (-np.log(u)) ** (1 / shape)
    return scale * ((1 - u) / u) ** (1 / shape)


def simulate_trial(rng, n, family="weibull", median=6.0, shape=1.3, cens_max=30.0):
    """(time, event) of one trial; ``median`` sets the scale."""
    scale = median / (np.log(2) ** (1 / shape)) if family == "weibull" else median
    x = draw_times(rng, n, family, scale, shape)
    c = rng.uniform(0, cens_max, size=n)
    return np.minimum(x, c), (x <= c).astype(int), scale


def digitise(rng, time, event, t_max, risk_every=3.0):
    """The points a reader clicks on the printed KM curve, and the printed risk table."""
    km = kaplan_meier(time, event)
    keep = km.time <= t_max
    et, es = km.time[keep], km.surv[keep]
    before = np.r_[1.0, es[:-1]]
    t_pts = np.repeat(et, 2)
    s_pts = np.column_stack([before, es]).ravel()
    end = min(t_max, float(time.max()))
    t_pts, s_pts = np.r_[0.0, t_pts, end], np.r_[1.0, s_pts, es[-1] if len(es) else 1.0]
    dx, dy = t_max / WIDTH_PX, 1.0 / HEIGHT_PX
    px = np.round(t_pts / dx + rng.uniform(-CLICK_PX, CLICK_PX, len(t_pts)))
    py = np.round(s_pts / dy + rng.uniform(-CLICK_PX, CLICK_PX, len(s_pts)))
    px[0], py[0] = 0, HEIGHT_PX  # the curve's start is printed at (0, 1)
    pts = np.unique(np.column_stack([np.maximum(px, 0), py]), axis=0)  # one click per pixel
    rt = np.arange(0.0, end + 1e-9, risk_every)
    rn = [int(np.sum(time >= t)) for t in rt]
    return pts[:, 0] * dx, pts[:, 1] * dy, rt, rn


def simulated_curve(rng, n, family="weibull", median=6.0, shape=1.3, cens_max=30.0, t_max=24.0):
    """A simulated trial, its digitised curve (a CurveArm) and the true curve's scale."""
    time, event, scale = simulate_trial(rng, n, family, median, shape, cens_max)
    t, s, rt, rn = digitise(rng, time, event, t_max)
    curve = curve_from_arrays(t, s, rt, rn, arm_id=f"sim-{family}-{n}", file="<simulated>")
    return time, event, scale, curve


# --- what a curve carries about its arm, against what a paper prints (tests/test_curves_model.py)

LOGLOG2 = float(np.log(np.log(2.0)))
T_REF = 6.0


def true_eta(family, scale, shape, t_ref=T_REF):
    """The arm's linear predictor at t_ref on the model's scale (logit S or log H at t_ref)."""
    s = survival(t_ref, family, scale, shape)
    return float(np.log(s / (1 - s))) if family == "loglogistic" else float(np.log(-np.log(s)))


def printed_loglik(time, event, family, landmarks=(3.0, 6.0, 12.0), t_ref=T_REF):
    """The log-likelihood of what a paper prints about one arm's KM curve.

    The median with its Brookmeyer-Crowley 95% CI (log-log; normal on log time, se from the CI)
    and Greenwood landmark rates (normal on the logit, se from the log-log CI), jointly normal
    with the correlation one KM curve gives them: estimates at times a <= b share the Greenwood
    sum up to a, so corr = sqrt(G(a) / G(b)) (the median's error is its S-error at the median
    divided by the density, so it enters at the median's time). Returns
    (extra(eta, k), number of summaries used).
    """
    km = kaplan_meier(time, event)
    parts = []
    m, lo, hi = km.quantile_time(0.5)
    if np.isfinite(m) and np.isfinite(lo) and np.isfinite(hi) and hi > lo:
        parts.append(("median", m, np.log(m), (np.log(hi) - np.log(lo)) / 3.92))

    def lg(p):
        return np.log(p / (1 - p))

    for t in landmarks:
        s = float(km.at(t))
        clo, chi = km.ci([t])
        clo, chi = float(clo[0]), float(chi[0])
        if 0 < s < 1 and np.isfinite(clo) and np.isfinite(chi) and 0 < clo < chi < 1:
            parts.append((t, t, lg(s), (lg(chi) - lg(clo)) / 3.92))
    # a summary perfectly correlated with an earlier one (no event between their times) adds
    # nothing: keep the first
    keep: list = []
    for p in parts:
        g = km.greenwood_sum([p[1]])[0]
        if all(abs(g - km.greenwood_sum([q[1]])[0]) > 1e-12 for q in keep):
            keep.append(p)
    parts = keep
    gw = km.greenwood_sum(np.array([p[1] for p in parts]))
    corr = np.minimum.outer(gw, gw) / np.sqrt(np.outer(gw, gw))
    sd = np.array([p[3] for p in parts])
    y = np.array([p[2] for p in parts])
    prec = np.linalg.inv(corr * np.outer(sd, sd))

    def extra(eta, k):
        mus = []
        for what, *_ in parts:
            if what == "median":
                mu = (
                    np.log(t_ref) + eta / k
                    if family == "loglogistic"
                    else np.log(t_ref) + (LOGLOG2 - eta) / k
                )
            else:
                x = np.log(what / t_ref)
                if family == "loglogistic":
                    mu = eta - k * x
                else:  # the logit of the Weibull S(t)
                    log_s = -np.exp(eta + k * x)
                    mu = log_s - np.log(-np.expm1(log_s))
            mus.append(np.broadcast_to(mu, np.broadcast(eta, k).shape))
        r = y - np.stack(mus, axis=-1)
        return -0.5 * np.einsum("...i,ij,...j->...", r, prec, r)

    return extra, len(parts)
