"""``rs``: Reed-Solomon over GF(2^8). Stripes of ``group`` subsegments plus ``parity`` coding
pieces, placed with the patent's rotation; any ``group`` pieces of a stripe rebuild it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np

from .. import gf256
from ..errors import ConfigError, DecodeError
from ..layout import Piece, subsegment_size
from .base import Buffer, Scheme


def rs_pieces(subsegments: int, group: int, parity: int, backups: int) -> list[Piece]:
    """Piece ``j`` of stripe ``s`` (data ``0..group-1``, then coding pieces ``p<s>.<i>`` at
    ``j = group + i``) goes to backup ``(s + j) mod backups``, as the patent places parity."""
    pieces = []
    for s in range(subsegments // group):
        members = tuple(range(s * group, (s + 1) * group))
        for j, k in enumerate(members):
            pieces.append(Piece(f"d{k}", (k,), (s + j) % backups, s, j))
        for i in range(parity):
            j = group + i
            pieces.append(Piece(f"p{s}.{i}", members, (s + j) % backups, s, j))
    return pieces


class ReedSolomon(Scheme):
    """Tolerates the owner plus any ``parity`` backups (RAID-6 like for ``parity=2``); stores
    ``(group + parity) / group`` times the segment.

    The code is systematic: data pieces are the subsegments themselves, coding piece ``i`` of a
    stripe is ``sum_j C[i][j] * d_j`` over GF(2^8) with ``C`` from
    :func:`~mpickpt.gf256.coding_matrix` (its first row is all ones, so ``parity=1`` stores the
    very bytes of the ``parity`` scheme). Pieces are multiples of :data:`~mpickpt.gf256.UNIT`
    (4 KiB) bytes, the granule of the bit-matrix arithmetic; the transport's chunks are
    multiples of it too.
    """

    scheme_id = "rs"
    granule = gf256.UNIT

    def __init__(
        self,
        group: int = 4,
        parity: int = 2,
        backups: int | None = None,
        subsegments: int | None = None,
    ) -> None:
        if group < 1 or parity < 1:
            raise ConfigError(f"rs needs group >= 1 and parity >= 1, got {group} and {parity}")
        if group + parity > 256:
            raise ConfigError(f"rs over GF(2^8) needs group + parity <= 256, got {group + parity}")
        backups = group + parity if backups is None else backups
        if backups < group + parity:
            raise ConfigError(
                f"rs with group={group}, parity={parity} needs backups >= group+parity = "
                f"{group + parity} so that no backup holds two pieces of one stripe; with "
                f"backups={backups} losing {parity} backup(s) could take more than {parity} "
                f"pieces of a stripe. Use backups={group + parity}"
                + (f" or group={backups - parity}" if backups > parity else "")
            )
        self.group = group
        self.parity = parity
        self.backups = backups
        # default: one stripe per backup, so every backup holds group+parity pieces
        self.subsegments = subsegments if subsegments is not None else group * backups
        if self.subsegments < group or self.subsegments % group:
            raise ConfigError(
                f"rs needs subsegments to be a positive multiple of group ({group}), got "
                f"{self.subsegments}; use {max(group, -(-self.subsegments // group) * group)}"
            )

    @cached_property
    def matrix(self) -> gf256.Matrix:
        """The ``parity x group`` coding matrix."""
        return gf256.coding_matrix(self.group, self.parity)

    @cached_property
    def _schedules(self) -> list[gf256.Schedule]:
        return [gf256.schedule(row) for row in self.matrix]

    def pieces(self) -> list[Piece]:
        return rs_pieces(self.subsegments, self.group, self.parity, self.backups)

    def within(self, backups: int) -> Scheme | None:
        if backups < 2:
            return None
        parity = min(self.parity, backups - 1)
        return ReedSolomon(group=min(self.group, backups - parity), parity=parity)

    @property
    def tolerance(self) -> int:
        return self.parity

    def get_config(self) -> dict[str, Any]:
        return {
            "id": self.scheme_id,
            "group": self.group,
            "parity": self.parity,
            "backups": self.backups,
            "subsegments": self.subsegments,
        }

    def piece_size(self, nbytes: int) -> int:
        size = subsegment_size(nbytes, self.subsegments)
        return -(-size // gf256.UNIT) * gf256.UNIT

    def combine(
        self, piece: Piece, sources: Sequence[np.ndarray], out: np.ndarray | None = None
    ) -> np.ndarray:
        if piece.index < self.group:
            return sources[0]
        return gf256.combine(self._schedules[piece.index - self.group], sources, out=out)

    def _chosen(self, available: Iterable[str]) -> list[list[Piece]]:
        """For each stripe, the first ``group`` available pieces (data pieces first: they need
        no arithmetic). Raises :class:`DecodeError` naming the subsegments that cannot be
        rebuilt."""
        have = set(available)
        stripes: list[list[Piece]] = [[] for _ in range(self.subsegments // self.group)]
        for p in self.pieces():
            if p.name in have and len(stripes[p.stripe]) < self.group:
                stripes[p.stripe].append(p)
        short = [s for s, got in enumerate(stripes) if len(got) < self.group]
        if short:
            lost = [
                k
                for s in short
                for k in range(s * self.group, (s + 1) * self.group)
                if f"d{k}" not in have
            ]
            names = sorted(p.name for p in self.pieces() if p.name in have)
            raise DecodeError(
                f"subsegments {lost} cannot be rebuilt from pieces {names}: stripe(s) {short} "
                f"keep fewer than group={self.group} pieces"
            )
        return stripes

    def needed(self, available: Iterable[str]) -> list[str]:
        return sorted(p.name for got in self._chosen(available) for p in got)

    def decode(self, available: Mapping[str, Buffer], nbytes: int) -> np.ndarray:
        size = self.piece_size(nbytes)
        padded = np.empty(size * self.subsegments, dtype=np.uint8)
        subs = padded.reshape(self.subsegments, size)
        for s, got in enumerate(self._chosen(available.keys())):
            base = s * self.group
            coding: list[tuple[int, np.ndarray]] = []
            for p in got:
                buf = np.frombuffer(available[p.name], dtype=np.uint8, count=size)
                if p.index < self.group:
                    subs[base + p.index] = buf
                else:
                    coding.append((p.index - self.group, buf))
            known = [p.index for p in got if p.index < self.group]
            missing = [j for j in range(self.group) if j not in known]
            if missing:
                self._solve(coding, [subs[base + j] for j in known], known, missing, subs[base:])
        return padded[:nbytes]

    def _solve(
        self,
        coding: list[tuple[int, np.ndarray]],
        data: list[np.ndarray],
        known: list[int],
        missing: list[int],
        out: np.ndarray,
    ) -> None:
        """Rebuild the ``missing`` data pieces of a stripe into ``out[j]`` from its ``coding``
        pieces ``(row, bytes)`` (as many as are missing) and its ``known`` data pieces.

        Syndromes first: ``S_i = p_i + sum_known C[i][j] d_j`` removes the known data with
        the cheap coefficients of ``C``; then the missing pieces solve the small system
        ``S = C[rows][missing] d_missing``, whose inverse has costly (arbitrary) coefficients.
        With the all-ones row among them, the last missing piece is instead ``S_0`` plus the
        others: plain XORs.
        """
        rows = [i for i, _ in coding]
        # with the all-ones row, its syndrome is built right where the last missing piece goes
        by_xor = missing[-1] if 0 in rows else None
        syndromes = [
            gf256.combine(
                gf256.schedule([1] + [self.matrix[i][j] for j in known]),
                [buf, *data],
                out=out[by_xor] if i == 0 and by_xor is not None else None,
            )
            for i, buf in coding
        ]
        inverse = gf256.mat_inv([[self.matrix[i][j] for j in missing] for i in rows])
        for t, j in enumerate(missing):
            if j != by_xor:
                gf256.combine(gf256.schedule(inverse[t]), syndromes, out=out[j])
        if by_xor is not None:  # d_last = S_0 + the other missing pieces, in place
            others = [out[j] for j in missing if j != by_xor]
            if others:
                ones = gf256.schedule([1] * (1 + len(others)))
                gf256.combine(ones, [out[by_xor], *others], out=out[by_xor])
