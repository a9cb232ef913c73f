"""mpickpt: in-memory redundant checkpoints and online recovery for MPI jobs.

Every worker's protected state is checkpointed into the RAM of other ranks (mirror, stripe or
the patent's striped XOR parity); when a rank dies, ULFM survivors and a spare rebuild it and
the loop resumes from the last committed step.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

# What this import changes in the process, and why, is listed in one place: docs/usage.md,
# "What import mpickpt changes in the process":
# - MPI_Finalize can hang after a failure (open-mpi/ompi#11404): skip it then (imported after
#   mpi4py.MPI, a process that saw a failure ends in mpickpt's exit handler instead); this
#   needs mpickpt imported before mpi4py.MPI (the examples import it first)
from . import startup as _startup

_startup.take_over_finalize()

from .errors import (  # noqa: E402 - after the rc setting above
    EXIT_APPLICATION,
    EXIT_CONFIG,
    EXIT_NO_SPARES,
    EXIT_PREEMPTED,
    EXIT_UNRECOVERABLE,
    ApplicationError,
    ConfigError,
    DecodeError,
    IntegrityError,
    MpickptError,
    NoSparesError,
    Preempted,
    ProcessFailure,
    SpillError,
    UnknownSchemeError,
    UnrecoverableError,
)
from .errors import excepthook as _excepthook  # noqa: E402

# - an mpickpt error raised before the job's processes have joined (a bad parameter) is
#   printed once and gives the job its exit code (see errors.excepthook)
if sys.excepthook is sys.__excepthook__:
    sys.excepthook = _excepthook

# - a process lost before MPI is initialised must not hang the others in MPI_Init: bound it
#   (see startup.py; this too needs mpickpt imported before mpi4py.MPI)
_startup.guard_mpi_init()

# - petsc4py initialises MPI itself if nobody has: mpi4py.MPI is imported before it instead
#   (bounded, as above; PETSc then leaves MPI_Finalize to mpickpt's end of the job)
from .integrations.petsc import mpi_first as _mpi_first  # noqa: E402

_mpi_first()

# Names are imported on first use: the MPI-facing ones so that ``import mpickpt`` (the schemes,
# the layout, the spill tools) does not start MPI, the schemes (NumPy) and the version (package
# metadata) so that ``mpickpt run``, which starts every job, starts quickly.
_LAZY = {
    "Checkpointer": "checkpointer",
    "Context": "context",
    "Runner": "runner",
    "resilient": "api",
    "waitall": "transport",
    **dict.fromkeys(("Mirror", "Parity", "ReedSolomon", "Scheme", "Stripe", "XorSet"), "schemes"),
    "get_scheme": "schemes",
}

if TYPE_CHECKING:
    from .api import resilient
    from .checkpointer import Checkpointer
    from .context import Context
    from .runner import Runner
    from .schemes import Mirror, Parity, ReedSolomon, Scheme, Stripe, XorSet, get_scheme
    from .transport import waitall

    __version__: str


def __getattr__(name: str) -> Any:
    if name == "__version__":  # one source: pyproject.toml, through the package's metadata
        from importlib import metadata

        try:
            version = metadata.version("mpickpt")
        except metadata.PackageNotFoundError:  # pragma: no cover - a bare checkout
            version = "0+unknown"
        globals()["__version__"] = version
        return version
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'mpickpt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | {"__version__"})


__all__ = [
    "__version__",
    "EXIT_APPLICATION",
    "EXIT_CONFIG",
    "EXIT_NO_SPARES",
    "EXIT_PREEMPTED",
    "EXIT_UNRECOVERABLE",
    "Checkpointer",
    "Context",
    "Runner",
    "resilient",
    "waitall",
    "ApplicationError",
    "ConfigError",
    "DecodeError",
    "IntegrityError",
    "Mirror",
    "MpickptError",
    "NoSparesError",
    "Parity",
    "Preempted",
    "ProcessFailure",
    "ReedSolomon",
    "Scheme",
    "SpillError",
    "Stripe",
    "XorSet",
    "UnknownSchemeError",
    "UnrecoverableError",
    "get_scheme",
]
