"""The stalled-recovery message: what one process can tell about the others (no MPI)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from mpickpt.stall import VANISHED_AFTER, Vanished, diagnose, place_on_host, process_state


def test_process_state_of_real_processes():
    assert process_state(os.getpid()) == "alive"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        os.kill(child.pid, signal.SIGSTOP)
        os.waitpid(child.pid, os.WUNTRACED)  # until it has stopped
        assert process_state(child.pid) == "stopped"
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert process_state(child.pid) == "gone"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


PEERS = [("a", 100), ("a", 101), ("a", 102), ("a", 103), ("b", 104)]
STATES = {100: "alive", 101: "gone", 102: "stopped", 103: "alive"}


def test_diagnose_names_each_kind_of_missing_process():
    lines = diagnose(0, PEERS, failed=[], state_of=STATES.__getitem__)
    text = "\n".join(lines)
    assert "reported failed by MPI: world ranks []" in text
    assert "gone but not reported failed: world rank(s) 1 (pid 101)" in text
    assert "stopped: world rank(s) 2 (pid 102)" in text
    assert "alive on this host: world rank(s) 3 (pid 103)" in text
    assert "on other hosts (state unknown here): world rank(s) 4" in text
    assert all("pid 100" not in line for line in lines)  # not itself


def test_ranks_reported_failed_are_not_suspects():
    lines = diagnose(3, PEERS, failed=[1, 2], state_of=STATES.__getitem__)
    assert lines[0] == "reported failed by MPI: world ranks [1, 2]"
    assert not any(line.startswith(("gone", "stopped")) for line in lines)
    assert lines[1].startswith("alive on this host: world rank(s) 0 (pid 100):"), lines


def test_without_an_answer_from_mpi_every_process_is_described():
    lines = diagnose(4, PEERS, failed=None, state_of=STATES.__getitem__)
    assert not any(line.startswith("reported failed") for line in lines)
    assert lines == ["on other hosts (state unknown here): world rank(s) 0, 1, 2, 3"]


def test_a_process_place_counts_the_lower_ranks_of_its_own_host():
    peers = [("a", 10), ("b", 11), ("a", 12), ("b", 13), ("a", 14)]
    assert [place_on_host(r, peers) for r in range(5)] == [0, 0, 1, 1, 2]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_process_gone_and_never_reported_failed_is_named_after_a_while():
    clock, asked = Clock(), []
    states = {11: "alive", 12: "alive", 13: "stopped"}

    def failed() -> list[int]:
        asked.append(clock.now)
        return [1]  # rank 1 (pid 11) died and MPI said so

    vanished = Vanished({1: 11, 2: 12, 3: 13}, lambda: [0, 1, 2, 3], failed, states.get, clock)
    assert vanished() == []
    states[11] = states[12] = "gone"  # both end; only rank 1 is reported failed
    assert vanished() == []
    clock.now += VANISHED_AFTER / 2
    assert vanished() == [] and asked == []  # MPI is not asked before the time is up
    clock.now += VANISHED_AFTER / 2
    assert vanished() == [2]
    assert asked == [clock.now]


def test_a_process_the_recovery_no_longer_waits_for_is_not_named():
    """After a shrink the dead are no longer members, and no longer listed failed."""
    clock, members = Clock(), [0, 1, 2]
    vanished = Vanished({1: 11, 2: 12}, lambda: members, lambda: [], {11: "gone"}.get, clock)
    vanished()
    clock.now += VANISHED_AFTER
    assert vanished() == [1]
    members.remove(1)  # shrunk without it
    assert vanished() == []


def test_nothing_is_named_when_mpi_cannot_say_who_failed():
    clock = Clock()
    vanished = Vanished({1: 11}, lambda: [1], lambda: None, lambda pid: "gone", clock)
    vanished()
    clock.now += VANISHED_AFTER
    assert vanished() == []
