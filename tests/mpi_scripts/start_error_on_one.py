"""An mpickpt error before the job's processes have joined, on one process only (a setting
that only its environment has): the others must not wait for it forever.

Usage: ``mpiexec -n N python start_error_on_one.py RANK`` (one spare): COMM_WORLD rank RANK
raises a ``ConfigError`` before it calls the protected function; worker 0 prints the result.
"""

from __future__ import annotations

import sys

import numpy as np

import mpickpt


def simulate(ctx: mpickpt.Context, steps: int) -> float | None:
    u = ctx.protect("u", np.zeros(100))
    for _ in ctx.steps(steps):
        u += 1.0
    total = float(ctx.comm.allreduce(u.sum()))
    return total if ctx.comm.Get_rank() == 0 else None


if __name__ == "__main__":
    from mpi4py import MPI  # after mpickpt

    if MPI.COMM_WORLD.Get_rank() == int(sys.argv[1]):
        raise mpickpt.ConfigError("a setting that only this process has")
    result = mpickpt.resilient("mirror", copies=1, spares=1, every=2)(simulate)(20)
    if result is not None:
        print(f"result: {result:.1f}", flush=True)
