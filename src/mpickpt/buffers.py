"""Buffers allocated once and early, then reused from checkpoint to checkpoint.

Fresh memory is expensive where users feel it: the kernel faults in and zeroes every page on
first touch, which made the first two checkpoints of a job several times slower than the
steady ones (``benchmarks/bench_first.py``, ``docs/measurements.md``). The checkpointer
therefore reserves its buffers when the state is protected (:func:`prefaulted`), with some
room to spare so that a slightly different size (a small object protected after the arrays,
a manifest a few bytes longer) still fits one (:func:`fits`).
"""

from __future__ import annotations

import numpy as np

PAGE = 4096


def room(nbytes: int) -> int:
    """How many bytes more than ``nbytes`` a reused buffer may have."""
    return nbytes // 64 + (16 << 10)


def capacity(nbytes: int) -> int:
    """The size to reserve for ``nbytes``: half the room on top, so that a size a little
    larger or smaller still :func:`fits`."""
    return nbytes + room(nbytes) // 2


def fits(cap: int, nbytes: int) -> bool:
    """Whether a buffer of ``cap`` bytes may hold ``nbytes`` (without wasting much)."""
    return nbytes <= cap <= nbytes + room(nbytes)


def prefaulted(nbytes: int) -> np.ndarray:
    """A uint8 buffer whose pages are all faulted in (one write per page)."""
    buf = np.empty(nbytes, dtype=np.uint8)
    buf[::PAGE] = 0
    return buf


def take(pool: dict[int, list[np.ndarray]], nbytes: int) -> np.ndarray:
    """The first ``nbytes`` of a pooled buffer (by capacity) that :func:`fits`, else of a
    new one."""
    for cap in sorted(pool):
        if pool[cap] and fits(cap, nbytes):
            return pool[cap].pop()[:nbytes]
    return np.empty(nbytes, dtype=np.uint8)


def whole(buf: np.ndarray) -> np.ndarray:
    """The buffer ``buf`` was taken from (see :func:`take`), to give back to a pool."""
    base = buf.base
    return base if isinstance(base, np.ndarray) and base.ndim == 1 else buf


def keep_fitting(pool: dict[int, list[np.ndarray]], sizes: set[int]) -> None:
    """Drop the pooled buffers that fit none of ``sizes`` (the state changed size)."""
    for cap in list(pool):
        if not any(fits(cap, n) for n in sizes):
            del pool[cap]
