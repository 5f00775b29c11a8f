"""One seed, one posterior: whether numba compiles the kernels now or loads them from its cache.

A first run on a machine compiles every kernel; later runs load them from the
PyTensor/numba cache. Under fastmath, LLVM optimised the two differently, the
log density differed in its last bit, NUTS trajectories parted, and the same
seed gave two different posteriors. This runs a small fit in two new
processes sharing one empty compile directory and compares the draws bitwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from _synthetic import trials_csv

SCRIPT = r"""
import hashlib, json, sys, warnings
import lmsbayes
from lmsbayes.data import load_trials
from lmsbayes.spec import parse_spec

spec = parse_spec({
    "name": "repro", "landmarks": [6],
    "model": {"likelihood": "logit-normal", "covariates": []},
    "sampler": {"draws": 300, "tune": 300, "chains": 2, "seed": 3},
})
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    fit = lmsbayes.fit(spec, load_trials(sys.argv[1]), engine="nuts")
alpha = fit.posterior["alpha"].values
print(json.dumps({"sha": hashlib.sha256(alpha.tobytes()).hexdigest(),
                  "first": alpha.ravel()[:3].tolist()}))
"""


@pytest.mark.slow
def test_same_seed_same_draws_on_an_empty_and_a_warm_compile_cache(tmp_path):
    rng = np.random.default_rng(1)
    n = rng.integers(20, 60, size=8)
    rate = rng.uniform(0.2, 0.5, size=8)
    path = trials_csv(tmp_path / "arms.csv", rate=rate, n=n)
    env = dict(os.environ, PYTENSOR_FLAGS=f"base_compiledir={tmp_path / 'pytensor'}")
    runs = []
    for _ in range(2):  # the first run fills the empty cache, the second loads from it
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(path)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert any((tmp_path / "pytensor").rglob("*.nbi")), (
        "the first run should have filled the numba cache"
    )
    assert runs[0] == runs[1]


EXACT_SCRIPT = r"""
import hashlib, json, warnings
import lmsbayes

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    fit = lmsbayes.fit("default", engine="exact")
post = fit.posterior
digest = hashlib.sha256()
for name in sorted(post.data_vars):
    digest.update(name.encode() + post[name].values.tobytes())
print(json.dumps({"sha": digest.hexdigest(), "first": post["alpha"].values.ravel()[:3].tolist()}))
"""


def test_the_exact_engine_gives_the_same_draws_in_two_new_processes():
    """The default analysis' posterior is bit-identical across processes (a seeded, compile-free
    engine)."""
    runs = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", EXACT_SCRIPT], capture_output=True, text=True, check=True
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert runs[0] == runs[1]
    assert np.all(np.isfinite(runs[0]["first"]))
