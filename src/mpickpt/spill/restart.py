"""The restart search: which spilled version a job resumes from. :func:`survey` reads what a
directory offers (once, on one process under MPI); :func:`find_restart` loads this process's
files of the newest version that every process loads intact."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import SpillError
from .directory import INDEX, done_step, load, present_versions, read_index
from .format import version_dir


@dataclass
class Restart:
    """A spilled version to restart from: how many workers wrote it, its step, this process's
    ``segments`` of it (old worker id -> segment bytes), and the damage met on newer ones."""

    version: int
    written_by: int
    step: int
    segments: dict[int, np.ndarray] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    done: int | None = None  # the run that wrote it completed after this step (DONE)


@dataclass(frozen=True)
class Survey:
    """What a restart can try, read from the directory once: the complete versions of the
    newest run shape (newest first, as ``(version, workers, step)``), the damage met on the
    way, and the ``DONE`` mark. Under MPI one process reads it and the others are given it,
    so that every process tries the same versions in the same order."""

    candidates: list[tuple[int, int, int]]
    problems: list[str]
    bad: list[str]
    done: int | None


def _everyone(problems: list[str]) -> list[str]:
    return problems


def survey(
    directory: str | os.PathLike[str], nworkers: int, *, adapt: bool = False, tag: str | None = None
) -> Survey:
    """Read what a restart of a job of ``nworkers`` (tagged ``tag``) can try in ``directory``.

    Raises :class:`SpillError` if the newest complete version was written by a different number
    of workers (unless ``adapt``: then the application redistributes) or by a run with another
    ``tag``. Older versions of another run shape are skipped, as problems.
    """
    d = os.fspath(directory)
    if not os.path.isdir(d):
        raise SpillError(f"no spill directory {d}")
    found = Survey([], [], [], done_step(d))
    shape: int | None = None  # the number of workers of the newest complete version
    for v in present_versions(d):
        try:
            index = read_index(d, v)
            n = int(index["nworkers"])
        except SpillError as e:
            if os.path.exists(os.path.join(version_dir(d, v), INDEX)):
                found.problems.append(str(e))
                found.bad.extend(e.paths)
            continue  # no index: an interrupted spill, not a version
        if shape is None:
            _check_newest(d, v, n, index.get("tag"), nworkers, adapt, tag)
        elif n != shape:  # older versions of another run shape are not mixed in
            found.problems.append(
                f"spill version {v} in {d} was written by {n} workers, not {shape}"
            )
            continue
        shape = n
        found.candidates.append((v, n, int(index["step"])))
    return found


def _check_newest(
    d: str, v: int, n: int, written_tag: Any, nworkers: int, adapt: bool, tag: str | None
) -> None:
    """Refuse a directory whose newest version another computation or run shape wrote."""
    if written_tag != tag:
        raise SpillError(
            f"spill version {v} in {d} was written by a run tagged {written_tag!r}, "
            f"but this run's tag is {tag!r}: it belongs to another computation; use "
            "another directory, or fresh=True (MPICKPT_FRESH=1) to start over (the old "
            "versions are moved aside)"
        )
    if not adapt and n != nworkers:
        raise SpillError(
            f"spill version {v} in {d} was written by {n} workers, but this job has "
            f"{nworkers}; relaunch with {n} workers (plus spares), or use another "
            f"spill directory to start afresh"
        )


def find_restart(
    directory: str | os.PathLike[str],
    nworkers: int,
    ranks: Callable[[int], Iterable[int]] | None = None,
    *,
    adapt: bool = False,
    agree: Callable[[list[str]], list[str]] = _everyone,
    tag: str | None = None,
    surveyed: Survey | None = None,
) -> Restart:
    """The newest complete version whose files all load and verify: the one restart search.

    Damaged versions are skipped and each damage is described in ``problems``. ``ranks(n)``
    names the ranks whose files this process loads from a version written by ``n`` workers
    (default: all of them). Under MPI each process loads its own from the versions of one
    ``surveyed`` (see :class:`Survey`; read here if not given), and ``agree`` (collective)
    turns this process's problems into everyone's, so that all pick the same version.

    Raises :class:`SpillError` as :func:`survey` does, or if no version is usable (the message
    lists the bad files).
    """
    d = os.fspath(directory)
    found = surveyed or survey(d, nworkers, adapt=adapt, tag=tag)
    problems, bad = list(found.problems), list(found.bad)
    for v, n, step in found.candidates:
        segments: dict[int, np.ndarray] = {}
        mine: list[str] = []
        for r in ranks(n) if ranks is not None else range(n):
            try:
                segments[r] = load(d, v, r)
            except SpillError as e:
                mine.append(str(e))
                bad += e.paths
        damage = agree(mine)
        if not damage:
            return Restart(v, n, step, segments, problems, found.done)
        problems += damage
    if not bad and not problems:
        raise SpillError(f"no complete version in spill directory {d}")
    listing = "\n".join(f"  - {p}" for p in problems)
    raise SpillError(f"no usable version in spill directory {d}:\n{listing}", bad)
