"""Recovery planning from hand-built states: spares, version, what to rebuild, errors.

The states are realistic: segments are really encoded and placed with ``choose_backups``, so
the planned piece transfers can be decoded here and compared byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import combinations

import numpy as np
import pytest

from mpickpt import (
    ApplicationError,
    ConfigError,
    Mirror,
    NoSparesError,
    Parity,
    ReedSolomon,
    Scheme,
    Stripe,
    UnrecoverableError,
)
from mpickpt.checksum import checksum
from mpickpt.layout import choose_backups
from mpickpt.planning import (
    ProcessState,
    RecoveryPlan,
    failed_attempt,
    plan_recovery,
    rebuild_sources,
    save_plan,
)
from reference import encode


@dataclass
class Job:
    """``nworkers`` workers that checkpointed ``version`` with ``scheme``, plus idle spares."""

    scheme: Scheme
    nworkers: int
    version: int = 3

    def __post_init__(self) -> None:
        self.backups = choose_backups(list(range(self.nworkers)), self.scheme.backups)
        rng = np.random.default_rng(self.nworkers)
        # segments of different sizes, not multiples of 8
        self.segments = [rng.bytes(200 + 37 * w) for w in range(self.nworkers)]
        self.pieces = [encode(self.scheme, s) for s in self.segments]

    def holder(self, owner: int, name: str) -> int:
        """The worker holding piece ``name`` of ``owner``."""
        slot = next(p.backup for p in self.scheme.pieces() if p.name == name)
        return self.backups[owner][slot]

    def holdings(self, worker: int) -> dict[int, dict[int, tuple[int, dict[str, int]]]]:
        held: dict[int, tuple[int, dict[str, int]]] = {}
        for owner in range(self.nworkers):
            names = {
                n: checksum(b)
                for n, b in self.pieces[owner].items()
                if self.holder(owner, n) == worker
            }
            if names:
                held[owner] = (len(self.segments[owner]), names)
        return {self.version: held}

    def states(
        self,
        dead: Sequence[int] = (),
        spares: int = 1,
        committed: dict[int, int] | None = None,
        stale: Sequence[int] = (),
    ) -> list[ProcessState]:
        """Reports of the surviving workers (in worker order), then of the spares.

        ``committed`` overrides a worker's committed version; workers in ``stale`` lost their
        own segment (local version -1).
        """
        committed = committed or {}
        out = [
            ProcessState(
                logical=w,
                domain=w,
                committed=committed.get(w, self.version),
                local_version=-1 if w in stale else self.version,
                holdings=self.holdings(w),
            )
            for w in range(self.nworkers)
            if w not in dead
        ]
        out += [ProcessState(None, self.nworkers + i, -1, -1) for i in range(spares)]
        return out

    def plan(self, **kwargs) -> tuple[RecoveryPlan, list[ProcessState]]:
        states = self.states(**kwargs)
        return plan_recovery(states, self.nworkers, self.scheme), states

    def assert_rebuilds(self, plan: RecoveryPlan, states: Sequence[ProcessState]) -> None:
        """Decoding the planned pieces, fetched from their holders, gives each segment back."""
        for owner, (nbytes, sources) in plan.rebuild.items():
            assert nbytes == len(self.segments[owner])
            got = {}
            for proc, name, digest in sources:
                worker = states[proc].logical
                assert worker is not None and worker != owner, "pieces come from other workers"
                assert self.holder(owner, name) == worker
                got[name] = self.pieces[owner][name]
                assert digest == checksum(got[name])
            assert self.scheme.decode(got, nbytes).tobytes() == self.segments[owner]


SCHEMES = [Parity(2, 3), Parity(3, 4, subsegments=6), Mirror(2), Mirror(3), ReedSolomon(2, 2)]


@pytest.mark.parametrize("scheme", SCHEMES, ids=repr)
@pytest.mark.parametrize("dead", [0, 3, 5])
def test_dead_worker_gets_lowest_spare_and_is_rebuilt(scheme, dead):
    job = Job(scheme, 6)
    plan, states = job.plan(dead=[dead], spares=2)
    first_spare = next(i for i, r in enumerate(states) if r.logical is None)
    assert plan.dead == (dead,)
    assert plan.assign[dead] == first_spare
    for w in range(6):
        if w != dead:  # survivors keep their ids, on their own process
            assert states[plan.assign[w]].logical == w
    assert plan.version == job.version
    assert set(plan.rebuild) == {dead}  # survivors kept their own segment
    job.assert_rebuilds(plan, states)
    assert plan.role(first_spare, states) == "recovered"
    assert plan.role(first_spare + 1, states) == "spare"
    assert plan.role(plan.assign[(dead + 1) % 6], states) == "survivor"


def test_owner_and_one_of_its_backups_within_parity_tolerance():
    job = Job(Parity(2, 3), 6)
    owner = 2
    dead = sorted([owner, job.backups[owner][1]])
    plan, states = job.plan(dead=dead, spares=2)
    spares = [i for i, r in enumerate(states) if r.logical is None]
    assert [plan.assign[d] for d in dead] == spares  # in order: lower dead id, lower spare
    assert set(plan.rebuild) == set(dead)
    job.assert_rebuilds(plan, states)


@pytest.mark.parametrize("scheme", [ReedSolomon(2, 2), ReedSolomon(3, 2, 6), ReedSolomon(1, 3)])
def test_owner_and_any_parity_backups_within_rs_tolerance(scheme):
    job = Job(scheme, 8)
    owner = 3
    for lost in combinations(job.backups[owner], scheme.parity):
        dead = sorted([owner, *lost])
        plan, states = job.plan(dead=dead, spares=len(dead))
        assert set(plan.rebuild) == set(dead)
        for _, sources in plan.rebuild.values():  # exactly group pieces per stripe are fetched
            assert len(sources) == scheme.subsegments
        job.assert_rebuilds(plan, states)


def test_stripe_rebuilds_the_owner_alone():
    job = Job(Stripe(2), 4)
    plan, states = job.plan(dead=[1])
    job.assert_rebuilds(plan, states)


def test_version_is_newest_committed_and_stale_owners_are_rebuilt():
    job = Job(Parity(2, 3), 5, version=4)
    plan, states = job.plan(dead=[0], committed={1: 3, 2: 3}, stale=[3])
    assert plan.version == 4
    assert set(plan.rebuild) == {0, 3}
    job.assert_rebuilds(plan, states)


def test_spares_do_not_count_for_the_version():
    job = Job(Mirror(2), 4, version=2)
    states = job.states(dead=[1])
    states[-1] = ProcessState(None, 9, committed=7, local_version=7)
    assert plan_recovery(states, 4, job.scheme).version == 2


@pytest.mark.parametrize(
    ("scheme", "extra"),
    [(Parity(2, 3), 2), (Mirror(2), 2), (Stripe(2), 1), (ReedSolomon(2, 2), 3)],
    ids=repr,
)
def test_beyond_tolerance_is_unrecoverable(scheme, extra):
    job = Job(scheme, 6)
    owner = 4
    dead = tuple(sorted([owner, *job.backups[owner][:extra]]))
    with pytest.raises(UnrecoverableError) as info:
        job.plan(dead=dead, spares=len(dead))
    err = info.value
    assert err.lost == dead
    assert err.version == job.version
    msg = str(err)
    assert f"losing workers {list(dead)}" in msg
    assert f"at version {job.version}" in msg
    assert repr(scheme) in msg


def test_unrecoverable_is_the_same_from_the_same_reports():
    job = Job(Parity(2, 3), 6)
    dead = [0, *job.backups[0][:2]]
    messages = set()
    for _ in range(3):
        with pytest.raises(UnrecoverableError) as info:
            job.plan(dead=dead, spares=3)
        messages.add(str(info.value))
    assert len(messages) == 1


def test_not_enough_spares():
    job = Job(Parity(2, 3), 6)
    with pytest.raises(NoSparesError, match=r"workers \[1, 4\] failed and only 1 spare") as info:
        job.plan(dead=[1, 4], spares=1)
    assert info.value.lost == (1, 4)


def with_errors(states: list[ProcessState], raised: Sequence[int]) -> list[ProcessState]:
    return [
        replace(r, error=f"ValueError: bad input on worker {r.logical}")
        if r.logical in raised
        else r
        for r in states
    ]


@pytest.mark.parametrize("raised", [[3], [0, 2, 3, 5, 6]])
def test_an_exception_in_the_application_is_reported_not_recovered(raised):
    """A worker's exception ends the job with the same error everywhere, although the spares
    could take over (they would replay the bug); the first three named, the rest counted."""
    job = Job(Parity(2, 3), 8)
    states = with_errors(job.states(spares=2), raised)
    with pytest.raises(ApplicationError) as info:
        plan_recovery(states, job.nworkers, job.scheme)
    named = [
        int(w) for w in re.findall(r"worker (\d) raised ValueError: bad input", str(info.value))
    ]
    assert named == raised[:3]
    assert (f"and {len(raised) - 3} more" in str(info.value)) == (len(raised) > 3)


def test_a_misuse_is_a_config_error_whatever_its_class_is_called():
    # an UnknownSchemeError is a ConfigError too: the kind travels in the report, not its name
    job = Job(Parity(2, 3), 6)
    states = [
        replace(r, error="UnknownSchemeError: no scheme 'parrity'", error_kind="misuse")
        if r.logical is not None
        else r
        for r in job.states()
    ]
    with pytest.raises(ConfigError, match="no scheme 'parrity'"):
        plan_recovery(states, job.nworkers, job.scheme)


def test_the_echo_of_a_peers_error_is_not_named_as_an_error_of_its_own():
    # worker 1 raised a ConfigError and revoked the communicators; worker 3 saw that as an MPI
    # error of another class: the job still ends with worker 1's misuse (exit 2), alone
    job = Job(Parity(2, 3), 6)
    states = job.states()
    states[1] = replace(states[1], error="ConfigError: bad every", error_kind="misuse")
    states[3] = replace(states[3], error="MPI error: MPI_ERR_IN_STATUS", error_kind="mpi")
    with pytest.raises(ConfigError, match="^bad every$"):
        plan_recovery(states, job.nworkers, job.scheme)
    states[1] = replace(states[1], error="ValueError: bug", error_kind="bug")
    with pytest.raises(ApplicationError) as info:
        plan_recovery(states, job.nworkers, job.scheme)
    assert "worker 1 raised ValueError: bug" in str(info.value) and "worker 3" not in str(
        info.value
    )


def test_a_failed_attempt_ends_the_recovery_unless_a_process_was_lost_since():
    job = Job(Parity(2, 3), 6)
    states = job.states(dead=[2])
    assert failed_attempt(states, lost=False) is None  # nothing went wrong
    states[4] = replace(states[4], attempt_error="switching: OSError: no space")
    assert failed_attempt(states, lost=True) is None  # a new loss may explain it: again
    stop = failed_attempt(states, lost=False)
    assert isinstance(stop, UnrecoverableError)
    assert "the recovery failed: process 4: switching: OSError: no space" in str(stop)


def test_an_exception_beside_a_dead_worker_is_recovered():
    # garbage from a collective that a failure broke can make the application raise
    job = Job(Parity(2, 3), 6)
    plan = plan_recovery(with_errors(job.states(dead=[4]), [3]), job.nworkers, job.scheme)
    assert plan.dead == (4,) and set(plan.rebuild) == {4}


def test_no_spare_needed_when_nobody_died():
    job = Job(Mirror(2), 4)
    plan, states = job.plan(spares=0, stale=[2])
    assert plan.dead == ()
    assert plan.assign == [0, 1, 2, 3]
    assert set(plan.rebuild) == {2}
    job.assert_rebuilds(plan, states)


def test_beyond_tolerance_with_a_spill_falls_back_to_disk():
    job = Job(Parity(2, 3), 5)
    states = job.states(dead=[1, 2, 3], spares=3)
    with pytest.raises(UnrecoverableError):
        plan_recovery(states, 5, job.scheme)
    plan = plan_recovery(states, 5, job.scheme, fallback=True)
    assert plan.from_disk and plan.rebuild == {}
    assert plan.assign == [0, 2, 3, 4, 1]  # survivors keep their place, spares fill in order


def test_save_plan_rebuilds_the_dead_on_survivors():
    job = Job(Parity(2, 3), 5)
    states = job.states(dead=[1, 3], spares=0)
    version, sources, dest = save_plan(states, 5, job.scheme)
    assert version == job.version and set(sources) == {1, 3}
    assert dest == {1: 0, 3: 1}  # survivors (by process index) in turn
    job.assert_rebuilds(RecoveryPlan(version, [0, -1, 1, -1, 2], (1, 3), rebuild=sources), states)


def test_nothing_committed_means_initial_state():
    job = Job(Parity(2, 3), 4)
    states = [ProcessState(w, w, -1, -1) for w in (0, 2, 3)] + [ProcessState(None, 4, -1, -1)]
    plan = plan_recovery(states, 4, job.scheme)
    assert plan.version == -1
    assert plan.assign == [0, 3, 1, 2]
    assert plan.rebuild == {}
    # nothing to restore: the promoted spare and the survivors all enter as ``initial``, so an
    # application that builds its state only in that role never computes from zeros
    assert [plan.role(p, states) for p in range(4)] == ["initial"] * 4


def test_rebuild_sources_skip_pieces_not_reported():
    # a holder that dropped a piece (failed checksum) is not asked for it
    job = Job(Mirror(2), 4)
    states = job.states(dead=[0], spares=0)
    first = job.backups[0][0]
    i = next(i for i, r in enumerate(states) if r.logical == first)
    held = {
        v: {o: (n, {}) if o == 0 else (n, names) for o, (n, names) in by.items()}
        for v, by in states[i].holdings.items()
    }
    states[i] = ProcessState(first, first, job.version, job.version, held)
    sources = rebuild_sources(states, [0], job.version, job.scheme, (0,))
    ((_, names),) = sources.values()
    assert [(states[p].logical, n) for p, n, _ in names] == [(job.backups[0][1], "m1")]
