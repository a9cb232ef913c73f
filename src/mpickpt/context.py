"""The :class:`Context` a protected function receives: its communicator, its role, the state
it protects and the steps it runs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from mpi4py import MPI

from . import faults
from .errors import Preempted, ProcessFailure
from .log import say, verbose

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

    def __init__(self, runtime: Runtime, role: str, every: int) -> None:
        self.runtime = runtime
        self.checkpointer = runtime.ckpt
        self.role = role
        self.every = every
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

        Checkpoints when it starts (after a recovery it re-protects at once instead: only the
        pieces the dead held are sent again), then after every ``every``-th step and after
        the last one, whose spill (if any) is waited for. On SIGTERM/SIGUSR1 (with a spill) it
        stops at the next checkpoint, after a final spill (:class:`Preempted`).
        """
        ckpt = self.checkpointer
        start = ckpt.step
        if self.role in ("survivor", "recovered"):  # the committed version is still held
            ckpt.protect_again(start)  # but for the pieces lost with the dead: send those
        else:
            ckpt.checkpoint(start)
        if self.role in ("survivor", "recovered", "shrunk"):
            self.runtime.timeline.mark(f"re-protected; resuming at step {start}")
            self.runtime.timeline.report(self.rank)
        for step in range(start, n):
            faults.maybe_kill("compute", step)
            yield step
            due = (step + 1) % self.every == 0 or step + 1 == n
            # a stop request is agreed on at checkpoints only: an agreement per step costs
            stop = due and ckpt.disk is not None and self._stop_agreed()
            if due:
                ckpt.checkpoint(step + 1)
            if stop:
                ckpt.flush()
                raise Preempted(f"stopped after step {step} on a signal; state saved")
        ckpt.flush()
        if self.runtime.disk is not None and self.rank == 0 and verbose():
            say(f"spill: {self.runtime.disk.summary()}")

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
