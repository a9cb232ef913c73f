"""A failure and cost model of a job protected by mpickpt (pure, no MPI).

What it computes for a job of ``nodes`` nodes running a scheme, from the per-node mean time
between failures and the costs of a checkpoint, an in-memory recovery and a relaunch:

* the efficiency (useful work / wall time) at a given interval and at Daly's optimum
  (:func:`mpickpt.policies.daly_interval`, the formula ``every="auto"`` uses);
* the memory mpickpt adds per rank;
* the rate of losses beyond the in-memory tolerance, from the exact tolerance of the
  scheme's layout (:func:`fatal`, checked against :mod:`mpickpt.layout` and the schemes'
  decoders by the tests);
* the spares a run consumes and the probability that it runs out of them.

The failure process (also what :mod:`mpickpt.simulate` draws): every worker node fails at
rate ``1/node_mtbf`` (exponential, independent); optionally whole racks of ``rack_nodes``
consecutive nodes fail at rate ``1/rack_mtbf`` each. A failure costs the work since the last
committed checkpoint plus a recovery (``recovery`` seconds, in RAM, one spare node per lost
node) or, when no spare is left or the loss is beyond the scheme's tolerance, a relaunch
(``relaunch`` seconds, from the disk tier, with a fresh set of spares). A failure during a
recovery starts it again. A lost node's data is unprotected for ``recovery`` seconds after
its failure (until the re-protect): a further failure of a node whose loss together with it
is beyond the tolerance, in that window, is a loss beyond the tolerance. Under these
assumptions one checkpoint interval of ``tau`` seconds of work takes on average
``(e^{l(tau+C)} - 1) (1/l + E[R])`` seconds, ``E[R] = sum_k q_k (e^{l r_k} - 1)/l`` over the
two kinds of recovery ``k`` (Bougeret et al., SC'11, with two restart costs).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from itertools import combinations

import numpy as np

from .errors import ConfigError, DecodeError
from .policies import daly_interval
from .schemes import Scheme, XorSet

YEAR = 365.0 * 86400.0
DAY = 86400.0


@dataclass(frozen=True)
class Costs:
    """Seconds per checkpoint, per in-memory recovery (failure -> resumed, re-protect
    included) and per relaunch from the disk tier (failure -> resumed); ``source`` says where
    the numbers come from."""

    checkpoint: float
    recovery: float
    relaunch: float
    source: str = "given"


@dataclass(frozen=True)
class Job:
    """The job: ``nodes`` worker nodes of ``ranks_per_node`` ranks with ``state`` bytes each,
    ``spares`` idle spare nodes, ``work`` seconds of computation to do, ``node_mtbf`` seconds
    between failures of one node; racks of ``rack_nodes`` consecutive nodes failing together
    every ``rack_mtbf`` seconds each (0 / inf: no correlated failures)."""

    nodes: int
    ranks_per_node: int
    state: float
    node_mtbf: float
    work: float
    spares: int = 0
    rack_nodes: int = 0
    rack_mtbf: float = math.inf

    @property
    def node_rate(self) -> float:
        """Node failures per second of the whole job."""
        return self.nodes / self.node_mtbf

    @property
    def rack_rate(self) -> float:
        """Rack failures per second of the whole job."""
        if self.rack_nodes < 2 or not math.isfinite(self.rack_mtbf):
            return 0.0
        return (self.nodes // self.rack_nodes) / self.rack_mtbf


# -- the exact tolerance of a layout, at the level of nodes ---------------------------------


@cache
def _decodes(scheme: Scheme, lost: frozenset[int]) -> bool:
    """Whether an owner's segment survives the loss of its backups ``lost`` (slots)."""
    names = [p.name for p in scheme.pieces() if p.backup not in lost]
    try:
        scheme.needed(names)
    except DecodeError:
        return False
    return True


def set_count(nodes: int, ranks_per_node: int, group: int) -> int:
    """The number of xorset sets (:func:`mpickpt.schemes.xorset.form_sets` deals the ranks,
    node by node, round robin into ``ranks // group`` sets)."""
    return max(1, nodes * ranks_per_node // group)


def share_a_set(offset: np.ndarray | int, ranks_per_node: int, nsets: int) -> np.ndarray:
    """Whether two nodes ``offset`` apart hold members of one xorset set: rank ``l`` of node
    ``a`` is listed at ``a * R + l`` and sits in set ``(a * R + l) mod nsets``."""
    r = (np.asarray(offset) * ranks_per_node) % nsets
    return np.minimum(r, nsets - r) <= ranks_per_node - 1


def fatal(scheme: Scheme, dead: Iterable[int], nodes: int, ranks_per_node: int) -> bool:
    """Whether losing the nodes ``dead`` (ids ``0..nodes-1``) together is beyond the RAM
    tolerance of ``scheme`` laid out by mpickpt over nodes as failure domains.

    Per-owner schemes: :func:`mpickpt.layout.choose_backups` puts backup ``j`` of every rank
    of node ``x`` on node ``(x + j + 1) mod nodes``; a dead owner needs its segment decodable
    from its surviving backups. xorset: two dead nodes that share a set."""
    dead = sorted(set(dead))
    if isinstance(scheme, XorSet):
        nsets = set_count(nodes, ranks_per_node, scheme.group)
        return any(
            bool(share_a_set(b - a, ranks_per_node, nsets)) for a, b in combinations(dead, 2)
        )
    gone = set(dead)
    for x in dead:
        lost = frozenset(j for j in range(scheme.backups) if (x + j + 1) % nodes in gone)
        if lost and not _decodes(scheme, lost):
            return True
    return False


def check_layout(scheme: Scheme, nodes: int, ranks_per_node: int) -> None:
    """Raise :class:`ConfigError` when mpickpt cannot lay ``scheme`` out over these nodes
    (the model's node-level structure then does not hold)."""
    if isinstance(scheme, XorSet):
        if set_count(nodes, ranks_per_node, scheme.group) < ranks_per_node or nodes < 2:
            raise ConfigError(
                f"{scheme!r} needs at least {scheme.group} nodes so that no set has two "
                f"members on one node (got {nodes})"
            )
    elif nodes < scheme.backups + 1:
        raise ConfigError(
            f"{scheme!r} puts {scheme.backups} backups on other nodes: it needs at least "
            f"{scheme.backups + 1} nodes (got {nodes})"
        )


@dataclass(frozen=True)
class Exposure:
    """The minimal sets of nodes whose loss within one recovery window is beyond the
    tolerance: ``counts[m]`` sets of ``m`` nodes; ``rack``: a whole rack's loss is."""

    counts: dict[int, int] = field(default_factory=dict)
    rack: bool = False


def exposure(scheme: Scheme, job: Job) -> Exposure:
    """The :class:`Exposure` of ``scheme`` on ``job``'s nodes."""
    n, per = job.nodes, job.ranks_per_node
    check_layout(scheme, n, per)
    rack = job.rack_rate > 0 and fatal(scheme, range(job.rack_nodes), n, per)
    if isinstance(scheme, XorSet):
        nsets = set_count(n, per, scheme.group)
        offsets = np.arange(1, n)
        pairs = int(np.sum((n - offsets) * share_a_set(offsets, per, nsets)))
        return Exposure({2: pairs} if pairs else {}, rack)
    return Exposure(_owner_sets(scheme, n, per), rack)


def _owner_sets(scheme: Scheme, nodes: int, per: int) -> dict[int, int]:
    """Minimal fatal node sets of a per-owner scheme by size: an owner's node and the
    smallest sets of its backups' nodes it cannot be decoded without (distinct sets only)."""
    minimal: list[frozenset[int]] = []
    for size in range(1, scheme.backups + 1):
        for lost in combinations(range(scheme.backups), size):
            slots = frozenset(lost)
            if any(m <= slots for m in minimal) or _decodes(scheme, slots):
                continue
            minimal.append(slots)
    found: set[frozenset[int]] = set()
    counts: dict[int, int] = {}
    wraps = nodes <= 2 * scheme.backups + 1  # a set might be counted from two owners
    for slots in minimal:
        offsets = frozenset([0, *((j + 1) % nodes for j in slots)])
        if not wraps:
            counts[len(offsets)] = counts.get(len(offsets), 0) + nodes
            continue
        for x in range(nodes):
            found.add(frozenset((x + o) % nodes for o in offsets))
    for s in found:
        counts[len(s)] = counts.get(len(s), 0) + 1
    return counts


def coincidence_rate(ex: Exposure, job: Job, window: float, in_ram: float = 1.0) -> float:
    """Losses beyond the RAM tolerance per second from node failures: a minimal fatal set of
    ``m`` nodes is lost when its last node fails while the ``m - 1`` others are within
    ``window`` seconds of a failure that was recovered in RAM (a fraction ``in_ram`` of the
    failures; a relaunch protects every node again): rate ``m / M * p^(m-1)`` with
    ``p = in_ram (1 - e^(-window/M))``."""
    m_node = job.node_mtbf
    p = -math.expm1(-window / m_node) * in_ram
    return sum(c * m / m_node * p ** (m - 1) for m, c in ex.counts.items())


# -- spares ------------------------------------------------------------------------------


def poisson_pmf(mean: float, upto: int) -> np.ndarray:
    """``P(K = k)`` for ``k = 0..upto`` of a Poisson variable of mean ``mean``."""
    k = np.arange(upto + 1)
    if mean <= 0:
        return (k == 0).astype(float)
    logp = k * math.log(mean) - mean - np.array([math.lgamma(i + 1) for i in k])
    return np.exp(logp)


@dataclass(frozen=True)
class Spares:
    """Expected over a run: spare nodes used, P(running out at least once), relaunches for
    want of a spare."""

    used: float
    out: float
    relaunches: float


def spares_outlook(job: Job, wall: float, beyond_node: float, rack_fatal: bool) -> Spares:
    """:class:`Spares` for a run of ``wall`` seconds: a Markov chain over (ran out yet,
    spares left), one step per failure, averaged over the Poisson number of failures. A node
    failure is beyond the tolerance with probability ``beyond_node``, a rack failure when
    ``rack_fatal``; either relaunches the job, as a failure that finds too few spares does,
    and a relaunch brings a fresh set of spares."""
    rate = job.node_rate + job.rack_rate
    if rate <= 0:
        return Spares(0.0, 0.0, 0.0)
    mean = rate * wall
    kmax = int(mean + 12 * math.sqrt(mean) + 10)
    tail = 1 - np.concatenate([[0.0], np.cumsum(poisson_pmf(mean, kmax))[:-1]])  # P(K >= k)
    state = np.zeros((2, job.spares + 1))
    state[0, job.spares] = 1.0
    used = out = relaunches = 0.0
    for k in range(1, kmax + 1):
        state, du, dr, first = _one_failure(state, job, beyond_node, rack_fatal)
        used, relaunches, out = (
            used + tail[k] * du,
            relaunches + tail[k] * dr,
            out + tail[k] * first,
        )
    return Spares(float(used), float(out), float(relaunches))


def _one_failure(
    state: np.ndarray, job: Job, beyond_node: float, rack_fatal: bool
) -> tuple[np.ndarray, float, float, float]:
    """One step of :func:`spares_outlook`'s chain: the new state, and the expected spares
    used, relaunches for want of a spare, and first times out of spares in this step."""
    s, rate = job.spares, job.node_rate + job.rack_rate
    p_rack = job.rack_rate / rate
    fits = (1 - p_rack) * (1 - beyond_node)  # a node failure a spare can take
    new = np.zeros_like(state)
    new[:, s] += ((1 - p_rack) * beyond_node + (p_rack if rack_fatal else 0.0)) * state.sum(1)
    new[:, :-1] += fits * state[:, 1:]
    short = fits * state[:, 0]  # per "ran out yet": no spare left
    used = fits * float(state[:, 1:].sum())
    if p_rack > 0 and not rack_fatal:
        need = job.rack_nodes
        if need <= s:
            new[:, : s + 1 - need] += p_rack * state[:, need:]
            used += need * p_rack * float(state[:, need:].sum())
        short = short + p_rack * state[:, : min(need, s + 1)].sum(1)
    new[1, s] += short.sum()
    return new, used, float(short.sum()), float(short[0])


# -- efficiency --------------------------------------------------------------------------


def recovering(costs: Costs, rate: float, fallback: float) -> float:
    """Expected recovery seconds per failure that interrupts the computation, times ``rate``
    (a failure during a recovery starts it again): the time recovering per time computing."""
    redo = (1 - fallback) * math.expm1(rate * costs.recovery)
    return redo + fallback * math.expm1(rate * costs.relaunch)


def segment_time(tau: float, costs: Costs, rate: float, fallback: float) -> float:
    """Expected wall seconds to commit ``tau`` seconds of work and its checkpoint, with
    failures at ``rate`` per second, a fraction ``fallback`` of those that interrupt the
    computation needing a relaunch."""
    if rate <= 0:
        return tau + costs.checkpoint
    return (
        math.expm1(rate * (tau + costs.checkpoint)) * (1 + recovering(costs, rate, fallback)) / rate
    )


def efficiency(tau: float, costs: Costs, rate: float, fallback: float) -> float:
    """Useful work per wall second at interval ``tau`` (see :func:`segment_time`)."""
    return tau / segment_time(tau, costs, rate, fallback)


def label(scheme: Scheme) -> str:
    """``parity(group=3, backups=4)``: the scheme's id and parameters, without subsegments."""
    args = [f"{k}={v}" for k, v in scheme.get_config().items() if k not in ("id", "subsegments")]
    return f"{scheme.scheme_id}({', '.join(args)})"


@dataclass(frozen=True)
class Prediction:
    """What the model predicts for one configuration (seconds, bytes, probabilities);
    ``node_efficiency`` counts the spare nodes' idle time as waste."""

    scheme: str
    spares: int
    interval: float
    efficiency: float
    node_efficiency: float
    wall: float
    memory: float
    failures: float
    beyond_per_day: float
    beyond_per_run: float
    spares_used: float
    out_of_spares: float
    relaunches: float


def interval_for(job: Job, costs: Costs) -> float:
    """Daly's interval for the job's mean time between failures (``every="auto"``'s)."""
    rate = job.node_rate + job.rack_rate
    return daly_interval(costs.checkpoint, 1 / rate) if rate > 0 else job.work


def predict(scheme: Scheme, job: Job, costs: Costs, interval: float | None = None) -> Prediction:
    """The model's :class:`Prediction` at ``interval`` (default: :func:`interval_for`)."""
    tau = interval_for(job, costs) if interval is None else interval
    rate = job.node_rate + job.rack_rate
    ex = exposure(scheme, job)
    racks = job.rack_rate if ex.rack else 0.0  # rack failures beyond the tolerance per second
    wall, fallback, in_ram = job.work / efficiency(tau, costs, rate, 0.0), 0.0, 1.0
    for _ in range(50):  # the fallbacks depend on the wall time, which depends on them
        nodes = coincidence_rate(ex, job, costs.recovery, in_ram)
        spares = spares_outlook(job, wall, nodes / job.node_rate if nodes else 0.0, ex.rack)
        lost = spares.relaunches + (nodes + racks) * wall  # relaunches in the run
        if rate > 0:
            in_ram = max(0.0, 1 - lost / (rate * wall))
        # per failure that interrupts the computation (the others restart a recovery)
        computing = rate * wall / (1 + recovering(costs, rate, fallback)) if rate > 0 else 1.0
        fallback = min(1.0, lost / computing)
        before, wall = wall, job.work / efficiency(tau, costs, rate, fallback)
        if abs(wall - before) <= 1e-12 * wall:
            break
    beyond = nodes + racks
    return Prediction(
        scheme=label(scheme),
        spares=job.spares,
        interval=tau,
        efficiency=job.work / wall,
        node_efficiency=job.work / wall * job.nodes / (job.nodes + job.spares),
        wall=wall,
        memory=job.state * (1 + 2 * scheme.overhead),
        failures=rate * wall,
        beyond_per_day=-math.expm1(-beyond * DAY),
        beyond_per_run=-math.expm1(-beyond * wall),
        spares_used=spares.used,
        out_of_spares=spares.out,
        relaunches=spares.relaunches,
    )


# -- costs -------------------------------------------------------------------------------

# Fitted on the project's own measurements (docs/measurements.md: 8 ranks on 2 cores, shared
# memory): a checkpoint moves (1 + overhead) bytes per byte of state at about 1.6 GB/s after
# 15 ms of fixed cost; kill -> resumed is 0.15 s of detection and agreement plus 3.5 s per GB
# of state; a relaunch that reloads HDF5 is 1.5 s plus 40 s per GB.
FIT_CHECKPOINT = (0.015, 1.6e9)
FIT_RECOVERY = (0.15, 3.5e-9)
FIT_RELAUNCH = (1.5, 40e-9)
FITTED = "fitted on mpickpt's own measurements (2 cores, shared memory; docs/measurements.md)"


def fitted_costs(scheme: Scheme, state: float) -> Costs:
    """The costs of :data:`FITTED` for ``state`` bytes per rank."""
    fixed, rate = FIT_CHECKPOINT
    return Costs(
        checkpoint=fixed + (1 + scheme.overhead) * state / rate,
        recovery=FIT_RECOVERY[0] + FIT_RECOVERY[1] * state,
        relaunch=FIT_RELAUNCH[0] + FIT_RELAUNCH[1] * state,
        source=FITTED,
    )


def _line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares ``(a, b)`` of ``y = a + b x`` (through the origin with one x)."""
    xs = np.array([x for x, _ in points])
    ys = np.array([y for _, y in points])
    if len(set(xs)) < 2:
        return 0.0, float(ys.mean() / xs.mean())
    b, a = np.polyfit(xs, ys, 1)
    return max(float(a), 0.0), float(b)


def _at(points: list[tuple[float, float]], state: float) -> float:
    a, b = _line(points)
    return a + b * state


def costs_from(data: dict, scheme: Scheme, state: float) -> Costs:
    """Costs at ``state`` bytes per rank from a measurement file: a run report, the JSON of
    ``benchmarks/bench_checkpoint.py`` or ``bench_recovery.py``, or ``{"checkpoint": s,
    "recovery": s, "relaunch": s}``. Times are scaled linearly in the bytes per rank; what
    the file does not give comes from :func:`fitted_costs`."""
    fit = fitted_costs(scheme, state)
    got: dict[str, float] = {}
    if data.get("format") == "mpickpt-report":
        c = data["checkpoints"]
        per = c["bytes"] / max(c["checkpoints"], 1)
        got["checkpoint"] = _at([(per, c["seconds"] / max(c["checkpoints"], 1))], state)
        recs = [r["timeline"][-1][0] for r in data.get("recoveries", []) if r.get("timeline")]
        if recs:
            got["recovery"] = _at([(per, float(np.mean(recs)))], state)
    elif "results" in data and "schemes" in data and isinstance(data["schemes"], dict):
        pts = [
            (r["size_mb"] * 2**20, float(np.median(s["times"])))
            for r in data["results"]
            for s in r["schemes"]
            if s["scheme"] == scheme.scheme_id and s["times"]
        ]
        if pts:
            got["checkpoint"] = _at(pts, state)
    elif "results" in data:  # bench_recovery
        for key, runs in (("recovery", "kills"), ("relaunch", "relaunches")):
            pts = [
                (r["rank_mb"] * 2**20, float(np.median([k["resumed"] for k in r[runs]])))
                for r in data["results"]
                if r.get(runs)
            ]
            if pts:
                got[key] = _at(pts, state)
    else:
        got = {k: float(data[k]) for k in ("checkpoint", "recovery", "relaunch") if k in data}
    if not got:
        raise ConfigError("the costs file holds no checkpoint, recovery or relaunch time")
    return Costs(
        checkpoint=got.get("checkpoint", fit.checkpoint),
        recovery=got.get("recovery", fit.recovery),
        relaunch=got.get("relaunch", fit.relaunch),
        source=f"measured: {', '.join(sorted(got))}; the rest {FITTED}",
    )
