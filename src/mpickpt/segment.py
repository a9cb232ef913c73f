"""Protected state <-> segment bytes.

A segment is ``MAGIC | u64 manifest length | manifest (JSON) | entries``, each entry 8-byte
aligned. Arrays are not copied to build it: :class:`SegmentView` reads byte ranges straight out
of the registered arrays, so the transport can stream a segment in chunks.
"""

from __future__ import annotations

import json
import pickle
import sys
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


def _references(entries: dict[str, Any]) -> dict[str, int]:
    """:func:`sys.getrefcount` of every value (the same code path for every caller, so that
    counts compare)."""
    return {name: sys.getrefcount(obj) for name, obj in entries.items()}


class State:
    """The protected objects of one rank, by name, in registration order."""

    def __init__(self) -> None:
        self.entries: dict[str, Any] = {}
        self.declared: dict[str, list[Any]] = {}  # what protect was given (see describe)

    def declare(self, name: str, obj: Any, replace: bool = False) -> None:
        """Check a new entry as ``protect`` is called: a name already protected is a
        :class:`ConfigError` (two entries would silently become one) unless ``replace``, and
        so is an object that cannot be pickled (here rather than at the first checkpoint)."""
        if name in self.entries and not replace:
            raise ConfigError(
                f"{name!r} is already protected; use another name, or pass replace=True to "
                "replace its value on purpose"
            )
        check_picklable(name, obj)
        self.declared[name] = describe(obj)

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def __getitem__(self, name: str) -> Any:
        return self.entries[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self.entries[name] = value

    def unreferenced(self) -> list[str]:
        """The protected arrays that nothing but this state refers to: the application
        replaced them (``u = u + 1`` instead of ``u[...] = u + 1`` or ``ctx["u"] = u``), so a
        checkpoint would save the old one. Counted with :func:`sys.getrefcount` against an
        array held the same way (a few microseconds for a few entries). Views (Devito's
        buffers) are left out: their memory is their base's, which the application holds."""
        alone = _references({"": np.empty(0)})[""]
        counts = _references(self.entries)
        return [
            name
            for name, obj in self.entries.items()
            if type(obj) is np.ndarray and obj.base is None and counts[name] <= alone
        ]

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
                body = memoryview(_pickled(name, obj))
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


def _pickled(name: str, obj: Any) -> bytes:
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:  # PicklingError, TypeError, AttributeError... depending on obj
        raise ConfigError(
            f"protected entry {name!r} cannot be pickled ({type(e).__name__}: {e}); protect "
            "plain data (arrays, numbers, containers, random generators), not lambdas, open "
            "files, locks or communicators"
        ) from None


def check_picklable(name: str, obj: Any) -> None:
    """:class:`ConfigError` naming ``name`` if ``obj`` (not an array) cannot be pickled.

    Protected objects are small by design, so pickling them once when they are protected is
    cheap, and the mistake shows where it is made rather than at the first checkpoint."""
    if type(obj) is not np.ndarray:
        _pickled(name, obj)


def describe(obj: Any) -> list[Any]:
    """What a protected value looks like, for comparing runs: ``["array", dtype, shape]``
    or ``["object"]`` (the same form as :func:`fingerprint` gives for a saved entry)."""
    if type(obj) is np.ndarray and not obj.dtype.hasobject:
        descr = json.loads(json.dumps(np.lib.format.dtype_to_descr(obj.dtype)))
        return ["array", descr, list(obj.shape)]
    return ["object"]


def fingerprint_diff(saved: dict[str, list[Any]], now: dict[str, list[Any]]) -> list[str]:
    """How the state protected now differs from the one saved (both name -> :func:`describe`
    of what ``protect`` was given: the application's declared state, not its current values,
    so that an array that changes length as it runs compares equal), one line per entry."""

    def show(d: list[Any]) -> str:
        return "an object" if d[0] == "object" else f"an array {d[1]} of shape {tuple(d[2])}"

    lines = [f"{n!r} was saved but is not protected now" for n in saved if n not in now]
    lines += [f"{n!r} is protected now but was not saved" for n in now if n not in saved]
    lines += [
        f"{n!r} was saved as {show(saved[n])}, protected now as {show(now[n])}"
        for n in saved
        if n in now and saved[n] != now[n]
    ]
    return lines


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
