"""The physics of the heat2d examples: a 2-D heat equation on a block-decomposed grid.

Shared by ``examples/heat2d_plain.py`` (plain MPI) and ``heat2d.py`` (with mpickpt), so that
the two files differ only by what adopting mpickpt costs.
"""

from __future__ import annotations

import argparse
import hashlib

import numpy as np
from mpi4py import MPI

from mpickpt.schemes.options import add_scheme_options, scheme_params

__all__ = ["ALPHA", "Grid", "arguments", "scheme_params"]

ALPHA = 0.2  # diffusion number; <= 0.25 keeps the explicit scheme stable


def arguments(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--steps", type=int, default=200, help="time steps")
    p.add_argument("--size", type=int, default=256, help="global grid is SIZE x SIZE")
    p.add_argument(
        "--every", type=_every, default=None, help="checkpoint every N steps (10), or 'auto'"
    )
    p.add_argument(
        "--every-seconds", default=None, help="checkpoint every S of computation ('90', '2min')"
    )
    p.add_argument("--mtbf", default=None, help="mean time between failures ('1h'), for auto")
    p.add_argument("--spares", type=int, default=1, help="idle spare ranks (the last ones)")
    p.add_argument("--spill", default=None, help="also spill checkpoints to HDF5 in DIR")
    p.add_argument("--spill-every", type=int, default=1, help="spill every K-th checkpoint")
    p.add_argument("--keep", type=int, default=2, help="spilled versions kept on disk")
    add_scheme_options(p)  # the library's defaults; parity(3, 4) needs 5 workers
    return p.parse_args()


def _every(text: str) -> int | str:
    """``--every``: a number of steps, or ``auto`` (mpickpt checks the value)."""
    return text if text == "auto" else int(text)


class Grid:
    """This rank's block of the global ``size x size`` grid, with a one-cell halo."""

    def __init__(self, comm: MPI.Comm, size: int, waitall=MPI.Request.Waitall) -> None:
        self.comm = comm
        self.waitall = waitall
        self.py, self.px = MPI.Compute_dims(comm.Get_size(), 2)
        rank = comm.Get_rank()
        self.cy, self.cx = divmod(rank, self.px)
        self.rows = self._split(size, self.py, self.cy)
        self.cols = self._split(size, self.px, self.cx)
        self.size = size

    @staticmethod
    def _split(n: int, parts: int, i: int) -> slice:
        base, extra = divmod(n, parts)
        start = i * base + min(i, extra)
        return slice(start, start + base + (i < extra))

    def neighbour(self, dy: int, dx: int) -> int:
        y, x = self.cy + dy, self.cx + dx
        if 0 <= y < self.py and 0 <= x < self.px:
            return y * self.px + x
        return MPI.PROC_NULL

    def initial_field(self) -> np.ndarray:
        """A deterministic field (independent of the decomposition), with a zero halo."""
        y = np.arange(self.rows.start, self.rows.stop)[:, None] / self.size
        x = np.arange(self.cols.start, self.cols.stop)[None, :] / self.size
        u = np.zeros((y.shape[0] + 2, x.shape[1] + 2))
        u[1:-1, 1:-1] = np.sin(3 * np.pi * x) * np.cos(2 * np.pi * y) + 2.0 * (
            (x - 0.3) ** 2 + (y - 0.6) ** 2 < 0.01
        )
        return u

    def blank(self) -> np.ndarray:
        """A field of this block's shape, for state that a restore fills in."""
        return np.zeros(
            (self.rows.stop - self.rows.start + 2, self.cols.stop - self.cols.start + 2)
        )

    def exchange(self, u: np.ndarray, inside=None) -> None:
        """Halo exchange with the four neighbours on ``self.comm``."""
        for dy, dx, send, recv in (
            # send my edge facing (dy, dx); receive the opposite neighbour's into my halo
            (-1, 0, u[1, 1:-1], u[-1, 1:-1]),
            (1, 0, u[-2, 1:-1], u[0, 1:-1]),
            (0, -1, u[1:-1, 1], u[1:-1, -1]),
            (0, 1, u[1:-1, -2], u[1:-1, 0]),
        ):
            buf = np.empty_like(recv)
            # Irecv/Isend, not Sendrecv: Open MPI 5.0's MPI_Sendrecv can crash when the peer
            # has just died; the non-blocking pair returns an error instead
            reqs = [
                self.comm.Irecv(buf, self.neighbour(-dy, -dx), 7),
                self.comm.Isend(np.ascontiguousarray(send), self.neighbour(dy, dx), 7),
            ]
            self.waitall(reqs)
            if self.neighbour(-dy, -dx) != MPI.PROC_NULL:
                recv[...] = buf
            if inside is not None:
                inside()

    def advance(self, u: np.ndarray, inside=None) -> None:
        """One explicit step: halo exchange, then the 5-point update (fixed zero boundary)."""
        self.exchange(u, inside)
        c = u[1:-1, 1:-1]
        lap = u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:] - 4 * c
        c += ALPHA * lap

    def checksum(self, u: np.ndarray) -> str | None:
        """sha256 of the global interior, assembled on rank 0 in global order."""
        blocks = self.comm.gather((self.rows.start, self.cols.start, u[1:-1, 1:-1].copy()), 0)
        if blocks is None:
            return None
        g = np.empty((self.size, self.size))
        for r0, c0, b in blocks:
            g[r0 : r0 + b.shape[0], c0 : c0 + b.shape[1]] = b
        return hashlib.sha256(g.tobytes()).hexdigest()
