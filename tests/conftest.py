"""Shared test helpers: the ``mpiexec`` launcher used by the MPI tests.

The MPI tests run real ranks in a subprocess (``run_mpi``); pytest itself never initializes
MPI, so the pure tests and the MPI tests run in one plain ``python -m pytest``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from mpickpt import launch

SCRIPTS = Path(__file__).parent / "mpi_scripts"
KILL_GRACE = 5
# a recovery stalled by a rank that Open MPI aborted unreported ends well within a test's timeout
os.environ.setdefault(
    "MPICKPT_RECOVERY_TIMEOUT", "20"
)  # seconds between SIGTERM and SIGKILL of a launch that timed out

RunMPI = Callable[..., tuple[int, str, str]]


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    # pytest-mpi (in the ``test`` extra) skips every test marked ``mpi`` unless pytest itself
    # runs under mpiexec with --with-mpi. Our MPI tests launch mpiexec themselves, so its
    # collection hook is switched off; its fixtures stay available.
    for plugin in config.pluginmanager.get_plugins():
        if type(plugin).__name__ == "MPIPlugin":
            config.pluginmanager.unregister(plugin)


def mpiexec_command(script: str | Path, n: int, *args: str) -> list[str]:
    """The command line that runs ``script`` (a name in tests/mpi_scripts or a path) on
    ``n`` ranks with this interpreter: mpickpt's own launcher, so tests run what users run."""
    path = Path(script) if Path(script).is_absolute() else SCRIPTS / script
    try:
        return launch.mpiexec_command(n, sys.executable, str(path), *args)
    except FileNotFoundError as e:
        pytest.skip(str(e))


def run_mpi(
    script: str | Path,
    n: int,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> tuple[int, str, str]:
    """Run ``script`` on ``n`` ranks under mpiexec; return ``(returncode, stdout, stderr)``.

    The launch runs in its own process group; on timeout the whole group (mpiexec and every
    rank) gets SIGTERM, then SIGKILL after a grace period, and the test fails with the output
    collected so far.
    """
    cmd = mpiexec_command(script, n, *args)
    full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out, err = _kill_group(proc)
        pytest.fail(
            f"{' '.join(cmd)} timed out after {timeout} s\n--- stdout\n{out}\n--- stderr\n{err}"
        )
    return proc.returncode, out, err


def _kill_group(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """End the process group of ``proc`` (started with its own session), like ``timeout -k``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            return proc.communicate(timeout=KILL_GRACE)
        except subprocess.TimeoutExpired:
            continue
    return proc.communicate()


@pytest.fixture(name="run_mpi")
def run_mpi_fixture() -> RunMPI:
    """:func:`run_mpi`, as a fixture."""
    return run_mpi


# -- the heat2d example, shared by the fault and spill tests ---------------------------------

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
HEAT = ["--steps", "40", "--size", "48", "--every", "5"]
CHECKSUM = re.compile(r"^checksum: ([0-9a-f]{64})$", re.M)


def checksum(out: str) -> str | None:
    """The ``checksum: <hex>`` an example printed, or None."""
    m = CHECKSUM.search(out)
    return m.group(1) if m else None


@pytest.fixture(scope="session")
def heat_reference() -> str:
    """The failure-free result, computed by the plain-MPI version on one rank."""
    rc, out, err = run_mpi(EXAMPLES / "heat2d_plain.py", 1, *HEAT, timeout=60)
    assert rc == 0, err
    return checksum(out)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Every rerun of a run that Open MPI broke (tests/reruns.py), counted: reruns are
    allowed, but must never go unnoticed."""
    import reruns

    if reruns.RERUNS:
        terminalreporter.section("Open MPI reruns")
        for test, line in reruns.RERUNS:
            terminalreporter.write_line(f"{test}: {line}")
    terminalreporter.write_line(f"runs repeated after an Open MPI abort: {len(reruns.RERUNS)}")
