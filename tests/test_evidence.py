"""Tests for lmsbayes.evidence: evidence per line x class x site, exclusions, the README block, the
CLI."""

from __future__ import annotations

import importlib
import importlib.resources
import re

import numpy as np
import pandas as pd
import pytest
from test_data import arm, pair, rate

import lmsbayes
from lmsbayes.data import load_trials
from lmsbayes.evidence import (
    README_BEGIN,
    README_END,
    SITES,
    evidence,
    exclusions,
    readme_block,
    site,
)


@pytest.fixture
def small(tmp_path):
    """Arms with a hand-checked evidence table (comments give each arm's cell and status)."""
    rows = [
        # 1L R-T mixed, usable: median with CI; rate at 12 weeks with CI
        arm("a", line="1L", treatment_class="R-T", n="40", n_uterine="10", year="2010"),
        # 1L R-T mixed, usable: n and a rate; no median
        arm(
            "b",
            line="1L",
            treatment_class="R-T",
            n="20",
            n_uterine="5",
            year="2014",
            pfs_median_m="",
            pfs_median_lo="",
            pfs_median_hi="",
            trial="T-2",
        ),
        # 2L+ NR-T uterine-only, NOT usable: no PMID or DOI
        arm(
            "c",
            population="uLMS",
            n="30",
            n_uterine="30",
            pmid="",
            doi="",
            year="2020",
            trial="T-3",
        ),
        # 2L+ NR-T unknown site, NOT usable: median without CI, no n
        arm(
            "d",
            population="STS-LMS-subgroup",
            n="",
            n_uterine="",
            pfs_median_lo="",
            pfs_median_hi="",
            year="2018",
            trial="T-4",
        ),
        # 2L+ NR-T unknown site, NOT usable: a rate without CI, no n; no median
        arm(
            "e",
            population="STS-LMS-subgroup",
            n="",
            n_uterine="",
            pfs_median_m="",
            pfs_median_lo="",
            pfs_median_hi="",
            trial="T-4",
        ),
        # 2L+ NR-T non-uterine-only, NOT usable: no PFS number at all; placebo
        arm(
            "f",
            population="stLMS",
            n="12",
            n_uterine="0",
            pfs_median_m="",
            pfs_median_lo="",
            pfs_median_hi="",
            placebo="true",
            agents="placebo",
            regimen="placebo",
            trial="T-5",
        ),
    ]
    rates = [
        rate("a", "2.769", "0.8", lo="0.6", hi="0.9"),
        rate("a", "24", "0.1"),
        rate("b", "6", "0.5"),
        rate("e", "3", "0.4"),
    ]
    return load_trials(pair(tmp_path, rows, rates))


def test_site_from_the_uterine_fraction():
    arms = pd.DataFrame({"uterine_fraction": [1.0, 0.0, 0.3, np.nan]})
    assert site(arms).astype(str).tolist() == list(SITES)


def test_exclusions_give_every_reason(small):
    ex = exclusions(small).set_index("arm_id")
    assert list(ex.index) == ["c", "d", "e", "f"]
    assert ex.loc["c", "reason"] == "no PMID or DOI: no readable source identifies the row"
    assert (
        ex.loc["d", "reason"]
        == "no standard error: a median but no 95% CI, no progression events and no n"
    )
    assert (
        ex.loc["e", "reason"]
        == "no standard error: a reported rate but no 95% CI, no progression events and no n"
    )
    assert ex.loc["f", "reason"] == "no PFS number (neither a median nor a reported rate)"
    assert list(exclusions(small, require_identifier=False)["arm_id"]) == ["d", "e", "f"]


def test_evidence_counts_by_hand(small):
    table = evidence(small, landmarks=(3, 6))
    cell = table.set_index(["line", "treatment_class", "site"])
    assert len(table) == 2 * 2 * 4 + 2 + 1  # every cell, also empty ones, then the margins
    a = cell.loc[("1L", "R-T", "mixed")]
    assert (a["arms"], a["trials"], a["patients"], a["arms_usable"], a["rates"]) == (2, 2, 60, 2, 3)
    assert (a["rate_t_min"], a["rate_t_max"], a["medians_ci"], a["medians_no_ci"]) == (
        2.769,
        24,
        1,
        0,
    )
    # a: reported at 3 (12 weeks), derived at 6 from its median; b: derived at 3? no median -> none
    assert (a["reported_3m"], a["derived_3m"], a["reported_6m"], a["derived_6m"]) == (1, 0, 1, 1)
    assert (a["year_min"], a["year_max"]) == (2010, 2014)
    u = cell.loc[("2L+", "NR-T", "unknown")]
    assert (u["arms"], u["trials"], u["patients"], u["arms_without_n"], u["arms_usable"]) == (
        2,
        1,
        0,
        2,
        0,
    )
    assert (u["reported_3m"], u["derived_3m"]) == (0, 0)  # not usable arms count for nothing
    s = cell.loc[("2L+", "NR-T", "non-uterine-only")]
    assert (s["arms"], s["placebo_arms"], s["arms_usable"]) == (1, 1, 0)
    assert cell.loc[("2L+", "NR-T", "uterine-only"), "arms_no_id"] == 1
    empty = cell.loc[("1L", "NR-T", "uterine-only")]
    assert empty["arms"] == 0 and pd.isna(empty["year_min"]) and pd.isna(empty["rate_t_min"])
    total = cell.loc[("all", "all", "all")]
    assert (total["arms"], total["arms_usable"], total["rates"], total["patients"]) == (
        6,
        2,
        4,
        102,
    )
    assert cell.loc[("2L+", "all", "all"), "arms"] == 4


def test_evidence_of_the_bundled_data_agrees_with_a_direct_count():
    trials = load_trials()
    arms, rates = trials.arms, trials.rates
    table = evidence(trials)
    cells = table[table["site"] != "all"]
    total = table.iloc[-1]
    assert cells["arms"].sum() == total["arms"] == len(arms)
    assert cells["patients"].sum() == total["patients"] == int(arms["n"].sum())
    assert cells["rates"].sum() == total["rates"] == len(rates)
    assert total["medians_ci"] == int(
        (arms["pfs_median_lo"].notna() & arms["pfs_median_hi"].notna()).sum()
    )
    assert total["arms_usable"] == len(arms) - len(exclusions(trials))
    assert total["arms_no_id"] == int((arms["pmid"].isna() & arms["doi"].isna()).sum())
    # reported at 3 months = usable arms with a rate at t in [2.7, 3.3] (the 10% tolerance)
    usable = set(arms["arm_id"]) - set(exclusions(trials)["arm_id"])
    near3 = rates[(rates["t"] - 3).abs() <= 0.3]
    assert total["reported_3m"] == len(set(near3["arm_id"]) & usable)
    for line in ("1L", "2L+"):
        assert (
            table.set_index(["line", "treatment_class"]).loc[(line, "all"), "arms"]
            == (arms["line"] == line).sum()
        )


def test_readme_block_is_current():
    """data/README.md holds the generated block of the bundled files: counts cannot drift."""
    readme = (importlib.resources.files("lmsbayes") / "_data" / "README.md").read_text(
        encoding="utf-8"
    )
    assert readme.count(README_BEGIN) == 1 and readme.count(README_END) == 1
    stored = readme[readme.index(README_BEGIN) : readme.index(README_END) + len(README_END)]
    expected = readme_block(load_trials())
    assert stored == expected, (
        "data/README.md section 8 is out of date: replace the block between the markers with the "
        "output of `lmsbayes data --markdown`"
    )
    # and no other "N arms" statement in the README contradicts it
    n = len(load_trials())
    assert not [m for m in re.findall(r"(\d+) arms, (\d+) trials", readme) if int(m[0]) != n]


def test_readme_block_changes_when_the_data_change(small):
    block = readme_block(small)
    assert (
        "**6 arms from 5 trials; 2 can enter a model** (4 cannot, listed below)"
        in block.replace("\n", " ")
    )
    assert "- `f` (2L+ NR-T, non-uterine-only): no PFS number" in block
    assert readme_block(small.select(["a", "b"])) != block


def test_top_level_export_is_the_function():
    module = importlib.import_module(
        "lmsbayes.evidence"
    )  # the submodule must not shadow the function

    assert lmsbayes.evidence is evidence and callable(lmsbayes.evidence)
    assert module.evidence is evidence


# ---------------------------------------------------------------------------- CLI


def test_cli_data_prints_the_table_and_exclusions(small, capsys):
    from lmsbayes.cli import main

    path = small.files[0]
    assert main(["data", "--data", path]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"6 arms, 4 reported rates in {path} + ")
    assert "uterine-only" in out and "arms_usable" in out
    assert main(["data", "--data", path, "--exclusions"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("4 of 6 arms cannot enter a model")
    assert (
        out[1]
        == "  c (2L+ NR-T, uterine-only): no PMID or DOI: no readable source identifies the row"
    )
    assert main(["data", "--data", path, "--markdown"]) == 0
    assert capsys.readouterr().out.rstrip("\n") == readme_block(small)
    assert main(["data", "--data", path, "--landmarks", "12"]) == 0
    assert "reported_12m" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["data", "--landmarks", "0"], "landmark must be in (0, 120] months"),
        (["data", "--landmarks", "x"], "landmark must be a number"),
        (["data", "--data", "nope.csv"], "nope.csv"),
        (["data", "--exclusions", "--markdown"], "not allowed with argument"),
    ],
)
def test_cli_data_errors_are_one_line(argv, needle, capsys, tmp_path, monkeypatch):
    from lmsbayes.cli import main

    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors exit directly
        code = exc.code
    err = capsys.readouterr().err
    assert (
        code == 2 and needle in err and err.startswith("lmsbayes: error:") and err.count("\n") == 1
    )


def test_exclusion_counts_agree_with_the_spec(capsys, trials):
    """`data --exclusions` names the spec's own exclusions too, so its count is `run`'s."""
    from lmsbayes.cli import main
    from lmsbayes.model.prepare import prepare_data
    from lmsbayes.spec import load_spec

    assert main(["data", "--exclusions"]) == 0
    out = capsys.readouterr().out
    prepared = prepare_data(load_spec("default"), trials)
    total = len(trials) - prepared.n_arms
    assert f"{total} of {len(trials)} arms do not enter it ({prepared.n_arms} do)" in out
    for placebo in ("mir2016_pbo_lms", "alter0203_pbo_lms"):  # the spec leaves these out
        assert f"  {placebo}: " in out


def test_landmarks_are_comma_separated_everywhere(capsys):
    from lmsbayes.cli import main

    assert main(["data", "--landmarks", "3,6,12"]) == 0
    assert "12m" in capsys.readouterr().out
