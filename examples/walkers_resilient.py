"""Monte Carlo random walkers that survive rank failures (compare with walkers_plain.py).

    mpickpt run -n 9 -- python examples/walkers_resilient.py --steps 200 --spares 1

The protected state is an array that changes length, a random generator and a dict.
"""

import mpickpt  # first: it bounds MPI_Init, skips MPI_Finalize after failures
from walkers import advance, arguments, checksum, initial, merge, total


def simulate(ctx, steps, size, seed):
    x, rng, tally = initial(ctx.comm, size, seed)
    x = ctx.protect("x", x)
    rng = ctx.protect("rng", rng)
    tally = ctx.protect("tally", tally)
    for _ in ctx.steps(steps):
        x = advance(x, rng, tally, ctx.comm, waitall=mpickpt.waitall)
        ctx["x"] = x  # a new array each step: rebind it
    count = total(x, ctx.comm)
    result = checksum(x, rng, tally, ctx.comm)
    return None if result is None else (result, count)


if __name__ == "__main__":
    args = arguments(__doc__)
    resilient = mpickpt.resilient(
        "parity",
        group=2,
        backups=3,
        spares=args.spares,
        every=args.every,
        spill=args.spill,
        spill_every=args.spill_every,
        redistribute=merge,  # with no spare left, continue on fewer workers
    )
    result = resilient(simulate)(args.steps, args.size, args.seed)
    if result is not None:
        print(f"checksum: {result[0]}\nwalkers: {result[1]}", flush=True)
