"""By how much a curve narrows the threshold rows its arm informs (docs/curves.md, issue 25).

No LMS curve with sourced digitised points exists (docs/curves.md), so the bundled data are
used as they are, and one arm that prints only a median (no CI) is given instead as a
simulated curve consistent with it: lms02_doxtrab (LMS-02, doxorubicin + trabectedin, 1L
NR-T, n 108, median 10.1 months). Its curve: log-logistic with that median and shape 1.5,
uniform censoring on (0, 36) months, digitised by a simulated reader from a 600 x 400 pixel
figure (tests/_curves_sim.py), risk table every 3 months. The default spec is fitted with
the arm as printed (the median, se from the KM median's asymptotic sd) and with the curve
instead (``[data] curves``), for several simulated curves; the script prints the 95%
interval widths of p0 in the rows the arm informs (pooled and predictive reference).

Run: PYTHONPATH=src .venv/bin/python benchmarks/curve_narrowing.py [n_curves]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _curves_sim import digitise, simulate_trial  # noqa: E402

from lmsbayes.data import load_trials  # noqa: E402
from lmsbayes.fit import fit  # noqa: E402
from lmsbayes.predict import threshold_table, thresholds  # noqa: E402
from lmsbayes.spec import load_spec  # noqa: E402

ARM, N, MEDIAN, SHAPE, CENSOR, T_MAX = "lms02_doxtrab", 108, 10.1, 1.5, 36.0, 36.0
ROWS = ("1L NR-T", "1L case mix")


def write_curve(folder: Path, seed: int) -> Path:
    """One simulated curve of the arm, as a curve file in ``folder``."""
    rng = np.random.default_rng(seed)
    time_, event, _ = simulate_trial(rng, N, "loglogistic", MEDIAN, SHAPE, CENSOR)
    t, s, rt, rn = digitise(rng, time_, event, T_MAX)
    pd.DataFrame({"t": t, "S": s}).to_csv(folder / "points.csv", index=False)
    (folder / "curve.toml").write_text(
        f'arm_id = "{ARM}"\npoints = "points.csv"\nsource = "simulated (seed {seed})"\n'
        f"[risk_table]\nt = {[float(x) for x in rt]}\nn = {[int(x) for x in rn]}\n"
    )
    return folder / "curve.toml"


def widths(f) -> pd.DataFrame:
    """95% interval width of p0 in the arm's rows, pooled and predictive reference."""
    out = []
    for ref in ("pooled", "predictive"):
        tab = threshold_table(thresholds(f, reference=ref), fit=f)
        tab = tab[tab["setting"].isin(ROWS)]
        for r in tab.itertuples():
            out.append(
                {
                    "reference": ref,
                    "setting": r.setting,
                    "landmark": r.landmark,
                    "p0": r.p0,
                    "width": r.p0_upper - r.p0_lower,
                }
            )
    return pd.DataFrame(out)


def main(n_curves: int = 4) -> None:
    trials = load_trials()
    spec = load_spec("default")
    t0 = time.time()
    base = widths(fit(spec, trials))
    print(f"arm as printed (median {MEDIAN} months, no CI): fitted in {time.time() - t0:.0f} s")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(1, n_curves + 1):
            folder = Path(tmp) / f"seed{seed}"
            folder.mkdir()
            write_curve(folder, seed)
            f = fit(spec.replace(**{"data.curves": (str(folder),)}), trials)
            ca = f.data.curve_arms.iloc[0]
            w = widths(f).assign(seed=seed)
            runs.append(w)
            print(
                f"curve seed {seed}: {int(ca['events'])} events, goodness of fit p = "
                f"{ca['p_value']:.2f}, KM max distance to the digitised points {ca['max_abs']:.4f}"
            )
    curves = pd.concat(runs)
    keys = ["reference", "setting", "landmark"]
    mean = curves.groupby(keys, sort=False)[["width", "p0"]].mean().reset_index()
    table = base.merge(mean, on=keys, suffixes=("_median", "_curve"))
    table["narrower_%"] = 100 * (1 - table["width_curve"] / table["width_median"])
    pd.set_option("display.width", 120)
    print(f"\n95% interval width of p0 (mean over {n_curves} simulated curves):")
    print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4)
