"""HDF5 spill: format, atomic commit, damage detection, pruning, background writer (no MPI)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from mpickpt import cli, spill
from mpickpt.checksum import checksum
from mpickpt.errors import MpickptError
from mpickpt.segment import State, unpack
from mpickpt.spill import SpillError, listing
from mpickpt.spill.writer import SpillWriter
from reference import contiguous

NW = 3
INSTALL_DEBS = Path(__file__).parent / "install-debs.sh"
SCHEME = {"id": "parity", "group": 3, "backups": 4}


def make_segment(rank: int, step: int, n: int = 1000) -> np.ndarray:
    """A real segment: arrays of several dtypes, a dict and an RNG state."""
    rng = np.random.default_rng(1000 * rank + step)
    st = State()
    st["u"] = rng.standard_normal((n // 10, 10))
    st["counts"] = np.arange(n, dtype=np.int32) * (rank + 1)
    st["mask"] = rng.random(17) > 0.5
    st["big/endian"] = np.arange(5, dtype=">f8")
    st["scalar"] = np.array(step, dtype=np.float32)
    st["empty"] = np.zeros((0, 3))
    st["when"] = np.array(["2024-01-01", "2025-06-30"], dtype="<M8[s]")
    st["labels"] = np.array(["a", "bcd"], dtype="<U3")
    st["params"] = {"dt": 0.1 * step, "name": f"rank{rank}", "list": [1, 2, 3]}
    st["rng"] = rng.bit_generator.state
    return contiguous(st.snapshot(step, {"rank": rank}))


def write_version(
    directory: Path, version: int, step: int, n: int = 1000, commit: bool = True
) -> list[np.ndarray]:
    segs = [make_segment(r, step, n) for r in range(NW)]
    writers = [SpillWriter(directory, r, NW, SCHEME, keep=10) for r in range(NW)]
    try:
        for w, s in zip(writers, segs, strict=True):
            w.submit(version, s)
        assert all(w.job(version).wait() for w in writers)
        if commit:
            writers[0].commit(version, [w.info(version) for w in writers])
    finally:
        for w in writers:
            w.close()
    return segs


def flip_byte_in_dataset(path: str, dataset: str, at: int = 3) -> None:
    with h5py.File(path, "r") as f:
        offset = f[dataset].id.get_offset()
    assert offset is not None
    with open(path, "r+b") as fh:
        fh.seek(offset + at)
        b = fh.read(1)
        fh.seek(offset + at)
        fh.write(bytes([b[0] ^ 0x40]))


@pytest.fixture
def two_versions(tmp_path: Path) -> tuple[Path, list[np.ndarray], list[np.ndarray]]:
    a = write_version(tmp_path, 1, 10)
    b = write_version(tmp_path, 2, 20)
    return tmp_path, a, b


def test_load_is_byte_identical(two_versions: Any) -> None:
    d, a, b = two_versions
    assert spill.complete_versions(d) == [2, 1]
    for v, segs in ((1, a), (2, b)):
        for r in range(NW):
            got = spill.load(d, v, r)
            assert got.dtype == np.uint8
            assert got.tobytes() == segs[r].tobytes()
    assert spill.verify(d) == []
    assert (spill.find_restart(d, NW).version, spill.find_restart(d, NW).problems) == (2, [])


@pytest.fixture(scope="module")
def h5dump(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The HDF5 command-line dumper, from Debian's hdf5-tools if missing (skips if it cannot
    be installed here)."""
    if shutil.which("h5dump") is None:
        log = tmp_path_factory.mktemp("apt") / "apt.log"
        proc = subprocess.run(
            ["bash", str(INSTALL_DEBS), str(log), "hdf5-tools"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode == 3:
            pytest.skip(f"h5dump cannot be installed here: {proc.stderr.strip()}")
        assert proc.returncode == 0, proc.stderr
    path = shutil.which("h5dump")
    assert path is not None, "hdf5-tools installed, but no h5dump on PATH"
    return path


def test_files_open_with_h5dump(two_versions: Any, h5dump: str) -> None:
    """The files are plain HDF5 for other tools too (here HDF5 1.10's h5dump, while h5py
    writes them with HDF5 2.x)."""
    d, _, b = two_versions
    path = os.path.join(d, "v00000002", "rank00001.h5")
    _, values = unpack(b[1])

    def dump(*args: str) -> str:
        proc = subprocess.run(
            [h5dump, *args, path], capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    header = dump("-H")
    for name, hdf5_type in (
        ("u", "H5T_IEEE_F64LE"),
        ("counts", "H5T_STD_I32LE"),
        ("big%2Fendian", "H5T_IEEE_F64BE"),
    ):
        shape = ", ".join(map(str, values[name.replace("%2F", "/")].shape))
        block = header.split(f'DATASET "{name}"', 1)[1]
        assert hdf5_type in block.split("DATASPACE", 1)[0]
        assert f"SIMPLE {{ ( {shape} ) / ( {shape} ) }}" in block
    for attribute in ("step", "version", "rank", "nworkers", "segment_checksum", "scheme"):
        assert f'ATTRIBUTE "{attribute}"' in header
    # the values, as h5dump prints them (-y: no indices, -w 0: one line)
    data = dump("-y", "-w", "0", "-d", "/arrays/counts").split("DATA {", 1)[1].split("}", 1)[0]
    assert [int(x) for x in data.replace(",", " ").split()] == values["counts"].tolist()
    step = dump("-A", "-y", "-a", "/step").split("DATA {", 1)[1].split("}", 1)[0]
    assert int(step) == 20


def test_files_readable_with_plain_h5py(two_versions: Any) -> None:
    d, _, b = two_versions
    path = os.path.join(d, "v00000002", "rank00001.h5")
    manifest, values = unpack(b[1])
    with h5py.File(path, "r") as f:
        a = f.attrs
        assert (a["version"], a["step"], a["rank"], a["nworkers"]) == (2, 20, 1, NW)
        assert json.loads(a["scheme"]) == SCHEME
        assert a["mpickpt_version"]
        assert a["time"] > 0 and "T" in a["time_iso"]
        assert a["segment_checksum"] == format(checksum(b[1]), "016x")
        assert json.loads(a["manifest"]) == manifest
        for name in ("u", "counts", "mask", "scalar", "empty"):
            ds = f["arrays"][name]
            assert ds.dtype == values[name].dtype and ds.shape == values[name].shape
            np.testing.assert_array_equal(ds[()], values[name])
            assert ds.attrs["name"] == name and ds.attrs["kind"] == "array"
            assert ds.attrs["storage"] == "typed"
        # '/' in a protected name is escaped in the link name, kept in the attribute
        ds = f["arrays"]["big%2Fendian"]
        assert ds.attrs["name"] == "big/endian"
        np.testing.assert_array_equal(ds[()], values["big/endian"])
        # dtypes HDF5 cannot hold are kept as raw bytes with their numpy dtype
        when = f["arrays"]["when"]
        assert when.attrs["storage"] == "raw" and when.attrs["dtype"] == "<M8[s]"
        np.testing.assert_array_equal(when[()].view("<M8[s]"), values["when"])
        obj = f["objects"]["params"]
        assert obj.dtype == np.uint8 and obj.attrs["kind"] == "object"
        import pickle

        assert pickle.loads(obj[()].tobytes()) == values["params"]


def test_restored_values_equal(two_versions: Any) -> None:
    d, _, b = two_versions
    _, values = unpack(spill.load(d, 2, 2))
    _, want = unpack(b[2])
    assert values["params"] == want["params"]
    assert values["rng"] == want["rng"]
    np.testing.assert_array_equal(values["u"], want["u"])


def test_flipped_byte_detected_and_previous_version_used(two_versions: Any) -> None:
    d, _, _ = two_versions
    path = os.path.join(d, "v00000002", "rank00002.h5")
    flip_byte_in_dataset(path, "arrays/u")
    bad = spill.verify(d)
    assert len(bad) == 1 and path in bad[0] and "arrays/u" in bad[0]
    with pytest.raises(SpillError, match="checksum") as e:
        spill.load(d, 2, 2)
    assert e.value.paths == [path]
    found = spill.find_restart(d, NW)
    version, problems = found.version, found.problems
    assert version == 1
    assert len(problems) == 1 and path in problems[0]
    assert cli.main(["verify", str(d)]) == 1


def test_flipped_byte_in_object_detected(two_versions: Any) -> None:
    d, _, _ = two_versions
    path = os.path.join(d, "v00000002", "rank00000.h5")
    flip_byte_in_dataset(path, "objects/params", at=10)
    assert spill.find_restart(d, NW).version == 1
    assert [path in p for p in spill.verify(d)] == [True]


@pytest.mark.parametrize("keep_fraction", [0.5, 0.99, 0.0])
def test_truncated_file_detected(two_versions: Any, keep_fraction: float) -> None:
    d, _, _ = two_versions
    path = os.path.join(d, "v00000002", "rank00000.h5")
    size = os.path.getsize(path)
    os.truncate(path, int(size * keep_fraction))
    with pytest.raises(SpillError) as e:
        spill.load(d, 2, 0)
    assert path in str(e.value)
    assert not isinstance(e.value.__cause__, SpillError)
    assert [path in p for p in spill.verify(d)] == [True]
    assert spill.find_restart(d, NW).version == 1


def test_missing_file_detected(two_versions: Any) -> None:
    d, _, _ = two_versions
    path = os.path.join(d, "v00000002", "rank00001.h5")
    os.unlink(path)
    assert any("missing" in p and path in p for p in spill.verify(d))
    assert spill.find_restart(d, NW).version == 1


def test_no_usable_version_lists_bad_files(two_versions: Any) -> None:
    d, _, _ = two_versions
    p1 = os.path.join(d, "v00000001", "rank00001.h5")
    p2 = os.path.join(d, "v00000002", "rank00000.h5")
    flip_byte_in_dataset(p1, "arrays/counts")
    os.truncate(p2, 100)
    with pytest.raises(SpillError, match="no usable version") as e:
        spill.find_restart(d, NW)
    assert isinstance(e.value, MpickptError)
    assert p1 in str(e.value) and p2 in str(e.value)
    assert sorted(e.value.paths) == sorted([p1, p2])


def test_different_worker_count_is_a_clear_error(two_versions: Any) -> None:
    d, _, _ = two_versions
    with pytest.raises(SpillError, match=r"written by 3 workers, but this job has 4") as e:
        spill.find_restart(d, 4)
    assert "relaunch with 3 workers" in str(e.value)


def test_empty_or_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(SpillError, match="no complete version"):
        spill.find_restart(tmp_path, NW)
    with pytest.raises(SpillError, match="no spill directory"):
        spill.find_restart(tmp_path / "nope", NW)
    assert cli.main(["verify", str(tmp_path)]) == 2
    assert cli.main(["verify", str(tmp_path / "nope")]) == 2
    assert spill.directory.present_versions(str(tmp_path)) == []


def test_version_without_index_is_not_complete(two_versions: Any) -> None:
    d, _, _ = two_versions
    write_version(d, 3, 30, commit=False)
    assert sorted(os.listdir(os.path.join(d, "v00000003"))) == [
        f"rank{r:05d}.h5" for r in range(NW)
    ]
    assert spill.complete_versions(d) == [2, 1]
    assert (spill.find_restart(d, NW).version, spill.find_restart(d, NW).problems) == (2, [])
    with pytest.raises(SpillError, match="not complete"):
        spill.load(d, 3, 0)
    assert spill.verify(d) == []
    assert "incomplete (3 of 3 files, no index)" in listing.inspect(d)
    assert spill.directory.present_versions(str(d))[0] == 3


def test_corrupt_index_is_reported(two_versions: Any) -> None:
    d, _, _ = two_versions
    ipath = os.path.join(d, "v00000002", "INDEX.json")
    Path(ipath).write_text('{"format": "mpickpt-spill-index", "vers')
    assert spill.complete_versions(d) == [1]
    assert [ipath in p for p in spill.verify(d)] == [True]
    found = spill.find_restart(d, NW)
    version, problems = found.version, found.problems
    assert version == 1 and ipath in problems[0]
    assert "BAD INDEX" in listing.inspect(d)


def test_stale_file_not_matching_index(two_versions: Any) -> None:
    d, _, _ = two_versions
    src = os.path.join(d, "v00000001", "rank00001.h5")
    dst = os.path.join(d, "v00000002", "rank00001.h5")
    os.replace(src, dst)
    with pytest.raises(SpillError, match="does not match its index"):
        spill.load(d, 2, 1)


def test_rewriting_a_complete_version_uncommits_it_first(two_versions: Any) -> None:
    d, _, _ = two_versions
    with SpillWriter(d, 0, NW, SCHEME) as w:
        w.submit(2, make_segment(0, 99))
        assert w.job(2).wait()
    assert spill.complete_versions(d) == [1]


def test_prune_keeps_last_k(tmp_path: Path) -> None:
    for v in range(1, 6):
        write_version(tmp_path, v, 10 * v, n=100)
    write_version(tmp_path, 0, 0, n=100, commit=False)  # incomplete, older than newest
    write_version(tmp_path, 7, 70, n=100, commit=False)  # incomplete, newer: maybe in flight
    removed = spill.prune(tmp_path, keep=2)
    assert sorted(removed) == [0, 1, 2, 3]
    assert spill.complete_versions(tmp_path) == [5, 4]
    assert sorted(os.listdir(tmp_path)) == ["v00000004", "v00000005", "v00000007"]
    with pytest.raises(SpillError):
        spill.prune(tmp_path, keep=0)


def test_writer_commit_prunes(tmp_path: Path) -> None:
    writers = [SpillWriter(tmp_path, r, NW, SCHEME, keep=2) for r in range(NW)]
    for v in range(4):
        for w in writers:
            w.submit(v, make_segment(w.rank, v, 100))
        assert all(w.job(v).wait(raise_errors=False) for w in writers)
        writers[0].commit(v, [w.info(v) for w in writers])
    for w in writers:
        w.close()
    assert spill.complete_versions(tmp_path) == [3, 2]
    assert sorted(os.listdir(tmp_path)) == ["v00000002", "v00000003"]
    assert json.loads((tmp_path / "v00000003" / "INDEX.json").read_text())["step"] == 3


def test_commit_index_refuses_missing_file(tmp_path: Path) -> None:
    with SpillWriter(tmp_path, 0, NW, SCHEME) as w:
        w.submit(1, make_segment(0, 1))
        info = w.info(1)
    fake = [dict(info, rank=r, file=f"rank{r:05d}.h5") for r in range(NW)]
    with pytest.raises(SpillError, match="missing"):
        spill.commit_index(tmp_path, 1, NW, 1, SCHEME, fake)
    with pytest.raises(SpillError, match="one file per rank"):
        spill.commit_index(tmp_path, 1, NW, 1, SCHEME, [info])
    assert spill.complete_versions(tmp_path) == []


def test_submit_copies_the_callers_buffer(tmp_path: Path) -> None:
    seg = make_segment(0, 5, n=200_000)
    want = seg.copy()
    with SpillWriter(tmp_path, 0, 1, SCHEME) as w:
        w.submit(1, seg)
        seg[:] = 0xFF  # the caller reuses its buffer at once
        assert w.job(1).wait()
        spill.commit_index(tmp_path, 1, 1, 5, SCHEME, [w.info(1)])
    assert spill.load(tmp_path, 1, 0).tobytes() == want.tobytes()


def test_back_to_back_submits_reuse_buffers_correctly(tmp_path: Path) -> None:
    sizes = [50_000, 40_000, 50_000, 90_000, 30_000, 50_000]
    segs = [make_segment(0, v, n) for v, n in enumerate(sizes)]
    with SpillWriter(tmp_path, 0, 1, SCHEME, keep=10) as w:
        for v, seg in enumerate(segs):
            w.submit(v, seg)  # no wait: blocks only when two writes are pending
        assert w.flush()
        for v in range(len(segs)):
            spill.commit_index(tmp_path, v, 1, v, SCHEME, [w.info(v)])
    for v, seg in enumerate(segs):
        assert spill.load(tmp_path, v, 0).tobytes() == seg.tobytes()


def test_submit_accepts_segment_view(tmp_path: Path) -> None:
    st = State()
    st["x"] = np.arange(10.0)
    view = st.snapshot(3)
    want = contiguous(view)
    with SpillWriter(tmp_path, 0, 1, SCHEME) as w:
        w.submit(4, view)
        st["x"][:] = -1
        assert w.job(4).wait()
        spill.commit_index(tmp_path, 4, 1, 3, SCHEME, [w.info(4)])
    assert spill.load(tmp_path, 4, 0).tobytes() == want.tobytes()


def test_write_happens_in_background(tmp_path: Path) -> None:
    seg = make_segment(0, 1, n=4_000_000)  # ~40 MB
    path = spill.rank_file(tmp_path, 1, 0)
    with SpillWriter(tmp_path, 0, 1, SCHEME) as w:
        job = w.submit(1, seg)
        finished_at_submit = job.done()
        assert job.wait() and w.job(1).wait() and w.flush()
        assert os.path.exists(path) and not os.path.exists(path + ".tmp")
    # on any sane disk, 40 MB plus fsync take longer than returning from submit
    assert not finished_at_submit


def test_writer_error_is_raised_on_wait(tmp_path: Path) -> None:
    blocker = tmp_path / "v00000001"
    blocker.write_text("a file where the version directory should be")
    with SpillWriter(tmp_path, 0, 1, SCHEME) as w:
        w.submit(1, make_segment(0, 1, 100))
        assert w.job(1).wait(raise_errors=False) is False
        with pytest.raises(SpillError, match="spill of version 1"):
            w.job(1).wait()
        # the writer keeps working for later versions; flush reports each error once
        w.submit(2, make_segment(0, 2, 100))
        assert w.flush()
        assert w.job(2).wait()
    with pytest.raises(SpillError, match="not submitted"):
        w.job(3).wait()
    with pytest.raises(SpillError, match="closed"):
        w.submit(3, make_segment(0, 3, 100))


def test_writer_process_killed_fails_its_writes_and_a_new_one_takes_over(tmp_path: Path) -> None:
    with SpillWriter(tmp_path, 0, 1, SCHEME, keep=10) as w:
        helper = w._proc
        os.kill(helper.pid, signal.SIGSTOP)  # the request waits in the socket, unwritten
        w.submit(1, make_segment(0, 1, 100))
        os.kill(helper.pid, signal.SIGKILL)
        helper.wait()
        seg = make_segment(0, 2, 100)
        w.submit(2, seg)  # before anyone looked at version 1: starts a new helper
        assert w._proc.pid != helper.pid
        assert w.job(1).wait(raise_errors=False) is False
        with pytest.raises(SpillError, match="spill writer process exited"):
            w.job(1).wait()
        assert w.job(2).wait()
        spill.commit_index(tmp_path, 2, 1, 2, SCHEME, [w.info(2)])
    assert spill.load(tmp_path, 2, 0).tobytes() == seg.tobytes()
    assert w._proc.poll() == 0  # close() ended it


def test_inspect_and_cli(two_versions: Any, capsys: pytest.CaptureFixture[str]) -> None:
    d, _, _ = two_versions
    text = listing.inspect(d)
    lines = text.splitlines()
    assert lines[1].split()[:3] == ["version", "step", "workers"]
    row2 = next(ln for ln in lines if ln.split()[0] == "2")
    assert row2.split()[1:3] == ["20", "3"]
    assert "parity(backups=4, group=3)" in row2 and "complete" in row2
    assert cli.main(["inspect", str(d), "-v"]) == 0
    assert "rank00002.h5" in capsys.readouterr().out
    assert cli.main(["verify", str(d)]) == 0
    assert "OK: 2 complete version(s)" in capsys.readouterr().out


CHILD = textwrap.dedent(
    """
    import sys, numpy as np
    from mpickpt.segment import State
    from mpickpt.spill.writer import SpillWriter
    d, nw = sys.argv[1], 3
    writers = [SpillWriter(d, r, nw, {"id": "mirror", "copies": 2}) for r in range(nw)]
    for v in range(100):
        n = 100 if v == 0 else 6_000_000  # v0 small, then ~48 MB per rank
        for w in writers:
            st = State()
            st["x"] = np.full(n, float(v + w.rank))
            w.submit(v, st.snapshot(v))
        assert all(w.job(v).wait() for w in writers)
        writers[0].commit(v, [w.info(v) for w in writers])
        print("committed", v, flush=True)
    """
)


def _children(pid: int) -> list[int]:
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(k) for k in kids]


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return False


def test_kill_during_spill_never_leaves_a_false_complete_version(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().split() == ["committed", "0"]
        # wait until a big version is being written, then kill mid-write
        deadline = time.monotonic() + 60
        while not any(
            p.name.endswith(".h5.tmp") and "v00000000" not in str(p)
            for p in tmp_path.glob("v*/*.tmp")
        ):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.001)
        helpers = _children(proc.pid)
        assert len(helpers) == NW  # one writer process per rank
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # the writers die with their rank, mid-write or not
        deadline = time.monotonic() + 10
        while any(os.path.exists(f"/proc/{pid}") and not _zombie(pid) for pid in helpers):
            assert time.monotonic() < deadline, "a spill writer outlived its rank"
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    complete = spill.complete_versions(tmp_path)
    assert complete and complete[0] == spill.directory.present_versions(str(tmp_path))[0] - 1
    in_flight = spill.version_dir(tmp_path, complete[0] + 1)
    assert not os.path.exists(os.path.join(in_flight, "INDEX.json"))
    # every version that looks complete is complete; the interrupted one is never used
    assert spill.verify(tmp_path) == []
    assert spill.find_restart(tmp_path, NW).version == complete[0]
    assert "incomplete" in listing.inspect(tmp_path)


def test_lent_buffer_is_submitted_without_a_copy_and_never_overwritten_in_flight(
    tmp_path: Path,
) -> None:
    """The rank's own copy made in a lent buffer reaches the helper as is; the next lent
    buffer is another one while the helper still writes the first."""
    segs = [make_segment(0, v, 300_000) for v in range(4)]
    with SpillWriter(tmp_path, 0, 1, SCHEME, keep=10) as w:
        helper = w._proc
        os.kill(helper.pid, signal.SIGSTOP)  # the helper holds version 0 until resumed
        a = w.buffer(segs[0].nbytes)
        a[:] = segs[0]
        taken = len(w._pool.free)
        w.submit(0, a)
        assert len(w._pool.free) == taken  # no buffer was taken for a copy
        b = w.buffer(segs[1].nbytes)
        assert not np.shares_memory(a, b)
        b[:] = 0xFF  # the next own copy is written while version 0 is in flight
        os.kill(helper.pid, signal.SIGCONT)
        assert w.job(0).wait()
        b[:] = segs[1]
        w.submit(1, b)
        for v in (2, 3):  # once the helper is done, the buffers are reused
            c = w.buffer(segs[v].nbytes)
            c[:] = segs[v]
            w.submit(v, c)
        assert w.flush()
        for v in range(4):
            spill.commit_index(tmp_path, v, 1, v, SCHEME, [w.info(v)])
        assert w._pool.last <= 3
    for v, seg in enumerate(segs):
        assert spill.load(tmp_path, v, 0).tobytes() == seg.tobytes()
    assert c.tobytes() == segs[3].tobytes()  # the own copy outlives the closed writer
