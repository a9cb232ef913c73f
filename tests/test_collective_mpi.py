"""Collective checks in pytest-mpi's style: every rank runs pytest, and the tests use
``MPI.COMM_WORLD`` (the ``world`` fixture) together. Run them as

    mpiexec -n 4 python -m pytest --with-mpi tests/test_collective_mpi.py

A plain ``python -m pytest`` never initializes MPI in its own process: there the collective
tests are skipped and :func:`test_collective_checks_under_mpiexec` runs that command.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from conftest import command, run_command

SCHEMES = [
    ("parity", {"group": 2, "backups": 3}),
    ("mirror", {"copies": 2}),
    ("stripe", {"backups": 3}),
    ("rs", {"group": 2, "parity": 1, "backups": 3}),
    ("xorset", {"group": 4}),  # one set of 4: each rank rebuilt from the other three
    # small messages: many blocks pipelined along the ring, segments of different sizes
    ("xorset", {"group": 3, "chunk": 512}),
]


def everywhere(world: Any, ok: bool) -> bool:
    """Whether ``ok`` holds on every rank: all ranks then pass or fail the test together (a
    rank failing alone would leave the others waiting in the next collective)."""
    from mpi4py import MPI

    return bool(world.allreduce(int(ok), op=MPI.MIN))


@pytest.mark.mpi(min_size=4)
@pytest.mark.parametrize(("scheme", "params"), SCHEMES, ids=[f"{s}{p}" for s, p in SCHEMES])
def test_checkpoint_and_rebuild_every_rank(world: Any, scheme: str, params: dict[str, Any]) -> None:
    from mpickpt import Checkpointer

    ckpt = Checkpointer(world, scheme, **params)
    rank = world.Get_rank()
    rng = np.random.default_rng(rank)
    u = ckpt.protect("u", rng.random(1000 + 37 * rank))  # segments of different sizes
    ckpt.protect("meta", {"rank": rank, "name": f"w{rank}"})
    ckpt.checkpoint(step=5)
    own = ckpt.local.copy()
    if scheme == "xorset":  # one parity chunk held: 1/(k-1) of the set's largest segment
        from mpickpt.schemes.xorset import chunk_size

        sizes = world.allgather(own.size)
        held = chunk_size(sizes, world.Get_size())
        assert everywhere(world, ckpt.store.nbytes() == held), (ckpt.store.nbytes(), held)
        assert held * (world.Get_size() - 1) < max(sizes) + 8 * world.Get_size()
    for lost in range(world.Get_size()):
        seg = ckpt.rebuild(lost=[lost])
        ok = seg is None if rank != lost else np.array_equal(seg, own)
        assert everywhere(world, ok), f"rebuild of rank {lost} with {scheme}"
    # what a rebuilt segment restores (rank 1's, as if it was lost): the values, in place
    saved = u.copy()
    u[:] = -1.0
    seg = ckpt.rebuild(lost=[1])
    if seg is not None:
        assert ckpt.restore_from(seg) == 5
        back = ckpt.protect("u", u)
        meta = ckpt.protect("meta", None)
        ok = back is u and np.array_equal(u, saved) and meta == {"rank": rank, "name": f"w{rank}"}
    else:
        ok = bool((u == -1.0).all())
    assert everywhere(world, ok)
    ckpt.close()


@pytest.mark.mpi(min_size=4)
def test_beyond_the_tolerance_is_the_same_error_everywhere(world: Any) -> None:
    from mpickpt import Checkpointer, UnrecoverableError

    ckpt = Checkpointer(world, "stripe", backups=3)  # the owner alone
    ckpt.protect("u", np.full(100, float(world.Get_rank())))
    ckpt.checkpoint(step=0)
    with pytest.raises(UnrecoverableError) as e:
        ckpt.rebuild(lost=[0, 1])
    messages = world.allgather(str(e.value))
    assert len(set(messages)) == 1, messages
    ckpt.close()


@pytest.mark.mpi
def test_collective_checks_under_mpiexec() -> None:
    """The command above, from a plain pytest run: every rank passes every collective test."""
    cmd = command(
        4, "-m", "pytest", "--with-mpi", "-q", "--color=no", "-p", "no:cacheprovider", __file__
    )
    rc, out, err = run_command(cmd, timeout=240)
    assert rc == 0, f"rc={rc}\n{out}\n{err}"
    summaries = re.findall(r"^(\d+) passed, (\d+) skipped", out, re.M)
    expected = len(SCHEMES) + 1  # this launcher is skipped on the ranks
    assert summaries == [(str(expected), "1")] * 4, out
