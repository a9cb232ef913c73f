"""``mpickpt plan``: which scheme, interval and number of spares, from :mod:`mpickpt.model`.

    mpickpt plan --nodes 2000 --ranks-per-node 64 --state 2GiB --node-mtbf 5y --hours 24

prints a table over schemes and spares (efficiency, interval, memory, probability of a loss
beyond the RAM tolerance, spares used) and a recommendation with its reason; ``--json`` gives
the same as data. Without ``--costs`` the costs are fitted on the project's own measurements.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import asdict

from .errors import ConfigError
from .model import YEAR, Costs, Job, Prediction, costs_from, fitted_costs, label, predict
from .policies import format_duration, parse_duration
from .schemes import Scheme, get_scheme

# the schemes compared by default, with mpickpt's default parameters
SCHEMES = {
    "parity": {"group": 3, "backups": 4},
    "mirror": {"copies": 2},
    "stripe": {"backups": 4},
    "rs": {"group": 4, "parity": 2},
    "xorset": {"group": 8},
}
MAX_LOSS = 1e-3  # the recommendation's bound on P(loss beyond the RAM tolerance) per run
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([kmgt]?)(i?)b?\s*$")


def parse_size(text: str) -> float:
    """Bytes from ``"2GiB"``, ``"512MB"``, ``"1e9"``."""
    m = _SIZE.match(text.lower())
    if not m:
        raise ConfigError(f"--state must be a size such as 2GiB or 512MB, got {text!r}")
    power = " kmgt".index(m.group(2) or " ")
    return float(m.group(1)) * (1024 if m.group(3) else 1000) ** power


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``mpickpt plan``."""
    p.add_argument("--nodes", type=int, required=True, help="worker nodes")
    p.add_argument("--ranks-per-node", type=int, default=1, help="ranks per node")
    p.add_argument("--state", default="1GiB", help="checkpointed bytes per rank (2GiB, 512MB)")
    p.add_argument("--node-mtbf", default="5y", help="mean time between failures of one node")
    p.add_argument("--hours", type=float, default=24, help="hours of computation of the job")
    p.add_argument("--costs", default=None, help="a run report or benchmark JSON (see docs)")
    p.add_argument("--schemes", default=",".join(SCHEMES), help="schemes to compare")
    p.add_argument("--spares", default=None, help="spare nodes to compare (default: a range)")
    p.add_argument("--interval", default=None, help="checkpoint interval (default: Daly's)")
    p.add_argument("--rack-nodes", type=int, default=0, help="nodes per rack failing together")
    p.add_argument("--rack-mtbf", default=None, help="mean time between failures of one rack")
    p.add_argument("--max-loss", type=float, default=MAX_LOSS, help="P(loss beyond RAM)/run")
    p.add_argument("--json", action="store_true", help="print one JSON document instead")


def job_from(a: argparse.Namespace, spares: int) -> Job:
    return Job(
        nodes=a.nodes,
        ranks_per_node=a.ranks_per_node,
        state=parse_size(a.state),
        node_mtbf=parse_duration(a.node_mtbf, "--node-mtbf"),
        work=a.hours * 3600.0,
        spares=spares,
        rack_nodes=a.rack_nodes,
        rack_mtbf=parse_duration(a.rack_mtbf, "--rack-mtbf") if a.rack_mtbf else math.inf,
    )


def spare_choices(job: Job) -> list[int]:
    """0, then powers of two up to about twice the failures expected in the job."""
    expected = (job.node_rate + job.rack_rate * max(job.rack_nodes, 1)) * job.work
    top = max(2.0, 2 * (expected + 3 * math.sqrt(expected) + 1))
    return [0] + [2**i for i in range(int(math.log2(top)) + 1)]


def costs_for(a: argparse.Namespace, scheme: Scheme, state: float) -> Costs:
    if a.costs is None:
        return fitted_costs(scheme, state)
    with open(a.costs) as f:
        return costs_from(json.load(f), scheme, state)


def predictions(a: argparse.Namespace) -> tuple[list[Prediction], dict[str, Costs], list[str]]:
    """Every (scheme, spares) pair's prediction, the costs per scheme, and notes."""
    base = job_from(a, 0)
    spares = [int(s) for s in a.spares.split(",")] if a.spares else spare_choices(base)
    interval = parse_duration(a.interval, "--interval") if a.interval else None
    out, costs, notes = [], {}, []
    for name in filter(None, a.schemes.split(",")):
        scheme = get_scheme(name, **SCHEMES.get(name, {}))
        costs[label(scheme)] = c = costs_for(a, scheme, base.state)
        try:
            out += [predict(scheme, job_from(a, s), c, interval) for s in spares]
        except ConfigError as e:
            notes.append(f"{label(scheme)} left out: {e}")
    return out, costs, notes


def recommend(preds: list[Prediction], max_loss: float) -> tuple[Prediction | None, str]:
    """The configuration with the most useful work per allocated node (spares included)
    among those whose P(loss beyond RAM) per run is at most ``max_loss``; of those within
    0.01 point of it, the one with the least memory."""
    safe = [p for p in preds if p.beyond_per_run <= max_loss]
    if not safe:
        return None, f"no configuration keeps P(loss beyond RAM) per run <= {max_loss:g}"
    best = max(p.node_efficiency for p in safe)
    pick = min((p for p in safe if p.node_efficiency >= best - 1e-4), key=lambda p: p.memory)
    why = (
        f"the most useful work per allocated node, spares included "
        f"({100 * pick.node_efficiency:.2f} %; {100 * pick.efficiency:.2f} % of the wall time "
        f"is useful) among the {len(safe)} of {len(preds)} configurations with P(loss beyond "
        f"RAM) per run <= {max_loss:g}"
    )
    return pick, why


def table(preds: list[Prediction]) -> list[str]:
    lines = [
        "| scheme | spares | efficiency | per node | interval | memory/rank | "
        "P(loss>RAM)/run | spares used | P(out of spares) | relaunches |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in preds:
        lines.append(
            f"| {p.scheme} | {p.spares} | {100 * p.efficiency:.2f} % | "
            f"{100 * p.node_efficiency:.2f} % | "
            f"{format_duration(p.interval)} | {p.memory / 2**30:.2f} GiB | "
            f"{p.beyond_per_run:.2g} | {p.spares_used:.2f} | {p.out_of_spares:.2g} | "
            f"{p.relaunches:.2g} |"
        )
    return lines


def finite(x: float) -> float | None:
    """``x``, or ``None`` for infinity (strict JSON has no infinity)."""
    return x if math.isfinite(x) else None


def run(a: argparse.Namespace) -> int:
    """``mpickpt plan``: print the table and the recommendation (or one JSON document)."""
    preds, costs, notes = predictions(a)
    pick, why = recommend(preds, a.max_loss)
    job = job_from(a, 0)
    if a.json:
        print(json.dumps({
            "job": asdict(job) | {"spares": None, "rack_mtbf": finite(job.rack_mtbf)},
            "costs": {k: asdict(c) for k, c in costs.items()},
            "configurations": [asdict(p) for p in preds],
            "recommendation": asdict(pick) if pick else None,
            "reason": why,
            "notes": notes,
        }, default=str))  # fmt: skip
        return 0
    print(
        f"{a.nodes} nodes x {a.ranks_per_node} ranks, {job.state / 2**30:.3g} GiB per rank, "
        f"node MTBF {job.node_mtbf / YEAR:.3g} y, {a.hours:g} h of computation: "
        f"{(job.node_rate + job.rack_rate) * job.work:.3g} failures expected"
    )
    for name, c in costs.items():
        print(
            f"{name}: checkpoint {format_duration(c.checkpoint)}, recovery "
            f"{format_duration(c.recovery)}, relaunch {format_duration(c.relaunch)}"
        )
    print(f"(costs {next(iter(costs.values())).source})" if costs else "")
    print("\n".join(table(preds) + notes))
    if pick is None:
        print(f"\nno recommendation: {why}")
        return 0
    print(f"\nrecommended: {pick.scheme} with {pick.spares} spare node(s), a checkpoint every "
          f"{format_duration(pick.interval)} of computation: {why}")  # fmt: skip
    return 0
