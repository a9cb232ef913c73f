"""HDF5 spill: committed versions written to disk in the background, loaded and verified.

Layout of a spill directory::

    DIR/v00000007/rank00000.h5     one self-describing HDF5 file per rank and version
    DIR/v00000007/rank00001.h5
    DIR/v00000007/INDEX.json       the commit marker: a version without it does not exist
    DIR/DONE                       the run completed (written last, by worker 0)

Every file is written under a ``.tmp`` name, fsynced, renamed and its directory fsynced, so a
crash leaves either the old state or the new one. ``INDEX.json`` is written (the same way) by one
rank only after every rank has reported its file complete; see :func:`commit_index`.

A rank file holds one dataset per protected array under ``/arrays/<name>`` (original dtype and
shape), pickled objects as uint8 datasets under ``/objects/<name>``, and the segment header
(magic, manifest) as ``/segment_header``; with them the exact segment bytes are rebuilt and
checked against the ``segment_checksum`` attribute (XXH3-64). Checksums are written as 16
hex digits.

This module does not use MPI: the writes run in a helper process (:mod:`mpickpt.writer`) and the
ranks are coordinated by :mod:`mpickpt.disk`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import h5py
import numpy as np

from .checksum import checksum
from .errors import MpickptError
from .state import read_manifest

FORMAT = "mpickpt-spill"
FORMAT_VERSION = 1
INDEX = "INDEX.json"
DONE = "DONE"  # job scripts check it: mpirun also exits 0 when it loses a node mid-run
CHECKSUM_ALGORITHM = "xxh3-64"

_VDIR = re.compile(r"^v(\d{8,})$")
_RANKFILE = re.compile(r"^rank(\d{5,})\.h5$")
# dtypes that HDF5 stores and returns byte for byte; anything else is kept as raw bytes
_TYPED_KINDS = {"b": (1,), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "f": (2, 4, 8), "c": (8, 16)}


class SpillError(MpickptError):
    """A spill file or directory is missing, damaged, or does not fit this job.

    ``paths`` lists the offending files (empty when the problem is not a file).
    """

    def __init__(self, message: str, paths: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.paths = list(paths)


# --------------------------------------------------------------------------------------------
# names and small helpers


def version_dir(directory: str | os.PathLike[str], version: int) -> str:
    """The directory of one version: ``DIR/v<version:08d>``."""
    return os.path.join(os.fspath(directory), f"v{version:08d}")


def rank_file(directory: str | os.PathLike[str], version: int, rank: int) -> str:
    """The path of one rank's file: ``DIR/v<version:08d>/rank<rank:05d>.h5``."""
    return os.path.join(version_dir(directory, version), f"rank{rank:05d}.h5")


def _hex(value: int) -> str:
    return format(value, "016x")


def _library_version() -> str:
    from . import __version__

    return __version__


def _key(name: str) -> str:
    """The HDF5 link name of a protected name ('/' and '%' escaped, '.' and '' made legal)."""
    key = name.replace("%", "%25").replace("/", "%2F")
    if key in ("", ".", ".."):
        key = "%" + "%2E" * len(key)
    return key


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError as e:  # pragma: no cover - some file systems refuse directory fsync
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: str, final: str) -> None:
    """fsync ``tmp``, rename it to ``final``, fsync the directory."""
    _fsync_file(tmp)
    os.replace(tmp, final)
    _fsync_dir(os.path.dirname(final))


def _write_text(final: str, text: str) -> str:
    """Write ``text`` to ``final`` atomically (through a fsynced ``.tmp``); return ``final``."""
    with open(final + ".tmp", "w") as f:
        f.write(text)
    _publish(final + ".tmp", final)
    return final


def mark_done(directory: str, step: int) -> str:
    """Record that the run completed (after ``step`` steps): ``DONE`` in the spill directory."""
    return _write_text(os.path.join(directory, DONE), f"completed after step {step}\n")


def _scheme_json(scheme_config: Mapping[str, Any]) -> str:
    return json.dumps(dict(scheme_config), sort_keys=True)


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


# --------------------------------------------------------------------------------------------
# one rank file


def write_rank_file(
    path: str,
    segment: np.ndarray,
    *,
    version: int,
    rank: int,
    nworkers: int,
    scheme_config: Mapping[str, Any],
) -> dict[str, Any]:
    """Write one segment as a self-describing HDF5 file, atomically (``.tmp``, fsync, rename).

    Returns the file's entry for the index (see :func:`commit_index`). Synchronous; most
    callers use :class:`mpickpt.writer.SpillWriter`, which runs it in a helper process.
    """
    seg = np.frombuffer(segment, dtype=np.uint8)
    manifest = read_manifest(seg)
    entries = manifest["entries"]
    head = min((e["offset"] for e in entries), default=seg.size)
    digest = checksum(seg)
    now = time.time()
    tmp = path + ".tmp"
    try:
        with h5py.File(tmp, "w", libver=("v108", "latest")) as f:
            a = f.attrs
            a["format"] = FORMAT
            a["format_version"] = FORMAT_VERSION
            a["version"] = version
            a["step"] = int(manifest["step"])
            a["rank"] = rank
            a["nworkers"] = nworkers
            a["scheme"] = _scheme_json(scheme_config)
            a["mpickpt_version"] = _library_version()
            a["time"] = now
            a["time_iso"] = datetime.fromtimestamp(now, timezone.utc).isoformat()
            a["segment_nbytes"] = seg.size
            a["segment_checksum"] = _hex(digest)
            a["checksum_algorithm"] = CHECKSUM_ALGORITHM
            a["manifest"] = json.dumps(manifest)
            hdr = f.create_dataset("segment_header", data=seg[:head])
            hdr.attrs["description"] = "segment bytes before the first entry (magic, manifest)"
            hdr.attrs["checksum"] = _hex(checksum(seg[:head]))
            arrays = f.create_group("arrays")
            objects = f.create_group("objects")
            for e in entries:
                raw = seg[e["offset"] : e["offset"] + e["nbytes"]]
                if e["kind"] == "array":
                    dt = np.dtype(e["dtype"])
                    typed = dt.fields is None and (
                        dt.itemsize in _TYPED_KINDS.get(dt.kind, ()) or dt.kind == "S"
                    )
                    data = raw.view(dt).reshape(e["shape"]) if typed else raw
                    ds = arrays.create_dataset(_key(e["name"]), data=data)
                    ds.attrs["dtype"] = e["dtype"]
                    ds.attrs["shape"] = np.asarray(e["shape"], dtype=np.int64)
                    ds.attrs["storage"] = "typed" if typed else "raw"
                else:
                    ds = objects.create_dataset(_key(e["name"]), data=raw)
                    ds.attrs["encoding"] = "pickle"
                ds.attrs["name"] = e["name"]
                ds.attrs["kind"] = e["kind"]
                ds.attrs["offset"] = e["offset"]
                ds.attrs["nbytes"] = e["nbytes"]
                ds.attrs["checksum"] = _hex(checksum(raw))
        _publish(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return {
        "rank": rank,
        "file": os.path.basename(path),
        "size": os.path.getsize(path),
        "step": int(manifest["step"]),
        "segment_nbytes": int(seg.size),
        "segment_checksum": _hex(digest),
    }


def _attr_str(attrs: Any, name: str) -> str:
    v = attrs[name]
    return v.decode() if isinstance(v, bytes) else str(v)


def read_rank_file(path: str, expect: Mapping[str, Any] | None = None) -> np.ndarray:
    """The exact segment bytes stored in ``path``, every checksum verified.

    ``expect`` is the file's entry in the index; its checksum and size must match too.
    Raises :class:`SpillError` naming the file on any damage (checksum mismatch, HDF5 error,
    truncation, missing file).
    """
    if not os.path.exists(path):
        raise SpillError(f"{path}: missing", [path])
    try:
        with h5py.File(path, "r") as f:
            a = f.attrs
            if _attr_str(a, "format") != FORMAT:
                raise SpillError(f"{path}: not an mpickpt spill file", [path])
            nbytes = int(a["segment_nbytes"])
            want = _attr_str(a, "segment_checksum")
            if expect is not None and (
                expect.get("segment_checksum") != want
                or int(expect.get("segment_nbytes", -1)) != nbytes
            ):
                raise SpillError(
                    f"{path}: does not match its index entry (stale or replaced file)", [path]
                )
            hds = f["segment_header"]
            header = np.asarray(hds[()], dtype=np.uint8).reshape(-1)
            if _hex(checksum(header)) != _attr_str(hds.attrs, "checksum"):
                raise SpillError(f"{path}: checksum mismatch in dataset segment_header", [path])
            seg = np.zeros(nbytes, dtype=np.uint8)
            seg[: header.size] = header
            manifest = read_manifest(seg)
            for e in manifest["entries"]:
                group = "arrays" if e["kind"] == "array" else "objects"
                ds = f[group][_key(e["name"])]
                data = np.asarray(ds[()])
                if e["kind"] == "array" and _attr_str(ds.attrs, "storage") == "typed":
                    data = np.ascontiguousarray(data, dtype=np.dtype(e["dtype"]))
                raw = data.reshape(-1).view(np.uint8)
                if raw.size != e["nbytes"]:
                    raise SpillError(
                        f"{path}: {group}/{e['name']} holds {raw.size} bytes, "
                        f"expected {e['nbytes']}",
                        [path],
                    )
                if _hex(checksum(raw)) != _attr_str(ds.attrs, "checksum"):
                    raise SpillError(
                        f"{path}: checksum mismatch in dataset {group}/{e['name']}", [path]
                    )
                seg[e["offset"] : e["offset"] + e["nbytes"]] = raw
    except SpillError:
        raise
    except Exception as e:  # h5py raises OSError, KeyError, ValueError, ... on damaged files
        raise SpillError(f"{path}: unreadable ({type(e).__name__}: {e})", [path]) from e
    if _hex(checksum(seg)) != want:
        raise SpillError(f"{path}: segment checksum mismatch", [path])
    return seg


def write_version_file(
    directory: str | os.PathLike[str],
    version: int,
    rank: int,
    segment: np.ndarray,
    *,
    nworkers: int,
    scheme_config: Mapping[str, Any],
) -> dict[str, Any]:
    """Write ``rank``'s file of ``version`` under ``directory``; its index entry.

    Creates the version directory if needed. If the version was complete, it stops being
    complete first (its index is removed): a version is rewritten only after a rollback, and
    its index is written again once every rank's file is back.
    """
    directory = os.fspath(directory)
    vdir = version_dir(directory, version)
    if not os.path.isdir(vdir):
        os.makedirs(vdir, exist_ok=True)
        _fsync_dir(directory)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(vdir, INDEX))
        _fsync_dir(vdir)
    return write_rank_file(
        rank_file(directory, version, rank),
        segment,
        version=version,
        rank=rank,
        nworkers=nworkers,
        scheme_config=scheme_config,
    )


def commit(
    directory: str | os.PathLike[str],
    version: int,
    nworkers: int,
    scheme_config: Mapping[str, Any],
    files_info: Sequence[Mapping[str, Any]],
    keep: int,
) -> None:
    """Write the index of ``version`` from every rank's entry and prune to ``keep`` versions
    (one rank only, after every rank's file is written)."""
    steps = {int(i["step"]) for i in files_info}
    if len(steps) != 1:
        raise SpillError(f"version {version}: ranks report different steps {sorted(steps)}")
    commit_index(directory, version, nworkers, steps.pop(), scheme_config, files_info)
    prune(directory, keep)


# --------------------------------------------------------------------------------------------
# the index (commit marker) and the directory


def commit_index(
    directory: str | os.PathLike[str],
    version: int,
    nworkers: int,
    step: int,
    scheme_config: Mapping[str, Any],
    files_info: Sequence[Mapping[str, Any]],
) -> str:
    """Mark ``version`` complete by writing ``INDEX.json`` atomically; return its path.

    Call on one rank, only after every rank's file of ``version`` is written and flushed
    (``files_info`` is the gathered :meth:`mpickpt.writer.SpillWriter.info` of ranks
    ``0..nworkers-1``).
    Each file must exist with the reported size.
    """
    vdir = version_dir(directory, version)
    files = sorted((dict(i) for i in files_info), key=lambda i: int(i["rank"]))
    if [int(i["rank"]) for i in files] != list(range(nworkers)):
        raise SpillError(
            f"version {version}: index needs one file per rank 0..{nworkers - 1}, "
            f"got ranks {[i['rank'] for i in files]}"
        )
    for i in files:
        path = os.path.join(vdir, str(i["file"]))
        try:
            size = os.path.getsize(path)
        except OSError:
            raise SpillError(
                f"{path}: missing; version {version} cannot be committed", [path]
            ) from None
        if size != int(i["size"]):
            raise SpillError(f"{path}: {size} bytes on disk, rank reported {i['size']}", [path])
    now = time.time()
    index = {
        "format": FORMAT + "-index",
        "format_version": FORMAT_VERSION,
        "version": version,
        "step": step,
        "nworkers": nworkers,
        "scheme": dict(scheme_config),
        "mpickpt_version": _library_version(),
        "time": now,
        "time_iso": datetime.fromtimestamp(now, timezone.utc).isoformat(),
        "checksum_algorithm": CHECKSUM_ALGORITHM,
        "total_size": sum(int(i["size"]) for i in files),
        "files": files,
    }
    return _write_text(os.path.join(vdir, INDEX), json.dumps(index, indent=1))


def _versions(directory: str) -> list[int]:
    """Every version directory present (complete or not), newest first."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = [int(m.group(1)) for n in names if (m := _VDIR.match(n))]
    return sorted(found, reverse=True)


def read_index(directory: str | os.PathLike[str], version: int) -> dict[str, Any]:
    """The parsed ``INDEX.json`` of ``version``; :class:`SpillError` if missing or invalid."""
    path = os.path.join(version_dir(directory, version), INDEX)
    try:
        with open(path) as f:
            index: dict[str, Any] = json.load(f)
    except FileNotFoundError:
        raise SpillError(f"version {version} is not complete (no {path})", [path]) from None
    except (OSError, ValueError) as e:
        raise SpillError(f"{path}: unreadable index ({e})", [path]) from e
    try:
        ok = (
            index["format"] == FORMAT + "-index"
            and int(index["version"]) == version
            and len(index["files"]) == int(index["nworkers"])
        )
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise SpillError(f"{path}: invalid index", [path])
    return index


def complete_versions(directory: str | os.PathLike[str]) -> list[int]:
    """Versions with a valid ``INDEX.json``, newest first (their files are not read)."""
    out = []
    for v in _versions(os.fspath(directory)):
        with contextlib.suppress(SpillError):
            read_index(directory, v)
            out.append(v)
    return out


def next_version(directory: str | os.PathLike[str]) -> int:
    """A version number above every version directory present (0 for an empty spill).

    After a restart from disk, number new versions from here so that they sort after the
    old ones (and are not pruned as old).
    """
    found = _versions(os.fspath(directory))
    return found[0] + 1 if found else 0


def prune(directory: str | os.PathLike[str], keep: int) -> list[int]:
    """Delete all but the newest ``keep`` complete versions; return the deleted versions.

    Incomplete version directories older than the newest complete version are deleted too
    (newer ones may still be being written). An index is removed before its files, so a
    crash mid-prune never leaves a version that looks complete but is not.
    """
    if keep < 1:
        raise SpillError(f"keep={keep}: the spill must keep at least one version")
    d = os.fspath(directory)
    complete = complete_versions(d)
    if not complete:
        return []
    kept = set(complete[:keep])
    gone = [v for v in _versions(d) if v not in kept and v < complete[0]]
    for v in gone:
        vdir = version_dir(d, v)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(vdir, INDEX))
            _fsync_dir(vdir)
        shutil.rmtree(vdir, ignore_errors=True)
    if gone:
        _fsync_dir(d)
    return gone


def load(directory: str | os.PathLike[str], version: int, rank: int) -> np.ndarray:
    """The exact segment bytes of ``rank`` at a complete ``version``, checksums verified.

    Raises :class:`SpillError` naming the file if the version is not complete, or the file is
    missing, truncated, unreadable or fails a checksum.
    """
    index = read_index(directory, version)
    if not 0 <= rank < int(index["nworkers"]):
        raise SpillError(f"version {version} has ranks 0..{index['nworkers'] - 1}, not {rank}")
    info = next(i for i in index["files"] if int(i["rank"]) == rank)
    path = os.path.join(version_dir(directory, version), str(info["file"]))
    return read_rank_file(path, info)


def find_restart(
    directory: str | os.PathLike[str], nworkers: int, ranks: Iterable[int] | None = None
) -> tuple[int, list[str]]:
    """The newest complete version whose files all load and verify, and the problems met.

    Damaged versions are skipped, each damage is described in the returned list. ``ranks``
    limits the check to some ranks' files (default: all ``0..nworkers-1``); under MPI each
    rank may check its own and the ranks then agree. Raises :class:`SpillError` if the newest
    complete version was written by a different number of workers, or if no version is usable
    (the message lists the bad files).
    """
    d = os.fspath(directory)
    if not os.path.isdir(d):
        raise SpillError(f"no spill directory {d}")
    check = list(range(nworkers)) if ranks is None else list(ranks)
    problems: list[str] = []
    bad: list[str] = []
    newest = True
    for v in _versions(d):
        try:
            index = read_index(d, v)
        except SpillError as e:
            if os.path.exists(os.path.join(version_dir(d, v), INDEX)):
                problems.append(str(e))
                bad += e.paths
            continue  # no index: an interrupted spill, not a version
        n = int(index["nworkers"])
        if n != nworkers:
            msg = (
                f"spill version {v} in {d} was written by {n} workers, but this job has "
                f"{nworkers}; relaunch with {n} workers (plus spares), or use another "
                f"spill directory to start afresh"
            )
            if newest:
                raise SpillError(msg)
            problems.append(msg)
            continue
        newest = False
        damaged = False
        for r in check:
            try:
                load(d, v, r)
            except SpillError as e:
                problems.append(str(e))
                bad += e.paths
                damaged = True
        if not damaged:
            return v, problems
    if not bad and not problems:
        raise SpillError(f"no complete version in spill directory {d}")
    listing = "\n".join(f"  - {p}" for p in problems)
    raise SpillError(f"no usable version in spill directory {d}:\n{listing}", bad)


# --------------------------------------------------------------------------------------------
# inspect / verify (no MPI; wired into the CLI)


def verify(directory: str | os.PathLike[str]) -> list[str]:
    """Re-read every file of every complete version and recompute its checksums.

    Returns one ``"<path>: <reason>"`` line per bad file or index (empty: all good).
    Interrupted spills (no index) are not versions and are not checked.
    """
    d = os.fspath(directory)
    if not os.path.isdir(d):
        raise SpillError(f"no spill directory {d}")
    bad: list[str] = []
    for v in _versions(d):
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


def _peek(path: str) -> dict[str, Any]:
    """Attributes of a rank file, or {} if it cannot be read."""
    try:
        with h5py.File(path, "r") as f:
            return {k: f.attrs[k] for k in ("step", "nworkers", "scheme", "time")}
    except Exception:  # noqa: BLE001 - inspect describes what it can
        return {}


def inspect(directory: str | os.PathLike[str], verbose: bool = False) -> str:
    """A human-readable table of the versions in a spill directory (files are not verified).

    Columns: version, step, workers, size on disk, scheme, time written (UTC), status.
    ``verbose`` adds one line per rank file.
    """
    d = os.fspath(directory)
    if not os.path.isdir(d):
        raise SpillError(f"no spill directory {d}")
    rows = [("version", "step", "workers", "size", "scheme", "written (UTC)", "status")]
    details: dict[int, list[str]] = {}
    for v in _versions(d):
        vdir = version_dir(d, v)
        files = sorted(n for n in os.listdir(vdir) if _RANKFILE.match(n))
        size = sum(os.path.getsize(os.path.join(vdir, n)) for n in files)
        try:
            ix = read_index(d, v)
            step, nw, scheme, when = ix["step"], ix["nworkers"], ix["scheme"], ix["time"]
            status = "complete"
        except SpillError as e:
            attrs = _peek(os.path.join(vdir, files[0])) if files else {}
            step, nw = attrs.get("step", "?"), attrs.get("nworkers", "?")
            scheme, when = attrs.get("scheme"), attrs.get("time")
            if os.path.exists(os.path.join(vdir, INDEX)):
                status = f"BAD INDEX ({e})"
            else:
                status = f"incomplete ({len(files)} of {nw} files, no index)"
        rows.append(
            (
                str(v),
                str(step),
                str(nw),
                _size(size),
                _scheme_short(scheme) if scheme is not None else "?",
                _when(float(when)) if when is not None else "?",
                status,
            )
        )
        if verbose:
            details[v] = [
                f"    {n}  {_size(os.path.getsize(os.path.join(vdir, n)))}" for n in files
            ]
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
    return "\n".join(lines)


def main_inspect(argv: Sequence[str]) -> int:
    """``mpickpt inspect DIR [-v]``: print the table of :func:`inspect`; 2 if no directory."""
    args = [a for a in argv if a not in ("-v", "--verbose")]
    if len(args) != 1:
        print("usage: mpickpt inspect DIR [-v]", file=sys.stderr)
        return 2
    try:
        print(inspect(args[0], verbose=len(args) != len(argv)))
    except SpillError as e:
        print(f"mpickpt inspect: {e}", file=sys.stderr)
        return 2
    return 0


def main_verify(argv: Sequence[str]) -> int:
    """``mpickpt verify DIR``: 0 if all complete versions verify, 1 listing bad files if not,
    2 if there is no directory or no complete version."""
    if len(argv) != 1:
        print("usage: mpickpt verify DIR", file=sys.stderr)
        return 2
    d = argv[0]
    try:
        bad = verify(d)
    except SpillError as e:
        print(f"mpickpt verify: {e}", file=sys.stderr)
        return 2
    versions = complete_versions(d)
    for line in bad:
        print(f"BAD {line}")
    if bad:
        print(f"{len(bad)} bad file(s) in {d}", file=sys.stderr)
        return 1
    if not versions:
        print(f"mpickpt verify: no complete version in {d}", file=sys.stderr)
        return 2
    print(f"OK: {len(versions)} complete version(s) in {d} verified (newest {versions[0]})")
    return 0
