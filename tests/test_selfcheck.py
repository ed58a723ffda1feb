"""The self-checks: right answers pass, wrong ones get "not yet", and the digests hold no answer.

The first part tests :mod:`utils.course.selfcheck` on toy keys (hypothesis over values and
tolerances). The second part holds the course to it: every ``check(...)`` call in a notebook has
recorded digests, prints ``Correct`` in the executed instructor notebook, is followed in the
hidden tests by ``rejects_wrong`` (so ``make test`` shows each check can say no), the
multiple-choice answers are spread over the letters, and no reference value can be read in a
learner version.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from utils.course import selfcheck
from utils.course.grading import BEGIN_SOLUTION, END_SOLUTION

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")) + sorted(
    (ROOT / "notebooks" / "deep_dives").glob("*.ipynb"))
CHECK_RE = re.compile(r"""\bcheck\(\s*["'](?P<gid>[wd]\d+_ex\d+)["']""")
REJECTS_RE = re.compile(r"""\brejects_wrong\(\s*["'](?P<gid>[wd]\d+_ex\d+)["']""")
HIDDEN_RE = re.compile(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS", re.S)
SOLUTION_RE = re.compile(re.escape(BEGIN_SOLUTION) + r".*?" + re.escape(END_SOLUTION), re.S)
NUMBER_RE = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


@pytest.fixture
def keys(tmp_path, monkeypatch):
    path = tmp_path / "keys.json"
    monkeypatch.setattr(selfcheck, "KEYS_PATH", path)
    monkeypatch.delenv(selfcheck.RECORD_ENV, raising=False)
    monkeypatch.delenv(selfcheck.SWITCH_ENV, raising=False)
    return path


# --- the module, on toy answers ---------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(ref=st.floats(-1e6, 1e6, allow_nan=False).filter(lambda v: abs(v) > 1e-6),
       frac=st.floats(-0.5, 0.5), far=st.floats(2.01, 1e3))
def test_a_number_within_half_a_step_passes_and_one_far_away_does_not(ref, frac, far):
    entry = selfcheck.make_entry("w9_ex1", "x", ref)
    step = entry["step"]
    assert selfcheck.matches("w9_ex1", "x", ref + frac * step * 0.999, entry)
    assert not selfcheck.matches("w9_ex1", "x", ref + far * step, entry)
    assert not selfcheck.matches("w9_ex1", "x", ref - far * step, entry)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 300))
def test_an_array_passes_with_rounding_noise_and_fails_when_one_value_moves(seed, n):
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=n)
    entry = selfcheck.make_entry("w9_ex2", "a", ref)
    noise = rng.uniform(-1e-9, 1e-9, size=n)
    assert selfcheck.matches("w9_ex2", "a", ref + noise, entry)
    moved = ref.copy()
    moved[rng.integers(n)] += 1.0
    assert not selfcheck.matches("w9_ex2", "a", moved, entry)
    assert not selfcheck.matches("w9_ex2", "a", ref[:-1], entry)      # shape differs
    assert not selfcheck.matches("w9_ex2", "a", ref[::-1] * 1.01, entry)


@pytest.mark.parametrize("ref, right, wrong", [
    (True, np.True_, False), (3, np.int64(3), 4), ("b", " B ", "c"),
    (["V", "N"], ("v", "n"), ["N", "V"]), (np.array([1, 0, 2]), [1, 0, 2], [1, 0, 3]),
])
def test_exact_answers(ref, right, wrong):
    entry = selfcheck.make_entry("w9_ex3", "e", ref)
    assert selfcheck.matches("w9_ex3", "e", right, entry)
    assert not selfcheck.matches("w9_ex3", "e", wrong, entry)


def test_the_digest_is_salted_by_exercise_and_name():
    a = selfcheck.make_entry("w9_ex1", "x", "b")["digest"]
    assert a != selfcheck.make_entry("w9_ex2", "x", "b")["digest"]
    assert a != selfcheck.make_entry("w9_ex1", "y", "b")["digest"]
    assert "0.123" not in str(selfcheck.make_entry("w9_ex1", "x", 0.123456))


def test_record_then_check(keys, monkeypatch, capsys):
    monkeypatch.setenv(selfcheck.RECORD_ENV, "1")
    assert selfcheck.check("w9_ex1", x=0.25, flag=True, tol={"x": 0.01}) is True
    monkeypatch.delenv(selfcheck.RECORD_ENV)
    capsys.readouterr()
    assert selfcheck.check("w9_ex1", x=0.254, flag=True) is True
    assert "Correct (2 of 2 answers)" in capsys.readouterr().out
    assert selfcheck.check("w9_ex1", x=0.3, flag=True, hints={"x": "use lead 0"}) is False
    out = capsys.readouterr().out
    assert "Not yet - 1 of 2" in out and "x: use lead 0" in out and "0.25" not in out
    assert selfcheck.rejects_wrong("w9_ex1", x=0.25, flag=True)
    assert "0.25" not in keys.read_text()


def test_rejects_wrong_fails_when_the_check_cannot_say_no(keys, monkeypatch):
    monkeypatch.setenv(selfcheck.RECORD_ENV, "1")
    selfcheck.check("w9_ex1", x=0.5, tol={"x": 0.1})   # 20 % off passes: too wide
    monkeypatch.delenv(selfcheck.RECORD_ENV)
    assert not selfcheck.rejects_wrong("w9_ex1", x=0.5)


def test_switched_off_or_not_recorded(keys, monkeypatch, capsys):
    assert selfcheck.check("w9_ex5", x=1.0) is None
    assert "no self-check here" in capsys.readouterr().out
    selfcheck.record("w9_ex5", {"x": 1.0})
    monkeypatch.setenv(selfcheck.SWITCH_ENV, "off")
    assert selfcheck.check("w9_ex5", x=1.0) is None
    assert selfcheck.verdict("w9_ex5", {"x": 1.0}) is None


def test_a_value_that_is_not_plain_data_is_not_right(keys):
    selfcheck.record("w9_ex6", {"x": 1.0})
    assert selfcheck.verdict("w9_ex6", {"x": object()}) == {"x": False}
    assert selfcheck.verdict("w9_ex6", {"x": float("nan")}) == {"x": False}
    assert selfcheck.verdict("w9_ex6", {"y": 1.0}) == {"y": False}


# --- the course --------------------------------------------------------------------------------

def _checks(nb) -> list[tuple[str, object]]:
    return [(m["gid"], cell) for cell in nb.cells if cell.cell_type == "code"
            for m in CHECK_RE.finditer(HIDDEN_RE.sub("", cell.source))]


def _course_checks() -> list[tuple[Path, str, object]]:
    return [(path, gid, cell) for path in NOTEBOOKS
            for gid, cell in _checks(nbformat.read(path, as_version=4))]


def test_every_self_check_is_recorded_and_says_correct_in_the_instructor_notebook():
    keys = selfcheck.load_keys()
    found = _course_checks()
    for path, gid, cell in found:
        assert gid in keys, f"{path.name}: no digests recorded for {gid} (make notebooks)"
        text = "".join(out.get("text", "") for out in cell.get("outputs", [])
                       if out.get("output_type") == "stream")
        assert f"{gid}: Correct" in text, f"{path.name} {gid}: the solution does not pass its check"
    stale = set(keys) - {gid for _, gid, _ in found}
    assert not stale, f"digests of exercises no notebook checks: {sorted(stale)}"


def test_every_self_check_is_shown_to_reject_wrong_answers_in_the_hidden_tests():
    for path, gid, cell in _course_checks():
        hidden = "".join(HIDDEN_RE.findall(cell.source))
        assert gid in {m["gid"] for m in REJECTS_RE.finditer(hidden)}, \
            f"{path.name} {gid}: the hidden tests do not call rejects_wrong({gid!r}, ...)"


def _choice(gid: str, name: str, entry: dict) -> str | None:
    if entry["kind"] != "exact":
        return None
    hits = [c for c in selfcheck.CHOICES if selfcheck.matches(gid, name, c, entry)]
    return hits[0] if hits else None


def test_multiple_choice_answers_are_spread_over_the_letters():
    letters = [c for gid, entries in selfcheck.load_keys().items()
               for name, entry in entries.items() if (c := _choice(gid, name, entry))]
    if len(letters) >= 2:
        assert len(set(letters)) > 1, f"every multiple-choice answer is {letters[0]!r}"


def _learner_text(nb) -> str:
    """What a learner version shows: sources without solutions or hidden tests, the outputs of
    every cell but the solution cells (whose outputs nbgrader clears)."""
    parts = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "markdown" and meta.get("solution"):
            continue
        parts.append(HIDDEN_RE.sub("", SOLUTION_RE.sub("", cell.source)))
        if cell.cell_type == "code" and not meta.get("solution"):
            for out in cell.get("outputs", []):
                parts.append(out.get("text", ""))
                parts.extend(str(v) for k, v in out.get("data", {}).items()
                             if k.startswith("text/") and k != "text/html")
    return "\n".join(parts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_no_reference_value_is_readable_in_the_learner_version(path):
    keys = selfcheck.load_keys()
    nb = nbformat.read(path, as_version=4)
    gids = {gid for gid, _ in _checks(nb)}
    numbers = {float(t) for t in NUMBER_RE.findall(_learner_text(nb))}
    for gid in sorted(gids & set(keys)):
        for name, entry in keys[gid].items():
            if entry["kind"] != "number":
                continue   # letters, booleans and small integers appear in any text
            leaked = [v for v in numbers if selfcheck.matches(gid, name, v, entry)]
            assert not leaked, f"{path.name}: the answer {gid}.{name} is readable ({leaked[0]})"
