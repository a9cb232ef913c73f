"""Versioned pieces in RAM: what this rank holds for its owners, plus its own committed segment.

A version is *staged* while the checkpoint that writes it is in flight, and *committed* once
every worker agreed it is complete; only then is the previous version dropped. At most two
versions are ever held.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .checksum import checksum
from .errors import IntegrityError
from .segment import SegmentView


@dataclass(frozen=True)
class PieceHeader:
    """What travels with a piece: enough to place, check and decode it."""

    owner: int
    version: int
    name: str
    stripe: int
    index: int
    length: int
    checksum: int
    nbytes: int  # of the owner's whole segment


@dataclass
class StoredPiece:
    """One piece held in RAM: its header and its bytes."""

    header: PieceHeader
    data: np.ndarray

    def verify(self) -> None:
        """Raise :class:`IntegrityError` if the data does not match its checksum."""
        if checksum(self.data) != self.header.checksum:
            h = self.header
            raise IntegrityError(
                f"piece {h.name} of owner {h.owner} version {h.version} failed its checksum"
            )


@dataclass
class MemStore:
    """Pieces by version and owner; the committed version and an optional staged one."""

    versions: dict[int, dict[int, dict[str, StoredPiece]]] = field(default_factory=dict)
    committed: int = -1
    local: np.ndarray | None = None  # this rank's own segment at ``local_version``
    local_version: int = -1

    def stage(self, version: int, pieces: list[StoredPiece]) -> None:
        """Hold ``pieces`` of ``version`` beside the committed one."""
        slot = self.versions.setdefault(version, {})
        for p in pieces:
            slot.setdefault(p.header.owner, {})[p.header.name] = p

    def commit(self, version: int) -> list[StoredPiece]:
        """Make ``version`` the committed one and drop every other; returns the dropped pieces
        (their buffers can be reused)."""
        dropped = [
            h
            for v, by_owner in self.versions.items()
            if v != version
            for pieces in by_owner.values()
            for h in pieces.values()
        ]
        self.versions = {version: self.versions.get(version, {})}
        self.committed = version
        return dropped

    def keep_local(
        self, version: int, segment: SegmentView, into: np.ndarray | None = None
    ) -> None:
        """Remember this rank's own segment of ``version`` (one copy): in ``into`` if given
        (the spill's shared memory, see :meth:`.spill.writer.SpillWriter.buffer`), else
        reusing the old buffer."""
        if into is not None:
            self.local = into
        elif self.local is None or self.local.size != segment.nbytes:
            self.local = np.empty(segment.nbytes, dtype=np.uint8)
        segment.read_into(0, self.local)
        self.local_version = version

    def pieces(self, version: int, owner: int) -> dict[str, StoredPiece]:
        return self.versions.get(version, {}).get(owner, {})

    def nbytes(self) -> int:
        """Bytes held in pieces (all versions; a buffer held for several owners once)."""
        bufs = {
            id(h.data): h.data
            for v in self.versions.values()
            for o in v.values()
            for h in o.values()
        }
        return sum(b.nbytes for b in bufs.values())
