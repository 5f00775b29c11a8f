"""The ``lmsbayes`` command line.

``lmsbayes run`` is the main job: fit the default analysis to the bundled data
and print the threshold table next to the EORTC 2021 values. Other commands:
``fit``, ``thresholds``, ``prior``, ``design``, ``report``. User mistakes give
one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_SAMPLING = 3


class _Progress:
    """Step messages on stderr with elapsed time (quiet with --quiet)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(f"[{time.perf_counter() - self.t0:5.1f}s] {msg}", file=sys.stderr, flush=True)


def _atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fit_from_args(args, progress: _Progress):
    from lmsbayes.data import load_trials
    from lmsbayes.fit import fit
    from lmsbayes.model import prepare_data
    from lmsbayes.spec import load_spec

    spec = load_spec(args.spec)
    if getattr(args, "fast", False) or os.environ.get("LMSBAYES_FAST") == "1":
        # fast mode only ever shortens a run; a spec that already asks for less keeps its settings
        spec = spec.replace(**{"sampler.draws": min(spec.sampler.draws, 500),
                               "sampler.tune": min(spec.sampler.tune, 500)})  # fmt: skip
    progress(f"spec {spec.name!r} ({spec.model.likelihood}; covariates {list(spec.model.covariates)})")
    trials = load_trials(args.data)
    data = prepare_data(spec, trials)
    progress(f"data: {len(trials)} arms in {trials.attrs.get('path')}, {len(data.arms)} arms / "
             f"{len(data.obs)} observations enter the model, {len(data.excluded)} exclusions")  # fmt: skip
    progress("building, compiling (the first run on a machine compiles with numba, 30-45 s; "
             "later runs reuse its cache, 15-25 s) and sampling ...")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # diagnostics are printed below, and decide the exit status
        result = fit(spec, data, strict=False, progress=False)
    progress(result.diagnostics.line())
    return result


def _landmark_order(fit):
    """The order check of :func:`lmsbayes.predict.landmark_order` and its one-line summary."""
    from lmsbayes.predict import landmark_order

    order = landmark_order(fit)
    if order.empty:
        return order, None
    worst = order.loc[order["prob_later_higher"].idxmax()]
    how = "jointly" if fit.spec.joint else "independently"
    if worst.prob_later_higher == 0:
        return order, f"landmarks fitted {how}: pooled rates fall with time in every draw of every setting"
    text = (f"landmarks fitted {how}: pooled S({worst.later:g} mo) > S({worst.earlier:g} mo), which no survival "
            f"curve can do, in {100 * worst.prob_later_higher:.0f}% of draws ({worst.setting})")  # fmt: skip
    if not fit.spec.joint:
        text += "; `--spec joint` keeps the order"
    return order, text


def _print_table(table, fit, order_line: str | None) -> None:
    import pandas as pd

    show = table.copy()
    show["landmark"] = show["landmark"].map(lambda t: f"{t:g} mo")
    fmt = lambda lo, mid, hi: f"{mid:.2f} ({lo:.2f}-{hi:.2f})"  # noqa: E731
    out = pd.DataFrame({
        "setting": show["setting"], "landmark": show["landmark"], "HR": show["hr"].map("{:g}".format),
        f"p0 [{table.attrs.get('reference', 'pooled')}]": [fmt(a, b, c) for a, b, c in zip(show.p0_lower, show.p0, show.p0_upper)],
        "p1 = p0^HR": [fmt(a, b, c) for a, b, c in zip(show.p1_lower, show.p1, show.p1_upper)],
        "EORTC p0": [f"{v:.2f} ({ci})" if v == v else "" for v, ci in zip(show.eortc_p0, show.eortc_p0_ci)],
        "EORTC p1": [f"{v:.2f}" if v == v else "" for v in show.eortc_p1],
    })  # fmt: skip
    print(f"lmsbayes {_version()} - efficacy thresholds for phase II LMS trials "
          f"(spec {fit.spec.name!r}, medians with 95% credible intervals)")  # fmt: skip
    print(f"data: {len(fit.data.arms)} arms, sha256 {fit.data.data_sha256[:12]}; "
          f"derived-from-median rates {'on' if fit.spec.data.derive_from_median else 'off'}")  # fmt: skip
    print(out.to_string(index=False))
    print(fit.diagnostics.line())
    if order_line:
        print(order_line)
    print("EORTC: Kantidakis et al., Eur J Cancer 2021;154:253-268 (pooled PFS rate, 95% CI; p1 = p0^HR).")


def _emit_table(table, fit, args) -> None:
    order, order_line = _landmark_order(fit)
    if getattr(args, "json", None):
        payload = {
            "lmsbayes_version": _version(), "spec": fit.spec.name, "spec_hash": fit.spec.hash,
            "data_sha256": fit.data.data_sha256, "reference": table.attrs.get("reference"),
            "diagnostics": {"divergences": fit.diagnostics.divergences, "max_rhat": fit.diagnostics.max_rhat,
                            "min_ess_bulk": fit.diagnostics.min_ess_bulk, "min_ess_tail": fit.diagnostics.min_ess_tail},
            "rows": json.loads(table.to_json(orient="records")),
            "landmark_order": json.loads(order.to_json(orient="records")),
        }  # fmt: skip
        _atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    if getattr(args, "csv", None):
        _atomic_write_text(args.csv, table.to_csv(index=False))
    _print_table(table, fit, order_line)


def _thresholds_table(fit, args):
    from lmsbayes.predict import threshold_table, thresholds

    hr = args.hr if getattr(args, "hr", None) else None
    ds = thresholds(fit, hr=hr, reference=getattr(args, "reference", None))
    return threshold_table(ds)


def _exit_for(fit, args) -> int:
    if getattr(args, "strict", False) and not fit.diagnostics.ok:
        print("lmsbayes: error: sampling problems (--strict): " + "; ".join(fit.diagnostics.problems), file=sys.stderr)
        return EXIT_SAMPLING
    return 0


def cmd_run(args) -> int:
    progress = _Progress(args.quiet)
    result = _fit_from_args(args, progress)
    if args.output:
        result.save(args.output)
        progress(f"fit saved to {args.output}")
    _emit_table(_thresholds_table(result, args), result, args)
    return _exit_for(result, args)


def cmd_fit(args) -> int:
    progress = _Progress(args.quiet)
    result = _fit_from_args(args, progress)
    result.save(args.output)
    progress(f"fit saved to {args.output}")
    print(result.summary().round(3).to_string())
    print(result.diagnostics.line())
    return _exit_for(result, args)


def cmd_thresholds(args) -> int:
    from lmsbayes.fit import load_fit

    result = load_fit(args.fit)
    _emit_table(_thresholds_table(result, args), result, args)
    return 0


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


def cmd_report(args) -> int:
    from lmsbayes.fit import load_fit
    from lmsbayes.plots import write_report

    progress = _Progress(args.quiet)
    result = load_fit(args.fit) if args.fit else _fit_from_args(args, progress)
    path = write_report(result, args.output)
    progress(f"report written to {path}")
    return _exit_for(result, args)


def _version() -> str:
    from lmsbayes import __version__

    return __version__


class _Parser(argparse.ArgumentParser):
    """argparse with the command's error format: one line on stderr, exit status 2, no usage dump."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"lmsbayes: error: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lmsbayes", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"lmsbayes {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def fit_args(q, spec_positional: bool) -> None:
        if spec_positional:
            q.add_argument("spec", help="model spec: a TOML file or a bundled name (default, eortc2021, uterine)")
        else:
            q.add_argument("--spec", default="default", help="model spec (TOML file or bundled name; default: default)")
        q.add_argument("--data", default=None, help="trial-arm CSV (default: the bundled data)")
        q.add_argument("--fast", action="store_true", help="fewer draws (also LMSBAYES_FAST=1), for smoke runs")
        q.add_argument("--strict", action="store_true", help="exit with status 3 on divergences, R-hat or ESS problems")
        q.add_argument("-q", "--quiet", action="store_true", help="no progress messages")

    def table_args(q) -> None:
        q.add_argument("--hr", type=float, nargs="+", help="hazard ratios for p1 = p0^HR (default: the spec's)")
        q.add_argument("--reference", choices=["pooled", "predictive"], help="p0 from the pooled or predictive rate")
        q.add_argument("--json", metavar="FILE", help="also write the table as JSON")
        q.add_argument("--csv", metavar="FILE", help="also write the table as CSV")

    q = sub.add_parser("run", help="fit the default analysis on the bundled data and print the threshold table")
    fit_args(q, spec_positional=False)
    table_args(q)
    q.add_argument("-o", "--output", help="also save the fit (netCDF)")
    q.set_defaults(func=cmd_run)

    q = sub.add_parser("fit", help="fit a model spec and save the fit (netCDF)")
    fit_args(q, spec_positional=True)
    q.add_argument("-o", "--output", default="fit.nc", help="output netCDF file (default fit.nc)")
    q.set_defaults(func=cmd_fit)

    q = sub.add_parser("thresholds", help="threshold table from a saved fit")
    q.add_argument("fit", help="fit file written by `lmsbayes fit`")
    table_args(q)
    q.set_defaults(func=cmd_thresholds)

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

    q = sub.add_parser("report", help="write tables, figures and an HTML page")
    q.add_argument("fit", nargs="?", help="saved fit (default: fit the spec now)")
    fit_args(q, spec_positional=False)
    q.add_argument("-o", "--output", default="report", help="output directory (default report/)")
    q.set_defaults(func=cmd_report)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lmsbayes`` command; returns the exit status."""
    from lmsbayes.data import DataValidationError
    from lmsbayes.errors import InputError
    from lmsbayes.fit import SamplingError
    from lmsbayes.spec import SpecError

    args = _parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (SpecError, DataValidationError) as exc:
        single = isinstance(exc, DataValidationError) and len(exc.problems) == 1
        print(f"lmsbayes: error: {exc.problems[0] if single else exc}", file=sys.stderr)
        return EXIT_USAGE
    except SamplingError as exc:
        print(f"lmsbayes: error: {exc}", file=sys.stderr)
        return EXIT_SAMPLING
    except InputError as exc:
        print(f"lmsbayes: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        print(f"lmsbayes: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("lmsbayes: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
