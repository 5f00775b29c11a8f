"""Covariate coding: arm or setting attributes -> design matrix (numpy/pandas only).

One place decides what a covariate named in a spec means, so that the model
(fit time) and predictions (any time later, from a saved fit, without PyMC)
can never disagree.

Main effects
------------
A main effect is a column of the arm table, coded one of two ways:

- ``indicator``: 1 where the column equals ``level``, 0 where it equals the
  ``reference`` level (a categorical column gives one indicator per
  non-reference level, treatment coding);
- ``numeric``: the value minus ``centre``, divided by ``scale``. A numeric covariate may be
  ``latent`` where unknown (the uterine fraction: Beta(1, 1), integrated over
  by the model).

The LMS table has three built-in main effects:

- ``line``    1 for 2L+, 0 for 1L
- ``nrt``     1 for NR-T, 0 for R-T
- ``uterine`` fraction of uterine patients minus ``uterine_centre`` (default 0.5)

Terms ``a:b`` are products of main effects. Because no term holds the latent
uterine fraction twice, every design column is linear in it, and an arm's
row is ``X + (u - centre) * Xu`` with ``u`` its latent fraction.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

__all__ = [
    "Covariate",
    "LMS_COVARIATES",
    "expand_terms",
    "design_matrices",
    "design_row",
    "codings_to_json",
    "codings_from_json",
]


@dataclass(frozen=True)
class Covariate:
    """One main effect: how a column of the arm table becomes a design column.

    Parameters
    ----------
    name : str
        Name used in spec terms (``line``, ``uterine``, ``region[US]``).
    column : str
        Source column of the arm table.
    kind : {'indicator', 'numeric'}
    level, reference : str, optional
        Indicator: the level coded 1 and the reference level coded 0.
    centre : float
        Numeric: subtracted from the value.
    scale : float
        Numeric: the centred value is divided by it (e.g. 10 for a year covariate per decade).
    latent : bool
        Numeric in [0, 1] whose missing values are latent Beta(1, 1).
    """

    name: str
    column: str
    kind: str
    level: str | None = None
    reference: str | None = None
    centre: float = 0.0
    latent: bool = False
    scale: float = 1.0

    def code(self, values: Sequence) -> np.ndarray:
        """Coded values (NaN where a numeric value is missing)."""
        if self.kind == "indicator":
            v = np.asarray(
                [
                    None if x is None or (isinstance(x, float) and np.isnan(x)) else str(x)
                    for x in values
                ],
                dtype=object,
            )
            return np.where(v == self.level, 1.0, 0.0)
        x = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(float)
        return (x - self.centre) / self.scale


def LMS_COVARIATES(uterine_centre: float = 0.5) -> dict[str, Covariate]:
    """The built-in main effects of the LMS arm table."""
    return {
        "line": Covariate("line", "line", "indicator", level="2L+", reference="1L"),
        "nrt": Covariate("nrt", "treatment_class", "indicator", level="NR-T", reference="R-T"),
        "uterine": Covariate(
            "uterine", "uterine_fraction", "numeric", centre=float(uterine_centre), latent=True
        ),
    }


def expand_terms(
    terms: Sequence[str], effects: Mapping[str, list[Covariate]]
) -> list[tuple[str, tuple[Covariate, ...]]]:
    """Design columns of spec terms: (label, main effects multiplied).

    ``effects`` maps a spec name to its main effects (one for a numeric or a
    binary covariate, one per non-reference level for a categorical one);
    a term ``a:b`` gives the products of every pair of their columns.
    """
    out = []
    for term in terms:
        parts = [effects[p] for p in term.split(":")]
        for combo in itertools.product(*parts):
            out.append((":".join(c.name for c in combo), tuple(combo)))
    return out


def design_matrices(
    arms: pd.DataFrame, columns: Sequence[tuple[str, tuple[Covariate, ...]]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The design matrix split into its known part and its latent slope.

    Returns
    -------
    X : ndarray (arm, covariate)
        Design columns; for an arm with a latent fraction, the column's value
        at u = centre (0 for terms that hold the latent covariate).
    Xu : ndarray (arm, covariate)
        Slope of each column in (u - centre) for arms with a latent fraction, else 0.
    latent : ndarray of int
        Positions of arms with a latent fraction (those with a missing value
        of a latent covariate that some term uses).
    """
    n = len(arms)
    coded: dict[str, np.ndarray] = {}
    for _, combo in columns:
        for c in combo:
            if c.name not in coded:
                coded[c.name] = c.code(arms[c.column].tolist())
    latent_names = {c.name for _, combo in columns for c in combo if c.latent}
    missing = np.zeros(n, dtype=bool)
    for name in latent_names:
        missing |= np.isnan(coded[name])
    X = np.ones((n, len(columns)))
    Xu = np.zeros((n, len(columns)))
    for j, (_, combo) in enumerate(columns):
        lat = [c for c in combo if c.latent]
        rest = np.ones(n)
        for c in combo:
            if not c.latent:
                rest = rest * coded[c.name]
        if lat:
            value = np.nan_to_num(coded[lat[0].name])
            X[:, j] = np.where(missing, 0.0, rest * value)
            Xu[:, j] = np.where(missing, rest, 0.0)
        else:
            X[:, j] = rest
    return X, Xu, np.flatnonzero(missing)


def design_row(
    values: Mapping[str, object], columns: Sequence[tuple[str, tuple[Covariate, ...]]]
) -> np.ndarray:
    """Design columns for settings given by column values (one row per mapping in a list)."""
    frame = pd.DataFrame([values]) if isinstance(values, Mapping) else pd.DataFrame(list(values))
    X, Xu, latent = design_matrices(frame, columns)
    if latent.size:
        raise ValueError("a setting needs a value for every covariate")
    return X


def codings_to_json(columns: Sequence[tuple[str, tuple[Covariate, ...]]]) -> str:
    """The design-column coding as JSON (saved with a fit)."""
    return json.dumps([[label, [asdict(c) for c in combo]] for label, combo in columns])


def codings_from_json(text: str) -> list[tuple[str, tuple[Covariate, ...]]]:
    """Inverse of :func:`codings_to_json`."""
    return [(label, tuple(Covariate(**c) for c in combo)) for label, combo in json.loads(text)]
