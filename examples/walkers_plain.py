"""Monte Carlo random walkers with plain MPI: a lost rank ends the job.

mpiexec -n 8 python examples/walkers_plain.py --steps 200
"""

from mpi4py import MPI

from walkers import advance, arguments, checksum, initial, total


def simulate(comm, steps, size, seed):
    x, rng, tally = initial(comm, size, seed)
    for _ in range(steps):
        x = advance(x, rng, tally, comm)
    count = total(x, comm)
    result = checksum(x, rng, tally, comm)
    return None if result is None else (result, count)


if __name__ == "__main__":
    args = arguments(__doc__)
    result = simulate(MPI.COMM_WORLD, args.steps, args.size, args.seed)
    if result is not None:
        print(f"checksum: {result[0]}\nwalkers: {result[1]}")
