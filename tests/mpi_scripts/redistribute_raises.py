"""A recovery in which one process alone raises: the application's redistribution hook fails
on the worker that adopts a dead worker's state (a bug of the hook's own), while the others'
hooks succeed. Every process must end the same way within seconds.

Usage: ``mpiexec -n N python redistribute_raises.py`` with ``MPICKPT_KILL`` killing a worker
(no spares: the job continues on fewer workers through the hook).
"""

from __future__ import annotations

import numpy as np

import mpickpt


def merge(mine: dict, adopted: list[dict]) -> dict:
    if adopted:
        raise ValueError("this hook cannot merge states (a bug of its own)")
    return mine


def simulate(ctx: mpickpt.Context, steps: int) -> float | None:
    u = ctx.protect("u", np.full(1000, float(ctx.comm.Get_rank())))
    for _ in ctx.steps(steps):
        u += 1.0
        ctx.comm.Barrier()
    total = float(ctx.comm.allreduce(u.sum()))
    return total if ctx.comm.Get_rank() == 0 else None


if __name__ == "__main__":
    run = mpickpt.resilient("parity", group=2, backups=3, every=2, redistribute=merge)
    result = run(simulate)(20)
    if result is not None:
        print(f"result: {result:.1f}", flush=True)
