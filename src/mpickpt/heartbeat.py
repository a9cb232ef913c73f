"""The heartbeat: a small JSON file that worker 0 keeps up to date in the run directory
(``MPICKPT_RUN_DIR``, set by ``mpickpt run``), for a supervisor that watches the job from
outside (:mod:`mpickpt.supervisor`). No MPI here.

It says where the job is (``phase``: ``steps``, ``recovering``, ``after`` the loop, ``done``
once every worker completed), the step and the total, the last committed version, the
recoveries so far, where this launch resumed from (``resumed``: ``{"tier": "start"}`` or the
tier, version and step it restored), the mean seconds per step and the longest gap between two
steps (a checkpoint and its spill wait included), from which the supervisor derives how long
no progress means a hang. Written atomically (a temporary file renamed) at most every
:data:`INTERVAL` seconds, and at once when the phase changes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any

FILE = "heartbeat.json"
INTERVAL = 0.5  # seconds between two writes while the steps run


class Heartbeat:
    """Worker 0's heartbeat in ``directory`` (``None``: nothing is written)."""

    def __init__(self, directory: str | None, recovery_timeout: float = 0.0) -> None:
        self.path = os.path.join(directory, FILE) if directory else None
        self.state: dict[str, Any] = {
            "pid": os.getpid(),
            "phase": "steps",
            "step": 0,
            "total": None,
            "version": None,
            "recoveries": 0,
            "resumed": None,
            "step_s": None,
            "longest_gap_s": 0.0,
            "recovery_timeout_s": recovery_timeout,
        }
        self.written = 0.0  # monotonic time of the last write
        self.last_step: tuple[int, float] | None = None  # (step, monotonic time) last seen
        self.first: tuple[int, float] | None = None  # (step, time) the loop started at

    def begin(self, start: int, total: int, resumed: Mapping[str, Any], recoveries: int) -> None:
        """The step loop (re)starts at ``start`` of ``total``."""
        now = time.monotonic()
        self.first = self.last_step = (start, now)
        if self.state["resumed"] is None:  # the first entry of this launch says where from
            self.state["resumed"] = dict(resumed)
        self.state.update(phase="steps", step=start, total=total, recoveries=recoveries)
        self._write(now)

    def step(self, step: int) -> None:
        """Step ``step`` is done (the next to run is ``step + 1``)."""
        now = time.monotonic()
        if self.last_step is not None:
            gap = now - self.last_step[1]
            self.state["longest_gap_s"] = max(self.state["longest_gap_s"], round(gap, 6))
        if self.first is not None and step + 1 > self.first[0]:
            self.state["step_s"] = round((now - self.first[1]) / (step + 1 - self.first[0]), 6)
        self.last_step = (step + 1, now)
        self.state["step"] = step + 1
        if now - self.written >= INTERVAL:
            self._write(now)

    def committed(self, version: int) -> None:
        """A checkpoint committed ``version`` (written with the next step's heartbeat)."""
        self.state["version"] = version

    def phase(self, phase: str) -> None:
        """``recovering``, ``after`` (the loop ended) or ``done``: written at once."""
        self.state["phase"] = phase
        self.last_step = None  # the time spent outside the loop is no step's
        self._write(time.monotonic())

    def _write(self, now: float) -> None:
        if self.path is None:
            return
        self.written = now
        data = {**self.state, "time": time.time()}
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(data, f)
            os.replace(tmp, self.path)
        except OSError:  # a full or lost run directory must not end the job
            self.path = None


def read(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The heartbeat in ``directory``, or ``None`` if there is none (yet) or it is unreadable."""
    try:
        with open(os.path.join(directory, FILE)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


OFF = Heartbeat(None)  # what the processes other than worker 0 beat: nothing is written
_current: Heartbeat | None = None


def current() -> Heartbeat:
    """This process's heartbeat (one job per process), from ``MPICKPT_RUN_DIR``."""
    global _current
    if _current is None:
        from .config import config

        _current = Heartbeat(config().run_dir or None, config().recovery_timeout)
    return _current
