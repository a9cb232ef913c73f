"""Reference implementations the tests (and benchmarks) compare the library with: whole-segment
encodes, and GF(2^8) helpers the library itself does not need. Slow and simple on purpose; the
library computes the same bytes chunk by chunk, on several ranks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mpickpt import gf256
from mpickpt.errors import DecodeError
from mpickpt.gf256 import EXP, LOG, Matrix, mat_inv, mul
from mpickpt.schemes import Scheme
from mpickpt.schemes.base import Buffer
from mpickpt.schemes.xorset import chunk_size, holder
from mpickpt.segment import SegmentView

# -- per-owner schemes -------------------------------------------------------------------------


def encode(scheme: Scheme, segment: Buffer) -> dict[str, np.ndarray]:
    """All pieces of ``segment`` by name, built from whole subsegments with the scheme's own
    ``combine`` (the checkpoint stream builds them chunk by chunk)."""
    src = np.frombuffer(segment, dtype=np.uint8)
    size = scheme.piece_size(src.size)
    padded = np.zeros(size * scheme.subsegments, dtype=np.uint8)
    padded[: src.size] = src
    subs = padded.reshape(scheme.subsegments, size)
    out = {}
    for p in scheme.pieces():
        buf = scheme.combine(p, [subs[k] for k in p.sources])
        out[p.name] = buf.copy() if np.shares_memory(buf, padded) else buf
    return out


# -- xorset: a whole set at once (mpickpt.setstream runs it as a ring over the members) --------


def parity_sources(k: int, j: int) -> list[tuple[int, int]]:
    """``(member, chunk)`` pairs XORed into the parity chunk of member ``j``."""
    return [((j - d) % k, d - 1) for d in range(1, k)]


def _chunk(seg: np.ndarray, t: int, c: int) -> np.ndarray:
    """Chunk ``t`` of a segment padded with zeros to ``(k-1) * c`` bytes."""
    out = np.zeros(c, dtype=np.uint8)
    part = seg[t * c : (t + 1) * c]
    out[: part.size] = part
    return out


def encode_set(segments: Sequence[Buffer]) -> list[np.ndarray]:
    """The parity chunk of every member of a set, given the members' segments in set order."""
    segs = [np.frombuffer(s, dtype=np.uint8) for s in segments]
    k = len(segs)
    c = chunk_size([s.size for s in segs], k)
    out = []
    for j in range(k):
        p = np.zeros(c, dtype=np.uint8)
        for m, t in parity_sources(k, j):
            np.bitwise_xor(p, _chunk(segs[m], t, c), out=p)
        out.append(p)
    return out


def contribution(k: int, me: int, lost: int, segment: Buffer, parity: Buffer) -> np.ndarray:
    """What survivor ``me`` sends for the rebuild of member ``lost``: ``k - 1`` chunks, slot
    ``t`` for chunk ``t`` of the lost member (its parity chunk where it holds that chunk, else
    its own chunk in the same parity)."""
    seg = np.frombuffer(segment, dtype=np.uint8)
    p = np.frombuffer(parity, dtype=np.uint8)
    c = p.size
    out = np.empty((k - 1) * c, dtype=np.uint8)
    for t in range(k - 1):
        j = holder(k, lost, t)
        out[t * c : (t + 1) * c] = p if j == me else _chunk(seg, (j - me) % k - 1, c)
    return out


# -- GF(2^8) -----------------------------------------------------------------------------------


def div(a: int, b: int) -> int:
    """``a / b`` in GF(2^8), ``b != 0``."""
    return mul(a, gf256.inv(b))


def mul_table() -> np.ndarray:
    """The 256x256 multiplication table (uint8): ``T[a, b] = a * b``."""
    t = np.zeros((256, 256), dtype=np.uint8)
    for a in range(1, 256):
        for b in range(1, 256):
            t[a, b] = EXP[LOG[a] + LOG[b]]
    return t


def mat_mul(a: Matrix, b: Matrix) -> Matrix:
    """The matrix product ``a @ b`` over GF(2^8)."""
    out = []
    for row in a:
        acc = [0] * len(b[0])
        for x, brow in zip(row, b, strict=True):
            if x:
                for j, y in enumerate(brow):
                    acc[j] ^= mul(x, y)
        out.append(acc)
    return out


def decode_matrix(coding: Matrix, rows: Sequence[int]) -> Matrix:
    """How to get the ``group`` data symbols back from the pieces ``rows`` (``0..group-1``: the
    data pieces, ``group + i``: coding row ``i``): the inverse of those rows of the
    systematic generator. Raises :class:`DecodeError` if they are not ``group`` distinct rows.
    """
    group = len(coding[0]) if coding else len(rows)
    if len(rows) != group or len(set(rows)) != group:
        raise DecodeError(f"need {group} distinct pieces of a stripe, got rows {list(rows)}")
    gen = [[int(r == j) for j in range(group)] if r < group else coding[r - group] for r in rows]
    return mat_inv(gen)


# -- segments ----------------------------------------------------------------------------------


def contiguous(view: SegmentView) -> np.ndarray:
    """A segment's bytes as one array (a copy; the library streams them region by region)."""
    return view.read_into(0, np.empty(view.nbytes, dtype=np.uint8))
