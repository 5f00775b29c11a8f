"""Leave-one-trial-out by reweighting the full fit's rule, against exact refits.

The exact engine integrates every arm over its latent quantities at each point theta_j of
its rule over the globals, so the held-out trial's likelihood L(theta_j) is exact there and
the posterior without the trial is the full one divided by it (weights w_j / L(theta_j),
Pareto-smoothed). The independent reference is an exact refit without the trial, its
held-out ELPD integrated over the refit's own rule (no resampling): the two estimate the
same integral, the reweighted one with the importance-sampling standard error it reports
(``elpd_mcse``). The refit's own rule error is smaller (its weights are the posterior's
over a proposal fitted to it, importance ESS about half its points, against the LOO
weights' ESS of 800 to 4000 of 8192 on these data), so |difference| <= 3 sqrt(2) mcse
bounds both errors at about 3 standard errors.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from lmsbayes import validate as V
from lmsbayes.data import load_trials
from lmsbayes.engines import exact as ex
from lmsbayes.model.definition import Model
from lmsbayes.model.prepare import prepare_data
from lmsbayes.spec import load_spec


@pytest.fixture(scope="module")
def bundled():
    spec = V._with_draws(load_spec("default"), None)
    data = prepare_data(spec, load_trials())
    return spec, data, V.loto(spec, data)


def _refit_elpd(spec, data, trial_name):
    trial = data.arms["trial"].astype(str).to_numpy()
    train, held = np.flatnonzero(trial != trial_name), np.flatnonzero(trial == trial_name)
    res = ex.fit_exact(Model(spec, data.take(train)), spec.exact, spec.sampler.seed, latent=False)
    vals, _ = ex.Layout(Model(spec, data)).unpack(res.rule.theta)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # as validate does
        ll = ex.Integrator(Model(spec, data.take(held))).arm_loglik(vals)
    return data.arms.index[held], special.logsumexp(res.rule.log_weight[:, None] + ll, axis=0)


# the trial with the largest LOO k-hat on the bundled data (0.55), one of two arms, and a typical
@pytest.mark.parametrize("trial", ["UK first-line GD in LMS phase II", "LMS-04", "GOG-87L"])
def test_reweighted_elpd_agrees_with_an_exact_refit(bundled, trial):
    spec, data, v = bundled
    ids, ref = _refit_elpd(spec, data, trial)
    got = v.arms.loc[ids, "elpd"].to_numpy()
    tol = 3 * np.sqrt(2) * v.arms.loc[ids, "elpd_mcse"].to_numpy()
    assert np.all(np.abs(got - ref) <= tol), (got, ref, tol)
    row = v.folds.set_index("fold").loc[trial]
    assert row["method"] == "reweighted" and 0 <= row["loo_khat"] <= V.LOO_KHAT_MAX


def test_folds_report_their_khat_and_refit_above_the_threshold(bundled, monkeypatch):
    spec, data, v = bundled
    assert (v.folds["method"] == "reweighted").all()
    assert np.allclose(v.folds["khat"], v.folds["loo_khat"])
    assert v.summary()["max_khat"] == pytest.approx(v.folds["loo_khat"].max())
    # with a threshold below some folds' k-hats those folds are refitted (and only those)
    cut = float(np.median(v.folds["loo_khat"]))
    monkeypatch.setattr(V, "LOO_KHAT_MAX", cut)
    trial = data.arms["trial"].astype(str).to_numpy()
    keep = np.isin(trial, v.folds["fold"].iloc[:4].tolist())
    w = V.loto(spec, data.take(np.flatnonzero(keep)))
    refit = w.folds["loo_khat"] > cut
    assert (w.folds["method"] == np.where(refit, "refit", "reweighted")).all()


def test_mixture_quantiles_equal_bisection():
    rng = np.random.default_rng(4)
    mu = rng.normal(0, 1.0, (300, 4, 3))
    sd = rng.uniform(0.05, 0.8, (300, 4, 3))
    w = rng.uniform(size=4)
    w = w / w.sum() / 300
    probs = np.array([0.025, 0.25, 0.5, 0.9, 0.975])
    got = V._mixture_quantiles(mu, sd, w, probs)
    lo, hi = np.full((3, 5), -20.0), np.full((3, 5), 20.0)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        F = np.einsum("snjp,n->jp", special.ndtr((mid - mu[..., None]) / sd[..., None]), w)
        below = F < probs
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    np.testing.assert_allclose(got, 0.5 * (lo + hi), atol=1e-9)


@pytest.mark.slow
def test_reweighted_table_agrees_with_refits(bundled):
    """Every held-out arm, and the table's coverage, against the refit path (slow: 23 refits)."""
    spec, data, v = bundled
    r = V.loto(spec, data, refit=True)
    assert (r.folds["method"] == "refit").all()
    for trial in v.folds["fold"]:
        ids, ref = _refit_elpd(spec, data, trial)
        tol = 3 * np.sqrt(2) * v.arms.loc[ids, "elpd_mcse"].to_numpy()
        assert np.all(np.abs(v.arms.loc[ids, "elpd"].to_numpy() - ref) <= tol), trial
    # PITs from 2,000 resampled draws either way: their Monte Carlo sd is below
    # sqrt(0.25 / ESS) <= 0.018 at ESS >= 800, so each difference lies within 3 sqrt(2) of it
    assert np.max(np.abs(v.obs["pit"].to_numpy() - r.obs["pit"].to_numpy())) < 0.08
    total_mcse = np.sqrt(np.sum(v.arms["elpd_mcse"] ** 2) + np.sum(r.arms["elpd_mcse"] ** 2))
    assert abs(v.elpd()[0] - r.elpd()[0]) <= 3 * total_mcse
