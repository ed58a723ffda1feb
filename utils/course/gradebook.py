"""Grades that last: incremental ``make grade``, manual grading, re-export and feedback.

``make grade`` (``python -m utils.course.gradebook grade``) keeps the nbgrader course folder
``build/nbgrader/`` between runs, so the gradebook ``gradebook.db`` and every score a person
gave in the formgrader survive a late submission or a regrade:

- the course is updated in place (:func:`utils.course.grading.build_course` with
  ``fresh=False``: new sources and releases, same gradebook);
- a submission is graded again only when its *content* changed since it was last graded: the
  SHA-256 of the submitted file and of the instructor notebook it is graded against (a changed
  test regrades that week) is kept in ``build/nbgrader/graded.json``; unchanged ones are
  skipped, and the run says which;
- new and changed submissions are graded as tasks on Dask distributed
  (:mod:`utils.course.distributed`: a ``LocalCluster`` by default, or the cluster at
  ``DASK_SCHEDULER_ADDRESS``), or with ``--engine threads`` by :func:`grading.autograde`.

Manual grading: ``make formgrade`` opens nbgrader's formgrader on the course folder; each
written answer of an autograded notebook has the instructor's model answer and rubric shown
just above it (:class:`ShowRubric`; :class:`HideRubric` removes them from every feedback).
``make grades`` (``python -m utils.course.gradebook export``) then rewrites the CSV files and
the feedback from the gradebook, without running anything. In the CSV and the feedback a
written answer is "awaiting manual grading" until a person graded it; an answer left exactly
as handed out ("YOUR ANSWER HERE") scores 0 with the status ``no answer (0 points)``.

nbgrader's log: ``autograde`` warns "Attribute 'checksum' for cell ... has changed!" for every
locked cell whose submitted source differs from the instructor's. For a test cell with hidden
tests that is always so (the learner's copy never had them) and harmless (nbgrader puts the
instructor's version back); these warnings are dropped, and a learner who *did* edit a locked
cell is reported once per notebook instead (:func:`edited_locked_cells`).
"""
from __future__ import annotations

import argparse
import hashlib
import html
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor

from . import grading
from .grading import COURSE_DIR, GRADES_CSV, SUBMISSIONS_DIR
from . import limits
from . import distributed

#: Record of what was graded: ``{"<learner>/<assignment>": {"hash", "status", "graded_at"}}``.
STATE_FILE = "graded.json"
#: Metadata key of the rubric cells :class:`ShowRubric` adds (and :class:`HideRubric` removes).
RUBRIC_KEY = "course_rubric"
#: Shown in the feedback in place of the score of a written answer nobody graded yet.
AWAITING = "awaiting manual grading"

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- what to grade
def content_hash(submission: Path, source: Path) -> str:
    """SHA-256 of a submitted notebook together with the instructor notebook it is graded
    against: it changes when the learner resubmits something else or the tests change."""
    digest = hashlib.sha256()
    for path in (submission, source):
        data = Path(path).read_bytes()
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def load_state(course_dir: Path) -> dict[str, dict]:
    """The grading record of ``course_dir`` (empty when nothing was graded yet)."""
    path = Path(course_dir) / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def save_state(course_dir: Path, state: dict[str, dict]) -> None:
    path = Path(course_dir) / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    tmp.replace(path)  # atomic: an interrupted run never leaves half a record


@dataclass
class GradingPlan:
    """Submissions to grade now (``todo``), and those graded before and unchanged."""

    todo: dict[str, dict[str, Path]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    hashes: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.todo.values())


def plan_grading(submissions: dict[str, dict[str, Path]], sources: dict[str, Path],
                 state: dict[str, dict], regrade: bool = False) -> GradingPlan:
    """Split ``submissions`` (``{learner: {notebook name: path}}``) into new or changed ones
    and unchanged ones, by :func:`content_hash` against ``state``. ``sources`` maps a
    notebook name to its instructor notebook; ``regrade`` grades everything again."""
    plan = GradingPlan()
    for learner, notebooks in sorted(submissions.items()):
        for name, path in sorted(notebooks.items()):
            aid = grading.assignment_id(Path(name))
            digest = content_hash(path, sources[name])
            plan.hashes[(learner, aid)] = digest
            before = state.get(f"{learner}/{aid}", {})
            if not regrade and before.get("hash") == digest \
                    and not str(before.get("status", "")).startswith("failed"):
                plan.skipped.append((learner, aid))
            else:
                plan.todo.setdefault(learner, {})[name] = path
    return plan


def edited_locked_cells(submission: Path, release: Path) -> list[str]:
    """Grade ids of locked cells whose submitted source differs from the learner version
    (nbgrader restores them from the instructor's notebook when grading)."""
    try:
        sub = nbformat.read(submission, as_version=4)
    except Exception:  # noqa: BLE001 - reported by the grading itself
        return []
    locked = {}
    for cell in nbformat.read(release, as_version=4).cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("locked") and not meta.get("solution"):
            locked[str(meta.get("grade_id"))] = cell.source
    edited = []
    for cell in sub.cells:
        gid = str(cell.get("metadata", {}).get("nbgrader", {}).get("grade_id"))
        if gid in locked and cell.get("source", "") != locked[gid]:
            edited.append(gid)
    return sorted(set(edited))


class _ChecksumNoise(logging.Filter):
    """Drops nbgrader's expected "checksum has changed" warnings (see the module docstring)."""

    pattern = re.compile(r"Attribute 'checksum' for cell \S+ has changed")

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


def quiet_checksum_warnings() -> None:
    """Install :class:`_ChecksumNoise` on the loggers nbgrader's applications write to."""
    for name in ("traitlets", "NbGraderAPI", "Autograde", "nbgrader"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _ChecksumNoise) for f in logger.filters):
            logger.addFilter(_ChecksumNoise())
        for handler in logger.handlers:
            if not any(isinstance(f, _ChecksumNoise) for f in handler.filters):
                handler.addFilter(_ChecksumNoise())


# --------------------------------------------------------------------------- rubric
def rubric_text(source_cell) -> str:
    """The instructor's text of a written answer (model answer and rubric), markers removed."""
    blocks = grading.solution_blocks(nbformat.v4.new_notebook(cells=[source_cell]))
    return "\n".join(blocks).strip() if blocks else source_cell.source.strip()


def course_root(db_url: str) -> Path:
    """The course folder of a gradebook URL (``sqlite:///<course>/gradebook.db``)."""
    return Path(db_url.removeprefix("sqlite:///")).parent


class ShowRubric(NbGraderPreprocessor):
    """Autograde step: a markdown cell with the instructor's model answer and rubric just
    above each manually graded answer, so the formgrader shows them beside the answer.

    Runs after ``InjectResults`` (which matches outputs to cells by index). The cells carry
    ``metadata.course_rubric`` and are removed from every feedback by :class:`HideRubric`.
    """

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        root = course_root(info.get("db_url", ""))
        source = root / "source" / info["assignment"] / f"{info['notebook']}.ipynb"
        if not source.is_file():
            return nb, resources
        rubrics = {}
        for cell in nbformat.read(source, as_version=4).cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade") and (cell.cell_type == "markdown" or meta.get("solution")) \
                    and meta.get("solution"):
                rubrics[str(meta.get("grade_id"))] = rubric_text(cell)
        cells = []
        for cell in nb.cells:
            gid = str(cell.metadata.get("nbgrader", {}).get("grade_id"))
            if gid in rubrics and not cell.metadata.get(RUBRIC_KEY):
                note = nbformat.v4.new_markdown_cell(
                    f"**Instructor only - model answer and rubric of `{gid}`** (not in the "
                    f"learner's feedback):\n\n" + "\n".join(
                        f"> {line}" for line in rubrics[gid].splitlines()),
                    metadata={RUBRIC_KEY: True})
                cells.append(note)
            cells.append(cell)
        nb.cells = cells
        return nb, resources


class HideRubric(NbGraderPreprocessor):
    """Feedback step: remove the rubric cells of :class:`ShowRubric`."""

    def preprocess(self, nb, resources):
        nb.cells = [c for c in nb.cells if not c.metadata.get(RUBRIC_KEY)]
        return nb, resources


# --------------------------------------------------------------------------- feedback
def pending_cells(course_dir: Path) -> dict[tuple[str, str], list[str]]:
    """``{(learner, assignment): [grade ids]}`` of written answers nobody graded yet."""
    from nbgrader.api import Gradebook

    db_url = grading.nbgrader_config(course_dir).CourseDirectory.db_url
    out: dict[tuple[str, str], list[str]] = {}
    with Gradebook(db_url) as gb:
        for assignment in gb.assignments:
            for sub in assignment.submissions:
                for nb in sub.notebooks:
                    for g in nb.grades:
                        if g.manual_score is None and g.auto_score is None:
                            out.setdefault((sub.student.id, assignment.name), []).append(g.name)
    return out


def mark_pending(html_text: str, grade_ids: Iterable[str]) -> str:
    """Feedback HTML with "awaiting manual grading" in place of the score (nbgrader's template
    shows a missing score as 0.0) of each cell in ``grade_ids``, and in the total."""
    points = 0.0
    for gid in grade_ids:
        gid_re = re.escape(html.escape(gid, quote=True))
        toc = re.compile(rf'(<a href="#{gid_re}">[^<]*</a>) \(Score: [\d.]+ / ([\d.]+)\)')
        for match in toc.finditer(html_text):
            points += float(match.group(2))
        html_text = toc.sub(rf"\1 ({AWAITING}, \2 points)", html_text)
        head = re.compile(rf'(<a name="{gid_re}"></a>(?:(?!<a name=).)*?'
                          rf'<span class="pull-right">\s*)Score: [\d.]+ / ([\d.]+)', re.S)
        html_text = head.sub(rf"\1{AWAITING.capitalize()} (\2 points)", html_text)
    if points:
        html_text = re.sub(r"(<h4>[^<]*\(Score: [\d.]+ / [\d.]+)\)",
                           rf"\1; {points:g} points {AWAITING})", html_text, count=1)
    return html_text


def annotate_feedback(course_dir: Path) -> int:
    """Apply :func:`mark_pending` to every feedback file of ``course_dir``; returns how many
    files had pending answers."""
    course_dir = Path(course_dir)
    count = 0
    for (learner, aid), ids in pending_cells(course_dir).items():
        for path in (course_dir / "feedback" / learner / aid).glob("*.html"):
            path.write_text(mark_pending(path.read_text(), ids))
            count += 1
    return count


def regenerate_feedback(course_dir: Path, timeout: int = grading.CELL_TIMEOUT) -> int:
    """Feedback of every graded submission again from the gradebook (after manual grading):
    nothing is executed. Returns the number of submissions."""
    from nbgrader.api import Gradebook

    course_dir = Path(course_dir)
    api = grading._api(course_dir, timeout)
    db_url = grading.nbgrader_config(course_dir).CourseDirectory.db_url
    with Gradebook(db_url) as gb:
        pairs = sorted((s.student.id, a.name) for a in gb.assignments for s in a.submissions)
    done = 0
    for learner, aid in pairs:
        if not (course_dir / "autograded" / learner / aid).is_dir():
            continue
        result = api.generate_feedback(aid, learner, force=True)
        if result.get("success"):
            done += 1
        else:
            log.warning("feedback for %s/%s failed: %s", learner, aid, result.get("error", ""))
    grading.offline_feedback(course_dir / "feedback")
    annotate_feedback(course_dir)
    return done


# --------------------------------------------------------------------------- tables
def status_of(state: dict[str, dict]) -> dict[tuple[str, str], str]:
    """``{(learner, assignment): status}`` of every submission ever graded."""
    return {tuple(key.split("/", 1)): entry.get("status", "graded")
            for key, entry in state.items()}


def export(course_dir: Path = COURSE_DIR, csv_path: Path | None = GRADES_CSV,
           feedback: bool = True):
    """Write the CSV files (and the feedback) from the gradebook as it is now.

    This is the command to run after manual grading in the formgrader (``make grades``).
    Returns the long score table (:func:`utils.course.grading.score_table`).
    """
    course_dir = Path(course_dir)
    state = load_state(course_dir)
    learners = sorted({key.split("/", 1)[0] for key in state})
    scores = grading.score_table(course_dir, learners=learners, status=status_of(state))
    if csv_path is not None:
        csv_path = Path(csv_path)
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        scores.to_csv(csv_path, index=False)
        grading.wide_table(scores).to_csv(by_learner_csv(csv_path), index=False)
    if feedback:
        regenerate_feedback(course_dir)
    return scores


def by_learner_csv(csv_path: Path) -> Path:
    return Path(csv_path).with_name(Path(csv_path).stem + "_by_learner.csv")


# --------------------------------------------------------------------------- make grade
@dataclass
class GradeReport:
    """What one :func:`grade_class` run did."""

    graded: list[tuple[str, str]]
    skipped: list[tuple[str, str]]
    seconds: float
    scores: object  # pandas.DataFrame


def grade_class(submissions_dir: Path = SUBMISSIONS_DIR, notebooks: Sequence[Path] | None = None,
                course_dir: Path = COURSE_DIR, csv_path: Path | None = GRADES_CSV,
                timeout: int = grading.CELL_TIMEOUT, feedback: bool = True, jobs: int = 1,
                notebook_timeout: int = grading.NOTEBOOK_TIMEOUT, engine: str = "dask",
                scheduler: str | None = None, regrade: bool = False,
                client=None, trusted_chunk: int | None = None, limits=None) -> GradeReport:
    """``make grade``: grade the new and changed submissions, keep everything else.

    ``engine`` is ``"dask"`` (one task per learner-notebook on a Dask cluster: ``client``, or
    the scheduler at ``scheduler`` / ``DASK_SCHEDULER_ADDRESS``, or a ``LocalCluster`` of
    ``jobs`` workers) or ``"threads"`` (:func:`utils.course.grading.autograde`, ``jobs``
    sandboxes at a time). Manual scores and the grades of unchanged submissions are kept;
    the CSV files and the feedback are rewritten from the gradebook at the end.
    ``trusted_chunk``: learners per trusted-check task (Dask engine only). ``limits``
    (:class:`utils.course.limits.Limits`): memory, processes and file size of each sandbox.
    The CSV files are removed first, so a run that fails leaves no stale table behind.
    """
    if engine not in ("dask", "threads"):
        raise ValueError(f"engine must be 'dask' or 'threads', got {engine!r}")
    start = time.perf_counter()
    for stale in (csv_path, by_learner_csv(csv_path) if csv_path else None):
        if stale is not None:
            Path(stale).unlink(missing_ok=True)
    notebooks = grading.course_notebooks() if notebooks is None else [Path(p) for p in notebooks]
    names = [Path(nb).name for nb in notebooks]
    submissions = grading.find_submissions(submissions_dir, names)
    course_dir = Path(course_dir).resolve()  # the trusted kernel runs in another folder
    grading.build_course(notebooks, course_dir=course_dir, student_dir=None, timeout=timeout,
                         fresh=False)
    sources = {Path(nb).name: course_dir / "source" / grading.assignment_id(nb) / Path(nb).name
               for nb in notebooks}
    state = load_state(course_dir)
    plan = plan_grading(submissions, sources, state, regrade=regrade)
    for learner, aid in plan.skipped:
        grading._say(f"skipped {learner} / {aid}: unchanged since it was graded "
                     f"({state[f'{learner}/{aid}'].get('graded_at', '?')})")
    for learner, notebooks_ in plan.todo.items():
        for name, path in notebooks_.items():
            aid = grading.assignment_id(Path(name))
            edited = edited_locked_cells(path, course_dir / "release" / aid / name)
            if edited:
                grading._say(f"note: {learner} / {aid} edited locked cell(s) {edited}; "
                             "graded with the instructor's version of them")
    quiet_checksum_warnings()
    status: dict[tuple[str, str], str] = {}
    if plan.count:
        if engine == "threads":
            status = grading.autograde(plan.todo, course_dir=course_dir, timeout=timeout,
                                       feedback=feedback, jobs=jobs,
                                       notebook_timeout=notebook_timeout, limits=limits)
        else:
            status = distributed.autograde(plan.todo, course_dir=course_dir, timeout=timeout,
                                           feedback=feedback, jobs=jobs,
                                           notebook_timeout=notebook_timeout,
                                           scheduler=scheduler, client=client,
                                           trusted_chunk=trusted_chunk, limits=limits)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    for key, value in status.items():
        state[f"{key[0]}/{key[1]}"] = {"hash": plan.hashes[key], "status": value,
                                       "graded_at": stamp}
    save_state(course_dir, state)
    if feedback and status:
        annotate_feedback(course_dir)
    scores = export(course_dir, csv_path, feedback=False)
    graded = sorted(status)
    grading._say(f"graded {len(graded)} new or changed submission(s), skipped "
                 f"{len(plan.skipped)} unchanged ({time.perf_counter() - start:.0f} s)")
    return GradeReport(graded, plan.skipped, time.perf_counter() - start, scores)


# --------------------------------------------------------------------------- formgrader
def formgrade_command(course_dir: Path = COURSE_DIR, extra: Sequence[str] = ()
                      ) -> tuple[list[str], dict[str, str]]:
    """``jupyter lab`` on the course folder with nbgrader's formgrader, and its environment.

    nbgrader reads ``nbgrader_config.py`` from the folder it is started in, so the server
    runs there; the formgrader is at ``/formgrader`` (the Nbgrader > Formgrader menu)."""
    course_dir = Path(course_dir).resolve()
    if not (course_dir / "gradebook.db").is_file():
        raise ValueError(f"no gradebook in {course_dir}: run `make grade` first")
    env = dict(os.environ)
    grading._ensure_venv_on_path(course_dir)
    env["PATH"], env["JUPYTER_PATH"] = os.environ["PATH"], os.environ["JUPYTER_PATH"]
    cmd = [sys.executable, "-m", "jupyterlab", f"--notebook-dir={course_dir}",
           f"--ServerApp.default_url=/formgrader"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    return cmd + list(extra), env


# --------------------------------------------------------------------------- command line
def _print_summary(scores, csv_path: Path) -> None:
    print("points per learner and notebook (weeks, then deep dives; blank = not submitted; "
          "max counts submitted notebooks):")
    table = grading.summary_table(scores)
    print(table.astype(object).where(lambda t: t.notna(), "missing").to_string(index=False))
    print(f"\nscores per learner and exercise: {csv_path}")
    print(f"one row per learner:             {by_learner_csv(csv_path)}")


def main(argv: list[str] | None = None) -> None:
    """``python -m utils.course.gradebook grade|export|formgrade`` (see the module docstring)."""
    parser = argparse.ArgumentParser(description="persistent gradebook of the course "
                                     "(make grade / make grades / make formgrade)")
    sub = parser.add_subparsers(dest="command", required=True)
    p_grade = sub.add_parser("grade", help="grade new and changed submissions")
    p_grade.add_argument("submissions", type=Path, nargs="?", default=SUBMISSIONS_DIR)
    p_grade.add_argument("--notebooks", type=Path, nargs="+", default=None)
    p_grade.add_argument("--jobs", type=int, default=1,
                         help="LocalCluster workers (or threads) grading at the same time")
    p_grade.add_argument("--engine", choices=("dask", "threads"), default="dask")
    p_grade.add_argument("--scheduler", default=None,
                         help="Dask scheduler address (default: DASK_SCHEDULER_ADDRESS, "
                              "else a LocalCluster)")
    p_grade.add_argument("--regrade", action="store_true", help="grade everything again")
    p_grade.add_argument("--no-feedback", action="store_true")
    p_grade.add_argument("--timeout", type=int, default=grading.CELL_TIMEOUT)
    p_grade.add_argument("--notebook-timeout", type=int, default=grading.NOTEBOOK_TIMEOUT)
    limits.add_arguments(p_grade)
    p_export = sub.add_parser("export", help="rewrite the CSV files and the feedback from the "
                              "gradebook (after manual grading)")
    p_export.add_argument("--no-feedback", action="store_true")
    p_form = sub.add_parser("formgrade", help="open nbgrader's formgrader")
    p_form.add_argument("--prepare-only", action="store_true")
    for p in (p_grade, p_export, p_form):
        p.add_argument("--course-dir", type=Path, default=COURSE_DIR)
    for p in (p_grade, p_export):
        p.add_argument("--csv", type=Path, default=GRADES_CSV)
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "formgrade":
            cmd, env = formgrade_command(args.course_dir, extra)
            print("Formgrader: written answers with the model answer and rubric above each; "
                  "run `make grades` afterwards to rewrite the CSV files and the feedback.",
                  flush=True)
            if args.prepare_only:
                print(" ".join(cmd))
                return
            os.chdir(args.course_dir)
            os.execvpe(cmd[0], cmd, env)
        if extra:
            parser.error(f"unknown arguments: {extra}")
        if args.command == "export":
            scores = export(args.course_dir, args.csv, feedback=not args.no_feedback)
        else:
            scores = grade_class(args.submissions, args.notebooks, course_dir=args.course_dir,
                                 csv_path=args.csv, timeout=args.timeout,
                                 feedback=not args.no_feedback, jobs=args.jobs,
                                 notebook_timeout=args.notebook_timeout, engine=args.engine,
                                 scheduler=args.scheduler, regrade=args.regrade,
                                 limits=limits.from_arguments(args)).scores
    except (ValueError, RuntimeError, grading.SandboxUnavailable) as err:
        sys.exit(f"error: {err}")
    _print_summary(scores, args.csv)
    if not getattr(args, "no_feedback", True):
        print(f"feedback (HTML) per learner:     {Path(args.course_dir) / 'feedback'}")


if __name__ == "__main__":
    main()
