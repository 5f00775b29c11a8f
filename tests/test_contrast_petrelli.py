"""Petrelli et al. (Oncologist 2017;22:1518-27): pooled PFS HR 0.51 (0.34-0.76), DerSimonian-Laird.

The per-trial hazard ratios live in data/petrelli2017_pfs_hr.csv, each read in a stored copy of
the trial's own publication or of a regulator's document (see data/petrelli2017.md). Rows whose
value could not be sourced carry the reason in ``exclude``. Four of the eight trials that entered
Petrelli's PFS analysis are sourced (PALETTE, Demetri 2016, Schoffski 2016, Demetri 2009); Kawai
2015, REGOSARC, Garcia-del-Muro 2011 and van Oosterom 2002 are not, so the reproduction test is an
expected failure until they are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lmsbayes import contrast as ct
from lmsbayes.cli import main

FILE = Path(__file__).resolve().parents[1] / "data" / "petrelli2017_pfs_hr.csv"
Z = stats.norm.ppf(0.975)

# Petrelli reports two decimals, so its figure is reproduced "within rounding" when each of the
# three numbers rounds to Petrelli's: |ours - theirs| <= 0.005 (plus float slack).
PETRELLI = (0.51, 0.34, 0.76)
ROUNDING = 0.005 + 1e-9

# The trials that must be sourced before the reproduction can be tested: Table 2 minus the two
# whose publications report no PFS hazard ratio (Pautier 2012, Maki 2007), i.e. the "n = 8
# studies" of Petrelli's Results (which 8 is not stated there; see data/petrelli2017.md).
FIG3_CANDIDATES = {
    "van der Graaf 2012 (PALETTE)",
    "Demetri 2016",
    "Schoffski 2016",
    "Demetri 2009",
    "Kawai 2015",
    "Mir 2016 (REGOSARC)",
    "Garcia-del-Muro 2011",
    "van Oosterom 2002",
}


@pytest.fixture(scope="module")
def petrelli():
    return ct.read_contrasts(FILE)


def _dersimonian_laird(lo_hi_est):
    """Closed-form DL on log HRs from published 95% CIs: an independent re-computation."""
    est, lo, hi = (np.log(np.asarray(v, float)) for v in zip(*lo_hi_est))
    y, v = est, ((hi - lo) / (2 * Z)) ** 2
    w = 1 / v
    mu_fe = np.sum(w * y) / np.sum(w)
    q = np.sum(w * (y - mu_fe) ** 2)
    tau2 = max(0.0, (q - (len(y) - 1)) / (np.sum(w) - np.sum(w**2) / np.sum(w)))
    ws = 1 / (v + tau2)
    mu = np.sum(ws * y) / np.sum(ws)
    se = np.sqrt(1 / np.sum(ws))
    return np.exp([mu, mu - Z * se, mu + Z * se]), tau2, q


def test_every_row_is_sourced_or_says_why_not(petrelli):
    for study, row in petrelli.iterrows():
        # a trial publication has a PMID or DOI; a label has a named document instead
        assert row["pmid"] or row["doi"] or row["document"], study
        assert row["where"] and row["quote"] and row["source_url"].startswith("http"), study
        assert row["source_type"].startswith(("trial publication", "regulator", "registry")), study
        assert row["population"], study
        assert row["input"] == "ci", study  # the HR and its CI as published
        # the quote holds the three numbers entered (a guard against typing them wrong)
        quote = row["quote"].replace("·", ".")
        for col in ("estimate", "lower", "upper"):
            text = f"{row[col]:.3f}".rstrip("0")
            text = text if len(text.split(".")[1]) >= 2 else f"{row[col]:.2f}"
            assert text in quote, (study, col, text)
    for e in petrelli.attrs["excluded"]:
        assert len(e["reason"]) > 20, e["study"]
    assert len(petrelli) + len(petrelli.attrs["excluded"]) == 10  # Petrelli's Table 2: 10 trials
    assert set(petrelli.index) <= FIG3_CANDIDATES


def test_palette_log_hr_and_se_from_its_published_ci(petrelli):
    row = petrelli.loc["van der Graaf 2012 (PALETTE)"]
    assert row["yi"] == pytest.approx(np.log(0.31))
    assert row["sei"] == pytest.approx((np.log(0.40) - np.log(0.24)) / (2 * Z))


def test_pooled_dl_of_the_sourced_trials_matches_a_closed_form_recomputation(petrelli):
    rows = [tuple(petrelli.loc[s, ["estimate", "lower", "upper"]]) for s in petrelli.index]
    (hr, lo, hi), tau2, q = _dersimonian_laird(rows)
    r = ct.random_effects(petrelli, method="DL")
    assert np.exp([r.estimate, r.ci_lower, r.ci_upper]) == pytest.approx([hr, lo, hi], rel=1e-10)
    assert r.tau2 == pytest.approx(tau2, rel=1e-10) and r.Q == pytest.approx(q, rel=1e-10)
    # the sourced four: 0.58 (0.37-0.90), tau^2 0.187, I^2 92% (data/petrelli2017.md)
    assert [round(x, 2) for x in (hr, lo, hi)] == [0.58, 0.37, 0.90]
    assert round(tau2, 3) == 0.187 and round(r.I2, 1) == 92.4


def test_demetri_2009_ttp_instead_of_pfs_barely_moves_the_pooled_estimate(petrelli):
    # the abstract gives both: primary endpoint TTP 0.734 (0.554-0.974); PFS 0.755 is the one used
    t = petrelli[["estimate", "lower", "upper"]].reset_index()
    t.loc[t["study"] == "Demetri 2009", ["estimate", "lower", "upper"]] = [0.734, 0.554, 0.974]
    r = ct.random_effects(ct.contrast_table(t), method="DL")
    base = ct.random_effects(petrelli, method="DL")
    assert abs(np.exp(r.estimate) - np.exp(base.estimate)) < 0.01


_MISSING = sorted(FIG3_CANDIDATES - set(ct.read_contrasts(FILE).index))


@pytest.mark.xfail(
    bool(_MISSING),
    strict=True,
    reason=(
        f"PFS/TTP HR with 95% CI not sourced for {len(_MISSING)} of Petrelli's 8 PFS trials "
        f"({', '.join(_MISSING)}); the sourced ones pool to DL 0.58 (0.37-0.90), "
        "not 0.51 (0.34-0.76)"
    ),
)
def test_pooled_pfs_hr_reproduces_petrelli(petrelli):
    r = ct.random_effects(petrelli, method="DL")  # the paper: "Der Simonian-Laird method"
    assert np.exp([r.estimate, r.ci_lower, r.ci_upper]) == pytest.approx(PETRELLI, abs=ROUNDING)


def test_cli_reports_the_exclusions(capsys):
    status = main(["contrast", str(FILE), "--method", "DL,REML", "--no-bayes"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "6 rows of" in out and "are excluded from the analysis" in out
    for study in ("Kawai 2015", "Mir 2016 (REGOSARC)", "Garcia-del-Muro 2011", "van Oosterom 2002"):
        assert study in out
    assert "4 trials from" in out


def test_the_file_is_what_the_note_describes():
    raw = pd.read_csv(FILE, dtype=str, keep_default_na=False)
    refs = ["19", "28", "37", "13", "31", "38", "27", "26", "32", "14"]
    assert list(raw["petrelli_table2_ref"]) == refs
    sourced = raw[raw["exclude"] == ""]
    assert set(sourced["study"]) == {
        "van der Graaf 2012 (PALETTE)",
        "Demetri 2016",
        "Schoffski 2016",
        "Demetri 2009",
    }
    assert not (raw.loc[raw["exclude"] != "", ["estimate", "lower", "upper"]] != "").any().any()
