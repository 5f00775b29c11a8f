"""The ``prior`` verb: a MAP prior (Beta mixture) for a setting, from a saved fit."""

from __future__ import annotations


def cmd_prior(args) -> int:
    from lmsbayes.fit import load_fit
    from lmsbayes.predict import Setting
    from lmsbayes.prior import map_prior, robustify

    result = load_fit(args.fit)
    setting = Setting(args.line, args.treatment_class, args.uterine)
    mix = map_prior(result, setting, args.landmark)
    if args.robust:
        mix = robustify(mix, args.robust, mean=args.robust_mean, bounded=args.robust_bounded)
    print(f"MAP prior for {setting.label} at {args.landmark:g} months (spec {result.spec.name!r}):")
    print(repr(mix))
    print(mix.summary().round(4).to_string())
    print(_ess_line(mix))
    print("RBesT: " + mix.to_rbest())
    if args.output:
        mix.to_json(args.output)
        print(f"written to {args.output}")
    return 0



def _ess_line(mix) -> str:
    """The ESS to report (ELIR, predictively consistent) first; the others labelled, never a long error."""
    import numpy as np

    from lmsbayes.prior import ess

    moment = f"moment {ess(mix, 'moment'):.1f}"
    if np.all(mix.a >= 1) and np.all(mix.b >= 1):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Morita's multi-modality note; it is labelled below
            morita = ess(mix, "morita")
        return (f"ESS: elir {ess(mix, 'elir'):.1f} (the one to report, docs/designs.md); {moment} "
                f"(conservative), morita {morita:.1f} (liberal for mixtures)")  # fmt: skip
    bad = [f"Beta({a:.3g}, {b:.3g})" for a, b in zip(mix.a, mix.b, strict=True) if a < 1 or b < 1]
    return (f"ESS: elir and morita undefined ({', '.join(bad)} has a shape < 1; --robust-bounded gives a "
            f"robust component where they are defined); {moment}")  # fmt: skip


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
    q.add_argument("--robust-bounded", action="store_true",
                   help="robust component with both shapes >= 1 (ELIR defined) instead of RBesT's n = 1")
    q.add_argument("-o", "--output", help="write the prior as JSON")
    q.set_defaults(func=cmd_prior)
