"""Exceptions raised by mpickpt, and the exit code each gives a job.

Every message says what happened and what to change.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from .launch import launched_rank


class MpickptError(Exception):
    """Base class of all mpickpt errors."""


class ConfigError(MpickptError, ValueError):
    """A configuration that cannot keep its promise (raised before any data moves)."""


class UnknownSchemeError(ConfigError):
    """No scheme is registered under that name."""


class DecodeError(MpickptError):
    """The pieces at hand are not enough to rebuild a segment (loss beyond tolerance)."""


class IntegrityError(MpickptError):
    """A piece or segment failed its checksum."""


class ProcessFailure(MpickptError):
    """A peer process failed (or the communicator was revoked); recovery is needed."""


class UnrecoverableError(MpickptError):
    """The loss is beyond what the redundancy (and the spill) can restore.

    Raised with the same message on every surviving rank.
    """

    def __init__(self, message: str, lost: tuple[int, ...] = (), version: int = -1) -> None:
        super().__init__(message)
        self.lost = lost
        self.version = version


class ApplicationError(MpickptError):
    """The protected function raised an exception on a worker. Not treated as a rank failure
    (a spare would run into the same bug): every rank raises this, with the same message."""


class NoSparesError(MpickptError):
    """A worker died and no spare rank is left to take its place."""

    def __init__(self, message: str, lost: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.lost = lost


class SpillError(MpickptError):
    """A spill file or directory is missing, damaged, or does not fit this job.

    ``paths`` lists the offending files (empty when the problem is not a file).
    """

    def __init__(self, message: str, paths: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.paths = list(paths)


class Preempted(MpickptError):
    """The job was asked to stop (SIGTERM/SIGUSR1); its state is on disk."""


EXIT_OK = 0  # done (with a spill, DIR/DONE says so)
EXIT_APPLICATION = 1  # the protected function raised an exception (ApplicationError)
EXIT_CONFIG = 2  # bad configuration or spill (the message says what to change)
EXIT_LOST_AT_START = 74  # a process was lost before MPI_Init completed; nothing ran: relaunch
EXIT_UNRECOVERABLE = 3  # the loss is beyond the redundancy and there is no spill to fall back to
EXIT_NO_SPARES = 75  # workers were lost and no spare was left: relaunch (from the spill)
EXIT_PREEMPTED = 76  # stopped on SIGTERM/SIGUSR1 after a final spill: requeue to continue

_EXIT_CODES: list[tuple[type[MpickptError], int]] = [
    (ApplicationError, EXIT_APPLICATION),
    (ConfigError, EXIT_CONFIG),
    (SpillError, EXIT_CONFIG),
    (UnrecoverableError, EXIT_UNRECOVERABLE),
    (NoSparesError, EXIT_NO_SPARES),
    (Preempted, EXIT_PREEMPTED),
]


def exit_code(error: BaseException) -> int | None:
    """The job's exit code for ``error``, or None if it is not one that ends a job cleanly."""
    for cls, code in _EXIT_CODES:
        if isinstance(error, cls):
            return code
    return None


def _first_process() -> bool:
    """Whether this is the job's first process (or the only one), from the launcher's
    environment (no MPI)."""
    return launched_rank() in (None, 0)


def excepthook(exc_type: Any, exc: BaseException, tb: Any) -> None:
    """Before the job's processes have joined: an mpickpt error here (a bad parameter, a bad
    environment variable) is usually the same on every process, so only the first prints it
    and exits with its code. The others end by ``SIGKILL``, as a failed process would: when
    every process has the error, ``mpiexec`` does not count their deaths (several processes
    exiting non-zero at once can hang Open MPI's) and returns the first one's code; when only
    some have it (a setting only their environment has), the others see them fail and recover
    without them, or end with the exit code of that, never hang waiting for them (they did,
    when these called ``MPI_Finalize`` and exited with 0). Anything else is Python's usual
    exit."""
    code = exit_code(exc)
    if code is None:
        sys.__excepthook__(exc_type, exc, tb)
        return
    sys.stdout.flush()
    if not _first_process():
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    print(f"mpickpt: {exc_type.__name__}: {exc}", file=sys.stderr, flush=True)
    os._exit(code)
