"""Fault injection for tests and demos: real ``SIGKILL`` of rank processes.

``MPICKPT_KILL="RANK@STEP[:PHASE],..."`` kills the process whose ``COMM_WORLD`` rank is RANK
when it reaches STEP in PHASE: ``compute`` (default: at the start of the step, outside MPI),
``halo`` (inside the application's exchange, where it calls :func:`maybe_kill`),
``checkpoint`` (pieces sent, before the commit) or ``commit`` (just after it). ``RANK@recovery``
kills RANK as it enters its first recovery, ``RANK@start`` as it starts (before the
job's processes have joined), ``RANK@joined`` once they have (before the workers'
communicator is made), ``RANK@idle`` as it starts waiting as an idle spare,
``RANK@done`` once every worker agreed that the protected function returned (before it
returns to the application),
``RANK@stall`` stops it (SIGSTOP) as it enters its first
recovery: it is never reported failed. ``RANK@vanish`` ends it there with an error of its own
(exit 1, without ``MPI_Finalize``), as Open MPI ends a rank it aborts: over shared memory that
is never reported failed either.
``MPICKPT_PIDDIR=DIR`` makes every process write ``DIR/rank<N>.pid`` so that a test can kill
it from outside at any time.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import time
from functools import cache

from .config import config
from .files import write_text
from .recovery.watchdog import sigkill_self


@cache
def _world_rank() -> int:
    from mpi4py import MPI

    return int(MPI.COMM_WORLD.Get_rank())


@cache
def _my_kills() -> list[tuple[int, str]]:
    me = _world_rank()
    return [(s, p) for r, s, p in config().kill if r == me]


def arm() -> None:
    """Check ``MPICKPT_KILL`` and write the pid file now, before the job does anything."""
    write_pidfile()
    maybe_kill("start")


def die() -> None:
    """End this process the way a node failure would: ``SIGKILL``, no clean-up."""
    _record_death()
    sigkill_self()


def _record_death() -> None:
    d = config().piddir
    if d:  # when it died, for the demo's and the benchmark's timelines
        with open(os.path.join(d, f"killed-rank{_world_rank()}.time"), "w") as f:
            f.write(f"{time.time():.6f}\n")


def maybe_kill(phase: str, step: int = -1) -> None:
    """Die here if ``MPICKPT_KILL`` asks for this rank at this step and phase."""
    for s, p in _my_kills():
        if p == phase and (s == step or s < 0):
            die()
        if p == "stall" and phase == "recovery":  # stopped, never reported failed
            os.kill(os.getpid(), signal.SIGSTOP)
        if p == "vanish" and phase == "recovery":  # gone, never reported failed (over sm)
            _record_death()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)


def write_pidfile() -> None:
    """Write ``$MPICKPT_PIDDIR/rank<N>.pid`` if asked to; a normal exit removes it (a process
    killed or ended by an error leaves it, with the record of its kill)."""
    d = config().piddir
    if d:
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, f"rank{_world_rank()}.pid")
        write_text(path, f"{os.getpid()}\n")  # readers never see it empty
        atexit.register(_remove, path)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
