"""Sub communicators of a Cartesian communicator, freed in a ``finally`` as libraries do.

    python sub_free.py --steps 40 --spares 1        (4 workers + spares; prints ``checksum:``)

The 2 x 2 workers reduce along their column, then along their row, on ``cart.Sub(...)``
communicators derived from ``ctx.comm``, and free them (and ``cart``) in a ``finally``, as
``try: ... finally: fft.destroy()`` does. When worker 3 dies between the two reductions,
worker 2 sees it in its row reduction and frees its row and column communicators on its way
out of the function; worker 0, which reduces with worker 2 over their column next, is woken
only if the column communicator was revoked before it was freed.
"""

from __future__ import annotations

import argparse
import hashlib

import numpy as np

import mpickpt  # first: it bounds MPI_Init, skips MPI_Finalize after failures
from mpickpt.faults import maybe_kill


def simulate(ctx: mpickpt.Context, steps: int) -> str | None:
    cart = ctx.comm.Create_cart([2, 2], periods=[False, False])
    rows, cols = cart.Sub([False, True]), cart.Sub([True, False])
    x = ctx.protect("x", np.arange(8.0) + ctx.rank)
    total = np.empty_like(x)
    try:
        for step in ctx.steps(steps):
            cols.Allreduce(x, total)
            maybe_kill("halo", step)
            rows.Allreduce(total, x)
            x *= 0.25
            x += step
        everyone = ctx.comm.gather(x.tobytes())
        return hashlib.sha256(b"".join(everyone)).hexdigest() if everyone else None
    finally:
        for comm in (rows, cols, cart):
            comm.Free()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--spares", type=int, default=1)
    args = parser.parse_args()
    run = mpickpt.resilient("mirror", spares=args.spares, every=5)
    checksum = run(simulate)(args.steps)
    if checksum is not None:
        print(f"checksum: {checksum}", flush=True)
