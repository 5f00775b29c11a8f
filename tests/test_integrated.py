"""Integrated summaries of the exact engine.

Deterministic rules checked against brute-force quadrature.

Reference values: tests/_quadrature.py (a brute-force grid over (alpha, log tau), each study's
random effect integrated by FFT convolution on a fine logit grid; its quantiles tabulated in
``QUANTILES``), for the model logit p_i = alpha + tau z_i, alpha ~ N(0, 2), tau ~ HalfNormal(1)
(RBesT's AS example prior scale), on the data sets of tests/data.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from _quadrature import QUANTILES

import lmsbayes as lb
from lmsbayes.engines import rules
from lmsbayes.predict import thresholds
from lmsbayes.spec import parse_spec

DATA = __import__("pathlib").Path(__file__).parent / "data"

SPEC = parse_spec(
    {
        "name": "as",
        "landmarks": [],
        "model": {"likelihood": "logit-binomial"},
        "random_effects": {"tau_by": "none"},
        "priors": {
            "alpha": {"dist": "Normal", "mu": 0.0, "sigma": 2.0},
            "tau": {"dist": "HalfNormal", "sigma": 1.0},
        },
    }
)

# (2.5%, 50%, 97.5%) quantiles of the pooled rate expit(alpha) and of a new study's rate
REFERENCE = QUANTILES


def _quantiles(fit, reference):
    ds = thresholds(fit, reference=reference, prob=0.95, hr=0.65)
    return np.array(
        [float(ds[f"p0_{k}"].values.ravel()[0]) for k in ("lower", "median", "upper")]
    ), ds


# the 10 seeds in the slow tier (about 2 s per seed on a shared core); 2 by default
SEEDS = [pytest.param(2, id="2-seeds"), pytest.param(10, id="10-seeds", marks=pytest.mark.slow)]


@pytest.mark.parametrize("n_seeds", SEEDS)
@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_quantiles_match_quadrature_at_every_seed(name, n_seeds):
    table = pd.read_csv(DATA / f"{name}.csv")
    first = None
    for seed in range(n_seeds):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a well-posed table fits without a warning
            fit = lb.fit(SPEC, table, engine="exact", seed=seed)
        got = {ref: _quantiles(fit, ref)[0] for ref in ("pooled", "predictive")}
        for ref, q in got.items():
            np.testing.assert_allclose(q, REFERENCE[name][ref], atol=0.002, err_msg=f"{ref} {seed}")
        if first is None:
            first = got
        else:  # the rule is fixed: the same numbers at every seed
            for ref in got:
                assert np.array_equal(got[ref], first[ref])


def test_p1_quantiles_are_p0_raised_to_hr():
    fit = lb.fit(SPEC, pd.read_csv(DATA / "AS.csv"), engine="exact")
    q, ds = _quantiles(fit, "pooled")
    p1 = np.array([float(ds[f"p1_{k}"].values.ravel()[0]) for k in ("lower", "median", "upper")])
    np.testing.assert_allclose(p1, q**0.65, rtol=1e-12)
    assert "integrated" in ds.attrs["summaries"]


def test_stated_error_bounds_the_actual_one():
    """The tensor rule's stated error is no smaller than its real error.

    The stated error is that against every second node.
    """
    fit = lb.fit(SPEC, pd.read_csv(DATA / "colitis.csv"), engine="exact")
    for ref in ("pooled", "predictive"):
        q, ds = _quantiles(fit, ref)
        err = np.array(
            [float(ds[f"p0_{k}_mcse"].values.ravel()[0]) for k in ("lower", "median", "upper")]
        )
        assert np.all(np.abs(q - REFERENCE["colitis"][ref]) <= err + 2e-4)


def test_cbc_vector_is_the_tabulated_one():
    assert rules.cbc_vector(rules.LATTICE_N, len(rules.LATTICE_VECTOR), 0.3) == list(
        rules.LATTICE_VECTOR
    )


def test_lattice_integrates_a_smooth_function():
    """A shifted lattice rule integrates prod(1 + (u - 1/2)) = 1 and a normal's second moment."""
    qr = rules.LatticeStream()
    u = qr.random((qr.size, 6))
    assert abs(np.mean(np.prod(1 + (u - 0.5), axis=1)) - 1.0) < 1e-3  # plain Monte Carlo: sd 0.012
    z = rules.LatticeStream().standard_normal((qr.size, 3))
    np.testing.assert_allclose(np.mean(z**2, axis=0), 1.0, atol=5e-3)


def test_normal_mixture_quantile_of_one_normal():
    q = rules.normal_mixture_quantile(np.array([1.0]), np.array([0.3]), np.array([2.0]), [0.025])
    assert abs(float(q[0]) - (0.3 - 1.959963984540054 * 2.0)) < 1e-8
    qd = rules.normal_mixture_quantile(
        np.array([1.0]), np.array([0.3]), np.array([2.0]), [0.025], decreasing=True
    )
    assert abs(float(qd[0]) - (0.3 + 1.959963984540054 * 2.0)) < 1e-8


def test_weighted_quantile_of_a_fine_grid():
    x = np.linspace(-8, 8, 4001)
    w = np.exp(-0.5 * x * x)
    q = rules.weighted_quantile(x, w, [0.025, 0.5, 0.975])
    np.testing.assert_allclose(q, [-1.959964, 0.0, 1.959964], atol=2e-3)


@pytest.mark.slow
def test_lattice_error_is_honest_over_50_shifts():
    """The lattice rule's stated error against the spread of its answer over 50 random shift sets.

    The engine's shifts are fixed; here they are drawn anew (``shift_seed``) to see the spread
    the stated error (sd of the R shifted rules / sqrt(R)) estimates. Its root mean square over
    the 50 rules must lie within [0.8, 1.25] of their sd.
    """
    from lmsbayes.engines import exact as ex
    from lmsbayes.model.definition import Model
    from lmsbayes.model.prepare import prepare_data

    m = Model(SPEC, prepare_data(SPEC, pd.read_csv(DATA / "colitis.csv")))
    integ = ex.Integrator(m)
    post = ex._Posterior(m, integ)
    mode, _, optima = ex._mode(post)
    cov = ex._covariance(post.hessian(mode))
    est, errs = [], []
    for s in range(50):
        rule, *_ = ex._lattice_rule(post, mode, cov, [], optima, SPEC.exact, shift_seed=1000 + s)
        x = 1 / (1 + np.exp(-rule.theta[:, 0]))

        def f(w, x=x):
            return rules.weighted_quantile(x, w, [0.025, 0.5, 0.975])

        q = f(rule.weights)
        est.append(q)
        errs.append(rule.error(f, q))
    est, errs = np.array(est), np.array(errs)
    ratio = np.sqrt(np.mean(errs**2, axis=0)) / est.std(axis=0, ddof=1)
    print("stated / actual spread (2.5, 50, 97.5%):", np.round(ratio, 3))
    assert np.all((ratio >= 0.8) & (ratio <= 1.25)), ratio


@pytest.mark.slow
def test_default_lattice_error_is_honest_over_50_shifts(monkeypatch):
    """The LMS default's stated integration error against its spread over 50 random shift sets.

    The default (8 globals) is integrated by the rank-1 lattice rule through the importance
    proposals, its 8 shifts fixed: the thresholds are the same at every fit seed. The answer's
    randomness is the shifts': drawn anew 50 times (``shift_seed``), the spread of each
    quantile over the 50 rules is what the stated error (sd of the 8 shifted rules' answers /
    sqrt(8)) estimates. Quantities: the pooled rate's 2.5/50/97.5% quantiles of every setting
    of the default table at 3 and 6 months (the threshold reference), and the new-trial
    quantiles of the settings that are no case mix. For each kind and probability, the root
    mean square of the stated errors over the 50 rules, pooled over the rows, lies within
    [0.8, 1.25] of the rows' seed-to-seed sd; every single row within [0.55, 1.8] (one row's
    ratio, from 50 rules, has a relative standard error of about 0.11: the band is 4 of them).
    """
    import importlib

    from lmsbayes import integrated
    from lmsbayes.engines import exact as ex
    from lmsbayes.spec import load_spec

    predict = importlib.import_module("lmsbayes.predict")
    spec = load_spec("default").replace(**{"exact.draws": 200})  # the rule ignores the draws
    fit = lb.fit(spec)
    m = fit.model
    post = ex._Posterior(m, ex.Integrator(m, spec.exact.nodes, spec.exact.uterine_nodes))
    mode, _, optima = ex._mode(post)
    cov = ex._covariance(post.hessian(mode))
    others = [(x, lp) for x, lp in optima[1:] if lp > optima[0][1] - 8.0]  # as fit_exact

    def rule(shift_seed):
        return ex._lattice_rule(post, mode, cov, others, optima, spec.exact, shift_seed)[0]

    # the engine's own rule is this one at the fixed shifts
    np.testing.assert_allclose(rule(None).log_weight, integrated._rule(fit).log_weight, atol=1e-8)
    settings, landmarks = predict._resolve(fit, None, None, None)
    single = [s for s in settings if not s.case_mix]
    got = {"pooled": ([], []), "predictive": ([], [])}
    for i in range(50):
        r_i = rule(1000 + i)
        monkeypatch.setattr(integrated, "_rule", lambda fit, r_i=r_i: r_i)
        for kind, ss in (("pooled", settings), ("predictive", single)):
            r = integrated.rate_summaries(fit, ss, landmarks, kind, [0.025, 0.5, 0.975])
            got[kind][0].append(r["quantiles"])
            got[kind][1].append(r["error"])
    for kind, (q, e) in got.items():
        q, e = np.array(q), np.array(e)  # (rule, prob, setting, landmark)
        sd = q.std(axis=0, ddof=1).reshape(3, -1)
        rms = np.sqrt(np.mean(e**2, axis=0)).reshape(3, -1)
        pooled = np.sqrt(np.sum(rms**2, axis=1) / np.sum(sd**2, axis=1))
        rows = rms / sd
        print(
            f"{kind}: stated / actual spread pooled over {sd.shape[1]} rows (2.5, 50, 97.5%) "
            f"{np.round(pooled, 3)}; rows {rows.min():.2f}-{rows.max():.2f}; actual sd median "
            f"{np.round(np.median(sd, axis=1), 5)}"
        )
        assert np.all((pooled >= 0.8) & (pooled <= 1.25)), (kind, pooled)
        assert np.all((rows >= 0.55) & (rows <= 1.8)), (kind, rows)


def test_repeated_arms_are_integrated_once_and_counted():
    """A table repeating its (r, n) pairs.

    The posterior from the distinct arms equals the full one.
    """
    from lmsbayes.engines import exact as ex
    from lmsbayes.model.definition import Model
    from lmsbayes.model.prepare import prepare_data
    from lmsbayes.spec import load_spec

    rng = np.random.default_rng(1)
    k = 1200
    n = rng.integers(10, 20, k)
    table = pd.DataFrame({"study": [f"s{i}" for i in range(k)], "r": rng.binomial(n, 0.3), "n": n})
    spec = load_spec("binomial")
    m = Model(spec, prepare_data(spec, table))
    integ = ex.Integrator(m)
    post = ex._Posterior(m, integ)
    assert post.counts is not None and post.counts.sum() == k and post.counts.size < k / 5
    th = np.array([[-0.8, np.log(0.3)], [-1.2, np.log(0.05)], [0.0, np.log(1.5)]])
    vals, logjac = ex.Layout(m).unpack(th)
    full = m.log_prior(vals) + logjac + integ.arm_loglik(vals).sum(-1)
    np.testing.assert_allclose(post.logpost(th), full, rtol=1e-12, atol=1e-8)
