"""Sphinx configuration of the course site (``make site``; sources made by site_build.py)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

SITE_DIR = Path(__file__).resolve().parent
ROOT = SITE_DIR.parent
# autodoc documents utils from this repository (never another installed copy)
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(SITE_DIR))

import site_settings  # noqa: E402

project = "Explainable ML for ECG time-series classification"
author = "the course authors"
copyright = "the course authors; MIT-BIH: PhysioNet, ODC-By 1.0"

# githubpages writes .nojekyll, so that GitHub Pages serves _static/ and _images/
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax",
              "sphinx.ext.githubpages"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# --- notebooks: the stored outputs are shown, nothing is executed
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
# The notebooks and docs were written for Jupyter and GitHub, not for Sphinx: headings may
# skip a level, and pages are not all in a toctree of their own.
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type", "misc.highlighting_failure"]

# --- maths: MathJax 3 served by the site itself (copied from npm into _static/mathjax)
mathjax_path = "mathjax/tex-chtml.js"

# --- API reference
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

# --- HTML
html_theme = "sphinx_book_theme"
html_title = "Explainable ML for ECG"
# canonical links; githubpages also writes a CNAME file when this is not a *.github.io address
html_baseurl = site_settings.SITE_URL
# html_static_path is relative to this folder; the site's static files (MathJax, badges) are
# written into the generated sources, so their folder is added once the source folder is known.
html_static_path: list[str] = []
html_last_updated_fmt = None
# Without a default the theme's script logs "Got invalid theme mode" on a visitor's first page.
html_context = {"default_mode": "auto"}
html_theme_options = {
    "repository_url": site_settings.github_url(),
    "repository_branch": site_settings.BRANCH,
    "use_repository_button": True,
    "use_download_button": True,
    "home_page_in_toc": True,
    "show_toc_level": 2,
    # the launch buttons of the theme would open the instructor notebooks: the pages carry
    # their own (Binder opens the learner copies in work/)
    "launch_buttons": {},
}


def _add_static(app, config) -> None:
    config.html_static_path.append(str(Path(app.srcdir) / "_static"))


#: ``|x|`` (an absolute value in a docstring), which reST would read as a substitution.
_BARS = re.compile(r"(?<![\\|`])\|([^|\s`][^|`]*?)\|(?![|_])")


def _escape_bars(app, what, name, obj, options, lines: list[str]) -> None:
    """Docstrings write ``|value|`` for an absolute value: shown as written, not a reference."""
    for index, line in enumerate(lines):
        if not line.lstrip().startswith(("|", "+")):  # keep reST tables and line blocks
            lines[index] = _BARS.sub(r"\\|\1\\|", line)


def setup(app):
    app.connect("config-inited", _add_static)
    app.connect("autodoc-process-docstring", _escape_bars)
    return {"parallel_read_safe": True}
