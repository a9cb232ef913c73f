"""The disk tier with real ranks: restart after the whole job was killed, fallback beyond the
RAM tolerance, saving everything when no spare is left, stopping on a signal, damaged files."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import h5py
import pytest

from conftest import (
    EXAMPLES,
    HEAT,
    HEAT_SCHEME,
    _kill_group,
    checksum,
    finish,
    mpiexec_command,
    run_mpi,
)
from mpickpt import spill
from test_faults import run_simultaneous

pytestmark = [pytest.mark.mpi, pytest.mark.fault]

LONG = ["--steps", "4000", "--size", "48", "--every", "50", *HEAT_SCHEME]


@pytest.fixture(scope="module")
def long_reference() -> str:
    rc, out, err = run_mpi(EXAMPLES / "heat2d_plain.py", 1, *LONG[:4], timeout=60)
    assert rc == 0, err
    return checksum(out)


def heat(n: int, spill_dir: Path, *args: str, env=None, steps=HEAT):
    return run_mpi(
        EXAMPLES / "heat2d.py", n, *steps, "--spill", str(spill_dir), *args, env=env, timeout=90
    )


def start(n: int, spill_dir: Path, piddir: Path, *args: str) -> subprocess.Popen[str]:
    cmd = mpiexec_command(EXAMPLES / "heat2d.py", n, *LONG, "--spill", str(spill_dir), *args)
    return subprocess.Popen(
        cmd,
        env={**os.environ, "MPICKPT_PIDDIR": str(piddir), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for_versions(spill_dir: Path, count: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if os.path.isdir(spill_dir) and len(spill.complete_versions(spill_dir)) >= count:
            return
        time.sleep(0.02)
    pytest.fail(f"no {count} complete spilled versions in time (rc={proc.poll()})")


def test_spilled_files_are_self_describing(tmp_path, heat_reference):
    rc, out, err = heat(5, tmp_path, "--spares", "1")
    assert rc == 0 and checksum(out) == heat_reference, err
    newest = spill.complete_versions(tmp_path)[0]
    with h5py.File(spill.rank_file(tmp_path, newest, 2), "r") as f:
        assert f.attrs["rank"] == 2 and f.attrs["nworkers"] == 4
        assert f.attrs["step"] == 40
        assert f["arrays/u"].dtype == "float64" and f["arrays/u"].ndim == 2
    assert spill.verify(tmp_path) == []


def test_whole_job_killed_then_relaunched_from_the_spill(tmp_path, long_reference):
    proc = start(5, tmp_path / "ckpt", tmp_path, "--spares", "1")
    wait_for_versions(tmp_path / "ckpt", 2, proc)
    _kill_group(proc)  # every rank and mpiexec: the allocation is gone
    rc, out, err = heat(5, tmp_path / "ckpt", "--spares", "1", steps=LONG)
    assert rc == 0, err
    assert "restarted from spilled version" in err
    assert checksum(out) == long_reference


def test_beyond_ram_tolerance_falls_back_to_the_spill(tmp_path, heat_reference):
    # workers 1, 2, 3 together are beyond parity's tolerance for worker 1. Killed right after
    # a commit, so that the three land together: killed at the start of a step, a rank still in
    # the previous step's exchange could recover the first losses (in RAM, within tolerance)
    # before the last one dies (seen in CI: rc 0, the right checksum, no reload)
    kill = "1@20:commit,2@20:commit,3@20:commit"
    rc, out, err = run_simultaneous(
        8,
        "--spares",
        "3",
        "--spill",
        str(tmp_path),
        env={"MPICKPT_KILL": kill, "MPICKPT_VERBOSE": "1"},
    )
    assert rc == 0, f"{out}\n{err}"
    assert "reloaded version" in err
    assert checksum(out) == heat_reference


def test_no_spare_left_saves_every_worker_then_relaunch_resumes(tmp_path, heat_reference):
    rc, out, err = heat(6, tmp_path, "--spares", "1", env={"MPICKPT_KILL": "1@8,3@22"})
    assert rc == 75, f"{out}\n{err}"
    assert "saved version" in err
    saved = spill.read_index(tmp_path, spill.complete_versions(tmp_path)[0])
    assert saved["step"] == 20 and saved["nworkers"] == 5  # the newest committed, all workers
    assert not (tmp_path / spill.DONE).exists()  # what tells a job script that 0 means done
    rc, out, err = heat(6, tmp_path, "--spares", "1")
    assert rc == 0 and "restarted from spilled version" in err, err
    assert checksum(out) == heat_reference
    assert (tmp_path / spill.DONE).read_text() == "completed after step 40\n"


def test_more_dead_than_spares_with_an_idle_spare_saves_without_waiting(tmp_path, heat_reference):
    """A whole virtual node (2 workers) lost with 1 spare: the idle spare must take part in
    saving the newest version (it used to skip it and leave the workers waiting for it until
    the recovery watchdog ended the job, with nothing saved)."""
    env = {"MPICKPT_RANKS_PER_NODE": "2", "MPICKPT_KILL": "2@13,3@13"}
    env["MPICKPT_RECOVERY_TIMEOUT"] = "60"
    rc, out, err = heat(9, tmp_path, "--spares", "1", env=env)
    assert rc == 75, f"{out}\n{err}"
    assert "saved version" in err and "recovery stalled" not in err, err
    saved = spill.read_index(tmp_path, spill.complete_versions(tmp_path)[0])
    assert saved["nworkers"] == 8
    rc, out, err = heat(9, tmp_path, "--spares", "1", env={"MPICKPT_RANKS_PER_NODE": "2"})
    assert rc == 0 and "restarted from spilled version" in err, err
    assert checksum(out) == heat_reference


def test_index_that_cannot_be_written_skips_that_version(tmp_path, heat_reference):
    """Worker 0 fails to write one version's index (an OSError after the agreement, e.g. a full
    disk): that version is skipped and the job goes on, instead of ending with exit 1."""
    (tmp_path / "v00000003" / "INDEX.json.tmp").mkdir(parents=True)  # its write must fail
    rc, out, err = heat(5, tmp_path, "--spares", "1")
    assert rc == 0 and checksum(out) == heat_reference, f"rc={rc}\n{out}\n{err}"
    assert "spill of version 3 could not be indexed" in err, err
    assert 3 not in spill.complete_versions(tmp_path)


def test_signal_stops_with_a_final_spill_then_requeue_finishes(tmp_path, long_reference):
    proc = start(5, tmp_path / "ckpt", tmp_path, "--spares", "1")
    wait_for_versions(tmp_path / "ckpt", 1, proc)
    for pidfile in tmp_path.glob("rank*.pid"):  # what mpirun does with Slurm's SIGUSR1
        os.kill(int(pidfile.read_text()), signal.SIGUSR1)
    rc, out, err = finish(proc)
    assert rc == 76, f"{out}\n{err}"
    assert checksum(out) is None and not (tmp_path / "ckpt" / spill.DONE).exists()
    step = spill.read_index(tmp_path / "ckpt", spill.complete_versions(tmp_path / "ckpt")[0])
    assert 0 < step["step"] < 4000
    rc, out, err = heat(5, tmp_path / "ckpt", "--spares", "1", steps=LONG)
    assert rc == 0 and checksum(out) == long_reference, err


def test_damaged_newest_version_is_skipped_on_restart(tmp_path, heat_reference):
    rc, out, err = heat(5, tmp_path, "--spares", "1")
    assert rc == 0
    newest, older = spill.complete_versions(tmp_path)[:2]
    path = spill.rank_file(tmp_path, newest, 1)
    with h5py.File(path, "r") as f:
        offset = f["arrays/u"].id.get_offset()
    with open(path, "r+b") as f:  # flip one byte of worker 1's field
        f.seek(offset + 100)
        byte = f.read(1)
        f.seek(offset + 100)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert any(path in line for line in spill.verify(tmp_path))
    rc, out, err = heat(5, tmp_path, "--spares", "1")
    assert rc == 0, err
    assert "skipped damaged spill versions" in err and path in err
    assert f"restarted from spilled version {older}" in err
    assert checksum(out) == heat_reference


def test_different_worker_count_is_a_clear_error(tmp_path):
    rc, out, err = heat(5, tmp_path, "--spares", "1")
    assert rc == 0
    rc, out, err = heat(6, tmp_path, "--spares", "1")
    assert rc == 2, err
    assert "written by 4 workers, but this job has 5; relaunch with 4 workers" in err


WALK = ["--steps", "30", "--size", "500", "--every", "5"]


def walkers(n: int, *args: str, env=None):
    return run_mpi(EXAMPLES / "walkers_resilient.py", n, *WALK, *args, env=env, timeout=90)


def walker_count(out: str) -> int | None:
    found = [line for line in out.splitlines() if line.startswith("walkers: ")]
    return int(found[-1].split()[1]) if found else None


def test_no_spare_left_continues_on_fewer_workers_with_a_hook():
    # 6 workers + 1 spare: the spare replaces worker 1, then worker 3 dies with none left
    rc, out, err = walkers(7, env={"MPICKPT_KILL": "1@8,3@18", "MPICKPT_VERBOSE": "1"})
    assert rc == 0, f"{out}\n{err}"
    assert "continuing on 5 workers" in err
    assert walker_count(out) == 6 * 500  # every walker of the dead worker was taken over


def test_the_spill_goes_on_with_the_fewer_workers(tmp_path):
    """After the job went on with fewer workers, the spilled versions are indexed for that
    many (the writers kept the old count: every later index failed, and the final one made
    the job exit 2 although it had computed its result)."""
    rc, out, err = walkers(
        6, "--spares", "0", "--spill", str(tmp_path), env={"MPICKPT_KILL": "4@12"}
    )
    assert rc == 0, f"{out}\n{err}"
    assert "continuing on 5 workers" in err and "could not be indexed" not in err, err
    assert walker_count(out) == 6 * 500
    newest = spill.read_index(tmp_path, max(spill.complete_versions(tmp_path)))
    assert newest["nworkers"] == 5 and spill.verify(tmp_path) == []


def test_a_loss_before_the_first_commit_with_a_hook_and_no_spare():
    """Nothing committed, so no state of the dead worker to hand over: a relaunch starts
    again (75), as without a hook (it ended with 3, "beyond the tolerance", at version -1)."""
    rc, out, err = walkers(6, "--spares", "0", env={"MPICKPT_KILL": "0@start"})
    assert rc == 75, f"{out}\n{err}"
    assert walker_count(out) is None and "NoSparesError" in err, err


def test_fewer_nodes_than_the_scheme_needs_after_a_node_loss():
    """No spare, a whole virtual node lost: the 6 workers left on 3 nodes cannot hold
    parity(2, 3)'s backups on other nodes, so they go on with one failure domain per rank
    (before: saved and stopped as if the scheme could not work at all)."""
    env = {"MPICKPT_RANKS_PER_NODE": "2", "MPICKPT_KILL": "2@10:commit,3@10:commit"}
    rc, out, err = walkers(8, "--spares", "0", env=env)
    assert rc == 0, f"{out}\n{err}"
    assert "continuing on 6 workers" in err, err
    assert "one failure domain per rank" in err, err
    assert walker_count(out) == 8 * 500


@pytest.mark.parametrize("disk", ["as_left", "behind"])
def test_restart_on_another_number_of_workers_with_a_hook(tmp_path, disk):
    everyone = ",".join(f"{r}@17" for r in range(7))  # the whole job dies at step 17
    rc, out, err = walkers(7, "--spill", str(tmp_path), env={"MPICKPT_KILL": everyone})
    assert checksum(out) is None
    if disk == "behind":  # as if the disk had only finished the first version (seen in CI)
        for index in tmp_path.glob("v*/INDEX.json"):
            if index.parent.name != "v00000000":
                index.unlink()
    # how far the spill got before the job died depends on the disk: a version checkpointed
    # every 5 steps counts once it is indexed (the newest ones may still have been in flight)
    newest = max(spill.complete_versions(tmp_path))
    rc, out, err = walkers(5, "--spill", str(tmp_path))  # 4 workers now
    assert rc == 0, err
    expected = f"restarted from spilled version {newest} (step {5 * newest}, 6 workers)"
    assert expected in err, err
    assert walker_count(out) == 6 * 500


@pytest.mark.parametrize("kill", ["1@21", "3@32", "0@27"])
def test_spill_every_other_version_through_a_recovery(tmp_path, heat_reference, kill):
    # which version is due for the disk comes from the version number, which every rank
    # agreed on: the spare promoted in the recovery decides as the survivors do (a count of
    # the commits each process saw made it spill other versions than theirs: a hang)
    rc, out, err = heat(
        7, tmp_path, "--spares", "1", "--spill-every", "2", env={"MPICKPT_KILL": kill}
    )
    assert rc == 0 and checksum(out) == heat_reference, err
    assert all(v % 2 == 0 for v in spill.complete_versions(tmp_path)), err
    assert spill.complete_versions(tmp_path) and spill.verify(tmp_path) == []
