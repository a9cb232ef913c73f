"""The costs a protected job pays, for the failure model (:mod:`mpickpt.model`): a checkpoint,
an in-memory recovery and a relaunch from the disk tier, given, read from a run report or a
benchmark's JSON, or fitted on the project's own measurements (pure, no MPI)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError
from .schemes import Scheme


@dataclass(frozen=True)
class Costs:
    """Seconds per checkpoint, per in-memory recovery (failure -> resumed, re-protect
    included) and per relaunch from the disk tier (failure -> resumed); ``source`` says where
    the numbers come from."""

    checkpoint: float
    recovery: float
    relaunch: float
    source: str = "given"


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
