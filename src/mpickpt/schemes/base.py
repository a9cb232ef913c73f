"""The scheme interface: how a segment becomes pieces on backups, and back."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError
from ..layout import ALIGN, Piece, by_backup, decode_plan, placement_domains, subsegment_size

Buffer = bytes | bytearray | memoryview | np.ndarray


def xor_into(out: np.ndarray, *srcs: Buffer) -> np.ndarray:
    """``out ^= src`` for every source, on 64-bit words (sizes are multiples of 8)."""
    o = out.view(np.uint64)
    for s in srcs:
        np.bitwise_xor(o, np.frombuffer(s, dtype=np.uint64, count=o.size), out=o)
    return out


def describe(scheme: Scheme) -> str:
    """``parity(group=2, backups=3)``: the scheme's id and parameters as a user passes them
    (``subsegments`` only when it is not the default)."""
    config = scheme.get_config()
    default = type(scheme)(**{k: v for k, v in config.items() if k not in ("id", "subsegments")})
    params = {
        k: v
        for k, v in config.items()
        if k != "id" and (k != "subsegments" or v != default.get_config()[k])
    }
    return f"{scheme.scheme_id}({', '.join(f'{k}={v}' for k, v in params.items())})"


def _mirror(copies: int) -> Scheme:
    from .mirror import Mirror  # mirror.py imports this module

    return Mirror(copies=copies)


class Scheme(ABC):
    """A redundancy scheme: a codec from one segment to pieces placed on ``backups`` backups.

    Subclasses define the pieces (pure placement math) and their tolerance. Encoding and
    decoding default to XOR pieces (a piece is the XOR of its sources, decoded by peeling); a
    scheme with other arithmetic overrides :meth:`combine`, :meth:`needed` and :meth:`decode`.
    """

    scheme_id: ClassVar[str]
    # pieces are a multiple of it, and combine() works on chunks that are a multiple of it
    granule: ClassVar[int] = ALIGN
    # a piece mixes several owners' segments (xorset): the holders' own committed segments
    # take part in a rebuild, and the checkpoint runs over sets, not owner -> backups
    cross_owner: ClassVar[bool] = False
    backups: int
    subsegments: int

    @abstractmethod
    def pieces(self) -> list[Piece]:
        """Every piece of one segment, with its backup."""

    @property
    @abstractmethod
    def tolerance(self) -> int:
        """How many backups may be lost together with the owner."""

    @property
    def tolerates(self) -> str:
        """The tolerance in words, for error messages."""
        return f"owner + {self.tolerance} backup(s)"

    @abstractmethod
    def get_config(self) -> dict[str, Any]:
        """JSON-safe configuration; ``from_config(get_config())`` gives an equal scheme."""

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Scheme:
        cfg = dict(config)
        if cfg.pop("id", cls.scheme_id) != cls.scheme_id:
            raise ConfigError(f"config {config!r} is not for scheme {cls.scheme_id!r}")
        try:
            return cls(**cfg)
        except TypeError as e:  # an unknown or missing parameter
            raise ConfigError(f"bad parameters for scheme {cls.scheme_id!r}: {e}") from None

    @property
    def overhead(self) -> float:
        """Bytes stored on backups per byte of segment (ignoring padding)."""
        return len(self.pieces()) / self.subsegments

    @property
    def min_workers(self) -> int:
        """The fewest workers it can protect: an owner and its backups are distinct ranks (a
        single worker keeps its local copy only)."""
        return self.backups + 1

    def within(self, backups: int) -> Scheme | None:
        """The closest scheme of this kind with at most ``backups`` backups, ``None`` if there
        is none: the advice of :meth:`check_workers`."""
        return None

    def check_workers(self, n: int) -> None:
        """:class:`ConfigError` if ``n`` workers (2 or more) are too few for this scheme; its
        advice (more workers, or a scheme that fits ``n``) works when followed."""
        if not 1 < n < self.min_workers:
            return
        fits = self.within(n - 1) or _mirror(n - 1)
        raise ConfigError(
            f"{describe(self)} needs {self.min_workers} or more workers (an owner and its "
            f"{self.backups} backups on distinct ranks), but the job has {n}; launch "
            f"{self.min_workers} or more workers, or use {describe(fits)}"
        )

    def layout_domains(self, domains: Sequence[int]) -> list[int]:
        """The failure domains this scheme places pieces over for ranks in ``domains``: those,
        or one per rank when they are too few or too uneven to keep its promise (see
        :func:`~mpickpt.layout.placement_domains`). :class:`ConfigError` if even that fails."""
        self.check_workers(len(domains))
        return placement_domains(domains, self.backups)

    def held(self) -> list[list[Piece]]:
        """The pieces each backup holds."""
        return by_backup(self.pieces(), self.backups)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Scheme) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.get_config().items())))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "id")
        return f"{type(self).__name__}({args})"

    # -- pieces and their bytes (the checkpoint stream builds them chunk by chunk) --

    def piece_size(self, nbytes: int) -> int:
        """Bytes of every piece (and subsegment) of an ``nbytes`` segment."""
        return subsegment_size(nbytes, self.subsegments)

    def combine(
        self, piece: Piece, sources: Sequence[np.ndarray], out: np.ndarray | None = None
    ) -> np.ndarray:
        """Bytes ``[a, a+n)`` of ``piece`` from bytes ``[a, a+n)`` of its source subsegments
        (uint8, in ``piece.sources`` order): here their XOR, written into ``out`` if given. A
        piece with one source is that source itself, returned without a copy. The checkpoint
        stream builds every block of a piece with this."""
        if len(sources) == 1:
            return sources[0]
        if out is None:
            out = np.empty(sources[0].size, dtype=np.uint8)
        if out.size % 8 == 0:  # on 64-bit words: fewer, wider operations
            o = out.view(np.uint64)
            np.bitwise_xor(sources[0].view(np.uint64), sources[1].view(np.uint64), out=o)
            for c in sources[2:]:
                np.bitwise_xor(o, c.view(np.uint64), out=o)
            return out
        np.bitwise_xor(sources[0], sources[1], out=out)
        for c in sources[2:]:
            np.bitwise_xor(out, c, out=out)
        return out

    def needed(self, available: Iterable[str]) -> list[str]:
        """The names of the ``available`` pieces that suffice to rebuild the segment (the ones
        a recovery fetches). Raises :class:`~mpickpt.errors.DecodeError` if none do."""
        steps = decode_plan(self.pieces(), self.subsegments, available)
        return sorted({piece.name for _, piece, _ in steps})

    def decode(self, available: Mapping[str, Buffer], nbytes: int) -> np.ndarray:
        """Rebuild an ``nbytes`` segment from the ``available`` pieces.

        Raises :class:`~mpickpt.errors.DecodeError` when they are not enough.
        """
        size = self.piece_size(nbytes)
        steps = decode_plan(self.pieces(), self.subsegments, available.keys())
        padded = np.empty(size * self.subsegments, dtype=np.uint8)
        subs = padded.reshape(self.subsegments, size)
        for k, piece, others in steps:
            subs[k] = np.frombuffer(available[piece.name], dtype=np.uint8, count=size)
            xor_into(subs[k], *(subs[o] for o in others))
        return padded[:nbytes]
