"""``mpickpt layout | demo | inspect | verify`` (and ``mpickpt --version``)."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .errors import ConfigError, SpillError
from .layout import choose_backups
from .schemes import get_scheme, registry


def _scheme_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scheme", default="parity", choices=sorted(registry))
    p.add_argument("--subsegments", type=int, default=None, help="parity/stripe/rs")
    p.add_argument("--group", type=int, default=3, help="parity/rs: subsegments per stripe")
    p.add_argument(
        "--backups",
        type=int,
        default=None,
        help="backups per owner (parity/stripe: 4, rs: group+parity)",
    )
    p.add_argument("--copies", type=int, default=2, help="mirror: full copies")
    p.add_argument("--parity", type=int, default=2, help="rs: coding pieces per stripe")


def _scheme(a: argparse.Namespace) -> Any:
    if a.scheme == "rs":
        return get_scheme(
            "rs", group=a.group, parity=a.parity, backups=a.backups, subsegments=a.subsegments
        )
    backups = 4 if a.backups is None else a.backups
    if a.scheme == "parity":
        return get_scheme("parity", group=a.group, backups=backups, subsegments=a.subsegments)
    if a.scheme == "stripe":
        return get_scheme("stripe", backups=backups, subsegments=a.subsegments)
    return get_scheme("mirror", copies=a.copies)


def cmd_layout(a: argparse.Namespace) -> int:
    """Which pieces each backup holds; with --ranks, which ranks back up each owner."""
    scheme = _scheme(a)
    held = [[p.name for p in pieces] for pieces in scheme.held()]
    out: dict[str, Any] = {
        "scheme": scheme.scheme_id,
        "config": scheme.get_config(),
        "backups": held,
        "tolerance": scheme.tolerance,
        "overhead": round(scheme.overhead, 6),
    }
    if a.ranks:
        per = a.ranks_per_node or 1
        domains = [r // per for r in range(a.ranks)]
        out["owners"] = {str(o): b for o, b in enumerate(choose_backups(domains, scheme.backups))}
    if a.json:
        print(json.dumps(out))
        return 0
    print(
        f"{scheme!r}: tolerates the owner + {scheme.tolerance} backup(s); "
        f"stores {scheme.overhead:.3g} x the segment"
    )
    for i, names in enumerate(held, 1):
        print(f"  backup {i}: {', '.join(names)}")
    for o, b in out.get("owners", {}).items():
        print(f"  rank {o} -> backups {b}")
    return 0


def cmd_inspect(a: argparse.Namespace) -> int:
    """The table of the versions in a spill directory; 2 if there is no directory."""
    from .spill.listing import inspect

    print(inspect(a.directory, verbose=a.verbose))
    return 0


def cmd_verify(a: argparse.Namespace) -> int:
    """0 if all complete versions verify, 1 listing bad files if not, 2 if there is no
    directory or no complete version."""
    from .spill import complete_versions, verify

    d = a.directory
    bad = verify(d)
    versions = complete_versions(d)
    for line in bad:
        print(f"BAD {line}")
    if bad:
        print(f"{len(bad)} bad file(s) in {d}", file=sys.stderr)
        return 1
    if not versions:
        print(f"mpickpt verify: no complete version in {d}", file=sys.stderr)
        return 2
    print(f"OK: {len(versions)} complete version(s) in {d} verified (newest {versions[0]})")
    return 0


_CHECKSUM = re.compile(r"^checksum: ([0-9a-f]{64})$", re.M)


# Open MPI can abort a surviving rank as its peer dies (README, "Open MPI faults"); the others
# then wait for it until the recovery watchdog ends the run.
OMPI_ABORT = "error after request freed"


class HeatFailed(RuntimeError):
    def __init__(self, message: str, stderr: str) -> None:
        super().__init__(message)
        self.stderr = stderr


def _run_heat(n: int, args: list[str], env: dict[str, str], timeout: float) -> tuple[str, str]:
    import os

    from .launch import examples_dir, mpiexec_command

    cmd = mpiexec_command(n, sys.executable, str(examples_dir() / "heat2d.py"), *args)
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
    n = a.workers + a.spares
    args = f"--steps {a.steps} --size {a.size} --every {a.every} --spares {a.spares}".split()
    print(
        f"mpickpt demo: heat2d {a.size}x{a.size}, {a.steps} steps, {a.workers} workers + "
        f"{a.spares} spare, parity (group 2, 3 backups), checkpoint every {a.every} steps"
    )
    t = time.perf_counter()
    clean, _ = _run_heat(n, args, {}, a.timeout)
    print(f"1. failure-free run: {time.perf_counter() - t:.2f} s, checksum {clean[:16]}...")
    with tempfile.TemporaryDirectory() as piddir:
        env = {
            "MPICKPT_KILL": f"{a.kill_rank}@{a.kill_step}",
            "MPICKPT_VERBOSE": "1",
            "MPICKPT_PIDDIR": piddir,
            "MPICKPT_RECOVERY_TIMEOUT": "30",  # a recovery takes well under a second
        }
        print(f"2. same run, SIGKILL of rank {a.kill_rank} at step {a.kill_step}:")
        for attempt in (1, 2):
            t = time.perf_counter()
            try:
                faulty, err = _run_heat(n, args, env, a.timeout)
                break
            except HeatFailed as e:
                if attempt == 2 or OMPI_ABORT not in e.stderr:
                    raise
                print(
                    "   Open MPI aborted a surviving rank as rank "
                    f"{a.kill_rank} died (a known Open MPI fault, see the README): once more"
                )
        elapsed = time.perf_counter() - t
        killed = Path(piddir, f"killed-rank{a.kill_rank}.time")
        killed_at = float(killed.read_text()) if killed.exists() else None
    m = re.search(r"recovery timeline \(t0 = ([0-9.]+)\):\n((?:  \+.*\n?)+)", err)
    if m is None:
        sys.stderr.write(err)
        print("   no recovery happened (was the kill step before the end?)")
        return 1
    if killed_at is not None:
        print(f"   +{0:8.3f} s  rank {a.kill_rank} killed (SIGKILL)")
        shift = float(m.group(1)) - killed_at
        for line in m.group(2).rstrip().splitlines():
            dt, what = line.strip().lstrip("+").split(" s  ", 1)
            print(f"   +{float(dt) + shift:8.3f} s  {what}")
    else:
        print(m.group(2).rstrip())
    print(f"   run time {elapsed:.2f} s, checksum {faulty[:16]}...")
    if faulty == clean:
        print("OK: the run that lost a rank gives the same checksum as the failure-free run")
        return 0
    print("FAIL: checksums differ")
    return 1


def main(argv: list[str] | None = None) -> int:
    from . import __version__

    p = argparse.ArgumentParser(prog="mpickpt", description=__doc__)
    p.add_argument("--version", action="version", version=f"mpickpt {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    lay = sub.add_parser("layout", help="show how a scheme places pieces on backups")
    _scheme_args(lay)
    lay.add_argument("--ranks", type=int, default=0, help="also place N ranks' backups")
    lay.add_argument("--ranks-per-node", type=int, default=0, help="failure domain size")
    lay.add_argument("--json", action="store_true")
    lay.set_defaults(fn=cmd_layout)
    demo = sub.add_parser("demo", help="kill a rank of a running job and watch it recover")
    demo.add_argument("--workers", type=int, default=8)
    demo.add_argument("--spares", type=int, default=1)
    demo.add_argument("--steps", type=int, default=300)
    demo.add_argument("--size", type=int, default=1024)
    demo.add_argument("--every", type=int, default=20)
    demo.add_argument("--kill-rank", type=int, default=3)
    demo.add_argument("--kill-step", type=int, default=150)
    demo.add_argument("--timeout", type=float, default=300)
    demo.set_defaults(fn=cmd_demo)
    ins = sub.add_parser("inspect", help="list the versions in a spill directory")
    ins.add_argument("directory")
    ins.add_argument("-v", "--verbose", action="store_true", help="one line per rank file")
    ins.set_defaults(fn=cmd_inspect)
    ver = sub.add_parser("verify", help="recompute the checksums of a spill directory")
    ver.add_argument("directory")
    ver.set_defaults(fn=cmd_verify)
    a = p.parse_args(argv)
    try:
        return int(a.fn(a))
    except (ConfigError, SpillError) as e:
        print(f"mpickpt {a.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
