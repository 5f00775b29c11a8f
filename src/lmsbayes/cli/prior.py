"""The ``prior`` verb: a MAP prior (Beta mixture) for a setting, from a saved fit."""

from __future__ import annotations


def cmd_prior(args) -> int:
    from lmsbayes.fit import load_fit
    from lmsbayes.predict import Setting
    from lmsbayes.prior import ess, map_prior, robustify

    result = load_fit(args.fit)
    setting = Setting(args.line, args.treatment_class, args.uterine)
    mix = map_prior(result, setting, args.landmark)
    if args.robust:
        mix = robustify(mix, args.robust, mean=args.robust_mean)
    print(f"MAP prior for {setting.label} at {args.landmark:g} months (spec {result.spec.name!r}):")
    print(repr(mix))
    print(mix.summary().round(4).to_string())
    def _ess(method: str) -> str:
        try:
            return f"{ess(mix, method):.1f}"
        except ValueError as exc:  # e.g. ELIR is undefined when a component has a or b < 1
            return f"undefined ({exc})"

    print(f"ESS: elir {_ess('elir')}, moment {_ess('moment')}, morita {_ess('morita')}")
    print("RBesT: " + mix.to_rbest())
    if args.output:
        mix.to_json(args.output)
        print(f"written to {args.output}")
    return 0



def register(sub) -> None:
    """Add the ``prior`` verb to the ``lmsbayes`` parser."""
    q = sub.add_parser("prior", help="MAP prior (Beta mixture) for a setting from a saved fit")
    q.add_argument("fit")
    q.add_argument("--line", required=True, choices=["1L", "2L+"])
    q.add_argument("--landmark", type=float, required=True, help="months")
    q.add_argument("--class", dest="treatment_class", default="R-T", choices=["R-T", "NR-T"])
    q.add_argument("--uterine", type=float, default=0.5, help="fraction of uterine patients (default 0.5)")
    q.add_argument("--robust", type=float, default=0.0, help="weight of the vague component (e.g. 0.2)")
    q.add_argument("--robust-mean", type=float, default=None, help="mean of the vague component (default: RBesT's)")
    q.add_argument("-o", "--output", help="write the prior as JSON")
    q.set_defaults(func=cmd_prior)
