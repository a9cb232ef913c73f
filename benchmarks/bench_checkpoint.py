"""Benchmark: one ``Checkpointer.checkpoint()`` against memcpy and against h5py + fsync.

Run under MPI (the issue's configuration is 6 workers)::

    mpiexec --allow-run-as-root --with-ft ulfm --oversubscribe --mca btl self,sm -n 6 \\
        python benchmarks/bench_checkpoint.py --sizes 16,64,256 --repeats 3

For every segment size (MB of float64 per rank) it measures, on all ranks at once:

* ``memcpy``: ``numpy.copyto`` of the same bytes into a pre-faulted buffer (the memory
  bandwidth limit: a checkpoint cannot be cheaper than one copy of the state);
* ``h5py+fsync``: writing the same array to a new per-rank HDF5 file on local disk, ``flush``,
  ``os.fsync`` of its descriptor, close (what users do today); the files go to a temporary
  directory (``--tmpdir``), deleted after;
* for every scheme, one ``checkpoint(step)`` after warm-up checkpoints.

Each time runs from a ``Barrier`` to a closing ``Barrier`` (until every rank is done: a
collective is as slow as its slowest rank, and with more ranks than cores the ranks take
turns), maximum over ranks; the table shows the median over ``--repeats`` (at least 10 for the
cheap memcpy).
Ratios compare numbers measured in the same run; nothing is hard-coded.

Memory (per rank, from ``/proc/self/status``): RSS with the array allocated, RSS after the first
checkpoint and after the last one (steady state), and the peak (``VmHWM``, reset through
``/proc/self/clear_refs`` before each checkpoint) during the first checkpoint and during
the steady-state checkpoints. Extras are relative to the RSS with the array allocated, in units of
the segment size. ``held`` is what the library itself holds (pieces of all versions + the local
committed copy), exact and independent of the allocator.

``--profile MB`` adds, at that size: for every scheme a breakdown of one checkpoint (phases timed
by calling the same functions ``checkpoint()`` calls, the stream split into encode / checksum /
MPI wait; a cProfile of rank 0 for parity); single-process throughputs of the primitives
involved; and the library's ``checkpoint()`` against the prototype in ``proto_stream.py``
(what the changes suggested for ``src/`` would gain), alternated, its pieces verified by a
rebuild.
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import functools
import gc
import io
import json
import os
import pstats
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import mpi4py

mpi4py.rc.finalize = False  # as in mpickpt.api: never wait in MPI_Finalize
import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

import mpickpt  # noqa: E402
from mpickpt import stream, transport  # noqa: E402
from mpickpt.checksum import hasher  # noqa: E402
from mpickpt.schemes import xor_into  # noqa: E402
from mpickpt.segment import State  # noqa: E402

MB = 1 << 20
NO_RECYCLE = False  # --no-recycle

SCHEMES: dict[str, dict[str, Any]] = {
    "parity": {"group": 3, "backups": 4},
    "mirror": {"copies": 2},
    "stripe": {"backups": 4},
    "rs": {"group": 3, "parity": 2, "backups": 5},
    "xorset": {"group": 4},
}

# -- helpers ---------------------------------------------------------------------------------

try:
    _libc: Any = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc
    _libc = None


def trim() -> None:
    """Give freed heap memory back to the OS, so that RSS reflects live memory only."""
    gc.collect()
    if _libc is not None:
        _libc.malloc_trim(0)


def mem() -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of this process, in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, val = line.split(":")
                out[key] = int(val.split()[0]) * 1024
    return out


def reset_hwm() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0); False if not supported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def timed(comm: MPI.Comm, fn: Callable[[], Any], cpu: list[float] | None = None) -> float:
    """Seconds from a ``Barrier`` until ``fn()`` is done on *every* rank (a closing
    ``Barrier``); the maximum over ranks. With more ranks than cores the ranks take turns, so
    "every rank done" is the fair measure for a collective and for its baselines alike.
    ``cpu`` gets the CPU seconds (user + system) of ``fn()``, averaged over ranks, appended."""
    comm.Barrier()
    c0 = time.process_time()
    t0 = time.perf_counter()
    fn()
    dc = time.process_time() - c0
    comm.Barrier()
    dt = time.perf_counter() - t0
    if cpu is not None:
        cpu.append(float(comm.allreduce(dc)) / comm.Get_size())
    return float(comm.allreduce(dt, op=MPI.MAX))


def quiet_wait(comm: MPI.Comm) -> None:
    """A barrier that sleeps instead of spinning (so idle ranks leave the cores alone)."""
    req = comm.Ibarrier()
    while not req.Test():
        time.sleep(0.005)


def make_array(nbytes: int, rank: int) -> np.ndarray:
    a = np.empty(nbytes // 8, dtype=np.float64)
    a[:] = np.arange(a.size, dtype=np.float64) * 1e-3 + rank  # touch every page
    return a


# -- baselines -------------------------------------------------------------------------------


def bench_memcpy(comm: MPI.Comm, src: np.ndarray, repeats: int, cpu: list[float]) -> list[float]:
    dst = np.empty_like(src)
    np.copyto(dst, src)  # warm-up: fault the destination pages in
    return [timed(comm, lambda: np.copyto(dst, src), cpu) for _ in range(repeats)]


def bench_h5py(comm: MPI.Comm, src: np.ndarray, repeats: int, tmpdir: str) -> list[float]:
    import h5py

    path = os.path.join(tmpdir, f"rank{comm.Get_rank()}.h5")

    def write() -> None:
        with h5py.File(path, "w") as f:
            f.create_dataset("u", data=src)
            f.flush()
            fd = f.id.get_vfd_handle()  # the sec2 driver's file descriptor
            os.fsync(fd)

    times = []
    for _ in range(repeats):
        times.append(timed(comm, write))
        os.unlink(path)  # outside the timing
    return times


# -- checkpoint ------------------------------------------------------------------------------


def bench_scheme(
    comm: MPI.Comm, name: str, nbytes: int, repeats: int, warmup: int, chunk: int
) -> dict[str, Any]:
    rank = comm.Get_rank()
    trim()
    m_before = mem()
    u = make_array(nbytes, rank)
    extra = {"recycle": False} if NO_RECYCLE else {}
    ckpt = mpickpt.Checkpointer(comm, name, chunk=chunk, **extra, **SCHEMES[name])
    ckpt.protect("u", u)
    trim()
    m_alloc = mem()
    seg = ckpt.state.snapshot(0).nbytes

    hwm_ok = reset_hwm()
    step = 0
    t_first = timed(comm, lambda: ckpt.checkpoint(step))
    m_first = mem()
    times: list[float] = []
    cpu: list[float] = []
    peaks = []
    fresh: list[int] = []
    for i in range(warmup + repeats):
        step += 1
        u[i] += 1.0  # the state changes between checkpoints
        comm.Barrier()
        reset_hwm()
        rss0 = mem()["VmRSS"]
        c: list[float] = []
        t = timed(comm, functools.partial(ckpt.checkpoint, step), c)
        m = mem()
        fresh.append(m["VmHWM"] - rss0)
        peaks.append(m["VmHWM"])
        if i >= warmup:
            times.append(t)
            cpu += c
    m_steady = mem()
    # traffic of one checkpoint (the last one): messages and bytes this rank sent
    stats = getattr(ckpt, "stats", None)
    sent = (stats["messages_sent"], stats["bytes_sent"]) if stats else (0, 0)
    per_ckpt = (
        (sent[0] / max(stats["checkpoints"], 1), sent[1] / max(stats["checkpoints"], 1))
        if stats
        else (0.0, 0.0)
    )
    trim()
    m_trim = mem()
    held = ckpt.store.nbytes() + (ckpt.store.local.nbytes if ckpt.store.local is not None else 0)
    # the stream's recycled receive buffers and staging ring (absent before the stream had them)
    kept = ckpt.stream.nbytes() if getattr(ckpt, "stream", None) is not None else 0
    base = m_alloc["VmRSS"]
    local = {
        "seg": seg,
        "array_rss": m_alloc["VmRSS"] - m_before["VmRSS"],
        "first_peak": m_first["VmHWM"] - base if hwm_ok else float("nan"),
        "first_rss": m_first["VmRSS"] - base,
        "steady_rss": m_steady["VmRSS"] - base,
        "steady_trim": m_trim["VmRSS"] - base,
        "steady_peak": max(peaks) - base if hwm_ok else float("nan"),
        "held": held,
        "kept": kept,
        "msgs": per_ckpt[0],
        "sent": per_ckpt[1],
        "fresh": statistics.median(fresh[warmup:]),
    }
    ckpt.close()
    per_rank = comm.allgather(local)
    return {
        "scheme": name,
        "times": times,
        "cpu": cpu,
        "first": t_first,
        "mem": {k: max(r[k] for r in per_rank) for k in local},
        "mem_min": {k: min(r[k] for r in per_rank) for k in local},
    }


# -- profile ---------------------------------------------------------------------------------


class Clock:
    """Accumulated seconds by label."""

    def __init__(self) -> None:
        self.t: dict[str, float] = {}

    def add(self, key: str, dt: float) -> None:
        self.t[key] = self.t.get(key, 0.0) + dt


class TimedHasher:
    def __init__(self, clock: Clock) -> None:
        self.h = hasher()
        self.clock = clock

    def update(self, data: Any) -> None:
        t0 = time.perf_counter()
        self.h.update(data)
        self.clock.add("checksum (xxh3, sender)", time.perf_counter() - t0)

    def intdigest(self) -> int:
        return int(self.h.intdigest())


def profile_checkpoint(
    comm: MPI.Comm, name: str, nbytes: int, repeats: int, chunk: int, cprofile: bool
) -> None:
    """Where the time of one checkpoint goes, phase by phase (same calls as
    ``Checkpointer.checkpoint``, with the stream's hasher and the scheme's ``combine``
    wrapped)."""
    rank = comm.Get_rank()
    u = make_array(nbytes, rank)
    ckpt = mpickpt.Checkpointer(comm, name, chunk=chunk, **SCHEMES[name])
    ckpt.protect("u", u)
    for s in range(2):  # warm-up: buffers exist, two versions held as in steady state
        ckpt.checkpoint(s)

    clock = Clock()
    orig_hasher = stream.hasher
    orig_combine = ckpt.scheme.combine

    def combine(piece: Any, sources: Any, out: Any = None) -> np.ndarray:
        t0 = time.perf_counter()
        res = orig_combine(piece, sources, out)
        clock.add("encode: parity arithmetic", time.perf_counter() - t0)
        return res

    rows: list[dict[str, float]] = []
    for r in range(repeats):
        clock.t = {}
        step = 10 + r
        version = ckpt.store.committed + 1
        stream.hasher = lambda: TimedHasher(clock)
        ckpt.scheme.combine = combine  # type: ignore[method-assign]
        comm.Barrier()
        t = {}
        t0 = time.perf_counter()
        seg = ckpt.state.snapshot(step, {"version": version, "rank": rank})
        t1 = time.perf_counter()
        assert ckpt.stream is not None
        held = ckpt.stream.run(seg, version)
        t2 = time.perf_counter()
        ckpt.store.stage(version, held)
        ok = comm.Agree(1)
        t3 = time.perf_counter()
        ckpt.stream.recycle_buffers(ckpt.store.commit(version))
        ckpt.store.keep_local(version, seg)
        ckpt.step = step
        t4 = time.perf_counter()
        stream.hasher = orig_hasher
        del ckpt.scheme.combine
        assert ok
        t["snapshot"] = t1 - t0
        t["Stream.run (total)"] = t2 - t1
        for k, v in clock.t.items():
            t["  " + k] = v
        t["  MPI post + wait + rest"] = (t2 - t1) - sum(clock.t.values())
        t["stage + Agree (commit point)"] = t3 - t2
        t["commit + keep_local (copy)"] = t4 - t3
        t["total"] = t4 - t0
        rows.append(t)
    all_rows = comm.gather(rows)

    # cProfile of one more checkpoint on rank 0 (all ranks checkpoint)
    prof = cProfile.Profile() if rank == 0 and cprofile else None
    comm.Barrier()
    if prof:
        prof.enable()
    ckpt.checkpoint(99)
    if prof:
        prof.disable()

    if rank == 0:
        assert all_rows is not None
        keys = list(all_rows[0][0])
        for rr in all_rows:
            for row in rr:
                for k in row:
                    if k not in keys:
                        keys.append(k)
        print(
            f"\n## Breakdown of one {_label(name)} checkpoint, "
            f"{nbytes // MB} MB per rank, {comm.Get_size()} ranks "
            f"(seconds; median over {repeats} repeats of the per-rank time; max over ranks)"
        )
        print(f"{'phase':40s} {'rank 0':>9s} {'max rank':>9s}")
        for k in keys:
            med0 = statistics.median(row.get(k, 0.0) for row in all_rows[0])
            medmax = statistics.median(
                max(rr[i].get(k, 0.0) for rr in all_rows) for i in range(repeats)
            )
            print(f"{k:40s} {med0:9.4f} {medmax:9.4f}")
    if prof is not None:
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(14)
        print(f"\n## cProfile of rank 0, one {_label(name)} checkpoint (sorted by tottime)")
        lines = out.getvalue().splitlines()
        start = next(i for i, ln in enumerate(lines) if "ncalls" in ln)
        print("\n".join(lines[start - 2 :]))
    ckpt.close()
    del ckpt, u
    trim()


def micro(comm: MPI.Comm, nbytes: int) -> None:
    """Single-process throughputs of the primitives (rank 0 alone, the others asleep), and
    the point-to-point bandwidth of rank 0 -> rank 1 (the others asleep)."""
    rank = comm.Get_rank()
    res: dict[str, float] = {}
    if rank == 0:
        a = make_array(nbytes, 0).view(np.uint8)
        b = np.empty_like(a)
        b[:] = 0

        def best(fn: Callable[[], Any], n: int = 5) -> float:
            ts = []
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            return min(ts)

        res["numpy.copyto (pre-faulted dst)"] = best(lambda: np.copyto(b, a))
        res["np.empty + fill (page faults)"] = best(lambda: np.empty_like(a).fill(1))
        res["out[:] = 0 (memset)"] = best(lambda: b.fill(0))
        res["xor_into (b ^= a)"] = best(lambda: xor_into(b, a))

        def h() -> None:
            x = hasher()
            x.update(a)
            x.intdigest()

        res["xxh3_64 checksum"] = best(h)
        seg = State()
        seg["u"] = a
        view = seg.snapshot(0)
        res["SegmentView.read_into (keep_local)"] = best(lambda: view.read_into(0, b))
        del a, b
    quiet_wait(comm)
    # point-to-point: rank 0 -> rank 1, whole buffer and in CHUNK-size messages
    if rank in (0, 1):
        buf = np.ones(nbytes, dtype=np.uint8)
        peer = 1 - rank
        pair = comm.Split(0)
        ts, tc = [], []
        for _ in range(4):
            pair.Barrier()
            t0 = time.perf_counter()
            if rank == 0:
                pair.Send([buf, MPI.BYTE], peer, 1)
            else:
                pair.Recv([buf, MPI.BYTE], peer, 1)
            ts.append(time.perf_counter() - t0)
            pair.Barrier()
            t0 = time.perf_counter()
            chunks = transport.spans(nbytes, transport.CHUNK)
            if rank == 0:
                reqs = [pair.Isend([buf[a : a + n], MPI.BYTE], peer, 2) for a, n in chunks]
            else:
                reqs = [pair.Irecv([buf[a : a + n], MPI.BYTE], peer, 2) for a, n in chunks]
            MPI.Request.Waitall(reqs)
            tc.append(time.perf_counter() - t0)
        res["MPI Send/Recv 0->1 (one message)"] = min(ts)
        res[f"MPI Isend/Irecv 0->1 ({transport.CHUNK // MB} MB chunks)"] = min(tc)
        pair.Free()
        del buf
    else:
        comm.Split(MPI.UNDEFINED)
    quiet_wait(comm)
    got = comm.gather(res)
    if rank == 0:
        assert got is not None
        merged = {**got[1], **got[0]}
        print(
            f"\n## Primitives on {nbytes // MB} MB, one process alone (best of 5; GB/s of the "
            f"{nbytes // MB} MB operand)"
        )
        for k, v in merged.items():
            print(f"{k:44s} {v:8.4f} s  {nbytes / v / 1e9:7.2f} GB/s")


VARIANTS = ("A", "A1", "A1n", "B2")
# A: the library as configured (--chunk, recycling); A1: 1 MB chunks; A1n: 1 MB chunks without
# recycled receive buffers; B2: the prototype in proto_stream.py (all-gathers, recycling)
LIB = {"A": {}, "A1": {"chunk": MB}, "A1n": {"chunk": MB, "recycle": False}}


def _compare_one(
    comm: MPI.Comm, name: str, nbytes: int, repeats: int, chunk: int
) -> tuple[dict[str, dict[str, list[float]]], dict[str, dict[str, float]], dict[str, float], bool]:
    import proto_stream

    u = make_array(nbytes, comm.Get_rank())
    ck = {
        v: mpickpt.Checkpointer(comm, name, **{"chunk": chunk, **LIB.get(v, {})}, **SCHEMES[name])
        for v in VARIANTS
    }
    pools = {"B2": proto_stream.Pool(recycle=True)}
    for c in ck.values():
        c.protect("u", u)

    def run(v: str, step: int) -> None:
        if v in LIB:
            ck[v].checkpoint(step)
        else:
            proto_stream.checkpoint(ck[v], step, pools[v])

    for s in range(2):  # warm-up: steady state (a committed version exists)
        for v in VARIANTS:
            run(v, s)
    res: dict[str, dict[str, list[float]]] = {
        v: {"t": [], "cpu": [], "fresh": []} for v in VARIANTS
    }
    for r in range(repeats):
        u[r] += 1.0
        for v in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
            # no malloc_trim here: like a real run, freed heap is there to be reused
            reset_hwm()
            base = mem()["VmRSS"]
            res[v]["t"].append(timed(comm, functools.partial(run, v, 10 + r), res[v]["cpu"]))
            res[v]["fresh"].append((mem()["VmHWM"] - base) / nbytes)
    ok = True  # every variant's pieces must rebuild every segment exactly
    for c in ck.values():
        got = c.rebuild()
        assert c.store.local is not None and got is not None
        ok &= bool(np.array_equal(got, c.store.local))
        ok &= bool(np.array_equal(c.store.local[-u.nbytes :].view(np.float64), u))
    ok = bool(comm.allreduce(int(ok), op=MPI.MIN))
    held = {}
    for v, c in ck.items():
        n = c.store.nbytes() + (c.store.local.nbytes if c.store.local is not None else 0)
        if v in LIB and c.stream is not None:
            n += c.stream.nbytes()
        if v in pools:
            p = pools[v]
            n += sum(x.nbytes for lst in p.recv.values() for x in lst)
            n += sum(x.nbytes for x in p.ring.values()) + sum(x.nbytes for x in p.tmp.values())
        held[v] = comm.allreduce(n / nbytes, op=MPI.MAX)
    stats = {
        v: {
            k: comm.allreduce(statistics.median(x), op=MPI.MAX)
            for k, x in res[v].items()
            if k == "fresh"
        }
        for v in VARIANTS
    }
    for c in ck.values():
        c.close()
    return res, stats, held, ok


def compare_prototype(
    comm: MPI.Comm, schemes: list[str], nbytes: int, repeats: int, chunk: int
) -> None:
    """Library ``checkpoint()`` (A, and A1 / A1n with 1 MB chunks, with / without recycled
    receive buffers) against the prototype in ``proto_stream.py``: B2 = parity XORed from
    views into a reused staging ring + local copy without zero-fill +
    receive buffers recycled from the dropped version. Runs alternate so that all variants see
    the same machine load; the prototype's pieces are checked by rebuilding every segment with
    the library's own ``rebuild``."""
    rank = comm.Get_rank()
    rows = []
    for name in schemes:
        if name == "rs":  # the prototype computes XOR parity only
            continue
        rows.append((name, *_compare_one(comm, name, nbytes, repeats, chunk)))
        trim()
    if rank == 0:
        med = statistics.median
        print(
            f"\n## Library checkpoint (A; A1: 1 MB chunks; A1n: A1 without recycling) vs the "
            f"prototype (B2), {nbytes // MB} MB/rank, alternated, "
            f"median of {repeats}"
        )
        print(
            f"{'scheme':12s} {'variant':7s} {'wall s':>8s} {'vs A':>6s} {'cpu s':>7s} "
            f"{'fresh':>6s} {'held':>6s} {'rebuild':>8s}"
        )
        for name, res, stats, held, ok in rows:
            ta = med(res["A"]["t"])
            for v in VARIANTS:
                print(
                    f"{_label(name):12s} {v:7s} {med(res[v]['t']):8.4f} "
                    f"{med(res[v]['t']) / ta:6.2f} {med(res[v]['cpu']):7.3f} "
                    f"{stats[v]['fresh']:6.2f} {held[v]:6.2f} "
                    f"{'ok' if ok else 'FAILED':>8s}"
                )
        print(
            "wall: max over ranks; cpu: CPU s per rank (mean over ranks); fresh: VmHWM rise "
            "over the RSS before the checkpoint, in segments;\n"
            "held: what stays allocated between checkpoints (pieces, local copy; for B the "
            "staging ring, for B2 also the recycled buffers), in segments"
        )


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="16,64,256", help="MB per rank, comma separated")
    ap.add_argument("--repeats", type=int, default=3, help="timed checkpoints per scheme")
    ap.add_argument("--warmup", type=int, default=1, help="checkpoints before timing")
    ap.add_argument(
        "--schemes",
        default="parity,mirror,stripe,rs,xorset",
        help="among: parity(group=3,backups=4), mirror(copies=2), stripe(backups=4), "
        "rs(group=3,parity=2,backups=5), xorset(group=4)",
    )
    ap.add_argument(
        "--chunk",
        type=float,
        default=transport.CHUNK / MB,
        help="MB per message of the checkpoint stream (Checkpointer(chunk=...))",
    )
    ap.add_argument("--copies", type=int, default=2, help="mirror's copies")
    ap.add_argument(
        "--no-recycle", action="store_true", help="Checkpointer(recycle=False): fresh buffers"
    )
    ap.add_argument("--no-h5py", action="store_true", help="skip the h5py+fsync baseline")
    ap.add_argument("--tmpdir", default=None, help="where the HDF5 files go (local disk)")
    ap.add_argument("--json", default=None, help="write all measurements to this file")
    ap.add_argument(
        "--png",
        default="bench_checkpoint.png",
        help="picture of time vs MB per scheme, with memcpy and h5py+fsync (needs matplotlib, "
        "the 'bench' extra; '' for none)",
    )
    ap.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="MB",
        help="also: per-scheme breakdown of one checkpoint of MB per rank, "
        "primitive throughputs, and library vs proto_stream.py",
    )
    args = ap.parse_args()

    comm = MPI.COMM_WORLD
    rank, nranks = comm.Get_rank(), comm.Get_size()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    args.chunk = int(args.chunk * MB) // 8 * 8
    schemes = [s for s in args.schemes.split(",") if s]
    SCHEMES["mirror"]["copies"] = args.copies
    global NO_RECYCLE
    NO_RECYCLE = args.no_recycle
    for s in schemes:
        if s not in SCHEMES:
            raise SystemExit(f"unknown scheme {s!r}; known: {', '.join(SCHEMES)}")

    tmpdir = None
    if not args.no_h5py:
        tmpdir = comm.bcast(
            tempfile.mkdtemp(prefix="mpickpt-bench-", dir=args.tmpdir) if rank == 0 else None
        )
    load = os.getloadavg()[0]  # before the run's own ranks load the machine
    if rank == 0:
        print(
            f"# mpickpt checkpoint benchmark: {nranks} ranks, {os.cpu_count()} cores, "
            f"sizes {sizes} MB/rank, repeats {args.repeats} (+{args.warmup} warm-up), "
            f"load average {load:.2f}",
            flush=True,
        )
        print(
            "# schemes: "
            + ", ".join(
                f"{s}({', '.join(f'{k}={v}' for k, v in SCHEMES[s].items())})" for s in schemes
            ),
            flush=True,
        )
        if tmpdir:
            print(f"# h5py files in {tmpdir}", flush=True)

    results: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    try:
        for size in sizes:
            nbytes = size * MB
            u = make_array(nbytes, rank)
            memcpy_cpu: list[float] = []
            memcpy = bench_memcpy(comm, u, max(args.repeats, 10), memcpy_cpu)
            h5 = bench_h5py(comm, u, args.repeats, tmpdir) if tmpdir else []
            del u
            trim()
            rec: dict[str, Any] = {
                "size_mb": size,
                "memcpy": memcpy,
                "memcpy_cpu": memcpy_cpu,
                "h5py": h5,
                "schemes": [],
            }
            if rank == 0:
                print(
                    f"# {size} MB: memcpy {statistics.median(memcpy):.4f} s"
                    + (f", h5py+fsync {statistics.median(h5):.3f} s" if h5 else "")
                    + f"  [{time.perf_counter() - t_start:.0f} s elapsed]",
                    flush=True,
                )
            for name in schemes:
                r = bench_scheme(comm, name, nbytes, args.repeats, args.warmup, args.chunk)
                trim()
                rec["schemes"].append(r)
                if rank == 0:
                    print(
                        f"#   {name}: {statistics.median(r['times']):.4f} s "
                        f"(first {r['first']:.3f} s)  "
                        f"[{time.perf_counter() - t_start:.0f} s elapsed]",
                        flush=True,
                    )
            results.append(rec)
        if args.profile:
            for name in schemes:
                profile_checkpoint(
                    comm,
                    name,
                    args.profile * MB,
                    max(args.repeats, 3),
                    args.chunk,
                    name == "parity",
                )
            micro(comm, args.profile * MB)
            compare_prototype(comm, schemes, args.profile * MB, max(args.repeats, 3), args.chunk)
    finally:
        comm.Barrier()
        if rank == 0 and tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)

    if rank == 0 and results:
        report(results, nranks, args.repeats)
        if args.json:
            with open(args.json, "w") as f:
                record = {"ranks": nranks, "load": load, "schemes": SCHEMES, "results": results}
                json.dump(record, f, indent=1)
        if args.png:
            plot(results, nranks, args.png, load)
    comm.Barrier()  # the others wait: a rank that leaves first makes mpiexec end this one


def plot(results: list[dict[str, Any]], nranks: int, path: str, load: float) -> None:
    """Seconds of one checkpoint against MB per rank, one line per scheme, with the memcpy
    and h5py+fsync baselines of the same run (medians; bars from min to max); ``load``: the
    load average when the run started."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("# no picture: matplotlib is not installed (pip install '.[bench]')")
        return
    sizes = [rec["size_mb"] for rec in results]
    fig, ax = plt.subplots(figsize=(7, 4.5))

    def line(times: list[list[float]], label: str, style: str) -> None:
        med = [statistics.median(t) for t in times]
        lo = [m - min(t) for m, t in zip(med, times, strict=True)]
        hi = [max(t) - m for m, t in zip(med, times, strict=True)]
        ax.errorbar(sizes, med, yerr=[lo, hi], fmt=style, capsize=3, label=label)

    for i, r in enumerate(results[0]["schemes"]):
        line([rec["schemes"][i]["times"] for rec in results], _label(r["scheme"]), "o-")
    line([rec["memcpy"] for rec in results], "memcpy (same bytes)", "k--")
    if all(rec["h5py"] for rec in results):
        line([rec["h5py"] for rec in results], "h5py + fsync", "s:")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("MB per rank")
    ax.set_ylabel("seconds (max over ranks, median)")
    ax.set_title(
        f"One checkpoint, {nranks} ranks on {os.cpu_count()} cores (load average {load:.1f} "
        "at the start)"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"# picture: {path}")


def _label(name: str) -> str:
    return f"{name}({','.join(str(v) for v in SCHEMES[name].values())})"


def report(results: list[dict[str, Any]], nranks: int, repeats: int) -> None:
    med = statistics.median
    print(
        f"\n## Time of one checkpoint vs memcpy and h5py+fsync ({nranks} ranks; seconds, "
        f"max over ranks, median of {repeats})"
    )
    hdr = (
        f"{'MB/rank':>7s}  {'scheme':12s} {'checkpoint':>10s} {'memcpy':>8s} "
        f"{'h5py+fsync':>10s} {'ckpt/memcpy':>11s} {'h5py/ckpt':>9s} {'min..max ckpt':>14s} "
        f"{'GB/s/rank':>9s} {'cpu ckpt/memcpy':>15s} {'msgs/rank':>9s} {'MB sent/rank':>12s}"
    )
    print(hdr)
    print("-" * len(hdr))
    for rec in results:
        mc = med(rec["memcpy"])
        mc_cpu = med(rec["memcpy_cpu"])
        h5 = med(rec["h5py"]) if rec["h5py"] else float("nan")
        for r in rec["schemes"]:
            ck = med(r["times"])
            seg = r["mem"]["seg"]
            print(
                f"{rec['size_mb']:7d}  {_label(r['scheme']):12s} {ck:10.4f} {mc:8.4f} "
                f"{h5:10.3f} {ck / mc:11.1f} {h5 / ck:9.1f} "
                f"{min(r['times']):6.3f}..{max(r['times']):.3f} {seg / ck / 1e9:9.2f} "
                f"{med(r['cpu']) / mc_cpu:15.1f} {r['mem']['msgs']:9.0f} "
                f"{r['mem']['sent'] / MB:12.1f}"
            )
    print(
        "GB/s/rank: segment bytes per second of checkpoint; cpu ckpt/memcpy: CPU seconds "
        "(user+sys, mean over ranks) of a checkpoint over those of the memcpy;\nmsgs/rank, MB "
        "sent/rank: per checkpoint, the most of any rank (Checkpointer.stats)"
    )

    print(
        "\n## Extra RAM per rank, in segments (max over ranks; relative to the RSS with the "
        "protected array allocated)"
    )
    hdr = (
        f"{'MB/rank':>7s}  {'scheme':12s} {'held':>6s} {'steady':>7s} {'trimmed':>7s} "
        f"{'peak 1st':>8s} {'peak':>6s} {'fresh':>6s} {'kept':>6s} {'1st ckpt s':>10s}"
    )
    print(hdr)
    print("-" * len(hdr))
    for rec in results:
        for r in rec["schemes"]:
            m = r["mem"]
            seg = m["seg"]
            print(
                f"{rec['size_mb']:7d}  {_label(r['scheme']):12s} {m['held'] / seg:6.2f} "
                f"{m['steady_rss'] / seg:7.2f} {m['steady_trim'] / seg:7.2f} "
                f"{m['first_peak'] / seg:8.2f} {m['steady_peak'] / seg:6.2f} "
                f"{m['fresh'] / seg:6.2f} {m['kept'] / seg:6.2f} {r['first']:10.3f}"
            )
    print(
        "held: bytes the library holds (committed pieces + local copy); steady: RSS after "
        "the last checkpoint; kept: the stream's recycled receive buffers and staging ring;\n"
        "trimmed: the same after malloc_trim(0) (freed heap given "
        "back); peak 1st / peak: VmHWM during the first / the\nsteady-state checkpoints "
        "(two versions of the pieces exist while one is in flight);\nfresh: VmHWM rise "
        "over the RSS just before a steady-state checkpoint (memory it had to get from the "
        "kernel and fault in;\n0 when the allocator reuses freed heap, which then stays in "
        "'steady')."
    )


if __name__ == "__main__":
    main()
