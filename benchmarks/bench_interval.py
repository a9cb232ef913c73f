"""When to checkpoint: the interval ``every="auto"`` chooses, against fixed intervals on both
sides of it, for a given MTBF.

1. Calibration: examples/heat2d.py with ``--every auto --mtbf M`` (``MPICKPT_VERBOSE=1``) until
   the interval has settled. Worker 0's schedule reports the measured checkpoint cost C, the
   time per step and the chosen interval n* (steps): the same on every worker.
2. heat2d with ``--every k`` for k = n* x each ``--factors`` value, and once with checkpoints
   only at the start and the end (the baseline), each for ``--intervals`` x n* steps.

For each interval the table gives

* **expected**: the model's overhead H = C/tau + (tau + C)/(2M), a fraction of the computing
  time, with tau = k x step time and the C and step time of the calibration run (failures at an
  MTBF of an hour cannot be waited for; this is what they would cost on average);
* **measured, failure-free**: from the run itself, the time worker 0 spent in the checkpoints
  between the first and the last, over the time it spent outside checkpoints - the C/tau term,
  measured;
* **loop**: the loop's wall time against the baseline run's, measured in the same session
  (noisy on a shared machine: the other two columns are the ones to read).

    python benchmarks/bench_interval.py [--mtbf 1h] [--workers 4] [--size 1024]
        [--factors 0.25,0.5,1,2,4] [--intervals 2] [--png interval.png]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mpickpt.launch import mpiexec_command
from mpickpt.policies import daly_interval, expected_overhead, format_duration, parse_duration

# parity(2, 3): it fits the 4 workers of the default --workers (the library's parity(3, 4) needs 5)
SCHEME = ["--group", "2", "--backups", "3"]
ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(
    r"mpickpt: schedule: (\d+) checkpoint\(s\) took ([\d.]+) s of ([\d.]+) s in the loop.*?"
    r"; C = ([\d.]+) s; step = ([\d.]+) s; interval = (\d+) steps"
)


def heat(a: argparse.Namespace, steps: int, *policy: str) -> dict[str, Any]:
    """One heat2d run; worker 0's schedule summary as numbers."""
    args = ["--steps", str(steps), "--size", str(a.size), "--spares", "1", *SCHEME, *policy]
    cmd = mpiexec_command(a.workers + 1, sys.executable, str(ROOT / "examples/heat2d.py"), *args)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPICKPT_VERBOSE": "1"}
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout, env=env)
    wall = time.perf_counter() - t
    m = SUMMARY.search(proc.stderr)
    if proc.returncode != 0 or m is None:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    n, ckpt, loop, c, step, interval = m.groups()
    return {
        "checkpoints": int(n),
        "ckpt_s": float(ckpt),
        "loop_s": float(loop),
        "C": float(c),
        "step": float(step),
        "interval": int(interval),
        "wall": wall,
        "log": proc.stderr,
    }


def measured(r: dict[str, Any]) -> str:
    """Time in the checkpoints between the first and the last over the time outside them
    ("-" when the run had none between them: its interval is longer than the run)."""
    n = r["checkpoints"]
    if n <= 2:
        return "-"
    middle = r["ckpt_s"] * (n - 2) / n
    return f"{100 * middle / (r['loop_s'] - r['ckpt_s']):.2f} % ({n - 2} ckpts)"


def mean_cost(r: dict[str, Any]) -> str:
    return f"{1e3 * r['ckpt_s'] / r['checkpoints']:.0f} ms"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mtbf", default="1h", help="the job's mean time between failures")
    p.add_argument("--workers", type=int, default=4, help="workers (plus one spare)")
    p.add_argument("--size", type=int, default=1024, help="global grid SIZE x SIZE")
    p.add_argument("--factors", default="0.25,0.5,1,2,4", help="fixed intervals, x n*")
    p.add_argument("--intervals", type=float, default=2.0, help="run length in n* intervals")
    p.add_argument("--calibrate", type=int, default=0, help="calibration steps (0: enough)")
    p.add_argument("--timeout", type=float, default=900, help="seconds per run")
    p.add_argument("--png", default=None, help="also plot to this PNG (needs matplotlib)")
    a = p.parse_args()
    mtbf = parse_duration(a.mtbf, "--mtbf")
    mb = a.size * a.size * 8 / a.workers / 2**20
    print(
        f"heat2d {a.size}x{a.size} on {a.workers} workers + 1 spare ({mb:.1f} MiB per worker), "
        f"parity(2, 3), MTBF {format_duration(mtbf)}; load average {os.getloadavg()[0]:.1f}"
    )

    # 1. calibration: long enough for the probe (1, 8, 64, ... steps) to reach the interval
    steps = a.calibrate
    if not steps:
        quick = heat(a, 12, "--every", "auto", "--mtbf", str(mtbf))
        guess = daly_interval(quick["C"], mtbf) / quick["step"]
        steps = int(min(max(3 * guess, 100), 200_000))
    cal = heat(a, steps, "--every", "auto", "--mtbf", str(mtbf))
    c, step, best = cal["C"], cal["step"], cal["interval"]
    tau = best * step
    print(
        f"calibration ({steps} steps, {cal['loop_s']:.1f} s): C = {c * 1e3:.1f} ms, step = "
        f"{step * 1e3:.2f} ms; auto chose n* = {best} steps = {format_duration(tau)} "
        f"(Daly: {format_duration(daly_interval(c, mtbf))}); expected overhead "
        f"{100 * expected_overhead(tau, c, mtbf):.2f} %"
    )
    plans = re.findall(r"next checkpoint in (\d+) step", str(cal["log"]))
    print(f"  intervals logged by worker 0: {' -> '.join(plans)}")

    # 2. fixed intervals on both sides, and the baseline, each for a few n*
    length = max(int(a.intervals * best), 10)
    base = heat(a, length, "--every", str(length))
    rows = []
    for f in [float(x) for x in a.factors.split(",")]:
        k = max(1, round(f * best))
        r = heat(a, length, "--every", str(k))
        rows.append((f, k, r))
    auto = heat(a, length, "--every", "auto", "--mtbf", str(mtbf))

    print(
        f"\n{length} steps per run; baseline loop (checkpoints at start and end only): "
        f"{base['loop_s']:.2f} s"
    )
    head = (
        "| interval | steps | tau | expected overhead (model) | measured failure-free "
        "| C in this run | loop / baseline |"
    )
    print(head)
    print("|---|---|---|---|---|---|---|")
    for f, k, r in rows:
        t = k * step
        print(
            f"| {f:g} x n*{' (auto)' if k == best else ''} | {k} | {format_duration(t)} | "
            f"{100 * expected_overhead(t, c, mtbf):.2f} % | {measured(r)} | {mean_cost(r)} | "
            f"{r['loop_s'] / base['loop_s']:.3f} |"
        )
    print(
        f"| auto (re-estimated) | {auto['interval']} | {format_duration(auto['interval'] * step)}"
        f" | {100 * expected_overhead(auto['interval'] * step, c, mtbf):.2f} % | "
        f"{measured(auto)}, probes included | {mean_cost(auto)} | "
        f"{auto['loop_s'] / base['loop_s']:.3f} |"
    )
    goal = expected_overhead(tau, c, mtbf)
    print(f"\ngoal: <= 3 % at MTBF 1 h; expected at n*: {100 * goal:.2f} %")

    if a.png:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib is not installed: no plot")
            return
        ts = [tau * 2 ** (i / 20) for i in range(-80, 81)]
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(ts, [100 * expected_overhead(t, c, mtbf) for t in ts], label="model H(tau)")
        ax.plot(ts, [100 * c / t for t in ts], ":", label="its failure-free part C/tau")
        pts = [(k * step, r) for _, k, r in rows if r["checkpoints"] > 2]
        ax.plot(
            [t for t, _ in pts],
            [
                100 * r["ckpt_s"] * (1 - 2 / r["checkpoints"]) / (r["loop_s"] - r["ckpt_s"])
                for _, r in pts
            ],
            "o",
            label="measured failure-free",
        )
        ax.axvline(tau, color="gray", ls="--", label=f"auto: {format_duration(tau)}")
        ax.set_xscale("log")
        ax.set_xlabel("seconds of computation between checkpoints (tau)")
        ax.set_ylabel("overhead, % of computing time")
        ax.set_title(f"C = {c * 1e3:.0f} ms, MTBF {format_duration(mtbf)}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(a.png, dpi=120)
        print(f"plot: {a.png}")


if __name__ == "__main__":
    main()
