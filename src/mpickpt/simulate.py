"""A discrete-event Monte Carlo simulator of a job under failures (pure, no MPI).

It draws the failure process that :mod:`mpickpt.model` describes, node by node and rack by
rack, and plays the job's life: checkpoints every ``interval`` seconds of work, in-memory
recoveries on spare nodes, relaunches from the disk tier when no spare is left or when the
nodes lost within one recovery window are beyond the scheme's tolerance (decided for the very
nodes that failed, with :func:`mpickpt.model.fatal`). It checks the model: both must give the
same efficiency, risk and spare consumption within the simulator's confidence interval.

One run is a loop over failures (between two failures the progress is known), so a run costs
a few microseconds per failure: 10^5 nodes for 30 days (about 1,600 failures at a 5-year node
MTBF) take milliseconds.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from .model import Costs, Job, fatal
from .schemes import Scheme

Z95 = 1.96  # the normal quantile of a two-sided 95 % confidence interval


@dataclass
class Run:
    """One simulated run: its wall seconds and what happened in it."""

    wall: float = 0.0
    failures: int = 0
    beyond: int = 0  # losses beyond the RAM tolerance
    spare_relaunches: int = 0  # relaunches for want of a spare
    spares_used: int = 0


@dataclass
class _State:
    """The state of a run between events."""

    spares: int
    exposed: dict[int, float] = field(default_factory=dict)  # node -> end of its window


class Simulator:
    """Runs of one configuration; ``seed`` makes them reproducible."""

    def __init__(
        self, scheme: Scheme, job: Job, costs: Costs, interval: float, seed: int = 0
    ) -> None:
        self.scheme, self.job, self.costs = scheme, job, costs
        self.tau = interval
        self.segments = max(1, round(job.work / interval))  # the job's work, in intervals
        self.rate = job.node_rate + job.rack_rate
        self.rng = random.Random(seed)

    def run(self) -> Run:
        """One run from the start to the last checkpoint interval's commit."""
        run, state = Run(), _State(self.job.spares)
        period = self.tau + self.costs.checkpoint
        t, left = 0.0, self.segments  # compute starts at t with ``left`` intervals to go
        while True:
            t_fail = t + self._next()
            if t_fail >= t + left * period:
                run.wall = t + left * period
                return run
            left -= int((t_fail - t) // period)
            t = self._recover(t_fail, run, state)

    def _next(self) -> float:
        return self.rng.expovariate(self.rate) if self.rate > 0 else math.inf

    def _recover(self, t: float, run: Run, state: _State) -> float:
        """A failure at ``t`` and the recovery it starts, started again by every failure
        during it; returns when the computation resumes."""
        cost = self._failure(t, run, state)
        while (t_next := t + self._next()) < t + cost:
            t = t_next
            cost = max(cost, self._failure(t, run, state))
        return t + cost

    def _failure(self, t: float, run: Run, state: _State) -> float:
        """One failure event at ``t``: which nodes, and the cost of its recovery."""
        job, rng = self.job, self.rng
        if rng.random() * self.rate < job.rack_rate:
            first = rng.randrange(job.nodes // job.rack_nodes) * job.rack_nodes
            lost = list(range(first, first + job.rack_nodes))
        else:
            lost = [rng.randrange(job.nodes)]
        run.failures += 1
        state.exposed = {n: end for n, end in state.exposed.items() if end > t}
        if fatal(self.scheme, [*state.exposed, *lost], job.nodes, job.ranks_per_node):
            run.beyond += 1
        elif state.spares < len(lost):
            run.spare_relaunches += 1
        else:
            state.spares -= len(lost)
            run.spares_used += len(lost)
            for n in lost:
                state.exposed[n] = t + self.costs.recovery
            return self.costs.recovery
        state.spares, state.exposed = job.spares, {}  # a relaunch: fresh spares, all protected
        return self.costs.relaunch


@dataclass(frozen=True)
class Estimate:
    """A mean and its standard error."""

    mean: float
    se: float

    @property
    def half(self) -> float:
        """The half-width of the 95 % confidence interval."""
        return Z95 * self.se

    def covers(self, value: float, z: float = Z95) -> bool:
        """Whether ``value`` is within ``z`` standard errors of the mean (or rounding: a
        probability of 1e-7 against none in the runs)."""
        return abs(value - self.mean) <= z * self.se + 1e-6


@dataclass(frozen=True)
class Summary:
    """What the simulator measured over ``runs`` runs (compare with a model Prediction)."""

    runs: int
    efficiency: Estimate
    failures: Estimate
    spares_used: Estimate
    beyond_per_run: Estimate  # fraction of runs with at least one loss beyond the tolerance
    out_of_spares: Estimate  # fraction of runs that ran out of spares at least once
    beyond_per_second: float


def _mean(values: list[float]) -> Estimate:
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / max(n - 1, 1)
    return Estimate(mean, math.sqrt(var / n))


def simulate(
    scheme: Scheme, job: Job, costs: Costs, interval: float, runs: int = 200, seed: int = 0
) -> Summary:
    """``runs`` runs of the job; the efficiency is the job's work over the mean wall time."""
    sim = Simulator(scheme, job, costs, interval, seed)
    done = [sim.run() for _ in range(runs)]
    wall = _mean([r.wall for r in done])
    work = sim.segments * interval
    return Summary(
        runs=runs,
        efficiency=Estimate(work / wall.mean, work / wall.mean * wall.se / wall.mean),
        failures=_mean([r.failures for r in done]),
        spares_used=_mean([r.spares_used for r in done]),
        beyond_per_run=_mean([float(r.beyond > 0) for r in done]),
        out_of_spares=_mean([float(r.spare_relaunches > 0) for r in done]),
        beyond_per_second=sum(r.beyond for r in done) / sum(r.wall for r in done),
    )
