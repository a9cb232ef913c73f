"""Workers that communicate on a duplicate of ``ctx.comm`` made in C, as PETSc does
(``PetscCommDuplicate`` -> ``MPI_Comm_dup``), never seen by mpickpt's Python classes.

    python c_dup.py WORKER STEP --steps 40 --spares 1      (prints ``checksum:``)

Worker WORKER raises an error of its own at STEP (-1: never), while the others wait for it in
a reduction on the C duplicate: they are woken only if that communicator is revoked with
``ctx.comm``'s family, and the job ends with exit 1 and the worker's error.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib

import numpy as np
from mpi4py import MPI

import mpickpt  # first: it bounds MPI_Init, skips MPI_Finalize after failures


def c_dup(comm: MPI.Comm) -> MPI.Intracomm:
    """``MPI_Comm_dup`` called from C, not through mpi4py."""
    libmpi = ctypes.CDLL(MPI.__file__)  # its dependencies include libmpi
    handle = ctypes.c_void_p()
    assert libmpi.MPI_Comm_dup(ctypes.c_void_p(comm.handle), ctypes.byref(handle)) == 0
    return MPI.Intracomm.fromhandle(handle.value)


def simulate(ctx: mpickpt.Context, steps: int, who: int, at: int) -> str | None:
    inner = c_dup(ctx.comm)  # kept by "the library", as PETSc keeps its inner communicator
    x = ctx.protect("x", np.arange(8.0) + ctx.rank)
    total = np.empty_like(x)
    for step in ctx.steps(steps):
        if step == at and ctx.rank == who and ctx.role == "initial":
            raise RuntimeError(f"worker {who} fails at step {step}")
        inner.Allreduce(x, total)
        x[:] = total / ctx.size + step
    everyone = ctx.comm.gather(x.tobytes())
    return hashlib.sha256(b"".join(everyone)).hexdigest() if everyone else None


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("who", type=int)
    parser.add_argument("at", type=int)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--spares", type=int, default=1)
    args = parser.parse_args()
    run = mpickpt.resilient("mirror", spares=args.spares, every=5)
    checksum = run(simulate)(args.steps, args.who, args.at)
    if checksum is not None:
        print(f"checksum: {checksum}", flush=True)
