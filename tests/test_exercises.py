"""The exercise template and the checker that exercises do not give the answers away."""
from __future__ import annotations

import nbformat
import pytest

from utils.core import config
from utils.course import exercises, grading

SOLUTION = """### BEGIN SOLUTION
drop = float(acc_before - acc_after)
### END SOLUTION
"""
GOOD_TEST = """assert isinstance(drop, float), "drop should be a float"
assert -1 <= drop <= 1, "a drop in accuracy lies in [-1, 1]"
### BEGIN HIDDEN TESTS
_expected = reference_drop()
assert abs(drop - _expected) < 1e-9
### END HIDDEN TESTS
exercise_passed("w1_ex1")
"""


def _meta(grade_id: str, *, grade: bool, solution: bool, points: float | None = None) -> dict:
    meta = {"grade": grade, "solution": solution, "locked": not solution,
            "grade_id": grade_id, "schema_version": 3}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def _notebook(test: str = GOOD_TEST, heading: str = "### Exercise 1 - one lead (2 points)",
              written: bool = True, task: str = "Shuffle lead 1 and store the drop."):
    v4 = nbformat.v4
    nb = v4.new_notebook()
    nb.cells = [
        v4.new_markdown_cell(f"{heading}\n{task}"),
        v4.new_code_cell(SOLUTION, metadata=_meta("w1_ex1", grade=False, solution=True)),
        v4.new_code_cell(test, metadata=_meta("w1_ex1_test", grade=True, solution=False,
                                              points=2)),
    ]
    if written:
        nb.cells.append(v4.new_markdown_cell(
            "### BEGIN SOLUTION\nModel answer. Rubric: 1 point ...\n### END SOLUTION",
            metadata=_meta("w1_written", grade=True, solution=True, points=2)))
    return nb


def _rules(nb) -> set[str]:
    return {p.rule for p in exercises.check_exercises(nb)}


def test_a_notebook_that_follows_the_template_passes():
    assert exercises.check_exercises(_notebook()) == []


@pytest.mark.parametrize("visible", [
    'assert abs(drop - expected_drop()) < 1e-9, "wrong"',
    '_ref = reference_drop()\nassert abs(drop - _ref) < 1e-9',
    '_base = acc_table()["before"]\nassert np.isclose(drop, _base - 0.1)',
])
def test_a_visible_reference_computation_is_reported(visible):
    test = GOOD_TEST.replace('assert -1 <= drop <= 1, "a drop in accuracy lies in [-1, 1]"',
                             visible)
    assert "reference-visible" in _rules(_notebook(test))


def test_a_sanity_check_on_the_learners_own_output_is_allowed():
    test = GOOD_TEST.replace('assert -1 <= drop <= 1, "a drop in accuracy lies in [-1, 1]"',
                             '_d = drop * 2\nassert abs(_d / 2 - drop) < 1e-12')
    assert "reference-visible" not in _rules(_notebook(test))


def test_a_printed_test_value_is_reported():
    test = GOOD_TEST.replace('exercise_passed("w1_ex1")',
                             'print(f"drop {drop:.3f} vs {_level:.3f}")\nexercise_passed("w1_ex1")')
    assert "value-printed" in _rules(_notebook(test))


@pytest.mark.parametrize("visible", [
    'assert hashlib.sha256(answer.encode()).hexdigest()[:12] == "3e23e8160039"',
    'assert answer == "b", "not quite"',
])
def test_a_recoverable_multiple_choice_answer_is_reported(visible):
    test = GOOD_TEST.replace('assert -1 <= drop <= 1, "a drop in accuracy lies in [-1, 1]"',
                             visible)
    assert "answer-recoverable" in _rules(_notebook(test))


def test_a_format_check_of_a_letter_is_allowed():
    test = GOOD_TEST.replace('assert -1 <= drop <= 1, "a drop in accuracy lies in [-1, 1]"',
                             'assert answer in ("a", "b", "c"), "one letter"')
    assert "answer-recoverable" not in _rules(_notebook(test))


def test_missing_hidden_test_pass_message_and_written_answer_are_reported():
    test = 'assert isinstance(drop, float)\nprint("Exercise 1: correct")\n'
    assert {"no-hidden-test", "template"} <= _rules(_notebook(test))
    assert "written" in _rules(_notebook(written=False))


@pytest.mark.parametrize("heading", ["**Exercise 1 (one lead, 2 points).**",
                                     "### Exercise 1 - one lead (code)",
                                     "### Exercise 1 - one lead (3 points)"])
def test_headings_off_the_template_are_reported(heading):
    assert "template" in _rules(_notebook(heading=heading))


def test_talk_of_markers_is_reported():
    nb = _notebook(task="Write your code between the markers.")
    assert "marker-talk" in _rules(nb)


def test_pass_message_is_uniform_and_names_no_value():
    message = exercises.pass_message("w3_ex2")
    assert message.startswith("Exercise 2 (week 3): form checks passed")
    assert not any(ch.isdigit() for ch in message.replace("Exercise 2", "").replace("week 3", ""))
    with pytest.raises(ValueError):
        exercises.pass_message("w3_written")
    assert exercises.pass_message("d4_ex1").startswith("Exercise 1 (deep dive 4): form checks")
    with pytest.raises(ValueError):
        exercises.pass_message("x4_ex1")


def test_visible_part_drops_hidden_tests():
    visible = exercises.visible_part(GOOD_TEST)
    assert "_expected" not in visible and grading.BEGIN_HIDDEN not in visible
    assert "exercise_passed" in visible


@pytest.mark.parametrize("path", grading.course_notebooks(), ids=lambda p: p.stem[:2])
def test_course_notebooks_follow_the_exercise_rules(path):
    """The weeks and the deep dives (``course_notebooks`` lists both)."""
    assert exercises.check_exercises(path) == []


def test_forbid_blocks_a_shortcut_in_its_module_and_in_the_notebook_namespace():
    import sys

    from utils.assess import relevance

    main = sys.modules["__main__"]
    original = relevance.lead_share
    main.lead_share = relevance.lead_share  # as after `from utils.assess.relevance import lead_share`
    try:
        def learner_function():
            return main.lead_share

        with exercises.forbid("utils.assess.relevance.lead_share"):
            with pytest.raises(AssertionError, match="without utils.assess.relevance.lead_share"):
                relevance.lead_share(None, None)
            with pytest.raises(AssertionError):
                learner_function()(None, None)
            assert relevance.normalise_per_beat is not None  # others untouched
        assert relevance.lead_share is original and main.lead_share is original
    finally:
        del main.lead_share
