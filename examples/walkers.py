"""The physics of the walkers examples: Monte Carlo random walkers in a periodic box.

Each rank owns walkers and a random generator; walkers that leave the rank's slab of the box
migrate to the neighbouring rank. State that matters for a restart: positions (a numpy array
whose length changes), the generator's state and a Python dict of tallies.
"""

from __future__ import annotations

import argparse
import hashlib

import numpy as np
from mpi4py import MPI

STEP = 0.02  # walk step length, as a fraction of the box


def arguments(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--steps", type=int, default=200, help="time steps")
    p.add_argument("--size", type=int, default=20000, help="walkers per rank at the start")
    p.add_argument("--every", type=int, default=10, help="checkpoint every N steps")
    p.add_argument("--spares", type=int, default=1, help="idle spare ranks (the last ones)")
    p.add_argument("--spill", default=None, help="also spill checkpoints to HDF5 in DIR")
    p.add_argument("--spill-every", type=int, default=1, help="spill every K-th checkpoint")
    p.add_argument("--seed", type=int, default=2024)
    return p.parse_args()


def initial(comm: MPI.Comm, n: int, seed: int) -> tuple[np.ndarray, np.random.Generator, dict]:
    rank, size = comm.Get_rank(), comm.Get_size()
    rng = np.random.default_rng([seed, rank])
    x = rng.random((n, 2))
    x[:, 0] = (rank + x[:, 0]) / size  # this rank's slab of the unit box
    return x, rng, {"migrated": 0, "max_speed": 0.0, "steps": 0}


def advance(
    x: np.ndarray,
    rng: np.random.Generator,
    tally: dict,
    comm: MPI.Comm,
    waitall=MPI.Request.waitall,
) -> np.ndarray:
    """Walk every walker one step, then send those that left the slab to the neighbour."""
    rank, size = comm.Get_rank(), comm.Get_size()
    angle = rng.random(len(x)) * 2 * np.pi
    x += STEP * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    x %= 1.0
    owner = np.minimum((x[:, 0] * size).astype(int), size - 1)
    left, right = (rank - 1) % size, (rank + 1) % size
    # walkers of farther ranks hop on towards them (after the job shrank, some are far away)
    out = {left: x[owner < rank], right: x[owner > rank]} if size > 1 else {}
    stay = x[owner == rank] if size > 1 else x
    reqs = [comm.isend(out.get(d, np.empty((0, 2))), d, 11) for d in (left, right) if size > 1]
    got = [comm.recv(source=d, tag=11) for d in (left, right) if size > 1]
    waitall(reqs)
    tally["migrated"] += sum(len(v) for v in out.values())
    tally["steps"] += 1
    tally["max_speed"] = max(tally["max_speed"], float(np.abs(x).max(initial=0.0)))
    # a deterministic order, so that the result does not depend on message timing
    x = np.concatenate([stay, *got])
    return x[np.lexsort((x[:, 1], x[:, 0]))]


def merge(mine: dict, adopted: list[dict]) -> dict:
    """After the job shrank: take over the walkers and tallies of the workers adopted (they
    walk on to their new owners); the generator stays this worker's own."""
    parts = ([mine] if mine else []) + adopted
    x = np.concatenate([p["x"] for p in parts]) if parts else np.empty((0, 2))
    tally = {
        "migrated": sum(p["tally"]["migrated"] for p in parts),
        "max_speed": max((p["tally"]["max_speed"] for p in parts), default=0.0),
        "steps": max((p["tally"]["steps"] for p in parts), default=0),
    }
    rng = mine["rng"] if mine else np.random.default_rng([len(x), len(adopted)])
    return {"x": x[np.lexsort((x[:, 1], x[:, 0]))], "rng": rng, "tally": tally}


def total(x: np.ndarray, comm: MPI.Comm) -> int:
    """Walkers in the whole box (they are never created nor lost)."""
    return int(comm.allreduce(len(x)))


def checksum(x: np.ndarray, rng: np.random.Generator, tally: dict, comm: MPI.Comm) -> str | None:
    parts = comm.gather((x.tobytes(), rng.bit_generator.state["state"], sorted(tally.items())))
    if parts is None:
        return None
    return hashlib.sha256(repr(parts).encode()).hexdigest()
