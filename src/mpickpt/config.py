"""Every ``MPICKPT_*`` environment variable, read once into one :class:`Config`.

A malformed value is a :class:`ConfigError` that names the variable, raised where the settings
are first read (before the job does anything). docs/architecture.md's table of the variables
is generated from the bullets below and from the modules that read each field.

- ``MPICKPT_KILL``: ``RANK@STEP[:PHASE],...``: SIGKILL those ``COMM_WORLD`` ranks there (tests,
  demos; the phases are in docs/usage.md).
- ``MPICKPT_PIDDIR``: every rank writes ``rank<N>.pid`` there (and the time of its own kill),
  to kill ranks from outside; the files are removed at a normal end.
- ``MPICKPT_VERBOSE``: ``1`` prints recovery timelines and spill costs on standard error.
- ``MPICKPT_RECOVERY_TIMEOUT``: seconds before a stalled recovery ends the job.
- ``MPICKPT_RANKS_PER_NODE``: declares virtual nodes of k consecutive ranks as failure
  domains (0: the real nodes).
- ``MPICKPT_MAX_ROLLBACKS``: recoveries that may roll back to one version before the job
  stops.
- ``MPICKPT_SPILL_TIMEOUT``: seconds a checkpoint waits for the previous spill before it goes
  on without it.
- ``MPICKPT_SPILL_HELPER``: ``rank`` (default): each rank starts its own spill helper
  process; ``node``: the ranks of a node share one.
- ``MPICKPT_MTBF``: the job's mean time between failures for ``every="auto"`` (seconds, or a
  string like ``6h``); ``mtbf=`` wins over it.
- ``MPICKPT_LOG_LEVEL``: the level of the ``mpickpt`` logger (``DEBUG``, ``INFO``,
  ``WARNING``, ``ERROR``); ``INFO`` unless the application configured logging.
- ``MPICKPT_FRESH``: ``1`` starts over in the spill directory, moving the old versions to
  ``DIR/old-<time>/`` (as ``fresh=True``).
- ``MPICKPT_REPORT``: worker 0 writes the run report (JSON) to this path (as ``report=``).
- ``MPICKPT_INIT_TIMEOUT``: seconds a process may wait in ``MPI_Init`` before it ends the job
  with 74 (0: no bound).
- ``MPICKPT_RUN_DIR``: worker 0 keeps its heartbeat there (set by ``mpickpt run``, which
  watches it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from .errors import ConfigError
from .policies import ENV_MTBF, parse_duration

PREFIX = "MPICKPT_"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ENV_KILL = PREFIX + "KILL"
STEP_PHASES = ("compute", "halo", "checkpoint", "commit")  # phases at a step
ANYTIME = ("recovery", "start", "joined", "idle", "done", "stall", "vanish")  # without a step
PHASES = STEP_PHASES + ANYTIME
Kill = tuple[int, int, str]  # (COMM_WORLD rank, step or -1, phase)


def parse_kills(spec: str) -> tuple[Kill, ...]:
    """``"1@5,2@7:commit,3@recovery"`` -> ``((1, 5, "compute"), (2, 7, "commit"),
    (3, -1, "recovery"))``; :class:`ConfigError` naming ``MPICKPT_KILL`` if malformed."""
    kills = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        try:
            rank, rest = item.split("@")
            step, _, phase = rest.partition(":")
            if step in ANYTIME:
                step, phase = "-1", step
            phase = phase or "compute"
            if phase not in PHASES:
                raise ValueError(phase)
            kills.append((int(rank), int(step), phase))
        except ValueError:
            raise ConfigError(
                f"bad {ENV_KILL} entry {item!r}: use RANK@STEP[:PHASE] with PHASE one of "
                f"{', '.join(PHASES)}, or RANK@PHASE for {', '.join(ANYTIME)}"
            ) from None
    return tuple(kills)


@dataclass(frozen=True)
class Config:
    """The library's settings from the environment (see the module docstring)."""

    kill: tuple[Kill, ...] = ()
    piddir: str = ""
    verbose: bool = False
    recovery_timeout: float = 120.0
    ranks_per_node: int = 0  # 0: failure domains are the nodes
    max_rollbacks: int = 10
    spill_timeout: float = 300.0
    spill_helper: str = "rank"  # or "node"
    mtbf: float | None = None  # seconds
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
            kill=parse_kills(env.get(ENV_KILL, "")),
            piddir=env.get(PREFIX + "PIDDIR", ""),
            verbose=env.get(PREFIX + "VERBOSE", "0") not in ("", "0"),
            recovery_timeout=number("RECOVERY_TIMEOUT", float, 120.0),
            ranks_per_node=int(number("RANKS_PER_NODE", int, 0)),
            max_rollbacks=int(number("MAX_ROLLBACKS", int, 10)),
            spill_timeout=number("SPILL_TIMEOUT", float, 300.0),
            spill_helper=helper,
            mtbf=parse_duration(mtbf, ENV_MTBF)
            if (mtbf := env.get(ENV_MTBF, "").strip())
            else None,
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
