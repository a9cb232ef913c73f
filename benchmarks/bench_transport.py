"""MPI start-up time and a latency-bound loop over the shared-memory (``sm``) and TCP byte
transports, interleaved.

    python benchmarks/bench_transport.py --ranks 9 --rounds 5
    python benchmarks/bench_transport.py --ranks 5 --rounds 3 \
        --heat "--steps 1500 --size 48 --group 2 --backups 3"

Each round launches ``mpiexec`` (flags from ``mpickpt.launch``) once per transport, with
``--mca btl self,sm`` or ``self,tcp``. Each rank measures how long ``MPI_Init`` took (the
import of ``mpi4py.MPI``) and a first ``Barrier`` (which opens the connections); the table
shows the median over rounds of the maximum over ranks, and the whole launch's wall time.
With ``--heat ARGS`` each round also runs ``examples/heat2d.py ARGS --spares 1`` without
failure (a small grid makes it bound by the halo exchanges' latency) and reports its wall time.
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


def heat(n: int, btl: str, args: list[str]) -> float:
    script = str(launch.examples_dir() / "heat2d.py")
    cmd = launch.mpiexec_command(n, sys.executable, script, *args, "--spares", "1", btl=btl)
    t = time.perf_counter()
    subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
    return time.perf_counter() - t


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
    p.add_argument("--heat", default="", help="also time heat2d.py with these arguments")
    a = p.parse_args()
    res: dict[str, list[tuple[float, float, float]]] = {k: [] for k in TRANSPORTS}
    loop: dict[str, list[float]] = {k: [] for k in TRANSPORTS}
    for _ in range(a.rounds):
        for name, btl in TRANSPORTS.items():
            res[name].append(once(a.ranks, btl))
            if a.heat:
                loop[name].append(heat(a.ranks, btl, a.heat.split()))
    print(f"{a.ranks} ranks, median of {a.rounds} rounds (max over ranks)")
    print(f"{'transport':>9} {'MPI_Init s':>10} {'1st Barrier s':>13} {'launch wall s':>13}")
    for name, rows in res.items():
        med = [statistics.median(col) for col in zip(*rows, strict=True)]
        print(f"{name:>9} {med[0]:10.3f} {med[1]:13.3f} {med[2]:13.3f}")
    if a.heat:
        print(f"heat2d.py {a.heat} --spares 1 on {a.ranks} ranks, wall s per round:")
        for name, times in loop.items():
            each = " ".join(f"{t:.1f}" for t in times)
            print(f"{name:>9} median {statistics.median(times):7.2f}   ({each})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
