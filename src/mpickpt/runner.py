"""The engine under ``@resilient``: set the job up, run the protected function through its
roles until it completed on every worker, and end every process with the job's exit code."""

from __future__ import annotations

import contextlib
import os
import signal
import traceback
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from mpi4py import MPI

from . import errors, faults, heartbeat, report, startup
from .checkpointer import Checkpointer
from .config import config
from .context import Context, stop_requested
from .errors import (
    EXIT_CONFIG,
    ApplicationError,
    ConfigError,
    MpickptError,
    NoSparesError,
    Preempted,
    ProcessFailure,
    SpillError,
    UnrecoverableError,
    exit_code,
)
from .integrations import petsc
from .log import logger, warn
from .policies import Policy
from .recovery.ending import current as ending_of_job
from .recovery.fallback import Redistribute
from .recovery.transaction import Job
from .schedule import make_schedule
from .schemes import Scheme, get_scheme
from .spill.tier import DiskTier

T = TypeVar("T")
# the MPI errors that mean a lost peer. Any other (MPI_ERR_IN_STATUS from a Waitall among them)
# is reported to the recovery as an MPI error: a lost peer if one died (the plan tells, the same
# on every process), the echo of a peer's own error if one raised, else the application's bug
FAILURE_CLASSES = (MPI.ERR_PROC_FAILED, MPI.ERR_PROC_FAILED_PENDING, MPI.ERR_REVOKED)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Runner:
    """Runs a protected function on the workers of this job; the object API under
    :func:`mpickpt.resilient`, which takes the same arguments.

    ``Runner("parity", group=3, backups=4, spares=1).run(fn, *args)`` calls
    ``fn(ctx, *args)`` on the workers until it completed on all of them, recovering from
    failures on the way, and returns its result (``None`` on idle spares). With
    ``exit_on_error`` a run that cannot complete ends the process with the job's exit code.
    ``recycle=False`` gives back the receive buffers of each dropped version instead of keeping
    them for the next checkpoint: about 4/3 of a segment less between checkpoints with
    ``parity(3,4)``, the same peak during one, and slower checkpoints (fresh pages each time).
    """

    def __init__(
        self,
        scheme: str | Scheme = "parity",
        *,
        spares: int = 0,
        every: int | str | Policy | None = None,
        every_seconds: float | str | None = None,
        mtbf: float | str | None = None,
        spill: str | os.PathLike[str] | None = None,
        spill_every: int = 1,
        keep: int = 2,
        redistribute: Redistribute | None = None,
        exit_on_error: bool = True,
        tag: str | None = None,
        fresh: bool = False,
        report: str | os.PathLike[str] | None = None,
        recycle: bool = True,
        **params: Any,
    ) -> None:
        if tag is not None and not isinstance(tag, str):
            raise ConfigError(f"tag must be a string (e.g. a hash of the inputs), got {tag!r}")
        for name, value, least in (
            ("spares", spares, 0),
            ("spill_every", spill_every, 1),
            ("keep", keep, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"{name} must be a whole number >= {least}, got {value!r}")
        get_scheme(scheme, **params)  # a bad scheme or parameter fails here, where it is written
        mtbf = config().mtbf if mtbf is None else mtbf  # the argument wins over MPICKPT_MTBF
        self.schedule = make_schedule(every, every_seconds, mtbf)
        self.scheme, self.params = scheme, params
        self.spares, self.redistribute = spares, redistribute
        self.spill, self.spill_every, self.keep = spill, spill_every, keep
        self.exit_on_error = exit_on_error
        self.tag, self.fresh = tag, bool(fresh)
        self.report = report
        self.recycle = bool(recycle)
        self.role = ""  # the role this process last entered the function with

    def _checkpointer(self) -> Checkpointer:
        ckpt = Checkpointer(None, self.scheme, recycle=self.recycle, **self.params)
        if self.spill is not None:
            fresh = self.fresh or config().fresh
            ckpt.disk = DiskTier(self.spill, self.spill_every, self.keep, tag=self.tag, fresh=fresh)
        return ckpt

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """Run ``fn(ctx, *args, **kwargs)`` as described in the class docstring."""
        _start_mpi()
        faults.arm()  # the environment is checked before anything runs
        with self._stop_signals():
            job = self._join()
            return self._finish(job, fn, args, kwargs)

    @contextlib.contextmanager
    def _stop_signals(self) -> Iterator[None]:
        """With a spill, SIGTERM and SIGUSR1 ask the workers to spill and stop (early: Slurm
        may signal long before the end); the previous handlers are back after the run."""
        if self.spill is None:
            yield
            return
        previous = {sig: signal.signal(sig, stop_requested.set) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _join(self) -> Job:
        """Every process joins the job; a configuration that cannot work ends it (exit 2)."""
        try:
            workers = get_scheme(self.scheme, **self.params).min_workers
            job = Job(self._checkpointer, self.spares, self.redistribute, workers)
        except (ConfigError, SpillError) as e:  # the same on every process
            self._raise_unless_exit(e)
            joined = ending_of_job()
            if joined is not None:
                joined.end(exit_code(e) or 1, _describe(e))
            errors.excepthook(type(e), e, None)  # printed once; the job exits with 2
            raise  # pragma: no cover - excepthook exits
        ending, members = job.members.ending, job.members
        ending.revoke.append(lambda: members.world.Revoke())
        ending.revoke.append(lambda: job.ckpt.comm.Revoke())
        ending.revoke.append(job.comms.revoke)
        return job

    def _finish(self, job: Job, fn: Callable[..., T], args: Any, kwargs: Any) -> T | None:
        """Run ``fn`` in its roles until the job is finished; the result, or the job's end."""
        members, ending = job.members, job.members.ending
        try:
            result = self._roles(fn, job, args, kwargs)
        except (Preempted, SpillError) as e:  # on every worker; the spares are idle
            self._write_report(job, e)
            self._raise_unless_exit(e)
            code = exit_code(e) or 1
            members.release_spares(job.ckpt.comm, code)
            ending.end(code, _describe(e))
        except (UnrecoverableError, NoSparesError, ApplicationError, ConfigError) as e:
            self._write_report(job, e)  # the same error on everyone
            self._raise_unless_exit(e)
            ending.end(exit_code(e) or 1, _describe(e))
        self._write_report(job, None)
        if job.disk is not None:
            job.disk.close()  # its helper process ends here, not at the interpreter's exit
        if members.logical == 0:  # every worker completed: the result is there
            heartbeat.current().phase("done")
        if members.exit_code:  # an idle spare, told how the workers ended the job
            ending.end(members.exit_code)
        return result

    def _write_report(self, job: Job, error: Exception | None) -> None:
        """Worker 0 writes the run report, if one was asked for (never fails the job)."""
        path = self.report if self.report is not None else config().report
        if not path or job.members.logical != 0:
            return
        ckpt, disk = job.ckpt, job.disk
        spill: dict[str, Any] | None = None
        if disk is not None:
            spill = {
                "directory": disk.directory,
                "tag": disk.tag,
                "versions_submitted": disk.submitted,
                "copying_s": round(disk.copying, 6),
                "waiting_s": round(disk.waiting, 6),
            }
        outcome, message = 0, job.spill_problem or ""
        if job.spill_problem:
            outcome = EXIT_CONFIG
        if error is not None:
            outcome, message = exit_code(error) or 1, _describe(error)
        data = report.build(
            outcome=outcome,
            message=message,
            role=self.role,
            scheme=ckpt.scheme.get_config(),
            workers=job.members.nworkers,
            spares=self.spares,
            step=ckpt.step,
            counters=ckpt.stats,
            spill=spill,
            recoveries=job.history,
            resumed=job.resumed,
        )
        try:
            report.write(path, data)
        except OSError as e:
            logger().warning(f"cannot write the run report {path}: {e}")

    def _roles(self, fn: Callable[..., T], job: Job, args: Any, kwargs: Any) -> T | None:
        """Enter ``fn`` in each role this process takes until the job is finished."""
        role = job.enter()
        result: T | None = None
        while role != "finished":
            try:
                self.role = role
                result = fn(Context(job, role, self.schedule), *args, **kwargs)
                role = job.finish()
            except ProcessFailure:  # raised after the workers' decision point
                role = job.recover()
            except MPI.Exception as e:  # seen in the application's own communication
                if e.Get_error_class() not in FAILURE_CLASSES:  # e.g. MPI_ERR_TRUNCATE: a bug,
                    # unless a peer did die (after a failure Open MPI may report ERR_OTHER):
                    # the recovery's plan tells, the same on every process
                    job.raised(f"MPI error: {e.Get_error_string()}", "mpi")
                job.leave()
                role = job.recover()
            except ConfigError as e:  # a misuse, the same on every worker that makes it
                job.raised(f"{type(e).__name__}: {e}", "misuse")
                job.leave()
                role = job.recover()
            except (MpickptError, Preempted):
                raise
            except Exception as e:
                if job.comms.failed():  # a library (PETSc) met a failed or revoked peer
                    logger().debug(f"{type(e).__name__} after a failure: {e}")
                else:  # a bug, not a failed rank: every rank ends the same way
                    traceback.print_exc()  # where it happened, from this rank only
                    job.raised(f"{type(e).__name__}: {e}", "bug")
                job.leave()
                role = job.recover()
            if role == "spare":  # pragma: no cover - a worker never becomes a spare
                role = job.wait_as_spare()
        if job.members.logical == 0 and job.disk is not None:
            _finish_spill(job)  # every worker agreed it completed
        return result if job.members.is_worker else None

    def _raise_unless_exit(self, error: Exception) -> None:
        if not self.exit_on_error:
            raise error


def _start_mpi() -> None:
    """``MPI_Init`` if nobody ran it yet (a library such as Devito told mpi4py to leave it to
    others), bounded as at import; warn once if mpi4py's ``MPI_Finalize`` at exit is armed."""
    if not MPI.Is_initialized():
        with startup.bounded():
            MPI.Init_thread()
    if startup.FINALIZE_ARMED and MPI.COMM_WORLD.Get_rank() == 0:  # the same everywhere
        warn(
            "mpi4py.MPI was imported before mpickpt: after a failure the processes end "
            "without running the exit handlers registered before the run (mpi4py's "
            "MPI_Finalize at exit could hang the job); import mpickpt first",
            stacklevel=4,
        )
    started_by_petsc = petsc.start()  # PETSc's signal handler would abort the job
    if started_by_petsc and MPI.COMM_WORLD.Get_rank() == 0:
        warn(started_by_petsc, petsc.PetscWarning, stacklevel=4)


def _finish_spill(job: Job) -> None:
    """Worker 0 marks the spill ``DONE``. If the spill failed at the end, the result is still
    handed back, and the job's exit code says that the spill failed (the exit-code table)."""
    assert job.disk is not None
    problem = job.disk.finish(job.ckpt.step)
    if problem is not None:
        job.spill_problem = f"the result was computed, but the spill failed: {problem}"
        logger().error(f"{job.spill_problem}; the job exits with {EXIT_CONFIG}")
        job.members.ending.outcome = EXIT_CONFIG


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"
