"""Shared test helpers: the ``mpiexec`` launcher used by the MPI tests.

Two ways to run MPI tests:

- ``python -m pytest`` (the usual run): the MPI tests start real ranks in a subprocess
  (``run_mpi``); pytest itself never initializes MPI, so the pure tests and the MPI tests run
  in one plain run. Tests that need ``COMM_WORLD`` in the pytest process (the ``world``
  fixture) are skipped; ``test_collective_mpi.py`` runs them under mpiexec itself.
- ``mpiexec -n 4 python -m pytest --with-mpi tests/test_collective_mpi.py``: pytest-mpi's way,
  every rank runs pytest; tests marked ``mpi`` use ``MPI.COMM_WORLD`` collectively through the
  ``world`` fixture (``mpi(min_size=N)`` skips them on fewer ranks). Tests that launch mpiexec
  themselves are skipped there.
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


UNDER_MPIEXEC = False  # pytest runs on every rank of an mpiexec job (pytest-mpi --with-mpi)


def _with_mpi(config: pytest.Config) -> bool:
    try:
        return bool(config.getoption("--with-mpi") or config.getoption("--only-mpi"))
    except ValueError:  # pytest-mpi is not installed
        return False


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    global UNDER_MPIEXEC
    UNDER_MPIEXEC = _with_mpi(config)
    if UNDER_MPIEXEC:
        return  # pytest-mpi's own rules: tests marked ``mpi`` run, with ``min_size``
    # Without --with-mpi, pytest-mpi skips every test marked ``mpi``; ours launch mpiexec
    # themselves, so its collection hook is switched off (its fixtures stay available).
    for plugin in config.pluginmanager.get_plugins():
        if type(plugin).__name__ == "MPIPlugin":
            config.pluginmanager.unregister(plugin)


def pytest_unconfigure(config: pytest.Config) -> None:
    # importing mpickpt turned MPI_Finalize at exit off; a clean pytest-mpi run finalizes
    mpi = sys.modules.get("mpi4py.MPI")
    if UNDER_MPIEXEC and mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        mpi.Finalize()


@pytest.fixture(scope="session")
def world() -> object:
    """``MPI.COMM_WORLD`` when pytest runs under mpiexec with ``--with-mpi``; skipped in a
    plain run, which must not initialize MPI (``test_collective_mpi.py`` launches it)."""
    if not UNDER_MPIEXEC:
        pytest.skip("runs under mpiexec with --with-mpi (test_collective_mpi.py launches it)")
    from mpi4py import MPI

    return MPI.COMM_WORLD


def mpiexec_command(script: str | Path, n: int, *args: str) -> list[str]:
    """The command line that runs ``script`` (a name in tests/mpi_scripts or a path) on
    ``n`` ranks with this interpreter: mpickpt's own launcher, so tests run what users run."""
    path = Path(script) if Path(script).is_absolute() else SCRIPTS / script
    return command(n, str(path), *args)


def command(n: int, *argv: str) -> list[str]:
    """``mpiexec ... -n N python argv...``; skips the test when it cannot launch one."""
    if UNDER_MPIEXEC:
        pytest.skip("launches mpiexec itself: run it in a plain `python -m pytest`")
    try:
        return launch.mpiexec_command(n, sys.executable, *argv)
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
    return run_command(mpiexec_command(script, n, *args), env=env, timeout=timeout)


def run_command(
    cmd: list[str], env: Mapping[str, str] | None = None, timeout: float = 120
) -> tuple[int, str, str]:
    """:func:`run_mpi` for a command line of :func:`command`."""
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


def finish(proc: subprocess.Popen[str], what: str = "hung") -> tuple[int, str, str]:
    """Wait for a launch started in its own session (90 s); on timeout end the whole process
    group and fail the test with ``what`` and the output collected so far."""
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        out, err = _kill_group(proc)
        pytest.fail(f"{what}\n{out}\n{err}")
    return proc.returncode, out, err


@pytest.fixture(name="run_mpi")
def run_mpi_fixture() -> RunMPI:
    """:func:`run_mpi`, as a fixture."""
    return run_mpi


# -- the heat2d example, shared by the fault and spill tests ---------------------------------

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# heat2d's scheme in these tests: parity(2, 3), which fits the 4 workers most of them run (the
# library's default, parity(3, 4), needs 5); mirror with 2 copies
HEAT_SCHEME = ["--group", "2", "--backups", "3", "--copies", "2"]
HEAT = ["--steps", "40", "--size", "48", "--every", "5", *HEAT_SCHEME]
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
