"""The spill's file system fills up while the job runs (a real full disk: a small tmpfs,
filled by worker 0): the job still computes its result and hands it back; it exits with the
spill's code.

Usage: ``mpiexec -n N python spill_disk_fills_up.py DIR STEP``: worker 0 fills the file
system of ``DIR`` before step ``STEP``; worker 0 prints ``result: ...``.
"""

from __future__ import annotations

import errno
import os
import sys

import numpy as np
from mpi4py import MPI

import mpickpt


def fill(path: str) -> None:
    """Write ``path`` until the file system has no space left."""
    block = b"\0" * (1 << 16)
    with open(path, "wb") as f:
        try:
            while True:
                f.write(block)
                f.flush()
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise


def simulate(ctx: mpickpt.Context, steps: int, turn: int) -> float:
    u = ctx.protect("u", np.full(10_000, float(ctx.comm.Get_rank())))
    for step in ctx.steps(steps):
        if step == turn and ctx.comm.Get_rank() == 0 and ctx.role == "initial":
            fill(os.path.join(sys.argv[1], "filler"))
        u += 1.0
    return float(ctx.comm.allreduce(u.sum()))


if __name__ == "__main__":
    run = mpickpt.resilient("mirror", copies=1, every=2, spill=sys.argv[1])
    result = run(simulate)(20, int(sys.argv[2]))
    if result is not None and MPI.COMM_WORLD.Get_rank() == 0:
        print(f"result: {result:.1f}", flush=True)
