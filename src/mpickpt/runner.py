"""The engine under ``@resilient``: set the job up, run the protected function through its
roles until it completed on every worker, and end every process with the job's exit code."""

from __future__ import annotations

import os
import signal
import traceback
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from mpi4py import MPI

from . import errors, faults, report, startup
from .checkpointer import Checkpointer
from .config import config
from .context import Context, stop_requested
from .errors import (
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
from .log import MpickptWarning, logger
from .policies import Policy
from .recovery.ending import current as ending_of_job
from .recovery.fallback import Redistribute
from .recovery.transaction import Runtime
from .schedule import make_schedule
from .schemes import Scheme, get_scheme
from .spill.tier import DiskTier

T = TypeVar("T")
# the MPI errors that mean a lost peer; any other is the application's, unless a peer died
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
        if not MPI.Is_initialized():  # a library (Devito) told mpi4py to leave it to others
            with startup.bounded():
                MPI.Init_thread()
        if startup.FINALIZE_ARMED and MPI.COMM_WORLD.Get_rank() == 0:  # the same everywhere
            warnings.warn(
                "mpi4py.MPI was imported before mpickpt: after a failure the processes end "
                "without running the exit handlers registered before the run (mpi4py's "
                "MPI_Finalize at exit could hang the job); import mpickpt first",
                MpickptWarning,
                stacklevel=3,
            )
        faults.arm()  # the environment is checked before anything runs
        if self.spill is not None:
            for sig in STOP_SIGNALS:  # early: Slurm may signal long before the end
                signal.signal(sig, stop_requested.set)
        try:
            workers = get_scheme(self.scheme, **self.params).min_workers
            runtime = Runtime(self._checkpointer, self.spares, self.redistribute, workers)
            ending = runtime.members.ending
        except (ConfigError, SpillError) as e:  # the same on every process
            self._raise_unless_exit(e)
            joined = ending_of_job()
            if joined is not None:
                joined.end(exit_code(e) or 1, _describe(e))
            errors.excepthook(type(e), e, None)  # printed once; the job exits with 2
            raise  # pragma: no cover - excepthook exits
        members = runtime.members
        ending.revoke.append(lambda: members.world.Revoke())
        ending.revoke.append(lambda: runtime.ckpt.comm.Revoke())
        ending.revoke.append(runtime.comms.revoke)
        try:
            result = self._roles(fn, runtime, args, kwargs)
        except (Preempted, SpillError) as e:  # on every worker; the spares are idle
            self._write_report(runtime, e)
            self._raise_unless_exit(e)
            code = exit_code(e) or 1
            members.release_spares(runtime.ckpt.comm, code)
            ending.end(code, _describe(e))
        except (UnrecoverableError, NoSparesError, ApplicationError, ConfigError) as e:
            self._write_report(runtime, e)  # the same error on everyone
            self._raise_unless_exit(e)
            ending.end(exit_code(e) or 1, _describe(e))
        self._write_report(runtime, None)
        if members.exit_code:  # an idle spare, told how the workers ended the job
            ending.end(members.exit_code)
        return result

    def _write_report(self, runtime: Runtime, error: Exception | None) -> None:
        """Worker 0 writes the run report, if one was asked for (never fails the job)."""
        path = self.report if self.report is not None else config().report
        if not path or runtime.members.logical != 0:
            return
        ckpt, disk = runtime.ckpt, runtime.disk
        spill: dict[str, Any] | None = None
        if disk is not None:
            spill = {
                "directory": disk.directory,
                "tag": disk.tag,
                "versions_submitted": disk.submitted,
                "copying_s": round(disk.copying, 6),
                "waiting_s": round(disk.waiting, 6),
            }
        data = report.build(
            outcome=exit_code(error) or 1 if error is not None else 0,
            message=_describe(error) if error is not None else "",
            role=self.role,
            scheme=ckpt.scheme.get_config(),
            workers=runtime.members.nworkers,
            spares=self.spares,
            step=ckpt.step,
            counters=ckpt.stats,
            spill=spill,
            recoveries=runtime.history,
        )
        try:
            report.write(path, data)
        except OSError as e:
            logger().warning(f"cannot write the run report {path}: {e}")

    def _roles(self, fn: Callable[..., T], runtime: Runtime, args: Any, kwargs: Any) -> T | None:
        """Enter ``fn`` in each role this process takes until the job is finished."""
        role = runtime.enter()
        result: T | None = None
        while role != "finished":
            try:
                self.role = role
                result = fn(Context(runtime, role, self.schedule), *args, **kwargs)
                role = runtime.finish()
            except ProcessFailure:  # raised after the workers' decision point
                role = runtime.recover()
            except MPI.Exception as e:  # seen in the application's own communication
                if e.Get_error_class() not in FAILURE_CLASSES:  # e.g. MPI_ERR_TRUNCATE: a bug,
                    # unless a peer did die (after a failure Open MPI may report ERR_OTHER):
                    # the recovery's plan tells, the same on every process
                    runtime.error = f"MPI error: {e.Get_error_string()}"
                runtime.leave()
                role = runtime.recover()
            except ConfigError as e:  # a misuse, the same on every worker that makes it
                runtime.error = f"{type(e).__name__}: {e}"
                runtime.leave()
                role = runtime.recover()
            except (MpickptError, Preempted):
                raise
            except Exception as e:  # a bug, not a failed rank: every rank ends the same way
                traceback.print_exc()  # where it happened, from this rank only
                runtime.error = f"{type(e).__name__}: {e}"
                runtime.leave()
                role = runtime.recover()
            if role == "spare":  # pragma: no cover - a worker never becomes a spare
                role = runtime.wait_as_spare()
        if runtime.members.logical == 0 and runtime.disk is not None:
            runtime.disk.done(runtime.ckpt.step)  # every worker agreed it completed
        return result if runtime.members.is_worker else None

    def _raise_unless_exit(self, error: Exception) -> None:
        if not self.exit_on_error:
            raise error


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"
