"""Communicators derived from ``ctx.comm`` fail with it.

An application (or a library it uses, such as Devito or PETSc) rarely communicates on the
communicator it was given: it duplicates it, splits it, or builds a Cartesian topology on it.
When a worker leaves for a recovery, mpickpt revokes the workers' communicator; a survivor
blocked in a receive on a communicator derived from it would never hear of that and would
wait forever.

So ``ctx.comm`` is a :class:`Family` root, and every member carries the family's MPI attribute:

- made in Python: ``ctx.comm`` is an ``mpi4py`` communicator subclass whose deriving methods
  (``Dup``, ``Clone``, ``Split``, ``Create_cart``, ``Create_graph``, ``Sub``, ...) return
  communicators of the same kind, recorded in the family, and deriving in turn;
  :meth:`Family.track` (``ctx.track``) records any other;
- duplicated in C (``MPI_Comm_dup``, ``MPI_Comm_idup``, ``MPI_Comm_dup_with_info`` of a
  member, as PETSc's ``PetscCommDuplicate`` does): MPI copies the attribute to the duplicate
  (its copy callback counts it); :meth:`Family.revoke` finds those by their attribute among
  the process's communicators (Open MPI numbers them densely: ``MPI_Comm_f2c``).

The library revokes the whole family when a worker leaves (:meth:`Family.revoke`) and frees
the members made in Python once the recovery has given the workers new communicators
(:meth:`Family.forget`). A member freed (``Free``, ``Disconnect``, in Python or in C) while a
failure is being handled is revoked first, by the attribute's delete callback: the peers
blocked on it are woken, whoever frees it.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable
from typing import Any

from mpi4py import MPI

from .integrations import petsc

# Methods of mpi4py communicators that return a new communicator derived from ``self``.
DERIVING = (
    "Dup",
    "Clone",
    "Dup_with_info",
    "Split",
    "Split_type",
    "Create",
    "Create_group",
    "Create_cart",
    "Create_graph",
    "Create_dist_graph",
    "Create_dist_graph_adjacent",
    "Create_intercomm",
    "Sub",  # Cartcomm
    "Merge",  # Intercomm
)
# ... and those that return ``(communicator, request)``.
DERIVING_NONBLOCKING = ("Idup", "Idup_with_info")


class Lineage:
    """One incarnation of a family: the value of its MPI attribute on every member."""

    def __init__(self) -> None:
        self.carriers = 0  # live communicators carrying it (set, or copied by MPI_Comm_dup)
        self.revoked = False
        self.root: MPI.Comm | None = None

    def failing(self, comm: MPI.Comm) -> bool:
        """Whether ``comm``, being freed, must be revoked first: its family is revoked, an
        exception is propagating (a ``finally`` or ``except`` frees it), or this process knows
        of a failed peer in ``comm`` or in the root. Local; no attribute call (it runs inside
        ``MPI_Comm_free``)."""
        if self.revoked or sys.exc_info()[1] is not None:
            return True
        for member in (comm, self.root):
            if member is not None and member != MPI.COMM_NULL and _broken(member):
                return True
        return False


def _copied(comm: MPI.Comm, keyval: int, lineage: Lineage) -> Lineage:
    """Copy callback: a member was duplicated (in Python or in C), the duplicate joins."""
    lineage.carriers += 1
    return lineage


def _deleted(comm: MPI.Comm, keyval: int, lineage: Lineage) -> None:
    """Delete callback: a member is being freed, by anyone; revoke it first if it fails."""
    lineage.carriers -= 1
    with contextlib.suppress(Exception):  # a callback must not fail MPI_Comm_free
        if lineage.failing(comm):
            comm.Revoke()


_KEYVAL: list[int] = []


def keyval() -> int:
    """The MPI attribute key of family membership (one per process, made on first use)."""
    if not _KEYVAL:
        _KEYVAL.append(MPI.Comm.Create_keyval(copy_fn=_copied, delete_fn=_deleted))
    return _KEYVAL[0]


class Family:
    """Every communicator derived, directly or not, from one root communicator."""

    def __init__(self) -> None:
        self.members: list[MPI.Comm] = []  # made in Python: freed by forget()
        self.lineage = Lineage()

    def root(self, comm: MPI.Comm) -> MPI.Intracomm:
        """A duplicate of ``comm`` (collective over it) that records what is derived from it.
        The duplicate is the first member: it is revoked and freed with the others.

        Ends in an agreement on ``comm``: a process that left it early and revoked it (its
        function raised at once) crashed Open MPI 5.0 in a peer still inside the duplication
        (``ompi_comm_revoke_local``, seen when every worker raised at start)."""
        dup = comm.Dup()
        if not comm.Agree(1):  # pragma: no cover - Agree raises rather than return 0
            raise MPI.Exception(MPI.ERR_PROC_FAILED)
        root = self.track(dup)
        self.lineage.root = root
        return root  # type: ignore[return-value]

    def track(self, comm: MPI.Comm) -> MPI.Comm:
        """Record ``comm`` and return it as a recording communicator of the same kind (the
        same MPI handle, no new communicator); from now on it carries the family's attribute,
        so its duplicates made in C join too. ``COMM_NULL`` (e.g. a ``Split`` with
        ``UNDEFINED``) is returned as it is."""
        if comm == MPI.COMM_NULL:
            return comm
        known = next((m for m in self.members if m.handle == comm.handle), None)
        if known is not None:  # tracked twice: one object, freed once
            return known
        tracked = _tracked_class(_kind(comm))(comm)  # shares the handle; mpi4py frees none
        tracked._mpickpt_family = self  # type: ignore[attr-defined]
        if tracked.Get_attr(keyval()) is not self.lineage:  # not a copy made by MPI_Comm_dup
            tracked.Set_attr(keyval(), self.lineage)
            self.lineage.carriers += 1
        self.members.append(tracked)
        return tracked

    def revoke(self) -> None:
        """Revoke every member (local, never blocks): anyone blocked on one of them, here or
        in another process, gets an error instead of waiting for a peer that left."""
        self.lineage.revoked = True
        for comm in self._all():
            with contextlib.suppress(MPI.Exception):
                comm.Revoke()

    def failed(self) -> bool:
        """Local check: whether a member is revoked or has a peer known to have failed. Use it
        after code that ignores MPI errors (e.g. compiled kernels) to learn what they saw."""
        return any(_broken(comm) for comm in self._all())

    def forget(self) -> None:
        """Revoke every member and free those made in Python (after a recovery: a new family
        replaces it). Objects the application still holds then refer to ``COMM_NULL``; the
        duplicates a library made in C stay its own to free (revoked)."""
        self.revoke()
        petsc.destroy_on(self._all())  # what PETSc built on them would leak
        for comm in reversed(self.members):  # derived ones first
            with contextlib.suppress(MPI.Exception):
                comm.Free()
        self.members = []
        self.lineage = Lineage()

    def _all(self) -> list[MPI.Comm]:
        """The members made in Python that are not freed, then the duplicates made in C."""
        alive = [c for c in self.members if c != MPI.COMM_NULL]
        known = {c.handle for c in alive}
        return alive + [c for c in carriers(self.lineage) if c.handle not in known]


def _broken(comm: MPI.Comm) -> bool:
    """Whether ``comm`` is revoked or has a peer this process knows to have failed."""
    try:
        return bool(comm.Is_revoked() or comm.Get_failed().Get_size() > 0)
    except MPI.Exception:
        return True


MAX_GAP = 1024  # free handle slots in a row after which a scan stops (a count gone wrong)


def carriers(lineage: Lineage) -> list[MPI.Comm]:
    """The communicators of this process that carry ``lineage``'s attribute, wherever they were
    made. Open MPI numbers communicators densely (``MPI_Comm_f2c`` of 0, 1, 2, ...; a free
    slot raises ``MPI.Exception``), so the scan stops once it found them all."""
    if not _numbered():  # pragma: no cover - the wheel's MPI is Open MPI
        return []
    found: list[MPI.Comm] = []
    index = gap = 0
    while len(found) < lineage.carriers and gap < MAX_GAP:
        try:
            comm = MPI.Comm.f2py(index)
        except MPI.Exception:
            comm = MPI.COMM_NULL
        index += 1
        if comm == MPI.COMM_NULL:
            gap += 1
            continue
        gap = 0
        if comm.Get_attr(keyval()) is lineage:
            found.append(comm)
    return found


@functools.cache
def _numbered() -> bool:
    """Whether the MPI library numbers its communicators densely (Open MPI)."""
    return "Open MPI" in MPI.Get_library_version()


def _kind(comm: MPI.Comm) -> type[MPI.Comm]:
    """The mpi4py class of ``comm``'s kind (a topology, an intercommunicator, or plain)."""
    for cls in (MPI.Cartcomm, MPI.Graphcomm, MPI.Distgraphcomm, MPI.Intercomm, MPI.Intracomm):
        if isinstance(comm, cls):
            return cls
    return type(comm)


def _recording(name: str, method: Callable[..., Any], nonblocking: bool) -> Callable[..., Any]:
    def derive(self: Any, *args: Any, **kwargs: Any) -> Any:
        family: Family | None = getattr(self, "_mpickpt_family", None)
        result = method(self, *args, **kwargs)
        if family is None:  # an object mpi4py made (e.g. by Dup) before track()
            return result
        if nonblocking:
            comm, request = result
            return family.track(comm), request
        return family.track(result)

    derive.__name__ = derive.__qualname__ = name
    derive.__doc__ = f"{method.__doc__ or name}\n\nThe result is revoked with ``ctx.comm``."
    return derive


_CLASSES: dict[type[MPI.Comm], type[MPI.Comm]] = {}


def _tracked_class(base: type[MPI.Comm]) -> type[MPI.Comm]:
    """``base`` with every deriving method recording its result in the caller's family."""
    if base not in _CLASSES:
        # named as mpi4py's own classes are: libraries accept a communicator by the module
        # of its class (petsc4py takes one only if it is ``mpi4py.MPI``)
        ns: dict[str, Any] = {"__module__": "mpi4py.MPI"}
        for names, nonblocking in ((DERIVING, False), (DERIVING_NONBLOCKING, True)):
            for name in names:
                if hasattr(base, name):
                    ns[name] = _recording(name, getattr(base, name), nonblocking)
        _CLASSES[base] = type(f"Family{base.__name__}", (base,), ns)
    return _CLASSES[base]
