"""Graded exercises with nbgrader: learner versions, autograding and the score table.

The weekly notebooks ``notebooks/[0-9]*.ipynb`` and the deep dives
``notebooks/deep_dives/*.ipynb`` are the nbgrader *source* versions (one assignment each, the
file name without ``.ipynb`` as its id; :mod:`utils.course.layout`): every exercise is a
solution cell (code between ``### BEGIN SOLUTION`` and ``### END SOLUTION``) followed by a locked
test cell worth some points. This module wraps nbgrader (we do not write a grader of our own)
into the two instructor commands of the Makefile:

``python -m utils.course.grading student`` (``make student``)
    builds the nbgrader course folder ``build/nbgrader/`` (git-ignored) with one assignment per
    notebook and runs ``nbgrader generate_assignment``: the learner versions, with the solutions
    replaced by ``raise NotImplementedError()``, hidden tests and outputs removed and the test
    cells kept and locked, are written to ``build/student/`` (the deep dives in
    ``build/student/deep_dives/``, so that the links between notebooks keep working) and
    ``build/nbgrader/release/``.

``python -m utils.course.grading grade [SUBMISSIONS]`` (``make grade``)
    copies the submitted notebooks ``SUBMISSIONS/<learner>/<notebook>.ipynb`` into the course
    folder and grades them without ever running learner code with the grader's rights: each
    notebook runs in its own bubblewrap sandbox (:mod:`utils.course.sandbox`) and exports the
    variables each test reads as plain data (:mod:`utils.course.answers`); the tests, hidden
    ones included, run on those answers in the grader's own kernel
    (:mod:`utils.course.checking`); nbgrader then records the results in its gradebook
    (``autograde`` with its ``Execute`` step replaced) and writes one HTML feedback file per
    learner and notebook (maths drawn offline). The gradebook is exported as
    ``build/grades.csv`` (one row per learner and graded cell) and
    ``build/grades_by_learner.csv`` (one row per learner: exercises, week totals, total, max).

Only the nbgrader Python API is used (``nbgrader.apps.NbGraderAPI`` and ``nbgrader.api.Gradebook``);
the course folder also gets an ``nbgrader_config.py`` so that ``nbgrader`` commands run from
``build/nbgrader/`` (e.g. ``nbgrader export``) see the same course.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import nbformat

from utils.core.config import ROOT

from . import checking, layout, limits, sandbox
from .kernel import KERNEL_NAME
from .kernel import ensure_venv_on_path as _ensure_venv_on_path
from .readback import read_json
from .sandbox import SandboxUnavailable

#: Git-ignored folder for everything the grading workflow generates.
BUILD_DIR: Path = ROOT / "build"
#: The nbgrader course folder (source/, release/, submitted/, autograded/, feedback/, gradebook.db).
COURSE_DIR: Path = BUILD_DIR / "nbgrader"
#: Where ``make student`` puts the learner notebooks, ready to hand out (deep dives in
#: ``deep_dives/``, as in ``notebooks/``).
STUDENT_DIR: Path = BUILD_DIR / "student"
#: Default folder of submissions: ``submissions/<learner>/<notebook>.ipynb``.
SUBMISSIONS_DIR: Path = ROOT / "submissions"
#: Default score table (one row per learner and exercise).
GRADES_CSV: Path = BUILD_DIR / "grades.csv"
#: Source notebooks of the course (solutions in): the weeks ...
NOTEBOOK_GLOB: str = f"notebooks/{layout.WEEK_GLOB}"
#: ... and the deep dives.
DEEP_DIVE_GLOB: str = f"notebooks/{layout.DEEP_DIVE_GLOB}"
#: Seconds a single cell may run while autograding (nbgrader's own default is 30 s); a cell
#: that ignores the interrupt is killed 10 s later (``make grade CELL_TIMEOUT=...``).
CELL_TIMEOUT: int = 300

#: Seconds a whole notebook may run in its sandbox (``make grade NOTEBOOK_TIMEOUT=...``).
NOTEBOOK_TIMEOUT: int = 1200
#: nbgrader's autograde steps with ``Execute`` replaced: nothing is executed there.
AUTOGRADE_PREPROCESSORS: list[str] = [
    "utils.course.checking.InjectResults",
    # the model answer and rubric beside each written answer, for the formgrader only
    "utils.course.gradebook.ShowRubric",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
#: Feedback never shows the hidden tests (failure messages are cut to ``Name: message`` too).
FEEDBACK_PREPROCESSORS: list[str] = [
    "utils.course.gradebook.HideRubric",  # the rubric cells of ShowRubric never reach a learner
    "nbgrader.preprocessors.GetGrades",
    "nbgrader.preprocessors.ClearHiddenTests",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- notebook checks
@dataclass(frozen=True)
class GradedCell:
    """One autograded test cell of a source notebook."""

    grade_id: str
    points: float


def _read(path: Path):
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"notebook not found: {path}")
    return nbformat.read(path, as_version=4)


def _nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def _as_notebook(nb):
    return _read(Path(nb)) if isinstance(nb, (str, Path)) else nb


def marked_blocks(nb, begin: str = BEGIN_SOLUTION, end: str = END_SOLUTION) -> list[str]:
    """Return the text between every ``begin`` / ``end`` marker pair of ``nb``.

    ``nb`` is a notebook node (``nbformat.read``) or a path. Raises ``ValueError`` for a marker
    without its partner, so a malformed solution cell is reported instead of silently released.
    """
    nb = _as_notebook(nb)
    blocks: list[str] = []
    for index, cell in enumerate(nb.cells):
        inside: list[str] | None = None
        for line in cell.source.splitlines():
            marker = line.strip()
            if marker == begin:
                if inside is not None:
                    raise ValueError(f"cell {index}: nested {begin}")
                inside = []
            elif marker == end:
                if inside is None:
                    raise ValueError(f"cell {index}: {end} without {begin}")
                blocks.append("\n".join(inside))
                inside = None
            elif inside is not None:
                inside.append(line)
        if inside is not None:
            raise ValueError(f"cell {index}: {begin} without {end}")
    return blocks


def solution_blocks(nb) -> list[str]:
    """The solutions of ``nb``: text between ``### BEGIN SOLUTION`` and ``### END SOLUTION``."""
    return marked_blocks(nb, BEGIN_SOLUTION, END_SOLUTION)


def hidden_test_blocks(nb) -> list[str]:
    """The hidden tests of ``nb`` (``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS``)."""
    return marked_blocks(nb, BEGIN_HIDDEN, END_HIDDEN)


def visible_lines(nb) -> set[str]:
    """Stripped lines of ``nb`` outside every solution and hidden-test block (what the
    learner version keeps)."""
    nb = _as_notebook(nb)
    opening, closing = {BEGIN_SOLUTION, BEGIN_HIDDEN}, {END_SOLUTION, END_HIDDEN}
    outside: set[str] = set()
    for cell in nb.cells:
        depth = 0
        for line in cell.source.splitlines():
            marker = line.strip()
            if marker in opening:
                depth += 1
            elif marker in closing:
                depth -= 1
            elif depth == 0:
                outside.add(marker)
    return outside


def secret_lines(nb) -> set[str]:
    """Lines of solutions and hidden tests that appear nowhere else in the source ``nb``.

    These are the lines that must not survive in the learner version (a line such as ``)`` or
    one repeated in a visible cell is not specific to the solution). Comments and blank lines
    are ignored.
    """
    nb = _as_notebook(nb)
    secret = {line.strip() for block in solution_blocks(nb) + hidden_test_blocks(nb)
              for line in block.splitlines()}
    return {line for line in secret - visible_lines(nb)
            if line and not line.startswith("#") and re.search(r"\w", line)}


def course_secret_lines(sources) -> dict[str, str]:
    """Secret lines of a set of source notebooks read together (a site, a release):
    ``{line: file name of the first notebook that hides it}`` (``"notebook <i>"`` for a
    notebook given as a node).

    A line hidden in one notebook but visible in another (``from utils.course import
    selfcheck`` inside one notebook's hidden tests, in a visible check cell of the next)
    gives nothing away: it is handed out anyway. So the union of each notebook's
    :func:`secret_lines` less every line any of them shows.
    """
    named = [(Path(nb).name if isinstance(nb, (str, Path)) else f"notebook {i}",
              _as_notebook(nb)) for i, nb in enumerate(sources, 1)]
    shown = set().union(*(visible_lines(nb) for _, nb in named))
    secrets: dict[str, str] = {}
    for name, nb in named:
        for line in sorted(secret_lines(nb) - shown):
            secrets.setdefault(line, name)
    return secrets


def notebook_text(nb) -> str:
    """All cell sources and text outputs of ``nb`` (what a learner can read), one string."""
    nb = _as_notebook(nb)
    parts: list[str] = []
    for cell in nb.cells:
        parts.append(cell.source)
        for output in cell.get("outputs", []):
            text = output.get("text", "")
            parts.append("".join(text) if isinstance(text, list) else str(text))
            for value in output.get("data", {}).values():
                if isinstance(value, (str, list)):
                    parts.append("".join(value) if isinstance(value, list) else value)
    return "\n".join(parts)


def leaked_lines(source, released) -> list[str]:
    """Secret lines (solutions, hidden tests) of ``source`` still readable in ``released``."""
    # Whole lines are compared: a secret line may be a substring of a legitimate one
    # (``rng = ...`` inside ``_rng = ...``).
    shown = {line.strip() for line in notebook_text(released).splitlines()}
    return sorted(secret_lines(source) & shown)


def graded_cells(nb) -> list[GradedCell]:
    """The autograded test cells (``grade: true`` code cells) of ``nb``, in notebook order."""
    nb = _as_notebook(nb)
    cells = []
    for cell in nb.cells:
        meta = _nbgrader_meta(cell)
        if meta.get("grade") and cell.cell_type == "code":
            cells.append(GradedCell(str(meta.get("grade_id")), float(meta.get("points", 0))))
    return cells


def error_cells(nb) -> list[tuple[int, str | None, str]]:
    """The code cells of an executed ``nb`` that raised: ``(index, grade_id or None, ename)``."""
    nb = _as_notebook(nb)
    errors = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.get("output_type") == "error":
                errors.append((index, _nbgrader_meta(cell).get("grade_id"), output.get("ename")))
                break
    return errors


def check_source_notebook(path: Path, min_exercises: int | None = None) -> list[GradedCell]:
    """Check that ``path`` is a usable nbgrader source notebook; return its graded cells.

    Checks: at least ``min_exercises`` autograded test cells with positive points (default
    :func:`utils.course.layout.min_exercises`: 3 for a week, 1 for a deep dive), unique
    ``grade_id`` values, every solution cell holds a complete solution block and every
    solution block sits in a cell marked as a solution. Raises ``ValueError`` listing the
    problems otherwise.
    """
    nb = _read(Path(path))
    if min_exercises is None:
        min_exercises = layout.min_exercises(path)
    problems: list[str] = []
    for blocks in (solution_blocks, hidden_test_blocks):
        try:
            blocks(nb)
        except ValueError as err:
            problems.append(str(err))
    ids = [_nbgrader_meta(c).get("grade_id") for c in nb.cells if _nbgrader_meta(c)]
    duplicates = sorted({i for i in ids if ids.count(i) > 1}, key=str)
    if duplicates:
        problems.append(f"duplicate grade_id(s): {duplicates}")
    for index, cell in enumerate(nb.cells):
        meta = _nbgrader_meta(cell)
        has_marker = BEGIN_SOLUTION in cell.source
        if cell.cell_type == "code" and meta.get("solution") and not has_marker:
            problems.append(f"cell {index} ({meta.get('grade_id')}): solution cell without "
                            f"{BEGIN_SOLUTION}")
        if has_marker and not meta.get("solution"):
            problems.append(f"cell {index}: {BEGIN_SOLUTION} in a cell not marked as solution")
    cells = graded_cells(nb)
    if len(cells) < min_exercises:
        problems.append(f"{len(cells)} autograded test cell(s), need at least {min_exercises}")
    for cell in cells:
        if cell.points <= 0:
            problems.append(f"test cell {cell.grade_id} has no points")
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    return cells


# --------------------------------------------------------------------------- nbgrader plumbing
def nbgrader_config(course_dir: Path = COURSE_DIR, timeout: int = CELL_TIMEOUT):
    """The traitlets ``Config`` of the course folder (also written as ``nbgrader_config.py``)."""
    from traitlets.config import Config

    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    c = Config()
    c.CourseDirectory.root = str(Path(course_dir).resolve())
    c.CourseDirectory.db_url = f"sqlite:///{Path(course_dir).resolve() / 'gradebook.db'}"
    c.Execute.timeout = int(timeout)
    # Autograding must finish even when a learner's cell hangs or raises.
    c.Execute.interrupt_on_timeout = True
    c.NbGraderAPI.log_level = "WARN"
    c.GenerateFeedback.preprocessors = FEEDBACK_PREPROCESSORS
    c.Autograde.autograde_preprocessors = AUTOGRADE_PREPROCESSORS
    c.InjectResults.results_dir = str(Path(course_dir).resolve() / "results")
    # Learner HTML never reaches a browser: the outputs are rebuilt as text and PNG by
    # InjectResults (utils.course.sanitize), and nbconvert's own sanitiser is on as well.
    c.HTMLExporter.sanitize_html = True
    # A private (unused) exchange folder: we hand notebooks out and collect them ourselves.
    c.Exchange.root = str(Path(course_dir).resolve() / "exchange")
    return c


def _write_config_file(course_dir: Path, timeout: int) -> None:
    results = Path(course_dir).resolve() / "results"
    text = (
        "# Written by utils/course/grading.py (make student / make grade); edits are overwritten.\n"
        "# `nbgrader autograde` run here never executes learner code (that happens only in\n"
        "# make grade's sandboxes): it records the results computed by the last make grade.\n"
        "c = get_config()  # noqa: F821\n"
        f"c.CourseDirectory.root = {str(Path(course_dir).resolve())!r}\n"
        f"c.Execute.timeout = {int(timeout)}\n"
        "c.Execute.interrupt_on_timeout = True\n"
        f"c.Autograde.autograde_preprocessors = {AUTOGRADE_PREPROCESSORS!r}\n"
        f"c.InjectResults.results_dir = {str(results)!r}\n"
        f"c.GenerateFeedback.preprocessors = {FEEDBACK_PREPROCESSORS!r}\n"
        "c.HTMLExporter.sanitize_html = True\n"
    )
    (Path(course_dir) / "nbgrader_config.py").write_text(text)


# The kernelspec helper lives in .kernel (the learner release ships it without this module).


def _api(course_dir: Path, timeout: int):
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    _ensure_venv_on_path(course_dir)
    config = nbgrader_config(course_dir, timeout)
    Path(config.Exchange.root).mkdir(parents=True, exist_ok=True)
    coursedir = CourseDirectory(config=config)
    return NbGraderAPI(coursedir=coursedir, config=config)


def _check(result: dict, what: str) -> None:
    if not result.get("success"):
        raise RuntimeError(f"nbgrader {what} failed:\n{result.get('log', '')}\n"
                           f"{result.get('error', '')}")


def _failure_reason(result: dict) -> str:
    """The first exception raised inside nbgrader (e.g. ``NotJSONError: ...``), one line."""
    text = f"{result.get('log', '')}\n{result.get('error', '')}"
    for line in text.splitlines():
        match = re.match(r"\s*(?:\[\w+\]\s*)?(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.*)", line)
        if match and match.group(1) != "NbGraderException":
            return f"{match.group(1)}: {match.group(2)}"[:200]
    return "nbgrader could not grade this notebook (see the log)"


def assignment_id(notebook: Path) -> str:
    """nbgrader assignment id of a course notebook (week or deep dive): its file name without
    ``.ipynb`` (unique across both, checked by :func:`build_course`)."""
    notebook = Path(notebook)
    if notebook.suffix != ".ipynb":
        raise ValueError(f"not a notebook (.ipynb): {notebook}")
    return notebook.stem


def course_notebooks(root: Path = ROOT) -> list[Path]:
    """The source notebooks of the course: the weeks (``notebooks/[0-9]*.ipynb``), then the
    deep dives (``notebooks/deep_dives/*.ipynb``), each sorted by name."""
    return layout.notebooks_in(Path(root) / "notebooks")


def course_weeks(root: Path = ROOT) -> list[Path]:
    """The weekly notebooks only (``notebooks/[0-9]*.ipynb``), sorted."""
    return [p for p in course_notebooks(root) if not layout.is_deep_dive(p)]


def build_course(notebooks: Sequence[Path], course_dir: Path = COURSE_DIR,
                 student_dir: Path | None = STUDENT_DIR, timeout: int = CELL_TIMEOUT,
                 min_exercises: int | None = None, fresh: bool = True) -> dict[str, Path]:
    """Create an nbgrader course from ``notebooks`` and generate the learner versions.

    Each notebook, week or deep dive, becomes one assignment (id = file stem, so the names
    must be unique) in ``course_dir``; ``min_exercises`` (default: 3 for a week, 1 for a deep
    dive) autograded exercises each. With ``fresh`` the folder is emptied first, which also
    resets the gradebook; without it only the sources and releases are replaced, and the
    gradebook (manual grades), submissions and feedback stay (:mod:`utils.course.gradebook`,
    ``make grade``). Returns ``{assignment_id: released notebook}``; the released notebooks
    are also copied to ``student_dir`` when given, laid out like ``notebooks/``
    (:func:`utils.course.layout.learner_path`: deep dives in ``deep_dives/``).
    """
    notebooks = [Path(nb) for nb in notebooks]
    if not notebooks:
        raise ValueError("no source notebooks given")
    ids = [assignment_id(nb) for nb in notebooks]
    if len(set(ids)) != len(ids):
        raise ValueError(f"notebook names must be unique: {ids}")
    for nb in notebooks:
        check_source_notebook(nb, min_exercises=min_exercises)

    course_dir = Path(course_dir)
    if course_dir.exists() and fresh:
        shutil.rmtree(course_dir)
    for generated in ("source", "release"):
        shutil.rmtree(course_dir / generated, ignore_errors=True)
    course_dir.mkdir(parents=True, exist_ok=True)
    _write_config_file(course_dir, timeout)
    for aid, nb in zip(ids, notebooks):
        target = course_dir / "source" / aid
        target.mkdir(parents=True)
        node = _read(nb)
        # Graded with this environment's kernel whatever kernel the author's Jupyter named.
        node.metadata["kernelspec"] = {"name": KERNEL_NAME, "language": "python",
                                       "display_name": "Python 3 (ipykernel)"}
        nbformat.write(node, target / nb.name)

    api = _api(course_dir, timeout)
    released: dict[str, Path] = {}
    for aid, nb in zip(ids, notebooks):
        _check(api.generate_assignment(aid, force=True, create=True),
               f"generate_assignment {aid}")
        released[aid] = course_dir / "release" / aid / nb.name
        if not released[aid].is_file():
            raise RuntimeError(f"nbgrader did not write {released[aid]}")
        leaked = leaked_lines(nb, released[aid])
        if leaked:
            raise RuntimeError(f"{released[aid]} still shows solution code: {leaked}")
    if student_dir is not None:
        student_dir = Path(student_dir)
        student_dir.mkdir(parents=True, exist_ok=True)
        for stale in layout.notebooks_in(student_dir):  # a renamed or removed notebook
            stale.unlink()
        for nb, path in zip(notebooks, released.values()):
            target = student_dir / layout.learner_path(nb)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    return released


def find_submissions(submissions_dir: Path, notebook_names: Iterable[str]
                     ) -> dict[str, dict[str, Path]]:
    """Map ``{learner: {notebook file name: path}}`` from ``submissions_dir/<learner>/...``.

    A learner is a sub-folder of ``submissions_dir``; their notebooks are found by file name
    anywhere below it (so ``<learner>/<nb>.ipynb``, nbgrader's own
    ``<learner>/<assignment>/<nb>.ipynb`` and a learner's ``work/`` layout
    ``<learner>/deep_dives/<nb>.ipynb`` all work; names are unique across the course). Files
    in hidden folders (``.ipynb_checkpoints/``, ``.released/`` of ``make lab``) are skipped,
    files with other names are ignored with a warning. Raises ``ValueError`` when the folder
    does not exist or holds no learner folder.
    """
    submissions_dir = Path(submissions_dir)
    if not submissions_dir.is_dir():
        raise ValueError(f"submissions folder not found: {submissions_dir} (expected "
                         f"{submissions_dir}/<learner>/<notebook>.ipynb)")
    names = set(notebook_names)
    found: dict[str, dict[str, Path]] = {}
    for learner_dir in sorted(p for p in submissions_dir.iterdir()
                              if p.is_dir() and not p.name.startswith(".")):
        notebooks: dict[str, Path] = {}
        for path in sorted(learner_dir.rglob("*.ipynb")):
            # hidden folders: Jupyter's checkpoints, make lab's .released/ stamps (the
            # learner versions as handed out) when a learner hands in their whole work/
            if any(part.startswith(".") for part in path.relative_to(learner_dir).parts[:-1]):
                continue
            if path.name not in names:
                log.warning("ignoring %s: not a course notebook name", path)
            elif path.name in notebooks:
                log.warning("ignoring %s: %s already submitted by %s", path, path.name,
                            learner_dir.name)
            else:
                notebooks[path.name] = path
        found[learner_dir.name] = notebooks
    if not found:
        raise ValueError(f"no learner folders in {submissions_dir} (expected "
                         f"{submissions_dir}/<learner>/<notebook>.ipynb)")
    return found




def _say(message: str) -> None:
    print(message, flush=True)


def _record(course_dir: Path, timeout: int, learner: str, aid: str, feedback: bool) -> str:
    """Put one learner's computed results into the gradebook with nbgrader (no execution).

    ``nbgrader autograde`` runs as usual (restores the locked cells from the source, records
    the submission) except that its ``Execute`` step is replaced by
    :class:`utils.course.checking.InjectResults`, which fills in the outputs computed by the
    sandbox and the trusted check.
    """
    api = _api(course_dir, timeout)  # its config replaces Execute (see nbgrader_config)
    with warnings.catch_warnings():
        # nbgrader's gradebook triggers harmless SQLAlchemy session warnings.
        warnings.filterwarnings("ignore", message=".*not in session.*")
        result = api.autograde(aid, learner, force=True, create=True)
        if not result.get("success"):
            reason = _failure_reason(result)
            log.warning("grading %s/%s failed: %s", learner, aid, reason)
            return f"failed: {reason}"
        if feedback:
            fb = api.generate_feedback(aid, learner, force=True)
            if not fb.get("success"):
                log.warning("feedback for %s/%s failed: %s", learner, aid, fb.get("error", ""))
    return "graded"


def _sandbox_one(course_dir: Path, learner: str, aid: str, name: str, timeout: int,
                 notebook_timeout: int, limits=None) -> tuple[Path, str]:
    """Prepare and run one submission in its sandbox; returns ``(workdir, note)``."""
    course_dir = Path(course_dir)
    workdir = course_dir / "sandbox" / learner / aid
    try:
        submission = _read(course_dir / "submitted" / learner / aid / name)
    except Exception as err:  # broken JSON, not a notebook...
        raise ValueError(f"{type(err).__name__}: {err}"[:200]) from None
    source = _read(course_dir / "source" / aid / name)
    release = _read(course_dir / "release" / aid / name)
    nb, plan = checking.sandbox_input(submission, release, source)
    sandbox.prepare_workdir(workdir, nb, plan)
    result = sandbox.run_sandboxed(workdir, timeout, notebook_timeout, limits)
    if result.peak_memory_mb is not None:
        _say(f"  {learner} / {aid}: peak memory {result.peak_memory_mb:.0f} MB")
    note = ""
    try:  # written by the learner's sandbox: read without trusting it
        state = str(read_json(workdir, "status.json", 64 * 1024).get("state", "?"))[:300]
    except Exception:
        state = "no status (the run was stopped or its files were changed)"
    if result.timed_out:
        note = (f"the notebook ran over its time limit ({notebook_timeout} s) and was stopped; "
                f"exercises after that point score zero")
    elif state != "finished":
        note = f"the notebook did not run to the end ({state}); later exercises score zero"
    return workdir, note


def autograde(submissions: dict[str, dict[str, Path]], course_dir: Path = COURSE_DIR,
              timeout: int = CELL_TIMEOUT, feedback: bool = True, jobs: int = 1,
              notebook_timeout: int = NOTEBOOK_TIMEOUT, limits=None
              ) -> dict[tuple[str, str], str]:
    """Grade every submitted notebook; returns ``{(learner, assignment): status}``.

    ``submissions`` is the output of :func:`find_submissions`; the course must have been built
    with :func:`build_course`. Three steps (progress is printed):

    1. every submission runs in its own bubblewrap sandbox (:mod:`utils.course.sandbox`):
       learner cells with errors allowed, ``timeout`` seconds per cell, ``notebook_timeout``
       per notebook; it exports the variables each test reads (``jobs`` sandboxes at a time);
    2. per notebook, one trusted kernel re-runs the instructor notebook and runs every test
       (hidden ones included) on each learner's exported answers
       (:func:`utils.course.checking.run_trusted`);
    3. nbgrader records the results in the gradebook and writes the feedback, after every
       sandbox has ended.

    A cell that raises or hangs only costs the exercise(s) that depend on it; a notebook that
    cannot be read at all is reported with status ``"failed: ..."``.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    course_dir = Path(course_dir)
    source = {p.name: p.parent.name for p in (course_dir / "source").glob("*/*.ipynb")}
    if not source:
        raise ValueError(f"no course in {course_dir}: run build_course (make student) first")
    tasks: list[tuple[str, str, str]] = []
    for learner, notebooks in submissions.items():
        for name, path in notebooks.items():
            if name not in source:
                raise ValueError(f"{path}: {name} is not a notebook of the course")
            aid = source[name]
            target = course_dir / "submitted" / learner / aid
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            shutil.copy2(path, target / name)
            tasks.append((learner, aid, name))
    if not tasks:
        return {}
    sandbox.check_sandbox()
    _ensure_venv_on_path(course_dir)
    for stale in ("sandbox", "results", "trusted"):
        shutil.rmtree(course_dir / stale, ignore_errors=True)

    status: dict[tuple[str, str], str] = {}
    ran: dict[tuple[str, str], tuple[Path, str]] = {}
    start = time.perf_counter()

    def one(task):
        learner, aid, name = task
        t0 = time.perf_counter()
        try:
            workdir, note = _sandbox_one(course_dir, learner, aid, name, timeout,
                                         notebook_timeout, limits)
        except Exception as err:  # one submission never stops the others
            return task, None, f"failed: {err}"[:300], time.perf_counter() - t0
        return task, (workdir, note), "", time.perf_counter() - t0

    _say(f"grading {len(tasks)} notebook(s) of {len(submissions)} learner(s) in sandboxes "
         f"({jobs} at a time)")
    from concurrent.futures import ThreadPoolExecutor, as_completed

    with ThreadPoolExecutor(max_workers=min(jobs, len(tasks))) as pool:
        futures = [pool.submit(one, task) for task in tasks]
        for k, future in enumerate(as_completed(futures), start=1):
            task, done, failure, seconds = future.result()
            learner, aid, _ = task
            if done is None:
                status[(learner, aid)] = failure
            else:
                ran[(learner, aid)] = done
            _say(f"[{k}/{len(tasks)}] {learner} / {aid}: "
                 f"{failure or done[1] or 'ran to the end'} ({seconds:.0f} s; "
                 f"{time.perf_counter() - start:.0f} s elapsed)")

    tests: dict[tuple[str, str], dict[str, list]] = {}
    for aid in sorted({aid for _, aid in ran}):
        # learners in name order: a run checks them in the same order every time
        workdirs = {learner: done[0] for (learner, a), done in sorted(ran.items()) if a == aid}
        name = next(n for n, a in source.items() if a == aid)
        _say(f"checking {aid} for {len(workdirs)} learner(s) in the grader's kernel")
        results = checking.run_trusted(course_dir / "source" / aid / name, workdirs,
                                       course_dir / "trusted" / aid, timeout, progress=_say)
        for learner, by_test in results.items():
            tests[(learner, aid)] = by_test

    trusted_md = {aid: checking.markdown_digests(_read(course_dir / "source" / aid / name))
                  for name, aid in source.items()}
    for (learner, aid), (workdir, note) in ran.items():
        checking.write_results(course_dir / "results" / learner / f"{aid}.json", workdir,
                               tests.get((learner, aid), {}), note, trusted_md[aid])
        status[(learner, aid)] = _record(course_dir, timeout, learner, aid, feedback)
    if feedback:
        offline_feedback(course_dir / "feedback")
    _say(f"graded {len(tasks)} notebook(s) in {time.perf_counter() - start:.0f} s")
    return {(learner, aid): status[(learner, aid)] for learner, aid, _ in tasks}


_SKIP_BLOCKS = re.compile(r"(<(pre|code|script|style|textarea)\b.*?</\2>)", re.S | re.I)
_MATH = re.compile(r"\$\$(.+?)\$\$|(?<![\\\w$])\$(?=\S)([^$\n<>]+?)(?<=\S)\$(?![\w$])", re.S)
_TAG = re.compile(r"(<[^>]*>)")
_MATHJAX_SCRIPT = re.compile(r"<script[^>]*(?:mathjax|MathJax)[^>]*>.*?</script>", re.S)


def _math_image(tex: str, display: bool) -> str:
    """``tex`` drawn by matplotlib's mathtext as an inline SVG (``<code>`` if it cannot)."""
    import base64
    import html as html_lib
    import io

    from matplotlib import mathtext

    raw = html_lib.unescape(tex).strip()
    buf = io.BytesIO()
    try:
        mathtext.math_to_image(f"${raw}$", buf, format="svg", prop=None)
    except Exception:  # outside mathtext's TeX subset: show the LaTeX itself, readable
        return f"<code>{html_lib.escape(raw)}</code>"
    data = base64.b64encode(buf.getvalue()).decode()
    style = "display:block;margin:0.5em auto" if display else "vertical-align:middle"
    return (f'<img class="offline-math" style="{style}" alt="{html_lib.escape(raw)}" '
            f'src="data:image/svg+xml;base64,{data}">')


def offline_math(html: str) -> str:
    """Feedback HTML whose maths shows without internet.

    nbconvert loads MathJax from a CDN, so offline ``$\\rho$`` stayed raw. No MathJax bundle
    ships in the environment (JupyterLab's is inside its webpack chunks), so the CDN script is
    removed and each ``$...$`` / ``$$...$$`` outside code is drawn with matplotlib's mathtext
    as an inline SVG, or shown as ``<code>`` LaTeX when mathtext cannot draw it.
    """
    html = _MATHJAX_SCRIPT.sub("", html)
    parts = _SKIP_BLOCKS.split(html)
    out = []
    skip_next = False
    for part in parts:
        if skip_next:  # the tag-name group of the split
            skip_next = False
            continue
        if _SKIP_BLOCKS.fullmatch(part or ""):
            out.append(part)
            skip_next = True
            continue
        # only text between tags: a "$" inside an attribute value stays as it is
        out.append("".join(
            piece if piece.startswith("<") else
            _MATH.sub(lambda m: _math_image(m.group(1) or m.group(2), m.group(1) is not None),
                      piece)
            for piece in _TAG.split(part)))
    return "".join(out)


def offline_feedback(feedback_dir: Path) -> int:
    """Rewrite every feedback HTML under ``feedback_dir`` with :func:`offline_math`."""
    count = 0
    for path in Path(feedback_dir).rglob("*.html"):
        path.write_text(offline_math(path.read_text()))
        count += 1
    return count


def exercise_name(grade_id: str) -> str:
    """Exercise label of a test cell: ``"w1_ex2_test"`` -> ``"w1_ex2"`` (others unchanged)."""
    return re.sub(r"_test$", "", str(grade_id))


#: Status of a notebook that was not submitted (its scores are blank, not counted in ``max``).
MISSING = "missing"
#: Status of a manually graded cell or task that has no manual score yet.
NEEDS_MANUAL = "needs manual grading"


#: Status of a written answer left as handed out ("YOUR ANSWER HERE"): 0 points.
NO_ANSWER = "no answer (0 points)"
#: Status of a manual score given to an earlier version of a resubmitted answer.
MANUAL_REVIEW = "graded (manual), answer changed since: review"


def manual_state(grade) -> tuple[float | None, str]:
    """Score and status of a manually graded cell from its nbgrader ``Grade`` (or None).

    A person's score wins; nbgrader gives an answer left exactly as handed out an automatic
    0 (its checksum is unchanged), which counts as graded; anything else waits for a person.
    """
    if grade is None:
        return None, NEEDS_MANUAL
    if grade.manual_score is not None:
        return grade.manual_score, MANUAL_REVIEW if grade.needs_manual_grade else "graded (manual)"
    if grade.auto_score is not None:
        return grade.auto_score, NO_ANSWER
    return None, NEEDS_MANUAL


def score_table(course_dir: Path = COURSE_DIR, learners: Iterable[str] = (),
                status: dict[tuple[str, str], str] | None = None):
    """The gradebook as a ``pandas.DataFrame``, one row per learner and graded cell.

    Columns: ``learner, assignment, notebook, exercise, test_cell, score, max_score, status``
    (``exercise`` is the cell's grade id without ``_test``). Every graded cell of every
    assignment appears for every learner in ``learners`` (plus those in the gradebook):

    - autograded test cells: status ``graded``;
    - manually graded cells (nbgrader answer cells with points, and task cells): status
      ``needs manual grading`` and a blank score until an instructor grades them (formgrader),
      then ``graded (manual)``;
    - a notebook that was not submitted: blank score, status ``missing``;
    - a notebook that could not be graded at all: 0 with status ``failed: ...``.
    """
    import pandas as pd
    from nbgrader.api import Gradebook, MissingEntry

    _ensure_venv_on_path(course_dir)
    status = dict(status or {})
    db_url = nbgrader_config(course_dir).CourseDirectory.db_url
    rows = []
    with Gradebook(db_url) as gb:
        everyone = sorted(set(learners) | {s.id for s in gb.students})
        for assignment in sorted(gb.assignments, key=lambda a: a.name):
            for notebook in sorted(assignment.notebooks, key=lambda n: n.name):
                answers = {c.name for c in notebook.solution_cells}
                cells = [(c, c.cell_type == "markdown" or c.name in answers)
                         for c in notebook.grade_cells]
                cells += [(c, True) for c in getattr(notebook, "task_cells", [])]
                for learner in everyone:
                    try:
                        sub = gb.find_submission_notebook(notebook.name, assignment.name, learner)
                        grades = {g.name: g for g in sub.grades}
                    except MissingEntry:
                        grades = {}
                    state = status.get((learner, assignment.name),
                                       "graded" if grades else MISSING)
                    for cell, manual in cells:
                        grade = grades.get(cell.name) if state == "graded" else None
                        if state == MISSING:
                            score, cell_state = None, MISSING
                        elif state != "graded":
                            score, cell_state = 0.0, state
                        elif manual:
                            score, cell_state = manual_state(grade)
                        else:
                            score = 0.0 if grade is None or grade.score is None else grade.score
                            cell_state = "graded"
                        rows.append({
                            "learner": learner, "assignment": assignment.name,
                            "notebook": notebook.name + ".ipynb",
                            "exercise": exercise_name(cell.name), "test_cell": cell.name,
                            "score": float(score) if score is not None else float("nan"),
                            "max_score": float(cell.max_score), "status": cell_state,
                        })
    columns = ["learner", "assignment", "notebook", "exercise", "test_cell", "score",
               "max_score", "status"]
    return pd.DataFrame(rows, columns=columns)


def _counted(scores):
    """Rows that count towards ``max``: everything but notebooks that were not submitted."""
    if "status" not in scores:
        return scores
    return scores[scores["status"] != MISSING]


def _totals(scores):
    import pandas as pd

    counted = _counted(scores)
    learners = list(dict.fromkeys(scores["learner"]))
    total = counted.groupby("learner")["score"].sum(min_count=1).reindex(learners)
    maximum = counted.groupby("learner")["max_score"].sum().reindex(learners).fillna(0.0)
    out = pd.DataFrame({"total": total, "max": maximum})
    if "status" in scores:
        pending = counted[counted["status"] == NEEDS_MANUAL]
        out["manual_pending"] = (pending.groupby("learner")["max_score"].sum()
                                 .reindex(learners).fillna(0.0))
    return out


def wide_table(scores):
    """One row per learner: one column per ``assignment/exercise``, one per week
    (``assignment`` = the week's total), plus ``total`` and ``max``.

    A week that was not submitted is blank and not counted in ``max``; with manually graded
    cells, ``manual_pending`` gives the points still to be graded by hand.
    """
    import pandas as pd

    if scores.empty:
        return pd.DataFrame(columns=["learner", "total", "max"])
    keyed = scores.assign(column=scores["assignment"] + "/" + scores["exercise"])
    wide = keyed.pivot_table(index="learner", columns="column", values="score",
                             aggfunc=lambda v: v.sum(min_count=1), sort=False, dropna=False)
    wide = wide.reindex(columns=list(dict.fromkeys(keyed["column"])))
    weeks = _week_totals(scores)
    wide = wide.join(weeks).join(_totals(scores))
    wide.columns.name = None
    return wide.reset_index()


def _week_totals(scores):
    counted = _counted(scores)
    weeks = counted.pivot_table(index="learner", columns="assignment", values="score",
                                aggfunc=lambda v: v.sum(min_count=1), dropna=False)
    order = list(dict.fromkeys(scores["assignment"]))
    weeks = weeks.reindex(index=list(dict.fromkeys(scores["learner"])), columns=order)
    weeks.columns.name = None
    return weeks


def summary_table(scores):
    """Points per learner and week (``assignment`` columns, blank = not submitted), plus
    ``total`` and ``max`` (the weeks submitted only)."""
    import pandas as pd

    if scores.empty:
        return pd.DataFrame(columns=["learner", "total", "max"])
    summary = _week_totals(scores).join(_totals(scores))
    summary.index.name = "learner"
    return summary.reset_index()


def _by_learner_csv(csv_path: Path) -> Path:
    return Path(csv_path).with_name(Path(csv_path).stem + "_by_learner.csv")


def grade(submissions_dir: Path = SUBMISSIONS_DIR, notebooks: Sequence[Path] | None = None,
          course_dir: Path = COURSE_DIR, csv_path: Path | None = GRADES_CSV,
          timeout: int = CELL_TIMEOUT, feedback: bool = True, jobs: int = 1,
          notebook_timeout: int = NOTEBOOK_TIMEOUT, limits=None):
    """The whole ``make grade``: fresh course, grade every submission, write the CSVs.

    Returns the long score table (see :func:`score_table`). ``csv_path`` gets the long table;
    a sibling ``<stem>_by_learner.csv`` gets :func:`wide_table`. Both are written from the
    gradebook after every sandbox has ended. Earlier files are removed first, so a run that
    fails leaves no stale table behind. ``limits`` (:class:`utils.course.limits.Limits`)
    bound each sandbox.
    """
    if csv_path is not None:
        for stale in (Path(csv_path), _by_learner_csv(csv_path)):
            stale.unlink(missing_ok=True)
    notebooks = course_notebooks() if notebooks is None else [Path(p) for p in notebooks]
    submissions = find_submissions(submissions_dir, [Path(nb).name for nb in notebooks])
    build_course(notebooks, course_dir=course_dir, student_dir=None, timeout=timeout)
    status = autograde(submissions, course_dir=course_dir, timeout=timeout, feedback=feedback,
                       jobs=jobs, notebook_timeout=notebook_timeout, limits=limits)
    scores = score_table(course_dir, learners=submissions, status=status)
    if csv_path is not None:
        csv_path = Path(csv_path)
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        scores.to_csv(csv_path, index=False)
        wide_table(scores).to_csv(_by_learner_csv(csv_path), index=False)
    return scores


# --------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> None:
    """``python -m utils.course.grading student|grade``: see the module docstring."""
    parser = argparse.ArgumentParser(description="nbgrader workflow of the course "
                                     "(make student / make grade)")
    sub = parser.add_subparsers(dest="command", required=True)
    p_student = sub.add_parser("student", help="generate the learner notebooks")
    p_student.add_argument("--out", type=Path, default=STUDENT_DIR)
    p_grade = sub.add_parser("grade", help="autograde submissions and write the score CSV")
    p_grade.add_argument("submissions", type=Path, nargs="?", default=SUBMISSIONS_DIR,
                         help="folder of <learner>/<notebook>.ipynb (default: submissions/)")
    p_grade.add_argument("--csv", type=Path, default=GRADES_CSV)
    p_grade.add_argument("--no-feedback", action="store_true",
                         help="skip the HTML feedback files")
    p_grade.add_argument("--jobs", type=int, default=1,
                         help="notebooks graded at the same time (default 1)")
    for p in (p_student, p_grade):
        p.add_argument("--notebooks", type=Path, nargs="+", default=None,
                       help="source notebooks (default: notebooks/[0-9]*.ipynb, then "
                            "notebooks/deep_dives/*.ipynb)")
        p.add_argument("--course-dir", type=Path, default=COURSE_DIR)
        p.add_argument("--timeout", type=int, default=CELL_TIMEOUT,
                       help="seconds per cell when autograding")
    p_grade.add_argument("--notebook-timeout", type=int, default=NOTEBOOK_TIMEOUT,
                         help="seconds per notebook (all cells) in its sandbox")
    limits.add_arguments(p_grade)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    notebooks = args.notebooks or course_notebooks()
    if not notebooks:
        sys.exit(f"no notebooks match {NOTEBOOK_GLOB} or {DEEP_DIVE_GLOB}")
    try:
        if args.command == "student":
            # fresh=False: the gradebook of `make grade` (manual scores) stays
            build_course(notebooks, course_dir=args.course_dir, student_dir=args.out,
                         timeout=args.timeout, fresh=False)
            for nb in notebooks:
                print(f"learner version: {Path(args.out) / layout.learner_path(nb)}")
            return
        scores = grade(args.submissions, notebooks, course_dir=args.course_dir,
                       csv_path=args.csv, timeout=args.timeout,
                       feedback=not args.no_feedback, jobs=args.jobs,
                       notebook_timeout=args.notebook_timeout,
                       limits=limits.from_arguments(args))
    except ValueError as err:
        sys.exit(f"error: {err}")
    except SandboxUnavailable as err:
        sys.exit(f"error: {err}")
    print("points per learner and notebook (weeks, then deep dives; blank = not submitted; "
          "max counts submitted notebooks):")
    print(summary_table(scores).astype(object).where(lambda t: t.notna(), "missing")
          .to_string(index=False))
    print(f"\nscores per learner and exercise: {args.csv}")
    print(f"one row per learner:             "
          f"{Path(args.csv).with_name(Path(args.csv).stem + '_by_learner.csv')}")
    if not args.no_feedback:
        print(f"feedback (HTML) per learner:     {Path(args.course_dir) / 'feedback'}")


if __name__ == "__main__":
    main()
