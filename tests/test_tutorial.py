"""The tutorial's example (examples/wave1d.py, docs/tutorial.md) does what the tutorial says:
a killed rank is replaced and the result is the same; a job killed whole resumes from its
spill with the same result. Real ranks, real SIGKILLs."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import _kill_group, checksum, mpiexec_command, run_mpi
from mpickpt import spill

pytestmark = [pytest.mark.mpi, pytest.mark.fault]

WAVE = Path(__file__).resolve().parents[1] / "examples" / "wave1d.py"
SHORT = ["--steps", "300", "--size", "400", "--every", "25"]
LONG = ["--steps", "1000", "--size", "400", "--every", "25"]


def wave(n: int, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    return run_mpi(WAVE, n, *args, env=env, timeout=120)


def test_a_killed_rank_gives_the_same_result() -> None:
    rc, out, err = wave(5, *SHORT)
    assert rc == 0 and checksum(out), err
    rc, killed, err = wave(5, *SHORT, env={"MPICKPT_KILL": "2@110", "MPICKPT_VERBOSE": "1"})
    assert rc == 0, err
    assert "resuming at step 100" in err, err
    assert checksum(killed) == checksum(out)
    # the checksum does not depend on the number of workers: 5 workers, no spare
    rc, other, err = wave(5, *SHORT, "--spares", "0")
    assert rc == 0 and checksum(other) == checksum(out), err


def test_a_job_killed_whole_resumes_from_its_spill(tmp_path: Path) -> None:
    rc, out, err = wave(4, *LONG, "--spares", "0")  # the reference, without failures
    assert rc == 0 and checksum(out), err
    ckpt = tmp_path / "ckpt"
    proc = subprocess.Popen(
        mpiexec_command(WAVE, 5, *LONG, "--spill", str(ckpt)),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not (ckpt.is_dir() and len(spill.complete_versions(ckpt)) >= 2):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no spilled version in time"
        time.sleep(0.02)
    _kill_group(proc)  # mpiexec and every rank: the job is gone
    rc, resumed, err = wave(5, *LONG, "--spill", str(ckpt))
    assert rc == 0, err
    assert "restarted from spilled version" in err, err
    assert checksum(resumed) == checksum(out)
