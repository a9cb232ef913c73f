"""The recovery watchdog ends its process whatever its callbacks do.

Usage: ``mpiexec -n 1 python watchdog_callbacks.py MODE`` with ``MPICKPT_RECOVERY_TIMEOUT``
short; MODE: ``ok`` (the callbacks work), ``code-fails`` (the exit code cannot be read: a
listing of a directory that is gone), ``about-fails`` (the description fails likewise),
``blocks`` (the description never returns, as an ``open`` on a stalled file system),
``places`` (every process of the job stalls; each prints how long its watchdog waited, and
its place, the world rank, since they share one host). The process waits forever for a
recovery that never ends; the watchdog must end it.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from mpi4py import MPI

from mpickpt.recovery.watchdog import Watchdog

START = time.monotonic()


def listing() -> list[str]:
    return os.listdir("/nonexistent/spill/directory")  # a real failing system call


def code() -> int:
    if sys.argv[1] == "places":
        waited = time.monotonic() - START
        print(f"place {MPI.COMM_WORLD.Get_rank()} waited {waited:.3f}", flush=True)
    if sys.argv[1] == "code-fails":
        return len(listing())
    return 75


def about() -> list[str]:
    if sys.argv[1] == "about-fails":
        return listing()
    if sys.argv[1] == "blocks":
        threading.Event().wait()  # never set
    return ["a line about the others"]


if __name__ == "__main__":
    with Watchdog(code, about, MPI.COMM_WORLD.Get_rank() if sys.argv[1] == "places" else 0):
        threading.Event().wait()  # the stalled recovery
