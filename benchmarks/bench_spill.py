"""How much of the HDF5 spill the loop does not wait for.

Runs heat2d (``mpickpt.examples.heat2d``) several ways, interleaved, each under a timeout:
in-memory checkpoints only, the same with ``--spill`` (background writes), optionally the same
with the spill of another source tree (``--before SRC``, e.g. the previous main's ``src``), and
then, in an MPI job of the same size, the synchronous write of one spilled version per rank
(h5py + fsync) - what the loop would wait for if the spill were not in the background. Each
run is timed on worker 0 from the call of heat2d's ``main`` to its return (interpreter and MPI
start-up excluded: on a shared machine they are the noisiest part and the same in every
mode). Hidden = 1 - (spill run - memory run) / (writes the spill run made x one synchronous
write). The spill runs also report (``MPICKPT_VERBOSE``) how long worker 0's loop spent
handing segments to its writer and waiting for writes to finish: what is not hidden beyond
that is the writer competing with the loop for cores and memory. The load average is printed
before and after.

    python benchmarks/bench_spill.py [--workers 8] [--spares 1] [--size 2048] [--steps 200]
        [--every 10] [--repeats 3] [--before OLD/src] [--node]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from mpickpt import spill
from mpickpt.launch import mpiexec_command

ROOT = Path(__file__).resolve().parents[1]

HEAT = r"""
import sys, time
sys.path.insert(0, sys.argv.pop(1)) if sys.argv[1] != "-" else sys.argv.pop(1)
import mpickpt
from mpi4py import MPI
from mpickpt.examples.heat2d import main
t, c = time.perf_counter(), time.process_time()
main()
if MPI.COMM_WORLD.rank == 0:
    t, c = time.perf_counter() - t, time.process_time() - c
    print(f"elapsed {t:.6f} {c:.6f} {mpickpt.__file__}", flush=True)
"""

WRITE = r"""
import time, sys
import mpickpt
from mpi4py import MPI
from mpickpt import spill
d, v = sys.argv[1], int(sys.argv[2])
comm = MPI.COMM_WORLD
seg = spill.load(d, v, comm.rank)
info = spill.read_index(d, v)
comm.Barrier(); t, c = time.perf_counter(), time.process_time()
spill.write_rank_file(f"{d}/sync-{comm.rank}.h5", seg, version=v, rank=comm.rank,
                      nworkers=comm.size, scheme_config=info["scheme"])
c = time.process_time() - c; comm.Barrier(); t = time.perf_counter() - t
if comm.rank == 0: print(f"write {t:.6f} {seg.nbytes} {c:.6f}")
"""


def run(cmd: list[str], timeout: float, env: dict[str, str]) -> tuple[str, str]:
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "MPICKPT_VERBOSE": "1", **env},
    )
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return proc.stdout, proc.stderr


def elapsed(stdout: str) -> tuple[float, float]:
    """Worker 0's (wall, CPU) seconds in heat2d's main."""
    line = next(x for x in stdout.splitlines() if x.startswith("elapsed")).split()
    return float(line[1]), float(line[2])


def loop_costs(stderr: str) -> tuple[float, float, int]:
    """(handing over, waiting) seconds and the versions spilled, from worker 0's summary."""
    line = next(x for x in stderr.splitlines() if x.startswith("mpickpt: spill:"))
    handing, waiting = (float(v) for v in re.findall(r"([0-9.]+) s", line))
    return handing, waiting, int(line.split()[2])


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--spares", type=int, default=1)
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--before", help="the src directory of another tree, spilled for comparison")
    p.add_argument("--node", action="store_true", help="also spill with one helper per node")
    a = p.parse_args()
    heat = f"--steps {a.steps} --size {a.size} --every {a.every} --spares {a.spares}".split()
    n = a.workers + a.spares
    modes = {"memory": ("-", []), "spill": ("-", ["--spill"])}
    if a.node:
        modes["node"] = ("-", ["--spill"])
    if a.before:
        modes["before"] = (str(Path(a.before).resolve()), ["--spill"])
    times: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    costs: dict[str, list[tuple[float, float, int]]] = {m: [] for m in modes}
    writes: list[float] = []
    write_cpu: list[float] = []
    print(f"load average before: {load()}", flush=True)
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
        for r in range(a.repeats):
            for mode, (src, extra) in modes.items():
                d = Path(tmp, f"{mode}{r}")
                args = [*heat, *extra, str(d)] if extra else heat
                cmd = mpiexec_command(n, sys.executable, "-c", HEAT, src, *args)
                env = {"MPICKPT_SPILL_HELPER": "node"} if mode == "node" else {}
                out, err = run(cmd, a.timeout, env)
                wall, c = elapsed(out)
                times[mode].append(wall)
                cpu[mode].append(c)
                if extra:
                    costs[mode].append(loop_costs(err))
            v = spill.complete_versions(Path(tmp, f"spill{r}"))[0]
            d = str(Path(tmp, f"spill{r}"))
            cmd = mpiexec_command(a.workers, sys.executable, "-c", WRITE, d, str(v))
            out = run(cmd, a.timeout, {})[0]
            writes.append(float(out.split()[1]))
            nbytes = int(out.split()[2])
            write_cpu.append(float(out.split()[3]))
            line = "  ".join(f"{m} {t[-1]:.2f}" for m, t in times.items())
            print(f"  round {r + 1}: {line}  write {writes[-1]:.3f}  load {load()}", flush=True)
    versions = 1 + -(-a.steps // a.every)  # the initial one, every `every` steps and the last
    med = {m: statistics.median(t) for m, t in times.items()}
    cmed = {m: statistics.median(t) for m, t in cpu.items()}
    w, wc = statistics.median(writes), statistics.median(write_cpu)
    sync = versions * w
    print(
        f"heat2d {a.size}x{a.size}, {a.workers} worker(s) + {a.spares} spare(s), {a.steps} "
        f"steps, checkpoint and spill every {a.every} steps ({versions} versions), "
        f"{nbytes / 2**20:.1f} MiB per rank; median of {a.repeats}"
    )
    print(f"  in-memory only                 {med['memory']:8.2f} s   (CPU {cmed['memory']:.2f} s)")
    print(
        f"  one synchronous write (h5py+fsync, all ranks at once) {w:.3f} s "
        f"x {versions} = {sync:.2f} s   (CPU {wc:.3f} s x {versions} = {wc * versions:.2f} s)"
    )
    for mode in modes:
        if mode == "memory":
            continue
        s = med[mode]
        h = statistics.median(c[0] for c in costs[mode])
        wt = statistics.median(c[1] for c in costs[mode])
        n = min(c[2] for c in costs[mode])  # versions written in the background
        extra = s - med["memory"]
        # each round runs both modes back to back: the median of the per-round differences
        # is less sensitive to a slow stretch of the machine than the difference of medians
        pairs = zip(times[mode], times["memory"], strict=True)
        paired = statistics.median(x - y for x, y in pairs)
        # the final version is waited for at the end of the run: the same write either way
        print(
            f"  {mode:7s} background spill {s:8.2f} s   ({extra:+.2f} s; {n} versions)   "
            f"hidden: {100 * (1 - extra / (n * w)):.0f} % of the write time "
            f"(paired by round: {paired:+.2f} s, {100 * (1 - paired / (n * w)):.0f} %); "
            f"worker 0's loop: {h:.3f} s handing segments over, {wt:.3f} s waiting"
        )
        # what the loop itself pays when the helper has a core of its own: its extra CPU
        # time and its waits, against the CPU time of the same synchronous writes (CPU
        # times stay steady under load, unlike wall times)
        paid = cmed[mode] - cmed["memory"] + wt
        print(
            f"          loop's own cost: CPU {cmed[mode] - cmed['memory']:+.2f} s + waits "
            f"{wt:.2f} s = {paid:.2f} s; hidden with a free core: "
            f"{100 * (1 - paid / (n * wc)):.0f} % of the writes' CPU time"
        )
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
