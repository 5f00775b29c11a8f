"""The ``contrast`` verb: meta-analysis of per-trial hazard ratios (or odds ratios) from a CSV."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

_EPILOG = """\
The CSV has a `study` column and, per row, either `estimate`,`lower`,`upper` (the ratio and its
95% CI as published; a `level` column may give another level) or `log_estimate`,`se`. Other
columns (pmid, doi, where ...) are carried along. Example:
  lmsbayes contrast data/petrelli2017_pfs_hr.csv --method DL --events 150,300 --plots out/
The predictive distribution of a new trial's HR is the expected effect of a new agent: it gives
the probability of success (assurance) of a planned trial, not a target alternative (not p1).
"""


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically.

    lmsbayes.files: package temp beside it, umask mode.
    """
    from lmsbayes.files import atomic_write_bytes

    atomic_write_bytes(path, data)


def _save_figure(fig, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150)
    _atomic_write_bytes(path, buf.getvalue())


def _fmt(v, nd=3):
    return "" if v != v else f"{v:.{nd}f}"


def _studies_table(data, weights):
    import pandas as pd

    m = data.attrs.get("measure", "HR")
    name = m if m != "identity" else "estimate"
    out = pd.DataFrame(
        {
            name: data["estimate"].map(lambda v: f"{v:.2f}"),
            f"{100 * data['level'].iloc[0]:g}% CI": [
                f"{lo:.2f}-{hi:.2f}" for lo, hi in zip(data["lower"], data["upper"])
            ],
            "from": data["input"].map({"ci": "reported CI", "se": "log est + se (CI derived)"}),
            "log" if m != "identity" else "yi": data["yi"].map(lambda v: f"{v:.4f}"),
            "se": data["sei"].map(lambda v: f"{v:.4f}"),
            "weight %": [f"{w:.1f}" for w in weights],
        },
        index=data.index,
    )
    return out


def _frequentist_rows(fits, measure):
    import numpy as np
    import pandas as pd

    ratio = measure != "identity"
    tf = np.exp if ratio else (lambda v: v)
    rows = {}
    for r in fits:
        rows[f"{r.method}, {'z' if r.test == 'z' else 'HKSJ t(' + str(int(r.df)) + ')'}"] = {
            (measure if ratio else "estimate"): f"{tf(r.estimate):.2f}",
            f"{100 * r.level:g}% CI": f"{tf(r.ci_lower):.2f}-{tf(r.ci_upper):.2f}",
            "p": f"{r.pvalue:.2g}" if r.pvalue >= 1e-4 else "<0.0001",
            f"{100 * r.level:g}% PI": f"{tf(r.pi_lower):.2f}-{tf(r.pi_upper):.2f}",
            "tau^2": f"{r.tau2:.4f}",
            "I^2 %": f"{r.I2:.1f}",
        }
    return pd.DataFrame(rows).T


def cmd_contrast(args) -> int:
    """The ``contrast`` verb: contrast-based meta-analysis of log HR or log OR."""
    import numpy as np

    from lmsbayes import contrast as ct
    from lmsbayes.version import __version__

    tau_prior, mu_prior, methods = _check_options(args)
    data = ct.read_contrasts(args.file, measure=args.measure)
    excluded = data.attrs.get("excluded", [])
    if excluded:
        print(
            f"{len(excluded)} rows of {args.file} are excluded from the analysis (their 'exclude' "
            f"column):"
        )
        for e in excluded:
            print(f"  row {e['row']} {e['study']}: {e['reason']}")
        print()
    m = args.measure
    ratio = m != "identity"
    tests = ["z", "knha"] if args.test == "both" else [args.test]
    fits = [
        ct.random_effects(data, method=me, test=te, level=args.level, prediction=args.prediction)
        for me in methods
        for te in tests
    ]
    main_fit = fits[0]
    k = len(data)
    print(
        f"{k} trials from {args.file} ({ct.MEASURES[m]}"
        f"{', analysed on the log scale' if ratio else ''}; sha256 {data.attrs['sha256'][:12]})\n"
    )
    print(_studies_table(data, main_fit.weights).to_string())
    print(f"(weights: {main_fit.method} random-effects)\n")
    print("Frequentist random-effects estimates")
    print(_frequentist_rows(fits, m).to_string())
    pi = (
        "metafor's default: normal quantile under z, t(k-1) under HKSJ"
        if args.prediction == "metafor"
        else "Higgins-Thompson-Spiegelhalter, t(k-2)"
    )
    print(f"PI: {100 * args.level:g}% prediction interval for a new trial's true effect ({pi}).")
    print("REML and ML by Fisher scoring (step halving, start at the Hedges estimator).")
    print(
        f"Heterogeneity: Q({main_fit.Q_df}) = {main_fit.Q:.2f}, p = {main_fit.Q_pvalue:.2g}; "
        f"tau^2 {100 * args.level:g}% Q-profile CI "
        f"{main_fit.tau2_lower:.4f}-{main_fit.tau2_upper:.4f}\n"
    )
    bayes = None
    if not args.no_bayes:
        bayes = ct.bayesian(
            data,
            tau_prior=tau_prior,
            mu_prior=mu_prior,
            level=args.level,
        )
        print(repr(bayes))
        print()
    egger = None
    if k >= 3:
        egger = ct.egger_test(data, model="lm", level=args.level)
        print(repr(egger))
        if k < 10:
            print(
                f"  (with {k} trials the test has little power: a non-significant result is not "
                f"evidence of no small-study effects)"
            )
        print()
    loo = None
    if k >= 3 and not args.no_leave_one_out:
        loo = ct.leave_one_out(main_fit)
        print(
            f"Leave-one-out ({main_fit.method}, {'z' if main_fit.test == 'z' else 'HKSJ'}): pooled "
            f"estimate without each trial"
        )
        tf = np.exp if ratio else (lambda v: v)
        view = loo.assign(
            **{
                (m if ratio else "estimate"): tf(loo["estimate"]).map(lambda v: f"{v:.2f}"),
                "CI": [
                    f"{tf(a):.2f}-{tf(b):.2f}" for a, b in zip(loo["ci_lower"], loo["ci_upper"])
                ],
                "tau^2": loo["tau2"].map(lambda v: f"{v:.4f}"),
                "I^2 %": loo["I2"].map(lambda v: f"{v:.1f}"),
            }
        )[[m if ratio else "estimate", "CI", "tau^2", "I^2 %"]]
        print(view.to_string())
        print()
    table = None
    if args.events:
        pred = (
            bayes.predictive()
            if bayes is not None
            else ct.Predictive.normal(
                main_fit.estimate,
                float(np.sqrt(main_fit.se**2 + main_fit.tau2)),
                label="N(mu, se^2 + tau^2)",
            )
        )
        table = ct.assurance_table(
            pred,
            args.events,
            allocation=args.allocation,
            alpha=args.alpha,
            target_hr=args.target_hr,
        )
        src = (
            "Bayesian posterior predictive"
            if bayes is not None
            else f"{main_fit.method} normal approximation"
        )
        print(
            f"Probability of success of a planned two-arm trial (one-sided alpha {args.alpha:g}, "
            f"{args.allocation:.3g} allocated to the new agent; Schoenfeld), over the {src} of a "
            f"new trial's HR"
        )
        print(table.to_string(float_format=lambda v: f"{v:.3f}"))
        print(
            "assurance = power averaged over the predicted true HR; it cannot exceed P(true HR < "
            "1).\n"
        )
    if args.plots is not None:
        out = Path(args.plots)
        with contextlib.suppress(FileExistsError):
            out.mkdir()  # the directory the user named (its parent was checked, or made by --mkdir)
        from lmsbayes.report import plain_text

        with plain_text():  # a '$' in a study's label is drawn, not read as mathtext
            _save_figure(ct.forest_plot(main_fit), out / "forest.png")
            _save_figure(ct.funnel_plot(main_fit), out / "funnel.png")
            written = ["forest.png", "funnel.png"]
            if bayes is not None:
                _save_figure(ct.forest_plot(bayes), out / "forest_bayes.png")
                written.append("forest_bayes.png")
        print(f"plots written to {out}/: {', '.join(written)}", file=sys.stderr)
    if args.json is not None:
        doc = {
            "lmsbayes_version": __version__,
            "input": {
                "file": str(args.file),
                "sha256": data.attrs["sha256"],
                "measure": m,
                "k": k,
                "excluded": excluded,
            },
            "options": {
                "method": methods,
                "test": tests,
                "prediction": args.prediction,
                "level": args.level,
                "tau_prior": args.tau_prior,
                "mu_prior": args.mu_prior,
            },
            "studies": json.loads(
                data[["yi", "sei", "estimate", "lower", "upper", "input"]].to_json(orient="index")
            ),
            "frequentist": [json.loads(f.table().to_json(orient="records"))[0] for f in fits],
            "bayesian": None
            if bayes is None
            else json.loads(bayes.summary().to_json(orient="index")),
            "egger": None if egger is None else json.loads(egger.to_series().to_json()),
            "leave_one_out": None if loo is None else json.loads(loo.to_json(orient="index")),
            "assurance": None if table is None else json.loads(table.to_json(orient="index")),
        }
        _atomic_write_bytes(
            Path(args.json), (json.dumps(doc, indent=2, allow_nan=True) + "\n").encode()
        )
        print(f"results written to {args.json}", file=sys.stderr)
    return 0


#: Defaults of the options that only mean something with --events (None: not given).
_ASSURANCE_DEFAULTS = {"allocation": 0.5, "alpha": 0.025}


def _check_options(args):
    """Every option checked before the table is read or anything printed.

    Returns (tau prior, mu prior, methods).
    """
    from lmsbayes import contrast as ct
    from lmsbayes.cli._common import check_outputs, list_text
    from lmsbayes.contrast.frequentist import METHODS
    from lmsbayes.errors import OptionError

    given_methods = list_text(args.method)
    methods = [s.strip().upper() for s in given_methods.split(",") if s.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown:
        raise OptionError(
            f"--method {given_methods!r}: method must be one of {', '.join(METHODS)} "
            "(tau^2 estimators, comma-separated)"
        )
    methods = list(dict.fromkeys(methods))
    given = [
        f"--{name.replace('_', '-')}"
        for name in ("allocation", "alpha", "target_hr")
        if getattr(args, name) is not None
    ]
    if given and not args.events:
        raise OptionError(
            f"{' and '.join(given)} {'applies' if len(given) == 1 else 'apply'} only to the "
            f"assurance of a planned trial: give --events too"
        )
    for name, value in _ASSURANCE_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.events and args.measure != "HR":
        raise OptionError(
            "--events (assurance of a time-to-event trial) needs --measure HR, "
            f"got --measure {args.measure}"
        )
    if args.events:
        args.events = sorted(set(args.events))
    check_outputs(args, files=("json",), directories=("plots",))
    tau_prior = mu_prior = None
    if not args.no_bayes:
        for option, parse in (("tau_prior", ct.parse_tau_prior), ("mu_prior", ct.parse_mu_prior)):
            try:
                parsed = parse(getattr(args, option))
            except OptionError as exc:
                raise OptionError(f"--{option.replace('_', '-')}: {exc}") from None
            if option == "tau_prior":
                tau_prior = parsed
            else:
                mu_prior = parsed
    return tau_prior, mu_prior, methods


def _events(text: str) -> int:
    import argparse

    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"events must be whole numbers, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"events must be >= 1, got {v}")
    return v


def register(sub) -> None:
    """Add the ``contrast`` verb to the ``lmsbayes`` parser."""
    from lmsbayes.cli._common import bounded, list_option

    q = sub.add_parser(
        "contrast",
        help="meta-analysis of per-trial hazard ratios / odds ratios (frequentist and Bayesian)",
        description="Random-effects meta-analysis of per-trial contrasts (log HR, log OR): "
        "DerSimonian-Laird and REML with Q, I^2, tau^2, the Hartung-Knapp-Sidik-Jonkman adjustment "
        "and the prediction interval; the Bayesian normal-normal model by exact quadrature; "
        "Egger's test; leave-one-out; and the probability of success of a planned trial.",
        epilog=_EPILOG,
    )
    q.add_argument("file", metavar="FILE.csv", help="contrast table (see below)")
    q.add_argument(
        "--measure",
        choices=["HR", "OR", "RR", "identity"],
        default="HR",
        help="what the estimates are (default: HR; ratios are pooled on the log scale)",
    )
    list_option(
        q,
        "--method",
        item=str,
        example="DL,REML",
        default="DL,REML",
        metavar="M1,M2,...",
        help="tau^2 estimators from DL, REML, ML, PM, HE, EE (default: DL,REML; the first gives "
        "the weights, leave-one-out and plots)",
    )
    q.add_argument(
        "--test",
        choices=["z", "knha", "both"],
        default="both",
        help="Wald z, Hartung-Knapp-Sidik-Jonkman (knha), or both (default: both)",
    )
    q.add_argument(
        "--prediction",
        choices=["metafor", "hts"],
        default="metafor",
        help="prediction interval: metafor's default or Higgins-Thompson-Spiegelhalter t(k-2) "
        "(default: metafor)",
    )
    q.add_argument(
        "--level",
        type=bounded(0, 1, what="a confidence level"),
        default=0.95,
        help="confidence / credible level (default: 0.95)",
    )
    q.add_argument(
        "--tau-prior",
        default="half-normal:0.5",
        help="Bayesian tau prior: half-normal:S, half-cauchy:S, half-t:NU,S, exponential:RATE, "
        "uniform, uniform:LO,HI, or a bayesmeta name (jeffreys, dumouchel, i2, sqrt, "
        "shrinkage, conventional, berger-deely, overall-jeffreys) (default: half-normal:0.5, "
        "a weakly informative prior for log HR / log OR; set it for other scales)",
    )
    q.add_argument(
        "--mu-prior",
        default="normal:0,4",
        help="Bayesian prior of the pooled log ratio: normal:MEAN,SD or flat (default: normal:0,4)",
    )
    q.add_argument("--no-bayes", action="store_true", help="skip the Bayesian analysis")
    q.add_argument("--no-leave-one-out", action="store_true", help="skip the leave-one-out table")
    list_option(
        q,
        "--events",
        item=_events,
        example="150,300",
        metavar="D1,D2,...",
        help="assurance of a planned two-arm time-to-event trial with D events (several allowed)",
    )
    q.add_argument(
        "--allocation",
        type=bounded(0, 1, what="an allocation fraction"),
        default=None,
        help="fraction randomised to the new agent in the planned trial, with --events "
        "(default: 0.5)",
    )
    q.add_argument(
        "--alpha",
        type=bounded(0, 0.5, what="a one-sided alpha"),
        default=None,
        help="one-sided alpha of the planned trial, with --events (default: 0.025)",
    )
    q.add_argument(
        "--target-hr",
        type=bounded(0, 100, what="a hazard ratio"),
        default=None,
        help="also show the conventional power at this fixed HR, with --events",
    )
    q.add_argument(
        "--plots",
        metavar="DIR",
        default=None,
        help="write forest.png, funnel.png (and forest_bayes.png) to DIR",
    )
    q.add_argument("--json", metavar="FILE", default=None, help="write all results as JSON to FILE")
    q.set_defaults(func=cmd_contrast)
