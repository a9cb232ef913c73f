"""The background spill writer: a helper process writes a rank's committed versions.

A thread in the rank's own interpreter is not enough: h5py holds the interpreter lock while it
writes, and every time the writer thread wants the lock back it waits for the loop's thread to
let go of it (up to the 5 ms switch interval, dozens of times per file). Measured here, a 27 ms
write took 160-270 ms beside a loop busy in Python, long enough for the next checkpoint to
wait for it. A process has its own interpreter: the loop pays a message, and no copy when the
rank makes its own copy of the segment in the buffer it hands over (:meth:`SpillWriter.buffer`).

The rank and its writer share the segment buffers as ``memfd`` files (passed once, over the
socket) and talk over a ``SOCK_SEQPACKET`` Unix socket: a request per write, a reply per write,
in order. The helper is the rank's own, or with ``helper="node"`` one per node shared by its
ranks (:mod:`.link`). It dies with the rank that started it (``PR_SET_PDEATHSIG``), ignores the
job's termination signals (the rank decides when to stop; a final spill is written by the rank
itself) and exits when its last rank closes the socket. Linux only, like ULFM.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import SpillError
from ..segment import SegmentView
from .buffers import BufferPool, SharedBuffer
from .directory import commit
from .format import make_private_dir, rank_file
from .link import HelperLink


@dataclass
class SpillJob:
    """One submitted version of one rank; :meth:`wait` for its result."""

    version: int
    path: str
    info: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None
    commit: bool = False  # an index to write, not a file
    _writer: _HelperQueue | None = field(default=None, repr=False)
    _done: bool = field(default=False, repr=False)
    _seen: bool = field(default=False, repr=False)

    def done(self) -> bool:
        """Whether the write has finished (successfully or not)."""
        while not self._done and self._writer is not None and self._writer._collect(0):
            pass  # take the replies that are there, up to this job's
        return self._done

    def wait(self, timeout: float | None = None, *, raise_errors: bool = True) -> bool:
        """Wait for the write; True once the file is complete and flushed to disk.

        On failure raise the :class:`SpillError` of the write, or with ``raise_errors=False``
        return False (the error stays in :attr:`error`). False too if ``timeout`` runs out.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._done and self._writer is not None:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._writer._collect(left) and left == 0.0:
                return False
        self._seen = True
        if self.error is not None:
            if raise_errors:
                raise self.error
            return False
        return True

    def _finish(self, info: dict[str, Any] | None, error: BaseException | None) -> None:
        self.info, self.error, self._done, self._writer = info or {}, error, True, None


class _HelperQueue:
    """The requests of one rank in flight in its helper, in order, with their buffers."""

    def __init__(self, directory: str, rank: int, queue_size: int, helper: str) -> None:
        self.directory, self.rank = directory, rank
        self.queue_size, self.helper = queue_size, helper
        self._pending: deque[tuple[SpillJob, SharedBuffer | None]] = deque()
        self._pool = BufferPool()
        self._lent: SharedBuffer | None = None  # see buffer()
        self._closed = False
        self._start()

    def _start(self) -> None:
        self._link = HelperLink(self.directory, self.helper)
        self._known: set[int] = set()  # buffers the helper has mapped
        self._pool.forget = []

    @property
    def _proc(self) -> Any:
        """The helper process this rank started (None: it uses another rank's)."""
        return self._link.proc

    def _lost(self) -> None:
        """The helper is gone: fail every pending write."""
        why = f"the spill writer process {self._link.status()}"
        for job, buf in self._pending:
            job._finish(None, self._error(job, why))
            self._pool.release(buf)
        self._pending.clear()
        self._link.close(wait=False)

    def _error(self, job: SpillJob, why: str) -> SpillError:
        what = "commit" if job.commit else "spill"
        return SpillError(
            f"{what} of version {job.version} (rank {self.rank}) to {job.path} failed: {why}",
            [job.path],
        )

    def _collect(self, timeout: float | None) -> bool:
        """Take the helper's next reply if one comes within ``timeout``; True if one did."""
        if not self._pending:
            return False
        msg = self._link.recv(timeout)
        if msg is None:
            return False
        if not msg:
            self._lost()
            return True
        reply = json.loads(msg)
        job, buf = self._pending.popleft()
        self._pool.release(buf)
        error = self._error(job, reply["error"]) if "error" in reply else None
        job._finish(reply.get("info"), error)
        return True

    def _send(self, job: SpillJob, buf: SharedBuffer | None, request: dict[str, Any]) -> None:
        fds = [] if buf is None or buf.ident in self._known else [buf.fd]
        request["forget"] = [i for i in self._pool.forget if i in self._known]
        self._known.difference_update(self._pool.forget)
        self._pending.append((job, buf))
        try:
            self._link.send(json.dumps(request).encode(), fds)
        except OSError:
            self._lost()
        else:
            if buf is not None:
                self._known.add(buf.ident)
            self._pool.forget = []

    def _ready(self) -> None:
        """Wait while the queue is full; start a new helper if it died."""
        if self._closed:
            raise SpillError("the spill writer is closed")
        while self.busy():
            self._collect(None)
        if not self._link.alive():
            # the helper died: take the replies it sent, fail the rest, and start a new one
            while self._pending:
                self._collect(None)
            self._link.close(wait=False)
            self._start()

    def buffer(self, nbytes: int) -> np.ndarray:
        """A shared buffer of ``nbytes`` for the rank's own copy of its next segment: a
        :meth:`submit` of that very array then hands it to the helper without a copy.

        The array is lent: the caller may write it until it submits it, and must keep it
        unchanged while it is submitted (the helper reads it). The next call takes it back,
        so the buffer of the previous copy is reused once the helper is done with it; while
        the helper still writes it, the new copy goes to another buffer."""
        old, self._lent = self._lent, None
        if old is not None:
            old.lent = False
            if all(b is not old for _, b in self._pending):
                self._pool.free.append(old)
        buf = self._pool.take(nbytes)
        buf.lent = True
        self._lent = buf
        return buf.array(nbytes)

    def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the pending requests (their results are kept)."""
        deadline = time.monotonic() + timeout
        while self._pending and self._collect(max(0.0, deadline - time.monotonic())):
            pass

    def busy(self) -> bool:
        """Whether a submit now would have to wait for an earlier write (commits, which
        take no buffer and little time, do not count). Takes the replies already there first:
        a write given up on (timed out) stops counting once the helper has finished it."""
        while self._pending and self._collect(0):
            pass
        return sum(not job.commit for job, _ in self._pending) > self.queue_size


class SpillWriter(_HelperQueue):
    """Writes one rank's segments to ``DIR/v<version>/rank<rank>.h5`` in a helper process.

    Writes happen one at a time, in submission order. :meth:`submit` copies the segment into
    shared memory, so the caller may overwrite its buffers as soon as ``submit`` returns,
    unless the segment is already there (an array of :meth:`buffer`: no copy at all); at
    most ``queue_size + 1`` writes are pending (``submit`` waits for the oldest beyond that).
    Buffers are reused by later submits of the same or somewhat smaller size (a warm copy costs
    far less than one into fresh memory), so the writer keeps that memory until :meth:`close`.
    If the helper process dies, the pending writes fail and the next submit starts a new one.

    The MPI wiring (every worker has a writer; the index is committed once every rank's file
    is flushed) is :class:`mpickpt.spill.tier.DiskTier`.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        rank: int,
        nworkers: int,
        scheme_config: Mapping[str, Any],
        keep: int = 2,
        *,
        queue_size: int = 1,
        helper: str = "rank",
    ) -> None:
        if keep < 1:
            raise SpillError(f"keep={keep}: the spill must keep at least one version")
        if not 0 <= rank < nworkers:
            raise SpillError(f"rank {rank} is not in 0..{nworkers - 1}")
        self.nworkers = nworkers
        self.scheme_config = dict(scheme_config)
        self.tag: str | None = None  # the run's tag, recorded in every index
        self.keep = keep
        self._jobs: dict[int, SpillJob] = {}
        make_private_dir(os.fspath(directory))
        super().__init__(os.fspath(directory), rank, queue_size, helper)

    # -- the API ----------------------------------------------------------------------------

    def submit(self, version: int, segment: np.ndarray | SegmentView) -> SpillJob:
        """Queue ``segment`` (this rank's, of ``version``) for writing; returns at once.

        The segment (an array of bytes, or a :class:`SegmentView`) is copied to shared memory
        before this returns, so the caller's buffers may change right after. Waits only while
        ``queue_size + 1`` earlier writes are still pending.
        """
        self._ready()
        src = segment if isinstance(segment, SegmentView) else np.frombuffer(segment, np.uint8)
        lent = self._lent
        if lent is not None and isinstance(src, np.ndarray) and lent.holds(src):
            buf = lent  # the rank's own copy is already in shared memory: no copy
        else:
            buf = self._pool.take(src.nbytes)
            data = buf.array(src.nbytes)
            if isinstance(src, SegmentView):
                src.read_into(0, data)
            else:
                np.copyto(data, src)
            del data  # no view may outlive the mapping
        job = SpillJob(version, rank_file(self.directory, version, self.rank), _writer=self)
        request = {
            "directory": self.directory,
            "version": version,
            "rank": self.rank,
            "nworkers": self.nworkers,
            "scheme": self.scheme_config,
            "buffer": buf.ident,
            "size": buf.size,
            "nbytes": src.nbytes,
        }
        self._send(job, buf, request)
        self._jobs[version] = job
        for old in [v for v in self._jobs if v < version - 64]:
            del self._jobs[old]
        return job

    def commit_later(self, version: int, files_info: Sequence[Mapping[str, Any]]) -> SpillJob:
        """:meth:`commit` in the helper, after the writes before it (one rank only): the
        index and the deleting of old versions cost the loop nothing. Wait for the job (or
        :meth:`flush`) to know that ``version`` is complete on disk."""
        self._ready()
        path = os.path.join(self.directory, f"v{version}")
        job = SpillJob(version, path, commit=True, _writer=self)
        request = {
            "op": "commit",
            "directory": self.directory,
            "version": version,
            "nworkers": self.nworkers,
            "scheme": self.scheme_config,
            "files": [dict(i) for i in files_info],
            "keep": self.keep,
            "tag": self.tag,
        }
        self._send(job, None, request)
        return job

    def job(self, version: int) -> SpillJob:
        """The job of a submitted version (recent versions only)."""
        try:
            return self._jobs[version]
        except KeyError:
            raise SpillError(f"version {version} was not submitted to this spill writer") from None

    def flush(self, *, raise_errors: bool = True) -> bool:
        """Wait for every submitted write and commit; True if all succeeded.

        Writes whose result was already collected by :meth:`SpillJob.wait` are not reported
        again.
        """
        while self._pending:
            self._collect(None)
        ok = True
        for job in list(self._jobs.values()):
            if not job._seen:
                ok = job.wait(raise_errors=raise_errors) and ok
        return ok

    def info(self, version: int) -> dict[str, Any]:
        """This rank's index entry for a written ``version`` (gather these for commit)."""
        job = self.job(version)
        job.wait()
        return dict(job.info)

    def commit(self, version: int, files_info: Sequence[Mapping[str, Any]]) -> None:
        """Write the index of ``version`` and prune to ``keep`` versions (one rank only)."""
        shape = (self.nworkers, self.scheme_config)
        commit(self.directory, version, *shape, files_info, self.keep, self.tag)

    def close(self, timeout: float | None = None) -> None:
        """Finish pending writes (for at most ``timeout`` seconds) and stop the helper (errors
        are left in the jobs)."""
        if self._closed:
            return
        self._closed = True
        if timeout is None:
            while self._pending:
                self._collect(None)
        else:
            self.drain(timeout)
        self._link.close()
        if self._lent is not None:
            self._lent.lent = False
            self._pool.free.append(self._lent)
            self._lent = None
        self._pool.close()

    def __enter__(self) -> SpillWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
