"""Campaign: SIGKILLs from outside, at random times, of a Devito simulation protected by mpickpt.

Run it with plain python, not under ``mpiexec``: it launches the MPI jobs itself::

    python benchmarks/bench_devito.py --runs 10          # 4 workers + 1 spare, ~15 min here

1. **reference**: ``examples/devito_diffusion_plain.py`` on one rank (plain Devito).
2. **failure-free**: ``examples/devito_diffusion.py`` on ``workers + spares`` ranks; its
   checksum must be the reference's. It also gives the length of the time-step loop.
3. **runs**: the same job ``--runs`` times; each time a random worker (world rank
   ``0..workers-1``) is SIGKILLed from this process at a random time of the loop (uniform
   over the first 60 % of the failure-free loop's length, counted from its first committed
   checkpoint; a kill that comes after the loop, with no recovery, is not counted and the run
   is made again, up to ``--runs`` times). Every run must end with
   exit code 0 and the reference checksum, within ``--timeout``, and the watchdog must not fire
   (``MPICKPT_RECOVERY_TIMEOUT`` is set longer than the timeout).

Each job runs the example unchanged through a thin ``--child`` wrapper (``runpy``) that stamps
``time.time()`` on worker 0 when the first checkpoint has committed (the loop starts) and when
``protect`` is called again after a recovery (Devito's grid and field are rebuilt). With
``MPICKPT_VERBOSE=1`` the first worker prints the recovery timeline; with the kill time taken
here they give kill -> detected (worker 0 entered the recovery) -> recovered -> Devito rebuilt
-> resumed (the re-protect checkpoint committed, after the promoted spare built its operator:
the next apply starts).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples"
MARK = "bench-devito-mark: "
CHECKSUM = re.compile(r"^checksum: ([0-9a-f]{64})$", re.M)
MPIEXEC = ["mpiexec", "--with-ft", "ulfm", "--oversubscribe", "--mca", "btl", "self,sm"]


def child(argv: list[str]) -> None:
    """Run ``examples/devito_diffusion.py argv`` with the stamps described above."""
    import runpy

    import mpickpt  # noqa: F401 - first, as the example does
    from mpickpt import checkpointer

    first: dict[str, bool] = {}
    protect, checkpoint = checkpointer.Checkpointer.protect, checkpointer.Checkpointer.checkpoint

    def stamp(what: str) -> None:
        print(f"{MARK}{what} {time.time():.6f}", file=sys.stderr, flush=True)

    def stamped_protect(self: Any, name: str, obj: Any) -> Any:
        if self.rank == 0 and first.get("loop"):
            stamp("rebuilt")
        return protect(self, name, obj)

    def stamped_checkpoint(self: Any, step: int) -> int:
        version = checkpoint(self, step)
        if self.rank == 0 and not first.get("loop"):  # every worker has built its operator
            first["loop"] = True
            stamp("loop")
        return version

    checkpointer.Checkpointer.protect = stamped_protect  # type: ignore[method-assign]
    checkpointer.Checkpointer.checkpoint = stamped_checkpoint  # type: ignore[method-assign]
    sys.path.insert(0, str(EXAMPLES))
    sys.argv = [str(EXAMPLES / "devito_diffusion.py"), *argv]
    runpy.run_path(sys.argv[0], run_name="__main__")


def command(n: int, script: list[str], args: list[str]) -> list[str]:
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    return [*MPIEXEC, *root, "-n", str(n), sys.executable, *script, *args]


def run(cmd: list[str], env: dict[str, str], timeout: float) -> tuple[int, str, str, float]:
    t0 = time.time()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out, err = stop(proc)
        return -999, out, err, time.time() - t0
    return proc.returncode, out, err, time.time() - t0


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            return proc.communicate(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue
    return proc.communicate()


def marks(err: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for what, t in re.findall(rf"^\W*{MARK}(\w+) ([0-9.]+)$", err, re.M):
        if what != "loop" or what not in found:  # the loop's first start; the last rebuild
            found[what] = float(t)
    return found


def timeline(err: str) -> tuple[float, list[tuple[float, str]]] | None:
    """The first worker's recovery timeline: ``t0`` and ``(offset, what)`` events."""
    m = re.search(r"recovery timeline \(t0 = ([0-9.]+)\):\n((?:  \+.*\n?)+)", err)
    if not m:
        return None
    events = [
        (float(o), w.strip()) for o, w in re.findall(r"^  \+\s*([0-9.]+) s  (.*)$", m[2], re.M)
    ]
    return float(m[1]), events


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--spares", type=int, default=1)
    p.add_argument("--steps", type=int, default=400, help="applies")
    p.add_argument("--per-apply", type=int, default=20, help="time steps per apply")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--every", type=int, default=5, help="checkpoint every N applies")
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child is not None:
        child(a.child)
        return
    rnd = random.Random(a.seed)
    app = ["--steps", str(a.steps), "--per-apply", str(a.per_apply), "--size", str(a.size)]
    app += ["--every", str(a.every), "--spares", str(a.spares)]
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "MPICKPT_VERBOSE": "1",
        "MPICKPT_RECOVERY_TIMEOUT": str(a.timeout * 2),  # a stall shows as a timeout
        "DEVITO_LOGGING": "ERROR",
    }
    n = a.workers + a.spares
    me = [str(Path(__file__).resolve()), "--child"]

    rc, out, err, t = run(
        command(1, [str(EXAMPLES / "devito_diffusion_plain.py")], app), env, a.timeout
    )
    reference = CHECKSUM.search(out)
    if rc != 0 or not reference:
        sys.exit(f"the plain run failed (rc {rc}):\n{err}")
    print(f"reference (plain Devito, 1 rank): {reference[1][:16]}... in {t:.1f} s", flush=True)
    rc, out, err, t = run(command(n, me, app), env, a.timeout)
    free = CHECKSUM.search(out)
    m = marks(err)
    if rc != 0 or not free or "loop" not in m:
        sys.exit(f"the failure-free run failed (rc {rc}):\n{err}")
    loop = max(1.0, time.time() - m["loop"])  # from the first checkpoint to the end
    same = "same" if free[1] == reference[1] else "DIFFERENT"
    print(
        f"failure-free, {a.workers} workers + {a.spares} spare: {t:.1f} s "
        f"(loop {loop:.1f} s), checksum {same}",
        flush=True,
    )

    rows: list[dict[str, Any]] = []
    missed = 0
    while len(rows) < a.runs and missed < a.runs:
        rank = rnd.randrange(a.workers)
        delay = rnd.uniform(0.0, 0.6 * loop)  # the loop's length varies with the load
        with tempfile.TemporaryDirectory() as piddir:
            row = kill_run(len(rows), command(n, me, app), env, piddir, rank, delay, a.timeout)
        row["ok"] = row["rc"] == 0 and row["checksum"] == reference[1] and not row["stalled"]
        if not row["killed"] or (row["ok"] and "detected" not in row):
            # the job had ended, or left its loop, before the kill: not a run of the campaign
            missed += 1
            print(f"(the kill at {delay:.1f} s came after the loop: run again)", flush=True)
            continue
        rows.append(row)
        print(format_row(row), flush=True)
    print_table(rows, reference[1])


def kill_run(
    i: int,
    cmd: list[str],
    env: dict[str, str],
    piddir: str,
    rank: int,
    delay: float,
    timeout: float,
) -> dict[str, Any]:
    """One run: SIGKILL world rank ``rank`` ``delay`` s after the loop started."""
    errfile = Path(piddir) / "stderr"
    with open(errfile, "w") as errs:
        proc = subprocess.Popen(
            cmd, env={**env, "MPICKPT_PIDDIR": piddir}, stdout=subprocess.PIPE, stderr=errs,
            text=True, start_new_session=True,
        )  # fmt: skip
        start = time.time()
        killed_at = None
        while time.time() - start < timeout:
            m = marks(errfile.read_text(errors="replace"))
            if "loop" in m:
                time.sleep(max(0.0, m["loop"] + delay - time.time()))
                pid = int((Path(piddir) / f"rank{rank}.pid").read_text())
                if proc.poll() is None:
                    killed_at = time.time()
                    os.kill(pid, signal.SIGKILL)
                break
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        try:
            out, _ = proc.communicate(timeout=max(1.0, timeout - (time.time() - start)))
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            out, _ = stop(proc)
            rc = -999
    err = errfile.read_text(errors="replace")
    row: dict[str, Any] = {
        "run": i + 1,
        "rank": rank,
        "delay": delay,
        "killed": killed_at is not None,
        "rc": rc,
        "checksum": (CHECKSUM.search(out) or [None, None])[1],
        "stalled": "stalled" in err,
        "total": time.time() - start,
    }
    tl = timeline(err)
    m = marks(err)
    if killed_at is not None and tl is not None:
        t0, events = tl
        resumed = [o for o, w in events if w.startswith("re-protected")]
        recovered = [o for o, w in events if w == "recovered"]
        at = re.search(r"resuming at step (\d+)", err)
        row.update(
            detected=t0 - killed_at,
            recovered=t0 + recovered[-1] - killed_at if recovered else None,
            rebuilt=m["rebuilt"] - killed_at if "rebuilt" in m else None,
            resumed=t0 + resumed[-1] - killed_at if resumed else None,
            step=int(at[1]) if at else None,
        )
    if not row.get("resumed") or rc != 0:
        row["log"] = err[-3000:]
    return row


def fmt(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def format_row(r: dict[str, Any]) -> str:
    keys = ("detected", "recovered", "rebuilt", "resumed")
    return (
        f"| {r['run']} | {r['rank']} | {r['delay']:.2f} | {r.get('step', '-')} | "
        + " | ".join(fmt(r.get(k)) for k in keys)
        + f" | {r['total']:.1f} | {r['rc']} | {'yes' if r['ok'] else 'NO'} |"
    )


def print_table(rows: list[dict[str, Any]], reference: str) -> None:
    print()
    print(
        "| run | killed rank | s into loop | resumed at apply | kill->detected s | ->recovered s"
        " | ->Devito rebuilt s | ->resumed s | run s | exit | checksum ok |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(format_row(r))
    ok = sum(r["ok"] for r in rows)
    print(f"\n{ok} of {len(rows)} runs ended with the failure-free checksum", end="")
    print(f"; {sum(r['stalled'] for r in rows)} watchdog stalls, ", end="")
    print(f"{sum(r['rc'] == -999 for r in rows)} timeouts")
    for key in ("detected", "recovered", "rebuilt", "resumed"):
        vals = [r[key] for r in rows if r.get(key) is not None]
        if vals:
            print(
                f"kill->{key}: median {statistics.median(vals):.3f} s, "
                f"max {max(vals):.3f} s (n={len(vals)})"
            )
    for r in rows:
        if "log" in r:
            print(f"\n--- run {r['run']} (rc {r['rc']}), end of stderr:\n{r['log']}")


if __name__ == "__main__":
    main()
