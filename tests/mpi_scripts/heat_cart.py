"""The heat2d physics on a Cartesian communicator the application derives from ``ctx.comm``,
with a halo exchange in *blocking* ``Send``/``Recv`` (no ``mpickpt.waitall``).

    python heat_cart.py --steps 40 --size 48 --every 5 --spares 1

The workers halo-exchange on ``cart = ctx.comm.Create_cart(...)``, a communicator mpickpt
never uses itself: when a worker dies, its neighbours' ``Recv`` fails, they leave for the
recovery, and the other workers, blocked in ``Recv`` from a neighbour that left, must be woken
by mpickpt revoking ``cart`` too. Prints the same ``checksum:`` as ``examples/heat2d_plain.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import mpickpt  # first: it bounds MPI_Init, skips MPI_Finalize after failures

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from mpi4py import MPI  # noqa: E402

from heat import Grid, arguments, scheme_params  # noqa: E402
from mpickpt.faults import maybe_kill  # noqa: E402


class CartGrid(Grid):
    """:class:`heat.Grid` on a Cartesian communicator, exchanging with blocking calls."""

    def __init__(self, comm: MPI.Intracomm, size: int) -> None:
        dims = MPI.Compute_dims(comm.Get_size(), 2)
        cart = comm.Create_cart(dims, periods=[False, False], reorder=False)
        super().__init__(cart, size)

    def exchange(self, u: np.ndarray, inside=None) -> None:
        for axis, (lo_send, hi_send, lo_recv, hi_recv) in enumerate(
            (
                (u[1, 1:-1], u[-2, 1:-1], u[0, 1:-1], u[-1, 1:-1]),
                (u[1:-1, 1], u[1:-1, -2], u[1:-1, 0], u[1:-1, -1]),
            )
        ):
            lo, hi = self.comm.Shift(axis, 1)
            coord = (self.cy, self.cx)[axis]
            # even coordinates send first, odd ones receive first: no deadlock without buffering
            for send_first in (coord % 2 == 0, coord % 2 == 1):
                if send_first:
                    for peer, edge in ((lo, lo_send), (hi, hi_send)):
                        self.comm.Send(np.ascontiguousarray(edge), peer, 3)
                else:
                    for peer, halo in ((hi, hi_recv), (lo, lo_recv)):
                        buf = np.empty_like(halo)
                        self.comm.Recv(buf, peer, 3)
                        if peer != MPI.PROC_NULL:
                            halo[...] = buf
            if inside is not None:
                inside()


def simulate(ctx: mpickpt.Context, steps: int, size: int) -> str | None:
    grid = CartGrid(ctx.comm, size)
    u = ctx.protect("u", grid.initial_field())
    for step in ctx.steps(steps):
        grid.advance(u, inside=lambda step=step: maybe_kill("halo", step))
    return grid.checksum(u)


if __name__ == "__main__":
    args = arguments(__doc__)
    run = mpickpt.resilient(
        args.scheme, spares=args.spares, every=args.every, **scheme_params(args)
    )
    checksum = run(simulate)(args.steps, args.size)
    if checksum is not None:
        print(f"checksum: {checksum}", flush=True)
