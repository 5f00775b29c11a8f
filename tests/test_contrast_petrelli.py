"""Petrelli et al. (Oncologist 2017;22:1518-27): pooled PFS HR 0.51 (0.34-0.76), DerSimonian-Laird.

The per-trial hazard ratios live in data/petrelli2017_pfs_hr.csv, each from the trial's own
publication (see data/petrelli2017.md). Rows whose value could not be sourced carry the reason
in ``exclude``; the reproduction test runs as soon as every row is sourced.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lmsbayes import contrast as ct
from lmsbayes.cli import main

FILE = Path(__file__).resolve().parents[1] / "data" / "petrelli2017_pfs_hr.csv"


@pytest.fixture(scope="module")
def petrelli():
    return ct.read_contrasts(FILE)


def test_every_row_is_sourced_or_says_why_not(petrelli):
    for study, row in petrelli.iterrows():
        assert row["pmid"] or row["doi"], study
        assert row["where"] and row["source_url"].startswith("http"), study
        assert row["input"] == "ci", study  # the HR and its CI as published
    for e in petrelli.attrs["excluded"]:
        assert len(e["reason"]) > 20, e["study"]
    assert len(petrelli) + len(petrelli.attrs["excluded"]) == 10  # the 10 trials of Petrelli's Table 2


def test_palette_log_hr_and_se_from_its_published_ci(petrelli):
    row = petrelli.loc["van der Graaf 2012 (PALETTE)"]
    assert row["yi"] == pytest.approx(np.log(0.31))
    assert row["sei"] == pytest.approx((np.log(0.40) - np.log(0.24)) / (2 * 1.959963984540054))


def test_pooled_pfs_hr_reproduces_petrelli(petrelli):
    missing = [e["study"] for e in petrelli.attrs["excluded"]]
    if missing:
        pytest.xfail(f"PFS HR with 95% CI not sourced for {len(missing)} trials: {', '.join(missing)}")
    r = ct.random_effects(petrelli, method="DL")  # the paper: "Der Simonian-Laird method"
    assert np.exp([r.estimate, r.ci_lower, r.ci_upper]) == pytest.approx([0.51, 0.34, 0.76], abs=0.005)


def test_cli_reports_the_exclusions(capsys):
    status = main(["contrast", str(FILE)])
    out, err = capsys.readouterr()
    assert "rows of" in out and "are excluded from the analysis" in out and "Demetri 2016" in out
    if status:  # fewer than 2 sourced trials: one clear error line, exit 2
        assert status == 2 and "needs at least 2 trials" in err and len(err.strip().splitlines()) == 1
