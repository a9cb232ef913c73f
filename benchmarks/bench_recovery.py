"""Benchmark: online recovery from a killed rank against a relaunch that reloads an HDF5 spill.

Run it with plain python, not under ``mpiexec``: it launches the MPI jobs itself::

    python benchmarks/bench_recovery.py                 # 6 and 8 workers x 16 and 64 MB

For every configuration (workers x MB of state per worker, plus ``--spares`` idle spares) it
runs ``examples/heat2d.py`` on a grid sized so that each worker's ``u`` (float64, with its
halo) is that many MB (``8 * size**2 / workers`` bytes), for ``--steps 4``, checkpointing
every ``--every 2`` steps:

1. **failure-free** (once): the run with ``--spill DIR`` (only its first and its last
   checkpoint are spilled). It gives the reference checksum and the HDF5 version the
   relaunch starts from.
2. **kill**: the same run without the spill, with ``MPICKPT_KILL=3@3`` (a real SIGKILL of
   rank 3 at the start of step 3), ``MPICKPT_VERBOSE=1`` (rank 0 prints the recovery timeline
   on stderr) and ``MPICKPT_PIDDIR`` (the killed rank writes ``killed-rank3.time``, its
   ``time.time()`` just before the SIGKILL). The timeline's stamps minus the kill time give
   kill -> detected -> rebuilt -> recovered -> resumed. *Resumed* is the library's
   ``re-protected; resuming at step S`` mark: the protected function has been re-entered, has
   rebuilt its grid, has got its array back, and the re-protect checkpoint has committed; the
   next step starts right after it. The final checksum must equal the failure-free one.
3. **relaunch**: the same command again, with the same spill directory, whose files are first
   dropped from the page cache (``--warm`` keeps them). The job restarts from the spilled last
   step (``mpickpt: restarted from spilled version ...``), takes its first in-RAM checkpoint and
   ends, since no step is left. Timed from ``Popen``: MPI initialised -> state reloaded from
   HDF5 -> *resumed* (the first checkpoint committed: the same point as in 2). The whole run
   also counts the checksum gather and the exit.
4. **mpiexec + init**: ``import mpickpt; from mpi4py import MPI`` and one barrier at the same
   number of ranks: the fixed price of any relaunch.

Steps 2-4 form a round, run in turn for every configuration, ``--repeats`` rounds (fewer if
the next round would end after ``--budget`` seconds), so that all see the same load.

Each job runs this file as a thin wrapper (``--child``) that runs ``heat2d.py`` unchanged
through ``runpy``. Like the checkpoint benchmark's ``--profile``, it wraps a few library calls
to add stamps: when rank 0 first sees the failure (``Job.leave``), when the protected
function is re-entered, ``protect()``, and the start of the re-protect checkpoint. They go into
the recovery timeline; the relaunch's milestones come out as one JSON line on stderr. The
library's own marks (detected, shrunk, rebuilt, recovered, re-protected) are unchanged.

All stamps are ``time.time()`` on one machine (rank 0's, the killed rank's, the driver's). The
timeline is rank 0's: "detected" is when rank 0 entered recovery, after its revoke + agree.

Every job has a timeout (``--timeout``). A job is also killed 5 s after Open MPI printed a
fatal error (a rank aborted: the others would wait for it forever), and ``--exit-grace``
seconds after the app returned on rank 0 if it has not exited by then (a hang at exit: a
py-spy, or gdb, stack of every rank is kept). Such runs are listed under *Problems* with the
command that reproduces them; ``--logdir`` keeps their whole output. ``--source DIR`` runs
the ``src/`` and ``examples/`` of another checkout, e.g. ``git archive HEAD src examples``
unpacked: a fixed version while the working tree changes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ENV_SOURCE = "MPICKPT_BENCH_SOURCE"  # the checkout whose src/ and examples/ the jobs run
BASE_ENV: dict[str, str] = {}  # set by main(): added to every job's environment
MARKS = "mpickpt-bench-marks: "
MB = 1 << 20


# -- the wrapper that runs under mpiexec -------------------------------------------------------


def child(argv: list[str]) -> None:
    """Run ``examples/heat2d.py argv`` with time stamps added (see the module docstring)."""
    t_python = time.time()
    import runpy

    import mpickpt  # noqa: F401  first, as the example does (MPI_Finalize off)

    # isort: split
    from mpi4py import MPI

    from mpickpt import checkpointer, context, log
    from mpickpt.recovery import transaction

    marks: dict[str, float] = {"python": t_python, "mpi_init": time.time()}

    def wrap(cls: Any, name: str, before: str | None, after: str | None, check: Any = None) -> None:
        orig = getattr(cls, name)

        def wrapper(*a: Any, **k: Any) -> Any:
            if before:
                marks[before] = time.time()
            out = orig(*a, **k)
            if after:
                marks[after] = time.time()
            if check is not None:
                check(out)
            return out

        setattr(cls, name, wrapper)

    def started(role: str) -> None:
        if role == "restarted":
            marks["reloaded"] = marks["start_end"]

    def checkpointed(_: Any) -> None:
        marks.setdefault("first_ckpt_end", marks["ckpt_end"])

    wrap(transaction.Job, "__init__", None, "job")
    wrap(transaction.Job, "start", None, "start_end", started)
    wrap(transaction.Job, "leave", "leave", None)
    wrap(context.Context, "__init__", None, "context")
    wrap(checkpointer.Checkpointer, "protect", "protect_start", "protect_end")
    wrap(checkpointer.Checkpointer, "checkpoint", "ckpt_start", "ckpt_end", checkpointed)
    if hasattr(checkpointer.Checkpointer, "reprotect"):  # re-protect: missing pieces only
        wrap(checkpointer.Checkpointer, "reprotect", "ckpt_start", None)

    orig_print = log.Timeline.print_timeline

    def print_timeline(self: Any, rank: int) -> None:
        if self.events:
            t0 = self.events[0][0]
            recovered = max((t for t, w in self.events if w == "recovered"), default=t0)
            extra = []
            if "leave" in marks and t0 - 30 < marks["leave"] <= t0:
                extra.append((marks["leave"], "rank 0 saw the error, revoked and agreed"))
            for key, what in (
                ("context", "protected function re-entered"),
                ("protect_start", "app grid rebuilt: protect() called"),
                ("protect_end", "saved array copied back (protect() returned)"),
                ("ckpt_start", "re-protect checkpoint started"),
            ):
                if key in marks and marks[key] >= recovered:
                    extra.append((marks[key], what))
            self.events = sorted(self.events + extra, key=lambda e: e[0])
        orig_print(self, rank)

    log.Timeline.print_timeline = print_timeline  # type: ignore[method-assign]

    examples = Path(os.environ.get(ENV_SOURCE, HERE.parent)) / "examples"
    sys.path.insert(0, str(examples))
    sys.argv = [str(examples / "heat2d.py"), *argv]
    runpy.run_path(sys.argv[0], run_name="__main__")
    if MPI.COMM_WORLD.Get_rank() == 0:
        print(MARKS + json.dumps(marks), file=sys.stderr, flush=True)
    sys.stdout.flush()


# -- launching and parsing ---------------------------------------------------------------------


@dataclass
class Job:
    cmd: list[str]
    rc: int | None  # None: killed (timed out, or hung at exit)
    t_launch: float
    wall: float  # Popen -> exit (or -> killed)
    stdout: str
    stderr: list[tuple[float, str]] = field(default_factory=list)  # (arrival time, line)
    done: float | None = None  # Popen -> rank 0 printed its marks (the app has returned)
    exit_hang: bool = False  # killed after the app had returned: hung at exit
    dumps: str = ""  # py-spy dumps of the ranks of a job that hung
    env: dict[str, str] = field(default_factory=dict)  # what the job got on top of ours

    @property
    def err(self) -> str:
        return "".join(line for _, line in self.stderr)


def mpiexec(n: int, *argv: str) -> list[str]:
    """The launch command: ``$MPIEXEC -n N argv`` if set, else mpickpt's ULFM flags."""
    if os.environ.get("MPIEXEC"):
        return [*shlex.split(os.environ["MPIEXEC"]), "-n", str(n), *argv]
    from mpickpt.launch import mpiexec_command

    return mpiexec_command(n, *argv)


FATAL = ("MPI_ERRORS_ARE_FATAL", "*** An error occurred", "Abort is in progress")


def launch(
    cmd: list[str],
    env: dict[str, str],
    timeout: float,
    exit_grace: float,
    piddir: str | None = None,
) -> Job:
    """Run ``cmd`` in its own process group; time-stamp every stderr line as it arrives.

    The job is killed when ``timeout`` runs out; ``exit_grace`` seconds after rank 0 printed
    its marks (the work is done) if it has not ended by then (``exit_hang``); and 5 s after
    Open MPI reported a fatal error (a rank aborted: the others would wait for it forever).
    Killing: SIGTERM to mpiexec, then SIGKILL to its process group and to every rank listed
    in ``piddir`` (``MPICKPT_PIDDIR``) that is still alive. ``rc`` is None when killed."""
    full_env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "MPICKPT_RANKS_PER_NODE": "1",
        **BASE_ENV,
        **env,
    }
    if piddir:
        full_env["MPICKPT_PIDDIR"] = piddir
    t_launch = time.time()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    lines: list[tuple[float, str]] = []
    out: list[str] = []
    done: list[float] = []
    fatal: list[float] = []

    def read_err() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append((time.time(), line))
            if line.startswith(MARKS):
                done.append(time.perf_counter() - t0)
            if not fatal and any(p in line for p in FATAL):
                fatal.append(time.perf_counter() - t0)

    def read_out() -> None:
        assert proc.stdout is not None
        out.append(proc.stdout.read())

    threads = [
        threading.Thread(target=read_err, daemon=True),
        threading.Thread(target=read_out, daemon=True),
    ]
    for t in threads:
        t.start()
    rc: int | None = None
    exit_hang = False
    dumps = ""
    try:
        while True:
            try:
                rc = proc.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.perf_counter() - t0
            exit_hang = bool(done) and now > done[0] + exit_grace
            if exit_hang or now > timeout or (fatal and now > fatal[0] + 5):
                if not fatal:
                    dumps = dump_ranks(piddir)
                stop(proc, piddir)
                rc = None
                break
    except BaseException:  # interrupted: leave nothing running
        stop(proc, piddir)
        raise
    wall = time.perf_counter() - t0
    for t in threads:
        t.join(timeout=10)
    extra = {k: v for k, v in full_env.items() if os.environ.get(k) != v}
    return Job(
        cmd,
        rc,
        t_launch,
        wall,
        "".join(out),
        lines,
        done[0] if done else None,
        exit_hang,
        dumps,
        extra,
    )


def dump_ranks(piddir: str | None) -> str:
    """Where every rank of a hung job is: ``py-spy dump``, or gdb's backtrace of the main
    thread when py-spy finds no Python (a rank past the interpreter's finalization)."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=os.path.dirname(sys.executable))
    gdb = shutil.which("gdb")
    out = []
    for pidfile in sorted(Path(piddir).glob("rank*.pid")) if piddir else []:
        pid = pidfile.read_text().strip()
        if not Path(f"/proc/{pid}").exists():
            out.append(f"== {pidfile.stem} (pid {pid})\nnot running")
            continue
        text = ""
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            if spy:
                r = subprocess.run(
                    [spy, "dump", "--pid", pid], capture_output=True, text=True, timeout=20
                )
                text = r.stdout if "\nThread " in r.stdout else ""
            if not text and gdb:
                r = subprocess.run(
                    [gdb, "-p", pid, "-batch", "-ex", "thread 1", "-ex", "bt 12"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
                frames = [ln for ln in r.stdout.splitlines() if ln.startswith("#")]
                text = "Thread 1 (no Python; gdb)\n" + "\n".join(frames)
        out.append(f"== {pidfile.stem} (pid {pid})\n{text or 'no stack'}")
    return "\n".join(out)


def where(dumps: str) -> str:
    """One line per rank: the innermost frame of its main thread."""
    lines = []
    for block in dumps.split("== ")[1:]:
        head, _, body = block.partition("\n")
        body_lines = body.splitlines()
        heads = [i for i, ln in enumerate(body_lines) if ln.startswith("Thread ")]
        main = [i for i in heads if '"MainThread"' in body_lines[i]] or heads
        after = body_lines[main[0] + 1 :] if main else []
        frame = after[0].strip() if after else body.strip()[:100]
        lines.append(f"    {head.split()[0]}: {frame[:160]}")
    return "\n".join(lines)


def stop(proc: subprocess.Popen[str], piddir: str | None) -> None:
    """End a job we launched: mpiexec first (it tears its ranks down), then whatever of it is
    left, by process id only (a rank's pid file, if the pid still runs this file)."""
    proc.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the group we created with start_new_session
    proc.wait(timeout=30)
    for pidfile in Path(piddir).glob("rank*.pid") if piddir else []:
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text())
            if b"bench_recovery.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)


_CHECKSUM = re.compile(r"^checksum: ([0-9a-f]{64})$", re.M)
_RESTARTED = re.compile(r"restarted from spilled version (\d+) \(step (\d+)")


def checksum(job: Job) -> str | None:
    m = _CHECKSUM.search(job.stdout)
    return m.group(1) if m else None


def timelines(job: Job) -> list[list[tuple[float, str]]]:
    """Every recovery timeline rank 0 printed, as (absolute time, event)."""
    from mpickpt.log import parse_timelines  # no MPI

    return parse_timelines(job.err)


def marks(job: Job) -> dict[str, float]:
    for _, line in job.stderr:
        if line.startswith(MARKS):
            return dict(json.loads(line[len(MARKS) :]))
    return {}


def first(events: list[tuple[float, str]], prefix: str) -> tuple[float, str] | None:
    return next(((t, w) for t, w in events if w.startswith(prefix)), None)


def last(events: list[tuple[float, str]], prefix: str) -> tuple[float, str] | None:
    return next(((t, w) for t, w in reversed(events) if w.startswith(prefix)), None)


# -- the grid ----------------------------------------------------------------------------------


def dims2(n: int) -> tuple[int, int]:
    """``MPI.Compute_dims(n, 2)``: the most balanced (py, px) with py >= px."""
    px = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return n // px, px


def grid_size(workers: int, mb: float) -> tuple[int, float]:
    """The global size such that each worker's ``u`` is about ``mb`` MB (8 * size^2 / W bytes
    of interior), and the largest worker's ``u`` in MB (with its halo), as heat.Grid splits it."""
    size = round(math.sqrt(mb * MB * workers / 8))
    py, px = dims2(workers)
    rows, cols = -(-size // py), -(-size // px)  # the largest block
    return size, (rows + 2) * (cols + 2) * 8 / MB


# -- one configuration -------------------------------------------------------------------------


def heat_cmd(args: argparse.Namespace, workers: int, size: int, spill: str | None) -> list[str]:
    argv = [
        "--steps",
        str(args.steps),
        "--size",
        str(size),
        "--every",
        str(args.every),
        "--spares",
        str(args.spares),
        "--scheme",
        args.scheme,
        *shlex.split(args.heat_args),
    ]
    if spill:  # spill the first and the last checkpoint (versions 0 and n: n % n == 0)
        last = -(-args.steps // args.every)  # the version number of the last checkpoint
        argv += ["--spill", spill, "--spill-every", str(max(1, last))]
    return mpiexec(
        workers + args.spares, sys.executable, str(Path(__file__).resolve()), "--child", *argv
    )


class Log:
    """Problems (failed, hung or wrong runs): printed at once and again at the end; with
    ``logdir`` the whole stdout and stderr of each such job is kept there."""

    def __init__(self, logdir: str | None) -> None:
        self.entries: list[str] = []
        self.logdir = logdir
        if logdir:
            os.makedirs(logdir, exist_ok=True)

    def add(self, what: str, job: Job | None = None) -> None:
        text = what
        if job is not None:
            state = (
                "HUNG AT EXIT (the app had returned on rank 0; killed)"
                if job.exit_hang
                else "killed (timeout, or a fatal MPI error)"
                if job.rc is None
                else f"exit code {job.rc}"
            )
            tail = "".join(
                f"    {line}"
                for _, line in job.stderr[-12:]
                if "DomainWarning" not in line and "failure_domains" not in line
            )
            text += (
                f": {state} after {job.wall:.1f} s\n  command: "
                f"{shlex.join([f'{k}={v}' for k, v in sorted(job.env.items())] + job.cmd)}\n"
                f"  stdout: {job.stdout.strip()[-300:]}\n  stderr (last lines):\n{tail}"
            )
            if job.dumps:
                text += f"  where each rank was (py-spy, main thread):\n{where(job.dumps)}\n"
            if self.logdir:
                name = os.path.join(self.logdir, f"job{len(self.entries) + 1}")
                Path(name + ".out").write_text(job.stdout)
                Path(name + ".err").write_text(job.err)
                text += f"  full output: {name}.out / .err"
                if job.dumps:
                    Path(name + ".stacks").write_text(job.dumps)
                    text += " / .stacks"
                text += "\n"
        self.entries.append(text.rstrip())
        print("# PROBLEM: " + text.rstrip(), flush=True)


def completed(job: Job, what: str, log: Log) -> bool:
    """Whether the app completed: exit code 0, or it returned and then hung at exit (logged
    as a problem, but its measurements are kept)."""
    if job.rc == 0:
        return True
    log.add(what, job)
    return job.exit_hang


@dataclass
class Config:
    workers: int
    mb: float
    size: int
    rank_mb: float
    cmd: list[str]
    cmd_spill: list[str]
    spill: str
    rec: dict[str, Any]


def kill_run(args: argparse.Namespace, c: Config, tmp: str, log: Log) -> dict[str, Any] | None:
    piddir = tempfile.mkdtemp(prefix="pids-", dir=tmp)
    env = {"MPICKPT_KILL": f"{args.kill_rank}@{args.kill_step}", "MPICKPT_VERBOSE": "1"}
    job = launch(c.cmd, env, args.timeout, args.exit_grace, piddir)
    killed = Path(piddir, f"killed-rank{args.kill_rank}.time")
    t_kill = float(killed.read_text()) if killed.exists() else None
    shutil.rmtree(piddir, ignore_errors=True)
    what = f"kill run, {c.workers} workers x {c.mb:g} MB"
    c.rec["kill_jobs"] += 1
    if not completed(job, what, log):
        c.rec["kill_failures"] += 1
        return None
    tls = timelines(job)
    if t_kill is None or not tls:
        log.add(what + ": no killed-rank file or no recovery timeline", job)
        return None
    ev = tls[0]
    r: dict[str, Any] = {
        "wall": job.wall if job.rc == 0 else None,
        "done": job.done,
        "exit_hang": job.exit_hang,
        "timelines": len(tls),
    }
    for key, prefix, pick in (
        ("seen", "rank 0 saw", first),
        ("detected", "failure detected", first),
        ("shrunk", "shrunk", first),
        ("rebuilt", "rebuilt", first),
        ("recovered", "recovered", last),
        ("reentered", "protected function re-entered", last),
        ("protect", "app grid rebuilt", last),
        ("restored", "saved array copied back", last),
        ("ckpt", "re-protect checkpoint started", last),
        ("resumed", "re-protected", last),
    ):
        e = pick(ev, prefix)
        r[key] = e[0] - t_kill if e else None
    reb = first(ev, "rebuilt")
    m = re.search(r"rebuilt ([0-9.]+) MiB", reb[1]) if reb else None
    r["rebuilt_mib"] = float(m.group(1)) if m else None
    res = last(ev, "re-protected")
    m = re.search(r"resuming at step (\d+)", res[1]) if res else None
    r["resume_step"] = int(m.group(1)) if m else None
    r["retries"] = sum(1 for _, w in ev if "again" in w)
    r["events"] = [(round(t - t_kill, 4), w) for t, w in ev]
    cs = checksum(job)
    r["checksum_ok"] = cs is not None and cs == c.rec["reference"]
    if not r["checksum_ok"]:
        log.add(f"{what}: WRONG CHECKSUM {cs} (failure-free: {c.rec['reference']})", job)
    if r["resumed"] is None:
        log.add(f"{what}: no 're-protected' mark", job)
    if r["retries"] or len(tls) > 1:
        log.add(f"{what}: {len(tls)} recoveries, {r['retries']} retried transaction(s)", job)
    return r


def evict(directory: str) -> int:
    """Drop the spill files from the page cache (``fsync``, then ``POSIX_FADV_DONTNEED``), so
    that the relaunch reads them from the disk; the bytes evicted."""
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                total += os.fstat(fd).st_size
            finally:
                os.close(fd)
    return total


def relaunch_run(args: argparse.Namespace, c: Config, tmp: str, log: Log) -> dict[str, Any] | None:
    from mpickpt.spill.directory import DONE  # here: a child runs another checkout's mpickpt

    # as after a failure before the end: a spill marked DONE is only restored, not protected
    # and run on (its relaunch would measure the reload alone)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(c.spill, DONE))
    evicted = 0 if args.warm else evict(c.spill)
    piddir = tempfile.mkdtemp(prefix="pids-", dir=tmp)
    job = launch(c.cmd_spill, {}, args.timeout, args.exit_grace, piddir)
    shutil.rmtree(piddir, ignore_errors=True)
    what = f"relaunch from the spill, {c.workers} workers x {c.mb:g} MB"
    c.rec["exit_hangs"] += int(job.exit_hang)
    if not completed(job, what, log):
        return None
    m = _RESTARTED.search(job.err)
    mk = marks(job)
    if m is None or "reloaded" not in mk:
        log.add(what + ": it did not restart from the spill", job)
        return None
    cs = checksum(job)
    r: dict[str, Any] = {
        "wall": job.wall if job.rc == 0 else None,
        "done": job.done,
        "exit_hang": job.exit_hang,
        "checksum_ok": cs is not None and cs == c.rec["reference"],
        "restart_step": int(m.group(2)),
        "evicted_mb": evicted / MB,
    }
    if int(m.group(2)) != args.steps:
        log.add(f"{what}: restarted at step {m.group(2)}, not at the last step {args.steps}")
    if not r["checksum_ok"]:
        log.add(f"{what}: WRONG CHECKSUM {cs} (failure-free: {c.rec['reference']})", job)
    t = job.t_launch
    r.update(
        {
            "python": mk["python"] - t,
            "mpi_init": mk["mpi_init"] - t,
            "job": mk["job"] - t,
            "reloaded": mk["reloaded"] - t,
            "resumed": mk["first_ckpt_end"] - t,
        }
    )
    return r


def startup_run(args: argparse.Namespace, n: int, log: Log) -> float | None:
    code = "import mpickpt; from mpi4py import MPI; MPI.COMM_WORLD.Barrier()"
    job = launch(mpiexec(n, sys.executable, "-c", code), {}, args.timeout, args.exit_grace)
    if job.rc != 0:
        log.add(f"mpiexec + init at {n} ranks", job)
        return None
    return job.wall


def make_config(args: argparse.Namespace, workers: int, mb: float, tmp: str) -> Config:
    size, rank_mb = grid_size(workers, mb)
    spill = os.path.join(tmp, f"spill-{workers}x{mb:g}")
    rec: dict[str, Any] = {
        "workers": workers,
        "mb": mb,
        "size": size,
        "rank_mb": rank_mb,
        "reference": None,
        "kills": [],
        "relaunches": [],
        "startups": [],
        "kill_jobs": 0,
        "kill_failures": 0,
        "exit_hangs": 0,
    }
    return Config(
        workers,
        mb,
        size,
        rank_mb,
        heat_cmd(args, workers, size, None),
        heat_cmd(args, workers, size, spill),
        spill,
        rec,
    )


def reference_run(args: argparse.Namespace, c: Config, tmp: str, log: Log, t_start: float) -> bool:
    """The failure-free run, with the spill: the reference checksum, and the spill to
    relaunch from."""
    piddir = tempfile.mkdtemp(prefix="pids-", dir=tmp)
    job = launch(c.cmd_spill, {}, args.timeout, args.exit_grace, piddir)
    shutil.rmtree(piddir, ignore_errors=True)
    c.rec["reference_wall"] = job.wall if job.rc == 0 else None
    c.rec["reference_done"] = job.done
    c.rec["exit_hangs"] += int(job.exit_hang)
    c.rec["reference"] = ref = checksum(job)
    ok = completed(job, f"failure-free run, {c.workers} workers x {c.mb:g} MB", log)
    print(
        f"# {c.workers} workers + {args.spares} spare, {c.mb:g} MB/rank (heat2d --size "
        f"{c.size}, largest u {c.rank_mb:.1f} MiB): failure-free run with spill "
        f"{job.wall:.1f} s{' (HUNG AT EXIT)' if job.exit_hang else ''}, checksum "
        f"{(ref or '-')[:16]}...  [{time.perf_counter() - t_start:.0f} s elapsed, load "
        f"{os.getloadavg()[0]:.1f}]",
        flush=True,
    )
    return ok and ref is not None


def round_of(
    args: argparse.Namespace, c: Config, i: int, tmp: str, log: Log, t_start: float
) -> None:
    """One kill run, one relaunch and one mpiexec + init, in turn (the same load for all)."""
    k = kill_run(args, c, tmp, log)
    rel = relaunch_run(args, c, tmp, log)
    st = startup_run(args, c.workers + args.spares, log)
    if k:
        c.rec["kills"].append(k)
        c.rec["exit_hangs"] += int(k["exit_hang"])
    if rel:
        c.rec["relaunches"].append(rel)
    if st is not None:
        c.rec["startups"].append(st)
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    print(
        f"#   {c.workers}x{c.mb:g} MB round {i + 1}: kill->resumed "
        f"{fmt(k and k['resumed'])} s (checksum "
        f"{'-' if not k else 'ok' if k['checksum_ok'] else 'WRONG'}); relaunch->resumed "
        f"{fmt(rel and rel['resumed'])} s; mpiexec+init {fmt(st)} s  "
        f"[{time.perf_counter() - t_start:.0f} s elapsed, load {os.getloadavg()[0]:.1f}]",
        flush=True,
    )


# -- report ------------------------------------------------------------------------------------


def mm(values: list[float | None], fmt: str = "{:.3f}") -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    return f"{fmt.format(statistics.median(vals))} / {fmt.format(max(vals))}"


def med(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def report(results: list[dict[str, Any]], args: argparse.Namespace, rounds: int) -> None:
    f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    print(
        f"\n## Kill -> resumed (online, {args.spares} spare) vs relaunch + reload from HDF5 "
        f"(seconds from the SIGKILL / from Popen; median / max of {rounds} round(s))"
    )
    hdr = (
        "| workers | MB/rank | kill→detected | kill→rebuilt | kill→recovered | kill→resumed "
        "| relaunch→reloaded | relaunch→resumed | mpiexec+init | relaunch/online "
        "| right checksums | failed kill runs | hangs at exit |"
    )
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    for r in results:
        ks, rs = r["kills"], r["relaunches"]
        on, off = med([k["resumed"] for k in ks]), med([x["resumed"] for x in rs])
        ratio = f"{off / on:.1f}×" if on and off else "-"
        good = sum(1 for k in ks if k["checksum_ok"]) + sum(1 for x in rs if x["checksum_ok"])
        print(
            f"| {r['workers']} | {r['rank_mb']:.0f} | {mm([k['detected'] for k in ks])} | "
            f"{mm([k['rebuilt'] for k in ks])} | {mm([k['recovered'] for k in ks])} | "
            f"**{mm([k['resumed'] for k in ks])}** | {mm([x['reloaded'] for x in rs])} | "
            f"{mm([x['resumed'] for x in rs])} | {mm(r['startups'])} | {ratio} | "
            f"{good}/{len(ks) + len(rs)} | {r['kill_failures']}/{r['kill_jobs']} | "
            f"{r['exit_hangs']} |"
        )
    print(
        "relaunch/online: median relaunch→resumed over median kill→resumed. right checksums: "
        "completed kill and relaunch runs whose final\nchecksum equals the failure-free "
        "run's. failed kill runs: kill runs that did not complete (see Problems; not in the "
        "times).\nhangs at exit: jobs still running "
        f"{args.exit_grace:g} s after the app returned on rank 0 (killed; their measurements "
        "are kept)."
    )

    print("\n## Where the online recovery's time goes (median seconds per phase)")
    hdr = (
        "| workers | MB/rank | kill→rank 0 error | →detected | shrink | rebuild (MiB, MB/s) "
        "| →recovered | app re-entry (grid) | copy back | re-protect ckpt | lost steps |"
    )
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    for r in results:
        ks = r["kills"]
        if not ks:
            continue

        def d(a: str, b: str, ks: list[dict[str, Any]] = ks) -> float | None:
            return med([k[b] - k[a] if k[a] is not None and k[b] is not None else None for k in ks])

        reb = d("shrunk", "rebuilt")
        mib = med([k["rebuilt_mib"] for k in ks])
        rate = f"{mib * MB / 1e6 / reb:.0f}" if mib and reb else "-"
        steps = med([args.kill_step - k["resume_step"] for k in ks if k["resume_step"] is not None])
        print(
            f"| {r['workers']} | {r['rank_mb']:.0f} | {f(med([k['seen'] for k in ks]))} | "
            f"{f(d('seen', 'detected'))} | {f(d('detected', 'shrunk'))} | "
            f"{f(reb)} ({mib if mib is not None else '-'} MiB, {rate}) | "
            f"{f(d('rebuilt', 'recovered'))} | {f(d('recovered', 'protect'))} | "
            f"{f(d('protect', 'restored'))} | {f(d('ckpt', 'resumed'))} | "
            f"{steps if steps is not None else '-'} |"
        )
    print(
        "kill→rank 0 error: until rank 0 got an MPI error (in its halo exchange). →detected: "
        "its revoke + agree (Job.leave) until\nrecovery starts. shrink: Shrink of the "
        "world. rebuild: pieces moved and decoded (MB/s of the segment). →recovered: the\n"
        "agreement that commits the recovery + unpacking the segment. app re-entry: the "
        "protected function builds its Grid\nand initial field again before protect(). "
        "copy back: protect() copies the saved array in. re-protect ckpt: what ctx.steps does\n"
        "before resuming: the pieces the dead worker held are sent again (a full checkpoint "
        "before 0.2). lost "
        "steps: steps run again after the resume."
    )

    print("\n## Relaunch + reload from HDF5 (median seconds from Popen)")
    hdr = (
        "| workers | MB/rank | python up (rank 0) | MPI initialised | job ready "
        "| reloaded from HDF5 | resumed (1st ckpt) | whole relaunch run | failure-free run |"
    )
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    for r in results:
        rs = r["relaunches"]
        if not rs:
            continue
        print(
            f"| {r['workers']} | {r['rank_mb']:.0f} | {f(med([x['python'] for x in rs]))} | "
            f"{f(med([x['mpi_init'] for x in rs]))} | {f(med([x['job'] for x in rs]))} | "
            f"{f(med([x['reloaded'] for x in rs]))} | {f(med([x['resumed'] for x in rs]))} | "
            f"{f(med([x['wall'] for x in rs]))} | {f(r.get('reference_wall'))} |"
        )
    print(
        "whole relaunch run: also the final spill write, the checksum gather and the exit. "
        "failure-free run: the reference run\n(all steps, with spill). "
        + (
            "The HDF5 files were written moments before, so they are read from the page cache."
            if args.warm
            else "The spill files were evicted from the page cache before each "
            "relaunch (fsync + POSIX_FADV_DONTNEED),\nso it reads them from the disk (which "
            "the host may still cache)."
        )
    )

    shown = [r for r in results if r["kills"]]
    if shown:
        r = shown[-1]
        ks = sorted(r["kills"], key=lambda k: k["resumed"] if k["resumed"] is not None else 1e9)
        k = ks[(len(ks) - 1) // 2]
        print(
            f"\n## The median recovery at {r['workers']} workers × {r['rank_mb']:.0f} MB "
            "(rank 0's timeline, seconds after the SIGKILL)"
        )
        print(
            f"  +{0:8.3f} s  rank {args.kill_rank} killed (SIGKILL) at the start of step "
            f"{args.kill_step}"
        )
        for t, what in k["events"]:
            print(f"  +{t:8.3f} s  {what}")

    target = [r for r in results if r["workers"] == 8 and abs(r["mb"] - 64) < 1e-9]
    if target and target[0]["kills"]:
        t = target[0]
        vals = [k["resumed"] for k in t["kills"] if k["resumed"] is not None]
        m, x = statistics.median(vals), max(vals)
        verdict = "MET" if m <= 0.5 else "NOT MET"
        print(
            f"\nTarget kill→resumed ≤ 0.5 s median at 8 workers × 64 MB: {verdict} (median "
            f"{m:.3f} s, max {x:.3f} s over {len(vals)} recoveries; {t['kill_failures']} of "
            f"{t['kill_jobs']} kill runs did not complete)"
        )


PHASES = (  # (start key, end key, label) of the pictured timeline; None: the SIGKILL
    (None, "detected", "failure detected"),
    ("detected", "shrunk", "shrink"),
    ("shrunk", "rebuilt", "rebuild"),
    ("rebuilt", "recovered", "recovery agreed"),
    ("recovered", "protect", "app re-entry"),
    ("protect", "restored", "copy back"),
    ("restored", "resumed", "re-protect"),
)


def plot(results: list[dict[str, Any]], path: str) -> None:
    """The median recovery of every configuration as a bar of its phases (seconds after the
    SIGKILL); the relaunch's time to resume, far longer, is written beside it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("# no picture: matplotlib is not installed (pip install '.[bench]')")
        return
    shown = [r for r in results if r["kills"]]
    if not shown:
        return
    fig, ax = plt.subplots(figsize=(8, 2.4 + 0.6 * len(shown)))
    colors = plt.get_cmap("tab10").colors
    labels, right = [], 0.0
    for y, r in enumerate(shown):
        ks = r["kills"]
        t0 = 0.0
        for i, (_, key, what) in enumerate(PHASES):
            t1 = med([k[key] for k in ks])
            if t1 is None:
                continue
            ax.barh(y, max(t1 - t0, 0.0), left=t0, color=colors[i], label=what if y == 0 else None)
            t0 = max(t0, t1)
        off = med([x["resumed"] for x in r["relaunches"]])
        note = f"  {t0:.3f} s" + (f"  (relaunch + reload from HDF5: {off:.1f} s)" if off else "")
        ax.text(t0, y, note, va="center", fontsize=8)
        right = max(right, t0)
        labels.append(f"{r['workers']} workers × {r['rank_mb']:.0f} MB")
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, right * 2.2)
    ax.set_xlabel("seconds after the SIGKILL (median of the runs)")
    ax.set_title(f"Kill → resumed, heat2d, 2 cores (load {os.getloadavg()[0]:.0f})")
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.5))
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"# picture: {path}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    from mpickpt.schemes import registry  # not at the top: a --child imports mpickpt first

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="6,8", help="worker counts, comma separated")
    ap.add_argument("--sizes", default="16,64", help="MB per worker, comma separated")
    ap.add_argument("--spares", type=int, default=1)
    ap.add_argument(
        "--scheme",
        default="parity",
        choices=sorted(registry),
        help="heat2d --scheme (its parameters: the library's defaults, or --heat-args)",
    )
    ap.add_argument(
        "--heat-args",
        default="",
        help="more heat2d options, e.g. '--group 3 --parity 2 --backups 5' for rs",
    )
    ap.add_argument("--repeats", type=int, default=3, help="kill / relaunch / startup runs each")
    ap.add_argument("--steps", type=int, default=4, help="heat2d --steps")
    ap.add_argument("--every", type=int, default=2, help="heat2d --every (checkpoint interval)")
    ap.add_argument("--kill-step", type=int, default=3, help="step at which the worker dies")
    ap.add_argument(
        "--kill-rank",
        type=int,
        default=3,
        help="the worker killed (not 0: rank 0 prints the timeline)",
    )
    ap.add_argument("--timeout", type=float, default=90, help="seconds per job")
    ap.add_argument(
        "--exit-grace",
        type=float,
        default=15,
        help="seconds a job may take to exit once the app has returned on rank 0; "
        "then it is killed and reported as hung at exit",
    )
    ap.add_argument(
        "--budget",
        type=float,
        default=330,
        help="seconds: start no round that would end after this, judging by the previous "
        "one (a round runs every configuration once, so all get the same number of runs)",
    )
    ap.add_argument(
        "--warm",
        action="store_true",
        help="leave the spill files in the page "
        "cache before a relaunch (default: evict them, so that it reads the disk)",
    )
    ap.add_argument(
        "--source",
        default=None,
        help="run the src/ and examples/ of this checkout (e.g. a `git archive` of a commit) "
        "instead of this file's; its src/ goes first on PYTHONPATH",
    )
    ap.add_argument("--tmpdir", default=None, help="where the spill goes (local disk)")
    ap.add_argument("--logdir", default=None, help="keep the output of failed jobs here")
    ap.add_argument("--json", default=None, help="write all measurements to this file")
    ap.add_argument(
        "--png",
        default="bench_recovery.png",
        help="picture of the recovery timeline (needs matplotlib, the 'bench' extra; '' for none)",
    )
    args = ap.parse_args()
    workers = [int(w) for w in args.workers.split(",") if w]
    sizes = [float(s) for s in args.sizes.split(",") if s]
    if not 0 < args.kill_rank < min(workers):
        raise SystemExit("--kill-rank must be a worker other than 0")
    if not 0 <= args.kill_step < args.steps:
        raise SystemExit("--kill-step must be a step of the run")

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # stop the running job, then report what was measured

    signal.signal(signal.SIGTERM, on_term)
    source = Path(args.source).resolve() if args.source else HERE.parent
    if args.source:
        path = [str(source / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
        BASE_ENV.update({"PYTHONPATH": os.pathsep.join(path), ENV_SOURCE: str(source)})
    tmp = tempfile.mkdtemp(prefix="mpickpt-bench-recovery-", dir=args.tmpdir)
    print(
        f"# mpickpt recovery benchmark: {os.cpu_count()} cores, workers {workers}, "
        f"{args.spares} spare(s), sizes {[f'{s:g}' for s in sizes]} MB/rank, heat2d "
        f"--scheme {args.scheme} {args.heat_args} --steps {args.steps} --every {args.every}, "
        f"SIGKILL of rank {args.kill_rank} at step {args.kill_step}, repeats {args.repeats}, "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    git = subprocess.run(
        ["git", "-C", str(source), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.strip()
    print(
        f"# source: {source} ({git or 'not a git checkout'}); "
        f"launch: {shlex.join(mpiexec(1, 'python'))}",
        flush=True,
    )
    log = Log(args.logdir)
    configs = [make_config(args, w, s, tmp) for w in workers for s in sizes]
    t_start = time.perf_counter()
    rounds = 0
    try:
        ready = [c for c in configs if reference_run(args, c, tmp, log, t_start)]
        last = 0.0  # seconds the previous round took
        for i in range(args.repeats):
            t_round = time.perf_counter()
            if t_round - t_start + last > args.budget:
                print(
                    f"# another round (~{last:.0f} s) would exceed the budget of "
                    f"{args.budget:g} s: stopping after {i} round(s)"
                )
                break
            for c in ready:
                round_of(args, c, i, tmp, log, t_start)
            rounds = i + 1
            last = time.perf_counter() - t_round
    except KeyboardInterrupt:
        print("# interrupted: reporting what was measured", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results = [c.rec for c in configs]
    report(results, args, rounds)
    print(f"\n# total {time.perf_counter() - t_start:.0f} s, load average {os.getloadavg()[0]:.2f}")
    if log.entries:
        print(f"\n## Problems ({len(log.entries)})")
        for entry in log.entries:
            print("- " + entry)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"args": vars(args), "results": results, "problems": log.entries}, f, indent=1
            )
    if args.png:
        plot(results, args.png)


if __name__ == "__main__":
    main()
