"""The "Open in Colab" badge and the Colab set-up cell of course notebooks (idempotent).

``make release`` (:func:`utils.course.release.add_colab_cells`) puts both into every notebook
of the learner release; ``python site/colab.py NOTEBOOK...`` does the same to any notebook:

1. a markdown cell at the top with the Colab badge of that notebook, and
2. a code cell just before the notebook's first code cell that, **on Colab only**, installs
   the course: it prints how to switch the runtime and stops (before any ``pip``) when the
   runtime's Python is outside 3.10-3.12 (Colab's default runtime moved to Python 3.13, where
   numpy < 2 and TensorFlow 2.17.1 have no wheels), otherwise clones the learner release,
   installs its ``requirements.txt`` and ``utils``, fetches and verifies MIT-BIH
   (``python -m utils.data.mitdb``) and restarts the runtime once so that the pinned numpy and
   TensorFlow are the ones imported. Anywhere else (``make lab``, Binder, nbval, a grader's
   sandbox) it prints nothing and changes nothing.

Both open the **published learner release** (``site_settings.release_target``:
``COURSE_RELEASE_REPOSITORY`` / ``COURSE_RELEASE_BRANCH``, default the branch ``learner`` of
the course repository), never the course's own ``notebooks/``, which hold the solutions; a
target equal to the course repository's branch is refused. The notebook's path in the badge is
its path relative to ``--root`` (the release folder for a release).

Both cells carry ``metadata.course_colab`` (``"badge"`` / ``"setup"``): running the tool
again replaces them with the current version (same bytes when nothing changed). ``--check``
only reports the notebooks whose cells are missing or out of date (exit status 1),
``--remove`` takes the cells out again. ``--repository`` / ``--branch`` override the settings.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

SITE_DIR = Path(__file__).resolve().parent
ROOT = SITE_DIR.parent
sys.path.insert(0, str(SITE_DIR))

import site_settings  # noqa: E402

KEY = "course_colab"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"

SETUP_TEMPLATE = '''\
# Google Colab only: install the course into this runtime (pinned packages, utils, MIT-BIH).
# Anywhere else (make lab, Binder, your own Jupyter) this cell does nothing and prints nothing.
import os
import sys

if "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ:
    COURSE_REPOSITORY, COURSE_BRANCH = {repository!r}, {branch!r}
    if not ({low}) <= sys.version_info[:2] <= ({high}):
        print(f"This course needs Python {low_text} to {high_text}; this Colab runtime runs "
              f"Python {{'.'.join(map(str, sys.version_info[:3]))}}, for which numpy < 2 and "
              "TensorFlow 2.17.1 (the course's pins) have no packages. Nothing was installed.\\n"
              "Switch the runtime to Python {high_text}:\\n"
              "  1. menu Runtime > Change runtime type;\\n"
              "  2. under 'Runtime version' choose a version with Python {high_text} "
              "(2026.01 or 2025.10 when this course was written) instead of 'Latest';\\n"
              "  3. Save, wait for the new runtime, then run this cell again.")

        class CourseSetupStopped(RuntimeError):
            \"\"\"Stops 'Run all' here; IPython shows this one line instead of a traceback.\"\"\"

            def _render_traceback_(self):
                return [f"CourseSetupStopped: {{self}}"]

        raise CourseSetupStopped("switch the runtime to Python {high_text} (see above), "
                                 "then run this cell again")
    import pathlib
    import subprocess

    course = pathlib.Path("/content") / COURSE_REPOSITORY.split("/")[-1]
    if not (course / ".colab-installed").exists():
        if not (course / "requirements.txt").exists():
            subprocess.run(["git", "clone", "--depth", "1", "--branch", COURSE_BRANCH,
                            f"https://github.com/{{COURSE_REPOSITORY}}", str(course)],
                           check=True)
        pip = [sys.executable, "-m", "pip", "install", "-q"]
        subprocess.run(pip + ["-r", str(course / "requirements.txt")], check=True)
        subprocess.run(pip + ["--no-deps", "-e", str(course)], check=True)
        subprocess.run([sys.executable, "-m", "utils.data.mitdb"], cwd=course, check=True)
        (course / ".colab-installed").write_text("installed\\n")
        print("Course installed. The runtime restarts now (Colab says it crashed: expected) "
              "so that the pinned numpy and TensorFlow are loaded; then run all cells again.")
        os.kill(os.getpid(), 9)
    os.chdir(course / "notebooks")
    sys.path.insert(0, str(course))
'''


def setup_source(repository: str | None = None, branch: str | None = None) -> str:
    """The source of the Colab set-up cell; it installs the learner release
    (:func:`site_settings.release_target`: ``repository``/``branch`` or the settings)."""
    (low, high) = site_settings.SUPPORTED_PYTHON
    repository, branch = site_settings.release_target(repository, branch)
    return SETUP_TEMPLATE.format(
        repository=repository, branch=branch,
        low=", ".join(map(str, low)), high=", ".join(map(str, high)),
        low_text=".".join(map(str, low)), high_text=".".join(map(str, high))).rstrip("\n")


def badge_source(notebook_path: str, repository: str | None = None,
                 branch: str | None = None) -> str:
    """The markdown of the badge that opens ``notebook_path`` (its path in the learner release,
    e.g. ``notebooks/01_x.ipynb``) in Colab, from the published learner release."""
    url = site_settings.colab_url(notebook_path, repository, branch)
    return f"[![Open In Colab]({BADGE_IMAGE})]({url})"


def repository_path(path: Path, root: Path = ROOT) -> str:
    """``path`` relative to the repository (posix), as GitHub and Colab address it."""
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        raise ValueError(f"{path} is not inside the repository {root}") from None


def without_colab_cells(nb) -> list:
    return [cell for cell in nb.cells if KEY not in cell.get("metadata", {})]


def with_colab_cells(nb, notebook_path: str, repository: str | None = None,
                     branch: str | None = None):
    """``nb`` with the current badge cell (top) and set-up cell (before the first code cell)."""
    cells = without_colab_cells(nb)
    badge = nbformat.v4.new_markdown_cell(badge_source(notebook_path, repository, branch))
    badge.metadata[KEY] = "badge"
    setup = nbformat.v4.new_code_cell(setup_source(repository, branch))
    setup.metadata[KEY] = "setup"
    first_code = next((i for i, c in enumerate(cells) if c.cell_type == "code"), len(cells))
    cells.insert(first_code, setup)
    cells.insert(0, badge)
    # ids must be stable for the tool to be idempotent: derived from the role, unique per file
    badge.id, setup.id = "colab-badge", "colab-setup"
    nb.cells = cells
    return nb


def update(path: Path, repository: str | None = None, branch: str | None = None,
           remove: bool = False, write: bool = True, root: Path = ROOT) -> bool:
    """Put the current Colab cells into (or, ``remove``, take them out of) the notebook.

    Returns whether the file changes (``write=False``: would change).
    """
    path = Path(path)
    before = path.read_text()
    nb = nbformat.reads(before, as_version=4)
    if remove:
        nb.cells = without_colab_cells(nb)
    else:
        with_colab_cells(nb, repository_path(path, root), repository, branch)
    after = nbformat.writes(nb) + "\n"
    changed = after != before
    if changed and write:
        path.write_text(after)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Colab badge and set-up cell in notebooks")
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--repository", help="owner/name of the published learner release "
                        f"(default {site_settings.RELEASE_REPOSITORY})")
    parser.add_argument("--branch", help="its branch that Colab opens "
                        f"(default {site_settings.RELEASE_BRANCH})")
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="folder the badge paths are relative to (default: the repository)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true",
                       help="only report notebooks whose Colab cells are missing or outdated")
    group.add_argument("--remove", action="store_true", help="take the Colab cells out")
    args = parser.parse_args(argv)
    stale = []
    for path in args.notebooks:
        changed = update(path, args.repository, args.branch, remove=args.remove,
                         write=not args.check, root=args.root)
        if changed:
            stale.append(path)
        verb = ("out of date" if args.check else "updated") if changed else "up to date"
        print(f"{path}: {verb}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
