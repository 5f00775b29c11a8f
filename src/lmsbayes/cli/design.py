"""The ``design`` verb: decision boundaries and operating characteristics of a design."""

from __future__ import annotations


def _parse_looks(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--looks must be comma-separated integers such as 20,35,50, got {text!r}") from None


def cmd_design(args) -> int:
    import numpy as np

    from lmsbayes.design import BayesianSingleArm, TwoArmDesign, operating_characteristics, simon
    from lmsbayes.prior import BetaMixture, robustify

    mix = BetaMixture.from_json(args.prior) if args.prior else None
    grid = np.round(np.linspace(0.05, 0.95, 19), 3)
    if args.kind == "simon":
        if args.p0 is None or args.p1 is None:
            raise ValueError("simon needs --p0 and --p1")
        designs = simon(args.p0, args.p1, alpha=args.alpha, power=args.power)
        print(designs)
        return 0
    if args.kind == "single-arm":
        p0 = args.p0 if args.p0 is not None else mix
        if p0 is None:
            raise ValueError("single-arm needs --p0 or a PRIOR.json (the historical rate as a Beta mixture)")
        design = BayesianSingleArm(looks=_parse_looks(args.looks), p0=p0, success_prob=args.success,
                                   futility_pp=args.futility)  # fmt: skip
        print(design)
        print("\nDecision boundaries (progression-free patients needed):")
        print(design.boundaries().to_string(index=False))
        oc = operating_characteristics(design, grid)
        table = oc[["prob_success", "prob_early_stop", "expected_n"]].to_dataframe()
    else:
        if mix is None:
            raise ValueError("two-arm needs a PRIOR.json for the control arm")
        prior_c = robustify(mix, args.robust) if args.robust else mix
        design = TwoArmDesign(n_t=args.n_t, n_c=args.n_c, prior_c=prior_c, delta=args.delta,
                              success_prob=args.success)  # fmt: skip
        print(design)
        print("\nDecision boundaries (experimental-arm responders needed per control count):")
        print(design.boundaries().to_string(index=False))
        m = mix.mean()
        oc = operating_characteristics(design, p_t=np.round(np.linspace(0.05, 0.95, 19), 3), p_c=[round(m, 3)])
        table = oc.to_dataframe()
    print("\nOperating characteristics (exact enumeration):")
    print(table.round(4).to_string())
    return 0



def register(sub) -> None:
    """Add the ``design`` verb to the ``lmsbayes`` parser."""
    q = sub.add_parser("design", help="decision boundaries and operating characteristics of a design")
    q.add_argument("prior", nargs="?", help="PRIOR.json from `lmsbayes prior` (historical rate / control prior)")
    q.add_argument("--kind", choices=["single-arm", "two-arm", "simon"], default="single-arm")
    q.add_argument("--looks", default="20,35,50", help="single-arm sample sizes at the looks (default 20,35,50)")
    q.add_argument("--p0", type=float, help="fixed null rate (single-arm, simon); default: the prior")
    q.add_argument("--p1", type=float, help="alternative rate (simon)")
    q.add_argument("--alpha", type=float, default=0.05)
    q.add_argument("--power", type=float, default=0.8)
    q.add_argument("--success", type=float, default=0.95, help="posterior probability for success")
    q.add_argument("--futility", type=float, default=0.05, help="predictive-probability futility bound")
    q.add_argument("--n-t", type=int, default=40)
    q.add_argument("--n-c", type=int, default=20)
    q.add_argument("--delta", type=float, default=0.0)
    q.add_argument("--robust", type=float, default=0.0, help="robustify the control prior with this weight")
    q.set_defaults(func=cmd_design)
