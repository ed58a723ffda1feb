"""The deep dives are first-class course notebooks: released, synced into work/deep_dives/, graded.

A synthetic course of one week (``notebooks/00_synthetic.ipynb``, the synthetic week of
``test_grading.py``) and one deep dive (``notebooks/deep_dives/D0_synthetic.ipynb``, one
autograded exercise), which link to each other as the real ones do. The fixture runs the
instructor's and the learner's steps once, cheapest first: ``make student``, ``make lab``'s
release and sync into ``work/``, a learner who answers in ``work/deep_dives/`` and hands in
the whole ``work/`` folder, another who hands in the deep dive flat, and ``make grade``
(``gradebook.grade_class``, in the bubblewrap sandbox). The real deep dives go through the
same code; ``test_release.py`` checks that they are in the learner release.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from test_grading import (SYNTH, _sandbox_problem, checked_cell, solution_cell,
                          synthetic_notebook, write)
from utils.course import grading, gradebook, layout, learner

DIVE = "D0_synthetic.ipynb"
DIVE_AID = "D0_synthetic"
WEEK_AID = "00_synthetic"
#: The deep dive's solution, as a learner types it into work/deep_dives/.
DIVE_SOLVED = "peak = int(np.argmax(signal ** 2))"


def synthetic_week():
    """The synthetic week with a link to the deep dive (as a core week links its deep dives)."""
    nb = synthetic_notebook()
    nb.cells.insert(1, new_markdown_cell(
        "Going further: <b>[deep dive D0](deep_dives/D0_synthetic.ipynb#the-peak)</b>."))
    return nb


def synthetic_deep_dive():
    """A deep dive look-alike: a link back to the week, one autograded exercise (hidden test)."""
    return new_notebook(cells=[
        new_markdown_cell("# Deep dive D0 - the peak\nBack to [the week](../00_synthetic.ipynb)."),
        new_code_cell("import numpy as np\nsignal = np.sin(np.linspace(0, 3, 50))"),
        new_markdown_cell("### Exercise 1 - the peak (2 points)\nThe index of the largest "
                          "energy sample of `signal` as `peak`."),
        solution_cell("d0_ex1", f"### BEGIN SOLUTION\n{DIVE_SOLVED}\n### END SOLUTION"),
        checked_cell("d0_ex1_test", "assert isinstance(peak, int) and 0 <= peak < signal.size\n"
                                    "### BEGIN HIDDEN TESTS\n"
                                    "assert peak == int(np.abs(signal).argmax()), 'not the peak'\n"
                                    "### END HIDDEN TESTS", 2),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                "language": "python"}})


def answer(path: Path, grade_id: str, source: str) -> None:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            cell.source = source
    nbformat.write(nb, path)


def test_a_deep_dive_needs_one_exercise_a_week_three(tmp_path):
    dive = write(synthetic_deep_dive(), tmp_path / "notebooks" / "deep_dives" / DIVE)
    assert [c.grade_id for c in grading.check_source_notebook(dive)] == ["d0_ex1_test"]
    as_week = write(synthetic_deep_dive(), tmp_path / "notebooks" / "01_short_week.ipynb")
    with pytest.raises(ValueError, match="need at least 3"):
        grading.check_source_notebook(as_week)
    empty = synthetic_deep_dive()
    del empty.cells[3:]
    with pytest.raises(ValueError, match="need at least 1"):
        grading.check_source_notebook(write(empty, tmp_path / "deep_dives" / "D9_empty.ipynb"))


def test_names_must_be_unique_across_weeks_and_deep_dives(tmp_path):
    week = write(synthetic_notebook(), tmp_path / "notebooks" / SYNTH)
    clash = write(synthetic_deep_dive(), tmp_path / "notebooks" / "deep_dives" / SYNTH)
    with pytest.raises(ValueError, match="unique"):
        grading.build_course([week, clash], course_dir=tmp_path / "course", student_dir=None)


def test_course_notebooks_of_a_folder(tmp_path):
    write(synthetic_week(), tmp_path / "notebooks" / SYNTH)
    write(synthetic_deep_dive(), tmp_path / "notebooks" / "deep_dives" / DIVE)
    assert [p.relative_to(tmp_path).as_posix() for p in grading.course_notebooks(tmp_path)] == \
        [f"notebooks/{SYNTH}", f"notebooks/deep_dives/{DIVE}"]
    assert grading.course_weeks(tmp_path) == [tmp_path / "notebooks" / SYNTH]


def test_find_submissions_takes_a_work_folder_as_handed_in(tmp_path):
    """A learner who hands in their whole work/: the deep dive in deep_dives/ is found, the
    learner versions in make lab's hidden .released/ are not."""
    for rel in (SYNTH, f"deep_dives/{DIVE}", f".released/{SYNTH}",
                f".released/deep_dives/{DIVE}",
                f"deep_dives/.ipynb_checkpoints/{DIVE}"):
        (tmp_path / "ana" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "ana" / rel).write_text("{}")
    found = grading.find_submissions(tmp_path, [SYNTH, DIVE])
    assert found["ana"] == {SYNTH: tmp_path / "ana" / SYNTH,
                            DIVE: tmp_path / "ana" / "deep_dives" / DIVE}


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """make student, make lab (release + sync), two learners, make grade (see the docstring)."""
    root = tmp_path_factory.mktemp("deep_dives")
    week = write(synthetic_week(), root / "notebooks" / SYNTH)
    dive = write(synthetic_deep_dive(), root / "notebooks" / "deep_dives" / DIVE)
    # make student
    grading.main(["student", "--notebooks", str(week), str(dive), "--course-dir",
                  str(root / "course"), "--out", str(root / "student")])
    # make lab: learner versions made fresh, synced into work/
    released = learner.release_learner_notebooks([week, dive], root / "learner")
    work = root / "work"
    synced = learner.sync_work_folder(released, work)
    out = {"root": root, "week": week, "dive": dive, "work": work, "synced": synced,
           "released": released}
    problem = _sandbox_problem()
    if problem:
        out["grading_skipped"] = problem
        return out
    subs = root / "submissions"
    # ana answers in work/deep_dives/ and hands in her whole work/ folder (week unanswered)
    answer(work / "deep_dives" / DIVE, "d0_ex1", DIVE_SOLVED)
    shutil.copytree(work, subs / "ana")
    # ben hands in the deep dive flat (nbgrader's flat layout), wrong, and no week
    write(nbformat.read(root / "student" / "deep_dives" / DIVE, as_version=4),
          subs / "ben" / DIVE)
    answer(subs / "ben" / DIVE, "d0_ex1", "peak = 0")
    report = gradebook.grade_class(subs, [week, dive], course_dir=root / "graded",
                                   csv_path=root / "grades.csv", timeout=60, jobs=2,
                                   engine="threads", feedback=False)  # feedback: tested elsewhere
    out["report"] = report
    return out


def test_make_student_keeps_the_deep_dives_folder(course):
    student = course["root"] / "student"
    assert sorted(p.relative_to(student).as_posix() for p in student.rglob("*.ipynb")) == \
        [SYNTH, f"deep_dives/{DIVE}"]
    assert layout.broken_notebook_links(student) == []
    released = nbformat.read(student / "deep_dives" / DIVE, as_version=4)
    assert grading.leaked_lines(course["dive"], released) == []
    assert "raise NotImplementedError()" in grading.notebook_text(released)


def test_make_lab_syncs_the_deep_dive_into_work_deep_dives(course):
    work = course["work"]
    assert course["synced"] == {SYNTH: "new", f"deep_dives/{DIVE}": "new"}
    assert [p.relative_to(work).as_posix() for p in layout.notebooks_in(work)] == \
        [SYNTH, f"deep_dives/{DIVE}"]
    assert (work / ".released" / "deep_dives" / DIVE).is_file()
    # the links between the week and the deep dive resolve in work/ (before any answer)
    assert layout.broken_notebook_links(course["root"] / "learner" / "release") == []
    # a second make lab after the learner answered: the answer stays
    if "report" in course:
        assert learner.sync_work_folder(course["released"], work)[f"deep_dives/{DIVE}"] == "kept"
        assert DIVE_SOLVED in (work / "deep_dives" / DIVE).read_text()


def _scores(course, learner_name):
    if "grading_skipped" in course:
        pytest.skip(course["grading_skipped"])
    scores = course["report"].scores
    rows = scores[scores["learner"] == learner_name]
    return {(a, e): (s, st) for a, e, s, st in
            zip(rows["assignment"], rows["exercise"], rows["score"], rows["status"])}


def test_a_deep_dive_is_graded_from_work_deep_dives(course):
    ana = _scores(course, "ana")
    assert ana[(DIVE_AID, "d0_ex1")] == (2.0, "graded")
    assert ana[(WEEK_AID, "w0_ex1")] == (0.0, "graded")  # handed in unanswered


def test_the_hidden_test_of_a_deep_dive_decides(course):
    """ben's answer passes the visible form check, not the hidden test."""
    assert _scores(course, "ben")[(DIVE_AID, "d0_ex1")] == (0.0, "graded")


def test_a_deep_dive_alone_leaves_the_week_missing(course):
    ben = _scores(course, "ben")
    assert {st for (a, _), (_, st) in ben.items() if a == WEEK_AID} == {grading.MISSING}
    report = course["report"]
    assert sorted(report.graded) == [("ana", WEEK_AID), ("ana", DIVE_AID), ("ben", DIVE_AID)]
    summary = grading.summary_table(report.scores).set_index("learner")
    assert list(summary.columns[:2]) == [WEEK_AID, DIVE_AID]  # weeks first, then deep dives
    assert summary.loc["ana", "total"] == 2.0 and summary.loc["ana", "max"] == 8.0
    assert summary.loc["ben", "total"] == 0.0 and summary.loc["ben", "max"] == 2.0


def test_exchange_relinks_only_the_markdown_nbgrader_does_not_track(tmp_path):
    from utils.course import exchange

    answer_cell = new_markdown_cell("See [D0](deep_dives/D0_synthetic.ipynb).", metadata={
        "nbgrader": {"grade": True, "solution": True, "grade_id": "w0_written", "points": 1,
                     "schema_version": 3}})
    path = write(new_notebook(cells=[new_markdown_cell("[D0](deep_dives/D0_synthetic.ipynb)"),
                                     answer_cell]), tmp_path / SYNTH)
    assert exchange.relink_for_exchange(path)
    cells = nbformat.read(path, as_version=4).cells
    assert cells[0].source == "[D0](../D0_synthetic/D0_synthetic.ipynb)"
    assert cells[1].source == answer_cell.source
    assert not exchange.relink_for_exchange(path)  # nothing left to rewrite
