"""The options of ``mpickpt run`` (:mod:`.supervisor`): the parser's arguments, their help,
and the :class:`Options` they make. No MPI here.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass, field

from . import heartbeat, launch
from .errors import ConfigError

EPILOG = """\
The launch: for Open MPI, --with-ft ulfm over TCP (btl self,tcp: docs/openmpi.md),
--allow-run-as-root as root, --oversubscribe when N exceeds the cores (or a Slurm
allocation's slots); MPICH and Intel MPI get -n N (no ULFM there: a failure ends the job,
and it is relaunched). Inside a Slurm allocation, only the nodes still up are used.

What ends a launch decides what follows (docs/exit-codes.md): done (0, and the job said that
every worker completed) stops with 0; 1, 2 and 3 stop with that code; 74 (a process lost at
start-up), 75 (no spare left), a hang, mpiexec losing a node, every process dying and 76 when
the job is not to be requeued are relaunched, within --relaunches and --time-budget. The same
failure again at the same step stops with 1. The exit code of mpickpt run is the job's
outcome: 0 only when the result was produced.

  mpickpt run -n 9 -- python sim.py --steps 1000     # 8 workers + 1 spare
"""


@dataclass
class Options:
    """``mpickpt run``'s options (see :func:`add_arguments`)."""

    n: int
    argv: list[str]
    run_dir: str = "mpickpt-run"
    report: str = ""
    relaunches: int = 3
    time_budget: float = 0.0  # 0: none
    backoff: float = 1.0
    hang_timeout: float = 0.0  # 0: automatic
    start_timeout: float = 300.0
    on_stop: str = "auto"
    mpi: str = "auto"
    mpiexec: str = ""
    mpiexec_args: list[str] = field(default_factory=list)
    dry_run: bool = False


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``mpickpt run``'s options (the defaults are in the help texts)."""
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    arg = p.add_argument
    arg("-n", "--np", dest="n", type=int, required=True, metavar="N",
        help="processes to start: the workers and the spares")  # fmt: skip
    arg("--run-dir", default="mpickpt-run", metavar="DIR",
        help="where worker 0 keeps its heartbeat, and the launches' reports and stacks go; on "
        "a file system the job's first node sees (default: mpickpt-run)")  # fmt: skip
    arg("--report", default="", metavar="PATH",
        help="the run report (JSON) covering every launch (default: DIR/run.json)")  # fmt: skip
    arg(
        "--relaunches",
        type=int,
        default=3,
        metavar="K",
        help="at most K relaunches, then stop with the last launch's code (default: 3)",
    )
    arg("--time-budget", type=float, default=0.0, metavar="SECONDS",
        help="start no relaunch after SECONDS since the start (default: 0, no limit)")  # fmt: skip
    arg("--backoff", type=float, default=1.0, metavar="SECONDS",
        help="the first relaunch starts at once, the next after SECONDS, doubling each time up "
        "to 60 s (default: 1)")  # fmt: skip
    arg("--hang-timeout", type=float, default=0.0, metavar="SECONDS",
        help="no progress for SECONDS in the step loop is a hang: the stacks are dumped "
        "(py-spy, if installed), the job killed and relaunched (default: 0, automatic: "
        f"{heartbeat.HANG_FACTOR:g} x the longest gap between two steps seen, at least "
        f"{heartbeat.HANG_FLOOR:g} s; a recovery gets MPICKPT_RECOVERY_TIMEOUT more)")  # fmt: skip
    arg("--start-timeout", type=float, default=300.0, metavar="SECONDS",
        help="the same outside the step loop: start-up, a restart from the spill, and after "
        "the last step (default: 300)")  # fmt: skip
    arg("--on-stop", choices=("auto", "exit", "relaunch"), default="auto",
        help="exit 76 (stopped after a final spill): exit with 76, for a job script to "
        "requeue, or relaunch here; auto: exit inside a Slurm job, else relaunch (a stop "
        "asked of mpickpt run itself always exits) (default: auto)")  # fmt: skip
    arg("--mpi", choices=("auto", *launch.FAMILIES), default="auto",
        help="the MPI that mpi4py uses (default: auto, asks mpi4py)")  # fmt: skip
    arg("--mpiexec", default="", metavar="PATH",
        help="the launcher (default: the mpiexec beside the application's Python, else the "
        "one on PATH)")  # fmt: skip
    arg("--mpiexec-args", default="", metavar="ARGS",
        help='more arguments for mpiexec, in one string split as a shell does, e.g. '
        '--mpiexec-args="--map-by node"; a transport set here (--mca btl ...) replaces '
        "ours")  # fmt: skip
    arg("--dry-run", action="store_true", help="print the first launch's command and exit")
    arg("command", nargs=argparse.REMAINDER,
        help="-- and then the application with its arguments: -- python sim.py ARGS")  # fmt: skip


def options(a: argparse.Namespace) -> Options:
    """The :class:`Options` of parsed arguments; :class:`ConfigError` if they cannot work."""
    argv = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not argv:
        raise ConfigError("no command to run: mpickpt run -n N -- python sim.py ARGS...")
    if a.n < 1 or a.relaunches < 0:
        raise ConfigError(f"-n must be >= 1 and --relaunches >= 0, got {a.n} and {a.relaunches}")
    return Options(
        n=a.n, argv=argv, run_dir=a.run_dir, report=a.report, relaunches=a.relaunches,
        time_budget=a.time_budget, backoff=a.backoff, hang_timeout=a.hang_timeout,
        start_timeout=a.start_timeout, on_stop=a.on_stop, mpi=a.mpi, mpiexec=a.mpiexec,
        mpiexec_args=shlex.split(a.mpiexec_args), dry_run=a.dry_run,
    )  # fmt: skip
