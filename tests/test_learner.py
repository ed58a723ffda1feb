"""The learner's JupyterLab (make lab): work folder, configuration that hides nbgrader, root."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from utils.course import learner


def _write(path, text):
    path.write_text(text)
    return path


def test_sync_copies_once_and_never_overwrites_the_learners_work(tmp_path):
    release, work = tmp_path / "release", tmp_path / "work"
    release.mkdir()
    nb = _write(release / "01_week.ipynb", "v1")
    assert learner.sync_work_folder([nb], work) == {"01_week.ipynb": "new"}
    assert (work / "01_week.ipynb").read_text() == "v1"
    assert learner.sync_work_folder([nb], work) == {"01_week.ipynb": "kept"}

    # the course changes, the learner has not touched the copy: it is updated
    _write(nb, "v2")
    assert learner.sync_work_folder([nb], work) == {"01_week.ipynb": "updated"}
    assert (work / "01_week.ipynb").read_text() == "v2"

    # the learner works, then the course changes: the work stays, the release goes beside it
    _write(work / "01_week.ipynb", "v2 + my answers")
    assert learner.sync_work_folder([nb], work) == {"01_week.ipynb": "kept"}
    _write(nb, "v3")
    action = learner.sync_work_folder([nb], work)["01_week.ipynb"]
    assert action == "kept, fresh copy: 01_week.new.ipynb"
    assert (work / "01_week.ipynb").read_text() == "v2 + my answers"
    assert (work / "01_week.new.ipynb").read_text() == "v3"


def test_sync_keeps_the_deep_dives_in_their_folder_with_the_same_guarantees(tmp_path):
    """A deep dive goes to work/deep_dives/ (the links between notebooks work there), its
    stamp to work/.released/deep_dives/, and the learner's work in it is never lost."""
    release, work = tmp_path / "release", tmp_path / "work"
    (release / "deep_dives").mkdir(parents=True)
    week = _write(release / "01_week.ipynb", "week v1")
    dive = _write(release / "deep_dives" / "D1_dive.ipynb", "dive v1")
    assert learner.sync_work_folder([week, dive], work) == {
        "01_week.ipynb": "new", "deep_dives/D1_dive.ipynb": "new"}
    assert (work / "deep_dives" / "D1_dive.ipynb").read_text() == "dive v1"
    assert (work / ".released" / "deep_dives" / "D1_dive.ipynb").read_text() == "dive v1"
    assert not (work / "D1_dive.ipynb").exists()
    assert not (work / ".released" / "D1_dive.ipynb").exists()

    # untouched copy: updated; the week's stamp is not the deep dive's
    _write(dive, "dive v2")
    assert learner.sync_work_folder([week, dive], work) == {
        "01_week.ipynb": "kept", "deep_dives/D1_dive.ipynb": "updated"}
    assert (work / "deep_dives" / "D1_dive.ipynb").read_text() == "dive v2"

    # the learner answers in the deep dive, then the course changes: the work stays
    _write(work / "deep_dives" / "D1_dive.ipynb", "dive v2 + my answers")
    _write(dive, "dive v3")
    actions = learner.sync_work_folder([week, dive], work)
    assert actions["deep_dives/D1_dive.ipynb"] == "kept, fresh copy: D1_dive.new.ipynb"
    assert (work / "deep_dives" / "D1_dive.ipynb").read_text() == "dive v2 + my answers"
    assert (work / "deep_dives" / "D1_dive.new.ipynb").read_text() == "dive v3"
    # and again: still kept (the stamp is the release, not the learner's copy)
    _write(dive, "dive v4")
    assert learner.sync_work_folder([week, dive], work)["deep_dives/D1_dive.ipynb"] == \
        "kept, fresh copy: D1_dive.new.ipynb"
    assert (work / "deep_dives" / "D1_dive.ipynb").read_text() == "dive v2 + my answers"


def test_prepare_learner_lab_syncs_a_release_folder_with_deep_dives(tmp_path, monkeypatch):
    """``make lab`` of the learner release (``--released notebooks``): weeks and deep dives,
    ``*.new.ipynb`` copies left alone."""
    release, work = tmp_path / "notebooks", tmp_path / "work"
    (release / "deep_dives").mkdir(parents=True)
    _write(release / "01_week.ipynb", "w")
    _write(release / "deep_dives" / "D1_dive.ipynb", "d")
    _write(release / "deep_dives" / "D1_dive.new.ipynb", "not a course notebook")
    monkeypatch.setattr(learner, "lab_environment", lambda build_dir: {})
    learner.prepare_learner_lab(work, tmp_path / "build", released_dir=release)
    copied = sorted(p.relative_to(work).as_posix() for p in work.rglob("*.ipynb")
                    if ".released" not in p.parts)
    assert copied == ["01_week.ipynb", "deep_dives/D1_dive.ipynb"]


def test_learner_config_disables_every_nbgrader_extension(tmp_path):
    config = learner.write_learner_config(tmp_path / "cfg")
    page = json.loads((config / "labconfig" / "page_config.json").read_text())
    assert page["disabledExtensions"] == {"@jupyter/nbgrader": True}
    server = json.loads((config / "jupyter_server_config.json").read_text())
    extensions = server["ServerApp"]["jpserver_extensions"]
    assert set(extensions) == set(learner.NBGRADER_SERVER_EXTENSIONS)
    assert not any(extensions.values())


def test_jupyter_sees_nbgrader_disabled_with_the_learner_config(tmp_path):
    """The configuration folder wins over the environment's, where nbgrader is enabled."""
    env = learner.lab_environment(tmp_path / "build")
    listing = subprocess.run([sys.executable, "-m", "jupyter", "labextension", "list"],
                             env=env, capture_output=True, text=True, timeout=120)
    text = listing.stdout + listing.stderr
    if "@jupyter/nbgrader" not in text:
        pytest.skip("nbgrader's lab extension is not installed here")
    line = next(line for line in text.splitlines() if "@jupyter/nbgrader v" in line)
    assert "disabled" in line and "enabled" not in line.replace("disabled", "")


def test_lab_environment_points_jupyter_at_its_own_folders(tmp_path):
    env = learner.lab_environment(tmp_path / "build", base={"PATH": "/usr/bin"})
    assert env["JUPYTER_CONFIG_DIR"] == str((tmp_path / "build" / "jupyter-config").resolve())
    kernel = tmp_path / "build" / "jupyter" / "kernels" / "python3" / "kernel.json"
    assert json.loads(kernel.read_text())["argv"][0] == sys.executable
    assert env["JUPYTER_PATH"].split(":")[0] == str((tmp_path / "build" / "jupyter").resolve())
    news = (tmp_path / "build" / "lab-settings" / "@jupyterlab" / "apputils-extension"
            / "notification.jupyterlab-settings")
    assert json.loads(news.read_text()) == {"fetchNews": "false"}


@pytest.mark.parametrize("root", [True, False])
def test_lab_command_allows_root_only_as_root(monkeypatch, tmp_path, root):
    monkeypatch.setattr(learner, "is_root", lambda: root)
    command = learner.lab_command(tmp_path, ["--no-browser"])
    assert command[:3] == [sys.executable, "-m", "jupyterlab"]
    assert f"--notebook-dir={tmp_path.resolve()}" in command
    assert ("--allow-root" in command) == root
    assert command[-1] == "--no-browser"
