"""The :class:`Context` a protected function receives: its communicator, its role, the state
it protects and the steps it runs."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from mpi4py import MPI

from . import faults, heartbeat
from .errors import ConfigError, Preempted, ProcessFailure
from .log import MpickptWarning, say, verbose
from .schedule import Schedule
from .segment import fingerprint_diff
from .transport import run_and_agree

if TYPE_CHECKING:
    from .recovery.transaction import Job

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
    ``role``, ``restored``, :meth:`protect` and :meth:`steps`.

    The function is entered once per *incarnation* of this worker. ``role`` says why:

    - ``initial``: the job's start with nothing saved (or a recovery before the first
      checkpoint committed: everyone starts again); ``restored`` is False.
    - ``survivor``: this worker lived through another's failure and rolls back to the last
      committed checkpoint; ``restored`` is True (False if nothing was committed yet).
    - ``recovered``: a spare promoted in a dead worker's place, its state rebuilt from the
      others' RAM; ``restored`` as for a survivor.
    - ``restarted``: a new job resumed from the spill directory; ``restored`` is True.
    - ``shrunk``: the job goes on with fewer workers (``redistribute``); ``protect`` hands back
      what the hook made of the saved states; ``restored`` is True.

    ``restored`` is True when :meth:`protect` hands back saved values in this incarnation
    (arrays copied in place into the ones given), False when it keeps the values given.
    """

    def __init__(self, job: Job, role: str, schedule: Schedule) -> None:
        self.job = job
        self.checkpointer = job.ckpt
        self.role = role
        self.schedule = schedule  # when to checkpoint (mpickpt.policies)
        # the application's own duplicate (its receives cannot take the library's messages);
        # whatever is derived from it is revoked when a worker leaves for a recovery
        self.comm: MPI.Intracomm = job.comms.root(job.ckpt.comm)
        self.rank: int = self.comm.Get_rank()
        self.size: int = self.comm.Get_size()
        self.restored: bool = bool(self.checkpointer.restored)
        self._started = False  # the first checkpoint of this incarnation was taken
        self.beat = heartbeat.current() if self.rank == 0 else heartbeat.OFF

    def track(self, comm: MPI.Comm) -> MPI.Comm:
        """Put ``comm`` (made by a library, or from ``COMM_WORLD``) into ``ctx.comm``'s
        family: it is revoked when a worker leaves for a recovery, so that nobody stays
        blocked on it, freed after the recovery, and what is derived from it (in Python, or
        duplicated in C) joins too. Returns it as a recording communicator (same handle).
        Communicators derived from ``ctx.comm`` need no call (see docs/frameworks.md)."""
        return self.job.comms.track(comm)

    def protect(self, name: str, obj: T, *, replace: bool = False) -> T:
        """Register state under ``name``; after a recovery the saved value comes back
        (arrays restored in place). See :meth:`Checkpointer.protect`.

        Protect everything before :meth:`steps` starts: a value protected later would not come
        back after a recovery (the function is re-entered and protects again from the start),
        so that is a :class:`ConfigError`. Inside the loop, change a protected value that is
        not updated in place with ``ctx[name] = value``."""
        if self._started:
            raise ConfigError(
                f"ctx.protect({name!r}) called after ctx.steps started; protect every entry "
                f"before ctx.steps (inside the loop, rebind a value with ctx[{name!r}] = value)"
            )
        return self.checkpointer.protect(name, obj, replace=replace)

    def __setitem__(self, name: str, value: Any) -> None:
        self.checkpointer[name] = value

    def __getitem__(self, name: str) -> Any:
        return self.checkpointer[name]

    def steps(self, n: int) -> Iterator[int]:
        """Steps ``start..n-1``, where ``start`` follows the restored checkpoint (0 at first).

        Checkpoints when it starts (after a recovery it re-protects at once instead: only the
        pieces the dead held are sent again), then when the schedule says so (every ``every``
        steps, every ``every_seconds``, or ``"auto"``: see :mod:`mpickpt.policies`) and after
        the last step, whose spill (if any) is waited for. On SIGTERM/SIGUSR1 (with a spill) it
        stops with a final checkpoint and spill (:class:`Preempted`), at the next checkpoint or
        stop check.
        """
        ckpt = self.checkpointer
        start = ckpt.step
        self._started = True
        if self.role == "restarted":
            self._compare_with_spill()
            if self.job.completed and start >= n:
                return  # a finished run: its final state is restored, nothing to compute
        self.schedule.resume()
        self.beat.begin(start, n, self.job.resumed, self.job.recoveries)
        stop = False
        if self.role in ("survivor", "recovered"):  # the committed version is still held
            ckpt.reprotect(start)  # but for the pieces lost with the dead: send those
            # no reduction ran: plans may differ (a promoted spare has none), so every worker
            # checkpoints after the next step, where they agree on the next plan
            self.schedule.interval = None
        else:
            stop = self._checkpoint(start)
        if self.job.resuming:  # whatever the role: "initial" too, when nothing was committed
            self.job.timeline.mark(f"re-protected; resuming at step {start}")
            self.job.recovered(self.rank, start)
        for step in range(start, n):
            if stop:
                ckpt.flush()
                disk = self.job.disk
                where = disk.directory if disk is not None else "the spill"
                raise Preempted(f"stopped before step {step} on a signal; saved in {where}")
            faults.maybe_kill("compute", step)
            self.job.at_step = step
            yield step
            if self.schedule.due(step) or step + 1 == n:
                _warn_replaced(ckpt.state.unreferenced())
                stop = self._checkpoint(step + 1)
            elif (  # between checkpoints, stop requests are agreed on only every ~2 s
                ckpt.disk is not None and self.schedule.stop_check_due(step) and self._stop_agreed()
            ):
                self._checkpoint(step + 1)
                stop = True
            self.beat.step(step)
        ckpt.flush()  # a stop asked at the last checkpoint: the run is complete anyway
        self.beat.phase("after")
        if self.rank == 0 and verbose():
            if self.job.disk is not None:
                say(f"spill: {self.job.disk.summary()}")
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
        self.beat.committed(ckpt.version)
        plan = schedule.end(step, ckpt.exchanged)
        if self.rank == 0 and verbose() and schedule.changed():
            say(f"checkpoint at step {step}; {plan.describe()}")
        return schedule.stop and ckpt.disk is not None

    def _compare_with_spill(self) -> None:
        """Collective: the same :class:`ConfigError` on every worker if the state protected
        now is not the one the spill was written with (another computation's directory)."""
        ckpt, comm = self.checkpointer, self.comm
        saved = ckpt.saved_protected
        mine = [] if saved is None else fingerprint_diff(saved, ckpt.state.declared)
        everyone = run_and_agree(comm, lambda: comm.allgather(mine), "comparing with the spill")
        lines = list(dict.fromkeys(f"  - {x}" for part in everyone for x in part))
        if lines:
            more = f"\n  - ... and {len(lines) - 6} more" if len(lines) > 6 else ""
            disk = self.job.disk
            where = disk.directory if disk is not None else "the spill"
            raise ConfigError(
                f"the state protected now differs from the one saved in {where}:\n"
                + "\n".join(lines[:6])
                + f"{more}\nthe directory belongs to another computation: use another "
                "directory, or fresh=True (MPICKPT_FRESH=1) to start over (the old versions "
                "are moved aside)"
            )

    def _stop_agreed(self) -> bool:
        """Collective: whether any worker was asked to stop. An agreement, not a reduction:
        it cannot hang when a worker has left for a recovery (it then takes part with 0)."""
        try:
            flags = self.checkpointer.comm.Agree(1 | (0 if stop_requested.requested else 2))
        except MPI.Exception:
            flags = 0
        if not flags & 1:
            raise ProcessFailure("a worker failed")
        return not flags & 2

    def check(self) -> None:
        """Collective: raise :class:`ProcessFailure` if a worker has failed. For long phases
        without communication, so that the others do not compute on for nothing."""
        try:
            alive = self.checkpointer.comm.Agree(1)  # where a leaving worker agrees
        except MPI.Exception:
            alive = 0
        if not alive:
            raise ProcessFailure("a worker failed")


_replaced: set[str] = set()  # the names warned about, once per process


def _warn_replaced(names: list[str]) -> None:
    """Warn once per name that a protected array is referenced by nothing but mpickpt: the
    sign of ``u = new`` without ``ctx["u"] = u``, after which checkpoints save the old array
    and a recovery silently restores stale values."""
    for name in sorted(set(names) - _replaced):
        _replaced.add(name)
        warnings.warn(
            f"the protected array {name!r} is referenced by nothing but mpickpt: if your code "
            f"replaced it ({name} = a new array), checkpoints save the old one and a recovery "
            f"gives a wrong result. Update it in place ({name}[...] = new) or rebind it with "
            f"ctx[{name!r}] = {name}. (Reaching it only through ctx[{name!r}] is fine.)",
            MpickptWarning,
            stacklevel=4,
        )
