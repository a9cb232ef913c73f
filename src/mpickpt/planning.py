"""Recovery planning: pure decisions from what every surviving process reported.

Every process runs :func:`plan_recovery` on the same all-gathered states, so every process
reaches the same plan, or raises the same error, without another round of messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .errors import ApplicationError, ConfigError, DecodeError, NoSparesError, UnrecoverableError
from .schemes import Scheme

# owner -> (segment nbytes, [(holder, piece name, checksum), ...]): what to move for a rebuild
RebuildSources = tuple[int, list[tuple[int, str, int]]]


@dataclass(frozen=True)
class ProcessState:
    """What one surviving process says about itself at the start of a recovery."""

    logical: int | None  # worker id, or None for an idle spare
    domain: int
    committed: int  # newest version this process committed (-1: none)
    local_version: int  # version of its own segment it keeps (-1: none)
    # version -> owner -> (segment nbytes, {name: checksum} of the intact pieces held)
    holdings: dict[int, dict[int, tuple[int, dict[str, int]]]] = field(default_factory=dict)
    error: str | None = None  # the exception the protected function raised here, if any
    # what kind of exception: ``misuse`` (a ConfigError, the same everywhere), ``mpi`` (an MPI
    # error that is not a lost peer: perhaps only the echo of a peer's error) or ``bug``
    error_kind: str = "bug"
    # what went wrong on this process in the previous attempt of this recovery, if anything
    attempt_error: str | None = None
    step: int | None = None  # the step its protected function was at (None: an idle spare)


@dataclass
class RecoveryPlan:
    """What a recovery does: ``assign[logical]`` is the process index that plays that worker."""

    version: int
    assign: list[int]
    dead: tuple[int, ...]
    rebuild: dict[int, RebuildSources] = field(default_factory=dict)
    from_disk: bool = False  # beyond the RAM tolerance: every worker reloads from the spill

    def role(self, proc: int, states: Sequence[ProcessState]) -> str:
        """``survivor`` or ``recovered`` for a worker, ``spare`` for a process left idle;
        ``initial`` for every worker when nothing was committed yet (nothing to restore)."""
        if proc not in self.assign:
            return "spare"
        if self.version < 0:
            return "initial"
        was = states[proc].logical
        return "survivor" if was is not None and self.assign[was] == proc else "recovered"


def plan_recovery(
    states: Sequence[ProcessState], nworkers: int, scheme: Scheme, fallback: bool = False
) -> RecoveryPlan:
    """Decide version, spare promotion and piece transfers, or raise the same error everywhere.

    Raises :class:`ApplicationError` when the protected function raised on a worker and no
    worker died, :class:`NoSparesError` when dead workers outnumber the idle spares and
    :class:`UnrecoverableError` when a lost segment cannot be rebuilt, unless ``fallback``
    (a disk tier exists): then the plan says ``from_disk`` and rebuilds nothing from RAM.
    """
    where, dead, version = _survey(states, nworkers)
    # With a dead worker, an exception may come from data garbled by the failure: recover, and
    # a real bug raises again in the recovered run, where nobody died.
    errors = _raised(states)
    misuse = [r.error for r in errors if r.error is not None and r.error_kind == "misuse"]
    if errors and not dead and len(misuse) == len(errors):  # a ConfigError: the same message
        raise ConfigError("\n".join(dict.fromkeys(m.partition(": ")[2] for m in misuse)))
    raised = [f"worker {r.logical} raised {r.error}" for r in errors]
    if raised and not dead:
        more = f"; and {len(raised) - 3} more" if len(raised) > 3 else ""
        printed = "its traceback is" if len(raised) == 1 else "their tracebacks are"
        raise ApplicationError("; ".join(raised[:3]) + f"{more} ({printed} printed above)")
    spares = [i for i, r in enumerate(states) if r.logical is None]
    if len(spares) < len(dead):
        then = (
            "relaunch to resume from the spill"
            if fallback
            else "nothing is on disk: relaunch with more spares to start again (with spill=, a "
            "relaunch would resume)"
        )
        raise NoSparesError(
            f"workers {list(dead)} failed and only {len(spares)} spare(s) are left; {then}",
            lost=dead,
        )
    assign = [where.get(w, -1) for w in range(nworkers)]
    for w, s in zip(dead, spares, strict=False):
        assign[w] = s
    plan = RecoveryPlan(version, assign, dead)
    if version < 0:
        return plan  # nothing committed yet: every worker starts from its initial state
    try:
        plan.rebuild = rebuild_sources(
            states, _need(states, where, dead, version, nworkers), version, scheme, dead
        )
    except UnrecoverableError:
        if not fallback:
            raise
        plan.from_disk = True
    return plan


def _raised(states: Sequence[ProcessState]) -> list[ProcessState]:
    """The states of the workers whose function raised; an MPI error only counts when no
    worker raised anything else (a worker's error revokes the communicators, and a peer may
    then see an MPI error of another class than ``MPI_ERR_REVOKED``)."""
    raised = [r for r in states if r.error is not None]
    own = [r for r in raised if r.error_kind != "mpi"]
    return own or raised


def failed_attempt(states: Sequence[ProcessState], lost: bool) -> UnrecoverableError | None:
    """The error that ends a recovery whose previous attempt failed on some process for a
    reason of its own (not a lost peer), or None to try again. ``lost``: a process was lost
    since that attempt, which may explain the error (data garbled by the failure); if none
    was, the same attempt would fail the same way again."""
    errors = [f"process {i}: {r.attempt_error}" for i, r in enumerate(states) if r.attempt_error]
    if not errors or lost:
        return None
    return UnrecoverableError(
        "the recovery failed: " + "; ".join(errors[:3]) + (" ..." if len(errors) > 3 else ""),
        lost=(),
    )


def save_plan(
    states: Sequence[ProcessState], nworkers: int, scheme: Scheme
) -> tuple[int, dict[int, RebuildSources], dict[int, int]]:
    """With no spare left: ``(version, sources, dest)`` to rebuild every segment that no
    survivor holds at the newest committed version on a surviving worker (round robin), so
    that the survivors can write the whole version to disk. Raises like :func:`plan_recovery`.
    """
    where, dead, version = _survey(states, nworkers)
    if not where:
        raise UnrecoverableError(f"all {nworkers} workers were lost", lost=dead, version=version)
    need = _need(states, where, dead, version, nworkers)
    survivors = [where[w] for w in sorted(where)]
    dest = {o: where.get(o, survivors[i % len(survivors)]) for i, o in enumerate(need)}
    return version, rebuild_sources(states, need, version, scheme, dead), dest


def _survey(
    states: Sequence[ProcessState], nworkers: int
) -> tuple[dict[int, int], tuple[int, ...], int]:
    """Where each surviving worker is, which workers are dead, and the newest version that
    some survivor committed (every survivor holds it, committed or staged)."""
    where = {r.logical: i for i, r in enumerate(states) if r.logical is not None}
    dead = tuple(w for w in range(nworkers) if w not in where)
    return where, dead, newest_committed(states)


def newest_committed(states: Sequence[ProcessState]) -> int:
    """The newest version some surviving worker committed; -1 if none was."""
    return max((r.committed for r in states if r.logical is not None), default=-1)


def _need(
    states: Sequence[ProcessState],
    where: dict[int, int],
    dead: tuple[int, ...],
    version: int,
    nworkers: int,
) -> list[int]:
    """Workers whose segment of ``version`` must be rebuilt: the dead, and survivors that do
    not keep that version themselves (they missed its commit)."""
    return [w for w in range(nworkers) if w in dead or states[where[w]].local_version != version]


def rebuild_sources(
    states: Sequence[ProcessState],
    owners: Sequence[int] | range,
    version: int,
    scheme: Scheme,
    dead: tuple[int, ...],
) -> dict[int, RebuildSources]:
    """For each owner, the pieces (and their holders) that rebuild its segment at ``version``.

    Raises :class:`UnrecoverableError` if any owner's surviving pieces are not enough.
    """
    result: dict[int, RebuildSources] = {}
    for owner in owners:
        found: dict[str, tuple[int, int]] = {}
        nbytes = 0
        for i, r in enumerate(states):
            if scheme.cross_owner and r.local_version != version:
                continue  # its parity chunk is useless without its own segment of that version
            entry = r.holdings.get(version, {}).get(owner)
            if entry is not None:
                nbytes = entry[0]
                for name, digest in entry[1].items():
                    found.setdefault(name, (i, digest))
        try:
            used = scheme.needed(found)
        except DecodeError as e:
            raise UnrecoverableError(
                f"cannot rebuild worker {owner} at version {version} after losing workers "
                f"{list(dead)}: the loss is beyond the tolerance of {scheme!r} "
                f"({scheme.tolerates}); {e}",
                lost=dead,
                version=version,
            ) from None
        result[owner] = (nbytes, [(found[n][0], n, found[n][1]) for n in used])
    return result
