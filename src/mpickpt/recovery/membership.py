"""Who is who in a job: ``world`` (every process, workers first, spares last), the logical id
of each worker, the idle spares; how spares wait and are released, and how a process exits."""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from mpi4py import MPI

from ..domains import failure_domains
from ..errors import ConfigError, ProcessFailure
from ..tags import TAG_RELEASE
from ..transport import acknowledged, agree_over_failures, keep_on_failure, run_and_agree
from .ending import install

SPARE_POLL = 0.005  # seconds between tests of an idle spare's receive (~0 CPU while idle)


def _check_size(size: int, spares: int, min_workers: int) -> None:
    """:class:`ConfigError` unless ``size`` processes leave enough workers beside ``spares``:
    one without spares, else the scheme's ``min_workers`` (a spare rebuilds a worker from the
    others' pieces). The advice, followed, works."""
    needed = max(min_workers, 2) if spares else 1
    if size - spares >= needed:
        return
    fewer = ""
    if size == 1:
        fewer = " or run without spares (spares=0: one worker, its local copy only)"
    elif size - min_workers >= 0:
        fewer = f" or ask for at most {size - min_workers} spare(s)"
    raise ConfigError(
        f"{spares} spare(s) need {needed} or more workers beside them (a spare is rebuilt from "
        f"the pieces on the other workers), but the job has {size} process(es); launch "
        f"mpiexec -n {needed + spares} or more{fewer}"
    )


class Membership:
    """The processes of one job: the first ``size - spares`` are workers, the rest idle spares.

    ``logical`` is this process's worker id (``None`` for an idle spare); ``world`` shrinks
    with every recovery.
    """

    def __init__(self, spares: int, min_workers: int = 2) -> None:
        size = MPI.COMM_WORLD.Get_size()
        self.nworkers = size - spares
        _check_size(size, spares, min_workers)
        self.exit_code = 0  # for idle spares: how the workers ended the job
        self.lost_at_start = False
        self.world, final, self.domains, ranks, where = self._join()
        # (host, pid) of every COMM_WORLD rank, for the watchdog's message
        self.world_rank = MPI.COMM_WORLD.Get_rank()
        self.peers = [("?", 0)] * MPI.COMM_WORLD.Get_size()
        for r, at in zip(ranks, where, strict=True):
            self.peers[r] = at
        # workers are the first COMM_WORLD ranks, spares the last; a process lost at start-up
        # leaves a hole that the first recovery fills
        self.spare_procs = [i for i, r in enumerate(ranks) if r >= self.nworkers]
        me = MPI.COMM_WORLD.Get_rank()
        self.logical: int | None = me if me < self.nworkers else None
        self.domain = self.domains[self.world.Get_rank()]
        self.ending = install(final)

    def _join(self) -> tuple[MPI.Intracomm, MPI.Intracomm, list[int], list[int], list[Any]]:
        """Collective: the job's own ``world``, a communicator for its final agreement, the
        failure domain and the ``COMM_WORLD`` rank of each of its processes. A process lost
        meanwhile is left out (shrink, and again)."""
        base: MPI.Intracomm = MPI.COMM_WORLD
        while True:
            try:
                return run_and_agree(base, functools.partial(_join, base), "start-up")
            except ProcessFailure:
                self.lost_at_start = True
                with contextlib.suppress(MPI.Exception):
                    base.Revoke()
                base = base.Shrink()  # type: ignore[assignment]
                base.Set_errhandler(MPI.ERRORS_RETURN)

    @property
    def is_worker(self) -> bool:
        return self.logical is not None

    def workers_comm(self) -> MPI.Comm:
        """Collective over ``world``: the workers' communicator (``COMM_NULL`` on spares)."""
        key = self.logical if self.logical is not None else 0
        comm = self.world.Split(0 if self.logical is not None else MPI.UNDEFINED, key=key)
        if comm != MPI.COMM_NULL:
            # Every worker has finished creating it before any can revoke it: Open MPI 5.0
            # crashes (ompi_comm_revoke_local) on a revoke that reaches a process still inside
            # the split, as when the protected function raises at once on every worker.
            comm.Set_errhandler(MPI.ERRORS_RETURN)
            with contextlib.suppress(MPI.Exception):
                comm.Agree(1)
        return comm

    # -- idle spares ------------------------------------------------------------------------

    def wait_as_spare(self, recover: Callable[[], str]) -> str:
        """Idle until needed: the role ``recover()`` returns once promoted to a worker, or
        ``finished`` at the end.

        An idle spare waits in a receive from any process, polled with a short sleep (no CPU).
        Not in a non-blocking barrier: when a peer dies, Open MPI's non-blocking collectives
        abandon requests that later abort the process ("Send error after request freed").
        It joins a recovery when the workers start one (they revoke ``world``), not when it
        sees a process fail: a worker lost after the job's end was agreed needs no recovery,
        and the spare must then still take the release. Only when every worker is gone does
        it recover on its own.
        """
        req: MPI.Request | None = None
        while True:
            if req is None:
                code = np.full(1, -1, dtype=np.int64)
                req = self.world.Irecv(code, MPI.ANY_SOURCE, TAG_RELEASE)
            try:
                with keep_on_failure([req]):
                    while not req.Test():
                        time.sleep(SPARE_POLL)
                self.exit_code = int(code[0])  # how the workers ended the job
                return "finished"
            except MPI.Exception as e:
                # ERR_PROC_FAILED_PENDING leaves the receive posted: keep waiting on it. A new
                # one beside it would never match, as the old one takes the release message.
                if e.Get_error_class() != MPI.ERR_PROC_FAILED_PENDING:
                    req = None
                if e.Get_error_class() != MPI.ERR_REVOKED and self._workers_left():
                    continue
                req = None
                role = recover()
                if role != "spare":
                    return role

    def _workers_left(self) -> bool:
        """An idle spare saw a failure: acknowledge it; whether some worker is still alive (to
        revoke ``world`` when the workers recover, or to release the spares)."""
        try:
            self.world.Ack_failed()
            dead = acknowledged(self.world)
        except MPI.Exception:
            return False  # revoked meanwhile: the workers are recovering
        spares = set(self.spare_procs)
        return any(r not in dead and r not in spares for r in range(self.world.Get_size()))

    def world_ranks(self) -> list[int]:
        """The ``COMM_WORLD`` ranks of the processes of ``world`` (local: no communication)."""
        group = self.world.Get_group()
        ranks = range(group.Get_size())
        return MPI.Group.Translate_ranks(group, list(ranks), MPI.COMM_WORLD.Get_group())

    def worker_processes(self) -> set[int]:
        """The workers' ranks in the communicator of the final agreement (``COMM_WORLD``'s)."""
        workers = [i for i in range(self.world.Get_size()) if i not in self.spare_procs]
        final = self.ending.final.Get_group()
        return set(MPI.Group.Translate_ranks(self.world.Get_group(), workers, final))

    def release_spares(self, workers: MPI.Comm, code: int = 0) -> None:
        """Workers, collectively over ``workers``, once the job is over: let the idle spares
        return, telling them the job's exit code. Worker 0 sends it; a worker lost meanwhile
        needs no recovery (the job is done), but if worker 0 is, the lowest worker left sends
        it again (a spare takes the first; a spare that died takes none)."""
        if self.logical == 0:
            self._send_release(code)
        agreed = agree_over_failures(workers, 1)
        dead = agreed[1] if agreed is not None else set()
        if 0 in dead and workers.Get_rank() == min(set(range(workers.Get_size())) - dead):
            self._send_release(code)

    def _send_release(self, code: int) -> None:
        buf = np.full(1, code, dtype=np.int64)
        for p in self.spare_procs:
            with contextlib.suppress(MPI.Exception):  # a dead spare: nothing to release
                self.world.Send(buf, p, TAG_RELEASE)  # 8 bytes: eager, completes at once


def _join(
    base: MPI.Intracomm,
) -> tuple[MPI.Intracomm, MPI.Intracomm, list[int], list[int], list[Any]]:
    world: MPI.Intracomm = base.Dup()
    final: MPI.Intracomm = base.Dup()
    for comm in (world, final):
        comm.Set_errhandler(MPI.ERRORS_RETURN)
    ranks = world.allgather(MPI.COMM_WORLD.Get_rank())
    where = world.allgather((socket.gethostname(), os.getpid()))
    return world, final, failure_domains(world), ranks, where
