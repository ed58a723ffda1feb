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
import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Callable

import nbformat
from nbformat.v4 import new_code_cell, new_output
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

from . import answers, readback
from . import watchdog
from . import sanitize
from .layout import exchange_links

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


#: Largest executed notebook read back from a sandbox (bytes); ``make grade`` can change it.
MAX_NOTEBOOK_BYTES: int = 32 * 1024 * 1024


def read_executed(workdir: Path, max_bytes: int | None = None):
    """The learner's executed notebook (``output.ipynb``), read without trusting it.

    Raises ``ValueError`` naming the reason (a link, a pipe, larger than ``max_bytes``, not a
    notebook...); see :mod:`utils.course.readback`.
    """
    limit = MAX_NOTEBOOK_BYTES if max_bytes is None else max_bytes
    try:
        return readback.read_notebook(Path(workdir), "output.ipynb", limit)
    except FileNotFoundError:
        raise ValueError("no executed notebook") from None
    except OSError as err:
        raise ValueError(f"executed notebook unreadable ({type(err).__name__})") from None


def sandbox_test_outputs(workdir: Path, grade_id: str, executed=None) -> list | None:
    """Outputs of test ``grade_id`` as run in the learner's sandbox (``None`` if not run)."""
    if executed is None:
        try:
            executed = read_executed(workdir)
        except ValueError:  # the learner controls this file: unreadable counts as not run
            return None
    for cell in executed.cells:
        if is_test_cell(cell) and str(_meta(cell).get("grade_id")) == grade_id:
            return list(cell.get("outputs", [])) if cell.get("execution_count") else None
    return None


def _status(path: Path, names: list[str] | None = None) -> dict[str, str] | str:
    try:
        return answers.load(path, names)[1]
    except ValueError as err:
        return str(err)


def _test_reads(source: str) -> list[str]:
    """Names a test cell reads (they are copied afresh for every learner's check)."""
    tree = _python(source)
    if tree is None:
        return []
    return sorted({n.id for n in ast.walk(tree)
                   if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)})


def _kernel_call(function: str, *args) -> str:
    """Source of a driver cell that calls ``utils.course.answers.<function>(globals(), *args)``."""
    rendered = ", ".join(repr(a) for a in args)
    return (f"__import__('utils.course.answers', fromlist=['{function}']).{function}("
            f"globals(){', ' if rendered else ''}{rendered})")


class _Checked:
    """Outcome of the learners' checks: ``{learner: {grade_id: outputs}}``, filled as they
    finish (kept across kernel restarts), and each learner's executed notebook, read once."""

    def __init__(self, workdirs: dict[str, Path]):
        self.workdirs = dict(workdirs)
        self.by_learner: dict[str, dict[str, list]] = {learner: {} for learner in workdirs}
        self._executed: dict[str, object] = {}

    def sandbox_outputs(self, learner: str, gid: str) -> list | None:
        if learner not in self._executed:
            try:
                self._executed[learner] = read_executed(self.workdirs[learner])
            except ValueError:
                self._executed[learner] = None
        executed = self._executed[learner]
        return None if executed is None else sandbox_test_outputs(
            self.workdirs[learner], gid, executed)


def run_trusted(source: Path, workdirs: dict[str, Path], out_dir: Path, timeout: int,
                kernel_name: str = "python3",
                progress: Callable[[str], None] = lambda _: None) -> dict[str, dict[str, list]]:
    """Grade every learner's exported answers for ``source``; ``{learner: {grade_id: outputs}}``.

    ``workdirs`` maps a learner to their sandbox folder (``answers/<grade_id>.json/.npz`` and
    ``output.ipynb``), read with :mod:`utils.course.readback`. The instructor notebook
    ``source`` runs once, in a kernel of this environment, from its own folder; it alone
    decides which names each test reads (:func:`exported_names`) and which of them are plain
    data (its own answers are exported to ``out_dir``); a learner's file only supplies values.
    Before each test the kernel's namespace is snapshotted; every learner is checked on a reset
    copy of it (:func:`utils.course.answers.reset`), and the namespace is reset again before
    the instructor's own test runs. A check that fails in any way (unreadable answers, a test
    over ``timeout`` seconds, a kernel killed by it) is that learner's failure; the kernel is
    then restarted and the instructor notebook replayed up to that test. Raises
    ``RuntimeError`` only when the instructor notebook itself fails a test.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    nb = nbformat.read(source, as_version=4)
    nb.metadata["kernelspec"] = {"name": kernel_name, "language": "python",
                                 "display_name": "Python 3"}
    names = exported_names(nb)
    checked = _Checked(workdirs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    verified = _verified_answers(nb, names, workdirs, out_dir / "learners")
    start = time.perf_counter()
    restarts = 0
    while True:
        # nbclient stores every executed cell (the driver cells too) at its index in the
        # client's notebook: each kernel gets its own copy, and the cells are read from `nb`
        run_nb = copy.deepcopy(nb)
        client = NotebookClient(run_nb, timeout=None, kernel_name=kernel_name,
                                allow_errors=True, resources={"metadata": {
                                    "path": str(Path(source).parent.resolve())}})
        current: dict[str, str] = {}
        try:
            with client.setup_kernel():
                _run_instructor(client, nb, names, checked, verified, out_dir, timeout,
                                current, start, progress, source)
            return checked.by_learner
        except DeadKernelError:
            learner, gid = current.get("learner"), current.get("gid")
            if learner is None or restarts >= len(workdirs):
                raise RuntimeError(f"{source}: the grader's kernel died while running the "
                                   f"instructor notebook") from None
            restarts += 1
            checked.by_learner[learner][gid] = [_error(
                "NotGraded", f"checking your answers stopped the grader's kernel (time or "
                "memory limit); the test counts as failed")]
            progress(f"  {learner} / {gid}: the check killed the grader's kernel; "
                     f"restarting it and replaying the instructor notebook")


def _verified_answers(nb, names: dict[str, list[str]], workdirs: dict[str, Path],
                      out_dir: Path) -> dict[tuple[str, str], Path | str]:
    """Read every learner's answer files once, in this process, and write a verified copy
    (only the trusted names, plain data) under ``out_dir``; the kernel reads only those.
    Maps ``(learner, grade_id)`` to the copy, or to the reason it could not be read."""
    out: dict[tuple[str, str], Path | str] = {}
    for learner, workdir in workdirs.items():
        for gid, wanted in names.items():
            try:
                values, status = answers.load(f"answers/{gid}", wanted, base=Path(workdir))
            except ValueError as err:
                out[(learner, gid)] = str(err)
                continue
            copy_path = out_dir / learner / gid
            answers.export(values, wanted, copy_path)
            out[(learner, gid)] = copy_path
            claims = {n: s for n, s in status.items() if s.startswith("not exportable")}
            if claims:
                (copy_path.parent / f"{gid}.claims.json").write_text(json.dumps(claims))
    return out


def _run_instructor(client, nb, names, checked: _Checked, verified, out_dir: Path,
                    timeout: int, current: dict, start: float, progress, source) -> None:
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        gid = str(_meta(cell).get("grade_id"))
        if is_test_cell(cell) and gid in names:
            todo = [learner for learner, done in checked.by_learner.items() if gid not in done]
            if todo:
                _checks_of_one_test(client, index, cell, gid, names[gid], todo, checked,
                                    verified, out_dir, timeout, current)
                progress(f"  checked {gid} for {len(todo)} learner(s) "
                         f"({time.perf_counter() - start:.0f} s)")
        run = copy.deepcopy(cell)
        watchdog.execute(client, run, index, timeout, store_history=False)
        if is_test_cell(run) and failed(run.outputs):
            raise RuntimeError(f"{source}: the instructor's solution fails {gid}: "
                               f"{[o.get('evalue') for o in run.outputs]}")


def _driver(client, index: int, source: str, timeout: int) -> list:
    cell = new_code_cell(source)
    watchdog.execute(client, cell, index, timeout, store_history=False)
    return cell.outputs


def _checks_of_one_test(client, index: int, cell, gid: str, wanted: list[str], todo: list[str],
                        checked: _Checked, verified, out_dir: Path, timeout: int,
                        current: dict) -> None:
    if failed(_driver(client, index, _kernel_call("snapshot"), timeout)):
        raise RuntimeError(f"could not snapshot the grader's namespace before {gid}")
    ref_path = out_dir / "reference" / gid
    _driver(client, index, _kernel_call("export", wanted, str(ref_path)), timeout)
    ref_status = _status(ref_path, wanted)
    if isinstance(ref_status, str):
        raise RuntimeError(f"could not export the reference answers of {gid}: {ref_status}")
    reads = _test_reads(cell.source)
    for learner in todo:
        current.update(learner=learner, gid=gid)
        checked.by_learner[learner][gid] = _check_one(
            client, index, cell, gid, wanted, verified.get((learner, gid)), ref_status,
            reads, timeout, checked, learner)
    current.clear()
    if failed(_driver(client, index, _kernel_call("reset"), timeout)):
        raise RuntimeError(f"could not reset the grader's namespace after {gid}")


def _check_one(client, index: int, cell, gid: str, wanted: list[str], copy_path,
               ref_status: dict[str, str], reads: list[str], timeout: int,
               checked: _Checked, learner: str) -> list:
    if copy_path is None or isinstance(copy_path, str):
        return [_error("NotGraded", copy_path or "no answers were exported")]
    opaque_ref = [n for n in wanted if ref_status.get(n) != "ok"]
    if opaque_ref:
        # the expected answer itself is not plain data (a function): the visible test as run
        # in the learner's own kernel is all there is (README: what remains possible)
        outputs = checked.sandbox_outputs(learner, gid)
        if outputs is None:
            return [_error("NotGraded", "the test did not run in your notebook")]
        return [new_output("stream", name="stdout", text=SANDBOX_NOTE), *plain_errors(outputs)]
    claims_path = Path(copy_path).parent / f"{gid}.claims.json"
    if claims_path.is_file():
        claimed = sorted(json.loads(claims_path.read_text()))
        return [_error("AnswerType", f"{', '.join(claimed)} must be plain data (number, "
                       "string, array, list or dict) like the expected answer")]
    reset = _driver(client, index, _kernel_call("reset", reads), timeout)
    if failed(reset):
        raise RuntimeError(f"could not reset the grader's namespace for {gid}")
    inject = _driver(client, index, _kernel_call("inject", str(copy_path), wanted), timeout)
    if failed(inject):
        return [_error("NotGraded", "your answers could not be read")]
    test = new_code_cell(cell.source)
    if watchdog.execute(client, test, index, timeout, store_history=False):
        return [_error("TimeoutError", f"the test ran over {timeout} s on your answers")]
    return plain_errors(test.outputs)


def markdown_digests(source_nb) -> list[str]:
    """SHA-256 of every markdown cell source of the instructor notebook: such a cell is shown
    as written (its HTML included); any other markdown is the learner's and is escaped.

    A cell is also trusted with its links between notebooks rewritten for nbgrader's exchange
    (:func:`utils.course.layout.exchange_links`, what ``make exchange-release`` hands out)."""
    sources = {_text(c.source) for c in source_nb.cells if c.cell_type == "markdown"}
    return sorted({hashlib.sha256(text.encode()).hexdigest()
                   for text in sources | {exchange_links(t) for t in sources}})


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def write_results(path: Path, workdir: Path, tests: dict[str, list], note: str = "",
                  trusted_markdown: list[str] = (), max_bytes: int | None = None) -> None:
    """Save what :class:`InjectResults` puts into the autograded notebook: the learner's cell
    outputs (read with :func:`read_executed`, already cleaned by
    :mod:`utils.course.sanitize`), the trusted test outputs and a note."""
    try:
        executed = read_executed(workdir, max_bytes)
        cells = [sanitize.clean_outputs(c.get("outputs", [])) if c.cell_type == "code" else []
                 for c in executed.cells]
    except ValueError as err:  # learner-controlled file
        cells = None
        note = "; ".join(filter(None, [note, f"your executed notebook was not read back "
                                             f"({err}); its outputs are not shown"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tests = {gid: sanitize.clean_outputs(outs) for gid, outs in tests.items()}
    path.write_text(json.dumps({"cells": cells, "tests": tests, "note": note,
                                "trusted_markdown": list(trusted_markdown)}))


class InjectResults(NbGraderPreprocessor):
    """Outputs from the sandbox (learner cells) and the trusted check (test cells), then every
    cell made inert for the browser (:func:`utils.course.sanitize.clean_notebook`)."""

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
            else:
                cell.outputs = []
        trusted = set(data.get("trusted_markdown", []))
        instructor = {index for index, cell in enumerate(nb.cells)
                      if cell.cell_type == "markdown" and hashlib.sha256(
                          _text(cell.source).encode()).hexdigest() in trusted}
        sanitize.clean_notebook(nb, locked=instructor)
        if data.get("note"):
            nb.cells.insert(0, nbformat.v4.new_markdown_cell(
                "**Grader:** " + sanitize.clean_markdown(str(data["note"]))))
        return nb, resources
