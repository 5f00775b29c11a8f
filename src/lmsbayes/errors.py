"""The package's error classes: every user mistake is one of these.

The command line prints an :class:`InputError` (any :class:`LmsbayesError`
but :class:`SamplingError`) as one ``lmsbayes: error:`` line and exits with
status 2; a :class:`SamplingError` (``--strict``) exits with status 3. Any
other exception escaping, a plain ``ValueError`` included, is a bug in
lmsbayes (exit status 70): every check a user's input or argument can fail
raises one of these classes.

The classes also derive from the built-in exception a Python user would
expect (``ValueError`` for bad values, ``RuntimeError`` for sampling), so
``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "LmsbayesError",
    "InputError",
    "OptionError",
    "PriorFileError",
    "FitFileError",
    "OutputPathError",
    "WorkLimitError",
    "SamplingError",
]


class LmsbayesError(Exception):
    """Base class of every error lmsbayes raises on purpose."""


class InputError(LmsbayesError, ValueError):
    """A user-supplied input (file, option, argument) is invalid.

    The message names where: the file, and the row, column and value when
    there are any.
    """


class OptionError(InputError):
    """A command-line option or function argument has an invalid value."""


class PriorFileError(InputError):
    """A prior JSON file cannot be read as a Beta mixture."""


class FitFileError(InputError):
    """A saved-fit file is not a readable lmsbayes fit."""


class OutputPathError(InputError):
    """An output path cannot be written (checked before any work is done)."""


class WorkLimitError(InputError):
    """The requested work exceeds a stated bound (components, draws, search size)."""


class SamplingError(LmsbayesError, RuntimeError):
    """The inference diagnostics failed under ``strict=True`` (exit status 3)."""
