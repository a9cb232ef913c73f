"""The ``rs`` scheme beyond the shared loss sweep of ``test_schemes.py``: placement, its
relation to ``parity``, the pieces a recovery fetches, chunked encoding, configuration."""

from __future__ import annotations

import json
from collections import Counter
from itertools import combinations

import numpy as np
import pytest

from mpickpt import ConfigError, DecodeError, Parity, ReedSolomon, get_scheme
from mpickpt.cli import main
from mpickpt.gf256 import UNIT
from reference import encode


def payload(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng([n, seed]).bytes(n)


@pytest.mark.parametrize(
    "scheme", [ReedSolomon(4, 2, 6), ReedSolomon(3, 2, 7, 6), ReedSolomon(2, 3)], ids=repr
)
def test_placement_rotates_like_the_patent(scheme):
    g, m = scheme.group, scheme.parity
    for p in scheme.pieces():
        assert p.backup == (p.stripe + p.index) % scheme.backups
        if p.index < g:
            assert p.name == f"d{p.stripe * g + p.index}" and len(p.sources) == 1
        else:
            assert p.name == f"p{p.stripe}.{p.index - g}" and len(p.sources) == g
    per = Counter((p.stripe, p.backup) for p in scheme.pieces())
    assert max(per.values()) == 1  # no backup holds two pieces of one stripe
    assert len(scheme.pieces()) == scheme.subsegments // g * (g + m)
    assert scheme.overhead == pytest.approx((g + m) / g)


def test_layout_of_rs_4_2_over_6_backups():
    held = [[p.name for p in h] for h in ReedSolomon(4, 2, 6, subsegments=8).held()]
    assert held == [["d0", "p1.1"], ["d1", "d4"], ["d2", "d5"], ["d3", "d6"], ["p0.0", "d7"],
                    ["p0.1", "p1.0"]]  # fmt: skip


@pytest.mark.parametrize("group", [1, 2, 3, 5])
def test_parity_1_stores_the_bytes_of_the_parity_scheme(group):
    rs, xor = ReedSolomon(group, 1, group + 1), Parity(group, group + 1)
    n = rs.subsegments * UNIT  # no padding difference between the two
    data = payload(n)
    a, b = encode(rs, data), encode(xor, data)
    assert [(p.backup, p.stripe, p.index) for p in rs.pieces()] == [
        (p.backup, p.stripe, p.index) for p in xor.pieces()
    ]
    for p, q in zip(rs.pieces(), xor.pieces(), strict=True):
        assert a[p.name].tobytes() == b[q.name].tobytes()
    assert rs.tolerance == xor.tolerance == 1


def test_needed_takes_data_pieces_first_and_group_per_stripe():
    scheme = ReedSolomon(3, 2, 5, subsegments=6)
    every = {p.name for p in scheme.pieces()}
    assert scheme.needed(every) == sorted(f"d{k}" for k in range(6))
    some = every - {"d0", "d4", "d5"}
    assert scheme.needed(some) == ["d1", "d2", "d3", "p0.0", "p1.0", "p1.1"]
    data = payload(5000)
    pieces = encode(scheme, data)
    assert scheme.decode({n: pieces[n] for n in scheme.needed(some)}, 5000).tobytes() == data


def test_decode_error_names_the_subsegments_and_stripes():
    scheme = ReedSolomon(2, 2, 4, subsegments=4)
    pieces = encode(scheme, payload(100))
    for name in ("d0", "d1", "p0.1"):
        del pieces[name]
    with pytest.raises(
        DecodeError, match=r"subsegments \[0, 1\] cannot be rebuilt.*stripe\(s\) \[0\]"
    ):
        scheme.decode(pieces, 100)
    with pytest.raises(DecodeError):
        scheme.needed(pieces)


@pytest.mark.parametrize("chunk", [UNIT, 3 * UNIT])
def test_chunk_by_chunk_combine_gives_the_encoded_pieces(chunk):
    """What the transport does: every piece built chunk by chunk from its sources' chunks."""
    scheme = ReedSolomon(3, 2, 6)
    data = payload(100_000)
    expected = encode(scheme, data)
    size = scheme.piece_size(len(data))
    assert size % scheme.granule == 0
    padded = np.zeros(size * scheme.subsegments, np.uint8)
    padded[: len(data)] = np.frombuffer(data, np.uint8)
    for p in scheme.pieces():
        chunks = []
        for a in range(0, size, chunk):
            n = min(chunk, size - a)
            chunks.append(scheme.combine(p, [padded[k * size + a :][:n] for k in p.sources]))
        out = np.concatenate(chunks)
        assert out.tobytes() == expected[p.name].tobytes(), p.name


def test_every_loss_of_owner_plus_parity_backups_decodes_bigger_segment():
    """A segment spanning several arithmetic blocks, every loss of ``parity`` backups."""
    scheme = ReedSolomon(4, 2, 6, subsegments=12)
    data = payload(3 << 20)
    pieces = encode(scheme, data)
    held = scheme.held()
    for lost in combinations(range(6), 2):
        gone = {p.name for b in lost for p in held[b]}
        out = scheme.decode({n: v for n, v in pieces.items() if n not in gone}, len(data))
        assert out.tobytes() == data, lost


def test_defaults_and_config():
    assert ReedSolomon().get_config() == {
        "id": "rs",
        "group": 4,
        "parity": 2,
        "backups": 6,
        "subsegments": 24,
    }
    assert get_scheme("rs", group=2, parity=3) == ReedSolomon(2, 3, 5, 10)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"group": 4, "parity": 2, "backups": 5}, r"backups >= group\+parity = 6.*group=3"),
        ({"group": 0}, "group >= 1 and parity >= 1"),
        ({"parity": 0}, "group >= 1 and parity >= 1"),
        ({"group": 250, "parity": 7}, "<= 256"),
        ({"group": 3, "subsegments": 10}, "multiple of group.*use 12"),
        ({"group": 3, "subsegments": 0}, "multiple of group"),
        ({"grup": 3}, "bad parameters"),
    ],
)
def test_bad_configs(params, match):
    with pytest.raises(ConfigError, match=match):
        get_scheme("rs", **params)


def test_cli_layout_shows_rs_placement(capsys):
    argv = [
        "layout",
        "--scheme",
        "rs",
        "--group",
        "4",
        "--parity",
        "2",
        "--backups",
        "6",
        "--subsegments",
        "8",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == (
        "ReedSolomon(group=4, parity=2, backups=6, subsegments=8): tolerates the owner + "
        "2 backup(s); stores 1.5 x the segment"
    )
    assert "  backup 6: p0.1, p1.0" in out
    assert main([*argv, "--json", "--ranks", "7"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["scheme"] == "rs" and got["tolerance"] == 2 and got["overhead"] == 1.5
    assert got["backups"] == [[p.name for p in h] for h in ReedSolomon(4, 2, 6, 8).held()]
    assert got["owners"]["0"] == [1, 2, 3, 4, 5, 6]
    assert main(["layout", "--scheme", "rs", "--group", "3", "--parity", "3"]) == 0  # backups: 6
    assert "ReedSolomon(group=3, parity=3, backups=6, subsegments=18)" in capsys.readouterr().out


def test_cli_layout_rejects_too_few_backups(capsys):
    assert (
        main(["layout", "--scheme", "rs", "--group", "4", "--parity", "2", "--backups", "5"]) == 2
    )
    assert "needs backups >= group+parity = 6" in capsys.readouterr().err


@pytest.mark.parametrize(
    "scheme",
    [ReedSolomon(2, 1), ReedSolomon(1, 2), ReedSolomon(2, 2), ReedSolomon(4, 2), ReedSolomon(2, 3)],
    ids=repr,
)
def test_decodes_exactly_when_at_most_parity_backups_are_lost(scheme):
    """With ``backups = group + parity`` every stripe has one piece on every backup: losing up
    to ``parity`` backups gives the bytes back, losing more is a DecodeError, whichever they
    are (the owner is always lost: only backups hold pieces)."""
    data = payload(10_000)
    pieces = encode(scheme, data)
    held = scheme.held()
    for k in range(scheme.backups + 1):
        for lost in combinations(range(scheme.backups), k):
            gone = {p.name for b in lost for p in held[b]}
            left = {n: v for n, v in pieces.items() if n not in gone}
            if k <= scheme.parity:
                assert scheme.decode(left, len(data)).tobytes() == data, lost
            else:
                with pytest.raises(DecodeError, match="cannot be rebuilt"):
                    scheme.decode(left, len(data))
