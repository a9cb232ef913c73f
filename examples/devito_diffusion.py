"""2-D diffusion with Devito that survives rank failures (compare with
devito_diffusion_plain.py; needs ``pip install mpickpt[devito]``).

    mpickpt run -n 5 -- python examples/devito_diffusion.py --steps 50 --spares 1

Kill any worker at any time (or set MPICKPT_KILL=RANK@STEP): a spare takes its place and the
printed checksum is the same as without the failure, and as on one rank.
"""

import mpickpt  # first: it bounds MPI_Init, skips MPI_Finalize after failures
from diffusion import arguments, checksum, field, operator, times
from mpickpt.integrations import devito as resilient_devito


def simulate(ctx, steps, per_apply, size):
    u = field(ctx.comm, size)  # the Grid on ctx.comm, inside the protected function
    resilient_devito.protect(ctx, "u", u)  # every time slot, restored in place
    op = resilient_devito.operator(ctx, "diffusion", lambda: operator(u))  # kept on recovery
    for step in ctx.steps(steps):
        resilient_devito.apply(ctx, op, u=u, **times(step, per_apply))  # failure: recovery
    return checksum(u, steps, per_apply)


if __name__ == "__main__":
    args = arguments(__doc__)
    run = mpickpt.resilient("parity", group=2, backups=3, spares=args.spares, every=args.every)
    result = run(simulate)(args.steps, args.per_apply, args.size)
    if result is not None:
        print(f"checksum: {result}", flush=True)
