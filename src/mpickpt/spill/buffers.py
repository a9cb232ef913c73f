"""The shared-memory buffers a rank's spill writer hands to its helper (see :mod:`.writer`)."""

from __future__ import annotations

import contextlib
import mmap
import os

import numpy as np


class SharedBuffer:
    """A segment buffer in shared memory (an anonymous ``memfd``), mapped in both processes.

    ``lent``: the rank's own copy of its newest segment lives in it (see
    :meth:`SpillWriter.buffer`), so it is not reused until the next one is lent."""

    def __init__(self, ident: int, size: int) -> None:
        self.ident, self.size = ident, size
        self.lent = False
        self.fd = os.memfd_create(f"mpickpt-spill-{ident}", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, max(size, 1))
            self.map = mmap.mmap(self.fd, max(size, 1))
        except BaseException:
            os.close(self.fd)
            raise
        self.address = self.array(0).__array_interface__["data"][0]

    def array(self, n: int) -> np.ndarray:
        return np.frombuffer(self.map, dtype=np.uint8, count=n)

    def holds(self, a: np.ndarray) -> bool:
        """Whether ``a`` is this buffer's first ``a.nbytes`` bytes (a lent buffer's array)."""
        start = a.__array_interface__["data"][0]
        return start == self.address and a.flags.c_contiguous and a.nbytes <= self.size

    def close(self) -> None:
        os.close(self.fd)
        # a lent buffer may still be the rank's own copy: then its mapping stays until the
        # last array on it is gone (the mapping holds the memory, not the fd)
        with contextlib.suppress(BufferError):
            self.map.close()


class BufferPool:
    """Segment buffers for reuse: a warm copy costs far less than one into fresh memory."""

    def __init__(self) -> None:
        self.free: list[SharedBuffer] = []  # buffers of finished writes
        self.forget: list[int] = []  # buffers closed here that the helper still has mapped
        self.last = 0

    def take(self, n: int) -> SharedBuffer:
        """A buffer of at least ``n`` bytes: a free one if it is not much larger, else new."""
        fits = [b for b in self.free if n <= b.size <= 2 * n]
        if fits:
            buf = min(fits, key=lambda b: b.size)
            self.free.remove(buf)
            return buf
        self.close()  # at most queue_size + 2 exist at once (with the lent one)
        self.last += 1
        return SharedBuffer(self.last, n)

    def release(self, buf: SharedBuffer | None) -> None:
        """The helper is done with ``buf``: free it unless it is lent (or none: a commit)."""
        if buf is not None and not buf.lent:
            self.free.append(buf)

    def close(self) -> None:
        for b in self.free:
            self.forget.append(b.ident)
            b.close()
        self.free.clear()
