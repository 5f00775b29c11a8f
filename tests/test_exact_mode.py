"""The exact engine's mode search (numpy BFGS) against scipy.optimize.

The engine finds the posterior mode of the global parameters without scipy.optimize (its import
cost 0.4 s of every ``lmsbayes run``). Here scipy's BFGS, run to a gradient 1000 times tighter
than the engine's, is the independent reference: the engine's mode must agree with it to 2e-5
in every unconstrained coordinate. Where the engine stops, every gradient entry is below 1e-5,
and the curvature along a coordinate is at least ~1 for these posteriors (their sds are below
1), so the distance to the mode is below about 1e-5; the tolerance allows twice that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

from lmsbayes.data import load_trials
from lmsbayes.engines import exact as ex
from lmsbayes.model.definition import Model
from lmsbayes.model.prepare import prepare_data
from lmsbayes.spec import load_spec

DATA = Path(__file__).parent / "data"


def _post(spec_name: str, table):
    spec = load_spec(spec_name)
    model = Model(spec, prepare_data(spec, table))
    return ex._Posterior(model, ex.Integrator(model))


@pytest.mark.parametrize(
    ("spec_name", "table"),
    [
        ("binomial", "AS.csv"),
        ("binomial", "colitis.csv"),
        ("binomial", "synthetic_zero.csv"),
        ("default", None),
        ("constant_hazard", None),
    ],
)
def test_mode_agrees_with_scipy_bfgs(spec_name, table):
    post = _post(spec_name, pd.read_csv(DATA / table) if table else load_trials())
    mode, info, _ = ex._mode(post)
    assert info["mode_converged"] and info["mode_grad_norm"] < 1e-5
    # scipy from a start moved off the mode, to a 1000 times tighter gradient
    ref = optimize.minimize(
        post.value_and_grad,
        mode + 0.1,
        jac=True,
        method="BFGS",
        options={"gtol": 1e-8, "maxiter": 2000},
    )
    np.testing.assert_allclose(mode, ref.x, atol=2e-5, rtol=0)
    assert post.logpost(mode)[0] == pytest.approx(-ref.fun, abs=1e-8)


def test_mode_search_from_a_far_start_and_the_cached_hessian():
    """From a start 3 units off in every coordinate the search still reaches the mode, and the
    Hessian the proposal asks for at the mode is the finite-difference one (computed afresh)."""
    post = _post("binomial", pd.read_csv(DATA / "AS.csv"))
    mode = ex._mode(post)[0]
    far = ex._bfgs_mode(post, mode + 3.0)
    np.testing.assert_allclose(far[0], mode, atol=2e-5)
    fresh = ex._Posterior(post.model, post.integrator)._fd_hessian(mode, 1e-3)
    np.testing.assert_allclose(post.hessian(mode), fresh, rtol=1e-12)
