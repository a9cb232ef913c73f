"""examples/heat2d.py run from a script that imports mpi4py.MPI before mpickpt (a common
order). mpi4py then calls MPI_Finalize at exit, which can hang after a failure; a process that
saw one ends in mpickpt's exit handler, so the exit handler registered here, before mpickpt's,
runs only in a process that saw none (it prints a line).

Usage: ``mpiexec -n N python heat_mpi_imported_first.py [heat2d options]``.
"""

import atexit
import runpy
import sys
from pathlib import Path

from mpi4py import MPI  # before mpickpt, on purpose

RANK = MPI.COMM_WORLD.Get_rank()
atexit.register(lambda: print(f"late exit handler ran on rank {RANK}", flush=True))

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))
sys.argv = [str(EXAMPLES / "heat2d.py"), *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name="__main__")
