"""Communicators the application derives from ``ctx.comm`` fail with it (no Devito needed)."""

from __future__ import annotations

import os
import signal
import time

import pytest

import reruns
from conftest import HEAT, SCRIPTS, _kill_group, checksum, run_mpi
from test_faults import launch

pytestmark = [pytest.mark.mpi]

CART = SCRIPTS / "heat_cart.py"
# a stall would be the watchdog's: make it longer than any test's timeout, so it cannot hide one
NO_WATCHDOG = {"MPICKPT_RECOVERY_TIMEOUT": "300"}


def test_family_records_revokes_and_frees_derived_communicators(run_mpi):
    rc, out, err = run_mpi("family.py", 4, timeout=60)
    assert rc == 0, err
    assert out.count("family: ok") == 4, f"{out}\n{err}"


def cart(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """heat_cart.py; a run Open MPI itself broke is run once more (tests/reruns.py)."""
    return reruns.run_once_more(
        lambda: run_mpi(CART, 5, *args, env={**NO_WATCHDOG, **env}, timeout=90)
    )


def test_failure_free(heat_reference):
    rc, out, err = cart(*HEAT, "--spares", "1", env={})
    assert rc == 0, err
    assert checksum(out) == heat_reference


@pytest.mark.fault
@pytest.mark.parametrize("kill", ["2@13:halo", "2@13", "0@7:halo", "3@22:halo"])
def test_blocking_exchange_on_a_derived_cart_survives_a_kill(heat_reference, kill):
    """Without revoking ``cart``, the workers blocked in Recv from a neighbour that left for
    the recovery wait until the watchdog ends the job."""
    rc, out, err = cart(*HEAT, "--spares", "1", env={"MPICKPT_KILL": kill})
    assert rc == 0, f"rc={rc}\n{out}\n{err}"
    assert "stalled" not in err
    assert checksum(out) == heat_reference


@pytest.mark.fault
def test_killed_from_outside(tmp_path):
    args = ["--steps", "6000", "--size", "48", "--every", "37"]
    rc, out, err = run_mpi(CART, 1, *args, "--spares", "0", timeout=90)
    assert rc == 0, err
    reference = checksum(out)
    proc = launch(
        CART, 5, *args, "--spares", "1", env={**NO_WATCHDOG, "MPICKPT_PIDDIR": str(tmp_path)}
    )
    pidfile = tmp_path / "rank2.pid"
    deadline = time.monotonic() + 30
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    pid = int(pidfile.read_text())  # now: a rank that ends normally removes its pid file
    time.sleep(1.0)
    assert proc.poll() is None, "the run ended before the kill: make it longer"
    os.kill(pid, signal.SIGKILL)
    try:
        out, err = proc.communicate(timeout=90)
    except Exception:
        out, err = _kill_group(proc)
        pytest.fail(f"hung after an outside kill\n{out}\n{err}")
    assert proc.returncode == 0, f"{out}\n{err}"
    assert "stalled" not in err
    assert checksum(out) == reference
