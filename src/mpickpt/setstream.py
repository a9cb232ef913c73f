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

import numpy as np
from mpi4py import MPI

from . import buffers
from .checksum import hasher
from .errors import IntegrityError
from .layout import ALIGN
from .memstore import Held, MemStore, PieceHeader
from .planning import Sources
from .schemes import XorSet, xor_into
from .schemes.xorset import chunk_size, form_sets, holder, parity_name, parse_name
from .segment import SegmentView
from .transport import Counted, keep_on_failure, spans, uniformly, waitall

TAG_SIZE = 0x6D79
TAG_RING = 0x6D78
TAG_BUILD = 0x6D7A


class SetStream(Counted):
    """One rank's part of the ``xorset`` checkpoint over ``comm``, whose ranks live in
    ``domains``; the sets are fixed per membership. Same interface as
    :class:`~mpickpt.stream.Stream` for the checkpointer (``run``, ``give``, ``nbytes``,
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
        self.pool: dict[int, list[np.ndarray]] = {}  # parity buffers of dropped versions
        self.stage: list[np.ndarray] = []  # blocks for the partial parities in flight

    def give(self, pieces: Sequence[Held]) -> None:
        """The dropped version's parity chunk: the buffer of the next one."""
        if pieces and self.recycle:
            buf = buffers.whole(pieces[0].data)
            self.pool.setdefault(buf.size, []).append(buf)

    def reserve(self, nbytes: int) -> None:
        """Fault in, now, the buffers of the first checkpoints of ``nbytes`` segments (the
        other members' assumed of this size): the parity chunks of two versions (one if not
        recycling) and the staging blocks."""
        k = len(self.members)
        if k < 2:
            return
        c = chunk_size([nbytes], k)
        count = 1 + self.recycle
        if sum(len(f) for cap, f in self.pool.items() if buffers.fits(cap, c)) < count:
            cap = buffers.capacity(c)
            self.pool = {cap: [buffers.prefaulted(cap) for _ in range(count)]}
        n0 = min(self.block, c)
        self.stage = [buffers.prefaulted(n0) for _ in range(2 * (k - 2))]

    def nbytes(self) -> int:
        """Bytes kept between checkpoints (staging blocks and the recycled parity buffers)."""
        return sum(b.nbytes for b in self.stage) + sum(
            b.nbytes for f in self.pool.values() for b in f
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

    def run(self, seg: SegmentView, version: int) -> list[Held]:
        """Compute this rank's parity chunk of ``version`` with its set; returns it once per
        other member of the set (the owners whose rebuild it serves), one shared buffer."""
        k, me, members = len(self.members), self.pos, self.members
        if k < 2:
            return []
        sizes = self._sizes(seg, version)
        c = chunk_size([int(x) for x in sizes], k)
        parity = buffers.take(self.pool, c)
        buffers.keep_fitting(self.pool, {c})  # a size changed: the others are freed
        # messages of one block (1 MiB): up to 2(k-2) blocks of staging in flight. Messages of
        # block/(k-1) bytes (the staging of two blocks) cost more CPU and time here (3x the
        # messages; bench_checkpoint.py at 8 ranks, 16 and 64 MB, alternated runs)
        blk = self.block
        blocks = spans(c, blk)
        n0 = min(blk, c)
        idle = [buf for buf in self.stage if buf.size >= n0]  # staging, taken as needed
        self.stage = []  # given back only after a complete run (no request left on them)
        pads: dict[int, np.ndarray] = {}  # step -> a zero-padded own block (the tail only)
        left, right = members[(me - 1) % k], members[(me + 1) % k]
        digest = hasher()
        got: dict[int, np.ndarray] = {}  # step -> partial parity received in the last wave
        reqs: list[MPI.Request] = []
        with keep_on_failure([reqs]):
            # wave w: step s of block w - s, for every step at once (the blocks in flight are
            # pipelined along the ring); step s adds own chunk k-2-s to the partial parity of
            # member me-1-s, and the partial received at step s is used at step s+1
            for w in range(len(blocks) + k - 2):
                reqs.clear()
                done, last, got = None, got, {}
                for st in range(k - 1):
                    b = w - st
                    if not 0 <= b < len(blocks):
                        continue
                    a, n = blocks[b]
                    off = (k - 2 - st) * c + a
                    mv = seg.view(off, n)
                    if mv is not None:
                        own = np.frombuffer(mv, np.uint8)
                    else:  # past the end of this segment, or across its regions
                        pad = pads.get(st)
                        if pad is None:
                            pad = pads[st] = np.empty(n0, np.uint8)
                        own = seg.read_into(off, pad[:n])
                    acc = last.get(st - 1)
                    out = own if acc is None else xor_into(acc[:n], own)
                    if st == k - 2:
                        into, done = parity[a : a + n], (a, n)
                    else:
                        got[st] = idle.pop() if idle else np.empty(n0, np.uint8)
                        into = got[st][:n]
                    reqs.append(self._recv(into, left, TAG_RING))
                    reqs.append(self._send(out, right, TAG_RING))
                MPI.Request.Waitall(reqs)
                idle += last.values()  # their partials have been sent on
                if done is not None:  # a block of the parity chunk is complete: checksum it
                    digest.update(parity[done[0] : done[0] + done[1]])
        self.stage = idle
        name, value = parity_name(me, k), int(digest.intdigest())
        return [
            Held(PieceHeader(o, version, name, me, 0, c, value, int(sizes[q])), parity)
            for q, o in enumerate(members)
            if q != me
        ]

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

        def step() -> list[Held]:
            valid = self.comm.allgather(mine is not None)
            if all(valid[r] for r in self.members):
                return []  # the set's chunks are all held, for this very set
            return self.run(seg, version)

        self.stats["agreements"] += 1
        got = uniformly(self.comm, step, f"re-protect of {version}")
        store.versions = {version: mine if mine is not None and not got else {}}
        store.stage(version, got)
        self.stats["reprotects"] += 1

    def _kept(self, store: MemStore, version: int) -> dict[int, dict[str, Held]] | None:
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
    comm: MPI.Comm, sources: Sources, k: int, lost: int, version: int, block: int
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
    sources: dict[int, Sources],
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
