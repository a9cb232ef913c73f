"""The spill's helper processes under real MPI: one per node (``MPICKPT_SPILL_HELPER=node``)
writes the same bytes as one per rank, and a rank killed while the shared helper holds
other ranks' writes (the rank that started it, or another) never leaves a version that looks
complete but is not: the job recovers, goes on spilling, and ends with the right result."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import EXAMPLES, HEAT, checksum, finish, mpiexec_command, run_mpi
from mpickpt import spill
from test_spill_mpi import LONG, wait_for_versions

pytestmark = [pytest.mark.mpi, pytest.mark.fault]

HELPER = "mpickpt.spill._helper"


@pytest.fixture(scope="module")
def long_result() -> str:
    """The failure-free result of the long run (plain MPI, one rank)."""
    rc, out, err = run_mpi(EXAMPLES / "heat2d_plain.py", 1, *LONG[:4], timeout=60)
    assert rc == 0, err
    return str(checksum(out))


def helpers(ranks: set[int]) -> dict[int, int]:
    """The spill helper processes whose parent is one of ``ranks``: helper pid -> parent."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            stat = (proc / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if HELPER.encode() in cmdline and ppid in ranks and stat.rsplit(")", 1)[1][1] != "Z":
            found[int(proc.name)] = ppid
    return found


def rank_pids(piddir: Path) -> dict[int, int]:
    return {int(p.stem[4:]): int(p.read_text()) for p in piddir.glob("rank*.pid")}


def test_node_helper_writes_the_same_bytes_as_per_rank_helpers(tmp_path, heat_reference):
    dirs = {h: tmp_path / h for h in ("rank", "node")}
    for h, d in dirs.items():
        env = {"MPICKPT_SPILL_HELPER": h}
        rc, out, err = run_mpi(EXAMPLES / "heat2d.py", 5, *HEAT, "--spill", str(d), env=env)
        assert rc == 0 and checksum(out) == heat_reference, f"{h}: rc={rc}\n{err}"
        assert spill.verify(d) == []
    versions = set(spill.complete_versions(dirs["rank"]))
    versions &= set(spill.complete_versions(dirs["node"]))
    assert max(versions) == max(spill.complete_versions(dirs["node"]))  # the last, in both
    for v in versions:
        for r in range(4):
            a, b = (spill.load(d, v, r) for d in dirs.values())
            assert a.tobytes() == b.tobytes(), f"version {v}, rank {r}"


@pytest.mark.parametrize("victim", ["owner", "other"])
def test_rank_killed_while_the_node_helper_holds_writes(tmp_path, long_result, victim):
    """The shared helper is stopped so that every rank's write of a version waits in it, then
    a rank is killed: the one that started the helper (which dies with it, failing the others'
    writes) or another (whose queued write the helper drops)."""
    ckpt, piddir = tmp_path / "ckpt", tmp_path / "pids"
    piddir.mkdir()
    cmd = mpiexec_command(EXAMPLES / "heat2d.py", 6, *LONG, "--spill", str(ckpt), "--spares", "1")
    env = {
        **os.environ,
        "MPICKPT_PIDDIR": str(piddir),
        "MPICKPT_SPILL_HELPER": "node",
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    wait_for_versions(ckpt, 2, proc)
    pids = rank_pids(piddir)
    found = helpers(set(pids.values()))
    assert len(found) == 1, f"not one helper for the node's ranks: {found}"
    ((helper, owner),) = found.items()
    workers = [pids[r] for r in range(5)]  # world rank 5 is the spare
    os.kill(helper, signal.SIGSTOP)
    time.sleep(1.0)  # the next checkpoint's writes queue up in the stopped helper
    killed = owner if victim == "owner" else next(p for p in workers if p != owner)
    os.kill(killed, signal.SIGKILL)
    if victim == "other":
        os.kill(helper, signal.SIGCONT)
    rc, out, err = finish(proc)
    assert rc == 0 and checksum(out) == long_result, f"rc={rc}\n{out}\n{err}"
    assert "worker(s) [" in err and " lost" in err, err
    # versions were spilled after the recovery, and every complete one is whole
    newest = spill.complete_versions(ckpt)[0]
    assert spill.read_index(ckpt, newest)["step"] == 4000
    assert spill.verify(ckpt) == []
    assert spill.find_restart(ckpt, 5).version == newest


def test_a_checkpoint_waits_only_for_the_older_of_two_versions_in_flight(tmp_path):
    rc, out, err = run_mpi("spill_no_wait.py", 3, str(tmp_path))
    assert rc == 0 and "all 3 ranks passed" in out, f"{out}\n{err}"


def test_a_spill_stalled_on_one_rank_is_skipped_on_every_rank(tmp_path):
    """Before, the stalled rank alone skipped versions, and the next checkpoint hung."""
    env = {"MPICKPT_SPILL_TIMEOUT": "1"}
    rc, out, err = run_mpi("spill_one_rank_stalled.py", 3, str(tmp_path), env=env, timeout=60)
    assert rc == 0 and "all 3 ranks passed" in out, f"{out}\n{err}"
    assert "skipped: the writer of rank(s) [1] is still busy" in err, err
