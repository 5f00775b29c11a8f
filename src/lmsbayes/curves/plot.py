"""The overlay figure of ``lmsbayes curve --plot``: digitised points and the reconstruction."""

from __future__ import annotations

import numpy as np

from lmsbayes.curves.reconstruct import Reconstruction

__all__ = ["plot_reconstruction"]


def plot_reconstruction(recs: list[Reconstruction]):
    """Digitised points, reconstructed Kaplan-Meier curves and numbers at risk, one colour per arm.

    Parameters
    ----------
    recs : list of Reconstruction

    Returns
    -------
    matplotlib.figure.Figure
        Top: the curves (points as read, reconstructed KM as a step line, censorings as ticks);
        bottom: the table's numbers at risk and the reconstruction's, per arm.
    """
    import matplotlib.pyplot as plt

    fig, (ax, tab) = plt.subplots(
        2, 1, figsize=(7.5, 5.5), height_ratios=[4, 1], sharex=True, layout="constrained"
    )
    for j, r in enumerate(recs):
        colour = f"C{j}"
        c = r.curve
        ax.plot(
            c.raw_t, c.raw_s, "o", ms=2.5, color=colour, alpha=0.6, label=f"{c.arm_id}: digitised"
        )
        km = r.km
        ax.step(
            np.r_[0.0, km.time, c.t[-1]],
            np.r_[1.0, km.surv, km.surv[-1] if len(km.surv) else 1.0],
            where="post",
            color=colour,
            lw=1.2,
            label=f"{c.arm_id}: reconstructed KM ({r.n_events} events / {c.n})",
        )
        cens = r.time[r.event == 0]
        ax.plot(cens, km.at(cens), "|", color=colour, ms=6, alpha=0.7)
        rt = r.risk_table
        for i, t in enumerate(rt["t"]):
            tab.text(
                t,
                j,
                f"{rt['n'][i]} ({rt['n_hat'][i]})",
                color=colour,
                ha="center",
                va="center",
                fontsize=7,
            )
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("S(t)")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(
        "Digitised curve and reconstructed Kaplan-Meier estimate (Guyot et al. 2012)", fontsize=9
    )
    tab.set_ylim(-0.5, len(recs) - 0.5)
    tab.set_yticks(range(len(recs)), [r.curve.arm_id for r in recs], fontsize=7)
    tab.set_xlabel("months")
    tab.set_title("number at risk: table (reconstructed)", fontsize=8)
    return fig
