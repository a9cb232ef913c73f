"""Communicators derived from a family root are recorded, revoked and freed together.

mpiexec -n 4 python family.py      (prints ``family: ok`` on every rank)
"""

from __future__ import annotations

import ctypes

from mpickpt.comms import MPI, Family  # mpickpt first: it turns off MPI_Finalize


def c_dup(comm: MPI.Comm) -> MPI.Comm:
    """``MPI_Comm_dup`` called from C, as a C library (PETSc) does: not through mpi4py."""
    libmpi = ctypes.CDLL(MPI.__file__)  # its dependencies include libmpi
    handle = ctypes.c_void_p()
    assert libmpi.MPI_Comm_dup(ctypes.c_void_p(comm.handle), ctypes.byref(handle)) == 0
    return MPI.Intracomm.fromhandle(handle.value)


world = MPI.COMM_WORLD
family = Family()
root = family.root(world)
derived = {
    "dup": root.Dup(),
    "clone": root.Clone(),
    "split": root.Split(world.Get_rank() % 2, 0),
    "cart": root.Create_cart([world.Get_size()], periods=[True]),
    "graph": root.Create_graph([1] * world.Get_size(), list(range(world.Get_size()))),
    "adjacent": root.Create_dist_graph_adjacent([world.Get_rank()], [world.Get_rank()]),
}
derived["sub"] = derived["cart"].Sub([True])  # a grandchild
derived["idup"], request = derived["split"].Idup()
request.Wait()
derived["cart of dup"] = derived["dup"].Create_cart([world.Get_size()])
in_c = [c_dup(root), c_dup(derived["cart"])]  # never seen by the family's Python methods
in_c.append(c_dup(in_c[0]))  # a duplicate of a duplicate
kinds = {name: type(c).__name__ for name, c in derived.items()}
assert kinds["cart"] == kinds["sub"] == kinds["cart of dup"] == "FamilyCartcomm", kinds
assert kinds["graph"] == "FamilyGraphcomm" and kinds["adjacent"] == "FamilyDistgraphcomm", kinds
assert kinds["dup"] == kinds["clone"] == kinds["split"] == kinds["idup"] == "FamilyIntracomm"
assert len(family.members) == 1 + len(derived), len(family.members)
assert family.adopt(derived["dup"]) is derived["dup"]  # tracked again: the same member
assert root.Split(MPI.UNDEFINED, 0) == MPI.COMM_NULL  # not recorded
assert len(family.members) == 1 + len(derived)
assert not family.failed()
world.Barrier()  # everyone has built everything before anything is revoked
family.revoke()
assert all(c.Is_revoked() for c in family.members)
assert all(c.Is_revoked() for c in in_c), "a duplicate made in C was not revoked"
assert family.failed()
try:
    derived["sub"].Barrier()
    raise AssertionError("a barrier on a revoked communicator returned")
except MPI.Exception as e:
    assert e.Get_error_class() == MPI.ERR_REVOKED, e
family.forget()
assert all(c != MPI.COMM_NULL for c in in_c)  # the library that made them frees them
for comm in in_c:
    comm.Free()
assert family.members == [] and derived["cart"] == MPI.COMM_NULL
assert world.Dup().Get_size() == world.Get_size()  # COMM_WORLD is untouched
print("family: ok", flush=True)
