"""Sphinx configuration: the pages are MyST Markdown; `make docs` builds them with -W."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

project = "kernel_status"
author = "kernel_status developers"
copyright = "kernel_status developers"

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
# Headings become link targets, so pages can link to each other's sections.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = ["_static"]
html_title = "kernel_status"
