"""PETSc through petsc4py: what mpickpt does by itself when a program uses it (no call needed).

A petsc4py program is protected like any other: create the PETSc objects on ``ctx.comm``
inside the protected function and protect the vectors' arrays (``ctx.protect("u",
u.getArray())``). The rest happens here, called by the library only when ``petsc4py.PETSc``
is imported; this module never imports it:

* PETSc duplicates ``ctx.comm`` in C (``PetscCommDuplicate``): the duplicate carries the
  family's attribute and is revoked with it (:mod:`mpickpt.comms`).
* An error PETSc raises after a peer failed (``PETSc.Error``, e.g. ``MPI_ERR_BUFFER`` in a
  ``KSPSolve``) is a failure, not a bug, when the family saw one (the runner asks
  :meth:`~mpickpt.comms.Family.failed`).
* :func:`mpi_first` (at ``import mpickpt``): ``mpi4py.MPI`` is imported before
  ``petsc4py.PETSc``, so that MPI is initialised by mpi4py (its ``MPI_Init`` bounded, see
  :mod:`mpickpt.startup`) and PETSc leaves ``MPI_Finalize`` to the end of the job.
* :func:`start`: PETSc's signal handler is removed (it turns a crash into ``MPI_Abort``, which
  ends every process; without it a crashed worker is a lost worker, and the job recovers); a
  warning says if PETSc initialised MPI (petsc4py imported before mpickpt).
* :func:`destroy_on`: after a recovery, the PETSc objects built on the old family are
  destroyed (locally); petsc4py would put them into its garbage, which is cleaned up only
  collectively, over communicators that can no longer communicate: a leak per recovery.
* :func:`finalize`: at the end of a clean run PETSc is finalised before MPI.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from ..log import MpickptWarning


class PetscWarning(MpickptWarning):
    """PETSc was set up in a way mpickpt cannot make safe."""


class _MPIFirst:
    """Imports ``mpi4py.MPI`` when ``petsc4py.PETSc`` is about to be imported; finds nothing
    (a meta path finder, without importlib.abc's base class: see startup._GuardedLoader)."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: Any = None) -> None:
        if fullname == "petsc4py.PETSc" and "mpi4py.MPI" not in sys.modules:
            importlib.import_module("mpi4py.MPI")


def mpi_first() -> None:
    """Make ``mpi4py.MPI`` initialise MPI before PETSc does (nothing if PETSc is imported)."""
    if "petsc4py.PETSc" not in sys.modules and not any(
        isinstance(f, _MPIFirst) for f in sys.meta_path
    ):
        sys.meta_path.insert(0, _MPIFirst())


def running() -> ModuleType | None:
    """``petsc4py.PETSc`` if it initialised PETSc in this process and has not finalised it."""
    petsc = sys.modules.get("petsc4py.PETSc")
    if petsc is None or not petsc.Sys.isInitialized() or petsc.Sys.isFinalized():
        return None
    return petsc


def began_mpi() -> bool:
    """Whether PETSc initialised MPI (``PetscBeganMPI``, read from the loaded libpetsc)."""
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "/libpetsc.so" in line}
    for path in paths:
        try:
            return bool(ctypes.c_int.in_dll(ctypes.CDLL(path), "PetscBeganMPI").value)
        except (OSError, ValueError):
            continue
    return False


def start() -> str | None:
    """At the start of a run: remove PETSc's signal handler. Returns a warning's text if PETSc
    initialised MPI (then ``MPI_Init`` was not bounded, see :mod:`mpickpt.startup`)."""
    petsc = running()
    if petsc is None:
        return None
    petsc.Sys.popSignalHandler()
    if not began_mpi():
        return None
    return (
        "petsc4py.PETSc was imported before mpickpt and initialised MPI: a process lost while "
        "the job starts can hang it; import mpickpt first (the end of the job is right either "
        "way: PETSc is finalised before MPI)"
    )


def finalize() -> None:
    """Finalise PETSc (collective, after a clean run): the clean-up petsc4py would run at exit,
    then ``PetscFinalize``, which ends MPI too if it started it."""
    petsc = running()
    if petsc is not None:
        petsc._pre_finalize()
        petsc._finalize()


def destroy_on(comms: Sequence[Any]) -> int:
    """Destroy the PETSc objects whose communicator is one of ``comms`` (revoked: a recovery
    replaces them). ``PetscObjectDestroy`` is local; the communicator PETSc duplicated goes
    with the last object on it. Returns how many objects were destroyed."""
    petsc = running()
    handles = {comm.handle for comm in comms}
    if petsc is None or not handles:
        return 0
    doomed = [
        obj
        for obj in gc.get_objects()
        if isinstance(obj, petsc.Object) and obj.handle and _comm_handle(obj) in handles
    ]
    for obj in doomed:
        obj.destroy()
    return len(doomed)


def _comm_handle(obj: Any) -> int:
    """The handle of the MPI communicator of PETSc object ``obj``."""
    return int(obj.getComm().tompi4py().handle)
