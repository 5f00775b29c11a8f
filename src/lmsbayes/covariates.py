"""Covariate coding: arm or setting attributes -> design matrix X (numpy/pandas only).

One place decides what ``line``, ``nrt``, ``uterine`` and interactions such as
``line:nrt`` mean, so that the model (fit time) and predictions (any time
later, from a saved fit, without PyMC) can never disagree.

Coding
------
- ``line``    1 for 2L+, 0 for 1L
- ``nrt``     1 for NR-T, 0 for R-T
- ``uterine`` fraction of uterine patients minus ``uterine_centre`` (default 0.5)
- ``a:b``     the product of the coded main effects
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

__all__ = ["LINES", "CLASSES", "main_effects", "design_matrix"]

LINES = ("1L", "2L+")
CLASSES = ("R-T", "NR-T")


def main_effects(
    line: Iterable[str], treatment_class: Iterable[str], uterine_fraction: Iterable[float], *,
    uterine_centre: float = 0.5,
) -> pd.DataFrame:
    """Coded main effects, one row per arm or setting.

    Parameters
    ----------
    line, treatment_class : iterable of str
        Labels ``1L``/``2L+`` and ``R-T``/``NR-T``.
    uterine_fraction : iterable of float
        Fraction of uterine patients in [0, 1]; NaN where unknown.
    uterine_centre : float
        Centre subtracted from the uterine fraction.

    Returns
    -------
    pandas.DataFrame
        Columns ``line``, ``nrt``, ``uterine`` (float; ``uterine`` is NaN where unknown).

    Raises
    ------
    ValueError
        On an unknown label or a fraction outside [0, 1].
    """
    line = np.asarray(list(line), dtype=object)
    klass = np.asarray(list(treatment_class), dtype=object)
    frac = np.asarray(list(uterine_fraction), dtype=float)
    bad = [v for v in line if v not in LINES]
    if bad:
        raise ValueError(f"line must be one of {list(LINES)}, got {bad[0]!r}")
    bad = [v for v in klass if v not in CLASSES]
    if bad:
        raise ValueError(f"treatment_class must be one of {list(CLASSES)}, got {bad[0]!r}")
    known = frac[~np.isnan(frac)]
    if np.any((known < 0) | (known > 1)):
        raise ValueError(f"uterine fraction must be in [0, 1], got {known[(known < 0) | (known > 1)][0]!r}")
    return pd.DataFrame(
        {
            "line": (line == "2L+").astype(float),
            "nrt": (klass == "NR-T").astype(float),
            "uterine": frac - uterine_centre,
        }
    )


def design_matrix(effects: pd.DataFrame, covariates: Iterable[str]) -> np.ndarray:
    """Columns of X for ``covariates`` (main effects and ``a:b`` interactions).

    NaN in a main effect propagates to every column that uses it; the model
    replaces those entries with latent values, predictions never have them.
    """
    cols = []
    for cov in covariates:
        col = np.ones(len(effects))
        for part in cov.split(":"):
            col = col * effects[part].to_numpy(dtype=float)
        cols.append(col)
    if not cols:
        return np.zeros((len(effects), 0))
    return np.column_stack(cols)
