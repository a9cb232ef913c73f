"""A library that turns MPI's errors into its own exception, as petsc4py does (``PETSc.Error``).

    python wrapped_errors.py --steps 40 --spares 1      (prints ``checksum:``)

The workers reduce over ``ctx.comm`` through :func:`library_allreduce`, which raises a
``RuntimeError`` (not an ``MPI.Exception``) when MPI fails. When a worker dies, the survivors'
errors come from the failure, which the family saw: a recovery, without a traceback.
"""

from __future__ import annotations

import argparse
import hashlib

import numpy as np
from mpi4py import MPI

import mpickpt  # first: it bounds MPI_Init, skips MPI_Finalize after failures


def library_allreduce(comm: MPI.Intracomm, x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    try:
        comm.Allreduce(x, out)
    except MPI.Exception as e:
        raise RuntimeError(f"library error code {e.Get_error_code()}") from None
    return out


def simulate(ctx: mpickpt.Context, steps: int) -> str | None:
    x = ctx.protect("x", np.arange(16.0) + ctx.rank)
    for step in ctx.steps(steps):
        x[:] = library_allreduce(ctx.comm, x) / ctx.size + step
    everyone = ctx.comm.gather(x.tobytes())
    return hashlib.sha256(b"".join(everyone)).hexdigest() if everyone else None


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--spares", type=int, default=1)
    args = parser.parse_args()
    run = mpickpt.resilient("mirror", spares=args.spares, every=5)
    checksum = run(simulate)(args.steps)
    if checksum is not None:
        print(f"checksum: {checksum}", flush=True)
