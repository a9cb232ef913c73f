"""Every error message that advises a fix gives one that works: each test follows the advice
(more processes, other parameters, another scheme) and checks that the job then runs."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import HEAT_SCHEME, command, run_command
from mpickpt.errors import ConfigError
from mpickpt.schemes import get_scheme, registry

# parity(2, 3), the tests' scheme: it fits 4 workers
HEAT2D = [
    *("-m", "mpickpt.examples.heat2d", "--steps", "12", "--size", "32", "--every", "4"),
    *HEAT_SCHEME,
]


def heat2d(n: int, *args: str) -> tuple[int, str, str]:
    """heat2d on ``n`` ranks (mpiexec), or in a plain ``python`` for ``n == 0``."""
    if n == 0:
        done = subprocess.run(
            [sys.executable, *HEAT2D, *args], capture_output=True, text=True, timeout=60
        )
        return done.returncode, done.stdout, done.stderr
    return run_command(command(n, *HEAT2D, *args), timeout=90)


def config_error(err: str) -> str:
    found = re.findall(r"^mpickpt(?:: ConfigError| layout): (.*)$", err, re.M)
    assert len(found) == 1, err
    return found[0]


def as_options(scheme: str) -> list[str]:
    """``mirror(copies=1)`` as heat2d's options."""
    sid, params = re.fullmatch(r"(\w+)\((.*)\)", scheme).groups()  # type: ignore[union-attr]
    options = ["--scheme", sid]
    for key, value in re.findall(r"(\w+)=(\d+)", params):
        options += [f"--{key}", value]
    return options


@pytest.mark.mpi
def test_too_few_workers_for_the_scheme() -> None:
    rc, _, err = heat2d(2, "--spares", "0", "--group", "2", "--backups", "3")
    assert rc == 2, err
    message = config_error(err)
    more = re.search(r"launch (\d+) or more workers, or use (\w+\([^)]*\))", message)
    assert more, message
    rc, out, err = heat2d(int(more[1]), "--spares", "0", "--group", "2", "--backups", "3")
    assert rc == 0 and "checksum:" in out, err
    rc, out, err = heat2d(2, "--spares", "0", *as_options(more[2]))
    assert rc == 0 and "checksum:" in out, err


WIDE = {  # every scheme on 5 backups (xorset: sets of 6)
    "parity": {"group": 4, "backups": 5},
    "mirror": {"copies": 5},
    "stripe": {"backups": 5},
    "rs": {"group": 3, "parity": 2},
    "xorset": {"group": 6},
}


@pytest.mark.parametrize("sid", sorted(registry))
@pytest.mark.parametrize("workers", [2, 3, 4])
def test_every_scheme_too_few_workers_names_one_that_fits(sid: str, workers: int) -> None:
    scheme = get_scheme(sid, **WIDE[sid])
    try:
        scheme.check_workers(workers)
    except ConfigError as e:
        suggested = re.search(r"or use (\w+)\(([^)]*)\)$", str(e))
        assert suggested, e
        params = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", suggested[2])}
        fits = get_scheme(suggested[1], **params)
        fits.check_workers(workers)
        assert fits.min_workers <= workers
    else:
        assert scheme.min_workers <= workers


@pytest.mark.parametrize(
    "options",
    [
        ["--group", "2", "--backups", "1"],
        ["--group", "3", "--backups", "3"],
        ["--scheme", "rs", "--group", "2", "--parity", "2", "--backups", "2"],
        ["--scheme", "rs", "--group", "3", "--parity", "2", "--backups", "4"],
    ],
)
def test_layout_parameters(options: list[str]) -> None:
    layout = [sys.executable, "-m", "mpickpt.cli", "layout", *options]
    done = subprocess.run(layout, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    advice = re.search(r"Use backups=(\d+)(?: or group=(\d+))?$", config_error(done.stderr))
    assert advice, done.stderr
    fixes = [["--backups", advice[1]]] + ([["--group", advice[2]]] if advice[2] else [])
    for fix in fixes:
        fixed = options + fix  # argparse: the last value of an option wins
        done = subprocess.run([*layout[:4], *fixed], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (fixed, done.stderr)


@pytest.mark.mpi
def test_spares_without_enough_processes() -> None:
    rc, _, err = heat2d(0, "--spares", "2")  # a plain `python`: one process
    assert rc == 2, err
    message = config_error(err)
    launch = re.search(r"launch mpiexec -n (\d+) or more or run without spares \(spares=0", message)
    assert launch, message
    rc, out, err = heat2d(int(launch[1]), "--spares", "2")
    assert rc == 0 and "checksum:" in out, err
    rc, out, err = heat2d(0, "--spares", "0")
    assert rc == 0 and "checksum:" in out, err
    # four processes: fewer spares would do
    rc, _, err = heat2d(4, "--spares", "2")
    fewer = re.search(r"or ask for at most (\d+) spare\(s\)$", config_error(err))
    assert rc == 2 and fewer, err
    rc, out, err = heat2d(4, "--spares", fewer[1])
    assert rc == 0 and "checksum:" in out, err
