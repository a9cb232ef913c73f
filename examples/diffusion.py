"""The physics of the Devito examples: 2-D diffusion, written with Devito.

Shared by ``devito_diffusion_plain.py`` (plain Devito) and ``devito_diffusion.py`` (with
mpickpt), so that the two files differ only by what adopting mpickpt costs. Needs
``DEVITO_MPI=1`` to decompose the grid (the examples set it if it is unset).
"""

from __future__ import annotations

import argparse
import hashlib
import os

import numpy as np

os.environ.setdefault("DEVITO_MPI", "1")  # before Devito reads its configuration
os.environ.setdefault("DEVITO_LANGUAGE", "C")  # one thread per rank: ranks share the cores
os.environ.setdefault("DEVITO_LOGGING", "ERROR")

from devito import Eq, Grid, Operator, TimeFunction  # noqa: E402

ALPHA = 0.2  # diffusion number dt * D / h^2; <= 0.25 keeps the explicit scheme stable


def arguments(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--steps", type=int, default=50, help="Operator.apply calls")
    p.add_argument("--per-apply", type=int, default=10, help="time steps in one apply")
    p.add_argument("--size", type=int, default=256, help="global grid is SIZE x SIZE")
    p.add_argument("--every", type=int, default=5, help="checkpoint every N applies")
    p.add_argument("--spares", type=int, default=1, help="idle spare ranks (the last ones)")
    return p.parse_args()


def field(comm, size: int) -> TimeFunction:
    """The field on a grid decomposed over ``comm``, with its initial value at time 0."""
    grid = Grid(shape=(size, size), extent=(1.0, 1.0), comm=comm)
    u = TimeFunction(name="u", grid=grid, space_order=2)
    y, x = np.meshgrid(np.arange(size) / size, np.arange(size) / size, indexing="ij")
    value = np.sin(3 * np.pi * x) * np.cos(2 * np.pi * y) + 2.0 * (
        (x - 0.3) ** 2 + (y - 0.6) ** 2 < 0.01
    )
    u.data[0] = value.astype(np.float32)  # global indexing: each rank keeps its block
    return u


def operator(u: TimeFunction) -> Operator:
    """One explicit diffusion step for ``u`` (the same spacing in x and y)."""
    h = u.grid.spacing_symbols[0]
    return Operator([Eq(u.forward, u + ALPHA * h * h * u.laplace)], name="diffusion")


def times(step: int, per_apply: int) -> dict[str, int]:
    """The time steps of apply number ``step``: the arguments of ``Operator.apply``."""
    return {"time_m": step * per_apply, "time_M": (step + 1) * per_apply - 1}


def checksum(u: TimeFunction, steps: int, per_apply: int) -> str | None:
    """sha256 of the global field after ``steps`` applies, on rank 0 (collective)."""
    field = u.data_gather(rank=0)
    if field is None or np.size(field) == 0:
        return None
    final = np.ascontiguousarray(field[(steps * per_apply) % u.time_size])
    return hashlib.sha256(final.tobytes()).hexdigest()
