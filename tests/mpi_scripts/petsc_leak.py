"""examples/petsc_heat.py, reporting what worker 3's process holds at the end: its live MPI
communicators and its resident memory (kill other workers to make it go through recoveries).

    MPICKPT_KILL=0@6,1@11,... python petsc_leak.py --steps 40 --size 32 --every 5 --spares 5

Prints ``resources: communicators N family F petsc_objects P rss_kib M`` from worker 3 at
the end of its loop, then the ``checksum:``.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import mpickpt  # first, as in the examples

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from mpi4py import MPI  # noqa: E402
from petsc4py import PETSc  # noqa: E402

from mpickpt.comms import keyval  # noqa: E402
from petsc_heatsolver import HeatSolver, arguments  # noqa: E402


def live_communicators() -> tuple[int, int]:
    """This process's communicators, and those of them in a family (ctx.comm's, made in
    Python or in C): Open MPI numbers them densely (64 free slots in a row end the count)."""
    count = family = gap = index = 0
    while gap < 64:
        try:
            comm = MPI.Comm.f2py(index)
        except MPI.Exception:
            comm = MPI.COMM_NULL
        index += 1
        gap = gap + 1 if comm == MPI.COMM_NULL else 0
        if comm != MPI.COMM_NULL:
            count += 1
            family += comm.Get_attr(keyval()) is not None
    return count, family


def rss_kib() -> int:
    """The resident memory of this process now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def simulate(ctx: mpickpt.Context, steps: int, size: int) -> str | None:
    solver = HeatSolver(ctx.comm, size)
    ctx.protect("u", solver.u.getArray())
    for _ in ctx.steps(steps):
        solver.step()
    if ctx.rank == 3:
        gc.collect()
        comms, family = live_communicators()
        objects = sum(isinstance(o, PETSc.Object) and bool(o.handle) for o in gc.get_objects())
        print(
            f"resources: communicators {comms} family {family} petsc_objects {objects} "
            f"rss_kib {rss_kib()}",
            flush=True,
        )
    return solver.checksum()


if __name__ == "__main__":
    args = arguments(__doc__)
    run = mpickpt.resilient("mirror", spares=args.spares, every=args.every)
    checksum = run(simulate)(args.steps, args.size)
    if checksum is not None:
        print(f"checksum: {checksum}", flush=True)
