"""The grader's trusted step: check learners' exported answers in the grader's own kernel.

Why a separate trusted process instead of detecting tampering: anything that runs in the
learner's kernel can be subverted by the learner's code (an IPython input transformer that
rewrites later cells, a patched ``np.allclose`` or ``assert`` helper, an object whose ``__eq__``
always says yes, reading the hidden tests from ``In``), and every detector would itself run
in that kernel. So the learner's kernel (in the sandbox, see :mod:`utils.course.sandbox`) only
*exports* the variables each test reads, as plain data (:mod:`utils.course.answers`), and the
tests (hidden ones included) run here, in one kernel per notebook that re-executes the
instructor notebook: at each test cell, for every learner, the learner's values replace the
reference ones, the test runs, and the reference values come back. Tests therefore also use
the grader's own context (data, models, helper variables): a learner who overwrites, say,
``weights`` in their notebook changes nothing here. The hidden tests never enter a sandbox.

What remains: an answer that is not plain data where the reference answer is not either (a
function the learner writes, e.g. week 3's ``integrated_gradients_numpy``) cannot be exported;
such a test is scored by its *visible* part as run in the learner's sandboxed kernel, which the
learner's own code can subvert (it can only change its own result). The README says so.
"""
from __future__ import annotations

import ast
import copy
import json
import threading
import time
from pathlib import Path
from typing import Callable

import nbformat
from nbformat.v4 import new_code_cell, new_output
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

from . import answers

#: Extra note shown with a test scored in the learner's own kernel.
SANDBOX_NOTE = ("(checked by the visible test in your own kernel: the answer is not plain "
                "data, e.g. a function)\n")


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def is_test_cell(cell) -> bool:
    """An autograded test cell: a code cell with ``grade: true`` and no solution."""
    meta = _meta(cell)
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


#: ``make grade JOBS=2`` grades in threads, and CPython 3.11 can fail with "AST constructor
#: recursion depth mismatch" when two threads build ASTs at once (gh-106905): parse one at a time.
_PARSE_LOCK = threading.Lock()


def _python(source: str) -> ast.Module | None:
    from IPython.core.inputtransformer2 import TransformerManager

    with _PARSE_LOCK:
        try:
            return ast.parse(TransformerManager().transform_cell(source))
        except SyntaxError:
            return None


def _top_level_assigned(tree: ast.Module) -> set[str]:
    """Names a cell binds in the notebook's namespace (not inside functions or classes)."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            return
        if isinstance(node, ast.Lambda):
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names.add((alias.asname or alias.name).split(".")[0])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def exported_names(source_nb) -> dict[str, list[str]]:
    """``{test grade_id: names}``: variables each test reads that a solution cell assigns.

    These are the learner's answers: exported from the sandbox before the test, injected into
    the grader's kernel for the test. Everything else the test reads comes from the grader's
    own run of the instructor notebook.
    """
    assigned: set[str] = set()
    out: dict[str, list[str]] = {}
    for cell in source_nb.cells:
        if cell.cell_type != "code":
            continue
        tree = _python(cell.source)
        if tree is None:
            continue
        if _meta(cell).get("solution"):
            assigned |= _top_level_assigned(tree)
        elif is_test_cell(cell):
            loads = {n.id for n in ast.walk(tree)
                     if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            stores = {n.id for n in ast.walk(tree)
                      if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            out[str(_meta(cell)["grade_id"])] = sorted((loads - stores) & assigned)
    return out


def sandbox_input(submission, release, source) -> tuple:
    """The notebook a sandbox runs, and its export plan ``{cell index: {grade_id, names}}``.

    ``submission`` is the learner's notebook; locked cells (test cells among them) get back
    the source of the learner version ``release`` (visible tests only: hidden tests never
    enter the sandbox); outputs are cleared.
    """
    released = {str(_meta(c).get("grade_id")): c for c in release.cells if _meta(c)}
    names = exported_names(source)
    nb = copy.deepcopy(submission)
    plan: dict[str, dict] = {}
    for index, cell in enumerate(nb.cells):
        gid = str(_meta(cell).get("grade_id"))
        ref = released.get(gid)
        if ref is not None and (_meta(ref).get("locked") or _meta(ref).get("grade")) \
                and not _meta(ref).get("solution"):
            cell.source, cell.cell_type = ref.source, ref.cell_type
            cell.metadata["nbgrader"] = copy.deepcopy(_meta(ref))
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        if is_test_cell(cell) and gid in names and gid not in {p["grade_id"]
                                                                for p in plan.values()}:
            plan[str(index)] = {"grade_id": gid, "names": names[gid]}
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                 "display_name": "Python 3 (ipykernel)"}
    return nb, plan


def plain_errors(outputs: list) -> list:
    """``outputs`` with every traceback cut to ``Name: message`` (no test source shown)."""
    cleaned = []
    for output in outputs:
        output = copy.deepcopy(output)
        if output.get("output_type") == "error":
            output["traceback"] = [f"{output.get('ename')}: {output.get('evalue')}"]
        cleaned.append(output)
    return cleaned


def _error(ename: str, evalue: str):
    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def failed(outputs: list) -> bool:
    """True when ``outputs`` hold an error (the test did not pass)."""
    return any(o.get("output_type") == "error" for o in outputs)


def sandbox_test_outputs(workdir: Path, grade_id: str) -> list | None:
    """Outputs of test ``grade_id`` as run in the learner's sandbox (``None`` if not run)."""
    path = Path(workdir) / "output.ipynb"
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # the learner controls this file: anything unreadable counts as not run
        return None
    for cell in nb.cells:
        if is_test_cell(cell) and str(_meta(cell).get("grade_id")) == grade_id:
            return list(cell.get("outputs", [])) if cell.get("execution_count") else None
    return None


def _status(path: Path) -> dict[str, str] | str:
    try:
        return answers.load(path)[1]
    except ValueError as err:
        return str(err)


def run_trusted(source: Path, workdirs: dict[str, Path], out_dir: Path, timeout: int,
                kernel_name: str = "python3",
                progress: Callable[[str], None] = lambda _: None) -> dict[str, dict[str, list]]:
    """Grade every learner's exported answers for ``source``; ``{learner: {grade_id: outputs}}``.

    ``workdirs`` maps a learner to their sandbox folder (``answers/<grade_id>.json/.npz`` and
    ``output.ipynb``). The instructor notebook ``source`` runs once, in a kernel of this
    environment, from its own folder; reference answers are exported to ``out_dir`` to learn
    which answers are plain data. Raises ``RuntimeError`` when the reference solution of a
    test fails (the instructor notebook is broken).
    """
    from nbclient import NotebookClient

    nb = nbformat.read(source, as_version=4)
    nb.metadata["kernelspec"] = {"name": kernel_name, "language": "python",
                                 "display_name": "Python 3"}
    names = exported_names(nb)
    results: dict[str, dict[str, list]] = {learner: {} for learner in workdirs}
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name, allow_errors=True,
                            interrupt_on_timeout=True,
                            resources={"metadata": {"path": str(Path(source).parent.resolve())}})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            gid = str(_meta(cell).get("grade_id"))
            if is_test_cell(cell) and gid in names:
                ref_path = out_dir / gid
                client.execute_cell(new_code_cell(
                    f"__import__('utils.course.answers', fromlist=['export']).export("
                    f"globals(), {names[gid]!r}, {str(ref_path)!r})"), index, store_history=False)
                ref_status = _status(ref_path)
                if isinstance(ref_status, str):
                    raise RuntimeError(f"{source}: could not export the reference answers of "
                                       f"{gid}: {ref_status}")
                for learner, workdir in workdirs.items():
                    results[learner][gid] = _check_one(client, index, cell, gid, workdir,
                                                       ref_status)
                progress(f"  checked {gid} for {len(workdirs)} learner(s) "
                         f"({time.perf_counter() - start:.0f} s)")
            client.execute_cell(cell, index, store_history=False)
            if is_test_cell(cell) and failed(cell.outputs):
                raise RuntimeError(f"{source}: the instructor's solution fails {gid}: "
                                   f"{[o.get('evalue') for o in cell.outputs]}")
    return results


def _check_one(client, index: int, cell, gid: str, workdir: Path,
               ref_status: dict[str, str]) -> list:
    path = Path(workdir) / "answers" / gid
    status = _status(path)
    if isinstance(status, str):
        return [_error("NotGraded", status)]
    opaque = [n for n, s in status.items() if s.startswith("not exportable")]
    if opaque:
        plain_ref = [n for n in opaque if ref_status.get(n) == "ok"]
        if plain_ref:
            return [_error("AnswerType", f"{', '.join(plain_ref)} must be plain data (number, "
                           "string, array, list or dict) like the expected answer")]
        outputs = sandbox_test_outputs(workdir, gid)
        if outputs is None:
            return [_error("NotGraded", "the test did not run in your notebook")]
        return [new_output("stream", name="stdout", text=SANDBOX_NOTE), *plain_errors(outputs)]
    inject = new_code_cell(
        f"__grader_saved = __import__('utils.course.answers', fromlist=['inject']).inject("
        f"globals(), {str(path)!r})")
    client.execute_cell(inject, index, store_history=False)
    if failed(inject.outputs):
        return [_error("NotGraded", "your answers could not be read")]
    test = new_code_cell(cell.source)
    try:
        client.execute_cell(test, index, store_history=False)
    finally:
        client.execute_cell(new_code_cell(
            "__import__('utils.course.answers', fromlist=['restore']).restore("
            "globals(), __grader_saved); del __grader_saved"), index, store_history=False)
    return plain_errors(test.outputs)


def write_results(path: Path, workdir: Path, tests: dict[str, list], note: str = "") -> None:
    """Save what :class:`InjectResults` puts into the autograded notebook."""
    try:
        executed = nbformat.read(Path(workdir) / "output.ipynb", as_version=4)
        cells = [c.get("outputs", []) if c.cell_type == "code" else [] for c in executed.cells]
    except Exception as err:  # learner-controlled file
        cells, note = None, note or f"executed notebook unreadable: {type(err).__name__}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": cells, "tests": tests, "note": note}))


class InjectResults(NbGraderPreprocessor):
    """Outputs from the sandbox (learner cells) and the trusted check (test cells)."""

    results_dir = Unicode("").tag(config=True)

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        path = Path(self.results_dir) / info["student"] / f"{info['assignment']}.json"
        data = json.loads(path.read_text())
        cells = data["cells"]
        if cells is not None and len(cells) != len(nb.cells):
            cells = None  # the learner's run changed the cell count: keep test results only
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            gid = str(_meta(cell).get("grade_id"))
            if is_test_cell(cell):
                outs = data["tests"].get(gid)
                if outs is None:
                    outs = [_error("NotGraded", "test not run")]
                cell.outputs = [nbformat.from_dict(o) for o in outs]
            elif cells is not None:
                cell.outputs = [nbformat.from_dict(o) for o in cells[index]]
        if data.get("note"):
            nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"**Grader:** {data['note']}"))
        return nb, resources
