"""``stripe``: subsegments spread over the backups without parity (RAID-0 like)."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..layout import Piece, stripe_pieces
from .base import Scheme


class Stripe(Scheme):
    """Tolerates the owner alone (no backup may be lost); stores the segment once."""

    scheme_id = "stripe"

    def __init__(self, backups: int = 2, subsegments: int | None = None) -> None:
        if backups < 1:
            raise ConfigError(f"stripe needs backups >= 1, got {backups}")
        self.backups = backups
        self.subsegments = subsegments if subsegments is not None else backups
        if self.subsegments < backups:
            raise ConfigError(
                f"stripe with {self.subsegments} subsegments leaves backups idle; use "
                f"subsegments >= backups ({backups})"
            )

    def pieces(self) -> list[Piece]:
        return stripe_pieces(self.subsegments, self.backups)

    @property
    def tolerance(self) -> int:
        return 0

    def within(self, backups: int) -> Scheme | None:
        return Stripe(backups=min(self.backups, backups)) if backups >= 1 else None

    def get_config(self) -> dict[str, Any]:
        return {"id": self.scheme_id, "backups": self.backups, "subsegments": self.subsegments}
