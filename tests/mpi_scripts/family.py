"""Communicators derived from a family root are recorded, revoked and freed together.

mpiexec -n 4 python family.py      (prints ``family: ok`` on every rank)
"""

from __future__ import annotations

from mpickpt.comms import MPI, Family  # mpickpt first: it turns off MPI_Finalize

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
kinds = {name: type(c).__name__ for name, c in derived.items()}
assert kinds["cart"] == kinds["sub"] == kinds["cart of dup"] == "FamilyCartcomm", kinds
assert kinds["graph"] == "FamilyGraphcomm" and kinds["adjacent"] == "FamilyDistgraphcomm", kinds
assert kinds["dup"] == kinds["clone"] == kinds["split"] == kinds["idup"] == "FamilyIntracomm"
assert len(family.members) == 1 + len(derived), len(family.members)
assert root.Split(MPI.UNDEFINED, 0) == MPI.COMM_NULL  # not recorded
assert len(family.members) == 1 + len(derived)
assert not family.failed()
world.Barrier()  # everyone has built everything before anything is revoked
family.revoke()
assert all(c.Is_revoked() for c in family.members)
assert family.failed()
try:
    derived["sub"].Barrier()
    raise AssertionError("a barrier on a revoked communicator returned")
except MPI.Exception as e:
    assert e.Get_error_class() == MPI.ERR_REVOKED, e
family.forget()
assert family.members == [] and derived["cart"] == MPI.COMM_NULL
assert world.Dup().Get_size() == world.Get_size()  # COMM_WORLD is untouched
print("family: ok", flush=True)
