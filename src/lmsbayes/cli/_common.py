"""Helpers shared by the command-line verbs.

Progress, option types, output checks, fitting, exit codes.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time

# the verb modules import these two from here
from lmsbayes.files import atomic_write_text, check_output_path  # noqa: F401

#: Exit statuses of the ``lmsbayes`` command (see ``lmsbayes --help`` and the README).
EXIT_OK = 0
EXIT_OS = 1  # the system failed: disk full, permission denied, I/O error, broken pipe
EXIT_USAGE = 2  # a user mistake: bad option, input file or output path (lmsbayes.errors.InputError)
EXIT_SAMPLING = 3  # sampling problems under --strict (lmsbayes.errors.SamplingError)
EXIT_BUG = 70  # an unexpected exception: a bug in lmsbayes (EX_SOFTWARE of sysexits.h)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT); SIGTERM and SIGHUP give 128 + their number

#: Most draws per chain and tuning steps ``--fast`` keeps.
FAST_DRAWS = 500


class Progress:
    """Step messages on stderr with elapsed time (quiet with --quiet)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(f"[{time.perf_counter() - self.t0:5.1f}s] {msg}", file=sys.stderr, flush=True)


# --- option types: a bad value fails at parse time, before any fit ---------------


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def bounded(
    lo: float, hi: float, *, lo_open: bool = True, hi_open: bool = True, what: str = "value"
):
    """An argparse ``type`` accepting a finite number in the interval from ``lo`` to ``hi``."""
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"

    def parse(text: str) -> float:
        value = _number(text)
        if (value <= lo if lo_open else value < lo) or (value >= hi if hi_open else value > hi):
            raise argparse.ArgumentTypeError(
                f"{what} must be in {left}{lo:g}, {hi:g}{right}, got {text}"
            )
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


hazard_ratio = bounded(0, 1, what="a hazard ratio")
landmark_months = bounded(0, 120, hi_open=False, what="a landmark in months")
fraction = bounded(0, 1, lo_open=False, hi_open=False, what="a fraction")


# --- list options: one syntax for every option that takes several values -----------


class ListAction(argparse.Action):
    """The values of a list option: one comma-separated word, ``--hr 0.6,0.7``.

    One shell word, so a positional argument after it is never taken for a value
    (``thresholds --landmarks 3,6 fit.nc``). A repeated option replaces the earlier one, as
    for any other option.
    """

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, list(values))


def list_option(parser, *flags: str, item, example: str, help: str, **kwargs) -> None:
    """Add a list option to ``parser``: its values in one comma-separated word (``example``).

    ``item`` parses one value (an argparse ``type``: raises ArgumentTypeError with the reason);
    the help text says the syntax, and the default if ``kwargs`` has one.
    """

    def parse(word: str) -> list:
        parts = [part.strip() for part in word.split(",")]
        if not all(parts):
            raise argparse.ArgumentTypeError(
                f"empty value in {word!r}: give values separated by commas, e.g. {example}"
            )
        return [item(part) for part in parts]

    parse.__name__ = getattr(item, "__name__", "value")
    default = kwargs.get("default")
    if default is not None and "(default" not in help:
        shown = (
            default
            if isinstance(default, str)
            else ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default)
        )
        help = f"{help} (default: {shown})"
    parser.add_argument(
        *flags,
        type=parse,
        action=ListAction,
        help=f"{help}; comma-separated, e.g. {example}",
        **kwargs,
    )


def landmark(text: str) -> float:
    """One landmark of a ``--landmarks`` list: months in (0, 120]."""
    try:
        t = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"landmark must be a number of months, got {text!r}"
        ) from None
    if not (math.isfinite(t) and 0 < t <= 120):
        raise argparse.ArgumentTypeError(f"landmark must be in (0, 120] months, got {text!r}")
    return t


def landmark_option(q, default=None, help: str = "landmarks in months") -> None:
    """``--landmarks``, the same option in every verb that has it (months, e.g. 3,6,12)."""
    list_option(
        q,
        "--landmarks",
        item=landmark,
        example="3,6,12",
        default=default,
        metavar="T1,T2,...",
        help=help,
    )


def list_text(value) -> str:
    """A list option's value as its comma-separated text (a default given as text stays so)."""
    return value if isinstance(value, str) else ",".join(str(v) for v in value)


def check_outputs(
    args: argparse.Namespace, files: tuple[str, ...] = (), directories: tuple[str, ...] = ()
) -> None:
    """Check every output path the options name, before any work (OutputPathError naming it).

    ``files`` and ``directories`` are attribute names of ``args``; unset ones are skipped. Two
    options naming the same file are refused too: the second write would replace the first.
    A missing parent directory is an error unless ``--mkdir`` is given (then it is created here).
    """
    mkdir = bool(getattr(args, "mkdir", False))
    seen: dict[str, str] = {}
    for names, kind in ((files, "file"), (directories, "directory")):
        for name in names:
            value = getattr(args, name, None)
            if value is None:
                continue
            option = "-o/--output" if name == "output" else f"--{name.replace('_', '-')}"
            path = check_output_path(value, kind=kind, what=f"{option} {kind}", mkdir=mkdir)
            key = os.path.normcase(os.path.abspath(path))
            if key in seen:
                from lmsbayes.errors import OutputPathError

                raise OutputPathError(f"{seen[key]} and {option} name the same file {str(path)!r}")
            seen[key] = option


#: Options that name an output; a verb with any of them gets ``--mkdir``.
OUTPUT_OPTIONS = ("-o", "--json", "--csv", "--observations", "--plot", "--plots", "--figures")


def add_mkdir_option(parser: argparse.ArgumentParser) -> None:
    """``--mkdir`` for a verb that writes files: create the missing parents of its output paths."""
    if any(o in parser._option_string_actions for o in OUTPUT_OPTIONS):
        parser.add_argument(
            "--mkdir",
            action="store_true",
            help="create the missing parent directories of the output paths (without it a "
            "missing directory is an error)",
        )


def unique_hrs(args: argparse.Namespace) -> None:
    """``--hr 0.5,0.5``: a repeated hazard ratio is one row of the table (merged, order kept)."""
    if getattr(args, "hr", None):
        args.hr = list(dict.fromkeys(args.hr))


@contextlib.contextmanager
def one_blas_thread():
    """BLAS on one thread while a verb runs (a no-op without threadpoolctl).

    The exact path's matrix products are small (8,192 rule points by a handful of
    covariates): OpenBLAS's extra threads only wait for work, and on 2 cores shared
    with other work they took CPU from it (``lmsbayes run`` at load 1: 3.9 s wall
    with the default threads, 3.1 s with one; the same output, byte for byte).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - installed with pymc
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


def fast_spec(spec, engine: str | None = None):
    """What ``--fast`` (or LMSBAYES_FAST=1) means.

    At most 500 draws per chain where that shortens the run.

    The engine that fits the spec decides (NUTS: 500 draws and tuning steps; the
    exact engine is fast anyway). Fast mode only ever shortens a run: a spec that
    already asks for less keeps its settings.
    """
    from lmsbayes.engines import choose_engine

    return choose_engine(spec, engine)[0].fast(spec, FAST_DRAWS)


def fast_mode(args) -> bool:
    return bool(getattr(args, "fast", False)) or os.environ.get("LMSBAYES_FAST") == "1"


def load_spec_from_args(args):
    """The spec the options name, shortened under ``--fast``."""
    from lmsbayes.model.structure import discount_at
    from lmsbayes.spec import load_spec

    # an age discount counts arm ages to the target's year (--year)
    spec = discount_at(load_spec(args.spec), getattr(args, "year", None))
    if fast_mode(args):
        return fast_spec(spec, getattr(args, "engine", None))
    return spec


def check_data_kind(spec, data, positional: bool = False) -> None:
    """``--data`` of the other kind than the spec fits: one line saying which spec to give.

    A (study, r, n) table with an LMS spec (the default) asks for ``--spec binomial``; the LMS
    arm table (the bundled data, without --data) with a spec for (study, r, n) tables asks for
    an LMS spec. Other mismatches are left to the fit's own checks. ``positional``: the verb
    takes the spec as its first argument (``lmsbayes fit SPEC``), not as ``--spec``.
    """
    from pathlib import Path

    from lmsbayes.data import is_binomial_header, read_csv_cells
    from lmsbayes.errors import OptionError
    from lmsbayes.model.families import get_family

    if data is not None and not Path(data).is_file():
        return  # the reader names the missing file
    binomial = data is not None and is_binomial_header(
        read_csv_cells(Path(data), str(data), "data table")[0]
    )
    family = get_family(spec.model.likelihood, spec.model.curve)
    table = f"--data {data} is" if data is not None else "the bundled data are"
    if binomial and not family.binomial_table:
        use = "fit the spec binomial instead" if positional else "add --spec binomial"
        raise OptionError(
            f"{table} a (study, r, n) table, which the spec {spec.name!r} (for the LMS arm "
            f"table) cannot fit: {use}"
        )
    if not binomial and family.binomial_table and not spec.landmarks:
        use = "fit the spec default instead" if positional else "drop --spec"
        raise OptionError(
            f"{table} the LMS arm table, which the spec {spec.name!r} (for a (study, r, n) "
            f"table) cannot fit: {use}, or give --data a (study, r, n) table"
        )


def fit_from_args(args, progress: Progress, spec=None):
    """The fit the options ask for; ``fit`` reports its steps through ``progress``."""
    import warnings

    from lmsbayes.fit import fit

    spec = spec if spec is not None else load_spec_from_args(args)
    check_data_kind(spec, args.data, positional=getattr(args, "command", "") == "fit")
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # diagnostics are printed by fit, and decide the exit status
        return fit(
            spec, args.data, engine=getattr(args, "engine", None), strict=False, progress=progress
        )


def strict_failed(fit, args) -> bool:
    """True when ``--strict`` is set and the fit's diagnostics fail: nothing is then written."""
    return bool(getattr(args, "strict", False)) and not fit.diagnostics.ok


def exit_for(fit, args, not_written: tuple[str | os.PathLike[str] | None, ...] = ()) -> int:
    """Exit status of a verb that fitted.

    3 (with one error line) when ``--strict`` fails, else 0.
    """
    if strict_failed(fit, args):
        skipped = [str(p) for p in not_written if p]
        tail = f"; nothing was written ({', '.join(skipped)} left as they were)" if skipped else ""
        print(
            "lmsbayes: error: inference problems (--strict): "
            + "; ".join(fit.diagnostics.problems)
            + tail,
            file=sys.stderr,
        )
        return EXIT_SAMPLING
    return EXIT_OK


def version() -> str:
    from lmsbayes.version import __version__

    return __version__


def fit_args(q, spec_positional: bool) -> None:
    """Options of every verb that fits a spec."""
    from lmsbayes.spec import bundled_specs

    specs = "a TOML file or a bundled name: " + ", ".join(sorted(bundled_specs()))
    if spec_positional:
        q.add_argument("spec", metavar="SPEC", help=f"model spec ({specs})")
    else:
        q.add_argument("--spec", default="default", metavar="SPEC", help=f"model spec ({specs})")
    q.add_argument(
        "--data",
        default=None,
        metavar="CSV",
        help="trial-arm table, or a (study, r, n) table for a binomial spec "
        "(default: the bundled data/lms_trials.csv)",
    )
    q.add_argument(
        "--fast",
        action="store_true",
        help=f"at most {FAST_DRAWS} draws and tuning steps per chain, for smoke runs "
        "(also LMSBAYES_FAST=1)",
    )
    q.add_argument(
        "--engine",
        choices=["auto", "exact", "nuts"],
        default=None,
        help="inference engine (default: the spec's; 'auto' is the exact engine where it supports "
        "the spec, else NUTS)",
    )
    q.add_argument(
        "--strict",
        action="store_true",
        help="on inference problems (divergences, R-hat, ESS, importance k-hat) exit with status 3 "
        "and write no output file",
    )
    q.add_argument("-q", "--quiet", action="store_true", help="no progress messages on stderr")
