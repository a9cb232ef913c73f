"""Benchmark: the first and second checkpoints against a steady one, per scheme and size.

Run under MPI (8 ranks, the shared-memory transport)::

    mpiexec --with-ft ulfm --oversubscribe --mca btl self,sm -n 8 \\
        python benchmarks/bench_first.py --sizes 16,64,256 --steady 5

For every size (MB of float64 per rank) and scheme, a new ``Checkpointer`` protects a touched
array and checkpoints ``2 + --steady`` times, the array changing between checkpoints. Each
time runs from a ``Barrier`` until every rank is done (max over ranks), as in
``bench_checkpoint.py``. The table gives the first and second checkpoints as multiples of the
steady one (the median of the rest) measured in the same job, plus the ``Checkpointer(...)``
and ``protect`` times (the work done there, once, before the loop) and the load average.
Nothing is hard-coded: the ratios compare numbers of one run.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import time
from typing import Any

import mpi4py

mpi4py.rc.finalize = False  # as in mpickpt.api: never wait in MPI_Finalize
from bench_checkpoint import MB, SCHEMES, make_array, timed, trim  # noqa: E402
from mpi4py import MPI  # noqa: E402

import mpickpt  # noqa: E402


def load() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` prints them."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


PARTS: dict[str, list[float]] = {}  # --parts: seconds per call of the wrapped methods


def wrap_parts() -> None:
    """Time every call of the stream and of the local copy (for --parts)."""
    from mpickpt.memstore import MemStore
    from mpickpt.setstream import SetStream
    from mpickpt.stream import Stream

    for cls, meth in ((Stream, "run"), (SetStream, "run"), (MemStore, "keep_local")):
        orig = getattr(cls, meth)

        def timed_call(*a: Any, _orig: Any = orig, _key: str = meth, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return _orig(*a, **k)
            finally:
                PARTS.setdefault(_key, []).append(time.perf_counter() - t0)

        setattr(cls, meth, timed_call)


def one_scheme(comm: MPI.Comm, name: str, nbytes: int, steady: int) -> dict[str, Any]:
    """Seconds of ``Checkpointer(...)``, ``protect``, and of every checkpoint of a new run."""
    PARTS.clear()
    u = make_array(nbytes, comm.Get_rank())
    comm.Barrier()
    t0 = time.perf_counter()
    ckpt = mpickpt.Checkpointer(comm, name, **SCHEMES[name])
    t1 = time.perf_counter()
    ckpt.protect("u", u)
    t2 = time.perf_counter()
    setup = comm.allreduce((t1 - t0, t2 - t1), op=MPI.MAX)  # the max of each, over ranks
    times = []
    for step in range(2 + steady):
        u[step] += 1.0  # the state changes between checkpoints
        times.append(timed(comm, functools.partial(ckpt.checkpoint, step)))
    ckpt.close()
    del ckpt, u
    trim()
    every = comm.allgather(dict(PARTS))  # per call, the max over ranks
    parts = {k: [max(x) for x in zip(*(p[k] for p in every), strict=True)] for k in PARTS}
    return {
        "scheme": name,
        "construct": setup[0],
        "protect": setup[1],
        "times": times,
        "parts": parts,
    }


def print_row(r: dict[str, Any]) -> None:
    first, second, *rest = r["times"]
    st = statistics.median(rest) if rest else float("nan")
    print(
        f"{r['size_mb']:7g}  {r['scheme']:8s} {r['construct']:7.4f} "
        f"{r['protect']:9.5f} {first:7.4f} {second:7.4f} {st:8.4f} "
        f"{first / st:10.2f} {second / st:10.2f} {r['load']:5.1f}",
        flush=True,
    )
    for k, v in r["parts"].items():
        print(f"{'':17s}{k}: " + " ".join(f"{x:.4f}" for x in v), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="16,64,256", help="MB per rank, comma separated")
    ap.add_argument("--schemes", default="parity,mirror,stripe,rs,xorset")
    ap.add_argument("--steady", type=int, default=5, help="checkpoints after the second")
    ap.add_argument("--copies", type=int, default=1, help="mirror's copies")
    ap.add_argument("--parts", action="store_true", help="also time the stream and local copy")
    ap.add_argument("--json", default=None, help="write the measurements to this file")
    args = ap.parse_args()
    SCHEMES["mirror"]["copies"] = args.copies
    if args.parts:
        wrap_parts()
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    sizes = [float(s) for s in args.sizes.split(",") if s]
    schemes = [s for s in args.schemes.split(",") if s]
    if rank == 0:
        print(
            f"# first vs steady checkpoints: {comm.Get_size()} ranks, {os.cpu_count()} cores, "
            f"load average {load()}",
            flush=True,
        )
        print(
            f"{'MB/rank':>7s}  {'scheme':8s} {'new s':>7s} {'protect s':>9s} {'1st s':>7s} "
            f"{'2nd s':>7s} {'steady s':>8s} {'1st/steady':>10s} {'2nd/steady':>10s} "
            f"{'load':>5s}",
            flush=True,
        )
    rows = []
    for size in sizes:
        for name in schemes:
            r = one_scheme(comm, name, int(size * MB) // 8 * 8, args.steady)
            r["size_mb"], r["load"] = size, os.getloadavg()[0]
            rows.append(r)
            if rank == 0:
                print_row(r)
    if rank == 0:
        print(f"# load average at the end {load()}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"ranks": comm.Get_size(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
