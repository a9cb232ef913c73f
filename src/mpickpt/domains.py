"""Failure domains: which ranks go down together (a node, or a declared virtual node)."""

from __future__ import annotations

from collections.abc import Sequence

from mpi4py import MPI

from .config import config
from .log import MpickptWarning, warn

ENV_RANKS_PER_NODE = "MPICKPT_RANKS_PER_NODE"


class DomainWarning(MpickptWarning):
    """The placement cannot cover the loss of a whole node."""


def failure_domains(world: MPI.Comm) -> list[int]:
    """The failure domain of every rank of ``world`` (collective; same list everywhere).

    ``MPICKPT_RANKS_PER_NODE=k`` declares virtual nodes of ``k`` consecutive ranks (tests on one
    host). Otherwise ranks that share memory form a domain; if that is the whole job (a laptop,
    a CI runner), every rank becomes its own domain and a warning says a node loss is not
    covered.
    """
    rank, size = world.Get_rank(), world.Get_size()
    k = config().ranks_per_node
    if k:
        return [r // k for r in range(size)]
    node = world.Split_type(MPI.COMM_TYPE_SHARED, key=rank)
    leader = node.allreduce(rank, op=MPI.MIN)
    node.Free()
    domains = world.allgather(leader)
    if len(set(domains)) == 1 and size > 1:
        if rank == 0:
            warn(
                "all ranks share one node: using one failure domain per rank, so the loss of "
                f"the whole node is not covered (set {ENV_RANKS_PER_NODE} to declare virtual "
                "nodes)",
                DomainWarning,
                stacklevel=2,
            )
        return list(range(size))
    return domains


def warn_if_spread(domains: Sequence[int], used: Sequence[int]) -> None:
    """Warn (call it on one process) when the scheme places pieces over ``used`` domains, one
    per rank, because the workers' failure ``domains`` are too few or too uneven for it
    (:meth:`~mpickpt.schemes.Scheme.layout_domains`)."""
    if list(used) != list(domains):
        warn(
            f"the workers' {len(set(domains))} failure domains (nodes) are too few or too uneven "
            "for the scheme to keep its pieces on other domains: using one failure domain per "
            "rank, so the loss of a whole node is not covered in memory (a relaunch from the "
            "spill is)",
            DomainWarning,
            stacklevel=2,
        )
