"""The ``data`` verb.

What the trial data hold per line x class x site, and what cannot enter a model.
"""

from __future__ import annotations

from lmsbayes.cli._common import landmark_option


def cmd_data(args) -> int:
    """The ``data`` verb: check the trial tables and print what enters each analysis."""
    import pandas as pd

    from lmsbayes.data import load_trials
    from lmsbayes.evidence import evidence, exclusions, readme_block

    trials = load_trials(args.data, args.rates)
    if args.markdown:
        print(readme_block(trials, args.landmarks))
        return 0
    if args.exclusions:
        excl = exclusions(trials)
        print(
            f"{len(excl)} of {len(trials)} arms cannot enter a model ({' + '.join(trials.files)}):"
        )
        for r in excl.itertuples():
            print(f"  {r.arm_id} ({r.line} {r.treatment_class}, {r.site}): {r.reason}")
        # a spec's own filters (placebo arms, lines, years, evidence) leave out more: say which,
        # so that this count and `lmsbayes run`'s agree
        from lmsbayes.errors import InputError
        from lmsbayes.model.prepare import prepare_data
        from lmsbayes.spec import load_spec

        spec = load_spec(args.spec)
        try:
            prepared = prepare_data(spec, trials)
        except InputError as exc:  # e.g. a covariate that does not vary in a small table
            print(f"spec {spec.name!r} cannot be applied to this table: {exc}")
            return 0
        whole = prepared.excluded
        if "landmark" in whole:
            whole = whole[whole["landmark"].isna()]
        more = whole[~whole["arm_id"].astype(str).isin(set(excl["arm_id"]))]
        more = more.drop_duplicates("arm_id")
        total = len(trials) - prepared.n_arms
        print(
            f"spec {spec.name!r} also leaves out {len(more)} arm{'s' if len(more) != 1 else ''} "
            f"by its own filters: {total} of {len(trials)} arms do not enter it "
            f"({prepared.n_arms} do)"
        )
        for r in more.itertuples():
            print(f"  {r.arm_id}: {r.reason}")
        return 0
    table = evidence(trials, args.landmarks)
    print(
        f"{len(trials)} arms, {len(trials.rates)} reported rates in {' + '.join(trials.files)} "
        f"(sha256 {trials.sha256[:12]})"
    )
    with pd.option_context(
        "display.width", 250, "display.max_columns", None, "display.max_rows", None
    ):
        print(table.to_string(index=False, na_rep=""))
    print(
        "arms_usable = arms that can enter a model (`lmsbayes data --exclusions` lists the "
        "others); reported_/derived_<L>m = usable arms whose rate at L months is reported / "
        "derived from the median"
    )
    return 0


def register(sub) -> None:
    """Add the ``data`` verb to the ``lmsbayes`` parser."""
    q = sub.add_parser(
        "data",
        help="evidence per line x class x site in the trial data; --exclusions lists "
        "arms that cannot enter a model",
        description="Show what the trial-arm table holds per line x treatment class x uterine "
        "site: arms, patients, reported and derived rates at the landmarks. With --exclusions, "
        "list every arm that cannot enter a model (with the reason) and, for a spec, the arms "
        "its own filters leave out, so that the counts agree with `lmsbayes run`.",
    )
    q.add_argument("--data", default=None, help="trial-arm CSV (default: the bundled data)")
    q.add_argument(
        "--rates", default=None, help="rates CSV (default: NAME_rates.csv beside --data, if any)"
    )
    landmark_option(
        q, default=[3.0, 6.0], help="landmarks in months for the reported / derived counts"
    )
    q.add_argument(
        "--spec",
        default="default",
        help="with --exclusions: the spec whose own filters are applied too (default: default)",
    )
    what = q.add_mutually_exclusive_group()
    what.add_argument(
        "--exclusions",
        action="store_true",
        help="list the arms that cannot enter a model, with the reason",
    )
    what.add_argument(
        "--markdown", action="store_true", help="the block data/README.md holds (markdown)"
    )
    q.set_defaults(func=cmd_data)
