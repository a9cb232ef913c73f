"""A spill directory that cannot be written, on real file systems: a read-only mount is
refused before any step (exit 2); a disk that fills up during the run still lets the job
compute its result and hand it back, and the job exits with the spill's code (2), said once."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import EXAMPLES, HEAT, run_mpi

pytestmark = [pytest.mark.mpi, pytest.mark.fault]


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def _mounted(dst: Path, *args: str) -> Iterator[Path]:
    """Mount with ``args`` on ``dst`` (root only; skipped where it cannot be), then unmount."""
    if os.geteuid() != 0:
        pytest.skip("mounting needs root (as in CI)")
    dst.mkdir()
    try:
        _mount(*args, str(dst))
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot mount here: {e}")
    try:
        yield dst
    finally:
        subprocess.run(["umount", "-l", str(dst)], check=False)


@pytest.fixture
def bind_mount(tmp_path: Path) -> Iterator[Path]:
    """A bind mount of a fresh directory, that a test (or its job) can remount read-only."""
    (tmp_path / "src").mkdir()
    yield from _mounted(tmp_path / "spill", "--bind", str(tmp_path / "src"))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a file system that a test's job can fill up."""
    yield from _mounted(tmp_path / "spill", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs")


def test_read_only_spill_directory_is_refused_before_any_step(bind_mount):
    _mount("-o", "remount,bind,ro", str(bind_mount))
    rc, out, err = run_mpi(
        EXAMPLES / "heat2d.py", 5, *HEAT, "--spares", "1", "--spill", str(bind_mount), timeout=90
    )
    assert rc == 2, err
    assert "checksum" not in out  # nothing was computed
    assert err.count("Read-only file system") == 1, err  # one message, from one process
    assert f"cannot use spill directory {bind_mount}" in err


def test_disk_filling_up_during_the_run_keeps_the_result(small_disk):
    # the disk fills up before the last step: the final version cannot be written
    rc, out, err = run_mpi("spill_disk_fills_up.py", 4, str(small_disk), "19", timeout=90)
    nworkers, steps = 4, 20
    expected = sum((r + steps) * 10_000 for r in range(nworkers))
    assert f"result: {expected:.1f}" in out, err  # the result, computed and handed back
    assert rc == 2, err  # ... and the spill's exit code
    assert err.count("the result was computed, but the spill failed") == 1, err
    assert "Traceback" not in err
