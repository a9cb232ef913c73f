"""The failure model (``mpickpt.model``) against the layout it describes and against the
simulator (``mpickpt.simulate``), and ``mpickpt plan`` run as a command. Pure: no MPI.

The simulator draws the failure process node by node and decides every loss with the layout;
the model computes the same quantities in closed form. They must agree within the simulator's
confidence interval (3.3 standard errors: a 99.9 % interval, so that the dozens of seeded
comparisons here do not miss by chance).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from itertools import combinations
from pathlib import Path

import pytest

from mpickpt import ConfigError, DecodeError
from mpickpt.layout import choose_backups
from mpickpt.model import (
    YEAR,
    Costs,
    Job,
    costs_from,
    fatal,
    fitted_costs,
    interval_for,
    predict,
)
from mpickpt.policies import Auto, Estimates, daly_interval
from mpickpt.schemes import Mirror, Parity, ReedSolomon, Scheme, Stripe, XorSet
from mpickpt.schemes.xorset import form_sets
from mpickpt.simulate import simulate

Z = 3.29  # standard errors: a two-sided 99.9 % interval

SCHEMES = [
    Parity(3, 4),
    Parity(2, 5),
    Mirror(1),
    Mirror(2),
    Stripe(2),
    ReedSolomon(2, 2),
    ReedSolomon(2, 1, 4),
    XorSet(3),
    XorSet(4),
]


def truly_fatal(scheme: Scheme, dead_nodes: set[int], nodes: int, per: int) -> bool:
    """The loss sweep's verdict on the real layout: the ranks' backups from
    :func:`choose_backups` (sets from :func:`form_sets`) and the scheme's own decoder."""
    domains = [r // per for r in range(nodes * per)]
    dead = {r for r, d in enumerate(domains) if d in dead_nodes}
    if isinstance(scheme, XorSet):
        return any(len(set(s) & dead) > 1 for s in form_sets(domains, scheme.group))
    backups = choose_backups(scheme.layout_domains(domains), scheme.backups)
    for owner in dead:
        lost = {j for j, b in enumerate(backups[owner]) if b in dead}
        try:
            scheme.needed([p.name for p in scheme.pieces() if p.backup not in lost])
        except DecodeError:
            return True
    return False


@pytest.mark.parametrize("scheme", SCHEMES, ids=repr)
@pytest.mark.parametrize(("nodes", "per"), [(7, 1), (9, 2), (12, 3)])
def test_fatal_is_the_layouts_tolerance(scheme, nodes, per):
    """Every set of up to tolerance + 2 lost nodes (the first that can be fatal, and one
    more): the model's node-level rule gives the verdict of the real placement and decoder."""
    if nodes < scheme.backups + 1 or (isinstance(scheme, XorSet) and nodes < scheme.group):
        pytest.skip("too few nodes for this scheme")
    verdicts = set()
    for k in range(1, scheme.tolerance + 3):
        for dead in combinations(range(nodes), k):
            want = truly_fatal(scheme, set(dead), nodes, per)
            assert fatal(scheme, dead, nodes, per) == want, (scheme, dead)
            verdicts.add(want)
    assert verdicts == {False, True}  # the sweep saw both outcomes


def agree(scheme: Scheme, job: Job, costs: Costs, runs: int, seed: int = 1) -> None:
    """The model and the simulator on one configuration, at Daly's interval."""
    pred = predict(scheme, job, costs)
    sim = simulate(scheme, job, costs, pred.interval, runs=runs, seed=seed)
    what = f"{scheme!r} {job}: model {pred}, simulator {sim}"
    assert sim.efficiency.covers(pred.efficiency, Z), what
    assert sim.failures.covers(pred.failures, Z), what
    assert sim.spares_used.covers(pred.spares_used, Z), what
    assert sim.out_of_spares.covers(pred.out_of_spares, Z), what
    assert sim.beyond_per_run.covers(pred.beyond_per_run, Z), what


HOUR = 3600.0
# (scheme, nodes, ranks per node, spares, node MTBF h, recovery s, relaunch s): failure rates
# and recovery windows far above real ones, so that every effect shows in a few hundred runs
GRID = [
    (Mirror(1), 16, 2, 4, 8, 120, 600),
    (Stripe(2), 16, 1, 8, 8, 120, 300),
    (XorSet(4), 16, 2, 4, 8, 120, 600),
    (Parity(3, 4), 8, 1, 4, 8, 400, 600),
    (ReedSolomon(2, 1, 4), 10, 1, 6, 8, 400, 600),
    (Mirror(2), 6, 4, 2, 8, 400, 600),
    (Parity(3, 4), 32, 2, 0, 24, 60, 300),
    (XorSet(3), 12, 1, 64, 4, 300, 300),
]


@pytest.mark.parametrize(("scheme", "nodes", "per", "spares", "mtbf", "rec", "rel"), GRID)
def test_model_agrees_with_the_simulator(scheme, nodes, per, spares, mtbf, rec, rel):
    job = Job(nodes, per, 1e9, mtbf * HOUR, 24 * HOUR, spares)
    agree(scheme, job, Costs(30.0, rec, rel), runs=300)


def test_model_agrees_with_racks_failing_together():
    """Racks of 4 nodes: with mirror(1) over nodes a rack takes owners with their copies."""
    job = Job(16, 2, 1e9, 16 * HOUR, 24 * HOUR, 8, rack_nodes=4, rack_mtbf=20 * HOUR)
    agree(Mirror(1), job, Costs(30.0, 60.0, 300.0), runs=300)
    assert predict(Mirror(1), job, Costs(30.0, 60.0, 300.0)).beyond_per_run > 0.5


def test_model_agrees_at_scale():
    """10^5 ranks (1,563 nodes of 64) for 30 days at a one-year node MTBF."""
    job = Job(1563, 64, 2**30, 1 * YEAR, 30 * 86400.0, 16)
    scheme = Parity(3, 4)
    agree(scheme, job, fitted_costs(scheme, job.state), runs=60)


def test_simulator_speed():
    """One run of 10^5 nodes for 30 days at a 5-year node MTBF (about 1,600 failures) takes
    well under a second (docs/measurements.md gives the time of 100 runs)."""
    job = Job(100_000, 1, 2**30, 5 * YEAR, 30 * 86400.0, 64)
    costs = fitted_costs(XorSet(8), job.state)
    t = time.perf_counter()
    sim = simulate(XorSet(8), job, costs, interval_for(job, costs), runs=1)
    assert time.perf_counter() - t < 5
    assert sim.failures.mean > 1000


def test_interval_is_every_autos():
    """``mpickpt plan``'s interval is the one ``every="auto"`` aims at for the job's MTBF."""
    job = Job(2000, 64, 2 * 2**30, 5 * YEAR, 24 * HOUR, 4, rack_nodes=40, rack_mtbf=50 * YEAR)
    costs = fitted_costs(Parity(3, 4), job.state)
    mtbf = 1 / (job.node_rate + job.rack_rate)
    assert predict(Parity(3, 4), job, costs).interval == Auto(mtbf).target(
        Estimates(checkpoint=costs.checkpoint)
    )
    assert interval_for(job, costs) == daly_interval(costs.checkpoint, mtbf)


def test_no_failures_costs_only_the_checkpoints():
    job = Job(10, 1, 1e9, math.inf, 10 * HOUR, 0)
    pred = predict(Mirror(1), job, Costs(10.0, 1.0, 1.0), interval=990.0)
    assert pred.efficiency == pytest.approx(990 / 1000)
    assert pred.failures == 0 and pred.beyond_per_run == 0


def test_too_few_nodes_for_the_scheme():
    with pytest.raises(ConfigError, match="at least 5 nodes"):
        predict(Parity(3, 4), Job(4, 8, 1e9, YEAR, HOUR, 1), Costs(1, 1, 1))


def test_costs_from_a_report_scale_with_the_state():
    """A run report's checkpoint and recovery times, per byte of its segment."""
    report = {
        "format": "mpickpt-report",
        "checkpoints": {"checkpoints": 4, "bytes": 4 * 2**20, "seconds": 0.4},
        "recoveries": [{"timeline": [[0.0, "failure detected"], [0.3, "re-protected"]]}],
    }
    small = costs_from(report, Parity(3, 4), 2**20)
    big = costs_from(report, Parity(3, 4), 2**30)
    assert small.checkpoint == pytest.approx(0.1) and small.recovery == pytest.approx(0.3)
    assert big.checkpoint == pytest.approx(1024 * small.checkpoint)
    assert big.relaunch == fitted_costs(Parity(3, 4), 2**30).relaunch
    with pytest.raises(ConfigError):
        costs_from({"nothing": 1}, Parity(3, 4), 2**20)


def test_costs_from_bench_checkpoint_fit_a_line():
    data = {
        "ranks": 8,
        "schemes": {"parity": {"group": 3, "backups": 4}},
        "results": [
            {"size_mb": mb, "schemes": [{"scheme": "parity", "times": [0.01 + 0.002 * mb]}]}
            for mb in (16, 64, 256)
        ],
    }
    c = costs_from(data, Parity(3, 4), 128 * 2**20)
    assert c.checkpoint == pytest.approx(0.01 + 0.002 * 128)
    assert "measured: checkpoint" in c.source


def mpickpt_command() -> list[str]:
    """The installed console script (the package's entry point), next to this python."""
    script = Path(sys.executable).parent / "mpickpt"
    return [str(script)] if script.exists() else [shutil.which("mpickpt") or "mpickpt"]


PLAN = ["plan", "--nodes", "2000", "--ranks-per-node", "64", "--state", "2GiB"]
PLAN += ["--node-mtbf", "5y", "--hours", "24"]


def test_plan_command_json(tmp_path):
    out = subprocess.run(
        [*mpickpt_command(), *PLAN, "--json"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout, parse_constant=pytest.fail)  # strict JSON: no Infinity
    configs = data["configurations"]
    assert {c["scheme"].split("(")[0] for c in configs} == {
        "parity",
        "mirror",
        "stripe",
        "rs",
        "xorset",
    }
    pick = data["recommendation"]
    assert pick in configs and pick["beyond_per_run"] <= 1e-3 and data["reason"]
    safe = [c["node_efficiency"] for c in configs if c["beyond_per_run"] <= 1e-3]
    assert pick["node_efficiency"] >= max(safe) - 1e-4
    # the costs file form: the numbers given are the numbers used
    costs = tmp_path / "costs.json"
    costs.write_text(json.dumps({"checkpoint": 20.0, "recovery": 30.0, "relaunch": 600.0}))
    out = subprocess.run(
        [*mpickpt_command(), *PLAN, "--costs", str(costs), "--schemes", "parity", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    data = json.loads(out.stdout)
    mtbf = 5 * YEAR / 2000
    assert {c["interval"] for c in data["configurations"]} == {daly_interval(20.0, mtbf)}


def test_plan_command_text_and_errors():
    out = subprocess.run([*mpickpt_command(), *PLAN], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "recommended: " in out.stdout and "fitted on mpickpt's own measurements" in out.stdout
    bad = subprocess.run(
        [*mpickpt_command(), *PLAN[:-4], "--state", "lots"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--state must be a size" in bad.stderr
