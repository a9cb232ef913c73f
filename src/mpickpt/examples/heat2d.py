"""2-D heat equation that survives rank failures (compare with examples/heat2d_plain.py).

    mpickpt run -n 9 -- python -m mpickpt.examples.heat2d --steps 200 --size 256

It ships inside the package so that ``mpickpt demo`` runs from an installed wheel;
``examples/heat2d.py`` of a checkout runs this module.

Kill any worker at any time (or set MPICKPT_KILL=RANK@STEP[:PHASE]): a spare takes its place
and the printed checksum is the same as without the failure. When to checkpoint: --every N
(steps), --every-seconds S, or --every auto --mtbf 1h (MPICKPT_VERBOSE=1 prints the interval).
"""

import mpickpt  # first: it bounds MPI_Init, skips MPI_Finalize after failures
from mpickpt.examples.heat import Grid, arguments, scheme_params
from mpickpt.faults import maybe_kill


def simulate(ctx, steps, size):
    grid = Grid(ctx.comm, size, waitall=mpickpt.waitall)  # survives a failed peer
    # the initial field only when nothing is restored (it would be overwritten)
    u = ctx.protect("u", grid.initial_field() if ctx.role == "initial" else grid.blank())
    for step in ctx.steps(steps):
        grid.advance(u, inside=lambda step=step: maybe_kill("halo", step))
    return grid.checksum(u)


def main() -> None:
    """Parse the command line, run the simulation, print ``checksum: <hex>`` on worker 0."""
    args = arguments(__doc__)
    resilient = mpickpt.resilient(
        args.scheme,
        spares=args.spares,
        every=args.every,
        every_seconds=args.every_seconds,
        mtbf=args.mtbf,
        spill=args.spill,
        spill_every=args.spill_every,
        keep=args.keep,
        **scheme_params(args),
    )
    checksum = resilient(simulate)(args.steps, args.size)
    if checksum is not None:
        print(f"checksum: {checksum}", flush=True)


if __name__ == "__main__":
    main()
