"""Student-t random effects and arms nested in trials, fitted on the bundled data.

One fit with both options (one more compiled structure), checked three ways:
the sampler's diagnostics, the model's own algebra recomputed from the
posterior arrays (arms of one trial share its effect), and the spread of the
predictive rate against its closed form.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import quiet_fit

from lmsbayes.predict import Setting, predict
from lmsbayes.spec import load_spec

NU = 10.0  # a finite fourth moment, so the variance check below has a finite Monte Carlo error


@pytest.fixture(scope="module")
def robust_fit(trials):
    spec = load_spec("per_landmark").replace(
        **{
            "random_effects.distribution": "student_t",
            "random_effects.nu": NU,
            "random_effects.trial_effect": True,
            "sampler.draws": 1000,
            "sampler.tune": 1000,
        }
    )
    return quiet_fit(spec, trials)


@pytest.mark.slow
def test_robust_fit_samples_soundly(robust_fit):
    d = robust_fit.diagnostics
    assert d.engine == "nuts" and "NUTS used" in d.note
    assert d.divergences == 0
    assert d.max_rhat < 1.02
    assert d.min_ess_bulk > 200
    post = robust_fit.posterior
    assert post["v"].dims == ("chain", "draw", "group", "landmark")
    assert list(post["group"].values) == list(robust_fit.data.trials)  # the groups are the trials


@pytest.mark.slow
def test_arms_of_one_trial_share_its_effect(robust_fit):
    """theta = alpha + x beta + tau[stratum] z + group_tau v[trial], recomputed per draw."""
    data, post = robust_fit.data, robust_fit.posterior
    known = np.setdiff1d(
        np.arange(len(data.arms)), data.latent_uterine
    )  # observed uterine fraction
    fixed = post["alpha"].values[:, :, None, :] * np.ones((1, 1, len(data.arms), 1))
    for j, _cov in enumerate(data.covariates):
        fixed = fixed + data.X[None, None, :, None, j] * post["beta"].values[:, :, None, :, j]
    tau = post["tau"].values[:, :, data.stratum_idx, :]  # (chain, draw, arm, landmark)
    trial = post["group_tau"].values[:, :, None, :] * post["v"].values[:, :, data.group_idx, :]
    expected = fixed + tau * post["z"].values + trial
    np.testing.assert_allclose(
        post["theta"].values[:, :, known], expected[:, :, known], rtol=1e-9, atol=1e-9
    )
    # at least one trial contributes two arms, so the sharing is exercised
    assert np.bincount(data.trial_idx).max() >= 2


@pytest.mark.slow
def test_predictive_spread_is_student_t_plus_trial_effect(robust_fit):
    """Var(logit predictive - logit pooled) = E[tau^2] nu / (nu - 2) + E[group_tau^2]."""
    s = Setting("2L+", "R-T", 0.5, "x")
    rate = predict(robust_fit, [s], [6.0])["rate"].sel(setting="x", landmark=6.0)
    lg = lambda p: np.log(p / (1 - p))  # noqa: E731
    diff = (lg(rate.sel(quantity="predictive")) - lg(rate.sel(quantity="pooled"))).values.ravel()
    post = robust_fit.posterior
    tau2 = (post["tau"].sel(stratum="2L+", landmark=6.0).values.ravel()) ** 2
    trial2 = post["group_tau"].sel(landmark=6.0).values.ravel() ** 2
    expected = np.mean(tau2) * NU / (NU - 2) + np.mean(trial2)
    # Monte Carlo error of the variance of m independent draws of the mixture
    se = np.std(diff**2) / np.sqrt(diff.size)
    assert abs(np.mean(diff**2) - expected) < 5 * se
    # power: a normal draw in place of the Student-t (variance factor 1, not
    # nu / (nu - 2)) would have failed; with this seed it lies 5 se away
    assert abs(np.mean(diff**2) - (np.mean(tau2) + np.mean(trial2))) > 3 * se
