"""Using the library alone, without MPI: the checks ``protect`` makes, the fingerprint of the
protected state, the spill's tag, ``fresh`` and private files, the logger, the run report and
the command line."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mpickpt import ConfigError, SpillError, report
from mpickpt.cli import main
from mpickpt.config import Config
from mpickpt.log import Timeline, logger, parse_timelines
from mpickpt.segment import State, describe, fingerprint_diff
from mpickpt.spill import find_restart, read_index
from mpickpt.spill.directory import commit, set_aside, write_version_file
from reference import contiguous

# -- protect ----------------------------------------------------------------------------------


def test_a_name_protected_twice_is_an_error_unless_replaced() -> None:
    state = State()
    state.declare("u", np.zeros(3))
    state["u"] = np.zeros(3)
    with pytest.raises(ConfigError, match=r"^'u' is already protected; .*replace=True"):
        state.declare("u", np.ones(3))
    state.declare("u", np.ones(4), replace=True)
    assert state.declared["u"] == ["array", "<f8", [4]]


@pytest.mark.parametrize(
    ("obj", "why"),
    [
        (lambda x: x, "PicklingError|AttributeError"),
        (open(__file__), "TypeError"),  # noqa: SIM115 - the misuse under test
    ],
)
def test_an_object_that_cannot_be_pickled_fails_at_protect(obj: object, why: str) -> None:
    with pytest.raises(ConfigError, match=rf"^protected entry 'bad' cannot be pickled \(({why})"):
        State().declare("bad", obj)


def test_arrays_are_not_pickled_at_protect() -> None:
    big = np.zeros(1 << 16)
    State().declare("big", big)  # arrays go by reference; nothing to check
    assert describe(big) == ["array", "<f8", [1 << 16]]
    assert describe({"a": 1}) == ["object"]


def test_fingerprint_difference_names_every_entry() -> None:
    saved = {"u": ["array", "<f8", [10]], "n": ["object"], "gone": ["object"]}
    now = {"u": ["array", "<f4", [10]], "n": ["array", "<i8", []], "new": ["object"]}
    diff = fingerprint_diff(saved, now)
    assert diff == [
        "'gone' was saved but is not protected now",
        "'new' is protected now but was not saved",
        "'u' was saved as an array <f8 of shape (10,), protected now as an array <f4 of "
        "shape (10,)",
        "'n' was saved as an object, protected now as an array <i8 of shape ()",
    ]
    assert fingerprint_diff(saved, saved) == []


# -- the spill --------------------------------------------------------------------------------


def spill(directory: Path, version: int = 0, tag: str | None = None, nworkers: int = 2) -> None:
    state = State()
    state["u"] = np.arange(5.0)
    seg = contiguous(state.snapshot(7))
    infos = [
        write_version_file(
            directory, version, r, seg, nworkers=nworkers, scheme_config={"id": "mirror"}
        )
        for r in range(nworkers)
    ]
    commit(directory, version, nworkers, {"id": "mirror"}, infos, keep=2, tag=tag)


def test_spill_is_private(tmp_path: Path) -> None:
    d = tmp_path / "new" / "ckpt"
    spill(d)
    (d / "DONE").write_text("completed after step 7\n")  # not ours: only what we write is checked
    for path in [d, *d.rglob("*")]:
        if path.name == "DONE":
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


@pytest.mark.parametrize("name", ["/etc/passwd", "../v00000001/rank00000.h5", "..", "a/b.h5"])
def test_index_with_a_name_outside_its_version_is_refused(tmp_path: Path, name: str) -> None:
    spill(tmp_path)
    path = tmp_path / "v00000000" / "INDEX.json"
    index = json.loads(path.read_text())
    index["files"][0]["file"] = name
    path.write_text(json.dumps(index))
    with pytest.raises(SpillError, match="lead outside") as e:
        read_index(tmp_path, 0)
    assert str(path) in str(e.value) and e.value.paths == [str(path)]


def test_restart_with_another_tag_is_refused(tmp_path: Path) -> None:
    spill(tmp_path, tag="inputs-1")
    assert find_restart(tmp_path, 2, tag="inputs-1").version == 0
    with pytest.raises(SpillError, match=r"tagged 'inputs-1', but this run's tag is 'inputs-2'"):
        find_restart(tmp_path, 2, tag="inputs-2")
    with pytest.raises(SpillError, match=r"tagged 'inputs-1', but this run's tag is None"):
        find_restart(tmp_path, 2)


def test_done_is_reported_with_the_restart(tmp_path: Path) -> None:
    spill(tmp_path)
    assert find_restart(tmp_path, 2).done is None
    (tmp_path / "DONE").write_text("completed after step 7\n")
    assert find_restart(tmp_path, 2).done == 7


def test_fresh_moves_old_versions_aside(tmp_path: Path) -> None:
    assert set_aside(tmp_path / "none") is None
    spill(tmp_path, 3)
    (tmp_path / "DONE").write_text("completed after step 7\n")
    (tmp_path / "notes.txt").write_text("mine")
    old = set_aside(tmp_path)
    assert old is not None and Path(old).parent == tmp_path and Path(old).name.startswith("old-")
    assert sorted(os.listdir(old)) == ["DONE", "v00000003"]
    assert sorted(os.listdir(tmp_path)) == sorted([Path(old).name, "notes.txt"])
    assert stat.S_IMODE(os.stat(old).st_mode) == 0o700
    spill(tmp_path, 0)
    second = set_aside(tmp_path)
    assert second != old and sorted(os.listdir(second)) == ["v00000000"]  # type: ignore[arg-type]


# -- configuration, logging, report ----------------------------------------------------------


def test_environment_variables_of_this_task() -> None:
    c = Config.from_env({"MPICKPT_LOG_LEVEL": "debug", "MPICKPT_FRESH": "1", "MPICKPT_REPORT": "r"})
    assert (c.log_level, c.fresh, c.report) == ("DEBUG", True, "r")
    assert Config.from_env({}).fresh is False
    with pytest.raises(ConfigError, match="MPICKPT_LOG_LEVEL must be one of"):
        Config.from_env({"MPICKPT_LOG_LEVEL": "loud"})


def test_records_carry_the_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "5")
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    keep = Keep()
    logger().addHandler(keep)
    try:
        logger().warning("hello")
    finally:
        logger().removeHandler(keep)
    assert [(r.rank, r.getMessage()) for r in seen] == [("5", "hello")]  # type: ignore[attr-defined]


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_default_log_output_and_warnings_without_source_lines() -> None:
    code = (
        "import warnings\n"
        "from mpickpt.log import logger, warn\n"
        "show = warnings.showwarning\n"
        "logger().info('one line')\n"
        "logger().debug('hidden')\n"
        "warn('careful')\n"
        "assert warnings.showwarning is show\n"
    )
    proc = run_python(code, OMPI_COMM_WORLD_RANK="3")
    assert proc.stderr.splitlines() == [
        "mpickpt: [rank 3] one line",
        "mpickpt: [rank 3] warning: careful",
    ], proc.stderr
    proc = run_python(code, MPICKPT_LOG_LEVEL="DEBUG")
    assert "mpickpt: [rank ?] hidden" in proc.stderr.splitlines(), proc.stderr


def test_the_application_logging_configuration_is_used() -> None:
    code = (
        "import logging\n"
        "logging.basicConfig(format='APP %(levelname)s %(rank)s %(message)s', level=logging.INFO)\n"
        "from mpickpt.log import logger\n"
        "logger().info('through the app')\n"
    )
    proc = run_python(code, OMPI_COMM_WORLD_RANK="1")
    assert proc.stderr.splitlines() == ["APP INFO 1 through the app"], proc.stderr


def test_timeline_summary_and_the_verbose_form_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    t = Timeline(events=[(100.0, "failure detected"), (100.25, "recovered")], lost=[3], step=150)
    t.action = "rebuilt 1.0 MiB from 3 rank(s)"
    assert t.summary(140) == (
        "worker(s) [3] lost at step 150; rebuilt 1.0 MiB from 3 rank(s) in 0.25 s; "
        "resuming at step 140"
    )
    d = t.as_dict(140)
    assert (
        d["timeline"] == [[0.0, "failure detected"], [0.25, "recovered"]] and d["seconds"] == 0.25
    )
    text = f"recovery timeline (t0 = {d['detected_utc']}, the failure's detection):\n{t.format()}\n"
    assert parse_timelines(text) == [[(100.0, "failure detected"), (100.25, "recovered")]]


def test_report_takes_any_counters(tmp_path: Path) -> None:
    counters = {"checkpoints": 4, "bytes": 4_000_000, "seconds": 0.002, "messages": 24}
    data = report.build(
        outcome=0,
        message="",
        role="initial",
        scheme={"id": "mirror", "copies": 2},
        workers=3,
        spares=1,
        step=12,
        counters=counters,
        spill=None,
        recoveries=[],
    )
    path = report.write(tmp_path / "run.json", data)
    back = json.loads(Path(path).read_text())
    assert back["checkpoints"] == {**counters, "gb_per_s": 2.0}
    assert back["format"] == "mpickpt-report" and back["spill"] is None
    assert report.checkpoint_section({"checkpoints": 0})["gb_per_s"] is None


# -- the command line -------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["layout", "demo", "inspect", "verify"])
def test_every_option_has_help_with_its_default(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    options = [line.split()[0] for line in text.splitlines() if line.startswith("  --")]
    assert options, text
    body = text.split("options:", 1)[1]
    for chunk in body.split("\n  -")[1:]:
        if not chunk.startswith("h, --help"):
            assert "(default:" in chunk, chunk  # help text and default for every option


def test_inspect_and_verify_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spill(tmp_path, 0, tag="t")
    spill(tmp_path, 1, tag="t")
    (tmp_path / "DONE").write_text("completed after step 7\n")
    assert main(["inspect", "--json", str(tmp_path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["done"] == 7 and [v["version"] for v in data["versions"]] == [1, 0]
    assert {v["status"] for v in data["versions"]} == {"complete"}
    assert data["versions"][0]["tag"] == "t" and len(data["versions"][0]["files"]) == 2
    assert main(["inspect", str(tmp_path)]) == 0
    assert "tag: t" in capsys.readouterr().out
    assert main(["verify", "--json", str(tmp_path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] and data["complete_versions"] == [1, 0] and data["bad"] == []
    rank1 = tmp_path / "v00000001" / "rank00001.h5"
    raw = bytearray(rank1.read_bytes())
    raw[-100] ^= 0xFF
    rank1.write_bytes(bytes(raw))
    assert main(["verify", "--json", str(tmp_path)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert not data["ok"] and len(data["bad"]) == 1 and str(rank1) in data["bad"][0]


def test_demo_without_spares_is_a_clear_message() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mpickpt.cli", "demo", "--spares", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("mpickpt demo: --spares 0 leaves no spare rank"), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_config_parses_kill_and_mtbf() -> None:
    c = Config.from_env({"MPICKPT_KILL": "1@5, 2@7:commit,3@recovery", "MPICKPT_MTBF": "6h"})
    assert c.kill == ((1, 5, "compute"), (2, 7, "commit"), (3, -1, "recovery"))
    assert c.mtbf == 6 * 3600
    assert Config.from_env({}).kill == () and Config.from_env({}).mtbf is None
    with pytest.raises(ConfigError, match="bad MPICKPT_KILL entry '1@@x'"):
        Config.from_env({"MPICKPT_KILL": "1@@x"})
    with pytest.raises(ConfigError, match="^MPICKPT_MTBF must be a positive duration"):
        Config.from_env({"MPICKPT_MTBF": "soon"})


def mpickpt_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mpickpt.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_demo_with_too_few_workers_is_a_json_error_that_says_the_minimum() -> None:
    done = mpickpt_cli("demo", "--workers", "3", "--json")
    assert done.returncode == 2, done.stderr
    error = json.loads(done.stdout)
    assert error["exit_code"] == 2 and "4 or more workers" in error["error"], error
    assert "worker ranks (at least 4)" in mpickpt_cli("demo", "--help").stdout


def test_help_has_no_rest_markup() -> None:
    for args in [("--help",), *((c, "--help") for c in ("layout", "demo", "inspect", "verify"))]:
        assert "``" not in mpickpt_cli(*args).stdout, args


def test_a_closed_pipe_ends_inspect_without_a_traceback(tmp_path: Path) -> None:
    spill(tmp_path / "ckpt")  # something to list
    proc = subprocess.Popen(
        [sys.executable, "-m", "mpickpt.cli", "inspect", "--json", str(tmp_path / "ckpt")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # as `| head` does once it has read enough
    assert proc.wait(timeout=60) == 1
    err = proc.stderr.read()
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


WRITE_BIG = """
import sys, numpy as np
from mpickpt.segment import State
from mpickpt.spill.format import write_rank_file
state = State()
state["u"] = np.ones(8 << 20)  # 64 MB: long enough to be killed while writing
view = state.snapshot(1)
seg = view.read_into(0, np.empty(view.nbytes, dtype=np.uint8))
while True:
    write_rank_file(sys.argv[1], seg, version=0, rank=0, nworkers=1, scheme_config={"id": "mirror"})
"""


def test_a_file_killed_mid_write_is_private_from_its_creation(tmp_path: Path) -> None:
    final = tmp_path / "rank00000.h5"
    tmp = tmp_path / "rank00000.h5.tmp"
    os.umask(umask := os.umask(0o022))  # the usual umask: files 0644 unless made private
    proc = subprocess.Popen([sys.executable, "-c", WRITE_BIG, str(final)])
    try:
        seen = set()
        deadline = time.monotonic() + 60
        while len(seen) < 3 and time.monotonic() < deadline:  # the .tmp of several writes
            with contextlib.suppress(FileNotFoundError):
                seen.add((tmp.stat().st_ino, stat.S_IMODE(tmp.stat().st_mode)))
            assert proc.poll() is None, "the writer failed"
            time.sleep(0.001)
    finally:
        proc.kill()  # SIGKILL, mid-write or between writes
        proc.wait(timeout=30)
    assert seen and {mode for _, mode in seen} == {0o600}, (oct(umask), seen)
    if tmp.exists():
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o600
