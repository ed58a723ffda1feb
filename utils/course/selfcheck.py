"""Feedback before grading: ``check()`` tells a learner right or "not yet", with a hint,
without the notebook holding the answer.

In the style of Kaggle Learn's ``learntools`` (``q1.check()``, ``q1.hint()``). Written here
rather than taken from ``learntools`` because that package holds its solutions as plain code in
the package and is bound to Kaggle's own course data; here the reference value must never be
readable in a learner's release, so we keep only *digests* of it.

How it works. The instructor notebook calls, in the visible part of each exercise's test cell::

    check("w1_ex3", t_top_V=t_top_V, v_in_qrs=v_in_qrs, hints={"t_top_V": "lead 0 ..."})

- When ``make notebooks`` executes the instructor notebooks (``SELFCHECK_RECORD=1``), the values
  passed are the solution's, and :func:`check` records for each one a salted SHA-256 digest in
  ``utils/course/selfcheck_keys.json`` (:data:`KEYS_PATH`), then checks against it (it prints
  ``Correct``; nbval keeps that output under test).
- In a learner's notebook the same call compares the learner's values with the digests:
  ``Correct``, or ``Not yet`` with the hint of each answer that is not right. It never raises.
- Numbers are compared with a tolerance: the digest is taken of ``round(value / step)``, and a
  value is accepted when its own rounded multiple is within one step of the recorded one (so
  every value within ``step / 2`` of the reference is accepted, none farther than
  ``2 * step``; a value on a rounding boundary on one CPU is still accepted on another). The
  step is stored beside the digest, so a learner can tell the answer's order of magnitude, not
  its value. Arrays are compared through three seeded random projections (a sketch), plus their
  shape. Booleans, integers, strings (case-insensitive) and lists of them are compared exactly.
- A multiple-choice answer has four options, so its digest is as good as the letter to anyone
  who tries them all; the self-check tells right or wrong anyway, so nothing is lost. The hidden
  tests stay the authority for graded courses.
- ``SELFCHECK=off`` (an instructor's graded release: ``make release SELFCHECK=off`` leaves the
  keys file out) switches the feedback off with a one-line note.

:func:`rejects_wrong` is for the hidden tests of the instructor notebook: it asserts that wrong
variants of the given values (numbers moved by many steps, negated booleans, the other letters,
shifted arrays) all get "not yet", so every ``make test`` shows that each self-check can say no.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

#: Where the digests live (a derived artefact, committed; left out of a graded release).
KEYS_PATH: Path = Path(__file__).with_name("selfcheck_keys.json")
#: Salt of every digest (with the grade id and the answer's name): no lookup table of common
#: numbers can be shared between courses or exercises.
SALT: str = "xai-ecg-selfcheck-v1"
#: Random projections of an array answer.
N_PROJECTIONS: int = 3
#: Multiple-choice letters (an answer of one of these letters is a choice).
CHOICES: str = "abcdef"
#: Environment variable that records the digests (set by ``make notebooks``).
RECORD_ENV: str = "SELFCHECK_RECORD"
#: Environment variable that switches the self-checks off (``off``).
SWITCH_ENV: str = "SELFCHECK"


def _digest(grade_id: str, name: str, payload: str) -> str:
    return hashlib.sha256(f"{SALT}|{grade_id}|{name}|{payload}".encode()).hexdigest()[:24]


def _kind(value: Any) -> str:
    """``exact`` (bool, int, str, lists of them), ``number`` (a float) or ``array``."""
    if isinstance(value, (bool, np.bool_, str, int, np.integer)):
        return "exact"
    if isinstance(value, (float, np.floating)):
        return "number"
    arr = np.asarray(value)
    if arr.dtype.kind in "biuUS":
        return "exact"
    if arr.dtype.kind == "f":
        return "array"
    raise TypeError(f"cannot self-check a value of type {type(value).__name__}")


def _canonical(value: Any) -> str:
    """One text per exact value: ``True`` and ``np.True_`` alike, strings lower-cased."""
    if isinstance(value, (str, np.str_)):
        return json.dumps(str(value).strip().lower())
    if isinstance(value, (bool, np.bool_)):
        return json.dumps(bool(value))
    if isinstance(value, (int, np.integer)):
        return json.dumps(int(value))
    arr = np.asarray(value)
    if arr.dtype.kind in "US":
        return json.dumps([arr.shape, [str(v).strip().lower() for v in arr.ravel()]])
    if arr.dtype.kind == "b":
        return json.dumps([arr.shape, arr.astype(bool).ravel().tolist()])
    return json.dumps([arr.shape, arr.astype(np.int64).ravel().tolist()])


def _default_step(kind: str, value: Any) -> float:
    """A tolerance of about 1e-3 of the value's size (its leading digit's place / 1000)."""
    size = abs(float(value)) if kind == "number" else float(np.sqrt(np.mean(np.square(value))))
    if not math.isfinite(size) or size == 0.0:
        return 1e-9
    return 10.0 ** (math.floor(math.log10(size)) - 3)


def _projections(grade_id: str, name: str, n: int) -> np.ndarray:
    seed = int(_digest(grade_id, name, "projection")[:8], 16)
    return np.random.default_rng(seed).standard_normal((N_PROJECTIONS, n)) / math.sqrt(max(n, 1))


def _sketch(grade_id: str, name: str, arr: np.ndarray) -> np.ndarray:
    flat = np.asarray(arr, dtype=np.float64).ravel()
    return _projections(grade_id, name, flat.size) @ flat


def make_entry(grade_id: str, name: str, value: Any, step: float | None = None) -> dict:
    """The stored form of one reference value: its kind, tolerance step and digests."""
    kind = _kind(value)
    if kind == "exact":
        return {"kind": kind, "digest": _digest(grade_id, name, _canonical(value))}
    if kind == "number":
        step = float(step or _default_step(kind, value))
        return {"kind": kind, "step": step,
                "digest": _digest(grade_id, name, str(round(float(value) / step)))}
    arr = np.asarray(value, dtype=np.float64)
    step = float(step or _default_step(kind, arr))
    sketch = _sketch(grade_id, name, arr)
    return {"kind": kind, "step": step, "shape": list(arr.shape),
            "digests": [_digest(grade_id, name, f"{i}:{round(p / step)}")
                        for i, p in enumerate(sketch)]}


def _near(grade_id: str, name: str, label: str, x: float, step: float, digest: str) -> bool:
    if not math.isfinite(x):
        return False
    k = round(x / step)
    return any(_digest(grade_id, name, f"{label}{k + d}") == digest for d in (-1, 0, 1))


def matches(grade_id: str, name: str, value: Any, entry: Mapping) -> bool:
    """Whether ``value`` is the recorded reference of ``entry`` (within its tolerance)."""
    try:
        kind = _kind(value)
    except TypeError:
        return False
    if entry["kind"] == "exact":
        return kind == "exact" and _digest(grade_id, name, _canonical(value)) == entry["digest"]
    if entry["kind"] == "number":
        if kind != "number" and not (kind == "exact" and np.ndim(value) == 0
                                     and not isinstance(value, (str, bool, np.bool_))):
            return False
        return _near(grade_id, name, "", float(value), entry["step"], entry["digest"])
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu" or list(arr.shape) != list(entry["shape"]):
        return False
    sketch = _sketch(grade_id, name, arr)
    return all(_near(grade_id, name, f"{i}:", float(p), entry["step"], d)
               for i, (p, d) in enumerate(zip(sketch, entry["digests"])))


def load_keys(path: Path | None = None) -> dict:
    """The recorded digests (of :data:`KEYS_PATH` unless ``path``), ``{}`` when the file is
    absent (self-checks off)."""
    try:
        return json.loads(Path(path or KEYS_PATH).read_text())
    except FileNotFoundError:
        return {}


def record(grade_id: str, answers: Mapping[str, Any], tol: Mapping[str, float] | None = None,
           path: Path | None = None) -> None:
    """Store the digests of the solution's ``answers`` for ``grade_id`` (replacing old ones)."""
    path = Path(path or KEYS_PATH)
    keys = load_keys(path)
    keys[grade_id] = {name: make_entry(grade_id, name, value, (tol or {}).get(name))
                      for name, value in sorted(answers.items())}
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(keys, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def _switched_off() -> bool:
    return os.environ.get(SWITCH_ENV, "").strip().lower() in {"off", "0", "false", "no"}


def verdict(grade_id: str, answers: Mapping[str, Any], path: Path | None = None
            ) -> dict[str, bool] | None:
    """``{name: right?}`` for each answer, or None when no digests exist for ``grade_id``."""
    entries = load_keys(path).get(grade_id)
    if entries is None or _switched_off():
        return None
    return _judge(grade_id, answers, entries)


def _judge(grade_id: str, answers: Mapping[str, Any], entries: Mapping) -> dict[str, bool]:
    return {name: name in entries and matches(grade_id, name, value, entries[name])
            for name, value in answers.items()}


def check(grade_id: str, *, hints: Mapping[str, str] | None = None,
          tol: Mapping[str, float] | None = None, **answers: Any) -> bool | None:
    """Print ``Correct`` or ``Not yet`` (with the hint of each answer not right) and return
    True / False; None when the self-check is off or has no digests for ``grade_id``."""
    if os.environ.get(RECORD_ENV) == "1":
        record(grade_id, answers, tol)
    result = verdict(grade_id, answers)
    if result is None:
        print(f"{grade_id}: no self-check here (switched off or not recorded); "
              "the graded tests decide.")
        return None
    wrong = [name for name, ok in result.items() if not ok]
    if not wrong:
        print(f"{grade_id}: Correct" + (f" ({len(result)} of {len(result)} answers)"
                                        if len(result) > 1 else ""))
        return True
    print(f"{grade_id}: Not yet - {len(wrong)} of {len(result)} answer(s) not right:")
    for name in wrong:
        hint = (hints or {}).get(name, "re-read the task and the cells it points to")
        print(f"  {name}: {hint}")
    return False


def wrong_variants(grade_id: str, answers: Mapping[str, Any], path: Path | None = None,
                   entries: Mapping | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(description, answers)`` with one answer replaced by a wrong value, for each answer
    (``entries``: the digests of ``grade_id`` when the caller has read them already)."""
    if entries is None:
        entries = load_keys(path).get(grade_id, {})
    for name, value in answers.items():
        entry = entries.get(name, {})
        kind = _kind(value)
        # numbers: 20 % off (a tolerance as wide as that is a check that cannot say no)
        # and 10 steps off (the digest itself tells values apart)
        if kind == "number":
            x = float(value)
            step = entry.get("step", _default_step(kind, value))
            bad = [x + 10 * step, x - 10 * step]
            bad += [x * 1.2, x * 0.8] if x != 0 else []
        elif kind == "array":
            arr = np.asarray(value, dtype=np.float64)
            step = entry.get("step", _default_step(kind, arr))
            bump = np.zeros_like(arr).ravel()
            bump[0] = 50 * step * math.sqrt(max(arr.size, 1))
            bad = [arr + bump.reshape(arr.shape), -arr - 10 * step]
            bad += [arr * 1.2] if np.any(arr != 0) else []
        elif isinstance(value, (bool, np.bool_)):
            bad = [not bool(value)]
        elif isinstance(value, (int, np.integer)):
            bad = [int(value) + 1, int(value) - 1]
        elif isinstance(value, (str, np.str_)):
            letter = str(value).strip().lower()
            bad = ([c for c in CHOICES[:4] if c != letter] if len(letter) == 1
                   else [letter + " (wrong)"])
        else:
            arr = np.asarray(value)
            if arr.dtype.kind == "b":
                bad = [~arr]
            elif arr.dtype.kind in "iu":
                bad = [arr + 1]
            else:
                flat = [str(v) for v in arr.ravel()]
                bad = [flat[::-1] + ["?"]]
        for wrong in bad:
            yield f"{name} = {wrong!r}", {**answers, name: wrong}


def rejects_wrong(grade_id: str, **answers: Any) -> bool:
    """For hidden tests: every wrong variant of ``answers`` gets "not yet" (True when the
    self-checks are off, since there is nothing to test then)."""
    entries = load_keys().get(grade_id)
    if entries is None or _switched_off():
        return True
    for description, variant in wrong_variants(grade_id, answers, entries=entries):
        if all(_judge(grade_id, variant, entries).values()):
            print(f"{grade_id}: the self-check accepts a wrong answer ({description})")
            return False
    return True
