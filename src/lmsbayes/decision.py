"""Which spec `lmsbayes run` fits by default, and the validated reason it prints.

The choice is made by the rule of docs/validation.md section 5 (written before the
comparison) on the leave-future-out comparison of every candidate spec
(:func:`lmsbayes.future.compare_future`, ``lmsbayes validate --future``). A comparison
refits every spec once per publication year, minutes of work, so ``run`` does not repeat
it: the result is recorded here with the data it was measured on, and
tests/test_decision.py checks the record against a fresh comparison (slow test).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Specs ``lmsbayes validate`` compares when none is named (here, not in lmsbayes.validate,
#: so that the command line's help does not import the validation machinery).
DEFAULT_SPECS = ("default", "weibull", "constant_hazard", "per_landmark")

__all__ = ["DEFAULT_CHOICE", "DefaultChoice", "choice_line"]


@dataclass(frozen=True)
class DefaultChoice:
    """The recorded outcome of the leave-future-out choice of the default spec.

    Attributes
    ----------
    spec : str
        The spec the rule chose (the one ``lmsbayes run`` fits).
    target_met : bool
        Whether it meets issue 23's target: one-step-ahead 90% coverage within its
        Clopper-Pearson limits of 0.90, pseudo-prospective included, and a better interval
        score than the incumbent.
    candidates : tuple of str
        The specs compared.
    data_sha256 : str
        The input tables the comparison was measured on.
    measured : str
        Date of the measurement (docs/validation.md section 6).
    first_year, last_year, arms, obs : int
        The scored years and the number of scored arms and observations.
    cov90, cov90_lo, cov90_hi : float
        The chosen spec's 90% coverage and its Clopper-Pearson 95% limits.
    pros_cov90, pros_cov90_lo, pros_cov90_hi : float
        The same for the pseudo-prospective choice.
    width90_rate : float
        Median width of the chosen spec's 90% intervals of a rate (probability scale).
    """

    spec: str
    target_met: bool
    candidates: tuple[str, ...]
    data_sha256: str
    measured: str
    first_year: int
    last_year: int
    arms: int
    obs: int
    cov90: float
    cov90_lo: float
    cov90_hi: float
    pros_cov90: float
    pros_cov90_lo: float
    pros_cov90_hi: float
    width90_rate: float


#: docs/validation.md section 6 (measured 2026-12-08 on the bundled data; 2026-12-07 without era).
DEFAULT_CHOICE = DefaultChoice(
    spec="default",
    target_met=False,
    candidates=(
        "default",
        "time_trend",
        "regimen",
        "drift",
        "regimen_drift",
        "student_t",
        "age_discount",
        "era",
    ),
    data_sha256="57ca7b6df618003ffd7506b07a0b0b474c45e29b85474cfd53a578e5f95b8405",
    measured="2026-12-08",
    first_year=2016,
    last_year=2025,
    arms=18,
    obs=23,
    cov90=0.70,  # 16 of 23
    cov90_lo=0.47,
    cov90_hi=0.87,
    pros_cov90=0.70,  # the rule kept the default up to 2024, chose time_trend for 2025
    pros_cov90_lo=0.47,
    pros_cov90_hi=0.87,
    width90_rate=0.45,
)


def choice_line(spec_name: str, data_sha256: str, choice: DefaultChoice = DEFAULT_CHOICE) -> str:
    """The one line ``lmsbayes run`` prints about the default's validation.

    Parameters
    ----------
    spec_name : str
        The spec that was fitted (the line speaks of the chosen default only).
    data_sha256 : str
        The fitted data's hash; other data than the comparison's are named as such.
    choice : DefaultChoice

    Returns
    -------
    str
        Empty for another spec than the chosen default.
    """
    if spec_name != choice.spec:
        return ""
    c = choice
    cov = (
        f"one-step-ahead 90% intervals covered {c.cov90:.2f} ({c.cov90_lo:.2f}-{c.cov90_hi:.2f}) "
        f"of the {c.obs} observations of the {c.arms} arms published {c.first_year}-"
        f"{c.last_year}, pseudo-prospectively {c.pros_cov90:.2f} "
        f"({c.pros_cov90_lo:.2f}-{c.pros_cov90_hi:.2f})"
    )
    if c.target_met:
        text = (
            f"default = spec {c.spec!r}, chosen by leave-future-out among {len(c.candidates)} "
            f"specs (docs/validation.md 5-6): {cov}"
        )
    else:
        text = (
            f"validation: no spec of {len(c.candidates)} compared by leave-future-out has 90% "
            "intervals that cover later trials as often as they claim, pseudo-prospectively "
            f"(docs/validation.md 5-6), so {c.spec!r} stays the default: its {cov}; "
            "its intervals are too narrow for future trials"
        )
    if not data_sha256.startswith(c.data_sha256[:12]):
        text += (
            f" [measured on the bundled data sha256 {c.data_sha256[:12]}; these data differ: "
            "rerun `lmsbayes validate --future`]"
        )
    return text
