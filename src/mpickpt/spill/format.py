"""One rank's HDF5 spill file: names, atomic writes, the self-describing format.

A rank file holds one dataset per protected array under ``/arrays/<name>`` (original dtype and
shape), pickled objects as uint8 datasets under ``/objects/<name>``, and the segment header
(magic, manifest) as ``/segment_header``; with them the exact segment bytes are rebuilt and
checked against the ``segment_checksum`` attribute (XXH3-64). Checksums are written as 16
hex digits. Every file is written under a ``.tmp`` name, fsynced, renamed and its directory
fsynced, so a crash leaves either the old state or the new one.

No MPI here: the writes run in a helper process (:mod:`mpickpt.spill.writer`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import h5py
import numpy as np

from ..checksum import checksum
from ..errors import SpillError
from ..files import private_file, publish
from ..segment import read_manifest

FORMAT = "mpickpt-spill"
FORMAT_VERSION = 1
CHECKSUM_ALGORITHM = "xxh3-64"
# dtypes that HDF5 stores and returns byte for byte; anything else is kept as raw bytes
_TYPED_KINDS = {"b": (1,), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "f": (2, 4, 8), "c": (8, 16)}


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


def library_version() -> str:
    from .. import __version__

    return __version__


def _key(name: str) -> str:
    """The HDF5 link name of a protected name ('/' and '%' escaped, '.' and '' made legal)."""
    key = name.replace("%", "%25").replace("/", "%2F")
    if key in ("", ".", ".."):
        key = "%" + "%2E" * len(key)
    return key


def make_private_dir(path: str) -> None:
    """Create ``path`` (and missing parents) if needed, readable by this user only (0700):
    a spill holds the job's state, and restarting unpickles it. Then check that a file can be
    created in it: a directory that exists but cannot be written (a read-only mount, a full
    disk) must be refused before the job computes, not found out at its end."""
    if not os.path.isdir(path):
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)  # whatever the umask
    probe = os.path.join(path, f".probe-{socket.gethostname()}-{os.getpid()}")
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"mpickpt")
    finally:
        os.close(fd)
        os.unlink(probe)


def _scheme_json(scheme_config: Mapping[str, Any]) -> str:
    return json.dumps(dict(scheme_config), sort_keys=True)


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
    callers use :class:`mpickpt.spill.writer.SpillWriter`, which runs it in a helper process.
    """
    seg = np.frombuffer(segment, dtype=np.uint8)
    manifest = read_manifest(seg)
    entries = manifest["entries"]
    digest = checksum(seg)
    tmp = path + ".tmp"
    try:
        with h5py.File(private_file(tmp), "w", libver=("v108", "latest")) as f:
            about = {"version": version, "rank": rank, "nworkers": nworkers}
            _write_attrs(f.attrs, manifest, seg.size, digest, about, scheme_config)
            _write_header(f, seg[: min((e["offset"] for e in entries), default=seg.size)])
            arrays, objects = f.create_group("arrays"), f.create_group("objects")
            for e in entries:
                _write_entry(arrays, objects, e, seg[e["offset"] : e["offset"] + e["nbytes"]])
        publish(tmp, path, private=True, durable=True)
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


def _write_attrs(
    a: Any,
    manifest: Mapping[str, Any],
    nbytes: int,
    digest: int,
    about: Mapping[str, int],
    scheme_config: Mapping[str, Any],
) -> None:
    """The file's attributes: format, which version of which rank, the segment's checksum."""
    now = time.time()
    a["format"] = FORMAT
    a["format_version"] = FORMAT_VERSION
    a["version"] = about["version"]
    a["step"] = int(manifest["step"])
    a["rank"] = about["rank"]
    a["nworkers"] = about["nworkers"]
    a["scheme"] = _scheme_json(scheme_config)
    a["mpickpt_version"] = library_version()
    a["time"] = now
    a["time_iso"] = datetime.fromtimestamp(now, timezone.utc).isoformat()
    a["segment_nbytes"] = nbytes
    a["segment_checksum"] = _hex(digest)
    a["checksum_algorithm"] = CHECKSUM_ALGORITHM
    a["manifest"] = json.dumps(manifest)


def _write_header(f: Any, head: np.ndarray) -> None:
    """The segment's bytes before its first entry, as they are."""
    hdr = f.create_dataset("segment_header", data=head)
    hdr.attrs["description"] = "segment bytes before the first entry (magic, manifest)"
    hdr.attrs["checksum"] = _hex(checksum(head))


def _write_entry(arrays: Any, objects: Any, e: Mapping[str, Any], raw: np.ndarray) -> None:
    """One protected value: an array typed as it was when HDF5 keeps it byte for byte (else
    its raw bytes), an object as its pickle."""
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
