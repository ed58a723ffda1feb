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
