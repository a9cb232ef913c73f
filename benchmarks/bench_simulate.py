"""Benchmark: the failure simulator (``mpickpt.simulate``) on 10^5 ranks x 30 days, one core.

    python benchmarks/bench_simulate.py --runs 100

For 10^5 ranks as 10^5 nodes of one rank and as 1,563 nodes of 64, a 5-year node MTBF, 30 days
of computation and the costs of ``mpickpt plan`` without ``--costs``: seconds for ``--runs``
Monte Carlo runs of the job, failures per run, and the model's efficiency against the
simulator's (95 % interval). No MPI.
"""

from __future__ import annotations

import argparse
import os
import time

from mpickpt.model import YEAR, Job, fitted_costs, predict
from mpickpt.schemes import get_scheme

SCHEMES = {"parity": {"group": 3, "backups": 4}, "xorset": {"group": 8}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--days", type=float, default=30)
    p.add_argument("--spares", type=int, default=64)
    a = p.parse_args()
    from mpickpt.simulate import simulate

    print(f"# load average {os.getloadavg()[0]:.2f}")
    print("| ranks | nodes x ranks | scheme | runs | seconds | failures/run | model | simulator |")
    print("|---|---|---|---|---|---|---|---|")
    for nodes, per in ((100_000, 1), (1563, 64)):
        job = Job(nodes, per, 2**30, 5 * YEAR, a.days * 86400.0, a.spares)
        for name, params in SCHEMES.items():
            scheme = get_scheme(name, **params)
            costs = fitted_costs(scheme, job.state)
            pred = predict(scheme, job, costs)
            t = time.perf_counter()
            sim = simulate(scheme, job, costs, pred.interval, runs=a.runs, seed=1)
            dt = time.perf_counter() - t
            print(
                f"| {nodes * per:,} | {nodes:,} x {per} | {name} | {a.runs} | {dt:.2f} | "
                f"{sim.failures.mean:.0f} | {pred.efficiency:.5f} | "
                f"{sim.efficiency.mean:.5f} ± {sim.efficiency.half:.5f} |",
                flush=True,
            )
    print(f"# load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
