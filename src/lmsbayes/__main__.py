"""``python -m lmsbayes``: the same as the ``lmsbayes`` command."""

import sys

from lmsbayes.cli import main

if __name__ == "__main__":
    sys.exit(main())
