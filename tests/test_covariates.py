"""Covariate coding (lmsbayes.model.covariates), the one place that decides it, checked directly.

The expected design rows are written out by hand from the coding the module
documents: indicators 1 at the level and 0 at the reference, numerics
(value - centre) / scale, interactions as products, and an arm with a latent
uterine fraction u as the row ``X + (u - centre) Xu`` that is linear in u.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmsbayes.model.covariates import (
    LMS_COVARIATES,
    Covariate,
    codings_from_json,
    codings_to_json,
    design_matrices,
    design_row,
    expand_terms,
)

ARMS = pd.DataFrame(
    {
        "line": ["1L", "2L+", "2L+", "1L"],
        "treatment_class": ["R-T", "R-T", "NR-T", "NR-T"],
        "uterine_fraction": [0.8, np.nan, 0.3, 0.5],
        "region": ["EU", "US", "Asia", "EU"],
        "year": [2004.0, 2012.0, 2020.0, 2016.0],
    }
)


def _lms_columns(terms, centre=0.5):
    eff = {k: [v] for k, v in LMS_COVARIATES(centre).items()}
    return expand_terms(terms, eff)


def test_lms_main_effects_are_coded_as_documented():
    cols = _lms_columns(["line", "nrt", "uterine"])
    assert [label for label, _ in cols] == ["line", "nrt", "uterine"]
    X, Xu, latent = design_matrices(ARMS, cols)
    np.testing.assert_array_equal(latent, [1])  # the arm whose uterine fraction is unknown
    expected = np.array(
        [
            [0.0, 0.0, 0.8 - 0.5],
            [1.0, 0.0, 0.0],  # latent: the uterine column at u = centre
            [1.0, 1.0, 0.3 - 0.5],
            [0.0, 1.0, 0.0],
        ]
    )
    np.testing.assert_allclose(X, expected, atol=1e-15)
    np.testing.assert_array_equal(Xu, [[0, 0, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0]])


def test_interactions_are_products_and_linear_in_a_latent_fraction():
    cols = _lms_columns(["line", "line:nrt", "line:uterine"], centre=0.4)
    assert [label for label, _ in cols] == ["line", "line:nrt", "line:uterine"]
    X, Xu, latent = design_matrices(ARMS, cols)
    np.testing.assert_allclose(X[:, 1], [0, 0, 1, 0])
    np.testing.assert_allclose(X[:, 2], [0 * 0.4, 0, 1 * (0.3 - 0.4), 0 * (0.5 - 0.4)], atol=1e-15)
    # the latent arm's row at any u equals the coding of the same arm with u filled in
    for u in (0.0, 0.37, 1.0):
        filled = ARMS.assign(uterine_fraction=ARMS["uterine_fraction"].fillna(u))
        X_u, Xu_u, lat_u = design_matrices(filled, cols)
        assert lat_u.size == 0 and not Xu_u.any()
        np.testing.assert_allclose(X + (u - 0.4) * Xu * np.isin(np.arange(4), latent)[:, None], X_u)


def test_categorical_and_scaled_numeric_columns_of_a_users_table():
    regions = [
        Covariate(f"region[{lv}]", "region", "indicator", level=lv, reference="EU")
        for lv in ("Asia", "US")
    ]
    year = Covariate("year", "year", "numeric", centre=2010.0, scale=10.0)
    cols = expand_terms(["region", "region:year"], {"region": regions, "year": [year]})
    assert [label for label, _ in cols] == [
        "region[Asia]",
        "region[US]",
        "region[Asia]:year",
        "region[US]:year",
    ]
    X, Xu, latent = design_matrices(ARMS, cols)
    assert latent.size == 0 and not Xu.any()
    decade = (ARMS["year"].to_numpy() - 2010.0) / 10.0
    asia = np.array([0.0, 0.0, 1.0, 0.0])
    us = np.array([0.0, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(X, np.column_stack([asia, us, asia * decade, us * decade]))


def test_a_setting_row_is_coded_as_an_arm_and_needs_every_value():
    cols = _lms_columns(["line", "nrt", "line:nrt", "uterine"])
    row = design_row({"line": "2L+", "treatment_class": "NR-T", "uterine_fraction": 0.5}, cols)
    np.testing.assert_allclose(row, [[1.0, 1.0, 1.0, 0.0]])
    X, _, _ = design_matrices(ARMS.iloc[[2]], cols)
    np.testing.assert_allclose(
        design_row(ARMS.iloc[[2]].to_dict("records"), cols), X
    )  # the same coding as fit time
    with pytest.raises(ValueError, match="needs a value for every covariate"):
        design_row({"line": "1L", "treatment_class": "R-T", "uterine_fraction": None}, cols)


def test_the_coding_round_trips_through_json():
    cols = _lms_columns(["line", "line:uterine"], centre=0.45)
    back = codings_from_json(codings_to_json(cols))
    assert back == cols
    np.testing.assert_array_equal(design_matrices(ARMS, back)[0], design_matrices(ARMS, cols)[0])


def test_an_unknown_label_codes_as_the_reference_and_a_non_number_as_missing():
    """Coding is not validation: labels are checked when the data are read (lmsbayes.data)."""
    line = LMS_COVARIATES()["line"]
    np.testing.assert_array_equal(line.code(["2L+", "1L", "2L", None]), [1.0, 0.0, 0.0, 0.0])
    uterine = LMS_COVARIATES(0.4)["uterine"]
    np.testing.assert_allclose(uterine.code([0.9, "n/a", None]), [0.5, np.nan, np.nan])
