"""A process of the job dies before MPI is initialised: ``LOST_RANK`` SIGKILLs itself right
after ``import mpickpt``, so the others wait for it in ``MPI_Init``. Prints ``initialised``
on every process that got through (none should)."""

import os
import signal

import mpickpt
from mpickpt.launch import launched_rank

if launched_rank() == int(os.environ["LOST_RANK"]):
    os.kill(os.getpid(), signal.SIGKILL)

from mpi4py import MPI  # noqa: E402 - the point: MPI_Init after the loss

print(f"initialised {MPI.COMM_WORLD.Get_rank()} {mpickpt.__version__}", flush=True)
