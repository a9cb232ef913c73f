"""Protected state <-> segment bytes: round trips, in-place restore, zero-copy views."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mpickpt import ConfigError, IntegrityError
from mpickpt.segment import SegmentView, State, read_manifest, restore_value, unpack
from reference import contiguous


def make_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    grid = rng.random((6, 9))
    return {
        "grid": grid,
        "odd_int8": np.arange(37, dtype=np.int8),  # a length not a multiple of 8
        "complex": (rng.random(5) + 1j * rng.random(5)).astype(np.complex64),
        "flags": rng.random(11) > 0.5,
        "scalar0d": np.array(3.25),
        "empty": np.empty((0, 3), dtype=np.float32),
        "strided": grid[::2, ::3],  # non-contiguous
        "fortran": np.asfortranarray(rng.random((3, 4))),
        "big_endian": np.arange(10, dtype=">i4"),
        "text": np.array(["ab", "cde"]),
        "dates": np.array(["2024-01-01", "2024-02-29"], dtype="M8[D]"),
    }


def make_state(arrays: dict[str, np.ndarray], objects: dict) -> State:
    state = State()
    for name, value in {**arrays, **objects}.items():
        state[name] = value
    return state


def round_trip(state: State, step: int = 0, meta: dict | None = None):
    return unpack(contiguous(state.snapshot(step, meta)))


def assert_array_restored(saved: np.ndarray, original: np.ndarray) -> None:
    assert saved.dtype == original.dtype
    assert saved.shape == original.shape
    np.testing.assert_array_equal(saved, original)


OBJECTS = {
    "params": {"dt": 0.1, "names": ["u", "v"], "nested": {"k": (1, 2)}},
    "count": 42,
    "ratio": 0.5,
    "label": "héat",
    "nothing": None,
}


def test_round_trip_arrays_and_objects():
    arrays = make_arrays()
    manifest, values = round_trip(make_state(arrays, OBJECTS), step=17, meta={"version": 3})
    assert manifest["step"] == 17
    assert manifest["meta"] == {"version": 3}
    assert [e["name"] for e in manifest["entries"]] == [*arrays, *OBJECTS]
    for name, arr in arrays.items():
        assert_array_restored(values[name], arr)
    for name, obj in OBJECTS.items():
        assert values[name] == obj


def test_layout_is_aligned():
    view = make_state(make_arrays(), OBJECTS).snapshot(0)
    seg = contiguous(view)
    assert view.nbytes % 8 == 0
    manifest = read_manifest(seg)
    for entry in manifest["entries"]:
        assert entry["offset"] % 8 == 0
        assert entry["offset"] + entry["nbytes"] <= view.nbytes


def test_empty_state():
    manifest, values = round_trip(State(), step=5)
    assert manifest["step"] == 5
    assert values == {}


def test_generator_resumes_identically():
    rng = np.random.default_rng(2024)
    rng.random(10)  # advance past the seed state
    state = make_state({}, {"rng": rng})
    _, values = round_trip(state)
    expected = rng.random(100)
    restored = values["rng"]
    assert restored is not rng
    np.testing.assert_array_equal(restored.random(100), expected)
    assert restored.integers(0, 1 << 30) == rng.integers(0, 1 << 30)


def test_snapshot_references_contiguous_arrays_without_copy():
    arr = np.arange(100, dtype=np.float64)
    state = make_state({"a": arr}, {})
    view = state.snapshot(0)
    assert any(np.shares_memory(np.frombuffer(mv, np.uint8), arr) for _, mv in view.regions)
    arr[:] = -1.0  # a snapshot is a view: it sees the current values
    _, values = unpack(contiguous(view))
    np.testing.assert_array_equal(values["a"], arr)


def test_object_dtype_rejected():
    state = make_state({"objs": np.array([1, "a"], dtype=object)}, {})
    with pytest.raises(ConfigError, match="dtype object; protect it as an object"):
        state.snapshot(0)


def test_bad_magic():
    with pytest.raises(IntegrityError, match="bad magic"):
        unpack(b"NOTASEGMENT" + bytes(64))


def test_structured_dtype_round_trip():
    arr = np.zeros(3, dtype=[("x", "<f8"), ("n", "<i4")])
    arr["x"] = [1.0, 2.0, 3.0]
    arr["n"] = [4, 5, 6]
    _, values = round_trip(make_state({"rec": arr}, {}))
    assert_array_restored(values["rec"], arr)


def test_masked_array_kept_or_rejected_clearly():
    masked = np.ma.masked_array([1.0, 2.0, 3.0], mask=[False, True, False])
    try:
        _, values = round_trip(make_state({"m": masked}, {}))
    except ConfigError:
        return  # a clear refusal is fine too
    np.testing.assert_array_equal(np.ma.getmaskarray(values["m"]), masked.mask)


# -- restore_value --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(make_arrays()))
def test_restore_value_in_place(name):
    original = make_arrays()[name]
    _, values = round_trip(make_state({name: original}, {}))
    current = np.zeros_like(original)
    back = restore_value(name, current, values[name])
    assert back is current
    assert_array_restored(current, original)


def test_restore_value_copies_when_nothing_current():
    _, values = round_trip(make_state({"a": np.arange(4.0)}, {}))
    back = restore_value("a", None, values["a"])
    assert isinstance(back, np.ndarray)
    assert not np.shares_memory(back, values["a"])
    np.testing.assert_array_equal(back, np.arange(4.0))


def test_restore_value_objects_come_back_as_saved():
    assert restore_value("x", {"old": 1}, {"new": 2}) == {"new": 2}


def read_only(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


@pytest.mark.parametrize(
    "current",
    [
        np.zeros((3, 2), dtype=np.float32),
        np.zeros((2, 3)),
        np.zeros(6, dtype=np.int32),
        read_only(np.zeros((2, 3), dtype=np.float32)),
    ],
    ids=["shape", "dtype", "both", "read-only"],
)
def test_restore_value_cannot_go_in_place_returns_a_copy(current):
    # an array that changed shape or dtype since the checkpoint (or cannot be written) gets a
    # fresh copy of the saved one, and is itself left alone
    before = current.copy()
    _, values = round_trip(make_state({"u": np.arange(6, dtype=np.float32).reshape(2, 3)}, {}))
    back = restore_value("u", current, values["u"])
    assert back is not current
    assert not np.shares_memory(back, values["u"])
    assert back.flags.writeable
    assert_array_restored(back, np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(current, before)


# -- SegmentView ----------------------------------------------------------------------------------


array_strategy = hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.int16, np.float32, np.float64, np.complex128]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=7),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(array_strategy, max_size=4),
    st.lists(st.binary(max_size=50), max_size=2),
    st.data(),
)
def test_read_into_equals_tobytes_slice(arrays, blobs, data):
    state = make_state(
        {f"a{i}": a for i, a in enumerate(arrays)}, {f"b{i}": b for i, b in enumerate(blobs)}
    )
    view = state.snapshot(3)
    whole = contiguous(view)
    assert whole.size == view.nbytes
    offset = data.draw(st.integers(0, view.nbytes + 16), label="offset")
    n = data.draw(st.integers(0, view.nbytes + 16 - offset), label="n")
    out = np.full(n, 0xAB, dtype=np.uint8)  # stale bytes must be overwritten
    view.read_into(offset, out)
    expected = np.zeros(n, dtype=np.uint8)
    inside = whole[offset : offset + n]
    expected[: inside.size] = inside
    np.testing.assert_array_equal(out, expected)
    direct = view.view(offset, n)
    if direct is not None:
        assert bytes(direct) == whole[offset : offset + n].tobytes()
    # and the whole thing round-trips
    _, values = unpack(whole)
    for i, a in enumerate(arrays):
        np.testing.assert_array_equal(values[f"a{i}"], a)


def test_view_across_regions_is_none():
    view = SegmentView([(0, memoryview(b"abcdefgh")), (8, memoryview(b"ijklmnop"))], 16)
    assert bytes(view.view(2, 4)) == b"cdef"
    assert view.view(6, 4) is None
    assert view.read_into(6, np.empty(4, np.uint8)).tobytes() == b"ghij"


def test_unreferenced_finds_the_arrays_only_the_state_holds() -> None:
    state = State()
    held = state["held"] = np.zeros(3)
    state["alone"] = np.zeros(3)  # protected, then never referred to
    base = np.zeros(10)
    state["view"] = base[2:]  # a view: its memory is the base's
    state["object"] = {"a": 1}  # objects are pickled at each checkpoint: never stale

    def simulate():  # the mistake: rebinding a protected array to a new one
        u = state["u"] = np.zeros(3)
        yield
        u = u + 1  # noqa: F841 - the old array is left to the state
        yield

    steps = simulate()
    next(steps)
    assert state.unreferenced() == ["alone"]
    next(steps)
    assert state.unreferenced() == ["alone", "u"]
    assert held is state["held"]
