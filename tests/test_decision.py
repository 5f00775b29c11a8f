"""The recorded choice of the default spec (lmsbayes.decision) and the line `run` prints.

The record is checked against a fresh leave-future-out comparison of every candidate
(slow: about 6 minutes on 2 shared cores), so a change of data or model that moves the
numbers fails here until docs/validation.md section 6 and the record are updated.
"""

from __future__ import annotations

import pytest

from lmsbayes import decision as D
from lmsbayes import future as F
from lmsbayes.spec import bundled_specs


def test_the_line_speaks_of_the_default_with_its_numbers():
    c = D.DEFAULT_CHOICE
    line = D.choice_line(c.spec, c.data_sha256)
    assert f"{c.cov90:.2f} ({c.cov90_lo:.2f}-{c.cov90_hi:.2f})" in line
    assert f"pseudo-prospectively {c.pros_cov90:.2f}" in line
    assert f"{c.first_year}-{c.last_year}" in line and f"{c.obs} observations" in line
    assert ("too narrow" in line) is not c.target_met
    assert "these data differ" not in line
    assert D.choice_line("time_trend", c.data_sha256) == ""  # other specs: no line
    assert "these data differ" in D.choice_line(c.spec, "0" * 64)


def test_the_record_names_existing_specs_and_a_consistent_verdict():
    c = D.DEFAULT_CHOICE
    assert set(c.candidates) <= set(bundled_specs()) and c.spec in c.candidates
    assert c.candidates == F.FUTURE_SPECS
    # the target: pseudo-prospective 90% coverage within its Clopper-Pearson limits of 0.90
    met = c.pros_cov90_lo <= 0.90 <= c.pros_cov90_hi and c.cov90_lo <= 0.90 <= c.cov90_hi
    assert met is c.target_met


@pytest.mark.slow
def test_the_record_matches_a_fresh_comparison():
    c = D.DEFAULT_CHOICE
    fc = F.compare_future(c.candidates)
    s = fc.table.loc[c.spec]
    assert (fc.start + 1, int(s["arms"]), int(s["obs"])) == (c.first_year, c.arms, c.obs)
    assert round(s["cov90"], 2) == c.cov90
    assert (round(s["cov90_lo"], 2), round(s["cov90_hi"], 2)) == (c.cov90_lo, c.cov90_hi)
    p = fc.prospective_summary
    assert round(p["cov90"], 2) == c.pros_cov90
    assert (round(p["cov90_lo"], 2), round(p["cov90_hi"], 2)) == (c.pros_cov90_lo, c.pros_cov90_hi)
    assert round(s["width90_rate"], 2) == c.width90_rate
    met = p["cov90_lo"] <= 0.9 <= p["cov90_hi"]
    assert met is c.target_met
