"""mpickpt: in-memory redundant checkpoints and online recovery for MPI jobs.

Every worker's protected state is checkpointed into the RAM of other ranks (mirror, stripe or
the patent's striped XOR parity); when a rank dies, ULFM survivors and a spare rebuild it and
the loop resumes from the last committed step.
"""

from __future__ import annotations

import sys
from importlib import metadata
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
from .schemes import Mirror, Parity, ReedSolomon, Scheme, Stripe, XorSet, get_scheme  # noqa: E402

# - an mpickpt error raised before the job's processes have joined (a bad parameter) is
#   printed once and gives the job its exit code (see errors.excepthook)
if sys.excepthook is sys.__excepthook__:
    sys.excepthook = _excepthook

# - a process lost before MPI is initialised must not hang the others in MPI_Init: bound it
#   (see startup.py; this too needs mpickpt imported before mpi4py.MPI)
_startup.guard_mpi_init()

try:  # one source for the version: pyproject.toml, through the installed package's metadata
    __version__ = metadata.version("mpickpt")
except metadata.PackageNotFoundError:  # pragma: no cover - a bare checkout on PYTHONPATH
    __version__ = "0+unknown"

# The MPI-facing names are imported on first use, so that ``import mpickpt`` (the schemes, the
# layout, the spill tools) does not start MPI.
_LAZY = {
    "Checkpointer": "checkpointer",
    "Context": "context",
    "Runner": "runner",
    "resilient": "api",
    "waitall": "transport",
}

if TYPE_CHECKING:
    from .api import resilient
    from .checkpointer import Checkpointer
    from .context import Context
    from .runner import Runner
    from .transport import waitall


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'mpickpt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
