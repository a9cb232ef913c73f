"""A bound on ``MPI_Init``: a process of the job lost while the job starts must not hang it.

ULFM tolerates failures only once MPI is initialised. A process killed earlier (during its
imports, or inside ``MPI_Init``) leaves the others waiting forever in ``MPI_Init``'s exchange
of addresses, and mpiexec never ends the job. No Python code can run meanwhile (mpi4py holds
the interpreter lock in ``MPI_Init``), so the guard is :func:`faulthandler.dump_traceback_later`,
whose timer is a C thread: past the deadline it writes the traceback into a pipe to a small
watcher process forked before ``MPI_Init``, which then prints one clear line instead: the first
watcher of the job on each host (a file in the launcher's session directory decides), so not one
per process. Half a second later a timer of the C library (:mod:`.exittimer`) exits the process
with :data:`~.errors.EXIT_LOST_AT_START` (74), which mpiexec turns into the job's exit code, so
that a launcher relaunches the job (faulthandler's own exit, with 1, where that timer is
missing).
The deadline grows with the rank (2 s per rank, up to rank 5), so that processes do not exit
non-zero all at once (that can hang Open MPI's mpiexec).

Armed by ``import mpickpt`` when the process was started by a launcher and ``mpi4py.MPI`` is
not yet imported (import mpickpt first): a finder on :data:`sys.meta_path` wraps the import of
``mpi4py.MPI``. ``MPICKPT_INIT_TIMEOUT`` sets the deadline in seconds (default 40; 0 turns the
guard off). No MPI here.
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

from . import exittimer
from .config import config
from .errors import EXIT_LOST_AT_START, ConfigError
from .launch import launched_rank

STAGGER = 2.0  # seconds between the deadlines of successive ranks
STAGGERED_RANKS = 5  # ranks from this one on share the last deadline
EXIT_DELAY = 0.5  # seconds from the traceback to the exit: the watcher reads it meanwhile


def init_timeout() -> float:
    """``MPICKPT_INIT_TIMEOUT`` in seconds (0: no guard). A malformed setting disarms the
    guard: the library reports it (exit 2) when it reads its configuration, once MPI runs."""
    try:
        return config().init_timeout
    except ConfigError:
        return 0.0


def deadline(rank: int, timeout: float) -> float:
    """Seconds this rank waits in ``MPI_Init`` before it gives up."""
    return timeout + STAGGER * min(rank, STAGGERED_RANKS)


def message(rank: int, seconds: float) -> str:
    return (
        f"mpickpt: world rank {rank}: MPI_Init did not complete within {seconds:g} s: a process "
        "of this job died (or hung) as the job started, before MPI could tolerate its loss; "
        f"nothing was computed (exit {EXIT_LOST_AT_START}). Relaunch the job. If MPI start-up is "
        "merely slow here, raise MPICKPT_INIT_TIMEOUT (seconds; 0 turns this guard off).\n"
    )


def first_on_host() -> bool:
    """Whether no other process of this job on this host said it: a file in the launcher's
    session directory on this host (one per job, removed with the job) decides."""
    session = os.environ.get("PMIX_SERVER_TMPDIR")
    if not session:
        return True
    try:
        flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY
        os.close(os.open(os.path.join(session, "mpickpt-init-timeout"), flags, 0o600))
    except FileExistsError:
        return False
    except OSError:  # no usable session directory: rather twice than never
        pass
    return True


class Guard:
    """The bound on one ``MPI_Init``: :meth:`arm` before, :meth:`disarm` after."""

    def __init__(self, rank: int, timeout: float) -> None:
        self.rank, self.seconds = rank, deadline(rank, timeout)
        self.watcher = 0
        self.pipe = -1
        self.exit: exittimer.ExitTimer | None = None

    def arm(self) -> None:
        read, self.pipe = os.pipe()
        with warnings.catch_warnings():  # the watcher makes raw system calls only
            warnings.simplefilter("ignore", DeprecationWarning)
            self.watcher = os.fork()
        if self.watcher == 0:  # pragma: no cover - the watcher process
            os.close(self.pipe)
            try:
                if os.read(read, 1) and first_on_host():  # the timer fired: the rank exits
                    os.write(2, message(self.rank, self.seconds).encode())
            finally:
                os._exit(0)
        os.close(read)
        self.exit = exittimer.start(self.seconds + EXIT_DELAY, EXIT_LOST_AT_START)
        faulthandler.dump_traceback_later(self.seconds, exit=self.exit is None, file=self.pipe)

    def disarm(self) -> None:
        faulthandler.cancel_dump_traceback_later()
        if self.exit is not None:
            self.exit.cancel()
            self.exit = None
        if self.pipe >= 0:
            os.close(self.pipe)  # the watcher reads the end of the pipe and exits quietly
            self.pipe = -1
        if self.watcher:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.watcher, 0)
            self.watcher = 0


# The finder and the loader below are plain classes with the methods the import system calls:
# importlib.abc's base classes would cost every job's launcher (`mpickpt run`) ~20 ms of imports.


class _GuardedLoader:
    """The loader of ``mpi4py.MPI``, with :class:`Guard` armed while the module is created
    and executed (``MPI_Init`` runs in one of the two)."""

    def __init__(self, loader: Any, guard: Guard) -> None:
        self.loader, self.guard = loader, guard

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        if sys.modules["mpi4py"].rc.initialize:  # else MPI starts later, bounded by bounded()
            self.guard.arm()
        try:
            module: ModuleType | None = self.loader.create_module(spec)
        except BaseException:
            self.guard.disarm()
            raise
        return module

    def exec_module(self, module: ModuleType) -> None:
        try:
            self.loader.exec_module(module)
        finally:
            self.guard.disarm()


class _Finder:
    """Finds ``mpi4py.MPI`` as usual, once, and guards its loading."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "mpi4py.MPI":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        # the other finders (mpi4py has its own, which picks the build for the MPI in use)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            # a duck-typed loader (see above)
            spec.loader = _GuardedLoader(spec.loader, self.guard)  # type: ignore[assignment]
        return spec


def _guard() -> Guard | None:
    """This process's guard, or ``None`` outside a launcher or with the guard off."""
    rank = launched_rank()
    if rank is None:
        return None
    timeout = init_timeout()
    return Guard(rank, timeout) if timeout else None


@contextlib.contextmanager
def bounded() -> Iterator[None]:
    """Bound an explicit ``MPI.Init`` (a library such as Devito may have told mpi4py not to
    initialise MPI at import) the same way."""
    guard = _guard()
    if guard is not None:
        guard.arm()
    try:
        yield
    finally:
        if guard is not None:
            guard.disarm()


# mpi4py.MPI was imported before mpickpt: mpi4py read its rc then, so it will call MPI_Finalize
# at exit (set by take_over_finalize)
FINALIZE_ARMED = False


def take_over_finalize() -> None:
    """Keep mpi4py from calling ``MPI_Finalize`` at exit: it can hang after a failure
    (open-mpi/ompi#11404), so :mod:`.recovery.ending` calls it only after a clean run. mpi4py
    reads ``mpi4py.rc`` when ``mpi4py.MPI`` is imported: if that came first, it is too late,
    and :data:`FINALIZE_ARMED` says so (``rc.finalize`` None: finalize if mpi4py initialised)."""
    global FINALIZE_ARMED
    import mpi4py

    FINALIZE_ARMED = "mpi4py.MPI" in sys.modules and mpi4py.rc.finalize is not False
    mpi4py.rc.finalize = False


def guard_mpi_init() -> bool:
    """Bound the coming ``MPI_Init`` of this process (see the module docstring); ``True`` if
    armed. Nothing happens outside a launcher, once MPI is imported, or with the guard off."""
    if "mpi4py.MPI" in sys.modules:
        return False
    if any(isinstance(f, _Finder) for f in sys.meta_path):
        return True
    guard = _guard()
    if guard is None:
        return False
    sys.meta_path.insert(0, _Finder(guard))
    return True
