"""mpickpt: in-memory redundant checkpoints and online recovery for MPI jobs.

Every worker's protected state is checkpointed into the RAM of other ranks (mirror, stripe or
the patent's striped XOR parity); when a rank dies, ULFM survivors and a spare rebuild it and
the loop resumes from the last committed step.
"""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING, Any

import mpi4py

# These take effect only if mpickpt is imported before mpi4py.MPI (examples import it first):
# - MPI_Finalize can hang after a failure (open-mpi/ompi#11404): skip it then.
mpi4py.rc.finalize = False

from .errors import (  # noqa: E402 - after the rc setting above
    ApplicationError,
    ConfigError,
    DecodeError,
    IntegrityError,
    MpickptError,
    NoSparesError,
    ProcessFailure,
    UnknownSchemeError,
    UnrecoverableError,
)
from .schemes import Mirror, Parity, Scheme, Stripe, get_scheme  # noqa: E402

try:  # one source for the version: pyproject.toml, through the installed package's metadata
    __version__ = metadata.version("mpickpt")
except metadata.PackageNotFoundError:  # pragma: no cover - a bare checkout on PYTHONPATH
    __version__ = "0+unknown"

# The MPI-facing names are imported on first use, so that ``import mpickpt`` (the schemes, the
# layout, the spill tools) does not start MPI.
_LAZY = {
    "Checkpointer": "checkpointer",
    "Context": "api",
    "EXIT_APPLICATION": "api",
    "EXIT_NO_SPARES": "api",
    "EXIT_UNRECOVERABLE": "api",
    "resilient": "api",
    "waitall": "transport",
}

if TYPE_CHECKING:
    from .api import EXIT_APPLICATION, EXIT_NO_SPARES, EXIT_UNRECOVERABLE, Context, resilient
    from .checkpointer import Checkpointer
    from .transport import waitall


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        # api first: it switches off MPI_Finalize before mpi4py initializes MPI
        importlib.import_module(".api", __name__)
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'mpickpt' has no attribute {name!r}")


__all__ = [
    "__version__",
    "EXIT_APPLICATION",
    "EXIT_NO_SPARES",
    "EXIT_UNRECOVERABLE",
    "Context",
    "resilient",
    "waitall",
    "Checkpointer",
    "ApplicationError",
    "ConfigError",
    "DecodeError",
    "IntegrityError",
    "Mirror",
    "MpickptError",
    "NoSparesError",
    "Parity",
    "ProcessFailure",
    "Scheme",
    "Stripe",
    "UnknownSchemeError",
    "UnrecoverableError",
    "get_scheme",
]
