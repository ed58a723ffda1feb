"""The learner release (utils/course/release.py, ``make release``).

Builds the release once from the real weekly notebooks (cheap: nothing is executed), searches
every file of it for every solution and hidden-test line of the sources, and runs the
release's own ``make test`` inside it (its utils/, not this repository's).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import nbformat
import pytest

from test_grading import SYNTH, synthetic_notebook, write
from utils.course import grading, release

NOTEBOOKS = grading.course_notebooks()
needs_notebooks = pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks/[0-9]*.ipynb")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / release.RELEASE_NAME
    return release.build_release(out, NOTEBOOKS, archive=True, git=True)


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and ".git" not in p.relative_to(folder).parts)


@needs_notebooks
def test_release_has_what_a_learner_needs(built):
    folder = built.folder
    assert [p.name for p in built.notebooks] == [p.name for p in NOTEBOOKS]
    for name in ("Makefile", "README.md", "requirements.txt", "pyproject.toml",
                 "utils/core/config.py", "utils/course/exercises.py", "utils/course/learner.py",
                 "utils/course/kernel.py", "utils/studies/evaluation_grid.py",
                 "tests/test_setup.py"):
        assert (folder / name).is_file(), name
    assert sorted((folder / "data" / "models").iterdir()) and \
        sorted((folder / "data" / "results").glob("*.npz"))
    requirements = (folder / "requirements.txt").read_text().lower()
    assert "tensorflow==" in requirements and "nbgrader" not in requirements \
        and "dask" not in requirements


@needs_notebooks
def test_release_holds_no_solution_hidden_test_or_instructor_code(built):
    folder = built.folder
    secrets = set().union(*(grading.secret_lines(nb) for nb in NOTEBOOKS))
    assert len(secrets) > 100, "the sources should have many solution and hidden-test lines"
    assert release.find_leaks(folder, NOTEBOOKS + release.deep_dives()) == []
    names = _files(folder)
    for module in release.INSTRUCTOR_MODULES:
        assert f"utils/course/{module}" not in names
    assert not [n for n in names if n.endswith(".db") or "release_template" in n]
    # the learner versions have their stubs in place of the solutions
    for path in built.notebooks:
        text = grading.notebook_text(path)
        assert "NotImplementedError" in text and "### BEGIN" not in text


@needs_notebooks
def test_archive_is_the_folder(built):
    with tarfile.open(built.archive) as tar:
        members = sorted(m.name.split("/", 1)[1] for m in tar.getmembers()
                         if m.isfile())
    assert members == _files(built.folder)


@needs_notebooks
def test_release_is_a_git_repository(built):
    out = subprocess.run(["git", "status", "--porcelain"], cwd=built.folder,
                         capture_output=True, text=True, check=True)
    assert out.stdout == ""


def test_find_leaks_catches_a_solution_line_anywhere(tmp_path):
    source = write(synthetic_notebook(), tmp_path / "notebooks" / SYNTH)
    folder = tmp_path / "rel"
    (folder / "utils").mkdir(parents=True)
    (folder / "utils" / "ok.py").write_text("x = 1\n")
    assert release.find_leaks(folder, [source]) == []
    (folder / "utils" / "helper.py").write_text("    energy = float((signal ** 2).sum())\n")
    (folder / "notes.md").write_text("assert answer == 'B', 'look again at the figure'\n")
    (folder / "blob.bin").write_bytes(b"\0\0assert answer == 'B', 'look again at the figure'")
    nb = nbformat.read(source, as_version=4)
    write(nb, folder / "instructor.ipynb")
    leaks = release.find_leaks(folder, [source])
    assert any(leak.startswith("utils/helper.py: solution") for leak in leaks)
    assert any(leak.startswith("notes.md: solution") for leak in leaks)
    assert any(leak.startswith("blob.bin: solution") for leak in leaks)
    assert any(leak.startswith("instructor.ipynb: marker") for leak in leaks)


def test_learner_requirements_drop_instructor_packages():
    text = ("numpy==1.26.4\n# Graded exercises (instructor workflow)\n"
            'nbgrader==0.9.6; python_version >= "3.11"\nSQLAlchemy==2.1.9\n'
            "# Grading a class on many machines\ndask==2026.8.0\ndistributed==2026.8.0\n"
            "quantus==0.6.0\n")
    assert release.learner_requirements(text) == "numpy==1.26.4\nquantus==0.6.0\n"


@needs_notebooks
@pytest.mark.class_workflow
def test_release_make_test_passes_inside_it(built):
    """The release's own ``make test`` (its tests, its utils/), run in the release folder with
    this environment's Python (``-o .venv/.installed`` skips the install)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(["make", "-o", ".venv/.installed", f"PY={sys.executable}", "test"],
                         cwd=built.folder, env=env, capture_output=True, text=True, timeout=900)
    print(out.stdout[-3000:])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert " passed" in out.stdout and "failed" not in out.stdout


@pytest.mark.parametrize("line, generic", [
    ("from sklearn.metrics import roc_auc_score", True),
    ("import numpy as np", True),
    ("for i, c in enumerate(y):", True),
    ("if answer == 'b':", False),
    ("for _d in (2, 4, 8):", False),
    ("energy = float((signal ** 2).sum())", False),
])
def test_generic_lines(line, generic):
    assert release.is_generic(line) is generic
