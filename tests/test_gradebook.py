"""Grades that last (utils/course/gradebook.py): incremental ``make grade``, manual grading.

Pure helpers first (hashes, the grading plan, the feedback marks), then one small class graded
three times on the synthetic week of ``test_grading.py`` with a written answer: a first
``make grade`` of two learners, a person's manual score, ``make grades`` (export), a second
``make grade`` after one new submission (grades 1, keeps the manual score), a third after one
changed submission. Needs bubblewrap (skipped with the reason otherwise).
"""
from __future__ import annotations

import nbformat
import pytest

from test_grading import SYNTH, synthetic_notebook, write
from grading_attacks import SOLVED, learner_notebook, with_manual_exercise
from test_grading_sandbox import needs_sandbox
from utils.course import grading, gradebook

WRITTEN = "Symmetric around 4.5, so the mean is 4.5."


# --------------------------------------------------------------------------- helpers
def test_content_hash_changes_with_submission_and_source(tmp_path):
    sub, src = tmp_path / "s.ipynb", tmp_path / "src.ipynb"
    sub.write_text("a"), src.write_text("b")
    first = gradebook.content_hash(sub, src)
    assert gradebook.content_hash(sub, src) == first
    src.write_text("b2")
    assert gradebook.content_hash(sub, src) != first
    # the two files are length-prefixed: moving bytes between them changes the hash
    sub.write_text("ab"), src.write_text("")
    assert gradebook.content_hash(sub, src) != gradebook.content_hash(src, sub)


def test_plan_grading_skips_only_unchanged_graded(tmp_path):
    src = tmp_path / "src" / SYNTH
    src.parent.mkdir()
    src.write_text("source")
    subs = {}
    for learner in ("a", "b", "c", "d"):
        path = tmp_path / learner / SYNTH
        path.parent.mkdir()
        path.write_text(f"notebook of {learner}")
        subs[learner] = {SYNTH: path}
    h = {k: gradebook.content_hash(v[SYNTH], src) for k, v in subs.items()}
    state = {"a/00_synthetic": {"hash": h["a"], "status": "graded"},
             "b/00_synthetic": {"hash": "old", "status": "graded"},
             "c/00_synthetic": {"hash": h["c"], "status": "failed: NotJSONError"}}
    plan = gradebook.plan_grading(subs, {SYNTH: src}, state)
    assert plan.skipped == [("a", "00_synthetic")]
    assert sorted(plan.todo) == ["b", "c", "d"] and plan.count == 3
    assert gradebook.plan_grading(subs, {SYNTH: src}, state, regrade=True).count == 4


FEEDBACK = """<h4>00_synthetic (Score: 6.0 / 8.0)</h4>
<li><a href="#w0_ex1_test">Test cell</a> (Score: 2.0 / 2.0)</li>
<li><a href="#w0_ex4">Written response</a> (Score: 0.0 / 2.0)</li>
<a name="w0_ex1_test"></a><div class="panel-heading"><span class="pull-right">
      Score: 2.0 / 2.0 <a href="#top">(Top)</a></span></div>
<a name="comment-w0_ex4"></a><a name="w0_ex4"></a><div class="panel-heading">
<span class="nbgrader-label">Student's answer</span><span class="pull-right">
      Score: 0.0 / 2.0 <a href="#top">(Top)</a></span></div>"""


def test_mark_pending_replaces_only_the_pending_scores():
    out = gradebook.mark_pending(FEEDBACK, ["w0_ex4"])
    assert "Score: 0.0 / 2.0" not in out
    assert out.count("Score: 2.0 / 2.0") == 2  # the autograded test keeps its score
    assert "(awaiting manual grading, 2.0 points)" in out
    assert "Awaiting manual grading (2.0 points)" in out
    assert "(Score: 6.0 / 8.0; 2 points awaiting manual grading)" in out
    assert gradebook.mark_pending(FEEDBACK, []) == FEEDBACK


class _Grade:
    def __init__(self, manual, auto, needs):
        self.manual_score, self.auto_score, self.needs_manual_grade = manual, auto, needs


@pytest.mark.parametrize("grade, expected", [
    (None, (None, grading.NEEDS_MANUAL)),
    (_Grade(None, None, True), (None, grading.NEEDS_MANUAL)),
    (_Grade(None, 0, False), (0, grading.NO_ANSWER)),
    (_Grade(1.5, None, False), (1.5, "graded (manual)")),
    (_Grade(1.5, None, True), (1.5, grading.MANUAL_REVIEW)),
])
def test_manual_state(grade, expected):
    assert grading.manual_state(grade) == expected


def test_edited_locked_cells(tmp_path):
    source = write(synthetic_notebook(), tmp_path / "src" / SYNTH)
    course = tmp_path / "course"
    grading.build_course([source], course_dir=course, student_dir=None)
    released = course / "release" / "00_synthetic" / SYNTH
    nb = nbformat.read(released, as_version=4)
    assert gradebook.edited_locked_cells(write(nb, tmp_path / "a" / SYNTH), released) == []
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "w0_ex3_test":
            cell.source = "pass"
    assert gradebook.edited_locked_cells(write(nb, tmp_path / "b" / SYNTH),
                                         released) == ["w0_ex3_test"]


def test_checksum_filter():
    import logging

    noise = gradebook._ChecksumNoise()
    record = logging.LogRecord("traitlets", logging.WARNING, "", 0, "Attribute '%s' for cell %s "
                               "has changed! (should be: %s, got: %s)",
                               ("checksum", "w4_ex1_test", "abc", "def"), None)
    other = logging.LogRecord("traitlets", logging.WARNING, "", 0, "Attribute 'points' for "
                              "cell x has changed!", (), None)
    assert not noise.filter(record) and noise.filter(other)


# --------------------------------------------------------------------------- a class, 3 runs
def _set_manual_score(course, learner, aid, grade_id, score):
    """What the formgrader does when a person grades a written answer."""
    from nbgrader.api import Gradebook

    with Gradebook(grading.nbgrader_config(course).CourseDirectory.db_url) as gb:
        grade = gb.find_grade(grade_id, aid, aid, learner)
        grade.manual_score = score
        grade.needs_manual_grade = False
        gb.db.commit()


def _rows(scores, learner):
    rows = scores[scores["learner"] == learner]
    return {e: (s, st) for e, s, st in zip(rows["exercise"], rows["score"], rows["status"])}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gradebook")
    source = write(with_manual_exercise(synthetic_notebook()), root / "notebooks" / SYNTH)
    course, csv = root / "course", root / "out" / "grades.csv"
    grading.build_course([source], course_dir=course, student_dir=None)
    released = course / "release" / "00_synthetic" / SYNTH
    subs = root / "submissions"
    write(learner_notebook(released, **SOLVED, w0_ex4=WRITTEN), subs / "ann" / SYNTH)
    write(learner_notebook(released, w0_ex1=SOLVED["w0_ex1"]), subs / "bob" / SYNTH)
    kwargs = dict(course_dir=course, csv_path=csv, timeout=30, jobs=2, engine="threads")
    first = gradebook.grade_class(subs, [source], **kwargs)
    autograded = nbformat.read(course / "autograded" / "ann" / "00_synthetic" / SYNTH,
                               as_version=4)
    feedback_before = (course / "feedback" / "ann" / "00_synthetic" / "00_synthetic.html"
                       ).read_text()
    _set_manual_score(course, "ann", "00_synthetic", "w0_ex4", 1.5)
    exported = gradebook.export(course, csv)
    feedback_after = (course / "feedback" / "ann" / "00_synthetic" / "00_synthetic.html"
                      ).read_text()
    write(learner_notebook(released, **SOLVED), subs / "cem" / SYNTH)  # a late submission
    second = gradebook.grade_class(subs, [source], **kwargs)
    write(learner_notebook(released, **SOLVED), subs / "bob" / SYNTH)  # bob resubmits
    third = gradebook.grade_class(subs, [source], **kwargs)
    return {"first": first, "second": second, "third": third, "exported": exported,
            "autograded": autograded, "before": feedback_before, "after": feedback_after,
            "csv": csv, "course": course}


@needs_sandbox
@pytest.mark.class_workflow
def test_first_run_grades_all_and_waits_for_the_written_answer(runs):
    first = runs["first"]
    assert first.graded == [("ann", "00_synthetic"), ("bob", "00_synthetic")]
    assert first.skipped == []
    ann, bob = _rows(first.scores, "ann"), _rows(first.scores, "bob")
    assert ann["w0_ex3"] == (3.0, "graded") and bob["w0_ex2"] == (0.0, "graded")
    assert ann["w0_ex4"][1] == grading.NEEDS_MANUAL
    # bob left "YOUR ANSWER HERE": 0 points, and why
    assert bob["w0_ex4"] == (0.0, grading.NO_ANSWER)


@needs_sandbox
@pytest.mark.class_workflow
def test_feedback_says_awaiting_then_shows_the_manual_score(runs):
    before, after = runs["before"], runs["after"]
    assert "Awaiting manual grading (2.0 points)" in before
    assert "Score: 0.0 / 2.0" not in before
    assert "awaiting" not in after.lower() and "Score: 1.5 / 2.0" in after


@needs_sandbox
@pytest.mark.class_workflow
def test_rubric_beside_the_answer_for_the_grader_never_in_feedback(runs):
    cells = runs["autograded"].cells
    index = next(i for i, c in enumerate(cells)
                 if c.metadata.get("nbgrader", {}).get("grade_id") == "w0_ex4")
    rubric = cells[index - 1]
    assert rubric.metadata.get(gradebook.RUBRIC_KEY)
    assert "symmetric around 4.5" in rubric.source  # the instructor's model answer
    for html in (runs["before"], runs["after"]):
        assert "symmetric around 4.5" not in html and "Instructor only" not in html


@needs_sandbox
@pytest.mark.class_workflow
def test_export_after_manual_grading(runs):
    exported = runs["exported"]
    assert _rows(exported, "ann")["w0_ex4"] == (1.5, "graded (manual)")
    wide = grading.wide_table(exported).set_index("learner")
    assert wide.loc["ann", "total"] == 7.5 and wide.loc["ann", "manual_pending"] == 0.0


@needs_sandbox
@pytest.mark.class_workflow
def test_second_run_grades_only_the_new_submission_and_keeps_manual(runs):
    second = runs["second"]
    assert second.graded == [("cem", "00_synthetic")]
    assert sorted(second.skipped) == [("ann", "00_synthetic"), ("bob", "00_synthetic")]
    assert _rows(second.scores, "ann")["w0_ex4"] == (1.5, "graded (manual)")
    assert _rows(second.scores, "cem")["w0_ex1"] == (2.0, "graded")
    # the CSV on disk is the merged gradebook
    import pandas as pd

    csv = pd.read_csv(runs["csv"])
    assert sorted(set(csv["learner"])) == ["ann", "bob", "cem"]


@needs_sandbox
@pytest.mark.class_workflow
def test_third_run_regrades_the_changed_submission(runs):
    third = runs["third"]
    assert third.graded == [("bob", "00_synthetic")]
    assert ("ann", "00_synthetic") in third.skipped
    assert _rows(third.scores, "bob")["w0_ex3"] == (3.0, "graded")
    assert _rows(third.scores, "ann")["w0_ex4"] == (1.5, "graded (manual)")


@needs_sandbox
@pytest.mark.class_workflow
def test_formgrade_command(runs):
    cmd, env = gradebook.formgrade_command(runs["course"])
    assert "jupyterlab" in cmd and any(str(runs["course"].resolve()) in a for a in cmd)
    assert "--ServerApp.default_url=/formgrader" in cmd
    with pytest.raises(ValueError, match="make grade"):
        gradebook.formgrade_command(runs["course"] / "nope")
