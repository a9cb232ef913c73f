"""A Devito simulation survives a lost rank (examples/devito_diffusion.py): real SIGKILLs, the
checksum of the plain-Devito run on one rank, no watchdog."""

from __future__ import annotations

import time

import pytest

import reruns
from conftest import EXAMPLES, checksum, run_mpi
from test_faults import kill_a_worker_at_random

pytest.importorskip("devito", reason="Devito is not installed (pip install mpickpt[devito])")

pytestmark = [pytest.mark.mpi]

RESILIENT = EXAMPLES / "devito_diffusion.py"
PLAIN = EXAMPLES / "devito_diffusion_plain.py"
ARGS = ["--steps", "12", "--per-apply", "10", "--size", "64", "--every", "4"]
LONG = ["--steps", "300", "--per-apply", "20", "--size", "96", "--every", "5"]
ENV = {
    "MPICKPT_RECOVERY_TIMEOUT": "300",  # longer than the timeouts: a stall fails the test
    "DEVITO_LOGGING": "ERROR",
}
TIMEOUT = 240  # Devito builds its operator on every rank, on 2 cores: 30-40 s per run


def resilient(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """4 workers + 1 spare; a run Open MPI itself broke runs once more (tests/reruns.py)."""
    return reruns.run_once_more(
        lambda: run_mpi(RESILIENT, 5, *args, env={**ENV, **(env or {})}, timeout=TIMEOUT)
    )


@pytest.fixture(scope="module")
def reference() -> str:
    """Plain Devito on one rank."""
    rc, out, err = run_mpi(PLAIN, 1, *ARGS, env=ENV, timeout=TIMEOUT)
    assert rc == 0, err
    return checksum(out)


def test_failure_free_matches_one_rank_plain(reference):
    rc, out, err = resilient(*ARGS, "--spares", "1")
    assert rc == 0, err
    assert checksum(out) == reference


@pytest.mark.fault
def test_worker_killed_mid_run(reference):
    """Killed at the start of apply 6 (after the checkpoint of step 4): the others are in
    Devito's compiled halo exchange with it, or reach it in the next apply."""
    rc, out, err = resilient(*ARGS, "--spares", "1", env={"MPICKPT_KILL": "2@6"})
    assert rc == 0, f"rc={rc}\n{out}\n{err}"
    assert "stalled" not in err
    assert checksum(out) == reference


@pytest.mark.fault
def test_killed_from_outside_at_a_random_time(tmp_path):
    """SIGKILL of a random worker at a random time of a run, mostly in its time-step loop (the
    first third or so is Devito building its operators)."""
    rc, out, err = run_mpi(PLAIN, 1, *LONG, env=ENV, timeout=TIMEOUT)
    assert rc == 0, err
    reference = checksum(out)
    t0 = time.monotonic()
    rc, out, err = resilient(*LONG, "--spares", "1")
    total = time.monotonic() - t0
    assert rc == 0 and checksum(out) == reference, err
    rc, rank, when, out, err = kill_a_worker_at_random(
        tmp_path, RESILIENT, [*LONG, "--spares", "1"], ENV, total, TIMEOUT, low=0.35
    )
    assert rc == 0, f"rank {rank} at {when}: {out}\n{err}"
    assert "stalled" not in err
    assert checksum(out) == reference
