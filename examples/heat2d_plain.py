"""2-D heat equation with plain MPI: no checkpoints, a lost rank ends the job.

mpiexec -n 8 python examples/heat2d_plain.py --steps 200 --size 256
"""

from mpi4py import MPI

from heat import Grid, arguments


def simulate(comm, steps, size):
    grid = Grid(comm, size)
    u = grid.initial_field()
    for _ in range(steps):
        grid.advance(u)
    return grid.checksum(u)


if __name__ == "__main__":
    args = arguments(__doc__)
    checksum = simulate(MPI.COMM_WORLD, args.steps, args.size)
    if checksum is not None:
        print(f"checksum: {checksum}")
