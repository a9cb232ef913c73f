"""``mpickpt demo``: heat2d run twice through ``mpickpt run``, the second time with a worker
SIGKILLed mid-run; the recovery's timeline and the two checksums."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from functools import cache
from pathlib import Path
from typing import Any

from .cli import AS_JSON
from .errors import ConfigError
from .launch import examples_dir
from .log import parse_timelines
from .schemes import Scheme, get_scheme
from .schemes.base import describe


@cache
def demo_scheme() -> Scheme:
    """The demo's scheme, passed to heat2d whatever its defaults."""
    return get_scheme("parity", group=2, backups=3)


_CHECKSUM = re.compile(r"^checksum: ([0-9a-f]{64})$", re.M)

# Open MPI can abort a surviving rank as its peer dies (README, "Open MPI faults"); the others
# then wait for it until the recovery watchdog ends the run.
OMPI_ABORT = "error after request freed"


class HeatFailed(RuntimeError):
    def __init__(self, message: str, stderr: str) -> None:
        super().__init__(message)
        self.stderr = stderr


def _run_heat(n: int, args: list[str], env: dict[str, str], timeout: float) -> tuple[str, str]:
    """heat2d launched as a user would: through ``mpickpt run`` (no relaunch: the demo shows
    the online recovery)."""
    with tempfile.TemporaryDirectory() as run_dir:
        cmd = [sys.executable, "-m", "mpickpt", "run", "-n", str(n), "--relaunches", "0",
               "--run-dir", run_dir, "--", sys.executable, str(examples_dir() / "heat2d.py"),
               *args]  # fmt: skip
        proc = subprocess.run(
            cmd,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    m = _CHECKSUM.search(proc.stdout)
    if proc.returncode != 0 or m is None:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise HeatFailed(f"heat2d exited with {proc.returncode}: {' '.join(cmd)}", proc.stderr)
    return m.group(1), proc.stderr


def cmd_demo(a: argparse.Namespace) -> int:
    """Run heat2d twice, the second time killing a worker mid-run; show the recovery."""
    if a.spares < 1:
        raise ConfigError(
            f"--spares {a.spares} leaves no spare rank to take the killed rank's place, so the "
            "second run could not recover; use --spares 1 or more"
        )
    scheme = demo_scheme()
    if a.workers < scheme.min_workers:
        raise ConfigError(
            f"--workers {a.workers}: the demo's {describe(scheme)} needs "
            f"{scheme.min_workers} or more workers; use --workers {scheme.min_workers}"
        )
    if not 0 <= a.kill_rank < a.workers or not 0 <= a.kill_step < a.steps:
        raise ConfigError(
            f"--kill-rank {a.kill_rank} --kill-step {a.kill_step}: kill a worker "
            f"(0..{a.workers - 1}) at a step of the run (0..{a.steps - 1})"
        )
    try:
        result = _demo(a)
    except HeatFailed as e:
        print(f"mpickpt demo: {e}", file=sys.stderr)
        if a.json:
            print(json.dumps({"error": str(e), "exit_code": 1}))
        return 1
    if a.json:
        print(json.dumps(result))
    return 0 if result["ok"] else 1


def _demo(a: argparse.Namespace) -> dict[str, Any]:
    """The two runs; what they gave (without --json, the story is printed as it goes)."""
    say = (lambda *x: None) if a.json else print
    n = a.workers + a.spares
    args = f"--steps {a.steps} --size {a.size} --every {a.every} --spares {a.spares}".split()
    scheme = {k: v for k, v in demo_scheme().get_config().items() if k != "subsegments"}
    args += [f"--{'scheme' if k == 'id' else k}={v}" for k, v in scheme.items()]
    say(
        f"mpickpt demo: heat2d {a.size}x{a.size}, {a.steps} steps, {a.workers} workers + "
        f"{a.spares} spare, {describe(demo_scheme())}, checkpoint every {a.every} steps"
    )
    t = time.perf_counter()
    clean, _ = _run_heat(n, args, {}, a.timeout)
    clean_s = time.perf_counter() - t
    say(f"1. failure-free run: {clean_s:.2f} s, checksum {clean[:16]}...")
    say(f"2. same run, SIGKILL of rank {a.kill_rank} at step {a.kill_step}:")
    faulty, err, elapsed, killed_at = _killed_run(a, n, args, say)
    result: dict[str, Any] = {
        "workers": a.workers,
        "spares": a.spares,
        "kill_rank": a.kill_rank,
        "kill_step": a.kill_step,
        "clean": {"seconds": round(clean_s, 3), "checksum": clean},
        "faulty": {"seconds": round(elapsed, 3), "checksum": faulty},
        "timeline": [],
        "ok": faulty == clean,
    }
    if not _tell_recovery(a, result, err, killed_at, say):
        return result
    say(f"   run time {elapsed:.2f} s, checksum {faulty[:16]}...")
    if result["ok"]:
        say("OK: the run that lost a rank gives the same checksum as the failure-free run")
    else:
        say("FAIL: checksums differ")
    return result


def _killed_run(
    a: argparse.Namespace, n: int, args: list[str], say: Any
) -> tuple[str, str, float, float | None]:
    """The run with a kill (once more if Open MPI aborted a survivor): its checksum, standard
    error, seconds, and the time of the kill if the killed rank left it."""
    with tempfile.TemporaryDirectory() as piddir:
        env = {
            "MPICKPT_KILL": f"{a.kill_rank}@{a.kill_step}",
            "MPICKPT_VERBOSE": "1",
            "MPICKPT_PIDDIR": piddir,
            "MPICKPT_RECOVERY_TIMEOUT": "30",  # a recovery takes well under a second
        }
        for attempt in (1, 2):
            t = time.perf_counter()
            try:
                faulty, err = _run_heat(n, args, env, a.timeout)
                break
            except HeatFailed as e:
                if attempt == 2 or OMPI_ABORT not in e.stderr:
                    raise
                say(
                    "   Open MPI aborted a surviving rank as rank "
                    f"{a.kill_rank} died (a known Open MPI fault, see the README): once more"
                )
        elapsed = time.perf_counter() - t
        killed = Path(piddir, f"killed-rank{a.kill_rank}.time")
        killed_at = float(killed.read_text()) if killed.exists() else None
    return faulty, err, elapsed, killed_at


def _tell_recovery(
    a: argparse.Namespace, result: dict[str, Any], err: str, killed_at: float | None, say: Any
) -> bool:
    """The recovery's timeline into ``result`` (and told): seconds after the SIGKILL when the
    killed rank left its time, else after the detection. ``False``: no recovery happened (a
    failed demo)."""
    timelines = parse_timelines(err)
    if not timelines:
        if not a.json:
            sys.stderr.write(err)
        say("   no recovery happened (was the kill step before the end?)")
        result["ok"] = False
        return False
    t0 = killed_at if killed_at is not None else timelines[0][0][0]
    events = [(0.0, f"rank {a.kill_rank} killed (SIGKILL)")] if killed_at is not None else []
    events += [(t - t0, what) for t, what in timelines[0]]
    result["timeline"] = [[round(t, 6), what] for t, what in events]
    for t, what in events:
        say(f"   +{t:8.3f} s  {what}")
    return True


def add_arguments(demo: argparse.ArgumentParser) -> None:
    """The options of ``mpickpt demo``."""
    workers = f"worker ranks (at least {demo_scheme().min_workers})"
    demo.add_argument("--workers", type=int, default=8, help=workers)
    demo.add_argument("--spares", type=int, default=1, help="spare ranks (at least 1)")
    demo.add_argument("--steps", type=int, default=300, help="time steps")
    demo.add_argument("--size", type=int, default=1024, help="grid points per side")
    demo.add_argument("--every", type=int, default=20, help="steps between checkpoints")
    demo.add_argument("--kill-rank", type=int, default=3, help="the worker killed")
    demo.add_argument("--kill-step", type=int, default=150, help="the step it is killed at")
    demo.add_argument("--timeout", type=float, default=300, help="seconds allowed per run")
    demo.add_argument("--json", action="store_true", help=AS_JSON)
    demo.set_defaults(fn=cmd_demo)
