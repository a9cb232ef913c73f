"""The picture of the "Choosing a configuration" page: the model's efficiency against the node
count, one line per scheme, with simulator points on top; beside it, the model's probability
of a loss beyond the in-memory tolerance per run.

    python benchmarks/plot_model.py --png docs/_static/model_efficiency.png

64 ranks per node, 2 GiB per rank, a 5-year node MTBF, 24 hours of computation, the costs
``mpickpt plan`` uses without ``--costs`` and, at every node count, the number of spare nodes
``mpickpt plan`` would pick for that scheme (the most useful work per allocated node). The
simulator's points (500 runs each, 95 % interval) are drawn at every power of ten. Needs
matplotlib (the ``bench`` extra). No MPI.
"""

from __future__ import annotations

import argparse

import numpy as np

from mpickpt.advice import SCHEMES, spare_choices
from mpickpt.model import YEAR, Job, Prediction, fitted_costs, label, predict
from mpickpt.schemes import Scheme, get_scheme
from mpickpt.simulate import simulate

STATE = 2 * 2**30
PER_NODE = 64


def best(scheme: Scheme, nodes: int) -> tuple[Job, Prediction]:
    """The job at ``nodes`` with the spares of the most useful work per allocated node."""
    base = Job(nodes, PER_NODE, STATE, 5 * YEAR, 24 * 3600.0)
    costs = fitted_costs(scheme, STATE)
    options = []
    for s in spare_choices(base):
        job = Job(nodes, PER_NODE, STATE, 5 * YEAR, 24 * 3600.0, s)
        options.append((job, predict(scheme, job, costs)))
    return max(options, key=lambda o: o[1].node_efficiency)


def exposed(scheme: Scheme, nodes: int) -> float:
    """P(loss beyond RAM) per run with spares enough for every failure (with none, every
    failure relaunches from disk and nothing is ever exposed)."""
    job = Job(nodes, PER_NODE, STATE, 5 * YEAR, 24 * 3600.0, 256)
    return max(predict(scheme, job, fitted_costs(scheme, STATE)).beyond_per_run, 1e-30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--png", default="model_efficiency.png")
    p.add_argument("--runs", type=int, default=500)
    a = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.unique(np.logspace(1, 5, 33).round().astype(int))
    fig, (ax, risk) = plt.subplots(1, 2, figsize=(11, 4.6), width_ratios=(3, 2))
    for name, params in SCHEMES.items():
        scheme = get_scheme(name, **params)
        shown = [(n, best(scheme, int(n))) for n in counts if int(n) >= scheme.backups + 1]
        line = ax.plot([n for n, _ in shown], [100 * b[1].efficiency for _, b in shown])
        risk.plot(
            [n for n, _ in shown], [exposed(scheme, int(n)) for n, _ in shown],
            color=line[0].get_color(), label=label(scheme),
        )  # fmt: skip
        for n in (10, 100, 1000, 10_000, 100_000):
            job, pred = best(scheme, n)
            sim = simulate(scheme, job, fitted_costs(scheme, STATE), pred.interval, a.runs, 1)
            ax.errorbar(
                n, 100 * sim.efficiency.mean, yerr=100 * sim.efficiency.half, fmt="o",
                color=line[0].get_color(), markersize=3, capsize=2,
            )  # fmt: skip
            print(f"{name} {n}: model {pred.efficiency:.5f} simulator {sim.efficiency.mean:.5f}"
                  f" ± {sim.efficiency.half:.5f}, spares {job.spares}")  # fmt: skip
        line[0].set_label(label(scheme))
    ax.set_xscale("log")
    ax.set_xlabel("worker nodes (64 ranks of 2 GiB each)")
    ax.set_ylabel("efficiency: useful work / wall time (%)")
    ax.set_title("5-year node MTBF, 24 h of work, Daly's interval\ndots: simulator (95 %)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    risk.set_xscale("log")
    risk.set_yscale("log")
    risk.set_ylim(1e-22, 1)
    risk.set_xlabel("worker nodes")
    risk.set_ylabel("P(loss beyond the RAM tolerance) per run")
    risk.set_title("the model, with spares enough for every failure\n(too rare to simulate)")
    risk.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(a.png, dpi=110)
    print(f"wrote {a.png}")


if __name__ == "__main__":
    main()
