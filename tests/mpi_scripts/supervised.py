"""A protected loop for the ``mpickpt run`` tests (tests/test_run_mpi.py).

    python supervised.py --steps N [--every K] [--spares S] [--spill DIR]
                         [--step-seconds T] [--crash-at STEP] [--lost-once FILE]

``--crash-at``: every worker crashes there with a real segmentation fault, in every
incarnation (a bug, not a failure). ``--lost-once``: at the first launch (FILE records it),
process 1 dies before MPI is initialised. Worker 0 prints ``result <value>`` at the end.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import time
from pathlib import Path

import numpy as np

import mpickpt  # first, as in the examples: it bounds MPI_Init
from mpickpt.startup import launched_rank


def loop(ctx: mpickpt.Context, steps: int, seconds: float, crash_at: int) -> tuple[int, float]:
    u = ctx.protect("u", np.arange(1000, dtype=np.float64) + ctx.rank)
    for step in ctx.steps(steps):
        if step == crash_at:
            ctypes.string_at(0)  # SIGSEGV
        total = np.zeros(1)
        ctx.comm.Allreduce(np.array([u.sum()]), total)
        u += 1e-6 * total[0] * np.sin(u + step)
        time.sleep(seconds)
    out = np.zeros(1)
    ctx.comm.Allreduce(np.array([u.sum()]), out)
    return ctx.rank, float(out[0])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--every", type=int, default=5)
    p.add_argument("--spares", type=int, default=0)
    p.add_argument("--spill", default=None)
    p.add_argument("--step-seconds", type=float, default=0.0)
    p.add_argument("--crash-at", type=int, default=-1)
    p.add_argument("--lost-once", default=None)
    a = p.parse_args()
    if a.lost_once and launched_rank() == 1 and not Path(a.lost_once).exists():
        Path(a.lost_once).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    run = mpickpt.resilient("mirror", spares=a.spares, every=a.every, spill=a.spill)(loop)
    result = run(a.steps, a.step_seconds, a.crash_at)
    if result is not None and result[0] == 0:
        print(f"result {result[1]!r}", flush=True)


if __name__ == "__main__":
    main()
