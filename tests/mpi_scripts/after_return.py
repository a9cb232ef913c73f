"""An exception after the protected function returned (in the application's own
post-processing) must end the job with a non-zero code, never 0 and never a hang.

    python after_return.py --raise-on RANK --then allgather|exit --spares K

After the protected loop, COMM_WORLD rank RANK raises; the others then either wait for it in
an allgather on COMM_WORLD (``allgather``) or simply end (``exit``).
"""

from __future__ import annotations

import argparse

import numpy as np
from mpi4py import MPI

import mpickpt  # first: it bounds MPI_Init, skips MPI_Finalize after failures


def loop(ctx: mpickpt.Context, steps: int) -> float:
    x = ctx.protect("x", np.zeros(4))
    for _ in ctx.steps(steps):
        x += ctx.comm.allreduce(1.0)
    return float(x.sum())


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--raise-on", type=int, default=-1)
    p.add_argument("--then", choices=["allgather", "exit"], default="allgather")
    p.add_argument("--spares", type=int, default=0)
    a = p.parse_args()
    result = mpickpt.resilient("mirror", copies=1, spares=a.spares, every=2)(loop)(6)
    if MPI.COMM_WORLD.Get_rank() == a.raise_on:
        raise RuntimeError("post-processing failed")
    if a.then == "allgather":
        results = MPI.COMM_WORLD.allgather(result)
        if MPI.COMM_WORLD.Get_rank() == 0:
            print(f"done {results[0]}", flush=True)
