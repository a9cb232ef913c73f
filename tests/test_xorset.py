"""``xorset``, pure: set formation over failure domains, the parity chunks, and the rebuild of
every single loss (and the refusal of every double loss) in a set, swept exhaustively."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mpickpt import ConfigError, DecodeError, UnrecoverableError, XorSet, get_scheme
from mpickpt.planning import ProcessState, rebuild_sources
from mpickpt.schemes.xorset import chunk_size, decode_member, form_sets, holder, parity_name
from reference import contribution, encode_set, parity_sources


def segments(sizes: list[int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, n, dtype=np.uint8) for n in sizes]


@pytest.mark.parametrize("k", [2, 3, 4, 5, 7])
def test_parity_holds_nothing_of_its_own_and_every_chunk_once(k):
    for j in range(k):
        members = [m for m, _ in parity_sources(k, j)]
        assert j not in members and sorted(members) == sorted(set(range(k)) - {j})
    placed = sorted((m, t) for j in range(k) for m, t in parity_sources(k, j))
    assert placed == [(m, t) for m in range(k) for t in range(k - 1)]
    for m, t in placed:
        assert (m, t) in parity_sources(k, holder(k, m, t))


@pytest.mark.parametrize("k", [2, 3, 4, 5])
@pytest.mark.parametrize("sizes", ["equal", "mixed"])
def test_every_single_loss_is_rebuilt(k, sizes):
    n = [1000 + 24 * i for i in range(k)] if sizes == "mixed" else [4096] * k
    if sizes == "mixed":
        n[k // 2] = 1  # one tiny segment among larger ones: padded to the set's largest
    segs = segments(n)
    parity = encode_set(segs)
    c = chunk_size(n, k)
    assert all(p.size == c for p in parity)
    assert c * (k - 1) >= max(n) and c % 8 == 0
    for lost in range(k):
        got = [contribution(k, i, lost, segs[i], parity[i]) for i in range(k) if i != lost]
        assert np.array_equal(decode_member(got, n[lost]), segs[lost])


def test_memory_is_one_over_k_minus_one():
    for k in (2, 3, 4, 8):
        parity = encode_set(segments([8 * 1024 * (k - 1)] * k))
        assert parity[0].size == 8 * 1024  # 1/(k-1) of a segment per member
        assert XorSet(k).overhead == pytest.approx(1 / (k - 1))


def _states(n: int, sets: list[list[int]], version: int = 0) -> list[ProcessState]:
    """What each worker states after a commit: its parity chunk under every other member of
    its set, and its own committed copy (``local_version``)."""
    states = []
    for w in range(n):
        s = next(s for s in sets if w in s)
        k, pos = len(s), s.index(w)
        held = {o: (100 + o, {parity_name(pos, k): 1000 + w}) for o in s if o != w}
        states.append(ProcessState(w, w, version, version, {version: held}))
    return states


@pytest.mark.parametrize(("n", "k"), [(4, 4), (8, 4), (9, 3), (7, 3), (6, 2), (5, 4)])
def test_loss_sweep_over_every_pattern(n, k):
    """Every pattern of lost workers: recoverable exactly when no set lost two members; the
    plan then names the k-1 survivors of the lost member's set and nothing else."""
    scheme = XorSet(k)
    sets = form_sets(list(range(n)), k)
    assert sorted(r for s in sets for r in s) == list(range(n))
    assert max(map(len, sets)) - min(map(len, sets)) <= 1
    states = _states(n, sets)
    for r in range(1, n + 1):
        for dead in itertools.combinations(range(n), r):
            alive = [rep for i, rep in enumerate(states) if i not in dead]
            ok = all(len(set(s) & set(dead)) <= 1 for s in sets)
            if not ok:
                with pytest.raises(UnrecoverableError, match="one loss per set"):
                    rebuild_sources(alive, dead, 0, scheme, dead)
                continue
            plan = rebuild_sources(alive, dead, 0, scheme, dead)
            for o in dead:
                s = next(s for s in sets if o in s)
                nbytes, used = plan[o]
                assert nbytes == 100 + o
                holders = sorted(alive[i].logical for i, _, _ in used)
                assert holders == sorted(set(s) - {o})


def test_survivor_without_its_committed_copy_counts_as_lost():
    sets = form_sets(list(range(4)), 4)
    states = _states(4, sets)
    states[2] = ProcessState(2, 2, 0, -1, states[2].holdings)  # missed its own copy
    alive = [r for r in states if r.logical != 0]
    with pytest.raises(UnrecoverableError):
        rebuild_sources(alive, [0], 0, XorSet(4), (0,))


def test_sets_span_failure_domains():
    # 8 ranks on 4 nodes of 2: two sets of 4, each on 4 distinct nodes
    domains = [r // 2 for r in range(8)]
    sets = form_sets(domains, 4)
    assert len(sets) == 2
    for s in sets:
        assert len({domains[r] for r in s}) == 4
    # 12 ranks on 3 nodes of 4: sets of 3, one rank per node each
    domains = [r // 4 for r in range(12)]
    for s in form_sets(domains, 3):
        assert sorted(domains[r] for r in s) == [0, 1, 2]


def test_sets_that_cannot_span_domains_are_refused():
    with pytest.raises(ConfigError, match="group <= 2"):
        form_sets([r // 4 for r in range(8)], 4)  # 2 nodes of 4: sets of 4 cannot span nodes
    with pytest.raises(ConfigError, match="group >= 2"):
        XorSet(1)


def test_too_few_domains_give_one_domain_per_rank():
    """A job on fewer nodes than its sets need (relaunched on the nodes left after one was
    lost) still runs, each rank its own domain, as the per-owner schemes do."""
    two_nodes = [r // 4 for r in range(8)]
    assert XorSet(4).layout_domains(two_nodes) == list(range(8))
    four_nodes = [r // 2 for r in range(8)]
    assert XorSet(4).layout_domains(four_nodes) == four_nodes


def test_registry_and_config_round_trip():
    s = get_scheme("xorset", group=3)
    assert isinstance(s, XorSet) and s.tolerance == 0
    assert get_scheme(s.get_config()) == s
    with pytest.raises(DecodeError, match="positions \\[1, 2\\]"):
        s.needed([parity_name(0, 3)])
