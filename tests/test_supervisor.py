"""``mpickpt run`` without MPI: the verdict table, the launch commands, the heartbeat and its
watcher, Slurm's counts, and the help text (the real launches: test_run_mpi.py)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mpickpt import heartbeat, launch, slurm
from mpickpt.cli import _parser
from mpickpt.errors import EXIT_LOST_AT_START, EXIT_NO_SPARES, EXIT_PREEMPTED
from mpickpt.verdict import Ended, backoff, judge, repeated, signals_in


@pytest.mark.parametrize(
    ("ended", "relaunch", "code"),
    [
        (Ended(rc=0, done=True, progressed=True), False, 0),
        (Ended(rc=0, progressed=True, furthest=40), True, 1),  # exit 0 without the result
        (Ended(rc=0), False, 1),  # never said anything: not an mpickpt program
        (Ended(rc=1, progressed=True), False, 1),
        (Ended(rc=2), False, 2),
        (Ended(rc=3, progressed=True), False, 3),
        (Ended(rc=EXIT_LOST_AT_START), True, EXIT_LOST_AT_START),
        (Ended(rc=EXIT_NO_SPARES, progressed=True), True, EXIT_NO_SPARES),
        (Ended(rc=-9, hung="no progress", progressed=True), True, 1),
        (Ended(rc=0, node_lost=True, progressed=True), True, EXIT_NO_SPARES),
        (Ended(rc=137, progressed=True), True, 137),  # e.g. MPICH's Hydra after a kill
        (Ended(rc=EXIT_PREEMPTED, stop_requested=True), False, EXIT_PREEMPTED),
        (Ended(rc=-15, stop_requested=True), False, 143),
    ],
)
def test_the_verdict_follows_the_exit_code_table(ended: Ended, relaunch: bool, code: int) -> None:
    v = judge(ended, can_requeue=False)
    assert (v.relaunch, v.code) == (relaunch, code), v
    if ended.done and ended.rc == 0:
        assert code == 0
    else:
        assert v.code != 0, "0 only with the result"


def test_exit_76_is_requeued_by_the_caller_or_relaunched_here() -> None:
    e = Ended(rc=EXIT_PREEMPTED, progressed=True)
    assert judge(e, can_requeue=True).relaunch is False
    assert judge(e, can_requeue=True).code == EXIT_PREEMPTED
    assert judge(e, can_requeue=False).relaunch is True


def test_done_with_a_failing_mpiexec_is_not_done() -> None:
    v = judge(Ended(rc=EXIT_NO_SPARES, done=True, progressed=True), can_requeue=False)
    assert v.relaunch and v.code == EXIT_NO_SPARES


def test_the_same_failure_at_the_same_step_stops() -> None:
    died = Ended(rc=0, progressed=True, furthest=7, signals=["signal 11 (Segmentation fault)"])
    first = (died, judge(died, False))
    assert first[1].relaunch and "signal 11" in first[1].cause
    again = Ended(rc=0, progressed=True, furthest=7, signals=died.signals)
    stop = repeated(first, (again, judge(again, False)))
    assert stop is not None and not stop.relaunch and stop.code == 1
    assert "again at step 7" in stop.cause
    further = Ended(rc=0, progressed=True, furthest=9)
    assert repeated(first, (further, judge(further, False))) is None  # it got further
    other = Ended(rc=EXIT_NO_SPARES, progressed=True, furthest=7)
    assert repeated(first, (other, judge(other, False))) is None  # another failure
    lost = Ended(rc=EXIT_LOST_AT_START)
    assert repeated((lost, judge(lost, False)), (lost, judge(lost, False))) is None
    early = Ended(rc=213)  # ended before its first step (mpirun refused the nodes): the budget
    assert repeated((early, judge(early, False)), (early, judge(early, False))) is None
    node = Ended(rc=0, node_lost=True, progressed=True, furthest=7)
    assert repeated((node, judge(node, False)), (node, judge(node, False))) is None


def test_backoff_starts_at_once_then_doubles_up_to_a_cap() -> None:
    assert [backoff(k, 1.0) for k in range(1, 6)] == [0.0, 1.0, 2.0, 4.0, 8.0]
    assert backoff(30, 1.0) == 60.0


def test_signals_named_by_the_launchers() -> None:
    ompi = "prterun noticed that process rank 2 ... exited on signal 11 (Segmentation fault).\x00"
    mpich = "=   KILLED BY SIGNAL: 9 (Killed)"
    assert signals_in(ompi) == ["signal 11 (Segmentation fault)"]
    assert signals_in(mpich) == ["signal 9 (Killed)"]
    assert signals_in("all good") == []


def test_the_mpi_family_from_the_library_version() -> None:
    assert launch.mpi_family("Open MPI v5.0.11, package: ...") == "openmpi"
    assert launch.mpi_family("MPICH Version:      5.0.2\n") == "mpich"
    assert launch.mpi_family("Intel(R) MPI Library 2021.13 for Linux* OS") == "intelmpi"
    assert launch.mpi_family("") == "unknown"


def test_open_mpi_gets_ulfm_tcp_and_oversubscribe_only_past_the_slots() -> None:
    argv = ["python", "sim.py"]
    cmd, _ = launch.run_command("openmpi", "mpiexec", 4, argv, [], slots=8, one_host=True)
    assert cmd[-4:] == ["-n", "4", "python", "sim.py"]
    assert "--with-ft ulfm" in " ".join(cmd) and "--oversubscribe" not in cmd
    assert "btl self,tcp --mca btl_tcp_if_include lo" in " ".join(cmd)
    cmd, _ = launch.run_command("openmpi", "mpiexec", 9, argv, [], slots=2, one_host=False)
    assert "--oversubscribe" in cmd and "btl_tcp_if_include" not in cmd  # across nodes
    mine = ["--mca", "btl", "self,sm"]
    cmd, _ = launch.run_command("openmpi", "mpiexec", 2, argv, mine, slots=8, one_host=True)
    assert cmd.count("btl") == 1 and "self,sm" in cmd  # the user's transport, not ours
    assert ("--allow-run-as-root" in cmd) == launch.is_root()


@pytest.mark.parametrize("family", ["mpich", "intelmpi"])
def test_mpich_and_intel_mpi_get_no_open_mpi_flags(family: str) -> None:
    cmd, warnings = launch.run_command(
        family, "mpiexec", 3, ["python", "a.py"], [], slots=1, one_host=True
    )
    assert cmd == ["mpiexec", "-n", "3", "python", "a.py"] and warnings == []


def test_slurm_counts_expand() -> None:
    assert slurm.expand_counts("4,2(x2)") == [4, 2, 2]
    assert slurm.expand_counts("") == []
    env = slurm.allocation_env([("n1", 2), ("n3", 4)])
    assert env["SLURM_JOB_NODELIST"] == "n1,n3" and env["SLURM_NTASKS"] == "6"
    assert env["SLURM_TASKS_PER_NODE"] == "2,4"


def test_the_nodes_left_must_hold_the_processes() -> None:
    two = [("n1", 2), ("n3", 2)]
    assert slurm.fits(4, two, 6, [])
    assert not slurm.fits(5, two, 6, [])  # a node lost: requeue rather than oversubscribe
    assert slurm.fits(5, two, 6, ["--oversubscribe"])
    assert slurm.fits(9, two, 6, [])  # more than the allocation from the start: as asked
    assert not slurm.fits(5, two, 6, ["--oversubscribe", "--map-by", "ppr:2:node"])
    assert not slurm.fits(1, [], 6, [])


def test_the_heartbeat_says_progress_and_the_watch_sees_it(tmp_path: Path) -> None:
    beat = heartbeat.Heartbeat(str(tmp_path), recovery_timeout=30)
    watch = heartbeat.Watch(str(tmp_path), hang_timeout=0, start_timeout=100)
    watch.look()
    assert watch.beat is None and watch.bound() == 100  # start-up
    beat.begin(10, 50, {"tier": "spill", "version": 2, "step": 10}, recoveries=0)
    for step in range(10, 13):
        beat.step(step)
    beat.committed(3)
    watch.look()  # written after the first step, then at most every INTERVAL
    assert watch.beat is not None and watch.beat["step"] == 11 and watch.beat["version"] is None
    beat.written -= heartbeat.INTERVAL  # as if half a second had passed
    beat.step(13)
    watch.look()
    assert watch.beat is not None and watch.beat["step"] == 14 and watch.beat["version"] == 3
    assert watch.resumed == {"tier": "spill", "version": 2, "step": 10}
    assert watch.bound() == heartbeat.HANG_FLOOR  # steps take microseconds here
    beat.phase("recovering")
    watch.look()
    assert watch.bound() == heartbeat.HANG_FLOOR + 30  # the recovery's own timeout on top
    beat.phase("after")
    watch.look()
    assert watch.bound() == 100
    assert watch.hung() == ""
    watch.moved -= 101
    assert re.search(r"no progress for 10\d\.\d s at step 14 \(after\)", watch.hung())


def test_the_automatic_hang_bound_grows_with_the_longest_gap(tmp_path: Path) -> None:
    beat = heartbeat.Heartbeat(str(tmp_path))
    beat.begin(0, 5, {"tier": "start"}, recoveries=0)
    beat.state["longest_gap_s"] = 7.5  # as a slow checkpoint would leave it
    beat.phase("steps")
    watch = heartbeat.Watch(str(tmp_path), hang_timeout=0, start_timeout=100)
    watch.look()
    assert watch.bound() == heartbeat.HANG_FACTOR * 7.5
    assert heartbeat.Watch(str(tmp_path), hang_timeout=4, start_timeout=100).bound() == 100
    fixed = heartbeat.Watch(str(tmp_path), hang_timeout=4, start_timeout=100)
    fixed.look()
    assert fixed.bound() == 4


def test_no_heartbeat_without_a_run_directory(tmp_path: Path) -> None:
    beat = heartbeat.Heartbeat(None)
    beat.begin(0, 1, {"tier": "start"}, 0)
    beat.phase("done")
    assert heartbeat.read(tmp_path) is None and list(tmp_path.iterdir()) == []
    t = time.monotonic()
    for step in range(10000):
        beat.step(step)
    assert time.monotonic() - t < 1.0  # a step costs microseconds


def test_run_help_explains_every_option() -> None:
    parser = _parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["run"]  # type: ignore[union-attr]
    text = sub.format_help()
    for action in sub._actions:
        assert action.help, action.dest
        for flag in action.option_strings:
            assert flag in text, flag
    assert "exit code" in text and "--relaunches" in text


def test_the_launcher_imports_neither_numpy_nor_mpi() -> None:
    """`mpickpt run` starts every job: its own start-up is the interpreter and little more
    (bench_supervisor.py measures it). The other commands' modules stay out of it."""
    code = (
        "import sys\n"
        "from mpickpt import cli\n"
        "cli.main(['run', '--dry-run', '-n', '2', 'job.py'])\n"
        "heavy = ('numpy', 'mpi4py.MPI', 'importlib.metadata', 'mpickpt.schemes')\n"
        "print('loaded:', [m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "loaded: []", out.stdout
