"""Using the library alone, on real ranks: misuse of ``protect`` is one clear error (exit 2,
printed once), ``ctx.restored`` says when saved state comes back, a spill directory refuses
another computation's restart, a completed spill is not recomputed, ``fresh`` starts over
without deleting, the default log is one line per recovery, and the run report records it."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SCRIPTS, run_mpi

pytestmark = pytest.mark.mpi
ENV = {"MPICKPT_RANKS_PER_NODE": "1"}  # no domain warning: one failure domain per rank


def usability(n: int, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    return run_mpi(SCRIPTS / "usability.py", n, *args, env={**ENV, **(env or {})}, timeout=90)


def printed_result(out: str) -> str:
    """What worker 0 printed as ``result <sum>``."""
    return re.search(r"^result (.*)$", out, re.M)[1]


def errors(err: str, kind: str = "ConfigError") -> list[str]:
    return re.findall(rf"^mpickpt: {kind}: (.*)$", err, re.M)


@pytest.mark.parametrize(
    ("misuse", "message"),
    [
        ("twice", r"^'u' is already protected; .*replace=True"),
        ("lambda", r"^protected entry 'scale' cannot be pickled \(.*lambda"),
        ("file", r"^protected entry 'log' cannot be pickled \(TypeError: .*TextIOWrapper"),
        ("in-loop", r"^ctx\.protect\('late'\) called after ctx\.steps started; protect every"),
    ],
)
def test_misuse_of_protect_exits_2_with_one_message(misuse: str, message: str) -> None:
    rc, out, err = usability(4, "--misuse", misuse, "--spares", "1", "--steps", "8")
    assert rc == 2, f"rc={rc}\n{out}\n{err}"
    lines = errors(err)
    assert len(lines) == 1 and re.search(message, lines[0]), err  # printed once
    assert "Traceback" not in err and "result" not in out, err


def incarnations(out: str) -> set[tuple[str, str]]:
    return {
        (role, restored)
        for role, restored in re.findall(r"^incarnation \d+ (\w+) (\w+)$", out, re.M)
    }


def test_restored_tells_the_roles_apart(tmp_path: Path) -> None:
    rc, clean, err = usability(3, "--steps", "12")
    assert rc == 0, err
    # worker 1 dies after the checkpoint of step 4: a survivor and a promoted spare roll back
    rc, out, err = usability(4, "--spares", "1", "--steps", "12", env={"MPICKPT_KILL": "1@6"})
    assert rc == 0, f"rc={rc}\n{out}\n{err}"
    assert incarnations(out) == {("initial", "False"), ("survivor", "True"), ("recovered", "True")}
    assert printed_result(out) == printed_result(clean)
    # a failure before the first commit: everyone starts again from the initial state
    rc, out, err = usability(
        4, "--spares", "1", "--steps", "12", env={"MPICKPT_KILL": "1@0:checkpoint"}
    )
    assert rc == 0, f"rc={rc}\n{out}\n{err}"
    assert ("survivor", "True") not in incarnations(out), out


def test_recycle_false_keeps_no_receive_buffers() -> None:
    """``resilient(recycle=False)`` reaches the checkpoint stream: no buffers of a dropped
    version are kept, and a run that loses a worker still gives the failure-free result."""
    pooled = re.compile(r"^pooled (\d+) (\d+)$", re.M)
    rc, clean, err = usability(3, "--steps", "12")
    assert rc == 0, err
    assert all(int(b) > 0 for _, b in pooled.findall(clean)), clean  # the default recycles
    rc, out, err = usability(
        4, "--spares", "1", "--steps", "12", "--no-recycle", env={"MPICKPT_KILL": "1@6"}
    )
    assert rc == 0, f"rc={rc}\n{out}\n{err}"
    assert sorted(w for w, _ in pooled.findall(out)) == ["0", "1", "2"], out
    assert all(b == "0" for _, b in pooled.findall(out)), out
    assert printed_result(out) == printed_result(clean)


@pytest.mark.parametrize(
    ("lost", "logger"),
    [
        (2, "0"),
        # worker 0 lost: the spare (COMM_WORLD rank 3) takes its place, logs and writes the
        # report; it was at no step, the survivors tell it where the failure hit
        (0, "3"),
    ],
)
def test_one_log_line_per_recovery_and_the_run_report(
    tmp_path: Path, lost: int, logger: str
) -> None:
    report = tmp_path / "run.json"
    rc, out, err = usability(
        4,
        "--spares",
        "1",
        "--steps",
        "12",
        "--report",
        str(report),
        env={"MPICKPT_KILL": f"{lost}@6"},
    )
    assert rc == 0, f"rc={rc}\n{out}\n{err}"
    lines = re.findall(r"^mpickpt: \[rank (\d+)\] (.*)$", err, re.M)
    assert len(lines) == 1, err  # the default log: one line, from the lowest worker
    rank, line = lines[0]
    assert rank == logger and re.fullmatch(
        rf"worker\(s\) \[{lost}\] lost at step 6; rebuilt [0-9.]+ KiB from \d rank\(s\) in "
        r"[0-9.]+ s; resuming at step 4",
        line,
    ), line
    data = json.loads(report.read_text())
    assert data["exit_code"] == 0 and data["workers"] == 3 and data["step"] == 12
    ckpts = data["checkpoints"]
    # steps 0, 4, 8, 12, and the re-protect at 4 after the recovery (the spare in worker 0's
    # place took part in the re-protect and the checkpoints at 8 and 12 only)
    assert ckpts["checkpoints"] == (5 if lost else 3), ckpts
    assert ckpts["bytes"] > ckpts["checkpoints"] * 8000 and ckpts["gb_per_s"] > 0
    [rec] = data["recoveries"]
    assert rec["lost"] == [lost] and rec["step"] == 6 and rec["resumed_at"] == 4
    assert rec["timeline"][0] == [0.0, "failure detected"] and rec["seconds"] > 0
    assert [e for _, e in rec["timeline"]][-1] == "re-protected; resuming at step 4"


def test_report_on_an_error_exit(tmp_path: Path) -> None:
    report = tmp_path / "run.json"
    rc, out, err = usability(3, "--misuse", "in-loop", env={"MPICKPT_REPORT": str(report)})
    assert rc == 2, err
    data = json.loads(report.read_text())
    assert data["exit_code"] == 2 and "ctx.protect('late')" in data["message"]


def test_a_spill_directory_belongs_to_one_computation(tmp_path: Path) -> None:
    spill = tmp_path / "ckpt"
    run = ("--spares", "1", "--steps", "12", "--spill", str(spill))
    rc, first, err = usability(4, *run, "--tag", "a")
    assert rc == 0, err
    result = printed_result(first)
    versions = sorted(p.name for p in spill.iterdir())
    # private: the directories 0700, the files 0600
    for path in [spill, *spill.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))

    # another tag: refused, both tags shown, once
    rc, out, err = usability(4, *run, "--tag", "b")
    assert rc == 2, f"rc={rc}\n{out}\n{err}"
    [line] = errors(err, "SpillError")
    assert "tagged 'a', but this run's tag is 'b'" in line and "fresh=True" in line, err

    # the same tag, another state: refused with the difference, once
    rc, out, err = usability(4, *run, "--tag", "a", "--size", "999")
    assert rc == 2, f"rc={rc}\n{out}\n{err}"
    assert len(errors(err)) == 1, err
    assert (
        "'u' was saved as an array <f8 of shape (1000,), protected now as an array <f8 of "
        "shape (999,)" in err
    ), err
    assert "result" not in out

    # the same computation again: complete, nothing recomputed, the same result
    rc, out, err = usability(4, *run, "--tag", "a")
    assert rc == 0, f"rc={rc}\n{out}\n{err}"
    assert "that run had completed (DONE after step 12): nothing to compute" in err, err
    assert printed_result(out) == result
    assert sorted(p.name for p in spill.iterdir()) == versions  # no new version written

    # fresh: starts over, the old versions moved aside, not deleted
    rc, out, err = usability(4, *run, "--tag", "b", env={"MPICKPT_FRESH": "1"})
    assert rc == 0, f"rc={rc}\n{out}\n{err}"
    [old] = [p for p in spill.iterdir() if p.name.startswith("old-")]
    assert sorted(p.name for p in old.iterdir()) == versions
    assert printed_result(out) == result
    assert "restarted" not in err and f"moved to {old}" in err, err


def test_spill_index_with_a_path_outside_is_refused(tmp_path: Path) -> None:
    spill = tmp_path / "ckpt"
    rc, out, err = usability(3, "--steps", "8", "--spill", str(spill))
    assert rc == 0, err
    newest = sorted(spill.glob("v*"))[-1] / "INDEX.json"
    index = json.loads(newest.read_text())
    index["files"][1]["file"] = "../../etc/passwd"
    newest.write_text(json.dumps(index))
    os.remove(spill / "DONE")
    rc, out, err = usability(3, "--steps", "8", "--spill", str(spill))
    # the tampered version is skipped (named), the older one restarts the job
    assert rc == 0, f"rc={rc}\n{out}\n{err}"
    assert f"{newest}: file name(s) ['../../etc/passwd'] lead outside" in err, err


def test_demo_json() -> None:
    import conftest

    if conftest.UNDER_MPIEXEC:
        pytest.skip("launches mpiexec itself")
    demo = [sys.executable, "-m", "mpickpt.cli", "demo", "--workers", "4", "--steps", "40"]
    demo += ["--size", "64", "--every", "10", "--kill-rank", "2", "--kill-step", "25", "--json"]
    proc = subprocess.run(demo, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)  # nothing but the JSON document on standard output
    assert data["ok"] and data["clean"]["checksum"] == data["faulty"]["checksum"]
    events = [what for _, what in data["timeline"]]
    assert events[0] == "rank 2 killed (SIGKILL)" and "failure detected" in events, events
    assert events[-1] == "re-protected; resuming at step 20", events
    times = [t for t, _ in data["timeline"]]
    assert times == sorted(times) and 0 < times[-1] < 30, times


def test_the_stop_signals_are_taken_for_the_run_only(tmp_path: Path) -> None:
    """With a spill, SIGTERM asks for a spill and a stop during the run; after it, the
    process's own handler (here the default) is back."""
    rc, out, err = usability(3, "--steps", "8", "--spill", str(tmp_path / "ckpt"))
    assert rc == 0, err
    assert out.count("sigterm during the run: mpickpt") == 3, out
    assert out.count("sigterm after the run: default") == 3, out
    rc, out, err = usability(3, "--steps", "8")  # without a spill: never taken
    assert rc == 0, err
    assert out.count("sigterm during the run: default") == 3, out


def test_pid_files_are_removed_at_a_normal_end(tmp_path: Path) -> None:
    piddir = tmp_path / "pids"
    env = {"MPICKPT_PIDDIR": str(piddir), "MPICKPT_KILL": "1@6"}
    rc, out, err = usability(4, "--spares", "1", "--steps", "12", env=env)
    assert rc == 0, f"rc={rc}\n{out}\n{err}"
    # the killed rank left its pid and the time of its kill; the others removed theirs
    assert sorted(p.name for p in piddir.iterdir()) == ["killed-rank1.time", "rank1.pid"]


def test_a_single_worker_is_warned_once_that_nothing_is_redundant() -> None:
    alone = "a single worker has no other rank to hold its checkpoint"
    done = subprocess.run(  # a plain `python`: one process, one worker
        [sys.executable, str(SCRIPTS / "usability.py"), "--steps", "6"],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, **ENV},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(alone) == 1, done.stderr
    rc, out, err = usability(2, "--steps", "6")
    assert rc == 0 and alone not in err, err


REPLACED = "the protected array 'u' is referenced by nothing but mpickpt"


def test_a_replaced_protected_array_is_warned_about_once_per_process() -> None:
    rc, out, err = usability(3, "--misuse", "rebind", "--steps", "12")
    assert rc == 0, err
    assert err.count(REPLACED) == 3, err  # each worker, at its first checkpoint in the loop
    # what it warns about: killed and recovered, the result differs from the run without a kill
    rc, clean, err = usability(3, "--spares", "1", "--steps", "12")
    assert rc == 0 and REPLACED not in err, err
    rc, stale, err = usability(
        3, "--misuse", "rebind", "--spares", "1", "--steps", "12", env={"MPICKPT_KILL": "1@6"}
    )
    assert rc == 0 and REPLACED in err, err
    assert printed_result(stale) != printed_result(clean)
