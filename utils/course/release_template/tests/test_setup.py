"""Checks of a learner's setup (``make test`` in the learner release): fast, nothing trained.

The course library imports without the instructor's tools, the handed-out notebooks are the
learner versions, the trained models and stored results are readable, and ``make lab`` can
prepare its work folder.
"""
from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The weeks, then the deep dives (notebooks/deep_dives/), as the course lays them out.
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")) + sorted(
    (ROOT / "notebooks" / "deep_dives").glob("*.ipynb"))


def test_utils_is_the_one_of_this_folder():
    import utils

    assert Path(utils.__file__).resolve().parent == ROOT / "utils"


def _modules():
    import utils

    return sorted(m.name for m in pkgutil.walk_packages(utils.__path__, "utils.")
                  if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", _modules())
def test_every_module_imports(name):
    importlib.import_module(name)


def test_notebooks_are_learner_versions():
    assert NOTEBOOKS, "no notebooks in notebooks/"
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        stubs = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
        assert stubs, f"{path.name}: no exercise to solve"
        for cell in nb.cells:
            assert "BEGIN SOLUTION" not in cell.source and "BEGIN HIDDEN" not in cell.source
            assert not cell.get("outputs"), f"{path.name}: outputs are handed out empty"


def test_exercise_pass_message(capsys):
    from utils.course.exercises import exercise_passed

    exercise_passed("w1_ex1")
    assert "Exercise 1 (week 1)" in capsys.readouterr().out


def test_models_and_stored_results_are_readable():
    models = sorted((ROOT / "data" / "models").glob("*/config.json"))
    assert models, "no trained models in data/models"
    for config in models:
        json.loads(config.read_text())
        assert any(config.parent.glob("*.h5")) or any(config.parent.glob("*.keras")), config
    results = sorted((ROOT / "data" / "results").glob("*.npz"))
    assert results, "no stored results in data/results"
    for path in results:
        with np.load(path, allow_pickle=False) as data:
            assert data.files, path


@pytest.mark.parametrize("name", ["cnn_holdout", "lstm_holdout"])
def test_trained_model_loads(name):
    """Weights verified against their config (SHA-256) and loaded into the architecture."""
    from utils.models.catalog import load_trained

    model = load_trained(name)
    assert model.count_params() > 0


def test_make_lab_prepares_the_work_folder(tmp_path):
    cmd = [sys.executable, "-m", "utils.course.learner", "lab", "--released",
           str(ROOT / "notebooks"), "--work-dir", str(tmp_path / "work"), "--build-dir",
           str(tmp_path / "build"), "--prepare-only"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    work = tmp_path / "work"
    copied = sorted(p.relative_to(work).as_posix() for p in work.rglob("*.ipynb")
                    if ".released" not in p.relative_to(work).parts)
    assert copied == sorted(p.relative_to(ROOT / "notebooks").as_posix() for p in NOTEBOOKS)
    assert "jupyterlab" in out.stdout


def test_links_between_notebooks_resolve():
    """A week's link to a deep dive (``deep_dives/D1_....ipynb``) and back (``../01_....ipynb``)
    points at a notebook of this release."""
    from utils.course import layout

    assert layout.broken_notebook_links(ROOT / "notebooks") == []
