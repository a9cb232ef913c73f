"""What every script under mpiexec shares: the rank's state, checks, output, clean failure.

Each script prints one JSON record per check (``mpickpt-test {...}``) for pytest to assert on,
and rank 0 prints ``mpickpt-test: all N ranks passed`` only if every check passed on every rank,
so the script also stands alone (ctest matches that line). Any exception aborts the whole job
with a non-zero exit code, so no rank waits forever for a dead peer. ``MPI.Comm.Abort`` rather
than ``SIGKILL``: under ``--with-ft ulfm`` mpiexec reports killed ranks as exit code 0.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from typing import Any

import mpi4py

mpi4py.rc.finalize = False  # never wait in MPI_Finalize for a peer that may be gone
import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

from mpickpt import Checkpointer, UnrecoverableError  # noqa: E402
from mpickpt.segment import unpack  # noqa: E402

PREFIX = "mpickpt-test"
CHUNK = 16 << 10  # small chunks, so that every segment streams in several rounds


class Checks:
    """Named pass/fail results of one rank, printed as they come."""

    def __init__(self, comm: MPI.Comm) -> None:
        self.comm = comm
        self.rank = comm.Get_rank()
        self.failed: list[str] = []

    def emit(self, **record: Any) -> None:
        # one write per line, so lines of different ranks never interleave
        sys.stdout.write(f"{PREFIX} {json.dumps({'rank': self.rank, **record})}\n")
        sys.stdout.flush()

    def check(self, name: str, ok: bool, **detail: Any) -> bool:
        ok = bool(ok)
        self.emit(check=name, ok=ok, **detail)
        if not ok:
            self.failed.append(f"{name} {detail}")
        return ok

    def finish(self) -> None:
        """Collective: the verdict of every rank; exit 1 everywhere if any check failed."""
        failed = self.comm.allgather(self.failed)
        if any(failed):
            if self.rank == 0:
                for rank, names in enumerate(failed):
                    for name in names:
                        print(f"{PREFIX}: rank {rank} FAILED {name}", file=sys.stderr, flush=True)
            sys.exit(1)
        if self.rank == 0:
            sys.stdout.write(f"{PREFIX}: all {self.comm.Get_size()} ranks passed\n")
            sys.stdout.flush()


def run(body: Callable[[MPI.Comm, Checks], None]) -> None:
    """Run ``body(COMM_WORLD, checks)``, then the collective verdict; abort on any exception."""
    comm = MPI.COMM_WORLD
    checks = Checks(comm)
    try:
        body(comm, checks)
        checks.finish()
    except SystemExit:
        raise  # the verdict: every rank exits with the same code
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        sys.stdout.flush()
        comm.Abort(1)


# -- the protected state of one rank ----------------------------------------------------------


def make_arrays(rank: int, generation: int) -> dict[str, np.ndarray]:
    """Rank-dependent sizes (so segments differ), lengths that are not multiples of 8, and one
    array larger than CHUNK."""
    rng = np.random.default_rng([rank, generation])
    return {
        "u": rng.random((16 + 3 * rank, 33)),
        "codes": rng.integers(-100, 100, 1001 + 13 * rank, dtype=np.int8),
        "big": rng.random(5000 + 100 * rank),
        "empty": np.empty((0, 4), dtype=np.float32),
        "scalar": np.array(rank + generation / 10),
    }


def make_object(rank: int, generation: int) -> dict[str, Any]:
    rng = np.random.default_rng(1000 + rank)
    rng.random(generation)
    return {"rank": rank, "generation": generation, "tags": ["a", "b"][: rank % 3], "rng": rng}


def same_object(a: dict[str, Any], b: dict[str, Any]) -> bool:
    plain = {k: v for k, v in a.items() if k != "rng"} == {k: v for k, v in b.items() if k != "rng"}
    return plain and a["rng"].bit_generator.state == b["rng"].bit_generator.state


def protect_all(ckpt: Checkpointer, arrays: dict[str, np.ndarray], obj: Any) -> None:
    for name, arr in arrays.items():
        ckpt.protect(name, arr)
    ckpt.protect("obj", obj)


def update_in_place(ckpt: Checkpointer, arrays: dict[str, np.ndarray], new: dict, obj: Any):
    """The next generation of the state: arrays written in place, the object rebound."""
    for name, arr in arrays.items():
        arr[...] = new[name]
    ckpt["obj"] = obj


def segment_holds(segment: np.ndarray, arrays: dict[str, np.ndarray], obj: Any) -> bool:
    """Whether ``segment`` decodes to exactly these arrays and this object."""
    _, values = unpack(segment)
    return all(
        values[k].dtype == a.dtype and np.array_equal(values[k], a) for k, a in arrays.items()
    ) and same_object(values["obj"], obj)


def same_bytes(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return a is not None and b is not None and a.tobytes() == b.tobytes()


def check_restore(
    ckpt: Checkpointer,
    checks: Checks,
    segment: np.ndarray,
    arrays: dict,
    expected: dict,
    obj: Any,
    step: int,
) -> None:
    """Clobber the arrays, restore ``segment``, and check that ``protect`` brings back the
    saved values, arrays in place."""
    for arr in arrays.values():
        arr[...] = 0
    checks.check("restore-step", ckpt.restore_from(segment) == step)
    back = {name: ckpt.protect(name, arr) for name, arr in arrays.items()}
    checks.check("restore-in-place", all(back[k] is arrays[k] for k in arrays))
    checks.check("restore-values", all(np.array_equal(arrays[k], expected[k]) for k in arrays))
    checks.check("restore-object", same_object(ckpt.protect("obj", None), obj))


def unrecoverable_message(
    ckpt: Checkpointer, checks: Checks, lost: list[int], case: str
) -> str | None:
    """``ckpt.rebuild(lost)``, expected to raise UnrecoverableError; print what it raised
    (labelled ``case``) and check that every rank got the same message."""
    try:
        ckpt.rebuild(lost=lost)
        error, message = None, None
    except UnrecoverableError as e:
        error, message = type(e).__name__, str(e)
    checks.emit(
        event="beyond-tolerance", case=case, lost=sorted(lost), error=error, message=message
    )
    everywhere = ckpt.comm.allgather(message)
    checks.check(
        "beyond-tolerance",
        error == "UnrecoverableError" and len(set(everywhere)) == 1,
        case=case,
    )
    return message
