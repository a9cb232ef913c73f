"""The connection of a rank's spill writer to its helper process (see :mod:`.writer`).

Two kinds of helper. ``rank``: each rank starts its own, over a socket pair. ``node``: the
ranks of a node share one, found by an abstract Unix socket name made of the spill directory,
the user and the MPI job (``PMIX_NAMESPACE``). The first rank that binds the name starts the
helper, hands it the listening socket and connects to it like the others. Only the helper
holds the listening socket, so when it dies the name goes with it and the next rank to
(re)connect starts a new one.

The helper dies with the rank that started it (``PR_SET_PDEATHSIG``). The writes the other
ranks had queued there then fail, which the disk tier sees as a failed spill of that version
on every rank (never as a version silently missing).
"""

from __future__ import annotations

import errno
import hashlib
import os
import select
import socket
import subprocess
import sys
import time

MAX_MESSAGE = 1 << 16
# the helper does no linear algebra: no BLAS thread pool (it halves its start-up CPU time)
_ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# the helper's command: argv = socket fd, the rank's pid, the directory holding mpickpt,
# and "pair" (the fd is this rank's connection) or "listen" (a node's listening socket)
_BOOT = (
    "import sys\n"
    "if sys.argv[3] not in sys.path: sys.path.insert(0, sys.argv[3])\n"
    "from mpickpt.spill._helper import main\n"
    "main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[4])\n"
)
HELPERS = ("rank", "node")


def node_address(directory: str) -> bytes:
    """The abstract socket name of the node helper of ``directory`` in this job."""
    job = os.environ.get("PMIX_NAMESPACE", "")
    key = f"{os.path.realpath(directory)}\0{os.getuid()}\0{job}".encode()
    return b"\0mpickpt-spill-" + hashlib.sha256(key).hexdigest()[:32].encode()


class HelperLink:
    """A rank's socket to a helper process, which it may have started itself (``proc``)."""

    def __init__(self, directory: str, helper: str = "rank") -> None:
        if helper not in HELPERS:
            raise ValueError(f"spill helper must be one of {HELPERS}, got {helper!r}")
        self.directory, self.helper = directory, helper
        self.proc: subprocess.Popen[bytes] | None = None  # a helper this rank started
        self.sock = self._connect()

    def _spawn(self, fd: int, mode: str) -> None:
        # the helper imports this very package, wherever the rank found it
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, str(fd), str(os.getpid()), root, mode],
            pass_fds=[fd],
            stdin=subprocess.DEVNULL,
            env={**os.environ, **_ONE_THREAD},
        )

    def _own(self) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._spawn(theirs.fileno(), "pair")
        finally:
            theirs.close()
        return ours

    def _connect(self) -> socket.socket:
        if self.helper == "rank":
            return self._own()
        address = node_address(self.directory)
        for _ in range(100):  # the name may be between a dying helper and a new one
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                sock.connect(address)
                return sock
            except OSError as e:
                sock.close()
                if e.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                    raise
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                listener.bind(address)
            except OSError as e:
                listener.close()
                if e.errno != errno.EADDRINUSE:
                    raise
                time.sleep(0.01)  # another rank is starting the helper: connect to it
                continue
            try:
                listener.listen(64)
                self._spawn(listener.fileno(), "listen")
            finally:
                listener.close()  # only the helper may hold the name (see the docstring)
        return self._own()  # the node's helper neither answers nor can be started: our own

    def alive(self) -> bool:
        """Whether the socket is open and a helper started here has not exited."""
        return self.sock.fileno() >= 0 and (self.proc is None or self.proc.poll() is None)

    def status(self) -> str:
        """How the helper ended, for error messages."""
        code = self.proc.poll() if self.proc is not None else None
        return "exited" if code is None else f"exited (status {code})"

    def send(self, message: bytes, fds: list[int]) -> None:
        socket.send_fds(self.sock, [message], fds)

    def recv(self, timeout: float | None) -> bytes | None:
        """The next reply if one comes within ``timeout`` (None if not); ``b""``: lost."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return None
        try:
            return self.sock.recv(MAX_MESSAGE)
        except OSError:
            return b""

    def close(self, wait: bool = True) -> None:
        """Close the socket; wait for a per-rank helper to exit. A node helper started here
        goes on for the other ranks and ends with this process."""
        self.sock.close()
        if self.proc is None or not wait:
            return
        if self.helper == "node":
            self.proc.poll()
            return
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - a helper stuck in the kernel
            self.proc.kill()
