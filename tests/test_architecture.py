"""The shape of the package: the pure half never loads MPI, and no module grows into a room
that does too much."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mpickpt"
PURE = [
    "mpickpt.layout",
    "mpickpt.gf256",
    "mpickpt.schemes",
    "mpickpt.planning",
    "mpickpt.segment",
    "mpickpt.memstore",
    "mpickpt.config",
    "mpickpt.errors",
    "mpickpt.exittimer",
    "mpickpt.heartbeat",
    "mpickpt.job",
    "mpickpt.launch",
    "mpickpt.runopts",
    "mpickpt.slurm",
    "mpickpt.supervisor",
    "mpickpt.verdict",
    "mpickpt.spill",
    "mpickpt.spill.format",
    "mpickpt.spill.directory",
    "mpickpt.spill.listing",
    "mpickpt.spill.writer",
    "mpickpt.spill._helper",
]
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 210


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_do_not_load_mpi(module: str) -> None:
    code = f"import sys, {module}; sys.exit('mpi4py.MPI' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0, module


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(SRC)))
def test_modules_and_classes_stay_small(path: Path) -> None:
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{path} has grown past the limit"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef):
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            assert size <= MAX_CLASS_LINES, f"class {node.name} in {path}: {size} lines"
