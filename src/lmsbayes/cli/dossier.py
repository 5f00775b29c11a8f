"""The ``dossier`` verb: the evidence pack of a MAP prior, as HTML and JSON."""

from __future__ import annotations

from pathlib import Path

from lmsbayes.cli._common import bounded, check_outputs, fraction, landmark_months
from lmsbayes.cli.fitting import target_args


def cmd_dossier(args) -> int:
    """The ``dossier`` verb: write the evidence pack of a MAP prior."""
    from lmsbayes.dossier import dossier
    from lmsbayes.files import atomic_write_text
    from lmsbayes.fit import load_fit
    from lmsbayes.predict import Setting

    if args.json is None:
        args.json = str(Path(args.output).with_suffix(".json"))
    check_outputs(args, files=("output", "json"))
    if args.robust is not None and args.max_type1 is not None:
        from lmsbayes.errors import OptionError

        raise OptionError("give --robust or --max-type1, not both")
    if args.fit is None or not str(args.fit).endswith(".nc"):
        import warnings

        import lmsbayes as lb
        from lmsbayes.fit import FitWarning

        # a spec name (or none: the default) is fitted here, as `lmsbayes prior SPEC` does; an
        # inference problem is printed as the diagnostics line, never as a raw warning
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)
            result = lb.fit(args.fit or "default", lb.load_trials())
    else:
        result = load_fit(args.fit)
    print(result.diagnostics.line())
    if result.data.table == "lms":
        if args.line is None:
            from lmsbayes.errors import OptionError

            raise OptionError("an LMS fit needs --line (1L or 2L+) for the planned trial")
        if args.treatment_class is None and args.uterine is None:
            setting = Setting.standardised(args.line)
        else:
            setting = Setting(args.line, args.treatment_class, args.uterine)
    else:
        setting = None
    from lmsbayes.cli.fitting import target_from_args

    d = dossier(
        result,
        setting,
        args.landmark,
        target=target_from_args(args),
        n_control=args.n_control,
        n_treatment=args.n_treatment,
        hr=args.hr,
        robust_weight=args.robust,
        max_type1=args.max_type1,
        sensitivity=not args.no_sensitivity,
    )
    answer = d.section("answer")
    print(d.title)
    for p in answer.paragraphs:
        print("  " + p)
    atomic_write_text(args.output, d.to_html())
    atomic_write_text(args.json, d.to_json())
    print(f"written to {args.output} and {args.json}")
    return 0


def register(sub) -> None:
    """Add the ``dossier`` verb to the ``lmsbayes`` parser."""
    q = sub.add_parser(
        "dossier",
        help="evidence pack of a MAP prior (HTML + JSON), mapped to the FDA draft guidance",
        description="Write one document for a planned trial's setting: how the external arms "
        "were found, every arm considered and whether it entered, the exchangeability "
        "assumptions, the MAP prior and its robust version with how the weight was chosen, the "
        "prior's influence (ESS by ELIR, moment and Morita; share at the planned n), the planned "
        "prior-data conflict check, design vs analysis prior, operating characteristics across "
        "true control rates, sensitivity analyses and the locked inputs. Sections follow the FDA "
        "draft guidance on Bayesian methodology (January 2026).",
    )
    q.add_argument(
        "fit",
        metavar="FIT",
        nargs="?",
        default=None,
        help="fit file (netCDF) from `lmsbayes fit`, or a spec name fitted to the bundled data "
        "(default: the default analysis)",
    )
    q.add_argument(
        "-o", "--output", required=True, metavar="FILE.html", help="the HTML document to write"
    )
    target_args(q)
    q.add_argument(
        "--json", metavar="FILE", default=None, help="the JSON document (default: FILE.json)"
    )
    q.add_argument(
        "--line", choices=["1L", "2L+"], default=None, help="line of therapy of the planned trial"
    )
    q.add_argument(
        "--class",
        dest="treatment_class",
        choices=["R-T", "NR-T"],
        default=None,
        help="treatment class (default with neither --class nor --uterine: the line's case mix)",
    )
    q.add_argument(
        "--uterine",
        type=fraction,
        default=None,
        metavar="FRACTION",
        help="fraction of uterine patients (default with --class: 0.5)",
    )
    q.add_argument(
        "--landmark",
        type=landmark_months,
        default=None,
        metavar="MONTHS",
        help="landmark of the PFS rate in months (fits with landmarks)",
    )
    q.add_argument("--n-control", type=int, default=30, help="planned control-arm patients")
    q.add_argument("--n-treatment", type=int, default=60, help="planned experimental patients")
    q.add_argument(
        "--hr",
        type=bounded(0, 1, what="a hazard ratio"),
        default=0.65,
        help="hazard ratio of the alternative, p_t = p_c ** HR",
    )
    q.add_argument(
        "--robust",
        type=bounded(0, 1, what="a weight"),
        default=None,
        metavar="WEIGHT",
        help="robust weight (default 0.2 unless --max-type1 chooses it)",
    )
    q.add_argument(
        "--max-type1",
        type=bounded(0, 1, what="a probability"),
        default=None,
        metavar="ALPHA",
        help="choose the robust weight: the smallest whose worst type I error over the MAP "
        "prior's 95%% interval is at most ALPHA",
    )
    q.add_argument(
        "--no-sensitivity",
        action="store_true",
        help="skip the refits under a halved and doubled tau prior scale",
    )
    q.set_defaults(func=cmd_dossier)
