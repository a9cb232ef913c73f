"""What ended one launch of a supervised job, and what ``mpickpt run`` does next: relaunch or
stop, and with which exit code (the table of ``docs/exit-codes.md``). Pure: no processes, no
MPI; :mod:`.supervisor` gathers the facts and acts.

The supervisor's exit code is the job's outcome: 0 only when the job said that every worker
completed (the heartbeat's ``done``, or the launch's run report) and mpiexec ended with 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import (
    EXIT_APPLICATION,
    EXIT_CONFIG,
    EXIT_LOST_AT_START,
    EXIT_NO_SPARES,
    EXIT_PREEMPTED,
    EXIT_UNRECOVERABLE,
)

# mpiexec's words for a lost node (Open MPI: mpirun lost one of its daemons)
NODE_LOST = re.compile(
    r"lost communication with a remote daemon|returned non-zero exit status .* from launching"
)
# how launchers name a process killed by a signal
SIGNALLED = re.compile(
    r"signal (\d+) \(([A-Za-z ]+)\)|(Segmentation fault)|KILLED BY SIGNAL: (\d+) \(([^)]+)\)"
)
STOPS = {  # codes that end the job: what they mean
    EXIT_APPLICATION: "the application failed (exit 1)",
    EXIT_CONFIG: "a configuration or spill problem (exit 2)",
    EXIT_UNRECOVERABLE: "a loss beyond the redundancy with no spill to fall back to (exit 3)",
}
RELAUNCHES = {  # codes that ask for a relaunch: why
    EXIT_LOST_AT_START: "a process was lost as the job started (exit 74)",
    EXIT_NO_SPARES: "workers lost and no spare left (exit 75)",
}


@dataclass
class Ended:
    """What the supervisor saw of one launch."""

    rc: int  # mpiexec's exit code (negative: it was killed by that signal)
    done: bool = False  # the job said every worker completed
    hung: str = ""  # the supervisor killed it, and why
    stop_requested: bool = False  # the supervisor was asked to stop (and told the job)
    node_lost: bool = False  # mpiexec said it lost a node
    signals: list[str] = field(default_factory=list)  # signals mpiexec reported
    progressed: bool = False  # the job reported progress (a heartbeat)
    furthest: int = -1  # the furthest step it reported


@dataclass
class Verdict:
    relaunch: bool
    code: int  # the supervisor's exit code if it stops here
    cause: str  # one line: what ended the launch
    kind: str = ""  # the cause's category, to tell the same failure coming back


def signals_in(text: str) -> list[str]:
    """The signals named in mpiexec's output, e.g. ``["signal 11 (Segmentation fault)"]``."""
    found: list[str] = []
    for m in SIGNALLED.finditer(text.replace("\x00", "")):
        if m.group(1):
            name = f"signal {m.group(1)} ({m.group(2).strip()})"
        elif m.group(4):
            name = f"signal {m.group(4)} ({m.group(5)})"
        else:
            name = "signal 11 (Segmentation fault)"
        if name not in found:
            found.append(name)
    return found


def judge(e: Ended, can_requeue: bool) -> Verdict:
    """Relaunch or stop after the launch ``e`` (the module docstring; ``can_requeue``: exit 76
    is left to the caller, a job script that requeues, instead of relaunched here)."""
    if e.done and e.rc == 0:
        return Verdict(False, 0, "done: every worker completed", "done")
    if e.stop_requested:
        code = e.rc if e.rc > 0 else 128 + 15  # 143: as a process ended by SIGTERM
        return Verdict(False, code, f"stopped on request (exit {code})", "stopped")
    if e.hung:
        return Verdict(True, EXIT_APPLICATION, e.hung, "hung")
    if e.rc in STOPS:
        return Verdict(False, e.rc, STOPS[e.rc], f"exit{e.rc}")
    if e.rc in RELAUNCHES:
        return Verdict(True, e.rc, RELAUNCHES[e.rc], f"exit{e.rc}")
    if e.rc == EXIT_PREEMPTED:
        cause = "stopped on a signal after a final spill (exit 76)"
        return Verdict(not can_requeue, EXIT_PREEMPTED, cause, "exit76")
    return _died(e)


def _died(e: Ended) -> Verdict:
    """The job ended without the result and without a code of the table: it died."""
    how = f": {', '.join(e.signals)}" if e.signals else ""
    if e.node_lost:
        return Verdict(True, EXIT_NO_SPARES, f"mpiexec lost a node{how}", "node")
    if e.rc == 0:
        if not e.progressed and not e.signals:
            return Verdict(
                False,
                EXIT_APPLICATION,
                "exit 0, but the job never reported progress or completion: is the program "
                "protected by mpickpt (import mpickpt, @mpickpt.resilient)?",
                "silent",
            )
        cause = f"exit 0 without the result (every process died, or mpiexec lost a node){how}"
        return Verdict(True, EXIT_APPLICATION, cause, "died")
    if e.rc < 0:
        return Verdict(True, EXIT_APPLICATION, f"mpiexec was killed by signal {-e.rc}", "killed")
    return Verdict(True, e.rc, f"mpiexec exited with {e.rc}{how}", "died")


def repeated(before: tuple[Ended, Verdict] | None, now: tuple[Ended, Verdict]) -> Verdict | None:
    """The verdict that stops a failure coming back: the same kind of failure as the launch
    before, after running steps again but none beyond the step it reached (a crash replayed
    from the checkpoint). A launch that ended before its first step, a loss at start-up and a
    lost node (a first relaunch may still include a node that Slurm has not marked down yet)
    are left to the relaunch budget."""
    if (
        before is None
        or not now[1].relaunch
        or now[1].kind in (f"exit{EXIT_LOST_AT_START}", "node")
    ):
        return None
    (e0, v0), (e1, v1) = before, now
    if v0.kind != v1.kind or not e1.progressed or e1.furthest > e0.furthest:
        return None
    return Verdict(
        False,
        EXIT_APPLICATION,
        f"{v1.cause}, again at step {e1.furthest} after a relaunch: the failure comes back (a "
        "crash in the program?); not relaunching",
        v1.kind,
    )


def backoff(relaunch: int, base: float, cap: float = 60.0) -> float:
    """Seconds to wait before relaunch number ``relaunch`` (1, 2, ...): none before the
    first, then ``base`` doubling, at most ``cap``."""
    return 0.0 if relaunch <= 1 else min(cap, base * 2 ** (relaunch - 2))
