"""mpickpt: in-memory redundant checkpoints and online recovery for MPI jobs.

Every worker's protected state is checkpointed into the RAM of other ranks (mirror, stripe or
the patent's striped XOR parity); when a rank dies, ULFM survivors and a spare rebuild it and
the loop resumes from the last committed step.
"""

from __future__ import annotations

from .api import EXIT_NO_SPARES, EXIT_UNRECOVERABLE, Context, resilient
from .checkpointer import Checkpointer
from .errors import (
    ConfigError,
    DecodeError,
    IntegrityError,
    MpickptError,
    NoSparesError,
    ProcessFailure,
    UnknownSchemeError,
    UnrecoverableError,
)
from .schemes import Mirror, Parity, Scheme, Stripe, get_scheme

__version__ = "0.1.0"

__all__ = [
    "EXIT_NO_SPARES",
    "EXIT_UNRECOVERABLE",
    "Context",
    "resilient",
    "Checkpointer",
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
