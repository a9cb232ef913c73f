"""When online recovery cannot simply rebuild and go on: reload a spilled version (loss beyond
the RAM tolerance), save every worker's newest version to disk (no spare left), or continue on
fewer workers through the application's redistribution hook."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from mpi4py import MPI

from ..checkpointer import Checkpointer
from ..config import config
from ..domains import warn_if_spread
from ..errors import ConfigError, MpickptError, NoSparesError, SpillError, UnrecoverableError
from ..planning import ProcessState, RecoveryPlan, newest_committed, save_plan
from ..segment import unpack
from ..spill.restart import Restart
from ..spill.tier import DiskTier
from ..transport import fetch_segment
from .membership import Membership

# redistribute(mine, adopted) -> the values to continue with, when the worker count changes:
# ``mine`` is this worker's own saved state (name -> value, {} if it had none), ``adopted``
# the saved states of the workers it takes over.
Redistribute = Callable[[dict[str, Any], list[dict[str, Any]]], dict[str, Any]]


@dataclass
class Shrunk:
    """A recovery that continues on fewer workers: ``alive`` are the old ids of the workers
    kept (their new ids are the positions), ``segments`` what this process rebuilt."""

    version: int
    alive: list[int]
    domains: list[int]
    segments: dict[int, Any]
    comm: MPI.Comm


def load_spill(
    disk: DiskTier,
    world: MPI.Comm,
    plan: RecoveryPlan,
    mine: int | None,
    nworkers: int,
    scheme: Any,
) -> dict[int, np.ndarray]:
    """Every worker-to-be loads its segment of the newest spilled version all can load; the
    plan's version becomes that one. The writes still in this process's spill helper finish
    first (bounded by ``MPICKPT_SPILL_TIMEOUT``): an index or a prune in progress does not
    change the directory while it is read."""
    if disk.writer is not None:
        disk.writer.drain(config().spill_timeout)
    try:
        found = disk.restore(world, mine, nworkers)
        why = f"no version in spill directory {disk.directory}"
    except SpillError as e:
        found, why = None, f"the spill cannot help: {e}"
    if found is None:
        raise UnrecoverableError(
            f"lost workers {list(plan.dead)} beyond the tolerance of {scheme!r} and {why}",
            lost=plan.dead,
            version=plan.version,
        )
    plan.version = found.version
    return found.segments


def save_all(
    disk: DiskTier | None,
    world: MPI.Comm,
    ckpt: Checkpointer,
    logical: int | None,
    states: list[ProcessState],
    nworkers: int,
    error: NoSparesError,
) -> MpickptError:
    """No spare is left: write the newest committed version of *every* worker to the spill
    (the survivors rebuild the dead workers' segments and write them on their behalf), so
    that a relaunch resumes from it. Returns the error to raise on every process."""
    if disk is None:  # idle spares take part too: they are in every collective step below
        return error
    if newest_committed(states) < 0:
        return error  # nothing was committed yet: nothing to save, a relaunch starts again
    try:
        version, sources, dest = save_plan(states, nworkers, ckpt.scheme)
    except UnrecoverableError as e:
        return (
            NoSparesError(f"{error}; {e}; relaunch from an older spilled version", error.lost)
            if disk.has_version(world)
            else e
        )
    segments = fetch_segment(world, ckpt.store, ckpt.scheme, version, sources, dest)
    if logical is not None and logical not in dest and ckpt.local is not None:
        segments[logical] = ckpt.local
    disk.save(world, version, segments)
    return NoSparesError(
        f"workers {list(error.lost)} failed and no spare is left; saved version {version} of "
        f"all {nworkers} workers to {disk.directory}: relaunch to resume from it",
        error.lost,
    )


def shrink(
    world: MPI.Intracomm,
    ckpt: Checkpointer,
    logical: int | None,
    states: list[ProcessState],
    n: int,
) -> Shrunk | None:
    """No spare left but a redistribution hook: continue on the surviving workers, each
    adopting the rebuilt segments of some dead ones. ``None`` if the scheme cannot work on
    that few ranks, when nothing was committed yet, or when the lost segments cannot be
    rebuilt from RAM (then :func:`save_all` decides); too few nodes make each rank its own
    failure domain, as at start-up."""
    if newest_committed(states) < 0:
        return None  # the dead workers' initial states are unknown: a relaunch starts again
    try:
        version, sources, dest = save_plan(states, n, ckpt.scheme)
    except UnrecoverableError:
        return None
    alive = sorted(r.logical for r in states if r.logical is not None)
    domains = [states[i].domain for w in alive for i, r in enumerate(states) if r.logical == w]
    try:
        ckpt.scheme.layout_domains(domains)
    except ConfigError:
        return None
    segments = fetch_segment(world, ckpt.store, ckpt.scheme, version, sources, dest)
    new = alive.index(logical) if logical is not None else None
    comm = world.Split(0 if new is not None else MPI.UNDEFINED, key=new or 0)
    return Shrunk(version, alive, domains, segments, comm)


def adopt(
    ckpt: Checkpointer,
    redistribute: Redistribute,
    version: int,
    own: np.ndarray | None,
    adopted: list[np.ndarray],
    step: int,
) -> None:
    """Hand this worker's saved state and the adopted ones to the redistribution hook;
    :meth:`Checkpointer.protect` then returns what it made of them."""
    mine = dict(unpack(own)[1]) if own is not None else {}
    others = [dict(unpack(seg)[1]) for seg in adopted]
    ckpt.continue_from(version, redistribute(mine, others), step)


def restart(
    ckpt: Checkpointer,
    redistribute: Redistribute | None,
    found: Restart,
    logical: int,
    nworkers: int,
) -> bool:
    """A new job resumes from ``found`` (this worker's segments of a spilled version); with
    another number of workers the application redistributes. Returns whether the run that
    wrote it had completed (``DONE``) at that version's step: then there is nothing to do."""
    segments = found.segments
    if list(segments) == [logical] and found.written_by == nworkers:
        ckpt.restore_version(found.version, segments[logical])
    else:  # written by another number of workers: the application redistributes
        assert redistribute is not None
        own = segments.pop(logical, None)
        adopt(ckpt, redistribute, found.version, own, list(segments.values()), found.step)
    return found.done is not None and found.done <= ckpt.step


def restarted(found: Restart, step: int, directory: str, completed: bool) -> str:
    """The line a restart logs."""
    line = (
        f"restarted from spilled version {found.version} (step {step}, "
        f"{found.written_by} workers) in {directory}"
    )
    if completed:
        line += (
            f"; that run had completed (DONE after step {found.done}): nothing to compute "
            "(fresh=True or MPICKPT_FRESH=1 starts over)"
        )
    return line


def switch_shrunk(
    members: Membership,
    ckpt: Checkpointer,
    disk: DiskTier | None,
    redistribute: Redistribute,
    plan: Shrunk,
    states: list[ProcessState],
) -> str:
    """After the agreement on ``plan``: continue on the surviving workers, renumbered; this
    process's role (``shrunk``, or ``spare`` for an idle spare)."""
    old = members.logical
    members.nworkers = len(plan.alive)
    members.spare_procs = [i for i, r in enumerate(states) if r.logical is None]
    if old is None:
        return "spare"
    members.logical = plan.alive.index(old)
    if members.logical == 0:
        warn_if_spread(plan.domains, ckpt.scheme.layout_domains(plan.domains))
    ckpt.attach(plan.comm, plan.domains)
    if disk is not None:
        disk.attach(members.logical, members.nworkers, ckpt.scheme.get_config())
    own = plan.segments.pop(old, ckpt.local)
    step = int(unpack(own)[0]["step"])
    adopt(ckpt, redistribute, plan.version, own, list(plan.segments.values()), step)
    return "shrunk"
