"""Benchmark: the fixed cost of one checkpoint of a small state, and where it goes.

Run under MPI at several rank counts (the shared-memory transport)::

    for n in 4 8 16; do
        mpiexec --with-ft ulfm --oversubscribe --mca btl self,sm -n $n \\
            python benchmarks/bench_fixed.py --sizes 64k,1m --repeats 200
    done

Every rank protects one array of each size and checkpoints it ``--repeats`` times back to
back, as ``Context.steps`` does: the checkpoint carries the schedule's small ``Allreduce``
(``Checkpointer.exchange``) inside its transaction. The time per checkpoint is the whole
loop's (from a ``Barrier`` to a ``Barrier``) divided by the repeats; the CPU time is what a
rank spent per checkpoint (the mean over ranks; MPI's polling while it waits included). The
parts are timed on every rank around the calls ``checkpoint()`` makes (median over the
repeats, then the max over ranks): the snapshot (manifest), the stream (point-to-point
pieces), the exchange, the commit agreement, the commit and local copy, and the rest (Python
in ``checkpoint()``). Baselines of the same run: ``Barrier``, ``Agree`` and a 3-double
``Allreduce`` alone, and a memcpy of the state. The load average is printed with every table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import mpi4py

mpi4py.rc.finalize = False  # as in mpickpt.api: never wait in MPI_Finalize
import numpy as np  # noqa: E402
from bench_checkpoint import SCHEMES  # noqa: E402
from bench_first import load  # noqa: E402
from mpi4py import MPI  # noqa: E402

import mpickpt  # noqa: E402
from mpickpt import checkpointer  # noqa: E402
from mpickpt.memstore import MemStore  # noqa: E402
from mpickpt.segment import State  # noqa: E402
from mpickpt.setstream import SetStream  # noqa: E402
from mpickpt.stream import Stream  # noqa: E402

PARTS: dict[str, float] = {}  # seconds of the wrapped calls in the current checkpoint


def size_arg(text: str) -> int:
    """``64k``, ``1m`` or a number of bytes."""
    units = {"k": 1 << 10, "m": 1 << 20}
    t = text.strip().lower()
    return int(float(t[:-1]) * units[t[-1]]) if t[-1] in units else int(t)


def timed_method(cls: Any, meth: str, key: str) -> None:
    """Add the seconds of every call of ``cls.meth`` to ``PARTS[key]``."""
    orig = getattr(cls, meth)

    def wrapper(*a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return orig(*a, **k)
        finally:
            PARTS[key] = PARTS.get(key, 0.0) + time.perf_counter() - t0

    setattr(cls, meth, wrapper)


def wrap_all() -> None:
    """Time the calls ``checkpoint()`` makes; the agreement is what ``run_and_agree`` spends
    beyond its step."""
    timed_method(State, "snapshot", "snapshot")
    timed_method(Stream, "run", "stream")
    timed_method(SetStream, "run", "stream")
    timed_method(MemStore, "commit", "commit + local copy")
    timed_method(MemStore, "keep_local", "commit + local copy")
    orig = checkpointer.run_and_agree

    def run_and_agree(comm: MPI.Comm, step: Callable[[], Any], what: str) -> Any:
        inner = 0.0

        def timed_step() -> Any:
            nonlocal inner
            t0 = time.perf_counter()
            try:
                return step()
            finally:
                inner = time.perf_counter() - t0

        t0 = time.perf_counter()
        try:
            return orig(comm, timed_step, what)
        finally:
            PARTS["agreement"] = time.perf_counter() - t0 - inner

    checkpointer.run_and_agree = run_and_agree


def exchange(comm: MPI.Comm) -> np.ndarray:
    """The schedule's reduction, as ``Context._checkpoint`` runs it."""
    mine = np.array([0.0, 1.0, 2.0])
    out = np.empty_like(mine)
    t0 = time.perf_counter()
    comm.Allreduce(mine, out, op=MPI.MAX)
    PARTS["exchange (Allreduce)"] = time.perf_counter() - t0
    return out


def per_call(comm: MPI.Comm, fn: Callable[[], Any], repeats: int) -> float:
    """Seconds per call of ``fn`` on every rank at once, back to back."""
    fn()
    comm.Barrier()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    comm.Barrier()
    return float(comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)) / repeats


def one(comm: MPI.Comm, name: str, nbytes: int, repeats: int) -> dict[str, Any]:
    u = np.arange(nbytes // 8, dtype=np.float64) + comm.Get_rank()
    ckpt = mpickpt.Checkpointer(comm, name, **SCHEMES[name])
    ckpt.protect("u", u)
    ckpt.exchange = exchange
    rows: list[dict[str, float]] = []

    def run() -> None:
        PARTS.clear()
        t0 = time.perf_counter()
        ckpt.checkpoint(len(rows))
        total = time.perf_counter() - t0
        row = dict(PARTS)
        row["rest (Python)"] = total - sum(PARTS.values())
        row["total"] = total
        rows.append(row)

    for _ in range(3):  # steady state: buffers in place, two versions held
        run()
    rows.clear()
    c0 = time.process_time()
    per = per_call(comm, run, repeats)
    cpu = float(comm.allreduce(time.process_time() - c0)) / comm.Get_size() / (repeats + 1)
    ckpt.close()
    keys = list(rows[-1])
    med = {k: statistics.median(r.get(k, 0.0) for r in rows[1:]) for k in keys}
    parts = {k: comm.allreduce(v, op=MPI.MAX) for k, v in med.items()}
    return {"per": per, "cpu": cpu, "parts": parts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="64k,1m", help="bytes per rank (k, m suffixes)")
    ap.add_argument("--schemes", default="parity,mirror,xorset")
    ap.add_argument("--repeats", type=int, default=200, help="checkpoints per measurement")
    args = ap.parse_args()
    SCHEMES["mirror"]["copies"] = 1
    comm = MPI.COMM_WORLD
    n, rank = comm.Get_size(), comm.Get_rank()
    wrap_all()
    sizes = [size_arg(s) for s in args.sizes.split(",") if s]
    schemes = [s for s in args.schemes.split(",") if s]
    dup = comm.Dup()
    dup.Set_errhandler(MPI.ERRORS_RETURN)
    small = np.zeros(3)
    base = {
        "Barrier": per_call(comm, comm.Barrier, args.repeats),
        "Agree": per_call(comm, lambda: dup.Agree(1), args.repeats),
        "Allreduce (3 doubles)": per_call(
            comm, lambda: comm.Allreduce(MPI.IN_PLACE, small, op=MPI.MAX), args.repeats
        ),
    }
    results = []
    for nbytes in sizes:
        a = np.ones(nbytes, np.uint8)
        b = np.zeros_like(a)
        memcpy = per_call(comm, lambda a=a, b=b: np.copyto(b, a), args.repeats)
        for name in schemes:
            results.append((nbytes, name, memcpy, one(comm, name, nbytes, args.repeats)))
    if rank == 0:
        print(f"# fixed cost per checkpoint: {n} ranks, {os.cpu_count()} cores, load {load()}")
        print(
            "# baselines (ms per call, all ranks at once): "
            + ", ".join(f"{k} {v * 1e3:.3f}" for k, v in base.items())
        )
        for nbytes, name, memcpy, r in results:
            parts = ", ".join(f"{k} {v * 1e3:.3f}" for k, v in r["parts"].items())
            print(
                f"{nbytes >> 10:6d} KiB  {name:8s} {r['per'] * 1e3:8.3f} ms per checkpoint "
                f"(CPU {r['cpu'] * 1e3:.3f} ms per rank; memcpy {memcpy * 1e3:.3f} ms); "
                f"parts (median, max over ranks, ms): {parts}"
            )
        print(f"# load at the end {load()}")
    dup.Free()


if __name__ == "__main__":
    main()
