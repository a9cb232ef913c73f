"""A protected loop whose function raises an exception on some workers (an application bug).

    python app_raises.py --raise-on 1,2 --at STEP --spares K [--truncate-on 3]

Each step every worker sends a number to its right neighbour and waits for its left one's,
so when worker w raises, worker w + 1 is blocked waiting for it. Worker 0 prints
``done <total>`` if nothing raised.
"""

from __future__ import annotations

import argparse

import numpy as np

import mpickpt  # first: it bounds MPI_Init, skips MPI_Finalize after failures


def loop(
    ctx: mpickpt.Context, steps: int, raise_on: set[int], at: int, truncate: set[int]
) -> tuple[int, int]:
    total = ctx.protect("total", np.zeros(1))
    right, left = (ctx.rank + 1) % ctx.size, (ctx.rank - 1) % ctx.size
    for step in ctx.steps(steps):
        if step == at and ctx.rank in raise_on:
            raise ValueError(f"step {step} went wrong on worker {ctx.rank}")
        got = np.zeros(1)
        if step == at and ctx.rank in truncate:  # a receive buffer too small: MPI_ERR_TRUNCATE,
            send = ctx.comm.Isend(total + ctx.rank, right)  # a bug, not a failure
            ctx.comm.Recv(np.zeros(0), left)
            mpickpt.waitall([send])
        mpickpt.waitall([ctx.comm.Irecv(got, left), ctx.comm.Isend(total + ctx.rank, right)])
        total += got
    return ctx.rank, int(total[0])


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--raise-on", default="")
    p.add_argument("--truncate-on", default="")
    p.add_argument("--at", type=int, default=3)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--spares", type=int, default=0)
    a = p.parse_args()
    raise_on = {int(w) for w in a.raise_on.split(",") if w}
    resilient = mpickpt.resilient("mirror", spares=a.spares, every=2)
    truncate = {int(w) for w in a.truncate_on.split(",") if w}
    result = resilient(loop)(a.steps, raise_on, a.at, truncate)
    if result is not None and result[0] == 0:
        print(f"done {result[1]}", flush=True)
