"""``python -m mpickpt``: the command line (``mpickpt run``, ``mpickpt demo``, ...)."""

import sys

from .cli import main

sys.exit(main())
