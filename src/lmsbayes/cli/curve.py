"""The ``curve`` verb.

Reconstruct patient data from digitised Kaplan-Meier curves and report accuracy.
"""

from __future__ import annotations

from lmsbayes.cli._common import check_outputs, landmark_months, landmark_option, list_option

#: Curve families ``--family`` can fit.
FAMILIES = ("loglogistic", "weibull")


def _family(text: str) -> str:
    import argparse

    if text not in FAMILIES:
        raise argparse.ArgumentTypeError(
            f"family must be one of {', '.join(FAMILIES)}, got {text!r}"
        )
    return text


def cmd_curve(args) -> int:
    """Run ``lmsbayes curve``: read, rebuild and report each arm; write the figure and patients."""
    import io

    from lmsbayes.curves import read_curve, reconstruct
    from lmsbayes.files import atomic_write_bytes, atomic_write_text

    check_outputs(args, files=("plot", "ipd"))
    recs = [reconstruct(read_curve(path)) for path in args.files]
    for i, r in enumerate(recs):
        if i:
            print()
        print(r.report(landmarks=args.landmarks, conf_type=args.conf_type))
        if args.jitter:
            from lmsbayes.curves.sensitivity import digitising_sensitivity

            sens = digitising_sensitivity(r, landmarks=args.landmarks, n_rep=args.jitter)
            print("\n".join(sens.lines()))
        if args.family:
            from lmsbayes.curves.fit import fit_arm

            for curve in args.family:
                print("\n".join(fit_arm(r, curve, t_max=args.truncate).lines()))
    if args.ipd:
        lines = ["arm_id,time,event,lower"]
        for r in recs:
            lines += [
                f"{r.curve.arm_id},{t:.6g},{e},{lo:.6g}"
                for t, e, lo in zip(r.time, r.event, r.lower, strict=True)
            ]
        atomic_write_text(args.ipd, "\n".join(lines) + "\n")
        print(
            f"\nreconstructed patients written to {args.ipd} (time in months; event 1, censored 0; "
            "an event lies in (lower, time])"
        )
    if args.plot:
        from lmsbayes.curves.plot import plot_reconstruction

        fig = plot_reconstruction(recs)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=130)
        atomic_write_bytes(args.plot, buf.getvalue())
        print(f"overlay written to {args.plot}")
    return 0


def register(sub) -> None:
    """Add the ``curve`` verb to the ``lmsbayes`` parser."""
    q = sub.add_parser(
        "curve",
        help="reconstruct patient data from digitised Kaplan-Meier curves (Guyot et al. 2012) "
        "and report the accuracy",
        description="Read one curve file per arm (TOML naming the digitised points CSV and holding "
        "the number-at-risk table; see lmsbayes.curves.read), reconstruct individual event and "
        "censoring times by Guyot et al.'s algorithm (BMC Med Res Methodol 2012;12:9), and print "
        "per arm: the digitising clean-up, the reconstructed KM against the digitised points (max "
        "and RMS difference), the median and landmark rates with Greenwood 95%% CIs, and the "
        "reconstructed numbers at risk against the table.",
    )
    q.add_argument("files", nargs="+", metavar="FILE", help="curve file(s), one per arm (TOML)")
    q.add_argument("--plot", default=None, metavar="OUT.png", help="write the overlay figure")
    q.add_argument(
        "--ipd", default=None, metavar="OUT.csv", help="write the reconstructed patients"
    )
    landmark_option(q, default=[3.0, 6.0, 9.0, 12.0], help="landmarks in months for the rates")
    list_option(
        q,
        "--family",
        item=_family,
        example="loglogistic,weibull",
        default=None,
        metavar="F1,F2",
        help="fit each arm on these curve families, from loglogistic, weibull (flat priors, "
        "grid) and check the fit: observed vs expected events per risk-table interval (X^2, "
        "Hosmer-Lemeshow-type)",
    )
    q.add_argument(
        "--truncate",
        type=landmark_months,
        default=None,
        metavar="MONTHS",
        help="with --family: censor everyone still at risk at MONTHS there before fitting",
    )
    q.add_argument(
        "--jitter",
        type=int,
        default=0,
        metavar="REPS",
        help="digitising sensitivity: rebuild each arm from REPS copies of its points moved by "
        "up to 0.005 on S and 0.5%% of the time range, and print the spread of the landmark "
        "rates and the median (0: off)",
    )
    q.add_argument(
        "--conf-type",
        choices=["log-log", "log", "plain"],
        default="log-log",
        help="scale of the Greenwood intervals: log-log (Kalbfleisch-Prentice), log (R survfit's "
        "default) or plain",
    )
    q.set_defaults(func=cmd_curve)
