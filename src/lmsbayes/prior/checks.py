"""Argument checks and number formatting shared by the modules of lmsbayes.prior.

The lowest module of the package: it imports nothing of lmsbayes, so that the
mixture, its fitting, ESS and conflict all check their arguments alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lmsbayes.errors import OptionError

__all__ = ["check_count", "check_unit_interval", "fmt_list"]


def fmt_list(x: np.ndarray) -> str:
    """Numbers as a list with round-trip precision, for error messages and reprs."""
    return "[" + ", ".join(repr(float(v)) for v in x) + "]"


def check_unit_interval(name: str, value: Any) -> np.ndarray:
    """``value`` as a float array.

    Or a ValueError naming ``name`` when a value lies outside [0, 1].
    """
    arr = np.asarray(value, dtype=float)
    bad = ~((arr >= 0.0) & (arr <= 1.0))  # also catches NaN
    if np.any(bad):
        raise OptionError(f"{name} must lie in [0, 1], got {arr[bad].ravel()[:5].tolist()}")
    return arr


def check_count(name: str, value: Any, *, upper: int | None = None) -> int:
    """``value`` as a non-negative integer (at most ``upper``), or a ValueError naming ``name``."""
    if isinstance(value, bool) or not float(value).is_integer() or value < 0:
        raise OptionError(f"{name} must be a non-negative integer, got {value!r}")
    if upper is not None and value > upper:
        raise OptionError(f"{name} must be <= {upper}, got {value!r}")
    return int(value)
