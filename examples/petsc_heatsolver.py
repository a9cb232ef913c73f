"""The 2-D heat equation with PETSc (petsc4py), shared by petsc_heat_plain.py and petsc_heat.py.

Backward Euler on a DMDA: one KSP solve (CG + Jacobi) of ``(I + dt A) u_new = u`` per step,
where ``A`` is the 5-point Laplacian with zero boundary values; the initial field is a hot
square in the middle.
"""

from __future__ import annotations

import argparse
import hashlib

import numpy as np
from petsc4py import PETSc


class HeatSolver:
    """The grid, the matrix and the solver, on ``comm``; ``u`` is the field (a PETSc Vec)."""

    def __init__(self, comm, size: int, dt: float = 0.1) -> None:
        self.da = PETSc.DMDA().create([size, size], stencil_width=1, comm=comm)
        self.u = self.da.createGlobalVec()
        self.rhs = self.u.duplicate()
        self.ksp = PETSc.KSP().create(comm=comm)
        self.ksp.setOperators(self._matrix(size, dt))
        self.ksp.setType("cg")
        self.ksp.getPC().setType("jacobi")
        self.ksp.setTolerances(rtol=1e-12)
        (x0, x1), (y0, y1) = self.da.getRanges()
        x, y = np.meshgrid(np.arange(x0, x1), np.arange(y0, y1), indexing="ij")
        hot = (abs(x - size / 2) < size / 4) & (abs(y - size / 2) < size / 4)
        self.u.getArray()[:] = np.where(hot, 1.0, 0.0).ravel(order="F")

    def _matrix(self, size: int, dt: float) -> PETSc.Mat:
        matrix = self.da.createMat()
        row, col = PETSc.Mat.Stencil(), PETSc.Mat.Stencil()
        (x0, x1), (y0, y1) = self.da.getRanges()
        scale = dt * size * size
        for j in range(y0, y1):
            for i in range(x0, x1):
                row.index = (i, j)
                col.index = (i, j)
                matrix.setValueStencil(row, col, 1 + 4 * scale)
                for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                    if 0 <= i + di < size and 0 <= j + dj < size:
                        col.index = (i + di, j + dj)
                        matrix.setValueStencil(row, col, -scale)
        matrix.assemble()
        return matrix

    def step(self) -> None:
        """One time step: u <- (I + dt A)^-1 u."""
        self.u.copy(self.rhs)
        self.ksp.solve(self.rhs, self.u)

    def checksum(self) -> str | None:
        """On rank 0: a digest of the whole field (rounded: 10 decimals), else None."""
        scatter, whole = PETSc.Scatter.toZero(self.u)
        scatter.scatter(self.u, whole)
        digest = None
        if self.u.getComm().getRank() == 0:
            digest = hashlib.sha256(np.round(whole.getArray(), 10).tobytes()).hexdigest()
        scatter.destroy()
        whole.destroy()
        return digest


def arguments(doc: str | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--every", type=int, default=10, help="checkpoint every N steps")
    parser.add_argument("--spares", type=int, default=1)
    return parser.parse_args()
