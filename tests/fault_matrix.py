"""The fault matrix: random combinations of every option that changes what a recovery does,
each run once with real kills, its outcome checked against the exit-code table.

Used by ``benchmarks/fault_matrix.py`` (the command line, long runs) and
``tests/test_fault_matrix.py`` (a fixed seeded sample in the default test run). No pytest here.

A combination draws (seeded): the scheme (all five), the spill (off, or on with ``spill_every``
1-3 and ``keep`` 1-3), the interval policy (``every=N``, ``every_seconds``, ``every="auto"``),
spares (0-2), ``redistribute`` (the walkers example, which continues on fewer workers through
its hook; its scheme is parity), the kill phase (every ``MPICKPT_KILL`` phase, or an outside
SIGKILL at a random time), the number of kills (1-3: up to beyond every scheme's tolerance)
and the transport (sm or tcp; ``vanish``, a model of Open MPI's abort over shared memory,
always sm).

The outcome rule (:func:`verdict`): exit 0 with the failure-free result (computed by the
example's plain-MPI twin), or a non-zero code that the exit-code table allows for that
combination (:func:`allowed_codes`), with mpickpt's message. Never a hang, a wrong result, or
exit 0 without a result.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import chaos_campaign as chaos
from mpickpt import config

WORKERS = 6  # every scheme's parameters below fit 6 workers on one failure domain each
STEPS, SIZE = 60, 32
SCHEMES: dict[str, tuple[str, ...]] = {
    "parity": ("--group", "2", "--backups", "3"),
    "mirror": ("--copies", "1"),
    "stripe": ("--backups", "3"),
    "rs": ("--group", "2", "--parity", "2", "--backups", "4"),
    "xorset": ("--group", "3"),
}
INTERVALS = ("every=1", "every=3", "every=7", "every_seconds=0.05", "auto")
# every phase of MPICKPT_KILL (those that take a step apart), and a kill from outside
STEP_PHASES = config.STEP_PHASES
PHASES = (*config.PHASES, "outside")
RECOVERY_TIMEOUT = 10  # s: the watchdog of a stalled recovery (the stall phase)
STALLS = ("stall", "vanish")  # a process never reported failed: stopped, or ended by an error
WALK = ("--steps", "40", "--size", "400")
CHECKSUM = re.compile(r"^checksum: ([0-9a-f]{64})$", re.M)
WALKERS = re.compile(r"^walkers: (\d+)$", re.M)
# mpickpt's message for a job that ends with a non-zero code: the error's line, the watchdog's,
# or a lost worker's (at the end, or in MPI_Init)
MESSAGE = re.compile(
    r"^mpickpt: (\w+Error: |.*recovery stalled|.*died after the protected function|"
    r".*MPI_Init did not complete)",
    re.M,
)


@dataclass(frozen=True)
class Combination:
    scheme: str
    spill: bool
    spill_every: int
    keep: int
    interval: str
    spares: int
    redistribute: bool
    phase: str
    kills: int
    transport: str

    @property
    def n(self) -> int:
        return WORKERS + self.spares

    def describe(self) -> str:
        spill = f"spill/{self.spill_every}/keep{self.keep}" if self.spill else "nospill"
        redistribute = " redistribute" if self.redistribute else ""
        return (
            f"{self.scheme} {spill} {self.interval} spares={self.spares}{redistribute} "
            f"{self.kills}x{self.phase} {self.transport}"
        )


def draw(rng: random.Random) -> Combination:
    """One combination, drawn from ``rng``."""
    redistribute = rng.random() < 0.2
    c = Combination(
        scheme="parity" if redistribute else rng.choice(sorted(SCHEMES)),
        spill=rng.random() < 0.5,
        spill_every=rng.randint(1, 3),
        keep=rng.randint(1, 3),
        interval=rng.choice(INTERVALS),
        spares=rng.randint(0, 2),
        redistribute=redistribute,
        phase=rng.choice(PHASES),
        kills=rng.choice((1, 1, 2, 3)),
        transport=rng.choice(sorted(chaos.TRANSPORTS)),
    )
    # vanish is what Open MPI does to a rank it aborts over shared memory; over TCP it reports
    # such a process failed, and mpiexec returns its exit code even though the job recovered
    return replace(c, transport="sm") if c.phase == "vanish" else c


def sample(seed: int, count: int) -> list[Combination]:
    rng = random.Random(seed)
    return [draw(rng) for _ in range(count)]


def deaths(c: Combination) -> int:
    """How many processes ``c`` loses: the recovery and stall phases need a first death for
    the second to happen in (or stall) a recovery."""
    return max(c.kills, 2) if c.phase in ("recovery", *STALLS) else c.kills


def allowed_codes(c: Combination) -> set[int]:
    """The exit codes the exit-code table allows for ``c`` (0: with the failure-free result).

    0 always (a kill may come too late to matter, or be recovered). 1: a worker lost after
    the function returned (``done``, or an outside kill that came that late). 75: more
    losses than spares. 3: more losses at once than the redundancy holds (every scheme holds
    one), or a stalled recovery's watchdog (``stall``, ``vanish``). A single worker lost with a
    spare left, anywhere in the run, is recovered.
    """
    codes = {0}
    if c.phase in ("done", "outside"):  # an outside kill may land after the function returned
        codes.add(1)
    if deaths(c) == 1 and c.phase not in STALLS:  # within every scheme's tolerance
        if c.spares == 0:
            codes.add(75)  # no spare to take its place
    else:
        codes |= {3, 75}
    return codes


def _interval_args(c: Combination) -> list[str]:
    if c.interval == "auto":
        return ["--every", "auto", "--mtbf", "3s"]
    name, _, value = c.interval.partition("=")
    if name == "every_seconds":
        return ["--every-seconds", value]
    return ["--every", value]


def scenario(c: Combination) -> chaos.Scenario:
    """The chaos harness's scenario for ``c`` (its kills are planned by :class:`Matrix`)."""
    if c.redistribute:
        every = c.interval.partition("=")[2] if c.interval.startswith("every=") else "5"
        args = [*WALK, "--spares", str(c.spares), "--every", every]
        example = "walkers_resilient.py"
    else:
        args = ["--steps", str(STEPS), "--size", str(SIZE), "--spares", str(c.spares)]
        args += ["--scheme", c.scheme, *SCHEMES[c.scheme], *_interval_args(c)]
        example = "heat2d.py"
    if c.spill:
        args += ["--spill", chaos.SPILL, "--spill-every", str(c.spill_every)]
        if not c.redistribute:
            args += ["--keep", str(c.keep)]
    return chaos.Scenario(c.describe(), example, c.n, tuple(args), "single", c.spares)


@dataclass
class Result:
    combination: Combination
    outcome: str  # ok, wrong, hang, exit0-noresult, exit<N>, unexpected<N>, missed
    returncode: int | None
    seconds: float
    kills: list[str]
    clear: bool
    log: str = ""


class Matrix:
    """Runs combinations with one random generator; references are cached."""

    def __init__(self, seed: int, echo=None) -> None:  # noqa: ANN001 - a print function
        self.rng = random.Random(seed + 1)  # the kills' randomness, apart from the draw's
        self.echo = echo or (lambda line: None)
        self.references: dict[str, str] = {}
        self.runners = {t: chaos.Runner(t, seed, RECOVERY_TIMEOUT) for t in chaos.TRANSPORTS}

    def reference(self, c: Combination) -> str:
        """The failure-free result of the plain-MPI twin (a checksum, or the walkers count)."""
        if c.redistribute:
            script, n, args, rx = "walkers_plain.py", WORKERS, WALK, WALKERS
        else:
            script, n, args, rx = "heat2d_plain.py", 1, ("--steps", str(STEPS)), CHECKSUM
            args += ("--size", str(SIZE))
        if script not in self.references:
            path = str(chaos.EXAMPLES / script)
            cmd = chaos.launch.mpiexec_command(n, sys.executable, path, *args)
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
            m = rx.search(out)
            if m is None:
                raise RuntimeError(f"reference run {script} printed no result:\n{out}")
            self.references[script] = m.group(1)
        return self.references[script]

    def kill_plan(self, c: Combination) -> tuple[dict[str, str], chaos.Killer | None]:
        """``MPICKPT_KILL`` for the in-process phases, or a killer from outside."""
        r = self.rng
        workers, spares = list(range(WORKERS)), list(range(WORKERS, c.n))
        if c.phase == "outside":
            victims = r.sample(range(c.n), min(c.kills, c.n))
            return {}, self._outside(victims)
        if c.phase == "idle":
            victims = r.sample(spares, min(c.kills, len(spares))) if spares else []
        else:
            victims = r.sample(workers, c.kills)
        steps = STEPS if not c.redistribute else int(WALK[1])
        if c.phase in STEP_PHASES:
            at = r.randrange(1, steps - 1)  # the same step: the deaths land in one recovery
            every = self._every(c)
            if c.phase in ("checkpoint", "commit") and every:  # a step that checkpoints
                at = every * r.randrange(1, max(2, (steps - 1) // every))
            spec = ",".join(f"{v}@{at}:{c.phase}" for v in victims)
        elif c.phase == "recovery":  # the first dies mid-run, the others in its recovery
            at = r.randrange(1, steps - 1)
            if len(victims) == 1:  # a recovery must happen for the phase to mean anything
                victims.append(r.choice([w for w in workers if w != victims[0]]))
            spec = ",".join([f"{victims[0]}@{at}", *(f"{v}@recovery" for v in victims[1:])])
        elif c.phase in STALLS:  # one dies mid-run, another stops or ends in the recovery
            at = r.randrange(1, steps - 1)
            other = r.choice([w for w in workers if w != victims[0]])
            spec = f"{victims[0]}@{at},{other}@{c.phase}"
            if c.phase == "stall":  # killed from outside once the others' watchdog has fired,
                # as a batch system ends a job's leftovers (mpiexec would wait for it forever)
                return {"MPICKPT_KILL": spec}, self._unstall(other)
        else:  # start, joined, idle, done
            spec = ",".join(f"{v}@{c.phase}" for v in victims)
        return {"MPICKPT_KILL": spec}, None

    @staticmethod
    def _every(c: Combination) -> int | None:
        """The checkpoint interval in steps, when it is fixed."""
        if c.redistribute:
            return int(c.interval.partition("=")[2]) if c.interval.startswith("every=") else 5
        return int(c.interval.partition("=")[2]) if c.interval.startswith("every=") else None

    def _unstall(self, rank: int) -> chaos.Killer:
        def killer(proc: subprocess.Popen[str], piddir: Path) -> list[str]:
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                pid = chaos._pids(piddir).get(rank)
                if pid is not None and _stopped(pid):
                    # after every watchdog: 0.5 s more per process of the host (12 at most)
                    time.sleep(RECOVERY_TIMEOUT + 10)
                    chaos._kill(pid)
                    return [f"rank{rank}@stall"]
                time.sleep(0.01)
            return []

        return killer

    def _outside(self, victims: list[int]) -> chaos.Killer:
        delay = self.rng.uniform(0.2, 2.5)

        def killer(proc: subprocess.Popen[str], piddir: Path) -> list[str]:
            deadline = time.monotonic() + 60
            while not all(v in (pids := chaos._pids(piddir)) for v in victims):
                if proc.poll() is not None or time.monotonic() > deadline:
                    return []
                time.sleep(0.005)
            time.sleep(delay)
            done = []
            for v in victims:
                if proc.poll() is not None:
                    break
                chaos._kill(pids[v])  # a process that has ended is gone already
                done.append(f"rank{v}@{delay:.2f}s")
            return done

        return killer

    def run(self, c: Combination) -> Result:
        """Run ``c`` once and judge its outcome."""
        expected = self.reference(c)
        env, killer = self.kill_plan(c)
        runner = self.runners[c.transport]
        runner.env = {**env, "MPICKPT_INIT_TIMEOUT": "30"}
        sc = scenario(c)

        def watch(proc: subprocess.Popen[str], piddir: Path) -> list[str]:
            return killer(proc, piddir) if killer is not None else []

        timeout = 90 + RECOVERY_TIMEOUT
        with tempfile.TemporaryDirectory(prefix="matrix-") as d:
            rc, out, err, seconds, kills = runner._launch(sc, Path(d), watch, timeout)
            # the in-process kills that happened: each leaves the time of its death
            fired = sorted((Path(d) / "pids").glob("killed-rank*.time"))
        kills += [f"{p.name[len('killed-') : -len('.time')]}@{c.phase}" for p in fired]
        return verdict(c, expected, rc, out, err, seconds, kills)


def verdict(
    c: Combination,
    expected: str,
    rc: int | None,
    out: str,
    err: str,
    seconds: float,
    kills: list[str],
) -> Result:
    """The outcome of one run of ``c`` (see the module's docstring)."""
    rx = WALKERS if c.redistribute else CHECKSUM
    m = rx.search(out)
    clear = bool(MESSAGE.search(err))
    if rc is None:
        outcome = "hang"
    elif m is not None and m.group(1) != expected:
        outcome = "wrong"
    elif rc == 0:
        outcome = "exit0-noresult" if m is None else ("ok" if kills else "missed")
    elif rc in allowed_codes(c) and clear:
        outcome = f"exit{rc}"
    else:
        outcome = f"unexpected{rc}"
    log = "" if outcome in ("ok", "missed") else err[-4000:] + out[-500:]
    return Result(c, outcome, rc, seconds, kills, clear, log)


def broken_by_open_mpi(r: Result) -> bool:
    """A failed run whose output shows Open MPI aborting or crashing a process by itself (the
    faults mpickpt designs around): it may run once more, logged and counted."""
    return bad(r) and chaos.OMPI_ABORT.search(r.log) is not None


def _stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (SIGSTOP)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "T"
    except (OSError, IndexError):
        return False


BAD = ("hang", "wrong", "exit0-noresult")


def bad(r: Result) -> bool:
    """A broken guarantee: a hang, a wrong result, exit 0 without one, or an undocumented
    (or unexplained) non-zero exit."""
    return r.outcome in BAD or r.outcome.startswith("unexpected")


def line(r: Result) -> str:
    return (
        f"{r.outcome:<15} {r.seconds:6.1f} s  {r.combination.describe()}  "
        f"kills={' '.join(k for k in r.kills if k) or '-'}"
    )


def table(results: list[Result]) -> str:
    """Counts of outcomes, overall and per kill phase."""
    rows: dict[str, Counter[str]] = {}
    for r in results:
        for key in (r.combination.phase, "TOTAL"):
            rows.setdefault(key, Counter())[r.outcome] += 1
    outcomes = sorted({o for row in rows.values() for o in row})
    head = f"{'phase':>9} {'runs':>5} " + " ".join(f"{o:>14}" for o in outcomes)
    lines = [head]
    for key in [*sorted(k for k in rows if k != "TOTAL"), "TOTAL"]:
        row = rows[key]
        cells = " ".join(f"{row[o]:>14}" for o in outcomes)
        lines.append(f"{key:>9} {sum(row.values()):>5} {cells}")
    return "\n".join(lines)


def to_dict(r: Result) -> dict[str, object]:
    return {**asdict(r), "combination": asdict(r.combination)}


def have_mpiexec() -> bool:
    return chaos.have_mpiexec() and os.path.isdir(chaos.EXAMPLES)
