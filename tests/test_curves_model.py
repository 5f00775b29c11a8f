"""What a reconstructed curve carries about its arm (lmsbayes.curves.likelihood).

Simulated trials (tests/_curves_sim.py: Weibull or log-logistic, n 20-200, uniform censoring,
digitised at figure resolution) are reconstructed, and the arm's linear predictor eta at
6 months (logit S(6) or log H(6), the model's scale) is integrated on a grid under a flat
prior, with the shape k at its true value (the model shares k across arms; here it is
known) or free. Compared with:

- the exact data (true event and censoring times, as if the patients' data were published):
  the most a curve can carry;
- what a paper prints: the KM median with its Brookmeyer-Crowley CI and Greenwood landmark
  rates, jointly normal with the correlation one KM curve gives them.

Tolerances: a coverage of the nominal 95% is checked within 3 Monte Carlo sds,
3 sqrt(0.95 x 0.05 / N) (0.046 for N = 200); sds are compared on their average over the trials.
"""

from __future__ import annotations

import numpy as np
import pytest
from _curves_sim import printed_loglik, simulated_curve, true_eta

from lmsbayes.curves import reconstruct
from lmsbayes.curves.likelihood import grid_posterior, group, log_survival, loglik


def test_loglik_matches_closed_form():
    # one event in (2, 4], one censoring at 5, log-logistic eta 0.3, k 1.4, t_ref 6
    def s(t):
        return 1 / (1 + np.exp(-(0.3 - 1.4 * np.log(t / 6))))

    data = group([2.0, 5.0], [4.0, 5.0], [1, 0])
    expected = np.log(s(2) - s(4)) + np.log(s(5))
    assert loglik(data, 0.3, 1.4, 6.0, "loglogistic") == pytest.approx(expected, rel=1e-12)
    # Weibull: S = exp(-exp(eta + k log(t / t_ref)))
    w = np.exp(-np.exp(-0.5 + 1.2 * np.log(np.array([2, 4, 5]) / 6)))
    expected = np.log(w[0] - w[1]) + np.log(w[2])
    assert loglik(data, -0.5, 1.2, 6.0, "weibull") == pytest.approx(expected, rel=1e-12)
    # an event from time 0: S(0) = 1
    assert np.exp(log_survival(0.0, 0.3, 1.4, 6.0, "loglogistic")) == 1.0


def test_grid_posterior_matches_normal_closed_form():
    # an 'extra' term that is exactly normal in eta: the posterior is N(0.4, 0.2^2)
    out = grid_posterior(
        None, "loglogistic", shape=1.0, extra=lambda e, k: -0.5 * ((e - 0.4) / 0.2) ** 2
    )
    assert out["eta_mean"] == pytest.approx(0.4, abs=1e-6)
    assert out["eta_sd"] == pytest.approx(0.2, rel=1e-3)
    assert out["eta_q"][0] == pytest.approx(0.4 - 1.959964 * 0.2, abs=2e-3)


def _study(n_trials: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    rows = []
    for rep in range(n_trials):
        family = ("weibull", "loglogistic")[rep % 2]
        n = int(rng.integers(20, 201))
        k = rng.uniform(0.8, 2.0)
        time, event, scale, curve = simulated_curve(rng, n, family, rng.uniform(3, 12), k)
        eta0 = true_eta(family, scale, k)
        rec = reconstruct(curve)
        post = {
            "curve": grid_posterior(group(rec.lower, rec.time, rec.event), family, shape=k),
            # exact times: an event in (0.999 t, t], i.e. the density to 0.1%
            "exact": grid_posterior(
                group(np.where(event == 1, 0.999 * time, time), time, event), family, shape=k
            ),
        }
        for name, landmarks in (("median+6m", (6.0,)), ("median", ())):
            extra, used = printed_loglik(time, event, family, landmarks=landmarks)
            post[name] = grid_posterior(None, family, shape=k, extra=extra) if used else None
        rows.append(
            {
                name: (p["eta_sd"], p["eta_q"][0] <= eta0 <= p["eta_q"][1])
                if p
                else (np.nan, np.nan)
                for name, p in post.items()
            }
        )
    return {
        name: {
            "sd": np.array([r[name][0] for r in rows], float),
            "covered": np.array([r[name][1] for r in rows], float),
        }
        for name in rows[0]
    }


def _check(study: dict, n_trials: int) -> None:
    mc = 3 * np.sqrt(0.95 * 0.05 / n_trials)
    curve = study["curve"]
    assert abs(curve["covered"].mean() - 0.95) <= mc
    # the reconstruction loses at most 2% of the exact data's precision (measured: 0.0%)
    assert curve["sd"].mean() <= 1.02 * study["exact"]["sd"].mean()
    # a curve carries at least as much as its median and 6-month rate, or its median alone
    # (measured over 200 trials: mean sd 0.173 vs 0.196 and 0.208)
    for printed in ("median+6m", "median"):
        ok = np.isfinite(study[printed]["sd"])
        assert curve["sd"][ok].mean() <= study[printed]["sd"][ok].mean()


def test_curve_information_fast():
    _check(_study(60, 7), 60)


@pytest.mark.slow
def test_curve_information_200_trials():
    _check(_study(200, 12), 200)


# --- the per-arm fit, truncation and goodness-of-fit check (lmsbayes.curves.fit)


def test_chi2_tail_closed_forms():
    from math import erfc, exp, sqrt

    from lmsbayes.curves.fit import chi2_sf

    for x in (0.1, 1.0, 3.84, 12.0):
        assert chi2_sf(x, 2) == pytest.approx(exp(-x / 2), rel=1e-10)  # df 2: exponential
        assert chi2_sf(x, 1) == pytest.approx(erfc(sqrt(x / 2)), rel=1e-9)  # df 1: normal
        # df 4: exp(-x/2) (1 + x/2)
        assert chi2_sf(x, 4) == pytest.approx(exp(-x / 2) * (1 + x / 2), rel=1e-10)


def test_expected_events_closed_form():
    from lmsbayes.curves.fit import grouped_events

    # 30 patients at risk from 0, 10 events at 1..5 and 20 censored at 6 (= the interval's end):
    # E = sum of cumulative hazards to each exit, H = -log S; S(t) = 1 - 0.05 t before 6, 0.7 at 6
    time = np.r_[np.linspace(1, 5, 10), np.full(20, 6.0)]
    event = np.r_[np.ones(10), np.zeros(20)].astype(int)

    def s_fit(t):
        return np.where(np.asarray(t) >= 6, 0.7, 1 - 0.05 * np.asarray(t))

    obs, exp_ = grouped_events(time, event, time, np.array([0.0, 6.0 + 1e-9]), s_fit)
    np.testing.assert_allclose(obs, [10])
    expected = -np.sum(np.log(1 - 0.05 * np.linspace(1, 5, 10))) - 20 * np.log(0.7)
    np.testing.assert_allclose(exp_, [expected])


def test_truncate_censors_at_t_max():
    from lmsbayes.curves.fit import truncate

    t, e, lo = truncate([2, 5, 7, 9], [1, 0, 1, 1], [1, 5, 5.5, 8.5], 6.0)
    np.testing.assert_allclose(t, [2, 5, 6, 6])
    np.testing.assert_array_equal(e, [1, 0, 0, 0])
    np.testing.assert_allclose(lo, [1, 5, 6, 6])


def test_goodness_of_fit_flags_a_plateau():
    """A curve with a cured fraction (S = 0.4 + 0.6 exp(-t/4)) is neither log-logistic nor
    Weibull: with 200 patients the check rejects both at 5% (p 0.034 and 0.008 at this seed)."""
    from _curves_sim import digitise

    from lmsbayes.curves import curve_from_arrays
    from lmsbayes.curves.fit import fit_arm

    rng = np.random.default_rng(3)
    n = 200
    cured = rng.uniform(size=n) < 0.4
    x = np.where(cured, np.inf, rng.exponential(4.0, n))
    c = rng.uniform(0, 30, n)
    time, event = np.minimum(x, c), (x <= c).astype(int)
    rec = reconstruct(curve_from_arrays(*digitise(rng, time, event, 24.0)))
    for family in ("loglogistic", "weibull"):
        assert fit_arm(rec, family).p_value < 0.05


def _free_shape_study(n_trials: int, seed: int):
    from lmsbayes.curves.fit import fit_arm

    rng = np.random.default_rng(seed)
    cover_eta, cover_k, p_values = [], [], []
    for rep in range(n_trials):
        family = ("weibull", "loglogistic")[rep % 2]
        n = int(rng.integers(20, 201))
        k = rng.uniform(0.8, 2.0)
        time, event, scale, curve = simulated_curve(rng, n, family, rng.uniform(3, 12), k)
        eta0 = true_eta(family, scale, k)
        fit = fit_arm(reconstruct(curve), family)
        cover_eta.append(fit.eta_lo <= eta0 <= fit.eta_hi)
        cover_k.append(fit.shape_lo <= k <= fit.shape_hi)
        p_values.append(fit.p_value)
    return np.array(cover_eta), np.array(cover_k), np.array(p_values)


@pytest.mark.slow
def test_free_shape_coverage_and_check_calibration_200_trials():
    """Eta and k both free (own family): their 95% intervals cover the truth at the nominal
    rate, and the goodness-of-fit check rejects a true family at 5% about 5% of the time
    (within 3 Monte Carlo sds: 0.046 and 0.046 for 200 trials)."""
    cover_eta, cover_k, p = _free_shape_study(200, 21)
    mc95 = 3 * np.sqrt(0.95 * 0.05 / 200)
    assert abs(cover_eta.mean() - 0.95) <= mc95
    assert abs(cover_k.mean() - 0.95) <= mc95
    p = p[np.isfinite(p)]
    assert abs(np.mean(p < 0.05) - 0.05) <= 3 * np.sqrt(0.05 * 0.95 / len(p))
