"""A fixed seeded sample of the fault matrix (tests/fault_matrix.py) in the default test run:
every combination ends with the failure-free result, or with a code the exit-code table allows
for it and mpickpt's message; never a hang, a wrong result or exit 0 without a result.

The long run (hundreds of combinations) is ``benchmarks/fault_matrix.py``; its numbers are in
docs/measurements.md.
"""

from __future__ import annotations

import pytest

import fault_matrix as fm
import reruns

pytestmark = [pytest.mark.mpi, pytest.mark.fault]

SEED = 2026
COUNT = 30
SAMPLE = fm.sample(SEED, COUNT)


@pytest.fixture(scope="module")
def matrix() -> fm.Matrix:
    if not fm.have_mpiexec():
        pytest.skip("mpiexec not found")
    print(f"fault matrix: seed {SEED}, {COUNT} combinations")
    return fm.Matrix(SEED, echo=print)


def test_the_sample_covers_every_option():
    assert {c.scheme for c in SAMPLE} == set(fm.SCHEMES)
    assert {c.phase for c in SAMPLE} >= {*fm.STEP_PHASES, "outside", "start", "done"}
    assert {c.spill for c in SAMPLE} == {True, False}
    assert {c.redistribute for c in SAMPLE} == {True, False}
    assert {c.transport for c in SAMPLE} == {"sm", "tcp"}
    assert {c.spares for c in SAMPLE} == {0, 1, 2}
    assert {c.interval.partition("=")[0] for c in SAMPLE} == {"every", "every_seconds", "auto"}


@pytest.mark.parametrize("index", range(COUNT), ids=lambda i: f"{i}-{SAMPLE[i].describe()}")
def test_fault_matrix(matrix, index):
    c = SAMPLE[index]
    r = matrix.run(c)
    print(fm.line(r))
    if fm.broken_by_open_mpi(r):
        reruns.record(fm.line(r))
        r = matrix.run(c)
        print(fm.line(r))
    assert not fm.bad(r), f"{fm.line(r)} (allowed: {sorted(fm.allowed_codes(c))})\n{r.log}"
