"""The bound on ``MPI_Init`` (``mpickpt.startup``): a process lost before MPI is initialised
ends the job with 74 (relaunch) and one clear message, instead of hanging it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_mpi
from mpickpt import startup
from mpickpt.config import Config
from mpickpt.errors import EXIT_LOST_AT_START, ConfigError
from mpickpt.launch import launched_rank

SCRIPT = Path(__file__).parent / "mpi_scripts" / "lost_in_init.py"
MESSAGE = "MPI_Init did not complete within"


def test_deadlines_grow_with_the_rank_up_to_a_cap():
    seconds = [startup.deadline(r, 10) for r in range(8)]
    assert seconds[0] == 10 and seconds == sorted(seconds)
    assert len(set(seconds)) == startup.STAGGERED_RANKS + 1  # later ranks share the last
    assert seconds[-1] == 10 + startup.STAGGER * startup.STAGGERED_RANKS


def test_rank_comes_from_the_launcher():
    assert launched_rank({}) is None
    assert launched_rank({"OMPI_COMM_WORLD_RANK": "3"}) == 3
    assert launched_rank({"PMIX_RANK": "5"}) == 5
    assert launched_rank({"SLURM_PROCID": "2"}) == 2
    assert launched_rank({"PMIX_RANK": "x", "PMI_RANK": "1"}) == 1  # a malformed one is skipped
    assert launched_rank({"OMPI_COMM_WORLD_RANK": "4", "SLURM_PROCID": "0"}) == 4  # mpirun in srun


def test_init_timeout_setting():
    assert Config.from_env({}).init_timeout == 40
    assert Config.from_env({"MPICKPT_INIT_TIMEOUT": "0"}).init_timeout == 0
    assert Config.from_env({"MPICKPT_INIT_TIMEOUT": "7.5"}).init_timeout == 7.5
    for bad in ("-1", "soon"):
        with pytest.raises(ConfigError, match="MPICKPT_INIT_TIMEOUT must be a number >= 0"):
            Config.from_env({"MPICKPT_INIT_TIMEOUT": bad})


def test_the_exit_timer_ends_a_process_that_holds_the_interpreter_lock():
    """The exit comes from a thread of the C library: a C call that never lets Python run (as
    MPI_Init under mpi4py) does not delay it."""
    code = (
        "import hashlib; from mpickpt import exittimer\n"
        "assert exittimer.start(0.3, 74) is not None\n"
        "while True: hashlib.sha256(bytes(200_000_000)).digest()\n"
    )
    t = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert proc.returncode == 74
    assert time.monotonic() - t < 30


def test_a_cancelled_exit_timer_does_not_fire():
    code = (
        "import time; from mpickpt import exittimer\n"
        "exittimer.start(0.2, 74).cancel(); time.sleep(0.6)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_no_guard_outside_a_launcher_or_once_mpi_is_imported():
    # this process was not started by mpiexec (pytest runs it), and it may have MPI loaded
    assert startup.guard_mpi_init() is False
    assert not any(isinstance(f, startup._Finder) for f in sys.meta_path)


@pytest.mark.mpi
@pytest.mark.parametrize("lost", [0, 2])
def test_process_lost_before_mpi_init_ends_the_job_with_one_message(lost):
    timeout = 5
    t = time.monotonic()
    rc, out, err = run_mpi(
        SCRIPT, 4, env={"LOST_RANK": str(lost), "MPICKPT_INIT_TIMEOUT": str(timeout)}, timeout=90
    )
    seconds = time.monotonic() - t
    assert rc == EXIT_LOST_AT_START, f"{out}\n{err}"
    assert "initialised" not in out
    assert err.count(MESSAGE) == 1, err  # one host here: one message
    first = 1 if lost == 0 else 0  # the lowest process left speaks first
    assert f"mpickpt: world rank {first}: {MESSAGE} {startup.deadline(first, timeout):g} s" in err
    # every process left gives up by the last deadline; mpiexec then ends the job
    assert seconds < startup.deadline(3, timeout) + 30, seconds


@pytest.mark.mpi
def test_the_guard_lets_a_healthy_start_through():
    rc, out, err = run_mpi(SCRIPT, 3, env={"LOST_RANK": "-1", "MPICKPT_INIT_TIMEOUT": "30"})
    assert rc == 0, err
    assert sorted(out.split()[1::3]) == ["0", "1", "2"], out
    assert MESSAGE not in err
