"""site/colab.py: the Colab badge and set-up cell, idempotent, silent outside Colab."""
from __future__ import annotations

import shutil
import subprocess
import sys
import types

import nbformat
import pytest

import colab
import site_build
import site_settings
from utils.core.config import ROOT
from utils.course import exercises, grading

WEEK = grading.course_notebooks()[0]


@pytest.fixture
def week_copy(tmp_path):
    """A copy of week 1 at its place in a copy of the repository layout."""
    target = tmp_path / "notebooks" / WEEK.name
    target.parent.mkdir()
    shutil.copy2(WEEK, target)
    return target


def test_insert_is_idempotent_and_removable(week_copy):
    original = week_copy.read_bytes()
    root = week_copy.parents[1]
    assert colab.update(week_copy, write=False, root=root)  # --check: missing
    assert colab.update(week_copy, root=root)
    once = week_copy.read_bytes()
    assert not colab.update(week_copy, root=root) and week_copy.read_bytes() == once
    assert not colab.update(week_copy, write=False, root=root)  # --check: up to date
    nb = nbformat.read(week_copy, as_version=4)
    nbformat.validate(nb)
    roles = [c.metadata.get(colab.KEY) for c in nb.cells]
    assert roles[0] == "badge" and roles.count("badge") == roles.count("setup") == 1
    setup_at = roles.index("setup")
    assert all(c.cell_type != "code" for c in nb.cells[:setup_at])  # the first code cell
    # the learner release (its branch), never the course's own notebooks with the solutions
    repository, branch = site_settings.release_target()
    assert f"github/{repository}/blob/{branch}/notebooks/{WEEK.name}" in nb.cells[0].source
    assert f"/blob/{site_settings.BRANCH}/" not in nb.cells[0].source
    # another repository: the cells are replaced, not added
    assert colab.update(week_copy, repository="someone/course", branch="dev", root=root)
    nb = nbformat.read(week_copy, as_version=4)
    assert len(nb.cells) == len(nbformat.reads(original.decode(), as_version=4).cells) + 2
    assert "someone/course/blob/dev/" in nb.cells[0].source
    assert colab.update(week_copy, remove=True, root=root)
    assert week_copy.read_bytes() == original


def test_command_line(tmp_path):
    """``--check`` fails until the cells are in, the tool writes them once, ``--remove``."""
    build = ROOT / "build"
    build.mkdir(exist_ok=True)
    copy = build / f"test-colab-{tmp_path.name}" / WEEK.name
    copy.parent.mkdir(parents=True)
    try:
        shutil.copy2(WEEK, copy)
        tool = [sys.executable, str(ROOT / "site" / "colab.py")]

        def run(*args):
            return subprocess.run(tool + [*args, str(copy)], capture_output=True, text=True)

        assert run("--check").returncode == 1
        first = run()
        assert first.returncode == 0 and first.stdout.strip().endswith("updated")
        again = run()
        assert again.returncode == 0 and again.stdout.strip().endswith("up to date")
        assert run("--check").returncode == 0
        assert run("--remove").returncode == 0 and copy.read_bytes() == WEEK.read_bytes()
    finally:
        shutil.rmtree(copy.parent)


def test_notebook_with_colab_cells_is_still_a_course_notebook(week_copy):
    colab.update(week_copy, root=week_copy.parents[1])
    assert grading.check_source_notebook(week_copy) == grading.check_source_notebook(WEEK)
    problems = exercises.check_exercises(nbformat.read(week_copy, as_version=4))
    assert problems == exercises.check_exercises(nbformat.read(WEEK, as_version=4))
    notebook = site_build.Notebook(f"notebooks/{WEEK.name}", "week", "t", (), True)
    view = site_build.site_notebook(notebook, week_copy.parents[1])
    assert [c.metadata.get(colab.KEY) for c in view.cells].count("setup") == 1
    assert not grading.leaked_lines(week_copy, view)


def test_setup_cell_is_silent_outside_colab():
    result = subprocess.run([sys.executable, "-c", colab.setup_source()], capture_output=True,
                            text=True, env={"PATH": "/usr/bin:/bin"}, cwd=ROOT, timeout=60)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""


def _run_on_fake_colab(monkeypatch, version):
    calls = []

    class Stop(Exception):
        pass

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        raise Stop

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(sys, "version_info", version)
    monkeypatch.setattr(subprocess, "run", fake_run)
    try:
        exec(compile(colab.setup_source("me/course", "main"), "<colab cell>", "exec"), {})
    except Stop:
        pass
    return calls


@pytest.mark.parametrize("version", [(3, 13, 0), (3, 14, 1), (3, 9, 18)])
def test_unsupported_python_on_colab_stops_before_pip(monkeypatch, capsys, version):
    # a pip or git call would end the cell without this error (see _run_on_fake_colab)
    with pytest.raises(RuntimeError) as err:
        _run_on_fake_colab(monkeypatch, version)
    assert type(err.value).__name__ == "CourseSetupStopped"
    # IPython shows this single line in place of a traceback
    assert err.value._render_traceback_() == [f"CourseSetupStopped: {err.value}"]
    printed = capsys.readouterr().out
    assert "Runtime > Change runtime type" in printed and "'Runtime version'" in printed
    assert "Python 3.12" in printed and "TensorFlow 2.17.1" in printed
    assert f"Python {'.'.join(map(str, version))}," in printed


def test_release_target_is_never_the_course_branch(monkeypatch):
    assert site_settings.release_target("me/course", "learner") == ("me/course", "learner")
    with pytest.raises(ValueError, match="solutions"):
        site_settings.release_target(site_settings.REPOSITORY, site_settings.BRANCH)
    with pytest.raises(ValueError):
        colab.badge_source("notebooks/01_a.ipynb", site_settings.REPOSITORY,
                           site_settings.BRANCH)


def test_supported_python_on_colab_clones_then_installs(monkeypatch, tmp_path):
    calls = _run_on_fake_colab(monkeypatch, (3, 12, 11))
    assert calls == [["git", "clone", "--depth", "1", "--branch", "main",
                      "https://github.com/me/course", "/content/course"]]
