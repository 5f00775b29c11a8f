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

import re

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


#: A numpy scalar's repr (numpy >= 2): ``np.int64(52)``, ``np.float64(0.5)``, ``np.str_('a')``,
#: ``np.True_``.
_NUMPY_REPR = re.compile(
    r"\bnp\.(?:(?:u?int|float|complex)\d*|bool|str_|bytes_|longdouble|intc|intp)\((.*?)\)"
    r"|\bnp\.(True|False)_\b"
)


def plain_text(message: str) -> str:
    """``message`` with numpy scalars' reprs as plain values: ``np.int64(52)`` -> ``52``.

    A value formatted with ``!r`` shows numpy's type when it came out of an array; a user reads
    the number (or the quoted text) only.
    """
    return _NUMPY_REPR.sub(lambda m: m[1] if m[1] is not None else m[2], message)


class LmsbayesError(Exception):
    """Base class of every error lmsbayes raises on purpose.

    A message's numpy scalar reprs are shown as plain values (:func:`plain_text`).
    """

    def __init__(self, *args) -> None:
        super().__init__(*(plain_text(a) if isinstance(a, str) else a for a in args))


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
