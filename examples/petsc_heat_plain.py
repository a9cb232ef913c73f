"""2-D heat equation with PETSc on plain MPI: no checkpoints, a lost rank ends the job.

mpiexec -n 4 python examples/petsc_heat_plain.py --steps 100 --size 64
"""

from mpi4py import MPI

from petsc_heatsolver import HeatSolver, arguments


def simulate(comm, steps, size):
    solver = HeatSolver(comm, size)
    for _ in range(steps):
        solver.step()
    return solver.checksum()


if __name__ == "__main__":
    args = arguments(__doc__)
    checksum = simulate(MPI.COMM_WORLD, args.steps, args.size)
    if checksum is not None:
        print(f"checksum: {checksum}", flush=True)
