"""``python -m tradovate_async``: the same as the ``tradovate-async`` command."""

import sys

from ._cli import main

sys.exit(main())
