"""One launch of a supervised job: mpiexec in its own session, its standard error passed
through and its tail kept (to read mpiexec's messages), its processes found, dumped and killed.
No MPI here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

STDERR_TAIL = 65536  # bytes of mpiexec's standard error kept to read its messages
PR_SET_PDEATHSIG = 1  # prctl: the signal this process gets when its parent dies


class Launch:
    """One mpiexec of the job, in its own session: its standard error is passed through and
    its tail kept, to read mpiexec's messages."""

    def __init__(self, number: int, cmd: list[str], env: dict[str, str]) -> None:
        self.number, self.cmd = number, cmd
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.tail = bytearray()
        self.reader = threading.Thread(target=self._pass_stderr, daemon=True)
        self.reader.start()

    def _pass_stderr(self) -> None:
        assert self.proc.stderr is not None
        fd, out = self.proc.stderr.fileno(), sys.stderr.buffer
        for chunk in iter(lambda: os.read(fd, 65536), b""):
            out.write(chunk)
            out.flush()
            self.tail += chunk
            del self.tail[:-STDERR_TAIL]

    def stderr(self) -> str:
        self.reader.join(timeout=5)
        return self.tail.decode(errors="replace")

    def pids(self) -> list[int]:
        """Every process of this launch still here: those of its session (on this host)."""
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.getsid(int(entry)) == self.proc.pid:
                        found.append(int(entry))
                except OSError:
                    continue
        return found

    def kill(self) -> None:
        """SIGKILL every process of the launch (also one stopped, or left by mpiexec)."""
        for pid in [self.proc.pid, *self.pids()]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):  # a process stuck in the kernel
            self.proc.wait(timeout=30)


def dump_stacks(job: Launch, path: Path) -> str:
    """The Python stacks of the launch's processes on this host, with py-spy when installed;
    what was done, in words."""
    spy = shutil.which("py-spy")
    if spy is None:
        return "py-spy is not installed: no stacks dumped"
    with open(path, "w") as f:
        for pid in job.pids():
            f.write(f"--- pid {pid}\n")
            f.flush()
            try:
                subprocess.run(
                    [spy, "dump", "--pid", str(pid)], stdout=f, stderr=f, timeout=10, check=False
                )
            except subprocess.TimeoutExpired:
                f.write("(py-spy timed out)\n")
    return f"stacks in {path}"


def _die_with_parent() -> None:
    """In the child, before mpiexec runs: SIGKILL when the supervisor dies (Linux), so that a
    supervisor killed from outside does not leave its job running unwatched."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
