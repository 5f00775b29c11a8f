"""Timing of the design computations whose work grows with the sample size (prints figures).

Run: .venv/bin/python benchmarks/design_speed.py
"""

from __future__ import annotations

import time

from lmsbayes.design import TwoArmDesign, find_robust_weight, simon, two_arm_oc, two_arm_sample_size
from lmsbayes.errors import WorkLimitError
from lmsbayes.prior import BetaMixture, robustify

MAP = BetaMixture(weights=[0.73, 0.27], a=[28.7, 6.0], b=[25.1, 5.3])
ROBUST = robustify(MAP, 0.2, mean=MAP.mean(), bounded=True)


def timed(label, fn):
    t0 = time.perf_counter()
    out = fn()
    print(f"{label:<62} {time.perf_counter() - t0:7.2f} s")
    return out


def tiny_simon():
    try:
        simon(0.01, 0.02)
    except WorkLimitError:
        pass


timed("simon(0.2, 0.4)", lambda: simon(0.2, 0.4))
timed("simon(0.3, 0.38) (nmax capped at 300)", lambda: simon(0.3, 0.38))
timed("simon(0.01, 0.02) -> WorkLimitError naming nmax", tiny_simon)
for n_t, n_c in ((40, 20), (100, 50), (200, 100), (400, 200)):
    d = TwoArmDesign(n_t, n_c, prior_c=ROBUST)
    timed(f"two-arm {n_t}:{n_c} boundaries (robust MAP)", lambda d=d: d._bounds)
    timed(
        f"two-arm {n_t}:{n_c} OC, 3 priors x 2 effects x 101 p_c",
        lambda d=d: two_arm_oc(
            d,
            None,
            [0.65],
            scale="hr",
            priors={"vague": BetaMixture.from_ab(1, 1), "MAP": MAP, "robust": ROBUST},
        ),
    )
d = TwoArmDesign(60, 30, interims=((30, 15),), futility_prob=0.1, prior_c=ROBUST)
timed(
    "two-arm 60:30 with one interim, OC at 101 p_c", lambda: two_arm_oc(d, None, [0.65], scale="hr")
)
timed(
    "find_robust_weight 100:50, step 0.05",
    lambda: find_robust_weight(
        TwoArmDesign(100, 50),
        MAP,
        max_type1=0.1,
        type1_range=(0.3, 0.75),
        p_t=0.66,
        p_c=0.53,
        bounded=True,
        step=0.05,
    ),
)
timed(
    "two_arm_sample_size, robust MAP, ratio 2",
    lambda: two_arm_sample_size(
        ROBUST, p_c=0.53, p_t=0.53**0.5, power=0.8, alpha=0.1, type1_range=(0.3, 0.75), ratio=2.0
    ),
)
