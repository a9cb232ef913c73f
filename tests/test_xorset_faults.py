"""``xorset`` with real SIGKILLs in heat2d: one loss per set is rebuilt from the set's
survivors (the result equals the failure-free one), two losses in one set end the job with one
clear error."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import checksum
from mpickpt.schemes.xorset import form_sets
from test_faults import assert_recovered, heat, survivor_errors

pytestmark = [pytest.mark.mpi, pytest.mark.fault]

WORKERS = 8
XORSET = ["--scheme", "xorset", "--group", "4"]
SETS = form_sets(list(range(WORKERS)), 4)  # the job's sets (rank-level failure domains)


def layout(*extra: str) -> str:
    """``mpickpt layout`` of xorset(4) on 8 ranks: its standard output."""
    cmd = [sys.executable, "-m", "mpickpt.cli", "layout", "--scheme", "xorset", "--group", "4"]
    return subprocess.run(
        [*cmd, "--ranks", "8", *extra], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def test_layout_cli_lists_the_sets():
    out = layout("--ranks-per-node", "2", "--json")
    got = json.loads(out)
    assert got["scheme"] == "xorset" and got["config"] == {"id": "xorset", "group": 4}
    assert got["overhead"] == pytest.approx(1 / 3)
    sets = got["sets"]
    assert sorted(r for s in sets for r in s) == list(range(8))
    for s in sets:  # every set spans 4 nodes of 2 ranks: a lost node is one loss per set
        assert len({r // 2 for r in s}) == 4
    text = layout()
    assert "one lost rank per set" in text and "set 0:" in text


@pytest.mark.parametrize("kill", ["2@13", "5@10:checkpoint"])
def test_one_worker_killed(heat_reference, kill):
    rc, out, err = heat(WORKERS + 1, "--spares", "1", *XORSET, env={"MPICKPT_KILL": kill})
    assert_recovered(rc, out, err, heat_reference)


def test_one_kill_in_each_of_two_sets(heat_reference):
    a, b = SETS[0][1], SETS[1][1]
    kill = f"{a}@10:commit,{b}@10:commit"  # after a commit: both deaths in one recovery
    rc, out, err = heat(WORKERS + 2, "--spares", "2", *XORSET, env={"MPICKPT_KILL": kill})
    assert_recovered(rc, out, err, heat_reference)
    assert f"worker(s) [{min(a, b)}, {max(a, b)}] lost" in err, err


def test_a_lost_node_is_one_loss_per_set(heat_reference):
    # virtual nodes of 2 ranks: the sets of 4 span 4 nodes, so a node takes one rank of each;
    # killed right after a commit, so that both deaths are seen by one recovery
    env = {"MPICKPT_RANKS_PER_NODE": "2", "MPICKPT_KILL": "4@10:commit,5@10:commit"}
    rc, out, err = heat(WORKERS + 2, "--spares", "2", *XORSET, env=env)
    assert_recovered(rc, out, err, heat_reference)
    assert "worker(s) [4, 5] lost" in err, err


def test_two_kills_in_one_set_are_beyond_tolerance():
    # killed right after a commit, so that the two kills land together
    a, b = SETS[0][1], SETS[0][2]
    kill = f"{a}@10:commit,{b}@10:commit"
    rc, out, err = heat(WORKERS + 2, "--spares", "2", *XORSET, env={"MPICKPT_KILL": kill})
    assert rc == 3, f"{out}\n{err}"
    msgs = survivor_errors(err)
    assert msgs and len(set(msgs)) == 1, err
    assert "UnrecoverableError: cannot rebuild worker" in msgs[0], msgs[0]
    assert "(one lost rank per set)" in msgs[0] and "one loss per set" in msgs[0], msgs[0]
    assert checksum(out) is None
