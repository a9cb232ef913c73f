"""The :class:`Context` a protected function receives: its communicator, its role, the state
it protects and the steps it runs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from mpi4py import MPI

from . import faults
from .errors import Preempted, ProcessFailure
from .log import say, verbose
from .schedule import Schedule

if TYPE_CHECKING:
    from .recovery.transaction import Runtime

T = TypeVar("T")


class _StopRequest:
    """Set by SIGTERM/SIGUSR1 (Slurm's warning before the time limit)."""

    def __init__(self) -> None:
        self.requested = False

    def set(self, signum: int = 0, frame: Any = None) -> None:
        self.requested = True


stop_requested = _StopRequest()


class Context:
    """What a protected function works with: ``comm`` (use it instead of ``COMM_WORLD``),
    ``role`` (``initial``, ``survivor`` or ``recovered``), :meth:`protect` and :meth:`steps`."""

    def __init__(self, runtime: Runtime, role: str, schedule: Schedule) -> None:
        self.runtime = runtime
        self.checkpointer = runtime.ckpt
        self.role = role
        self.schedule = schedule  # when to checkpoint (mpickpt.policies)
        self.comm: MPI.Comm = runtime.ckpt.comm
        self.rank: int = self.comm.Get_rank()
        self.size: int = self.comm.Get_size()

    def protect(self, name: str, obj: T) -> T:
        """Register state under ``name``; after a recovery the saved value comes back
        (arrays restored in place). See :meth:`Checkpointer.protect`."""
        return self.checkpointer.protect(name, obj)

    def __setitem__(self, name: str, value: Any) -> None:
        self.checkpointer[name] = value

    def __getitem__(self, name: str) -> Any:
        return self.checkpointer[name]

    def steps(self, n: int) -> Iterator[int]:
        """Steps ``start..n-1``, where ``start`` follows the restored checkpoint (0 at first).

        Checkpoints when it starts (after a recovery this re-protects at once: the pieces the
        dead held are gone), then when the schedule says so (every ``every`` steps, every
        ``every_seconds``, or ``"auto"``: see :mod:`mpickpt.policies`) and after the last
        step, whose spill (if any) is waited for. On SIGTERM/SIGUSR1 (with a spill) it stops
        with a final checkpoint and spill (:class:`Preempted`), at the next checkpoint or
        stop check.
        """
        ckpt = self.checkpointer
        start = ckpt.step
        self.schedule.resume()
        stop = self._checkpoint(start)
        if self.role in ("survivor", "recovered", "shrunk"):
            self.runtime.timeline.mark(f"re-protected; resuming at step {start}")
            self.runtime.timeline.report(self.rank)
        for step in range(start, n):
            if stop:
                ckpt.flush()
                raise Preempted(f"stopped before step {step} on a signal; state saved")
            faults.maybe_kill("compute", step)
            yield step
            if self.schedule.due(step) or step + 1 == n:
                stop = self._checkpoint(step + 1)
            elif (  # between checkpoints, stop requests are agreed on only every ~2 s
                ckpt.disk is not None and self.schedule.stop_check_due(step) and self._stop_agreed()
            ):
                self._checkpoint(step + 1)
                stop = True
        ckpt.flush()  # a stop asked at the last checkpoint: the run is complete anyway
        if self.rank == 0 and verbose():
            if self.runtime.disk is not None:
                say(f"spill: {self.runtime.disk.summary()}")
            say(f"schedule: {self.schedule.summary()}")

    def _checkpoint(self, step: int) -> bool:
        """Checkpoint before ``step``; the schedule's values travel in the checkpoint's own
        transaction (no extra agreement) and plan the next one, the same on every worker.
        Returns whether a worker asked to stop (only with a spill)."""
        ckpt, schedule = self.checkpointer, self.schedule

        def reduce(comm: MPI.Comm) -> np.ndarray:
            stop = stop_requested.requested and ckpt.disk is not None
            mine = np.array(schedule.contribution(stop), dtype=np.float64)
            out = np.empty_like(mine)
            comm.Allreduce(mine, out, op=MPI.MAX)
            return out

        ckpt.exchange = reduce
        schedule.begin(step)
        ckpt.checkpoint(step)
        plan = schedule.end(step, ckpt.exchanged)
        if self.rank == 0 and verbose() and schedule.changed():
            say(f"checkpoint at step {step}; {plan.describe()}")
        return schedule.stop and ckpt.disk is not None

    def _stop_agreed(self) -> bool:
        """Collective: whether any worker was asked to stop. An agreement, not a reduction:
        it cannot hang when a worker has left for a recovery (it then takes part with 0)."""
        try:
            flags = self.comm.Agree(1 | (0 if stop_requested.requested else 2))
        except MPI.Exception:
            flags = 0
        if not flags & 1:
            raise ProcessFailure("a worker failed")
        return not flags & 2

    def check(self) -> None:
        """Collective: raise :class:`ProcessFailure` if a worker has failed. For long phases
        without communication, so that the others do not compute on for nothing."""
        try:
            alive = self.comm.Agree(1)
        except MPI.Exception:
            alive = 0
        if not alive:
            raise ProcessFailure("a worker failed")
