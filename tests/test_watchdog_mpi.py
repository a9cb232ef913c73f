"""Nothing disables the recovery watchdog: whatever its callbacks do (fail, block), the process
ends, with the documented code (75 or 3 from its callback, 3 when that cannot be known)."""

from __future__ import annotations

import time

import pytest

from conftest import run_mpi
from mpickpt.recovery.watchdog import FALLBACK_CODE, GRACE, STAGGER

pytestmark = [pytest.mark.mpi, pytest.mark.fault]


@pytest.mark.parametrize(
    "mode, code",
    [("ok", 75), ("code-fails", FALLBACK_CODE), ("about-fails", 75), ("blocks", FALLBACK_CODE)],
)
def test_the_watchdog_ends_the_process_whatever_its_callbacks_do(mode, code):
    t = time.monotonic()
    rc, out, err = run_mpi(
        "watchdog_callbacks.py", 1, mode, env={"MPICKPT_RECOVERY_TIMEOUT": "1"}, timeout=60
    )
    assert rc == code, err
    assert "recovery stalled for 1 s" in err
    if mode == "blocks":
        assert time.monotonic() - t >= GRACE


def test_the_watchdogs_of_one_host_end_their_processes_one_after_another():
    """Not all at once (that can hang Open MPI's mpiexec): the n-th waits n x STAGGER more.
    (mpiexec may end the later ones itself once the first have exited.)"""
    rc, out, err = run_mpi(
        "watchdog_callbacks.py", 4, "places", env={"MPICKPT_RECOVERY_TIMEOUT": "1"}, timeout=60
    )
    assert rc == 75, err
    waited = dict(line.split()[1::2] for line in out.splitlines() if line.startswith("place "))
    assert "0" in waited, out
    for place, seconds in waited.items():
        assert float(seconds) >= 1 + int(place) * STAGGER
