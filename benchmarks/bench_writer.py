"""Why the spill writer is a helper process: a loop with a background write, without MPI.

One process runs a time-step loop and spills its 32 MiB state every ``--every`` steps, four
ways: not at all, synchronously in the loop, from a thread of the same interpreter, and
through :class:`mpickpt.spill.writer.SpillWriter` (a helper process). Two loops: ``python``
(interpreter-bound, like codes made of many small operations) and ``numpy`` (a memory-bound
stencil on the state itself). Each mode runs in its own process, the modes interleaved, and
the median of ``--repeats`` is kept. Hidden = 1 - (mode - none) / (sync - none).

    python benchmarks/bench_writer.py [--steps 200] [--every 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LOOP = r"""
import sys, time, shutil
from concurrent.futures import ThreadPoolExecutor
import numpy as np
from mpickpt import spill
from mpickpt.segment import State
from mpickpt.spill.writer import SpillWriter

mode, loop, d = sys.argv[1], sys.argv[2], sys.argv[5]
steps, every = int(sys.argv[3]), int(sys.argv[4])
st = State()
st["u"] = np.random.default_rng(1).random((2050, 2050))
SCHEME = {"id": "parity", "group": 3, "backups": 4}

def step():
    if loop == "python":
        x = 0
        for j in range(300_000):
            x += j * j
    else:
        u = st["u"]
        u[1:-1, 1:-1] += 0.1 * (u[:-2, 1:-1] + u[2:, 1:-1] - 2 * u[1:-1, 1:-1])

def write(v, seg):
    return spill.write_version_file(d, v, 0, seg, nworkers=1, scheme_config=SCHEME)

writer = SpillWriter(d, 0, 1, SCHEME) if mode == "process" else None
pool = ThreadPoolExecutor(1) if mode == "thread" else None
time.sleep(0.5)  # the helper process starts outside the measurement
pending = None
t = time.perf_counter()
for i in range(steps):
    step()
    if i % every == 0 and mode != "none":
        seg = st.snapshot(i).tobytes()  # the committed copy a checkpoint keeps
        if mode == "sync":
            write(i, seg)
        elif mode == "thread":
            if pending is not None:
                pending.result()
            pending = pool.submit(write, i, seg)
        else:
            if pending is not None:
                writer.wait(pending)
            writer.submit(i, seg)
            pending = i
if pool is not None and pending is not None:
    pending.result()
if writer is not None:
    writer.close()
print(time.perf_counter() - t)
"""

MODES = ("none", "sync", "thread", "process")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--every", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--loops", nargs="+", default=["python", "numpy"])
    a = p.parse_args()
    writes = -(-a.steps // a.every)
    print(f"{a.steps} steps, a 32 MiB state spilled every {a.every} ({writes} writes)")
    for loop in a.loops:
        times: dict[str, list[float]] = {m: [] for m in MODES}
        for _ in range(a.repeats):
            for mode in MODES:
                with tempfile.TemporaryDirectory(dir=ROOT) as d:
                    out = subprocess.run(
                        [sys.executable, "-c", LOOP, mode, loop, str(a.steps), str(a.every), d],
                        capture_output=True,
                        text=True,
                        timeout=600,
                        check=True,
                    ).stdout
                times[mode].append(float(out))
        t = {m: statistics.median(v) for m, v in times.items()}
        cost = t["sync"] - t["none"]
        print(f"{loop} loop (median of {a.repeats}):")
        for mode in MODES:
            extra = t[mode] - t["none"]
            hidden = f"   hidden {100 * (1 - extra / cost):4.0f} %" if mode in MODES[2:] else ""
            print(f"  {mode:8s} {t[mode]:7.2f} s  (+{extra:5.2f} s){hidden}")


if __name__ == "__main__":
    main()
