"""Piece exchange over MPI for a rebuild, the commit agreement (``run_and_agree``) and request
bookkeeping; the checkpoint stream itself is in :mod:`mpickpt.stream`. Every function here is
collective over ``comm`` and raises ``MPI.Exception`` on a peer failure; callers turn that into
:class:`~mpickpt.errors.ProcessFailure`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

import numpy as np
from mpi4py import MPI

from .errors import ProcessFailure
from .memstore import MemStore, PieceHeader, StoredPiece
from .planning import RebuildSources
from .schemes import Scheme
from .tags import TAG_REBUILD

CHUNK = 1 << 20  # bytes per message: large enough for bandwidth, small enough to bound staging
T = TypeVar("T")


def spans(size: int, chunk: int) -> list[tuple[int, int]]:
    """``(offset, length)`` of the consecutive chunks of at most ``chunk`` bytes that cover
    ``size`` bytes: the messages of a piece, or the blocks of a pipeline."""
    return [(a, min(chunk, size - a)) for a in range(0, size, chunk)]


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


def acknowledged(comm: MPI.Comm) -> set[int]:
    """The ranks of ``comm`` this process acknowledged as failed (``Ack_failed``)."""
    failed = comm.Get_failed()
    return set(MPI.Group.Translate_ranks(failed, range(failed.Get_size()), comm.Get_group()))


def agree_over_failures(
    comm: MPI.Comm, flag: int, retries: int = 32
) -> tuple[int, set[int]] | None:
    """``comm.Agree(flag)`` among the processes left, acknowledging failures as they come (an
    agreement raises while a failure is not acknowledged): the agreed flags and the ranks known
    failed when they were agreed (a process that leaves right after the agreement is not among
    them). ``None`` if it never settles."""
    for _ in range(retries):
        try:
            comm.Ack_failed()
            dead = acknowledged(comm)
            return int(comm.Agree(flag)), dead
        except MPI.Exception:
            continue
    return None


def run_and_agree(comm: MPI.Comm, step: Callable[[], T], what: str) -> T:
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


def send_pieces(
    comm: MPI.Comm,
    sends: Sequence[tuple[int, StoredPiece]],
    recvs: Sequence[tuple[int, PieceHeader]],
) -> list[StoredPiece]:
    """Point-to-point transfer of whole pieces: ``sends`` are ``(dest, piece)``, ``recvs`` are
    ``(source, header)`` in the order the source sends them. Returns the received pieces."""
    reqs: list[MPI.Request] = []
    got = []
    with keep_on_failure(reqs):
        for src, h in recvs:
            buf = np.empty(h.length, dtype=np.uint8)
            reqs.append(comm.Irecv([buf, MPI.BYTE], src, TAG_REBUILD))
            got.append(StoredPiece(h, buf))
        for dest, held in sends:
            reqs.append(comm.Isend([held.data, MPI.BYTE], dest, TAG_REBUILD))
        MPI.Request.Waitall(reqs)
    return got


def fetch_segment(
    comm: MPI.Comm,
    store: MemStore,
    scheme: Scheme,
    version: int,
    sources: dict[int, RebuildSources],
    dest: dict[int, int],
) -> dict[int, np.ndarray]:
    """Move the pieces named in ``sources`` to the rank ``dest[owner]`` and decode them there;
    return the segments decoded on this rank. Checksums are verified before decoding."""
    if scheme.cross_owner:  # xorset: the survivors' committed copies take part
        from .setstream import fetch_sets  # it builds on this module

        return fetch_sets(comm, store, version, sources, dest)
    me = comm.Get_rank()
    sends: list[tuple[int, StoredPiece]] = []
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


class MessageCounter:
    """Point-to-point messages of a checkpoint stream on ``comm``, counted in ``stats`` (the
    run report's messages and bytes per rank)."""

    comm: MPI.Comm
    stats: dict[str, float]

    def _send(self, buf: Any, dest: int, tag: int) -> MPI.Request:
        self.stats["messages_sent"] += 1
        self.stats["bytes_sent"] += buf.nbytes
        return self.comm.Isend([buf, MPI.BYTE], dest, tag)

    def _recv(self, buf: np.ndarray, src: int, tag: int) -> MPI.Request:
        self.stats["messages_received"] += 1
        self.stats["bytes_received"] += buf.nbytes
        return self.comm.Irecv([buf, MPI.BYTE], src, tag)
