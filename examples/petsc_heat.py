"""2-D heat equation with PETSc that survives rank failures (compare with petsc_heat_plain.py).

    mpickpt run -n 5 -- python examples/petsc_heat.py --steps 100 --size 64 --spares 1

Kill any worker at any time (or set MPICKPT_KILL=RANK@STEP): a spare takes its place and the
printed checksum is the same as plain PETSc's on as many ranks as there are workers.
"""

import mpickpt  # first: it bounds MPI_Init, finalises PETSc before MPI
from petsc_heatsolver import HeatSolver, arguments


def simulate(ctx, steps, size):
    solver = HeatSolver(ctx.comm, size)  # PETSc objects on ctx.comm, inside the function
    ctx.protect("u", solver.u.getArray())  # the field's local values, restored in place
    for _ in ctx.steps(steps):
        solver.step()
    return solver.checksum()


if __name__ == "__main__":
    args = arguments(__doc__)
    run = mpickpt.resilient("parity", group=2, backups=3, spares=args.spares, every=args.every)
    checksum = run(simulate)(args.steps, args.size)
    if checksum is not None:
        print(f"checksum: {checksum}", flush=True)
