"""The recovery transaction over ULFM, and the :class:`Runtime` that runs it.

A :class:`Runtime` joins the job's :class:`~.membership.Membership` and the workers'
:class:`~mpickpt.checkpointer.Checkpointer`. On a failure every surviving process runs
:meth:`Runtime.recover`: revoke, shrink, report, plan (pure, the same on every process), move
pieces, decode, agree, and only then switch to the new communicators. Any exception inside
starts the transaction again on a smaller world.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from mpi4py import MPI

from .. import faults
from ..checkpointer import Checkpointer, report
from ..comms import Family
from ..config import config
from ..domains import warn_if_spread
from ..errors import (
    ApplicationError,
    ConfigError,
    MpickptError,
    NoSparesError,
    ProcessFailure,
    UnrecoverableError,
)
from ..log import MpickptWarning, Timeline, logger
from ..planning import Plan, Report, plan_recovery
from ..spill.tier import DiskTier
from ..stall import diagnose, known_failed
from ..transport import fetch_segment, uniformly
from . import fallback
from .fallback import Redistribute, Shrunk
from .membership import Membership
from .watchdog import Watchdog, ulfm_available


class UlfmWarning(MpickptWarning):
    """The MPI library cannot keep the job alive through a failure."""


class Runtime:
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
        self.rollbacks: dict[int, int] = {}  # version -> recoveries that rolled back to it
        self.dog = self._watchdog()  # the running recovery's
        self.comms = Family()  # ctx.comm and what the application derived from it
        self.history: list[dict[str, Any]] = []  # the recoveries this process took part in
        self.at_step: int | None = None  # the step the protected function is at
        self.completed = False  # restarted from the spill of a run that completed (DONE)
        self.error: str | None = None  # what the protected function raised in this process
        if m.lost_at_start:
            return  # the first recovery sets the workers up (see enter)
        # Every process checks the workers' layout, spares too: a layout that cannot work fails
        # the same way everywhere (spares would otherwise wait for workers that have quit).
        used = self.ckpt.scheme.layout_domains(m.domains[: m.nworkers])
        if m.world.Get_rank() == 0:
            warn_if_spread(m.domains[: m.nworkers], used)
            if m.nworkers == 1:
                _warn_alone(self.ckpt.disk is not None)
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
                self.ckpt.comm.Agree(0)

    def recover(self) -> str:
        """The recovery transaction; returns this process's role afterwards (``survivor``,
        ``recovered``, ``shrunk``, ``spare`` or ``finished``). Raises the same
        ``UnrecoverableError`` / ``NoSparesError`` / ``ApplicationError`` on every surviving
        process when it cannot recover."""
        self.members.ending.failures_seen = True
        self.timeline = Timeline(step=self.at_step if self.members.is_worker else None)
        self.timeline.mark("failure detected")
        faults.maybe_kill("recovery")
        with self._watchdog() as self.dog:
            self.comms.revoke()  # inside: a revoke may wait for a stopped peer
            while True:
                with contextlib.suppress(MPI.Exception):
                    self.members.world.Revoke()  # wakes idle spares and anyone on the old world
                try:
                    role = self._attempt()
                    break
                except (MPI.Exception, ProcessFailure):
                    self.timeline.mark("failure during recovery: again")
        self.comms.forget()  # the next incarnation gets a new ctx.comm
        self.error = None  # recovered: the exception came with a failure, not from a bug
        return role

    def recovered(self, rank: int, resume: int) -> None:
        """The function runs again from ``resume`` after a recovery: record and log it."""
        self.history.append(self.timeline.close(rank, resume))

    def _attempt(self) -> str:
        m, ckpt = self.members, self.ckpt
        world: MPI.Intracomm = m.world.Shrink()  # type: ignore[assignment]
        world.Set_errhandler(MPI.ERRORS_RETURN)
        m.world = world
        self.timeline.mark(f"shrunk to {world.Get_size()} processes")
        me = world.Get_rank()
        at = self.at_step if m.is_worker else None

        def transaction() -> tuple[
            list[Report], Plan | Shrunk | None, MpickptError | None, dict[int, Any], MPI.Comm
        ]:
            own = replace(report(ckpt.store, m.logical, m.domain), error=self.error, step=at)
            reports = world.allgather(own)
            # the step the failure hit, the same everywhere: the lowest surviving worker's, as
            # before a loss of worker 0 (the spare promoted in its place was at none)
            at_steps = sorted((r.logical, r.step) for r in reports if r.step is not None)
            self.timeline.step = at_steps[0][1] if at_steps else None
            nothing: dict[int, Any] = {}
            try:
                plan = plan_recovery(reports, m.nworkers, ckpt.scheme, self.disk is not None)
            except NoSparesError as e:
                shrunk = None
                if self.redistribute:
                    shrunk = fallback.shrink(world, ckpt, m.logical, reports, m.nworkers)
                if shrunk is None:
                    with self.dog.paused():
                        saved = fallback.save_all(
                            self.disk, world, ckpt, m.logical, reports, m.nworkers, e
                        )
                    return reports, None, saved, nothing, MPI.COMM_NULL
                return reports, shrunk, None, nothing, MPI.COMM_NULL
            except (UnrecoverableError, ApplicationError, ConfigError) as e:
                return reports, None, e, nothing, MPI.COMM_NULL
            again = _replayed(plan, self.rollbacks.get(plan.version, 0))
            if again is not None:
                return reports, None, again, nothing, MPI.COMM_NULL
            self.timeline.lost = list(plan.dead)
            mine = plan.assign.index(me) if me in plan.assign else None
            if plan.from_disk:
                assert self.disk is not None
                with self.dog.paused():
                    segments = fallback.load_spill(
                        self.disk, world, plan, mine, m.nworkers, ckpt.scheme
                    )
                self.timeline.did(
                    f"reloaded version {plan.version} from the spill",
                    f"beyond the RAM tolerance: reloaded version {plan.version}",
                )
            else:
                dest = {owner: plan.assign[owner] for owner in plan.rebuild}
                segments = fetch_segment(
                    world, ckpt.store, ckpt.scheme, plan.version, plan.rebuild, dest
                )
                self.timeline.did(_rebuilt(plan, short=True), _rebuilt(plan))
            comm = world.Split(0 if mine is not None else MPI.UNDEFINED, key=mine or 0)
            return reports, plan, None, segments, comm

        # the transaction commits only if it completed everywhere; else ProcessFailure: again
        reports, plan, failure, segments, comm = uniformly(world, transaction, "recovery")
        if failure is not None:
            raise failure
        assert plan is not None
        if isinstance(plan, Shrunk):
            assert self.redistribute is not None
            self.recoveries += 1
            self.timeline.lost = sorted(set(range(m.nworkers)) - set(plan.alive))
            self.timeline.did(f"continuing on {len(plan.alive)} workers (no spare left)")
            return fallback.switch_shrunk(m, ckpt, self.disk, self.redistribute, plan, reports)
        mine = plan.assign.index(me) if me in plan.assign else None
        _switch(self, plan, reports, mine, comm, segments.get(mine) if mine is not None else None)
        self.recoveries += 1
        self.rollbacks[plan.version] = self.rollbacks.get(plan.version, 0) + 1
        self.timeline.mark("recovered")
        return plan.role(me, reports)


def _switch(
    runtime: Runtime,
    plan: Plan,
    reports: list[Report],
    logical: int | None,
    comm: MPI.Comm,
    segment: Any,
) -> None:
    """After the agreement on ``plan``: this process plays worker ``logical`` (None: an idle
    spare) over ``comm`` and rolls back to the plan's version."""
    m, ckpt, disk = runtime.members, runtime.ckpt, runtime.disk
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


def _replayed(plan: Plan, rollbacks: int) -> UnrecoverableError | None:
    """The error that stops a job rolled back to one version too often, or None."""
    if rollbacks < config().max_rollbacks:
        return None
    return UnrecoverableError(
        f"rolled back to version {plan.version} {rollbacks} times and lost a process again "
        "each time: the same failure keeps coming back (a crash at the same step?); stopping "
        "(MPICKPT_MAX_ROLLBACKS sets the limit)",
        lost=plan.dead,
        version=plan.version,
    )


def _warn_without_ulfm() -> None:
    warnings.warn(
        "ULFM fault tolerance is not enabled (Open MPI: mpiexec --with-ft ulfm); "
        "checkpoints are taken, but a failed rank ends the job as MPI decides",
        UlfmWarning,
        stacklevel=3,
    )


def _warn_alone(spill: bool) -> None:
    """One worker: nobody holds its pieces, so no failure can be recovered in memory."""
    after = "a relaunch resumes from the spill" if spill else "the job's state is lost with it"
    warnings.warn(
        "a single worker has no other rank to hold its checkpoint: a lost process cannot be "
        f"rebuilt ({after}); launch 2 or more workers for in-memory redundancy",
        MpickptWarning,
        stacklevel=3,
    )


def _rebuilt(plan: Plan, short: bool = False) -> str:
    if plan.version < 0:
        return "nothing was committed yet: starting again"
    nbytes = sum(n for n, _ in plan.rebuild.values())
    ranks = {h for _, src in plan.rebuild.values() for h, _, _ in src}
    workers = "" if short else f" for worker(s) {sorted(plan.rebuild)}"
    size = f"{nbytes / 2**20:.1f} MiB" if nbytes >= 2**20 // 10 else f"{nbytes / 1024:.1f} KiB"
    return f"rebuilt {size}{workers} from {len(ranks)} rank(s)"
