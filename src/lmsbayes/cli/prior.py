"""The ``prior`` verb: a MAP prior (Beta mixture) for a setting, from a saved fit."""

from __future__ import annotations

from lmsbayes.cli._common import (
    atomic_write_text,
    bounded,
    check_outputs,
    fraction,
    landmark_months,
)


def _fit_or_load(text: str, year: int | None = None):
    """A saved fit, or a fresh fit of the bundled data when FIT names a spec (name or .toml).

    So a control-arm MAP prior is one command (``lmsbayes prior regimen_drift --line 1L
    --landmark 6 --target arm:doxorubicin --year 2027``); an existing file is always read
    as a fit, so a fit file is never shadowed by a spec of the same name.
    """
    from pathlib import Path

    from lmsbayes.fit import load_fit
    from lmsbayes.spec import bundled_specs

    path = Path(text)
    if (not path.is_file() and text in bundled_specs()) or path.suffix == ".toml":
        import warnings

        import lmsbayes as lb
        from lmsbayes.model.structure import discount_at
        from lmsbayes.spec import load_spec

        with warnings.catch_warnings():
            # the fit's diagnostics are printed with the prior (cmd_prior), not as a warning
            warnings.simplefilter("ignore")
            # an age discount counts arm ages to the target's year (--year)
            return lb.fit(discount_at(load_spec(text), year))
    return load_fit(path)


def cmd_prior(args) -> int:
    """The ``prior`` verb: the MAP prior of a setting from a saved fit."""
    from lmsbayes.cli.fitting import target_from_args
    from lmsbayes.errors import OptionError
    from lmsbayes.predict import Setting
    from lmsbayes.prior import map_prior, prior_kind, robustify, to_json, to_rbest

    check_outputs(args, files=("output",))
    result = _fit_or_load(args.fit, getattr(args, "year", None))
    lms = result.data.table == "lms"
    has_landmarks = bool(
        result.data.family.reported_landmarks(result.spec.landmarks, result.data.landmarks)
    )
    if lms and args.line is None:
        raise OptionError("this fit has a line covariate: give --line 1L or --line 2L+")
    if not lms:
        given = [
            f"--{name}"
            for name, v in (
                ("line", args.line),
                ("class", args.treatment_class),
                ("uterine", args.uterine),
            )
            if v is not None
        ]
        if given:
            raise OptionError(
                f"{', '.join(given)}: this fit of a (study, r, n) table has no such covariate"
            )
    if has_landmarks and args.landmark is None:
        raise OptionError("this fit has landmarks: give --landmark MONTHS (e.g. 6)")
    if not has_landmarks and args.landmark is not None:
        raise OptionError("--landmark: this fit has no landmarks (a binomial table)")
    if lms:
        setting = Setting(args.line, args.treatment_class or "R-T", args.uterine)
    else:
        setting = Setting()

    target = target_from_args(args)
    mix = map_prior(result, setting, args.landmark, target=target)
    if args.robust:
        mix = robustify(mix, args.robust, mean=args.robust_mean, bounded=args.robust_bounded)
    where = f" at {args.landmark:g} months" if args.landmark is not None else ""
    print(
        f"{prior_kind(mix)} prior of a new trial's rate: {setting.describe()}{where} "
        f"(spec {result.spec.name!r})"
    )
    if target is not None:
        print(f"target: {mix.provenance['target']}")
        if "regimen_arms" in mix.provenance:
            arms = mix.provenance["regimen_arms"]
            print(
                f"rests on {len(arms)} included arm(s) of {target.regimen} in {setting.line}: "
                + (", ".join(arms) or "none")
            )
    print(repr(mix))
    print(mix.summary().round(4).to_string())
    print(_ess_line(mix))
    print("RBesT: " + to_rbest(mix))
    # the prior is only as good as the fit it comes from: its inference problems are shown
    print(f"fit: {result.diagnostics.line()}")
    if args.output:
        atomic_write_text(
            args.output, to_json(mix)
        )  # lmsbayes.files: package temp, umask permissions
        print(f"written to {args.output}")
    return 0


def _ess_line(mix) -> str:
    """The ESS to report (ELIR, predictively consistent) first.

    The others labelled, never a long error.
    """
    import numpy as np

    from lmsbayes.prior import ess

    moment = f"moment {ess(mix, 'moment'):.1f}"
    if np.all(mix.a >= 1) and np.all(mix.b >= 1):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Morita's multi-modality note; it is labelled below
            morita = ess(mix, "morita")
        return (
            f"ESS: elir {ess(mix, 'elir'):.1f} (the one to report, docs/designs.md); {moment} "
            f"(conservative), morita {morita:.1f} (liberal for mixtures)"
        )
    bad = [f"Beta({a:.3g}, {b:.3g})" for a, b in zip(mix.a, mix.b, strict=True) if a < 1 or b < 1]
    return (
        f"ESS: elir and morita undefined ({', '.join(bad)} has a shape < 1; --robust-bounded gives "
        "a "
        f"robust component where they are defined); {moment}"
    )


def register(sub) -> None:
    """Add the ``prior`` verb to the ``lmsbayes`` parser."""
    q = sub.add_parser(
        "prior",
        help="MAP prior (Beta mixture) for a setting from a saved fit",
        description="Fit a Beta mixture to the predictive distribution of a new trial's "
        "PFS rate in one setting (a meta-analytic-predictive prior), optionally "
        "robustified; print it, its ESS and the RBesT call, and write it as JSON.",
    )
    q.add_argument(
        "fit",
        metavar="FIT",
        help="fit file (netCDF) written by `lmsbayes fit` or `run -o`, or a spec (a bundled "
        "name such as regimen_drift, or a .toml) to fit to the bundled data first",
    )
    q.add_argument(
        "--line",
        default=None,
        choices=["1L", "2L+"],
        help="LMS fits (required there): line of therapy of the new trial, 1L or 2L+",
    )
    q.add_argument(
        "--landmark",
        type=landmark_months,
        default=None,
        metavar="MONTHS",
        help="fits with landmarks (required there): landmark of the PFS rate in months, e.g. 6",
    )
    q.add_argument(
        "--class",
        dest="treatment_class",
        default=None,
        choices=["R-T", "NR-T"],
        help="LMS fits: treatment class of the new trial, R-T (ESMO-recommended, the default) "
        "or NR-T",
    )
    q.add_argument(
        "--uterine",
        type=fraction,
        default=None,
        metavar="FRACTION",
        help="LMS fits: fraction of uterine LMS patients in the new trial (default 0.5)",
    )
    q.add_argument(
        "--robust",
        type=bounded(0, 1, lo_open=False, what="a weight"),
        default=0.0,
        metavar="WEIGHT",
        help="weight in [0, 1) of a vague component added to the MAP prior (e.g. 0.2; 0: none)",
    )
    q.add_argument(
        "--robust-mean",
        type=bounded(0, 1, what="a mean"),
        default=None,
        metavar="MEAN",
        help="mean in (0, 1) of the vague component (default: the MAP mean, as everywhere in "
        "lmsbayes; RBesT's default is 0.5 and it recommends the null rate p0)",
    )
    q.add_argument(
        "--robust-bounded",
        action="store_true",
        help="robust component with both shapes >= 1 (ELIR defined) instead of RBesT's n = 1",
    )
    from lmsbayes.cli.fitting import target_args

    target_args(q)
    q.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="also write the prior as JSON (lmsbayes.prior schema)",
    )
    q.set_defaults(func=cmd_prior)
