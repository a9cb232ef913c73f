"""GF(2^8) arithmetic for the ``rs`` scheme: encode and decode speed per core, by method.

One process, one thread (numpy does not thread these loops). A segment of ``--mb`` MB is cut
into ``group`` data blocks; *encode* computes the ``parity`` coding blocks, *decode* rebuilds
the segment after losing as many data blocks as there are coding blocks (the worst case: the
most arithmetic). GB/s are segment bytes per second of wall time and, in parentheses, per
second of this process's CPU time (per core: the steadier figure on a shared machine); every
time is also given as a multiple of a plain memcpy of the segment measured in the same run.

Methods:

* ``bitmatrix``: what ``rs`` uses (``mpickpt.gf256``): multiplication by a constant as an 8x8
  bit matrix, applied as XORs of 512-byte packets, chunk by chunk as the transport does
  (``Scheme.combine`` on 4 MiB chunks); decode is ``ReedSolomon.decode``.
* ``table``: byte symbols, a 256x256 multiplication table and ``np.take`` per coefficient
  (1 MiB sub-chunks, so that temporaries stay small), coefficient 1 as a plain XOR.
* ``zfec``: the ``zfec`` package (C, Rizzo's Vandermonde code), if installed.

Usage: ``python benchmarks/bench_gf.py [--mb 64] [--repeats 3] [--configs 4+2,8+2,4+3,3+1]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mpickpt import ReedSolomon, gf256

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import reference  # noqa: E402 - tests/reference.py: the whole-segment encode, GF(2^8) tables

CHUNK = 4 << 20  # the transport's chunk
SUB = 1 << 20  # the table method's sub-chunk


def timed(f: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall and CPU time of ``f()`` over ``repeats`` runs, after one warm-up run. On a
    shared machine the CPU time (this process's own seconds on a core) is the steadier one."""
    f()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        f()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def bitmatrix_case(scheme: ReedSolomon, seg: np.ndarray) -> tuple[Callable[[], object], ...]:
    size = scheme.piece_size(seg.size)
    subs = seg.reshape(scheme.subsegments, size)
    coding = [p for p in scheme.pieces() if p.index >= scheme.group]

    def encode() -> None:
        for p in coding:
            for a in range(0, size, CHUNK):
                scheme.combine(p, [subs[k][a : a + CHUNK] for k in p.sources])

    pieces = reference.encode(scheme, seg)
    lost = {p.name for p in scheme.pieces() if p.index < scheme.parity}  # first data pieces
    available = {n: b for n, b in pieces.items() if n not in lost}

    def decode() -> None:
        scheme.decode(available, seg.size)

    return encode, decode


def table_case(group: int, parity: int, seg: np.ndarray) -> tuple[Callable[[], object], ...]:
    table = reference.mul_table()
    coding = gf256.coding_matrix(group, parity)
    blocks = seg.reshape(group, -1)
    size = blocks.shape[1]

    def combine(coeffs: list[int], srcs: list[np.ndarray], out: np.ndarray) -> None:
        tmp = np.empty(SUB, np.uint8)
        for a in range(0, size, SUB):
            o = out[a : a + SUB]
            o[:] = 0
            for c, s in zip(coeffs, srcs, strict=True):
                if c == 1:
                    np.bitwise_xor(o, s[a : a + SUB], out=o)
                elif c:
                    t = tmp[: o.size]
                    np.take(table[c], s[a : a + SUB], out=t)
                    np.bitwise_xor(o, t, out=o)

    outs = [np.empty(size, np.uint8) for _ in range(parity)]

    def encode() -> None:
        for row, out in zip(coding, outs, strict=True):
            combine(row, list(blocks), out)

    encode()
    rows = list(range(parity, group + parity))  # the first `parity` data blocks are lost
    have = [blocks[r] if r < group else outs[r - group] for r in rows]
    inverse = reference.decode_matrix(coding, rows)
    rebuilt = np.empty((group, size), np.uint8)

    def decode() -> None:
        for j in range(group):
            if j in rows:
                rebuilt[j] = blocks[j]
            else:
                combine(inverse[j], have, rebuilt[j])

    decode()
    assert np.array_equal(rebuilt, blocks), "table decode is wrong"
    return encode, decode


def zfec_case(group: int, parity: int, seg: np.ndarray) -> tuple[Callable[[], object], ...] | None:
    try:
        import zfec  # type: ignore[import-not-found]
    except ImportError:
        return None
    n = group + parity
    blocks = tuple(bytes(b) for b in seg.reshape(group, -1))
    enc, dec = zfec.Encoder(group, n), zfec.Decoder(group, n)
    nums = tuple(range(parity, n))
    coded = enc.encode(blocks, tuple(range(group, n)))
    have = [blocks[i] if i < group else coded[i - group] for i in nums]
    assert list(dec.decode(have, list(nums))) == list(blocks), "zfec decode is wrong"
    return (
        lambda: enc.encode(blocks, tuple(range(group, n))),
        lambda: dec.decode(have, list(nums)),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=64, help="segment size in MB")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--configs", default="4+2,8+2,4+3,3+1", help="group+parity,...")
    a = ap.parse_args()

    rng = np.random.default_rng(0)
    nbytes = a.mb << 20
    src = rng.integers(0, 256, nbytes, dtype=np.uint8)
    dst = np.empty_like(src)
    memcpy, memcpy_cpu = timed(lambda: np.copyto(dst, src), a.repeats)
    xor, xor_cpu = timed(lambda: np.bitwise_xor(dst, src, out=dst), a.repeats)
    gbs = nbytes / 1e9
    print(f"segment {a.mb} MB, median of {a.repeats}; GB/s by wall time (by CPU time)")
    print(f"memcpy: {gbs / memcpy:.2f} ({gbs / memcpy_cpu:.2f}) GB/s")
    print(f"numpy XOR into a segment (parity's arithmetic): {gbs / xor:.2f} ({gbs / xor_cpu:.2f})")
    print()
    print(
        "| group+parity | method | encode GB/s (CPU) | encode / memcpy "
        "| decode GB/s (CPU) | decode / memcpy |"
    )
    print("|---|---|---|---|---|---|")
    for cfg in a.configs.split(","):
        group, parity = map(int, cfg.split("+"))
        scheme = ReedSolomon(group, parity)
        # a segment of whole pieces, so that every method works on the same bytes
        per = scheme.subsegments * gf256.UNIT
        seg = src[: nbytes // per * per]
        cases = {
            "bitmatrix": bitmatrix_case(scheme, seg),
            "table": table_case(group, parity, seg),
            "zfec": zfec_case(group, parity, seg),
        }
        for method, case in cases.items():
            if case is None:
                print(f"| {cfg} | {method} | not installed | | | |")
                continue
            (enc, enc_cpu), (dec, dec_cpu) = (timed(f, a.repeats) for f in case)
            size = seg.size / 1e9
            print(
                f"| {cfg} | {method} | {size / enc:.2f} ({size / enc_cpu:.2f}) "
                f"| {enc / memcpy:.1f} | {size / dec:.2f} ({size / dec_cpu:.2f}) "
                f"| {dec / memcpy:.1f} |"
            )


if __name__ == "__main__":
    main()
