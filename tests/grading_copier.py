"""A learner who copies printed numbers instead of doing the exercises (used by test_grading).

The course promises that the answers of its exercises are never printed: a learner who copies
numbers from the notebook's outputs must score zero. To test that promise as strictly as we can,
the "copier" submission is an *oracle* copier: each solution cell still computes the true answer,
and then every number in it is replaced by the printed number closest to it - the best any
copier could do. If a reference value is printed anywhere a learner sees it (any output of a
cell that is neither a solution nor a test), the copied answer equals it and the exercise
passes; otherwise it fails.

* numbers (floats, ints, numpy arrays of them, inside dicts, lists and tuples): the closest
  printed number (a printed ``12.5%`` also counts as 0.125);
* strings (multiple-choice letters, class names): blanked - a letter is not a printed number,
  and copying one at random is guessing, not copying;
* anything else (functions, models): left as computed.
"""
from __future__ import annotations

import re

import nbformat
from nbformat.v4 import new_code_cell

from utils.course.exercises import learner_names

_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(%?)")

COPY_FUNCTION = '''
def _copy_printed(value, printed=_PRINTED):
    """The printed number closest to each number of `value` (see tests/grading_copier.py)."""
    import numpy as _np
    pool = _np.asarray(printed, dtype=float)

    def near(x):
        return float(pool[_np.argmin(_np.abs(pool - float(x)))])

    if isinstance(value, (bool, _np.bool_)) or value is None:
        return value
    if isinstance(value, str):
        return ""
    if isinstance(value, (int, _np.integer)):
        return type(value)(round(near(value)))
    if isinstance(value, (float, _np.floating)):
        return type(value)(near(value))
    if isinstance(value, _np.ndarray) and value.dtype.kind in "fiu":
        out = _np.vectorize(near, otypes=[float])(value) if value.size else value.astype(float)
        return _np.rint(out).astype(value.dtype) if value.dtype.kind in "iu" else out.astype(value.dtype)
    if isinstance(value, dict):
        return {k: _copy_printed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copy_printed(v) for v in value)
    return value
'''


def _role(cell) -> str:
    meta = cell.metadata.get("nbgrader", {})
    if meta.get("solution"):
        return "solution"
    if meta.get("grade"):
        return "test"
    return "given"


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _output_text(output) -> str:
    if output.get("output_type") == "stream":
        return _text(output.get("text", ""))
    data = output.get("data", {})
    return "\n".join(_text(data[k]) for k in ("text/plain", "text/html", "text/markdown")
                     if k in data)


def printed_numbers(nb) -> list[float]:
    """Every number in the outputs a learner sees: cells that are neither solutions nor tests."""
    found: set[float] = set()
    for cell in nb.cells:
        if cell.cell_type != "code" or _role(cell) != "given":
            continue
        for output in cell.get("outputs", []):
            for match in _NUMBER.finditer(_output_text(output)):
                try:
                    value = float(match.group(0).rstrip("%"))
                except ValueError:
                    continue
                found.add(value / 100 if match.group(1) else value)
    return sorted(found)


def copier_notebook(source_nb, printed: list[float] | None = None):
    """The source notebook with every numeric answer replaced by its closest printed number.

    ``printed`` defaults to :func:`printed_numbers` of ``source_nb`` (its committed outputs).
    Raises ``ValueError`` when nothing is printed (the copier would have nothing to copy).
    """
    nb = nbformat.reads(nbformat.writes(source_nb), as_version=4)
    pool = printed_numbers(nb) if printed is None else sorted(set(printed))
    if not pool:
        raise ValueError("no printed numbers to copy")
    cells, defined = [], False
    for cell in nb.cells:
        if cell.cell_type == "code" and _role(cell) == "solution":
            if not defined:
                cells.append(new_code_cell(f"_PRINTED = {pool!r}\n" + COPY_FUNCTION))
                defined = True
            names = sorted(learner_names(cell.source))
            if names:
                cell.source = cell.source.rstrip() + "\n# the copier: printed numbers only\n" + \
                    "\n".join(f"{n} = _copy_printed({n})" for n in names)
        cells.append(cell)
    nb.cells = cells
    return nb
