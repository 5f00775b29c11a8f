"""Build valid trial-arm CSV files (with their rates table) from simulated or published binomial
data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

Z95 = 1.959963984540054


def trials_csv(
    path: Path,
    *,
    rate: np.ndarray,
    n: np.ndarray | None = None,
    se_logit: np.ndarray | None = None,
    landmark: int = 6,
    line: np.ndarray | None = None,
    treatment_class: np.ndarray | None = None,
    uterine_fraction: np.ndarray | None = None,
    extra_rates: dict[int, np.ndarray] | None = None,
) -> Path:
    """Write a schema-valid arm table with one reported rate per arm; returns the arm table's path.

    The rates go to the rates table beside it (``<stem>_rates.csv``, which
    ``load_trials(path)`` finds). With ``se_logit`` the rate's 95% CI is built
    on the logit scale so that the data module recovers exactly that standard
    error; otherwise the binomial standard error with ``n`` applies.
    ``extra_rates`` adds reported rates at other landmarks ({months: rates},
    binomial standard error with ``n``).
    """
    path = Path(path)
    k = len(rate)
    line = np.asarray(line if line is not None else ["2L+"] * k)
    klass = np.asarray(treatment_class if treatment_class is not None else ["R-T"] * k)
    ids = [f"arm{i:05d}" for i in range(k)]
    df = pd.DataFrame(
        {
            "arm_id": ids,
            "trial": [f"T{i}" for i in range(k)],
            "year": 2010,
            "evidence": "publication",
            "phase": "2",
            "design": "single_arm",
            "arm": "x",
            "agents": "x",
            "placebo": "false",
            "treatment_class": klass,
            "line": line,
            "population": "LMS",
            # 10.5555 is the DOI test prefix: simulated arms pass the rule that every arm has an
            # identifier
            "doi": [f"10.5555/synthetic.{i}" for i in range(k)],
        }
    )
    if n is not None:
        df["n"] = np.asarray(n, int)
    if uterine_fraction is not None:
        df["n_uterine"] = np.round(np.asarray(uterine_fraction) * df["n"]).astype(int)
    rates = [
        pd.DataFrame(
            {
                "arm_id": ids,
                "t": float(landmark),
                "rate": np.asarray(rate, float),
                "kind": "reported",
            }
        )
    ]
    if se_logit is not None:
        lg = np.log(rates[0]["rate"] / (1 - rates[0]["rate"]))
        rates[0]["lo"] = 1 / (1 + np.exp(-(lg - Z95 * np.asarray(se_logit))))
        rates[0]["hi"] = 1 / (1 + np.exp(-(lg + Z95 * np.asarray(se_logit))))
    for t, r in (extra_rates or {}).items():
        rates.append(
            pd.DataFrame(
                {"arm_id": ids, "t": float(t), "rate": np.asarray(r, float), "kind": "reported"}
            )
        )
    df.to_csv(path, index=False, float_format="%.17g")
    pd.concat(rates, ignore_index=True).to_csv(
        path.with_name(f"{path.stem}_rates.csv"), index=False, float_format="%.17g"
    )
    return path


def lms_tables(arms: list[dict], rates: list[dict] | None = None, sha256: str = "synthetic"):
    """In-memory LMS tables (arm and reported-rate tables) with schema defaults filled in.

    Each arm dict needs ``arm_id`` and may give line, treatment_class, n,
    uterine_fraction, pfs_median_m, pfs_median_lo, pfs_median_hi; each rate
    dict ``arm_id``, ``t``, ``rate`` and optionally ``lo``, ``hi``.
    """
    from types import SimpleNamespace

    defaults = dict(
        trial=None,
        year=2010,
        evidence="publication",
        phase="2",
        design="single_arm",
        arm="x",
        agents="x",
        placebo=False,
        treatment_class="R-T",
        line="2L+",
        population="LMS",
        n=np.nan,
        n_uterine=np.nan,
        uterine_fraction=np.nan,
        pmid=1,
        doi="10.1/x",
        pfs_median_m=np.nan,
        pfs_median_lo=np.nan,
        pfs_median_hi=np.nan,
        pfs_events=np.nan,
    )
    rows = []
    for i, a in enumerate(arms):
        r = {**defaults, **a}
        r["trial"] = r["trial"] or f"T{i}"
        rows.append(r)
    frame = pd.DataFrame(rows)
    frame["n"] = pd.array(frame["n"], dtype="Float64").astype("Int64")
    frame["year"] = frame["year"].astype("Int64")
    rt = pd.DataFrame(rates or [], columns=["arm_id", "t", "rate", "lo", "hi", "kind"])
    rt["kind"] = rt["kind"].astype(object).where(rt["kind"].notna(), "reported")
    return SimpleNamespace(arms=frame, rates=rt, sha256=sha256)
