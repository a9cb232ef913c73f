"""A prototype of a cheaper checkpoint, for measuring what changes to ``src/`` would gain.

Same protocol, same messages, same pieces and checksums as ``Checkpointer.checkpoint`` (so the
stored pieces can be rebuilt by the library's own ``rebuild``), with three changes:

1. parity blocks are XORed straight from zero-copy views of the segment into staging buffers
   that are allocated once and reused (the library allocates two fresh buffers per parity chunk
   and goes through ``SegmentView.read_into``, which zero-fills before it copies);
2. (``Pool(recycle=True)``) receive buffers are recycled from the version dropped at the
   previous commit (the library allocates fresh ones for every version, which page-faults them
   in, and the freed ones may stay in the heap);
3. the local committed copy is written without zero-filling it first.

Used by ``bench_checkpoint.py --profile``; nothing here is imported by the library.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from mpi4py import MPI

from mpickpt.checksum import hasher
from mpickpt.layout import Piece
from mpickpt.memstore import PieceHeader, StoredPiece
from mpickpt.schemes import Scheme
from mpickpt.segment import SegmentView
from mpickpt.transport import spans

TAG_STREAM = 0x6D74  # its own tag: the prototype's stream is not the library's


class Pool:
    """Receive buffers by ``(owner, piece name, size)`` and the staging ring, kept across
    checkpoints."""

    def __init__(self, recycle: bool = True) -> None:
        self.recycle = recycle  # False: fresh receive buffers every version, as the library
        self.recv: dict[tuple[int, str, int], list[np.ndarray]] = {}
        self.ring: dict[tuple[int, int], np.ndarray] = {}
        self.tmp: dict[int, np.ndarray] = {}

    def take(self, key: tuple[int, str, int]) -> np.ndarray:
        free = self.recv.get(key)
        return free.pop() if free else np.empty(key[2], dtype=np.uint8)

    def give(self, key: tuple[int, str, int], buf: np.ndarray) -> None:
        if self.recycle:
            self.recv.setdefault(key, []).append(buf)

    def staging(self, slot: int, index: int, n: int) -> np.ndarray:
        buf = self.ring.get((slot, index))
        if buf is None or buf.size < n:
            buf = self.ring[(slot, index)] = np.empty(n, dtype=np.uint8)
        return buf[:n]

    def scratch(self, i: int, n: int) -> np.ndarray:
        buf = self.tmp.get(i)
        if buf is None or buf.size < n:
            buf = self.tmp[i] = np.empty(n, dtype=np.uint8)
        return buf[:n]


def _words(buf: np.ndarray | memoryview) -> np.ndarray:
    return np.frombuffer(buf, dtype=np.uint64)


def fill(
    piece: Piece,
    seg: SegmentView,
    size: int,
    a: int,
    n: int,
    staging: Callable[[], np.ndarray],
    pool: Pool,
) -> np.ndarray:
    """Chunk ``[a, a+n)`` of ``piece``: a view for plain data, else XOR of views into the
    buffer ``staging()`` returns (taken only when needed)."""
    views = [seg.view(k * size + a, n) for k in piece.sources]
    if len(views) == 1:
        if views[0] is not None:
            return np.frombuffer(views[0], dtype=np.uint8)
        return seg.read_into(piece.sources[0] * size + a, staging())
    out = staging()
    srcs: list[np.ndarray | memoryview] = []
    for i, (k, v) in enumerate(zip(piece.sources, views, strict=True)):
        # a source that spans a region boundary or the padding: one staged copy (rare)
        srcs.append(v if v is not None else seg.read_into(k * size + a, pool.scratch(i, n)))
    o = _words(out)
    np.bitwise_xor(_words(srcs[0]), _words(srcs[1]), out=o)
    for src in srcs[2:]:
        np.bitwise_xor(o, _words(src), out=o)
    return out


def stream_pieces(
    comm: MPI.Comm,
    scheme: Scheme,
    seg: SegmentView,
    backups: Sequence[int],
    owners: Sequence[int],
    version: int,
    chunk: int,
    pool: Pool,
) -> list[StoredPiece]:
    """The previous library stream (all-gathers of sizes and backups, an all-to-all of
    checksums) with reused buffers and view-based parity."""
    me = comm.Get_rank()
    sizes = comm.allgather(seg.nbytes)
    held = scheme.held()
    backups_of = comm.allgather(list(backups))

    received: list[StoredPiece] = []
    recvs: list[MPI.Request] = []
    for o in owners:
        slot = backups_of[o].index(me)
        size = scheme.piece_size(sizes[o])
        bufs = [pool.take((o, p.name, size)) for p in held[slot]]
        for a, n in spans(size, chunk):
            for buf in bufs:
                recvs.append(comm.Irecv([buf[a : a + n], MPI.BYTE], o, TAG_STREAM))
        received += [
            StoredPiece(PieceHeader(o, version, p.name, p.stripe, p.index, size, 0, sizes[o]), buf)
            for p, buf in zip(held[slot], bufs, strict=True)
        ]

    size = scheme.piece_size(seg.nbytes)
    hashes = {p.name: hasher() for p in scheme.pieces()}
    inflight: list[list[MPI.Request]] = []
    for r, (a, n) in enumerate(spans(size, chunk)):
        reqs = []
        i = 0
        for slot, dest in enumerate(backups):
            for p in held[slot]:

                def staging(i: int = i, r: int = r, n: int = n) -> np.ndarray:
                    return pool.staging(r % 3, i, n)

                data = fill(p, seg, size, a, n, staging, pool)
                i += 1
                hashes[p.name].update(data)
                reqs.append(comm.Isend([data, MPI.BYTE], dest, TAG_STREAM))
        inflight.append(reqs)
        if len(inflight) > 2:  # round r-2 done: its ring slot ((r+1) % 3) is free for round r+1
            MPI.Request.Waitall(inflight.pop(0))
    for reqs in inflight:
        MPI.Request.Waitall(reqs)
    MPI.Request.Waitall(recvs)

    outgoing: list[dict[str, int]] = [{} for _ in range(comm.Get_size())]
    for slot, dest in enumerate(backups):
        outgoing[dest] = {p.name: hashes[p.name].intdigest() for p in held[slot]}
    incoming = comm.alltoall(outgoing)
    out = []
    for h in received:
        hd = h.header
        value = incoming[hd.owner][hd.name]
        out.append(
            StoredPiece(
                PieceHeader(
                    hd.owner, hd.version, hd.name, hd.stripe, hd.index, hd.length, value, hd.nbytes
                ),
                h.data,
            )
        )
    return out


def copy_segment(seg: SegmentView, out: np.ndarray) -> np.ndarray:
    """``seg.read_into(0, out)`` without zero-filling what the regions overwrite anyway."""
    pos = 0
    for start, mv in seg.regions:
        if start > pos:
            out[pos:start] = 0
        out[start : start + len(mv)] = np.frombuffer(mv, dtype=np.uint8)
        pos = start + len(mv)
    out[pos:] = 0
    return out


def checkpoint(ckpt, step: int, pool: Pool) -> int:  # type: ignore[no-untyped-def]
    """``Checkpointer.checkpoint`` (failure handling left out) with the changes above."""
    comm = ckpt.comm
    rank = comm.Get_rank()
    store = ckpt.store
    version = store.committed + 1
    seg = ckpt.state.snapshot(step, {"version": version, "rank": rank})
    mine = [ckpt.backups[rank][j] for j in range(ckpt.scheme.backups)]
    held = stream_pieces(comm, ckpt.scheme, seg, mine, ckpt.owners[rank], version, ckpt.chunk, pool)
    store.stage(version, held)
    if not comm.Agree(1):
        raise RuntimeError("agree failed")
    old = {v: by_owner for v, by_owner in store.versions.items() if v != version}
    store.commit(version)
    pool.recv.clear()  # what the last stream did not reuse (a size changed) is freed
    for by_owner in old.values():  # recycle the dropped version's buffers
        for o, pieces in by_owner.items():
            for name, h in pieces.items():
                pool.give((o, name, h.data.size), h.data)
    if store.local is None or store.local.size != seg.nbytes:
        store.local = np.empty(seg.nbytes, dtype=np.uint8)
    copy_segment(seg, store.local)
    store.local_version = version
    ckpt.step = step
    return int(version)
