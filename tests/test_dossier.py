"""The evidence dossier: its sections, and every number against an independent computation."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from lmsbayes.dossier import MAX_COLUMNS, dossier, write_dossier

DATA = Path(__file__).parent / "data"
#: The FDA draft's requests, in the order the dossier answers them (answer first).
SECTIONS = [
    "answer",
    "identification",
    "external_data",
    "exchangeability",
    "prior",
    "influence",
    "conflict",
    "design_vs_analysis",
    "operating_characteristics",
    "sensitivity",
    "provenance",
]


@pytest.fixture(scope="module")
def as_fit():
    import lmsbayes as lb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lb.fit("binomial", pd.read_csv(DATA / "AS.csv"))


@pytest.fixture(scope="module")
def as_dossier(as_fit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the MAP mixture's EM note is the prior's business
        return dossier(as_fit, n_control=20, n_treatment=40, sensitivity=False)


def _table(section, caption_start):
    for caption, t in section.tables:
        if caption.startswith(caption_start):
            return t
    raise KeyError(caption_start)


def test_sections_follow_the_guidance_in_order(as_dossier):
    assert [s.key for s in as_dossier.sections] == SECTIONS
    for s in as_dossier.sections:
        assert s.request and s.title
        for _, t in s.tables:
            assert t.shape[1] <= MAX_COLUMNS


def test_provenance_locks_the_inputs(as_fit, as_dossier):
    p = as_dossier.provenance
    assert p["spec_hash"] == as_fit.spec.hash
    assert p["data_sha256"] == as_fit.data.data_sha256
    assert p["seed"] == as_fit.spec.sampler.seed


def test_share_of_information_is_ess_over_ess_plus_n(as_dossier):
    from lmsbayes.prior import ess

    t = _table(as_dossier.section("influence"), "ESS")
    row = t.set_index("prior").loc["MAP"]
    # the MAP prior's ESS recomputed from the components in the prior section
    comps = _table(as_dossier.section("prior"), "MAP prior components")
    from lmsbayes.prior import BetaMixture

    w = comps["weight"].to_numpy(float)
    mix = BetaMixture(w / w.sum(), comps["a"].to_numpy(), comps["b"].to_numpy())  # rounded
    assert row["ESS (elir)"] == pytest.approx(ess(mix, "elir"), abs=0.2)  # components rounded
    assert float(row["share (ELIR)"]) == pytest.approx(
        row["ESS (elir)"] / (row["ESS (elir)"] + 20), abs=0.006
    )


def test_conflict_weights_are_the_conjugate_update(as_dossier):
    """Posterior weight of the robust component after r of n, by beta-binomial marginals by hand."""
    comps = _table(as_dossier.section("prior"), "Robust MAP prior components")
    w, a, b = (comps[c].to_numpy(float) for c in ("weight", "a", "b"))
    t = _table(as_dossier.section("conflict"), "Conflict check")
    for observed, reported in zip(t["observed"], t["robust weight after"]):
        r, n = map(int, observed.split("/"))
        log_m = special.betaln(a + r, b + n - r) - special.betaln(a, b)
        post = w * np.exp(log_m - log_m.max())
        post /= post.sum()
        # components were rounded to 2 decimals in the table: a small tolerance
        assert reported == pytest.approx(post[-1], abs=0.02)


def test_type_one_error_of_the_vague_prior_by_enumeration(as_dossier):
    """Worst type I error with a vague control prior, by brute-force enumeration of both arms."""
    t = _table(as_dossier.section("operating_characteristics"), "Type I error")
    vague = t.set_index("control prior").loc["vague"]
    n_t, n_c = 40, 20
    y_t, y_c = np.arange(n_t + 1), np.arange(n_c + 1)
    # P(p_t > p_c | data) under Beta(1 + y, 1 + n - y) posteriors, on a fine grid
    grid = np.linspace(0, 1, 2001)[1:-1]
    dt = stats.beta.pdf(grid[None, :], 1 + y_t[:, None], 1 + n_t - y_t[:, None])
    cc = stats.beta.cdf(grid[None, :], 1 + y_c[:, None], 1 + n_c - y_c[:, None])
    prob = (dt[:, None, :] * cc[None, :, :]).sum(-1) * (grid[1] - grid[0])
    success = prob >= 0.975
    worst = 0.0
    for p in np.linspace(0, 1, 101):
        pt = stats.binom.pmf(y_t, n_t, p)
        pc = stats.binom.pmf(y_c, n_c, p)
        worst = max(worst, float(pt @ success @ pc))
    assert vague["worst type I, all rates"] == pytest.approx(worst, abs=0.004)


def test_every_study_is_listed(as_fit, as_dossier):
    t = _table(as_dossier.section("external_data"), "Arms")
    assert len(t) == as_fit.data.n_arms == 8
    assert set(t["entered"]) == {"yes"}


def test_html_and_json_are_written_and_escaped(as_fit, tmp_path):
    table = pd.read_csv(DATA / "AS.csv")
    table.loc[0, "study"] = "<b>$x$ & co</b>"
    import lmsbayes as lb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lb.fit("binomial", table)
        d = dossier(fit, sensitivity=False)
    html_path, json_path = write_dossier(d, tmp_path, name="as")
    text = html_path.read_text(encoding="utf-8")
    assert "<b>$x$" not in text and "&lt;b&gt;$x$ &amp; co&lt;/b&gt;" in text
    doc = json.loads(json_path.read_text(encoding="utf-8"))
    assert [s["key"] for s in doc["sections"]] == SECTIONS
    # the answer comes before any detail in the page
    assert text.index('id="answer"') < text.index('id="external_data"')


def test_write_dossier_refuses_a_symlinked_destination(as_dossier, tmp_path):
    decoy = tmp_path / "decoy.txt"
    decoy.write_text("mine")
    (tmp_path / "d.html").symlink_to(decoy)
    from lmsbayes.errors import OutputPathError

    try:  # refused at the door or the link replaced: either way the decoy is untouched
        write_dossier(as_dossier, tmp_path, name="d")
    except OutputPathError:
        pass
    assert decoy.read_text() == "mine"


@pytest.mark.slow
def test_lms_dossier_lists_every_arm_with_its_fate(default_fit, trials):
    from lmsbayes.predict import Setting

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = dossier(default_fit, Setting.standardised("2L+"), 6.0, sensitivity=False)
    t = _table(d.section("external_data"), "Arms")
    assert len(t) == len(trials.arms)
    entered = t["entered"] == "yes"
    assert entered.sum() == default_fit.data.n_arms
    assert all(reason and reason != "yes" for reason in t.loc[~entered, "entered"])
    flow = _table(d.section("identification"), "Flow")
    flow = flow.set_index(flow.columns[0])
    assert flow.loc["arms in the table", "arms"] == len(trials.arms)
    assert flow.loc["arms entering the model", "arms"] == default_fit.data.n_arms
    n_2l = int((default_fit.data.arms["line"] == "2L+").sum())
    assert f"direct: {n_2l} arms in this cell" in " ".join(d.section("answer").paragraphs)


def test_a_control_arm_dossier_names_the_arms_of_its_regimen(default_fit):
    """Target: a new doxorubicin arm; the dossier lists the regimen's included 1L arms, by hand."""
    from lmsbayes.predict import Setting
    from lmsbayes.targets import Target

    arms = default_fit.data.arms
    by_hand = list(arms.index[(arms["regimen"] == "doxorubicin") & (arms["line"] == "1L")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = dossier(
            default_fit,
            Setting("1L", "R-T", 0.45),
            6.0,
            target=Target.new_arm("doxorubicin"),
            sensitivity=False,
        )
    answer = " ".join(d.section("answer").paragraphs)
    assert "Target: new arm of doxorubicin" in answer
    assert f"rests on {len(by_hand)} included arms of this line: {', '.join(by_hand)}" in answer
    assert len(by_hand) == 2 and "CAVEAT: few arms of doxorubicin (2)" in answer
