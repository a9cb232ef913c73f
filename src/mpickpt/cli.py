"""``mpickpt run | layout | demo | inspect | verify | plan`` (and ``mpickpt --version``)."""

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
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, SpillError
from .log import parse_timelines

if TYPE_CHECKING:
    from .schemes import Scheme, XorSet

# The schemes, NumPy and the failure model are imported by the commands that use them:
# `mpickpt run` starts every job, and its start-up should cost the interpreter and little more.


def cmd_layout(a: argparse.Namespace) -> int:
    """Which pieces each backup holds; with --ranks, which ranks back up each owner."""
    from .layout import choose_backups
    from .schemes import XorSet, get_scheme
    from .schemes.options import scheme_params

    scheme = get_scheme(a.scheme, **scheme_params(a))
    if isinstance(scheme, XorSet):
        return _layout_sets(scheme, a)
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
        used = scheme.layout_domains(domains)  # as the library places them
        out["owners"] = {str(o): b for o, b in enumerate(choose_backups(used, scheme.backups))}
        out["node_loss_covered"] = used == domains
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
    if not out.get("node_loss_covered", True):
        print("  (too few or too uneven nodes: placed as if each rank were a node, as a job")
        print("   would be, so the loss of a whole node is not covered)")
    return 0


def _layout_sets(scheme: XorSet, a: argparse.Namespace) -> int:
    """``layout`` for xorset: the chunks of a segment and, with --ranks, the sets."""
    from .schemes.xorset import form_sets

    k = scheme.group
    out: dict[str, Any] = {
        "scheme": scheme.scheme_id,
        "config": scheme.get_config(),
        "tolerance": scheme.tolerates,
        "overhead": round(scheme.overhead, 6),
    }
    if a.ranks:
        per = a.ranks_per_node or 1
        out["sets"] = form_sets([r // per for r in range(a.ranks)], k)
    if a.json:
        print(json.dumps(out))
        return 0
    print(
        f"{scheme!r}: tolerates {scheme.tolerates} (a lost node when every set spans "
        f"nodes); stores {scheme.overhead:.3g} x the segment beside its own copy"
    )
    print(f"  a segment is cut into {k - 1} chunks; member j of a set of {k} holds the XOR of")
    print("  one chunk of every other member (chunk d-1 of member j-d, d = 1..k-1)")
    for i, members in enumerate(out.get("sets", [])):
        print(f"  set {i}: ranks {members}")
    return 0


def cmd_inspect(a: argparse.Namespace) -> int:
    """The table of the versions in a spill directory; 2 if there is no directory."""
    from .spill.directory import done_step
    from .spill.listing import inspect, versions

    if a.json:
        found = versions(a.directory)
        print(
            json.dumps(
                {"directory": a.directory, "done": done_step(a.directory), "versions": found}
            )
        )
        return 0
    print(inspect(a.directory, verbose=a.verbose))
    return 0


def cmd_verify(a: argparse.Namespace) -> int:
    """0 if all complete versions verify, 1 listing bad files if not, 2 if there is no
    directory or no complete version."""
    from .spill import complete_versions, verify

    d = a.directory
    bad = verify(d)
    versions = complete_versions(d)
    if a.json:
        ok = not bad and bool(versions)
        print(json.dumps({"directory": d, "ok": ok, "complete_versions": versions, "bad": bad}))
        return 0 if ok else 1 if bad else 2
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


@cache
def demo_scheme() -> Scheme:
    """The demo's scheme, passed to heat2d whatever its defaults."""
    from .schemes import get_scheme

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
    import os

    from .launch import examples_dir

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
    from .schemes.base import describe

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
    from .schemes.base import describe

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


AS_JSON = "print one JSON document instead of text"


class _Version(argparse.Action):
    """``--version``, which reads the package's metadata only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **_: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from . import __version__

        print(f"mpickpt {__version__}")
        parser.exit()


def _parser(only_run: bool = False) -> argparse.ArgumentParser:
    """Every subcommand with its options, each subcommand's function as ``fn``; with
    ``only_run``, ``run`` alone (its start-up cost is every job's)."""
    from . import runopts, supervisor

    fmt = argparse.ArgumentDefaultsHelpFormatter
    about = (__doc__ or "").replace("``", "")  # the docstring's reST quotes, not for a terminal
    p = argparse.ArgumentParser(prog="mpickpt", description=about, formatter_class=fmt)
    p.add_argument("--version", action=_Version)
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, formatter_class=fmt)

    run = command("run", "launch a protected job, watch it, relaunch it when it dies")
    runopts.add_arguments(run)
    run.set_defaults(fn=supervisor.main)
    if only_run:
        return p
    from . import advice

    _layout_options(command("layout", "show how a scheme places pieces on backups"))
    _demo_options(command("demo", "kill a rank of a running job and watch it recover"))
    _spill_options(command("inspect", "list the versions in a spill directory"), cmd_inspect)
    _spill_options(command("verify", "recompute the checksums of a spill directory"), cmd_verify)
    plan = command("plan", "which scheme, interval and spares for a job (a failure model)")
    advice.add_arguments(plan)
    plan.set_defaults(fn=advice.run)
    return p


def _layout_options(lay: argparse.ArgumentParser) -> None:
    from .schemes.options import add_scheme_options

    add_scheme_options(lay)
    lay.add_argument("--ranks", type=int, default=0, help="also place N ranks' backups")
    lay.add_argument(
        "--ranks-per-node", type=int, default=0, help="ranks per failure domain (0: one each)"
    )
    lay.add_argument("--json", action="store_true", help=AS_JSON)
    lay.set_defaults(fn=cmd_layout)


def _demo_options(demo: argparse.ArgumentParser) -> None:
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


def _spill_options(cmd: argparse.ArgumentParser, fn: Any) -> None:
    cmd.add_argument("directory", help="the spill directory")
    if fn is cmd_inspect:
        cmd.add_argument("-v", "--verbose", action="store_true", help="one line per rank file")
    cmd.add_argument("--json", action="store_true", help=AS_JSON)
    cmd.set_defaults(fn=fn)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    a = _parser(only_run=argv[:1] == ["run"]).parse_args(argv)
    try:
        code = int(a.fn(a))
        sys.stdout.flush()  # here, where a closed pipe can be handled
        return code
    except (ConfigError, SpillError) as e:
        print(f"mpickpt {a.command}: {e}", file=sys.stderr)
        if getattr(a, "json", False):  # --json: a JSON document, also for an error
            print(json.dumps({"error": f"{type(e).__name__}: {e}", "exit_code": 2}))
        return 2
    except BrokenPipeError:  # `mpickpt inspect --json | head`: the reader has gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        return 1


if __name__ == "__main__":
    sys.exit(main())
