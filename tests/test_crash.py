"""A process that crashes (a real segmentation fault in the protected function, on real
ranks, over both byte transports) is a lost process like a killed one: it is recovered, and
when the crashes are more than the spares the job ends non-zero.

(Under ``--with-ft ulfm`` ``mpiexec`` does not count processes that die of a signal: a job
whose every process crashed returns 0; docs/exit-codes.md says so and why a crash is not
turned into a non-zero exit instead: over shared memory the others would never see that
process fail, and would wait for it.)"""

from __future__ import annotations

import re
import sys

import pytest

from conftest import SCRIPTS, UNDER_MPIEXEC, run_command
from mpickpt import launch

pytestmark = pytest.mark.mpi
ENV = {"MPICKPT_RANKS_PER_NODE": "1"}  # no domain warning: one failure domain per rank
RESULT = re.compile(r"^result (.*)$", re.M)
BTLS = ("self,sm", "self,tcp")


def crash(btl: str, who: str, spares: int, n: int = 4) -> tuple[int, str, str]:
    if UNDER_MPIEXEC:
        pytest.skip("launches mpiexec itself: run it in a plain `python -m pytest`")
    script = str(SCRIPTS / "crash.py")
    cmd = launch.mpiexec_command(n, sys.executable, script, who, "3", str(spares), btl=btl)
    return run_command(cmd, env=ENV, timeout=90)


@pytest.fixture(scope="module")
def reference() -> str:
    rc, out, err = crash("self,tcp", "none", 1)
    assert rc == 0, err
    return RESULT.search(out)[1]


@pytest.mark.parametrize("btl", BTLS)
def test_a_crashed_worker_is_recovered(btl: str, reference: str) -> None:
    rc, out, err = crash(btl, "1", 1)
    assert rc == 0, f"rc={rc}\n{out}\n{err}"
    assert "Segmentation fault" in err and "worker(s) [1] lost at step 3" in err, err
    assert RESULT.search(out)[1] == reference, out


@pytest.mark.parametrize("btl", BTLS)
def test_every_worker_crashing_is_recovered_or_ends_non_zero(btl: str, reference: str) -> None:
    """Every worker's first incarnation crashes at step 3. A worker still in a collective with
    one that crashed sees the failure there and is recovered instead (it is then no longer in
    its first incarnation), so the outcome depends on timing, but it is never a silent one:
    the right result with 0, or no spare left for two or more crashed workers (75)."""
    rc, out, err = crash(btl, "all", 1)
    assert "Segmentation fault" in err, err
    found = RESULT.search(out)
    if rc == 0:
        assert found is not None and found[1] == reference, f"{out}\n{err}"
    else:
        assert rc == 75 and found is None, f"rc={rc}\n{out}\n{err}"
        assert re.search(r"NoSparesError: workers \[\d+(, \d+)+\] failed", err), err
