"""The learner view of a source notebook, with the outputs a learner would see after running it.

The course site shows each notebook as a learner sees it, never the instructor's version:

- solutions and hidden tests are removed by nbgrader's own preprocessors, the same ones that
  ``make student`` / ``make lab`` run through ``nbgrader generate_assignment``
  (:class:`nbgrader.preprocessors.ClearSolutions`: code between ``### BEGIN SOLUTION`` and
  ``### END SOLUTION`` becomes ``# YOUR CODE HERE`` / ``raise NotImplementedError()``, a
  written answer becomes ``YOUR ANSWER HERE``; :class:`nbgrader.preprocessors.ClearHiddenTests`:
  the ``### BEGIN HIDDEN TESTS`` blocks go);
- the outputs of exercise cells (solution cells and graded test cells) are dropped: they were
  computed by the solution;
- the outputs of every other cell are kept (``generate_assignment`` would clear them all, which
  is right for a hand-out but leaves a website without its figures, so it is not used here);
- the result is checked with :func:`utils.course.grading.leaked_lines`, the check that
  ``make student`` applies to its releases: a notebook that still shows a solution or
  hidden-test line (in a source or in an output) raises instead of being published.
"""
from __future__ import annotations

import copy
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from utils.course import grading

#: Metadata key set on every cell whose outputs the learner view dropped.
DROPPED_KEY = "course_site_outputs_dropped"


def is_exercise_cell(cell: NotebookNode) -> bool:
    """Whether ``cell`` is an nbgrader solution cell or a graded (test/answer) cell."""
    meta = cell.get("metadata", {}).get("nbgrader", {}) or {}
    return bool(meta.get("solution") or meta.get("grade"))


def learner_view(source: NotebookNode | str | Path) -> NotebookNode:
    """The learner version of ``source`` with the outputs of non-exercise cells kept.

    ``source`` is a notebook node or a path; it is not modified. Raises ``ValueError`` for a
    malformed exercise (unbalanced markers, a marker outside a solution cell: nbgrader's own
    checks) and ``RuntimeError`` when a solution or hidden-test line would still be shown.
    """
    from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions

    original = (nbformat.read(source, as_version=4) if isinstance(source, (str, Path))
                else source)
    grading.marked_blocks(original)  # unbalanced solution markers: a clear ValueError
    grading.marked_blocks(original, grading.BEGIN_HIDDEN, grading.END_HIDDEN)
    nb = copy.deepcopy(original)
    before = [cell.source for cell in nb.cells]
    resources: dict = {}
    try:
        nb, resources = ClearSolutions().preprocess(nb, resources)
        nb, resources = ClearHiddenTests().preprocess(nb, resources)
    except RuntimeError as err:  # nbgrader: "Solution region detected in a non-solution cell"
        raise ValueError(str(err)) from None
    for cell, old in zip(nb.cells, before):
        if cell.cell_type != "code":
            continue
        if is_exercise_cell(cell) or cell.source != old:
            cell.outputs = []
            cell.execution_count = None
            cell.metadata[DROPPED_KEY] = True
    leaked = grading.leaked_lines(original, nb)
    if leaked:
        raise RuntimeError(f"the learner view still shows solution lines: {leaked}")
    return nb
