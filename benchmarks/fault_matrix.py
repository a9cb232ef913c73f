"""The fault matrix: random combinations of scheme, spill, interval policy, spares,
redistribution, kill phase, number of kills and transport, each run once with real kills and
judged by the exit-code table (tests/fault_matrix.py describes the draw and the rule).

    python benchmarks/fault_matrix.py --count 40 --seed 7
    python benchmarks/fault_matrix.py --count 500 --seed 1 --json matrix.json --logs bad.txt

Prints one line per combination, then a table of outcomes per kill phase; exits 1 if any run
hung, gave a wrong result, exited 0 without a result, or exited with a code the table does not
allow for its combination.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import fault_matrix as fm  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--count", type=int, default=40, help="combinations to run")
    p.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    p.add_argument("--json", help="write every result to this file")
    p.add_argument("--logs", help="write the output tail of every failed run to this file")
    a = p.parse_args()
    print(
        f"fault matrix: seed {a.seed}, {a.count} combinations, load {os.getloadavg()}", flush=True
    )
    matrix = fm.Matrix(a.seed, echo=print)
    results = []
    t0 = time.monotonic()
    for i, c in enumerate(fm.sample(a.seed, a.count)):
        r = matrix.run(c)
        results.append(r)
        print(f"#{i:<4} {fm.line(r)}", flush=True)
    print(fm.table(results))
    broken = [r for r in results if fm.bad(r)]
    print(
        f"{len(results)} runs in {time.monotonic() - t0:.0f} s, {len(broken)} broken; "
        f"load {os.getloadavg()}"
    )
    if a.json:
        Path(a.json).write_text(json.dumps([fm.to_dict(r) for r in results], indent=1))
    if a.logs:
        Path(a.logs).write_text("\n\n".join(f"{fm.line(r)}\n{r.log}" for r in broken))
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
