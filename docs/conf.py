"""Sphinx configuration: ``sphinx-build -W -b html docs docs/_build/html`` (the ``docs`` extra)."""

from __future__ import annotations

import re
from importlib import metadata

project = "mpickpt"
author = "the mpickpt developers"
copyright = "2026, the mpickpt developers"
release = metadata.version("mpickpt")  # the one version, from pyproject.toml
version = release

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "make_figures.py", "make_architecture.py"]
myst_heading_anchors = 3  # links such as recovery.md#beyond-the-tolerance
myst_enable_extensions = ["colon_fence"]

# The API pages import mpickpt; mpi4py.MPI would start MPI in the build process (and needs an
# MPI library installed): the docs are built against a stand-in for it.
autodoc_mock_imports = ["mpi4py.MPI"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"

try:  # furo if it is installed (the docs extra brings it), else Sphinx's default theme
    import furo  # noqa: F401

    html_theme = "furo"
except ImportError:
    html_theme = "alabaster"
html_static_path = ["_static"]
html_title = f"mpickpt {release}"


# A page shows an example's function as a plain code block, readable on a forge, after a
# comment naming it: ``<!-- examples/wave1d.py: simulate -->``. The HTML includes the function
# from the file itself (tests/test_docs.py checks that the copy on the page is equal to it).
INCLUDED = re.compile(r"<!-- (examples/[\w/]+\.py): (\w+) -->\n```python\n.*?\n```", re.S)


def include_from_the_file(app: object, docname: str, source: list[str]) -> None:
    source[0] = INCLUDED.sub(
        lambda m: f"```{{literalinclude}} ../{m[1]}\n:language: python\n:pyobject: {m[2]}\n```",
        source[0],
    )


def setup(app: object) -> None:
    app.connect("source-read", include_from_the_file)  # type: ignore[attr-defined]
