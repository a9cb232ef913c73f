"""``rs`` with real SIGKILLs: three ranks killed at once, the owner and two of its backups,
a loss ``parity`` cannot survive (see ``test_beyond_tolerance_same_error_everywhere`` in
``test_faults.py``)."""

from __future__ import annotations

import pytest

from conftest import checksum
from mpickpt import ReedSolomon
from mpickpt.layout import choose_backups
from test_faults import assert_recovered, heat, survivor_errors

pytestmark = [pytest.mark.mpi, pytest.mark.fault]

WORKERS = 5  # rs(2, 2) needs 4 backups on other failure domains: 5 workers at least
RS = ["--scheme", "rs", "--group", "2", "--parity", "2", "--backups", "4"]


def victims(owner: int, which: tuple[int, int]) -> list[int]:
    """The owner and two of its backups, read from the placement the job computes (rank-level
    failure domains: one per worker)."""
    backups = choose_backups(list(range(WORKERS)), ReedSolomon(2, 2, 4).backups)[owner]
    return [owner, backups[which[0]], backups[which[1]]]


@pytest.mark.parametrize(
    ("owner", "which", "at"), [(1, (0, 1), "13"), (3, (1, 3), "10:checkpoint")]
)
def test_owner_and_two_backups_killed_together(heat_reference, owner, which, at):
    dead = victims(owner, which)
    kill = ",".join(f"{r}@{at}" for r in dead)
    rc, out, err = heat(WORKERS + 3, "--spares", "3", *RS, env={"MPICKPT_KILL": kill})
    assert_recovered(rc, out, err, heat_reference)


def test_owner_and_three_backups_is_beyond_rs_tolerance():
    # killed right after a commit: no rank can see one of them die before all have (killed at
    # the start of a step, a rank still in the previous step's exchange may recover the first
    # three before the fourth dies, which rs tolerates)
    dead = [1, *choose_backups(list(range(WORKERS)), 4)[1][:3]]
    kill = ",".join(f"{r}@10:commit" for r in dead)
    rc, out, err = heat(WORKERS + 4, "--spares", "4", *RS, env={"MPICKPT_KILL": kill})
    assert rc == 3, f"{out}\n{err}"
    msgs = survivor_errors(err)
    assert msgs and len(set(msgs)) == 1, err
    assert "UnrecoverableError: cannot rebuild worker" in msgs[0], msgs[0]
    assert "owner + 2 backup(s)" in msgs[0], msgs[0]
    assert checksum(out) is None
