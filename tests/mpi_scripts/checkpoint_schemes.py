"""Checkpoint every rank's state with one scheme, then rebuild it from the other ranks' pieces.

Usage: ``mpiexec -n N python checkpoint_schemes.py {parity,mirror,stripe,rs}`` with N = 1 or
N >= 4 (parity uses group=2, backups=3, so it needs 4 ranks; rs uses group=2, parity=2,
backups=4: 5 ranks). At one rank there is nobody to hold pieces: the checkpoint is kept and
restored locally.
"""

from __future__ import annotations

import sys
from itertools import combinations

# _harness first: it sets mpi4py.rc before MPI starts
from _harness import (
    CHUNK,
    Checks,
    check_restore,
    make_arrays,
    make_object,
    protect_all,
    run,
    same_bytes,
    segment_holds,
    unrecoverable_message,
    update_in_place,
)
from mpi4py import MPI

from mpickpt import Checkpointer

PARAMS = {
    "parity": {"group": 2, "backups": 3},
    "mirror": {"copies": 2},
    "stripe": {"backups": 2},
    "rs": {"group": 2, "parity": 2, "backups": 4},
}


def within_tolerance(ckpt: Checkpointer, owner: int) -> list[list[int]]:
    """Losses the scheme must survive: the owner with every choice of ``tolerance`` of its
    backups (with tolerance 0, the owner alone)."""
    chosen = combinations(ckpt.backups[owner], ckpt.scheme.tolerance)
    return [[owner, *c] for c in chosen]


def body(comm: MPI.Comm, checks: Checks) -> None:
    name = sys.argv[1]
    rank, n = comm.Get_rank(), comm.Get_size()
    ckpt = Checkpointer(comm, name, chunk=CHUNK, **PARAMS[name])
    arrays, obj = make_arrays(rank, 0), make_object(rank, 0)
    expected = {k: a.copy() for k, a in arrays.items()}
    protect_all(ckpt, arrays, obj)

    checks.check("version", ckpt.checkpoint(step=10) == 0 and ckpt.version == 0)
    local = ckpt.store.local
    checks.check("local-segment", local is not None and segment_holds(local, arrays, obj))
    if n == 1:
        check_restore(ckpt, checks, local.copy(), arrays, expected, obj, step=10)
        return

    # (a) every rank's segment, rebuilt from the other ranks' pieces alone
    segment = ckpt.rebuild()
    checks.check("rebuild-all", same_bytes(segment, local))
    check_restore(ckpt, checks, segment, arrays, expected, obj, step=10)

    # (b) losses within tolerance: every lost rank gets its exact segment back
    for owner in range(n):
        for lost in within_tolerance(ckpt, owner):
            segment = ckpt.rebuild(lost=lost)
            if rank in lost:
                checks.check("rebuild-lost", same_bytes(segment, local), owner=owner, lost=lost)
            else:
                checks.check("rebuild-others-get-none", segment is None, lost=lost)

    # (c) the owner and all its backups: the same UnrecoverableError on every rank
    for owner in range(n):
        unrecoverable_message(ckpt, checks, [owner, *ckpt.backups[owner]], f"owner {owner}")

    # (e) a second checkpoint replaces the first everywhere
    new, obj = make_arrays(rank, 1), make_object(rank, 1)
    update_in_place(ckpt, arrays, new, obj)
    checks.check("second-version", ckpt.checkpoint(step=20) == 1)
    checks.check("one-version-held", sorted(ckpt.store.versions) == [1])
    segment = ckpt.rebuild()
    checks.check(
        "second-rebuild", same_bytes(segment, ckpt.store.local) and segment_holds(segment, new, obj)
    )
    ckpt.close()


if __name__ == "__main__":
    run(body)
