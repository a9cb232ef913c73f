"""The spill's file system fills up while the job runs (a real full disk: a small tmpfs,
filled by worker 0): the job still computes its result and hands it back; it exits with the
spill's code.

Usage: ``mpiexec -n N python spill_disk_fills_up.py DIR STEP``: worker 0 fills the file
system of ``DIR`` before step ``STEP`` and keeps it full; worker 0 prints ``result: ...``.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
import time

import numpy as np

import mpickpt


def fill(path: str) -> None:
    """Write ``path`` until the file system has not a byte left, and keep it so: a write that
    fails frees what it had written, which is taken again at once (until the process ends)."""
    f = open(path, "wb", buffering=0)  # noqa: SIM115 - kept open by the thread below

    def take_all() -> None:
        for size in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise

    def keep_full() -> None:
        while True:
            take_all()
            time.sleep(0.0005)

    take_all()
    threading.Thread(target=keep_full, daemon=True).start()


def simulate(ctx: mpickpt.Context, steps: int, turn: int) -> float | None:
    u = ctx.protect("u", np.full(10_000, float(ctx.comm.Get_rank())))
    for step in ctx.steps(steps):
        if step == turn and ctx.comm.Get_rank() == 0 and ctx.role == "initial":
            fill(os.path.join(sys.argv[1], "filler"))
        u += 1.0
    total = float(ctx.comm.allreduce(u.sum()))
    return total if ctx.comm.Get_rank() == 0 else None


if __name__ == "__main__":
    run = mpickpt.resilient("mirror", copies=1, every=2, spill=sys.argv[1])
    result = run(simulate)(20, int(sys.argv[2]))
    if result is not None:
        print(f"result: {result:.1f}", flush=True)
