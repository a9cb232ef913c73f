"""Checkpoint traffic per rank: the counters of ``Checkpointer.stats`` for each checkpoint.

Usage: ``mpiexec -n N python stream_stats.py {parity,mirror,stripe,rs,xorset} [reprotect]``.

Every rank holds the same amount of state, so that the traffic of a rank can be compared
across N. The segment is larger than a chunk and a chunk larger than the stream's fused
block: the blocks, the staging ring and the recycled receive buffers are all exercised. After
every checkpoint each rank prints the counters' increase, and every segment is rebuilt from
the other ranks' pieces and compared with its owner's copy (pieces and checksums are right).
The third checkpoint has a larger segment (receive buffers of a new size).

With ``reprotect``, rank 1 then drops every piece it holds (as a spare that took a dead
rank's place holds none) and all ranks call ``reprotect``: its traffic is printed (with
the ranks it backs up, or its xorset set), and every segment must again be rebuilt from the
others' pieces.
"""

from __future__ import annotations

import sys

import numpy as np
from _harness import Checks, run, same_bytes
from mpi4py import MPI

from mpickpt import Checkpointer

PARAMS = {
    "parity": {"group": 2, "backups": 3},
    "mirror": {"copies": 2},
    "stripe": {"backups": 2},
    "rs": {"group": 2, "parity": 1, "backups": 3},
    "xorset": {"group": 3},
}
CHUNK = 512 << 10  # larger than stream.BLOCK (256 KiB): several blocks per chunk


def body(comm: MPI.Comm, checks: Checks) -> None:
    scheme = sys.argv[1]
    rank = comm.Get_rank()
    ckpt = Checkpointer(comm, scheme, chunk=CHUNK, **PARAMS[scheme])
    u = np.random.default_rng(rank).random(300_000)  # 2.4 MB
    ckpt.protect("u", u)
    ckpt.protect("step", {"rank": rank})
    for i in range(3):
        if i == 2:
            ckpt.protect("more", np.arange(20_000.0) + rank)
        u[i] += 1.0
        before = dict(ckpt.stats)
        ckpt.checkpoint(i)
        delta = {k: ckpt.stats[k] - before[k] for k in ckpt.stats if k not in ("seconds",)}
        seg = ckpt.local.nbytes  # the segment as checkpointed (its manifest included)
        checks.emit(
            event="stats", scheme=scheme, checkpoint=i, size=comm.Get_size(), seg=seg, **delta
        )
        rebuilt = ckpt.rebuild()
        checks.check("rebuilt", same_bytes(rebuilt, ckpt.local), checkpoint=i)
    if sys.argv[2:] == ["reprotect"]:
        if rank == 1:
            ckpt.store.versions = {ckpt.version: {}}
        before = dict(ckpt.stats)
        ckpt.reprotect(3)
        delta = {k: ckpt.stats[k] - before[k] for k in ckpt.stats}
        if scheme == "xorset":  # sets instead of owners and backups
            where = {"members": getattr(ckpt.stream, "members", [])}
        else:
            where = {"owners": ckpt.owners[rank], "backups": ckpt.backups[rank]}
        checks.emit(event="reprotect", **where, **delta)
        rebuilt = ckpt.rebuild()
        checks.check("rebuilt-after-reprotect", same_bytes(rebuilt, ckpt.local))
    ckpt.close()


run(body)
