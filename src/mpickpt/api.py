"""The ``resilient`` decorator and the context a protected function receives."""

from __future__ import annotations

import functools
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

import mpi4py
from mpi4py import MPI

from . import testing
from .checkpointer import Checkpointer
from .disk import DiskTier
from .errors import (
    ApplicationError,
    ConfigError,
    MpickptError,
    NoSparesError,
    ProcessFailure,
    UnrecoverableError,
)
from .recovery import Redistribute, Runtime, fatal_excepthook, verbose
from .schemes import Scheme
from .spill import SpillError, mark_done

T = TypeVar("T")

EXIT_APPLICATION = 1  # the protected function raised an exception (ApplicationError)
EXIT_CONFIG = 2  # bad configuration or spill (the message says what to change)
EXIT_UNRECOVERABLE = 3  # the loss is beyond the redundancy and there is no spill to fall back to
EXIT_NO_SPARES = 75  # workers were lost and no spare was left: relaunch (from the spill)
EXIT_PREEMPTED = 76  # stopped on SIGTERM/SIGUSR1 after a final spill: requeue to continue
EXIT_CODES = {
    ApplicationError: EXIT_APPLICATION,
    UnrecoverableError: EXIT_UNRECOVERABLE,
    NoSparesError: EXIT_NO_SPARES,
}
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(Exception):
    """The job was asked to stop (SIGTERM/SIGUSR1); its state is on disk."""


_stop_requested = False


def _request_stop(signum: int, frame: Any) -> None:
    global _stop_requested
    _stop_requested = True


class Context:
    """What a protected function works with: ``comm`` (use it instead of ``COMM_WORLD``),
    ``role`` (``initial``, ``survivor`` or ``recovered``), :meth:`protect` and :meth:`steps`."""

    def __init__(self, runtime: Runtime, role: str, every: int) -> None:
        self.runtime = runtime
        self.checkpointer = runtime.ckpt
        self.role = role
        self.every = every
        # the application's own duplicate (its receives cannot take the library's messages);
        # whatever is derived from it is revoked when a worker leaves for a recovery
        self.comm: MPI.Intracomm = runtime.comms.root(runtime.ckpt.comm)
        self.rank: int = self.comm.Get_rank()
        self.size: int = self.comm.Get_size()

    def protect(self, name: str, obj: T) -> T:
        """Register state under ``name``; after a recovery the saved value comes back
        (arrays restored in place). See :meth:`Checkpointer.protect`."""
        return self.checkpointer.protect(name, obj)

    def __setitem__(self, name: str, value: Any) -> None:
        self.checkpointer[name] = value

    def __getitem__(self, name: str) -> Any:
        return self.checkpointer[name]

    def steps(self, n: int) -> Iterator[int]:
        """Steps ``start..n-1``, where ``start`` follows the restored checkpoint (0 at first).

        Checkpoints when it starts (after a recovery this re-protects at once: the pieces the
        dead held are gone), then after every ``every``-th step and after the last one, whose
        spill (if any) is waited for. On SIGTERM/SIGUSR1 it stops after the current step with
        a final checkpoint and spill (:class:`Preempted`).
        """
        ckpt = self.checkpointer
        start = ckpt.step
        ckpt.checkpoint(start)
        if self.role in ("survivor", "recovered", "shrunk"):
            self.runtime.timeline.mark(f"re-protected; resuming at step {start}")
            self.runtime.timeline.report(self.rank)
        for step in range(start, n):
            testing.maybe_kill("compute", step)
            yield step
            stop = ckpt.disk is not None and self._stop_agreed()
            if stop or (step + 1) % self.every == 0 or step + 1 == n:
                ckpt.checkpoint(step + 1)
            if stop:
                ckpt.flush()
                raise Preempted(f"stopped after step {step} on a signal; state saved")
        ckpt.flush()
        if ckpt.disk is not None and self.rank == 0 and verbose():
            print(f"mpickpt: spill: {ckpt.disk.summary()}", file=sys.stderr, flush=True)

    def _stop_agreed(self) -> bool:
        """Collective: whether any worker was asked to stop. An agreement, not a reduction:
        it cannot hang when a worker has left for a recovery (it then takes part with 0)."""
        try:
            flags = self.checkpointer.comm.Agree(1 | (0 if _stop_requested else 2))
        except MPI.Exception:
            flags = 0
        if not flags & 1:
            raise ProcessFailure("a worker failed")
        return not flags & 2

    def check(self) -> None:
        """Collective: raise :class:`ProcessFailure` if a worker has failed. For long phases
        without communication, so that the others do not compute on for nothing."""
        try:
            alive = self.checkpointer.comm.Agree(1)  # where a leaving worker agrees
        except MPI.Exception:
            alive = 0
        if not alive:
            raise ProcessFailure("a worker failed")


def run(fn: Callable[..., T], runtime: Runtime, every: int, *args: Any, **kwargs: Any) -> T | None:
    """Run ``fn(ctx, *args, **kwargs)`` on the workers until it completes on all of them,
    recovering from failures on the way. Idle spares return ``None``."""
    role = runtime.start() if runtime.is_worker else runtime.wait_as_spare()
    result: T | None = None
    while role != "finished":
        try:
            result = fn(Context(runtime, role, every), *args, **kwargs)
            role = runtime.finish()
        except ProcessFailure:  # raised after the workers' decision point
            role = runtime.recover(done=False)
        except MPI.Exception:  # seen in the application's own communication
            runtime.leave()
            role = runtime.recover(done=False)
        except (MpickptError, Preempted):
            raise
        except Exception as e:  # a bug, not a failed rank: every rank ends with ApplicationError
            traceback.print_exc()  # where it happened, from this rank only
            runtime.error = f"{type(e).__name__}: {e}"
            runtime.leave()
            role = runtime.recover(done=False)
        if role == "spare":  # pragma: no cover - a worker never becomes a spare
            role = runtime.wait_as_spare()
    if runtime.logical == 0 and runtime.disk is not None:  # every worker agreed it completed
        mark_done(runtime.disk.directory, runtime.ckpt.step)
    return result if runtime.is_worker else None


def _report(error: Exception, exit_on_error: bool) -> None:
    if not exit_on_error:
        raise error
    print(
        f"mpickpt: rank {MPI.COMM_WORLD.Get_rank()}: {type(error).__name__}: {error}",
        file=sys.stderr,
        flush=True,
    )


def _exit(code: int, runtime: Runtime | None, agreed: bool = True) -> NoReturn:
    """End the process so that the job ends with ``code`` (``runtime`` None: it could not be
    set up, every process is still there).

    Only one process exits with ``code``: the lowest rank left (rank 0 of ``runtime.world``,
    alive at the last agreement; never an idle spare while a worker is left, since spares have
    the highest ranks and are promoted lowest first); the others exit with 0, and mpiexec returns
    ``code``. When several processes exit non-zero at once, Open MPI 5.0's mpiexec can hang
    after every rank has gone (measured on a loaded host: 4-12 % of runs; none with one).
    ``agreed=False``: the processes left could not agree that they all got here, so the
    lowest one may be dead; then every one exits with ``code``.

    Through ``sys.exit`` (and so MPI_Finalize) while no failure was seen, else at once, since
    MPI_Finalize can hang after a failure."""
    world = MPI.COMM_WORLD if runtime is None else runtime.world
    if agreed and world.Get_rank() != 0:
        code = 0
    sys.stdout.flush()
    sys.stderr.flush()
    if runtime is None:
        MPI.Finalize()  # nothing failed; a runtime finalizes at exit (see Runtime._finalize)
    elif runtime.failures_seen:
        os._exit(code)
    sys.exit(code)


def resilient(
    scheme: str | Scheme = "parity",
    *,
    spares: int = 0,
    every: int = 10,
    spill: str | os.PathLike[str] | None = None,
    spill_every: int = 1,
    keep: int = 2,
    redistribute: Redistribute | None = None,
    exit_on_error: bool = True,
    **params: Any,
) -> Callable[[Callable[..., T]], Callable[..., T | None]]:
    """Make a time-step function survive rank failures.

    The function is called as ``fn(ctx, *args, **kwargs)`` on the workers (the first
    ``size - spares`` ranks); the last ``spares`` ranks wait idle and replace failed workers.
    State registered with ``ctx.protect`` is checkpointed into other ranks' RAM with ``scheme``
    (``parity``: ``group``, ``backups``; ``mirror``: ``copies``; ``stripe``: ``backups``)
    every ``every`` steps of ``ctx.steps``. Spares return ``None``.

    With ``spill="DIR"`` every ``spill_every``-th committed version is also written to HDF5
    in the background (the last ``keep`` versions are kept). A job that finds a complete
    version there resumes from it (role ``restarted``); a loss beyond the RAM tolerance rolls
    every worker back to it; with no spare left the survivors save the newest version of all
    workers there and exit with :data:`EXIT_NO_SPARES`; SIGTERM/SIGUSR1 stop the job after a
    final spill with :data:`EXIT_PREEMPTED`.

    ``redistribute(mine, adopted) -> values`` lets the job change its number of workers: when
    workers die and no spare is left, the survivors continue (role ``shrunk``), each handed its
    own saved state and those of the dead workers it adopts; a restart from a spill written by
    another number of workers hands worker ``i`` the states of old workers ``i, i + n, ...``.
    It returns the values (name -> value) that ``ctx.protect`` then gives back.

    When recovery is impossible every surviving rank raises the same
    :class:`UnrecoverableError` (or :class:`NoSparesError`); with ``exit_on_error`` (default)
    it is printed once and the job exits with :data:`EXIT_UNRECOVERABLE` (or
    :data:`EXIT_NO_SPARES`). An exception raised by ``fn`` on a worker is not a failed rank:
    every rank raises the same :class:`ApplicationError` (the job exits with
    :data:`EXIT_APPLICATION`), and a configuration that cannot work exits with ``2``.
    """

    def decorate(fn: Callable[..., T]) -> Callable[..., T | None]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> T | None:
            sys.excepthook = fatal_excepthook
            if not MPI.Is_initialized():  # a library (Devito) told mpi4py to leave it to others
                MPI.Init_thread()
            if mpi4py.rc.finalize:
                warnings.warn(
                    "mpi4py.MPI was imported before mpickpt: MPI_Finalize will run "
                    "at exit and can hang after a failure; import mpickpt first",
                    stacklevel=2,
                )

            def make() -> Checkpointer:
                ckpt = Checkpointer(None, scheme, **params)
                if spill is not None:
                    ckpt.disk = DiskTier(spill, spill_every, keep)
                return ckpt

            if spill is not None:
                for sig in STOP_SIGNALS:  # early: Slurm may signal long before the end
                    signal.signal(sig, _request_stop)
            try:
                runtime = Runtime(make, spares, redistribute)
            except (ConfigError, SpillError) as e:  # the same on every process
                _report(e, exit_on_error)
                _exit(EXIT_CONFIG, None)
            try:
                result = run(fn, runtime, every, *args, **kwargs)
            except Preempted:
                runtime.release_spares(EXIT_PREEMPTED)
                _exit(EXIT_PREEMPTED, runtime)
            except SpillError as e:  # at the start, on every worker: the spares are idle
                _report(e, exit_on_error)
                runtime.release_spares(EXIT_CONFIG)
                _exit(EXIT_CONFIG, runtime)
            except (UnrecoverableError, NoSparesError, ApplicationError) as e:  # on everyone
                _report(e, exit_on_error)
                agreed = runtime.settle()  # every survivor has said it before any exits
                _exit(EXIT_CODES[type(e)], runtime, agreed)
            if runtime.exit_code:  # an idle spare, told how the workers ended: it exits with 0
                _exit(runtime.exit_code, runtime)
            return result

        return wrapper

    return decorate
