"""heat2d, except that at the first launch process 1 dies before MPI is initialised (the file
``$LOST_ONCE`` records that it did): the job script must launch the job again."""

import os
import runpy
import signal
import sys
from pathlib import Path

import mpickpt  # noqa: F401 - first, as every mpickpt application: it bounds MPI_Init
from mpickpt.launch import launched_rank

marker = Path(os.environ["LOST_ONCE"])
if launched_rank() == 1 and not marker.exists():
    marker.touch()
    os.kill(os.getpid(), signal.SIGKILL)

HEAT2D = Path(__file__).resolve().parents[2] / "examples" / "heat2d.py"
sys.argv = [str(HEAT2D), *sys.argv[1:]]
runpy.run_path(str(HEAT2D), run_name="__main__")
