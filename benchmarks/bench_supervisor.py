"""What ``mpickpt run`` costs and how fast it reacts, on examples/heat2d.py (N ranks, one spare):

1. **overhead**: the wall time of a failure-free run launched by plain mpiexec (the command that
   ``mpickpt run --dry-run`` prints) and by ``mpickpt run``, alternated ``--trials`` times; and
   the start-up cost: ``mpickpt run --dry-run`` (interpreter, asking mpi4py for its MPI), and
   the time from the supervisor's start to mpiexec's (the run report's ``started_s``), and the
   CPU time the supervisor itself used over the run (``supervisor_cpu_s``), a fraction of one
   core: what it takes from the job on a busy machine, where wall times are noise.
2. **relaunch**: the whole job SIGKILLed (every rank, from outside) once a spilled version is
   complete; the time from the death to the relaunched job's first step (``down_s``).
3. **hang**: one rank SIGSTOPped in steady state (outside any recovery); the time from the
   SIGSTOP to the supervisor's "hung" line, with the automatic bound.

    python benchmarks/bench_supervisor.py [--n 5] [--trials 3] [--steps 400] [--size 256]
        [--only overhead|relaunch|hang]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from mpickpt import spill

ROOT = Path(__file__).resolve().parents[1]
HEAT = ROOT / "examples" / "heat2d.py"
SCHEME = ["--scheme", "parity", "--group", "2", "--backups", "3"]  # 4 workers (n 5, 1 spare)


def supervisor(n: int, args: list[str], run_dir: Path, *opts: str) -> list[str]:
    return [sys.executable, "-m", "mpickpt", "run", "-n", str(n), "--run-dir", str(run_dir),
            *opts, "--", sys.executable, str(HEAT), *args]  # fmt: skip


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env={**os.environ, **(env or {})}, check=True, capture_output=True,
                   timeout=900)  # fmt: skip
    return time.perf_counter() - t


def heat_args(a: argparse.Namespace, steps: int) -> list[str]:
    """heat2d's arguments: ``steps`` steps, a checkpoint every 20, one spare."""
    return ["--steps", str(steps), "--size", str(a.size), "--every", "20", "--spares", "1", *SCHEME]


def overhead(a: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    args = heat_args(a, a.steps)
    dry = supervisor(a.n, args, tmp / "dry", "--dry-run")
    t = time.perf_counter()
    plain = subprocess.run(dry, capture_output=True, text=True, check=True).stdout.split()
    dry_s = time.perf_counter() - t
    walls: dict[str, list[float]] = {"mpiexec": [], "mpickpt run": []}
    starts, cpu = [], []
    for i in range(a.trials):
        walls["mpiexec"].append(timed(plain))
        run_dir = tmp / f"over{i}"
        walls["mpickpt run"].append(timed(supervisor(a.n, args, run_dir)))
        report = json.loads((run_dir / "run.json").read_text())
        starts.append(report["launches"][0]["started_s"])
        cpu.append(report["supervisor_cpu_s"] / report["seconds"])
    med = {k: statistics.median(v) for k, v in walls.items()}
    return {
        "walls": walls,
        "median": med,
        "overhead": (med["mpickpt run"] - med["mpiexec"]) / med["mpiexec"],
        "dry_run_s": dry_s,
        "started_s": statistics.median(starts),
        "supervisor_cpu_fraction": statistics.median(cpu),  # of one core, over the run
    }


def relaunch(a: argparse.Namespace, tmp: Path, i: int) -> dict[str, Any] | None:
    ckpt, piddir, run_dir = tmp / f"ckpt{i}", tmp / f"pids{i}", tmp / f"relaunch{i}"
    args = [*heat_args(a, a.steps), "--spill", str(ckpt)]
    env = {**os.environ, "MPICKPT_PIDDIR": str(piddir)}
    proc = subprocess.Popen(supervisor(a.n, args, run_dir), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    while not (ckpt.is_dir() and spill.complete_versions(ckpt)):
        time.sleep(0.05)
    for pid_file in piddir.glob("rank*.pid"):
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
    proc.wait(timeout=900)
    launches = json.loads((run_dir / "run.json").read_text())["launches"]
    if len(launches) < 2:
        return None
    # down_s: the death to the relaunch's first step; first_step_s: its mpiexec's start to it
    return {k: launches[1].get(k) for k in ("down_s", "first_step_s", "resumed")}


def hang(a: argparse.Namespace, tmp: Path, i: int) -> float | None:
    piddir, run_dir = tmp / f"hpids{i}", tmp / f"hang{i}"
    args = heat_args(a, a.steps * 4)
    env = {**os.environ, "MPICKPT_PIDDIR": str(piddir)}
    cmd = supervisor(a.n, args, run_dir, "--relaunches", "0")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    seen: list[float] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "hung" in line and not seen:
                seen.append(time.monotonic())

    threading.Thread(target=read, daemon=True).start()
    beat = run_dir / "heartbeat.json"
    while not beat.exists() or json.loads(beat.read_text() or "{}").get("step", 0) < 50:
        time.sleep(0.05)
    os.kill(int((piddir / "rank2.pid").read_text()), signal.SIGSTOP)
    stopped = time.monotonic()
    proc.wait(timeout=900)
    time.sleep(0.5)
    return seen[0] - stopped if seen else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=5)
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--only", choices=("overhead", "relaunch", "hang"), default=None)
    a = p.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        out: dict[str, Any] = {}
        if a.only in (None, "overhead"):
            out.update(overhead(a, tmp))
        if a.only in (None, "relaunch"):
            out["relaunch"] = [relaunch(a, tmp, i) for i in range(a.trials)]
        if a.only in (None, "hang"):
            out["hang_detected_s"] = [hang(a, tmp, i) for i in range(a.trials)]
    out["load_before"], out["load_after"] = load, os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
