"""``parity``: the patent's scheme (Figure 3). Subsegments in groups of ``group`` with an XOR
parity block per group, striped with rotation over ``backups`` backups."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..layout import Piece, parity_pieces
from .base import Scheme


class Parity(Scheme):
    """Tolerates the owner plus any one backup (RAID-5 like); stores ``(group+1)/group``."""

    scheme_id = "parity"

    def __init__(self, group: int = 3, backups: int = 4, subsegments: int | None = None) -> None:
        if group < 1:
            raise ConfigError(f"parity needs group >= 1, got {group}")
        if backups < group + 1:
            raise ConfigError(
                f"parity with group={group} needs backups >= group+1 = {group + 1} so that no "
                f"backup holds two pieces of one stripe; with backups={backups} a lost backup "
                f"could take two pieces of a stripe and only the owner alone would be covered "
                f"(tolerance 0). Use backups={group + 1}"
                + (f" or group={backups - 1}" if backups >= 2 else "")
            )
        self.group = group
        self.backups = backups
        # default: one stripe per backup, so every backup holds group+1 pieces
        self.subsegments = subsegments if subsegments is not None else group * backups
        if self.subsegments < group:
            raise ConfigError(
                f"parity needs subsegments >= group ({group}), got {self.subsegments}"
            )
        parity_pieces(self.subsegments, group, backups)  # validates

    def pieces(self) -> list[Piece]:
        return parity_pieces(self.subsegments, self.group, self.backups)

    @property
    def tolerance(self) -> int:
        return 1

    def within(self, backups: int) -> Scheme | None:
        if backups < 2:
            return None
        return Parity(group=min(self.group, backups - 1), backups=backups)

    def get_config(self) -> dict[str, Any]:
        return {
            "id": self.scheme_id,
            "group": self.group,
            "backups": self.backups,
            "subsegments": self.subsegments,
        }
