"""Online recovery over ULFM: workers, spares, roles, and the rebuild transaction.

A :class:`Runtime` owns ``world`` (every process, workers first, spares last) and the
:class:`~mpickpt.checkpointer.Checkpointer` of the workers. On a failure every surviving
process runs :meth:`Runtime.recover`: revoke, shrink, agree on the reports, plan (pure, the same
on every process), move pieces, decode, agree, and only then switch to the new communicators.
Any exception inside starts the transaction again on a smaller world.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from mpi4py import MPI

from . import testing
from .checkpointer import Checkpointer, fetch_segment
from .comms import Family
from .disk import DiskTier
from .errors import (
    ApplicationError,
    ConfigError,
    MpickptError,
    NoSparesError,
    ProcessFailure,
    UnrecoverableError,
)
from .layout import backup_layout, choose_backups
from .planning import Plan, Report, plan_recovery, save_plan
from .spill import SpillError, read_index
from .stall import diagnose, known_failed
from .state import State, unpack
from .transport import keep_on_failure, uniformly, waitall

ENV_VERBOSE = "MPICKPT_VERBOSE"
ENV_RECOVERY_TIMEOUT = "MPICKPT_RECOVERY_TIMEOUT"  # seconds before a stalled recovery ends
# redistribute(mine, adopted) -> the values to continue with, when the worker count changes:
# ``mine`` is this worker's own saved state (name -> value, {} if it had none), ``adopted``
# the saved states of the workers it takes over.
Redistribute = Callable[[dict[str, Any], list[dict[str, Any]]], dict[str, Any]]
SPARE_POLL = 0.005  # seconds between tests of an idle spare's receive (~0 CPU while idle)
TAG_RELEASE = 0x6D72  # workers to idle spares: the job is over, with this exit code


class UlfmWarning(UserWarning):
    """The MPI library cannot keep the job alive through a failure."""


def ulfm_available() -> bool:
    """Whether the job runs with ULFM fault tolerance enabled (Open MPI ``--with-ft ulfm``)."""
    if "Open MPI" not in MPI.Get_library_version():
        return False
    flag = os.environ.get("OMPI_MCA_mpi_ft_enable", "0")  # noqa: SIM112 - Open MPI's name
    return flag.lower() in ("1", "true", "yes")


def verbose() -> bool:
    """Whether ``MPICKPT_VERBOSE`` asks for timings on standard error."""
    return os.environ.get(ENV_VERBOSE, "0") not in ("", "0")


@dataclass
class Timeline:
    """What a recovery did and when (``time.time()`` stamps), for the demo and the benchmark.

    With ``MPICKPT_VERBOSE=1`` the first worker prints it once the loop has resumed.
    """

    events: list[tuple[float, str]] = field(default_factory=list)

    def mark(self, what: str) -> None:
        self.events.append((time.time(), what))

    def format(self) -> str:
        t0 = self.events[0][0] if self.events else 0.0
        return "\n".join(f"  +{t - t0:8.3f} s  {what}" for t, what in self.events)

    def report(self, rank: int) -> None:
        if rank == 0 and self.events and verbose():
            print(
                f"mpickpt: recovery timeline (t0 = {self.events[0][0]:.6f}):\n{self.format()}",
                file=sys.stderr,
                flush=True,
            )


@dataclass
class Shrunk:
    """A recovery that continues on fewer workers: ``alive`` are the old ids of the workers
    kept (their new ids are the positions), ``segments`` what this process rebuilt."""

    version: int
    alive: list[int]
    domains: list[int]
    segments: dict[int, Any]
    comm: MPI.Comm
    finish: bool = False


class Runtime:
    """Workers and spares of one job; survives worker failures while spares and the
    redundancy allow."""

    def __init__(
        self,
        make_checkpointer: Callable[[], Checkpointer],
        spares: int = 0,
        redistribute: Redistribute | None = None,
    ) -> None:
        self.redistribute = redistribute
        self.world = MPI.COMM_WORLD.Dup()
        self.world.Set_errhandler(MPI.ERRORS_RETURN)
        self.peers = self.world.allgather((socket.gethostname(), os.getpid()))  # for _watchdog
        size = self.world.Get_size()
        self.nworkers = size - spares
        if self.nworkers < 1:
            raise ConfigError(
                f"{spares} spare(s) leave no worker among {size} processes; launch more "
                f"processes (mpiexec -n {spares + 1} or more) or ask for fewer spares"
            )
        self.ulfm = ulfm_available()
        if not self.ulfm and self.world.Get_rank() == 0:
            warnings.warn(
                "ULFM fault tolerance is not enabled (Open MPI: mpiexec --with-ft ulfm); "
                "checkpoints are taken, but a failed rank ends the job as MPI decides",
                UlfmWarning,
                stacklevel=2,
            )
        testing.write_pidfile()
        self.failures_seen = False
        self.exit_code = 0  # for idle spares: how the workers ended the job
        self.spare_procs = list(range(self.nworkers, size))  # idle spares' ranks in world
        atexit.register(self._finalize)
        from .domains import failure_domains

        self.domains = failure_domains(self.world)
        rank = self.world.Get_rank()
        self.domain = self.domains[rank]
        self.logical: int | None = rank if rank < self.nworkers else None
        self.ckpt = make_checkpointer()
        # Every process checks the workers' layout, spares too: a layout that cannot work fails
        # the same way everywhere (spares would otherwise wait for workers that have quit).
        backup_layout(self.domains[: self.nworkers], self.ckpt.scheme.backups)
        self.timeline = Timeline()
        self.recoveries = 0
        self.error: str | None = None  # what the protected function raised in this process
        self.comms = Family()  # ctx.comm and what the application derived from it
        comm = self.world.Split(0 if self.logical is not None else MPI.UNDEFINED, key=rank)
        if self.logical is not None:
            self.ckpt.attach(comm, self.domains[: self.nworkers])

    @property
    def is_worker(self) -> bool:
        return self.logical is not None

    # -- idle spares ------------------------------------------------------------------------

    def wait_as_spare(self) -> str:
        """Idle until needed: ``recovered`` once promoted to a worker, ``finished`` at the end.

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
                role = self.recover(done=False)
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

    def start(self) -> str:
        """Workers: ``restarted`` when resuming from a spilled version, else ``initial``."""
        disk = self.ckpt.disk
        if disk is None or self.logical is None:
            return "initial"
        disk.attach(self.logical, self.nworkers, self.ckpt.scheme.get_config())
        found = disk.restore(
            self.ckpt.comm, self.logical, self.nworkers, adapt=self.redistribute is not None
        )
        if found is None:
            return "initial"
        version, segments = found
        store = self.ckpt.store
        store.committed = version
        if list(segments) == [self.logical] and disk.written_by == self.nworkers:
            store.local, store.local_version = segments[self.logical], version
            self.ckpt.restore_from(segments[self.logical])
        else:  # written by another number of workers: the application redistributes
            step = int(read_index(disk.directory, version)["step"])
            self._adopt(segments.pop(self.logical, None), list(segments.values()), step)
        if self.logical == 0:
            print(
                f"mpickpt: restarted from spilled version {version} (step {self.ckpt.step}, "
                f"{disk.written_by} workers) in {disk.directory}",
                file=sys.stderr,
                flush=True,
            )
        return "restarted"

    # -- end of the job ---------------------------------------------------------------------

    def finish(self) -> str:
        """Workers, after the protected function returned: agree that every worker completed,
        then release the spares. Returns ``finished``, or the role to re-enter with."""
        try:
            completed = self.ckpt.comm.Agree(1)
        except MPI.Exception:
            completed = 0
        if not completed:
            return self.recover(done=False)
        return "finished" if self.release_spares() else self.recover(done=True)

    def release_spares(self, code: int = 0) -> bool:
        """Workers, collectively: let the idle spares return, telling them the job's exit
        code. False on every worker if that failed (e.g. a spare died while idle)."""
        ok = True
        if self.logical == 0:
            buf = np.full(1, code, dtype=np.int64)
            try:
                waitall([self.world.Isend(buf, p, TAG_RELEASE) for p in self.spare_procs])
            except MPI.Exception:
                ok = False
        try:
            return bool(self.ckpt.comm.Agree(int(ok)))
        except MPI.Exception:
            return False

    def _finalize(self) -> None:
        """At exit: ``MPI_Finalize`` after a clean run (mpiexec expects it), but never after a
        failure, when it can hang (open-mpi/ompi#11404)."""
        if not self.failures_seen and not MPI.Is_finalized():
            MPI.Finalize()

    def settle(self) -> bool:
        """Wait until every surviving process got here; False if a failure ended the wait."""
        try:
            return bool(self.world.Agree(1))
        except MPI.Exception:
            return False

    # -- recovery ---------------------------------------------------------------------------

    def leave(self) -> None:
        """A worker that saw a failure in its own code: revoke the workers' communicator and
        take part in its uniform decision point, as every other worker will."""
        watchdog = self._watchdog("left the loop, agreeing with the other workers")
        self.comms.revoke()  # wakes workers blocked on the application's communicators
        try:
            self.ckpt.comm.Revoke()
            self.ckpt.comm.Agree(0)
        except MPI.Exception:
            pass
        finally:
            watchdog.cancel()

    def _watchdog(self, stage: str | None = None) -> threading.Timer:
        """Ends this process if a recovery stalls: a process that is not reported failed never
        joins it (Open MPI aborted it from inside a call when a peer died, "Send error after
        request freed"; it is stopped; or it is blocked where mpickpt cannot wake it). The
        message says what this process can tell about the others (:mod:`mpickpt.stall`)."""
        seconds = float(os.environ.get(ENV_RECOVERY_TIMEOUT, "120"))

        def fire() -> None:
            disk = self.disk
            code = 75 if disk is not None and disk.complete() else 3
            me = MPI.COMM_WORLD.Get_rank()
            last = stage or self.timeline.events[-1][1]  # the recovery's timeline
            lines = diagnose(me, self.peers, known_failed(self.world))
            print(
                f"mpickpt: world rank {me}: recovery stalled for {seconds:g} s "
                f"(last step done: {last}); exiting with {code}. Every process not reported "
                f"failed must join it:" + "".join(f"\n  {line}" for line in lines),
                file=sys.stderr,
                flush=True,
            )
            os._exit(code)

        timer = threading.Timer(seconds, fire)
        timer.daemon = True
        timer.start()
        return timer

    def recover(self, done: bool) -> str:
        """The recovery transaction; returns this process's role afterwards (``survivor``,
        ``recovered``, ``spare`` or ``finished``). Raises the same ``UnrecoverableError`` /
        ``NoSparesError`` on every surviving process when it cannot recover."""
        self.failures_seen = True
        self.timeline = Timeline()
        self.timeline.mark("failure detected")
        testing.maybe_kill("recovery")
        watchdog = self._watchdog()
        self.comms.revoke()
        try:
            role = self._recover(done)
        finally:
            watchdog.cancel()
        self.comms.forget()  # the next incarnation gets a new ctx.comm
        self.error = None  # recovered: the exception came with a failure, not from a bug
        return role

    def _recover(self, done: bool) -> str:
        while True:
            with contextlib.suppress(MPI.Exception):
                self.world.Revoke()  # wakes idle spares and anyone still on the old world
            try:
                return self._attempt(done)
            except (MPI.Exception, ProcessFailure):
                self.timeline.mark("failure during recovery: again")

    def _attempt(self, done: bool) -> str:
        world: MPI.Intracomm = self.world.Shrink()  # type: ignore[assignment]
        world.Set_errhandler(MPI.ERRORS_RETURN)
        self.world = world
        self.timeline.mark(f"shrunk to {world.Get_size()} processes")
        me = world.Get_rank()

        def transaction() -> tuple[
            list[Report], Plan | Shrunk | None, MpickptError | None, dict[int, Any], MPI.Comm
        ]:
            own = replace(self.ckpt.report(done, self.logical, self.domain), error=self.error)
            reports = world.allgather(own)
            try:
                plan = plan_recovery(
                    reports, self.nworkers, self.ckpt.scheme, fallback=self.disk is not None
                )
            except NoSparesError as e:
                shrunk = self._shrink(world, reports) if self.redistribute else None
                if shrunk is None:
                    return reports, None, self._save(world, reports, e), {}, MPI.COMM_NULL
                return reports, shrunk, None, {}, MPI.COMM_NULL
            except (UnrecoverableError, ApplicationError) as e:
                return reports, None, e, {}, MPI.COMM_NULL
            if plan.finish:
                return reports, plan, None, {}, MPI.COMM_NULL
            mine = plan.assign.index(me) if me in plan.assign else None
            if plan.from_disk:
                segments = self._load_spill(world, plan, mine)
                self.timeline.mark(f"beyond the RAM tolerance: reloaded version {plan.version}")
            else:
                segments = fetch_segment(
                    world,
                    self.ckpt.store,
                    self.ckpt.scheme,
                    plan.version,
                    plan.rebuild,
                    {owner: plan.assign[owner] for owner in plan.rebuild},
                )
                self.timeline.mark(self._rebuilt(plan))
            comm = world.Split(0 if mine is not None else MPI.UNDEFINED, key=mine or 0)
            return reports, plan, None, segments, comm

        # the transaction commits only if it completed everywhere; else ProcessFailure: again
        reports, plan, failure, segments, comm = uniformly(world, transaction, "recovery")
        if failure is not None:
            raise failure
        assert plan is not None
        if plan.finish:
            return "finished"
        if isinstance(plan, Shrunk):
            return self._commit_shrink(plan, reports)
        mine = plan.assign.index(me) if me in plan.assign else None
        self._commit(plan, reports, mine, comm, segments.get(mine) if mine is not None else None)
        self.recoveries += 1
        self.timeline.mark("recovered")
        return plan.role(me, reports)

    @property
    def disk(self) -> DiskTier | None:
        return self.ckpt.disk

    def _load_spill(self, world: MPI.Comm, plan: Plan, mine: int | None) -> dict[int, Any]:
        """Every worker-to-be loads its segment of the newest spilled version all can load."""
        assert self.disk is not None
        try:
            found = self.disk.restore(world, mine, self.nworkers)
        except SpillError as e:
            raise UnrecoverableError(
                f"lost workers {list(plan.dead)} beyond the RAM "
                f"tolerance and the spill cannot help: {e}",
                lost=plan.dead,
                version=plan.version,
            ) from None
        if found is None:
            raise UnrecoverableError(
                f"lost workers {list(plan.dead)} beyond the tolerance of "
                f"{self.ckpt.scheme!r} and no version in spill directory "
                f"{self.disk.directory}",
                lost=plan.dead,
                version=plan.version,
            )
        plan.version = found[0]
        return found[1]

    def _save(self, world: MPI.Comm, reports: list[Report], error: NoSparesError) -> MpickptError:
        """No spare is left: write the newest committed version of *every* worker to the spill
        (the survivors rebuild the dead workers' segments and write them on their behalf), so
        that a relaunch resumes from it. Returns the error to raise on every process."""
        disk = self.disk
        if disk is None or disk.writer is None:
            return error
        try:
            version, sources, dest = save_plan(reports, self.nworkers, self.ckpt.scheme)
        except UnrecoverableError as e:
            return (
                NoSparesError(f"{error}; {e}; relaunch from an older spilled version", error.lost)
                if disk.complete()
                else e
            )
        segments = fetch_segment(world, self.ckpt.store, self.ckpt.scheme, version, sources, dest)
        local = self.ckpt.store.local
        if self.logical is not None and self.logical not in dest and local is not None:
            segments[self.logical] = local
        infos = disk.write_now(version, segments)
        everyone = [i for part in world.allgather(infos) for i in part]
        if world.Get_rank() == 0:
            disk.commit(version, sorted(everyone, key=lambda i: int(i["rank"])))
        return NoSparesError(
            f"{error}; saved version {version} of all {self.nworkers} "
            f"workers to {disk.directory}: relaunch to resume from it",
            error.lost,
        )

    def _shrink(self, world: MPI.Intracomm, reports: list[Report]) -> Shrunk | None:
        """No spare left but a redistribution hook: continue on the surviving workers, each
        adopting the rebuilt segments of some dead ones. ``None`` if the scheme cannot work on
        that few failure domains (then the job saves and stops instead)."""
        version, sources, dest = save_plan(reports, self.nworkers, self.ckpt.scheme)
        alive = sorted(r.logical for r in reports if r.logical is not None)
        domains = [
            reports[i].domain for w in alive for i, r in enumerate(reports) if r.logical == w
        ]
        try:
            choose_backups(domains, self.ckpt.scheme.backups)
        except ConfigError:
            return None
        segments = fetch_segment(world, self.ckpt.store, self.ckpt.scheme, version, sources, dest)
        new = alive.index(self.logical) if self.logical is not None else None
        comm = world.Split(0 if new is not None else MPI.UNDEFINED, key=new or 0)
        return Shrunk(version, alive, domains, segments, comm)

    def _commit_shrink(self, plan: Shrunk, reports: list[Report]) -> str:
        old = self.logical
        self.nworkers = len(plan.alive)
        self.spare_procs = [i for i, r in enumerate(reports) if r.logical is None]
        if old is None:
            return "spare"
        self.logical = plan.alive.index(old)
        self.ckpt.attach(plan.comm, plan.domains)
        if self.disk is not None:
            self.disk.attach(self.logical, self.nworkers, self.ckpt.scheme.get_config())
        store = self.ckpt.store
        own = plan.segments.pop(old, store.local)
        store.versions, store.committed, store.local_version = {}, plan.version, -1
        step = int(unpack(own)[0]["step"])
        self._adopt(own, list(plan.segments.values()), step)
        self.recoveries += 1
        self.timeline.mark(f"continuing on {self.nworkers} workers (no spare left)")
        return "shrunk"

    def _adopt(self, own: Any, adopted: list[Any], step: int) -> None:
        """Hand this worker's saved state and the adopted ones to the redistribution hook;
        :meth:`Checkpointer.protect` then returns what it made of them."""
        assert self.redistribute is not None
        mine = dict(unpack(own)[1]) if own is not None else {}
        others = [dict(unpack(seg)[1]) for seg in adopted]
        self.ckpt.restored = self.redistribute(mine, others)
        self.ckpt.state = State()
        self.ckpt.step = step

    @staticmethod
    def _rebuilt(plan: Plan) -> str:
        nbytes = sum(n for n, _ in plan.rebuild.values())
        ranks = {h for _, src in plan.rebuild.values() for h, _, _ in src}
        return (
            f"rebuilt {nbytes / 2**20:.1f} MiB for worker(s) {sorted(plan.rebuild)} "
            f"from {len(ranks)} rank(s)"
        )

    def _commit(
        self, plan: Plan, reports: list[Report], logical: int | None, comm: MPI.Comm, segment: Any
    ) -> None:
        self.logical = logical
        self.spare_procs = [p for p in range(len(reports)) if p not in plan.assign]
        if logical is None:
            self.ckpt.comm = MPI.COMM_NULL
            return
        self.ckpt.attach(comm, [reports[p].domain for p in plan.assign])
        if self.disk is not None:
            self.disk.attach(logical, self.nworkers, self.ckpt.scheme.get_config())
        if plan.version < 0:  # nothing was committed: start again from the initial state
            self.ckpt.restored, self.ckpt.step = {}, 0
            self.ckpt.state = State()
            return
        store = self.ckpt.store
        if segment is None:  # a survivor with its own copy of that version
            segment = store.local
        if plan.from_disk:
            store.versions = {}
        store.commit(plan.version)
        store.local, store.local_version = segment, plan.version
        self.ckpt.restore_from(segment)


def fatal_excepthook(exc_type: Any, exc: BaseException, tb: Any) -> None:
    """Print the traceback, then die by ``SIGKILL``: an MPI process that merely exits with an
    error is not seen as failed by the others, which would wait for it forever."""
    sys.__excepthook__(exc_type, exc, tb)
    testing.die()
