"""Inside a Slurm allocation: the nodes still up and their slots, and the ``SLURM_*``
variables that point an MPI launcher (Open MPI's ``mpirun``, MPICH's Hydra) at them, so that a
relaunch after a lost node leaves that node out. Asks ``scontrol`` and ``sinfo``. No MPI here.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping

DOWN = re.compile(r"\*|^(down|drain|fail)")  # sinfo's %t states a launch must avoid


def in_allocation(env: Mapping[str, str]) -> bool:
    return bool(env.get("SLURM_JOB_ID")) and bool(env.get("SLURM_JOB_NODELIST"))


def expand_counts(counts: str) -> list[int]:
    """Slurm's compressed per-node counts: ``"4,2(x2)"`` -> ``[4, 2, 2]``."""
    out: list[int] = []
    for item in filter(None, counts.split(",")):
        m = re.fullmatch(r"(\d+)\(x(\d+)\)", item)
        out += [int(m.group(1))] * int(m.group(2)) if m else [int(item)]
    return out


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout


def hostnames(nodelist: str) -> list[str]:
    return _run("scontrol", "show", "hostnames", nodelist).split()


def live_nodes(env: Mapping[str, str]) -> tuple[list[tuple[str, int]], list[str]]:
    """The allocation's nodes that are still in the job and not down, with their slots, and
    one line for each node left out."""
    nodes = hostnames(env["SLURM_JOB_NODELIST"])
    counts = expand_counts(env.get("SLURM_TASKS_PER_NODE", ""))
    job = _run("scontrol", "-o", "show", "job", env["SLURM_JOB_ID"])
    current = re.search(r"(?<= NodeList=)\S+", job)
    now = set(hostnames(current.group(0))) if current else set(nodes)
    live, left_out = [], []
    for i, node in enumerate(nodes):
        if node not in now:
            left_out.append(f"node {node} left the allocation")
            continue
        state = _run("sinfo", "-h", "-N", "-n", node, "-o", "%t").split()
        if not state or DOWN.search(state[0]):
            left_out.append(f"node {node} is {state[0] if state else 'unknown'}: not used")
            continue
        live.append((node, counts[i] if i < len(counts) else 1))
    return live, left_out


def allocation_env(live: list[tuple[str, int]]) -> dict[str, str]:
    """The ``SLURM_*`` variables of an allocation made of ``live`` (node, slots) only."""
    nodes = ",".join(n for n, _ in live)
    slots = ",".join(str(k) for _, k in live)
    total = str(sum(k for _, k in live))
    return {
        "SLURM_JOB_NODELIST": nodes,
        "SLURM_NODELIST": nodes,
        "SLURM_TASKS_PER_NODE": slots,
        "SLURM_JOB_CPUS_PER_NODE": slots,
        "SLURM_JOB_NUM_NODES": str(len(live)),
        "SLURM_NNODES": str(len(live)),
        "SLURM_NTASKS": total,
        "SLURM_NPROCS": total,
    }


def fits(n: int, live: list[tuple[str, int]], asked: int, launcher_args: list[str]) -> bool:
    """Whether ``n`` processes can be launched on ``live``: within their slots (unless the
    launcher oversubscribes, or more processes than the allocation's ``asked`` slots were asked
    for from the start), and within ``--map-by ppr:K:node`` (K per node, oversubscribed or
    not)."""
    ppr = re.search(r"(?:^|[\s=])ppr:(\d+):node", " ".join(launcher_args))
    if ppr and int(ppr.group(1)) * len(live) < n:
        return False
    slots = sum(k for _, k in live)
    return bool(live) and (slots >= n or n > asked or "--oversubscribe" in launcher_args)
