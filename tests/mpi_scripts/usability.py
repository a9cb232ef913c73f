"""A small protected loop for the usability tests: misuse of ``protect``, ``ctx.restored``,
reuse of a spill directory (tag, fingerprint, DONE, fresh) and the run report.

    python usability.py [--misuse twice|lambda|file|in-loop|rebind] [--spill DIR] [--tag T]
                        [--size N] [--steps N] [--spares K] [--report PATH] [--no-recycle]

Every incarnation of a worker prints ``incarnation <worker> <role> <restored>``; worker 0
prints ``result <sum>`` at the end (a number that depends on every step, not on failures).
Every process prints who handles SIGTERM during and after the run. Every worker prints
``pooled <worker> <bytes>`` at the end: the receive buffers its checkpoint
stream keeps for the next checkpoint (none with ``--no-recycle``).
"""

from __future__ import annotations

import argparse
import signal

import numpy as np

import mpickpt  # first: it bounds MPI_Init, skips MPI_Finalize after failures


def loop(ctx: mpickpt.Context, steps: int, size: int, misuse: str) -> tuple[int, float]:
    print(f"incarnation {ctx.rank} {ctx.role} {ctx.restored}", flush=True)
    u = ctx.protect("u", np.full(size, float(ctx.rank)))
    count = ctx.protect("count", 0)
    if misuse == "twice":
        ctx.protect("u", np.zeros(size))  # a second entry under the same name
    elif misuse == "lambda":
        ctx.protect("scale", lambda x: 2 * x)
    elif misuse == "file":
        ctx.protect("log", open(__file__))  # noqa: SIM115 - the misuse under test
    for step in ctx.steps(steps):
        if misuse == "in-loop" and step == 2:
            ctx.protect("late", np.zeros(1))
        total = np.zeros(1)
        ctx.comm.Allreduce(np.array([u.sum()]), total)
        if misuse == "rebind":  # a new array, the protected one left behind
            u = u + 1e-3 * total[0] / size
        else:
            u += 1e-3 * total[0] / size
        count += 1
        ctx["count"] = count
    total = np.zeros(1)
    ctx.comm.Allreduce(np.array([u.sum()]), total)
    stream = ctx.checkpointer.stream
    pooled = sum(b.nbytes for free in stream.pool.values() for b in free) if stream else 0
    print(f"pooled {ctx.rank} {pooled}", flush=True)
    print(f"sigterm during the run: {_sigterm()}", flush=True)
    return ctx.rank, float(total[0])


def _sigterm() -> str:
    """Who handles SIGTERM in this process: ``default`` or ``mpickpt``."""
    return "default" if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL else "mpickpt"


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--misuse", default="")
    p.add_argument("--spill", default=None)
    p.add_argument("--tag", default=None)
    p.add_argument("--size", type=int, default=1000)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--spares", type=int, default=0)
    p.add_argument("--report", default=None)
    p.add_argument("--no-recycle", dest="recycle", action="store_false")
    a = p.parse_args()
    run = mpickpt.resilient(
        "mirror",
        spares=a.spares,
        every=4,
        spill=a.spill,
        tag=a.tag,
        report=a.report,
        recycle=a.recycle,
    )(loop)
    result = run(a.steps, a.size, a.misuse)
    if result is not None and result[0] == 0:
        print(f"result {result[1]!r}", flush=True)
    print(f"sigterm after the run: {_sigterm()}", flush=True)
