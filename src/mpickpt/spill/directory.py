"""A spill directory: versions, their index (the commit marker), pruning, the restart search.

Layout::

    DIR/v00000007/rank00000.h5     one self-describing HDF5 file per rank and version
    DIR/v00000007/rank00001.h5
    DIR/v00000007/INDEX.json       the commit marker: a version without it does not exist
    DIR/DONE                       the run completed (written last, by worker 0)

``INDEX.json`` is written atomically by one rank only after every rank has reported its file
complete; see :func:`commit_index`. No MPI here: the ranks are coordinated by
:mod:`mpickpt.spill.tier`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np

from ..errors import SpillError
from ..files import fsync_dir, write_text
from .format import (
    CHECKSUM_ALGORITHM,
    FORMAT,
    FORMAT_VERSION,
    library_version,
    make_private_dir,
    rank_file,
    read_rank_file,
    version_dir,
    write_rank_file,
)

INDEX = "INDEX.json"
DONE = "DONE"  # job scripts check it: mpirun also exits 0 when it loses a node mid-run
_VDIR = re.compile(r"^v(\d{8,})$")


def mark_done(directory: str, step: int) -> str:
    """Record that the run completed (after ``step`` steps): ``DONE`` in the spill directory."""
    path = os.path.join(directory, DONE)
    return write_text(path, f"completed after step {step}\n", private=True, durable=True)


def done_step(directory: str) -> int | None:
    """The step after which the run that wrote ``directory`` completed, if it did."""
    try:
        with open(os.path.join(directory, DONE)) as f:
            return int(f.read().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def set_aside(directory: str | os.PathLike[str]) -> str | None:
    """Start over in ``directory``: move its versions and ``DONE`` into a new
    ``old-<UTC time>`` directory inside it (nothing is deleted); return that, if anything moved."""
    d = os.fspath(directory)
    names = (
        [n for n in sorted(os.listdir(d)) if _VDIR.match(n) or n == DONE]
        if os.path.isdir(d)
        else []
    )
    if not names:
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    old, n = os.path.join(d, f"old-{stamp}"), 1
    while os.path.exists(old):
        old, n = os.path.join(d, f"old-{stamp}-{n}"), n + 1
    os.mkdir(old, 0o700)
    for name in names:
        os.replace(os.path.join(d, name), os.path.join(old, name))
    fsync_dir(d)
    return old


def write_version_file(
    directory: str | os.PathLike[str],
    version: int,
    rank: int,
    segment: np.ndarray,
    *,
    nworkers: int,
    scheme_config: Mapping[str, Any],
) -> dict[str, Any]:
    """Write ``rank``'s file of ``version`` under ``directory``; its index entry.

    Creates the version directory if needed. If the version was complete, it stops being
    complete first (its index is removed): a version is rewritten only after a rollback, and
    its index is written again once every rank's file is back.
    """
    directory = os.fspath(directory)
    vdir = version_dir(directory, version)
    if not os.path.isdir(vdir):
        make_private_dir(directory)
        make_private_dir(vdir)
        fsync_dir(directory)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(vdir, INDEX))
        fsync_dir(vdir)
    return write_rank_file(
        rank_file(directory, version, rank),
        segment,
        version=version,
        rank=rank,
        nworkers=nworkers,
        scheme_config=scheme_config,
    )


def commit(
    directory: str | os.PathLike[str],
    version: int,
    nworkers: int,
    scheme_config: Mapping[str, Any],
    files_info: Sequence[Mapping[str, Any]],
    keep: int,
    tag: str | None = None,
) -> None:
    """Write the index of ``version`` from every rank's entry and prune to ``keep`` versions
    (one rank only, after every rank's file is written)."""
    steps = {int(i["step"]) for i in files_info}
    if len(steps) != 1:
        raise SpillError(f"version {version}: ranks report different steps {sorted(steps)}")
    commit_index(directory, version, nworkers, steps.pop(), scheme_config, files_info, tag)
    prune(directory, keep)


# --------------------------------------------------------------------------------------------
# the index (commit marker) and the directory


def commit_index(
    directory: str | os.PathLike[str],
    version: int,
    nworkers: int,
    step: int,
    scheme_config: Mapping[str, Any],
    files_info: Sequence[Mapping[str, Any]],
    tag: str | None = None,
) -> str:
    """Mark ``version`` complete by writing ``INDEX.json`` atomically; return its path.

    ``tag`` is the run's own label (``resilient(tag=...)``); a restart with another is refused.

    Call on one rank, only after every rank's file of ``version`` is written and flushed
    (``files_info`` is the gathered :meth:`mpickpt.spill.writer.SpillWriter.info` of ranks
    ``0..nworkers-1``).
    Each file must exist with the reported size.
    """
    vdir = version_dir(directory, version)
    files = sorted((dict(i) for i in files_info), key=lambda i: int(i["rank"]))
    if [int(i["rank"]) for i in files] != list(range(nworkers)):
        raise SpillError(
            f"version {version}: index needs one file per rank 0..{nworkers - 1}, "
            f"got ranks {[i['rank'] for i in files]}"
        )
    for i in files:
        path = os.path.join(vdir, str(i["file"]))
        try:
            size = os.path.getsize(path)
        except OSError:
            raise SpillError(
                f"{path}: missing; version {version} cannot be committed", [path]
            ) from None
        if size != int(i["size"]):
            raise SpillError(f"{path}: {size} bytes on disk, rank reported {i['size']}", [path])
    now = time.time()
    index = {
        "format": FORMAT + "-index",
        "format_version": FORMAT_VERSION,
        "version": version,
        "step": step,
        "nworkers": nworkers,
        "scheme": dict(scheme_config),
        "tag": tag,
        "mpickpt_version": library_version(),
        "time": now,
        "time_iso": datetime.fromtimestamp(now, timezone.utc).isoformat(),
        "checksum_algorithm": CHECKSUM_ALGORITHM,
        "total_size": sum(int(i["size"]) for i in files),
        "files": files,
    }
    index_text = json.dumps(index, indent=1)
    return write_text(os.path.join(vdir, INDEX), index_text, private=True, durable=True)


def present_versions(directory: str) -> list[int]:
    """Every version directory present (complete or not), newest first."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = [int(m.group(1)) for n in names if (m := _VDIR.match(n))]
    return sorted(found, reverse=True)


def read_index(directory: str | os.PathLike[str], version: int) -> dict[str, Any]:
    """The parsed ``INDEX.json`` of ``version``; :class:`SpillError` if missing or invalid."""
    path = os.path.join(version_dir(directory, version), INDEX)
    try:
        with open(path) as f:
            index: dict[str, Any] = json.load(f)
    except FileNotFoundError:
        raise SpillError(f"version {version} is not complete (no {path})", [path]) from None
    except (OSError, ValueError) as e:
        raise SpillError(f"{path}: unreadable index ({e})", [path]) from e
    try:
        ok = (
            index["format"] == FORMAT + "-index"
            and int(index["version"]) == version
            and len(index["files"]) == int(index["nworkers"])
        )
        names = [str(i["file"]) for i in index["files"]]
    except (KeyError, TypeError, ValueError):
        ok, names = False, []
    if not ok:
        raise SpillError(f"{path}: invalid index", [path])
    # the files of a version are in its directory: a name that leads elsewhere is an attack
    bad = [n for n in names if os.path.basename(n) != n or n in ("", ".", "..") or "\\" in n]
    if bad:
        raise SpillError(f"{path}: file name(s) {bad} lead outside {os.path.dirname(path)}", [path])
    return index


def complete_versions(directory: str | os.PathLike[str]) -> list[int]:
    """Versions with a valid ``INDEX.json``, newest first (their files are not read)."""
    out = []
    for v in present_versions(os.fspath(directory)):
        with contextlib.suppress(SpillError):
            read_index(directory, v)
            out.append(v)
    return out


def prune(directory: str | os.PathLike[str], keep: int) -> list[int]:
    """Delete all but the newest ``keep`` complete versions; return the deleted versions.

    Incomplete version directories older than the newest complete version are deleted too
    (newer ones may still be being written). An index is removed before its files, so a
    crash mid-prune never leaves a version that looks complete but is not.
    """
    if keep < 1:
        raise SpillError(f"keep={keep}: the spill must keep at least one version")
    d = os.fspath(directory)
    complete = complete_versions(d)
    if not complete:
        return []
    kept = set(complete[:keep])
    gone = [v for v in present_versions(d) if v not in kept and v < complete[0]]
    for v in gone:
        vdir = version_dir(d, v)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(vdir, INDEX))
            fsync_dir(vdir)
        shutil.rmtree(vdir, ignore_errors=True)
    if gone:
        fsync_dir(d)
    return gone


def load(directory: str | os.PathLike[str], version: int, rank: int) -> np.ndarray:
    """The exact segment bytes of ``rank`` at a complete ``version``, checksums verified.

    Raises :class:`SpillError` naming the file if the version is not complete, or the file is
    missing, truncated, unreadable or fails a checksum.
    """
    index = read_index(directory, version)
    if not 0 <= rank < int(index["nworkers"]):
        raise SpillError(f"version {version} has ranks 0..{index['nworkers'] - 1}, not {rank}")
    info = next(i for i in index["files"] if int(i["rank"]) == rank)
    path = os.path.join(version_dir(directory, version), str(info["file"]))
    return read_rank_file(path, info)
