"""GF(2^8) arithmetic, the coding matrices and the bit-matrix block arithmetic, alone.

References are computed independently here: multiplication by shift-and-add with reduction
(not the log tables), and block products symbol by symbol after unpacking the bits.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

import reference
from mpickpt import DecodeError, gf256


def slow_mul(a: int, b: int) -> int:
    """Carry-less multiplication, reduced modulo 0x11D bit by bit."""
    out = 0
    while b:
        if b & 1:
            out ^= a
        b >>= 1
        a <<= 1
        if a & 0x100:
            a ^= 0x11D
    return out


def test_mul_matches_shift_and_add_everywhere():
    table = reference.mul_table()
    for a in range(256):
        for b in range(256):
            assert gf256.mul(a, b) == slow_mul(a, b) == table[a, b]


def test_field_laws():
    for a in range(1, 256):
        assert gf256.mul(a, gf256.inv(a)) == 1
        assert reference.div(a, a) == 1
    for a, b, c in np.random.default_rng(0).integers(0, 256, (500, 3)).tolist():
        assert gf256.mul(a, b ^ c) == gf256.mul(a, b) ^ gf256.mul(a, c)
        assert gf256.mul(gf256.mul(a, b), c) == gf256.mul(a, gf256.mul(b, c))
    with pytest.raises(ZeroDivisionError):
        gf256.inv(0)
    assert len(set(gf256.EXP[:255])) == 255  # 2 generates the multiplicative group


def test_bitmatrix_is_multiplication():
    for c in range(256):
        m = gf256.bitmatrix(c)
        for x in range(256):
            bits = [sum(m[r][b] & (x >> b) for b in range(8)) & 1 for r in range(8)]
            assert sum(bit << r for r, bit in enumerate(bits)) == gf256.mul(c, x)
    assert gf256.ones(1) == 8


def test_mat_inv():
    rng = np.random.default_rng(1)
    for n in (1, 2, 3, 5, 8):
        a = rng.integers(0, 256, (n, n)).tolist()
        try:
            b = gf256.mat_inv(a)
        except DecodeError:
            continue  # singular: rare
        ident = [[int(i == j) for j in range(n)] for i in range(n)]
        assert reference.mat_mul(a, b) == ident
        assert reference.mat_mul(b, a) == ident
    with pytest.raises(DecodeError, match="singular"):
        gf256.mat_inv([[1, 2], [2, 4]])


@pytest.mark.parametrize(
    ("group", "parity"), [(1, 1), (3, 1), (1, 2), (4, 2), (10, 2), (2, 3), (4, 3), (5, 4), (3, 6)]
)
def test_every_group_rows_of_the_generator_are_invertible(group, parity):
    """The code is MDS: any ``group`` of the ``group + parity`` pieces of a stripe decode."""
    coding = gf256.coding_matrix(group, parity)
    assert len(coding) == parity and all(len(row) == group for row in coding)
    assert coding[0] == [1] * group  # the first coding piece is the XOR parity
    gen = [[int(i == j) for j in range(group)] for i in range(group)] + coding
    for rows in combinations(range(group + parity), group):
        inverse = reference.decode_matrix(coding, rows)
        assert reference.mat_mul(inverse, [gen[r] for r in rows]) == gen[:group]


def test_decode_matrix_needs_group_distinct_rows():
    coding = gf256.coding_matrix(3, 2)
    with pytest.raises(DecodeError, match="need 3 distinct"):
        reference.decode_matrix(coding, [0, 1])
    with pytest.raises(DecodeError, match="need 3 distinct"):
        reference.decode_matrix(coding, [0, 1, 1])


def test_coding_matrix_second_row_is_cheap_and_distinct():
    row = gf256.coding_matrix(6, 2)[1]
    assert len(set(row)) == 6 and 0 not in row
    assert row[:3] == [1, 2, 142]  # 142 = 1/2: 11 ones, as few as 2 has
    assert gf256.mul(2, 142) == 1


def symbols(block: np.ndarray) -> np.ndarray:
    """The GF(2^8) symbols a block stands for: bit ``b`` of symbol ``(u, s)`` is bit ``s`` of
    packet ``b`` of unit ``u`` (numpy's little bit order)."""
    bits = np.unpackbits(block.reshape(-1, 8, gf256.PACKET), axis=2, bitorder="little")
    return np.einsum("ubs,b->us", bits.astype(np.int64), 1 << np.arange(8)).astype(np.uint8)


@pytest.mark.parametrize("nunits", [1, 3, gf256.BLOCK // gf256.UNIT + 5])
def test_combine_is_the_linear_combination_of_symbols(nunits):
    rng = np.random.default_rng(nunits)
    table = reference.mul_table()
    n = nunits * gf256.UNIT
    sources = [rng.integers(0, 256, n, dtype=np.uint8) for _ in range(4)]
    for coeffs in ([1, 1, 1, 1], [1, 2, 142, 4], [0, 7, 0, 255], [0, 0, 0, 0], [1, 0, 0, 0]):
        expected = np.zeros((nunits, 8 * gf256.PACKET), dtype=np.uint8)
        for c, s in zip(coeffs, sources, strict=True):
            expected ^= table[c][symbols(s)]
        got = gf256.combine(gf256.schedule(coeffs), sources)
        assert np.array_equal(symbols(got), expected), coeffs
        out = np.full(n, 0xAB, dtype=np.uint8)  # into a dirty buffer
        assert gf256.combine(gf256.schedule(coeffs), sources, out=out) is out
        assert np.array_equal(out, got)


def test_combine_rejects_partial_units():
    with pytest.raises(ValueError, match="multiple of 4096"):
        gf256.combine(gf256.schedule([1, 2]), [np.zeros(100, np.uint8)] * 2)


def test_schedule_cost_counts_packet_xors():
    assert gf256.schedule([1, 1, 1]).cost == 24
    assert gf256.schedule([1, 2, 142, 4]).cost == 8 + 11 + 11 + 14
    assert gf256.schedule([0, 3]).cost == gf256.ones(3)
