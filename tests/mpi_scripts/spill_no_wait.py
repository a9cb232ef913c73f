"""A checkpoint does not wait for the spill of the previous version, only for the older of
two versions in flight; every due version is spilled, bit-identical to the rank's own copy.

Usage: ``mpiexec -n N python spill_no_wait.py DIR``. Each rank stops its spill helper
(SIGSTOP: a disk that does not answer) before the first checkpoint and lets it go on 3 s
before the third.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import numpy as np
from _harness import Checks, run
from mpi4py import MPI

from mpickpt import Checkpointer, spill
from mpickpt.spill.tier import DiskTier


def body(comm: MPI.Comm, checks: Checks) -> None:
    rank, size = comm.Get_rank(), comm.Get_size()
    ckpt = Checkpointer(comm, "mirror", copies=2)
    disk = DiskTier(sys.argv[1], every=1, keep=10)
    ckpt.disk = disk
    disk.attach(rank, size, {"id": "mirror", "copies": 2})
    assert disk.writer is not None and disk.writer._proc is not None
    helper = disk.writer._proc.pid
    os.kill(helper, signal.SIGSTOP)
    u = ckpt.protect("u", np.full(200_000, float(rank)))
    own = {}
    took = []
    for version in range(3):
        if version == 2:
            threading.Timer(3.0, os.kill, (helper, signal.SIGCONT)).start()
        u += 1.0
        t = time.perf_counter()
        ckpt.checkpoint(version)
        took.append(time.perf_counter() - t)
        assert ckpt.local is not None
        own[version] = ckpt.local.tobytes()
    checks.check("one version in flight: no wait", took[1] < 2.0, took=took[1])
    checks.check("two versions in flight: the older is waited for", took[2] > 2.0, took=took[2])
    ckpt.flush()
    comm.Barrier()  # rank 0 writes the index
    checks.check("every due version spilled", spill.complete_versions(sys.argv[1]) == [2, 1, 0])
    for version, data in own.items():
        got = spill.load(sys.argv[1], version, rank).tobytes()
        checks.check(f"version {version} bit-identical", got == data)
    disk.close()


if __name__ == "__main__":
    run(body)
