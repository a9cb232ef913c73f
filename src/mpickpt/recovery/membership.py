"""Who is who in a job: ``world`` (every process, workers first, spares last), the logical id
of each worker, the idle spares; how spares wait and are released, and how a process exits."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import NoReturn

import numpy as np
from mpi4py import MPI

from ..domains import failure_domains
from ..errors import ConfigError
from ..transport import keep_on_failure, waitall

SPARE_POLL = 0.005  # seconds between tests of an idle spare's receive (~0 CPU while idle)
TAG_RELEASE = 0x6D72  # workers to idle spares: the job is over, with this exit code


class Membership:
    """The processes of one job: the first ``size - spares`` are workers, the rest idle spares.

    ``logical`` is this process's worker id (``None`` for an idle spare); ``world`` shrinks
    with every recovery.
    """

    def __init__(self, spares: int) -> None:
        self.world: MPI.Intracomm = MPI.COMM_WORLD.Dup()
        self.world.Set_errhandler(MPI.ERRORS_RETURN)
        size = self.world.Get_size()
        self.nworkers = size - spares
        if self.nworkers < 1:
            raise ConfigError(
                f"{spares} spare(s) leave no worker among {size} processes; launch more "
                f"processes (mpiexec -n {spares + 1} or more) or ask for fewer spares"
            )
        self.failures_seen = False
        self.exit_code = 0  # for idle spares: how the workers ended the job
        self.spare_procs = list(range(self.nworkers, size))  # idle spares' ranks in world
        self.domains = failure_domains(self.world)
        rank = self.world.Get_rank()
        self.domain = self.domains[rank]
        self.logical: int | None = rank if rank < self.nworkers else None

    @property
    def is_worker(self) -> bool:
        return self.logical is not None

    def workers_comm(self) -> MPI.Comm:
        """Collective over ``world``: the workers' communicator (``COMM_NULL`` on spares)."""
        key = self.world.Get_rank()
        return self.world.Split(0 if self.logical is not None else MPI.UNDEFINED, key=key)

    # -- idle spares ------------------------------------------------------------------------

    def wait_as_spare(self, recover: Callable[[], str]) -> str:
        """Idle until needed: the role ``recover()`` returns once promoted to a worker, or
        ``finished`` at the end.

        An idle spare waits in a receive from any process, polled with a short sleep (no CPU).
        Not in a non-blocking barrier: when a peer dies, Open MPI's non-blocking collectives
        abandon requests that later abort the process ("Send error after request freed").
        A receive from any source fails as soon as any process of ``world`` fails.
        """
        while True:
            code = np.full(1, -1, dtype=np.int64)
            req = self.world.Irecv(code, MPI.ANY_SOURCE, TAG_RELEASE)
            try:
                with keep_on_failure([req]):
                    while not req.Test():
                        time.sleep(SPARE_POLL)
                self.exit_code = int(code[0])  # how the workers ended the job
                return "finished"
            except MPI.Exception:
                if self._only_spares_failed():
                    continue  # one spare less; the workers learn it at the next recovery
                role = recover()
                if role != "spare":
                    return role

    def _only_spares_failed(self) -> bool:
        """An idle spare saw a failure: if only idle spares died (the workers are not coming to
        a recovery), acknowledge it and keep waiting."""
        try:
            failed = self.world.Get_failed()
            ranks = MPI.Group.Translate_ranks(
                failed, range(failed.Get_size()), self.world.Get_group()
            )
            if not ranks or not set(ranks) <= set(self.spare_procs):
                return False
            self.world.Ack_failed()
            return True
        except MPI.Exception:
            return False  # revoked: the workers are recovering

    def release_spares(self, workers: MPI.Comm, code: int = 0) -> bool:
        """Workers, collectively over ``workers``: let the idle spares return, telling them the
        job's exit code. False on every worker if that failed (e.g. a spare died while idle)."""
        ok = True
        if self.logical == 0:
            buf = np.full(1, code, dtype=np.int64)
            try:
                waitall([self.world.Isend(buf, p, TAG_RELEASE) for p in self.spare_procs])
            except MPI.Exception:
                ok = False
        try:
            return bool(workers.Agree(int(ok)))
        except MPI.Exception:
            return False

    # -- the end ----------------------------------------------------------------------------

    def settle(self) -> bool:
        """Wait until every surviving process got here; False if a failure ended the wait."""
        try:
            return bool(self.world.Agree(1))
        except MPI.Exception:
            return False

    def exit(self, code: int, agreed: bool = True) -> NoReturn:
        """End the process so that the job ends with ``code``.

        Only one process exits with ``code``: the lowest rank left (rank 0 of ``world``, alive
        at the last agreement; never an idle spare while a worker is left, since spares have the
        highest ranks and are promoted lowest first); the others exit with 0, and mpiexec
        returns ``code``. When several processes exit non-zero at once, Open MPI 5.0's mpiexec
        can hang after every rank has gone (measured on a loaded host: 4-12 % of runs; none
        with one). ``agreed=False``: the processes left could not agree that they all got
        here, so the lowest one may be dead; then every one exits with ``code``.

        Through ``sys.exit`` (and so MPI_Finalize, see :func:`.watchdog.finalize_unless`) while
        no failure was seen, else at once, since MPI_Finalize can hang after a failure.
        """
        end_process(code, self.world, agreed, self.failures_seen)


def end_process(
    code: int, world: MPI.Comm | None = None, agreed: bool = True, failed: bool = False
) -> NoReturn:
    """:meth:`Membership.exit` for any process; with ``world`` None (no runtime could be set
    up, every process is still there) over ``COMM_WORLD``, finalizing MPI first."""
    if agreed and (world or MPI.COMM_WORLD).Get_rank() != 0:
        code = 0
    sys.stdout.flush()
    sys.stderr.flush()
    if world is None:
        MPI.Finalize()
    elif failed:
        os._exit(code)
    sys.exit(code)
