"""The ``lmsbayes`` command line."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lmsbayes`` command."""
    print("lmsbayes: not implemented yet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
