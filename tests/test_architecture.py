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
    "mpickpt.files",
    "mpickpt.tags",
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


def test_every_message_tag_is_defined_once_with_its_own_value() -> None:
    from mpickpt import tags

    assert len(set(tags.ALL)) == len(tags.ALL), "two message tags share a value"
    defined = {n for n in vars(tags) if n.startswith("TAG_")}
    assert defined <= {n for n in vars(tags) if getattr(tags, n) in tags.ALL}
    for path in _sources():
        if path.name != "tags.py":
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Assign):
                    names = [t.id for t in node.targets if isinstance(t, ast.Name)]
                    assert not any(n.startswith("TAG_") for n in names), f"{path}: {names}"


MAX_FUNCTION_LINES = 50  # from the ``def`` line to the end, without the docstring


def _function_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    size = (node.end_lineno or node.lineno) - node.lineno + 1
    if ast.get_docstring(node, clean=False) is not None:
        first = node.body[0]
        size -= (first.end_lineno or first.lineno) - first.lineno + 1
    return size


def test_functions_stay_short() -> None:
    """Every function reads as a few named steps: at most 50 lines, docstring excluded."""
    long = set()
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            is_function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            if is_function and _function_lines(node) > MAX_FUNCTION_LINES:
                long.add((str(path.relative_to(SRC)), node.name))
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {sorted(long)}"
