"""The ``lmsbayes`` command line.

``lmsbayes run`` is the main job: fit the default analysis to the bundled data
and print the threshold table next to the EORTC 2021 values. Other commands:
``fit``, ``thresholds``, ``prior``, ``design``, ``report``. User mistakes give
one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from lmsbayes.cli._common import EXIT_SAMPLING, EXIT_USAGE, version

__all__ = ["main", "EXIT_USAGE", "EXIT_SAMPLING"]

#: Modules under lmsbayes.cli that add verbs (each has ``register(subparsers)``), in --help order.
VERB_MODULES = ("fitting", "prior", "design", "validate")


class _Parser(argparse.ArgumentParser):
    """argparse with the command's error format: one line on stderr, exit status 2, no usage dump."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"lmsbayes: error: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lmsbayes", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"lmsbayes {version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in VERB_MODULES:
        importlib.import_module(f"lmsbayes.cli.{name}").register(sub)
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
