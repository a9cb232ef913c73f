"""Piece checksums: 64-bit XXH3 from the maintained ``xxhash`` library."""

from __future__ import annotations

from typing import Any

import xxhash


def checksum(*buffers: Any) -> int:
    """XXH3-64 of the concatenation of ``buffers``."""
    h = xxhash.xxh3_64()
    for b in buffers:
        h.update(b)
    return int(h.intdigest())


def hasher() -> Any:
    """A streaming XXH3-64 hasher (``update``, ``intdigest``)."""
    return xxhash.xxh3_64()
