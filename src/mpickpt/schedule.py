"""The schedule: a policy turned into checkpoint steps that are the same on every worker.

**The decision is the same on every worker.** A checkpoint is collective: if one worker
decided to take it after step 41 and another after step 42, both would wait for ever. A
decision taken from each worker's own clock can differ, so no worker ever decides from its
own clock alone. A :class:`Schedule` decides, at each checkpoint, at which *step* the next one
is taken, and it decides from values that are the same on every worker:

1. every worker measures on its own clock how long its previous checkpoint took and how long
   its steps took since then;
2. during the checkpoint, each contributes those measurements *and its current estimates* to
   one element-wise maximum over the workers (:meth:`Schedule.contribution`). The checkpointer
   runs that reduction inside the checkpoint's transaction, before the agreement that commits
   it, so it adds no agreement and no collective between checkpoints, and a checkpoint that
   fails discards it (a collective may return garbage after a failure, never committed);
3. after the commit every worker updates the estimates from the reduced values alone
   (:meth:`Schedule.end`) and derives the next checkpoint step from them. Same inputs, same
   floating-point operations: the same step everywhere.

Because the estimates themselves go through the reduction, a spare promoted after a failure
(which has measured nothing) or a worker whose estimates drifted for any reason adopts the
others' at its first checkpoint; a value nobody knows yet is ``-inf``, which the maximum
ignores. Reduced with a maximum: the time per step (the slowest worker sets the job's pace)
and, negated, the checkpoint cost. The checkpoint ends on every worker at the same moment (its
agreement), so the worker that arrived last measures the least, and what it measures is the
wall time the checkpoint added to the loop; the others' measurements also include waiting for
it. So ``C`` is the *minimum* over the workers.

The price: between checkpoints the decision cannot follow the clock. If steps become much
slower within an interval, that interval lasts longer in seconds than planned; the next one is
planned from the new pace. The same holds for the stop checks below.

**Stop requests** (SIGTERM/SIGUSR1 with a spill) travel in the same reduction, so every
checkpoint checks them for free. Between checkpoints the workers agree on them only every
``stop_seconds`` (default 2 s, converted to steps with the estimated time per step; before
any estimate exists, after 1, 2, 4, 8, ... steps), instead of at every step.

**Expected overhead** (what :class:`Interval` reports) is the first-order model

    H(tau) = C / tau + (tau + C) / (2 M)

as a fraction of the computation time: a checkpoint of cost ``C`` every ``tau`` seconds of
computation, and per failure (rate ``1/M``) the loss of half an interval on average, checkpoint
included. The recovery time itself (``R / M``; here well under a second per failure) is not
counted. ``H`` is smallest at ``tau = sqrt(2 C M)`` (Young); Daly's ``tau`` is slightly
shorter and also holds when ``C`` is not small against ``M``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .errors import ConfigError
from .policies import (
    DEFAULT_EVERY,
    ENV_MTBF,
    STOP_SECONDS,
    UNKNOWN,
    Auto,
    Estimates,
    Every,
    EverySeconds,
    Policy,
    expected_overhead,
    format_duration,
    parse_duration,
)


@dataclass(frozen=True)
class Interval:
    """The decision taken at a checkpoint at step ``start``: the next checkpoint is taken
    before step ``at`` runs (after step ``at - 1``); between them, the workers agree on stop
    requests every ``stop_stride`` steps (``None``: after 1, 2, 4, ... steps)."""

    start: int
    at: int
    stop_stride: int | None
    est: Estimates
    policy: str
    mtbf: float | None = None
    probe: bool = False

    @property
    def steps(self) -> int:
        return self.at - self.start

    @property
    def seconds(self) -> float | None:
        """The planned interval in seconds of computation, if the time per step is known."""
        return None if self.est.step is None else self.steps * self.est.step

    @property
    def overhead(self) -> float | None:
        """:func:`expected_overhead` at this interval, if ``C``, the step time and the MTBF
        are known."""
        tau, c = self.seconds, self.est.checkpoint
        if tau is None or c is None or self.mtbf is None:
            return None
        return expected_overhead(tau, c, self.mtbf)

    def describe(self) -> str:
        what = f"{self.policy}: next checkpoint in {self.steps} step(s)"
        if self.probe:
            what += " (probe: the time per step is not known yet)"
        if self.seconds is not None and self.est.step is not None:
            what += f", ~{format_duration(self.seconds)} at {format_duration(self.est.step)}/step"
        if self.est.checkpoint is not None:
            what += f"; checkpoint cost C = {format_duration(self.est.checkpoint)}"
        if self.overhead is not None and self.mtbf is not None:
            what += (
                f"; MTBF {format_duration(self.mtbf)}: expected overhead "
                f"C/tau + (tau+C)/2M = {100 * self.overhead:.2f} %"
            )
        return what


Clock = Callable[[], float]


class Schedule:
    """One worker's side of a policy: measures, contributes to the reduction at each
    checkpoint, and plans the next checkpoint from the reduced values (module docstring).

    The caller, around each checkpoint of the step loop: :meth:`begin`, the checkpoint (whose
    transaction reduces :meth:`contribution` with an element-wise maximum), then :meth:`end`
    with the reduced values once it is committed; between checkpoints :meth:`due` and
    :meth:`stop_check_due`. :meth:`resume` when the loop (re)starts, e.g. after a recovery.
    ``clock`` is injectable for tests; ``smoothing`` is the weight of a new measurement in the
    exponential average of ``C`` and of the time per step.
    """

    FIELDS = ("checkpoint", "step", "interval", "-measured checkpoint", "measured step", "stop")

    def __init__(
        self,
        policy: Policy,
        *,
        mtbf: float | None = None,
        clock: Clock = time.monotonic,
        smoothing: float = 0.3,
        stop_seconds: float = STOP_SECONDS,
    ) -> None:
        if not 0 < smoothing <= 1:
            raise ConfigError(f"smoothing must be in (0, 1], got {smoothing}")
        self.policy = policy
        self.mtbf = policy.mtbf if policy.mtbf is not None else mtbf
        self.clock = clock
        self.smoothing = smoothing
        self.stop_seconds = stop_seconds
        self.est = Estimates()
        self.interval: Interval | None = None
        self.stop = False  # whether a worker asked to stop, as of the last checkpoint
        self._logged: int | None = None  # the interval last reported by changed()
        # this worker's measurements
        self._since: tuple[float, int] | None = None  # (time, step) of the last checkpoint's end
        self._began = 0.0
        self._measured_checkpoint = UNKNOWN
        self._measured_step = UNKNOWN
        # totals, for summary()
        self.started: float | None = None
        self.checkpoints = 0
        self.checkpoint_seconds = 0.0
        self.stop_checks = 0

    # -- measurement ------------------------------------------------------------------------

    def resume(self) -> None:
        """The loop (re)starts: the time since the last checkpoint (a failure, a recovery, a
        restart) says nothing about the time per step."""
        self._since = None
        if self.started is None:
            self.started = self.clock()

    def begin(self, step: int) -> None:
        """A checkpoint at ``step`` starts: the steps since the last one are measured."""
        now = self.clock()
        self._measured_step = UNKNOWN
        if self._since is not None and step > self._since[1]:
            self._measured_step = (now - self._since[0]) / (step - self._since[1])
        self._began = now

    def contribution(self, stop: bool = False) -> list[float]:
        """This worker's values for the element-wise maximum over the workers (see
        :attr:`FIELDS`; the checkpoint cost negated, so that the maximum takes its minimum)."""
        e = self.est
        return [
            UNKNOWN if e.checkpoint is None else e.checkpoint,
            UNKNOWN if e.step is None else e.step,
            UNKNOWN if e.interval is None else float(e.interval),
            -self._measured_checkpoint if self._measured_checkpoint != UNKNOWN else UNKNOWN,
            self._measured_step,
            1.0 if stop else 0.0,
        ]

    def end(self, step: int, reduced: Sequence[float] | None) -> Interval:
        """The checkpoint at ``step`` is committed; ``reduced`` is the element-wise maximum of
        every worker's :meth:`contribution` (``None``: this worker alone, e.g. without a
        reduction). Updates the estimates from it and plans the next checkpoint."""
        # alone, the values this worker contributed during the checkpoint (before its end)
        values = [float(v) for v in (reduced if reduced is not None else self.contribution())]
        now = self.clock()
        self._measured_checkpoint = now - self._began
        self._since = (now, step)
        self.checkpoints += 1
        self.checkpoint_seconds += now - self._began
        if len(values) != len(self.FIELDS):
            raise ValueError(f"expected {len(self.FIELDS)} reduced values, got {len(values)}")
        old_c, old_s, old_n, neg_c, new_s, stop = values
        self.est = Estimates(
            checkpoint=self._smooth(old_c, -neg_c if neg_c != UNKNOWN else UNKNOWN),
            step=self._smooth(old_s, new_s),
            interval=None if old_n == UNKNOWN else int(old_n),
        )
        self.stop = stop > 0
        self.interval = self._decide(step)
        self.est = replace(self.est, interval=self.interval.steps)
        return self.interval

    def _smooth(self, old: float, new: float) -> float | None:
        if new == UNKNOWN:
            return None if old == UNKNOWN else old
        if old == UNKNOWN:
            return new
        return (1 - self.smoothing) * old + self.smoothing * new

    def _decide(self, step: int) -> Interval:
        n = self.policy.interval(step, self.est)
        probe = n is None
        if n is None:
            n = 1 if self.est.interval is None else self.est.interval
        stride = None
        if self.est.step is not None:
            stride = max(1, round(self.stop_seconds / max(self.est.step, 1e-9)))
        return Interval(
            step, step + max(1, n), stride, self.est, repr(self.policy), self.mtbf, probe
        )

    # -- between checkpoints ----------------------------------------------------------------

    def due(self, step: int) -> bool:
        """Whether to checkpoint once ``step`` is done (before step ``step + 1``)."""
        return self.interval is None or step + 1 >= self.interval.at

    def stop_check_due(self, step: int) -> bool:
        """Whether the workers should agree on stop requests once ``step`` is done."""
        if self.interval is None:
            return True
        done = step + 1 - self.interval.start
        stride = self.interval.stop_stride
        due = (done & (done - 1)) == 0 if stride is None else done % stride == 0
        self.stop_checks += due
        return due

    # -- reporting --------------------------------------------------------------------------

    def changed(self, tolerance: float = 0.1) -> bool:
        """Whether the planned interval differs by more than ``tolerance`` from the one this
        method last said had changed (for logging the chosen interval, not every wobble)."""
        if self.interval is None:
            return False
        n = self.interval.steps
        if self._logged is not None and abs(n - self._logged) <= tolerance * self._logged:
            return False
        self._logged = n
        return True

    def summary(self) -> str:
        """What checkpointing cost this worker's loop so far, and the current estimates."""
        elapsed = 0.0 if self.started is None else self.clock() - self.started
        share = self.checkpoint_seconds / elapsed if elapsed > 0 else 0.0
        e = self.est
        text = (
            f"{self.checkpoints} checkpoint(s) took {self.checkpoint_seconds:.3f} s of "
            f"{elapsed:.3f} s in the loop ({100 * share:.2f} %); {self.stop_checks} stop "
            f"check(s) between checkpoints"
        )
        if e.checkpoint is not None:
            text += f"; C = {e.checkpoint:.6f} s"
        if e.step is not None:
            text += f"; step = {e.step:.6f} s"
        if e.interval is not None:
            text += f"; interval = {e.interval} steps"
        return text


def make_schedule(
    every: int | str | Policy | None = None,
    every_seconds: float | str | None = None,
    mtbf: float | str | None = None,
    **options: Any,
) -> Schedule:
    """The :class:`Schedule` for ``resilient``'s ``every`` (steps, ``"auto"`` or a
    :class:`Policy``), ``every_seconds`` and ``mtbf`` (the runner passes ``MPICKPT_MTBF`` when
    it is not given). Raises :class:`ConfigError` naming the parameter that is wrong."""
    m = None if mtbf is None else parse_duration(mtbf, "mtbf")
    policy: Policy
    if every is not None and every_seconds is not None:
        raise ConfigError(
            f"give either every ({every!r}) or every_seconds ({every_seconds!r}), not both"
        )
    if every_seconds is not None:
        policy = EverySeconds(every_seconds)
    elif every is None:
        policy = Every(DEFAULT_EVERY)
    elif isinstance(every, Policy):
        policy = every
    elif isinstance(every, str) and every.strip().lower() == "auto":
        if m is None:
            raise ConfigError(
                "every='auto' needs the job's mean time between failures: pass mtbf=SECONDS "
                f"(or a string like '6h') or set {ENV_MTBF}"
            )
        policy = Auto(m)
    elif isinstance(every, str) and every.strip().isdigit():
        policy = Every(int(every))
    elif isinstance(every, int) and not isinstance(every, bool):
        policy = Every(every)
    else:
        raise ConfigError(
            "every must be a positive number of steps, 'auto' or a policy "
            f"(mpickpt.policies.Every, EverySeconds, Auto), got {every!r}"
        )
    return Schedule(policy, mtbf=m, **options)
