"""What keeps a failed job from hanging: the recovery watchdog, and an end that peers see."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

from mpi4py import MPI

from ..config import config
from ..log import say

GRACE = 10.0  # seconds the watchdog's callbacks get before the process ends without them
FALLBACK_CODE = 3  # the exit code when they fail (EXIT_UNRECOVERABLE: nothing is known)
# The watchdogs of one stalled recovery fire together, and several processes exiting non-zero
# within milliseconds can hang Open MPI's mpiexec (recovery/ending.py): the n-th process of a
# host waits n times STAGGER more, up to SLOTS places (8 s at most; later ones share the last).
STAGGER = 0.5
SLOTS = 16
POLL = 0.5  # seconds between the watchdog's looks at the processes it waits for


def stagger(place: int) -> float:
    """The seconds the watchdog of the ``place``-th process of a host waits beyond the timeout."""
    return STAGGER * min(place, SLOTS)


class Watchdog:
    """Ends this process with ``code()`` if a recovery stalls for ``MPICKPT_RECOVERY_TIMEOUT``
    (plus :func:`stagger` of ``place``, this process's place among those of its host), or
    sooner once ``vanished()`` names processes it waits for that are gone but will never be
    reported failed (:class:`mpickpt.stall.Vanished`).

    A process that is not reported failed never joins it: Open MPI aborted it from inside a
    call when a peer died ("Send error after request freed"), it is stopped, or it is blocked
    where mpickpt cannot wake it. ``about()`` says what this process can tell about the others
    (:mod:`mpickpt.stall`). Use as a context manager around the recovery.

    Nothing stops it from ending the process: ``code()``, ``about()`` and ``vanished()`` read
    files and print, and a file system can fail (``ESTALE``, ``EIO``) or block, and standard
    error can be gone. An error in ``vanished()`` counts as nothing seen; one in the others is
    printed if it can be, and ends the process with :data:`FALLBACK_CODE`; a callback still
    running after :data:`GRACE` seconds is left behind and the process ends all the same.
    """

    def __init__(
        self,
        code: Callable[[], int],
        about: Callable[[], list[str]],
        place: int = 0,
        vanished: Callable[[], list[int]] | None = None,
    ) -> None:
        self.seconds = config().recovery_timeout
        self.code, self.about, self.vanished = code, about, vanished
        self.stagger = stagger(place)
        self.deadline = math.inf
        self.done = threading.Event()

    def _watch(self) -> None:
        while not self.done.wait(max(0.0, min(POLL, self.deadline - time.monotonic()))):
            if time.monotonic() >= self.deadline:
                self._fire(f"recovery stalled for {self.seconds:g} s")
            gone = self._vanished()
            if gone and not self.done.wait(self.stagger):
                ranks = ", ".join(map(str, gone))
                self._fire(f"recovery stalled: world rank(s) {ranks} ended, never reported failed")

    def _vanished(self) -> list[int]:
        try:
            return self.vanished() if self.vanished is not None else []
        except Exception:  # noqa: BLE001 - the timeout still ends the process
            return []

    def _fire(self, why: str) -> None:
        """End this process, whatever the callbacks do."""
        backstop = threading.Timer(GRACE, os._exit, (FALLBACK_CODE,))
        backstop.daemon = True
        backstop.start()
        code = FALLBACK_CODE
        try:
            rank = MPI.COMM_WORLD.Get_rank()
            say(f"world rank {rank}: {why}; ending this process")
            code = self.code()
            say(
                f"world rank {rank}: exiting with {code}. Every process not reported failed must "
                "join a recovery:" + "".join(f"\n  {line}" for line in self.about())
            )
        except BaseException as e:  # noqa: BLE001 - whatever it is, the process must end
            with contextlib.suppress(BaseException):
                say(f"exiting with {code}: the watchdog could not say more ({e!r})")
        finally:
            os._exit(code)

    def _arm(self) -> None:
        self.deadline = time.monotonic() + self.seconds + self.stagger

    def __enter__(self) -> Watchdog:
        self._arm()
        threading.Thread(target=self._watch, name="mpickpt-watchdog", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The timeout not while inside: synchronous disk I/O may be slow and healthy (a large
        job's files on a parallel file system); it starts again after it."""
        self.deadline = math.inf
        try:
            yield
        finally:
            self._arm()


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
