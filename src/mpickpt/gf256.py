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

    * ``parity == 2``: the second row is the powers ``2^j``, ``group`` distinct non-zero
      elements (2 generates the field). That is MDS: losing data pieces ``i, j`` leaves
      ``det [[1, 1], [a_i, a_j]] = a_i + a_j != 0``; losing one data piece and one coding
      piece leaves a non-zero coefficient. Small powers of 2 are computed by Horner's rule,
      where a doubling costs 3 packet XORs (:func:`_powers_block`).
    * ``parity >= 3``: a Cauchy matrix ``1 / (x_i + y_j)`` (``x_i = i``, ``y_j = parity + j``,
      all distinct) has only invertible square submatrices, and scaling rows or columns by
      non-zero constants keeps that. Columns are scaled so that the first row is all ones,
      every further row by the constant that leaves it the fewest ones in its bit matrix.
    """
    if group < 1 or parity < 0 or group + parity > 256:
        raise ValueError(f"need group >= 1, parity >= 0, group + parity <= 256: {group}, {parity}")
    if parity <= 2:
        return [[1] * group, [EXP[j] for j in range(group)]][:parity]
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
    # instead, by Horner's rule: ``scale * sum_i 2^powers[i] * source_i`` (-1: coefficient 0)
    powers: tuple[int, ...] = ()
    scale: int = 1

    @property
    def cost(self) -> int:
        """Packet XORs per unit (a whole-block XOR counts 8, a doubling 3)."""
        if self.powers:
            horner = 8 * sum(e >= 0 for e in self.powers) + 3 * max(self.powers)
            return horner + (8 + ONES[self.scale] if self.scale != 1 else 0)
        return 8 * len(self.whole) + sum(map(len, self.packets))


def schedule(coeffs: Sequence[int], horner: bool = True) -> Schedule:
    """The XORs that compute ``sum_i coeffs[i] * source_i`` (see :class:`Schedule`): by
    Horner's rule when that is cheaper (coefficients that are small powers of 2 times one
    common factor, such as rs's second coding row, its syndromes and the rows of a two-loss
    decode), else by the coefficients' bit matrices."""
    best = _bit_schedule(coeffs)
    for scale in sorted({c for c in coeffs if c}) if horner else []:
        powers = tuple((LOG[c] - LOG[scale]) % ORDER if c else -1 for c in coeffs)
        candidate = Schedule((), (), powers, scale)
        if candidate.cost < best.cost:
            best = candidate
    return best


def _bit_schedule(coeffs: Sequence[int]) -> Schedule:
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
    if sched.powers:
        into = out if sched.scale == 1 else np.empty_like(out)
        _powers_block(sched.powers, [_units(s) for s in sources], _units(into))
        if sched.scale != 1:
            _combine_block(_bit_schedule([sched.scale]), [into], out)
        return
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


# -- sum_i 2^i * source_i by Horner's rule: ((s_{n-1} * 2 + s_{n-2}) * 2 + ...) * 2 + s_0 --------
#
# Doubling a unit moves packet r to r + 1 (packet 7 to 0) and XORs the old packet 7 into
# packets 2, 3 and 4 (x^8 = x^4 + x^3 + x^2 + 1). The move is not done: the accumulator is
# kept rotated, its packet r at position (r + k) mod 8, and each doubling only lowers k and
# does the three XORs. Sources are XORed in at the current rotation (two slices), and k starts
# at n - 1 so that it ends at 0: the output in order. About 11 numpy calls per 3 sources
# instead of the 30 packet XORs of the bit matrices of 1, 2, 4.


def _powers_block(powers: Sequence[int], sources: Sequence[np.ndarray], out: np.ndarray) -> None:
    """``out = sum_i 2^powers[i] * sources[i]`` on units (see :func:`_units`), the highest
    power first; a power of -1 leaves its source out."""
    terms = sorted(((e, i) for i, e in enumerate(powers) if e >= 0), reverse=True)
    e, first = terms[0]
    k = e % 8
    out[:, k:] = sources[first][:, : 8 - k]
    out[:, :k] = sources[first][:, 8 - k :]
    for e_next, i in [*terms[1:], (0, -1)]:
        for _ in range(e - e_next):
            k = (k - 1) % 8
            _double_rotated(out, k)
        e = e_next
        if i >= 0:
            _xor_rotated(out, sources[i], k)


def _double_rotated(acc: np.ndarray, k: int) -> None:
    """The three XORs of a doubling whose move made rotation ``k``: packets 2, 3, 4 ^= 0."""
    top = acc[:, k : k + 1]  # packet 0 now: the old packet 7
    a = k + 2
    if a + 3 <= 8:
        np.bitwise_xor(acc[:, a : a + 3], top, out=acc[:, a : a + 3])
        return
    for r in (2, 3, 4):
        p = (k + r) % 8
        np.bitwise_xor(acc[:, p : p + 1], top, out=acc[:, p : p + 1])


def _xor_rotated(acc: np.ndarray, src: np.ndarray, k: int) -> None:
    """``acc ^= src``, ``acc`` at rotation ``k`` and ``src`` in order."""
    if k == 0:
        np.bitwise_xor(acc, src, out=acc)
        return
    np.bitwise_xor(acc[:, k:], src[:, : 8 - k], out=acc[:, k:])
    np.bitwise_xor(acc[:, :k], src[:, 8 - k :], out=acc[:, :k])
