"""What mpickpt tells the user: the ``mpickpt`` logger, errors on standard error, and the
recovery :class:`Timeline`.

Messages go through the standard :mod:`logging` module, logger ``mpickpt``; every record
carries the process's rank in the job (``record.rank``, ``?`` outside MPI). If the
application configured no logging, one line per message goes to standard error as
``mpickpt: [rank R] message``, at level ``INFO`` (``MPICKPT_LOG_LEVEL`` changes it);
otherwise the records go to the application's handlers. By default a job logs one line per
recovery (on the lowest worker), per restart from a spill and per stop on a signal.
``MPICKPT_VERBOSE=1`` also prints each recovery's detailed timeline.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .config import config
from .launch import launched_rank

NAME = "mpickpt"


class MpickptWarning(UserWarning):
    """Base class of mpickpt's warnings; shown as one log line, without a source line."""


def job_rank() -> str:
    """This process's rank in the job, from the launcher's environment (no MPI needed)."""
    rank = launched_rank()
    return "?" if rank is None else str(rank)


class _RankFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.rank = job_rank()
        return True


def logger() -> logging.Logger:
    """The ``mpickpt`` logger, set up on first use (see the module docstring)."""
    log = logging.getLogger(NAME)
    if not any(isinstance(f, _RankFilter) for f in log.filters):
        log.addFilter(_RankFilter())
        if config().log_level:
            log.setLevel(config().log_level)
        if not logging.getLogger().handlers and not log.handlers:  # no logging set up
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("mpickpt: [rank %(rank)s] %(message)s"))
            log.addHandler(handler)
            log.propagate = False
            if log.level == logging.NOTSET:
                log.setLevel(logging.INFO)
    return log


def verbose() -> bool:
    """Whether ``MPICKPT_VERBOSE`` asks for timings on standard error."""
    return config().verbose


def say(message: str) -> None:
    """One line on standard error, prefixed ``mpickpt:`` (errors that end the job)."""
    print(f"mpickpt: {message}", file=sys.stderr, flush=True)


def warn(
    message: str, category: type[MpickptWarning] = MpickptWarning, stacklevel: int = 2
) -> None:
    """Warn through the :mod:`warnings` filters (``ignore`` and ``error`` work as usual), shown
    as one log line without a source line; ``warnings.showwarning`` is left alone."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn(message, category, stacklevel=stacklevel + 1)
    for w in caught:
        logger().warning("warning: %s", w.message)


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


@dataclass
class Timeline:
    """What a recovery did and when (``time.time()`` stamps), for the log, the run report,
    the demo and the benchmark. Printed relative to the failure's detection."""

    events: list[tuple[float, str]] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)  # the dead workers
    step: int | None = None  # the step this process was at when the failure hit
    action: str = ""  # what the recovery did (rebuilt, reloaded, continued...)

    def mark(self, what: str) -> None:
        self.events.append((time.time(), what))

    def did(self, action: str, event: str = "") -> None:
        """What the recovery does (for the one-line summary), marked as ``event``."""
        self.action = action
        self.mark(event or action)

    def format(self) -> str:
        t0 = self.events[0][0] if self.events else 0.0
        return "\n".join(f"  +{t - t0:8.3f} s  {what}" for t, what in self.events)

    def seconds(self, until: str = "recovered") -> float:
        """From the failure's detection to the first event ``until`` (or the last event)."""
        if not self.events:
            return 0.0
        end = next((t for t, w in self.events if w == until), self.events[-1][0])
        return end - self.events[0][0]

    def summary(self, resume: int) -> str:
        """The one line a recovery logs."""
        who = f"worker(s) {self.lost}" if self.lost else "a process"
        at = f" at step {self.step}" if self.step is not None else ""
        did = f"{self.action} " if self.action else ""
        return f"{who} lost{at}; {did}in {self.seconds():.2f} s; resuming at step {resume}"

    def as_dict(self, resume: int) -> dict[str, Any]:
        """For the run report: times in seconds after the failure's detection."""
        t0 = self.events[0][0] if self.events else 0.0
        return {
            "lost": self.lost,
            "step": self.step,
            "resumed_at": resume,
            "action": self.action,
            "seconds": round(self.seconds(), 6),
            "detected_utc": _utc(t0),
            "timeline": [[round(t - t0, 6), what] for t, what in self.events],
        }

    def close(self, rank: int, resume: int) -> dict[str, Any]:
        """The recovery is over, the loop resumes at ``resume``: the first worker logs its
        one line (and, verbose, the timeline). Returns the record for the run report."""
        self.print_timeline(rank)
        if rank == 0:
            logger().info(self.summary(resume))
        return self.as_dict(resume)

    def print_timeline(self, rank: int) -> None:
        if rank == 0 and self.events and verbose():
            t0 = _utc(self.events[0][0])
            say(f"recovery timeline (t0 = {t0}, the failure's detection):\n{self.format()}")


_TIMELINE = re.compile(r"recovery timeline \(t0 = ([^,]+), [^)]*\):\n((?:  \+.*\n?)+)")


def parse_timelines(text: str) -> list[list[tuple[float, str]]]:
    """Every verbose timeline in ``text`` (standard error), as (``time.time()``, event)."""
    out = []
    for m in _TIMELINE.finditer(text):
        t0 = datetime.fromisoformat(m.group(1)).timestamp()
        events = []
        for line in m.group(2).rstrip().splitlines():
            dt, what = line.strip().lstrip("+").split(" s  ", 1)
            events.append((t0 + float(dt), what))
        out.append(events)
    return out
