"""A configuration that cannot work, on real ranks: every process prints the same clear error
and the job exits with 2 (not a traceback, a hang, or the "relaunch" code 75)."""

from __future__ import annotations

import re

import pytest

from conftest import EXAMPLES, HEAT, run_mpi

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize(
    ("n", "args", "message"),
    [
        # 2 workers + 1 spare: parity's 3 backups need 3 other failure domains. Only the
        # workers build the layout, so a spare that did not check it would wait for them.
        (3, [], r"needs 3 backups on 3 other failure domains.*use fewer backups \(at most 1\)"),
        (4, ["--group", "0"], r"parity needs group >= 1, got 0"),
        (4, ["--spares", "4"], r"4 spare\(s\) leave no worker among 4 processes"),
    ],
)
def test_bad_configuration_is_a_clear_error(n: int, args: list[str], message: str) -> None:
    rc, out, err = run_mpi(EXAMPLES / "heat2d.py", n, *HEAT, *args, timeout=60)
    assert rc == 2, f"rc={rc}\n{out}\n{err}"
    lines = re.findall(r"^mpickpt: rank (\d+): ConfigError: (.*)$", err, re.M)
    assert sorted(int(rank) for rank, _ in lines) == list(range(n)), err
    assert len({text for _, text in lines}) == 1 and re.search(message, lines[0][1]), err
    assert "Traceback" not in err and "checksum" not in out, err
