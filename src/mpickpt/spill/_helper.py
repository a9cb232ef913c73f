"""The spill writer's helper process: maps the rank's segment buffers and writes each
requested version file, or commits a version, replying in order (see :mod:`.writer`). No MPI."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import json
import mmap
import os
import select
import signal
import socket
from typing import Any

import numpy as np

from .directory import commit, write_version_file
from .link import MAX_MESSAGE

_PR_SET_PDEATHSIG = 1  # prctl: the signal this process gets when its parent dies


def _die_with(parent: int) -> None:
    """Be killed when the rank dies (it may be SIGKILLed mid-write), and leave the job's
    termination signals to the rank."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the rank died before the line above took effect
        os._exit(0)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)


class _Client:
    """A connected rank: its socket and the buffers it shared (by the rank's ident)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.maps: dict[int, mmap.mmap] = {}

    def hung_up(self) -> bool:
        """Whether the rank closed its end (or died); its queued requests are then dropped:
        nobody waits for them, and its logical rank may already be another process's."""
        p = select.poll()
        p.register(self.sock, select.POLLHUP)
        return any(ev & (select.POLLHUP | select.POLLERR) for _, ev in p.poll(0))

    def close(self) -> None:
        for m in self.maps.values():
            m.close()
        self.sock.close()


def serve_one(client: _Client) -> bool:
    """Take one request of ``client``, do it and reply; False once the client is gone."""
    try:
        msg, fds, _, _ = socket.recv_fds(client.sock, MAX_MESSAGE, 1)
    except OSError:  # the rank was killed: nothing to report to anyone
        return False
    if not msg:
        return False
    req = json.loads(msg)
    for ident in req["forget"]:  # buffers the rank closed (some it never sent)
        if (old := client.maps.pop(ident, None)) is not None:
            old.close()
    if fds:
        # read-only: the buffer holds the rank's own committed copy, which a recovery rolls
        # back to; nothing in the helper may change it
        client.maps[req["buffer"]] = mmap.mmap(fds[0], max(req["size"], 1), prot=mmap.PROT_READ)
        os.close(fds[0])
    if client.hung_up():
        return False
    try:
        client.sock.send(json.dumps(handle(req, client.maps)).encode())
    except OSError:
        return False
    return True


def serve(first: socket.socket | None, listener: socket.socket | None = None) -> None:
    """Serve the rank of ``first`` or, with ``listener``, every rank that connects, one
    request at a time, until the last one is gone."""
    clients = [_Client(first)] if first is not None else []
    seen = bool(clients)
    while clients or not seen:
        waiting = [c.sock for c in clients] + ([listener] if listener is not None else [])
        ready, _, _ = select.select(waiting, [], [])
        if listener is not None and listener in ready:
            clients.append(_Client(listener.accept()[0]))
            seen = True
        for c in [c for c in clients if c.sock in ready]:
            if not serve_one(c):
                clients.remove(c)
                c.close()


def handle(req: dict[str, Any], maps: dict[int, mmap.mmap]) -> dict[str, Any]:
    """Do one request: write a version file from a mapped buffer, or commit a version (its
    index, then the pruning of old versions: deleting files takes time too). A failure is
    handed to the rank, which decides what it means; what h5py prints while it cleans up a
    file that failed (a full disk: a traceback per object) is not shown."""
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            return {"info": _do(req, maps)}
        except Exception as e:
            return {"error": f"{type(e).__name__}: {e}"[:4000]}
        finally:
            gc.collect()  # the failed file's objects, while their noise is not shown


def _do(req: dict[str, Any], maps: dict[int, mmap.mmap]) -> dict[str, Any]:
    if req.get("op") == "commit":
        commit(
            req["directory"],
            req["version"],
            req["nworkers"],
            req["scheme"],
            req["files"],
            req["keep"],
            req["tag"],
        )
        return {}
    return write_version_file(
        req["directory"],
        req["version"],
        req["rank"],
        np.frombuffer(maps[req["buffer"]], dtype=np.uint8, count=req["nbytes"]),
        nworkers=req["nworkers"],
        scheme_config=req["scheme"],
    )


def main(fd: int, parent: int, mode: str = "pair") -> None:
    """The helper process: serve the rank ``parent`` over the socket ``fd`` (``pair``), or
    the ranks of a node that connect to the listening socket ``fd`` (``listen``)."""
    _die_with(parent)
    with socket.socket(fileno=fd) as sock:
        if mode == "listen":
            serve(None, sock)
        else:
            serve(sock)
