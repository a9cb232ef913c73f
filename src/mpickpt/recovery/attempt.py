"""One attempt of a recovery (:class:`Attempt`): shrink, report, plan, move pieces, switch to
the new roles, each step agreed; what its transaction decided (:class:`Outcome`), and how an
error of one process's own becomes a failed attempt everywhere (:func:`agreed`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from mpi4py import MPI

from ..checkpointer import process_state
from ..config import config
from ..errors import (
    ApplicationError,
    ConfigError,
    MpickptError,
    NoSparesError,
    ProcessFailure,
    UnrecoverableError,
)
from ..planning import ProcessState, RecoveryPlan, failed_attempt, plan_recovery
from ..transport import fetch_segment, run_and_agree
from . import fallback
from .fallback import Shrunk

if TYPE_CHECKING:
    from .transaction import Job

T = TypeVar("T")


class Attempt:
    """One attempt of ``job``'s recovery: shrink, agree on what to do, then do it, each step
    agreed. ``why``: this process's own error in the attempt before (None: none); ``size``: the
    processes in that attempt."""

    def __init__(self, job: Job, why: str | None, size: int) -> None:
        self.job, self.why, self.size = job, why, size

    def run(self) -> str:
        """This process's role after the recovery, or the agreed error raised everywhere."""
        job = self.job
        world = self._shrink()
        lost = world.Get_size() < self.size  # the same everywhere: the agreed shrink's size
        outcome = agreed(world, lambda: self._transaction(world, lost), "recovery")
        job.split = MPI.COMM_NULL  # the workers' communicator of this attempt: taken over
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
        job = self.job
        if job.split != MPI.COMM_NULL:
            with contextlib.suppress(MPI.Exception):
                job.split.Free()
            job.split = MPI.COMM_NULL
        world: MPI.Intracomm = job.members.world.Shrink()  # type: ignore[assignment]
        world.Set_errhandler(MPI.ERRORS_RETURN)
        job.members.world = world
        job.timeline.mark(f"shrunk to {world.Get_size()} processes")
        return world

    def _transaction(self, world: MPI.Intracomm, lost: bool) -> Outcome:
        """Inside the agreement: report, plan (the same on every process), move pieces."""
        job = self.job
        m, ckpt = job.members, job.ckpt
        own = replace(
            process_state(ckpt.store, m.logical, m.domain),
            error=job.error,
            error_kind=job.error_kind,
            attempt_error=self.why,
            step=job.at_step if m.is_worker else None,
        )
        reports = world.allgather(own)
        # the step the failure hit, the same everywhere: the lowest surviving worker's, as
        # before a loss of worker 0 (the spare promoted in its place was at none)
        at_steps = sorted((r.logical, r.step) for r in reports if r.step is not None)
        job.timeline.step = at_steps[0][1] if at_steps else None
        stop = failed_attempt(reports, lost)
        if stop is not None:
            return Outcome(reports, failure=stop)
        try:
            plan = plan_recovery(reports, m.nworkers, ckpt.scheme, job.disk is not None)
        except NoSparesError as e:
            return self._without_spares(world, reports, e)
        except (UnrecoverableError, ApplicationError, ConfigError) as e:
            return Outcome(reports, failure=e)
        again = replayed(plan, job.rollbacks.get(plan.version, 0))
        if again is not None:
            return Outcome(reports, failure=again)
        job.timeline.lost = list(plan.dead)
        me = world.Get_rank()
        mine = plan.assign.index(me) if me in plan.assign else None
        segments = self._move(world, plan, mine)
        job.split = world.Split(0 if mine is not None else MPI.UNDEFINED, key=mine or 0)
        return Outcome(reports, plan, segments=segments, comm=job.split)

    def _without_spares(
        self, world: MPI.Intracomm, reports: list[ProcessState], error: NoSparesError
    ) -> Outcome:
        """No spare left: continue on fewer workers (with a redistribution hook), or save every
        worker's newest version to the spill and stop."""
        job = self.job
        m, ckpt = job.members, job.ckpt
        if job.redistribute:
            shrunk = fallback.shrink(world, ckpt, m.logical, reports, m.nworkers)
            if shrunk is not None:
                return Outcome(reports, shrunk)
        with job.dog.paused():
            saved = fallback.save_all(job.disk, world, ckpt, m.logical, reports, m.nworkers, error)
        return Outcome(reports, failure=saved)

    def _move(self, world: MPI.Intracomm, plan: RecoveryPlan, mine: int | None) -> dict[int, Any]:
        """The segments this process needs for ``plan``: rebuilt from the pieces in RAM, or
        reloaded from the spill when the loss is beyond the RAM tolerance."""
        job = self.job
        ckpt = job.ckpt
        if not plan.from_disk:
            dest = {owner: plan.assign[owner] for owner in plan.rebuild}
            segments = fetch_segment(
                world, ckpt.store, ckpt.scheme, plan.version, plan.rebuild, dest
            )
            job.timeline.did(rebuilt(plan, short=True), rebuilt(plan))
            return segments
        assert job.disk is not None
        with job.dog.paused():
            segments = fallback.load_spill(
                job.disk, world, plan, mine, job.members.nworkers, ckpt.scheme
            )
        job.timeline.did(
            f"reloaded version {plan.version} from the spill",
            f"beyond the RAM tolerance: reloaded version {plan.version}",
        )
        return segments

    def _take_over(self, world: MPI.Intracomm, outcome: Outcome) -> str:
        """After the agreement on a plan: every process switches to its new role (agreed:
        one that cannot fails the attempt everywhere)."""
        job = self.job
        plan, reports = outcome.plan, outcome.reports
        assert isinstance(plan, RecoveryPlan)
        me = world.Get_rank()
        mine = plan.assign.index(me) if me in plan.assign else None
        segment = outcome.segments.get(mine) if mine is not None else None
        agreed(
            world,
            lambda: _switch(job, plan, reports, mine, outcome.comm, segment),
            "switching to the new workers",
        )
        job.recoveries += 1
        job.rollbacks[plan.version] = job.rollbacks.get(plan.version, 0) + 1
        job.timeline.mark("recovered")
        return plan.role(me, reports)

    def _continue_shrunk(
        self, world: MPI.Intracomm, plan: Shrunk, reports: list[ProcessState]
    ) -> str:
        """After the agreement to continue on fewer workers: switch to them (agreed)."""
        job = self.job
        assert job.redistribute is not None
        redistribute = job.redistribute
        job.recoveries += 1
        job.timeline.lost = sorted(set(range(job.members.nworkers)) - set(plan.alive))
        job.timeline.did(f"continuing on {len(plan.alive)} workers (no spare left)")
        m, ckpt, disk = job.members, job.ckpt, job.disk
        return agreed(
            world,
            lambda: fallback.switch_shrunk(m, ckpt, disk, redistribute, plan, reports),
            "switching to fewer workers",
        )


class AttemptFailed(Exception):
    """This process's part of a recovery attempt raised an error of its own (not a lost
    peer). The others see the attempt fail; the next attempt's reports tell them why."""


@dataclass
class Outcome:
    """What an attempt's transaction agreed on, the same on every process: the reports, and
    a plan (:class:`RecoveryPlan`, or :class:`Shrunk` to continue on fewer workers) or the failure
    that ends the recovery everywhere; with this process's segments and communicator."""

    reports: list[ProcessState]
    plan: RecoveryPlan | Shrunk | None = None
    failure: MpickptError | None = None
    segments: dict[int, Any] = field(default_factory=dict)
    comm: MPI.Comm = field(default_factory=lambda: MPI.COMM_NULL)


def agreed(world: MPI.Comm, step: Callable[[], T], what: str) -> T:
    """``run_and_agree``: ``step()`` agreed over ``world``; an error of this process's own (which
    only it sees: the others get :class:`ProcessFailure`) becomes :class:`AttemptFailed`."""
    try:
        return run_and_agree(world, step, what)
    except (MPI.Exception, ProcessFailure):
        raise
    except Exception as e:
        raise AttemptFailed(f"{what}: {type(e).__name__}: {e}") from e


def replayed(plan: RecoveryPlan, rollbacks: int) -> UnrecoverableError | None:
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


def rebuilt(plan: RecoveryPlan, short: bool = False) -> str:
    if plan.version < 0:
        return "nothing was committed yet: starting again"
    nbytes = sum(n for n, _ in plan.rebuild.values())
    ranks = {h for _, src in plan.rebuild.values() for h, _, _ in src}
    workers = "" if short else f" for worker(s) {sorted(plan.rebuild)}"
    size = f"{nbytes / 2**20:.1f} MiB" if nbytes >= 2**20 // 10 else f"{nbytes / 1024:.1f} KiB"
    return f"rebuilt {size}{workers} from {len(ranks)} rank(s)"


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
