"""Arithmetic in GF(2^8) and the matrices of a systematic Reed-Solomon code.

Pure math, no MPI. Elements are ints ``0..255``; addition is XOR; multiplication is modulo
the polynomial ``x^8 + x^4 + x^3 + x^2 + 1`` (0x11D), whose root 2 generates the field.

Bulk data is not multiplied byte by byte: multiplication by a constant ``c`` is a linear map
over GF(2), an 8x8 bit matrix (:func:`bitmatrix`). A block of data is cut into units of 8
*packets*, packet ``b`` standing for bit ``b`` of every symbol; ``c`` times the block is then
packet ``r`` = XOR of the packets ``b`` where the bit matrix has a one (Cauchy Reed-Solomon
in bit-matrix form). Only XORs of whole packets remain, which numpy does at memory speed,
whereas a table lookup per byte runs several times slower (``benchmarks/bench_gf.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import DecodeError

POLY = 0x11D
ORDER = 255  # of the multiplicative group

EXP = [0] * (2 * ORDER)  # EXP[i] = 2^i, doubled so that EXP[LOG[a] + LOG[b]] needs no modulo
LOG = [0] * 256  # LOG[0] is unused: 0 has no logarithm
_x = 1
for _i in range(ORDER):
    EXP[_i] = EXP[_i + ORDER] = _x
    LOG[_x] = _i
    _x <<= 1
    if _x & 0x100:
        _x ^= POLY
del _x, _i

Matrix = list[list[int]]


def mul(a: int, b: int) -> int:
    """``a * b`` in GF(2^8)."""
    if a == 0 or b == 0:
        return 0
    return EXP[LOG[a] + LOG[b]]


def inv(a: int) -> int:
    """The multiplicative inverse of ``a != 0``."""
    if a == 0:
        raise ZeroDivisionError("0 has no inverse in GF(2^8)")
    return EXP[ORDER - LOG[a]]


def mat_inv(a: Matrix) -> Matrix:
    """The inverse of the square matrix ``a`` (Gauss-Jordan elimination).

    Raises :class:`~mpickpt.errors.DecodeError` if ``a`` is singular.
    """
    n = len(a)
    work = [list(row) + [int(i == j) for j in range(n)] for i, row in enumerate(a)]
    for col in range(n):
        pivot = next((r for r in range(col, n) if work[r][col]), None)
        if pivot is None:
            raise DecodeError(f"singular {n}x{n} matrix over GF(2^8)")
        work[col], work[pivot] = work[pivot], work[col]
        scale = inv(work[col][col])
        work[col] = [mul(scale, x) for x in work[col]]
        for r in range(n):
            f = work[r][col]
            if r != col and f:
                work[r] = [x ^ mul(f, y) for x, y in zip(work[r], work[col], strict=True)]
    return [row[n:] for row in work]


def bitmatrix(c: int) -> list[list[int]]:
    """The 8x8 bit matrix of ``x -> c * x``: ``M[r][b]`` is bit ``r`` of ``c * 2^b``."""
    cols = [mul(c, 1 << b) for b in range(8)]
    return [[(cols[b] >> r) & 1 for b in range(8)] for r in range(8)]


def ones(c: int) -> int:
    """How many ones the bit matrix of ``c`` has: the packet XORs that multiplying by ``c``
    costs per unit."""
    return sum(map(sum, bitmatrix(c)))


def coding_matrix(group: int, parity: int) -> Matrix:
    """The ``parity x group`` coding matrix of a systematic MDS code: with the identity on top,
    every ``group`` of its ``group + parity`` rows form an invertible matrix, so any ``group``
    pieces of a stripe decode. The first row is all ones: the first coding piece is the plain
    XOR parity of the ``parity`` scheme. The other coefficients are chosen cheap to encode.

    * ``parity == 2``: the second row is ``group`` distinct non-zero elements, those with the
      fewest ones in their bit matrix (1, 2, 1/2, 4, ...). That is MDS: losing data pieces
      ``i, j`` leaves ``det [[1, 1], [a_i, a_j]] = a_i + a_j != 0``; losing one data piece and
      one coding piece leaves a non-zero coefficient.
    * ``parity >= 3``: a Cauchy matrix ``1 / (x_i + y_j)`` (``x_i = i``, ``y_j = parity + j``,
      all distinct) has only invertible square submatrices, and scaling rows or columns by
      non-zero constants keeps that. Columns are scaled so that the first row is all ones,
      every further row by the constant that leaves it the fewest ones.
    """
    if group < 1 or parity < 0 or group + parity > 256:
        raise ValueError(f"need group >= 1, parity >= 0, group + parity <= 256: {group}, {parity}")
    if parity <= 2:
        cheap = sorted(range(1, 256), key=lambda c: (ONES[c], c))
        return [[1] * group, cheap[:group]][:parity]
    m = [[inv(i ^ (parity + j)) for j in range(group)] for i in range(parity)]
    col_scale = [inv(x) for x in m[0]]
    m = [[mul(x, s) for x, s in zip(row, col_scale, strict=True)] for row in m]
    for i in range(1, parity):
        row = m[i]
        best = min(range(1, 256), key=lambda s: (sum(ONES[mul(s, x)] for x in row), s))
        m[i] = [mul(best, x) for x in row]
    return m


ONES = [ones(c) for c in range(256)]


# -- bulk data: linear combinations of blocks, in bit-matrix form ----------------------------------

PACKET = 512  # bytes per packet; a unit of 8 packets (4 KiB) is the granule of every block
UNIT = 8 * PACKET
BLOCK = 64 * UNIT  # combine works block by block (256 KiB per source), so operands stay in cache


@dataclass(frozen=True)
class Schedule:
    """How to compute ``sum_i coeffs[i] * source_i``: the sources with coefficient 1 are XORed
    whole (contiguous, fastest); for the others, ``packets[r]`` lists the ``(source, packet)``
    pairs XORed into output packet ``r``."""

    whole: tuple[int, ...]
    packets: tuple[tuple[tuple[int, int], ...], ...]

    @property
    def cost(self) -> int:
        """Packet XORs per unit (a whole-block XOR counts 8)."""
        return 8 * len(self.whole) + sum(map(len, self.packets))


def schedule(coeffs: Sequence[int]) -> Schedule:
    """The XORs that compute ``sum_i coeffs[i] * source_i`` (see :class:`Schedule`)."""
    whole = tuple(i for i, c in enumerate(coeffs) if c == 1)
    packets: list[list[tuple[int, int]]] = [[] for _ in range(8)]
    for i, c in enumerate(coeffs):
        if c > 1:
            m = bitmatrix(c)
            for r in range(8):
                packets[r] += [(i, b) for b in range(8) if m[r][b]]
    return Schedule(whole, tuple(map(tuple, packets)))


def _units(buf: np.ndarray) -> np.ndarray:
    return buf.view(np.uint64).reshape(-1, 8, PACKET // 8)


def combine(
    sched: Schedule, sources: Sequence[np.ndarray], out: np.ndarray | None = None
) -> np.ndarray:
    """Apply ``sched`` to equal-sized contiguous uint8 ``sources`` (a multiple of :data:`UNIT`
    bytes each): their linear combination, in ``out`` (contiguous) or in a new array."""
    n = sources[0].size
    if n % UNIT:
        raise ValueError(f"blocks of {n} bytes are not a multiple of {UNIT} bytes")
    if out is None:
        out = np.empty(n, dtype=np.uint8)
    for a in range(0, n, BLOCK):
        _combine_block(sched, [s[a : a + BLOCK] for s in sources], out[a : a + BLOCK])
    return out


def _combine_block(sched: Schedule, sources: Sequence[np.ndarray], out: np.ndarray) -> None:
    o = out.view(np.uint64)
    whole = [sources[i].view(np.uint64) for i in sched.whole]
    if len(whole) >= 2:
        np.bitwise_xor(whole[0], whole[1], out=o)
    elif whole:
        o[:] = whole[0]
    else:
        o[:] = 0
    for w in whole[2:]:
        np.bitwise_xor(o, w, out=o)
    ou = _units(out)
    src = [_units(s) for s in sources]
    for r, terms in enumerate(sched.packets):
        dst = ou[:, r]
        for i, b in terms:
            np.bitwise_xor(dst, src[i][:, b], out=dst)
