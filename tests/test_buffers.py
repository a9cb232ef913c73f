"""Buffers reserved once and reused (``mpickpt.buffers``), and the local copy's reservation."""

from __future__ import annotations

import numpy as np

from mpickpt import buffers
from mpickpt.memstore import MemStore
from mpickpt.segment import State


def test_a_reserved_buffer_serves_sizes_around_it_and_goes_back_whole() -> None:
    n = 1 << 20
    cap = buffers.capacity(n)
    pool = {cap: [buffers.prefaulted(cap)]}
    taken = buffers.take(pool, n + 8)  # a slightly larger segment still fits
    assert taken.size == n + 8 and not pool[cap]
    assert buffers.whole(taken).size == cap
    pool[cap].append(buffers.whole(taken))
    assert buffers.take(pool, 2 * n).base is None  # far larger: a new buffer
    assert buffers.take(pool, n // 2).base is None  # far smaller: not this one either
    buffers.keep_fitting(pool, {n // 2})
    assert pool == {}
    assert buffers.whole(np.empty(8, np.uint8)).size == 8


def test_the_first_local_copy_goes_into_the_reserved_buffer() -> None:
    state = State()
    state["u"] = np.arange(1000.0)
    seg = state.snapshot(0)
    store = MemStore()
    store.reserve(seg.nbytes)
    room = store.room
    assert room is not None
    store.keep_local(0, seg)
    assert store.local is not None and store.room is None
    assert np.shares_memory(store.local, room)
    assert np.array_equal(store.local, seg.read_into(0, np.empty(seg.nbytes, np.uint8)))
