"""The documentation's generated parts match the code, and the README's links resolve."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def docs_script(name: str) -> Any:
    """A Python file of docs/ (a script or conf.py), loaded as a module."""
    spec = importlib.util.spec_from_file_location(Path(name).stem, DOCS / name)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_figure3_is_what_make_figures_draws():
    module = docs_script("make_figures.py")
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


# -- every heading of every page is in the built HTML ------------------------------------------

FENCE = re.compile(r"^(`{3,}|~{3,}|:{3,})")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
SMART_QUOTES = str.maketrans("\u2018\u2019\u201c\u201d", "''\"\"")


def markdown_headings(text: str) -> list[str]:
    """The headings an author wrote: ``#`` lines outside fences, where any line that starts
    with a fence closes the open one (as the author meant it, whatever follows on that line;
    CommonMark would not close it, which is the mistake this check exists to catch)."""
    headings, fence = [], ""
    for line in text.splitlines():
        opened = FENCE.match(line)
        if fence:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = ""
        elif opened:
            fence = opened.group(1)
        elif match := HEADING.match(line):
            headings.append(_plain(match.group(2)))
    return headings


def _plain(text: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links: their text
    text = re.sub(r"[`*]", "", text)
    text = text.translate(SMART_QUOTES)  # Sphinx's smartquotes
    return " ".join(text.split())


class _HeadingText(HTMLParser):
    """The text of every h1-h6 of an HTML page, without the permalink Sphinx appends."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[str] = []
        self._depth = 0  # inside a heading
        self._skip = 0  # inside its permalink
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if re.fullmatch(r"h[1-6]", tag):
            self._depth, self._text = 1, []
        elif self._depth and tag == "a" and "headerlink" in (dict(attrs).get("class") or ""):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if self._skip and tag == "a":
            self._skip -= 1
        elif self._depth and re.fullmatch(r"h[1-6]", tag):
            self._depth = 0
            self.headings.append(_plain("".join(self._text)))

    def handle_data(self, data: str) -> None:
        if self._depth and not self._skip:
            self._text.append(data)


def _is_current(html_dir: Path) -> bool:
    pages = list(DOCS.glob("*.md"))
    built = [html_dir / f"{page.stem}.html" for page in pages]
    if not all(page.exists() for page in built):
        return False
    newest_source = max(p.stat().st_mtime for p in [*pages, DOCS / "conf.py"])
    return min(page.stat().st_mtime for page in built) >= newest_source


@pytest.fixture(scope="module")
def built_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML of the docs: the build .ci/run just made if it is newer than every page, else
    a fresh build into a temporary directory (the docs extra brings Sphinx)."""
    pytest.importorskip("myst_parser")
    ci_build = DOCS / "_build" / "html"
    if _is_current(ci_build):
        return ci_build
    out = tmp_path_factory.mktemp("html")
    command = [sys.executable, "-m", "sphinx", "-q", "-b", "html", str(DOCS), str(out)]
    subprocess.run(command, check=True, timeout=300, capture_output=True)
    return out


@pytest.mark.parametrize("page", sorted(p.stem for p in DOCS.glob("*.md")))
def test_every_heading_is_in_the_html(page: str, built_html: Path) -> None:
    wanted = markdown_headings((DOCS / f"{page}.md").read_text())
    parser = _HeadingText()
    parser.feed((built_html / f"{page}.html").read_text())
    missing = [heading for heading in wanted if heading not in parser.headings]
    assert not missing, f"docs/{page}.md: headings lost in the HTML (a broken fence?): {missing}"


def test_the_heading_check_sees_a_broken_fence() -> None:
    broken = "## A\n\n```console\n$ ls\n``` text after the fence\n\n## B\n"
    assert markdown_headings(broken) == ["A", "B"]
    assert markdown_headings("```\n## not a heading\n```\n") == []


def test_the_code_shown_on_a_page_is_the_example_itself() -> None:
    """A page shows an example's function in a plain code block (readable on a forge); the
    HTML includes the file (docs/conf.py). The copy must be the function, character for
    character."""
    conf = docs_script("conf.py")
    shown = 0
    for page in DOCS.glob("*.md"):
        for match in conf.INCLUDED.finditer(page.read_text()):
            source = (ROOT / match[1]).read_text()
            functions = {
                node.name: ast.get_source_segment(source, node)
                for node in ast.parse(source).body
                if isinstance(node, ast.FunctionDef)
            }
            block = match[0].split("```python\n", 1)[1].removesuffix("\n```")
            assert block == functions[match[2]], f"{page.name}: {match[2]} differs from {match[1]}"
            shown += 1
    assert shown >= 3, "the tutorial shows simulate, exchange and main"


def test_the_fewest_workers_of_the_scheme_guide() -> None:
    from mpickpt.schemes import get_scheme

    rows = re.findall(
        r"^\| `(\w+)\(([^)]*)\)`[^|]*\|(?:[^|]*\|){4} (\d+) \|$",
        (DOCS / "choosing.md").read_text(),
        re.M,
    )
    assert len(rows) == 5, rows
    for sid, params, fewest in rows:
        kwargs = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", params)}
        assert get_scheme(sid, **kwargs).min_workers == int(fewest), (sid, params)


def _make_architecture():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "make_architecture", DOCS / "make_architecture.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_architecture_page_is_generated_from_the_code() -> None:
    make = _make_architecture()
    page = (DOCS / "architecture.md").read_text()
    assert make.render(page) == page, (
        "docs/architecture.md is stale: python docs/make_architecture.py"
    )


def test_the_architecture_page_states_the_limits_the_test_enforces() -> None:
    import test_architecture as arch

    page = " ".join((DOCS / "architecture.md").read_text().split())
    assert f"past {arch.MAX_MODULE_LINES} lines and no class past {arch.MAX_CLASS_LINES}" in page
    found = _make_architecture().modules()
    mpi = _make_architecture().loads_mpi({m: deps for m, (_, deps) in found.items()})
    assert not mpi & set(arch.PURE), "the table marks a module the test checks as pure"
    assert "mpickpt.faults" in mpi and "mpickpt.config" not in mpi


def test_every_setting_is_in_the_environment_table() -> None:
    import dataclasses

    from mpickpt.config import Config

    make = _make_architecture()
    meanings = make.meanings(make._config()[1])
    for field in dataclasses.fields(Config):
        name = "MPICKPT_" + field.name.upper()
        assert meanings.get(name), f"config.py's docstring does not say what {name} means"
        assert make.readers(field.name), f"no module reads config().{field.name}"
