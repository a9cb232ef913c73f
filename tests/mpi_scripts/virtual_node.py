"""Virtual nodes: ``MPICKPT_RANKS_PER_NODE=2`` at 8 ranks gives 4 failure domains; parity
(group=2, backups=3) puts each owner's backups on the 3 other nodes, so losing any one or two
whole nodes is recoverable and losing three is not.

Usage: ``MPICKPT_RANKS_PER_NODE=2 mpiexec -n 8 python virtual_node.py``
"""

from __future__ import annotations

import os
from itertools import combinations

# _harness first: it sets mpi4py.rc before MPI starts
from _harness import (
    CHUNK,
    Checks,
    make_arrays,
    make_object,
    protect_all,
    run,
    same_bytes,
    unrecoverable_message,
)
from mpi4py import MPI

from mpickpt import Checkpointer
from mpickpt.domains import ENV_RANKS_PER_NODE, failure_domains


def ranks_on(domains: list[int], lost: tuple[int, ...]) -> list[int]:
    """The ranks living in the failure domains ``lost``."""
    return [r for r, d in enumerate(domains) if d in lost]


def body(comm: MPI.Comm, checks: Checks) -> None:
    rank, n = comm.Get_rank(), comm.Get_size()
    per_node = int(os.environ[ENV_RANKS_PER_NODE])
    domains = failure_domains(comm)
    checks.check("domains", domains == [r // per_node for r in range(n)], domains=domains)
    ckpt = Checkpointer(comm, "parity", group=2, backups=3, domains=domains, chunk=CHUNK)
    checks.check(
        "backups-off-node",
        all(domains[b] != domains[rank] for b in ckpt.backups[rank])
        and len({domains[b] for b in ckpt.backups[rank]}) == 3,
        backups=ckpt.backups[rank],
    )
    protect_all(ckpt, make_arrays(rank, 0), make_object(rank, 0))
    ckpt.checkpoint(step=1)
    nodes = sorted(set(domains))
    for k in (1, 2):
        for gone in combinations(nodes, k):
            lost = ranks_on(domains, gone)
            segment = ckpt.rebuild(lost=lost)
            if rank in lost:
                checks.check("node-rebuilt", same_bytes(segment, ckpt.store.local), nodes=gone)
            else:
                checks.check("node-others-get-none", segment is None, nodes=gone)
    for gone in combinations(nodes, 3):
        unrecoverable_message(ckpt, checks, ranks_on(domains, gone), f"nodes {gone}")
    ckpt.close()


if __name__ == "__main__":
    run(body)
