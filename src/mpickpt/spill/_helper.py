"""The spill writer's helper process: maps the rank's segment buffers and writes each
requested version file, replying in order (see :mod:`.writer`). No MPI."""

from __future__ import annotations

import contextlib
import ctypes
import json
import mmap
import os
import signal
import socket
from typing import Any

import numpy as np

from .directory import write_version_file
from .writer import _MAX_MESSAGE

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


def serve(sock: socket.socket) -> None:
    """Write each requested segment and reply, until the rank closes the socket."""
    maps: dict[int, mmap.mmap] = {}
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, _MAX_MESSAGE, 1)
        except ConnectionResetError:  # the rank was killed: nothing to report to anyone
            return
        if not msg:
            return
        req = json.loads(msg)
        for ident in req["forget"]:
            maps.pop(ident).close()
        if fds:
            maps[req["buffer"]] = mmap.mmap(fds[0], max(req["size"], 1))
            os.close(fds[0])
        try:
            info = write_version_file(
                req["directory"],
                req["version"],
                req["rank"],
                np.frombuffer(maps[req["buffer"]], dtype=np.uint8, count=req["nbytes"]),
                nworkers=req["nworkers"],
                scheme_config=req["scheme"],
            )
            reply: dict[str, Any] = {"info": info}
        except Exception as e:  # handed to the rank, which decides what a failed write means
            reply = {"error": f"{type(e).__name__}: {e}"[:4000]}
        sock.send(json.dumps(reply).encode())


def main(fd: int, parent: int) -> None:
    """The helper process: serve the rank ``parent`` over the socket ``fd``."""
    _die_with(parent)
    with socket.socket(fileno=fd) as sock, contextlib.suppress(ConnectionError):
        serve(sock)  # a reset connection: the rank died (it was killed), nothing to say
