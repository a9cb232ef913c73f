"""Reruns of MPI test runs that Open MPI itself broke, logged and counted.

A fault test may run its job a second time only when the output shows a genuine Open MPI
abort or crash of a process (ULFM faults that mpickpt designs around, see the README's
"Open MPI faults"). mpickpt's own watchdog message ("recovery stalled") is not such a reason:
without an Open MPI abort beside it, a stalled recovery is a deadlock of ours, and the test
fails. Every rerun is printed (pytest shows it with the test's output), issued as a
:class:`OmpiRerunWarning` (listed in the warnings summary) and counted in :data:`RERUNS`,
which ``conftest.py`` prints at the end of the session.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Callable

import pytest

# What Open MPI prints when it aborts or crashes a process by itself
OMPI_FAULT = re.compile(
    r"error after request freed|MPI_ERRORS_ARE_FATAL|Segmentation fault|Signal: Segmentation"
)
WATCHDOG = re.compile(r"recovery stalled")

RERUNS: list[tuple[str, str]] = []  # (test id, the Open MPI line that caused the rerun)


class OmpiRerunWarning(UserWarning):
    """A test run was repeated because Open MPI aborted or crashed a process."""


def _test_id() -> str:
    return os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0]


def ompi_fault(err: str) -> str | None:
    """The first line of ``err`` that shows an Open MPI abort or crash, or None."""
    for line in err.splitlines():
        if OMPI_FAULT.search(line):
            return line.strip()
    return None


def check_not_stalled(rc: int, out: str, err: str) -> None:
    """Fail the test when mpickpt's watchdog ended a recovery that no Open MPI abort
    explains: that is a deadlock, which a rerun would hide."""
    if WATCHDOG.search(err) and ompi_fault(err) is None:
        pytest.fail(
            "recovery stalled without an Open MPI abort (a deadlock in mpickpt; not rerun)\n"
            f"rc={rc}\n--- stdout\n{out}\n--- stderr\n{err}"
        )


def should_rerun(rc: int, out: str, err: str) -> bool:
    """True (and logged) when this failed run was broken by Open MPI and may run once more;
    fails the test on a stall of mpickpt's own."""
    if rc == 0:
        return False
    check_not_stalled(rc, out, err)
    line = ompi_fault(err)
    if line is None:
        return False
    record(f"rc={rc}, Open MPI: {line}")
    return True


def record(why: str) -> None:
    """Log and count one rerun of the current test, for ``why``."""
    test = _test_id()
    RERUNS.append((test, why))
    msg = f"rerun #{len(RERUNS)} of {test}: {why}"
    print(f"[mpickpt tests] {msg}", file=sys.stderr, flush=True)
    warnings.warn(msg, OmpiRerunWarning, stacklevel=3)


def run_once_more(run: Callable[[], tuple[int, str, str]]) -> tuple[int, str, str]:
    """``run()``, repeated once if Open MPI broke it (:func:`should_rerun`); a recovery
    stalled without an Open MPI abort fails the test."""
    for attempt in range(2):
        rc, out, err = run()
        if attempt == 1 or not should_rerun(rc, out, err):
            break
    check_not_stalled(rc, out, err)
    return rc, out, err
