"""Validation of the failure model (``mpickpt.model``) on this machine: heat2d SIGKILLed at a
known rate, its measured efficiency against the model's, fed with the costs of the same runs.

    python benchmarks/validate_model.py --json validate.json

Every run launches ``examples/heat2d.py`` (``--workers`` + ``--spares`` ranks) with the chaos
campaign's launcher (``tests/chaos_campaign.py``), and times it from the moment worker 0 has
committed its first checkpoint (step 0, the start of the loop: ``MPICKPT_VERBOSE``'s line) to
the exit. Every run of a row goes with a **reference** launched at the same moment (and again
whenever it ends first, so that the two jobs share the cores until the run ends): ``--every``
the whole run (only the checkpoint at step 0), failure-free: the pure computation ``D0`` under
the same load, and the time per step ``D0 / steps``. This machine is shared: runs one after
the other saw loads that differ by more than the effect measured. Both jobs run in this
process's session: with the kernel's autogroup scheduling (``sched_autogroup_enabled``) the
cores are shared fairly between sessions, then between the processes of a session, so a job in
a session of its own that loses processes (a killed worker is gone, its spare was polling
already) would get its session's share for fewer processes and run faster than its
reference. The rows:

* ``--every N`` with kills at ``--rate`` per second (Poisson, from outside:
  SIGKILL of a random current worker other than worker 0, at least ``--gap`` seconds after
  the previous kill, at most one kill per spare, none in the first ``--warmup`` seconds of the
  loop), or none (rate 0).

Measured efficiency: ``D0 / D``. The model's (``mpickpt.model.efficiency``) takes, from the same
runs: the interval ``N * D0 / steps``, the checkpoint cost from worker 0's run report
(seconds / checkpoints), the recovery cost kill -> resumed (the killer's clock to the report's
detection, plus the report's timeline to the re-protect), and the failure rate the kills had
(kills / (``D`` - warm-up)). Rounds run the rows in turn. A second table splits each row's
extra time ``D - D0`` into what the runs' reports account for: the checkpoints' seconds, the
recoveries (kill -> resumed) and the steps redone (``step - resumed_at`` of every recovery,
times the reference's time per step).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import chaos_campaign as chaos  # noqa: E402

FIRST = "checkpoint at step 0"  # MPICKPT_VERBOSE's line once the loop's first checkpoint is in
from mpickpt.costs import Costs  # noqa: E402
from mpickpt.model import efficiency  # noqa: E402


def scenario(a: argparse.Namespace, every: int) -> chaos.Scenario:
    args = ("--steps", str(a.steps), "--size", str(a.size), "--every", str(every))
    args += chaos.HEAT_SCHEME  # parity(2, 3): it fits the default 4 workers
    return chaos.Scenario(
        f"every{every}", "heat2d.py", a.workers + a.spares, (*args, "--spares", str(a.spares)),
        "single", a.spares,
    )  # fmt: skip


def poisson_killer(
    a: argparse.Namespace,
    rate: float,
    rng: random.Random,
    kills: list[float],
    stop: threading.Event | None = None,
):
    """Kill a random current worker (not 0) at Poisson times; the lowest spare takes its
    place (``mpickpt.planning.plan_recovery``), so the killer knows who plays whom. With
    ``stop`` (a reference run), kill nothing but end the job when ``stop`` is set."""

    def killer(proc: Any, piddir: Path) -> list[str]:
        n = a.workers + a.spares
        while len(pids := chaos._pids(piddir)) < n:
            if proc.poll() is not None:
                return []
            time.sleep(0.005)
        while FIRST not in (piddir.parent / "stderr").read_text():
            if proc.poll() is not None:
                return []
            time.sleep(0.01)
        start = time.monotonic()
        kills.append(time.time())  # the first entry: the start (step 0 committed)
        plays = list(range(a.workers))
        spares = list(range(a.workers, n))
        t, done = a.warmup, []
        while stop is not None and proc.poll() is None:
            if stop.wait(0.05):
                chaos._kill_group(proc)
        while rate > 0 and spares:
            t += max(rng.expovariate(rate), a.gap if done else 0.0)
            while time.monotonic() - start < t:
                if proc.poll() is not None:
                    return done
                time.sleep(0.01)
            w = rng.randrange(1, a.workers)
            chaos._kill(pids[plays[w]])
            kills.append(time.time())
            done.append(f"worker{w}=rank{plays[w]}@{t:.2f}s")
            plays[w] = spares.pop(0)
        return done

    return killer


def paired(a: argparse.Namespace, every: int, rate: float, rng: random.Random) -> dict:
    """The run, with a failure-free reference launched at the same moment (and launched
    again whenever it ends before the run, that copy stopped when the run ends), so that both
    see the same load; the run's record with the reference's duration as ``reference``."""
    stop = threading.Event()
    refs: list[dict] = []

    def references() -> None:
        refs.append(one_run(a, a.steps, 0.0, random.Random(0)))  # measured: to its end
        while not stop.is_set():  # fillers: ended with the run
            one_run(a, a.steps, 0.0, random.Random(0), stop)

    thread = threading.Thread(target=references)
    thread.start()
    try:
        run = one_run(a, every, rate, rng)
    finally:
        stop.set()
        thread.join()
    run["reference"] = refs[0]["duration"] if refs[0]["ok"] else None
    return run


def one_run(
    a: argparse.Namespace,
    every: int,
    rate: float,
    rng: random.Random,
    stop: threading.Event | None = None,
) -> dict:
    """One launch; its duration (pidfiles -> exit), kills and report."""
    runner = chaos.Runner(chaos.default_transport(), seed=rng.randrange(1 << 30))
    with tempfile.TemporaryDirectory(prefix="mpickpt-validate-") as d:
        report = Path(d) / "report.json"
        runner.env = {"MPICKPT_REPORT": str(report), "MPICKPT_VERBOSE": "1"}
        kills: list[float] = []
        rc, out, err, seconds, done = runner._launch(
            scenario(a, every),
            Path(d),
            poisson_killer(a, rate, rng, kills, stop),
            a.timeout,
            session=False,  # in this process's session: see the module docstring
        )
        end = time.time()
        rep = json.loads(report.read_text()) if report.exists() else {}
    ok = rc == 0 and chaos.CHECKSUM.search(out) is not None and bool(kills)
    return {
        "every": every,
        "rate": rate,
        "ok": ok,
        "rc": rc,
        "duration": end - kills[0] if kills else None,
        "kill_times": [k - kills[0] for k in kills[1:]],
        "kills": done,
        "recoveries": recovery_costs(rep, kills[1:]),
        "rework_steps": [r["step"] - r["resumed_at"] for r in rep.get("recoveries", [])],
        "checkpoint": checkpoint_cost(rep),
        "checkpoint_seconds": (rep.get("checkpoints") or {}).get("seconds", 0.0),
        "load": os.getloadavg()[0],
        "log": "" if ok else err[-2000:],
    }


def checkpoint_cost(rep: dict) -> float | None:
    c = rep.get("checkpoints") or {}
    return c["seconds"] / c["checkpoints"] if c.get("checkpoints") else None


def recovery_costs(rep: dict, kill_times: list[float]) -> list[float]:
    """kill -> resumed of every recovery in the report (the newest kill before each one)."""
    out = []
    for r in rep.get("recoveries", []):
        detected = datetime.fromisoformat(r["detected_utc"]).timestamp()
        before = [k for k in kill_times if k <= detected]
        if before and r.get("timeline"):
            out.append(detected - before[-1] + r["timeline"][-1][0])
    return out


def summarize(a: argparse.Namespace, runs: list[dict]) -> list[dict]:
    """One row per (every, rate): measured and predicted efficiency."""
    rows = []
    for every, rate in a.rows:
        mine = [
            r
            for r in runs
            if (r["every"], r["rate"]) == (every, rate) and r["ok"] and r["reference"]
        ]
        if not mine:
            continue
        d0 = statistics.mean(r["reference"] for r in mine)
        step = d0 / a.steps
        wall = sum(r["duration"] for r in mine)
        kills = sum(len(r["kill_times"]) for r in mine)
        exposed = wall - a.warmup * len(mine)  # no kill in the warm-up
        recs = [x for r in mine for x in r["recoveries"]]
        ckpt = statistics.mean(r["checkpoint"] for r in mine if r["checkpoint"] is not None)
        rec = statistics.mean(recs) if recs else 0.0
        costs = Costs(ckpt, rec, rec, "measured")
        measured = d0 * len(mine) / wall
        each = [r["reference"] / r["duration"] for r in mine]
        model = efficiency(every * step, costs, kills / exposed, 0.0)
        rows.append({
            "every": every, "rate": rate, "runs": len(mine), "kills": kills, "wall": wall,
            "interval": every * step, "checkpoint": ckpt, "recovery": rec,
            "measured": measured, "each": each, "model": model, "error": model / measured - 1,
            "load": [min(r["load"] for r in mine), max(r["load"] for r in mine)],
            # where the extra time went, from the runs' own records (seconds, all runs)
            "extra": wall - d0 * len(mine),
            "extra_model": d0 * len(mine) / model - d0 * len(mine),
            "checkpoints_s": sum(r["checkpoint_seconds"] for r in mine),
            "recoveries_s": sum(recs),
            "rework_s": step * sum(x for r in mine for x in r["rework_steps"]),
        })  # fmt: skip
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--spares", type=int, default=4)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--rows", default="20:0,20:0.15,5:0.15", help="every:rate (kills per s), ...")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--gap", type=float, default=1.5, help="seconds between two kills at least")
    p.add_argument(
        "--warmup", type=float, default=0, help="no kill in the first seconds of the loop"
    )
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    a.rows = [(int(e), float(r)) for e, r in (x.split(":") for x in a.rows.split(","))]
    rng = random.Random(a.seed)
    print(f"# validate: {' '.join(sys.argv[1:])}; load {os.getloadavg()[0]:.2f}", flush=True)
    runs = []
    for i in range(a.rounds):
        for every, rate in a.rows:
            r = paired(a, every, rate, rng)
            runs.append(r)
            print(
                f"round {i} every {every} rate {rate:g}: ok={r['ok']} rc={r['rc']} "
                f"{r['duration'] or 0:.2f} s (reference {r['reference'] or 0:.2f} s), "
                f"kills {r['kills']}, recoveries "
                f"{[round(x, 3) for x in r['recoveries']]}, C {r['checkpoint']}, "
                f"load {r['load']:.1f}",
                flush=True,
            )
    rows = summarize(a, runs)
    print(
        "| every | kills/s | runs | kills | interval s | C s | R s | measured (each run) | "
        "model | error | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        each = ", ".join(f"{x:.2f}" for x in r["each"])
        print(
            f"| {r['every']} | {r['rate']:g} | {r['runs']} | {r['kills']} | "
            f"{r['interval']:.2f} | {r['checkpoint']:.3f} | {r['recovery']:.3f} | "
            f"{r['measured']:.3f} ({each}) | {r['model']:.3f} | {100 * r['error']:+.1f} % | "
            f"{r['load'][0]:.0f}-{r['load'][1]:.0f} |"
        )
    print("\n| every | kills/s | extra s (measured) | checkpoints s | recoveries s | rework s "
          "(steps redone x step) | their sum | model's extra s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        parts = r["checkpoints_s"] + r["recoveries_s"] + r["rework_s"]
        print(
            f"| {r['every']} | {r['rate']:g} | {r['extra']:.1f} | {r['checkpoints_s']:.1f} | "
            f"{r['recoveries_s']:.1f} | {r['rework_s']:.1f} | {parts:.1f} | "
            f"{r['extra_model']:.1f} |"
        )
    print(f"# load at the end {os.getloadavg()[0]:.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "runs": runs, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
