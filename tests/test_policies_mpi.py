"""Checkpoint policies with real ranks: heat2d with ``every="auto"`` and ``every_seconds``
gives the failure-free checksum, survives a SIGKILL, stops on SIGUSR1 without agreeing at
every step, and refuses bad values with exit code 2."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

import reruns
from conftest import EXAMPLES, HEAT, HEAT_SCHEME, checksum, finish, mpiexec_command, run_mpi
from mpickpt import spill
from test_faults import assert_recovered, kill_from_outside

pytestmark = [pytest.mark.mpi, pytest.mark.fault]

BASE = [*HEAT[:4], *HEAT_SCHEME]  # --steps 40 --size 48, without --every
# checkpoints of a few ms on steps of a few ms: a short MTBF gives intervals of tens of steps
AUTO = ["--every", "auto", "--mtbf", "3s"]
SECONDS = ["--every-seconds", "0.05"]
VERBOSE = {"MPICKPT_VERBOSE": "1"}
PLAN = re.compile(r"^mpickpt: checkpoint at step (\d+); (\S+): next checkpoint in (\d+) step", re.M)


def heat(n: int, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """heat2d with ``args`` (no default ``--every``); a run that Open MPI itself broke is
    repeated once, as in test_faults."""
    return reruns.run_once_more(
        lambda: run_mpi(EXAMPLES / "heat2d.py", n, *args, env=env, timeout=90)
    )


def plans(err: str) -> list[tuple[int, str, int]]:
    """(step, policy, interval) of every interval worker 0 logged."""
    return [(int(s), p, int(n)) for s, p, n in PLAN.findall(err)]


@pytest.mark.parametrize("policy", [AUTO, SECONDS], ids=["auto", "every_seconds"])
def test_failure_free_matches_plain(heat_reference, policy):
    rc, out, err = heat(5, "--spares", "1", *BASE, *policy, env=VERBOSE)
    assert_recovered(rc, out, err, heat_reference)
    logged = plans(err)
    name = "Auto(mtbf=3)" if policy is AUTO else "EverySeconds(0.05)"
    assert logged and all(p == name for _, p, _ in logged), err
    assert logged[0][0] == 0 and logged[0][2] == 1  # the probe: the pace is not known yet
    assert ("expected overhead" in err) == (policy is AUTO)  # AUTO alone knows the MTBF
    summary = re.search(r"mpickpt: schedule: (\d+) checkpoint\(s\)", err)
    assert summary and 3 <= int(summary.group(1)) < 40, err  # neither every step nor never


@pytest.mark.parametrize("policy", [AUTO, SECONDS], ids=["auto", "every_seconds"])
@pytest.mark.parametrize("kill", ["2@13", "2@1:checkpoint"])
def test_one_worker_killed(heat_reference, policy, kill):
    """Killed while computing, and inside the second checkpoint (always after step 1: the
    probe), whose transaction carries the policy's reduction."""
    rc, out, err = heat(5, "--spares", "1", *BASE, *policy, env={**VERBOSE, "MPICKPT_KILL": kill})
    assert_recovered(rc, out, err, heat_reference)
    assert "mpickpt: recovery timeline" in err, err  # the kill did happen
    assert {p for _, p, _ in plans(err)} == {
        "Auto(mtbf=3)" if policy is AUTO else "EverySeconds(0.05)"
    }


LONG = ["--steps", "15000", "--size", "48", *HEAT_SCHEME]
STOPPED = ["--steps", "6000", "--size", "48", *HEAT_SCHEME]


def plain(args: list[str]) -> str:
    rc, out, err = run_mpi(EXAMPLES / "heat2d_plain.py", 1, *args, timeout=60)
    assert rc == 0, err
    return checksum(out)


@pytest.fixture(scope="module")
def long_reference() -> str:
    return plain(LONG)


@pytest.mark.parametrize(
    "policy", [["--every", "auto", "--mtbf", "20s"], ["--every-seconds", "0.3"]]
)
def test_worker_killed_from_outside(tmp_path, long_reference, policy):
    rc, out, err, killed = kill_from_outside(tmp_path, 2, 5, 1.0, *LONG, "--spares", "1", *policy)
    assert killed
    assert_recovered(rc, out, err, long_reference)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--every", "0"], "ConfigError: every must be a positive number of steps, got 0"),
        (["--every", "-5"], "ConfigError: every must be a positive number of steps, got -5"),
        (["--every", "auto"], "ConfigError: every='auto' needs the job's mean time between"),
        (["--every-seconds", "0"], "ConfigError: every_seconds must be a positive duration"),
        (["--every", "auto", "--mtbf=-1h"], "ConfigError: mtbf must be a positive duration"),
    ],
)
def test_bad_values_exit_with_2(args, message):
    rc, out, err = heat(5, "--spares", "1", *BASE, *args, env={"MPICKPT_MTBF": ""})
    assert rc == 2, f"{out}\n{err}"
    assert message in err, err


def test_mtbf_from_the_environment(heat_reference):
    env = {**VERBOSE, "MPICKPT_MTBF": "2s"}
    rc, out, err = heat(5, "--spares", "1", *BASE, "--every", "auto", env=env)
    assert_recovered(rc, out, err, heat_reference)
    assert {p for _, p, _ in plans(err)} == {"Auto(mtbf=2)"}, err


def test_signal_stops_without_an_agreement_at_every_step(tmp_path):
    """SIGUSR1 with a spill: the workers agree on it at their next checkpoint or stop check
    (every ~2 s), spill and exit with 76; the requeued job finishes with the same result."""
    ckpt = tmp_path / "ckpt"
    cmd = mpiexec_command(EXAMPLES / "heat2d.py", 5, *STOPPED, "--spill", str(ckpt), "--spares")
    env = {**os.environ, **VERBOSE, "MPICKPT_PIDDIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    policy = ["--every-seconds", "5"]  # checkpoints rarer than the stop checks
    proc = subprocess.Popen(
        [*cmd, "1", *policy],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not (ckpt.is_dir() and spill.complete_versions(ckpt)) and proc.poll() is None:
        assert time.monotonic() < deadline, "no spilled version in time"
        time.sleep(0.02)
    time.sleep(0.5)
    asked = time.monotonic()
    for pidfile in tmp_path.glob("rank*.pid"):  # what mpirun does with Slurm's SIGUSR1
        os.kill(int(pidfile.read_text()), signal.SIGUSR1)
    rc, out, err = finish(proc)
    assert rc == 76, f"{out}\n{err}"
    assert time.monotonic() - asked < 30, "the stop waited for far more than a stop check"
    step = spill.read_index(ckpt, spill.complete_versions(ckpt)[0])["step"]
    assert 0 < step < 6000
    rc, out, err = heat(5, "--spares", "1", *STOPPED, "--spill", str(ckpt), *policy, env=VERBOSE)
    assert_recovered(rc, out, err, plain(STOPPED))
    checks = re.search(r"(\d+) checkpoint\(s\) took .* (\d+) stop check\(s\)", err)
    assert checks and int(checks.group(2)) < (6000 - step) / 10, err  # not one per step
