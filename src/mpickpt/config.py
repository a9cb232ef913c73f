"""Every ``MPICKPT_*`` environment variable, read once into one :class:`Config`.

- ``MPICKPT_KILL`` (used by :mod:`.faults`): ``RANK@STEP[:PHASE],...``, SIGKILL ranks there
  (tests, demos).
- ``MPICKPT_PIDDIR`` (:mod:`.faults`): write ``rank<N>.pid`` there, to kill ranks from outside.
- ``MPICKPT_VERBOSE`` (:mod:`.log`): recovery timelines and spill costs on standard error.
- ``MPICKPT_RECOVERY_TIMEOUT`` (:mod:`.recovery.watchdog`): seconds before a stalled recovery
  ends the job (default 120).
- ``MPICKPT_RANKS_PER_NODE`` (:mod:`.domains`): virtual nodes of k consecutive ranks.
- ``MPICKPT_SPILL_TIMEOUT`` (:mod:`.spill.tier`): seconds a checkpoint waits for the previous
  spill before it goes on without it (default 300).
- ``MPICKPT_SPILL_HELPER`` (:mod:`.spill.link`): ``rank`` (default), a helper process per
  rank writes its spill; ``node``, one per node, shared by the node's ranks.
- ``MPICKPT_MTBF`` (:mod:`.runner`, for :mod:`.schedule`): the job's mean time between
  failures for ``every="auto"`` (seconds, or a string like ``6h``).
- ``MPICKPT_MAX_ROLLBACKS`` (:mod:`.recovery.transaction`): how many recoveries may roll back
  to one version before the job stops (default 10).
- ``MPICKPT_LOG_LEVEL`` (:mod:`.log`): the level of the ``mpickpt`` logger (``DEBUG``,
  ``INFO``, ``WARNING``, ``ERROR``); default ``INFO`` unless the application configured
  logging.
- ``MPICKPT_FRESH`` (:mod:`.runner`): ``1`` starts over in the spill directory, moving the old
  versions aside (as ``fresh=True``).
- ``MPICKPT_REPORT`` (:mod:`.report`): write the run report (JSON) to this path (as
  ``report=``).
- ``MPICKPT_INIT_TIMEOUT`` (:mod:`.startup`): seconds a process may wait in ``MPI_Init``
  before it ends the job with 74 (default 40; 0: wait forever).
- ``MPICKPT_RUN_DIR`` (:mod:`.heartbeat`): worker 0 keeps its heartbeat there (set by
  ``mpickpt run``, which watches it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from .errors import ConfigError

PREFIX = "MPICKPT_"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class Config:
    """The library's settings from the environment (see the module docstring)."""

    kill: str = ""
    piddir: str = ""
    verbose: bool = False
    recovery_timeout: float = 120.0
    ranks_per_node: int = 0  # 0: failure domains are the nodes
    max_rollbacks: int = 10
    spill_timeout: float = 300.0
    spill_helper: str = "rank"  # or "node"
    mtbf: str = ""  # parsed by the schedule, which names the variable if it is malformed
    log_level: str = ""  # "": INFO, or the application's logging configuration
    fresh: bool = False
    report: str = ""
    init_timeout: float = 40.0
    run_dir: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        """Parse ``env``; :class:`ConfigError` naming the variable if a value is malformed."""

        def number(name: str, kind: type, default: float, zero: bool = False) -> float:
            raw = env.get(PREFIX + name, "")
            if raw == "":
                return default
            try:
                value = kind(raw)
            except ValueError:
                value = None
            if value is None or value < 0 or (value == 0 and not zero):
                what = "a number >= 0" if zero else "a positive number"
                raise ConfigError(f"{PREFIX}{name} must be {what}, got {raw!r}")
            return float(value)

        level = env.get(PREFIX + "LOG_LEVEL", "").strip().upper()
        if level and level not in LEVELS:
            raise ConfigError(
                f"{PREFIX}LOG_LEVEL must be one of {', '.join(LEVELS)}, got {level!r}"
            )
        helper = env.get(PREFIX + "SPILL_HELPER", "").strip().lower() or "rank"
        if helper not in ("rank", "node"):
            raise ConfigError(f"{PREFIX}SPILL_HELPER must be rank or node, got {helper!r}")
        return cls(
            kill=env.get(PREFIX + "KILL", ""),
            piddir=env.get(PREFIX + "PIDDIR", ""),
            verbose=env.get(PREFIX + "VERBOSE", "0") not in ("", "0"),
            recovery_timeout=number("RECOVERY_TIMEOUT", float, 120.0),
            ranks_per_node=int(number("RANKS_PER_NODE", int, 0)),
            max_rollbacks=int(number("MAX_ROLLBACKS", int, 10)),
            spill_timeout=number("SPILL_TIMEOUT", float, 300.0),
            spill_helper=helper,
            mtbf=env.get(PREFIX + "MTBF", "").strip(),
            log_level=level,
            fresh=env.get(PREFIX + "FRESH", "0") not in ("", "0"),
            report=env.get(PREFIX + "REPORT", ""),
            init_timeout=number("INIT_TIMEOUT", float, 40.0, zero=True),
            run_dir=env.get(PREFIX + "RUN_DIR", ""),
        )


@cache
def config() -> Config:
    """This process's settings, read from the environment on first use."""
    return Config.from_env(os.environ)
