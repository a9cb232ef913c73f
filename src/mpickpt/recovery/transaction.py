"""The recovery transaction over ULFM, and the :class:`Job` that runs it.

A :class:`Job` joins the job's :class:`~.membership.Membership` and the workers'
:class:`~mpickpt.checkpointer.Checkpointer`. On a failure every surviving process runs
:meth:`Job.recover`: revoke, shrink, gather states, plan (pure, the same on every process), move
pieces, decode, agree, and only then switch to the new communicators. Any exception inside
starts the transaction again on the world that is left; an error of one process's own fails
the attempt on every process, and ends the recovery with the same error everywhere unless a
process was lost meanwhile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

from mpi4py import MPI

from .. import faults, heartbeat
from ..checkpointer import Checkpointer
from ..comms import Family
from ..domains import warn_if_spread
from ..errors import (
    ProcessFailure,
)
from ..log import MpickptWarning, Timeline, logger, warn
from ..spill.tier import DiskTier
from ..stall import Vanished, diagnose, known_failed, place_on_host
from . import fallback
from .attempt import Attempt, AttemptFailed
from .fallback import Redistribute
from .membership import Membership
from .watchdog import Watchdog, ulfm_available

T = TypeVar("T")


class UlfmWarning(MpickptWarning):
    """The MPI library cannot keep the job alive through a failure."""


class Job:
    """Workers and spares of one job; survives worker failures while spares and the
    redundancy allow."""

    def __init__(
        self,
        make_checkpointer: Callable[[], Checkpointer],
        spares: int = 0,
        redistribute: Redistribute | None = None,
        min_workers: int = 2,
    ) -> None:
        self.redistribute = redistribute
        self.members = m = Membership(spares, min_workers)
        if not ulfm_available() and m.world.Get_rank() == 0:
            _warn_without_ulfm()
        self.ckpt = make_checkpointer()
        self.timeline = Timeline()
        self.recoveries = 0
        self.resuming = False  # a recovery is over but the loop has not resumed: log it then
        self.rollbacks: dict[int, int] = {}  # version -> recoveries that rolled back to it
        self.dog = self._watchdog()  # the running recovery's
        self.comms = Family()  # ctx.comm and what the application derived from it
        self.history: list[dict[str, Any]] = []  # the recoveries this process took part in
        self.at_step: int | None = None  # the step the protected function is at
        self.completed = False  # restarted from the spill of a run that completed (DONE)
        self.error: str | None = None  # what the protected function raised in this process
        self.resumed: dict[str, Any] = {"tier": "start"}  # or a tier's version: see heartbeat
        self.error_kind = "bug"  # and what kind of error it was (ProcessState.error_kind)
        self.split: MPI.Comm = MPI.COMM_NULL  # the workers' communicator of the running attempt
        self.spill_problem: str | None = None  # worker 0: the spill failed at the end
        if m.lost_at_start:
            return  # the first recovery sets the workers up (see enter)
        # Every process checks the workers' layout, spares too: a layout that cannot work fails
        # the same way everywhere (spares would otherwise wait for workers that have quit).
        used = self.ckpt.scheme.layout_domains(m.domains[: m.nworkers])
        if m.world.Get_rank() == 0:
            warn_if_spread(m.domains[: m.nworkers], used)
            if m.nworkers == 1:
                _warn_alone(self.ckpt.disk is not None)
        faults.maybe_kill("joined")
        try:
            comm = m.workers_comm()
        except MPI.Exception:  # a process lost since joining: as one lost while joining
            m.lost_at_start = True
            return
        if m.logical is not None:
            self.ckpt.attach(comm, m.domains[: m.nworkers])

    def enter(self) -> str:
        """The role this process enters the job with: a worker ``initial`` or ``restarted``
        (from the spill); an idle spare waits until promoted or the end."""
        role = "initial" if self.members.is_worker else "spare"
        if self.members.lost_at_start:  # a process was lost before anything ran: recover
            role = self.recover()
        while role == "initial":
            try:
                return self.start()
            except (MPI.Exception, ProcessFailure):  # lost while opening the spill
                self.leave()
                role = self.recover()
        return self.wait_as_spare() if role == "spare" else role

    @property
    def disk(self) -> DiskTier | None:
        return self.ckpt.disk  # type: ignore[return-value]

    def wait_as_spare(self) -> str:
        """An idle spare: wait until promoted (the role to enter with) or ``finished``."""
        faults.maybe_kill("idle")
        return self.members.wait_as_spare(lambda: self.recover())

    def start(self) -> str:
        """Workers: ``restarted`` when resuming from a spilled version, else ``initial``."""
        disk, m, logical = self.disk, self.members, self.members.logical
        if disk is None or logical is None:
            return "initial"
        config, adapt = self.ckpt.scheme.get_config(), self.redistribute is not None
        found = disk.open(self.ckpt.comm, logical, m.nworkers, config, adapt)
        if found is None:
            return "initial"
        self.completed = fallback.restart(self.ckpt, self.redistribute, found, logical, m.nworkers)
        self.resumed = {"tier": "spill", "version": found.version, "step": self.ckpt.step}
        if logical == 0:
            logger().info(fallback.restarted(found, self.ckpt.step, disk.directory, self.completed))
        return "restarted"

    def finish(self) -> str:
        """Workers, after the protected function returned: agree that every worker completed,
        then release the spares. Returns ``finished``, or the role to re-enter with."""
        try:
            completed = self.ckpt.comm.Agree(1)
        except MPI.Exception:
            completed = 0
        if not completed:
            return self.recover()
        # from here on the job is done: a worker lost now needs no recovery, but takes what it
        # does next with it (the job's end says so, see ending.Ending.workers)
        self.members.ending.workers = self.members.worker_processes()
        faults.maybe_kill("done")
        self.members.release_spares(self.ckpt.comm)
        return "finished"

    # -- the transaction --------------------------------------------------------------------

    def _watchdog(self, stage: str | None = None) -> Watchdog:
        disk, m = self.disk, self.members

        def about() -> list[str]:
            last = stage or self.timeline.events[-1][1]
            failed = known_failed(m.world)
            return [f"last step done: {last}", *diagnose(m.world_rank, m.peers, failed)]

        def code() -> int:
            return 75 if disk is not None and disk.complete() else 3

        here = m.peers[m.world_rank][0]
        local = {
            r: m.peers[r][1] for r in m.world_ranks() if r != m.world_rank and m.peers[r][0] == here
        }
        vanished = Vanished(local, m.world_ranks, lambda: known_failed(m.world))
        return Watchdog(code, about, place_on_host(m.world_rank, m.peers), vanished)

    def leave(self) -> None:
        """A worker that saw a failure in its own code: revoke the workers' communicator (and
        the application's, so that no worker stays blocked on one) and take part in its
        uniform decision point, as every other worker will."""
        with self._watchdog("left the loop, agreeing with the other workers"):
            self.comms.revoke()
            with contextlib.suppress(MPI.Exception):
                self.ckpt.comm.Revoke()
            with contextlib.suppress(MPI.Exception):  # the others wait in it: never skipped
                self.ckpt.comm.Agree(0)

    def raised(self, error: str, kind: str) -> None:
        """The protected function raised ``error`` here (``kind``: see :class:`ProcessState`)."""
        self.error, self.error_kind = error, kind

    def recover(self) -> str:
        """The recovery transaction; returns this process's role afterwards (``survivor``,
        ``recovered``, ``shrunk``, ``spare`` or ``finished``). Raises the same
        ``UnrecoverableError`` / ``NoSparesError`` / ``ApplicationError`` on every surviving
        process when it cannot recover.

        An attempt that fails starts again on the world that is left. A lost peer fails it
        everywhere; so does an error of one process's own (an :class:`AttemptFailed`), which
        that process states in the next attempt: if no process was lost meanwhile, that
        attempt ends the recovery with the same ``UnrecoverableError`` everywhere."""
        self.members.ending.failures_seen = True
        self.resuming = True
        self.timeline = Timeline(step=self.at_step if self.members.is_worker else None)
        self.timeline.mark("failure detected")
        (heartbeat.current() if self.members.logical == 0 else heartbeat.OFF).phase("recovering")
        faults.maybe_kill("recovery")
        why: str | None = None  # this process's own error in the attempt before
        size = self.members.world.Get_size()  # processes in the attempt before
        with self._watchdog() as self.dog:
            self.comms.revoke()  # inside: a revoke may wait for a stopped peer
            while True:
                with contextlib.suppress(MPI.Exception):
                    self.members.world.Revoke()  # wakes idle spares and anyone on the old world
                try:
                    role = Attempt(self, why, size).run()
                    break
                except (MPI.Exception, ProcessFailure):
                    why = None
                except AttemptFailed as e:
                    why = str(e)
                size = self.members.world.Get_size()
                self.timeline.mark("failure during recovery: again")
        self.comms.forget()  # the next incarnation gets a new ctx.comm
        self.error = None  # recovered: the exception came with a failure, not from a bug
        return role

    def recovered(self, rank: int, resume: int) -> None:
        """The function runs again from ``resume`` after a recovery: record and log it."""
        self.resuming = False
        self.history.append(self.timeline.close(rank, resume))


def _warn_without_ulfm() -> None:
    warn(
        "ULFM fault tolerance is not enabled (Open MPI: mpiexec --with-ft ulfm); "
        "checkpoints are taken, but a failed rank ends the job as MPI decides",
        UlfmWarning,
        stacklevel=3,
    )


def _warn_alone(spill: bool) -> None:
    """One worker: nobody holds its pieces, so no failure can be recovered in memory."""
    after = "a relaunch resumes from the spill" if spill else "the job's state is lost with it"
    warn(
        "a single worker has no other rank to hold its checkpoint: a lost process cannot be "
        f"rebuilt ({after}); launch 2 or more workers for in-memory redundancy",
        stacklevel=3,
    )
