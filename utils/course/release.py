"""The learner release (``make release``): the course without its answers, ready to hand out.

``python -m utils.course.release`` writes ``build/release/<name>/`` and
``build/release/<name>.tar.gz`` (optionally a git repository in the folder, ``--git``):

- ``notebooks/``: the learner versions of the weekly notebooks, and in
  ``notebooks/deep_dives/`` those of the deep dives, laid out as in the course so that their
  links to each other work (nbgrader's ``generate_assignment``, the step of ``make student``:
  solutions replaced by ``raise NotImplementedError()`` or "YOUR ANSWER HERE", hidden tests
  and outputs removed);
- ``utils/``: the course library the notebooks import, *without* the instructor tooling
  (:data:`INSTRUCTOR_MODULES`: nbgrader workflow, grading sandbox, answer export, trusted
  check, gradebook, exchange, Dask engine, benchmark, re-execution) - none of it is needed to
  work through the notebooks, and the grading code would show how answers are checked;
- ``data/models/`` and ``data/results/``: the trained models and the stored results, so no
  learner trains for an hour or recomputes the slow analyses (their keys hash the source of
  the modules that compute them, shipped unchanged, so they stay valid);
- in every released notebook, an "Open in Colab" badge as the first markdown cell and the
  Colab set-up cell as the first code cell (``site/colab.py``, :func:`add_colab_cells`): the
  badge opens *this release* as published (``COURSE_RELEASE_REPOSITORY`` /
  ``COURSE_RELEASE_BRANCH`` in ``site/site_settings.py``; docs/SITE.md), never the course's
  ``notebooks/`` with the solutions; the set-up cell prints nothing outside Colab;
- ``requirements.txt`` (the course's pins without the instructor-only packages),
  ``pyproject.toml``, and from :data:`TEMPLATE_DIR` a ``Makefile`` (``make lab``,
  ``make test``, ``make data``), a ``README.md`` for learners and the release's own tests.

What a learner must not get, and how it is checked (:func:`find_leaks`, run on every build
and by ``tests/test_release.py``): every line of every solution and hidden test of the source
notebooks (:func:`utils.course.grading.secret_lines`) is searched for in every file of the
release (notebook text, Python, Markdown, anything readable); no solution or hidden-test
marker, no instructor notebook, no gradebook, no instructor module may be there.

What the release cannot hide: the course library itself. Some exercises ask the learner to
re-implement a step that ``utils`` implements (the hidden tests then compare with ``utils``
or forbid it with :func:`utils.course.exercises.forbid`); that is by design of the course,
and the hidden tests, which hold the reference *values*, never leave the instructor.
"""
from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import nbformat

from utils.core.config import ROOT
from . import grading, layout

#: Default name of the release (folder and archive under ``build/release/``).
RELEASE_NAME = "xai-ecg-course"
RELEASE_ROOT: Path = grading.BUILD_DIR / "release"
#: Learner-side files copied into the release as they are (Makefile, README, tests).
TEMPLATE_DIR: Path = Path(__file__).resolve().parent / "release_template"
#: ``utils/course`` modules that stay with the instructor.
INSTRUCTOR_MODULES: tuple[str, ...] = (
    "grading.py", "sandbox.py", "answers.py", "checking.py", "gradebook.py", "release.py",
    "exchange.py", "distributed.py", "benchmark.py", "execute.py", "seal.py")
#: Packages of requirements.txt only the instructor needs (grading, exchange, Dask).
INSTRUCTOR_PACKAGES: tuple[str, ...] = ("nbgrader", "sqlalchemy", "alembic", "dask",
                                        "distributed")
#: Data folders shipped (the MIT-BIH database itself is fetched by the learner's ``make data``).
DATA_FOLDERS: tuple[str, ...] = ("models", "results")
#: Never copied: caches and editor files.
SKIP = re.compile(r"(^|/)(__pycache__|\.ipynb_checkpoints|\.pytest_cache|\.hypothesis)(/|$)|"
                  r"\.pyc$|~$")
#: The site's Colab tool: the badge and set-up cell that every released notebook gets.
COLAB_TOOL: Path = ROOT / "site" / "colab.py"
#: Markers that exist only in instructor notebooks.
MARKERS: tuple[str, ...] = (grading.BEGIN_SOLUTION, grading.END_SOLUTION,
                            grading.BEGIN_HIDDEN, grading.END_HIDDEN)


@dataclass(frozen=True)
class Release:
    """A built learner release: its folder, archive and what it holds."""

    folder: Path
    archive: Path | None
    notebooks: list[Path]
    files: int
    #: Links between the released notebooks that do not resolve (``notebook -> link``), e.g.
    #: to a deep dive left out by ``--notebooks``; empty for a whole course.
    broken_links: tuple[str, ...] = ()


def _copy_tree(src: Path, dst: Path, exclude: Iterable[str] = ()) -> int:
    """Copy ``src`` to ``dst`` without caches and without the relative paths in ``exclude``."""
    excluded = set(exclude)
    count = 0
    for path in sorted(Path(src).rglob("*")):
        rel = path.relative_to(src).as_posix()
        if SKIP.search(rel) or any(rel == e or rel.startswith(e + "/") for e in excluded):
            continue
        if path.is_file():
            target = Path(dst) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            count += 1
    return count


def learner_requirements(text: str) -> str:
    """``requirements.txt`` without the instructor-only packages and the comment lines just
    above them (which introduce them)."""
    out: list[str] = []
    comments: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            comments.append(line)
            continue
        name = re.split(r"[=<>!~;\s\[]", line.strip(), maxsplit=1)[0].lower()
        if name in INSTRUCTOR_PACKAGES:
            comments = []  # a comment block that introduced an instructor package
            continue
        out += comments + [line]
        comments = []
    return "\n".join(out + comments).rstrip() + "\n"


def colab_tool(path: Path = COLAB_TOOL):
    """``site/colab.py`` as a module (the site's tooling lives in ``site/``, not in ``utils``)."""
    spec = importlib.util.spec_from_file_location("course_site_colab", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"the Colab tool {path} is missing")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def add_colab_cells(folder: Path, repository: str | None = None,
                    branch: str | None = None) -> list[Path]:
    """Put the Colab badge (first markdown cell) and set-up cell (first code cell) into every
    notebook of the release ``folder``; their links address the notebook's path in the release
    as published (``repository``/``branch``, default: the site settings). Returns the notebooks.

    Raises ``ValueError`` when the target is the course repository's own branch (Colab would
    open the notebooks with the solutions).
    """
    tool = colab_tool()
    paths = sorted((Path(folder) / "notebooks").rglob("*.ipynb"))
    for path in paths:
        tool.update(path, repository, branch, root=folder)
    return paths


def build_release(out_dir: Path | None = None, notebooks: Sequence[Path] | None = None,
                  archive: bool = True, git: bool = False, root: Path = ROOT,
                  selfcheck: bool = True, colab: bool = True,
                  colab_repository: str | None = None,
                  colab_branch: str | None = None) -> Release:
    """Build the learner release in ``out_dir`` (emptied first); see the module docstring.

    ``selfcheck=False`` (``make release SELFCHECK=off``, for a graded course) leaves out the
    digests of :mod:`utils.course.selfcheck`, so the exercises' self-checks say they are off.
    With ``colab`` every notebook gets the Colab badge and set-up cell
    (:func:`add_colab_cells`, for the release published at ``colab_repository`` /
    ``colab_branch``; defaults: ``site/site_settings.py``).

    Raises ``RuntimeError`` listing what leaked when :func:`find_leaks` finds anything.
    """
    root = Path(root)
    notebooks = grading.course_notebooks(root) if notebooks is None else [Path(p) for p in notebooks]
    out_dir = Path(out_dir) if out_dir is not None else RELEASE_ROOT / RELEASE_NAME
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    work = out_dir.parent / f".{out_dir.name}-nbgrader"
    try:
        released = grading.build_course(notebooks, course_dir=work,
                                        student_dir=out_dir / "notebooks")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    files = len(released)
    if colab:
        add_colab_cells(out_dir, colab_repository, colab_branch)
    files += _copy_tree(root / "utils", out_dir / "utils",
                        exclude=[f"course/{m}" for m in INSTRUCTOR_MODULES]
                        + ["course/release_template"])
    if not selfcheck:
        (out_dir / "utils" / "course" / "selfcheck_keys.json").unlink(missing_ok=True)
    for folder in DATA_FOLDERS:
        if (root / "data" / folder).is_dir():
            files += _copy_tree(root / "data" / folder, out_dir / "data" / folder)
    (out_dir / "requirements.txt").write_text(
        learner_requirements((root / "requirements.txt").read_text()))
    shutil.copy2(root / "pyproject.toml", out_dir / "pyproject.toml")
    files += 2 + _copy_tree(TEMPLATE_DIR, out_dir)
    # every notebook of the course is searched for, also one left out of ``notebooks``: its
    # solutions must not be readable in what is shipped (e.g. in a utils module)
    searched = list(dict.fromkeys([*notebooks, *grading.course_notebooks(root)]))
    leaks = find_leaks(out_dir, searched)
    if leaks:
        shutil.rmtree(out_dir)
        raise RuntimeError("the learner release would give answers away:\n  "
                           + "\n  ".join(leaks[:40]))
    if git:
        _git_commit(out_dir)
    tar = None
    if archive:
        tar = out_dir.parent / f"{out_dir.name}.tar.gz"
        with tarfile.open(tar, "w:gz") as handle:
            handle.add(out_dir, arcname=out_dir.name,
                       filter=lambda info: None if ".git" in Path(info.name).parts else info)
    return Release(out_dir, tar, layout.notebooks_in(out_dir / "notebooks"), files,
                   tuple(layout.broken_notebook_links(out_dir / "notebooks")))


def _git_commit(folder: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True)

    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=course", "-c", "user.email=course@localhost", "commit", "-q", "-m",
        "Learner release of the course")


def _readable_lines(path: Path) -> set[str] | None:
    """Stripped lines a person can read in ``path`` (notebook text for ``.ipynb``), or None
    for a binary file."""
    if path.suffix == ".ipynb":
        return {line.strip() for line in grading.notebook_text(path).splitlines()}
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    return {line.strip() for line in data.decode("utf-8", "replace").splitlines()}


#: Lines too generic to give an answer away when the library has them too: imports, and
#: block headers without any literal (``for i, c in enumerate(y):``).
GENERIC = re.compile(r"^(?:(?:from\s+[\w.]+\s+)?import\s+[\w., ]+"
                     r"|(?:for|if|elif|while|with|else|try|except)\b[^'\"\d]*:)$")


def is_generic(line: str) -> bool:
    """Whether a solution line is too generic to count as a leak (see :data:`GENERIC`)."""
    return bool(GENERIC.match(line.strip()))


def find_leaks(folder: Path, sources: Sequence[Path]) -> list[str]:
    """Everything in ``folder`` that gives an answer of the source notebooks ``sources`` away:
    ``["<file>: <what>"]``, empty when nothing does.

    Checks every file: whole solution and hidden-test lines
    (:func:`utils.course.grading.course_secret_lines`: text files and notebooks; but not
    :func:`is_generic` ones, which the library may share by chance), the
    same lines as raw bytes (binary files: stored arrays, weights, archives), the markers,
    instructor modules and gradebooks."""
    folder = Path(folder)
    secrets = {line: name for line, name in grading.course_secret_lines(sources).items()
               if not is_generic(line)}
    # long enough to be specific in a binary file (short ones match by chance)
    raw = [(s.encode(), s) for s in secrets if len(s) >= 24]
    leaks: list[str] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel.startswith(".git/"):
            continue
        if path.name in INSTRUCTOR_MODULES and "course" in path.parts:
            leaks.append(f"{rel}: instructor module")
        if path.name == "gradebook.db" or path.suffix in (".db", ".sqlite"):
            leaks.append(f"{rel}: a gradebook")
        lines = _readable_lines(path)
        if lines is None:
            data = path.read_bytes()
            leaks += [f"{rel}: solution or hidden-test line of {secrets[s]} (binary): {s!r}"
                      for b, s in raw if b in data]
            continue
        for marker in MARKERS:
            if marker in lines:
                leaks.append(f"{rel}: marker {marker!r} (an instructor notebook?)")
        leaks += [f"{rel}: solution or hidden-test line of {secrets[s]}: {s!r}"
                  for s in sorted(lines & secrets.keys())]
    return leaks


def main(argv: list[str] | None = None) -> None:
    """``python -m utils.course.release [--out DIR] [--git] [--no-archive]``."""
    parser = argparse.ArgumentParser(description="learner release without the answers "
                                     "(make release)")
    parser.add_argument("--out", type=Path, default=RELEASE_ROOT / RELEASE_NAME)
    parser.add_argument("--notebooks", type=Path, nargs="+", default=None)
    parser.add_argument("--git", action="store_true", help="also make it a git repository")
    parser.add_argument("--no-archive", action="store_true")
    parser.add_argument("--no-selfcheck", action="store_true",
                        help="leave the self-check digests out (a graded release)")
    parser.add_argument("--no-colab", action="store_true",
                        help="no Colab badge and set-up cell in the notebooks")
    parser.add_argument("--colab-repository", help="owner/name where this release is published "
                        "(default: COURSE_RELEASE_REPOSITORY, see docs/SITE.md)")
    parser.add_argument("--colab-branch", help="its branch (default: COURSE_RELEASE_BRANCH)")
    args = parser.parse_args(argv)
    try:
        release = build_release(args.out, args.notebooks, archive=not args.no_archive,
                                git=args.git, selfcheck=not args.no_selfcheck,
                                colab=not args.no_colab, colab_repository=args.colab_repository,
                                colab_branch=args.colab_branch)
    except (ValueError, RuntimeError) as err:
        sys.exit(f"error: {err}")
    dives = sum(layout.is_deep_dive(p) for p in release.notebooks)
    print(f"learner release: {release.folder} ({release.files} files, "
          f"{len(release.notebooks) - dives} week(s) and {dives} deep dive(s); no solution, "
          "hidden test or instructor code)")
    for link in release.broken_links:
        print(f"warning: broken link between notebooks: {link}")
    if release.archive:
        print(f"archive:         {release.archive}")
    print(f"learners run:    make lab   (inside the folder; make test checks the setup)")
    if not args.no_colab:
        repository, branch = colab_tool().site_settings.release_target(
            args.colab_repository, args.colab_branch)
        print(f"Colab badges:    open github.com/{repository} branch {branch}: publish this "
              "release there (docs/SITE.md)")


if __name__ == "__main__":
    main()
