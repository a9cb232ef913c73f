"""How every process ends, truthfully: one agreement on the job's outcome, then only the
lowest process left exits with the job's code.

Under ``--with-ft ulfm`` mpiexec does not count processes killed by a signal, and when several
processes exit non-zero at once Open MPI 5.0's mpiexec can hang after every one has gone
(never with one: docs/measurements.md). And a process that exits with an
error is not seen as failed by its peers over shared memory: they would wait for it forever.
So every process ends in a final agreement (``MPI_Comm_agree`` over a communicator used for
nothing else, tolerant of dead processes) in which it states its outcome: 0 after a normal
end (at exit), or the exit code of the error that ends it. The lowest process left exits with
the worst outcome stated (the first in :data:`PRECEDENCE`), every other with 0, and mpiexec
returns that code. A process whose code raised first revokes ``COMM_WORLD`` and the library's
communicators, so that peers blocked in communication with it fail and join the agreement.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from mpi4py import MPI

from .. import startup
from ..errors import exit_code
from ..integrations import petsc
from ..log import say
from ..transport import agree_over_failures

# outcomes in order of precedence: the job exits with the first one any process stated
PRECEDENCE = (1, 2, 3, 75, 76)
_ALL = (1 << len(PRECEDENCE)) - 1


class Ending:
    """This process's end, agreed over ``final``: every process of the job, a communicator
    used for nothing else (never revoked), with ``MPI.ERRORS_RETURN``."""

    def __init__(self, final: MPI.Comm) -> None:
        self.final = final
        self.failures_seen = False
        self.revoke: list[Callable[[], object]] = []  # revoke these communicators on an error
        self.ended = False
        self.outcome = 0  # what this process states at a normal end (2: its spill failed)
        # the workers once they agreed that the protected function returned everywhere: one
        # lost after that (e.g. worker 0 before it printed the result) fails the job
        self.workers: set[int] = set()
        self.late: list[int] = []

    def agree(self, code: int) -> tuple[int, bool]:
        """Collective over the processes left: the job's code and whether this process is the
        lowest one left. A process that cannot agree keeps ``code`` and counts as lowest."""
        # Agree ANDs the flags: each outcome stated clears its bit (an unknown code counts as 1)
        mine = _ALL & ~(1 << PRECEDENCE.index(code if code in PRECEDENCE else 1)) if code else _ALL
        agreed_dead = agree_over_failures(self.final, mine)
        if agreed_dead is None:
            self.failures_seen = True
            return code, True
        agreed, dead = agreed_dead
        # Whether a process was lost decides how every process ends (MPI_Finalize can hang
        # after a failure), and one may learn of a death only after the others (over shared
        # memory, idle spares did): a second agreement makes it one decision
        seen = agree_over_failures(self.final, 0 if dead else 1)
        if dead or seen is None or not seen[0] or seen[1]:
            self.failures_seen = True
        job = next((c for i, c in enumerate(PRECEDENCE) if not agreed & (1 << i)), 0)
        self.late = sorted(dead & self.workers)
        if self.late and not job:
            job = 1
        return job, all(r in dead for r in range(self.final.Get_rank()))

    def end(self, code: int, message: str = "") -> NoReturn:
        """Agree on the outcome with every process left; the lowest prints ``message`` and
        exits with the job's code, the others with 0."""
        self.ended = True
        job, lowest = self.agree(code)
        if lowest and message:
            say(message)
        self._exit(job if lowest else 0, clean=not job)

    def _exit(self, code: int, clean: bool) -> NoReturn:
        logging.shutdown()  # os._exit runs no exit handler: flush the logs' files here
        sys.stdout.flush()
        sys.stderr.flush()
        if clean and not self.failures_seen:
            finalize()  # mpiexec expects it after a clean run; it can hang after a failure
        os._exit(code)

    def at_exit(self) -> None:
        """The normal end of a process: agree that it ended well, and learn whether all did."""
        if self.ended:
            return
        self.ended = True
        job, lowest = self.agree(self.outcome)
        if job:
            if lowest and self.late:
                say(
                    f"world rank {self.final.Get_rank()}: worker process(es) {self.late} "
                    "(COMM_WORLD ranks) died after the protected function had returned on every "
                    "worker: what they did after it (printing or saving results) may be missing"
                )
            self._exit(job if lowest else 0, clean=False)
        if not self.failures_seen:
            finalize()
        elif startup.FINALIZE_ARMED or petsc.running():
            # mpi4py.MPI was imported before mpickpt: mpi4py would call MPI_Finalize once the
            # interpreter is torn down, and after a failure that can hang the job (see
            # docs/measurements.md); petsc4py's exit handlers are collective over COMM_WORLD.
            # End here; the exit handlers registered earlier do not run.
            self._exit(0, clean=False)

    def excepthook(self, exc_type: Any, exc: BaseException, tb: Any) -> None:
        """An exception nobody caught: print it, wake the peers, end with its exit code."""
        traceback.print_exception(exc_type, exc, tb)
        for revoke in [MPI.COMM_WORLD.Revoke, *self.revoke]:
            with contextlib.suppress(Exception):
                revoke()
        self.end(exit_code(exc) or 1)


def finalize() -> None:
    """The clean end of MPI, after the libraries built on it: PETSc first (the clean-up
    petsc4py runs at exit, then ``PetscFinalize``, which itself ends MPI if it started it),
    whichever of them initialised MPI; left to petsc4py's exit handlers, PETSc would call MPI
    after ``MPI_Finalize`` and abort the process."""
    petsc.finalize()
    if not MPI.Is_finalized():
        MPI.Finalize()


_ending: Ending | None = None


def install(final: MPI.Comm) -> Ending:
    """Set up the end of this process over ``final`` (see :class:`Ending`; once)."""
    global _ending
    if _ending is None:
        _ending = Ending(final)
        atexit.register(_ending.at_exit)
        sys.excepthook = _ending.excepthook
    return _ending


def current() -> Ending | None:
    """The end set up by :func:`install`, if any."""
    return _ending
