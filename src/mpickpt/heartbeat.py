"""The heartbeat: a small JSON file that worker 0 keeps up to date in the run directory
(``MPICKPT_RUN_DIR``, set by ``mpickpt run``), for a supervisor that watches the job from
outside (:mod:`mpickpt.supervisor`). No MPI here.

It says where the job is (``phase``: ``steps``, ``recovering``, ``after`` the loop, ``done``
once every worker completed), the step and the total, the last committed version, the
recoveries so far, where this launch resumed from (``resumed``: ``{"tier": "start"}`` or the
tier, version and step it restored), the mean seconds per step and the longest gap between two
steps (a checkpoint and its spill wait included), from which the supervisor derives how long
no progress means a hang (:class:`Watch`). Written atomically (a temporary file renamed) at
most every :data:`INTERVAL` seconds, and at once after the first step of each entry into the
loop and when the phase changes (a version committed is said with the next write).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any

FILE = "heartbeat.json"
INTERVAL = 0.5  # seconds between two writes while the steps run
HANG_FLOOR = 20.0  # the automatic hang bound of a watcher is never shorter
HANG_FACTOR = 10.0  # ... and is this many times the longest gap between two steps seen


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
        first = self.first is not None and step == self.first[0]  # the incarnation's first
        self.last_step = (step + 1, now)
        self.state["step"] = step + 1
        # at most every INTERVAL, whatever the checkpoint rate: a write costs worker 0 about a
        # millisecond, which every worker waits for at the next checkpoint (one per commit
        # cost a job checkpointing every 20 ms 10 % of its time)
        if first or now - self.written >= INTERVAL:
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


class Watch:
    """The heartbeats of one launch: progress, where it resumed from, when it looks hung."""

    def __init__(self, run_dir: str, hang_timeout: float, start_timeout: float) -> None:
        self.run_dir = run_dir
        self.hang_timeout, self.start_timeout = hang_timeout, start_timeout  # 0: automatic
        self.beat: dict[str, Any] | None = None
        self.key: tuple[Any, ...] | None = None
        self.moved = time.monotonic()  # the last time the job showed progress (or started)
        self.first_step: float | None = None  # monotonic time of its first step
        self.resumed: dict[str, Any] | None = None
        self.furthest = -1

    def look(self) -> None:
        beat = read(self.run_dir)
        if beat is None:
            return
        key = tuple(beat.get(k) for k in ("pid", "phase", "step", "version", "recoveries"))
        if key != self.key:
            self.key, self.beat, self.moved = key, beat, time.monotonic()
            self.furthest = max(self.furthest, int(beat.get("step") or 0))
            if self.resumed is None and beat.get("resumed"):
                self.resumed = beat["resumed"]
            start = (self.resumed or {}).get("step", 0)
            if self.first_step is None and int(beat.get("step") or 0) > start:
                self.first_step = self.moved

    def bound(self) -> float:
        """Seconds without progress that count as a hang in the current phase."""
        beat = self.beat or {}
        phase = beat.get("phase")
        if phase not in ("steps", "recovering"):  # start-up, restart, after the loop
            return self.start_timeout
        steady = self.hang_timeout or max(
            HANG_FLOOR,
            HANG_FACTOR * max(beat.get("longest_gap_s") or 0, beat.get("step_s") or 0),
        )
        if phase == "recovering":  # the recovery has its own watchdog; allow it
            return steady + float(beat.get("recovery_timeout_s") or 0)
        return steady

    def hung(self) -> str:
        """Why the launch counts as hung now, or ``""``."""
        idle, bound = time.monotonic() - self.moved, self.bound()
        if idle <= bound:
            return ""
        beat = self.beat or {}
        where = f"at step {beat.get('step')} ({beat.get('phase')})" if beat else "at start-up"
        return f"no progress for {idle:.1f} s {where}: hung (the bound is {bound:g} s)"

    def status(self, number: int, recoveries_before: int) -> str:
        beat = self.beat
        if beat is None:
            return f"launch {number}: starting"
        total = beat.get("total")
        rate = f", {1 / beat['step_s']:.1f} steps/s" if beat.get("step_s") else ""
        version = beat.get("version")
        ckpt = f", last checkpoint v{version}" if version is not None else ""
        return (
            f"launch {number}: step {beat.get('step')}/{total}{rate}{ckpt}, "
            f"{recoveries_before + int(beat.get('recoveries') or 0)} recoveries"
        )


OFF = Heartbeat(None)  # what the processes other than worker 0 beat: nothing is written
_current: Heartbeat | None = None


def current() -> Heartbeat:
    """This process's heartbeat (one job per process), from ``MPICKPT_RUN_DIR``."""
    global _current
    if _current is None:
        from .config import config

        _current = Heartbeat(config().run_dir or None, config().recovery_timeout)
    return _current
