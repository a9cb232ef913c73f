"""Placement math: subsegments, stripes, pieces, backups over failure domains.

Pure functions, no MPI. A *piece* is the XOR of one or more subsegments (one source for a data
piece or a mirror copy, ``group`` sources for a parity block) and lives on one backup, counted
``0..backups-1`` relative to its owner.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .errors import ConfigError, DecodeError

ALIGN = 8


@dataclass(frozen=True)
class Piece:
    """One stored block: ``name`` is ``d<k>`` (subsegment k), ``p<s>`` (parity of stripe s)
    or ``m<c>`` (mirror copy c, all subsegments)."""

    name: str
    sources: tuple[int, ...]
    backup: int
    stripe: int
    index: int


def subsegment_size(nbytes: int, subsegments: int) -> int:
    """Size of each subsegment of an ``nbytes`` segment: equal, a multiple of 8, last padded."""
    if subsegments < 1:
        raise ConfigError(f"subsegments must be >= 1, got {subsegments}")
    per = -(-max(nbytes, 1) // subsegments)
    return -(-per // ALIGN) * ALIGN


def parity_pieces(subsegments: int, group: int, backups: int) -> list[Piece]:
    """The patent's striping (Figure 3): piece ``j`` of stripe ``s`` (data ``0..group-1``,
    parity last) goes to backup ``(s + j) mod backups``."""
    if subsegments % group:
        raise ConfigError(
            f"parity needs subsegments to be a multiple of group: {subsegments} is not a "
            f"multiple of {group}; use {subsegments + group - subsegments % group}"
        )
    pieces = []
    for s in range(subsegments // group):
        members = tuple(range(s * group, (s + 1) * group))
        for j, k in enumerate(members):
            pieces.append(Piece(f"d{k}", (k,), (s + j) % backups, s, j))
        pieces.append(Piece(f"p{s}", members, (s + group) % backups, s, group))
    return pieces


def stripe_pieces(subsegments: int, backups: int) -> list[Piece]:
    """Striping without parity: subsegment ``k`` goes to backup ``k mod backups``."""
    return [Piece(f"d{k}", (k,), k % backups, k, 0) for k in range(subsegments)]


def mirror_pieces(copies: int) -> list[Piece]:
    """Mirroring: backup ``c`` holds a full copy of the segment (one subsegment)."""
    return [Piece(f"m{c}", (0,), c, 0, c) for c in range(copies)]


def by_backup(pieces: Iterable[Piece], backups: int) -> list[list[Piece]]:
    """The pieces each backup holds, in piece order."""
    held: list[list[Piece]] = [[] for _ in range(backups)]
    for p in pieces:
        held[p.backup].append(p)
    return held


def decode_plan(
    pieces: Sequence[Piece], subsegments: int, available: Iterable[str]
) -> list[tuple[int, Piece, tuple[int, ...]]]:
    """How to rebuild every subsegment from the ``available`` piece names.

    Returns steps ``(subsegment, piece, others)``: subsegment = piece XOR the already rebuilt
    ``others``. A peeling decoder: works for every scheme built from XOR pieces. Raises
    :class:`DecodeError` naming the subsegments that cannot be rebuilt.
    """
    have = {p.name: p for p in pieces if p.name in set(available)}
    done: set[int] = set()
    steps: list[tuple[int, Piece, tuple[int, ...]]] = []
    progress = True
    while len(done) < subsegments and progress:
        progress = False
        for p in have.values():
            missing = [k for k in p.sources if k not in done]
            if len(missing) == 1:
                k = missing[0]
                steps.append((k, p, tuple(s for s in p.sources if s != k)))
                done.add(k)
                progress = True
    if len(done) < subsegments:
        lost = sorted(set(range(subsegments)) - done)
        raise DecodeError(f"subsegments {lost} cannot be rebuilt from pieces {sorted(have)}")
    return steps


def domain_order(domains: Sequence[int]) -> list[int]:
    """Ranks in a cyclic order in which ranks of one failure domain stand far apart.

    Ranks are listed domain by domain (largest first) and dealt into as many rows as the
    largest domain has ranks; the rows are then read one after the other. Members of a domain
    land in different rows, so consecutive ranks differ in domain whenever the sizes allow.
    """
    members: dict[int, list[int]] = {}
    for rank, d in enumerate(domains):
        members.setdefault(d, []).append(rank)
    groups = sorted(members.values(), key=lambda m: (-len(m), m[0]))
    rows: list[list[int]] = [[] for _ in range(len(groups[0]) if groups else 0)]
    for k, rank in enumerate(r for g in groups for r in g):
        rows[k % len(rows)].append(rank)
    return [rank for row in rows for rank in row]


def choose_backups(domains: Sequence[int], backups: int) -> list[list[int]]:
    """For each owner rank, its ``backups`` backup ranks, on failure domains that differ from
    the owner's and from each other. Rotating over :func:`domain_order`, so every rank backs up
    exactly ``backups`` owners (memory and traffic balanced).

    Raises :class:`ConfigError` when the domains cannot satisfy this.
    """
    n = len(domains)
    ndom = len(set(domains))
    if backups < 1:
        raise ConfigError(f"backups must be >= 1, got {backups}")
    if backups + 1 > ndom:
        raise ConfigError(
            f"each owner needs {backups} backups on {backups} other failure domains, but the "
            f"workers span only {ndom} failure domain(s) ({n} workers); use fewer backups "
            f"(at most {ndom - 1}), more nodes, or smaller virtual nodes (MPICKPT_RANKS_PER_NODE)"
        )
    order = domain_order(domains)
    pos = {rank: i for i, rank in enumerate(order)}
    result = []
    for owner in range(n):
        mine = [order[(pos[owner] + j) % n] for j in range(1, backups + 1)]
        doms = [domains[owner]] + [domains[b] for b in mine]
        if len(set(doms)) != len(doms):
            raise ConfigError(
                f"failure domains are too uneven to place {backups} backups of rank {owner} "
                f"on distinct other domains (domain sizes "
                f"{sorted(domains.count(d) for d in set(domains))}); balance the ranks per node "
                f"or use fewer backups"
            )
        result.append(mine)
    return result


def owners_of(backups: Sequence[Sequence[int]]) -> list[list[int]]:
    """Inverse of :func:`choose_backups`: for each rank, the owners whose pieces it holds,
    with the backup slot (``(owner, slot)``) flattened as owner order."""
    held: list[list[int]] = [[] for _ in backups]
    for owner, mine in enumerate(backups):
        for b in mine:
            held[b].append(owner)
    return held


def spread_if_needed(domains: Sequence[int], place: Callable[[Sequence[int]], object]) -> list[int]:
    """``domains``, or one domain per rank when ``place(domains)`` raises
    :class:`ConfigError` (the domains are too few or too uneven for a scheme's placement, e.g.
    a job relaunched on the nodes left after one was lost). The failure of ranks stays covered;
    the loss of a whole node may not be, and the job then falls back to its spill. ``place``'s
    own :class:`ConfigError` on one domain per rank (too few ranks) stands."""
    if len(domains) < 2:  # a single rank has nothing to place on others
        return list(domains)
    try:
        place(domains)
    except ConfigError:
        spread = list(range(len(domains)))
        place(spread)
        return spread
    return list(domains)


def placement_domains(domains: Sequence[int], backups: int) -> list[int]:
    """The failure domains the backups are placed over (see :func:`spread_if_needed`): every
    owner's ``backups`` on distinct other domains."""
    return spread_if_needed(domains, lambda d: choose_backups(d, backups))


def backup_layout(domains: Sequence[int], backups: int) -> tuple[list[list[int]], list[list[int]]]:
    """:func:`choose_backups` and :func:`owners_of` for ranks in ``domains`` (or one domain per
    rank, see :func:`placement_domains`). A single rank has nobody to back it up: it keeps its
    local copy only."""
    if len(domains) < 2:
        return [[] for _ in domains], [[] for _ in domains]
    chosen = choose_backups(placement_domains(domains, backups), backups)
    return chosen, owners_of(chosen)
