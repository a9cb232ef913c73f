"""``xorset``: XOR sets across owners (as SCR's XOR scheme). Pure math, no MPI.

The workers form *sets* of about ``group`` ranks on distinct failure domains. Each member keeps
its own committed segment; the segments of a set are padded to the set's largest and cut into
``k - 1`` chunks (``k`` members). Member ``j`` holds one *parity chunk*: the XOR of one chunk
of every other member, ``P_j = XOR_{d=1..k-1} chunk d-1 of member (j - d) mod k``, so that it
holds nothing of its own data and every chunk of a member is in the parity of a different
member. Memory: ``1 + 1/(k-1)`` segments per rank.

A lost member ``x`` is rebuilt from the ``k - 1`` survivors of its set: chunk ``t`` of ``x``
is in ``P_j`` with ``j = (x + t + 1) mod k``, so it is ``P_j`` XOR the other survivors'
chunks in ``P_j``. Each survivor sends one *contribution* of ``k - 1`` chunks (its parity
chunk in one slot, its own data chunks in the others); the XOR of all contributions is the
lost segment. Two losses in one set are beyond the tolerance.

Unlike the per-owner schemes, a parity chunk depends on other owners' segments: the stream
for it is :class:`mpickpt.setstream.SetStream`, and :meth:`XorSet.needed` reads the set from
the names of the parity chunks reported for an owner (``x<position>/<k>``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError, DecodeError
from ..layout import ALIGN, Piece, spread_if_needed
from .base import Buffer, Scheme


def form_sets(domains: Sequence[int], group: int) -> list[list[int]]:
    """The sets of ranks (each sorted) for ranks living in ``domains``.

    ``n // group`` sets (at least one) of sizes that differ by at most one: ranks are listed
    failure domain by failure domain (largest first) and dealt round robin into the sets, so
    the members of a set are on distinct domains whenever that is possible. A single rank
    forms no set (it keeps its local copy only). Raises :class:`ConfigError` otherwise.
    """
    n = len(domains)
    if group < 2:
        raise ConfigError(f"xorset needs group >= 2 (a set of k ranks), got {group}")
    if n < 2:
        return []
    nsets = max(1, n // group)
    members: dict[int, list[int]] = {}
    for rank, d in enumerate(domains):
        members.setdefault(d, []).append(rank)
    listing = [r for m in sorted(members.values(), key=lambda m: (-len(m), m[0])) for r in m]
    sets: list[list[int]] = [[] for _ in range(nsets)]
    for i, rank in enumerate(listing):
        sets[i % nsets].append(rank)
    for s in sets:
        if len({domains[r] for r in s}) != len(s):
            sizes = sorted(len(m) for m in members.values())
            raise ConfigError(
                f"xorset with group={group} on {n} ranks forms {nsets} set(s), but a failure "
                f"domain has more ranks than there are sets (domain sizes {sizes}): two ranks "
                f"of one domain would share a set. Use group <= {n // sizes[-1]}, more nodes, "
                f"or smaller virtual nodes (MPICKPT_RANKS_PER_NODE)"
            )
    return [sorted(s) for s in sets]


def chunk_size(sizes: Sequence[int], k: int) -> int:
    """Bytes of every chunk (and parity chunk) of a set of ``k`` members whose segments have
    ``sizes`` bytes: the largest cut in ``k - 1``, a multiple of 8, at least 8."""
    per = -(-max(max(sizes), 1) // (k - 1))
    return -(-per // ALIGN) * ALIGN


def holder(k: int, member: int, chunk: int) -> int:
    """The set position whose parity chunk holds chunk ``chunk`` of member ``member``."""
    return (member + chunk + 1) % k


def decode_member(contributions: Iterable[Buffer], nbytes: int) -> np.ndarray:
    """The lost member's ``nbytes`` segment: the XOR of the ``k - 1`` survivors'
    contributions."""
    arrays = [np.frombuffer(b, dtype=np.uint8) for b in contributions]
    out = arrays[0].copy()
    for a in arrays[1:]:
        np.bitwise_xor(out, a, out=out)
    return out[:nbytes]


def parity_name(position: int, k: int) -> str:
    """The name under which the parity chunk of set position ``position`` is reported."""
    return f"x{position}/{k}"


def parse_name(name: str) -> tuple[int, int]:
    """``(position, k)`` of a parity chunk's name."""
    pos, k = name[1:].split("/")
    return int(pos), int(k)


class XorSet(Scheme):
    """Sets of ``group`` ranks (``group - 1`` data chunks per segment, one parity chunk per
    member). Tolerates one lost rank per set (a lost node when each set spans nodes); stores
    ``1/(group-1)`` of a segment per rank beside its own committed copy."""

    scheme_id = "xorset"
    cross_owner = True

    def __init__(self, group: int = 4) -> None:
        if group < 2:
            raise ConfigError(f"xorset needs group >= 2 (a set of k ranks), got {group}")
        self.group = group
        self.backups = group - 1  # every chunk of a segment is on another member of its set
        self.subsegments = group - 1

    def pieces(self) -> list[Piece]:
        """The owner's view: chunk ``t`` lies in the parity chunk of the member ``t + 1``
        places after it in its set."""
        return [Piece(f"c{t}", (t,), t, t, 0) for t in range(self.subsegments)]

    @property
    def tolerance(self) -> int:
        return 0  # the owner alone: a second loss in its set is fatal

    @property
    def tolerates(self) -> str:
        return "one lost rank per set"

    @property
    def min_workers(self) -> int:
        return 2  # sets shrink to the workers there are

    @property
    def overhead(self) -> float:
        return 1 / (self.group - 1)

    def get_config(self) -> dict[str, Any]:
        return {"id": self.scheme_id, "group": self.group}

    def layout_domains(self, domains: Sequence[int]) -> list[int]:
        """``domains``, or one per rank when a domain has more ranks than there are sets."""
        return spread_if_needed(domains, lambda d: form_sets(d, self.group))

    def needed(self, available: Iterable[str]) -> list[str]:
        """The parity chunks of every other member of the owner's set (with their members'
        committed segments); :class:`DecodeError` unless exactly the owner is missing."""
        names = sorted(available)
        if not names:
            raise DecodeError(
                "no member of its set holds a parity chunk for it (one loss per set can be rebuilt)"
            )
        k = parse_name(names[0])[1]
        have = sorted(parse_name(n)[0] for n in names)
        if len(have) != k - 1:
            lost = sorted(set(range(k)) - set(have))
            raise DecodeError(
                f"its set of {k} lost the members at positions {lost} (one loss per set can be "
                f"rebuilt)"
            )
        return names

    def decode(self, available: Mapping[str, Buffer], nbytes: int) -> np.ndarray:
        """``available``: the survivors' contributions by parity name (see
        :mod:`mpickpt.setstream`)."""
        return decode_member(available.values(), nbytes)
