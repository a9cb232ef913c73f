"""When to checkpoint: policies that choose the interval between checkpoints (pure, no MPI).

* :class:`Every` ``(n)``: after every ``n``-th step (steps that are multiples of ``n``).
* :class:`EverySeconds` ``(s)``: after about ``s`` seconds of computation since the last
  checkpoint (``EverySeconds.minutes(10)`` for those who think in minutes).
* :class:`Auto` ``(mtbf)``: at Daly's optimum for the measured checkpoint cost ``C`` and the
  job's mean time between failures ``M`` (:func:`daly_interval`), re-estimated as ``C`` and the
  time per step change.

A :class:`~mpickpt.schedule.Schedule` turns a policy into the same decision on every worker.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

from .errors import ConfigError

ENV_MTBF = "MPICKPT_MTBF"  # the job's mean time between failures, for every="auto"
DEFAULT_EVERY = 10  # steps, when nothing else is asked for
UNKNOWN = -math.inf  # a value not measured yet: the element-wise maximum ignores it
GROW = 8  # a time-based interval is at most this many times the previous one (see interval)
STOP_SECONDS = 2.0  # seconds between two stop checks between checkpoints

_UNITS = {
    **{"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0},
    **{"w": 7 * 86400.0, "y": 365 * 86400.0},  # node MTBFs are quoted in years
}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]*)\s*$")


def parse_duration(value: float | int | str, name: str) -> float:
    """Seconds from a number of seconds or a string such as ``"90"``, ``"10min"``, ``"1.5h"``,
    ``"2d"``, ``"5y"`` (365 days). Raises :class:`ConfigError` naming ``name`` unless it is a
    positive duration."""
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION.match(value.lower())
        if m and m.group(2) in _UNITS:
            seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(
            f"{name} must be a positive duration (seconds, or a string like '90s', '10min', "
            f"'1h'), got {value!r}"
        )
    return seconds


def format_duration(seconds: float) -> str:
    """``12.3 s``, ``4.5 min``, ``1.2 h``: what people read quickly."""
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def daly_interval(cost: float, mtbf: float) -> float:
    """Seconds of computation between checkpoints that minimise the expected run time, for a
    checkpoint cost ``cost`` and a mean time between failures ``mtbf`` (Daly 2006, the
    higher-order estimate): ``sqrt(2 C M) (1 + sqrt(C/2M)/3 + (C/2M)/9) - C`` for ``C < 2 M``,
    else ``M``. For ``C << M`` it is Young's ``sqrt(2 C M)`` less ``C``. ``mpickpt plan``
    (:func:`mpickpt.model.interval_for`) recommends this same interval."""
    if cost >= 2 * mtbf:
        return mtbf
    x = cost / (2 * mtbf)
    return math.sqrt(2 * cost * mtbf) * (1 + math.sqrt(x) / 3 + x / 9) - cost


def expected_overhead(tau: float, cost: float, mtbf: float) -> float:
    """``C / tau + (tau + C) / (2 M)``: the expected time lost to checkpoints and to the work
    redone after failures, as a fraction of the computation time (first order; see the module
    docstring)."""
    return cost / tau + (tau + cost) / (2 * mtbf)


@dataclass(frozen=True)
class Estimates:
    """What a schedule knows, the same on every worker after each checkpoint.

    ``checkpoint``: seconds per checkpoint (``C``); ``step``: seconds per step outside
    checkpoints; ``interval``: the last planned interval in steps. ``None``: not known yet.
    """

    checkpoint: float | None = None
    step: float | None = None
    interval: int | None = None


class Policy(ABC):
    """Chooses the interval to the next checkpoint. Pure: the same estimates give the same
    answer, which is what keeps the workers in step (see the module docstring)."""

    #: the job's mean time between failures in seconds, if known (for the expected overhead)
    mtbf: float | None = None

    @abstractmethod
    def interval(self, step: int, est: Estimates) -> int | None:
        """Steps from a checkpoint taken at ``step`` (before that step runs) to the next one;
        ``None`` while the estimates the policy needs are not known yet."""

    def target(self, est: Estimates) -> float | None:
        """The interval in seconds of computation the policy aims at, if it aims at one."""
        return None

    def __repr__(self) -> str:
        return type(self).__name__


class Every(Policy):
    """Checkpoint after every ``n``-th step, at steps that are multiples of ``n`` (the same
    steps after a restart or a recovery)."""

    def __init__(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"every must be a positive number of steps, got {n!r}")
        self.n = n

    def interval(self, step: int, est: Estimates) -> int:
        return self.n - step % self.n

    def __repr__(self) -> str:
        return f"Every({self.n})"


class _Timed(Policy):
    """A policy that aims at a number of seconds, converted to steps with the estimated time
    per step. Until it is known the interval is one step (a probe); after that an interval
    grows at most :data:`GROW`-fold from one checkpoint to the next, so that an estimate taken
    over a few steps (a first step slowed by page faults, say) is checked on an interval not
    much longer than the one it was measured on before it is trusted for a much longer one."""

    def interval(self, step: int, est: Estimates) -> int | None:
        tau = self.target(est)
        if tau is None or est.step is None:
            return None
        n = max(1, round(tau / max(est.step, 1e-9)))
        if est.interval is not None:
            n = min(n, GROW * est.interval)
        return n


class EverySeconds(_Timed):
    """Checkpoint after about ``seconds`` of computation since the last checkpoint (the
    checkpoint's own time not counted). ``seconds`` may be a string such as ``"10min"``."""

    def __init__(self, seconds: float | str, mtbf: float | str | None = None) -> None:
        self.seconds = parse_duration(seconds, "every_seconds")
        self.mtbf = None if mtbf is None else parse_duration(mtbf, "mtbf")

    @classmethod
    def minutes(cls, minutes: float) -> EverySeconds:
        return cls(60.0 * minutes)

    def target(self, est: Estimates) -> float:
        return self.seconds

    def __repr__(self) -> str:
        return f"EverySeconds({self.seconds:g})"


class Auto(_Timed):
    """Checkpoint at Daly's optimum :func:`daly_interval` for the measured checkpoint cost and
    the job's mean time between failures ``mtbf`` (seconds, or a string such as ``"1h"``)."""

    def __init__(self, mtbf: float | str) -> None:
        self.mtbf = parse_duration(mtbf, "mtbf")

    def target(self, est: Estimates) -> float | None:
        if est.checkpoint is None:
            return None
        assert self.mtbf is not None
        return daly_interval(est.checkpoint, self.mtbf)

    def __repr__(self) -> str:
        return f"Auto(mtbf={self.mtbf:g})"
