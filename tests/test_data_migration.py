"""Migration to data 2.0 (issue 12 item 4): fits saved before the rates table keep loading.

``tests/data/fit_before_data2.nc`` was written by lmsbayes at commit 7bd4715 (the arm table with
pfsr_<t>m columns, before the rates table): the bundled default spec with 30 draws, 30 tuning
steps and one chain (small on purpose; its diagnostics are poor and irrelevant here).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from lmsbayes.data import load_trials
from lmsbayes.model.inputs import ModelData
from lmsbayes.model.prepare import prepare_data
from lmsbayes.spec import load_spec

OLD_FIT = Path(__file__).parent / "data" / "fit_before_data2.nc"
#: SHA-256 of data/lms_trials.csv at 7bd4715 (one file, so the hash of its bytes)
OLD_SHA = "e1065ceebac04fc90374477642f3ca9444b4eae674fabe1156e7420b5eacee00"


def test_a_fit_saved_by_version_0_1_gives_a_clear_message():
    """Fits of lmsbayes 0.1 (format 1) cannot be rebuilt by the one model definition: one clear
    line."""
    import lmsbayes
    from lmsbayes.errors import FitFileError

    with pytest.raises(
        FitFileError, match=r"fit format version 1 was written by lmsbayes 0.1.*refit the spec"
    ):
        lmsbayes.load_fit(OLD_FIT)


def test_model_data_round_trips_with_the_new_loader():
    spec = load_spec("per_landmark")
    data = prepare_data(spec, load_trials())
    back = ModelData.from_xarray(data.to_xarray())
    assert back.data_sha256 == data.data_sha256 == load_trials().sha256
    assert list(back.arms.index) == list(data.arms.index)
    np.testing.assert_allclose(back.obs["rate"], data.obs["rate"])
    assert back.obs["rate_source"].tolist() == data.obs["rate_source"].tolist()


def test_prepare_data_takes_trials_or_an_arm_frame_with_a_warning():
    spec = load_spec("per_landmark")
    trials = load_trials()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "reported" in set(prepare_data(spec, trials).obs["rate_source"])
    with pytest.warns(FutureWarning, match="every rate is derived from the median"):
        data = prepare_data(spec, trials.arms)  # a bare arm frame has no rates table
    assert set(data.obs["rate_source"]) == {"exponential"}
    # the survival default needs no derivation: a bare arm frame gives it the medians only
    with pytest.warns(FutureWarning):
        surv = prepare_data(load_spec("default"), trials.arms)
    assert set(surv.obs["kind"]) == {"median"}
