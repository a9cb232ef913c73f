"""Piece exchange over MPI: the checkpoint stream (chunked, bounded memory) and the rebuild
transfers. Every function here is collective over ``comm`` and raises ``MPI.Exception`` on a
peer failure; callers turn that into :class:`~mpickpt.errors.ProcessFailure`."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

import numpy as np
from mpi4py import MPI

from .checksum import hasher
from .errors import ProcessFailure
from .layout import Piece
from .memstore import Held, MemStore, PieceHeader
from .planning import Sources
from .schemes import Scheme
from .segment import SegmentView

CHUNK = 4 << 20  # bytes per message: large enough for bandwidth, small enough to bound staging
TAG_STREAM = 0x6D70
TAG_REBUILD = 0x6D71
T = TypeVar("T")


# Requests still pending when a wait failed. Open MPI aborts the process when a freed request
# later completes with an error ("Send error after request freed"), so they are never freed.
_orphans: list[MPI.Request] = []


@contextmanager
def keep_on_failure(requests: Iterable[Any]) -> Iterator[None]:
    """On an error inside, keep every request in ``requests`` (or in its lists) alive, and let
    go of those kept earlier that have completed since (their buffers with them)."""
    try:
        yield
    except BaseException:
        _orphans[:] = [r for r in _orphans if not _completed(r)]
        for r in requests:
            _orphans.extend(r if isinstance(r, list) else [r])
        raise


def _completed(request: MPI.Request) -> bool:
    """Whether ``request`` has completed, with an error or not (MPI has then released it)."""
    try:
        return bool(request.Test())
    except MPI.Exception:
        return True


def waitall(requests: Sequence[MPI.Request]) -> None:
    """``MPI.Request.Waitall``, except that if it raises (a peer failed), the requests are
    kept alive instead of freed: Open MPI would abort the process when a freed request later
    completes with an error. Use it for your own non-blocking calls in a protected function."""
    with keep_on_failure(requests):
        MPI.Request.Waitall(list(requests))


def uniformly(comm: MPI.Comm, step: Callable[[], T], what: str) -> T:
    """Run ``step()`` then agree over ``comm`` that it succeeded on every rank.

    Returns its result when it did. Otherwise every rank raises :class:`ProcessFailure` (a
    peer failed or the communicator was revoked); a rank whose step raised something else
    re-raises it when no failure explains it, since that is a bug, not a lost peer. Any error
    counts: after a failure, Open MPI may also hand a collective garbage instead of an error.
    """
    error: Exception | None = None
    result: T | None = None
    ok = 1
    try:
        result = step()
    except Exception as e:
        ok, error = 0, None if isinstance(e, MPI.Exception) else e
        with suppress(MPI.Exception):
            comm.Revoke()
    failed = False
    try:
        agreed = comm.Agree(ok)
    except MPI.Exception:
        agreed, failed = 0, True
    if agreed:
        return result  # type: ignore[return-value]
    if error is not None and not failed:
        raise error
    raise ProcessFailure(f"{what} failed: a process was lost")


def _chunks(size: int, chunk: int) -> list[tuple[int, int]]:
    return [(a, min(chunk, size - a)) for a in range(0, size, chunk)]


def _fill(scheme: Scheme, piece: Piece, seg: SegmentView, size: int, a: int, n: int) -> np.ndarray:
    """Chunk ``[a, a+n)`` of ``piece``: the sources' bytes read in place where one region holds
    them (a plain data chunk is then not copied at all), combined by the scheme for parity."""
    chunks = []
    for k in piece.sources:
        mv = seg.view(k * size + a, n)
        chunks.append(
            np.frombuffer(mv, np.uint8)
            if mv is not None
            else seg.read_into(k * size + a, np.empty(n, np.uint8))
        )
    return scheme.combine(piece, chunks)


def stream_pieces(
    comm: MPI.Comm,
    scheme: Scheme,
    seg: SegmentView,
    backups: Sequence[int],
    owners: Sequence[int],
    version: int,
    chunk: int = CHUNK,
) -> list[Held]:
    """Send this rank's pieces to its ``backups`` and receive the pieces of ``owners``.

    ``backups[j]`` is the rank of this rank's backup slot ``j``; ``owners`` are the ranks this
    rank backs up (``backups_of[o]`` must name this rank). Returns the received pieces, checksums
    attached. At most two rounds of chunks are staged at once on the sender.
    """
    me = comm.Get_rank()
    chunk = max(scheme.granule, chunk - chunk % scheme.granule)  # combine needs whole granules
    sizes = comm.allgather(seg.nbytes)
    held = scheme.held()
    backups_of = comm.allgather(list(backups))

    received: list[Held] = []
    recvs: list[MPI.Request] = []
    rounds: deque[list[MPI.Request]] = deque([recvs])  # the receives stay first, to the end
    with keep_on_failure(rounds):
        for o in owners:
            slot = backups_of[o].index(me)
            size = scheme.piece_size(sizes[o])
            bufs = [np.empty(size, dtype=np.uint8) for _ in held[slot]]
            for a, n in _chunks(size, chunk):
                for buf in bufs:
                    recvs.append(comm.Irecv([buf[a : a + n], MPI.BYTE], o, TAG_STREAM))
            received += [
                Held(PieceHeader(o, version, p.name, p.stripe, p.index, size, 0, sizes[o]), buf)
                for p, buf in zip(held[slot], bufs, strict=True)
            ]

        size = scheme.piece_size(seg.nbytes)
        hashes = {p.name: hasher() for p in scheme.pieces()}
        for a, n in _chunks(size, chunk):
            reqs: list[MPI.Request] = []
            rounds.append(reqs)
            for slot, dest in enumerate(backups):
                for p in held[slot]:
                    data = _fill(scheme, p, seg, size, a, n)
                    hashes[p.name].update(data)
                    reqs.append(comm.Isend([data, MPI.BYTE], dest, TAG_STREAM))
            if len(rounds) > 3:  # bound the staging memory: wait for the oldest send round
                MPI.Request.Waitall(rounds[1])
                del rounds[1]
        for reqs in rounds:
            MPI.Request.Waitall(reqs)

    # checksums travel after the data: one small all-to-all
    outgoing: list[dict[str, int]] = [{} for _ in range(comm.Get_size())]
    for slot, dest in enumerate(backups):
        outgoing[dest] = {p.name: hashes[p.name].intdigest() for p in held[slot]}
    incoming = comm.alltoall(outgoing)
    for i, h in enumerate(received):
        sums = incoming[h.header.owner]
        received[i] = Held(_with_checksum(h.header, sums[h.header.name]), h.data)
    return received


def _with_checksum(h: PieceHeader, value: int) -> PieceHeader:
    return PieceHeader(h.owner, h.version, h.name, h.stripe, h.index, h.length, value, h.nbytes)


def send_pieces(
    comm: MPI.Comm, sends: Sequence[tuple[int, Held]], recvs: Sequence[tuple[int, PieceHeader]]
) -> list[Held]:
    """Point-to-point transfer of whole pieces: ``sends`` are ``(dest, piece)``, ``recvs`` are
    ``(source, header)`` in the order the source sends them. Returns the received pieces."""
    reqs: list[MPI.Request] = []
    got = []
    with keep_on_failure(reqs):
        for src, h in recvs:
            buf = np.empty(h.length, dtype=np.uint8)
            reqs.append(comm.Irecv([buf, MPI.BYTE], src, TAG_REBUILD))
            got.append(Held(h, buf))
        for dest, held in sends:
            reqs.append(comm.Isend([held.data, MPI.BYTE], dest, TAG_REBUILD))
        MPI.Request.Waitall(reqs)
    return got


def fetch_segment(
    comm: MPI.Comm,
    store: MemStore,
    scheme: Scheme,
    version: int,
    sources: dict[int, Sources],
    dest: dict[int, int],
) -> dict[int, np.ndarray]:
    """Move the pieces named in ``sources`` to the rank ``dest[owner]`` and decode them there;
    return the segments decoded on this rank. Checksums are verified before decoding."""
    me = comm.Get_rank()
    sends: list[tuple[int, Held]] = []
    recvs: list[tuple[int, PieceHeader]] = []
    for owner, (nbytes, names) in sorted(sources.items()):
        size = scheme.piece_size(nbytes)
        for holder, name, digest in names:
            if holder == me:
                sends.append((dest[owner], store.pieces(version, owner)[name]))
            if dest[owner] == me:
                recvs.append(
                    (holder, PieceHeader(owner, version, name, 0, 0, size, digest, nbytes))
                )
    got = send_pieces(comm, sends, recvs)
    out: dict[int, np.ndarray] = {}
    for owner, (nbytes, _) in sources.items():
        if dest[owner] != me:
            continue
        pieces = {h.header.name: h for h in got if h.header.owner == owner}
        for h in pieces.values():
            h.verify()
        out[owner] = scheme.decode({n: h.data for n, h in pieces.items()}, nbytes)
    return out
