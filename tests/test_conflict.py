"""Prior-data conflict: conflict(prior, r, n) against exact rational arithmetic, and `lmsbayes
analyze`."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from lmsbayes.cli import main
from lmsbayes.prior import BetaMixture, conflict, ess, robustify, to_json

# integer shapes, so that every quantity below has an exact rational value
COMPS = [(Fraction(3, 5), 30, 22), (Fraction(1, 4), 8, 6), (Fraction(3, 20), 1, 1)]
PRIOR = BetaMixture.mixture([(float(w), a, b) for w, a, b in COMPS])


def _beta_fn(x: int, y: int) -> Fraction:
    return Fraction(math.factorial(x - 1) * math.factorial(y - 1), math.factorial(x + y - 1))


def _predictive(y: int, n: int) -> Fraction:
    """Beta-binomial mixture pmf, exactly: sum_k w_k C(n, y) B(a + y, b + n - y) / B(a, b)."""
    return sum(
        (w * math.comb(n, y) * _beta_fn(a + y, b + n - y) / _beta_fn(a, b) for w, a, b in COMPS),
        Fraction(0),
    )


@pytest.mark.parametrize(("r", "n"), [(14, 40), (0, 12), (12, 12), (31, 52)])
def test_conflict_weights_and_tails_match_the_conjugate_closed_form(r, n):
    rep = conflict(PRIOR, r, n)
    lik = [w * _beta_fn(a + r, b + n - r) / _beta_fn(a, b) for w, a, b in COMPS]
    exact_w = [float(v / sum(lik)) for v in lik]
    np.testing.assert_allclose(rep.components["posterior_weight"], exact_w, rtol=1e-12, atol=1e-300)
    np.testing.assert_array_equal(rep.components["a_post"], [a + r for _, a, _ in COMPS])
    pmf = [_predictive(y, n) for y in range(n + 1)]
    assert sum(pmf) == 1
    assert rep.p_lower == pytest.approx(float(sum(pmf[: r + 1])), rel=1e-11)
    assert rep.p_upper == pytest.approx(float(sum(pmf[r:])), rel=1e-11)
    assert rep.p_box == pytest.approx(float(sum(p for p in pmf if p <= pmf[r])), rel=1e-11)
    assert rep.p_two_sided == pytest.approx(min(1.0, 2 * min(rep.p_lower, rep.p_upper)))
    assert rep.ess_method == "elir"
    assert rep.ess_prior == pytest.approx(ess(PRIOR, "elir"))
    assert rep.ess_posterior == pytest.approx(ess(PRIOR.posterior(r, n), "elir"))


def test_conflict_moves_weight_to_the_robust_component():
    robust = robustify(BetaMixture.from_ab(30, 22), 0.2, mean=0.5)
    agree, clash = conflict(robust, 23, 40), conflict(robust, 8, 40)
    assert agree.components.index[-1] == "robust"
    assert agree.components.loc["robust", "posterior_weight"] < 0.2
    assert clash.components.loc["robust", "posterior_weight"] > 0.9
    # the robust component makes 8 of 40 plausible under the whole prior; under the
    # informative part alone the conflict shows
    assert clash.p_box < agree.p_box
    assert clash.p_box_informative < 0.001 < 0.3 < agree.p_box_informative
    assert clash.p_box_informative == pytest.approx(
        conflict(BetaMixture.from_ab(30, 22), 8, 40).p_box
    )
    assert "conflict (< 0.05)" in str(clash) and "the data moved weight to it" in str(clash)
    s = clash.to_series()
    assert s["r"] == 8 and s["observed_rate"] == 0.2


def test_posterior_ess_is_predictively_consistent_on_average():
    """ELIR's defining property (Neuenschwander et al. 2020): E_r[ESS(posterior)] = ESS(prior) +
    n."""
    n = 20
    pmf = PRIOR.predictive_pmf(n)
    post = np.array([ess(PRIOR.posterior(r, n), "elir") for r in range(n + 1)])
    assert pmf @ post == pytest.approx(ess(PRIOR, "elir") + n, rel=2e-3)


@pytest.mark.parametrize(
    ("r", "n", "match"),
    [
        (41, 40, r"r must be <= 40"),
        (-1, 10, "non-negative integer"),
        (3, 0, r"n must be >= 1"),
        (2.5, 10, "non-negative integer"),
    ],
)
def test_conflict_bad_counts(r, n, match):
    with pytest.raises(ValueError, match=match):
        conflict(PRIOR, r, n)


def test_analyze_cli(tmp_path, capsys):
    path = tmp_path / "prior.json"
    to_json(PRIOR, path)
    assert main(["analyze", str(path), "--r", "14", "--n", "40"]) == 0
    out = capsys.readouterr().out
    rep = conflict(PRIOR, 14, 40)
    assert f"P(Y <= 14) = {rep.p_lower:.4f}" in out
    assert f"posterior {rep.ess_posterior:.1f}" in out
    assert "how much of each component survives" in out
    assert main(["analyze", str(path), "--r", "41", "--n", "40"]) == 2
    assert "--r must be <= --n = 40" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "none.json"), "--r", "1", "--n", "4"]) == 2
    assert "does not exist" in capsys.readouterr().err
