"""2-D heat equation that survives rank failures (compare with heat2d_plain.py).

    mpickpt run -n 9 -- python examples/heat2d.py --steps 200 --size 256 --spares 1

The code is in ``src/mpickpt/examples/heat2d.py``, shipped inside the package so that
``mpickpt demo`` runs from an installed wheel; this script runs it, with the same options
(``--help`` lists them). Kill any worker at any time (or set MPICKPT_KILL=RANK@STEP[:PHASE]):
a spare takes its place and the printed checksum is the same as without the failure.
"""

import mpickpt  # noqa: F401 - first: it bounds MPI_Init, skips MPI_Finalize after failures
from mpickpt.examples.heat2d import main

if __name__ == "__main__":
    main()
