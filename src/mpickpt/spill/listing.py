"""What a spill directory holds, as a table for people or JSON (``mpickpt inspect``), and the
check of every file (``mpickpt verify``). No MPI."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from typing import Any

import h5py

from ..errors import SpillError
from .directory import INDEX, done_step, load, present_versions, read_index
from .format import version_dir

_RANKFILE = re.compile(r"^rank(\d{5,})\.h5$")


def _scheme_short(scheme: Any) -> str:
    """``parity(group=3, backups=4)`` from a scheme config (dict or JSON string)."""
    try:
        cfg = dict(json.loads(scheme) if isinstance(scheme, str) else scheme)
    except (TypeError, ValueError):
        return str(scheme)
    name = cfg.pop("id", "?")
    return f"{name}(" + ", ".join(f"{k}={v}" for k, v in sorted(cfg.items())) + ")"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _peek(path: str) -> dict[str, Any]:
    """Attributes of a rank file, or {} if it cannot be read."""
    try:
        with h5py.File(path, "r") as f:
            return {k: f.attrs[k] for k in ("step", "nworkers", "scheme", "time")}
    except Exception:  # noqa: BLE001 - inspect describes what it can
        return {}


def versions(directory: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """One record per version directory, newest first (files are not verified): ``version``,
    ``step``, ``workers``, ``size`` (bytes), ``scheme``, ``tag``, ``time``, ``status``
    (``complete``, ``incomplete`` or ``bad index``), ``problem`` and ``files``."""
    d = os.fspath(directory)
    if not os.path.isdir(d):
        raise SpillError(f"no spill directory {d}")
    out = []
    for v in present_versions(d):
        vdir = version_dir(d, v)
        names = sorted(n for n in os.listdir(vdir) if _RANKFILE.match(n))
        files: list[dict[str, Any]] = [
            {"name": n, "size": os.path.getsize(os.path.join(vdir, n))} for n in names
        ]
        rec: dict[str, Any] = {"version": v, "size": sum(int(f["size"]) for f in files)}
        try:
            ix = read_index(d, v)
            rec |= {"step": ix["step"], "workers": ix["nworkers"], "scheme": ix["scheme"]}
            rec |= {"tag": ix.get("tag"), "time": ix["time"], "status": "complete"}
        except SpillError as e:
            attrs = _peek(os.path.join(vdir, names[0])) if names else {}
            scheme = attrs.get("scheme")
            rec |= {"step": _plain(attrs.get("step")), "workers": _plain(attrs.get("nworkers"))}
            rec |= {"scheme": json.loads(scheme) if isinstance(scheme, str) else None}
            rec |= {"tag": None, "time": _plain(attrs.get("time"))}
            bad = os.path.exists(os.path.join(vdir, INDEX))
            rec |= {"status": "bad index" if bad else "incomplete", "problem": str(e)}
        rec["files"] = files
        out.append(rec)
    return out


def _plain(x: Any) -> Any:
    """A number read from HDF5 as a plain Python number (for JSON)."""
    return x.item() if hasattr(x, "item") else x


def inspect(directory: str | os.PathLike[str], verbose: bool = False) -> str:
    """A human-readable table of the versions in a spill directory (files are not verified).

    Columns: version, step, workers, size on disk, scheme, time written (UTC), status.
    ``verbose`` adds one line per rank file.
    """
    d = os.fspath(directory)
    rows = [("version", "step", "workers", "size", "scheme", "written (UTC)", "status")]
    details: dict[int, list[str]] = {}
    for rec in versions(d):
        nw, v = rec["workers"], rec["version"]
        status = rec["status"]
        if status == "bad index":
            status = f"BAD INDEX ({rec['problem']})"
        elif status == "incomplete":
            status = f"incomplete ({len(rec['files'])} of {_q(nw)} files, no index)"
        scheme, when = rec["scheme"], rec["time"]
        rows.append(
            (
                str(v),
                _q(rec["step"]),
                _q(nw),
                _size(rec["size"]),
                _scheme_short(scheme) if scheme is not None else "?",
                _when(float(when)) if when is not None else "?",
                status,
            )
        )
        if verbose:
            details[v] = [f"    {f['name']}  {_size(f['size'])}" for f in rec["files"]]
    if len(rows) == 1:
        return f"{d}: no spill versions"
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = [f"spill directory {d}"]
    for r in rows:
        lines.append(
            "  ".join(
                c.rjust(w) if i < 3 else c.ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=False))
            )
            + "  "
            + r[-1]
        )
        if r[0].isdigit():
            lines += details.get(int(r[0]), [])
    tags = {rec["tag"] for rec in versions(d) if rec["status"] == "complete"} - {None}
    if tags:
        lines.append(f"tag: {', '.join(sorted(tags))}")
    done = done_step(d)
    if done is not None:
        lines.append(f"DONE: the run completed after step {done}")
    return "\n".join(lines)


def _q(x: Any) -> str:
    return "?" if x is None else str(x)


def verify(directory: str | os.PathLike[str]) -> list[str]:
    """Re-read every file of every complete version and recompute its checksums.

    Returns one ``"<path>: <reason>"`` line per bad file or index (empty: all good).
    Interrupted spills (no index) are not versions and are not checked.
    """
    d = os.fspath(directory)
    if not os.path.isdir(d):
        raise SpillError(f"no spill directory {d}")
    bad: list[str] = []
    for v in present_versions(d):
        if not os.path.exists(os.path.join(version_dir(d, v), INDEX)):
            continue
        try:
            index = read_index(d, v)
        except SpillError as e:
            bad.append(str(e))
            continue
        for info in index["files"]:
            try:
                load(d, v, int(info["rank"]))
            except SpillError as e:
                bad.append(str(e))
    return bad
