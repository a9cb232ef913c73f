"""The background spill writer: one helper process per rank writes its committed versions.

A thread in the rank's own interpreter is not enough: h5py holds the interpreter lock while it
writes, and every time the writer thread wants the lock back it waits for the loop's thread to
let go of it (up to the 5 ms switch interval, dozens of times per file). Measured here, a 27 ms
write took 160-270 ms beside a loop busy in Python, long enough for the next checkpoint to
wait for it. A process has its own interpreter: the loop pays one copy of its segment into
shared memory and a message.

The rank and its writer share the segment buffers as ``memfd`` files (passed once, over the
socket) and talk over a ``SOCK_SEQPACKET`` Unix socket: a request per write, a reply per write,
in order. The writer dies with its rank (``PR_SET_PDEATHSIG``), ignores the job's termination
signals (the rank decides when to stop; a final spill is written by the rank itself) and exits
when the socket closes. Linux only, like ULFM.
"""

from __future__ import annotations

import json
import mmap
import os
import select
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import SpillError
from ..segment import SegmentView
from .directory import commit
from .format import make_private_dir, rank_file

_MAX_MESSAGE = 1 << 16
# the helper does no linear algebra: no BLAS thread pool (it halves its start-up CPU time)
_ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# the helper's command: argv = socket fd, the rank's pid, the directory holding mpickpt
_BOOT = (
    "import sys\n"
    "if sys.argv[3] not in sys.path: sys.path.insert(0, sys.argv[3])\n"
    "from mpickpt.spill._helper import main\n"
    "main(int(sys.argv[1]), int(sys.argv[2]))\n"
)


@dataclass
class SpillJob:
    """One submitted version of one rank; :meth:`wait` for its result."""

    version: int
    path: str
    info: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None
    _writer: SpillWriter | None = field(default=None, repr=False)
    _done: bool = field(default=False, repr=False)
    _seen: bool = field(default=False, repr=False)

    def done(self) -> bool:
        """Whether the write has finished (successfully or not)."""
        if not self._done and self._writer is not None:
            self._writer._collect(0)
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


class _Buffer:
    """A segment buffer in shared memory (an anonymous ``memfd``), mapped in both processes."""

    def __init__(self, ident: int, size: int) -> None:
        self.ident, self.size = ident, size
        self.fd = os.memfd_create(f"mpickpt-spill-{ident}", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, max(size, 1))
            self.map = mmap.mmap(self.fd, max(size, 1))
        except BaseException:
            os.close(self.fd)
            raise

    def array(self, n: int) -> np.ndarray:
        return np.frombuffer(self.map, dtype=np.uint8, count=n)

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)


class _BufferPool:
    """Segment buffers for reuse: a warm copy costs far less than one into fresh memory."""

    def __init__(self) -> None:
        self.free: list[_Buffer] = []  # buffers of finished writes
        self.forget: list[int] = []  # buffers closed here that the helper still has mapped
        self.last = 0

    def take(self, n: int) -> _Buffer:
        """A buffer of at least ``n`` bytes: a free one if it is not much larger, else new."""
        fits = [b for b in self.free if n <= b.size <= 2 * n]
        if fits:
            buf = min(fits, key=lambda b: b.size)
            self.free.remove(buf)
            return buf
        self.close()  # at most queue_size + 1 buffers exist at once
        self.last += 1
        return _Buffer(self.last, n)

    def close(self) -> None:
        for b in self.free:
            self.forget.append(b.ident)
            b.close()
        self.free.clear()


class SpillWriter:
    """Writes one rank's segments to ``DIR/v<version>/rank<rank>.h5`` in a helper process.

    Writes happen one at a time, in submission order. :meth:`submit` copies the segment into
    shared memory, so the caller may overwrite its buffers as soon as ``submit`` returns; at
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
    ) -> None:
        if keep < 1:
            raise SpillError(f"keep={keep}: the spill must keep at least one version")
        if not 0 <= rank < nworkers:
            raise SpillError(f"rank {rank} is not in 0..{nworkers - 1}")
        self.directory = os.fspath(directory)
        self.rank = rank
        self.nworkers = nworkers
        self.scheme_config = dict(scheme_config)
        self.tag: str | None = None  # the run's tag, recorded in every index
        self.keep = keep
        self.queue_size = queue_size
        self._jobs: dict[int, SpillJob] = {}
        self._pending: deque[tuple[SpillJob, _Buffer]] = deque()
        self._pool = _BufferPool()
        self._closed = False
        make_private_dir(self.directory)
        self._start()

    # -- the helper process -----------------------------------------------------------------

    def _start(self) -> None:
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._known: set[int] = set()  # buffers the helper has mapped
        self._pool.forget = []
        # the helper imports this very package, wherever the rank found it
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(theirs.fileno()), str(os.getpid()), root],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                env={**os.environ, **_ONE_THREAD},
            )
        finally:
            theirs.close()

    def _lost(self) -> None:
        """The helper is gone: fail every pending write."""
        code = self._proc.poll()
        for job, buf in self._pending:
            job._finish(None, self._error(job, f"the spill writer process exited (status {code})"))
            self._pool.free.append(buf)
        self._pending.clear()
        self._sock.close()

    def _error(self, job: SpillJob, why: str) -> SpillError:
        return SpillError(
            f"spill of version {job.version} (rank {self.rank}) to {job.path} failed: {why}",
            [job.path],
        )

    def _collect(self, timeout: float | None) -> bool:
        """Take the helper's next reply if one comes within ``timeout``; True if one did."""
        if not self._pending:
            return False
        ready, _, _ = select.select([self._sock], [], [], timeout)
        if not ready:
            return False
        try:
            msg = self._sock.recv(_MAX_MESSAGE)
        except OSError:
            msg = b""
        if not msg:
            self._lost()
            return True
        reply = json.loads(msg)
        job, buf = self._pending.popleft()
        self._pool.free.append(buf)
        error = self._error(job, reply["error"]) if "error" in reply else None
        job._finish(reply.get("info"), error)
        return True

    # -- the API ----------------------------------------------------------------------------

    def submit(self, version: int, segment: np.ndarray | SegmentView) -> SpillJob:
        """Queue ``segment`` (this rank's, of ``version``) for writing; returns at once.

        The segment (an array of bytes, or a :class:`SegmentView`) is copied to shared memory
        before this returns, so the caller's buffers may change right after. Waits only while
        ``queue_size + 1`` earlier writes are still pending.
        """
        if self._closed:
            raise SpillError("the spill writer is closed")
        while len(self._pending) > self.queue_size:
            self._collect(None)
        if self._sock.fileno() < 0 or self._proc.poll() is not None:
            # the helper died: take the replies it sent, fail the rest, and start a new one
            while self._pending:
                self._collect(None)
            self._sock.close()
            self._start()
        src = segment if isinstance(segment, SegmentView) else np.frombuffer(segment, np.uint8)
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
            "forget": self._pool.forget,
        }
        fds = [] if buf.ident in self._known else [buf.fd]
        self._pending.append((job, buf))
        try:
            socket.send_fds(self._sock, [json.dumps(request).encode()], fds)
        except OSError:
            self._lost()
        else:
            self._known.add(buf.ident)
            self._pool.forget = []
        self._jobs[version] = job
        for old in [v for v in self._jobs if v < version - 64]:
            del self._jobs[old]
        return job

    def busy(self) -> bool:
        """Whether a submit now would have to wait for an earlier write."""
        return len(self._pending) > self.queue_size

    def job(self, version: int) -> SpillJob:
        """The job of a submitted version (recent versions only)."""
        try:
            return self._jobs[version]
        except KeyError:
            raise SpillError(f"version {version} was not submitted to this spill writer") from None

    def wait(
        self, version: int, timeout: float | None = None, *, raise_errors: bool = True
    ) -> bool:
        """Wait until ``version`` is written and flushed; see :meth:`SpillJob.wait`."""
        return self.job(version).wait(timeout, raise_errors=raise_errors)

    def flush(self, *, raise_errors: bool = True) -> bool:
        """Wait for every submitted write; True if all succeeded.

        Writes whose result was already collected by :meth:`wait` are not reported again.
        """
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

    def close(self) -> None:
        """Finish pending writes and stop the helper (errors are left in the jobs)."""
        if self._closed:
            return
        self._closed = True
        while self._pending:
            self._collect(None)
        self._sock.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - a helper stuck in the kernel
            self._proc.kill()
        self._pool.close()

    def __enter__(self) -> SpillWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
