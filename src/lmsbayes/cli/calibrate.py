"""The ``calibrate`` verb: simulation-based calibration of an engine (lmsbayes.calibrate)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from lmsbayes.cli._common import (
    EXIT_SAMPLING,
    FAST_DRAWS,
    Progress,
    atomic_write_text,
    check_outputs,
)
from lmsbayes.files import atomic_write


def _positive_int(text: str) -> int:
    import argparse

    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return v


def _fmt_p(p: float) -> str:
    return "nan" if p != p else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def _print_summary(ds, summary, alpha: float) -> None:
    a = ds.attrs
    n = ds.sizes["simulation"]
    err = ds["error"].values.astype(str)
    n_fit = int((err == "").sum())
    print(
        f"lmsbayes {a['lmsbayes_version']} - simulation-based calibration of spec "
        f"{a['spec_name']!r}, {a['engine']} engine"
    )
    print(
        f"{n} data sets from the prior predictive on the design of the data (sha256 "
        f"{str(a['data_sha256'])[:12]}), seed {a['seed']}; each truth ranked among L = "
        f"{a['n_ranks']} posterior draws thinned from all draws"
    )
    import pandas as pd

    rows = []
    for q, r in summary.iterrows():
        cov = [
            f"{r[f'coverage_{c:g}']:.3f} "
            f"({r[f'coverage_{c:g}_lo']:.2f}-{r[f'coverage_{c:g}_hi']:.2f})"
            for c in (50, 90, 95)
        ]
        rows.append(
            [
                q,
                r["kind"],
                int(r["n"]),
                _fmt_p(r["p_chi2"]),
                _fmt_p(r["p_ks"]),
                _fmt_p(r["p_chi2_holm"]),
                _fmt_p(r["p_ks_holm"]),
                "n/a" if pd.isna(r["uniform"]) else "yes" if r["uniform"] else "NO",
                *cov,
            ]
        )
    table = pd.DataFrame(
        rows,
        columns=[
            "quantity",
            "kind",
            "n",
            "p chi2",
            "p KS",
            "p chi2 (Holm)",
            "p KS (Holm)",
            f"uniform at {alpha:g}",
            "cover 50%",
            "cover 90%",
            "cover 95%",
        ],
    )
    print(table.to_string(index=False))
    print(
        f"tests: chi-square on {int(summary['bins'].iloc[0])} equal rank bins (none below 2 bins "
        f"of 10 simulations) and Kolmogorov-Smirnov on the "
        f"randomised PIT, Holm-corrected over all {2 * len(summary)} tests; coverage of central "
        f"intervals with 95% Clopper-Pearson intervals"
    )
    if n_fit < n:
        from collections import Counter

        print(
            f"FAILED fits: {n - n_fit} of {n} simulations (left out of the tests above, which then "
            f"condition on the engine succeeding):"
        )
        for msg, k in Counter(err[err != ""]).most_common(5):
            print(f"  {k} x {msg}")
        print(
            "  simulations: "
            f"{summary.attrs['failed'][:20]}{' ...' if len(summary.attrs['failed']) > 20 else ''}"
        )
    high = summary.attrs["khat_high"]
    if a["engine"] == "exact":
        print(
            f"importance-sampling k-hat > {a['khat_max']:g}: {len(high)} of {n_fit} fitted "
            "simulations (included "
            f"above){': ' + str(high[:20]) if high else ''}{' ...' if len(high) > 20 else ''}"
        )
    else:
        div = ds["divergences"].values
        print(
            f"NUTS: {int((div > 0).sum())} simulations with divergences, "
            f"{len(summary.attrs['not_ok'])} with failed diagnostics (R-hat, ESS; included above)"
        )
    fs, cs = ds["fit_seconds"].values, ds["fit_cpu_seconds"].values
    import numpy as np

    print(
        f"time: {a['wall_seconds']:.1f} s wall for {n} simulations on {a['scheduler']} "
        f"({a['tasks']} tasks); per simulation (simulate + fit) median {np.nanmedian(fs):.3f} s "
        f"wall, {np.nanmedian(cs):.3f} s CPU, mean {np.nanmean(fs):.3f} s wall"
    )
    if a.get("note"):
        print(f"note: {a['note']}")


def cmd_calibrate(args) -> int:
    """The ``calibrate`` verb: run an SBC study and print its summary."""
    import warnings

    from lmsbayes.calibrate import save_sbc, sbc, sbc_summary
    from lmsbayes.engines import get_engine
    from lmsbayes.errors import OptionError
    from lmsbayes.spec import load_spec

    if not 0 < args.alpha < 1:
        raise OptionError(f"--alpha must be in (0, 1), got {args.alpha:g}")
    check_outputs(args, files=("output", "csv"), directories=("figures",))
    progress = Progress(args.quiet)
    spec = load_spec(args.spec)
    if args.fast or os.environ.get("LMSBAYES_FAST") == "1":
        spec = get_engine(args.engine).fast(spec, FAST_DRAWS)
    scheduler = args.scheduler or ("sequential" if args.workers == 1 else None)
    progress(
        f"spec {spec.name!r}: {args.n} simulated data sets, {args.engine} engine, "
        f"scheduler {scheduler or 'LocalCluster'} ..."
    )
    step = max(1, args.n // 10)
    state = {"next": step}

    def tick(done: int, total: int) -> None:
        if done >= state["next"] or done == total:
            progress(f"{done}/{total} simulations")
            state["next"] = (done // step + 1) * step

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the note is printed with the summary
        ds = sbc(
            spec,
            args.data,
            n_sims=args.n,
            engine=args.engine,
            seed=args.seed,
            n_ranks=args.ranks,
            scheduler=scheduler,
            workers=args.workers,
            batch_size=args.batch_size,
            progress=tick,
        )
    summary = sbc_summary(ds, alpha=args.alpha)
    if args.output:
        save_sbc(ds, args.output)
        progress(f"simulations saved to {args.output}")
    if args.csv:
        atomic_write_text(args.csv, summary.to_csv())
    if args.figures:
        from lmsbayes.plots_calibrate import plot_ecdf_difference, plot_rank_histograms

        out = Path(args.figures)
        with contextlib.suppress(FileExistsError):
            out.mkdir()  # the directory the user named (its parent checked, or made by --mkdir)
        for name, fig in (
            ("sbc_ranks.png", plot_rank_histograms(ds, summary)),
            ("sbc_ecdf.png", plot_ecdf_difference(ds, summary)),
        ):
            atomic_write(out / name, lambda tmp, fig=fig: fig.savefig(tmp, dpi=110, format="png"))
        progress(f"figures written to {out}/sbc_ranks.png and {out}/sbc_ecdf.png")
    _print_summary(ds, summary, args.alpha)
    failed = bool(summary.attrs["failed"]) or not bool(summary["uniform"].fillna(True).all())
    if args.strict and failed:
        import pandas as pd

        print(
            "lmsbayes: error: calibration failed (--strict): "
            + "; ".join(
                filter(
                    None,
                    [
                        f"{len(summary.attrs['failed'])} fits failed"
                        if summary.attrs["failed"]
                        else "",
                        ", ".join(
                            f"{q} not uniform"
                            for q, ok in summary["uniform"].items()
                            if not pd.isna(ok) and not ok
                        ),
                    ],
                )
            ),
            file=sys.stderr,
        )
        return EXIT_SAMPLING
    return 0


def register(sub) -> None:
    """Add the ``calibrate`` verb to the ``lmsbayes`` parser."""
    q = sub.add_parser(
        "calibrate",
        help="simulation-based calibration: simulate from the prior predictive, fit, rank",
        description="Simulation-based calibration (Talts et al. 2018) of an engine on a spec: "
        "draw parameters from the prior, simulate data of the --data table's design from them, "
        "fit each simulated data set and rank the true value among --ranks posterior draws. "
        "Ranks of a calibrated engine are uniform; the summary tests each parameter's ranks "
        "(Holm-adjusted at --alpha) and -o/--csv/--figures save the simulations, the table and "
        "the rank plots.",
    )
    q.add_argument(
        "spec",
        nargs="?",
        default="default",
        help="model spec: a TOML file or a bundled name (default: default)",
    )
    q.add_argument(
        "--data",
        default=None,
        help="trial-arm CSV whose design the simulations share (default: bundled)",
    )
    q.add_argument(
        "--engine",
        choices=["exact", "nuts"],
        default="exact",
        help="engine to calibrate (default exact)",
    )
    q.add_argument(
        "-n",
        "--n-sims",
        dest="n",
        type=_positive_int,
        default=1000,
        help="simulated data sets (default 1000)",
    )
    q.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the study (default: the spec's sampler seed)",
    )
    q.add_argument(
        "--ranks",
        type=_positive_int,
        default=99,
        metavar="L",
        help="posterior draws each truth is ranked against (default 99: ranks 0-99)",
    )
    q.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="dask scheduler address (tcp://host:8786), 'local' (a LocalCluster, the default) "
        "or 'sequential' (this process)",
    )
    q.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="worker processes of the LocalCluster (default 2; 1 runs sequentially)",
    )
    q.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help="simulations per task (default: about 10 tasks per worker)",
    )
    q.add_argument(
        "--alpha",
        type=float,
        default=0.01,
        help="level of the uniformity tests after Holm (default 0.01)",
    )
    q.add_argument("-o", "--output", default=None, help="save the simulations (netCDF)")
    q.add_argument("--csv", default=None, help="save the summary table (CSV)")
    q.add_argument(
        "--figures",
        default=None,
        metavar="DIR",
        help="write sbc_ranks.png (rank histograms) and sbc_ecdf.png (ECDF differences) to DIR",
    )
    q.add_argument("--fast", action="store_true", help="fewer NUTS draws (also LMSBAYES_FAST=1)")
    q.add_argument(
        "--strict",
        action="store_true",
        help="exit with status 3 when a fit fails or a uniformity test rejects",
    )
    q.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    q.set_defaults(func=cmd_calibrate)
