"""The fault tests' rerun rule (tests/reruns.py), on real Open MPI and mpickpt messages."""

from __future__ import annotations

import pytest

import reruns

ABORT = (
    "[host:01234] *** An error occurred in Send error after request freed\n"
    "[host:01234] *** reported by process [1,3]\n"
    "[host:01234] *** on a NULL communicator\n"
    "[host:01234] ***    and MPI will try to terminate your MPI job as well)\n"
    "[host:01234] *** MPI_ERRORS_ARE_FATAL (processes in this communicator will now abort,\n"
)
STALL = (
    "mpickpt: world rank 2: recovery stalled for 20 s (a rank aborted by Open MPI is not "
    "reported failed); exiting with 3\n"
)


@pytest.fixture(autouse=True)
def fresh_count(monkeypatch):
    monkeypatch.setattr(reruns, "RERUNS", [])


def test_open_mpi_abort_is_rerun_and_counted():
    with pytest.warns(reruns.OmpiRerunWarning, match="error after request freed"):
        assert reruns.should_rerun(3, "", ABORT + STALL)
    assert len(reruns.RERUNS) == 1
    assert "Send error after request freed" in reruns.RERUNS[0][1]


def test_watchdog_alone_fails_instead_of_rerunning():
    with pytest.raises(pytest.fail.Exception, match="deadlock"):
        reruns.should_rerun(3, "", "some output\n" + STALL)
    assert reruns.RERUNS == []


def test_success_and_plain_errors_are_not_rerun():
    assert not reruns.should_rerun(0, "checksum: 00", ABORT)
    assert not reruns.should_rerun(75, "", "mpickpt: rank 1: NoSparesError: workers [3] failed")
    assert reruns.RERUNS == []
