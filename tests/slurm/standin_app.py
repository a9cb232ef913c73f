"""Stand-in for examples/heat2d.py when checking the job scripts (only mpickpt's heartbeat).

Same command line and exit-code contract as the real example:

    python standin_app.py --steps N --size S --every E --spares K --spill DIR [--spill-every K]

- 0: done; rank 0 prints ``checksum: <hex>`` (depends only on --steps and --size).
- 75: "relaunch from the spill": the first ``STANDIN_EXIT75`` launches (default 1) stop halfway
  through the remaining steps, spill and exit 75, as the real app does when it runs out of spares.
- 76: SIGUSR1 received: spill at the current step and exit 76 ("requeue to continue").
- 75 also when a rank is lost (an MPI call fails with a process failure), as the real app does
  once its spares are used up (it has none here); the relaunch resumes from the last spill.
- ``DIR/DONE`` is written on completion, as mpickpt does. The launches after those that exit
  75, up to the ``STANDIN_EXIT0``-th (default none), stop halfway with exit 0 and no ``DONE``:
  what mpirun does when it loses a node without saying so.

Rank 0 keeps mpickpt's heartbeat (:mod:`mpickpt.heartbeat`, a file of no MPI) in
``MPICKPT_RUN_DIR`` when ``mpickpt run`` sets it: the steps, where it resumed, ``done`` at the
end (the supervisor's proof that the result was produced).
State lives in ``DIR/standin.json`` (written by rank 0 every ``every * spill_every`` steps and on
stopping; the real app spills per-rank files).
``STANDIN_STEP_SECONDS`` (default 0.02) is the time per step.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable

import mpi4py

from mpickpt.heartbeat import Heartbeat

mpi4py.rc.finalize = False  # Finalize may hang after failures (open-mpi/ompi#11404)
from mpi4py import MPI  # noqa: E402

RELAUNCH, STOPPED = 75, 76
PROCESS_FAILURE = (MPI.ERR_PROC_FAILED, MPI.ERR_PROC_FAILED_PENDING, MPI.ERR_REVOKED)
got_signal: list[int] = []


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--spares", type=int, default=0)
    p.add_argument("--spill", required=True)
    p.add_argument("--spill-every", type=int, default=1)
    a = p.parse_args()

    signal.signal(signal.SIGUSR1, lambda s, f: got_signal.append(s))
    comm = MPI.COMM_WORLD
    path = os.path.join(a.spill, "standin.json")
    state = {"step": 0, "launches": 0}
    if comm.rank == 0:
        os.makedirs(a.spill, exist_ok=True)
        if os.path.exists(path):
            with open(path) as f:
                state = json.load(f)
    state = comm.bcast(state)
    state["launches"] += 1

    def spill(step: int) -> None:
        if comm.rank == 0:
            with open(path + ".tmp", "w") as f:
                json.dump({"step": step, "launches": state["launches"]}, f)
            os.replace(path + ".tmp", path)
        comm.Barrier()

    start = state["step"]
    fail_at, fail_code = None, RELAUNCH
    if state["launches"] <= int(os.environ.get("STANDIN_EXIT75", "1")):
        fail_at = start + max(1, (a.steps - start) // 2)
    elif state["launches"] <= int(os.environ.get("STANDIN_EXIT0", "0")):
        fail_at, fail_code = start + max(1, (a.steps - start) // 2), 0
    if comm.rank == 0:
        print(
            f"launch {state['launches']}: resuming at step {start} of {a.steps}, {comm.size} ranks",
            flush=True,
        )
    try:
        return run(a, comm, start, (fail_at, fail_code), spill)
    except MPI.Exception as e:
        if e.Get_error_class() not in PROCESS_FAILURE:
            raise
        print(f"rank {comm.rank}: lost ranks ({e.Get_error_string()}): exit {RELAUNCH}", flush=True)
        return RELAUNCH


def run(
    a: argparse.Namespace,
    comm: MPI.Comm,
    start: int,
    fail: tuple[int | None, int],
    spill: Callable[[int], None],
) -> int:
    """The time-step loop from ``start``: returns 0, RELAUNCH or STOPPED; at step ``fail[0]``
    it stops early with code ``fail[1]``."""
    fail_at, fail_code = fail
    dt = float(os.environ.get("STANDIN_STEP_SECONDS", "0.02"))
    beat = Heartbeat(os.environ.get("MPICKPT_RUN_DIR") if comm.rank == 0 else None)
    beat.begin(start, a.steps, {"tier": "spill", "step": start} if start else {"tier": "start"}, 0)
    for step in range(start, a.steps):
        time.sleep(dt)
        beat.step(step)
        stop = comm.allreduce(1 if got_signal else 0, op=MPI.MAX)  # a uniform decision
        if stop:
            spill(step)
            if comm.rank == 0:
                print(f"signal: spilled at step {step}, exit {STOPPED}", flush=True)
            return STOPPED
        if (step + 1) % (a.every * a.spill_every) == 0:
            spill(step + 1)  # the periodic spill a relaunch resumes from
        if step + 1 == fail_at:
            spill(step + 1)
            if comm.rank == 0:
                print(f"stopped early at step {step + 1}: spilled, exit {fail_code}", flush=True)
            return fail_code
    spill(a.steps)
    if comm.rank == 0:
        with open(os.path.join(a.spill, "DONE"), "w") as f:  # as mpickpt does on completion
            f.write(f"completed after step {a.steps}\n")
    beat.phase("done")
    if comm.rank == 0:
        digest = hashlib.sha256(f"{a.steps}:{a.size}".encode()).hexdigest()[:16]
        print(f"checksum: {digest}", flush=True)
    return 0


if __name__ == "__main__":
    rc = main()
    sys.stdout.flush()
    # Nobody exits before rank 0's last line is out (mpirun drops output once a rank exits
    # non-zero). Agree, not Barrier: a rank leaving a Barrier early and exiting made a slower
    # one raise PROC_FAILED in it, or hang (a non-zero exit is not detected over sm).
    # Then only rank 0 exits with rc, as mpickpt does: mpirun can hang when several ranks
    # exit non-zero at once. After a lost rank (the agreement fails) rank 0 may be dead, so
    # every rank exits with rc.
    try:
        MPI.COMM_WORLD.Agree(1)
        carries_rc = MPI.COMM_WORLD.rank == 0
    except MPI.Exception:
        carries_rc = True
    if rc:
        time.sleep(0.3)  # mpirun may drop the last lines of a rank that exits non-zero
    os._exit(rc if carries_rc else 0)
