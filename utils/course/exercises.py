"""One exercise template for the four weeks, and a checker that exercises do not give answers away.

The template (see ``/docs`` and the README, "Writing a new exercise"):

- a markdown cell whose first line is the heading ``### Exercise <k> - <title> (<n> points)``
  (``1 point`` for one), followed by the task;
- a solution cell (``grade_id`` ``w<week>_ex<k>``) with the solution between
  ``### BEGIN SOLUTION`` / ``### END SOLUTION``;
- a locked test cell (``w<week>_ex<k>_test``, the points of the heading) whose *visible* part
  checks only form and sanity (type, shape, range, an invariant that holds for any correct
  answer) and ends with :func:`exercise_passed`; the reference checks sit between
  ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS`` (nbgrader removes them from the
  learner version and puts them back when grading);
- per week at least one written interpretation: a markdown cell graded by hand (nbgrader
  metadata ``grade: true, solution: true``), whose instructor version holds a model answer
  and the rubric (nbgrader replaces the cell with "YOUR ANSWER HERE" for the learner).

:func:`check_exercises` finds what breaks these rules in a *source* notebook: a visible test
that computes or prints the reference (``expected``, ``_ref``, ...), a multiple-choice answer
recoverable from the visible cell (a hash, or a comparison with a short literal), instructions
that mention solution markers (the learner version has none), a test cell without hidden
tests, a heading off the template, or a week without a written answer. It is a set of
patterns (regular expressions on cell sources, no execution): it reports the usual ways an
answer leaks; it cannot prove that none does.
"""
from __future__ import annotations

import argparse
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator


#: Heading of every exercise: ``### Exercise 2 - PFI of one lead (2 points)``.
HEADING_RE = re.compile(r"^###\s+Exercise\s+(\d+)\s+-\s+(.+?)\s+\((\d+(?:\.\d+)?)\s+points?\)\s*$")
#: Grade ids of autograded exercises and of written answers: ``w<week>_...`` in the weeks,
#: ``d<k>_...`` in the deep dives (``notebooks/deep_dives/D<k>_*.ipynb``).
GRADE_ID_RE = re.compile(r"^(?P<kind>[wd])(?P<number>\d+)_(?P<part>ex\d+|written\d*)(_test)?$")
#: How a pass message names the notebook of a grade id.
NOTEBOOK_KIND: dict[str, str] = {"w": "week", "d": "deep dive"}

#: Names and words in a visible test that mean it computes or shows the reference.
REFERENCE_RE = re.compile(r"\b(_*expected\w*|_ref\w*|_*reference\w*|_check\w*)\b", re.IGNORECASE)
#: Hashing an answer in a visible cell: with four letters to try, the hash is the answer.
HASH_RE = re.compile(r"\b(hashlib|hexdigest|sha\d+|md5|blake2\w*)\b")
#: A comparison with a short literal (``answer == "b"``, ``"b" == answer``).
SHORT_LITERAL_RE = re.compile(r"""(==|!=)\s*(['"])\w{1,2}\2|(['"])\w{1,2}\3\s*(==|!=)""")
#: An f-string field that prints a private (test-internal) value, e.g. ``{_expected:.4f}``.
PRIVATE_FIELD_RE = re.compile(r"""f(['"]).*\{_\w+[^}]*\}.*\1""")
#: Instructions that refer to markers the learner version does not have.
MARKER_TALK_RE = re.compile(r"between the markers|marked lines|BEGIN SOLUTION|END SOLUTION",
                            re.IGNORECASE)
#: The uniform pass message call every visible test ends with.
PASS_CALL_RE = re.compile(r"\bexercise_passed\(")


@dataclass(frozen=True)
class Problem:
    """One broken rule in a source notebook."""

    cell: int
    grade_id: str | None
    rule: str
    message: str

    def __str__(self) -> str:
        where = f"cell {self.cell}" + (f" ({self.grade_id})" if self.grade_id else "")
        return f"{where}: [{self.rule}] {self.message}"


def pass_message(grade_id: str) -> str:
    """The one pass message of the course, e.g. ``"Exercise 2 (week 1): form checks passed"``
    (``"Exercise 1 (deep dive 4)"`` for ``d4_ex1``)."""
    match = GRADE_ID_RE.match(str(grade_id))
    if not match or not match.group("part").startswith("ex"):
        raise ValueError(f"not an exercise grade id (w<week>_ex<k> or d<k>_ex<k>): {grade_id!r}")
    where = f"{NOTEBOOK_KIND[match.group('kind')]} {match.group('number')}"
    k = match.group("part")[2:]
    return (f"Exercise {k} ({where}): form checks passed. The points are decided when your "
            "notebook is graded.")


def exercise_passed(grade_id: str) -> None:
    """Print :func:`pass_message` (the last line of every visible test cell)."""
    print(pass_message(grade_id))


@contextmanager
def forbid(*targets: str) -> Iterator[None]:
    """Make the ``utils`` shortcuts ``targets`` raise inside the block (for hidden tests).

    ``targets`` are dotted names such as ``"utils.explainers.cam.class_activation_map"``. The function is
    replaced in its module and wherever the notebook's namespace (``__main__``) holds the same
    object (``from utils.explainers.cam import class_activation_map``), so a learner's function that calls
    the shortcut fails the hidden test instead of passing it; everything is restored after.
    """
    import importlib

    main = sys.modules.get("__main__")
    saved: list[tuple[object, str, object]] = []
    try:
        for target in targets:
            module_name, _, name = target.rpartition(".")
            module = importlib.import_module(module_name)
            original = getattr(module, name)

            def blocked(*args, _name=target, **kwargs):
                raise AssertionError(f"solve this exercise without {_name}")

            homes = [module] + ([main] if main is not None else [])
            for home in homes:
                for attr, value in list(vars(home).items()):
                    if value is original:
                        saved.append((home, attr, value))
                        setattr(home, attr, blocked)
        yield
    finally:
        for home, attr, value in reversed(saved):
            setattr(home, attr, value)


def visible_part(source: str) -> str:
    """``source`` without its hidden-test blocks (what the learner version shows)."""
    from . import grading  # lazy: the learner release ships no grading code
    lines, depth = [], 0
    for line in source.splitlines():
        marker = line.strip()
        if marker == grading.BEGIN_HIDDEN:
            depth += 1
        elif marker == grading.END_HIDDEN:
            depth -= 1
        elif depth == 0:
            lines.append(line)
    return "\n".join(lines)


def _code_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and
            not line.strip().startswith("#")]


_ASSIGN_RE = re.compile(r"^\s*([A-Za-z_][\w\s,]*?)\s*=(?!=)\s*(.*)$")
_COMPARE_RE = re.compile(r"==|allclose|isclose|array_equal|assert_allclose|abs\(")
_STRING_RE = re.compile(r"""(['"]).*?\1""")


def learner_names(solution: str) -> set[str]:
    """Names a solution cell defines (assignments and ``def``): the learner's answers."""
    names: set[str] = set()
    for line in solution.splitlines():
        match = _ASSIGN_RE.match(line)
        if match and not line.startswith((" ", "\t")):
            names.update(n.strip() for n in match.group(1).split(",") if n.strip())
        match = re.match(r"^\s*def\s+(\w+)", line)
        if match:
            names.add(match.group(1))
    return {n for n in names if n.isidentifier()}


def private_references(visible: str, answers: set[str]) -> list[str]:
    """Private names a visible test computes *without* the learner's answers and then
    compares an answer with (``_expected = ...; assert abs(x - _expected) < ...``)."""
    words = re.compile(r"\b\w+\b")
    derived: dict[str, bool] = {}
    for line in visible.splitlines():
        match = _ASSIGN_RE.match(line)
        if not match:
            continue
        used = set(words.findall(_STRING_RE.sub("", match.group(2))))
        from_answer = bool(used & answers) or any(derived.get(n) for n in used)
        for name in (n.strip() for n in match.group(1).split(",")):
            if name.startswith("_"):
                derived[name] = from_answer
    found = set()
    for line in visible.splitlines():
        code = _STRING_RE.sub("", line)
        used = set(words.findall(code))
        if _COMPARE_RE.search(code) and used & answers:
            found |= {n for n in used if derived.get(n) is False}
    return sorted(found)


def _test_cell_problems(index: int, grade_id: str, source: str,
                        answers: set[str] = frozenset()) -> list[Problem]:
    from . import grading  # lazy: the learner release ships no grading code
    problems: list[Problem] = []
    visible = "\n".join(_code_lines(visible_part(source)))
    found = sorted({m.group(0) for m in REFERENCE_RE.finditer(visible)}
                   | set(private_references(visible, set(answers))))
    if found:
        problems.append(Problem(index, grade_id, "reference-visible",
                                f"the visible test computes or names the reference: {found}; "
                                "move it between the hidden-test markers"))
    if PRIVATE_FIELD_RE.search(visible):
        problems.append(Problem(index, grade_id, "value-printed",
                                "the visible test prints a test-internal value ({_name}); "
                                "messages must not show reference numbers"))
    if HASH_RE.search(visible):
        problems.append(Problem(index, grade_id, "answer-recoverable",
                                "the visible test hashes the answer: a short answer can be "
                                "found by trying all of them; check it in a hidden test"))
    if SHORT_LITERAL_RE.search(visible):
        problems.append(Problem(index, grade_id, "answer-recoverable",
                                "the visible test compares with a short literal (the answer?); "
                                "check it in a hidden test"))
    if not grading.hidden_test_blocks(nbformat_cell_notebook(source)):
        problems.append(Problem(index, grade_id, "no-hidden-test",
                                "no hidden test: the reference check must live in "
                                f"{grading.BEGIN_HIDDEN} ... {grading.END_HIDDEN}"))
    if not PASS_CALL_RE.search(visible):
        problems.append(Problem(index, grade_id, "template",
                                f'the visible test must end with exercise_passed("'
                                f'{grade_id.removesuffix("_test")}")'))
    return problems


def nbformat_cell_notebook(source: str):
    """A one-cell notebook holding ``source`` (to reuse the marker parser of ``grading``)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(source))
    return nb


def check_exercises(nb, require_written: bool = True) -> list[Problem]:
    """Every broken exercise rule in the source notebook ``nb`` (node or path); ``[]`` if none."""
    from . import grading  # lazy: the learner release ships no grading code
    nb = grading._as_notebook(nb)
    problems: list[Problem] = []
    headings: dict[int, tuple[int, float]] = {}  # cell index -> (k, points)
    written = 0
    answers: set[str] = set()
    for index, cell in enumerate(nb.cells):
        meta = grading._nbgrader_meta(cell)
        grade_id = meta.get("grade_id")
        if cell.cell_type == "markdown":
            if MARKER_TALK_RE.search(cell.source) and not meta.get("solution"):
                problems.append(Problem(index, grade_id, "marker-talk",
                                        "the instructions mention solution markers, which the "
                                        "learner version does not have"))
            for line in cell.source.splitlines():
                if re.match(r"^\W*(#+\s*)?\**Exercise\s+\d+", line):
                    match = HEADING_RE.match(line.strip())
                    if match:
                        headings[index] = (int(match.group(1)), float(match.group(3)))
                    else:
                        problems.append(Problem(index, grade_id, "template",
                                                f"heading {line.strip()[:60]!r} is not "
                                                "'### Exercise <k> - <title> (<n> points)'"))
            if meta.get("grade") and meta.get("solution"):
                written += 1
                if not meta.get("points"):
                    problems.append(Problem(index, grade_id, "written", "a written answer "
                                            "needs points"))
        elif cell.cell_type == "code" and meta.get("solution"):
            answers = learner_names(cell.source)
        elif cell.cell_type == "code" and meta.get("grade"):
            problems.extend(_test_cell_problems(index, str(grade_id), cell.source, answers))
            match = GRADE_ID_RE.match(str(grade_id))
            before = [i for i in headings if i < index]
            if match and before:
                k, points = headings[max(before)]
                if f"ex{k}" != match.group("part"):
                    problems.append(Problem(index, grade_id, "template",
                                            f"the nearest heading is exercise {k}"))
                elif float(meta.get("points", 0)) != points:
                    problems.append(Problem(index, grade_id, "template",
                                            f"{meta.get('points')} points, heading says "
                                            f"{points:g}"))
    if require_written and not written:
        problems.append(Problem(-1, None, "written", "no written interpretation (a markdown "
                                "cell graded by hand) in this week"))
    return problems


def main(argv: Iterable[str] | None = None) -> None:
    """``python -m utils.course.exercises [NOTEBOOK...]``: exit 1 when a rule is broken."""
    from . import grading  # lazy: the learner release ships no grading code
    parser = argparse.ArgumentParser(description="check the exercise rules of source notebooks")
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args(list(argv) if argv is not None else None)
    notebooks = args.notebooks or grading.course_notebooks()
    failed = False
    for path in notebooks:
        problems = check_exercises(path)
        for problem in problems:
            print(f"{path}: {problem}")
        failed |= bool(problems)
    if failed:
        sys.exit(1)
    print(f"{len(notebooks)} notebook(s): exercise rules respected")


if __name__ == "__main__":
    main()
