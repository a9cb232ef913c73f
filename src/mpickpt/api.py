"""The ``resilient`` decorator: a thin layer over :class:`~mpickpt.runner.Runner`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from .context import Context
from .errors import EXIT_APPLICATION, EXIT_CONFIG, EXIT_NO_SPARES, EXIT_UNRECOVERABLE
from .runner import Runner
from .schemes import Scheme

T = TypeVar("T")
P = ParamSpec("P")

__all__ = [
    "EXIT_APPLICATION",
    "EXIT_CONFIG",
    "EXIT_NO_SPARES",
    "EXIT_UNRECOVERABLE",
    "Context",
    "resilient",
]


def resilient(
    scheme: str | Scheme = "parity", **options: Any
) -> Callable[[Callable[Concatenate[Context, P], T]], Callable[P, T | None]]:
    """Make a time-step function survive rank failures.

    Takes the arguments of :class:`~mpickpt.runner.Runner` (the object this decorates with):
    ``scheme`` and its parameters, ``spares``, ``every``/``every_seconds``/``mtbf``,
    ``spill``, ``spill_every``, ``keep``, ``tag``, ``fresh``, ``report``, ``redistribute``,
    ``exit_on_error``, ``recycle``.

    The function is called as ``fn(ctx, *args, **kwargs)`` on the workers (the first
    ``size - spares`` ranks); the last ``spares`` ranks wait idle and replace failed workers.
    State registered with ``ctx.protect`` is checkpointed into other ranks' RAM with ``scheme``
    (``parity``: ``group``, ``backups``; ``mirror``: ``copies``; ``stripe``: ``backups``)
    every ``every`` steps of ``ctx.steps`` (default 10). Spares return ``None``.

    When to checkpoint (:mod:`mpickpt.policies`): ``every=N`` steps; ``every_seconds=S``
    (seconds or a string like ``"10min"``) of computation between checkpoints;
    ``every="auto"`` with ``mtbf`` (seconds or ``"6h"``; else ``MPICKPT_MTBF``): at Daly's
    optimum for the measured checkpoint cost; or a policy object. The decision is the same on
    every worker; ``MPICKPT_VERBOSE=1`` prints the chosen interval on worker 0.

    With ``spill="DIR"`` every ``spill_every``-th committed version is also written to HDF5
    in the background (the last ``keep`` versions are kept). A job that finds a complete
    version there resumes from it (role ``restarted``); a loss beyond the RAM tolerance rolls
    every worker back to it; with no spare left the survivors save the newest version of all
    workers there and exit with :data:`EXIT_NO_SPARES`; SIGTERM/SIGUSR1 stop the job after a
    final spill with :data:`EXIT_PREEMPTED`.

    ``redistribute(mine, adopted) -> values`` lets the job change its number of workers: when
    workers die and no spare is left, the survivors continue (role ``shrunk``), each handed its
    own saved state and those of the dead workers it adopts; a restart from a spill written by
    another number of workers hands worker ``i`` the states of old workers ``i, i + n, ...``.
    It returns the values (name -> value) that ``ctx.protect`` then gives back.

    A spill directory belongs to one computation: ``tag`` (a string, e.g. a hash of the input
    parameters) is recorded in it, and a restart with another tag, or whose protected state
    (names, kinds, dtypes, shapes given to ``protect``) differs, exits with ``2`` showing the
    difference. A spill whose run completed (``DIR/DONE``) is not recomputed: the function
    runs once more from the final state, ``ctx.steps`` yields nothing, and it returns its
    result. ``fresh=True`` (or ``MPICKPT_FRESH=1``) starts over, moving the old versions to
    ``DIR/old-<UTC time>/``. ``report="run.json"`` (or ``MPICKPT_REPORT``) makes worker 0
    write a JSON report of the run when it ends (see :mod:`mpickpt.report`).

    When recovery is impossible every surviving rank raises the same
    :class:`UnrecoverableError` (or :class:`NoSparesError`); with ``exit_on_error`` (default)
    it is printed once and the job exits with :data:`EXIT_UNRECOVERABLE` (or
    :data:`EXIT_NO_SPARES`). An exception raised by ``fn`` on a worker is not a failed rank:
    every rank raises the same :class:`ApplicationError` (the job exits with
    :data:`EXIT_APPLICATION`), and a configuration that cannot work exits with ``2``.
    """

    runner = Runner(scheme, **options)  # the options are checked here, where they are written

    def decorate(fn: Callable[Concatenate[Context, P], T]) -> Callable[P, T | None]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T | None:
            return runner.run(fn, *args, **kwargs)

        return wrapper

    return decorate
