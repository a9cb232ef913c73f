"""MPI start-up time over the shared-memory (``sm``) and TCP byte transports, interleaved.

    python benchmarks/bench_transport.py --ranks 9 --rounds 5

Each round launches ``mpiexec`` (flags from ``mpickpt.launch``) once per transport, with
``--mca btl self,sm`` or ``self,tcp``. Each rank measures how long ``MPI_Init`` took (the
import of ``mpi4py.MPI``) and a first ``Barrier`` (which opens the connections); the table
shows the median over rounds of the maximum over ranks, and the whole launch's wall time.
Rounds alternate the transports so that both see the same machine load.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from mpickpt import launch

PROBE = """
import time
t0 = time.perf_counter()
from mpi4py import MPI
t1 = time.perf_counter()
MPI.COMM_WORLD.Barrier()
t2 = time.perf_counter()
init = MPI.COMM_WORLD.reduce(t1 - t0, op=MPI.MAX)
first = MPI.COMM_WORLD.reduce(t2 - t1, op=MPI.MAX)
if MPI.COMM_WORLD.Get_rank() == 0:
    print(f"{init:.4f} {first:.4f}")
"""

TRANSPORTS = {"sm": "self,sm", "tcp": "self,tcp"}


def once(n: int, btl: str) -> tuple[float, float, float]:
    cmd = launch.mpiexec_command(n, sys.executable, "-c", PROBE, btl=btl)
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    wall = time.perf_counter() - t
    init, first = map(float, out.split())
    return init, first, wall


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ranks", type=int, default=9)
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    res: dict[str, list[tuple[float, float, float]]] = {k: [] for k in TRANSPORTS}
    for _ in range(a.rounds):
        for name, btl in TRANSPORTS.items():
            res[name].append(once(a.ranks, btl))
    print(f"{a.ranks} ranks, median of {a.rounds} rounds (max over ranks)")
    print(f"{'transport':>9} {'MPI_Init s':>10} {'1st Barrier s':>13} {'launch wall s':>13}")
    for name, rows in res.items():
        med = [statistics.median(col) for col in zip(*rows, strict=True)]
        print(f"{name:>9} {med[0]:10.3f} {med[1]:13.3f} {med[2]:13.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
