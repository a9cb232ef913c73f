"""A spill that stalls on one rank only: every rank skips the same versions, and the spill
goes on once the disk answers again.

Usage: ``MPICKPT_SPILL_TIMEOUT=1 mpiexec -n N python spill_one_rank_stalled.py DIR``. Rank 1
stops its spill helper (SIGSTOP: a disk that does not answer) before the first checkpoint and
lets it go on before version 5. Its writes of versions 0 and 1 time out while the other ranks'
succeed; while they are still pending, its writer is busy. Before, rank 1 alone skipped the
next due versions: the ranks then compared different versions, and a rank with none in flight
left the others' collective unanswered.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np
from _harness import Checks, run
from mpi4py import MPI

from mpickpt import Checkpointer, spill
from mpickpt.spill.tier import DiskTier

VERSIONS = 9
RESUMED = 5  # the version before which rank 1's disk answers again


def body(comm: MPI.Comm, checks: Checks) -> None:
    rank, size = comm.Get_rank(), comm.Get_size()
    ckpt = Checkpointer(comm, "mirror", copies=1)
    disk = DiskTier(sys.argv[1], every=1, keep=VERSIONS)
    ckpt.disk = disk
    disk.attach(rank, size, {"id": "mirror", "copies": 1})
    assert disk.writer is not None and disk.writer._proc is not None
    helper = disk.writer._proc.pid
    if rank == 1:
        os.kill(helper, signal.SIGSTOP)
    u = ckpt.protect("u", np.full(50_000, float(rank)))
    own = {}
    for version in range(VERSIONS):
        if version == RESUMED and rank == 1:
            os.kill(helper, signal.SIGCONT)
        u += 1.0
        ckpt.checkpoint(version)
        assert ckpt.local is not None
        own[version] = ckpt.local.tobytes()
        time.sleep(0.6)  # past the 1 s timeout of a version in two checkpoints
    ckpt.flush()
    comm.Barrier()  # rank 0 writes the index
    complete = spill.complete_versions(sys.argv[1])
    checks.check("the stalled versions are not complete", 0 not in complete and 1 not in complete)
    checks.check("the spill went on after the stall", VERSIONS - 1 in complete, complete=complete)
    for version in complete:
        got = spill.load(sys.argv[1], version, rank).tobytes()
        checks.check(f"version {version} bit-identical", got == own[version])
    disk.close()


if __name__ == "__main__":
    run(body)
