"""What a stalled recovery can tell about why it stalled (the watchdog's message).

A recovery waits (in ``MPI_Comm_shrink`` or an agreement) until every process that MPI has not
reported failed joins it. MPI does not say who is missing; but every process knows the host and
pid of every other one (gathered at start), and can look at the processes on its own host:
gone without being reported failed, stopped, or alive. Pure but for :func:`process_state`.

Over shared memory Open MPI can end a rank it aborted without reporting it failed; the others
would wait for it until the watchdog's timeout. :class:`Vanished` sees such a process sooner:
gone from its host for :data:`VANISHED_AFTER` seconds, and still not reported failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence

# a process MPI reports failed is reported within milliseconds of its death (its daemon sees
# it end); one gone this long and not reported never will be
VANISHED_AFTER = 3.0

# /proc/<pid>/stat state letters
_STATES = {"T": "stopped", "t": "stopped", "Z": "gone", "X": "gone"}


def process_state(pid: int) -> str:
    """``gone``, ``stopped`` or ``alive`` (``unknown`` where /proc cannot tell)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except FileNotFoundError:
        return "gone"
    except OSError:
        return "unknown"
    state = stat[stat.rindex(")") + 2 :].split(" ", 1)[0]  # after "(comm)", which may hold spaces
    return _STATES.get(state, "alive")


def place_on_host(me: int, peers: Sequence[tuple[str, int]]) -> int:
    """How many processes of the job on world rank ``me``'s host have a lower world rank."""
    here = peers[me][0]
    return sum(1 for host, _ in peers[:me] if host == here)


class Vanished:
    """The world ranks, among ``local`` (world rank -> pid: the processes of this host in the
    job when the recovery started), whose process has been gone for :data:`VANISHED_AFTER`
    seconds while the recovery still waits for it: in ``members()`` (the world ranks of the
    job's communicator now; a shrink leaves the dead out) and not in ``failed()`` (those MPI
    reported failed; None if it cannot say). Both are asked only then: never during a
    recovery that goes as usual."""

    def __init__(
        self,
        local: Mapping[int, int],
        members: Callable[[], Iterable[int]],
        failed: Callable[[], Iterable[int] | None],
        state_of: Callable[[int], str] = process_state,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.local, self.members, self.failed = local, members, failed
        self.state_of, self.clock = state_of, clock
        self.since: dict[int, float] = {}  # world rank -> when it was first seen gone

    def __call__(self) -> list[int]:
        now = self.clock()
        for rank, pid in self.local.items():
            if self.state_of(pid) == "gone":
                self.since.setdefault(rank, now)
        overdue = {r for r, t in self.since.items() if now - t >= VANISHED_AFTER}
        if not overdue:
            return []
        overdue &= set(self.members())
        failed = self.failed() if overdue else []
        return [] if failed is None else sorted(overdue - set(failed))


def _ranks(ranks: Iterable[int], peers: Sequence[tuple[str, int]]) -> str:
    return ", ".join(f"{r} (pid {peers[r][1]})" for r in sorted(ranks))


def diagnose(
    me: int,
    peers: Sequence[tuple[str, int]],
    failed: Iterable[int] | None,
    state_of: Callable[[int], str] = process_state,
) -> list[str]:
    """Lines that say what is known about the processes of the job, from world rank ``me``.

    ``peers[r]`` is the ``(host, pid)`` of world rank ``r``; ``failed`` the world ranks MPI has
    reported failed (None if it could not be asked)."""
    here = peers[me][0]
    failed = set(failed) if failed is not None else None
    groups: dict[str, list[int]] = {"gone": [], "stopped": [], "alive": [], "elsewhere": []}
    for r, (host, pid) in enumerate(peers):
        if r == me or (failed is not None and r in failed):
            continue
        state = state_of(pid) if host == here else "elsewhere"
        groups.get(state, groups["elsewhere"]).append(r)
    lines = []
    if failed is not None:
        lines.append(f"reported failed by MPI: world ranks [{', '.join(map(str, sorted(failed)))}]")
    if groups["gone"]:
        lines.append(
            f"gone but not reported failed: world rank(s) {_ranks(groups['gone'], peers)}: "
            'Open MPI can abort a rank from inside a call when a peer dies ("Send error after '
            'request freed" above) without telling the others; they cannot shrink without it'
        )
    if groups["stopped"]:
        lines.append(
            f"stopped: world rank(s) {_ranks(groups['stopped'], peers)} (SIGSTOP, a debugger): "
            "it cannot join the recovery"
        )
    if groups["alive"]:
        lines.append(
            f"alive on this host: world rank(s) {_ranks(groups['alive'], peers)}: each is in "
            "this recovery or blocked outside it (from here one cannot tell which): in a "
            "communication on a communicator not derived from ctx.comm (e.g. COMM_WORLD), "
            "which mpickpt cannot revoke, or in a phase without communication longer than "
            "MPICKPT_RECOVERY_TIMEOUT (call ctx.check() in it, or raise the timeout)"
        )
    if groups["elsewhere"]:
        lines.append(
            f"on other hosts (state unknown here): world rank(s) "
            f"{', '.join(map(str, sorted(groups['elsewhere'])))}"
        )
    return lines


def known_failed(comm: object, timeout: float = 2.0) -> list[int] | None:
    """The ``COMM_WORLD`` ranks of the processes of ``comm`` that MPI has reported failed, or
    None if it cannot say within ``timeout`` seconds (asked from another thread, so that a
    lock held by the stalled call cannot stall the watchdog too)."""
    import threading

    from mpi4py import MPI

    result: list[list[int]] = []

    def ask() -> None:
        try:
            assert isinstance(comm, MPI.Comm)
            group = comm.Get_failed()
            ranks = MPI.Group.Translate_ranks(
                group, list(range(group.Get_size())), MPI.COMM_WORLD.Get_group()
            )
            result.append([r for r in ranks if r != MPI.UNDEFINED])
        except Exception:  # noqa: BLE001 - any answer but a list is "cannot say"
            pass

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(timeout)
    return result[0] if result else None
