"""Protected state <-> segment bytes.

A segment is ``MAGIC | u64 manifest length | manifest (JSON) | entries``, each entry 8-byte
aligned. Arrays are not copied to build it: :class:`SegmentView` reads byte ranges straight out
of the registered arrays, so the transport can stream a segment in chunks.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError, IntegrityError

MAGIC = b"MPKSEG01"
_HEAD = len(MAGIC) + 8


def _align(n: int) -> int:
    return -(-n // 8) * 8


@dataclass
class SegmentView:
    """A segment as a list of ``(offset, bytes-like)`` regions; nothing is concatenated."""

    regions: list[tuple[int, memoryview]]
    nbytes: int

    def read_into(self, offset: int, out: np.ndarray) -> np.ndarray:
        """Copy bytes ``[offset, offset + out.size)`` into ``out``; zero in the gaps between
        regions and beyond the end (each byte is written once)."""
        end = offset + out.size
        filled = offset  # everything before this is written
        for start, mv in self.regions:
            stop = start + len(mv)
            if stop <= offset or start >= end:
                continue
            a, b = max(start, offset), min(stop, end)
            out[filled - offset : a - offset] = 0
            out[a - offset : b - offset] = np.frombuffer(mv[a - start : b - start], np.uint8)
            filled = b
        out[filled - offset :] = 0
        return out

    def view(self, offset: int, n: int) -> memoryview | None:
        """Bytes ``[offset, offset+n)`` without a copy, if one region holds them all."""
        for start, mv in self.regions:
            if start <= offset and offset + n <= start + len(mv):
                return mv[offset - start : offset - start + n]
        return None

    def tobytes(self) -> np.ndarray:
        """The whole segment as one contiguous array (a copy)."""
        return self.read_into(0, np.empty(self.nbytes, dtype=np.uint8))


class State:
    """The protected objects of one rank, by name, in registration order."""

    def __init__(self) -> None:
        self.entries: dict[str, Any] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def __getitem__(self, name: str) -> Any:
        return self.entries[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self.entries[name] = value

    def names(self) -> Iterator[str]:
        return iter(self.entries)

    def snapshot(self, step: int, meta: dict[str, Any] | None = None) -> SegmentView:
        """A segment of the current values; arrays are referenced, objects pickled."""
        items: list[dict[str, Any]] = []
        bodies: list[memoryview] = []
        for name, obj in self.entries.items():
            if type(obj) is np.ndarray:  # subclasses (masked arrays...) go by pickle
                if obj.dtype.hasobject:
                    raise ConfigError(f"array {name!r} has dtype object; protect it as an object")
                arr = obj if obj.flags.c_contiguous else np.ascontiguousarray(obj)
                body = arr.reshape(-1).view(np.uint8).data
                items.append(
                    {
                        "name": name,
                        "kind": "array",
                        "dtype": np.lib.format.dtype_to_descr(arr.dtype),
                        "shape": list(arr.shape),
                    }
                )
            else:
                body = memoryview(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
                items.append({"name": name, "kind": "object"})
            items[-1]["nbytes"] = len(body)
            bodies.append(body)
        # offsets depend on the manifest length, which contains them: fix the width first
        for it in items:
            it["offset"] = 0
        manifest = {"step": step, "meta": meta or {}, "entries": items}
        # rounded up, so that the segment keeps its size from step to step (the backups'
        # buffers and the local copy are then reused)
        width = -(-(len(json.dumps(manifest)) + 24 * len(items) + 32) // 512) * 512
        offset = _align(_HEAD + width)
        for it in items:
            it["offset"] = offset
            offset = _align(offset + it["nbytes"])
        raw = json.dumps(manifest).encode().ljust(width)
        header = MAGIC + len(raw).to_bytes(8, "little") + raw
        regions = [(0, memoryview(header))]
        regions += [(it["offset"], b) for it, b in zip(items, bodies, strict=True)]
        return SegmentView(regions, max(offset, _align(len(header))))


def read_manifest(segment: np.ndarray | bytes | memoryview) -> dict[str, Any]:
    """The manifest at the head of a segment."""
    buf = np.frombuffer(segment, dtype=np.uint8)
    if buf[: len(MAGIC)].tobytes() != MAGIC:
        raise IntegrityError("not an mpickpt segment (bad magic)")
    n = int.from_bytes(buf[len(MAGIC) : _HEAD], "little")
    result: dict[str, Any] = json.loads(bytes(buf[_HEAD : _HEAD + n]))
    return result


def unpack(segment: np.ndarray | bytes | memoryview) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(manifest, values)``: arrays are read-only views into ``segment``, objects unpickled."""
    manifest = read_manifest(segment)
    buf = np.frombuffer(segment, dtype=np.uint8)
    values: dict[str, Any] = {}
    for it in manifest["entries"]:
        raw = buf[it["offset"] : it["offset"] + it["nbytes"]]
        if it["kind"] == "array":
            dtype = np.lib.format.descr_to_dtype(_tuples(it["dtype"]))
            values[it["name"]] = raw.view(dtype).reshape(it["shape"])
        else:
            values[it["name"]] = pickle.loads(raw.tobytes())
    return manifest, values


def _tuples(descr: Any) -> Any:
    """JSON turned the tuples of a structured dtype's description into lists: undo that."""
    if isinstance(descr, list):
        return [
            tuple(_tuples(x) for x in field) if isinstance(field, list) else field
            for field in descr
        ]
    return descr


def restore_value(name: str, current: Any, saved: Any) -> Any:
    """The value to hand back for ``name``: the saved one, copied in place into ``current``
    when that is an array of the same shape and dtype (so references to it stay valid),
    otherwise a fresh copy (an array that changed length, an object)."""
    if isinstance(saved, np.ndarray):
        if (
            isinstance(current, np.ndarray)
            and current.shape == saved.shape
            and current.dtype == saved.dtype
            and current.flags.writeable
        ):
            np.copyto(current, saved)
            return current
        return saved.copy()
    return saved
