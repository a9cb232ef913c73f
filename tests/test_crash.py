"""A process that crashes (a real segmentation fault in the protected function, on real
ranks, over both byte transports) is a lost process like a killed one: it is recovered, and
when every worker crashes an idle spare survives to end the job non-zero.

(Under ``--with-ft ulfm`` ``mpiexec`` does not count processes that die of a signal: with no
spare and no spill, a job whose every process crashed returns 0. The exit-codes page says so.
A crash cannot instead end its process with a non-zero exit code: over shared memory the
others would never see that process fail, and would wait for it.)"""

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
def test_every_worker_crashing_ends_the_job_non_zero(btl: str) -> None:
    """Every worker crashes at step 3: the idle spare survives, and nothing is on disk."""
    rc, out, err = crash(btl, "all", 1)
    assert rc == 75, f"rc={rc}\n{out}\n{err}"
    assert "NoSparesError: workers [0, 1, 2] failed" in err, err
    assert not RESULT.search(out), out
