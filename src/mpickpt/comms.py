"""Communicators derived from ``ctx.comm`` fail with it.

An application (or a library it uses, such as Devito) rarely communicates on the communicator
it was given: it duplicates it, splits it, or builds a Cartesian topology on it. When a worker
leaves for a recovery, mpickpt revokes the workers' communicator; a survivor blocked in a
receive on a communicator derived from it would never hear of that and would wait forever.

So ``ctx.comm`` is a :class:`Family` root: an ``mpi4py`` communicator subclass whose deriving
methods (``Dup``, ``Clone``, ``Split``, ``Create_cart``, ``Create_graph``, ``Sub``, ...) return
communicators of the same kind, recorded in the family, and deriving in turn. The library
revokes the whole family when a worker leaves (:meth:`Family.revoke`) and frees it once the
recovery has given the workers new communicators (:meth:`Family.forget`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from mpi4py import MPI

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


class Family:
    """Every communicator derived, directly or not, from one root communicator."""

    def __init__(self) -> None:
        self.members: list[MPI.Comm] = []

    def root(self, comm: MPI.Comm) -> MPI.Intracomm:
        """A duplicate of ``comm`` (collective over it) that records what is derived from it.
        The duplicate is the first member: it is revoked and freed with the others.

        Ends in an agreement on ``comm``: a process that left it early and revoked it (its
        function raised at once) crashed Open MPI 5.0 in a peer still inside the duplication
        (``ompi_comm_revoke_local``, seen when every worker raised at start)."""
        dup = comm.Dup()
        if not comm.Agree(1):  # pragma: no cover - Agree raises rather than return 0
            raise MPI.Exception(MPI.ERR_PROC_FAILED)
        return self.track(dup)  # type: ignore[return-value]

    def track(self, comm: MPI.Comm) -> MPI.Comm:
        """Record ``comm`` and return it as a recording communicator of the same kind (the
        same MPI handle, no new communicator). ``COMM_NULL`` (e.g. a ``Split`` with
        ``UNDEFINED``) is returned as it is."""
        if comm == MPI.COMM_NULL:
            return comm
        tracked = _tracked_class(_kind(comm))(comm)  # shares the handle; mpi4py frees none
        tracked._mpickpt_family = self  # type: ignore[attr-defined]
        self.members.append(tracked)
        return tracked

    def revoke(self) -> None:
        """Revoke every member (local, never blocks): anyone blocked on one of them, here or
        in another process, gets an error instead of waiting for a peer that left."""
        for comm in self.members:
            with contextlib.suppress(MPI.Exception):
                comm.Revoke()

    def failed(self) -> bool:
        """Local check: whether a member is revoked or has a peer known to have failed. Use it
        after code that ignores MPI errors (e.g. compiled kernels) to learn what they saw."""
        for comm in self.members:
            try:
                if comm.Is_revoked() or comm.Get_failed().Get_size() > 0:
                    return True
            except MPI.Exception:
                return True
        return False

    def forget(self) -> None:
        """Revoke and free every member (after a recovery: a new family replaces it). Objects
        the application still holds then refer to ``COMM_NULL``."""
        self.revoke()
        for comm in reversed(self.members):  # derived ones first
            with contextlib.suppress(MPI.Exception):
                comm.Free()
        self.members = []


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
        ns: dict[str, Any] = {"__module__": __name__}
        for names, nonblocking in ((DERIVING, False), (DERIVING_NONBLOCKING, True)):
            for name in names:
                if hasattr(base, name):
                    ns[name] = _recording(name, getattr(base, name), nonblocking)
        _CLASSES[base] = type(f"Family{base.__name__}", (base,), ns)
    return _CLASSES[base]
