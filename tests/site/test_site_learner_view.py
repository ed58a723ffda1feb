"""The learner view the site publishes: nbgrader's stubs, exercise outputs dropped, others kept."""
from __future__ import annotations

import nbformat
import pytest

from learner_view import DROPPED_KEY, is_exercise_cell, learner_view
from utils.course import grading


def _output(text: str):
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def toy_notebook():
    """Title, a plain cell with output, a solution, a test with hidden tests, a written answer."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                 "display_name": "Python 3"}
    plain = nbformat.v4.new_code_cell("data = [3, 1, 2]\nprint(sorted(data))")
    plain.outputs = [_output("[1, 2, 3]\n")]
    solution = nbformat.v4.new_code_cell(
        "### BEGIN SOLUTION\nanswer = max(data) - min(data)\n### END SOLUTION\nprint(answer)")
    solution.metadata["nbgrader"] = {"grade": False, "solution": True, "locked": False,
                                     "grade_id": "ex1", "schema_version": 3}
    solution.outputs = [_output("2\n")]
    test = nbformat.v4.new_code_cell(
        "assert isinstance(answer, int)\n### BEGIN HIDDEN TESTS\nassert answer == 2\n"
        "### END HIDDEN TESTS")
    test.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True,
                                 "grade_id": "ex1_test", "points": 1, "schema_version": 3}
    test.outputs = [_output("exercise passed\n")]
    written = nbformat.v4.new_markdown_cell(
        "### BEGIN SOLUTION\nThe range is the spread of the data.\n### END SOLUTION")
    written.metadata["nbgrader"] = {"grade": True, "solution": True, "locked": False,
                                    "grade_id": "ex2", "points": 1, "schema_version": 3}
    nb.cells = [nbformat.v4.new_markdown_cell("# Toy week"), plain, solution, test, written]
    return nb


def test_toy_notebook_learner_view():
    source = toy_notebook()
    view = learner_view(source)
    title, plain, solution, test, written = view.cells
    assert plain.outputs and plain.outputs[0].text == "[1, 2, 3]\n"  # kept
    assert solution.source == "# YOUR CODE HERE\nraise NotImplementedError()\nprint(answer)"
    assert not solution.outputs and solution.execution_count is None
    assert test.source.strip() == "assert isinstance(answer, int)" and not test.outputs
    assert written.source == "YOUR ANSWER HERE"
    assert [bool(c.metadata.get(DROPPED_KEY)) for c in view.cells] == [False, False, True,
                                                                       True, False]
    assert "answer = max(data) - min(data)" in source.cells[2].source  # the source unchanged
    assert not grading.leaked_lines(source, view)


def test_a_solution_line_in_another_cells_output_is_refused():
    source = toy_notebook()
    source.cells[1].outputs.append(_output("answer = max(data) - min(data)\n"))
    with pytest.raises(RuntimeError, match="solution lines"):
        learner_view(source)


def test_malformed_exercises_are_refused():
    source = toy_notebook()
    source.cells[1].source += "\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION"
    with pytest.raises(ValueError):
        learner_view(source)
    source = toy_notebook()
    source.cells[2].source = source.cells[2].source.replace("### END SOLUTION\n", "")
    with pytest.raises(ValueError):
        learner_view(source)


@pytest.mark.parametrize("path", grading.course_notebooks(), ids=lambda p: p.stem)
def test_course_notebooks(path):
    source = nbformat.read(path, as_version=4)
    view = learner_view(path)
    assert len(view.cells) == len(source.cells)
    assert not grading.leaked_lines(path, view)
    exercises = [c for c in view.cells if is_exercise_cell(c) and c.cell_type == "code"]
    assert exercises and all(not c.outputs for c in exercises)
    kept = [c for c in view.cells if c.cell_type == "code" and c.outputs]
    stored = [c for c in source.cells if c.cell_type == "code" and c.outputs
              and not is_exercise_cell(c)]
    assert len(kept) == len(stored) > 0  # every other output is published
    assert any("raise NotImplementedError()" in c.source for c in exercises)
