"""The background half of the disk tier (:class:`.tier.DiskTier`): what the checkpoints of
the loop do with the spill, and what that costs the loop.

A due version goes to the writer right after it is committed in memory, from the rank's own
copy of it (already in the helper's shared memory: no copy). The next checkpoints check,
collectively, whether every rank's file of the oldest version in flight is written: if so
rank 0's helper writes its index; if a write failed, or is older than
``MPICKPT_SPILL_TIMEOUT``, the version is skipped; while some rank's writer is still busy
with a write given up on, every rank skips the due versions. Up to two versions are in
flight, so a checkpoint does not wait for a write that is not finished yet: only one that
finds two versions still in flight waits for the older (the disk is slower than the
checkpoints), as do the end of the run and a stop (:meth:`Background.collect` with ``wait``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from mpi4py import MPI

from ..config import config
from ..errors import SpillError
from ..log import logger
from .writer import SpillJob, SpillWriter

IN_FLIGHT = 2  # versions written at once; a checkpoint that finds that many waits for the oldest


@dataclass(frozen=True)
class Later:
    """A rank's write of the oldest version in flight is not finished yet."""


@dataclass(frozen=True)
class Failed:
    """A rank's write of the oldest version in flight failed, or took too long."""

    rank: int
    reason: str


@dataclass(frozen=True)
class Collected:
    """What :meth:`Background.collect` found, the same on every rank."""

    infos: list[dict[str, Any]] | None  # the oldest version in flight, complete everywhere:
    # every rank's index entry; [] if it failed somewhere; None if none or not finished yet
    busy: list[int]  # ranks whose writer still writes an older version: nobody submits


class Background:
    """The spill of every ``every``-th committed version, in the background."""

    in_flight = IN_FLIGHT  # collects that a flush needs to see every version written

    def __init__(self, every: int, keep: int) -> None:
        if every < 1:
            raise ValueError(f"spill_every must be >= 1, got {every}")
        self.every = every
        self.keep = keep
        self.writer: SpillWriter | None = None
        self.flight: list[tuple[int, float]] = []  # (version, when submitted), oldest first
        self.indexing: SpillJob | None = None  # worker 0: the index being written (publish)
        # the newest version that failed to reach the disk and why, until a newer one is
        # indexed (worker 0 knows both; the end of the run reports it, see DiskTier.finish)
        self.problem: tuple[int, str] | None = None
        # what the background spill cost the loop (see summary)
        self.submitted = 0
        self.copying = 0.0  # seconds in submit: handing the segment to the writer
        self.waiting = 0.0  # seconds waiting for this rank's writes to finish

    def buffer(self, nbytes: int) -> np.ndarray | None:
        """Shared memory for this rank's own copy of its next version: a version spilled from
        there reaches the helper without another copy (:meth:`SpillWriter.buffer`)."""
        return self.writer.buffer(nbytes) if self.writer is not None else None

    def on_commit(
        self,
        rank: int,
        collected: Collected | None,
        version: int = -1,
        segment: np.ndarray | None = None,
    ) -> None:
        """After an agreement: index the version :meth:`collect` found complete everywhere,
        then queue this rank's ``segment`` of the new ``version`` if it is due and no rank's
        writer is busy. Without a segment (a flush) the index is waited for."""
        if collected is None:  # no writer
            return
        self.publish(rank, collected.infos, wait=segment is None)
        if segment is not None and self.due(version):
            if collected.busy:
                if rank == 0:
                    logger().warning(
                        f"spill of version {version} skipped: the writer of rank(s) "
                        f"{collected.busy} is still busy with an older version"
                    )
            else:
                self.submit(version, segment)

    def due(self, version: int) -> bool:
        """Whether committed ``version`` goes to disk: every ``every``-th version number. The
        number is agreed (the commit's), so every rank decides the same, a spare promoted in
        a recovery too; a count of the commits each process saw would not be."""
        return version % self.every == 0

    def submit(self, version: int, segment: np.ndarray) -> None:
        """Queue this rank's segment of a due ``version``. A writer that cannot take it (its
        helper could not be started) leaves the version out of this rank's flight only: the
        next :meth:`collect` sees that the ranks disagree and gives the version up everywhere."""
        if self.writer is not None:
            t = time.perf_counter()
            try:
                self.writer.submit(version, segment)
            except SpillError as e:
                logger().warning(f"spill of version {version} could not be queued: {e}")
                return
            self.copying += time.perf_counter() - t
            self.submitted += 1
            self.flight.append((version, time.monotonic()))

    def collect(self, comm: MPI.Comm, wait: bool = False) -> Collected | None:
        """Collective: whether every rank's file of the oldest version in flight is flushed,
        and which ranks' writers are busy (None without a writer). A wait happens with
        ``wait``, or when two versions are in flight. What is decided comes from the gathered
        states only, so it is the same on every rank."""
        if self.writer is None:
            return None
        oldest = self.flight[0][0] if self.flight else None
        mine = self._oldest(comm.Get_rank(), wait) if self.flight else None
        # the busy decision is gathered, never taken alone: a rank that skipped a version the
        # others spill would compare different versions with them from then on
        states = comm.allgather((oldest, mine, self.writer.busy()))
        busy = [r for r, (_, _, b) in enumerate(states) if b]
        versions = {v for v, _, _ in states}
        infos = [state for _, state, _ in states]
        if len(versions) > 1:  # not submitted everywhere: give every one of them up
            self.flight = [(v, t) for v, t in self.flight if v not in versions]
            if comm.Get_rank() == 0:
                logger().warning(
                    f"spill of version(s) {sorted(v for v in versions if v is not None)} "
                    "was not queued on every rank; skipped"
                )
            return Collected(None, busy)
        if oldest is None:
            return Collected(None, busy)
        if any(isinstance(i, Failed) for i in infos):
            failed = [i for i in infos if isinstance(i, Failed)]
            why = f"on rank(s) {[i.rank for i in failed]}: {failed[0].reason}"
            if comm.Get_rank() == 0:
                logger().warning(f"spill of version {oldest} failed: {why}; skipped")
            self.failed(oldest, why)
            return Collected([], busy)
        if any(isinstance(i, Later) for i in infos):
            return Collected(None, busy)
        return Collected(infos, busy)

    def _oldest(self, rank: int, wait: bool) -> dict[str, Any] | Later | Failed:
        """This rank's state of the oldest version in flight: its index entry, :class:`Later`
        or :class:`Failed` (a failed write, or none within ``MPICKPT_SPILL_TIMEOUT``)."""
        assert self.writer is not None
        version, since = self.flight[0]
        job = self.writer.job(version)
        seconds = config().spill_timeout
        if wait or len(self.flight) >= IN_FLIGHT:
            t = time.perf_counter()
            job.wait(max(0.0, seconds - (time.monotonic() - since)), raise_errors=False)
            self.waiting += time.perf_counter() - t
        if job.done():
            if job.error is None:
                return self.writer.info(version)
            return Failed(rank, str(job.error))
        if time.monotonic() - since > seconds:
            logger().warning(
                f"rank {rank}: spill of version {version} did not finish in "
                f"{seconds:g} s (a stalled file system?); the loop goes on without it"
            )
            return Failed(rank, f"not written within {seconds:g} s")
        return Later()

    def publish(self, rank: int, infos: list[dict[str, Any]] | None, wait: bool = True) -> None:
        """After the agreement: rank 0's helper writes the index of the collected version
        (and deletes the versions beyond ``keep``); ``wait`` for it, or not."""
        self.indexed(wait=False)
        if infos is not None and self.flight:  # else nothing in flight, or not finished
            version = self.flight.pop(0)[0]
            if infos and rank == 0 and self.writer is not None:
                try:  # after the agreement, on one rank: a failure must not stop the job
                    self.indexing = self.writer.commit_later(version, infos)
                except SpillError as e:
                    self.unindexed(version, e)
        self.indexed(wait=wait)

    def indexed(self, wait: bool) -> None:
        """Report the index being written if it failed (once it is done, or ``wait``)."""
        job = self.indexing
        if job is None or not (wait or job.done()):
            return
        self.indexing = None
        if not job.wait(config().spill_timeout, raise_errors=False):  # bounded: a stalled disk
            self.unindexed(job.version, job.error or "not written in time")
        elif self.problem is not None and self.problem[0] < job.version:
            self.problem = None  # a newer version is complete on disk

    def unindexed(self, version: int, error: BaseException | str | None) -> None:
        logger().warning(f"spill of version {version} could not be indexed ({error}); skipped")
        self.failed(version, f"its index could not be written: {error}")

    def failed(self, version: int, why: str) -> None:
        """Remember that ``version`` did not reach the disk."""
        if self.problem is None or self.problem[0] <= version:
            self.problem = (version, why)

    def summary(self) -> str:
        """What the background spill cost this rank's loop so far."""
        return (
            f"{self.submitted} version(s) spilled in the background; the loop spent "
            f"{self.copying:.3f} s handing segments to the writer and {self.waiting:.3f} s "
            "waiting for writes to finish"
        )
