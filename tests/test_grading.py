"""Tests of the nbgrader workflow (utils/course/grading.py): learner versions and autograding.

Three layers, cheapest first:

* pure helpers (marker parsing, checks, submission discovery, tables): no nbgrader run;
* the whole workflow on a small synthetic notebook made with nbformat here (same structure as
  the weekly notebooks): learner version without solutions, full marks for the solutions,
  zero for the unchanged learner version, an exercise that raises costs only that exercise,
  a broken file and a missing notebook do not stop the grading of the others (the attacks on
  the sandboxed grading are in ``test_grading_sandbox.py``);
* the real notebooks: the structure checks and the learner versions of the weeks and the deep
  dives (cheap), then, for the weeks only, ONE
  autograde run over three learners (``full`` submits the source notebooks, ``empty`` the
  unchanged learner versions, ``copier`` replaces every answer by the closest printed
  number), shared by the tests through a module-scoped fixture because each notebook takes
  minutes to execute; two notebooks run at a time (``GRADING_JOBS``, default 2).
  Set ``GRADING_SKIP_AUTOGRADE=1`` to skip that run locally.
"""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from utils.course import grading

from grading_copier import copier_notebook  # noqa: E402  (tests/ is on sys.path under pytest)

SYNTH = "00_synthetic.ipynb"
#: The weeks. The deep dives go through the same code (build_course, the sandbox, the trusted
#: check; tests/test_deep_dives.py grades a synthetic one end to end), so the slow real-notebook
#: grading below stays on the weeks and CI time does not grow with every deep dive.
REAL_NOTEBOOKS = grading.course_weeks()
#: The deep dives: their structure and learner versions are checked (cheap), not autograded.
REAL_DEEP_DIVES = [p for p in grading.course_notebooks() if p not in REAL_NOTEBOOKS]
#: Notebooks autograded at the same time in the real-notebook run.
REAL_JOBS = int(os.environ.get("GRADING_JOBS", "2"))
#: The weeks graded end to end by ``real_grades`` (sandbox + trusted check, two learners): each
#: costs three runs of a notebook, so ``make test`` grades one week by default to keep CI short;
#: the hidden tests of every week already run on the solutions under nbval, and
#: ``GRADING_REAL_WEEKS=01,02,03,04`` grades them all.
REAL_WEEKS = os.environ.get("GRADING_REAL_WEEKS", "04").split(",")
GRADED_NOTEBOOKS = [p for p in REAL_NOTEBOOKS if p.stem[:2] in REAL_WEEKS]


# --------------------------------------------------------------------------- notebook builders
def solution_cell(grade_id: str, source: str):
    return new_code_cell(source, metadata={"nbgrader": {
        "grade": False, "solution": True, "locked": False, "grade_id": grade_id,
        "schema_version": 3}})


def checked_cell(grade_id: str, source: str, points: float):
    return new_code_cell(source, metadata={"nbgrader": {
        "grade": True, "solution": False, "locked": True, "grade_id": grade_id,
        "points": points, "schema_version": 3}})




def synthetic_notebook(ex2_solution: str = "answer = 'B'"):
    """A small weekly-notebook look-alike: setup, 3 exercises (2 code, 1 letter), a later cell."""
    return new_notebook(cells=[
        new_markdown_cell("# Synthetic week\nThree graded exercises."),
        new_code_cell("import numpy as np\nsignal = np.arange(10.0)"),
        new_markdown_cell("**Exercise 1** (2 points): the mean of `signal` as `signal_mean`."),
        solution_cell("w0_ex1", "### BEGIN SOLUTION\nsignal_mean = float(np.mean(signal))\n"
                                "### END SOLUTION"),
        checked_cell("w0_ex1_test", "assert abs(signal_mean - signal.sum() / signal.size) < 1e-9, "
                                 "'signal_mean is not the mean'", 2),
        new_markdown_cell("**Exercise 2** (1 point): which letter? Set `answer`."),
        solution_cell("w0_ex2", f"answer = None\n### BEGIN SOLUTION\n{ex2_solution}\n"
                                "### END SOLUTION"),
        checked_cell("w0_ex2_test", "assert answer in ('A', 'B', 'C'), 'answer A, B or C'\n"
                                    "### BEGIN HIDDEN TESTS\n"
                                    "assert answer == 'B', 'look again at the figure'\n"
                                    "### END HIDDEN TESTS", 1),
        new_markdown_cell("**Exercise 3** (3 points): the energy of `signal` as `energy`."),
        solution_cell("w0_ex3", "### BEGIN SOLUTION\nenergy = float((signal ** 2).sum())\n"
                                "### END SOLUTION"),
        checked_cell("w0_ex3_test", "assert energy == float(np.dot(signal, signal))", 3),
        new_code_cell("print('later cells do not use the exercise results')"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                "language": "python"}})


def write(nb, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


# --------------------------------------------------------------------------- pure helpers
def test_solution_blocks_extracts_text_between_markers():
    blocks = grading.solution_blocks(synthetic_notebook())
    assert blocks == ["signal_mean = float(np.mean(signal))", "answer = 'B'",
                      "energy = float((signal ** 2).sum())"]


@pytest.mark.parametrize("source", [
    "### BEGIN SOLUTION\nx = 1",
    "x = 1\n### END SOLUTION",
    "### BEGIN SOLUTION\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION",
])
def test_solution_blocks_rejects_unbalanced_markers(source):
    nb = new_notebook(cells=[solution_cell("w0_ex1", source)])
    with pytest.raises(ValueError, match="SOLUTION"):
        grading.solution_blocks(nb)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="abc =+1()", min_size=1, max_size=12), min_size=1,
                max_size=6))
def test_solution_blocks_roundtrip(lines):
    lines = [line for line in lines if line.strip() not in
             (grading.BEGIN_SOLUTION, grading.END_SOLUTION)]
    body = "\n".join(lines)
    nb = new_notebook(cells=[solution_cell(
        "w0_ex1", f"{grading.BEGIN_SOLUTION}\n{body}\n{grading.END_SOLUTION}")])
    assert grading.solution_blocks(nb) == ["\n".join(body.splitlines())]


def test_secret_lines_ignore_lines_found_outside_solutions():
    nb = synthetic_notebook()
    nb.cells.append(new_code_cell("answer = 'B'  # repeated outside a solution"))
    nb.cells.append(new_code_cell("energy = float((signal ** 2).sum())"))
    assert grading.secret_lines(nb) == {"signal_mean = float(np.mean(signal))",
                                        "answer = 'B'",
                                        "assert answer == 'B', 'look again at the figure'"}


def test_course_secret_lines_drop_lines_another_notebook_shows():
    first, second = synthetic_notebook(), synthetic_notebook()
    # the hidden test of the first notebook is a visible line of the second
    second.cells.append(new_code_cell("assert answer == 'B', 'look again at the figure'"))
    assert "assert answer == 'B', 'look again at the figure'" in grading.secret_lines(first)
    course = grading.course_secret_lines([first, second])
    assert set(course) == grading.secret_lines(first) - {
        "assert answer == 'B', 'look again at the figure'"}
    assert course["signal_mean = float(np.mean(signal))"] == "notebook 1"
    # one notebook alone: the same as its own secret lines
    assert set(grading.course_secret_lines([first])) == grading.secret_lines(first)


def test_hidden_test_blocks():
    assert grading.hidden_test_blocks(synthetic_notebook()) == [
        "assert answer == 'B', 'look again at the figure'"]


def test_leaked_lines_finds_solutions_in_sources_and_outputs():
    source = synthetic_notebook()
    assert len(grading.leaked_lines(source, source)) == 4
    stripped = synthetic_notebook()
    for cell in stripped.cells:
        if grading.BEGIN_SOLUTION in cell.source or grading.BEGIN_HIDDEN in cell.source:
            cell.source = "raise NotImplementedError()"
    assert grading.leaked_lines(source, stripped) == []
    stripped.cells[-1].outputs = [nbformat.v4.new_output(
        "stream", name="stdout", text="signal_mean = float(np.mean(signal))\n")]
    assert grading.leaked_lines(source, stripped) == ["signal_mean = float(np.mean(signal))"]


def test_graded_cells_lists_test_cells_with_points():
    cells = grading.graded_cells(synthetic_notebook())
    assert [(c.grade_id, c.points) for c in cells] == [
        ("w0_ex1_test", 2.0), ("w0_ex2_test", 1.0), ("w0_ex3_test", 3.0)]


def test_check_source_notebook_accepts_synthetic(tmp_path):
    path = write(synthetic_notebook(), tmp_path / SYNTH)
    assert len(grading.check_source_notebook(path)) == 3


def test_check_source_notebook_reports_problems(tmp_path):
    nb = synthetic_notebook()
    nb.cells[4].metadata["nbgrader"]["grade_id"] = "w0_ex1"  # duplicate of the solution id
    nb.cells[6].source = "answer = 'B'"  # solution cell without markers
    del nb.cells[9:11]  # only two exercises left
    path = write(nb, tmp_path / SYNTH)
    with pytest.raises(ValueError) as err:
        grading.check_source_notebook(path)
    message = str(err.value)
    assert "duplicate grade_id" in message and "w0_ex1" in message
    assert "solution cell without" in message
    assert "need at least 3" in message


def test_check_source_notebook_missing_file(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        grading.check_source_notebook(tmp_path / "nope.ipynb")


@pytest.mark.parametrize("name,expected", [("w1_ex2_test", "w1_ex2"), ("w1_ex2", "w1_ex2"),
                                           ("test_w1", "test_w1")])
def test_exercise_name(name, expected):
    assert grading.exercise_name(name) == expected


def test_assignment_id():
    assert grading.assignment_id(Path("notebooks/01_intro.ipynb")) == "01_intro"
    with pytest.raises(ValueError, match="ipynb"):
        grading.assignment_id(Path("notebooks/01_intro.py"))


def test_nbgrader_config_rejects_bad_timeout(tmp_path):
    assert grading.nbgrader_config(tmp_path, 60).Execute.timeout == 60
    with pytest.raises(ValueError, match="timeout"):
        grading.nbgrader_config(tmp_path, 0)


def test_find_submissions_layouts(tmp_path, caplog):
    (tmp_path / "ana").mkdir()
    (tmp_path / "ana" / SYNTH).write_text("{}")
    (tmp_path / "ana" / "notes.ipynb").write_text("{}")  # not a course notebook
    (tmp_path / "ben" / "00_synthetic").mkdir(parents=True)  # nbgrader's own layout
    (tmp_path / "ben" / "00_synthetic" / SYNTH).write_text("{}")
    (tmp_path / "cleo").mkdir()  # submitted nothing
    (tmp_path / ".hidden").mkdir()
    found = grading.find_submissions(tmp_path, [SYNTH])
    assert sorted(found) == ["ana", "ben", "cleo"]
    assert list(found["ana"]) == [SYNTH] and list(found["ben"]) == [SYNTH]
    assert found["cleo"] == {}
    assert "notes.ipynb" in caplog.text


def test_find_submissions_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        grading.find_submissions(tmp_path / "missing", [SYNTH])
    with pytest.raises(ValueError, match="no learner folders"):
        grading.find_submissions(tmp_path, [SYNTH])


def test_wide_table_sums_per_learner():
    long = pd.DataFrame({
        "learner": ["a", "a", "b", "b"], "assignment": ["01"] * 4,
        "exercise": ["w1_ex1", "w1_ex2"] * 2, "score": [1.0, 2.0, 0.0, 2.0],
        "max_score": [1.0, 2.0, 1.0, 2.0]})
    wide = grading.wide_table(long).set_index("learner")
    assert list(wide.columns) == ["01/w1_ex1", "01/w1_ex2", "01", "total", "max"]
    assert wide.loc["a", "total"] == 3.0 and wide.loc["b", "total"] == 2.0
    assert wide.loc["b", "01/w1_ex1"] == 0.0 and wide.loc["a", "max"] == 3.0


def test_summary_table_per_notebook():
    long = pd.DataFrame({
        "learner": ["a", "a", "a", "b"], "assignment": ["01", "01", "02", "02"],
        "score": [1.0, 2.0, 0.5, 1.0], "max_score": [1.0, 2.0, 1.0, 1.0]})
    summary = grading.summary_table(long).set_index("learner")
    assert list(summary.columns) == ["01", "02", "total", "max"]
    assert summary.loc["a"].tolist() == [3.0, 0.5, 3.5, 4.0]
    assert pd.isna(summary.loc["b", "01"])  # nothing of week 01: blank, not 0
    assert summary.loc["b"].tolist()[1:] == [1.0, 1.0, 1.0]


# --------------------------------------------------------------------------- synthetic workflow
def _sandbox_problem() -> str | None:
    from utils.course import sandbox

    try:
        sandbox.check_sandbox()
    except sandbox.SandboxUnavailable as err:
        return str(err)
    return None


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Build the course from the synthetic notebook and grade five learners once."""
    problem = _sandbox_problem()
    if problem:
        pytest.skip(problem)
    root = tmp_path_factory.mktemp("grading")
    source = write(synthetic_notebook(), root / "notebooks" / SYNTH)
    # `make student` = `python -m utils.course.grading student`
    grading.main(["student", "--notebooks", str(source), "--course-dir", str(root / "course"),
                  "--out", str(root / "student")])
    learner_version = root / "course" / "release" / "00_synthetic" / SYNTH
    subs = root / "submissions"
    write(synthetic_notebook(), subs / "full" / SYNTH)
    write(nbformat.read(learner_version, as_version=4), subs / "empty" / SYNTH)
    write(synthetic_notebook(ex2_solution="raise ValueError('learner bug')"),
          subs / "raises" / SYNTH)
    # a copier who sees 4.5 (the reference of exercise 1) and 10.0 printed: the check that the
    # copier test of the real notebooks can fail
    write(copier_notebook(synthetic_notebook(), printed=[4.5, 10.0]), subs / "copier" / SYNTH)
    (subs / "broken").mkdir()
    (subs / "broken" / SYNTH).write_text("{ this is not a notebook")
    (subs / "absent").mkdir()
    scores = grading.grade(subs, [source], course_dir=root / "course",
                           csv_path=root / "out" / "grades.csv", timeout=60, jobs=2)
    return {"root": root, "source": source, "released": learner_version, "scores": scores}


def _scores(scores: pd.DataFrame, learner: str) -> dict[str, float]:
    rows = scores[scores["learner"] == learner]
    return dict(zip(rows["exercise"], rows["score"]))


def test_learner_version_has_no_solution(synthetic):
    released = nbformat.read(synthetic["released"], as_version=4)
    assert len(grading.secret_lines(synthetic["source"])) == 4
    leaked = grading.leaked_lines(synthetic["source"], released)
    assert not leaked, f"solution code in the learner version: {leaked}"
    assert "HIDDEN" not in grading.notebook_text(released)
    assert (synthetic["root"] / "student" / SYNTH).read_bytes() == \
        synthetic["released"].read_bytes()


def test_learner_version_keeps_tests_and_stubs(synthetic):
    source = nbformat.read(synthetic["source"], as_version=4)
    released = nbformat.read(synthetic["released"], as_version=4)
    tests_source = [c.source.split("\n### BEGIN HIDDEN")[0] for c in source.cells
                    if c.metadata.get("nbgrader", {}).get("grade")]
    tests_released = [c.source.rstrip() for c in released.cells
                      if c.metadata.get("nbgrader", {}).get("grade")]
    assert tests_released == tests_source
    stubs = [c.source for c in released.cells
             if c.metadata.get("nbgrader", {}).get("solution")]
    assert len(stubs) == 3 and all("raise NotImplementedError()" in s for s in stubs)
    assert all(not c.get("outputs") for c in released.cells if c.cell_type == "code")


def test_solutions_get_full_marks(synthetic):
    assert _scores(synthetic["scores"], "full") == {"w0_ex1": 2.0, "w0_ex2": 1.0, "w0_ex3": 3.0}


def test_unchanged_learner_version_gets_zero(synthetic):
    assert _scores(synthetic["scores"], "empty") == {"w0_ex1": 0.0, "w0_ex2": 0.0, "w0_ex3": 0.0}


def test_copier_scores_only_where_the_reference_is_printed(synthetic):
    """The oracle copier (tests/grading_copier.py) passes exercise 1, whose reference 4.5 it
    was shown, and nothing else: the real-notebook copier test below can fail."""
    assert _scores(synthetic["scores"], "copier") == {"w0_ex1": 2.0, "w0_ex2": 0.0,
                                                      "w0_ex3": 0.0}


def test_exercise_that_raises_costs_only_that_exercise(synthetic):
    assert _scores(synthetic["scores"], "raises") == {"w0_ex1": 2.0, "w0_ex2": 0.0,
                                                      "w0_ex3": 3.0}
    feedback = synthetic["root"] / "course" / "feedback" / "raises" / "00_synthetic"
    assert "learner bug" in (feedback / "00_synthetic.html").read_text()


def test_errors_only_in_the_failing_exercise(synthetic):
    graded = synthetic["root"] / "course" / "autograded"
    path = Path("00_synthetic") / SYNTH
    assert grading.error_cells(graded / "full" / path) == []
    assert [(gid, ename) for _, gid, ename in grading.error_cells(graded / "raises" / path)] \
        == [("w0_ex2", "ValueError"), ("w0_ex2_test", "AssertionError")]
    empty = grading.error_cells(graded / "empty" / path)
    assert [gid for _, gid, _ in empty] == ["w0_ex1", "w0_ex1_test", "w0_ex2", "w0_ex2_test",
                                            "w0_ex3", "w0_ex3_test"]


def test_broken_and_missing_submissions_are_reported(synthetic):
    scores = synthetic["scores"]
    broken = scores[scores["learner"] == "broken"]
    assert (broken["score"] == 0).all() and broken["status"].str.startswith("failed").all()
    absent = scores[scores["learner"] == "absent"]
    assert absent["score"].isna().all() and (absent["status"] == "missing").all()
    assert len(absent) == 3


def test_csv_files(synthetic):
    out = synthetic["root"] / "out"
    long = pd.read_csv(out / "grades.csv")
    assert list(long.columns) == ["learner", "assignment", "notebook", "exercise", "test_cell",
                                  "score", "max_score", "status"]
    assert len(long) == 6 * 3
    wide = pd.read_csv(out / "grades_by_learner.csv").set_index("learner")
    assert pd.isna(wide.loc["absent", "total"])  # submitted nothing: blank, max 0
    assert wide["total"].drop("absent").to_dict() == {"broken": 0.0, "copier": 2.0,
                                                      "empty": 0.0, "full": 6.0,
                                                      "raises": 5.0}
    assert wide["max"].to_dict() == {"absent": 0.0, "broken": 6.0, "copier": 6.0,
                                     "empty": 6.0, "full": 6.0, "raises": 6.0}
    assert wide.loc["raises", "00_synthetic"] == 5.0  # the week's total


def test_autograde_needs_a_course(tmp_path):
    with pytest.raises(ValueError, match="make student"):
        grading.autograde({"a": {}}, course_dir=tmp_path)
    with pytest.raises(ValueError, match="jobs"):
        grading.autograde({"a": {}}, course_dir=tmp_path, jobs=0)


def test_cli_reports_bad_submissions_folder(tmp_path):
    source = write(synthetic_notebook(), tmp_path / SYNTH)
    with pytest.raises(SystemExit, match="submissions folder not found"):
        grading.main(["grade", str(tmp_path / "nope"), "--notebooks", str(source),
                      "--course-dir", str(tmp_path / "course")])


# --------------------------------------------------------------------------- real notebooks
needs_notebooks = pytest.mark.skipif(not REAL_NOTEBOOKS, reason="no notebooks/[0-9]*.ipynb yet")


@pytest.fixture(scope="module")
def real_course(tmp_path_factory):
    """Learner versions of the weeks and the deep dives (cheap: nothing is executed)."""
    root = tmp_path_factory.mktemp("real")
    released = grading.build_course(REAL_NOTEBOOKS + REAL_DEEP_DIVES,
                                    course_dir=root / "course", student_dir=root / "student")
    return {"root": root, "released": released}


@needs_notebooks
@pytest.mark.parametrize("notebook", REAL_NOTEBOOKS, ids=[p.stem for p in REAL_NOTEBOOKS])
def test_real_notebook_has_three_graded_exercises(notebook):
    assert len(grading.check_source_notebook(notebook, min_exercises=3)) >= 3


@pytest.mark.parametrize("notebook", REAL_DEEP_DIVES, ids=[p.stem for p in REAL_DEEP_DIVES])
def test_real_deep_dive_has_a_graded_exercise(notebook):
    assert len(grading.check_source_notebook(notebook)) >= 1


def test_course_notebooks_are_the_weeks_then_the_deep_dives():
    notebooks = grading.course_notebooks()
    assert notebooks == REAL_NOTEBOOKS + REAL_DEEP_DIVES
    assert all(p.parent.name == "deep_dives" for p in REAL_DEEP_DIVES)
    names = [grading.assignment_id(p) for p in notebooks]
    assert len(set(names)) == len(names), "assignment ids (file stems) must be unique"


@needs_notebooks
def test_real_student_folder_keeps_the_deep_dives_folder(real_course):
    student = real_course["root"] / "student"
    assert sorted(p.relative_to(student).as_posix() for p in student.rglob("*.ipynb")) == \
        sorted([p.name for p in REAL_NOTEBOOKS]
               + [f"deep_dives/{p.name}" for p in REAL_DEEP_DIVES])


@needs_notebooks
@pytest.mark.parametrize("notebook", REAL_NOTEBOOKS + REAL_DEEP_DIVES,
                         ids=[p.stem for p in REAL_NOTEBOOKS + REAL_DEEP_DIVES])
def test_real_learner_version_has_no_solution(real_course, notebook):
    released = nbformat.read(real_course["released"][notebook.stem], as_version=4)
    assert grading.secret_lines(notebook), f"{notebook.name}: no solution code found"
    leaked = grading.leaked_lines(notebook, released)
    assert not leaked, f"{notebook.name}: solution code in the learner version: {leaked}"
    stubs = [c for c in released.cells if c.metadata.get("nbgrader", {}).get("solution")
             and c.cell_type == "code"]
    assert stubs and all("NotImplementedError" in c.source for c in stubs)


@needs_notebooks
@pytest.fixture(scope="module")
def real_grades(real_course, mitdb_dir):
    """ONE autograde run of the weekly notebooks: learner ``full`` submits the source notebooks,
    learner ``copier`` their answers replaced by printed numbers, learner ``empty`` the
    unchanged learner versions (each notebook executes for minutes), and ``attacker``
    (checked first) forges its answer files (:func:`real_attacker_notebook`).
    Needs the MIT-BIH database (``mitdb_dir`` skips without it, fails on CI)."""
    if os.environ.get("GRADING_SKIP_AUTOGRADE") == "1":
        pytest.skip("GRADING_SKIP_AUTOGRADE=1")
    problem = _sandbox_problem()
    if problem:
        pytest.skip(problem)
    root = real_course["root"]
    subs = root / "submissions"
    for notebook in GRADED_NOTEBOOKS:
        write(nbformat.read(notebook, as_version=4), subs / "full" / notebook.name)
        write(copier_notebook(nbformat.read(notebook, as_version=4)),
              subs / "copier" / notebook.name)
        released = real_course["released"][notebook.stem]
        write(nbformat.read(released, as_version=4), subs / "empty" / notebook.name)
        write(real_attacker_notebook(notebook, released, root / "graded"),
              subs / "attacker" / notebook.name)
    scores = grading.grade(subs, GRADED_NOTEBOOKS, course_dir=root / "graded",
                           csv_path=root / "grades.csv", feedback=False, jobs=REAL_JOBS)
    errors = {(learner, nb.name): grading.error_cells(
        root / "graded" / "autograded" / learner / nb.stem / nb.name)
        for learner in ("full", "empty") for nb in GRADED_NOTEBOOKS}
    return {"scores": scores, "errors": errors}


def real_attacker_notebook(source: Path, released: Path, course_dir: Path):
    """The learner version with a first cell that forges every answer file the grader reads
    (issue 25) and then ends its own kernel, so it costs seconds, not a notebook run.

    Test by test, in turn: names list and status emptied (the old grader then ran the hidden
    test on its own reference values); the grader's own variables that the test reads (e.g.
    week 4's ``ae_out``, ``weights``) forged as extra names next to zeros for the answers;
    names that break a restore step (``globals``, ``__import__``...); the files as links to
    the grader's reference answers. The executed notebook becomes a link to learner
    ``full``'s. None of it may earn a point or change ``full``'s marks.
    """
    from utils.course import checking

    src = nbformat.read(source, as_version=4)
    answer_names = checking.exported_names(src)
    forged: dict[str, dict] = {}
    links: list[str] = []
    zero = {"t": "float", "v": 0.0}
    for k, (gid, names) in enumerate(sorted(answer_names.items())):
        cell = next(c for c in src.cells if c.metadata.get("nbgrader", {}).get("grade_id")
                    == gid)
        grader_names = sorted(set(checking._test_reads(cell.source)) - set(names))
        mode = ("empty", "extra", "shadow", "link")[k % 4]
        if mode == "empty":
            forged[gid] = {"values": {}, "status": {}}
        elif mode == "extra":
            forged[gid] = {"values": {n: zero for n in names + grader_names},
                           "status": {n: "ok" for n in names + grader_names}}
        elif mode == "shadow":
            shadow = ["globals", "__import__", "__builtins__", "print", "len", "np"]
            forged[gid] = {"values": {n: zero for n in shadow},
                           "status": {**{n: "ok" for n in shadow},
                                      **{n: "not exportable: function" for n in names}}}
        else:
            links.append(gid)
    reference = course_dir / "trusted" / source.stem / "reference"
    full_output = course_dir / "sandbox" / "full" / source.stem / "output.ipynb"
    payload = f"""
import json, os
import numpy as np
A = '/sandbox/answers'
for gid, meta in {forged!r}.items():
    with open(os.path.join(A, gid + '.json'), 'w') as out:
        json.dump(meta, out)
    np.savez(os.path.join(A, gid + '.npz'))
for gid in {links!r}:
    for ext in ('.json', '.npz'):
        os.symlink({str(reference)!r} + '/' + gid + ext, os.path.join(A, gid + ext))
for name in ('output.ipynb', 'status.json'):
    if os.path.lexists('/sandbox/' + name):
        os.remove('/sandbox/' + name)
os.symlink({str(full_output)!r}, '/sandbox/output.ipynb')
os._exit(0)
"""
    nb = nbformat.read(released, as_version=4)
    nb.cells.insert(0, new_code_cell(payload))
    return nb


@needs_notebooks
def test_real_attacker_forging_answer_files_scores_zero(real_grades):
    """The attacker is checked before ``full`` (learners are checked in name order): its
    forged files earn nothing, and ``full`` keeps full marks (test above)."""
    scores = real_grades["scores"]
    attacker = scores[(scores["learner"] == "attacker") & (scores["status"] == "graded")]
    assert len(attacker) >= 3 * len(GRADED_NOTEBOOKS)
    scored = attacker[attacker["score"] > 0]
    assert scored.empty, f"forged answer files score points:\n{scored.to_string()}"


@needs_notebooks
def test_real_solutions_get_full_marks(real_grades):
    scores = real_grades["scores"]
    full = scores[scores["learner"] == "full"]
    # the written answers wait for the instructor; every other exercise is graded
    assert set(full["status"]) <= {"graded", grading.NEEDS_MANUAL}, full["status"].unique()
    assert (full["status"] == grading.NEEDS_MANUAL).sum() == len(GRADED_NOTEBOOKS)
    auto = full[full["status"] == "graded"]
    short = auto[auto["score"] < auto["max_score"]]
    assert short.empty, f"solutions without full marks:\n{short.to_string()}"
    assert len(auto) >= 3 * len(GRADED_NOTEBOOKS)


@needs_notebooks
def test_real_unchanged_learner_version_gets_zero(real_grades):
    scores = real_grades["scores"]
    empty = scores[scores["learner"] == "empty"]
    # its written answers are left as handed out: 0 points, "no answer"
    assert set(empty["status"]) <= {"graded", grading.NO_ANSWER}, empty["status"].unique()
    assert (empty["status"] == grading.NO_ANSWER).sum() == len(GRADED_NOTEBOOKS)
    scored = empty[empty["score"] > 0]
    assert scored.empty, f"unchanged learner version scores points:\n{scored.to_string()}"
    assert len(empty) >= 3 * len(GRADED_NOTEBOOKS)


@needs_notebooks
def test_real_copier_of_printed_numbers_scores_zero(real_grades):
    """A learner who copies printed numbers (the best copy of each answer among every number
    the notebook prints, tests/grading_copier.py) scores zero on every autograded exercise:
    no reference value is printed."""
    scores = real_grades["scores"]
    copier = scores[(scores["learner"] == "copier") & (scores["status"] == "graded")]
    assert len(copier) >= 3 * len(GRADED_NOTEBOOKS), scores[scores["learner"] == "copier"]
    scored = copier[copier["score"] > 0]
    assert scored.empty, f"copying printed numbers scores points:\n{scored.to_string()}"


@needs_notebooks
def test_real_learner_version_runs_through(real_grades):
    """Only exercise cells fail in the unchanged learner version; the solutions raise nothing."""
    for (learner, name), errors in real_grades["errors"].items():
        if learner == "full":
            assert errors == [], f"{name} with its solutions raises: {errors}"
        else:
            others = [e for e in errors if e[1] is None]
            assert others == [], f"{name}: cells outside the exercises fail: {others}"
