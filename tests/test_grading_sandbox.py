"""Attacks on ``make grade`` (issue 17) with tiny synthetic notebooks, and what they now get.

One grading run (module fixture) of the synthetic week of ``test_grading.py`` with an honest
learner and one attacker per attack. Each attacker solves some exercises honestly and attacks
in another cell; the tests check that the honest learner keeps full marks, that no attacker
gains a point it did not earn, and that nothing outside the sandbox was read or changed.
Needs bubblewrap (``bwrap``); skipped with the reason when it cannot run here.

Also fast unit tests of the plain-data answer files and the name analysis.
"""
from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from test_grading import SYNTH, synthetic_notebook, write
from utils.course import answers, checking, grading, sandbox

SOLVED = {
    "w0_ex1": "signal_mean = float(np.mean(signal))",
    "w0_ex2": "answer = 'B'",
    "w0_ex3": "energy = float((signal ** 2).sum())",
}


def with_manual_exercise(nb):
    """Add a written answer graded by hand (an nbgrader manually graded markdown cell)."""
    nb.cells.insert(-1, nbformat.v4.new_markdown_cell(
        "**Exercise 4** (2 points, graded by hand): why is the mean 4.5?"))
    nb.cells.insert(-1, nbformat.v4.new_markdown_cell(
        "Because the values 0..9 are symmetric around 4.5.", metadata={"nbgrader": {
            "grade": True, "solution": True, "locked": False, "grade_id": "w0_ex4",
            "points": 2, "schema_version": 3}}))
    return nb


def learner_notebook(released, **cells: str):
    """The learner version with the solution cell of each exercise in ``cells`` replaced."""
    nb = nbformat.read(released, as_version=4)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in cells:
            cell.source = cells[gid]
    return nb


def _sandbox_works() -> str | None:
    try:
        sandbox.check_sandbox()
    except sandbox.SandboxUnavailable as err:
        return str(err)
    return None


SANDBOX_PROBLEM = _sandbox_works()
needs_sandbox = pytest.mark.skipif(SANDBOX_PROBLEM is not None, reason=str(SANDBOX_PROBLEM))

CELL_TIMEOUT = 20
NOTEBOOK_TIMEOUT = 100


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    root = tmp_path_factory.mktemp("attacks")
    source = write(with_manual_exercise(synthetic_notebook()), root / "notebooks" / SYNTH)
    course = root / "course"
    grading.build_course([source], course_dir=course, student_dir=None)
    released = course / "release" / "00_synthetic" / SYNTH
    gradebook = course / "gradebook.db"
    csv = root / "out" / "grades.csv"
    secret_file = root / "secret.txt"
    secret_file.write_text("instructor-only\n")
    subs = root / "submissions"
    # the honest learner answers the written question too (the others leave it as handed out)
    honest = learner_notebook(released, **SOLVED, w0_ex4="The values are symmetric around 4.5.")
    write(honest, subs / "honest" / SYNTH)
    # Rewrites every grade in the gradebook and starts a detached process that rewrites the
    # CSV once grading is over; also tries the network.
    write(learner_notebook(released, w0_ex1=SOLVED["w0_ex1"], w0_ex2=SOLVED["w0_ex2"], w0_ex3=f"""
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
"""), subs / "tamper" / SYNTH)
    # Reads the instructor sources (notebooks/, build/nbgrader/source) and another learner.
    write(learner_notebook(released, w0_ex1=SOLVED["w0_ex1"], w0_ex2=f"""
import glob
for pattern in [{str(source)!r}, {str(course / 'source' / '*' / '*.ipynb')!r},
                {str(subs / 'honest' / '*.ipynb')!r}, {str(secret_file)!r},
                {str(course / 'sandbox' / 'honest' / '*' / '*')!r}]:
    for path in glob.glob(pattern):
        print(open(path).read())
print(open('/proc/1/cmdline').read())
answer = 'A'
"""), subs / "reader" / SYNTH)
    # An input transformer that turns every later cell with an assert into `pass`, and an
    # answer object equal to everything; ex2 and ex3 are not solved.
    write(learner_notebook(released, w0_ex1=SOLVED["w0_ex1"], w0_ex2="""
ip = get_ipython()
ip.input_transformers_cleanup.append(
    lambda lines: ["pass\\n"] if any("assert" in line for line in lines) else lines)
np.allclose = lambda *args, **kwargs: True
class Always:
    def __eq__(self, other):
        return True
    __hash__ = object.__hash__
answer = Always()
"""), subs / "hook" / SYNTH)
    # Kills its parent process (the grader, formerly) in exercise 3.
    write(learner_notebook(released, w0_ex1=SOLVED["w0_ex1"], w0_ex2=SOLVED["w0_ex2"],
                           w0_ex3="import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"
                                  "energy = float((signal ** 2).sum())"),
          subs / "killer" / SYNTH)
    # One cell over the per-cell limit (interrupted); ex1 and ex3 are solved.
    write(learner_notebook(released, w0_ex1=SOLVED["w0_ex1"], w0_ex3=SOLVED["w0_ex3"],
                           w0_ex2="import time\ntime.sleep(10_000)\nanswer = 'B'"),
          subs / "sleeper" / SYNTH)
    # A cell that ignores interrupts: only the notebook's limit stops it.
    write(learner_notebook(released, w0_ex1=SOLVED["w0_ex1"], w0_ex2=SOLVED["w0_ex2"],
                           w0_ex3="import time\nwhile True:\n    try:\n        time.sleep(1)\n"
                                  "    except KeyboardInterrupt:\n        pass"),
          subs / "stubborn" / SYNTH)
    start = time.perf_counter()
    scores = grading.grade(subs, [source], course_dir=course, csv_path=csv,
                           timeout=CELL_TIMEOUT, notebook_timeout=NOTEBOOK_TIMEOUT, jobs=2)
    seconds = time.perf_counter() - start
    csv_bytes = csv.read_bytes()
    gradebook_hash = hashlib.sha256(gradebook.read_bytes()).hexdigest()
    time.sleep(6)  # the detached process would have rewritten the CSV by now
    return {"scores": scores, "course": course, "csv": csv, "csv_bytes": csv_bytes,
            "gradebook": gradebook, "gradebook_hash": gradebook_hash, "source": source,
            "seconds": seconds, "secret": secret_file}


def _points(scores: pd.DataFrame, learner: str) -> dict[str, float]:
    """Autograded points of ``learner`` (the hand-graded exercise is checked separately)."""
    rows = scores[(scores["learner"] == learner) & (scores["exercise"] != "w0_ex4")]
    return dict(zip(rows["exercise"], rows["score"]))


def _printed(attacked, learner: str) -> str:
    """What the learner's cells printed in the sandbox (outputs only, not the code)."""
    nb = nbformat.read(attacked["course"] / "sandbox" / learner / "00_synthetic" /
                       "output.ipynb", as_version=4)
    return "\n".join(str(o.get("text", "")) + str(o.get("evalue", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def _feedback(attacked, learner: str) -> str:
    path = attacked["course"] / "feedback" / learner / "00_synthetic" / SYNTH.replace(
        ".ipynb", ".html")
    return path.read_text()


FULL = {"w0_ex1": 2.0, "w0_ex2": 1.0, "w0_ex3": 3.0}


@needs_sandbox
def test_honest_learner_keeps_full_marks(attacked):
    assert _points(attacked["scores"], "honest") == FULL
    print(f"grading 7 synthetic notebooks took {attacked['seconds']:.0f} s")
    print(grading.wide_table(attacked["scores"]).to_string())


@needs_sandbox
def test_written_answer_needs_manual_grading(attacked):
    scores = attacked["scores"]
    manual = scores[scores["exercise"] == "w0_ex4"].set_index("learner")
    assert len(manual) == 7
    assert manual.loc["honest", "status"] == grading.NEEDS_MANUAL
    assert pd.isna(manual.loc["honest", "score"])
    # an answer left as handed out ("YOUR ANSWER HERE") scores 0, and says why
    others = manual.drop(index="honest")
    assert (others["status"] == grading.NO_ANSWER).all() and (others["score"] == 0).all()
    wide = grading.wide_table(scores).set_index("learner")
    assert wide.loc["honest", "max"] == 8.0 and wide.loc["honest", "manual_pending"] == 2.0
    assert wide.loc["honest", "total"] == 6.0


@needs_sandbox
def test_tamper_cannot_touch_gradebook_csv_or_network(attacked):
    assert attacked["csv"].read_bytes() == attacked["csv_bytes"], "CSV rewritten after grading"
    assert hashlib.sha256(attacked["gradebook"].read_bytes()).hexdigest() == \
        attacked["gradebook_hash"]
    long = pd.read_csv(attacked["csv"])
    assert _points(long, "honest") == FULL
    assert _points(attacked["scores"], "tamper") == FULL  # it solved all three, no more
    with sqlite3.connect(attacked["gradebook"]) as con:
        assert con.execute("select count(*) from grade where auto_score > 0").fetchone()[0] > 0
    printed = _printed(attacked, "tamper")
    assert "NETWORK OPEN\n" not in printed and "network:" in printed


@needs_sandbox
def test_reader_sees_no_sources_hidden_tests_or_other_learners(attacked):
    assert _points(attacked["scores"], "reader") == {"w0_ex1": 2.0, "w0_ex2": 0.0,
                                                     "w0_ex3": 0.0}
    outputs = _printed(attacked, "reader")
    text = _feedback(attacked, "reader") + outputs
    for secret in ("assert answer == 'B'", "signal_mean = float(np.mean(signal))",
                   "energy = float((signal ** 2).sum())", "instructor-only", "BEGIN HIDDEN"):
        assert secret not in text, secret
    assert "utils.course.sandbox" in outputs  # pid 1 is the sandbox, not the grader


@needs_sandbox
def test_input_hook_and_patched_checks_gain_nothing(attacked):
    assert _points(attacked["scores"], "hook") == {"w0_ex1": 2.0, "w0_ex2": 0.0,
                                                   "w0_ex3": 0.0}
    assert "must be plain data" in _feedback(attacked, "hook")


@needs_sandbox
def test_killing_the_parent_costs_only_later_exercises(attacked):
    assert _points(attacked["scores"], "killer") == {"w0_ex1": 2.0, "w0_ex2": 1.0,
                                                     "w0_ex3": 0.0}
    assert "did not run to the end" in _feedback(attacked, "killer")


@needs_sandbox
def test_cell_over_the_time_limit_costs_only_its_exercise(attacked):
    assert _points(attacked["scores"], "sleeper") == {"w0_ex1": 2.0, "w0_ex2": 0.0,
                                                      "w0_ex3": 3.0}


@needs_sandbox
def test_notebook_time_limit_keeps_earlier_exercises(attacked):
    assert _points(attacked["scores"], "stubborn") == {"w0_ex1": 2.0, "w0_ex2": 1.0,
                                                       "w0_ex3": 0.0}
    assert "time limit" in _feedback(attacked, "stubborn") or \
        "did not run to the end" in _feedback(attacked, "stubborn")


# --------------------------------------------------------------------------- fast unit tests
def test_answers_roundtrip_plain_data(tmp_path):
    namespace = {"a": np.arange(6.0).reshape(2, 3), "b": {"CNN": 4, "LSTM": None},
                 "c": ("x", 1.5, [True, np.float32(2.5)]), "d": np.int64(7),
                 "e": float("nan"), "f": lambda x: x, "g": np.array([object()])}
    status = answers.export(namespace, ["a", "b", "c", "d", "e", "f", "g", "h"],
                            tmp_path / "t")
    assert status["f"].startswith("not exportable") and status["g"].startswith("not exp")
    assert status["h"] == "undefined"
    values, _ = answers.load(tmp_path / "t")
    np.testing.assert_array_equal(values["a"], namespace["a"])
    assert values["b"] == {"CNN": 4, "LSTM": None} and values["d"] == 7
    assert values["c"] == ("x", 1.5, [True, 2.5]) and np.isnan(values["e"])


def test_answers_string_subclass_becomes_plain(tmp_path):
    class Sneaky(str):
        def __eq__(self, other):
            return True
        __hash__ = str.__hash__

    answers.export({"x": Sneaky("a")}, ["x"], tmp_path / "t")
    values, _ = answers.load(tmp_path / "t")
    assert type(values["x"]) is str and values["x"] != "b"


def test_answers_refuse_pickles_and_garbage(tmp_path):
    np.savez(tmp_path / "t.npz", a0=np.array([{"x": 1}], dtype=object))
    (tmp_path / "t.json").write_text('{"status": {"x": "ok"}, "values": '
                                     '{"x": {"t": "array", "key": "a0"}}}')
    with pytest.raises(ValueError, match="unreadable"):
        answers.load(tmp_path / "t")
    with pytest.raises(ValueError, match="no answers"):
        answers.load(tmp_path / "missing")


def test_inject_and_restore(tmp_path):
    answers.export({"x": 1, "y": 2}, ["x", "y", "z"], tmp_path / "t")
    namespace = {"x": 10, "z": 30}
    saved = answers.inject(namespace, tmp_path / "t")
    assert namespace == {"x": 1, "y": 2}
    answers.restore(namespace, saved)
    assert namespace == {"x": 10, "z": 30}


def test_exported_names_are_the_answers_a_test_reads():
    names = checking.exported_names(synthetic_notebook())
    assert names == {"w0_ex1_test": ["signal_mean"], "w0_ex2_test": ["answer"],
                     "w0_ex3_test": ["energy"]}


def test_plain_errors_hide_test_source():
    out = nbformat.v4.new_output("error", ename="AssertionError", evalue="look again",
                                 traceback=["assert answer == 'B'", "AssertionError: look"])
    assert checking.plain_errors([out])[0]["traceback"] == ["AssertionError: look again"]


def test_sandbox_input_restores_tests_without_hidden_part(tmp_path):
    source = synthetic_notebook()
    release = synthetic_notebook()
    for cell in release.cells:
        cell.source = cell.source.split("### BEGIN HIDDEN")[0]
    submission = synthetic_notebook()
    submission.cells[4].source = "pass  # test edited away"
    nb, plan = checking.sandbox_input(submission, release, source)
    assert nb.cells[4].source.startswith("assert abs(signal_mean")
    assert "HIDDEN" not in grading.notebook_text(nb)
    assert plan == {"4": {"grade_id": "w0_ex1_test", "names": ["signal_mean"]},
                    "7": {"grade_id": "w0_ex2_test", "names": ["answer"]},
                    "10": {"grade_id": "w0_ex3_test", "names": ["energy"]}}


def test_missing_bwrap_names_the_fix(monkeypatch):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    with pytest.raises(sandbox.SandboxUnavailable, match="apt-get install -y bubblewrap"):
        sandbox.bwrap_path()


def test_offline_math_draws_tex_without_mathjax():
    html = ('<script src="https://cdn.jsdelivr.net/npm/mathjax@2/MathJax.js"></script>'
            '<p>Pearson $\\rho$ costs $5 or $6</p><pre>$x$</pre>')
    out = grading.offline_math(html)
    assert "mathjax" not in out.lower().replace("offline-math", "")
    assert 'alt="\\rho"' in out and "data:image/svg+xml" in out
    assert "$5 or $6" in out and "<pre>$x$</pre>" in out


def test_week_totals_and_missing_weeks():
    long = pd.DataFrame({
        "learner": ["a", "a", "a", "a", "b", "b", "b", "b"],
        "assignment": ["01", "01", "02", "02"] * 2,
        "exercise": ["e1", "e2", "e1", "m1"] * 2,
        "score": [1.0, 2.0, 0.5, np.nan, np.nan, np.nan, 1.0, np.nan],
        "max_score": [1.0, 2.0, 1.0, 2.0] * 2,
        "status": ["graded", "graded", "graded", grading.NEEDS_MANUAL,
                   grading.MISSING, grading.MISSING, "graded", grading.NEEDS_MANUAL]})
    summary = grading.summary_table(long).set_index("learner")
    assert summary.loc["a", "01"] == 3.0 and summary.loc["a", "02"] == 0.5
    assert np.isnan(summary.loc["b", "01"]) and summary.loc["b", "02"] == 1.0
    assert summary.loc["a", "max"] == 6.0 and summary.loc["b", "max"] == 3.0
    assert summary.loc["b", "total"] == 1.0 and summary.loc["a", "manual_pending"] == 2.0
    wide = grading.wide_table(long).set_index("learner")
    assert {"01", "02", "01/e1", "02/m1", "total", "max"} <= set(wide.columns)
    assert np.isnan(wide.loc["b", "01/e1"]) and wide.loc["b", "02"] == 1.0


def test_mitdb_behind_a_link_is_bound_and_named_by_its_real_path(tmp_path, monkeypatch):
    """CI points MITDB_DIR at ../shared/mitdb, which may be a symbolic link under /tmp; the
    sandbox's fresh /tmp hides the link, so the variable must name the bound real path."""
    from utils.course import sandbox

    real = tmp_path / "real_mitdb"
    real.mkdir()
    link = tmp_path / "shared"
    link.symlink_to(real)
    monkeypatch.setenv(sandbox.MITDB_ENV, str(link))
    cmd = sandbox.sandbox_command(tmp_path, ["python", "-V"])
    pairs = list(zip(cmd, cmd[1:], cmd[2:]))
    assert ("--ro-bind", str(real.resolve()), str(real.resolve())) in pairs
    assert ("--setenv", sandbox.MITDB_ENV, str(real.resolve())) in pairs
