"""``mpickpt run``: launch a protected job, watch it from outside, relaunch it when it dies, and
exit with its outcome.

Each launch runs mpiexec (:mod:`.launch` builds the command for the MPI that mpi4py uses) in
its own session. Worker 0 keeps a heartbeat in the run directory (:mod:`.heartbeat`); no
progress for longer than the phase allows is a hang: the stacks are dumped (``py-spy``, when
installed), every process of the launch is killed, and the job is relaunched. How a launch
ended decides what follows (:mod:`.verdict`). Where a relaunch resumed from (the start, the
spill, ...) is read from the job's own heartbeat and run report, never assumed. One JSON run
report covers every launch. No MPI here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import heartbeat, launch, report, slurm
from .errors import EXIT_CONFIG, EXIT_PREEMPTED, ConfigError
from .job import Launch, dump_stacks
from .runopts import Options, options
from .verdict import NODE_LOST, Ended, Verdict, backoff, judge, repeated, signals_in

POLL = 0.2  # seconds between two looks at the job
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


def say(text: str) -> None:
    print(f"mpickpt run: {text}", file=sys.stderr, flush=True)


class Supervisor:
    """Launches, watches and relaunches one job (see the module docstring)."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.t0 = time.monotonic()
        self.run_dir = Path(opts.run_dir).resolve()
        self.env = dict(os.environ)
        self.python = launch.python_of(opts.argv)
        self.family = opts.mpi if opts.mpi != "auto" else launch.detect_mpi(self.python, self.env)
        self.mpiexec = opts.mpiexec or launch.mpiexec_for(self.python)
        self.launches: list[dict[str, Any]] = []
        self.stop = False  # asked to stop (SIGTERM, SIGUSR1, SIGINT)
        self.job: Launch | None = None
        self.died_at: float | None = None  # when the last launch ended
        self.recoveries = 0  # online recoveries in the launches before this one
        self.said = False  # the current launch's relaunch line is out
        self.down: float | None = None  # seconds from the last death to this launch's first step

    def plan(self) -> tuple[list[str], dict[str, str]] | None:
        """The next launch's command and environment; ``None`` when the Slurm allocation's
        nodes left cannot hold the job."""
        opts, env = self.opts, {**self.env, "MPICKPT_RUN_DIR": str(self.run_dir)}
        env.setdefault(
            "MPICKPT_REPORT", str(self.run_dir / f"report-{len(self.launches) + 1}.json")
        )
        slots, one_host = launch.cores(), True
        if slurm.in_allocation(self.env):
            asked = sum(slurm.expand_counts(self.env.get("SLURM_TASKS_PER_NODE", "")))
            slots, one_host, live = asked or opts.n, False, _live_nodes(self.env)
            if live is not None:
                if not slurm.fits(opts.n, live, asked, opts.mpiexec_args):
                    return None
                slots = sum(k for _, k in live)
                env.update(slurm.allocation_env(live))
                say(f"launch {len(self.launches) + 1} on {env['SLURM_JOB_NODELIST']}")
        cmd, warnings = launch.run_command(
            self.family, self.mpiexec, opts.n, opts.argv, opts.mpiexec_args,
            slots=slots, one_host=one_host,
        )  # fmt: skip
        if not self.launches:
            for w in warnings:
                say(f"warning: {w}")
        return cmd, env

    def run(self) -> int:
        """Launch until the job is done or must stop; its exit code."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_stop)
        before: tuple[Ended, Verdict] | None = None
        while True:
            planned = self.plan()
            if planned is None:
                cause = f"the nodes left cannot hold {self.opts.n} processes"
                verdict = Verdict(False, EXIT_PREEMPTED, f"{cause}: continue in a new allocation")
                break
            ended, verdict = self._launch(*planned)
            verdict = repeated(before, (ended, verdict)) or verdict
            self.launches[-1].update(cause=verdict.cause, relaunch=verdict.relaunch)
            if verdict.relaunch:
                verdict = self._budget(verdict)
            if not verdict.relaunch:
                break
            say(f"launch {len(self.launches)} ended: {verdict.cause}; relaunching")
            time.sleep(backoff(len(self.launches), self.opts.backoff))
            if self.stop:  # asked while waiting to relaunch
                verdict = Verdict(False, verdict.code, f"{verdict.cause}; asked to stop")
                break
            before = (ended, verdict)
        return self._finish(verdict)

    def _budget(self, verdict: Verdict) -> Verdict:
        """``verdict``, or a stop when the relaunch or time budget is spent."""
        relaunches, opts = len(self.launches), self.opts
        spent = time.monotonic() - self.t0 + backoff(relaunches, opts.backoff)
        if relaunches > opts.relaunches:
            why = f"{opts.relaunches} relaunches done (--relaunches)"
        elif opts.time_budget and spent > opts.time_budget:
            why = f"the time budget of {opts.time_budget:g} s is spent (--time-budget)"
        elif self.stop:
            why = "asked to stop"
        else:
            return verdict
        return Verdict(
            False, verdict.code, f"{verdict.cause}; not relaunching: {why}", verdict.kind
        )

    def _on_stop(self, signum: int, frame: Any) -> None:
        """Forward a stop request to the job (as SIGUSR1: a job with a spill saves and exits
        76); a second one kills it."""
        if self.stop and self.job is not None:
            self.job.kill()
        self.stop = True
        if self.job is not None and self.job.proc.poll() is None:
            with contextlib.suppress(OSError):
                os.kill(self.job.proc.pid, signal.SIGUSR1)

    def _launch(self, cmd: list[str], env: dict[str, str]) -> tuple[Ended, Verdict]:
        """Run one launch to its end; what it was and what to do next."""
        number = len(self.launches) + 1
        beat = self.run_dir / heartbeat.FILE
        beat.unlink(missing_ok=True)
        say(f"launch {number}: {shlex.join(cmd)}")
        job = self.job = Launch(number, cmd, env)
        watch = heartbeat.Watch(str(self.run_dir), self.opts.hang_timeout, self.opts.start_timeout)
        self.said, self.down = number == 1, None
        hung, stacks, shown = "", None, ""
        while _running_after(job.proc, POLL):
            watch.look()
            self._relaunch_line(watch)
            status = watch.status(number, self.recoveries)
            if sys.stdout.isatty() and status != shown:  # one live line, redrawn on change
                sys.stdout.write(f"\r\x1b[K[mpickpt run] {status}")
                sys.stdout.flush()
                shown = status
            if not hung and (hung := watch.hung()):
                say(f"launch {number}: {hung}")
                stacks = self.run_dir / f"stacks-{number}.txt"
                say(f"launch {number}: {dump_stacks(job, stacks)}; killing the job")
                job.kill()
        if sys.stdout.isatty():
            sys.stdout.write("\r\x1b[K")
        job.kill()  # what mpiexec left behind
        self.died_at = time.monotonic()
        watch.look()
        self._relaunch_line(watch)
        return self._ended(job, watch, hung, env, stacks)

    def _ended(
        self,
        job: Launch,
        watch: heartbeat.Watch,
        hung: str,
        env: dict[str, str],
        stacks: Path | None,
    ) -> tuple[Ended, Verdict]:
        stderr, beat = job.stderr(), watch.beat or {}
        own = _read_json(env["MPICKPT_REPORT"])
        done = beat.get("phase") == "done" or (own or {}).get("exit_code") == 0
        ended = Ended(
            rc=job.proc.returncode,
            done=done,
            hung=hung,
            stop_requested=self.stop,
            node_lost=bool(NODE_LOST.search(stderr.replace("\x00", ""))),
            signals=signals_in(stderr),
            progressed=bool(beat),
            furthest=watch.furthest,
        )
        verdict = judge(ended, self._can_requeue())
        self.recoveries += int(beat.get("recoveries") or 0)
        self.launches.append(
            {
                "launch": job.number,
                "command": job.cmd,
                "started_s": round(job.started - self.t0, 3),
                "seconds": round(time.monotonic() - job.started, 3),
                "mpiexec_exit": job.proc.returncode,
                "resumed": watch.resumed,
                "first_step_s": _since(watch.first_step, job.started),
                "down_s": self.down,
                "furthest_step": watch.furthest,
                "recoveries": int(beat.get("recoveries") or 0),
                "signals": ended.signals,
                "stacks": str(stacks) if stacks else None,
                "report": own,
            }
        )
        return ended, verdict

    def _can_requeue(self) -> bool:
        """Whether exit 76 is left to the caller (a job script requeues) or relaunched here."""
        if self.opts.on_stop == "auto":
            return slurm.in_allocation(self.env)
        return self.opts.on_stop == "exit"

    def _relaunch_line(self, watch: heartbeat.Watch) -> None:
        """Once per relaunch, at its first step (or its end): why, where it resumed, the cost."""
        if self.said or (watch.first_step is None and self.job and self.job.proc.poll() is None):
            return
        self.said = True
        last = self.launches[-1]
        number, cause = len(self.launches), last["cause"]
        if watch.first_step is None:
            say(f"relaunch {number} after {cause}: it ended before its first step")
            return
        self.down = down = _since(watch.first_step, self.died_at)
        redo = last["furthest_step"] - int((watch.resumed or {}).get("step", 0))
        again = f", {redo} steps to redo" if redo > 0 else ""
        say(
            f"relaunch {number} after {cause}: resumed from {_where(watch.resumed)}; "
            f"{down:.1f} s from the death to the first step{again}"
        )

    def _finish(self, verdict: Verdict) -> int:
        """Write the run report, say the outcome once, return the exit code."""
        seconds = time.monotonic() - self.t0
        data = _run_report(self.opts, self.family, verdict, seconds, self.launches)
        path = self.opts.report or str(self.run_dir / "run.json")
        try:
            report.write(path, data)
        except OSError as e:
            say(f"cannot write the run report {path}: {e}")
        n = len(self.launches)
        outcome = verdict.cause if verdict.code == 0 else f"exit {verdict.code}: {verdict.cause}"
        launches = f"{n} launch{'es' if n != 1 else ''}"
        say(f"{outcome} ({launches}, {seconds:.1f} s; report {path})")
        return verdict.code


def _live_nodes(env: dict[str, str]) -> list[tuple[str, int]] | None:
    """The allocation's nodes still up, or ``None`` if Slurm cannot be asked here."""
    try:
        live, left_out = slurm.live_nodes(env)
    except (OSError, subprocess.SubprocessError) as e:
        say(f"warning: cannot ask Slurm which nodes are up ({e}): using the allocation")
        return None
    for line in left_out:
        say(line)
    return live


def _run_report(
    opts: Options, family: str, verdict: Verdict, seconds: float, launches: list[dict[str, Any]]
) -> dict[str, Any]:
    """The run report of every launch (JSON)."""
    return {
        "format": "mpickpt-run",
        "format_version": 1,
        "command": opts.argv,
        "processes": opts.n,
        "mpi": family,
        "exit_code": verdict.code,
        "cause": verdict.cause,
        "seconds": round(seconds, 3),
        "relaunches": max(0, len(launches) - 1),
        "supervisor_cpu_s": round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), 3),
        "launches": launches,
    }


def _running_after(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    """Wait at most ``seconds`` for ``proc`` to end; whether it still runs. The wait returns
    as soon as it ends: the job's end costs no part of a poll."""
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return True
    return False


def _read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _since(t: float | None, start: float | None) -> float | None:
    return None if t is None or start is None else round(t - start, 3)


def _where(resumed: dict[str, Any] | None) -> str:
    """Where a launch resumed from, in words: ``the start``, ``the spill, version 4 (step
    40)``, ..."""
    if not resumed or resumed.get("tier") == "start":
        return "the start"
    version = f", version {resumed['version']}" if resumed.get("version") is not None else ""
    return f"the {resumed['tier']}{version} (step {resumed.get('step')})"


def supervise(opts: Options) -> int:
    """Run the job of ``opts`` under a supervisor; its exit code (see the module docstring)."""
    sup = Supervisor(opts)
    if opts.dry_run:
        planned = sup.plan()
        print(shlex.join(planned[0]) if planned else "(no nodes left to launch on)")
        return 0 if planned else EXIT_CONFIG
    return sup.run()


def main(a: argparse.Namespace) -> int:
    """``mpickpt run`` (cli.py's subcommand)."""
    try:
        return supervise(options(a))
    except FileNotFoundError as e:  # no mpiexec: a configuration to change
        raise ConfigError(str(e)) from e
