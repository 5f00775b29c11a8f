"""lmsbayes update: added arms validated like the bundled table, the refit's differences, LFO reuse.

- The reused leave-future-out equals a fresh leave-future-out of the updated data (each
  arm's ELPD and PIT), refits only the folds whose training arms changed, and keeps the
  fit of a fold whose held-out arms alone changed; parts run apart and joined equal one run.
- A duplicate arm_id and a regimen label naming another label's combination are
  refused with one error naming file, row, column and value.
- The CLI prints every threshold row's difference, the MAP priors with their ESS and the
  LFO summary before and after (a one-arm CSV).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_future import _logit_normal, _tables

from lmsbayes import validate as V
from lmsbayes.data import DataValidationError, load_trials
from lmsbayes.model.prepare import prepare_data
from lmsbayes.update import combine

ONE_ARM = (
    "arm_id,trial,year,doi,evidence,evidence_level,phase,design,role,arm,agents,regimen,"
    "placebo,treatment_class,line,population,n,pfs_median_m,pfs_median_lo,pfs_median_hi,notes\n"
    "synthetic_2025_doxo,SYNTHETIC test arm,2025,10.5555/synthetic.test,publication,abstract,2,"
    "single_arm,single_arm,doxorubicin 75 mg/m2 q3w,doxorubicin,{regimen},false,R-T,1L,LMS,60,"
    "6.5,5.0,8.1,SYNTHETIC: invented numbers for a test\n"
)


def test_lfo_reuse_equals_a_fresh_run_and_refits_only_changed_folds():
    spec = _logit_normal(draws=500)
    years = np.repeat(np.arange(2010, 2020), 2)
    rng = np.random.default_rng(4)
    n = rng.integers(60, 200, 20)
    rates = rng.uniform(0.2, 0.6, 20)
    before = prepare_data(spec, _tables(years[:18], rates[:18], n[:18]))
    after = prepare_data(spec, _tables(years, rates, n))  # + 2 arms of 2019
    vb = V.lfo(spec, before)
    va = V.lfo(spec, after, start=vb.year, reuse=vb)
    fresh = V.lfo(spec, after, start=vb.year)
    assert va.folds["reused"].tolist() == ["yes"] * (len(va.folds) - 1) + ["no"]
    assert list(va.arms.index) == list(fresh.arms.index)
    np.testing.assert_allclose(va.arms["elpd"], fresh.arms["elpd"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(va.obs["pit"], fresh.obs["pit"], atol=1e-6)
    # an arm added to the latest year: that fold keeps its fit, only its arms are predicted;
    # and parts of a leave-future-out run apart and joined equal one run
    more = prepare_data(
        spec, _tables(np.append(years, 2019), np.append(rates, 0.4), np.append(n, 90))
    )
    vm = V.lfo(spec, more, start=vb.year, reuse=va)
    assert vm.folds["reused"].tolist() == ["yes"] * (len(vm.folds) - 1) + ["fit"]
    labels = list(vm.folds["fold"])
    parts = [V.lfo(spec, more, start=vb.year, only=labels[k::2]) for k in (0, 1)]
    joined = V.join_folds(parts, labels)
    assert list(joined.folds["fold"]) == labels and len(joined.arms) == len(va.arms) + 1
    np.testing.assert_allclose(vm.arms["elpd"], joined.arms["elpd"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(vm.obs["pit"], joined.obs["pit"], atol=1e-6)
    with pytest.raises(V.ValidationError, match="same spec"):
        V.lfo(_logit_normal(tau=0.5), after, start=vb.year, reuse=vb)


def test_added_arms_are_checked_against_the_base_table(tmp_path):
    base = load_trials()
    dup = tmp_path / "dup.csv"
    dup.write_text(
        ONE_ARM.format(regimen="doxorubicin").replace("synthetic_2025_doxo", "lms04_doxo")
    )
    with pytest.raises(DataValidationError) as info:
        combine(base, load_trials(dup))
    (p,) = info.value.problems
    assert (p.file, p.row, p.column, p.value) == (str(dup), 2, "arm_id", "lms04_doxo")
    assert "already in" in p.message
    # one label per combination across both tables: 'trabectedin+doxorubicin' is taken
    two = tmp_path / "two.csv"
    text = ONE_ARM.format(regimen="trabectedin+doxorubicin").replace(
        ",doxorubicin 75 mg/m2 q3w,doxorubicin,",
        ",doxorubicin + trabectedin,doxorubicin;trabectedin,",
    )
    two.write_text(text)
    with pytest.raises(DataValidationError) as info:
        combine(base, load_trials(two))
    (p,) = info.value.problems
    assert p.column == "regimen" and "'doxorubicin+trabectedin'" in p.message
    ok = tmp_path / "ok.csv"
    ok.write_text(ONE_ARM.format(regimen="doxorubicin"))
    both = combine(base, load_trials(ok))
    assert (
        len(both.arms) == len(base.arms) + 1 and both.arms["role"].dtype == base.arms["role"].dtype
    )


def test_cli_update_prints_what_changed(tmp_path, capsys):
    from lmsbayes.cli import main

    path = tmp_path / "new.csv"
    path.write_text(ONE_ARM.format(regimen="doxorubicin"))
    # two forked processes (the default only where a second core is free); every step
    # computed (--no-cache), as a first call computes them
    assert main(["update", "--add", str(path), "-q", "--workers", "2", "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "1 arm added (synthetic_2025_doxo); 1 enter the model" in out
    # both fits' inference diagnostics are shown (a problem would read "-> PROBLEM: ...")
    assert "fit before: diagnostics (exact engine)" in out
    assert "fit after: diagnostics (exact engine)" in out
    assert "1. Every threshold row, before and after" in out and "1L case mix" in out
    assert "9 -> 10" in out  # the 1L case mix rests on one more arm
    assert "2. MAP priors" in out and "1L R-T" in out and "ESS after" in out
    assert "3. Leave-future-out of 'default'" in out
    lfo = [ln for ln in out.splitlines() if ln.strip().startswith(("before", "after"))]
    assert len(lfo) == 2 and lfo[0].split()[1] == "18" and lfo[1].split()[1] == "19"
    bad = tmp_path / "bad.csv"
    bad.write_text(ONE_ARM.format(regimen="Doxorubicin"))
    assert main(["update", "--add", str(bad), "-q"]) != 0
    err = capsys.readouterr().err
    assert "column 'regimen'" in err and "Doxorubicin" in err


@pytest.mark.slow  # three updates with the leave-future-out: about 15 s of CPU
def test_the_cached_base_analysis_is_what_a_refit_gives(tmp_path, monkeypatch):
    """A second update takes the base fit and its leave-future-out from the cache: same numbers."""
    import pandas as pd

    from lmsbayes.update import update

    monkeypatch.setenv("LMSBAYES_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "new.csv"
    path.write_text(ONE_ARM.format(regimen="doxorubicin"))
    fresh = update(path, workers=1, cache=False)
    assert not (tmp_path / "cache").exists()  # cache=False stores nothing
    first = update(path, workers=1)  # computes the base analysis and stores it
    second = update(path, workers=1)  # takes it from the cache
    assert not any("cached" in k for k in first.seconds)
    assert "lfo before: cached" in second.seconds
    assert "before (fit, thresholds, priors: cached)" in second.seconds
    assert len(list((tmp_path / "cache").glob("update-*.json"))) == 2
    for got in (first, second):
        for name in ("thresholds", "priors", "lfo"):
            pd.testing.assert_frame_equal(
                getattr(got, name), getattr(fresh, name), check_exact=True, obj=name
            )
        assert got.diagnostics == fresh.diagnostics  # the cached fit's line is kept, too
    # another spec or base table misses: nothing is taken over
    other = update(path, workers=1, lfo=False, landmarks=[3.0])
    assert not any("cached" in k for k in other.seconds)
