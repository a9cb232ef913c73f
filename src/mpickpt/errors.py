"""Exceptions raised by mpickpt. Every message says what happened and what to change."""

from __future__ import annotations


class MpickptError(Exception):
    """Base class of all mpickpt errors."""


class ConfigError(MpickptError, ValueError):
    """A configuration that cannot keep its promise (raised before any data moves)."""


class UnknownSchemeError(ConfigError):
    """No scheme is registered under that name."""


class DecodeError(MpickptError):
    """The pieces at hand are not enough to rebuild a segment (loss beyond tolerance)."""


class IntegrityError(MpickptError):
    """A piece or segment failed its checksum."""


class ProcessFailure(MpickptError):
    """A peer process failed (or the communicator was revoked); recovery is needed."""


class UnrecoverableError(MpickptError):
    """The loss is beyond what the redundancy (and the spill) can restore.

    Raised with the same message on every surviving rank.
    """

    def __init__(self, message: str, lost: tuple[int, ...] = (), version: int = -1) -> None:
        super().__init__(message)
        self.lost = lost
        self.version = version


class ApplicationError(MpickptError):
    """The protected function raised an exception on a worker. Not treated as a rank failure
    (a spare would run into the same bug): every rank raises this, with the same message."""


class NoSparesError(MpickptError):
    """A worker died and no spare rank is left to take its place."""

    def __init__(self, message: str, lost: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.lost = lost
