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
from dataclasses import replace
from typing import Any, TypeVar

from mpi4py import MPI

from .. import faults
from ..checkpointer import Checkpointer, process_state
from ..comms import Family
from ..domains import warn_if_spread
from ..errors import (
    ApplicationError,
    ConfigError,
    NoSparesError,
    ProcessFailure,
    UnrecoverableError,
)
from ..log import MpickptWarning, Timeline, logger, warn
from ..planning import ProcessState, RecoveryPlan, failed_attempt, plan_recovery
from ..spill.tier import DiskTier
from ..stall import diagnose, known_failed
from ..transport import fetch_segment
from . import fallback
from .attempt import AttemptFailed, Outcome, agreed, rebuilt, replayed
from .fallback import Redistribute, Shrunk
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
    ) -> None:
        self.redistribute = redistribute
        self.members = m = Membership(spares)
        if not ulfm_available() and m.world.Get_rank() == 0:
            _warn_without_ulfm()
        self.ckpt = make_checkpointer()
        self.timeline = Timeline()
        self.recoveries = 0
        self.rollbacks: dict[int, int] = {}  # version -> recoveries that rolled back to it
        self.dog = self._watchdog()  # the running recovery's
        self.comms = Family()  # ctx.comm and what the application derived from it
        self.history: list[dict[str, Any]] = []  # the recoveries this process took part in
        self.at_step: int | None = None  # the step the protected function is at
        self.completed = False  # restarted from the spill of a run that completed (DONE)
        self.error: str | None = None  # what the protected function raised in this process
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
        comm = m.workers_comm()
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

        return Watchdog(lambda: 75 if disk is not None and disk.complete() else 3, about)

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
        self.timeline = Timeline(step=self.at_step if self.members.is_worker else None)
        self.timeline.mark("failure detected")
        faults.maybe_kill("recovery")
        why: str | None = None  # this process's own error in the attempt before
        size = self.members.world.Get_size()  # processes in the attempt before
        with self._watchdog() as self.dog:
            self.comms.revoke()  # inside: a revoke may wait for a stopped peer
            while True:
                with contextlib.suppress(MPI.Exception):
                    self.members.world.Revoke()  # wakes idle spares and anyone on the old world
                try:
                    role = self._attempt(why, size)
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
        self.history.append(self.timeline.close(rank, resume))

    def _attempt(self, why: str | None, size: int) -> str:
        """One attempt: shrink, agree on what to do, then do it (each step agreed)."""
        world = self._shrink()
        lost = world.Get_size() < size  # the same everywhere: the size of the agreed shrink
        outcome = agreed(world, lambda: self._transaction(world, why, lost), "recovery")
        self.split = MPI.COMM_NULL  # the workers' communicator of this attempt: taken over
        if outcome.failure is not None:
            raise outcome.failure
        if isinstance(outcome.plan, Shrunk):
            return self._continue_shrunk(world, outcome.plan, outcome.reports)
        assert outcome.plan is not None
        return self._take_over(world, outcome)

    def _shrink(self) -> MPI.Intracomm:
        """The world left after the failure. The workers' communicator split in an attempt
        that then failed is freed; the old worlds are not: a slower peer may still revoke
        them (a handful of communicators per recovery)."""
        if self.split != MPI.COMM_NULL:
            with contextlib.suppress(MPI.Exception):
                self.split.Free()
            self.split = MPI.COMM_NULL
        world: MPI.Intracomm = self.members.world.Shrink()  # type: ignore[assignment]
        world.Set_errhandler(MPI.ERRORS_RETURN)
        self.members.world = world
        self.timeline.mark(f"shrunk to {world.Get_size()} processes")
        return world

    def _transaction(self, world: MPI.Intracomm, why: str | None, lost: bool) -> Outcome:
        """Inside the agreement: report, plan (the same on every process), move pieces."""
        m, ckpt = self.members, self.ckpt
        own = replace(
            process_state(ckpt.store, m.logical, m.domain),
            error=self.error,
            error_kind=self.error_kind,
            attempt_error=why,
        )
        reports = world.allgather(own)
        stop = failed_attempt(reports, lost)
        if stop is not None:
            return Outcome(reports, failure=stop)
        try:
            plan = plan_recovery(reports, m.nworkers, ckpt.scheme, self.disk is not None)
        except NoSparesError as e:
            return self._without_spares(world, reports, e)
        except (UnrecoverableError, ApplicationError, ConfigError) as e:
            return Outcome(reports, failure=e)
        again = replayed(plan, self.rollbacks.get(plan.version, 0))
        if again is not None:
            return Outcome(reports, failure=again)
        self.timeline.lost = list(plan.dead)
        me = world.Get_rank()
        mine = plan.assign.index(me) if me in plan.assign else None
        segments = self._move(world, plan, mine)
        self.split = world.Split(0 if mine is not None else MPI.UNDEFINED, key=mine or 0)
        return Outcome(reports, plan, segments=segments, comm=self.split)

    def _without_spares(
        self, world: MPI.Intracomm, reports: list[ProcessState], error: NoSparesError
    ) -> Outcome:
        """No spare left: continue on fewer workers (with a redistribution hook), or save every
        worker's newest version to the spill and stop."""
        m, ckpt = self.members, self.ckpt
        if self.redistribute:
            shrunk = fallback.shrink(world, ckpt, m.logical, reports, m.nworkers)
            if shrunk is not None:
                return Outcome(reports, shrunk)
        with self.dog.paused():
            saved = fallback.save_all(self.disk, world, ckpt, m.logical, reports, m.nworkers, error)
        return Outcome(reports, failure=saved)

    def _move(self, world: MPI.Intracomm, plan: RecoveryPlan, mine: int | None) -> dict[int, Any]:
        """The segments this process needs for ``plan``: rebuilt from the pieces in RAM, or
        reloaded from the spill when the loss is beyond the RAM tolerance."""
        ckpt = self.ckpt
        if not plan.from_disk:
            dest = {owner: plan.assign[owner] for owner in plan.rebuild}
            segments = fetch_segment(
                world, ckpt.store, ckpt.scheme, plan.version, plan.rebuild, dest
            )
            self.timeline.did(rebuilt(plan, short=True), rebuilt(plan))
            return segments
        assert self.disk is not None
        with self.dog.paused():
            segments = fallback.load_spill(
                self.disk, world, plan, mine, self.members.nworkers, ckpt.scheme
            )
        self.timeline.did(
            f"reloaded version {plan.version} from the spill",
            f"beyond the RAM tolerance: reloaded version {plan.version}",
        )
        return segments

    def _take_over(self, world: MPI.Intracomm, outcome: Outcome) -> str:
        """After the agreement on a plan: every process switches to its new role (agreed:
        one that cannot fails the attempt everywhere)."""
        plan, reports = outcome.plan, outcome.reports
        assert isinstance(plan, RecoveryPlan)
        me = world.Get_rank()
        mine = plan.assign.index(me) if me in plan.assign else None
        segment = outcome.segments.get(mine) if mine is not None else None
        agreed(
            world,
            lambda: _switch(self, plan, reports, mine, outcome.comm, segment),
            "switching to the new workers",
        )
        self.recoveries += 1
        self.rollbacks[plan.version] = self.rollbacks.get(plan.version, 0) + 1
        self.timeline.mark("recovered")
        return plan.role(me, reports)

    def _continue_shrunk(
        self, world: MPI.Intracomm, plan: Shrunk, reports: list[ProcessState]
    ) -> str:
        """After the agreement to continue on fewer workers: switch to them (agreed)."""
        assert self.redistribute is not None
        redistribute = self.redistribute
        self.recoveries += 1
        self.timeline.lost = sorted(set(range(self.members.nworkers)) - set(plan.alive))
        self.timeline.did(f"continuing on {len(plan.alive)} workers (no spare left)")
        m, ckpt, disk = self.members, self.ckpt, self.disk
        return agreed(
            world,
            lambda: fallback.switch_shrunk(m, ckpt, disk, redistribute, plan, reports),
            "switching to fewer workers",
        )


def _switch(
    job: Job,
    plan: RecoveryPlan,
    reports: list[ProcessState],
    logical: int | None,
    comm: MPI.Comm,
    segment: Any,
) -> None:
    """After the agreement on ``plan``: this process plays worker ``logical`` (None: an idle
    spare) over ``comm`` and rolls back to the plan's version."""
    m, ckpt, disk = job.members, job.ckpt, job.disk
    m.logical = logical
    m.spare_procs = [p for p in range(len(reports)) if p not in plan.assign]
    if logical is None:
        ckpt.close()  # an idle spare holds nothing
        return
    ckpt.attach(comm, [reports[p].domain for p in plan.assign])
    if disk is not None:
        disk.attach(logical, m.nworkers, ckpt.scheme.get_config())
    if plan.version < 0:  # nothing was committed: start again from the initial state
        ckpt.start_over()
        return
    if segment is None:  # a survivor with its own copy of that version
        segment = ckpt.local
    ckpt.restore_version(plan.version, segment, forget=plan.from_disk)


def _warn_without_ulfm() -> None:
    warn(
        "ULFM fault tolerance is not enabled (Open MPI: mpiexec --with-ft ulfm); "
        "checkpoints are taken, but a failed rank ends the job as MPI decides",
        UlfmWarning,
        stacklevel=3,
    )
