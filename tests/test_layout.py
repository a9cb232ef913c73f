"""Placement math: subsegments, the patent's striping, backups over failure domains."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpickpt import ConfigError
from mpickpt.layout import (
    backup_layout,
    by_backup,
    choose_backups,
    domain_order,
    owners_of,
    parity_pieces,
    placement_domains,
    stripe_pieces,
    subsegment_size,
)


def names(pieces):
    return [p.name for p in pieces]


def test_parity_pieces_reproduce_patent_figure_3():
    held = by_backup(parity_pieces(9, 3, 4), 4)
    assert [names(h) for h in held] == [
        ["d0", "p1", "d8"],
        ["d1", "d3", "p2"],
        ["d2", "d4", "d6"],
        ["p0", "d5", "d7"],
    ]


def test_parity_block_covers_its_stripe():
    for p in parity_pieces(9, 3, 4):
        if p.name.startswith("p"):
            assert p.sources == tuple(range(3 * p.stripe, 3 * p.stripe + 3))
            assert p.index == 3
        else:
            assert p.sources == (int(p.name[1:]),)


@pytest.mark.parametrize("group", [1, 2, 3, 4])
@pytest.mark.parametrize("extra", [1, 2, 3])
@pytest.mark.parametrize("stripes", [1, 2, 5])
def test_backup_holds_at_most_one_piece_per_stripe(group, extra, stripes):
    backups = group + extra
    pieces = parity_pieces(group * stripes, group, backups)
    assert len(pieces) == stripes * (group + 1)
    for held in by_backup(pieces, backups):
        per_stripe = Counter(p.stripe for p in held)
        assert max(per_stripe.values(), default=0) <= 1


def test_too_few_backups_put_two_pieces_of_a_stripe_on_one_backup():
    # the configuration Parity rejects: why the rule is backups >= group + 1
    held = by_backup(parity_pieces(3, 3, 3), 3)
    assert max(max(Counter(p.stripe for p in h).values()) for h in held) == 2


def test_parity_pieces_reject_subsegments_not_multiple_of_group():
    with pytest.raises(ConfigError, match="multiple of 3; use 9"):
        parity_pieces(8, 3, 4)


def test_stripe_pieces_rotate():
    held = by_backup(stripe_pieces(5, 2), 2)
    assert [names(h) for h in held] == [["d0", "d2", "d4"], ["d1", "d3"]]


@given(st.integers(0, 1 << 20), st.integers(1, 64))
def test_subsegment_size_aligned_and_covering(nbytes, subsegments):
    size = subsegment_size(nbytes, subsegments)
    assert size % 8 == 0
    assert size > 0
    assert size * subsegments >= nbytes
    # no more than one alignment unit of padding per subsegment beyond the even split
    assert size < -(-max(nbytes, 1) // subsegments) + 8


def test_subsegment_size_rejects_zero_subsegments():
    with pytest.raises(ConfigError, match="subsegments must be >= 1"):
        subsegment_size(100, 0)


# -- backups over failure domains ---------------------------------------------------------------


def virtual_nodes(ranks: int, per_node: int) -> list[int]:
    return [r // per_node for r in range(ranks)]


def assert_valid_placement(domains: list[int], backups: int, result: list[list[int]]) -> None:
    n = len(domains)
    assert len(result) == n
    for owner, mine in enumerate(result):
        assert len(mine) == backups
        doms = [domains[owner]] + [domains[b] for b in mine]
        assert len(set(doms)) == len(doms), f"owner {owner}: backups {mine} share a domain"
    # balanced: every rank backs up exactly `backups` owners
    load = Counter(b for mine in result for b in mine)
    assert all(load[r] == backups for r in range(n)), load
    assert sorted(len(o) for o in owners_of(result)) == [backups] * n


@pytest.mark.parametrize(
    ("ranks", "per_node", "backups"),
    [
        (2, 1, 1),
        (4, 1, 3),
        (6, 1, 2),
        (8, 1, 3),
        (8, 1, 7),
        (8, 2, 1),
        (8, 2, 3),
        (6, 2, 2),
        (12, 3, 3),
        (16, 4, 2),
        (9, 3, 2),
    ],
)
def test_choose_backups_distinct_domains_and_balanced(ranks, per_node, backups):
    domains = virtual_nodes(ranks, per_node)
    assert_valid_placement(domains, backups, choose_backups(domains, backups))


def test_rank_level_domains():
    domains = list(range(6))
    result = choose_backups(domains, 2)
    assert_valid_placement(domains, 2, result)
    assert result[0] == [1, 2]


@pytest.mark.parametrize(("ranks", "per_node", "backups"), [(4, 2, 2), (8, 2, 4), (6, 3, 2)])
def test_choose_backups_too_few_domains(ranks, per_node, backups):
    ndom = ranks // per_node
    with pytest.raises(ConfigError) as info:
        choose_backups(virtual_nodes(ranks, per_node), backups)
    msg = str(info.value)
    assert f"only {ndom} failure domain" in msg
    assert f"at most {ndom - 1}" in msg
    assert "MPICKPT_RANKS_PER_NODE" in msg


def test_choose_backups_single_domain_and_zero_backups():
    with pytest.raises(ConfigError, match="use fewer backups"):
        choose_backups([0, 0, 0], 1)
    with pytest.raises(ConfigError, match="backups must be >= 1"):
        choose_backups([0, 1, 2], 0)


def test_backup_layout_single_rank_keeps_local_copy_only():
    assert backup_layout([0], 3) == ([[]], [[]])
    backups, owners = backup_layout([0, 1, 2, 3], 3)
    assert backups == choose_backups([0, 1, 2, 3], 3) and owners == owners_of(backups)
    with pytest.raises(ConfigError, match="at most 1"):
        backup_layout([0, 1], 3)  # what every process checks before a job starts


@pytest.mark.parametrize(
    ("domains", "backups"),
    [
        ([0, 0, 1], 2),  # 3 workers relaunched on the 2 nodes left of 3
        ([0, 1, 0, 1], 2),  # 2 nodes, parity(1, 2)
        ([0, 0, 0, 1], 3),  # 2 nodes, parity(2, 3)
        ([0, 0, 1, 2], 2),  # 3 nodes, too uneven
    ],
)
def test_backup_layout_spreads_over_ranks_when_nodes_cannot_hold_the_backups(domains, backups):
    """A job on fewer nodes than the scheme needs (a relaunch after a node was lost) runs with
    one failure domain per rank rather than failing: rank failures stay covered."""
    spread = list(range(len(domains)))
    assert placement_domains(domains, backups) == spread
    assert backup_layout(domains, backups) == backup_layout(spread, backups)
    assert_valid_placement(spread, backups, backup_layout(domains, backups)[0])


def test_a_single_rank_has_no_backups_to_place():
    assert placement_domains([0], 3) == [0]


def test_placement_domains_keeps_nodes_that_can_hold_the_backups():
    for domains, backups in (([0, 1, 2], 2), ([0, 0, 1, 1, 2, 2], 2), ([0, 1, 2, 3], 3)):
        assert placement_domains(domains, backups) == domains
        assert backup_layout(domains, backups)[0] == choose_backups(domains, backups)


def test_choose_backups_uneven_domains_rejected_with_sizes():
    # domains of sizes 2, 2, 1: rank 4 would have to back up four owners
    with pytest.raises(ConfigError, match=r"too uneven.*\[1, 2, 2\]"):
        choose_backups([0, 0, 1, 1, 2], 2)


@pytest.mark.parametrize(
    ("domains", "backups", "witness"),
    [
        # a node of 2 ranks and two of 1 (e.g. 4 ranks spread over 3 nodes)
        ([0, 0, 1, 2], 1, [[2], [3], [0], [1]]),
        # nodes of 2, 2, 1, 1 ranks (6 ranks over 4 nodes)
        ([0, 0, 1, 1, 2, 3], 2, [[2, 4], [2, 4], [0, 5], [0, 5], [1, 3], [1, 3]]),
    ],
)
def test_choose_backups_uneven_domains_with_a_placement(domains, backups, witness):
    assert_valid_placement(domains, backups, witness)  # a balanced placement exists
    assert_valid_placement(domains, backups, choose_backups(domains, backups))


@given(
    st.lists(st.integers(0, 5), min_size=2, max_size=14),
    st.integers(1, 5),
)
def test_choose_backups_valid_or_config_error(domains, backups):
    try:
        result = choose_backups(domains, backups)
    except ConfigError:
        return
    assert_valid_placement(domains, backups, result)


@given(st.integers(2, 8), st.integers(1, 4), st.data())
def test_choose_backups_equal_domains_always_placed(ndom, per_node, data):
    """Equal-sized domains (blocked or interleaved labels) never need a ConfigError while
    there are more domains than backups."""
    backups = data.draw(st.integers(1, ndom - 1), label="backups")
    interleaved = data.draw(st.booleans(), label="interleaved")
    ranks = ndom * per_node
    domains = [r % ndom for r in range(ranks)] if interleaved else virtual_nodes(ranks, per_node)
    assert_valid_placement(domains, backups, choose_backups(domains, backups))


@given(st.lists(st.integers(0, 4), min_size=1, max_size=20))
def test_domain_order_is_a_permutation(domains):
    assert sorted(domain_order(domains)) == list(range(len(domains)))
