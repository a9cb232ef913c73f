"""The first-checkpoint and fixed-cost benchmarks run, at a tiny size (a smoke test: their
numbers are not checked, only that every scheme asked for gets a row of finite figures)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from conftest import run_mpi

pytestmark = pytest.mark.mpi

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SCHEMES = ["parity", "mirror", "xorset"]


def rows(out: str, first_word: int) -> dict[str, list[float]]:
    """Table rows by scheme (the word after the size), with their numbers."""
    got: dict[str, list[float]] = {}
    for line in out.splitlines():
        words = line.split()
        if len(words) > first_word + 1 and words[first_word] in SCHEMES:
            numbers = got[words[first_word]] = []
            for w in words[first_word + 1 :]:
                try:
                    numbers.append(float(w))
                except ValueError:
                    break
    return got


def test_bench_first_prints_first_second_and_steady_per_scheme() -> None:
    args = ["--sizes", "0.0625", "--schemes", ",".join(SCHEMES), "--steady", "2", "--parts"]
    rc, out, err = run_mpi(BENCH / "bench_first.py", 5, *args, timeout=180)
    assert rc == 0, f"{out}\n{err}"
    got = rows(out, 1)
    assert sorted(got) == sorted(SCHEMES), out
    assert all(v and all(math.isfinite(x) and x >= 0 for x in v) for v in got.values()), out
    assert "1st/steady" in out and "load average" in out


def test_bench_fixed_prints_the_cost_and_its_parts_per_scheme() -> None:
    args = ["--sizes", "8k", "--schemes", ",".join(SCHEMES), "--repeats", "5"]
    rc, out, err = run_mpi(BENCH / "bench_fixed.py", 5, *args, timeout=180)
    assert rc == 0, f"{out}\n{err}"
    got = rows(out, 2)
    assert sorted(got) == sorted(SCHEMES) and all(got.values()), out
    for part in ("stream", "agreement", "exchange (Allreduce)", "rest (Python)"):
        assert out.count(part) >= len(SCHEMES), out
