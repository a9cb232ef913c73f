"""A protected loop in which workers crash with a real segmentation fault (a read of address 0),
as a bug in compiled code would, in their first incarnation only.

    python crash.py WHO STEP SPARES      # WHO: a worker number, "all", or "none"

Worker 0 prints ``result <sum>`` at the end if the run completes.
"""

from __future__ import annotations

import ctypes
import sys

import numpy as np

import mpickpt  # first, as in the examples


def loop(ctx: mpickpt.Context, who: str, at: int) -> tuple[int, float]:
    u = ctx.protect("u", np.full(1000, float(ctx.rank)))
    for step in ctx.steps(8):
        if step == at and who in ("all", str(ctx.rank)) and ctx.role == "initial":
            ctypes.string_at(0)  # SIGSEGV
        total = np.zeros(1)
        ctx.comm.Allreduce(np.array([u.sum()]), total)
        u += 1e-3 * total[0]
    return ctx.rank, float(u.sum())


if __name__ == "__main__":
    run = mpickpt.resilient("mirror", spares=int(sys.argv[3]), every=2)(loop)
    result = run(sys.argv[1], int(sys.argv[2]))
    if result is not None and result[0] == 0:
        print(f"result {result[1]!r}", flush=True)
