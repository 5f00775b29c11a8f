"""lmsbayes.curves.read: the curve file format, its checks and the digitising clean-up."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from lmsbayes.curves.read import (
    curve_from_arrays,
    isotonic_nonincreasing,
    read_curve,
    read_points,
)
from lmsbayes.errors import InputError

DATA = Path(__file__).parent / "data" / "curves"


def _write(tmp_path, points: str, table: str = "t = [0, 5]\nn = [10, 4]", extra: str = ""):
    (tmp_path / "pts.csv").write_text(points)
    f = tmp_path / "arm.toml"
    f.write_text(f'arm_id = "a"\npoints = "pts.csv"\n{extra}\n[risk_table]\n{table}\n')
    return f


GOOD = "0,1\n1,0.9\n2,0.8\n4,0.6\n6,0.5\n8,0.4\n"


def test_isotonic_matches_brute_force_least_squares():
    # the non-increasing least-squares fit of 3 points by a fine grid search
    y = np.array([0.5, 0.7, 0.4])
    fit = isotonic_nonincreasing(y)
    np.testing.assert_allclose(fit, [0.6, 0.6, 0.4])
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.uniform(size=6)
        fit = isotonic_nonincreasing(y)
        assert np.all(np.diff(fit) <= 1e-12)
        assert np.isclose(fit.mean(), y.mean())  # PAVA preserves the mean (equal weights)
        # no non-increasing sequence from small perturbations of the fit does better
        for _ in range(50):
            other = np.sort(fit + rng.normal(0, 0.05, 6))[::-1]
            assert np.sum((other - y) ** 2) >= np.sum((fit - y) ** 2) - 1e-12


def test_good_curve_reads_clean(tmp_path):
    c = read_curve(_write(tmp_path, GOOD))
    assert c.arm_id == "a" and c.n == 10
    assert c.cleanup.lines() == []
    np.testing.assert_allclose(c.s, [1, 0.9, 0.8, 0.6, 0.5, 0.4])


def test_webplotdigitizer_header_percent_and_weeks(tmp_path):
    pts = "x,y\n0,100\n4.345,90\n8.69,80\n"
    c = read_curve(
        _write(
            tmp_path, pts, "t = [0, 4.345]\nn = [10, 9]", 's_scale = "percent"\ntime_unit = "weeks"'
        )
    )
    np.testing.assert_allclose(c.s, [1, 0.9, 0.8])
    np.testing.assert_allclose(c.t[1], 1.0, rtol=1e-3)  # 4.345 weeks = 1 month


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ("0,1\n1,0.9\n2,1.2\n", "row 3: S = 1.2 lies outside [0, 1]"),
        ("0,1\n1,0.9\n2,-0.1\n", "row 3: S = -0.1 lies outside [0, 1]"),
        ("0,1\n1,0.5\n3,0.8\n", "row 3: S rises from 0.5 to 0.8 at t = 3"),
        ("0,1\n5,0.5\n1,0.9\n", "row 3: times unsorted: t = 1 after t = 5"),
        ("0,1\n1,abc\n", "line 2: t and S must be numbers"),
        ("0,1\n1,0.9,3\n", "line 2: a point has two fields"),
    ],
)
def test_digitising_errors_name_file_row_and_value(tmp_path, points, message):
    f = _write(tmp_path, points)
    with pytest.raises(InputError, match=re.escape(message)) as exc:
        read_curve(f)
    assert "pts.csv" in str(exc.value)


def test_noise_within_tolerance_is_cleaned_and_reported(tmp_path):
    # a rise of 0.01 (< S_TOLERANCE), a point 0.005 above 1, and a drop clicked right to left
    # (3.99 before 3.98, within the time tolerance): its 0.1 rise is explained by the time shift,
    # and the isotonic clean-up pools the two points to 0.65 (a change of 0.05, reported)
    pts = "0,1.005\n1,0.9\n2,0.91\n3.99,0.7\n3.98,0.6\n6,0.5\n"
    c = read_curve(_write(tmp_path, pts))
    assert np.all(np.diff(c.s) <= 0) and np.all(np.diff(c.t) >= 0)
    assert c.cleanup.n_clipped == 1 and c.cleanup.n_raised_or_lowered >= 2
    assert c.cleanup.n_reordered == 1
    assert np.isclose(c.cleanup.max_s_change, 0.05)
    np.testing.assert_allclose(c.s[1:3], [0.905, 0.905])  # the isotonic mean of 0.9 and 0.91
    assert c.raw_s[0] == 1.005  # the points as read are kept


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("t = [0, 5]\nn = [10, 9]", "risk_table row 2: 9 at risk at t = 5 months is inconsistent"),
        ("t = [1, 5]\nn = [10, 4]", "risk_table row 1: the first time must be 0"),
        ("t = [0, 5, 3]\nn = [10, 4, 2]", "risk_table row 3: times must increase"),
        ("t = [0, 5]\nn = [10, 11]", "risk_table row 2: numbers at risk never increase"),
        ("t = [0, 5]\nn = [10, 2.5]", "risk_table row 2: n must be a whole number"),
        ("t = [0, 5]\nn = [10]", "t and n must have the same length"),
    ],
)
def test_risk_table_errors(tmp_path, table, message):
    # S(5-) = 0.6 leaves at most 10 x (0.6 + tolerance) + 1 = 7 at risk at 5 months
    with pytest.raises(InputError, match=message) as exc:
        read_curve(_write(tmp_path, GOOD, table))
    assert "arm.toml" in str(exc.value)


def test_total_events_and_keys_checked(tmp_path):
    with pytest.raises(
        InputError, match="total_events must be between 0 and the 10 patients, got 11"
    ):
        read_curve(_write(tmp_path, GOOD, extra="total_events = 11"))
    with pytest.raises(InputError, match="unknown key 'median'"):
        read_curve(_write(tmp_path, GOOD, extra="median = 3"))
    f = tmp_path / "x.toml"
    f.write_text('arm_id = "a"\npoints = "pts.csv"\n')
    with pytest.raises(InputError, match="missing key 'risk_table'"):
        read_curve(f)


def test_flat_interval_gets_a_point_and_late_rows_are_reported():
    c = curve_from_arrays([0, 1, 2, 9], [1, 0.8, 0.7, 0.6], [0, 3, 6, 9, 12], [10, 7, 7, 6, 2])
    # no point between 3 and 6 nor between 6 and 9: the curve's value 0.7 is carried to both
    assert c.cleanup.added_at_risk_times == (3.0, 6.0)
    assert c.cleanup.unused_risk_rows == (5,)
    np.testing.assert_allclose(c.s[c.t == 3.0], 0.7)


def test_bundled_example_reads():
    c = read_curve(DATA / "radio.toml")
    assert c.n == 213 and len(c.raw_t) == 145
    assert c.raw_t[0] == -0.512  # as digitised; cleaned to 0 within the time tolerance
    assert c.t[0] == 0 and c.s[0] == 1
    assert c.cleanup.max_s_change < 0.002
    t, s = read_points(DATA / "radio_points.csv")
    assert len(t) == 145 and s[0] == 98.9
