"""Files written whole or not at all: the content goes to ``<path>.tmp``, which is renamed
over ``<path>``, so a reader (or a crash) sees the old file or the new one, never a part of
one. No MPI here."""

from __future__ import annotations

import errno
import os


def fsync_dir(path: str) -> None:
    """Make the entries of directory ``path`` (a rename, a new file) durable."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError as e:  # pragma: no cover - some file systems refuse directory fsync
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def fsync_file(path: str) -> None:
    """Make the content of file ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_file(path: str) -> str:
    """Create ``path`` empty and private (0600) before anything is written to it, so that a
    process killed mid-write leaves no readable ``.tmp`` either; returns ``path``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
    finally:
        os.close(fd)
    return path


def publish(tmp: str, final: str, *, private: bool = False, durable: bool = False) -> None:
    """Rename the complete file ``tmp`` to ``final``. ``private``: readable by this user only
    (0600) first; ``durable``: fsync the file before and its directory after."""
    if private:
        os.chmod(tmp, 0o600)
    if durable:
        fsync_file(tmp)
    os.replace(tmp, final)
    if durable:
        fsync_dir(os.path.dirname(final) or ".")


def write_text(final: str, text: str, *, private: bool = False, durable: bool = False) -> str:
    """Write ``text`` to ``final`` through ``final.tmp`` (see :func:`publish`); return
    ``final``."""
    tmp = final + ".tmp"
    with open(private_file(tmp) if private else tmp, "w") as f:
        f.write(text)
    publish(tmp, final, private=private, durable=durable)
    return final
