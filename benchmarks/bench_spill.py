"""How much of the HDF5 spill the loop does not wait for.

Runs examples/heat2d.py three ways in one go, each under a timeout: in-memory checkpoints only,
the same with ``--spill`` (background writes), and then, in an MPI job of the same size, the
synchronous write of one spilled version per rank (h5py + fsync) - what the loop would wait for
if the spill were not in the background. Hidden = 1 - (spill run - memory run) / (writes the
spill run made x one synchronous write). The spill run also reports (``MPICKPT_VERBOSE``) how
long worker 0's loop spent handing segments to its writer and waiting for writes to finish:
what is not hidden beyond that is the writer competing with the loop for cores and memory.

    python benchmarks/bench_spill.py [--workers 8] [--size 2048] [--steps 200] [--every 10]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mpickpt import spill
from mpickpt.launch import mpiexec_command

ROOT = Path(__file__).resolve().parents[1]

WRITE = r"""
import time, sys
import mpickpt
from mpi4py import MPI
from mpickpt import spill
d, v = sys.argv[1], int(sys.argv[2])
comm = MPI.COMM_WORLD
seg = spill.load(d, v, comm.rank)
info = spill.read_index(d, v)
comm.Barrier(); t = time.perf_counter()
spill.write_rank_file(f"{d}/sync-{comm.rank}.h5", seg, version=v, rank=comm.rank,
                      nworkers=comm.size, scheme_config=info["scheme"])
comm.Barrier(); t = time.perf_counter() - t
if comm.rank == 0: print(f"write {t:.6f} {seg.nbytes}")
"""


def timed(cmd: list[str], timeout: float) -> tuple[float, str, str]:
    t = time.perf_counter()
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "MPICKPT_VERBOSE": "1"},
    )
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return elapsed, proc.stdout, proc.stderr


def loop_costs(stderr: str) -> tuple[float, float]:
    """(handing over, waiting) seconds from worker 0's spill summary."""
    line = next(x for x in stderr.splitlines() if x.startswith("mpickpt: spill:"))
    handing, waiting = (float(v) for v in re.findall(r"([0-9.]+) s", line))
    return handing, waiting


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timeout", type=float, default=300)
    a = p.parse_args()
    heat = [sys.executable, str(ROOT / "examples" / "heat2d.py")]
    heat += f"--steps {a.steps} --size {a.size} --every {a.every} --spares 1".split()
    n = a.workers + 1
    memory, spilled, writes, handing, waiting = [], [], [], [], []
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
        for r in range(a.repeats):
            memory.append(timed(mpiexec_command(n, *heat), a.timeout)[0])
            d = Path(tmp, f"run{r}")
            elapsed, _, err = timed(mpiexec_command(n, *heat, "--spill", str(d)), a.timeout)
            spilled.append(elapsed)
            handing.append(loop_costs(err)[0])
            waiting.append(loop_costs(err)[1])
            v = spill.complete_versions(d)[0]
            out = timed(
                mpiexec_command(a.workers, sys.executable, "-c", WRITE, str(d), str(v)), a.timeout
            )[1]
            writes.append(float(out.split()[1]))
            nbytes = int(out.split()[2])
    versions = 1 + -(-a.steps // a.every)  # the initial one, every `every` steps and the last
    m, s, w, h, wt = (statistics.median(x) for x in (memory, spilled, writes, handing, waiting))
    sync = versions * w
    print(
        f"heat2d {a.size}x{a.size}, {a.workers} workers + 1 spare, {a.steps} steps, "
        f"checkpoint and spill every {a.every} steps ({versions} versions), "
        f"{nbytes / 2**20:.1f} MiB per rank; median of {a.repeats}"
    )
    print(f"  in-memory only                 {m:8.2f} s")
    print(f"  with background spill          {s:8.2f} s   (+{s - m:.2f} s)")
    print(
        f"  one synchronous write (h5py+fsync, all ranks at once) {w:.3f} s "
        f"x {versions} = {sync:.2f} s"
    )
    print(f"  hidden: {100 * (1 - (s - m) / sync):.0f} % of the write time")
    print(
        f"  worker 0's loop: {h:.3f} s handing segments to its writer, {wt:.3f} s waiting "
        f"for writes (the last one included); the rest is sharing cores and memory"
    )


if __name__ == "__main__":
    main()
