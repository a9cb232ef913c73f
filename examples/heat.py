"""The physics of the heat2d examples, for ``heat2d_plain.py``.

The code lives in the package (``src/mpickpt/examples/heat.py``) so that ``mpickpt demo`` runs
from an installed wheel; this module only re-exports it.
"""

from mpickpt.examples.heat import ALPHA, Grid, arguments, scheme_params

__all__ = ["ALPHA", "Grid", "arguments", "scheme_params"]
