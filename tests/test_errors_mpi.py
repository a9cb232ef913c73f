"""Errors that are not rank failures, on real ranks: a configuration that cannot work (exit 2)
and an exception raised by the protected function (exit 1). Every process prints the same
clear error once; never a hang, an exit 0, or the "relaunch" code 75."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import EXAMPLES, HEAT, run_mpi

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize(
    ("n", "args", "message"),
    [
        # 2 workers + 1 spare: parity's 3 backups need 3 other workers. Every process checks
        # it, so a spare does not wait for workers that quit (test_advice follows the advice)
        (3, [], r"1 spare\(s\) need 4 or more workers .* launch mpiexec -n 5 or more$"),
        (4, ["--group", "0"], r"parity needs group >= 1, got 0"),
        (4, ["--spares", "4"], r"4 spare\(s\) need 4 or more workers .* has 4 process\(es\)"),
        # 1 worker + 1 spare: nothing could be rebuilt for the spare
        (2, ["--spares", "1"], r"a spare is rebuilt from the pieces on the other workers"),
        # parameters are checked where they are written, before MPI does anything
        (4, ["--every", "0"], r"every must be a positive number of steps, got 0"),
        (4, ["--spill-every", "-1", "--spill", "x"], r"spill_every must be a whole number"),
    ],
)
def test_bad_configuration_is_a_clear_error(n: int, args: list[str], message: str) -> None:
    rc, out, err = run_mpi(EXAMPLES / "heat2d.py", n, *HEAT, *args, timeout=60)
    assert rc == 2, f"rc={rc}\n{out}\n{err}"
    lines = re.findall(r"^mpickpt: ConfigError: (.*)$", err, re.M)
    assert len(lines) == 1 and re.search(message, lines[0]), err  # printed once
    assert "Traceback" not in err and "checksum" not in out, err


def raises(n: int, *args: str) -> tuple[int, str, str]:
    return run_mpi(Path(__file__).parent / "mpi_scripts" / "app_raises.py", n, *args, timeout=60)


@pytest.mark.parametrize(
    ("n", "args"),
    [
        # worker 2 waits for worker 1's message when 1 raises; a spare must not replay the bug
        (5, ["--raise-on", "1", "--spares", "1"]),
        # every worker raises and there is no spare: the job used to end with 0 (all ranks gone)
        (4, ["--raise-on", "0,1,2,3"]),
    ],
)
def test_exception_in_the_application_ends_the_job(n: int, args: list[str]) -> None:
    rc, out, err = raises(n, *args)
    assert rc == 1, f"rc={rc}\n{out}\n{err}"
    lines = re.findall(r"^mpickpt: ApplicationError: (.*)$", err, re.M)
    assert len(lines) == 1, err  # printed once, by the lowest process
    # A worker that sees its neighbour's failure before reaching its own raise does not raise.
    message = lines[0]
    named = re.findall(r"worker (\d+) raised ValueError: step 3 went wrong on worker \1", message)
    more = re.search(r"and (\d+) more", message)
    raised = len(named) + (int(more.group(1)) if more else 0)
    assert named and set(named) <= set(args[1].split(",")), message
    assert err.count("Traceback (most recent call last)") == raised, err
    assert "done" not in out, out


def test_mpi_error_that_is_not_a_failure_is_an_application_error():
    """MPI_ERR_TRUNCATE in the application's receive is its bug: exit 1 once, not a recovery
    that replays it for ever."""
    rc, out, err = raises(5, "--truncate-on", "2", "--spares", "1")
    assert rc == 1, f"rc={rc}\n{out}\n{err}"
    lines = re.findall(r"^mpickpt: ApplicationError: (.*)$", err, re.M)
    assert len(lines) == 1 and "worker 2 raised MPI error" in lines[0], err
    assert "truncated" in lines[0].lower(), lines[0]
    assert "done" not in out, out


def test_application_without_exception_completes():
    rc, out, err = raises(5, "--spares", "1")
    assert rc == 0 and re.search(r"^done \d+$", out, re.M), f"rc={rc}\n{out}\n{err}"


def test_malformed_environment_variable_is_a_clear_error() -> None:
    rc, out, err = run_mpi(
        EXAMPLES / "heat2d.py", 4, *HEAT, env={"MPICKPT_KILL": "1@@x"}, timeout=60
    )
    assert rc == 2, f"rc={rc}\n{out}\n{err}"
    lines = re.findall(r"^mpickpt: ConfigError: (.*)$", err, re.M)
    assert len(lines) == 1 and "bad MPICKPT_KILL entry '1@@x'" in lines[0], err
    assert "checksum" not in out


@pytest.mark.parametrize("spares", [0, 1])
def test_unusable_spill_directory_exits_2(tmp_path: Path, spares: int) -> None:
    """A spill path under a regular file: exit 2 and why, not 75 (relaunched for ever) or 0."""
    (tmp_path / "file").write_text("not a directory")
    spill = str(tmp_path / "file" / "ckpt")
    n = 4 + spares
    rc, out, err = run_mpi(
        EXAMPLES / "heat2d.py", n, *HEAT, "--spares", str(spares), "--spill", spill, timeout=60
    )
    assert rc == 2, f"rc={rc}\n{out}\n{err}"
    lines = re.findall(r"^mpickpt: SpillError: (.*)$", err, re.M)
    assert len(lines) == 1 and f"cannot use spill directory {spill}" in lines[0], err
    assert "checksum" not in out


@pytest.mark.parametrize("then", ["allgather", "exit"])
@pytest.mark.parametrize("spares", [0, 1])
def test_exception_after_the_function_returned_is_not_exit_0(then: str, spares: int) -> None:
    """The user's own post-processing raises on one rank: the job exits with 1, whether the
    others wait for that rank (they are woken) or simply end; the traceback is printed."""
    script = Path(__file__).parent / "mpi_scripts" / "after_return.py"
    args = ["--raise-on", "2", "--then", then, "--spares", str(spares)]
    rc, out, err = run_mpi(script, 5, *args, timeout=60)
    assert rc == 1, f"rc={rc}\n{out}\n{err}"
    assert "RuntimeError: post-processing failed" in err, err
    assert "done" not in out, out


def test_post_processing_without_exception_exits_0() -> None:
    script = Path(__file__).parent / "mpi_scripts" / "after_return.py"
    rc, out, err = run_mpi(script, 5, "--spares", "1", timeout=60)
    workers, steps, length = 4, 6, 4  # each step adds the number of workers to every element
    expected = f"done {float(workers * steps * length)}"
    assert rc == 0 and expected in out.splitlines(), f"rc={rc}\n{out}\n{err}"


def test_error_of_one_process_inside_a_recovery_ends_it_everywhere_at_once():
    # worker 2 is killed, no spare is left: the workers continue on fewer, through the
    # application's hook, which raises on the one that adopts worker 2's state only. That
    # process's error fails the recovery on every process, at once, with one message (it hung
    # the others in the next attempt's shrink until the recovery watchdog fired).
    rc, out, err = run_mpi(
        "redistribute_raises.py",
        5,
        env={"MPICKPT_KILL": "2@7", "MPICKPT_RECOVERY_TIMEOUT": "60"},
        timeout=50,
    )
    assert rc == 3, err
    assert "result:" not in out
    assert err.count("the recovery failed: process") == 1, err
    assert "ValueError: this hook cannot merge states" in err
    assert "recovery stalled" not in err


@pytest.mark.parametrize("rank", [0, 2])
def test_error_before_joining_on_one_process_never_hangs(rank):
    # the others saw that process fail (it ends as a failed process does): they recover with
    # the spare and compute the result; when it is the first process, its code is the job's
    rc, out, err = run_mpi("start_error_on_one.py", 5, str(rank), timeout=60)
    assert err.count("ConfigError: a setting that only this process has") <= 1, err
    if rank == 0:
        assert rc == 2, err
    else:
        assert rc == 0 and "result: 8000.0" in out, err
