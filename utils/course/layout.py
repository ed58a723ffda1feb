"""Where the course's notebooks live, for the sources and for every learner copy of them.

The course has two kinds of notebooks, both graded with nbgrader:

- the **weeks**, ``notebooks/[0-9]*.ipynb`` (at least :data:`MIN_EXERCISES_WEEK` autograded
  exercises each);
- the **deep dives**, ``notebooks/deep_dives/*.ipynb`` (at least
  :data:`MIN_EXERCISES_DEEP_DIVE` autograded exercise each).

Weeks and deep dives link to each other with relative links
(``deep_dives/D1_across_patients.ipynb`` from a week, ``../01_....ipynb`` from a deep dive), so
every copy a learner gets keeps this layout: ``work/`` of ``make lab``, ``notebooks/`` of the
learner release, ``build/student/``. The file names are unique across both kinds: a file name
(without ``.ipynb``) is the nbgrader assignment id, and submissions are collected flat as
``submissions/<learner>/<file name>``.

This module is shipped in the learner release (``make lab`` there uses it), so it imports
nothing of the instructor's tools.
"""
from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Iterable

#: Sub-folder of ``notebooks/`` (and of every learner copy) that holds the deep dives.
DEEP_DIVE_DIR = "deep_dives"
#: The weeks, relative to ``notebooks/``.
WEEK_GLOB = "[0-9]*.ipynb"
#: The deep dives, relative to ``notebooks/``.
DEEP_DIVE_GLOB = f"{DEEP_DIVE_DIR}/*.ipynb"
#: Fewest autograded test cells of a week and of a deep dive.
MIN_EXERCISES_WEEK = 3
MIN_EXERCISES_DEEP_DIVE = 1

#: A Markdown link ``[text](target)`` or ``<a href="target">`` (the target without a title).
_MD_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HREF = re.compile(r"""href\s*=\s*["']([^"']+)["']""", re.IGNORECASE)


def is_deep_dive(notebook: Path | str) -> bool:
    """Whether ``notebook`` (a path of a source or a learner copy) is a deep dive: it sits in
    a folder named :data:`DEEP_DIVE_DIR`."""
    return Path(notebook).parent.name == DEEP_DIVE_DIR


def learner_path(notebook: Path | str) -> PurePosixPath:
    """Path of ``notebook`` relative to a folder of learner notebooks:
    ``01_x.ipynb`` for a week, ``deep_dives/D1_x.ipynb`` for a deep dive."""
    name = Path(notebook).name
    return PurePosixPath(DEEP_DIVE_DIR, name) if is_deep_dive(notebook) else PurePosixPath(name)


def min_exercises(notebook: Path | str) -> int:
    """Fewest autograded exercises ``notebook`` must have (a week 3, a deep dive 1)."""
    return MIN_EXERCISES_DEEP_DIVE if is_deep_dive(notebook) else MIN_EXERCISES_WEEK


def notebooks_in(folder: Path | str) -> list[Path]:
    """The course notebooks in ``folder`` laid out like ``notebooks/``: the weeks, then the
    deep dives, each sorted by name (``*.new.ipynb`` copies of ``make lab`` left out)."""
    folder = Path(folder)
    found = sorted(folder.glob(WEEK_GLOB)) + sorted(folder.glob(DEEP_DIVE_GLOB))
    return [p for p in found if not p.name.endswith(".new.ipynb")]


def notebook_links(nb) -> list[str]:
    """Relative links to notebooks (``*.ipynb``, anchors dropped) in the markdown cells of
    ``nb`` (a notebook node), in order; links with a scheme (``https:``) are left out."""
    links: list[str] = []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for target in _MD_LINK.findall(cell.source) + _HREF.findall(cell.source):
            path = target.split("#", 1)[0]
            if _is_relative_notebook(path):
                links.append(path)
    return links


def _is_relative_notebook(path: str) -> bool:
    return (path.endswith(".ipynb") and not path.startswith("/")
            and not re.match(r"^[a-z][a-z0-9+.-]*:", path, re.I))


def exchange_links(markdown: str) -> str:
    """``markdown`` with its relative links to notebooks pointed where nbgrader's exchange
    puts them: ``nbgrader fetch_assignment`` gives every assignment a folder of its own, side
    by side (``<assignment id>/<name>.ipynb``), so ``deep_dives/D1_x.ipynb#part`` becomes
    ``../D1_x/D1_x.ipynb#part`` and ``../01_y.ipynb`` becomes ``../01_y/01_y.ipynb``."""
    def fix(match: re.Match) -> str:
        target = match.group(1)
        path, sep, anchor = target.partition("#")
        if not _is_relative_notebook(path):
            return match.group(0)
        name = PurePosixPath(path).name
        new = f"../{name[:-len('.ipynb')]}/{name}{sep}{anchor}"
        start, end = match.start(1) - match.start(0), match.end(1) - match.start(0)
        return match.group(0)[:start] + new + match.group(0)[end:]

    return _HREF.sub(fix, _MD_LINK.sub(fix, markdown))


def broken_notebook_links(folder: Path | str, notebooks: Iterable[Path] | None = None
                          ) -> list[str]:
    """Links between notebooks that do not resolve inside ``folder``:
    ``["deep_dives/D1_x.ipynb -> ../01_y.ipynb"]``, empty when all do.

    ``notebooks`` defaults to :func:`notebooks_in` ``(folder)``. A link resolves when the
    file it names exists and stays inside ``folder``."""
    import nbformat

    folder = Path(folder).resolve()
    broken: list[str] = []
    for path in notebooks_in(folder) if notebooks is None else [Path(p) for p in notebooks]:
        path = path.resolve()
        for link in notebook_links(nbformat.read(path, as_version=4)):
            target = (path.parent / link).resolve()
            if not target.is_file() or folder not in target.parents:
                broken.append(f"{path.relative_to(folder).as_posix()} -> {link}")
    return broken
