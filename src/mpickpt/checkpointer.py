"""``Checkpointer``: protect state, checkpoint it into other ranks' RAM, rebuild it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar, cast

import numpy as np
from mpi4py import MPI

from . import faults
from .checksum import checksum
from .layout import backup_layout
from .memstore import MemStore, StoredPiece
from .planning import ProcessState, rebuild_sources
from .schemes import Scheme, XorSet, get_scheme
from .segment import State, restore_value, unpack
from .setstream import SetStream
from .stream import Stream, new_stats
from .transport import CHUNK, fetch_segment, run_and_agree

T = TypeVar("T")


class Tier(Protocol):
    """A slower tier under the RAM checkpoints (the HDF5 spill), told of every commit.

    ``collect`` runs inside the agreed step of a checkpoint (collective: what it returns is
    committed only if every rank got it; ``wait``: for the tier's work in flight);
    ``on_commit`` runs after the agreement, with the new version and this rank's segment of
    it (none when only the tier's own work was flushed).
    ``buffer`` gives the memory this rank's own copy of a new version is made in (or None),
    so that the tier can take the segment from there without copying it again.
    ``in_flight``: how many versions it may be writing at once (each ``collect`` with
    ``wait`` finishes the oldest).
    """

    in_flight: int

    def collect(self, comm: MPI.Comm, wait: bool = False) -> Any: ...

    def buffer(self, nbytes: int) -> np.ndarray | None: ...

    def on_commit(
        self, rank: int, collected: Any, version: int = -1, segment: np.ndarray | None = None
    ) -> None: ...


class Checkpointer:
    """In-memory redundant checkpoints of the protected state of every rank of ``comm``.

    ``scheme`` is a :class:`~mpickpt.schemes.Scheme`, or an id (``"parity"``, ``"mirror"``,
    ``"stripe"``, ``"rs"``, ``"xorset"``) with its parameters as keywords. ``domains`` gives
    the failure domain of every rank (default: one per rank). ``recycle``: reuse the buffers of
    the dropped version (see :class:`~mpickpt.stream.Stream`). ``stats``: this rank's cumulative
    traffic counters (messages and bytes sent and received, checkpoints, agreements,
    re-protects). All methods but :meth:`protect` are collective.
    """

    def __init__(
        self,
        comm: MPI.Comm | None = None,
        scheme: str | Scheme = "parity",
        *,
        domains: Sequence[int] | None = None,
        chunk: int = CHUNK,
        recycle: bool = True,
        **params: Any,
    ) -> None:
        self.scheme = get_scheme(scheme, **params)
        self.chunk, self.recycle = chunk, recycle
        self.stream: Stream | SetStream | None = None
        self.stats = new_stats()  # cumulative counters of this rank's checkpoint traffic
        self.state = State()
        self.store = MemStore()
        self.step = 0  # the next step to run after a restore
        self.restored: dict[str, Any] = {}  # saved values not yet handed back by protect
        self.saved_protected: dict[str, list[Any]] | None = None  # State.declared when saved
        self.disk: Tier | None = None  # the spill, if any
        # a small collective run inside each checkpoint's transaction, before its commit
        # agreement (the checkpoint policy's reduction, see policies.Schedule); its result,
        # the same on every rank, is in ``exchanged`` after the commit
        self.exchange: Callable[[MPI.Comm], Any] | None = None
        self.exchanged: Any = None
        self.comm: MPI.Comm = MPI.COMM_NULL
        if comm is not None:
            base = comm.Dup()
            size = base.Get_size()
            self.attach(base, list(domains) if domains is not None else list(range(size)))

    # -- set-up -----------------------------------------------------------------------------

    def attach(self, comm: MPI.Comm, domains: Sequence[int]) -> None:
        """Work over ``comm`` (owned from now on) whose ranks live in ``domains``."""
        comm.Set_errhandler(MPI.ERRORS_RETURN)
        self.comm = comm
        self.domains = list(domains)
        self.stream, self.backups, self.owners = _stream(  # fixed for this membership
            comm, self.scheme, self.domains, self.chunk, self.stats, self.recycle
        )

    @property
    def rank(self) -> int:
        return int(self.comm.Get_rank())

    @property
    def version(self) -> int:
        """The newest committed version (-1 before the first checkpoint)."""
        return self.store.committed

    # -- state ------------------------------------------------------------------------------

    def protect(self, name: str, obj: T, *, replace: bool = False) -> T:
        """Register ``obj`` under ``name``; return the value to use from now on.

        Arrays are kept by reference and, after a recovery, restored in place (the same array
        comes back). Other objects are pickled at each checkpoint; after a recovery the restored
        object is returned, so write ``x = ckpt.protect("x", x)``. Rebind immutable values with
        ``ckpt[name] = value`` before the next checkpoint.

        A name protected twice (unless ``replace=True``) or an object that cannot be pickled
        is a :class:`ConfigError` naming the entry (see :meth:`State.declare`).
        """
        self.state.declare(name, obj, replace)
        if name in self.restored:
            obj = restore_value(name, obj, self.restored.pop(name))
        self.state[name] = obj
        return obj

    def __getitem__(self, name: str) -> Any:
        return self.state[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self.state[name] = value

    # -- checkpoint -------------------------------------------------------------------------

    def checkpoint(self, step: int) -> int:
        """Store a new version of every rank's state in its backups' RAM; return it.

        ``step`` is the step to resume from when this version is restored. Two-phase: the
        version is committed only once every rank holds its pieces; a failure before that leaves
        the previous version intact everywhere and raises :class:`ProcessFailure` on every rank.
        """
        version = self.store.committed + 1
        t, meta = time.perf_counter(), {"rank": self.rank, "protected": self.state.declared}
        seg = self.state.snapshot(step, {"version": version, **meta})

        def stream() -> tuple[list[dict[str, Any]] | None, Any]:
            if self.comm.Get_size() > 1 and self.stream is not None:
                self.store.stage(version, self.stream.run(seg, version))
            spilled = self.disk.collect(self.comm) if self.disk else None
            exchanged = self.exchange(self.comm) if self.exchange is not None else None
            faults.maybe_kill("checkpoint", step)
            return spilled, exchanged

        self.stats["agreements"] += 1  # the commit point: ProcessFailure everywhere, or commit
        spilled, exchanged = run_and_agree(self.comm, stream, f"checkpoint of version {version}")
        self.exchanged = exchanged
        dropped = self.store.commit(version)
        if self.stream is not None:  # their buffers receive the next version
            self.stream.recycle_buffers(dropped)
        self.store.keep_local(version, seg, self.disk.buffer(seg.nbytes) if self.disk else None)
        self.step = step
        self.stats["checkpoints"] += 1
        self.stats["bytes"] += seg.nbytes
        self.stats["seconds"] += time.perf_counter() - t
        if self.disk is not None:
            self.disk.on_commit(self.rank, spilled, version, self.store.local)
        faults.maybe_kill("commit", step)
        return version

    def reprotect(self, step: int) -> None:
        """After a recovery: send only the missing pieces (``Stream.reprotect``; ``xorset``
        computes its sets' parity again, ``SetStream.reprotect``)."""
        if self.comm.Get_size() < 2 or self.stream is None or self.store.local is None:
            self.checkpoint(step)
            return
        faults.maybe_kill("checkpoint", step)  # the fault injection point of that checkpoint
        self.stream.reprotect(self.store)
        self.step = step

    def flush(self) -> None:
        """Collective: wait until the versions being spilled (up to two) are on disk with
        their index."""
        if self.disk is not None:
            disk = self.disk
            for _ in range(disk.in_flight):
                spilled = run_and_agree(self.comm, lambda: disk.collect(self.comm, True), "spill")
                disk.on_commit(self.rank, spilled)

    # -- rebuild ----------------------------------------------------------------------------

    def rebuild(self, lost: Iterable[int] | None = None) -> np.ndarray | None:
        """Rebuild committed segments from the pieces held by *other* ranks, as if the ranks in
        ``lost`` had failed (default: every rank's segment, each without its owner's copy).

        Collective. Each rebuilt segment is delivered to its owner's rank, which gets it back
        (the others get ``None``). Raises the same :class:`UnrecoverableError` on every rank
        when the loss is beyond the scheme's tolerance, before any data moves.
        """
        size = self.comm.Get_size()
        owners = sorted(set(lost)) if lost is not None else list(range(size))
        gone = set(owners) if lost is not None else set()
        states = self.comm.allgather(process_state(self.store, logical=self.rank))
        alive = [
            r if i not in gone else ProcessState(r.logical, r.domain, r.committed, -1)
            for i, r in enumerate(states)
        ]
        sources = rebuild_sources(alive, owners, self.version, self.scheme, tuple(owners))
        got = fetch_segment(
            self.comm, self.store, self.scheme, self.version, sources, {o: o for o in owners}
        )
        return got.get(self.rank)

    def restore_from(self, segment: np.ndarray) -> int:
        """Take ``segment`` as this rank's state: from now on :meth:`protect` hands back the
        saved values (arrays copied in place into the arrays it is given)."""
        manifest, self.restored = unpack(segment)
        self.saved_protected = manifest["meta"].get("protected")
        self.state = State()
        self.step = int(manifest["step"])
        return self.step

    def restore_version(self, version: int, segment: np.ndarray, forget: bool = False) -> int:
        """Roll back to committed ``version``, whose segment on this rank is ``segment`` (its
        own copy, one rebuilt for it, or one loaded from disk); returns the step to resume
        from. ``forget``: drop every piece held in RAM (they belong to another history)."""
        if forget:
            self.store.versions = {}
        self.store.commit(version)
        self.store.local, self.store.local_version = segment, version
        return self.restore_from(segment)

    def start_over(self, values: dict[str, Any] | None = None, step: int = 0) -> None:
        """Begin again at ``step`` from ``values`` (what :meth:`protect` hands back; none: the
        initial state, as when nothing was committed)."""
        self.restored, self.step, self.saved_protected = values or {}, step, None
        self.state = State()

    def continue_from(self, version: int, values: dict[str, Any], step: int) -> None:
        """Continue from ``values`` made of the segments of ``version`` by the application, at
        ``step``: no piece and no own copy of it is held."""
        self.store.versions, self.store.committed, self.store.local_version = {}, version, -1
        self.start_over(values, step)

    @property
    def local(self) -> np.ndarray | None:
        """This rank's own copy of its newest committed segment."""
        return self.store.local

    def close(self) -> None:
        """Free the communicator and drop every piece."""
        if self.comm != MPI.COMM_NULL:
            with contextlib.suppress(MPI.Exception):
                self.comm.Free()
            self.comm = MPI.COMM_NULL
        self.store = MemStore()


def _stream(
    comm: MPI.Comm,
    scheme: Scheme,
    domains: list[int],
    chunk: int,
    stats: dict[str, float],
    recycle: bool,
) -> tuple[Stream | SetStream, list[list[int]], list[list[int]]]:
    """The checkpoint stream of this rank for a membership, with every rank's backups and
    owners (none for xorset, whose ranks form sets instead)."""
    if scheme.cross_owner:  # its pieces mix owners: the stream runs over sets
        sets = cast(XorSet, scheme)
        return SetStream(comm, sets, domains, chunk, stats, recycle), [], []
    backups, owners = backup_layout(domains, scheme.backups)
    return Stream(comm, scheme, backups, owners, chunk, stats, recycle), backups, owners


def process_state(store: MemStore, logical: int | None = None, domain: int = 0) -> ProcessState:
    """What a rank holds in ``store``, for planning a rebuild (only pieces that pass their
    checksum)."""
    holdings: dict[int, dict[int, tuple[int, dict[str, int]]]] = {}
    for v, by_owner in store.versions.items():
        for owner, pieces in by_owner.items():
            good = {n: h.header.checksum for n, h in pieces.items() if _intact(h)}
            nbytes = next(iter(pieces.values())).header.nbytes
            holdings.setdefault(v, {})[owner] = (nbytes, good)
    return ProcessState(logical, domain, store.committed, store.local_version, holdings)


def _intact(h: StoredPiece) -> bool:
    return checksum(h.data) == h.header.checksum
