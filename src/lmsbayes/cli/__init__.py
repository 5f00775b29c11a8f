"""The ``lmsbayes`` command line.

``lmsbayes run`` is the main job: fit the default analysis to the bundled data
and print the threshold table next to the EORTC 2021 values. Other commands:
``fit``, ``thresholds``, ``prior``, ``design``, ``report``. User mistakes give
one line on stderr and a non-zero exit status, never a traceback.

Verbs live in one module each (``VERB_MODULES``); each has
``register(subparsers)``. :func:`main` turns every exception into one
``lmsbayes: error:`` line and an exit status (:data:`EXIT_CODES`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import signal
import sys
import traceback
from collections.abc import Sequence

from lmsbayes.cli._common import (
    EXIT_BUG,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_OS,
    EXIT_SAMPLING,
    EXIT_USAGE,
    version,
)

__all__ = [
    "main",
    "EXIT_CODES",
    "EXIT_OK",
    "EXIT_OS",
    "EXIT_USAGE",
    "EXIT_SAMPLING",
    "EXIT_BUG",
    "EXIT_INTERRUPTED",
]

#: Modules under lmsbayes.cli that add verbs (each has ``register(subparsers)``), in --help order.
VERB_MODULES = (
    "fitting",
    "prior",
    "dossier",
    "design",
    "contrast",
    "data",
    "curve",
    "validate",
    "update",
    "calibrate",
)

#: Exit status -> meaning (printed by ``lmsbayes --help``; the README has the same table).
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_OS: "the system failed: disk full, permission denied, I/O error, output pipe closed",
    EXIT_USAGE: "a user mistake: bad option, input file or output path (one 'lmsbayes: error:' "
    "line)",
    EXIT_SAMPLING: "inference problems under --strict (nothing was written)",
    EXIT_BUG: "an unexpected error: a bug in lmsbayes (LMSBAYES_DEBUG=1 shows the traceback)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); SIGTERM and SIGHUP give 143 and 129",
}

_DESCRIPTION = """\
Bayesian meta-analysis of historical leiomyosarcoma (LMS) trials.

lmsbayes pools the progression-free-survival (PFS) rates of published trial
arms at landmarks (3, 6 months ...) in a hierarchical model with covariates
for line of therapy (1L, 2L+), treatment class (ESMO-recommended R-T or not,
NR-T) and uterine site. From the posterior it gives efficacy thresholds for
the next phase II trial (null rate p0 and alternative p1 = p0^HR), next to
the EORTC STBSG 2021 values, meta-analytic-predictive (MAP) priors, and the
decision rules and operating characteristics of designs that use them.
"""

_EPILOG = (
    """\
typical use:
  lmsbayes run                          fit the default analysis, print the thresholds
  lmsbayes fit default -o fit.nc        fit a spec and save the fit
  lmsbayes thresholds fit.nc --hr 0.65,0.5
  lmsbayes prior fit.nc --line 2L+ --landmark 6 --robust 0.2 -o prior.json
  lmsbayes design prior.json --looks 20,35,50
  lmsbayes report fit.nc -o report/

`lmsbayes COMMAND --help` describes each command.

exit status:
"""
    + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_CODES.items())
    + """

Output files are written atomically (temp file beside the destination, then
renamed) and only after every option and output path has been checked. An
output path that is a symbolic link is refused (never written through); a
missing directory is an error unless --mkdir."""
)


class _Formatter(argparse.HelpFormatter):
    """Every option's default shown (unless its help states it, or it has none).

    Text with line breaks kept.
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text.strip("\n"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _format_args(self, action: argparse.Action, default_metavar: str) -> str:
        from lmsbayes.cli._common import ListAction

        if isinstance(action, ListAction):  # 'T1,T2,...', not 'T1,T2,... [T1,T2,... ...]'
            return self._metavar_formatter(action, default_metavar)(1)[0]
        return super()._format_args(action, default_metavar)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "(default" in text.lower()
            or not action.option_strings
            or default is None
            or default is False
            or default is argparse.SUPPRESS
        ):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """argparse with the command's error format.

    One line on stderr, exit status 2, no usage dump.
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault(
            "formatter_class", _Formatter
        )  # the verbs' parsers too (add_parser uses this class)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        stray = message.removeprefix("unrecognized arguments: ").split()
        if message.startswith("unrecognized arguments: ") and all(
            re.fullmatch(r"[-+0-9.:eE,]+", word) for word in stray
        ):
            # lmsbayes 0.1 took `--hr 0.65 0.5`; every list option now takes one word
            message += (
                " (list options take their values comma-separated, in one word: "
                "--hr 0.65,0.5, --landmarks 3,6,12)"
            )
        self.exit(EXIT_USAGE, f"lmsbayes: error: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lmsbayes", description=_DESCRIPTION, epilog=_EPILOG)
    p.add_argument("--version", action="version", version=f"lmsbayes {version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in VERB_MODULES:
        importlib.import_module(f"lmsbayes.cli.{name}").register(sub)
    from lmsbayes.cli._common import add_mkdir_option

    for verb in sub.choices.values():
        add_mkdir_option(verb)
    return p


class _Terminated(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread so that ``finally`` blocks remove temp files."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _signals():
    """SIGTERM and SIGHUP unwind the stack like Ctrl-C does, then exit 128 + n.

    Temp files are removed on the way.
    """

    def handler(signum, frame):
        raise _Terminated(signum)

    saved = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        try:
            saved[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: leave the signals alone
            break
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


def _one_line(exc: BaseException, limit: int = 20) -> str:
    """An error message on one line: the problems of a multi-problem error joined with '; '."""
    problems = getattr(exc, "problems", None)
    if isinstance(problems, list) and len(problems) == 1 and not getattr(exc, "source", None):
        return " ".join(
            str(problems[0]).split()
        )  # a data problem names its file, row and column itself
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    head, rest = lines[0], [line.removeprefix("- ") for line in lines[1:]]
    if not rest:
        return head
    if len(rest) > limit:
        rest = rest[:limit] + [f"... and {len(rest) - limit} more"]
    return head + (" " if head.endswith(":") else ": ") + "; ".join(rest)


def _os_message(exc: OSError) -> str:
    if exc.filename is None:
        return str(exc)
    what = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 else "")
    return f"{what}: {exc.strerror or exc}"


def _error(message: str) -> None:
    from lmsbayes.errors import plain_text  # np.int64(52) -> 52, whatever raised the error

    with contextlib.suppress(OSError, ValueError):
        print(f"lmsbayes: error: {plain_text(message)}", file=sys.stderr, flush=True)


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush stays quiet.

    The recipe of the Python documentation (signal module, "Note on SIGPIPE").
    """
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lmsbayes`` command; returns the exit status (see :data:`EXIT_CODES`)."""
    from lmsbayes.errors import LmsbayesError, SamplingError

    with contextlib.suppress(AttributeError, ValueError):  # a terminal that cannot show a character
        sys.stdout.reconfigure(errors="backslashreplace")
    with _signals():
        try:
            args = _parser().parse_args(argv)
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
            return code
        except SystemExit:  # argparse: --help, --version, usage errors (already one line)
            try:
                sys.stdout.flush()
            except BrokenPipeError:  # `lmsbayes --help | head -1`
                _quiet_stdout()
                raise SystemExit(EXIT_OS) from None
            raise
        except BrokenPipeError:
            _quiet_stdout()
            return EXIT_OS
        except KeyboardInterrupt:
            _error("interrupted")
            return EXIT_INTERRUPTED
        except _Terminated as exc:
            _error(f"terminated by {signal.Signals(exc.signum).name}")
            return 128 + exc.signum
        except SamplingError as exc:
            _error(_one_line(exc))
            return EXIT_SAMPLING
        except LmsbayesError as exc:  # the package's own checks: a user mistake, one line
            _error(_one_line(exc))
            return EXIT_USAGE
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            _error(_os_message(exc))  # an input path that is not there: a user mistake
            return EXIT_USAGE
        except MemoryError:
            _error("out of memory")
            return EXIT_OS
        except OSError as exc:
            _error(_os_message(exc))
            return EXIT_OS
        except Exception as exc:  # noqa: BLE001 - the last resort: a bug, said so in one line
            # a ValueError, UnicodeError, RecursionError ... that no check of lmsbayes turned into
            # one of its own errors is a bug: user mistakes are caught as LmsbayesError above
            if os.environ.get("LMSBAYES_DEBUG") == "1":
                traceback.print_exc()
            _error(
                f"internal error, a bug in lmsbayes {version()} ({type(exc).__name__}: "
                f"{_one_line(exc)}); please report it with the command line (LMSBAYES_DEBUG=1 "
                "shows the traceback)"
            )
            return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
