"""Sensitivity of a reconstruction to digitising error.

Another reader, or the same reader another day, clicks each point a little elsewhere. Here
every digitised point is moved by independent uniform errors of up to ``s_error`` on S and
``t_error`` x (time range) in time, the points go through the same checks and clean-up, and
the arm is rebuilt again; the spread of the landmark rates and the median over the replicates
is set beside their Greenwood standard errors. The defaults, 0.005 on S and 0.5% of the time
range, are two and three pixels on a 400 x 600 pixel figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmsbayes.curves.read import CurveArm, curve_from_arrays
from lmsbayes.curves.reconstruct import Reconstruction, reconstruct
from lmsbayes.errors import OptionError

__all__ = ["DigitisingSensitivity", "digitising_sensitivity"]


@dataclass(frozen=True)
class DigitisingSensitivity:
    """Landmark rates and medians of the rebuilt arm over re-digitised replicates.

    Attributes
    ----------
    landmarks : numpy.ndarray
    rates : numpy.ndarray
        (replicate, landmark) KM rates.
    medians : numpy.ndarray
        (replicate,) medians (NaN where not reached).
    greenwood_se : numpy.ndarray
        The original reconstruction's Greenwood se of each landmark rate.
    s_error, t_error : float
    refused : int
        Replicates the checks refused (the noise pushed a point beyond the tolerance).
    """

    landmarks: np.ndarray
    rates: np.ndarray
    medians: np.ndarray
    greenwood_se: np.ndarray
    s_error: float
    t_error: float
    refused: int

    def lines(self) -> list[str]:
        """The spread in words."""
        n = len(self.medians)
        out = [
            f"  digitising sensitivity: {n} re-digitised replicates (points moved by up to "
            f"{self.s_error:g} on S and {self.t_error:.1%} of the time range)"
            + (f", {self.refused} refused by the checks" if self.refused else "")
        ]
        for j, t in enumerate(self.landmarks):
            r = self.rates[:, j]
            out.append(
                f"  {t:>6g}m  rate range {np.min(r):.3f} to {np.max(r):.3f}, sd {np.std(r):.4f} "
                f"(Greenwood se {self.greenwood_se[j]:.4f}: digitising adds "
                f"{_share(np.std(r), self.greenwood_se[j])} to the variance)"
            )
        m = self.medians[np.isfinite(self.medians)]
        if len(m):
            out.append(
                f"  median range {np.min(m):.2f} to {np.max(m):.2f} months, sd {np.std(m):.2f}"
            )
        return out


def _share(sd: float, se: float) -> str:
    return f"{100 * sd**2 / se**2:.1f}%" if se > 0 else "NA"


def digitising_sensitivity(
    rec: Reconstruction,
    landmarks=(3, 6, 9, 12),
    n_rep: int = 50,
    s_error: float = 0.005,
    t_error: float = 0.005,
    seed: int = 20261207,
) -> DigitisingSensitivity:
    """Rebuild an arm from re-digitised copies of its points.

    Parameters
    ----------
    rec : Reconstruction
        The original reconstruction (its curve's points as read are perturbed).
    landmarks : sequence of float
    n_rep : int
        Replicates (>= 2).
    s_error, t_error : float
        Largest error on S and, as a fraction of the time range, on time.
    seed : int

    Returns
    -------
    DigitisingSensitivity
    """
    if n_rep < 2:
        raise OptionError(f"n_rep must be >= 2, got {n_rep}")
    c: CurveArm = rec.curve
    rng = np.random.default_rng(seed)
    lm = np.asarray(landmarks, float)
    span = float(np.ptp(c.raw_t)) or 1.0
    rates, medians, refused = [], [], 0
    from lmsbayes.errors import InputError

    for _ in range(n_rep):
        t = c.raw_t + rng.uniform(-t_error, t_error, len(c.raw_t)) * span
        s = c.raw_s + rng.uniform(-s_error, s_error, len(c.raw_s))
        try:
            curve = curve_from_arrays(
                t, s, c.risk_t, c.risk_n, arm_id=c.arm_id, total_events=c.total_events, file=c.file
            )
        except InputError:
            refused += 1
            continue
        r = reconstruct(curve)
        rates.append(r.km.at(lm))
        medians.append(r.median()[0])
    gw = np.sqrt(rec.km.greenwood_sum(lm)) * rec.km.at(lm)
    return DigitisingSensitivity(
        landmarks=lm,
        rates=np.array(rates),
        medians=np.array(medians),
        greenwood_se=gw,
        s_error=s_error,
        t_error=t_error,
        refused=refused,
    )
