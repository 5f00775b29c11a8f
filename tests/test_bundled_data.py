"""The bundled data set (data/lms_trials.csv + data/pfs_rates.csv): facts with their sources."""

from __future__ import annotations

import warnings

import pytest

from lmsbayes.data import load_trials, long_table


@pytest.fixture(scope="module")
def bundled():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the bundled pair is in the current layout
        return load_trials()


def test_bundled_data_loads_and_every_arm_is_in_the_long_table(bundled):
    df = bundled.arms
    assert len(df) > 0 and df["arm_id"].is_unique
    assert len(bundled.files) == 2 and all("(bundled)" in f for f in bundled.files)
    lt = long_table(bundled, landmarks=(3, 6))
    assert len(lt) == 2 * len(df)
    assert set(lt["arm_id"]) == set(df["arm_id"])
    assert (lt.loc[~lt["included"], "exclusion_reason"] != "").all()
    assert lt["included"].any()


def test_bundled_numbers_carry_their_evidence(bundled):
    arms, rates = bundled.arms, bundled.rates
    assert arms["evidence_level"].notna().all()
    assert arms["source_location"].notna().all()
    assert rates["evidence_level"].notna().all() and rates["location"].notna().all()
    # a rate without a PMID/DOI says so in its notes
    unsourced = rates[rates["source"].isna()]
    assert unsourced["notes"].str.contains("No PMID/DOI seen").all()
    # a rate computed from counts is flagged derived
    assert (
        rates.loc[rates["arm_id"] == "eortc62043_pazo_lms", "notes"].str.contains("DERIVED").all()
    )


def test_bundled_rates_are_coherent_survival_curves(bundled):
    """Within an arm, rates do not rise with t; they sit on the right side of 0.5 of the median."""
    rates = bundled.rates.merge(bundled.arms[["arm_id", "pfs_median_m"]], on="arm_id")
    for arm_id, g in rates.sort_values("t").groupby("arm_id"):
        assert g["rate"].is_monotonic_decreasing, arm_id
    m = rates["pfs_median_m"]
    # S(t) > 0.5 before the median and <= 0.5 after it; 10% slack for rounded medians and t
    assert (rates.loc[rates["t"] < 0.9 * m, "rate"] > 0.5).all()
    assert (rates.loc[rates["t"] > 1.1 * m, "rate"] <= 0.5).all()


def test_bundled_lms04_is_the_final_analysis(bundled):
    """LMS-04: the values read in the NEJM 2024 full text (Table 1; Results, Efficacy End
    Points)."""
    a = bundled.arms.set_index("arm_id")
    got = a.loc[
        ["lms04_doxo", "lms04_doxtrab"],
        ["n", "n_uterine", "pfs_median_m", "pfs_median_lo", "pfs_median_hi", "year"],
    ]
    assert got.astype(float).values.tolist() == [
        [76, 34, 6, 4, 7, 2024],
        [74, 33, 12, 10, 16, 2024],
    ]
    assert set(a.loc[["lms04_doxo", "lms04_doxtrab"], "doi"]) == {"10.1056/NEJMoa2403394"}
    assert set(a.loc[["lms04_doxo", "lms04_doxtrab"], "registry_id"]) == {"NCT02997358"}
    assert set(a.loc[["lms04_doxo", "lms04_doxtrab"], "evidence_level"]) == {"full_text"}
    r = bundled.rates.set_index("arm_id").loc[["lms04_doxo", "lms04_doxtrab"]]
    assert r[["t", "rate", "lo", "hi"]].values.tolist() == [
        [24, 0.03, 0.01, 0.09],
        [24, 0.30, 0.21, 0.42],
    ]
    # the primary analysis (Lancet Oncol 2022) is kept in the notes only
    assert a.loc["lms04_doxo", "notes"].count("16.0% (9.4-25.9)") == 1


def test_bundled_roles_and_regimens_follow_their_rules(bundled):
    """data/README.md section 2a: every arm has a role and a regimen, each with its reason."""
    arms = bundled.arms.set_index("arm_id")
    assert arms["role"].notna().all() and arms["regimen"].notna().all()
    assert arms["role"].value_counts().to_dict() == {
        "single_arm": 20,
        "experimental": 9,
        "control": 8,
        "noncomparative": 4,
        "calibration": 1,
    }
    assert ((arms["role"] == "single_arm") == (arms["design"] == "single_arm")).all()
    # placebo arms are controls labelled 'placebo'; placebo add-ons leave the label
    assert (arms.loc[arms["placebo"], "regimen"] == "placebo").all()
    assert (arms.loc[arms["placebo"], "role"] == "control").all()
    assert arms.loc["announce_lms_doxpbo", "regimen"] == "doxorubicin"
    assert arms.loc["gog0250_gd_pbo", "regimen"] == "gemcitabine+docetaxel"
    assert arms.loc["a092104_ic_ulms", "regimen"] == "pazopanib/trabectedin"
    # every trial with a control has an arm that is compared with it
    for _, trial in arms.groupby("trial"):
        if (trial["role"] == "control").any():
            assert (trial["role"] == "experimental").any()
    # a role other than the design's obvious one says why in the notes
    special = arms[arms["role"].isin(["control", "experimental", "noncomparative", "calibration"])]
    assert special["notes"].str.contains("ROLE/REGIMEN (issue 23", regex=False).all()
    # 1L doxorubicin alone: the two control arms a control-arm MAP prior rests on
    dox = arms[(arms["regimen"] == "doxorubicin") & (arms["line"] == "1L")]
    assert sorted(dox.index) == ["announce_lms_doxpbo", "lms04_doxo"]
