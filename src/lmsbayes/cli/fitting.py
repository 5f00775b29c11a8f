"""Verbs that fit or read a fit: ``run`` (the main job), ``fit``, ``thresholds``, ``report``."""

from __future__ import annotations

import json
from pathlib import Path

from lmsbayes.cli._common import (
    Progress,
    atomic_write_text,
    check_outputs,
    exit_for,
    fit_args,
    fit_from_args,
    hazard_ratio,
    landmark_option,
    list_option,
    load_spec_from_args,
    one_blas_thread,
    strict_failed,
    unique_hrs,
    version,
)


def _landmark_order(fit, at=None):
    """The order check of :func:`lmsbayes.predict.landmark_order` and its one-line summary."""
    from lmsbayes.predict import landmark_order

    order = landmark_order(fit, at=at)
    if order.empty:
        return order, None
    worst = order.loc[order["prob_later_higher"].idxmax()]
    coherent = fit.data.family.joined
    how = fit.data.family.landmark_relation
    if worst.prob_later_higher == 0:
        return (
            order,
            f"landmarks fitted {how}: pooled rates fall with time in every draw of every setting",
        )
    text = (
        f"landmarks fitted {how}: pooled S({worst.later:g} mo) > S({worst.earlier:g} mo), which no "
        "survival "
        f"curve can do, in {100 * worst.prob_later_higher:.0f}% of draws ({worst.setting})"
    )
    if not coherent:
        text += "; the default survival model keeps the order"
    return order, text


def _num(v):
    """A float for JSON (None for NaN)."""
    return None if v != v else float(v)


def _evidence_text(r) -> str:
    if r.get("arms", 0) != r.get("arms", 0):  # NaN: no evidence columns
        return ""
    direct = int(r["arms"]) > 0 or "case mix" in str(r.get("setting", ""))
    if direct:
        parts = [f"direct: {int(r['arms'])} arm{'s' if r['arms'] != 1 else ''}"]
    else:
        parts = ["model-based: no arm in cell"]
    if r.get("arms_unknown_site", 0) == r.get("arms_unknown_site", 0) and r.get(
        "arms_unknown_site", 0
    ):
        parts[0] += f" (+{int(r['arms_unknown_site'])} site unknown)"
    if r["patients"] == r["patients"] and r["patients"] > 0:
        parts.append(f"{int(r['patients'])} pts")
    obs = []
    for key, one, many in (
        ("rates_reported", "rate", "rates"),
        ("medians", "median", "medians"),
        ("rates_derived", "derived rate", "derived rates"),
    ):
        k = int(r.get(key, 0) or 0)
        if k:
            obs.append(f"{k} {one if k == 1 else many}")
    curves = str(r.get("curves", "") or "")
    if curves and curves != "nan":  # a curve arm's evidence: "curve (reconstructed, n patients)"
        n_curves = curves.count("curve (")
        obs.append("1 curve" if n_curves == 1 else f"{n_curves} curves")
    if obs:
        parts.append(" + ".join(obs))
    return ", ".join(parts)


def _print_table(table, fit, order_line: str | None) -> None:
    import pandas as pd

    from lmsbayes.decision import choice_line

    ref = table.attrs.get("reference", "pooled")
    fmt = lambda lo, mid, hi: f"{mid:.2f} ({lo:.2f}-{hi:.2f})"  # noqa: E731
    has_ev = "arms" in table
    out = pd.DataFrame(
        {
            "setting": table["setting"],
            "landmark": table["landmark"].map(lambda t: f"{t:g} mo"),
            "HR": table["hr"].map("{:g}".format),
            "p0": [fmt(a, b, c) for a, b, c in zip(table.p0_lower, table.p0, table.p0_upper)],
            "p1 = p0^HR": [
                fmt(a, b, c) for a, b, c in zip(table.p1_lower, table.p1, table.p1_upper)
            ],
            "EORTC 2021 p0 (per line)": [
                f"{v:.2f} ({ci})" if v == v else ""
                for v, ci in zip(table.eortc_p0, table.eortc_p0_ci)
            ],
        }
    )
    if "target" in table:  # what each row predicts (lmsbayes.targets), and its regimen's arms
        out.insert(
            1,
            "target",
            [
                t + (f" ({n} arms)" if n else "")
                for t, n in zip(table["target"], table["regimen_arms"])
            ],
        )
    if has_ev:
        out["informed by (cell)"] = [_evidence_text(r) for _, r in table.iterrows()]
        out["sd ratio"] = [f"{v:.2f}" if v == v else "" for v in table["sd_ratio"]]
    what = "pooled" if ref == "pooled" else "predictive (new trial)"
    print(
        f"lmsbayes {version()} - efficacy thresholds for phase II LMS trials (spec "
        f"{fit.spec.name!r}, "
        f"{fit.engine} engine)"
    )
    print(
        f"p0 = posterior median of the {what} PFS rate at the landmark, with its 95% credible "
        "interval (CrI);"
        " p1 = p0^HR per draw"
    )
    n_exc = (
        len(set(fit.data.excluded["arm_id"]) - set(fit.data.arms.index))
        if len(fit.data.excluded)
        else 0
    )
    print(
        f"data: {len(fit.data.arms)} arms enter the model ({n_exc} arms excluded: `lmsbayes run "
        "--exclusions` "
        f"lists the reasons), sha256 {fit.data.data_sha256[:12]}"
    )
    if len(fit.data.curve_arms):  # curve arms: one source per arm, and their checks
        from lmsbayes.model.curve_arms import summary_lines

        print("curve arms (their reconstructed patients replace the arm's median and rates):")
        for text in summary_lines(fit.data.curve_arms, fit.data.family.curve):
            print(f"  {text}")
    line = choice_line(fit.spec.name, fit.data.data_sha256)
    if line:  # the default's leave-future-out validation, in one line (lmsbayes.decision)
        print(line)
    print(out.to_string(index=False))
    settings = dict(zip(table["setting"], table["description"])) if "description" in table else {}
    if settings:
        print("\nsettings:")
        for name, desc in settings.items():
            print(f"  {name}: {desc}")
    if has_ev:
        flagged = table[table["flags"].fillna("") != ""]
        if len(flagged):
            print("\nflags (read these before using a row):")
            for (name, flags), g in flagged.groupby(["setting", "flags"], sort=False):
                when = ", ".join(f"{t:g}" for t in g["landmark"])
                print(f"  {name} ({when} mo): {flags}")
        print(
            "informed by: 'direct' = arms of the row's own cell (same line and class, uterine "
            "fraction within 0.25 of the setting's; case-mix rows: all arms of the line), their "
            "patients and reported observations; 'model-based' = no arm in the cell: the row comes "
            "from the line, class and uterine effects fitted to the other arms, and its sd ratio "
            "says how much they inform it. sd ratio: posterior / prior sd of the pooled logit (1 = "
            "the data add nothing to the prior); blank for case-mix rows, which average over the "
            "line's cells."
        )
    print(fit.diagnostics.line())
    if fit.diagnostics.note:
        print(fit.diagnostics.note)
    if order_line:
        print(order_line)
    print(
        "EORTC 2021: Kantidakis et al., Eur J Cancer 2021;154:253-268, pooled PFS rate per line "
        "(95% CI), "
        "shown beside the case-mix rows it is comparable with."
    )


def _print_binomial(table, fit) -> None:
    """A binomial (study, r, n) table.

    Pooled and predictive rates, and the MAP prior of a new study.
    """
    import numpy as np

    from lmsbayes.predict import thresholds
    from lmsbayes.prior import ess, map_prior, to_rbest

    d = fit.data
    patients = int(np.nansum(d.arms["n"].astype(float)))
    print(
        f"lmsbayes {version()} - random-effects meta-analysis of a binomial table (spec "
        f"{fit.spec.name!r}, "
        f"{fit.engine} engine)"
    )
    print(
        f"data: {d.n_arms} studies, {patients} patients, sha256 {d.data_sha256[:12]}"
        + (f"; covariates {list(d.covariates)}" if d.covariates else "")
    )
    # the thresholds' p0 summaries: integrated over the exact engine's rule where it applies (the
    # draws' quantiles moved the AS predictive 97.5% limit to 0.483 against 0.471 by quadrature)
    ref = {q: thresholds(fit, reference=q, prob=0.95) for q in ("pooled", "predictive")}

    def fmt(q: str, s) -> str:
        v = [float(ref[q][f"p0_{k}"].sel(setting=s)) for k in ("median", "lower", "upper")]
        return f"{v[0]:.3f} ({v[1]:.3f}-{v[2]:.3f})"

    for s in ref["pooled"]["setting"].values:
        print(
            f"  {s}: pooled rate {fmt('pooled', s)}; predictive rate of a new study "
            f"{fmt('predictive', s)} (posterior medians, 95% credible intervals)"
        )
    if not d.covariates:
        mix = map_prior(fit)
        ests = {m: ess(mix, m) for m in ("elir", "moment", "morita")}
        print(f"MAP prior of a new study's rate: {mix!r}")
        print(
            f"  mean {mix.mean():.4f}, sd {mix.sd():.4f}; ESS: ELIR {ests['elir']:.1f} (report "
            "this one), "
            f"moment {ests['moment']:.1f}, Morita {ests['morita']:.1f}"
        )
        print("  RBesT: " + to_rbest(mix))
    print(fit.diagnostics.line())
    from lmsbayes.fit import thin_data_note

    thin = thin_data_note(d)  # one study: tau is not identified (said even with --quiet)
    if thin:
        print(thin)


def _emit_table(table, fit, args, *, write: bool = True) -> None:
    """Print the table; also write --json / --csv unless ``write`` is False.

    ``write`` is False for a failed --strict fit.
    """
    order, order_line = _landmark_order(fit, at=json.loads(table.attrs.get("at", "{}") or "{}"))
    if write and getattr(args, "json", None):
        payload = {
            "lmsbayes_version": version(),
            "spec": fit.spec.name,
            "spec_hash": fit.spec.hash,
            "data_sha256": fit.data.data_sha256,
            "reference": table.attrs.get("reference"),
            "at": json.loads(table.attrs.get("at", "{}") or "{}"),
            "engine": fit.engine,
            "diagnostics": {
                "engine": fit.engine,
                "divergences": fit.diagnostics.divergences,
                "max_rhat": _num(fit.diagnostics.max_rhat),
                "min_ess_bulk": _num(fit.diagnostics.min_ess_bulk),
                "min_ess_tail": _num(fit.diagnostics.min_ess_tail),
                "khat": _num(fit.diagnostics.khat),
                "importance_ess": _num(fit.diagnostics.is_ess),
                "ok": fit.diagnostics.ok,
                "problems": fit.diagnostics.problems,
                "note": fit.diagnostics.note,
            },
            "excluded": json.loads(fit.data.excluded.to_json(orient="records")),
            "rows": json.loads(table.to_json(orient="records")),
            "landmark_order": json.loads(order.to_json(orient="records")),
        }
        atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    if write and getattr(args, "csv", None):
        atomic_write_text(args.csv, table.to_csv(index=False))
    if fit.data.table == "binomial":
        _print_binomial(table, fit)
    else:
        _print_table(table, fit, order_line)
    if getattr(args, "exclusions", False):
        exc = fit.data.excluded
        print(
            f"\nexcluded ({len(set(exc['arm_id']) - set(fit.data.arms.index))} arms; "
            "rows with a landmark are single "
            "observations of an arm that otherwise enters):"
        )
        print(exc.to_string(index=False) if len(exc) else "  none")


def _thresholds_table(fit, args):
    # the table from predict's numpy core: no xarray Dataset (its import and construction
    # took longer than the fit); the same numbers as threshold_table(thresholds(fit, ...))
    from lmsbayes.predict import threshold_group, threshold_table

    hr = args.hr if getattr(args, "hr", None) else None
    landmarks = getattr(args, "landmarks", None)
    group, evidence = threshold_group(
        fit,
        hr=hr,
        reference=getattr(args, "reference", None),
        landmarks=landmarks,
        at=dict(getattr(args, "at", None) or []),
        target=target_from_args(args),
    )
    return threshold_table(group, evidence=evidence)


def target_from_args(args):
    """The predictive target of --target/--year (None: version 0.1's unlabelled rows)."""
    from lmsbayes.targets import parse_target

    text, year = getattr(args, "target", None), getattr(args, "year", None)
    if text is None and year is not None:
        text = "average"
    return parse_target(text, year)


def target_args(q) -> None:
    """--target and --year: what a row or prior predicts (lmsbayes.targets)."""
    q.add_argument(
        "--target",
        metavar="TARGET",
        help="what the rates are for: 'average' (historical average, EORTC-comparable), "
        "'arm:REGIMEN' (a new arm of a regimen, e.g. arm:doxorubicin: a control arm's MAP prior) "
        "or 'new-regimen' (an untested regimen: a design prior for assurance, not a null)",
    )
    q.add_argument(
        "--year",
        type=int,
        metavar="YEAR",
        help="calendar year of the new trial (drift and time-trend specs), e.g. 2027",
    )


def _parse_at(text: str) -> tuple[str, float]:
    import argparse
    import math

    name, sep, value = text.partition("=")
    try:
        x = float(value)
    except ValueError:
        x = math.nan
    if not sep or not name.strip() or not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"must be NAME=NUMBER such as year=2026, got {text!r}")
    return name.strip(), x


def _check_at(spec, args) -> None:
    """A spec with numeric covariates of its own needs their values for the table's settings.

    Say so before fitting.
    """
    from lmsbayes.errors import OptionError

    given = {k for k, _ in spec.thresholds.at} | {k for k, _ in (getattr(args, "at", None) or [])}
    for name, cdef in spec.covariates:
        if cdef.type == "numeric" and name not in given and cdef.column not in given:
            raise OptionError(
                f"spec {spec.name!r} has the covariate {name!r} (column {cdef.column!r}): give the "
                f"new trial's value with --at {cdef.column}=VALUE or [thresholds] at = "
                f"{{ {cdef.column} = VALUE }}"
            )


def cmd_run(args) -> int:
    """The ``run`` verb: fit the default analysis and print the threshold table."""
    with one_blas_thread():
        return _run(args)


def _run(args) -> int:
    unique_hrs(args)
    check_outputs(args, files=("output", "json", "csv"))
    progress = Progress(args.quiet)
    spec = load_spec_from_args(args)
    _check_at(spec, args)
    result = fit_from_args(args, progress, spec)
    failed = strict_failed(result, args)
    table = _thresholds_table(result, args)
    if args.output and not failed:
        result.save(args.output)
        progress(f"fit saved to {args.output}")
    _emit_table(table, result, args, write=not failed)
    return exit_for(result, args, (args.output, args.json, args.csv))


def cmd_fit(args) -> int:
    """The ``fit`` verb: fit a spec and save the fit."""
    check_outputs(args, files=("output",))
    progress = Progress(args.quiet)
    result = fit_from_args(args, progress, load_spec_from_args(args))
    if not strict_failed(result, args):
        result.save(args.output)
        progress(f"fit saved to {args.output}")
    print(result.summary().round(3).to_string())
    print(result.diagnostics.line())
    return exit_for(result, args, (args.output,))


def cmd_thresholds(args) -> int:
    """The ``thresholds`` verb: the threshold table of a saved fit."""
    from lmsbayes.fit import load_fit

    unique_hrs(args)
    check_outputs(args, files=("json", "csv"))
    result = load_fit(args.fit)
    _emit_table(_thresholds_table(result, args), result, args)
    return 0


def cmd_report(args) -> int:
    """The ``report`` verb: the HTML report of a fit."""
    from lmsbayes.fit import load_fit
    from lmsbayes.report import write_report

    check_outputs(args, directories=("output",))
    from lmsbayes.report import check_report_dir

    check_report_dir(Path(args.output), None, args.overwrite)  # before the fit, not after it
    progress = Progress(args.quiet)
    result = (
        load_fit(args.fit) if args.fit else fit_from_args(args, progress, load_spec_from_args(args))
    )
    if strict_failed(result, args):
        return exit_for(result, args, (args.output,))
    path = write_report(result, args.output, overwrite=args.overwrite)
    progress(f"report written to {path}")
    return exit_for(result, args)


def table_args(q) -> None:
    """Options of the verbs that print a threshold table."""
    landmark_option(
        q,
        help="landmarks in months (default: the spec's; any landmark from the survival model, "
        "only fitted ones from a per-landmark model)",
    )
    q.add_argument(
        "--exclusions",
        action="store_true",
        help="also list the excluded arms and observations, with the reason",
    )
    list_option(
        q,
        "--hr",
        item=hazard_ratio,
        example="0.65,0.5",
        metavar="HR1,HR2,...",
        help="hazard ratios in (0, 1) for p1 = p0^HR (default: the spec's, 0.65 in the bundled "
        "specs)",
    )
    q.add_argument(
        "--reference",
        choices=["pooled", "predictive"],
        help="p0 from the pooled rate of a typical trial or the predictive rate of a new one "
        "(default: the spec's, pooled in the bundled specs as in EORTC 2021)",
    )
    q.add_argument(
        "--at",
        type=_parse_at,
        action="append",
        metavar="NAME=VALUE",
        help="value of a spec's own covariate for the new trial, in the data column's units "
        "(e.g. --at year=2026 for the time_trend spec; default: the spec's [thresholds] at)",
    )
    target_args(q)
    q.add_argument(
        "--json",
        metavar="FILE",
        help="also write the table, with provenance and diagnostics, as JSON",
    )
    q.add_argument("--csv", metavar="FILE", help="also write the table as CSV")


def register(sub) -> None:
    """Add the verbs of this module to the ``lmsbayes`` parser."""
    q = sub.add_parser(
        "run",
        help="fit the default analysis on the bundled data and print the threshold table",
        description="Fit a spec (the default analysis unless --spec) and print the threshold "
        "table p0 / p1 = p0^HR next to the EORTC 2021 values.",
    )
    fit_args(q, spec_positional=False)
    table_args(q)
    q.add_argument("-o", "--output", metavar="FILE", help="also save the fit (netCDF)")
    q.set_defaults(func=cmd_run)

    q = sub.add_parser(
        "fit",
        help="fit a model spec and save the fit (netCDF)",
        description="Fit a model spec, save the fit as netCDF (with its spec, data hash, "
        "version and seed) and print the posterior summary.",
    )
    fit_args(q, spec_positional=True)
    q.add_argument("-o", "--output", default="fit.nc", metavar="FILE", help="output netCDF file")
    q.set_defaults(func=cmd_fit)

    q = sub.add_parser(
        "thresholds",
        help="threshold table from a saved fit",
        description="Print the threshold table of a fit saved by `lmsbayes fit` (no refit).",
    )
    q.add_argument(
        "fit", metavar="FIT", help="fit file (netCDF) written by `lmsbayes fit` or `run -o`"
    )
    table_args(q)
    q.set_defaults(func=cmd_thresholds)

    q = sub.add_parser(
        "report",
        help="write tables, figures and an HTML page",
        description="Write the report of a fit (CSV tables, PNG figures, a self-contained "
        "index.html) into a directory. An existing directory is written into: "
        "only files an earlier report wrote, unchanged since, are replaced.",
    )
    q.add_argument(
        "fit",
        nargs="?",
        metavar="FIT",
        help="saved fit (netCDF); without it the spec is fitted now",
    )
    fit_args(q, spec_positional=False)
    q.add_argument("-o", "--output", default="report", metavar="DIR", help="output directory")
    q.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a file of the report's name that an earlier report did not write (the "
        "user's own index.html); a symbolic link is refused even then",
    )
    q.set_defaults(func=cmd_report)


#: The option parser other verbs share (``update`` takes the same --at, and --landmarks above).
parse_at = _parse_at
