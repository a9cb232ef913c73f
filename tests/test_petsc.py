"""A petsc4py program protected with nothing but ``ctx.comm`` and ``ctx.protect``
(examples/petsc_heat.py): a clean exit 0, the failure-free checksum after a real SIGKILL, exit
1 in seconds on a worker's own error, and a recovery from a real segmentation fault."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

import reruns
from conftest import EXAMPLES, SCRIPTS, checksum, run_mpi
from test_faults import kill_a_worker_at_random

pytest.importorskip(
    "petsc4py", reason="petsc4py is not installed (pip install mpickpt[petsc]: builds PETSc)"
)

pytestmark = [pytest.mark.mpi, pytest.mark.petsc]

RESILIENT = EXAMPLES / "petsc_heat.py"
PLAIN = EXAMPLES / "petsc_heat_plain.py"
FAULTS = SCRIPTS / "petsc_faults.py"
ARGS = ["--steps", "40", "--size", "32", "--every", "5"]
LONG = ["--steps", "400", "--size", "48", "--every", "10"]
ENV = {"MPICKPT_RECOVERY_TIMEOUT": "300"}  # longer than the timeouts: a stall fails the test
TIMEOUT = 120


def resilient(script: Path, *args: str, env: dict[str, str] | None = None):
    """4 workers + 1 spare; a run Open MPI itself broke runs once more (tests/reruns.py)."""
    return reruns.run_once_more(
        lambda: run_mpi(script, 5, *args, env={**ENV, **(env or {})}, timeout=TIMEOUT)
    )


@pytest.fixture(scope="module")
def reference() -> str:
    """Plain PETSc on as many ranks as there are workers (the same decomposition)."""
    rc, out, err = run_mpi(PLAIN, 4, *ARGS, timeout=TIMEOUT)
    assert rc == 0, err
    return checksum(out)


def test_failure_free_matches_plain_petsc(reference):
    rc, out, err = resilient(RESILIENT, *ARGS, "--spares", "1")
    assert rc == 0, err
    assert checksum(out) == reference
    assert "Traceback" not in err


@pytest.mark.fault
def test_a_worker_s_own_error_ends_the_job_with_exit_1():
    """Worker 2 raises while the others wait for it inside PETSc's solve, on PETSc's own
    duplicate of ctx.comm (made in C): revoked with the family, they are woken at once."""
    t0 = time.monotonic()
    rc, out, err = resilient(FAULTS, "raise", "2", "7", *ARGS, "--spares", "1")
    took = time.monotonic() - t0
    assert rc == 1, f"rc={rc}\n{out}\n{err}"
    assert "ApplicationError: worker 2 raised RuntimeError" in err, err
    assert err.count("Traceback") == 1, err  # the worker's own, no storm from the others
    assert checksum(out) is None
    assert took < 60, f"took {took:.0f} s"


@pytest.mark.fault
def test_a_segfault_is_recovered(reference):
    """PETSc's signal handler would turn the crash into MPI_Abort of the whole job."""
    rc, out, err = resilient(FAULTS, "crash", "1", "12", *ARGS, "--spares", "1")
    assert rc == 0, f"rc={rc}\n{out}\n{err}"
    assert checksum(out) == reference


@pytest.mark.fault
def test_killed_from_outside_at_a_random_time(tmp_path):
    """SIGKILL of a random worker at a random time of a longer run."""
    rc, out, err = run_mpi(PLAIN, 4, *LONG, timeout=TIMEOUT)
    assert rc == 0, err
    reference = checksum(out)
    t0 = time.monotonic()
    rc, out, err = resilient(RESILIENT, *LONG, "--spares", "1")
    total = time.monotonic() - t0
    assert rc == 0 and checksum(out) == reference, err
    rc, rank, when, out, err = kill_a_worker_at_random(
        tmp_path, RESILIENT, [*LONG, "--spares", "1"], ENV, total, TIMEOUT, low=0.3
    )
    assert rc == 0, f"rank {rank} at {when}: {out}\n{err}"
    assert "stalled" not in err
    assert checksum(out) == reference


LEAK = SCRIPTS / "petsc_leak.py"
RESOURCES = re.compile(
    r"resources: communicators (\d+) family (\d+) petsc_objects (\d+) rss_kib (\d+)"
)


def resources(*args: str, env: dict[str, str]) -> dict[str, int]:
    """Worker 3's communicators, family members, PETSc objects and resident KiB at the end."""
    rc, out, err = run_mpi(LEAK, 9, *args, env={**ENV, **env}, timeout=240)
    assert rc == 0, f"rc={rc}\n{out}\n{err}"
    found = RESOURCES.search(out)
    assert found, out
    names = ("communicators", "family", "petsc_objects", "rss_kib")
    return dict(zip(names, map(int, found.groups()), strict=True))


@pytest.mark.fault
def test_no_leak_per_recovery():
    """Five recoveries (4 workers, 5 spares; worker 3 lives through them all): its process ends
    with the family communicators and PETSc objects of a failure-free run."""
    args = ("--steps", "30", "--size", "24", "--every", "5", "--spares", "5")
    clean = resources(*args, env={})
    kills = "0@6,1@11,2@16,4@21,5@26"  # world ranks 4 and 5: spares promoted before
    recovered = resources(*args, env={"MPICKPT_KILL": kills})
    print(f"failure-free {clean}, after 5 recoveries {recovered}")
    assert recovered["family"] == clean["family"]
    assert recovered["petsc_objects"] == clean["petsc_objects"]


PETSC_FIRST = SCRIPTS / "petsc_first.py"


@pytest.mark.parametrize("kill", [None, "1@12"])
def test_petsc_imported_first_warns_once_and_ends_right(reference, kill):
    """PETSc initialised MPI (read from libpetsc's PetscBeganMPI): one warning; PETSc still
    finalises before MPI, at a clean end and after a recovery."""
    env = {"MPICKPT_KILL": kill} if kill else {}
    rc, out, err = resilient(PETSC_FIRST, *ARGS, "--spares", "1", env=env)
    assert rc == 0, f"rc={rc}\n{out}\n{err}"
    assert checksum(out) == reference
    assert err.count("petsc4py.PETSc was imported before mpickpt and initialised MPI") == 1, err
