"""The ``validate`` verb: out-of-sample predictive checks of specs, side by side.

The checks themselves are in lmsbayes.validate.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from lmsbayes.cli._common import EXIT_SAMPLING, Progress, atomic_write_text, version


def register(sub) -> None:
    """Add the ``validate`` verb to the ``lmsbayes`` parser."""
    from lmsbayes.decision import DEFAULT_SPECS

    q = sub.add_parser(
        "validate",
        help=(
            "leave-one-trial-out (or leave-future-out, leave-one-regimen-out, temporal) "
            "predictive checks of specs, compared"
        ),
        description="Compare specs out of sample: refit each spec with some arms held out and "
        "score its predictions of them (ELPD per arm, PIT calibration, interval coverage). "
        "By default each trial is held out in turn (leave one trial out); --temporal fits the "
        "arms published up to --year and predicts the later ones; --future predicts each year's "
        "arms from the earlier ones and applies the choice rule of docs/validation.md; "
        "--regimen holds out all arms of a regimen together. The table shows each spec's "
        "difference from the reference spec with its standard error.",
    )
    q.add_argument(
        "specs",
        nargs="*",
        metavar="SPEC",
        help=f"specs to compare: TOML files or bundled names (default: {' '.join(DEFAULT_SPECS)})",
    )
    q.add_argument(
        "--temporal",
        action="store_true",
        help="fit the arms published up to --year and predict the later ones "
        "(default: leave one trial out)",
    )
    q.add_argument(
        "--future",
        action="store_true",
        help=(
            "leave-future-out, one step ahead: each arm after the first year with 10 arms (3 per "
            "line) predicted by the arms published before its year; compares the specs, applies "
            "the choice rule of docs/validation.md section 5 and its pseudo-prospective check"
        ),
    )
    q.add_argument(
        "--regimen",
        action="store_true",
        help="leave-one-regimen-out: all arms of a regimen held out together (a new regimen)",
    )
    q.add_argument(
        "--start",
        type=int,
        default=None,
        help="with --future: last year of the first training set (default: the rule above)",
    )
    q.add_argument(
        "--year",
        type=int,
        default=2018,
        help="last year of the training arms with --temporal (default 2018)",
    )
    q.add_argument(
        "--reference", default=None, help="spec the differences are taken from (default: the first)"
    )
    q.add_argument("--data", default=None, help="trial-arm CSV (default: the bundled data)")
    q.add_argument(
        "--engine",
        choices=["auto", "exact", "nuts"],
        default="exact",
        help="engine of every refit (default: exact)",
    )
    q.add_argument(
        "--draws", type=int, default=None, help="posterior draws per refit (default: the spec's)"
    )
    q.add_argument("--csv", metavar="FILE", help="also write the comparison table as CSV")
    q.add_argument(
        "--json",
        metavar="FILE",
        help="also write the comparison (table, target, preference) as JSON",
    )
    q.add_argument(
        "--observations",
        metavar="FILE",
        help="also write every held-out observation's PIT (and its arm's ELPD term) as CSV",
    )
    q.add_argument(
        "--plot", metavar="FILE", help="also write the calibration figure (PNG, PDF or SVG)"
    )
    q.add_argument(
        "--strict",
        action="store_true",
        help="exit with status 3 if any refit has inference problems",
    )
    q.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    q.set_defaults(func=cmd_validate)


def _check_outputs(args) -> None:
    """Every output path is writable before any work is done (nothing is written half)."""
    from lmsbayes.cli._common import check_outputs
    from lmsbayes.errors import OutputPathError

    check_outputs(args, files=("csv", "json", "observations", "plot"))
    if args.plot and Path(args.plot).suffix.lower() not in (".png", ".pdf", ".svg"):
        raise OutputPathError(f"--plot {args.plot}: the figure is written as .png, .pdf or .svg")


def _json_value(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    if hasattr(v, "item"):
        return _json_value(v.item())
    return v


def _future_specs() -> list[str]:
    from lmsbayes.future import FUTURE_SPECS
    from lmsbayes.spec import bundled_specs

    have = set(bundled_specs())
    return [s for s in FUTURE_SPECS if s in have]


def cmd_future(args) -> int:
    """``validate --future``: leave-future-out comparison, choice and pseudo-prospective check."""
    from lmsbayes.errors import InputError
    from lmsbayes.future import compare_future

    if args.temporal or args.regimen:
        raise InputError("--future cannot be combined with --temporal or --regimen")
    if args.plot:
        raise InputError("--plot draws leave-one-trial-out and temporal checks, not --future")
    progress = Progress(args.quiet)
    specs = args.specs or _future_specs()
    progress(f"leave-future-out of {', '.join(specs)}, {args.engine} engine")
    result = compare_future(
        specs,
        args.data,
        incumbent=args.reference,
        start=args.start,
        engine=args.engine,
        draws=args.draws,
        progress=None if args.quiet else progress,
    )
    print(result.format())
    if args.csv:
        atomic_write_text(args.csv, result.table.reset_index().to_csv(index=False))
        progress(f"table written to {args.csv}")
    if args.observations:
        import pandas as pd

        obs = pd.concat(
            [v.obs.assign(spec=n) for n, v in result.validations.items()], ignore_index=True
        )
        atomic_write_text(args.observations, obs.to_csv(index=False))
        progress(f"observations written to {args.observations}")
    if args.json:
        doc = {
            "lmsbayes_version": version(),
            "scheme": "lfo",
            "start": result.start,
            "incumbent": result.incumbent,
            "choice": result.choice.spec,
            "reason": result.choice.reason,
            "table": [
                {k: _json_value(x) for k, x in row.items()}
                for row in result.table.reset_index().to_dict(orient="records")
            ],
            "by_role": [
                {k: _json_value(x) for k, x in row.items()}
                for row in result.by_role.to_dict(orient="records")
            ],
            "prospective": [
                {k: _json_value(x) for k, x in row.items()}
                for row in result.prospective.to_dict(orient="records")
            ],
            "prospective_summary": {
                k: _json_value(x) for k, x in result.prospective_summary.items()
            },
        }
        atomic_write_text(args.json, json.dumps(doc, indent=2) + "\n")
        progress(f"comparison written to {args.json}")
    if args.strict and (result.table["refits_with_problems"] > 0).any():
        import sys

        print("lmsbayes: error: inference problems in some refits (--strict)", file=sys.stderr)
        return EXIT_SAMPLING
    return 0


def cmd_validate(args) -> int:
    """The ``validate`` verb: predictive validation and comparison of specs."""
    from lmsbayes.validate import DEFAULT_SPECS, compare

    _check_outputs(args)
    if args.future:
        return cmd_future(args)
    progress = Progress(args.quiet)
    specs = args.specs or list(DEFAULT_SPECS)
    if args.temporal and args.regimen:
        from lmsbayes.errors import InputError

        raise InputError("--temporal and --regimen are two schemes: give one")
    scheme = "temporal" if args.temporal else "loro" if args.regimen else "loto"
    how = {
        "temporal": f"temporal (fit <= {args.year})",
        "loro": "leave-one-regimen-out",
        "loto": "leave-one-trial-out",
    }[scheme]
    progress(f"validating {', '.join(specs)}: {how}, {args.engine} engine")
    result = compare(
        specs,
        args.data,
        scheme=scheme,
        year=args.year,
        reference=args.reference,
        engine=args.engine,
        draws=args.draws,
        progress=None if args.quiet else progress,
    )
    print(result.format())
    table = result.table.reset_index()
    if args.csv:
        atomic_write_text(args.csv, table.to_csv(index=False))
        progress(f"table written to {args.csv}")
    if args.observations:
        import pandas as pd

        # each observation with its arm's ELPD term, so that the arms driving a difference are one
        # sort away
        parts = []
        for n, v in result.validations.items():
            cols = [c for c in ("elpd", "elpd_survival") if c in v.arms]
            arm_terms = v.arms[cols].add_prefix("arm_")
            parts.append(
                v.obs.assign(spec=n).merge(arm_terms, left_on="arm", right_index=True, how="left")
            )
        obs = pd.concat(parts, ignore_index=True)
        atomic_write_text(args.observations, obs.to_csv(index=False))
        progress(f"observations written to {args.observations}")
    if args.json:
        v0 = next(iter(result.validations.values()))
        doc = {
            "lmsbayes_version": version(),
            "scheme": v0.scheme,
            "year": v0.year,
            "reference": result.reference,
            "data_sha256": {n: v.data.data_sha256 for n, v in result.validations.items()},
            "spec_hash": {n: v.spec.hash for n, v in result.validations.items()},
            "preference": result.preference(),
            "table": [
                {k: _json_value(x) for k, x in row.items()}
                for row in table.to_dict(orient="records")
            ],
            "target": [
                {k: _json_value(x) for k, x in row.items()}
                for row in result.target.to_dict(orient="records")
            ],
        }
        atomic_write_text(args.json, json.dumps(doc, indent=2) + "\n")
        progress(f"comparison written to {args.json}")
    if args.plot:
        from lmsbayes.plots_validate import plot_calibration

        _save_figure(plot_calibration(result), args.plot)
        progress(f"figure written to {args.plot}")
    if args.strict and (table["problems"] != "").any():
        import sys

        print("lmsbayes: error: inference problems in some refits (--strict)", file=sys.stderr)
        return EXIT_SAMPLING
    return 0


def _save_figure(fig, path: str) -> None:
    import tempfile

    p = Path(path)
    fd, tmp = tempfile.mkstemp(dir=p.parent if str(p.parent) else ".", suffix=p.suffix)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
