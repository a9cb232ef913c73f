"""The checkpoint stream on real MPI ranks: its traffic per rank does not grow with the
number of ranks, and it equals what the placement says (``tests/mpi_scripts/stream_stats.py``)."""

from __future__ import annotations

import pytest

from mpickpt.schemes import get_scheme
from mpickpt.transport import spans
from test_checkpoint_mpi import launch

pytestmark = pytest.mark.mpi

PARAMS = {
    "parity": {"group": 2, "backups": 3},
    "mirror": {"copies": 2},
    "stripe": {"backups": 2},
    "rs": {"group": 2, "parity": 1, "backups": 3},
}  # as in stream_stats.py
CHUNK = 512 << 10


def per_checkpoint(records: list[dict]) -> dict[int, set[tuple[int, ...]]]:
    """checkpoint index -> the distinct (messages, bytes) sent and received over all ranks."""
    out: dict[int, set[tuple[int, ...]]] = {}
    for r in records:
        if r.get("event") == "stats":
            row = (
                r["messages_sent"],
                r["bytes_sent"],
                r["messages_received"],
                r["bytes_received"],
                r["agreements"],
            )
            out.setdefault(r["checkpoint"], set()).add(row)
    return out


def expected(scheme_id: str, seg: int) -> tuple[int, int]:
    """Messages and bytes one rank sends per checkpoint, from the placement alone: to each
    backup a header (2 int64), every chunk of every piece it holds, the pieces' checksums."""
    scheme = get_scheme(scheme_id, **PARAMS[scheme_id])
    size = scheme.piece_size(seg)
    chunks = len(spans(size, CHUNK))
    msgs = sum(2 + chunks * len(held) for held in scheme.held())
    nbytes = sum(16 + size * len(held) + 8 * len(held) for held in scheme.held())
    return msgs, nbytes


def check_traffic(records: list[dict], scheme: str) -> dict[int, tuple[int, ...]]:
    rows = per_checkpoint(records)
    assert sorted(rows) == [0, 1, 2]
    segs = {r["checkpoint"]: r["seg"] for r in records if r.get("event") == "stats"}
    result = {}
    for i, seen in rows.items():
        assert len(seen) == 1, f"ranks differ at checkpoint {i}: {seen}"
        (row,) = seen
        msgs, nbytes = expected(scheme, segs[i])
        assert row == (msgs, nbytes, msgs, nbytes, 1), (i, row, msgs, nbytes)
        result[i] = row
    return result


@pytest.mark.parametrize("scheme", sorted(PARAMS))
def test_traffic_is_what_the_placement_says(run_mpi, scheme):
    records = launch(run_mpi, "stream_stats.py", 4, scheme)
    check_traffic(records, scheme)
    assert len([r for r in records if r.get("check") == "rebuilt"]) == 4 * 3


def test_traffic_per_rank_is_flat_from_4_to_16_ranks(run_mpi):
    """The same per-rank messages and bytes at 4, 8 and 16 ranks (oversubscribed)."""
    by_n = {}
    for n in (4, 8, 16):
        records = launch(run_mpi, "stream_stats.py", n, "parity")
        by_n[n] = check_traffic(records, "parity")
    assert by_n[4] == by_n[8] == by_n[16]


def test_reprotect_sends_only_the_missing_pieces(run_mpi):
    """Rank 1 lost every piece it held: only its owners send, only to it, only its slots."""
    n = 5
    records = launch(run_mpi, "stream_stats.py", n, "parity", "reprotect")
    rows = {r["rank"]: r for r in records if r.get("event") == "reprotect"}
    assert sorted(rows) == list(range(n))
    assert len([r for r in records if r.get("check") == "rebuilt-after-reprotect"]) == n
    scheme = get_scheme("parity", **PARAMS["parity"])
    seg = max(r["seg"] for r in records if r.get("event") == "stats" and r["checkpoint"] == 2)
    size = scheme.piece_size(seg)
    chunks = len(spans(size, CHUNK))
    per_slot = len(scheme.held()[0])  # parity(2,3): as many pieces on every backup
    for rank, r in rows.items():
        assert r["reprotects"] == 1 and r["agreements"] == 1
        sends_to_1 = 1 in r["backups"]
        assert r["messages_sent"] == (2 + chunks * per_slot if sends_to_1 else 0), r
        assert r["bytes_sent"] == (16 + per_slot * (size + 8) if sends_to_1 else 0), r
        owners = len(r["owners"]) if rank == 1 else 0
        assert r["messages_received"] == owners * (2 + chunks * per_slot), r


def test_xorset_reprotect_runs_again_only_in_the_set_that_lost_a_chunk(run_mpi):
    """Rank 1 lost its parity chunk (group 3 on 6 ranks: two sets): only its set runs the
    ring again; the other set keeps its chunks and sends nothing (before: every set did)."""
    n = 6
    records = launch(run_mpi, "stream_stats.py", n, "xorset", "reprotect")
    rows = {r["rank"]: r for r in records if r.get("event") == "reprotect"}
    assert sorted(rows) == list(range(n))
    assert len([r for r in records if r.get("check") == "rebuilt-after-reprotect"]) == n
    lost_set = set(rows[1]["members"])
    assert len(lost_set) == 3
    for rank, r in rows.items():
        assert r["reprotects"] == 1 and r["agreements"] == 1
        if rank in lost_set:
            assert r["messages_sent"] > 0 and r["messages_received"] > 0, r
        else:
            assert r["messages_sent"] == 0 and r["messages_received"] == 0, r
