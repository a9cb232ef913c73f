"""The harness itself: a failing rank must fail the whole job, never hang it.

``raise``: rank 1 raises while the others wait in a barrier -> the job aborts, non-zero exit.
``check``: rank 1 fails a check -> every rank exits 1 and the pass line is not printed.
"""

from __future__ import annotations

import sys

# _harness first: it sets mpi4py.rc before MPI starts
from _harness import Checks, run
from mpi4py import MPI


def body(comm: MPI.Comm, checks: Checks) -> None:
    mode = sys.argv[1]
    if comm.Get_rank() == 1:
        if mode == "raise":
            raise RuntimeError("deliberate failure on rank 1")
        checks.check("deliberate", False)
    comm.Barrier()


if __name__ == "__main__":
    run(body)
