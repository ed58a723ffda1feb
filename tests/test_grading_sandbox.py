"""Attacks on ``make grade`` (issue 17) with tiny synthetic notebooks, and what they now get.

The one grading run of ``tests/grading_attacks.py`` (session fixture ``attacked``, shared with
``test_grading_attacks.py``) grades the synthetic week of ``test_grading.py`` with honest
learners and one attacker per attack. Each attacker solves some exercises honestly and attacks
in another cell; the tests check that the honest learner keeps full marks, that no attacker
gains a point it did not earn, and that nothing outside the sandbox was read or changed.
Needs bubblewrap (``bwrap``); skipped with the reason when it cannot run here.

Also fast unit tests of the plain-data answer files and the name analysis.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from grading_attacks import sandbox_problem
from test_grading import SYNTH, synthetic_notebook
from utils.course import answers, checking, grading, sandbox

needs_sandbox = pytest.mark.skipif(sandbox_problem() is not None, reason=str(sandbox_problem()))


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
    print(f"grading {len(attacked['learners'])} synthetic notebooks took "
          f"{attacked['seconds']:.0f} s")
    print(grading.wide_table(attacked["scores"]).to_string())


@needs_sandbox
def test_written_answer_needs_manual_grading(attacked):
    scores = attacked["scores"]
    manual = scores[scores["exercise"] == "w0_ex4"].set_index("learner")
    assert len(manual) == len(attacked["learners"])
    assert manual.loc["honest", "status"] == grading.NEEDS_MANUAL
    assert pd.isna(manual.loc["honest", "score"])
    # an answer left as handed out ("YOUR ANSWER HERE") scores 0, and says why
    others = manual.drop(index=["honest", "zz_honest"])
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


def test_inject_and_reset_from_snapshot(tmp_path):
    """Only the trusted names are injected; reset brings back the snapshot, whatever the
    injected values or the test did (a fresh copy of mutable values the test reads)."""
    answers.export({"x": 1, "y": 2, "globals": 3}, ["x", "y", "globals"], tmp_path / "t")
    data = [1, 2]
    namespace = {"x": 10, "z": 30, "data": data}
    answers.snapshot(namespace)
    answers.reset(namespace, ["data"])
    answers.inject(namespace, tmp_path / "t", ["x", "z"])
    assert namespace == {"x": 1, "data": [1, 2]}  # z undefined by the learner: removed
    namespace["data"].append(3)                    # a test changing a value in place
    answers.reset(namespace)
    assert namespace == {"x": 10, "z": 30, "data": [1, 2]} and namespace["data"] is data


def test_load_keeps_only_trusted_names_and_ignores_claims(tmp_path):
    answers.export({"a": 1.0, "b": 2.0}, ["a", "b"], tmp_path / "t")
    meta = json.loads((tmp_path / "t.json").read_text())
    meta["status"] = {"made_up": "not exportable: x", "b": "not exportable: forged"}
    (tmp_path / "t.json").write_text(json.dumps(meta))
    values, status = answers.load(tmp_path / "t", ["a", "b", "c"])
    assert values == {"a": 1.0, "b": 2.0}
    assert status == {"a": "ok", "b": "ok", "c": "undefined"}


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
