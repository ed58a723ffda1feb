"""The learner release (utils/course/release.py, ``make release``).

Builds the release once from the real notebooks, weeks and deep dives (cheap: nothing is
executed), searches
every file of it for every solution and hidden-test line of the sources, and runs the
release's own ``make test`` inside it (its utils/, not this repository's).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import nbformat
import pytest

from test_grading import SYNTH, synthetic_notebook, write
from utils.course import grading, layout, learner, release

#: The weeks, then the deep dives.
NOTEBOOKS = grading.course_notebooks()
DEEP_DIVES = [p for p in NOTEBOOKS if layout.is_deep_dive(p)]
needs_notebooks = pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks/[0-9]*.ipynb")
needs_deep_dives = pytest.mark.skipif(not DEEP_DIVES, reason="no notebooks/deep_dives/*.ipynb")


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
    assert [p.relative_to(folder / "notebooks") for p in built.notebooks] == \
        [layout.learner_path(p) for p in NOTEBOOKS]
    for name in ("Makefile", "README.md", "requirements.txt", "pyproject.toml",
                 "utils/core/config.py", "utils/course/exercises.py", "utils/course/learner.py",
                 "utils/course/kernel.py", "utils/studies/evaluation_grid.py",
                 "utils/course/selfcheck.py", "utils/course/selfcheck_keys.json",
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
    assert release.find_leaks(folder, NOTEBOOKS) == []
    names = _files(folder)
    for module in release.INSTRUCTOR_MODULES:
        assert f"utils/course/{module}" not in names
    assert not [n for n in names if n.endswith(".db") or "release_template" in n]
    # the learner versions have their stubs in place of the solutions
    for path in built.notebooks:
        text = grading.notebook_text(path)
        assert "NotImplementedError" in text and "### BEGIN" not in text


@needs_deep_dives
def test_the_deep_dives_are_released_in_their_folder(built):
    """notebooks/deep_dives/ of the release holds the learner version of every deep dive, the
    links between the notebooks resolve there, and the release's make lab syncs the deep dives
    into work/deep_dives/."""
    folder = built.folder / "notebooks"
    for source in DEEP_DIVES:
        released = folder / "deep_dives" / source.name
        assert released in built.notebooks
        nb = nbformat.read(released, as_version=4)
        assert grading.secret_lines(source), f"{source.name}: no solution line to search for"
        assert grading.leaked_lines(source, nb) == []
        stubs = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
        assert stubs and not any(c.get("outputs") for c in nb.cells)
    assert built.broken_links == () and layout.broken_notebook_links(folder) == []


@needs_deep_dives
def test_release_make_lab_syncs_the_deep_dives(built, tmp_path):
    work = tmp_path / "work"
    synced = learner.sync_work_folder(layout.notebooks_in(built.folder / "notebooks"), work)
    assert sorted(synced) == sorted(layout.learner_path(p).as_posix() for p in NOTEBOOKS)
    for source in DEEP_DIVES:
        assert (work / "deep_dives" / source.name).read_bytes() == \
            (built.folder / "notebooks" / "deep_dives" / source.name).read_bytes()


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


def test_a_graded_release_leaves_the_self_check_digests_out(tmp_path, monkeypatch):
    """``make release SELFCHECK=off``: the release is built without the digests (nbgrader's
    step is replaced by a stub here; the full build is tested above)."""
    def fake_build_course(notebooks, course_dir, student_dir):
        Path(student_dir).mkdir(parents=True)
        return {}
    monkeypatch.setattr(release.grading, "build_course", fake_build_course)
    off = release.build_release(tmp_path / "off", [], archive=False, selfcheck=False)
    on = release.build_release(tmp_path / "on", [], archive=False)
    assert not (off.folder / "utils/course/selfcheck_keys.json").exists()
    assert (on.folder / "utils/course/selfcheck_keys.json").is_file()


# --- Colab: every released notebook opens from the published release, set-up cell first ------

#: Runs a cell as Colab would on a Python 3.13 runtime: ``google.colab`` imported, the version
#: patched, ``pip``/``git`` (subprocess, os.system) recorded instead of run; IPython shows
#: the result as a notebook would.
FAKE_COLAB_313 = r'''
import json, os, subprocess, sys, types
calls = []
def record(*args, **kwargs):
    calls.append(repr(args))
    raise SystemExit("a command was started: " + repr(args))
subprocess.run = subprocess.call = subprocess.check_call = subprocess.Popen = record
os.system = record
sys.modules["google.colab"] = types.ModuleType("google.colab")
sys.version_info = (3, 13, 5, "final", 0)
from IPython.core.interactiveshell import InteractiveShell
result = InteractiveShell.instance().run_cell(open(sys.argv[1]).read())
print("RESULT " + json.dumps({"error": type(result.error_in_exec).__name__, "calls": calls}))
'''


def _colab_cells(path: Path):
    nb = nbformat.read(path, as_version=4)
    first_md = next(c for c in nb.cells if c.cell_type == "markdown")
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    return nb, first_md, first_code


@needs_notebooks
def test_released_notebooks_open_the_release_on_colab(built):
    """First markdown cell: the badge of this notebook in the published release (never the
    course branch with the solutions); first code cell: the set-up cell, which clones that
    release; both recognisable by the tool's metadata."""
    tool = release.colab_tool()
    repository, branch = tool.site_settings.release_target()
    assert (repository, branch) != (tool.site_settings.REPOSITORY, tool.site_settings.BRANCH)
    for path in built.notebooks:
        nb, badge, setup = _colab_cells(path)
        assert nb.cells[0] is badge and badge.metadata[tool.KEY] == "badge"
        assert setup.metadata[tool.KEY] == "setup"
        url = badge.source.split("](")[-1].rstrip(")")
        rel = path.relative_to(built.folder).as_posix()
        assert url == (f"https://colab.research.google.com/github/{repository}/blob/{branch}/"
                       f"{rel}")
        assert (built.folder / rel).is_file()
        assert rel == f"notebooks/{layout.learner_path(path).as_posix()}"  # deep_dives/ kept
        assert f"{repository!r}, {branch!r}" in setup.source
        assert not setup.get("outputs") and "BEGIN" not in setup.source


@needs_notebooks
def test_released_setup_cell_is_silent_outside_colab(built):
    """Nothing to compare for nbval and nothing done in make lab, Binder or a grading sandbox."""
    _, _, setup = _colab_cells(built.notebooks[0])
    out = subprocess.run([sys.executable, "-c", setup.source], capture_output=True, text=True,
                         env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, timeout=60)
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")


@needs_notebooks
def test_released_setup_cell_on_python_313_says_how_to_switch_and_stops(built, tmp_path):
    """On Colab's Python 3.13 runtime: the switch instructions, then a one-line stop (no
    traceback), and no pip or git started."""
    _, _, setup = _colab_cells(built.notebooks[0])
    (tmp_path / "cell.py").write_text(setup.source)
    (tmp_path / "fake_colab.py").write_text(FAKE_COLAB_313)
    out = subprocess.run([sys.executable, str(tmp_path / "fake_colab.py"),
                          str(tmp_path / "cell.py")], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.split("RESULT ", 1)[1])
    assert result == {"error": "CourseSetupStopped", "calls": []}
    shown = out.stdout.split("RESULT ", 1)[0] + out.stderr
    assert "Python 3.13.5" in shown and "Nothing was installed" in shown
    assert "Runtime > Change runtime type" in shown and "'Runtime version'" in shown
    assert "Python 3.12" in shown and "run this cell again" in shown
    assert "Traceback" not in shown and "pip" not in shown.replace("pins", "")


def test_colab_cells_never_target_the_course_branch(tmp_path):
    """A release whose badges would open the course's own notebooks (solutions) is refused."""
    settings = release.colab_tool().site_settings
    folder = tmp_path / "rel"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Week"),
                                         nbformat.v4.new_code_cell("x = 1")])
    write(nb, folder / "notebooks" / "01_w.ipynb")
    with pytest.raises(ValueError, match="solutions"):
        release.add_colab_cells(folder, settings.REPOSITORY, settings.BRANCH)
    assert release.add_colab_cells(folder, "me/course-learner", "main") == \
        [folder / "notebooks" / "01_w.ipynb"]
    cells = nbformat.read(folder / "notebooks" / "01_w.ipynb", as_version=4).cells
    assert [c.metadata.get("course_colab") for c in cells] == ["badge", None, "setup", None]
    assert "github/me/course-learner/blob/main/notebooks/01_w.ipynb" in cells[0].source
