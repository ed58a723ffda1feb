"""Malicious learners for ``make grade``: payloads and ONE graded run of all of them.

Used by ``test_grading_sandbox.py`` (issue 17: escaping the sandbox), ``test_grading_attacks.py``
(issue 25: forging results through the files read back, hurting other learners, reaching the
instructor's browser) and, for the payloads that do not depend on the notebook, the real-week
run of ``test_grading.py``. The fixture :func:`attacked` (session scope, registered in
``conftest.py``) grades the synthetic week of ``test_grading.py`` once, in the real bubblewrap
sandbox, for two honest learners and every attacker; each attacker solves some exercises
honestly and attacks elsewhere, so the tests can check it gets exactly the points of its real
work.

The payloads run in the learner's kernel: an IPython ``post_run_cell`` hook runs after every
cell (also after the grader's export of the answers, just before each test), and an ``atexit``
hook when the kernel shuts down, after the sandbox's last save.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import nbformat
import pytest

from test_grading import SYNTH, _sandbox_problem, synthetic_notebook, write
from utils.course import grading
from utils.course.limits import Limits

SOLVED = {
    "w0_ex1": "signal_mean = float(np.mean(signal))",
    "w0_ex2": "answer = 'B'",
    "w0_ex3": "energy = float((signal ** 2).sum())",
}
#: Printed by the honest learner; must never appear in anyone else's feedback.
HONEST_MARKER = "HONEST-OUTPUT-7f3a91"
CELL_TIMEOUT = 20
NOTEBOOK_TIMEOUT = 100
#: Small limits for the synthetic week (it needs about 300 MB and 40 threads).
LIMITS = Limits(memory_mb=1536, processes=128, file_mb=64)
#: The grader's limit on an executed notebook read back, for this run (bytes).
MAX_NOTEBOOK_BYTES = 8 * 1024 * 1024


# --------------------------------------------------------------------------- payload builders
def hook(body: str, when: str = "post_run_cell") -> str:
    """Code that runs ``body`` after every cell (``post_run_cell``) or at kernel exit
    (``atexit``); ``body`` sees ``os``, ``json``, ``np`` and ``ANSWERS`` (the answers folder)."""
    indented = "\n".join("    " + line for line in body.strip().splitlines())
    register = ("get_ipython().events.register('post_run_cell', _attack)"
                if when == "post_run_cell" else "__import__('atexit').register(_attack)")
    return (f"import os, json\nimport numpy as np\nANSWERS = '/sandbox/answers'\n"
            f"def _attack(*_args):\n    try:\n{_indent(indented)}\n"
            f"    except Exception as err:\n        print('attack failed:', err)\n{register}\n")


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def rewrite_answers(values: str, status: str) -> str:
    """A hook body that rewrites every exported answer file with ``values`` / ``status``
    (Python expressions over ``name``, the grade id)."""
    return f"""
for file in os.listdir(ANSWERS):
    if file.endswith('.json'):
        name = file[:-5]
        with open(os.path.join(ANSWERS, file), 'w') as out:
            json.dump({{'values': {values}, 'status': {status}}}, out)
"""


def forged_value(value) -> dict:
    """The answer-file encoding of a plain value (see ``utils.course.answers``)."""
    if isinstance(value, str):
        return {"t": "v", "v": value}
    if isinstance(value, float):
        return {"t": "float", "v": value}
    return {"t": "int", "v": str(value)}


NPZ_BOMB = """
import zipfile, struct
def _bomb(path, megabytes):
    # an .npy of zeros declaring `megabytes` MB, compressed to a few hundred kB
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (%d,), }" % (megabytes * 131072)
    header = header + ' ' * (63 - (len(header) + 10) % 64) + '\\n'
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as zf:
        with zf.open('a0.npy', 'w', force_zip64=True) as f:
            f.write(b'\\x93NUMPY\\x01\\x00' + struct.pack('<H', len(header)) + header.encode())
            chunk = bytes(1 << 20)
            for _ in range(megabytes):
                f.write(chunk)
"""


def attackers(course: Path, subs: Path) -> dict[str, dict[str, str]]:
    """``{learner: {grade id of a solution cell: its source}}`` of every issue-25 attacker."""
    trusted = course / "trusted" / "00_synthetic"
    honest_out = course / "sandbox" / "honest" / "00_synthetic" / "output.ipynb"
    wrong = {"w0_ex1": "signal_mean = 0.0", "w0_ex2": "answer = 'A'", "w0_ex3": "energy = 0.0"}
    return {
        # the list of exported names emptied: the hidden test ran on the reference values
        "forge_empty": {**wrong, "w0_ex1": wrong["w0_ex1"] + "\n" + hook(
            rewrite_answers("{}", "{}"))},
        # made-up and real names claimed "not exportable"
        "forge_claims": {**wrong, "w0_ex1": wrong["w0_ex1"] + "\n" + hook(rewrite_answers(
            "{}", "{'made_up': 'not exportable: function', 'signal_mean': 'not exportable: "
            "function', 'answer': 'not exportable: x', 'energy': 'not exportable: x'}"))},
        # extra names overwrite the grader's data: with signal = zeros the wrong answers pass
        "forge_extra": {**wrong, "w0_ex2": "answer = 'Z'", "w0_ex1": wrong["w0_ex1"] + "\n" + hook(
            rewrite_answers(
                "{'signal': {'t': 'list', 'items': [{'t': 'float', 'v': 0.0}] * 10}, "
                "'signal_mean': {'t': 'float', 'v': 0.0}, 'energy': {'t': 'float', 'v': 0.0},"
                " 'answer': {'t': 'v', 'v': 'Z'}}",
                "{'signal': 'ok', 'signal_mean': 'ok', 'energy': 'ok', 'answer': 'ok'}"))},
        # names that break a restore step in the trusted kernel (then: the next learners lost
        # points, or the whole run crashed)
        "forge_shadow": {**wrong, "w0_ex1": wrong["w0_ex1"] + "\n" + hook(rewrite_answers(
            "{n: {'t': 'int', 'v': '0'} for n in ['globals', '__import__', '__builtins__', "
            "'print', 'AssertionError', 'abs', 'float', 'np', '__grader_saved', "
            "'get_ipython', 'signal_mean', 'answer', 'energy']}",
            "{n: 'ok' for n in ['globals', '__import__', '__builtins__', 'print', "
            "'AssertionError', 'abs', 'float', 'np', '__grader_saved', 'get_ipython', "
            "'signal_mean', 'answer', 'energy']}"))},
        # answer files as links to the trusted reference answers; the folder itself as a link
        "link_files": {**wrong, "w0_ex1": wrong["w0_ex1"] + "\n" + hook(f"""
for gid in ('w0_ex1_test', 'w0_ex2_test', 'w0_ex3_test'):
    for ext in ('.json', '.npz'):
        path = os.path.join(ANSWERS, gid + ext)
        if os.path.lexists(path):
            os.remove(path)
        os.symlink({str(trusted / 'reference')!r} + '/' + gid + ext, path)
""", when="atexit")},
        "link_dir": {**wrong, "w0_ex1": wrong["w0_ex1"] + "\n" + hook(f"""
import shutil
shutil.rmtree(ANSWERS)
os.symlink({str(trusted / 'reference')!r}, ANSWERS)
""", when="atexit")},
        # the executed notebook as a link to another learner's (their outputs in my feedback)
        "link_output": {**SOLVED, "w0_ex3": SOLVED["w0_ex3"] + "\n" + hook(f"""
os.remove('/sandbox/output.ipynb')
os.symlink({str(honest_out)!r}, '/sandbox/output.ipynb')
""", when="atexit")},
        # named pipes where the grader reads status.json and an answer file
        "fifo": {**SOLVED, "w0_ex2": "answer = 'B'\n" + hook("""
for path in ('/sandbox/status.json', os.path.join(ANSWERS, 'w0_ex2_test.json')):
    if os.path.lexists(path):
        os.remove(path)
    os.mkfifo(path)
""", when="atexit")},
        # an answer file of 150 kB that decompresses to 128 MB (over the 64 MB limit), and
        # one nested 100,000 deep: written right after the grader's export of each test
        "bomb": {**SOLVED, "w0_ex1": SOLVED["w0_ex1"] + "\n" + NPZ_BOMB + hook("""
done = globals().setdefault('_bombed', set())
json2 = os.path.join(ANSWERS, 'w0_ex2_test.json')
if os.path.exists(json2) and 'ex2' not in done:
    with open(json2, 'w') as out:
        out.write('{"values": {"answer": ' + '{"t": "list", "items": [' * 100000
                  + ']}' * 100000 + '}, "status": {"answer": "ok"}}')
    done.add('ex2')
npz3 = os.path.join(ANSWERS, 'w0_ex3_test.npz')
if os.path.exists(npz3) and 'ex3' not in done:
    _bomb(npz3, 128)
    with open(os.path.join(ANSWERS, 'w0_ex3_test.json'), 'w') as out:
        json.dump({'values': {'energy': {'t': 'array', 'key': 'a0'}},
                   'status': {'energy': 'ok'}}, out)
    done.add('ex3')
""")},
        # 30 MB printed in one cell
        "printer": {**SOLVED, "w0_ex2": "answer = 'B'\nfor _ in range(300):\n"
                                         "    print('x' * 100_000)"},
        # an executed notebook over the grader's limit, written after the sandbox's last save
        "big_output": {**SOLVED, "w0_ex3": SOLVED["w0_ex3"] + "\n" + hook(f"""
with open('/sandbox/output.ipynb', 'w') as out:
    out.write('{{"cells": [], "metadata": {{}}, "nbformat": 4, "nbformat_minor": 5, "x": "'
              + 'y' * {MAX_NOTEBOOK_BYTES + 1024} + '"}}')
""", when="atexit")},
        # memory and processes of the sandbox
        "memory": {**SOLVED, "w0_ex3": "hog = np.ones(int(4e9) // 8)\n" + SOLVED["w0_ex3"]},
        "forker": {**SOLVED, "w0_ex3": """
import subprocess
children = []
try:
    for _ in range(400):
        children.append(subprocess.Popen(['sleep', '60']))
finally:
    print('FORKED', len(children))
energy = float((signal ** 2).sum())
"""},
        # HTML, JavaScript and SVG in outputs and markdown (checked statically here, in
        # Chromium by tests/browser/test_feedback_xss.py)
        "xss": {**SOLVED, "w0_ex1": SOLVED["w0_ex1"] + "\n" + XSS_OUTPUTS},
    }


#: Rich outputs with scripts, as a learner's cell can display them.
XSS_OUTPUTS = """
from IPython.display import display, HTML, Javascript, SVG
display(HTML("<script>window.__xss='html'</script><img src=x onerror=\\"window.__xss='img'\\">"))
display(Javascript("window.__xss = 'javascript'"))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg"><script>window.__xss="svg"</script></svg>'))
display({'text/html': '<b onmouseover="window.__xss=1">XSS-RICH-OUTPUT</b>',
         'image/png': 'x" onerror="window.__xss=2'}, raw=True,
        metadata={'image/png': {'width': '1 onerror=window.__xss=3'}})
"""
#: A learner's markdown cell: raw HTML, an image with onerror, a javascript: link.
XSS_MARKDOWN = ('XSS-MARKDOWN <img src=x onerror="window.__xss=\'md\'"> '
                '<script>window.__xss="md-script"</script> [click](javascript:window.__xss=4) '
                '<svg onload="window.__xss=5"></svg> $x$ [ok](https://example.org)')


def learner_notebook(released, markdown: str | None = None, **cells: str):
    """The learner version with the solution cell of each exercise in ``cells`` replaced (and
    a markdown cell plus a raw HTML cell added when ``markdown`` is given)."""
    nb = nbformat.read(released, as_version=4)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in cells:
            cell.source = cells[gid]
    if markdown is not None:
        nb.cells.insert(1, nbformat.v4.new_markdown_cell(markdown))
        nb.cells.insert(2, nbformat.v4.new_raw_cell(
            "<script>window.__xss='raw'</script>XSS-RAW-CELL"))
    return nb


def with_manual_exercise(nb):
    """Add a written answer graded by hand (an nbgrader manually graded markdown cell)."""
    nb.cells.insert(-1, nbformat.v4.new_markdown_cell(
        "**Exercise 4** (2 points, graded by hand): why is the mean 4.5?"))
    nb.cells.insert(-1, nbformat.v4.new_markdown_cell(
        "Because the values 0..9 are symmetric around 4.5.", metadata={"nbgrader": {
            "grade": True, "solution": True, "locked": False, "grade_id": "w0_ex4",
            "points": 2, "schema_version": 3}}))
    return nb


def sandbox_problem() -> str | None:
    """Why the grading sandbox cannot run here (None when it can)."""
    return _sandbox_problem()


def issue17_attackers(course: Path, subs: Path, source: Path, gradebook: Path, csv: Path,
                      secret_file: Path) -> dict[str, dict[str, str]]:
    """The attackers of issue 17 (escaping the sandbox), unchanged."""
    return {
        # Rewrites every grade in the gradebook and starts a detached process that rewrites
        # the CSV once grading is over; also tries the network.
        "tamper": {"w0_ex1": SOLVED["w0_ex1"], "w0_ex2": SOLVED["w0_ex2"], "w0_ex3": f"""
import os, sqlite3, subprocess, sys, socket
for path in [{str(gradebook)!r}, {str(csv)!r}]:
    try:
        con = sqlite3.connect(path); con.execute("update grade set auto_score = 0"); con.commit()
    except Exception as err:
        print("gradebook:", type(err).__name__)
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3); "
                  "open({str(csv)!r}, 'w').write('hacked')"], start_new_session=True)
try:
    socket.create_connection(("1.1.1.1", 80), timeout=2); print("NETWORK OPEN")
except OSError as err:
    print("network:", err)
energy = float((signal ** 2).sum())
"""},
        # Reads the instructor sources (notebooks/, build/nbgrader/source) and another learner.
        "reader": {"w0_ex1": SOLVED["w0_ex1"], "w0_ex2": f"""
import glob
for pattern in [{str(source)!r}, {str(course / 'source' / '*' / '*.ipynb')!r},
                {str(subs / 'honest' / '*.ipynb')!r}, {str(secret_file)!r},
                {str(course / 'sandbox' / 'honest' / '*' / '*')!r}]:
    for path in glob.glob(pattern):
        print(open(path).read())
print(open('/proc/1/cmdline').read())
answer = 'A'
"""},
        # An input transformer that turns every later cell with an assert into `pass`, and an
        # answer object equal to everything; ex2 and ex3 are not solved.
        "hook": {"w0_ex1": SOLVED["w0_ex1"], "w0_ex2": """
ip = get_ipython()
ip.input_transformers_cleanup.append(
    lambda lines: ["pass\\n"] if any("assert" in line for line in lines) else lines)
np.allclose = lambda *args, **kwargs: True
class Always:
    def __eq__(self, other):
        return True
    __hash__ = object.__hash__
answer = Always()
"""},
        # Kills its parent process (the grader, formerly) in exercise 3.
        "killer": {"w0_ex1": SOLVED["w0_ex1"], "w0_ex2": SOLVED["w0_ex2"],
                   "w0_ex3": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"
                             "energy = float((signal ** 2).sum())"},
        # One cell over the per-cell limit (interrupted); ex1 and ex3 are solved.
        "sleeper": {"w0_ex1": SOLVED["w0_ex1"], "w0_ex3": SOLVED["w0_ex3"],
                    "w0_ex2": "import time\ntime.sleep(10_000)\nanswer = 'B'"},
        # A cell that ignores interrupts: killed 10 s after the cell limit.
        "stubborn": {"w0_ex1": SOLVED["w0_ex1"], "w0_ex2": SOLVED["w0_ex2"],
                     "w0_ex3": "import time\nwhile True:\n    try:\n        time.sleep(1)\n"
                               "    except KeyboardInterrupt:\n        pass"},
    }


@pytest.fixture(scope="session")
def attacked(tmp_path_factory):
    """ONE ``grading.grade`` run of the synthetic week: two honest learners (``honest`` is
    checked among the attackers, ``zz_honest`` after all of them) and every attacker."""
    problem = sandbox_problem()
    if problem is not None:
        pytest.skip(problem)
    root = tmp_path_factory.mktemp("attacks")
    source = write(with_manual_exercise(synthetic_notebook()), root / "notebooks" / SYNTH)
    course = root / "course"
    grading.build_course([source], course_dir=course, student_dir=None)
    released = course / "release" / "00_synthetic" / SYNTH
    gradebook = course / "gradebook.db"
    csv = root / "out" / "grades.csv"
    csv.parent.mkdir(parents=True)
    csv.write_text("stale table of an earlier run\n")
    secret_file = root / "secret.txt"
    secret_file.write_text("instructor-only\n")
    subs = root / "submissions"
    # the honest learners answer the written question too (the others leave it as handed out)
    honest = {**SOLVED, "w0_ex1": SOLVED["w0_ex1"] + f"\nprint({HONEST_MARKER!r})",
              "w0_ex4": "The values are symmetric around 4.5."}
    learners = {"honest": honest, "zz_honest": honest,
                **issue17_attackers(course, subs, source, gradebook, csv, secret_file),
                **attackers(course, subs)}
    for learner, cells in learners.items():
        markdown = XSS_MARKDOWN if learner == "xss" else None
        write(learner_notebook(released, markdown, **cells), subs / learner / SYNTH)
    from utils.course import checking

    limit, checking.MAX_NOTEBOOK_BYTES = checking.MAX_NOTEBOOK_BYTES, MAX_NOTEBOOK_BYTES
    start = time.perf_counter()
    try:
        scores = grading.grade(subs, [source], course_dir=course, csv_path=csv,
                               timeout=CELL_TIMEOUT, notebook_timeout=NOTEBOOK_TIMEOUT, jobs=2,
                               limits=LIMITS)
    finally:
        checking.MAX_NOTEBOOK_BYTES = limit
    seconds = time.perf_counter() - start
    csv_bytes = csv.read_bytes()
    gradebook_hash = hashlib.sha256(gradebook.read_bytes()).hexdigest()
    time.sleep(6)  # the detached process would have rewritten the CSV by now
    return {"scores": scores, "course": course, "csv": csv, "csv_bytes": csv_bytes,
            "gradebook": gradebook, "gradebook_hash": gradebook_hash, "source": source,
            "seconds": seconds, "secret": secret_file, "learners": sorted(learners)}
