"""PETSc under outside kills: examples/petsc_heat.py (4 workers + 1 spare) against plain PETSc
on 4 ranks, a random worker SIGKILLed at a random time of each run (the helper of the test
suite's kill tests), the recovery line and the checksum of every trial.

    python benchmarks/petsc_kills.py --trials 10 [--steps 2000] [--size 48] [--supervised]

``--supervised`` launches every run through ``mpickpt run``, which relaunches the job after a
truthful non-zero exit (75 when more processes were lost than spares, e.g. to an Open MPI crash).

Needs petsc4py (docs/frameworks.md says how to build it). Exits 1 unless every trial gave the
failure-free checksum with exit 0.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import EXAMPLES, checksum, run_mpi  # noqa: E402
from test_faults import kill_a_worker_at_random  # noqa: E402

ENV = {"MPICKPT_RECOVERY_TIMEOUT": "300"}  # a stall shows as a timeout of the trial
RECOVERY = re.compile(r"^mpickpt: \[rank \d+\] (worker.* lost.*)$", re.M)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--supervised", action="store_true", help="launch through mpickpt run")
    a = p.parse_args()
    args = ["--steps", str(a.steps), "--size", str(a.size), "--every", "10"]
    print(f"load {os.getloadavg()}", flush=True)
    _, out, _ = run_mpi(EXAMPLES / "petsc_heat_plain.py", 4, *args, timeout=300)
    reference = checksum(out)
    t0 = time.monotonic()
    rc, out, err = run_mpi(EXAMPLES / "petsc_heat.py", 5, *args, "--spares", "1", env=ENV)
    total = time.monotonic() - t0
    if rc != 0 or checksum(out) != reference:
        print(f"the failure-free run differs from plain PETSc (exit {rc}):\n{err}")
        return 1
    print(f"plain PETSc {reference[:12]}; failure-free run {total:.1f} s", flush=True)
    good = 0
    for i in range(a.trials):
        with tempfile.TemporaryDirectory() as d:
            rc, rank, when, out, err = kill_a_worker_at_random(
                Path(d),
                EXAMPLES / "petsc_heat.py",
                [*args, "--spares", "1"],
                ENV,
                total,
                300,
                0.2,
                supervised=a.supervised,
            )
        same = rc == 0 and checksum(out) == reference
        good += same
        lines = RECOVERY.findall(err)
        print(
            f"trial {i}: worker {rank} killed at {when}: exit {rc}, "
            f"{'the same checksum' if same else 'NOT the same checksum'}; "
            f"{lines[-1] if lines else 'no recovery line'}",
            flush=True,
        )
        if not same:
            print(err[-3000:])
    print(f"{good}/{a.trials} with the failure-free checksum; load {os.getloadavg()}")
    return 0 if good == a.trials else 1


if __name__ == "__main__":
    sys.exit(main())
