"""What mpickpt tells the user: recovery timelines and verbose notes on standard error."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from .config import config


def verbose() -> bool:
    """Whether ``MPICKPT_VERBOSE`` asks for timings on standard error."""
    return config().verbose


def say(message: str) -> None:
    """One line on standard error, prefixed ``mpickpt:``."""
    print(f"mpickpt: {message}", file=sys.stderr, flush=True)


@dataclass
class Timeline:
    """What a recovery did and when (``time.time()`` stamps), for the demo and the benchmark.

    With ``MPICKPT_VERBOSE=1`` the first worker prints it once the loop has resumed.
    """

    events: list[tuple[float, str]] = field(default_factory=list)

    def mark(self, what: str) -> None:
        self.events.append((time.time(), what))

    def format(self) -> str:
        t0 = self.events[0][0] if self.events else 0.0
        return "\n".join(f"  +{t - t0:8.3f} s  {what}" for t, what in self.events)

    def report(self, rank: int) -> None:
        if rank == 0 and self.events and verbose():
            say(f"recovery timeline (t0 = {self.events[0][0]:.6f}):\n{self.format()}")
