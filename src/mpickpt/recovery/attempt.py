"""One attempt of a recovery: what its agreed transaction decided (:class:`Outcome`), how an
error of one process's own becomes a failed attempt everywhere (:func:`agreed`), and the
lines and limits of a rebuild (:func:`rebuilt`, :func:`replayed`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mpi4py import MPI

from ..config import config
from ..errors import MpickptError, ProcessFailure, UnrecoverableError
from ..planning import ProcessState, RecoveryPlan
from ..transport import run_and_agree
from .fallback import Shrunk

T = TypeVar("T")


class AttemptFailed(Exception):
    """This process's part of a recovery attempt raised an error of its own (not a lost
    peer). The others see the attempt fail; the next attempt's reports tell them why."""


@dataclass
class Outcome:
    """What an attempt's transaction agreed on, the same on every process: the reports, and
    a plan (:class:`RecoveryPlan`, or :class:`Shrunk` to continue on fewer workers) or the failure
    that ends the recovery everywhere; with this process's segments and communicator."""

    reports: list[ProcessState]
    plan: RecoveryPlan | Shrunk | None = None
    failure: MpickptError | None = None
    segments: dict[int, Any] = field(default_factory=dict)
    comm: MPI.Comm = field(default_factory=lambda: MPI.COMM_NULL)


def agreed(world: MPI.Comm, step: Callable[[], T], what: str) -> T:
    """``run_and_agree``: ``step()`` agreed over ``world``; an error of this process's own (which
    only it sees: the others get :class:`ProcessFailure`) becomes :class:`AttemptFailed`."""
    try:
        return run_and_agree(world, step, what)
    except (MPI.Exception, ProcessFailure):
        raise
    except Exception as e:
        raise AttemptFailed(f"{what}: {type(e).__name__}: {e}") from e


def replayed(plan: RecoveryPlan, rollbacks: int) -> UnrecoverableError | None:
    """The error that stops a job rolled back to one version too often, or None."""
    if rollbacks < config().max_rollbacks:
        return None
    return UnrecoverableError(
        f"rolled back to version {plan.version} {rollbacks} times and lost a process again "
        "each time: the same failure keeps coming back (a crash at the same step?); stopping "
        "(MPICKPT_MAX_ROLLBACKS sets the limit)",
        lost=plan.dead,
        version=plan.version,
    )


def rebuilt(plan: RecoveryPlan, short: bool = False) -> str:
    if plan.version < 0:
        return "nothing was committed yet: starting again"
    nbytes = sum(n for n, _ in plan.rebuild.values())
    ranks = {h for _, src in plan.rebuild.values() for h, _, _ in src}
    workers = "" if short else f" for worker(s) {sorted(plan.rebuild)}"
    size = f"{nbytes / 2**20:.1f} MiB" if nbytes >= 2**20 // 10 else f"{nbytes / 1024:.1f} KiB"
    return f"rebuilt {size}{workers} from {len(ranks)} rank(s)"
