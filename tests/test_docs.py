"""The documentation's generated parts match the code, and the README's links resolve."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_figure3_is_what_make_figures_draws():
    spec = importlib.util.spec_from_file_location("make_figures", DOCS / "make_figures.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    svg = module.figure3_svg()
    assert (DOCS / "_static" / "figure3.svg").read_text() == svg, (
        "docs/_static/figure3.svg is stale: run python docs/make_figures.py"
    )
    # the patent's Figure 3 placement (as `mpickpt layout` prints it), backup by backup
    columns = re.findall(r"backup (\d)</text>\n((?:<rect[^>]*/><text[^>]*>[dp]\d</text>\n)+)", svg)
    held = {int(b): re.findall(r">([dp]\d)</text>", boxes) for b, boxes in columns}
    assert held == {
        1: ["d0", "p1", "d8"],
        2: ["d1", "d3", "p2"],
        3: ["d2", "d4", "d6"],
        4: ["p0", "d5", "d7"],
    }


def test_readme_links_resolve():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme)
    assert links, "the README links into docs/"
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing, missing
