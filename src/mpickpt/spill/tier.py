"""The disk tier under MPI, the one owner of everything disk: background spill of committed
versions, the collective commit of their index, the synchronous save of a whole version,
restarts from the newest version every worker can load, and the ``DONE`` mark.

The file format and the directory need no MPI: :mod:`.format` and :mod:`.directory`.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
from mpi4py import MPI

from ..config import config
from ..errors import SpillError
from ..log import logger
from ..transport import uniformly
from .directory import (
    Restart,
    complete_versions,
    find_restart,
    mark_done,
    set_aside,
    write_version_file,
)
from .writer import SpillJob, SpillWriter


class DiskTier:
    """Spills every ``every``-th committed version of every worker to ``directory``.

    A version is submitted to a background writer right after it is committed in memory; its
    index (what makes it exist on disk) is written once every worker's file is flushed, which
    is checked collectively at the next checkpoint (or at :meth:`flush`).
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
        if every < 1:
            raise ValueError(f"spill_every must be >= 1, got {every}")
        self.directory = os.fspath(directory)
        self.tag = tag  # the run's label: a restart from another run's versions is refused
        self.fresh = fresh  # at the start, move the old versions aside
        self.every = every
        self.keep = keep
        self.writer: SpillWriter | None = None
        self.pending: int | None = None  # submitted, index not yet written
        self.count = 0  # committed versions seen, to spill every ``every``-th
        self.written_by = 0  # workers that wrote the version last restored
        # what the background spill cost the loop (see summary)
        self.submitted = 0
        self.copying = 0.0  # seconds in submit: the copy of the segment to the writer
        self.waiting = 0.0  # seconds waiting for this rank's writes to finish
        self.indexing: SpillJob | None = None  # worker 0: the index being written (publish)

    def attach(self, logical: int, nworkers: int, scheme_config: dict[str, Any]) -> None:
        """Write as worker ``logical`` from now on. A version in flight is given up: after a
        recovery its files may be incomplete, so it never gets an index."""
        if self.writer is None or self.writer.rank != logical:
            if self.writer is not None:
                self.writer.close()
            self.writer = SpillWriter(
                self.directory,
                logical,
                nworkers,
                scheme_config,
                self.keep,
                helper=config().spill_helper,
            )
            self.writer.tag = self.tag
        self.pending = None

    def buffer(self, nbytes: int) -> np.ndarray | None:
        """Shared memory for this rank's own copy of its next version: a version spilled from
        there reaches the helper without another copy (:meth:`SpillWriter.buffer`)."""
        return self.writer.buffer(nbytes) if self.writer is not None else None

    def on_commit(
        self,
        rank: int,
        collected: list[dict[str, Any]] | None,
        version: int = -1,
        segment: np.ndarray | None = None,
    ) -> None:
        """After an agreement: index the version :meth:`collect` found complete everywhere,
        then queue this rank's ``segment`` of the new ``version`` if it is due. Without a
        segment (a flush) the index is waited for; otherwise the helper writes it."""
        self.publish(rank, collected, wait=segment is None)
        if segment is not None:
            self.submit(version, segment)

    def submit(self, version: int, segment: np.ndarray) -> None:
        """Queue this rank's segment of ``version`` if it is due."""
        self.count += 1
        due = self.count % self.every == 0 and self.pending is None
        if self.writer is not None and due and not self.writer.busy():
            t = time.perf_counter()
            self.writer.submit(version, segment)
            self.copying += time.perf_counter() - t
            self.submitted += 1
            self.pending = version

    def collect(self, comm: MPI.Comm) -> list[dict[str, Any]] | None:
        """Collective: the index entries of the version in flight once every rank's file is
        flushed (this waits for the local write), or ``None``."""
        if self.pending is None or self.writer is None:
            return None
        t = time.perf_counter()
        seconds = config().spill_timeout
        ok = self.writer.wait(self.pending, seconds, raise_errors=False)
        self.waiting += time.perf_counter() - t
        if not ok and not self.writer.job(self.pending).done():
            logger().warning(
                f"rank {comm.Get_rank()}: spill of version {self.pending} did not finish in "
                f"{seconds:g} s (a stalled file system?); the loop goes on without it"
            )
        infos = comm.allgather(self.writer.info(self.pending) if ok else None)
        if any(i is None for i in infos):
            if comm.Get_rank() == 0:
                logger().warning(f"spill of version {self.pending} failed on some rank; skipped")
            return []
        return infos

    def publish(self, rank: int, infos: list[dict[str, Any]] | None, wait: bool = True) -> None:
        """After the agreement: rank 0's helper writes the index of the collected version
        (and deletes the versions beyond ``keep``); ``wait`` for it, or not."""
        if infos is None:
            return
        self.indexed(wait=False)
        if infos and rank == 0 and self.writer is not None and self.pending is not None:
            try:  # after the agreement, on one rank: a failure here must not stop the job
                self.indexing = self.writer.commit_later(self.pending, infos)
            except SpillError as e:
                logger().warning(
                    f"spill of version {self.pending} could not be indexed ({e}); it is skipped"
                )
        self.pending = None
        self.indexed(wait=wait)

    def indexed(self, wait: bool) -> None:
        """Report the index being written if it failed (once it is done, or ``wait``)."""
        job = self.indexing
        if job is None or not (wait or job.done()):
            return
        self.indexing = None
        if not job.wait(raise_errors=False):
            logger().warning(
                f"spill of version {job.version} could not be indexed ({job.error}); it is skipped"
            )

    def summary(self) -> str:
        """What the background spill cost this rank's loop so far."""
        return (
            f"{self.submitted} version(s) spilled in the background; the loop spent "
            f"{self.copying:.3f} s handing segments to the writer and {self.waiting:.3f} s "
            "waiting for writes to finish"
        )

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

        problem, found = uniformly(comm, step, "opening the spill")
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
        the same on every rank. A damaged version is reported and an older one tried.
        """
        if not self.complete():
            return None

        def mine(n: int) -> range:
            return range(0) if logical is None else range(logical, n, nworkers)

        def agree(problems: list[str]) -> list[str]:
            return [p for part in comm.allgather(problems) for p in part]

        found = find_restart(self.directory, nworkers, mine, adapt=adapt, agree=agree, tag=self.tag)
        self.written_by = found.written_by
        if found.problems and comm.Get_rank() == 0:
            logger().warning("skipped damaged spill versions:\n  " + "\n  ".join(found.problems))
        return found

    def save(self, world: MPI.Comm, version: int, segments: dict[int, np.ndarray]) -> None:
        """Collective over ``world``: write ``segments`` (worker -> segment of ``version``) now,
        each process those it holds, then rank 0 writes the index. Pending background writes
        finish first (they may be of the same files)."""
        infos = []
        if segments:
            assert self.writer is not None
            self.writer.flush(raise_errors=False)
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
            self.writer.flush(raise_errors=False)  # an index the helper may still write
            self.indexed(wait=True)
            self.writer.commit(version, sorted(everyone, key=lambda i: int(i["rank"])))

    def done(self, step: int) -> None:
        """Record that the run completed (one worker, after every worker agreed it did)."""
        mark_done(self.directory, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
