"""Chaos campaign: SIGKILL random rank processes from outside, at random times, and classify
how each run ends.

Used by ``benchmarks/chaos.py`` (the command line) and ``tests/test_chaos.py`` (a short
campaign in the default test run, a long one behind ``-m long``). No pytest in here.

Every trial launches a real example under ``mpiexec`` in its own process group with
``MPICKPT_PIDDIR`` set, waits until the ranks have written their pids, and kills the chosen
processes with ``SIGKILL`` from this process, at a random time within the run (scaled by the
duration of the failure-free reference run of the same configuration). The start-up scenarios
instead kill a python child of ``mpiexec`` at a random moment after the launch (import,
``MPI_Init``) or the instant its pidfile appears. A trial that outlives its hard timeout has
its whole process group killed and counts as a hang.

Outcomes of a trial:

``ok``            exit 0 and the checksum of the failure-free reference run
``wrong``         a checksum that differs from the reference
``hang``          hard timeout reached (mpiexec and every rank are then killed)
``exit0-noresult`` exit 0 without a checksum: the run lied
``exit<N>``       clean non-zero exit N; ``clear`` tells whether mpickpt printed a message
``missed``        the run ended before the kill could be made (not a test of anything)

Tags found in the output: ``ompi-abort`` (Open MPI aborted a process: "error after request
freed", "MPI_ERRORS_ARE_FATAL"), ``segfault``, ``watchdog`` (mpickpt's "recovery stalled").
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mpickpt import launch, startup

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CHECKSUM = re.compile(r"^checksum: ([0-9a-f]{64})$", re.M)
# Genuine Open MPI aborts of a process (not mpickpt's own messages)
OMPI_ABORT = re.compile(r"error after request freed|MPI_ERRORS_ARE_FATAL|MPI_ABORT was invoked")
SEGFAULT = re.compile(r"Segmentation fault|Signal: Segmentation")
WATCHDOG = re.compile(r"recovery stalled")
# mpickpt's own one-line reports ("mpickpt: rank 2: NoSparesError: ...", the watchdog's line)
CLEAR = re.compile(r"^mpickpt: (world )?rank \d+: ", re.M)
TRANSPORTS = {"sm": "self,sm", "tcp": "self,tcp"}
# the start-up scenarios' bound on MPI_Init (seconds): a kill there ends the job after it
INIT_TIMEOUT = 15
INIT = (("MPICKPT_INIT_TIMEOUT", str(INIT_TIMEOUT)),)
# rs(2, 2) on 7 workers: any two workers lost together are within its tolerance
RS = ("--scheme", "rs", "--group", "2", "--parity", "2", "--backups", "4")
# heat2d's scheme unless a scenario says otherwise: parity(2, 3); mirror with 2 copies
HEAT_SCHEME = ("--group", "2", "--backups", "3", "--copies", "2")
SPILL = "{spill}"  # placeholder in a scenario's arguments: a fresh directory per run
# a kill plan: gets the running mpiexec and the pid directory, kills, returns what it killed
Killer = Callable[[subprocess.Popen[str], Path], list[str]]


def default_transport() -> str:
    """The name of the transport that ``mpickpt.launch`` uses by default."""
    return next((k for k, v in TRANSPORTS.items() if v == launch.BTL), "sm")


@dataclass(frozen=True)
class Scenario:
    """One kind of trial: which example, how many processes, and how the kills are planned.

    ``plan`` is one of ``single`` (one random worker), ``spare`` (an idle spare), ``double``
    (two random workers at once), ``stagger`` (a second process 5-300 ms after the first),
    ``recovery`` (a second process 10-150 ms after the first, while the survivors recover:
    detection takes about 20 ms and the resume about 200 ms here), ``node`` (both ranks of a
    random virtual node), ``beyond`` (workers 1, 2, 3 at once: beyond the parity tolerance),
    ``startup`` (a python child of mpiexec at a random moment before every pidfile exists) or
    ``pidfile`` (a random rank the instant its pidfile appears).
    """

    name: str
    example: str
    n: int
    args: tuple[str, ...]
    plan: str
    spares: int
    env: tuple[tuple[str, str], ...] = ()
    steady: bool = True  # False: start-up scenarios (a kill in MPI_Init ends the job with 1)

    @property
    def workers(self) -> int:
        return self.n - self.spares


def _args(steps: int, size: int, every: int | str, spares: int, *extra: str) -> tuple[str, ...]:
    return (
        "--steps", str(steps), "--size", str(size), "--every", str(every),
        "--spares", str(spares), *extra,
    )  # fmt: skip


def _heat(steps: int, size: int, every: int | str, spares: int, *extra: str) -> tuple[str, ...]:
    """heat2d's arguments, its scheme's first (a scenario's own ``--scheme ...`` comes later)."""
    return (*HEAT_SCHEME, *_args(steps, size, every, spares, *extra))


def scenarios(scale: float = 1.0, big: int = 512) -> dict[str, Scenario]:
    """The campaign's scenarios; ``scale`` multiplies the number of steps (run length), ``big``
    is the grid of the two-kill scenarios (512: the configuration of issue 9's abort).
    Scenarios with the same configuration share one reference run."""

    def s(steps: int) -> int:
        return max(10, int(steps * scale))

    heat, walk = "heat2d.py", "walkers_resilient.py"
    rpn = (("MPICKPT_RANKS_PER_NODE", "2"),)
    base = _heat(s(1500), 96, 10, 2)
    pair = _heat(s(300 * 512 // big), big, 10, 2)
    table = [
        Scenario("single", heat, 7, base, "single", 2),
        Scenario("spare", heat, 7, base, "spare", 2),
        Scenario("double", heat, 9, pair, "double", 2),
        Scenario("stagger", heat, 9, pair, "stagger", 2),
        Scenario("recovery", heat, 7, base, "recovery", 2),
        Scenario("node", heat, 10, base, "node", 2, rpn),
        Scenario("dense", heat, 7, _heat(s(800), 96, 1, 2), "single", 2),
        Scenario("walkers", walk, 7, _args(s(400), 2000, 5, 2), "single", 2),
        Scenario("mirror", heat, 7, (*base, "--scheme", "mirror"), "single", 2),
        # sets of 4 over 4 virtual nodes of 2: a lost node is one loss in each set
        Scenario("rs", heat, 9, (*pair, *RS), "double", 2),
        # the interval from the measured cost and a (short) MTBF: Daly's every="auto"
        Scenario("auto", heat, 7, _heat(s(1500), 96, "auto", 2, "--mtbf", "3s"), "single", 2),
        Scenario("xorset", heat, 10, (*base, "--scheme", "xorset", "--group", "4"), "node", 2, rpn),
        Scenario("spill", heat, 8, _heat(s(1500), 96, 10, 3, "--spill", SPILL), "beyond", 3),
        Scenario("startup", heat, 7, base, "startup", 2, INIT, steady=False),
        Scenario("pidfile", heat, 7, base, "pidfile", 2, INIT, steady=False),
    ]
    return {sc.name: sc for sc in table}


@dataclass
class Reference:
    checksum: str
    startup: float  # launch -> every pidfile written
    duration: float  # every pidfile written -> exit


@dataclass
class Trial:
    scenario: str
    index: int
    outcome: str
    returncode: int | None
    seconds: float
    kills: list[str] = field(default_factory=list)  # "rank3@1.234s" or "child1234@0.5s"
    tags: list[str] = field(default_factory=list)
    clear: bool = False
    rerun_of: int | None = None  # index of the trial this one repeats
    log: str = ""  # the tail of stderr when the outcome is not ok


def command(sc: Scenario, transport: str, extra: Iterable[str] = ()) -> list[str]:
    """``mpiexec`` flags from ``mpickpt.launch`` with the chosen byte transport layer."""
    script = EXAMPLES / sc.example
    cmd = launch.mpiexec_command(sc.n, sys.executable, str(script), btl=TRANSPORTS[transport])
    cut = cmd.index("-n")
    return [*cmd[:cut], *extra, *cmd[cut:]]


def _descendants(root: int) -> dict[int, str]:
    """Processes below ``root``: pid -> command line (from /proc)."""
    children: dict[int, list[int]] = {}
    for d in filter(str.isdigit, os.listdir("/proc")):
        children.setdefault(_parent(int(d)), []).append(int(d))
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        for c in children.get(todo.pop(), []):
            try:
                with open(f"/proc/{c}/cmdline", "rb") as f:
                    found[c] = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            todo.append(c)
    return found


def _parent(pid: int) -> int:
    """The parent of ``pid`` (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _pids(piddir: Path) -> dict[int, int]:
    pids = {}
    for p in piddir.glob("rank*.pid"):
        try:
            pids[int(p.stem[4:])] = int(p.read_text())
        except (OSError, ValueError):  # removed at the rank's normal end
            continue
    return pids


def _hang_report(proc: subprocess.Popen[str], piddir: Path) -> str:
    """What is left at a hang: which ranks still run, in what state, and (with py-spy
    installed) where their Python code waits; for the trial's log."""
    lines = ["chaos: hard timeout reached; processes left:"]
    pids = _pids(piddir)
    for rank, pid in sorted(pids.items()):
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # gone
        lines.append(f"chaos:   rank {rank} pid {pid} state {state}")
        spy = shutil.which("py-spy")
        if spy:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                dump = subprocess.run(
                    [spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=20
                )
                lines += [f"chaos:     {x}" for x in dump.stdout.splitlines()[:40]]
    left = set(_descendants(proc.pid)) - set(pids.values())
    lines.append(f"chaos:   mpiexec {'alive' if proc.poll() is None else 'ended'}, "
                 f"{len(left)} other process(es) in its tree")  # fmt: skip
    return "\n".join(lines) + "\n"


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _kill_group(proc: subprocess.Popen[str], grace: float = 5) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


class Runner:
    """Runs references and trials for one transport, with one random generator."""

    def __init__(
        self,
        transport: str = "sm",
        seed: int = 0,
        recovery_timeout: float = 20,
        mpiexec_extra: Iterable[str] = (),
        env: dict[str, str] | None = None,
        echo: Callable[[str], None] | None = None,
        hang_factor: float = 3,
    ) -> None:
        self.transport = transport
        self.rng = random.Random(seed)
        self.recovery_timeout = recovery_timeout
        self.extra = list(mpiexec_extra)
        self.env = dict(env or {})
        self.echo = echo or (lambda line: None)
        self.references: dict[tuple, Reference] = {}
        # a trial hangs when it outlives hang_factor x the reference run + the watchdog + 20 s
        self.hang_factor = hang_factor

    # -- one launch ---------------------------------------------------------------------

    def _launch(
        self, sc: Scenario, workdir: Path, killer: Killer, timeout: float, session: bool = True
    ) -> tuple[int | None, str, str, float, list[str]]:
        piddir = workdir / "pids"
        piddir.mkdir()
        args = [a.replace(SPILL, str(workdir / "spill")) for a in sc.args]
        env = {
            **os.environ,
            **self.env,
            **dict(sc.env),
            "PYTHONUNBUFFERED": "1",
            "MPICKPT_PIDDIR": str(piddir),
            "MPICKPT_RECOVERY_TIMEOUT": f"{self.recovery_timeout:g}",
        }
        # files, not pipes: nothing has to read them while the killer sleeps
        with open(workdir / "stdout", "w+") as out_f, open(workdir / "stderr", "w+") as err_f:
            t0 = time.monotonic()
            proc = subprocess.Popen(
                [*command(sc, self.transport, self.extra), *args],
                env=env, stdout=out_f, stderr=err_f, text=True, start_new_session=session,
                # without a session of its own, a process group of its own (killpg)
                process_group=None if session else 0,
            )  # fmt: skip
            try:
                kills = killer(proc, piddir)
                proc.wait(timeout=max(1.0, timeout - (time.monotonic() - t0)))
                rc: int | None = proc.returncode
            except subprocess.TimeoutExpired:
                rc = None
                err_f.write(_hang_report(proc, piddir))
            finally:
                if proc.poll() is None:
                    _kill_group(proc)
                else:  # ranks left behind by an mpiexec that has ended
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
            seconds = time.monotonic() - t0
            out_f.seek(0)
            err_f.seek(0)
            return rc, out_f.read(), err_f.read(), seconds, kills

    def reference(self, sc: Scenario) -> Reference:
        """The failure-free run of the same configuration (cached)."""
        key = (sc.example, sc.n, tuple(a for a in sc.args), sc.env)
        if key in self.references:
            return self.references[key]
        started: list[float] = []

        def watch(proc: subprocess.Popen[str], piddir: Path) -> list[str]:
            t0 = time.monotonic()
            while len(_pids(piddir)) < sc.n and proc.poll() is None:
                time.sleep(0.005)
            started.append(time.monotonic() - t0)
            return []

        with tempfile.TemporaryDirectory(prefix="chaos-ref-") as d:
            rc, out, err, seconds, _ = self._launch(sc, Path(d), watch, 300)
        m = CHECKSUM.search(out)
        if rc != 0 or m is None:
            raise RuntimeError(f"reference run of {sc.name} failed (rc={rc}):\n{out}\n{err}")
        ref = Reference(m.group(1), started[0], seconds - started[0])
        self.echo(
            f"reference {sc.name}: {ref.checksum[:16]}..., start-up {ref.startup:.2f} s, "
            f"run {ref.duration:.2f} s"
        )
        self.references[key] = ref
        return ref

    # -- kill plans ---------------------------------------------------------------------

    def _victims(self, sc: Scenario) -> list[tuple[float, int]]:
        """(seconds after the first kill, world rank) for the steady-state plans."""
        r = self.rng
        workers = list(range(sc.workers))
        if sc.plan == "single":
            return [(0.0, r.choice(workers))]
        if sc.plan == "spare":
            return [(0.0, self.rng.randrange(sc.workers, sc.n))]
        if sc.plan == "double":
            return [(0.0, v) for v in r.sample(workers, 2)]
        if sc.plan == "stagger":
            a, b = r.sample(workers, 2)
            return [(0.0, a), (r.uniform(0.005, 0.300), b)]
        if sc.plan == "recovery":
            first = r.choice(workers)
            # half the time the spare that is being promoted, else another worker
            others = [w for w in workers if w != first]
            second = sc.workers if r.random() < 0.5 else r.choice(others)
            return [(0.0, first), (r.uniform(0.010, 0.150), second)]
        if sc.plan == "node":
            per = int(dict(sc.env)["MPICKPT_RANKS_PER_NODE"])
            node = r.randrange(sc.workers // per)
            return [(0.0, node * per + i) for i in range(per)]
        if sc.plan == "beyond":
            return [(0.0, 1), (0.0, 2), (0.0, 3)]
        raise ValueError(sc.plan)

    def _steady_killer(self, sc: Scenario, ref: Reference) -> Killer:
        # the beyond-tolerance plan waits for a spilled version to exist; the end of the window
        # leaves room for runs faster than the reference (the machine's load changes)
        lo, hi = (0.3, 0.6) if sc.plan == "beyond" else (0.05, 0.6)
        at = self.rng.uniform(lo, hi) * ref.duration
        victims = self._victims(sc)

        def killer(proc: subprocess.Popen[str], piddir: Path) -> list[str]:
            deadline = time.monotonic() + 60 + 3 * ref.startup
            while len(pids := _pids(piddir)) < sc.n:
                if proc.poll() is not None or time.monotonic() > deadline:
                    return []
                time.sleep(0.005)
            start = time.monotonic()
            time.sleep(at)
            done = []
            for delay, rank in victims:
                wait = start + at + delay - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if proc.poll() is not None:
                    break
                _kill(pids[rank])
                done.append(f"rank{rank}@{time.monotonic() - start:.3f}s")
            return done

        return killer

    def _startup_killer(self, sc: Scenario, ref: Reference) -> Killer:
        at = self.rng.uniform(0.0, 1.0) * ref.startup
        pick = self.rng.random()
        script = str(EXAMPLES / sc.example)

        def killer(proc: subprocess.Popen[str], piddir: Path) -> list[str]:
            t0 = time.monotonic()
            time.sleep(at)
            while proc.poll() is None and time.monotonic() - t0 < 60 + 3 * ref.startup:
                found = {p for p, cmd in _descendants(proc.pid).items() if script in cmd}
                # ranks, not the watchers they fork to guard MPI_Init (mpickpt.startup)
                ranks = sorted(p for p in found if _parent(p) not in found)
                if ranks:
                    victim = ranks[int(pick * len(ranks))]
                    _kill(victim)
                    return [f"child{ranks.index(victim)}/{len(ranks)}@{time.monotonic() - t0:.3f}s"]
                time.sleep(0.005)
            return []

        return killer

    def _pidfile_killer(self, sc: Scenario) -> Killer:
        rank = self.rng.randrange(sc.n)

        def killer(proc: subprocess.Popen[str], piddir: Path) -> list[str]:
            t0 = time.monotonic()
            pidfile = piddir / f"rank{rank}.pid"
            while proc.poll() is None and time.monotonic() - t0 < 120:
                try:
                    pid = int(pidfile.read_text())
                except (OSError, ValueError):
                    time.sleep(0.001)
                    continue
                _kill(pid)
                return [f"rank{rank}@pidfile+{time.monotonic() - t0:.3f}s"]
            return []

        return killer

    # -- one trial ----------------------------------------------------------------------

    def trial(self, sc: Scenario, index: int, rerun_of: int | None = None) -> Trial:
        ref = self.reference(sc)
        if sc.plan == "startup":
            killer = self._startup_killer(sc, ref)
        elif sc.plan == "pidfile":
            killer = self._pidfile_killer(sc)
        else:
            killer = self._steady_killer(sc, ref)
        timeout = self.hang_factor * (ref.startup + ref.duration) + self.recovery_timeout + 20
        if not sc.steady:  # a kill in MPI_Init ends the job after the start-up guard's deadline
            timeout += INIT_TIMEOUT + startup.STAGGER * startup.STAGGERED_RANKS
        with tempfile.TemporaryDirectory(prefix="chaos-") as d:
            rc, out, err, seconds, kills = self._launch(sc, Path(d), killer, timeout)
        t = classify(sc, ref, rc, out, err, kills)
        t.index, t.seconds, t.rerun_of = index, seconds, rerun_of
        return t

    def campaign(
        self, chosen: Iterable[Scenario], trials: int, rerun_ompi: bool = False
    ) -> list[Trial]:
        """``trials`` trials of each scenario; with ``rerun_ompi``, a failed trial whose output
        shows a genuine Open MPI abort or crash is repeated once (both are recorded)."""
        results = []
        for sc in chosen:
            for i in range(trials):
                t = self.trial(sc, i)
                results.append(t)
                self.echo(line(t))
                broken = {"ompi-abort", "segfault"} & set(t.tags)  # Open MPI aborted or crashed
                if rerun_ompi and t.outcome not in ("ok", "missed") and broken:
                    r = self.trial(sc, i, rerun_of=i)
                    results.append(r)
                    self.echo(line(r))
        return results


def classify(
    sc: Scenario, ref: Reference, rc: int | None, out: str, err: str, kills: list[str]
) -> Trial:
    """Sort one run into an outcome (see the module's docstring)."""
    m = CHECKSUM.search(out)
    tags = [
        tag
        for tag, rx in (("ompi-abort", OMPI_ABORT), ("segfault", SEGFAULT), ("watchdog", WATCHDOG))
        if rx.search(err)
    ]
    if rc is None:
        outcome = "hang"
    elif m is not None and m.group(1) != ref.checksum:
        outcome = "wrong"
    elif not kills:
        outcome = "missed"
    elif rc == 0:
        outcome = "ok" if m is not None else "exit0-noresult"
    else:
        outcome = f"exit{rc}"
    log = (
        ""
        if outcome in ("ok", "missed")
        else (err[-(12000 if rc is None else 3000) :] + out[-500:])
    )
    return Trial(sc.name, 0, outcome, rc, 0.0, kills, tags, bool(CLEAR.search(err)), log=log)


def line(t: Trial) -> str:
    extra = f" tags={','.join(t.tags)}" if t.tags else ""
    clear = " (clear message)" if t.clear and t.outcome.startswith("exit") else ""
    rerun = f" rerun of #{t.rerun_of}" if t.rerun_of is not None else ""
    return (
        f"{t.scenario:>9} #{t.index:<3} {t.outcome:<15}{clear} {t.seconds:6.1f} s "
        f"kills={' '.join(t.kills) or '-'}{extra}{rerun}"
    )


COLUMNS = ["trials", "ok", "wrong", "hang", "exit0-noresult", "exit!=0", "clear",
           "ompi-abort", "watchdog", "missed", "reruns"]  # fmt: skip


def summarize(trials: list[Trial]) -> dict[str, dict[str, object]]:
    """Counts per scenario (and ``TOTAL``); non-zero exits also by code."""
    rows: dict[str, Counter] = {}
    codes: dict[str, Counter] = {}
    for t in trials:
        for key in (t.scenario, "TOTAL"):
            c = rows.setdefault(key, Counter())
            c["trials"] += 1
            c["reruns"] += t.rerun_of is not None
            if t.outcome.startswith("exit") and t.outcome != "exit0-noresult":
                c["exit!=0"] += 1
                c["clear"] += t.clear
                codes.setdefault(key, Counter())[t.outcome[4:]] += 1
            else:
                c[t.outcome] += 1
            for tag in ("ompi-abort", "watchdog"):
                c[tag] += tag in t.tags
    return {
        k: {**{col: v[col] for col in COLUMNS}, "codes": dict(codes.get(k, {}))}
        for k, v in rows.items()
    }


def table(trials: list[Trial]) -> str:
    summary = summarize(trials)
    head = f"{'scenario':>9} " + " ".join(f"{c:>{max(5, len(c))}}" for c in COLUMNS) + "  codes"
    lines = [head]
    total = summary.pop("TOTAL", None)
    for name, row in [*summary.items(), *([("TOTAL", total)] if total else [])]:
        cells = " ".join(f"{row[c]:>{max(5, len(c))}}" for c in COLUMNS)
        codes = ",".join(f"{k}:{v}" for k, v in sorted(row["codes"].items())) or "-"  # type: ignore[attr-defined]
        lines.append(f"{name:>9} {cells}  {codes}")
    return "\n".join(lines)


def to_json(trials: list[Trial], meta: dict[str, object]) -> str:
    return json.dumps(
        {"meta": meta, "summary": summarize(trials), "trials": [asdict(t) for t in trials]},
        indent=1,
    )


def have_mpiexec() -> bool:
    try:
        launch.find_mpiexec()
    except FileNotFoundError:
        return False
    return True
