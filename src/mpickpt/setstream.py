"""The ``xorset`` checkpoint stream and rebuild over MPI (the math is in
:mod:`mpickpt.schemes.xorset`).

Checkpoint: within each set (and nowhere else) the members exchange their segment sizes, then
run a ring reduce-scatter, pipelined in blocks: for each block of the chunks, in ``k - 1``
steps, member ``i`` XORs its own chunk into the partial parity it received from its left
neighbour and passes it to its right one; after the last step it holds the block of its own
parity chunk. The blocks are pipelined along the ring: in one *wave* a member runs every step
at once, step ``s`` on block ``w - s``, so ``k - 1`` messages per direction are in flight. A
member sends and receives ``k - 1`` chunks (one padded segment) and holds at most ``2(k-2)``
blocks of staging beside its parity chunk (a block is at most a chunk): no rank holds a full
extra segment.

Rebuild: each survivor of the lost member's set sends its *contribution* (its parity chunk and
its own chunks of the same parities, views of its committed copy) to the rank that rebuilds;
that rank XORs them block by block into the segment, checking each survivor's parity chunk
against its checksum on the way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from mpi4py import MPI

from .checksum import hasher
from .errors import IntegrityError
from .layout import ALIGN
from .memstore import MemStore, PieceHeader, StoredPiece
from .planning import RebuildSources
from .schemes import XorSet, xor_into
from .schemes.xorset import chunk_size, form_sets, holder, parity_name, parse_name
from .segment import SegmentView
from .tags import TAG_BUILD, TAG_RING, TAG_SIZE
from .transport import MessageCounter, keep_on_failure, run_and_agree, spans, waitall


@dataclass
class _Ring:
    """The buffers of one run of the ring: the parity chunk being built, its blocks, the
    partial parities received in the last wave (``got``, by step), free staging blocks and
    zero-padded own blocks (by step, for the tail of a segment)."""

    parity: np.ndarray
    blocks: list[tuple[int, int]]
    n0: int  # bytes of a staging block
    got: dict[int, np.ndarray] = field(default_factory=dict)
    idle: list[np.ndarray] = field(default_factory=list)
    pads: dict[int, np.ndarray] = field(default_factory=dict)

    def own(self, seg: SegmentView, st: int, off: int, n: int) -> np.ndarray:
        """Bytes ``[off, off+n)`` of ``seg``: in place, or copied (zero-padded past its end, or
        across its regions) into the pad of step ``st``."""
        mv = seg.view(off, n)
        if mv is not None:
            return np.frombuffer(mv, np.uint8)
        pad = self.pads.get(st)
        if pad is None:
            pad = self.pads[st] = np.empty(self.n0, np.uint8)
        return seg.read_into(off, pad[:n])


class SetStream(MessageCounter):
    """One rank's part of the ``xorset`` checkpoint over ``comm``, whose ranks live in
    ``domains``; the sets are fixed per membership. Same interface as
    :class:`~mpickpt.stream.Stream` for the checkpointer (``run``, ``recycle_buffers``, ``nbytes``,
    ``reprotect``).

    ``recycle``: keep the dropped version's parity chunk for the next one (no fresh pages per
    checkpoint; ``1/(k-1)`` of a segment more held between checkpoints).
    """

    def __init__(
        self,
        comm: MPI.Comm,
        scheme: XorSet,
        domains: Sequence[int],
        block: int,
        stats: dict[str, float],
        recycle: bool = True,
    ) -> None:
        me = comm.Get_rank()
        self.comm, self.scheme, self.stats, self.recycle = comm, scheme, stats, recycle
        self.sets = form_sets(scheme.layout_domains(domains), scheme.group)
        self.members = next((s for s in self.sets if me in s), [me])
        self.pos = self.members.index(me)
        self.block = max(ALIGN, block - block % ALIGN)
        self.free: np.ndarray | None = None  # the parity buffer of the dropped version
        self.stage: list[np.ndarray] = []  # blocks for the partial parities in flight

    def recycle_buffers(self, pieces: Sequence[StoredPiece]) -> None:
        """The dropped version's parity chunk: the buffer of the next one."""
        if pieces and self.recycle:
            self.free = pieces[0].data

    def nbytes(self) -> int:
        """Bytes kept between checkpoints (staging blocks and the recycled parity buffer)."""
        return sum(b.nbytes for b in self.stage) + (
            self.free.nbytes if self.free is not None else 0
        )

    def _sizes(self, seg: SegmentView, version: int) -> np.ndarray:
        """Every member's segment bytes (set order), from one small message per pair."""
        k, me = len(self.members), self.pos
        heads = np.full((k, 2), -1, np.int64)  # (version, nbytes); never stale bytes
        heads[me] = (version, seg.nbytes)
        reqs: list[MPI.Request] = []
        with keep_on_failure([reqs]):
            for q, r in enumerate(self.members):
                if q != me:
                    reqs.append(self._recv(heads[q], r, TAG_SIZE))
                    reqs.append(self._send(heads[me], r, TAG_SIZE))
            MPI.Request.Waitall(reqs)
        if (heads[:, 0] != version).any() or (heads[:, 1] < 0).any():
            raise MPI.Exception(MPI.ERR_OTHER)  # completed on a revoked communicator: a lost peer
        return heads[:, 1]

    def run(self, seg: SegmentView, version: int) -> list[StoredPiece]:
        """Compute this rank's parity chunk of ``version`` with its set; returns it once per
        other member of the set (the owners whose rebuild it serves), one shared buffer."""
        k, me, members = len(self.members), self.pos, self.members
        if k < 2:
            return []
        sizes = self._sizes(seg, version)
        c = chunk_size([int(x) for x in sizes], k)
        parity = (
            self.free if self.free is not None and self.free.size == c else np.empty(c, np.uint8)
        )
        self.free = None
        name, value = parity_name(me, k), self._ring(seg, parity)
        return [
            StoredPiece(PieceHeader(o, version, name, me, 0, c, value, int(sizes[q])), parity)
            for q, o in enumerate(members)
            if q != me
        ]

    def _ring(self, seg: SegmentView, parity: np.ndarray) -> int:
        """Build ``parity`` along the set's ring, block by block; return its checksum.

        Wave ``w`` runs step ``s`` of block ``w - s``, for every step at once (the blocks in
        flight are pipelined along the ring): step ``s`` adds own chunk ``k-2-s`` to the
        partial parity of member ``me-1-s``, and the partial received at step ``s`` is used at
        step ``s+1``. Messages are whole blocks: up to ``2(k-2)`` blocks of staging in flight
        (smaller messages cost more: docs/measurements.md)."""
        ring = _Ring(parity, spans(parity.size, self.block), min(self.block, parity.size))
        ring.idle = [buf for buf in self.stage if buf.size >= ring.n0]  # taken as needed
        self.stage = []  # given back only after a complete run (no request left on them)
        digest = hasher()
        reqs: list[MPI.Request] = []
        with keep_on_failure([reqs]):
            for w in range(len(ring.blocks) + len(self.members) - 2):
                reqs.clear()
                last, ring.got = ring.got, {}
                done = self._wave(seg, ring, w, last, reqs)
                MPI.Request.Waitall(reqs)
                ring.idle += last.values()  # their partials have been sent on
                if done is not None:  # a block of the parity chunk is complete: checksum it
                    digest.update(parity[done[0] : done[0] + done[1]])
        self.stage = ring.idle
        return int(digest.intdigest())

    def _wave(
        self,
        seg: SegmentView,
        ring: _Ring,
        w: int,
        last: dict[int, np.ndarray],
        reqs: list[MPI.Request],
    ) -> tuple[int, int] | None:
        """Post the messages of wave ``w`` into ``reqs``; the block of the parity chunk it
        completes, if any (``(offset, length)``)."""
        k, me, c = len(self.members), self.pos, ring.parity.size
        left, right = self.members[(me - 1) % k], self.members[(me + 1) % k]
        done = None
        for st in range(k - 1):
            if not 0 <= w - st < len(ring.blocks):
                continue
            a, n = ring.blocks[w - st]
            own = ring.own(seg, st, (k - 2 - st) * c + a, n)
            acc = last.get(st - 1)
            out = own if acc is None else xor_into(acc[:n], own)
            if st == k - 2:
                into, done = ring.parity[a : a + n], (a, n)
            else:
                ring.got[st] = ring.idle.pop() if ring.idle else np.empty(ring.n0, np.uint8)
                into = ring.got[st][:n]
            reqs.append(self._recv(into, left, TAG_RING))
            reqs.append(self._send(out, right, TAG_RING))
        return done

    def reprotect(self, store: MemStore) -> None:
        """Collective, after a recovery: make every rank hold the parity chunk of the committed
        version for its set again. Only the sets in which some member lacks its chunk (a spare
        that took a dead rank's place, or sets formed anew with the spares' failure domains)
        compute it again from every member's committed copy; the others keep theirs (one
        all-gather of a flag: a recovery is rare). Ends in an agreement."""
        version, local = store.committed, store.local
        assert local is not None and store.local_version == version
        mine = self._kept(store, version)
        seg = SegmentView([(0, local.data)], local.size)

        def step() -> list[StoredPiece]:
            valid = self.comm.allgather(mine is not None)
            if all(valid[r] for r in self.members):
                return []  # the set's chunks are all held, for this very set
            return self.run(seg, version)

        self.stats["agreements"] += 1
        got = run_and_agree(self.comm, step, f"re-protect of {version}")
        store.versions = {version: mine if mine is not None and not got else {}}
        store.stage(version, got)
        self.stats["reprotects"] += 1

    def _kept(self, store: MemStore, version: int) -> dict[int, dict[str, StoredPiece]] | None:
        """This rank's parity chunk of ``version`` as held for each other member of its set,
        if it has it for every one under its current position and set size (the name says
        both; with every member's position checked so, the set is the same ordered set)."""
        k, me = len(self.members), self.pos
        if k < 2:
            return {}
        name, have = parity_name(me, k), store.versions.get(version, {})
        owners = [o for q, o in enumerate(self.members) if q != me]
        if not all(name in have.get(o, {}) for o in owners):
            return None
        return {o: {name: have[o][name]} for o in owners}


def _contribution_sends(
    comm: MPI.Comm,
    store: MemStore,
    version: int,
    owner: int,
    name: str,
    lost: int,
    k: int,
    dest: int,
    block: int,
    pads: list[np.ndarray],
) -> list[MPI.Request]:
    """Post this survivor's contribution to the rebuild of set position ``lost``: a header
    (version, chunk size), then slot by slot, block by block, views of its parity chunk and of
    its committed copy (zero-padded blocks past its end are copied into ``pads``)."""
    me = parse_name(name)[0]
    parity = store.pieces(version, owner)[name].data
    local = store.local
    assert local is not None and store.local_version == version
    c = parity.size
    head = np.array([version, c], np.int64)
    pads.append(head)
    reqs = [comm.Isend([head, MPI.BYTE], dest, TAG_BUILD)]
    for t in range(k - 1):
        j = holder(k, lost, t)
        base = ((j - me) % k - 1) * c
        for a, n in spans(c, block):
            if j == me:
                buf = parity[a : a + n]
            elif base + a + n <= local.size:
                buf = local[base + a : base + a + n]
            else:
                buf = np.zeros(n, np.uint8)
                part = local[base + a : base + a + n]
                buf[: part.size] = part
                pads.append(buf)
            reqs.append(comm.Isend([buf, MPI.BYTE], dest, TAG_BUILD))
    return reqs


def _gather_xor(
    comm: MPI.Comm, sources: RebuildSources, k: int, lost: int, version: int, block: int
) -> np.ndarray:
    """Receive the contributions of ``sources``' survivors and XOR them into the segment,
    verifying each survivor's parity chunk (its own slot, unmixed) against its checksum."""
    nbytes, names = sources
    heads = np.full((len(names), 2), -1, np.int64)
    waitall([comm.Irecv([heads[i], MPI.BYTE], h, TAG_BUILD) for i, (h, _, _) in enumerate(names)])
    if (heads[:, 0] != version).any() or len(set(heads[:, 1])) != 1:
        raise MPI.Exception(MPI.ERR_OTHER)  # a receive without its data: a lost peer
    c = int(heads[0, 1])
    out = np.empty((k - 1) * c, np.uint8)
    bufs = [np.empty(min(block, c), np.uint8) for _ in names]
    slot = [(parse_name(n)[0] - lost - 1) % k for _, n, _ in names]
    sums = [hasher() for _ in names]
    for t in range(k - 1):
        for a, n in spans(c, block):
            reqs = [
                comm.Irecv([b[:n], MPI.BYTE], h, TAG_BUILD)
                for b, (h, _, _) in zip(bufs, names, strict=True)
            ]
            waitall(reqs)
            dst = out[t * c + a : t * c + a + n]
            dst[:] = bufs[0][:n]
            xor_into(dst, *(b[:n] for b in bufs[1:]))
            for i, b in enumerate(bufs):
                if slot[i] == t:
                    sums[i].update(b[:n])
    for (h, name, digest), s in zip(names, sums, strict=True):
        if int(s.intdigest()) != digest:
            raise IntegrityError(
                f"parity chunk {name} (process {h}) of version {version} failed its checksum"
            )
    return out[:nbytes]


def fetch_sets(
    comm: MPI.Comm,
    store: MemStore,
    version: int,
    sources: dict[int, RebuildSources],
    dest: dict[int, int],
    block: int = 1 << 20,
) -> dict[int, np.ndarray]:
    """:func:`~mpickpt.transport.fetch_segment` for ``xorset``: rebuild each owner in
    ``sources`` on ``dest[owner]`` from its set's survivors; return those rebuilt here."""
    me = comm.Get_rank()
    sends: list[MPI.Request] = []
    pads: list[np.ndarray] = []
    out: dict[int, np.ndarray] = {}
    with keep_on_failure([sends]):
        for owner, (_, names) in sorted(sources.items()):
            k, lost = _lost_position(names)
            for h, name, _ in names:
                if h == me:
                    sends += _contribution_sends(
                        comm, store, version, owner, name, lost, k, dest[owner], block, pads
                    )
        for owner, src in sorted(sources.items()):
            if dest[owner] == me:
                k, lost = _lost_position(src[1])
                out[owner] = _gather_xor(comm, src, k, lost, version, block)
        MPI.Request.Waitall(sends)
    return out


def _lost_position(names: Sequence[tuple[int, str, int]]) -> tuple[int, int]:
    """``(k, position)`` of the one member missing from the parity chunks ``names``."""
    found = [parse_name(n) for _, n, _ in names]
    k = found[0][1]
    (lost,) = set(range(k)) - {p for p, _ in found}
    return k, lost
