"""The disk tier under MPI, the one owner of everything disk: background spill of committed
versions, the collective commit of their index, the synchronous save of a whole version,
restarts from the newest version every worker can load, and the ``DONE`` mark.

The file format and the directory need no MPI: :mod:`.format` and :mod:`.directory`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from mpi4py import MPI

from ..config import config
from ..errors import SpillError
from ..log import logger
from ..transport import run_and_agree
from .background import IN_FLIGHT, Background
from .directory import complete_versions, mark_done, set_aside, write_version_file
from .restart import Restart, Survey, find_restart, survey
from .writer import SpillWriter

T = TypeVar("T")


def decided(comm: MPI.Comm, read: Callable[[], T]) -> T:
    """Collective: ``read()`` on rank 0, its result (or the error it raised) on every rank.
    For what the ranks then act on together: a local read on each could differ."""
    outcome: tuple[T | None, BaseException | None] = (None, None)
    if comm.Get_rank() == 0:
        try:
            outcome = (read(), None)
        except (SpillError, OSError) as e:
            outcome = (None, e if isinstance(e, SpillError) else SpillError(str(e)))
    result, error = comm.bcast(outcome, root=0)
    if error is not None:
        raise error
    return result


class DiskTier(Background):
    """Spills every ``every``-th committed version of every worker to ``directory``.

    A version is submitted to a background writer right after it is committed in memory; its
    index (what makes it exist on disk) is written once every worker's file is flushed, which
    is checked collectively at the next checkpoints (or at a flush): see :mod:`.background`.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        every: int = 1,
        keep: int = 2,
        *,
        tag: str | None = None,
        fresh: bool = False,
    ) -> None:
        super().__init__(every, keep)
        self.directory = os.fspath(directory)
        self.tag = tag  # the run's label: a restart from another run's versions is refused
        self.fresh = fresh  # at the start, move the old versions aside
        self.written_by = 0  # workers that wrote the version last restored

    def attach(self, logical: int, nworkers: int, scheme_config: dict[str, Any]) -> None:
        """Write as worker ``logical`` from now on. A version in flight is given up: after a
        recovery its files may be incomplete, so it never gets an index."""
        w = self.writer
        # a new layout (another worker, fewer workers after a shrink, another scheme) is a
        # new writer: the index of every version it writes records the layout it was given
        layout = (logical, nworkers, scheme_config)
        if w is not None and (w.rank, w.nworkers, w.scheme_config) == layout:
            if self.flight:  # the writes given up must not hold this rank's queue, which
                # would make it skip a version the new workers spill (a collective mismatch)
                w.drain(config().spill_timeout)
        else:
            if w is not None:
                w.close(config().spill_timeout)
            self.writer = SpillWriter(
                self.directory,
                logical,
                nworkers,
                scheme_config,
                self.keep,
                queue_size=IN_FLIGHT - 1,
                helper=config().spill_helper,
            )
            self.writer.tag = self.tag
        self.flight = []

    def complete(self) -> bool:
        """Whether the directory holds a complete version."""
        return os.path.isdir(self.directory) and bool(complete_versions(self.directory))

    def open(
        self, comm: MPI.Comm, logical: int, nworkers: int, scheme: dict[str, Any], adapt: bool
    ) -> Restart | None:
        """Collective over the workers: write as worker ``logical`` from now on, and find the
        version to restart from (see :meth:`restore`). A directory that cannot be used is the
        same :class:`SpillError` on every worker."""

        def step() -> tuple[str | None, Restart | None]:
            problem = None
            try:
                if self.fresh and logical == 0 and (old := set_aside(self.directory)):
                    logger().info(f"fresh start: the previous versions were moved to {old}")
                self.attach(logical, nworkers, scheme)
            except (SpillError, OSError) as e:
                problem = (
                    f"cannot use spill directory {self.directory} ({e}); give a directory "
                    "that can be created and written"
                )
            problems = [p for p in comm.allgather(problem) if p is not None]
            if problems:
                return problems[0], None
            try:
                return None, self.restore(comm, logical, nworkers, adapt)
            except SpillError as e:
                return str(e), None

        problem, found = run_and_agree(comm, step, "opening the spill")
        self.fresh = False  # once per job: a retry after a failure must not move new versions
        if problem is not None:
            raise SpillError(problem)
        return found

    def restore(
        self, comm: MPI.Comm, logical: int | None, nworkers: int, adapt: bool = False
    ) -> Restart | None:
        """Collective: the newest spilled version that every worker loads intact, with this
        rank's segments of it (old worker id -> segment); ``None`` if there is no version.

        With the same number of workers a rank loads its own segment. With another number,
        and ``adapt``, worker ``i`` loads those of old workers ``i, i + nworkers, ...`` (for
        the application to redistribute); without ``adapt`` that is a :class:`SpillError`,
        the same on every rank. A damaged version is reported and an older one tried. Which
        versions exist is read by rank 0 alone and broadcast (a listing of each rank's own
        could differ), so that every rank tries the same ones.
        """

        def mine(n: int) -> range:
            return range(0) if logical is None else range(logical, n, nworkers)

        def agree(problems: list[str]) -> list[str]:
            return [p for part in comm.allgather(problems) for p in part]

        def read() -> Survey | None:
            if not self.complete():
                return None
            return survey(self.directory, nworkers, adapt=adapt, tag=self.tag)

        surveyed = decided(comm, read)
        if surveyed is None:
            return None
        found = find_restart(
            self.directory, nworkers, mine, adapt=adapt, agree=agree, surveyed=surveyed
        )
        self.written_by = found.written_by
        if found.problems and comm.Get_rank() == 0:
            logger().warning("skipped damaged spill versions:\n  " + "\n  ".join(found.problems))
        return found

    def has_version(self, comm: MPI.Comm) -> bool:
        """Collective: whether the directory holds a complete version (rank 0 looks)."""
        return decided(comm, self.complete)

    def save(self, world: MPI.Comm, version: int, segments: dict[int, np.ndarray]) -> None:
        """Collective over ``world``: write ``segments`` (worker -> segment of ``version``) now,
        each process those it holds, then rank 0 writes the index. Pending background writes
        finish first (they may be of the same files)."""
        infos = []
        if segments:
            assert self.writer is not None
            self.writer.drain(config().spill_timeout)  # bounded: the watchdog is paused
            w = self.writer
            for rank, seg in sorted(segments.items()):
                infos.append(
                    write_version_file(
                        self.directory,
                        version,
                        rank,
                        seg,
                        nworkers=w.nworkers,
                        scheme_config=w.scheme_config,
                    )
                )
        everyone = [i for part in world.allgather(infos) for i in part]
        if world.Get_rank() == 0:
            assert self.writer is not None
            self.writer.drain(config().spill_timeout)  # an index the helper may still write
            self.indexed(wait=True)
            self.writer.commit(version, sorted(everyone, key=lambda i: int(i["rank"])))

    def finish(self, step: int) -> str | None:
        """Worker 0, once every worker agreed that the run completed: mark it ``DONE``.
        Returns what went wrong with the spill at the end (the newest version that failed to
        reach the disk, or the mark itself), or None: the result is computed either way, so
        a failure here is reported, never raised."""
        problem = None
        if self.problem is not None:
            version, why = self.problem
            problem = f"version {version} is not on disk ({why})"
        try:
            mark_done(self.directory, step)
        except OSError as e:
            problem = f"{problem}; " if problem else ""
            problem += f"the run could not be marked DONE in {self.directory} ({e})"
        return problem

    def close(self) -> None:
        """Stop this rank's spill helper (its pending writes get ``MPICKPT_SPILL_TIMEOUT``)."""
        if self.writer is not None:
            self.writer.close(config().spill_timeout)
            self.writer = None
