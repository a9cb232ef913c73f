"""examples/petsc_heat.py with petsc4py.PETSc imported before mpickpt, so that PETSc
initialises MPI (``PetscBeganMPI``): the job must warn once and still end cleanly (PETSc
finalised before MPI, MPI finalised once).

    python petsc_first.py --steps 40 --size 32 --every 5 --spares 1
"""

from __future__ import annotations

import sys
from pathlib import Path

from petsc4py import PETSc  # noqa: F401 - first, on purpose: PETSc calls MPI_Init

import mpickpt

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from petsc_heat import simulate  # noqa: E402
from petsc_heatsolver import arguments  # noqa: E402

if __name__ == "__main__":
    args = arguments(__doc__)
    run = mpickpt.resilient("mirror", spares=args.spares, every=args.every)
    checksum = run(simulate)(args.steps, args.size)
    if checksum is not None:
        print(f"checksum: {checksum}", flush=True)
