"""examples/petsc_heat.py with a fault of its own on one worker, in its first incarnation.

    python petsc_faults.py raise|crash WORKER STEP --steps 40 --size 32 --every 5 --spares 1

``raise``: the worker raises a Python error just before its solve, while the others enter
theirs and wait in PETSc's own communication with it (on PETSc's duplicate of ``ctx.comm``):
the job must end with exit 1 in seconds. ``crash``: the worker reads address 0 (SIGSEGV),
as a bug in compiled code would: the job must recover and print the failure-free checksum.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import mpickpt  # first, as in the examples

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from petsc_heatsolver import HeatSolver, arguments  # noqa: E402


def simulate(ctx: mpickpt.Context, steps: int, size: int, fault: str, who: int, at: int):
    solver = HeatSolver(ctx.comm, size)
    ctx.protect("u", solver.u.getArray())
    for step in ctx.steps(steps):
        if step == at and ctx.rank == who and ctx.role == "initial":
            if fault == "crash":
                ctypes.string_at(0)
            raise RuntimeError(f"worker {who} fails at step {step}")
        solver.step()
    return solver.checksum()


if __name__ == "__main__":
    fault, who, at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    del sys.argv[1:4]
    args = arguments(__doc__)
    run = mpickpt.resilient("mirror", spares=args.spares, every=args.every)
    checksum = run(simulate)(args.steps, args.size, fault, who, at)
    if checksum is not None:
        print(f"checksum: {checksum}", flush=True)
