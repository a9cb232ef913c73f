"""What keeps a failed job from hanging: the recovery watchdog, and an end that peers see."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

from mpi4py import MPI

from ..config import config
from ..log import say


class Watchdog:
    """Ends this process with ``code()`` if a recovery stalls for ``MPICKPT_RECOVERY_TIMEOUT``.

    A process that is not reported failed never joins it: Open MPI aborted it from inside a
    call when a peer died ("Send error after request freed"), it is stopped, or it is blocked
    where mpickpt cannot wake it. ``about()`` says what this process can tell about the others
    (:mod:`mpickpt.stall`). Use as a context manager around the recovery.
    """

    def __init__(self, code: Callable[[], int], about: Callable[[], list[str]]) -> None:
        self.seconds = config().recovery_timeout
        self.code, self.about = code, about
        self.timer = threading.Timer(self.seconds, self._fire)
        self.timer.daemon = True

    def _fire(self) -> None:
        code = self.code()
        say(
            f"world rank {MPI.COMM_WORLD.Get_rank()}: recovery stalled for {self.seconds:g} s; "
            f"exiting with {code}. Every process not reported failed must join it:"
            + "".join(f"\n  {line}" for line in self.about())
        )
        os._exit(code)

    def __enter__(self) -> Watchdog:
        self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timer.cancel()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Not while inside: synchronous disk I/O may be slow and healthy (a large job's
        files on a parallel file system); the timeout starts again after it."""
        self.timer.cancel()
        try:
            yield
        finally:
            self.timer = threading.Timer(self.seconds, self._fire)
            self.timer.daemon = True
            self.timer.start()


def sigkill_self() -> None:
    """End this process at once, the way a node failure would: ``SIGKILL``, no clean-up (the
    others see it fail; an ordinary exit with an error is not seen over shared memory)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def ulfm_available() -> bool:
    """Whether the job runs with ULFM fault tolerance enabled (Open MPI ``--with-ft ulfm``)."""
    if "Open MPI" not in MPI.Get_library_version():
        return False
    flag = os.environ.get("OMPI_MCA_mpi_ft_enable", "0")  # noqa: SIM112 - Open MPI's name
    return flag.lower() in ("1", "true", "yes")
