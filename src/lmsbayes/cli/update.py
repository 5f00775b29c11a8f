"""The ``update`` verb: what newly published arms change (lmsbayes.update)."""

from __future__ import annotations

from lmsbayes.cli._common import Progress


def cmd_update(args) -> int:
    """``update --add``: refit with the added arms and print what changed."""
    from lmsbayes.update import update

    progress = Progress(args.quiet)
    progress(f"adding {args.add} to {args.data or 'the bundled data'}; spec {args.spec!r}")
    result = update(
        args.add,
        args.data,
        args.spec,
        landmarks=args.landmarks,
        at=dict(args.at or []),
        priors=args.priors,
        lfo=not args.no_lfo,
        workers=args.workers,
        progress=None if args.quiet else progress,
        cache=not args.no_cache,
    )
    print(result.format())
    return 0


def register(sub) -> None:
    """Add the ``update`` verb to the ``lmsbayes`` parser."""
    from lmsbayes.cli._common import landmark_option
    from lmsbayes.cli.fitting import parse_at

    q = sub.add_parser(
        "update",
        help="refit with newly published arms and print what changed",
        description=(
            "Add the arms of a CSV (same columns and checks as the bundled table; rates in "
            "NAME_rates.csv beside it) to the data, refit the spec, and print the difference "
            "in every threshold row, in the MAP priors (with their ESS) of the added arms' "
            "lines, and in the spec's leave-future-out summary. Nothing is written, unless the "
            "environment variable LMSBAYES_CACHE names a folder for the base analysis, kept "
            "there to be reused by the next update (--no-cache: not even then)."
        ),
    )
    q.add_argument("--add", required=True, metavar="NEWARMS.csv", help="the arms to add")
    q.add_argument("--spec", default="default", help="spec to refit (default: default)")
    q.add_argument("--data", default=None, help="base arm table (default: the bundled data)")
    landmark_option(q, help="threshold landmarks in months (default: the spec's)")
    q.add_argument(
        "--at",
        type=parse_at,
        action="append",
        metavar="NAME=VALUE",
        help="covariate value of the settings, e.g. year=2027 for a spec with a time trend",
    )
    q.add_argument(
        "--priors",
        choices=["rt", "line", "none"],
        default="rt",
        help=(
            "MAP priors compared for each added line: rt = the R-T setting (default), line = "
            "also the case mix and NR-T, none"
        ),
    )
    q.add_argument("--no-lfo", action="store_true", help="skip the leave-future-out summary")
    q.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="processes for the independent refits (default: 2 where a second core is free, "
        "else 1: one after another; the numbers do not depend on it)",
    )
    q.add_argument(
        "--no-cache",
        action="store_true",
        help="compute the base analysis (the fit before, its leave-future-out) again instead of "
        "taking it from the cache folder LMSBAYES_CACHE names (without it there is no cache)",
    )
    q.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    q.set_defaults(func=cmd_update)
