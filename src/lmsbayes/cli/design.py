"""The ``design`` and ``analyze`` verbs.

Designs with their operating characteristics, and prior-data conflict.

``lmsbayes design`` prints, for every design, the role the prior plays, the
decision boundaries in progression-free patients (both arms for two-arm
designs), the operating characteristics across true rates, P(success) at p0
and p1, and warnings when the design cannot work.  ``lmsbayes analyze``
shows how much of a prior survives a trial's data.
"""

from __future__ import annotations

import argparse
import sys

_HR_DEFAULT = 0.65  # the EORTC convention: p1 = p0 ** 0.65
_SUCCESS_DEFAULT = {"single-arm": 0.95, "two-arm": 0.975}  # the Python defaults of each design


# ---------------------------------------------------------------------- option types
def _open_unit(flag: str):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {text!r}") from None
        if not 0.0 < v < 1.0:
            raise argparse.ArgumentTypeError(f"must lie in (0, 1), got {text!r}")
        return v

    parse.__name__ = flag
    return parse


def _weight(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}") from None
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {text!r}")
    return v


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not (v > 0 and v < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return v


def _count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return v


def _parse_looks(value) -> tuple[int, ...]:
    from lmsbayes.cli._common import list_text
    from lmsbayes.errors import OptionError

    text = list_text(value)
    try:
        looks = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise OptionError(
            f"--looks must be comma-separated integers such as 20,35,50, got {text!r}"
        ) from None
    if (
        not looks
        or any(v < 1 for v in looks)
        or any(b <= a for a, b in zip(looks, looks[1:], strict=False))
    ):
        raise OptionError(
            f"--looks must be strictly increasing positive integers such as 20,35,50, got {text!r}"
        )
    return looks


def _parse_interims(value) -> tuple[tuple[int, int], ...]:
    from lmsbayes.cli._common import list_text
    from lmsbayes.errors import OptionError

    if not value:
        return ()
    text = list_text(value)
    try:
        pairs = tuple(tuple(int(v) for v in part.split(":")) for part in text.split(","))
    except ValueError:
        raise OptionError(
            f"--interims must be n_t:n_c pairs such as 20:10,30:15, got {text!r}"
        ) from None
    if any(len(p) != 2 for p in pairs):
        raise OptionError(f"--interims must be n_t:n_c pairs such as 20:10,30:15, got {text!r}")
    return pairs


def _parse_range(value) -> tuple[float, float]:
    from lmsbayes.cli._common import list_text
    from lmsbayes.errors import OptionError

    text = list_text(value)
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise OptionError(
            f"--type1-range must be two rates lo,hi such as 0.3,0.8, got {text!r}"
        ) from None
    if not 0.0 <= lo < hi <= 1.0:
        raise OptionError(f"--type1-range must satisfy 0 <= lo < hi <= 1, got {text!r}")
    return lo, hi


# ---------------------------------------------------------------------- printing
def _warn(lines: list[str]) -> None:
    for line in lines:
        print(f"lmsbayes: warning: {line}", file=sys.stderr)


def _headline(design, p0: float, p1: float, what0: str, what1: str) -> list[str]:
    from lmsbayes.design import design_warnings, headline

    h = headline(design, p0, p1)
    print(f"\nP(success) at p0 = {p0:.3f} ({what0}): {h['success_at_p0']:.4f}")
    print(f"P(success) at p1 = {p1:.3f} ({what1}): {h['success_at_p1']:.4f}")
    return design_warnings(design, p0, p1)


def _single_boundaries(design) -> str:
    b = design.boundaries()
    rows = []
    for _, r in b.iterrows():
        n = int(r["n"])
        cont = (
            ""
            if r["min_to_continue"] is None or str(r["min_to_continue"]) == "<NA>"
            else r["min_to_continue"]
        )
        succ = r["min_for_success"]
        succ_txt = (
            "-"
            if str(succ) == "<NA>"
            else (f"never (> {n})" if int(succ) > n else f"{int(succ)} of {n}")
        )
        cont_txt = (
            "-" if cont == "" else (f"never (> {n})" if int(cont) > n else f"{int(cont)} of {n}")
        )
        rows.append(f"  {n:>5}  {cont_txt:>18}  {succ_txt:>18}")
    head = f"  {'n':>5}  {'continue with >=':>18}  {'success with >=':>18}"
    return "\n".join([head, *rows])


def _two_arm_boundaries(design) -> str:
    b = design.boundaries()
    lines = []
    for look, g in b.groupby("look"):
        n_t, n_c = int(g["n_t"].iloc[0]), int(g["n_c"].iloc[0])
        final = look == b["look"].max()
        title = "final analysis" if final else f"interim {look}"
        lines.append(f"  {title} (n_t = {n_t}, n_c = {n_c}):")
        lines.append(
            f"    {'control progression-free':>26}  {'treatment progression-free for success':>40}"
            + ("  treatment needed to continue" if "min_r_t_continue" in g and not final else "")
        )
        for _, r in g.iterrows():
            need = r["min_r_t"]
            txt = (
                f"never (not even {n_t} of {n_t})"
                if str(need) == "<NA>"
                else f">= {int(need)} of {n_t}"
            )
            extra = ""
            if "min_r_t_continue" in g and not final:
                c = r["min_r_t_continue"]
                extra = "  " + ("stop" if str(c) == "<NA>" else f">= {int(c)} of {n_t}")
            lines.append(f"    {int(r['r_c']):>19} of {n_c:<4}  {txt:>40}{extra}")
    return "\n".join(lines)


def _grid(extra: list[float]):
    import numpy as np

    return np.unique(np.round(np.concatenate([np.linspace(0.05, 0.95, 19), extra]), 4))


# ---------------------------------------------------------------------- design verb
def _read_prior(path):
    from lmsbayes.prior import read_prior

    return read_prior(path) if path else None


def _simon(args) -> int:
    from lmsbayes.design import simon
    from lmsbayes.errors import OptionError

    if args.p0 is None or args.p1 is None:
        raise OptionError("simon needs --p0 and --p1")
    if args.prior:
        raise OptionError(
            f"simon designs use no prior; drop {args.prior!r} or choose --kind single-arm"
        )
    if not args.p1 > args.p0:
        raise OptionError(f"--p1 must exceed --p0 = {args.p0:g}, got {args.p1:g}")
    designs = simon(args.p0, args.p1, alpha=args.alpha, power=args.power, nmax=args.nmax)
    print(designs)
    for name, d in (("optimal", designs.optimal), ("minimax", designs.minimax)):
        from lmsbayes.design import design_warnings

        _warn([f"{name}: {w}" for w in design_warnings(d, args.p0, args.p1)])
    return 0


def _single_arm(args, mix) -> int:
    from lmsbayes.design import BayesianSingleArm, operating_characteristics
    from lmsbayes.errors import OptionError

    if args.p0 is not None and args.threshold is not None:
        raise OptionError("give the fixed null rate once: --threshold or --p0 (they are the same)")
    threshold = args.threshold if args.threshold is not None else args.p0
    looks = _parse_looks(args.looks)
    success = args.success if args.success is not None else _SUCCESS_DEFAULT["single-arm"]
    futility = None if args.futility is None or len(looks) == 1 else args.futility
    if mix is not None and threshold is not None:
        design = BayesianSingleArm(
            looks=looks, p0=threshold, prior=mix, success_prob=success, futility_pp=futility
        )
        p0 = threshold
        what0 = "the fixed threshold"
    elif mix is not None:
        design = BayesianSingleArm(looks=looks, p0=mix, success_prob=success, futility_pp=futility)
        p0 = mix.mean()
        what0 = "mean of the historical p0 prior"
    elif threshold is not None:
        design = BayesianSingleArm(
            looks=looks, p0=threshold, success_prob=success, futility_pp=futility
        )
        p0 = threshold
        what0 = "the fixed threshold"
    else:
        raise OptionError("single-arm needs --threshold (a fixed null rate), a PRIOR.json, or both")
    p1 = args.p1 if args.p1 is not None else p0**args.hr
    what1 = "--p1" if args.p1 is not None else f"p0 ** {args.hr:g}"
    if not p1 > p0:
        raise OptionError(f"--p1 must exceed p0 = {p0:.3f}, got {p1:g}")
    print(design)
    print(f"  prior role: {design.prior_role}")
    print("\nDecision boundaries (progression-free patients):")
    print(_single_boundaries(design))
    oc = operating_characteristics(design, _grid([p0, p1]))
    table = oc[["prob_success", "prob_early_stop", "expected_n"]].to_dataframe()
    table.index = table.index.map(lambda v: f"{v:.4g}")
    table.index.name = "true rate p"
    print("\nOperating characteristics across true rates (exact enumeration):")
    print(table.round(4).to_string())
    warnings = _headline(design, p0, p1, what0, what1)
    if mix is not None and threshold is None:
        _explain_uncertain_p0(design, mix, p1)
    if args.tradeoff or args.max_type1 is not None:
        if mix is None or threshold is None:
            raise OptionError(
                "--tradeoff/--max-type1 for a single arm need PRIOR.json as the arm's prior and "
                "--threshold"
            )
        _tradeoff(args, design, mix, p_t=p1, p_c=None)
    _warn(warnings)
    return 0


def _explain_uncertain_p0(design, mix, p1: float) -> None:
    """Why a design against an uncertain p0 needs a high observed rate, in words."""
    b = design.boundaries()
    last = b.iloc[-1]
    need, n = int(last["min_for_success"]), int(last["n"])
    lo, hi = (float(q) for q in mix.ppf([0.025, 0.975]))
    print(
        f"\nDecision rule: success at n = {n} needs >= {need} progression-free patients "
        f"(an observed rate of {need / n:.2f}), because p0 is not a number here but the MAP "
        f"prior of the historical rate (95% interval {lo:.2f}-{hi:.2f}): the trial's rate must "
        "exceed p0 with the required probability over that whole spread. Power at "
        f"p1 = {p1:.3f} is low for that reason, not because of a small n. To test against the "
        "historical rate as a fixed number (the usual phase II design), give --threshold p0; "
        "to borrow the prior for the arm's own rate, give both PRIOR.json and --threshold."
    )


def _two_arm(args, mix) -> int:
    from lmsbayes.design import TwoArmDesign, two_arm_oc, two_arm_sample_size
    from lmsbayes.errors import OptionError
    from lmsbayes.prior import BetaMixture, is_robust, prior_kind, robustify

    if args.threshold is not None:
        raise OptionError(
            "--threshold is for single-arm designs; a two-arm design compares with the control arm"
        )
    success = args.success if args.success is not None else _SUCCESS_DEFAULT["two-arm"]
    vague = BetaMixture.from_ab(1.0, 1.0)
    if mix is None:
        print("no PRIOR.json: the control arm has the vague prior Beta(1, 1) (no borrowing)")
        priors = {"vague": vague}
        prior_c = vague
        p0 = args.p0 if args.p0 is not None else 0.5
    elif is_robust(mix):
        # never robustified twice: the file's prior is the analysis prior as it stands
        if args.robust:
            raise OptionError(
                f"{args.prior} is already a {prior_kind(mix)} prior; drop --robust, or pass the "
                "MAP prior to robustify it once"
            )
        w = float(mix.provenance["robustify"]["weight"])
        priors = {"vague": vague, f"{prior_kind(mix)} (w={w:g}, from the file)": mix}
        prior_c = mix
        p0 = args.p0 if args.p0 is not None else mix.mean()
    else:
        w = args.robust if args.robust else 0.2
        robust = robustify(mix, w, mean=args.robust_mean, bounded=args.robust_bounded)
        kind = prior_kind(mix)
        priors = {"vague": vague, kind: mix, f"robust {kind} (w={w:g})": robust}
        prior_c = robust if args.robust else mix
        p0 = args.p0 if args.p0 is not None else mix.mean()
    p1 = args.p1 if args.p1 is not None else p0**args.hr
    design = TwoArmDesign(
        n_t=args.n_t,
        n_c=args.n_c,
        prior_c=prior_c,
        delta=args.delta,
        success_prob=success,
        interims=_parse_interims(args.interims),
        futility_prob=args.futility_two_arm,
    )
    print(design)
    role = (
        "the control arm's prior (borrowing from the historical controls)"
        if mix is not None
        else "none"
    )
    print(f"  prior role: {role}; the treatment arm has the vague prior Beta(1, 1)")
    print("\nDecision boundaries (progression-free patients on each arm):")
    print(_two_arm_boundaries(design))
    effects = [args.hr] if args.scale == "hr" else [round(p1 - p0, 6)]
    grid = _grid([p0])
    oc = two_arm_oc(design, grid, effects, scale=args.scale, priors=priors)
    null = 1.0 if args.scale == "hr" else 0.0
    t1 = oc["prob_success"].sel(effect=null).to_pandas().T
    pw = oc["prob_success"].sel(effect=effects[0]).to_pandas().T
    table = t1.add_prefix("type I: ").join(pw.add_prefix("power: "))
    table.columns.name = None
    table.index = table.index.map(lambda v: f"{v:.4g}")
    table.index.name = "true p_c"
    eff_txt = f"p_t = p_c ** {args.hr:g}" if args.scale == "hr" else f"p_t = p_c + {effects[0]:g}"
    print(
        f"\nOperating characteristics across true control rates (exact; type I: p_t = p_c; power: "
        f"{eff_txt}):"
    )
    print(table.round(4).to_string())
    import numpy as np

    lo, hi = _parse_range(args.type1_range)
    sub = oc["prob_success"].sel(effect=null).sel(p_c=slice(lo, hi))
    print(f"\nWorst type I error over true control rates [{lo:g}, {hi:g}]:")
    for name in priors:
        s = sub.sel(prior=name)
        i = int(np.argmax(s.values))
        print(f"  {name:>22}: {float(s[i]):.4f} at p_c = {float(s.p_c[i]):.3g}")
    warnings = _headline(
        design,
        p0,
        p1,
        "p_t = p_c = p0" + (", the MAP mean" if mix is not None and args.p0 is None else ""),
        f"p_c = p0, p_t = p1 = {f'p0 ** {args.hr:g}' if args.p1 is None else '--p1'}",
    )
    if args.sample_size:
        res = two_arm_sample_size(
            prior_c,
            p_c=p0,
            p_t=p1,
            power=args.power,
            alpha=args.alpha,
            type1_range=(lo, hi),
            ratio=args.ratio,
            delta=args.delta,
            success_prob=success,
            n_c_max=args.n_max,
        )
        print("\n" + str(res))
    if args.tradeoff or args.max_type1 is not None:
        if mix is None:
            raise OptionError(
                "--tradeoff/--max-type1 need a PRIOR.json (the MAP prior to borrow from)"
            )
        _tradeoff(
            args,
            TwoArmDesign(n_t=args.n_t, n_c=args.n_c, delta=args.delta, success_prob=success),
            mix,
            p_t=p1,
            p_c=p0,
        )
    _warn(warnings)
    return 0


def _tradeoff(args, design, mix, p_t: float, p_c: float | None) -> None:
    from lmsbayes.design import borrowing_tradeoff, find_robust_weight

    lo, hi = _parse_range(args.type1_range)
    kw = dict(
        type1_range=(lo, hi),
        p_t=p_t,
        p_c=p_c,
        robust_mean=args.robust_mean,
        bounded=args.robust_bounded,
    )
    print()
    if args.max_type1 is not None:
        w, scan = find_robust_weight(design, mix, max_type1=args.max_type1, **kw)
        print(scan)
        if w is None:
            print(
                f"no robust weight keeps the worst type I error over [{lo:g}, {hi:g}] <= "
                f"{args.max_type1:g}"
            )
        else:
            print(
                f"smallest robust weight with worst type I error <= {args.max_type1:g} over "
                f"[{lo:g}, {hi:g}]: w = {w:g}"
            )
    else:
        print(borrowing_tradeoff(design, mix, **kw))


def cmd_design(args) -> int:
    """The ``design`` verb: a Simon, single-arm or two-arm design with its boundaries."""
    if args.kind == "simon":
        return _simon(args)
    mix = _read_prior(args.prior)
    if args.kind == "single-arm":
        return _single_arm(args, mix)
    return _two_arm(args, mix)


# ---------------------------------------------------------------------- analyze verb
def cmd_analyze(args) -> int:
    """The ``analyze`` verb: prior-data conflict of a finished trial."""
    from lmsbayes.errors import OptionError

    mix = _read_prior(args.prior)
    if args.n < 1:
        raise OptionError(f"--n must be >= 1 (patients in the trial), got {args.n}")
    if args.r > args.n:
        raise OptionError(
            f"--r must be <= --n = {args.n} (progression-free patients among n), got {args.r}"
        )
    print(
        f"prior: {args.prior} ({mix.n_components} component(s), mean {mix.mean():.3f}, sd "
        f"{mix.sd():.3f})"
    )
    from lmsbayes.prior import conflict

    print(conflict(mix, args.r, args.n))
    return 0


def register(sub) -> None:
    """Add the ``design`` and ``analyze`` verbs to the ``lmsbayes`` parser."""
    from lmsbayes.cli._common import list_option

    q = sub.add_parser(
        "design",
        help="decision boundaries and operating characteristics of a design",
        description="A single-arm, two-arm or Simon design with its decision boundaries "
        "(progression-free patients) and exact operating characteristics across true rates. Single "
        "arm: with PRIOR and --threshold the prior is the arm's own prior (RBesT decision1S/oc1S); "
        "with PRIOR alone it is an uncertain historical p0. Two arms: PRIOR is the control prior; "
        "the OC are shown under the vague, MAP and robust MAP control priors side by side.",
    )
    q.add_argument(
        "prior",
        nargs="?",
        help="PRIOR.json (lmsbayes `prior -o`, or RBesT write_mix_json of a mixbeta)",
    )
    q.add_argument(
        "--kind",
        choices=["single-arm", "two-arm", "simon"],
        default="single-arm",
        help="design family",
    )
    q.add_argument(
        "--threshold",
        type=_open_unit("--threshold"),
        default=None,
        help="single-arm: fixed null rate; with PRIOR the prior is the arm's own prior",
    )
    q.add_argument(
        "--p0",
        type=_open_unit("--p0"),
        default=None,
        help="null rate (single-arm: same as --threshold; two-arm: control rate for the headline, "
        "default the MAP mean; simon: required)",
    )
    q.add_argument(
        "--p1", type=_open_unit("--p1"), default=None, help="alternative rate (default p0 ** --hr)"
    )
    q.add_argument(
        "--hr", type=_positive, default=_HR_DEFAULT, help="hazard ratio for p1 = p0 ** HR"
    )
    list_option(
        q,
        "--looks",
        item=str,
        example="20,35,50",
        default="20,35,50",
        metavar="N1,N2,...",
        help="single-arm: patients at each analysis; one number = no interims",
    )
    q.add_argument(
        "--success",
        type=_open_unit("--success"),
        default=None,
        help="posterior probability for success (default 0.95 single-arm, 0.975 two-arm)",
    )
    q.add_argument(
        "--futility",
        type=_open_unit("--futility"),
        default=0.05,
        help="single-arm: stop at an interim when the predictive probability of success is below "
        "this",
    )
    q.add_argument("--n-t", type=int, default=40, help="two-arm: patients on treatment")
    q.add_argument("--n-c", type=int, default=20, help="two-arm: patients on control")
    q.add_argument(
        "--delta",
        type=float,
        default=0.0,
        help="two-arm: margin, success if P(p_t - p_c > delta) >= success",
    )
    q.add_argument(
        "--scale",
        choices=["hr", "difference"],
        default="hr",
        help="two-arm: effect scale for the power (p_t = p_c ** hr, or p_t = p_c + (p1 - p0))",
    )
    list_option(
        q,
        "--interims",
        item=str,
        example="20:10,30:15",
        default=None,
        metavar="NT:NC,...",
        help="two-arm: interim analyses as n_t:n_c pairs",
    )
    q.add_argument(
        "--futility-two-arm",
        type=_open_unit("--futility-two-arm"),
        default=None,
        help="two-arm: stop at an interim when the posterior probability of an effect is below "
        "this",
    )
    q.add_argument(
        "--robust",
        type=_weight,
        default=0.0,
        help="robustify the control prior with this weight (0: the design uses the MAP; the robust "
        "MAP column then uses 0.2)",
    )
    q.add_argument(
        "--robust-mean",
        type=_open_unit("--robust-mean"),
        default=None,
        help="mean of the robust component (default: the MAP mean; single-arm trade-off: p0)",
    )
    q.add_argument(
        "--robust-bounded",
        action="store_true",
        help="robust component with both shapes >= 1 (ELIR defined) instead of RBesT's n = 1",
    )
    list_option(
        q,
        "--type1-range",
        item=str,
        example="0.3,0.8",
        default="0,1",
        metavar="LO,HI",
        help="true control rates lo,hi for the worst type I error",
    )
    q.add_argument(
        "--tradeoff",
        action="store_true",
        help="print the borrowing trade-off table (w vs type I, power, ESS)",
    )
    q.add_argument(
        "--max-type1",
        type=_open_unit("--max-type1"),
        default=None,
        help="find the smallest robust weight whose worst type I error over --type1-range is at "
        "most this",
    )
    q.add_argument(
        "--sample-size",
        action="store_true",
        help="two-arm: smallest n_t, n_c with --power at p1 and worst type I error <= --alpha",
    )
    q.add_argument(
        "--ratio", type=_positive, default=2.0, help="two-arm sample-size search: n_t / n_c"
    )
    q.add_argument(
        "--n-max", type=int, default=300, help="two-arm sample-size search: largest n_c tried"
    )
    q.add_argument(
        "--alpha",
        type=_open_unit("--alpha"),
        default=0.05,
        help="type I error target (simon, sample size)",
    )
    q.add_argument(
        "--power", type=_open_unit("--power"), default=0.8, help="power target (simon, sample size)"
    )
    q.add_argument(
        "--nmax",
        type=int,
        default=None,
        help="simon: largest total sample size searched (at most 300)",
    )
    q.set_defaults(func=cmd_design)

    a = sub.add_parser(
        "analyze",
        help="prior-data conflict: how much of a prior survives a trial's data",
        description="After r progression-free patients out of n: the posterior mixture weights "
        "(how much of each component survives), the prior-predictive tail probabilities of r, and "
        "the prior and posterior effective sample sizes.",
    )
    a.add_argument("prior", help="PRIOR.json (lmsbayes or RBesT write_mix_json)")
    a.add_argument("--r", type=_count, required=True, help="progression-free patients observed")
    a.add_argument("--n", type=_count, required=True, help="patients in the trial")
    a.set_defaults(func=cmd_analyze)
