"""The run report: one JSON file written by worker 0 when the job ends (``report=`` or
``MPICKPT_REPORT``), for scripts and for the record. No MPI here.

It holds the job's outcome, its shape, what its checkpoints cost on worker 0 (from the
checkpointer's counters, :attr:`mpickpt.Checkpointer.stats`: every counter there is copied,
so new ones appear without a change here), what the spill did, and every recovery worker 0
took part in, with its timeline (seconds after the failure's detection), and where this launch
resumed from (``resumed``: ``{"tier": "start"}``, or the tier, version and step restored).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from .files import write_text

FORMAT = "mpickpt-report"
FORMAT_VERSION = 1


def checkpoint_section(counters: Mapping[str, float]) -> dict[str, Any]:
    """The checkpointer's counters, with the rate (``gb_per_s``: bytes of this worker's
    segment per second spent checkpointing, 1 GB = 1e9 bytes)."""
    out: dict[str, Any] = dict(counters)
    seconds, nbytes = float(out.get("seconds", 0.0)), float(out.get("bytes", 0))
    out["gb_per_s"] = round(nbytes / seconds / 1e9, 6) if seconds > 0 else None
    return out


def build(
    *,
    outcome: int,
    message: str,
    role: str,
    scheme: Mapping[str, Any],
    workers: int,
    spares: int,
    step: int,
    counters: Mapping[str, float],
    spill: Mapping[str, Any] | None,
    recoveries: Sequence[Mapping[str, Any]],
    resumed: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The report as a dict (see the module docstring)."""
    now = time.time()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mpickpt_version": _version(),
        "time_utc": datetime.fromtimestamp(now, timezone.utc).isoformat(),
        "exit_code": outcome,
        "message": message,
        "role": role,
        "scheme": dict(scheme),
        "workers": workers,
        "spares": spares,
        "step": step,
        "checkpoints": checkpoint_section(counters),
        "spill": dict(spill) if spill is not None else None,
        "recoveries": [dict(r) for r in recoveries],
        "resumed": dict(resumed) if resumed is not None else {"tier": "start"},
    }


def write(path: str | os.PathLike[str], report: Mapping[str, Any]) -> str:
    """Write ``report`` to ``path`` atomically (a ``.tmp`` file renamed); return the path."""
    return write_text(os.fspath(path), json.dumps(report, indent=1) + "\n")


def _version() -> str:
    from . import __version__

    return __version__
