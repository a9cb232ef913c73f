"""Sphinx configuration: ``sphinx-build -W -b html docs docs/_build/html`` (the ``docs`` extra)."""

from __future__ import annotations

from importlib import metadata

project = "mpickpt"
author = "the mpickpt developers"
copyright = "2026, the mpickpt developers"
release = metadata.version("mpickpt")  # the one version, from pyproject.toml
version = release

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "make_figures.py"]
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
