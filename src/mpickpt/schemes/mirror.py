"""``mirror``: ``copies`` full copies of the segment on as many backups (RAID-1 like)."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..layout import Piece, mirror_pieces
from .base import Scheme


class Mirror(Scheme):
    """Tolerates the owner plus ``copies - 1`` backups; stores ``copies`` times the segment."""

    scheme_id = "mirror"

    def __init__(self, copies: int = 1) -> None:
        if copies < 1:
            raise ConfigError(f"mirror needs copies >= 1, got {copies}")
        self.copies = copies
        self.backups = copies
        self.subsegments = 1

    def pieces(self) -> list[Piece]:
        return mirror_pieces(self.copies)

    @property
    def tolerance(self) -> int:
        return self.copies - 1

    def within(self, backups: int) -> Scheme | None:
        return Mirror(copies=min(self.copies, backups)) if backups >= 1 else None

    def get_config(self) -> dict[str, Any]:
        return {"id": self.scheme_id, "copies": self.copies}
