"""Communicators the application derives from ``ctx.comm`` fail with it (no Devito needed)."""

from __future__ import annotations

import os
import signal
import time

import pytest

import reruns
from conftest import HEAT, HEAT_SCHEME, SCRIPTS, _kill_group, checksum, run_mpi
from mpickpt.stall import process_state
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
    # a run long enough for the kill, 1 s after the start, to land mid-run (6000 steps took
    # under a second on a quiet machine), and longer if it was not
    for steps in (30000, 120000):
        args = ["--steps", str(steps), "--size", "48", "--every", "37", *HEAT_SCHEME]
        piddir = tmp_path / str(steps)
        env = {**NO_WATCHDOG, "MPICKPT_PIDDIR": str(piddir)}
        proc = launch(CART, 5, *args, "--spares", "1", env=env)
        pidfile = piddir / "rank2.pid"
        deadline = time.monotonic() + 30
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        pid = int(pidfile.read_text())  # now: a rank that ends normally removes its pid file
        time.sleep(1.0)
        if proc.poll() is None and process_state(pid) == "alive":
            break
        proc.communicate(timeout=90)
    else:
        pytest.fail("every run ended before the kill")
    os.kill(pid, signal.SIGKILL)
    try:
        out, err = proc.communicate(timeout=90)
    except Exception:
        out, err = _kill_group(proc)
        pytest.fail(f"hung after an outside kill\n{out}\n{err}")
    assert proc.returncode == 0, f"{out}\n{err}"
    assert "stalled" not in err
    rc, ref_out, ref_err = run_mpi(CART, 1, *args, "--spares", "0", timeout=90)
    assert rc == 0, ref_err
    assert checksum(out) == checksum(ref_out)


SUB_FREE = SCRIPTS / "sub_free.py"
WRAPPED = SCRIPTS / "wrapped_errors.py"


def killed_and_reference(script, kill: str) -> tuple[str, str, str | None]:
    """Run ``script`` on 5 ranks (4 workers + 1 spare) with ``MPICKPT_KILL=kill`` and without:
    the killed run's stdout and stderr (it must exit 0), and the failure-free checksum."""
    rc, out, err = run_mpi(script, 5, timeout=60)
    assert rc == 0, err
    reference = checksum(out)
    rc, out, err = reruns.run_once_more(
        lambda: run_mpi(script, 5, env={**NO_WATCHDOG, "MPICKPT_KILL": kill}, timeout=90)
    )
    assert rc == 0, f"rc={rc}\n{out}\n{err}"
    return out, err, reference


@pytest.mark.fault
def test_sub_communicators_freed_in_a_finally_are_revoked_first():
    """Worker 3 dies between a column and a row reduction on ``cart.Sub`` communicators; the
    survivors free them in a ``finally``. Worker 0 waits in a column reduction with worker 2,
    which freed that communicator on its way out: only a revoke before the free wakes it
    (else the recovery stalls until this test's timeout)."""
    out, err, reference = killed_and_reference(SUB_FREE, "3@13:halo")
    assert "stalled" not in err
    assert checksum(out) == reference


@pytest.mark.fault
def test_a_library_s_own_error_after_a_failure_is_a_failure():
    """The survivors' library raises RuntimeError on the failed reduction: the family saw the
    failure, so it is a recovery, with no traceback from every survivor."""
    out, err, reference = killed_and_reference(WRAPPED, "2@13")
    assert checksum(out) == reference
    assert "Traceback" not in err, err


C_DUP = SCRIPTS / "c_dup.py"


@pytest.mark.fault
def test_a_duplicate_made_in_c_is_revoked_when_a_worker_leaves():
    """Worker 2 raises while the others wait for it in a reduction on a duplicate of ctx.comm
    made in C (as PETSc's inner communicator is): exit 1 with its error, in seconds, not a
    stall until the watchdog (here longer than the test's timeout)."""
    t0 = time.monotonic()
    rc, out, err = run_mpi(C_DUP, 5, "2", "7", env=NO_WATCHDOG, timeout=90)
    took = time.monotonic() - t0
    assert rc == 1, f"rc={rc}\n{out}\n{err}"
    assert "ApplicationError: worker 2 raised RuntimeError: worker 2 fails at step 7" in err
    assert checksum(out) is None
    print(f"ended in {took:.1f} s")
