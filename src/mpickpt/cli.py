"""``mpickpt run | layout | demo | inspect | verify | plan`` (and ``mpickpt --version``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, SpillError

if TYPE_CHECKING:
    from .schemes import XorSet

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
    from . import advice, demo

    _layout_options(command("layout", "show how a scheme places pieces on backups"))
    demo.add_arguments(command("demo", "kill a rank of a running job and watch it recover"))
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
