"""2-D diffusion with Devito on plain MPI (compare with devito_diffusion.py).

mpiexec -n 4 python examples/devito_diffusion_plain.py --steps 50 --size 256
"""

from mpi4py import MPI

from diffusion import arguments, checksum, field, operator, times


def simulate(comm, steps, per_apply, size):
    u = field(comm, size)
    op = operator(u)
    for step in range(steps):
        op.apply(u=u, **times(step, per_apply))
    return checksum(u, steps, per_apply)


if __name__ == "__main__":
    args = arguments(__doc__)
    result = simulate(MPI.COMM_WORLD, args.steps, args.per_apply, args.size)
    if result is not None:
        print(f"checksum: {result}", flush=True)
