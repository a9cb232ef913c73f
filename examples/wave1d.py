"""A 1-D wave equation that survives rank failures: the tutorial's example (docs/tutorial.md).

    mpickpt run -n 5 -- python examples/wave1d.py --steps 2000 --spares 1

The string of ``--size`` points is cut into one block per worker. Protected state: two float
arrays (the displacement now and one step ago), an int32 array (how often each point crossed
zero) and a dict of statistics. Rank 0 prints ``checksum: <sha256>`` of the final global state,
which is the same with or without failures and for any number of workers.
"""

import argparse
import hashlib

import numpy as np

import mpickpt  # before mpi4py.MPI: it bounds MPI_Init, skips MPI_Finalize after failures

# isort: split
from mpi4py import MPI

C2 = 0.25  # (c dt / dx)^2 <= 1 keeps the explicit scheme stable


def block(size, comm):
    """The global indices ``[start, stop)`` of this worker's points."""
    base, extra = divmod(size, comm.Get_size())
    rank = comm.Get_rank()
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def exchange(u, comm):
    """Fill the one-point halos u[0] and u[-1] from the neighbours (Irecv/Isend pairs)."""
    rank, size = comm.Get_rank(), comm.Get_size()
    left = rank - 1 if rank > 0 else MPI.PROC_NULL
    right = rank + 1 if rank < size - 1 else MPI.PROC_NULL
    from_left, from_right = np.zeros(1), np.zeros(1)
    requests = [
        comm.Irecv(from_left, left, 1),
        comm.Irecv(from_right, right, 2),
        comm.Isend(u[1:2].copy(), left, 2),
        comm.Isend(u[-2:-1].copy(), right, 1),
    ]
    mpickpt.waitall(requests)  # not MPI.Request.Waitall: it survives a peer that died
    u[0], u[-1] = from_left[0], from_right[0]  # zero at the fixed ends (PROC_NULL)


def simulate(ctx, steps, size):
    start, stop = block(size, ctx.comm)
    x = np.arange(start, stop) / size
    pluck = np.exp(-200 * (x - 0.3) ** 2)  # a Gaussian bump, at rest
    u = np.zeros(stop - start + 2)  # with a halo point on each side
    u[1:-1] = pluck

    # 1. Protect the state. Arrays are kept by reference and restored in place after a
    #    failure; other objects (the dict) come back as the returned value: use it.
    u = ctx.protect("u", u)
    u_old = ctx.protect("u_old", u.copy())
    crossings = ctx.protect("crossings", np.zeros(stop - start, dtype=np.int32))
    stats = ctx.protect("stats", {"max_amplitude": 0.0, "energy": []})

    # 2. The time-step loop: ctx.steps resumes after the last committed step
    for step in ctx.steps(steps):
        exchange(u, ctx.comm)  # all communication goes through ctx.comm
        inner = u[1:-1]
        new = 2 * inner - u_old[1:-1] + C2 * (u[:-2] - 2 * inner + u[2:])
        crossings += (np.sign(new) != np.sign(inner)) & (inner != 0)
        u_old[...] = u  # in place: the protected arrays must stay the same objects
        u[1:-1] = new
        stats["max_amplitude"] = max(stats["max_amplitude"], float(np.abs(new).max()))
        if step % 100 == 0:
            stats["energy"].append(float(np.sum(new * new)))

    return result(ctx.comm, u, crossings, stats)


def result(comm, u, crossings, stats):
    """sha256 of the global state, on worker 0 (None elsewhere), in global order."""
    parts = comm.gather((u[1:-1].copy(), crossings.copy(), stats), 0)
    if parts is None:
        return None
    digest = hashlib.sha256(np.concatenate([f for f, _, _ in parts]).tobytes())
    digest.update(np.concatenate([c for _, c, _ in parts]).tobytes())
    digest.update(repr(max(s["max_amplitude"] for _, _, s in parts)).encode())
    energy = [sum(e) for e in zip(*(s["energy"] for _, _, s in parts), strict=True)]
    digest.update(" ".join(f"{e:.9e}" for e in energy).encode())  # sums: rounding differs
    return digest.hexdigest()


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--size", type=int, default=4000, help="points on the string")
    p.add_argument("--every", type=int, default=50, help="checkpoint every N steps")
    p.add_argument("--spares", type=int, default=1, help="idle spare ranks (the last ones)")
    p.add_argument("--spill", default=None, help="also write checkpoints to HDF5 in DIR")
    args = p.parse_args()
    protected = mpickpt.resilient(
        "parity", group=2, backups=3, spares=args.spares, every=args.every, spill=args.spill
    )(simulate)
    checksum = protected(args.steps, args.size)
    if checksum is not None:
        print(f"checksum: {checksum}", flush=True)


if __name__ == "__main__":
    main()
