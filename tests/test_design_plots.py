"""The two-arm OC and borrowing trade-off figures show the numbers they are given."""

from __future__ import annotations

import numpy as np
import pytest

from lmsbayes import plots
from lmsbayes.design import TwoArmDesign, borrowing_tradeoff, two_arm_oc
from lmsbayes.prior import BetaMixture, robustify

MAP = BetaMixture(weights=[0.7, 0.3], a=[30.0, 8.0], b=[22.0, 6.0])


def _lines(fig, prefix):
    return {
        line.get_gid().split(":", 1)[1]: line
        for ax in fig.axes
        for line in ax.get_lines()
        if (line.get_gid() or "").startswith(prefix)
    }


def test_two_arm_oc_figure_draws_each_prior_curve():
    priors = {
        "vague": BetaMixture.from_ab(1, 1),
        "MAP": MAP,
        "robust MAP": robustify(MAP, 0.2, MAP.mean()),
    }
    oc = two_arm_oc(TwoArmDesign(40, 20), np.linspace(0, 1, 41), [0.65], scale="hr", priors=priors)
    fig = plots.plot_two_arm_oc(oc, type1_range=(0.3, 0.8), alpha=0.05)
    t1 = _lines(fig, "type1:")
    assert set(t1) == set(priors)
    np.testing.assert_allclose(
        t1["MAP"].get_ydata(), oc["prob_success"].sel(prior="MAP", effect=1.0)
    )
    pw = _lines(fig, "power:")
    np.testing.assert_allclose(
        pw["robust MAP:0.65"].get_ydata(), oc["prob_success"].sel(prior="robust MAP", effect=0.65)
    )
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    worst = oc["prob_success"].sel(prior="MAP", effect=1.0).sel(p_c=slice(0.3, 0.8)).max().item()
    assert any(f"worst {worst:.3f}" in s for s in legend)
    assert plots.plot_oc(oc) is not None  # plot_oc hands a two-arm dataset on
    with pytest.raises(ValueError, match="two_arm_oc Dataset"):
        plots.plot_two_arm_oc(oc.isel(prior=0, drop=True))


def test_tradeoff_figure_draws_the_table():
    res = borrowing_tradeoff(
        TwoArmDesign(30, 15),
        MAP,
        [0.0, 0.25, 0.5, 1.0],
        type1_range=(0.3, 0.8),
        p_t=0.7,
        p_c=0.575,
        bounded=True,
    )
    fig = plots.plot_tradeoff(res)
    lines = {ln.get_gid(): ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid()}
    rows = res.table.drop(index="vague")
    np.testing.assert_allclose(lines["max_type1"].get_ydata(), rows["max_type1"])
    np.testing.assert_allclose(lines["power"].get_ydata(), rows["power"])
    np.testing.assert_allclose(lines["ess_elir"].get_ydata(), rows["ess_elir"])
    np.testing.assert_allclose(lines["max_type1"].get_xdata(), [0.0, 0.25, 0.5, 1.0])
