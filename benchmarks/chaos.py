"""Chaos campaign: kill random rank processes from outside at random times and count how the
runs end (ok, wrong result, hang, exit 0 without a result, clean non-zero exit).

    python benchmarks/chaos.py --trials 10 --seed 1
    python benchmarks/chaos.py --scenarios stagger --trials 30 --transport tcp --json out.json

The scenarios, the kill plans and the outcomes are described in tests/chaos_campaign.py (the
same module runs a short campaign in the test suite). Failure-free reference checksums come
from a run of the same configuration without kills. Extra Open MPI settings can be given as
``OMPI_MCA_<name>=<value>`` in the environment or with ``--mca NAME VALUE``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import chaos_campaign as chaos  # noqa: E402


def main() -> int:
    names = list(chaos.scenarios())
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--trials", type=int, default=5, help="trials per scenario")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scenarios", default=",".join(names), help=f"comma-separated: {names}")
    p.add_argument(
        "--transport", choices=sorted(chaos.TRANSPORTS), default=chaos.default_transport()
    )
    p.add_argument("--scale", type=float, default=1.0, help="multiply every run's steps")
    p.add_argument(
        "--recovery-timeout", type=float, default=20, help="MPICKPT_RECOVERY_TIMEOUT (s)"
    )
    p.add_argument(
        "--hang-factor", type=float, default=3, help="timeout: x reference run + watchdog + 20 s"
    )
    p.add_argument("--mca", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    p.add_argument("--rerun-ompi", action="store_true", help="rerun once on an Open MPI abort")
    p.add_argument("--examples", help="run the examples from this folder (modified copies)")
    p.add_argument("--json", help="write the trials and the summary to this file")
    p.add_argument("--logs", help="write the output tail of every failed trial to this file")
    a = p.parse_args()
    if a.examples:
        chaos.EXAMPLES = Path(a.examples).resolve()
    table = chaos.scenarios(a.scale)
    chosen = [table[n] for n in a.scenarios.split(",") if n]
    extra = [x for name, value in a.mca for x in ("--mca", name, value)]
    runner = chaos.Runner(
        a.transport,
        a.seed,
        a.recovery_timeout,
        extra,
        echo=lambda s: print(s, flush=True),
        hang_factor=a.hang_factor,
    )
    print(f"chaos: {' '.join(sys.argv[1:])}", flush=True)
    t0 = time.time()
    trials = runner.campaign(chosen, a.trials, rerun_ompi=a.rerun_ompi)
    print(f"\n{chaos.table(trials)}\n{time.time() - t0:.0f} s")
    meta = {"argv": sys.argv[1:], "transport": a.transport, "seed": a.seed, "mca": a.mca,
            "examples": str(chaos.EXAMPLES)}  # fmt: skip
    if a.json:
        Path(a.json).write_text(chaos.to_json(trials, meta))
    if a.logs:
        with open(a.logs, "w") as f:
            for t in trials:
                if t.log:
                    f.write(f"===== {chaos.line(t)}\n{t.log}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
