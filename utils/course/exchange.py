"""The class workflow through nbgrader's exchange (a course on JupyterHub, or one machine).

The instructor's side of nbgrader's exchange, a shared folder (``EXCHANGE``, on JupyterHub
typically ``/srv/nbgrader/exchange``) in which each course (``COURSE_ID``) has an
``outbound/`` folder (released assignments) and an ``inbound/`` folder (submissions):

1. ``make exchange-release`` (``python -m utils.course.exchange release``): the learner
   versions of the weeks and the deep dives (:func:`utils.course.grading.build_course`), one
   assignment each (id = file name without ``.ipynb``), are released to ``outbound/``
   (``nbgrader release_assignment``). nbgrader's fetch puts every assignment in a folder of
   its own, side by side, so the links between notebooks are rewritten for that layout
   (``deep_dives/D1_x.ipynb`` -> ``../D1_x/D1_x.ipynb``,
   :func:`utils.course.layout.exchange_links`); the grader trusts those cells as the
   instructor's (:func:`utils.course.checking.markdown_digests`);
2. learners fetch them (JupyterLab's *Assignments* tab, or ``nbgrader fetch_assignment
   <week> --course <COURSE_ID>``), work, and submit (*Submit* button, or ``nbgrader submit``);
3. ``make collect`` (``python -m utils.course.exchange collect``): the latest submission of
   every learner is collected (``nbgrader collect --update``) and copied to
   ``SUBMISSIONS/<learner>/<notebook>.ipynb`` (flat: the file names are unique across weeks
   and deep dives), the folder ``make grade`` grades - which then
   grades only what is new or changed (:mod:`utils.course.gradebook`).

The exchange steps run in a course folder of their own (``build/exchange/``), never in the
grading course ``build/nbgrader/``, so releasing or collecting never touches the gradebook.
The JupyterHub settings a course needs are in ``docs/CLASS_WORKFLOW.md``.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Sequence

import nbformat

from . import grading, layout

#: Course folder of the exchange steps (its own gradebook, unused).
EXCHANGE_COURSE_DIR: Path = grading.BUILD_DIR / "exchange"
#: Default exchange root and course id (override with EXCHANGE / COURSE_ID).
DEFAULT_EXCHANGE = "/srv/nbgrader/exchange"
DEFAULT_COURSE_ID = "xai-ecg"

log = logging.getLogger(__name__)


def _api(course_dir: Path, exchange_root: Path, course_id: str):
    """nbgrader's API for ``course_dir`` with the exchange at ``exchange_root``."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    grading._ensure_venv_on_path(course_dir)
    config = grading.nbgrader_config(course_dir)
    config.Exchange.root = str(Path(exchange_root).resolve())
    config.CourseDirectory.course_id = course_id
    # On a hub whose single-user servers run in containers every learner is the same OS
    # user (jovyan, JUPYTERHUB_USER names them): the owner check would warn for everyone.
    config.ExchangeCollect.check_owner = False
    coursedir = CourseDirectory(config=config)
    return NbGraderAPI(coursedir=coursedir, config=config)


def prepare_exchange(exchange_root: Path) -> Path:
    """Create the exchange root, writable by every learner (as nbgrader's docs ask)."""
    root = Path(exchange_root)
    root.mkdir(parents=True, exist_ok=True)
    try:
        root.chmod(0o777)
    except PermissionError:  # someone else's folder: nbgrader reports what it lacks
        pass
    return root


def release(notebooks: Sequence[Path] | None = None, exchange_root: Path = Path(DEFAULT_EXCHANGE),
            course_id: str = DEFAULT_COURSE_ID,
            course_dir: Path = EXCHANGE_COURSE_DIR) -> list[str]:
    """Release the learner versions of ``notebooks`` (default: the weeks and the deep dives)
    to the exchange, links rewritten for its layout; returns the assignment ids."""
    notebooks = grading.course_notebooks() if notebooks is None else [Path(p) for p in notebooks]
    prepare_exchange(exchange_root)
    released = grading.build_course(notebooks, course_dir=course_dir, student_dir=None,
                                    fresh=False)
    for path in released.values():
        relink_for_exchange(path)
    api = _api(course_dir, exchange_root, course_id)
    for aid in released:
        result = api.release_assignment(aid)
        if not result.get("success"):
            raise RuntimeError(f"nbgrader release_assignment {aid} failed:\n"
                               f"{result.get('log', '')}{result.get('error', '')}")
    return sorted(released)


def relink_for_exchange(path: Path) -> bool:
    """Rewrite the links between notebooks in the learner version ``path`` for nbgrader's
    fetch layout (:func:`utils.course.layout.exchange_links`); True when something changed.

    Cells nbgrader tracks (answers, tests, locked cells: their checksums were recorded when the
    assignment was generated) are left as they are."""
    nb = nbformat.read(path, as_version=4)
    changed = False
    for cell in nb.cells:
        if cell.cell_type == "markdown" and not (cell.metadata.get("nbgrader") or {}):
            new = layout.exchange_links(cell.source)
            changed |= new != cell.source
            cell.source = new
    if changed:
        nbformat.write(nb, path)
    return changed


def collect(submissions_dir: Path, assignments: Sequence[str] | None = None,
            exchange_root: Path = Path(DEFAULT_EXCHANGE), course_id: str = DEFAULT_COURSE_ID,
            course_dir: Path = EXCHANGE_COURSE_DIR) -> dict[str, list[str]]:
    """Collect the latest submissions from the exchange into
    ``submissions_dir/<learner>/<notebook>.ipynb``; returns ``{learner: [notebook names]}``.

    A learner's earlier copy in ``submissions_dir`` is replaced only by a newer submission
    (nbgrader keeps the latest by timestamp); files that are not course notebooks are left
    in the collected folder and ignored.
    """
    course_dir = Path(course_dir)
    if not (course_dir / "source").is_dir():
        raise ValueError(f"no exchange course in {course_dir}: run `make exchange-release`")
    assignments = sorted(p.name for p in (course_dir / "source").iterdir()) \
        if assignments is None else list(assignments)
    api = _api(course_dir, exchange_root, course_id)
    copied: dict[str, list[str]] = {}
    for aid in assignments:
        result = api.collect(aid, update=True)
        if not result.get("success"):
            raise RuntimeError(f"nbgrader collect {aid} failed:\n{result.get('log', '')}"
                               f"{result.get('error', '')}")
        names = {p.name for p in (course_dir / "source" / aid).glob("*.ipynb")}
        for folder in sorted((course_dir / "submitted").glob(f"*/{aid}")):
            learner = folder.parent.name
            for path in sorted(folder.glob("*.ipynb")):
                if path.name not in names:
                    continue
                target = Path(submissions_dir) / learner / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists() or target.read_bytes() != path.read_bytes():
                    shutil.copyfile(path, target)
                copied.setdefault(learner, []).append(path.name)
    return copied


def main(argv: list[str] | None = None) -> None:
    """``python -m utils.course.exchange release|collect`` (see the module docstring)."""
    parser = argparse.ArgumentParser(description="nbgrader exchange: release assignments, "
                                     "collect submissions (make exchange-release / collect)")
    parser.add_argument("command", choices=("release", "collect"))
    parser.add_argument("--exchange", type=Path,
                        default=Path(os.environ.get("EXCHANGE") or DEFAULT_EXCHANGE))
    parser.add_argument("--course-id", default=os.environ.get("COURSE_ID") or DEFAULT_COURSE_ID)
    parser.add_argument("--course-dir", type=Path, default=EXCHANGE_COURSE_DIR)
    parser.add_argument("--notebooks", type=Path, nargs="+", default=None)
    parser.add_argument("--submissions", type=Path, default=grading.SUBMISSIONS_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "release":
            ids = release(args.notebooks, args.exchange, args.course_id, args.course_dir)
            print(f"released to {args.exchange}/{args.course_id}/outbound: {', '.join(ids)}")
            print(f"learners: nbgrader fetch_assignment <id> --course {args.course_id} "
                  "(or JupyterLab's Assignments tab)")
        else:
            ids = None if args.notebooks is None else [grading.assignment_id(p)
                                                        for p in args.notebooks]
            copied = collect(args.submissions, ids, args.exchange, args.course_id,
                             args.course_dir)
            for learner, names in sorted(copied.items()):
                print(f"collected {learner}: {', '.join(sorted(names))}")
            print(f"{len(copied)} learner(s) in {args.submissions}; now run `make grade`")
    except (ValueError, RuntimeError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
