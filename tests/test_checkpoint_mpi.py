"""Checkpointer on real MPI ranks: the scripts in tests/mpi_scripts run under mpiexec and print
one JSON record per check; the assertions are here.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from math import comb

import pytest

pytestmark = pytest.mark.mpi

PREFIX = "mpickpt-test"
SCHEMES = ["parity", "mirror", "stripe", "rs"]
TOLERANCE = {"parity": 1, "mirror": 1, "stripe": 0, "rs": 2}  # as in checkpoint_schemes.py
BACKUPS = {"parity": 3, "mirror": 2, "stripe": 2, "rs": 4}
# rank counts per scheme: enough failure domains for the backups (rs: 5 at least)
RANKS = [(s, n) for s in SCHEMES for n in (4, 6, 8) if n > BACKUPS[s]] + [("rs", 5)]


def launch(run_mpi, script: str, n: int, *args: str, env=None) -> list[dict]:
    """Run ``script`` on ``n`` ranks; require a clean pass and return every rank's records."""
    rc, out, err = run_mpi(script, n, *args, env=env)
    output = f"--- stdout\n{out}\n--- stderr\n{err}"
    assert rc == 0, f"{script} {args} on {n} ranks exited {rc}\n{output}"
    assert f"{PREFIX}: all {n} ranks passed" in out, output
    records = [
        json.loads(line.split(" ", 1)[1])
        for line in out.splitlines()
        if line.startswith(PREFIX + " ")
    ]
    assert {r["rank"] for r in records} == set(range(n)), output
    failed = [r for r in records if r.get("ok") is False]
    assert not failed, f"failed checks: {failed}\n{output}"
    return records


def checks_named(records: list[dict], name: str) -> list[dict]:
    return [r for r in records if r.get("check") == name]


def assert_same_unrecoverable_everywhere(records: list[dict], n: int) -> dict[str, list[int]]:
    """Every rank printed the same UnrecoverableError, naming the lost ranks, for each
    beyond-tolerance case; return the lost ranks of each case."""
    by_case = defaultdict(list)
    for r in records:
        if r.get("event") == "beyond-tolerance":
            by_case[r["case"]].append(r)
    for case, seen in by_case.items():
        assert sorted(r["rank"] for r in seen) == list(range(n)), case
        assert {r["error"] for r in seen} == {"UnrecoverableError"}, seen
        assert len({tuple(r["lost"]) for r in seen}) == 1, seen
        messages = {r["message"] for r in seen}
        assert len(messages) == 1, f"ranks disagree on {case}: {messages}"
        (message,) = messages
        assert f"losing workers {seen[0]['lost']}" in message
        assert "at version 0" in message
    return {case: seen[0]["lost"] for case, seen in by_case.items()}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_single_rank_checkpoints_and_restores_locally(run_mpi, scheme):
    records = launch(run_mpi, "checkpoint_schemes.py", 1, scheme)
    for name in (
        "version",
        "local-segment",
        "restore-in-place",
        "restore-values",
        "restore-object",
    ):
        assert len(checks_named(records, name)) == 1, name


@pytest.mark.parametrize(("scheme", "n"), RANKS)
def test_checkpoint_and_rebuild(run_mpi, scheme, n):
    records = launch(run_mpi, "checkpoint_schemes.py", n, scheme)

    # (a) every rank got its own segment back from the others' pieces, and restored it
    for name in ("rebuild-all", "restore-in-place", "restore-values", "restore-object"):
        assert len(checks_named(records, name)) == n, name

    # (b) each owner with each of its backups (or alone, for stripe): both got their segment
    lost_ok = checks_named(records, "rebuild-lost")
    cases = {(r["owner"], tuple(r["lost"])) for r in lost_ok}
    per_owner = comb(BACKUPS[scheme], TOLERANCE[scheme])
    assert Counter(owner for owner, _ in cases) == dict.fromkeys(range(n), per_owner)
    assert all(owner in lost and len(lost) == TOLERANCE[scheme] + 1 for owner, lost in cases)
    assert len(lost_ok) == sum(len(lost) for _, lost in cases)  # one record per lost rank

    # (c) the owner with all its backups: the same UnrecoverableError on every rank
    losses = assert_same_unrecoverable_everywhere(records, n)
    assert sorted(losses) == sorted(f"owner {o}" for o in range(n))
    for case, lost in losses.items():
        assert int(case.split()[1]) in lost and len(lost) == BACKUPS[scheme] + 1
    assert len(checks_named(records, "beyond-tolerance")) == n * n

    # (e) a second checkpoint: one version held, rebuild gives the new state
    for name in ("second-version", "one-version-held", "second-rebuild"):
        assert len(checks_named(records, name)) == n, name


def test_virtual_nodes(run_mpi):
    n = 8
    records = launch(run_mpi, "virtual_node.py", n, env={"MPICKPT_RANKS_PER_NODE": "2"})
    assert len(checks_named(records, "domains")) == n
    assert len(checks_named(records, "backups-off-node")) == n
    rebuilt = checks_named(records, "node-rebuilt")
    # every single node (4) and every pair of nodes (6): each lost rank checked its segment
    assert {tuple(r["nodes"]) for r in rebuilt} == {
        *((d,) for d in range(4)),
        *((a, b) for a in range(4) for b in range(a + 1, 4)),
    }
    assert len(rebuilt) == 4 * 2 + 6 * 4
    # every triple of nodes is beyond tolerance, identically everywhere
    assert len(assert_same_unrecoverable_everywhere(records, n)) == 4


@pytest.mark.parametrize("mode", ["raise", "check"])
def test_a_failing_rank_fails_the_job_without_hanging(run_mpi, mode):
    rc, out, err = run_mpi("harness_failures.py", 3, mode, timeout=60)
    assert rc != 0
    assert f"{PREFIX}: all" not in out
    assert ("deliberate failure on rank 1" if mode == "raise" else "FAILED deliberate") in err
