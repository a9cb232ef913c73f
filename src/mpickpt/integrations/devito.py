"""Devito (``pip install mpickpt[devito]``): a Devito simulation that survives a lost rank.

Build the ``Grid`` on ``ctx.comm`` inside the protected function, then::

    from mpickpt.integrations import devito as resilient_devito

    u = TimeFunction(name="u", grid=grid, space_order=2)
    resilient_devito.protect(ctx, "u", u)           # the whole buffer, restored in place
    op = resilient_devito.operator(ctx, "diffusion", lambda: Operator(...))  # built once
    for step in ctx.steps(n):
        resilient_devito.apply(ctx, op, u=u, time_m=k * step, time_M=k * step + k - 1)

What it takes care of:

* Devito communicates on its own communicators (a ``Clone`` of the one it is given, then a
  Cartesian one). Derived from ``ctx.comm``, they are revoked with it when a worker leaves for
  a recovery (:mod:`mpickpt.comms`), so no survivor waits for a peer that left.
* Every ``Operator.apply`` (and ``data_with_halo``) first runs Devito's Python halo exchange,
  in blocking ``Sendrecv``, which Open MPI 5.0 can crash in when the peer has just died. It is
  replaced (:func:`install`, when this module is imported) by one in ``Irecv``/``Isend`` kept
  alive by :func:`mpickpt.waitall`, which raises an ``MPI.Exception`` instead: a recovery.
  Every rank must use the same one (the two do not match each other's messages), so import
  this module at the top of the program, on every rank, spares included.
* The compiled kernel ignores MPI's return codes: a failure it ran into is seen only once it
  returns. :func:`apply` then checks, locally, whether a communicator of the family was revoked
  or lost a peer, and turns that into a recovery before the damaged field is checkpointed.
  So the number of time steps per ``apply`` sets how late a failure is seen and how much work
  is lost with it (see docs/frameworks.md).

* Building an ``Operator`` (its lowering) costs seconds per rank, and a recovery re-enters
  the protected function. :func:`operator` keeps each process's operators across recoveries:
  only a promoted spare builds its own. The functions it is applied to come from the current
  run of the function, so pass them to :func:`apply` by name (``u=u``); it refuses a function
  left from before the recovery.

Devito sets up ``mpi4py`` not to initialize MPI at import; ``mpickpt.resilient`` initializes
it (with mpi4py's thread level) if nobody has, before anything else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from mpi4py import MPI

from ..tags import TAG_HALO
from ..transport import waitall

if TYPE_CHECKING:
    from ..api import Context

_installed: dict[str, Any] = {}


def install() -> None:
    """Replace Devito's Python halo exchange (``DiscreteFunction._halo_exchange``, used by every
    ``Operator.apply``) by one that survives a dead peer. Idempotent; Devito's generated code
    and everything else stay as they are."""
    if _installed:
        return
    from devito.types.dense import DiscreteFunction

    if not callable(getattr(DiscreteFunction, "_halo_exchange", None)):
        raise ImportError(
            "this Devito version has no DiscreteFunction._halo_exchange: "
            "mpickpt.integrations.devito does not support it"
        )
    _installed["original"] = DiscreteFunction._halo_exchange
    DiscreteFunction._halo_exchange = _halo_exchange


def _halo_exchange(f: Any) -> None:
    """Fill ``f``'s halo from its neighbours, one distributed dimension after the other (so
    that corners arrive through the second one). Non-blocking, waited for with
    :func:`mpickpt.waitall`: a dead or departed peer raises ``MPI.Exception``."""
    from devito import configuration
    from devito.data import HALO, LEFT, OWNED, RIGHT

    distributor = f._distributor if f.grid is not None else None
    if not configuration["mpi"] or distributor is None or not MPI.Is_initialized():
        return
    comm = distributor.comm
    if comm == MPI.COMM_NULL or comm.Get_size() == 1:
        return
    for dim in f._dist_dimensions:
        peers = distributor.neighborhood[dim]
        requests, landing = [], []
        for tag, side in enumerate((LEFT, RIGHT)):
            peer = peers[side]
            # my halo on this side is the neighbour's owned edge facing me ...
            halo = f._data_in_region(HALO, dim, side)
            buf = np.empty(halo.shape, dtype=halo.dtype)
            requests.append(comm.Irecv([buf, MPI.BYTE], peer, TAG_HALO + 1 - tag))
            # ... and my owned edge on this side is its halo
            edge = np.ascontiguousarray(f._data_in_region(OWNED, dim, side))
            requests.append(comm.Isend([edge, MPI.BYTE], peer, TAG_HALO + tag))
            landing.append((peer, halo, buf, edge))  # edge: alive until the send completes
        waitall(requests)
        for peer, halo, buf, _ in landing:
            if peer != MPI.PROC_NULL:
                halo[...] = buf
    f._is_halo_dirty = False


def buffer(f: Any) -> np.ndarray:
    """The whole allocated buffer of a Devito ``Function``/``TimeFunction`` (every time slot,
    halo and padding) as a plain contiguous ``numpy.ndarray``: a view, not a copy."""
    f.data  # noqa: B018 - allocates the buffer (and first-touch initializes it) if needed
    array = np.asarray(f._data)  # Devito's Data -> plain ndarray view of the same memory
    if not array.flags.c_contiguous:  # pragma: no cover - Devito allocates one block
        raise ValueError(f"{f.name}: the allocated buffer is not contiguous")
    return array


def protect(ctx: Context, name: str, f: Any) -> Any:
    """Protect Devito function ``f`` under ``name``: its whole buffer, checkpointed without a
    copy or pickling, restored in place after a recovery. Returns ``f``."""
    install()
    array = buffer(f)
    if ctx.protect(name, array) is not array:  # not restored in place: another local shape
        raise ValueError(
            f"{name}: the saved buffer does not fit {f.name}'s ({array.shape}): the grid is "
            "decomposed differently than when it was saved (a changed number of workers "
            "needs a redistribute hook that works on whole fields)"
        )
    return f


_operators: dict[tuple[str, int, int], Any] = {}


def operator(ctx: Context, key: str, build: Callable[[], Any]) -> Any:
    """The operator ``build()`` made for ``key`` in this process, built on first use and kept
    across recoveries (per worker number and count: the local shapes stay the same when a spare
    replaces a worker). Apply it with :func:`apply`, naming the functions of this run."""
    slot = (key, ctx.rank, ctx.size)
    if slot not in _operators:
        _operators[slot] = build()
    return _operators[slot]


def apply(ctx: Context, op: Any, **kwargs: Any) -> Any:
    """``op.apply(**kwargs)``, then raise ``MPI.Exception`` (a recovery) if the kernel ran into
    a failure: a communicator derived from ``ctx.comm`` was revoked or lost a peer. Returns
    what ``apply`` returned. Refuses (``ValueError``) to run on a distributed function left
    from before a recovery: pass this run's function by name, e.g. ``u=u``."""
    install()
    for f in op.input:
        distributor = getattr(getattr(f, "grid", None), "distributor", None)
        if f.name in kwargs or not getattr(distributor, "is_parallel", False):
            continue
        if getattr(distributor, "comm", None) == MPI.COMM_NULL:  # freed by the recovery
            raise ValueError(
                f"{op.name} was built before a recovery: pass this run's {f.name!r} to apply "
                f"({f.name}={f.name})"
            )
    summary = op.apply(**kwargs)
    if ctx.job.comms.failed():
        raise MPI.Exception(MPI.ERR_PROC_FAILED)
    return summary


install()  # at import: a promoted spare must not exchange with Devito's own before protect()
