"""The checkpoint stream: every rank sends its pieces to its own backups and receives the
pieces of its own owners, point to point, and nothing else.

The placement is deterministic, so a :class:`Stream` is built once per membership (when the
checkpointer attaches to a communicator): which rank holds which slot of which owner is known
on every rank without a message. Per checkpoint and per (owner, backup) pair there are exactly
three kinds of message: a header (version, segment bytes), the data in chunks, and a trailer
with the checksums of the pieces. The number of messages and bytes a rank sends is therefore
independent of the number of ranks (``stats`` counts them); the only collective left is the
commit agreement, done by the caller.

Memory: receive buffers come from a pool fed with the buffers of the version dropped at the
previous commit (no fresh pages to fault in per checkpoint), and coded chunks (parity) are
computed into a ring of staging buffers that is reused. Each checksum is computed exactly once,
in blocks of :data:`BLOCK` bytes while the bytes are in cache: a subsegment's checksum is taken
in the same pass that XORs it into its parity, and a mirror's copies share one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np
from mpi4py import MPI

from .checksum import hasher
from .layout import Piece
from .memstore import MemStore, PieceHeader, StoredPiece
from .schemes import Scheme
from .segment import SegmentView
from .tags import TAG_DATA, TAG_HEAD, TAG_SUMS
from .transport import MessageCounter, keep_on_failure, run_and_agree, spans

BLOCK = 256 << 10  # bytes combined and hashed at once: stays in a core's cache
RING = 3  # rounds of chunks whose sends may be in flight at once

STAT_KEYS = (
    "checkpoints",
    "messages_sent",
    "bytes_sent",
    "messages_received",
    "bytes_received",
    "agreements",
    "reprotects",
    "bytes",  # segment bytes checkpointed (for the run report's GB/s)
    "seconds",  # time in checkpoint()
)


def new_stats() -> dict[str, float]:
    """Cumulative counters of the checkpoint traffic of one rank (``Checkpointer.stats``)."""
    return dict.fromkeys(STAT_KEYS, 0)


class _Encoding:
    """What to compute for sending the pieces of some backup slots: the coded pieces, and for
    each subsegment whose checksum is needed, where it is taken. Each subsegment is checksummed
    once: in the pass of the first coded piece it is a source of (while its bytes are in
    cache), or alone if it is in none."""

    def __init__(self, scheme: Scheme, slots: Sequence[int]) -> None:
        held = scheme.held()
        needed = [p for s in sorted(set(slots)) for p in held[s]]
        self.coded = [p for p in needed if len(p.sources) > 1]
        wanted = {p.sources[0] for p in needed if len(p.sources) == 1}
        first: dict[int, str] = {}
        for p in self.coded:
            for k in p.sources:
                if k in wanted:
                    first.setdefault(k, p.name)
        self.hashes_with = {
            p.name: [k for k in p.sources if first.get(k) == p.name] for p in self.coded
        }
        self.plain = sorted(wanted - set(first))
        self.subsegments = sorted(wanted | {k for p in self.coded for k in p.sources})


class Stream(MessageCounter):
    """One rank's checkpoint stream over ``comm`` with the placement ``backups`` (for every
    rank, its backup ranks by slot) and ``owners`` (for every rank, whom it backs up).

    ``recycle``: keep the buffers of the dropped version for the next one (faster: no fresh
    pages; costs one more set of received pieces held between checkpoints).
    """

    def __init__(
        self,
        comm: MPI.Comm,
        scheme: Scheme,
        backups: Sequence[Sequence[int]],
        owners: Sequence[Sequence[int]],
        chunk: int,
        stats: dict[str, float],
        recycle: bool = True,
    ) -> None:
        me = comm.Get_rank()
        self.comm, self.scheme, self.stats, self.recycle = comm, scheme, stats, recycle
        self.chunk = max(scheme.granule, chunk - chunk % scheme.granule)  # whole granules
        self.dests = list(backups[me]) if backups else []  # backup ranks, by slot
        # (owner, slot) of the pieces this rank receives
        self.incoming = [(o, list(backups[o]).index(me)) for o in (owners[me] if owners else [])]
        self.held = scheme.held()
        self.encodings: dict[tuple[int, ...], _Encoding] = {}
        self.pool: dict[int, list[np.ndarray]] = {}  # free receive buffers by size
        self.ring: dict[tuple[int, str], np.ndarray] = {}  # staging, by (round % RING, key)

    # -- buffers ----------------------------------------------------------------------------

    def _take(self, size: int) -> np.ndarray:
        free = self.pool.get(size)
        return free.pop() if free else np.empty(size, dtype=np.uint8)

    def recycle_buffers(self, pieces: Sequence[StoredPiece]) -> None:
        """Buffers of a dropped version, for the next receives (if recycling)."""
        if self.recycle:
            for h in pieces:
                self.pool.setdefault(h.data.size, []).append(h.data)

    def _staging(self, r: int, key: str, n: int) -> np.ndarray:
        buf = self.ring.get((r % RING, key))
        if buf is None or buf.size < n:
            buf = self.ring[(r % RING, key)] = np.empty(n, dtype=np.uint8)
        return buf[:n]

    def nbytes(self) -> int:
        """Bytes kept between checkpoints (pool and staging ring)."""
        return sum(b.nbytes for f in self.pool.values() for b in f) + sum(
            b.nbytes for b in self.ring.values()
        )

    # -- the stream -------------------------------------------------------------------------

    def run(
        self,
        seg: SegmentView,
        version: int,
        sends: Sequence[tuple[int, int]] | None = None,
        recvs: Sequence[tuple[int, int]] | None = None,
    ) -> list[StoredPiece]:
        """Send this rank's pieces of ``seg`` to its backups and receive its owners' pieces
        of ``version``; returns the received pieces with their checksums. ``sends`` (pairs
        ``(slot, backup rank)``) and ``recvs`` (pairs ``(owner rank, slot)``) restrict it to
        some slots (a re-protect after a recovery); by default all of this rank's."""
        held = self.held
        sends = list(enumerate(self.dests)) if sends is None else list(sends)
        recvs = self.incoming if recvs is None else list(recvs)
        heads = [np.full(2, -1, np.int64) for _ in recvs]  # never stale bytes of a past one
        sums = [np.empty(len(held[slot]), np.uint64) for _, slot in recvs]
        small: list[MPI.Request] = []
        data_in: list[MPI.Request] = []
        rounds: deque[list[MPI.Request]] = deque()
        with keep_on_failure([small, data_in, rounds]):
            for i, (o, _) in enumerate(recvs):
                small.append(self._recv(heads[i], o, TAG_HEAD))
                small.append(self._recv(sums[i], o, TAG_SUMS))
            head = np.array([version, seg.nbytes], np.int64)
            small += [self._send(head, d, TAG_HEAD) for _, d in sends]
            MPI.Request.Waitall(small[: 2 * len(recvs) : 2])  # sizes first

            received = self._receive_data(heads, recvs, version, data_in)

            digests = self._send_pieces(seg, rounds, sends) if sends else {}
            for slot, dest in sends:
                out = np.array([digests[p.name] for p in held[slot]], np.uint64)
                small.append(self._send(out, dest, TAG_SUMS))
            for reqs in rounds:
                MPI.Request.Waitall(reqs)
            MPI.Request.Waitall(data_in)
            MPI.Request.Waitall(small)
        result = []
        for i, o, p, b, n in received:
            digest = int(sums[i][[q.name for q in held[recvs[i][1]]].index(p.name)])
            header = PieceHeader(o, version, p.name, p.stripe, p.index, b.size, digest, n)
            result.append(StoredPiece(header, b))
        return result

    def _receive_data(
        self,
        heads: list[np.ndarray],
        recvs: Sequence[tuple[int, int]],
        version: int,
        data_in: list[MPI.Request],
    ) -> list[tuple[int, int, Piece, np.ndarray, int]]:
        """Post the receives of the pieces announced by ``heads`` into ``data_in``: ``(recv
        index, owner, piece, buffer, segment bytes)`` of each."""
        received: list[tuple[int, int, Piece, np.ndarray, int]] = []
        for i, (o, slot) in enumerate(recvs):
            v, nbytes = (int(x) for x in heads[i])
            if v != version or nbytes < 0:
                # a receive "completed" on a revoked communicator without its data (Open
                # MPI may do that after a failure): a lost peer, not a bug of this rank
                raise MPI.Exception(MPI.ERR_OTHER)
            size = self.scheme.piece_size(nbytes)
            bufs = [self._take(size) for _ in self.held[slot]]
            for a, n in spans(size, self.chunk):
                data_in += [self._recv(b[a : a + n], o, TAG_DATA) for b in bufs]
            received += [(i, o, p, b, nbytes) for p, b in zip(self.held[slot], bufs, strict=True)]
        self.pool.clear()  # what was not reused (a size changed) is freed
        return received

    def _send_pieces(
        self, seg: SegmentView, rounds: deque[list[MPI.Request]], sends: list[tuple[int, int]]
    ) -> dict[str, int]:
        """Compute and send the pieces of the slots in ``sends`` chunk by chunk; return the
        checksum of every piece sent."""
        key = tuple(sorted({slot for slot, _ in sends}))
        enc = self.encodings.get(key)
        if enc is None:
            enc = self.encodings[key] = _Encoding(self.scheme, key)
        scheme = self.scheme
        size = scheme.piece_size(seg.nbytes)
        sub_hash = {k: hasher() for k in enc.subsegments}
        coded_hash = {p.name: hasher() for p in enc.coded}
        for r, (a, n) in enumerate(spans(size, self.chunk)):
            if len(rounds) == RING:  # its staging slot is about to be reused
                MPI.Request.Waitall(rounds[0])  # kept in ``rounds`` until done (see
                rounds.popleft()  # transport.keep_on_failure: a freed request must not fail)
            src = {}
            for k in enc.subsegments:
                mv = seg.view(k * size + a, n)  # in place, unless it straddles regions/padding
                src[k] = (
                    np.frombuffer(mv, np.uint8)
                    if mv is not None
                    else seg.read_into(k * size + a, self._staging(r, f"s{k}", n))
                )
            out = {p.name: self._staging(r, p.name, n) for p in enc.coded}
            for b in range(0, n, BLOCK):  # fused: combine and checksum one block at a time
                e = min(n, b + BLOCK)
                for p in enc.coded:
                    for k in enc.hashes_with[p.name]:
                        sub_hash[k].update(src[k][b:e])
                    scheme.combine(p, [src[k][b:e] for k in p.sources], out=out[p.name][b:e])
                    coded_hash[p.name].update(out[p.name][b:e])
            for k in enc.plain:  # in no coded piece: checksummed on its own
                sub_hash[k].update(src[k])
            rounds.append(
                [
                    self._send(
                        out[p.name] if len(p.sources) > 1 else src[p.sources[0]], dest, TAG_DATA
                    )
                    for slot, dest in sends
                    for p in self.held[slot]
                ]
            )
        digests = {name: int(h.intdigest()) for name, h in coded_hash.items()}
        for slot, _ in sends:
            for p in self.held[slot]:
                if len(p.sources) == 1:
                    digests[p.name] = int(sub_hash[p.sources[0]].intdigest())
        return digests

    def reprotect(self, store: MemStore) -> None:
        """Collective, after a recovery: make every rank hold its pieces of the committed version
        under the current placement again, moving only the missing ones.

        Each rank lists the (owner, slot) pieces it lacks (one all-gather: a recovery is rare,
        the checkpoints stay point to point); each owner sends those from its own committed copy,
        with fresh checksums; pieces a rank no longer backs up are dropped. Ends in an agreement.
        """
        version, local = store.committed, store.local
        assert local is not None and store.local_version == version
        have = store.versions.get(version, {})
        keep: dict[int, dict[str, StoredPiece]] = {}
        missing: list[tuple[int, int]] = []
        for o, slot in self.incoming:
            names = [p.name for p in self.held[slot]]
            if all(n in have.get(o, {}) for n in names):
                keep[o] = {n: have[o][n] for n in names}
            else:
                missing.append((o, slot))
        seg = SegmentView([(0, local.data)], local.size)

        def step() -> list[StoredPiece]:
            me = self.comm.Get_rank()
            wanted = self.comm.allgather(missing)
            sends = [(slot, b) for b, lst in enumerate(wanted) for o, slot in lst if o == me]
            return self.run(seg, version, sends, missing)

        self.stats["agreements"] += 1
        got = run_and_agree(self.comm, step, f"re-protect of version {version}")
        store.versions = {version: keep}
        store.stage(version, got)
        self.stats["reprotects"] += 1
